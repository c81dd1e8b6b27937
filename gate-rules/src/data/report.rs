//! The typed result of a lint: what the JSON output and the markdown renderer show.

use serde::{Deserialize, Serialize};

use super::config::LintRule;
use super::contamination::Contaminated;
use super::diff::DiffReport;
use super::duplicates::{ExactGroup, NearGroup};
use super::example::{Format, Layout};
use super::lengths::TokenLengthStats;
use crate::finding::Severity;
use crate::verdict::Verdict;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LintReport {
    /// Examples read, over all files (malformed records not counted).
    pub examples: usize,
    /// The files' common format, or `mixed`.
    pub format: String,
    /// SHA-256 over the examples' digests, in order: the dataset's identity.
    pub digest: String,
    pub datasets: Vec<DatasetSummary>,
    /// `null` when no tokenizer was given (a `token_lengths` info finding says why).
    pub token_lengths: Option<TokenLengthStats>,
    pub duplicates: Duplicates,
    pub contaminated: Vec<Contaminated>,
    /// `null` without a baseline.
    pub diff: Option<DiffReport>,
    pub findings: Vec<LintFinding>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetSummary {
    pub file: String,
    pub format: Format,
    pub layout: Layout,
    pub examples: usize,
    pub malformed: usize,
    pub digest: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Duplicates {
    pub exact: Vec<ExactGroup>,
    pub near: Vec<NearGroup>,
}

/// One observation of one lint rule, at the rule's configured severity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LintFinding {
    pub rule: LintRule,
    pub severity: Severity,
    pub message: String,
    /// Indices of the examples the finding is about (over all files, 0-based).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<usize>,
}

impl LintReport {
    /// Findings of one rule.
    pub fn findings_of(&self, rule: LintRule) -> impl Iterator<Item = &LintFinding> {
        self.findings.iter().filter(move |f| f.rule == rule)
    }
}

/// `fail` when any finding fails, else `warn` when any warns, else `pass`.
pub(crate) fn verdict(findings: &[LintFinding]) -> Verdict {
    if findings.iter().any(|f| f.severity == Severity::Fail) {
        Verdict::Fail
    } else if findings.iter().any(|f| f.severity == Severity::Warn) {
        Verdict::Warn
    } else {
        Verdict::Pass
    }
}
