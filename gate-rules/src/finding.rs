//! Findings: what one rule saw, how severe it is, and the evidence behind it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Fail,
    Warn,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Fail => "fail",
            Severity::Warn => "warn",
            Severity::Info => "info",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleId {
    OverallDrop,
    QuestionDrop,
    RegressionStreak,
    LossScoreDivergence,
    AutoFail,
    MinScore,
    VramBudget,
    Truncation,
    Environment,
    Plateau,
    /// A pairwise judge preferred the baseline's answers (`[rules.pairwise]`).
    Pairwise,
    /// Not a configurable rule: the baseline or the candidate lacks what a comparison needs.
    Baseline,
    /// Not a configurable rule: a question id records a different text in the baseline and the
    /// candidate, so its comparison is not like for like.
    QuestionText,
    /// Not a configurable rule: the candidate and a baseline were scored by different
    /// instruments (or rubrics), or the baseline was re-scored to match the candidate.
    Instrument,
}

impl RuleId {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::OverallDrop => "overall_drop",
            RuleId::QuestionDrop => "question_drop",
            RuleId::RegressionStreak => "regression_streak",
            RuleId::LossScoreDivergence => "loss_score_divergence",
            RuleId::AutoFail => "auto_fail",
            RuleId::MinScore => "min_score",
            RuleId::VramBudget => "vram_budget",
            RuleId::Truncation => "truncation",
            RuleId::Environment => "environment",
            RuleId::Plateau => "plateau",
            RuleId::Pairwise => "pairwise",
            RuleId::Baseline => "baseline",
            RuleId::QuestionText => "question_text",
            RuleId::Instrument => "instrument",
        }
    }
}

/// One observation of one rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub rule: RuleId,
    pub severity: Severity,
    /// Label of the baseline phase the finding compares with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    pub message: String,
    #[serde(default)]
    pub evidence: Evidence,
}

/// The numbers, questions and excerpts a finding rests on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<NamedValue>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub questions: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excerpts: Vec<Excerpt>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<KeyDifference>,
    /// Set on environment findings: the comparison may be confounded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub confounder: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedValue {
    pub name: String,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Excerpt {
    pub phase: String,
    pub question: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyDifference {
    pub key: String,
    pub baseline: Option<String>,
    pub candidate: Option<String>,
}

impl Finding {
    pub(crate) fn new(rule: RuleId, severity: Severity, message: String) -> Finding {
        Finding { rule, severity, baseline: None, message, evidence: Evidence::default() }
    }

    pub(crate) fn against(mut self, baseline: &str) -> Finding {
        self.baseline = Some(baseline.to_owned());
        self
    }

    pub(crate) fn value(mut self, name: &str, value: f64) -> Finding {
        self.evidence.values.push(NamedValue { name: name.to_owned(), value });
        self
    }

    pub(crate) fn question(mut self, id: &str) -> Finding {
        self.evidence.questions.push(id.to_owned());
        self
    }

    pub(crate) fn excerpt(mut self, phase: &str, question: &str, text: &str) -> Finding {
        self.evidence.excerpts.push(Excerpt {
            phase: phase.to_owned(),
            question: question.to_owned(),
            text: excerpt(text, EXCERPT_CHARS),
        });
        self
    }
}

const EXCERPT_CHARS: usize = 160;

/// The first `max` characters of `text` on one line, with an ellipsis when cut.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let cut: String = flat.chars().take(max).collect();
    format!("{}…", cut.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_flattens_and_cuts_on_characters() {
        assert_eq!(excerpt("Olá,\n  você", 20), "Olá, você");
        assert_eq!(excerpt("ééééé", 3), "ééé…");
    }
}
