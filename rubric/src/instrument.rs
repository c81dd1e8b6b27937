//! The instrument that produced a phase's scores. Candidate and baseline are compared only on
//! scores from the same instrument: a rules score and a human score of the same answer differ by
//! more than most regressions.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What scored a phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Instrument {
    /// phasegate's deterministic rules scorer, at a version, on a suite (by digest).
    Rules { version: String, suite_digest: String },
    /// An LLM judge: its model, where it ran (an endpoint, or in process), and the prompt's digest.
    Judge {
        model: String,
        #[serde(default)]
        endpoint: Option<String>,
        prompt_digest: String,
    },
    /// People scoring per dimension.
    Human,
    /// Totals from a file that says nothing of how they were produced.
    Imported,
}

/// The instrument's kind alone, as `import --scorer` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstrumentKind {
    Rules,
    Judge,
    Human,
    Imported,
}

impl InstrumentKind {
    pub fn parse(s: &str) -> Option<InstrumentKind> {
        match s {
            "rules" => Some(InstrumentKind::Rules),
            "judge" => Some(InstrumentKind::Judge),
            "human" => Some(InstrumentKind::Human),
            "imported" => Some(InstrumentKind::Imported),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            InstrumentKind::Rules => "rules",
            InstrumentKind::Judge => "judge",
            InstrumentKind::Human => "human",
            InstrumentKind::Imported => "imported",
        }
    }
}

impl Instrument {
    pub fn kind(&self) -> InstrumentKind {
        match self {
            Instrument::Rules { .. } => InstrumentKind::Rules,
            Instrument::Judge { .. } => InstrumentKind::Judge,
            Instrument::Human => InstrumentKind::Human,
            Instrument::Imported => InstrumentKind::Imported,
        }
    }

    /// An instrument of `kind` known only by its kind (an imported file that names no version).
    pub fn of_kind(kind: InstrumentKind) -> Instrument {
        match kind {
            InstrumentKind::Rules => Instrument::Rules { version: "unknown".into(), suite_digest: "unknown".into() },
            InstrumentKind::Judge => {
                Instrument::Judge { model: "unknown".into(), endpoint: None, prompt_digest: "unknown".into() }
            }
            InstrumentKind::Human => Instrument::Human,
            InstrumentKind::Imported => Instrument::Imported,
        }
    }

    /// Two phases' scores are comparable only from the same instrument. People are one
    /// instrument whoever scored; imported totals are never comparable with anything but imported
    /// totals.
    pub fn same_as(&self, other: &Instrument) -> bool {
        self == other
    }
}

impl fmt::Display for Instrument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Instrument::Rules { version, suite_digest } => {
                write!(f, "rules scorer {version} (suite {})", short(suite_digest))
            }
            Instrument::Judge { model, endpoint, prompt_digest } => {
                write!(f, "judge {model}")?;
                if let Some(e) = endpoint {
                    write!(f, " at {e}")?;
                }
                write!(f, " (prompt {})", short(prompt_digest))
            }
            Instrument::Human => f.write_str("human scores"),
            Instrument::Imported => f.write_str("imported totals"),
        }
    }
}

/// The first 12 hex digits of a `sha256:` digest, for display.
fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_versions_and_suites_are_different_instruments() {
        let a = Instrument::Rules { version: "2".into(), suite_digest: "sha256:aa".into() };
        let b = Instrument::Rules { version: "3".into(), suite_digest: "sha256:aa".into() };
        assert!(a.same_as(&a.clone()));
        assert!(!a.same_as(&b));
        assert!(!Instrument::Human.same_as(&Instrument::Imported));
    }

    #[test]
    fn serialises_with_a_kind_tag() {
        let judge = Instrument::Judge {
            model: "m".into(),
            endpoint: Some("http://127.0.0.1:8080/v1".into()),
            prompt_digest: "d".into(),
        };
        let text = serde_json::to_string(&judge).unwrap();
        assert!(text.starts_with(r#"{"kind":"judge""#), "{text}");
        assert_eq!(serde_json::from_str::<Instrument>(&text).unwrap(), judge);
        assert_eq!(serde_json::from_str::<Instrument>(r#"{"kind":"human"}"#).unwrap(), Instrument::Human);
    }
}
