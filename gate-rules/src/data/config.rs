//! The `[lint]` table of `gate.toml`: a severity per lint rule and the checks' settings.

use serde::{Deserialize, Serialize};

use crate::finding::Severity;

/// What one lint rule checks; its name is its key under `[lint.severity]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LintRule {
    MalformedRecord,
    EmptyTurn,
    RoleOrder,
    UnknownRole,
    MissingAssistant,
    ExactDuplicate,
    NearDuplicate,
    Contamination,
    TokenLengths,
    OverMaxLength,
    MaxLengthBelowP95,
    EpochExposure,
    SystemPromptMismatch,
    DatasetDiff,
}

impl LintRule {
    pub const ALL: [LintRule; 14] = [
        LintRule::MalformedRecord,
        LintRule::EmptyTurn,
        LintRule::RoleOrder,
        LintRule::UnknownRole,
        LintRule::MissingAssistant,
        LintRule::ExactDuplicate,
        LintRule::NearDuplicate,
        LintRule::Contamination,
        LintRule::TokenLengths,
        LintRule::OverMaxLength,
        LintRule::MaxLengthBelowP95,
        LintRule::EpochExposure,
        LintRule::SystemPromptMismatch,
        LintRule::DatasetDiff,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LintRule::MalformedRecord => "malformed_record",
            LintRule::EmptyTurn => "empty_turn",
            LintRule::RoleOrder => "role_order",
            LintRule::UnknownRole => "unknown_role",
            LintRule::MissingAssistant => "missing_assistant",
            LintRule::ExactDuplicate => "exact_duplicate",
            LintRule::NearDuplicate => "near_duplicate",
            LintRule::Contamination => "contamination",
            LintRule::TokenLengths => "token_lengths",
            LintRule::OverMaxLength => "over_max_length",
            LintRule::MaxLengthBelowP95 => "max_length_below_p95",
            LintRule::EpochExposure => "epoch_exposure",
            LintRule::SystemPromptMismatch => "system_prompt_mismatch",
            LintRule::DatasetDiff => "dataset_diff",
        }
    }

    /// The severity a rule has when `[lint.severity]` does not set it. Contamination fails: a
    /// contaminated eval cannot see a regression.
    pub fn default_level(self) -> LintLevel {
        match self {
            LintRule::MalformedRecord | LintRule::Contamination => LintLevel::Fail,
            LintRule::NearDuplicate | LintRule::TokenLengths | LintRule::EpochExposure | LintRule::DatasetDiff => {
                LintLevel::Info
            }
            _ => LintLevel::Warn,
        }
    }
}

/// A rule's configured severity; `off` drops its findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LintLevel {
    Off,
    Info,
    Warn,
    Fail,
}

impl LintLevel {
    pub fn severity(self) -> Option<Severity> {
        match self {
            LintLevel::Off => None,
            LintLevel::Info => Some(Severity::Info),
            LintLevel::Warn => Some(Severity::Warn),
            LintLevel::Fail => Some(Severity::Fail),
        }
    }
}

/// `[lint]`; `LintConfig::default()` is the documented default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LintConfig {
    /// `[lint.severity]`: rule name → off | info | warn | fail.
    pub severity: std::collections::BTreeMap<LintRule, LintLevel>,
    /// Jaccard similarity of word 3-shingles at or above which two examples are near-duplicates.
    pub near_duplicate_threshold: f64,
    /// Words per n-gram of the contamination check.
    pub ngram_size: usize,
    /// Share of an eval text's n-grams found in an example that counts as contamination.
    pub ngram_threshold: f64,
    /// The trainer's `max_length` in tokens; longer rendered examples are truncated.
    pub max_length: Option<usize>,
    /// Training epochs.
    pub epochs: Option<u32>,
    /// Chat template override used to render examples (chatml, zephyr, tinyllama, phi3).
    pub template: Option<String>,
    /// The model whose tokenizer measures lengths: a cache name or a path.
    pub model: Option<String>,
}

impl Default for LintConfig {
    fn default() -> Self {
        LintConfig {
            severity: std::collections::BTreeMap::new(),
            near_duplicate_threshold: 0.8,
            ngram_size: 3,
            ngram_threshold: 0.5,
            max_length: None,
            epochs: None,
            template: None,
            model: None,
        }
    }
}

impl LintConfig {
    /// Keys of `[lint]`, for the strict key check of `gate.toml`.
    pub(crate) const KEYS: &'static [&'static str] = &[
        "severity",
        "near_duplicate_threshold",
        "ngram_size",
        "ngram_threshold",
        "max_length",
        "epochs",
        "template",
        "model",
    ];

    /// The severity findings of `rule` get; `None` when the rule is off.
    pub fn severity_of(&self, rule: LintRule) -> Option<Severity> {
        self.severity.get(&rule).copied().unwrap_or(rule.default_level()).severity()
    }

    /// Range checks: the failing key, its value and what was expected.
    pub(crate) fn out_of_range(&self) -> Option<(&'static str, String, &'static str)> {
        let t = self.near_duplicate_threshold;
        if !(t > 0.0 && t <= 1.0) {
            return Some(("lint.near_duplicate_threshold", t.to_string(), "above 0, at most 1"));
        }
        let t = self.ngram_threshold;
        if !(t > 0.0 && t <= 1.0) {
            return Some(("lint.ngram_threshold", t.to_string(), "above 0, at most 1"));
        }
        if self.ngram_size == 0 {
            return Some(("lint.ngram_size", "0".into(), "at least 1"));
        }
        if self.max_length == Some(0) {
            return Some(("lint.max_length", "0".into(), "at least 1"));
        }
        if self.epochs == Some(0) {
            return Some(("lint.epochs", "0".into(), "at least 1"));
        }
        None
    }
}
