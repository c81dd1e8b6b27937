//! gate-rules: phasegate's judgement, as a pure library.
//!
//! It owns the domain of the gate (rubric, phase record, findings, verdict), the strict
//! `gate.toml`, the noise-aware paired statistics, the ten rules that turn history + candidate into
//! a verdict with evidence (plus a warning when a question id means another question in the
//! baseline), the markdown and JSON reports, and the parsers that import the JSON shapes users
//! already have. It does no network, database or GPU work and has no async runtime:
//! the coordinator and the CLI read history, call [`evaluate`], then store and post the result.
//! The only I/O is [`import::load_files`], a thin reader in front of the pure parsers.
//! [`data`] is the dataset pre-gate (`phasegate lint`): parsed datasets, an eval suite and
//! token lengths in, a typed lint report out.

pub mod bench;
mod config;
pub mod data;
mod evaluate;
mod finding;
pub mod import;
mod numfmt;
mod phase;
pub mod report;
mod rubric;
mod rules;
mod stats;
#[cfg(test)]
mod testkit;
mod verdict;

pub use config::{
    AutoFail, ConfigError, Divergence, Environment, GateConfig, MinScore, Pairwise, Plateau, QuestionDrop, Rules,
    Streak, Toggle, Truncation, VramBudget,
};
pub use evaluate::{BaselineComparison, BaselineRole, Evaluation, PairwiseComparison, evaluate};
pub use finding::{Evidence, Excerpt, Finding, KeyDifference, NamedValue, RuleId, Severity};
pub use phase::{
    ConfigEntry, DatasetInfo, EarlierScores, LossPoint, Phase, Preferences, QuestionEval, QuestionPreference, Sample,
    TrainingMetrics, natural_cmp, ordinal_from_label,
};
pub use phasegate_rubric::{Dimension, DimensionId, Instrument, InstrumentKind, Rubric};
pub use rubric::{AUTO_FAIL_PHRASES, AutoZeroHit, DimensionScore};
pub use stats::preference_p_value;
pub use stats::{Change, Comparison, Interval, Method, PairedStats, SamplesNeeded};
pub use verdict::Verdict;
