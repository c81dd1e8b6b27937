//! The verdict of one evaluation and its documented exit codes.

use serde::{Deserialize, Serialize};

/// What the gate decided. Exit codes: pass 0, warn 0, fail 1, inconclusive 4,
/// insufficient_baseline 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
    /// A drop larger than `min_effect` that the data cannot separate from noise.
    Inconclusive,
    /// No accepted, scored phase to compare with: never a silent pass.
    InsufficientBaseline,
}

impl Verdict {
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Pass | Verdict::Warn => 0,
            Verdict::Fail => 1,
            Verdict::Inconclusive | Verdict::InsufficientBaseline => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
            Verdict::InsufficientBaseline => "insufficient_baseline",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_match_the_documented_table() {
        let table = [
            (Verdict::Pass, 0, "pass"),
            (Verdict::Warn, 0, "warn"),
            (Verdict::Fail, 1, "fail"),
            (Verdict::Inconclusive, 4, "inconclusive"),
            (Verdict::InsufficientBaseline, 4, "insufficient_baseline"),
        ];
        for (verdict, code, name) in table {
            assert_eq!(verdict.exit_code(), code, "{name}");
            assert_eq!(verdict.as_str(), name);
            assert_eq!(serde_json::to_string(&verdict).unwrap(), format!("\"{name}\""));
        }
    }
}
