//! The `[lint]` section of a phase spec: the dataset pre-gate, run first, on an agent and without
//! a GPU (agents hold the model cache, so the tokenizer is there). A `fail` verdict of the lint
//! is the run's verdict and the later stages are never leased.

use serde::{Deserialize, Serialize};

use super::eval::TEMPLATE_NAMES;

/// Default `lint.timeout`: reading, tokenizing and checking even a large dataset takes minutes.
pub const DEFAULT_LINT_TIMEOUT_S: u64 = 30 * 60;

/// Artifacts the lint stage uploads: the whole report as JSON and as markdown.
pub const LINT_REPORT_JSON: &str = "lint/report.json";
pub const LINT_REPORT_MD: &str = "lint/report.md";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLintStage {
    datasets: Vec<String>,
    #[serde(default)]
    baseline: Vec<String>,
    #[serde(default)]
    suite: Option<String>,
    #[serde(default)]
    config: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    max_length: Option<u32>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    cache: Option<bool>,
}

/// The lint stage: which files of the source bundle to lint, against what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LintStage {
    /// Dataset files, relative to the spec's directory.
    pub datasets: Vec<String>,
    /// The accepted phase's dataset files to diff against, relative to the spec's directory.
    pub baseline: Vec<String>,
    /// The eval suite whose questions and anchors must not be in the data (`eval.suite` by default).
    pub suite: Option<String>,
    /// The `gate.toml` whose `[lint]` table sets severities and thresholds (`gate.config` by
    /// default).
    pub config: Option<String>,
    /// The model whose tokenizer measures rendered lengths: a cache name or a path on the agent
    /// (`eval.model` by default; `[lint] model` of the config otherwise).
    pub model: Option<String>,
    pub template: Option<String>,
    /// Overrides `[lint] max_length` of the config.
    pub max_length: Option<u32>,
    pub timeout_s: u64,
    /// `lint.cache` (default true); it does not travel to the agent.
    #[serde(skip, default = "super::eval::cache_default")]
    pub cache: bool,
    /// The diff's baseline when `baseline` is empty: the dataset of the experiment's newest
    /// accepted phase, filled in by the coordinator at submission (never by the spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<AcceptedDataset>,
}

/// Where the accepted phase's dataset is: the files its run's `[lint]` read, in that run's bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptedDataset {
    pub phase: String,
    pub run: u64,
    pub bundle_sha256: String,
    pub datasets: Vec<String>,
}

/// What a lint job reports back (`CompleteJobRequest.result_json`): the verdict the coordinator
/// acts on and the markdown it stores as the run's report when the verdict is `fail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LintOutcome {
    pub verdict: String,
    pub examples: usize,
    pub findings: usize,
    pub markdown: String,
}

/// Validates `[lint]`; `eval_suite`, `eval_model` and `gate_config` are the defaults the other
/// sections give.
pub(super) fn lint_stage(
    raw: RawLintStage,
    eval_suite: Option<&str>,
    eval_model: Option<&str>,
    gate_config: Option<&str>,
) -> Result<LintStage, String> {
    if raw.datasets.is_empty() {
        return Err("`lint.datasets` must list at least one dataset file".to_owned());
    }
    for (i, d) in raw.datasets.iter().enumerate() {
        super::relative_path(&format!("`lint.datasets[{i}]`"), d)?;
    }
    for (i, d) in raw.baseline.iter().enumerate() {
        super::relative_path(&format!("`lint.baseline[{i}]`"), d)?;
    }
    if let Some(s) = &raw.suite {
        super::relative_path("`lint.suite`", s)?;
    }
    if let Some(c) = &raw.config {
        super::relative_path("`lint.config`", c)?;
    }
    if let Some(t) = &raw.template
        && !TEMPLATE_NAMES.contains(&t.as_str())
    {
        return Err(format!("`lint.template` = {t:?} is not one of {}", TEMPLATE_NAMES.join(", ")));
    }
    if raw.max_length == Some(0) {
        return Err("`lint.max_length` = 0 must be positive".to_owned());
    }
    if raw.model.as_deref().is_some_and(|m| m.trim().is_empty()) {
        return Err("`lint.model` must name a cached model or a path".to_owned());
    }
    let timeout_s = match raw.timeout.as_deref() {
        None => DEFAULT_LINT_TIMEOUT_S,
        Some(t) => super::spec_duration("lint.timeout", t)?.as_secs().max(1),
    };
    Ok(LintStage {
        datasets: raw.datasets,
        baseline: raw.baseline,
        suite: raw.suite.or_else(|| eval_suite.map(str::to_owned)),
        config: raw.config.or_else(|| gate_config.map(str::to_owned)),
        model: raw.model.or_else(|| eval_model.map(str::to_owned)),
        template: raw.template,
        max_length: raw.max_length,
        timeout_s,
        cache: raw.cache.unwrap_or(true),
        accepted: None,
    })
}
