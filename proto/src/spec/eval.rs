//! The `[eval]` and `[score]` sections of a phase spec, and the JSON they travel in to agents
//! (`Assignment.stage_json`).
//!
//! The spec's flat TOML keys become typed domain values here, once; the agent parses the JSON back
//! with [`StageJob::from_json`] and never sees the TOML. Generation parameters the spec leaves out
//! stay `None`: the agent fills them with the engine's defaults and records the values it used.

use serde::{Deserialize, Serialize};

use crate::domain::{Requirements, WireError};

/// Chat templates a spec may name instead of the model's own.
pub const TEMPLATE_NAMES: [&str; 4] = ["chatml", "zephyr", "tinyllama", "phi3"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvalStage {
    model: String,
    #[serde(default)]
    adapter: Option<String>,
    suite: String,
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    cpu_requantize: Option<Requantize>,
    #[serde(default)]
    max_new_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    top_k: Option<u32>,
    #[serde(default)]
    repetition_penalty: Option<f64>,
    #[serde(default)]
    repetition_penalty_scope: Option<PenaltyScope>,
    #[serde(default)]
    samples: Option<u32>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    max_batch: Option<u32>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    requires: Requirements,
    #[serde(default)]
    cache: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScoreStage {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    suite: Option<String>,
    #[serde(default)]
    judge_model: Option<String>,
    #[serde(default)]
    judge_template: Option<String>,
    #[serde(default)]
    judge_max_new_tokens: Option<u32>,
    #[serde(default)]
    judge_seeds: Option<Vec<u64>>,
    #[serde(default)]
    judge_cpu_requantize: Option<Requantize>,
    #[serde(default)]
    calibration: Option<bool>,
    #[serde(default)]
    baseline_responses: Option<String>,
    #[serde(default)]
    judge_endpoint: Option<String>,
    #[serde(default)]
    judge_api_key_file: Option<String>,
    #[serde(default)]
    judge_timeout: Option<String>,
    #[serde(default)]
    judge_retries: Option<u32>,
    #[serde(default)]
    judge_concurrency: Option<u32>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    requires: Requirements,
    #[serde(default)]
    cache: Option<bool>,
}

/// Load-time re-quantisation of Q4 weights (faster on CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Requantize {
    #[serde(rename = "q8_0")]
    Q8_0,
}

/// Which tokens the repetition penalty sees: prompt and answer (Hugging Face) or the answer only
/// (llama.cpp).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PenaltyScope {
    #[default]
    All,
    Generated,
}

/// Generation parameters as the spec gives them; `None` means the engine's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalGeneration {
    pub max_new_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u32>,
    pub repetition_penalty: Option<f64>,
    pub repetition_penalty_scope: PenaltyScope,
    pub samples: Option<u32>,
    pub seed: Option<u64>,
    pub max_batch: Option<u32>,
}

/// The eval stage: generate K answers per suite question with a model (plus the fine-tune's adapter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalStage {
    /// A model cache name (`smollm2-135m-instruct`) or a path on the agent.
    pub model: String,
    /// Path prefix of the finetune stage's artifacts holding a PEFT adapter (`output/adapter`).
    pub adapter: Option<String>,
    /// The eval suite TOML, relative to the spec's directory.
    pub suite: String,
    pub template: Option<String>,
    pub cpu_requantize: Option<Requantize>,
    pub generation: EvalGeneration,
    /// Seconds the agent lets loading and generation run before stopping them (`eval.timeout`).
    #[serde(default = "default_eval_timeout_s")]
    pub timeout_s: u64,
    /// Placement needs; they do not travel to the agent (the scheduler already used them).
    #[serde(skip)]
    pub requires: Requirements,
    /// `eval.cache` (default true); it does not travel to the agent.
    #[serde(skip, default = "cache_default")]
    pub cache: bool,
}

fn default_eval_timeout_s() -> u64 {
    super::DEFAULT_TIMEOUT.as_secs()
}

/// How the score stage scores answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoreMode {
    /// The deterministic rubric scorer only.
    Rules,
    /// An LLM judge's scores are the phase record; answers it cannot score keep the rule scores.
    Judge,
    /// The rule scores are the phase record; the judge's sit beside them for comparison.
    Both,
    /// The rule scores are the phase record; beside them, the judge's preference between each
    /// answer and the baseline's (`score.baseline_responses`) to the same question, asked in both
    /// orders.
    Pairwise,
}

/// Where the accepted phase's responses are: a blob of the coordinator's artifact store, in the
/// eval stage's `eval/responses.json` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptedResponses {
    pub phase: String,
    pub sha256: String,
}

/// Default `score.judge_max_new_tokens`: room for five scores with one-sentence reasons.
pub const DEFAULT_JUDGE_MAX_NEW_TOKENS: u32 = 256;
/// Default `score.judge_seeds`: the judge is called once with each.
pub const DEFAULT_JUDGE_SEEDS: [u64; 2] = [1, 2];

/// The score stage: score every eval answer on the suite's rubric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreStage {
    pub mode: ScoreMode,
    /// The eval suite TOML, relative to the spec's directory (the eval stage's by default).
    pub suite: String,
    /// The judge model; present exactly when `mode` is `Judge`, `Both` or `Pairwise`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeModel>,
    /// The baseline's eval responses file, relative to the spec's directory; only in `Pairwise`
    /// mode, where it is optional: without it the baseline is [`ScoreStage::accepted`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_responses: Option<String>,
    /// The pairwise baseline when `baseline_responses` is not set: the stored responses of the
    /// experiment's newest accepted phase that keeps them, filled in by the coordinator at
    /// submission (never by the spec). `None` when no accepted phase keeps its responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<AcceptedResponses>,
    /// In `Judge` mode, the accepted phases the gate may compare with (best and previous) that
    /// keep their responses: the judge scores them too, so both sides of the comparison are its
    /// scores. Filled in by the coordinator at submission (never by the spec).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rescore: Vec<AcceptedResponses>,
    /// Seconds the agent lets the judge load and generate before stopping it (`score.timeout`).
    #[serde(default = "default_eval_timeout_s")]
    pub timeout_s: u64,
    /// `score.calibration` (default true): the rules scorer must score every calibration anchor of
    /// the suite inside its band, or the job fails naming the anchors. `false` is the escape hatch
    /// for authoring a suite whose anchors are still being written.
    #[serde(default = "calibration_default")]
    pub calibration: bool,
    /// Placement needs (a judge model may want a GPU); they do not travel to the agent.
    #[serde(skip)]
    pub requires: Requirements,
    /// `score.cache` (default true); it does not travel to the agent.
    #[serde(skip, default = "cache_default")]
    pub cache: bool,
}

pub(super) fn cache_default() -> bool {
    true
}

/// The judge model of `score.mode = "judge" | "both"` and how it is called.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeModel {
    /// In process: a model cache name or a path on the agent, as `eval.model`. With
    /// [`JudgeModel::server`]: the model name sent to the server.
    pub model: String,
    /// In process only (the server applies its own chat template).
    pub template: Option<String>,
    /// In process only.
    pub cpu_requantize: Option<Requantize>,
    pub max_new_tokens: u32,
    /// Two different seeds: every answer is judged once with each and the two must agree.
    pub seeds: [u64; 2],
    /// `score.judge_endpoint`: an OpenAI-compatible server judges instead of an in-process model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<JudgeServer>,
}

/// Default `score.judge_timeout`, per request.
pub const DEFAULT_JUDGE_TIMEOUT_S: u64 = 60;
/// Default `score.judge_retries`.
pub const DEFAULT_JUDGE_RETRIES: u32 = 3;
/// Default `score.judge_concurrency`.
pub const DEFAULT_JUDGE_CONCURRENCY: u32 = 4;
const MAX_JUDGE_RETRIES: u32 = 10;
const MAX_JUDGE_CONCURRENCY: u32 = 64;
const MAX_JUDGE_TIMEOUT_S: u64 = 3600;

/// An OpenAI-compatible judge server (`POST {endpoint}/chat/completions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeServer {
    /// Base URL up to the API version, without a trailing slash: `http://host:port/v1`.
    pub endpoint: String,
    /// A file on the agent holding the API key, read at run time and sent as a bearer token. The
    /// spec carries only the path, never the key.
    pub api_key_file: Option<String>,
    /// Per request, from sending to the whole answer read.
    pub timeout_s: u64,
    /// Further attempts after a connection error, a 429 or a 5xx answer, with exponential backoff.
    pub retries: u32,
    /// The most requests in flight at once.
    pub concurrency: u32,
}

/// What an agent is asked to do for a non-command stage: the JSON of `Assignment.stage_json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageJob {
    pub experiment: String,
    pub phase: String,
    pub work: JobWork,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobWork {
    Lint(super::LintStage),
    Eval(EvalStage),
    Score(ScoreStage),
}

impl StageJob {
    pub fn to_json(&self) -> String {
        // Plain structs, strings and finite numbers: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses `Assignment.stage_json`.
    pub fn from_json(text: &str) -> Result<StageJob, WireError> {
        serde_json::from_str(text).map_err(|e| WireError::new("stage_json", e.to_string()))
    }
}

pub(super) fn eval_stage(raw: RawEvalStage) -> Result<EvalStage, String> {
    if raw.model.trim().is_empty() {
        return Err("`eval.model` must name a cached model or a path".to_owned());
    }
    super::relative_path("`eval.suite`", &raw.suite)?;
    if let Some(adapter) = &raw.adapter {
        super::relative_path("`eval.adapter`", adapter)?;
    }
    if let Some(t) = &raw.template
        && !TEMPLATE_NAMES.contains(&t.as_str())
    {
        return Err(format!("`eval.template` = {t:?} is not one of {}", TEMPLATE_NAMES.join(", ")));
    }
    if raw.requires.vram_mib > 0 && !raw.requires.gpu {
        return Err("`eval.requires.vram_mib` is set but `gpu` is false".to_owned());
    }
    let generation = generation(&raw)?;
    Ok(EvalStage {
        model: raw.model,
        adapter: raw.adapter.map(|a| a.trim_end_matches('/').to_owned()),
        suite: raw.suite,
        template: raw.template,
        cpu_requantize: raw.cpu_requantize,
        generation,
        timeout_s: timeout_s("eval.timeout", raw.timeout.as_deref())?,
        requires: raw.requires,
        cache: raw.cache.unwrap_or(true),
    })
}

fn timeout_s(key: &str, raw: Option<&str>) -> Result<u64, String> {
    let timeout = match raw {
        None => super::DEFAULT_TIMEOUT,
        Some(t) => super::spec_duration(key, t)?,
    };
    if timeout.as_secs() == 0 {
        return Err(format!("`{key}` must be at least one second"));
    }
    Ok(timeout.as_secs())
}

fn generation(raw: &RawEvalStage) -> Result<EvalGeneration, String> {
    in_range("max_new_tokens", raw.max_new_tokens.map(f64::from), 1.0, 32768.0)?;
    in_range("temperature", raw.temperature, 0.0, 100.0)?;
    in_range("top_p", raw.top_p, f64::MIN_POSITIVE, 1.0)?;
    in_range("repetition_penalty", raw.repetition_penalty, f64::MIN_POSITIVE, 100.0)?;
    in_range("samples", raw.samples.map(f64::from), 1.0, 1000.0)?;
    in_range("max_batch", raw.max_batch.map(f64::from), 1.0, 4096.0)?;
    Ok(EvalGeneration {
        max_new_tokens: raw.max_new_tokens,
        temperature: raw.temperature,
        top_p: raw.top_p,
        top_k: raw.top_k,
        repetition_penalty: raw.repetition_penalty,
        repetition_penalty_scope: raw.repetition_penalty_scope.unwrap_or_default(),
        samples: raw.samples,
        seed: raw.seed,
        max_batch: raw.max_batch,
    })
}

fn in_range(key: &str, value: Option<f64>, min: f64, max: f64) -> Result<(), String> {
    match value {
        Some(v) if !(v.is_finite() && (min..=max).contains(&v)) => {
            let min = if min == f64::MIN_POSITIVE { "above 0".to_owned() } else { format!("at least {min}") };
            Err(format!("`eval.{key}` = {v} must be {min} and at most {max}"))
        }
        _ => Ok(()),
    }
}

/// `eval_suite` is the eval stage's suite, the default of `score.suite`.
pub(super) fn score_stage(raw: RawScoreStage, eval_suite: Option<&str>) -> Result<ScoreStage, String> {
    let mode = match raw.mode.as_deref() {
        None | Some("rules") => ScoreMode::Rules,
        Some("judge") => ScoreMode::Judge,
        Some("both") => ScoreMode::Both,
        Some("pairwise") => ScoreMode::Pairwise,
        Some(other) => return Err(format!("`score.mode` = {other:?} is not one of rules, judge, both, pairwise")),
    };
    let judge = judge_model(&raw, mode)?;
    let baseline_responses = match (&raw.baseline_responses, mode) {
        (Some(path), ScoreMode::Pairwise) => {
            super::relative_path("`score.baseline_responses`", path)?;
            Some(path.clone())
        }
        (Some(_), _) => {
            return Err("`score.baseline_responses` is set but `score.mode` is not \"pairwise\"".to_owned());
        }
        (None, _) => None,
    };
    let suite = match (raw.suite, eval_suite) {
        (Some(s), _) => s,
        (None, Some(s)) => s.to_owned(),
        (None, None) => return Err("`score.suite` is required without an [eval] stage".to_owned()),
    };
    super::relative_path("`score.suite`", &suite)?;
    if raw.requires.vram_mib > 0 && !raw.requires.gpu {
        return Err("`score.requires.vram_mib` is set but `gpu` is false".to_owned());
    }
    if raw.requires.gpu && judge.is_none() {
        return Err(
            "`score.requires` asks for a GPU, but only a judge model (`score.mode` judge or both) uses one".to_owned()
        );
    }
    let timeout_s = timeout_s("score.timeout", raw.timeout.as_deref())?;
    let calibration = raw.calibration.unwrap_or(true);
    let cache = raw.cache.unwrap_or(true);
    Ok(ScoreStage {
        mode,
        suite,
        judge,
        baseline_responses,
        accepted: None,
        rescore: Vec::new(),
        timeout_s,
        calibration,
        requires: raw.requires,
        cache,
    })
}

fn calibration_default() -> bool {
    true
}

/// The `judge_*` keys: required model in the judge modes, and none of them in `rules` mode, where
/// they would silently do nothing.
fn judge_model(raw: &RawScoreStage, mode: ScoreMode) -> Result<Option<JudgeModel>, String> {
    if mode == ScoreMode::Rules {
        let set = [
            ("judge_model", raw.judge_model.is_some()),
            ("judge_template", raw.judge_template.is_some()),
            ("judge_max_new_tokens", raw.judge_max_new_tokens.is_some()),
            ("judge_seeds", raw.judge_seeds.is_some()),
            ("judge_cpu_requantize", raw.judge_cpu_requantize.is_some()),
            ("judge_endpoint", raw.judge_endpoint.is_some()),
            ("judge_api_key_file", raw.judge_api_key_file.is_some()),
            ("judge_timeout", raw.judge_timeout.is_some()),
            ("judge_retries", raw.judge_retries.is_some()),
            ("judge_concurrency", raw.judge_concurrency.is_some()),
        ];
        return match set.iter().find(|(_, present)| *present) {
            Some((key, _)) => Err(format!(
                "`score.{key}` is set but `score.mode` is \"rules\": use \"judge\", \"both\" or \"pairwise\""
            )),
            None => Ok(None),
        };
    }
    let server = judge_server(raw)?;
    let model = match raw.judge_model.as_deref().map(str::trim) {
        Some(m) if !m.is_empty() => m.to_owned(),
        _ if server.is_some() => {
            return Err(
                "`score.judge_model` must name the model the judge server `score.judge_endpoint` serves".to_owned()
            );
        }
        _ => {
            return Err(
                "`score.judge_model` must name a cached model or a path when `score.mode` is judge, both or pairwise"
                    .to_owned(),
            );
        }
    };
    if let Some(t) = &raw.judge_template
        && !TEMPLATE_NAMES.contains(&t.as_str())
    {
        return Err(format!("`score.judge_template` = {t:?} is not one of {}", TEMPLATE_NAMES.join(", ")));
    }
    let max_new_tokens = raw.judge_max_new_tokens.unwrap_or(DEFAULT_JUDGE_MAX_NEW_TOKENS);
    if !(1..=32768).contains(&max_new_tokens) {
        return Err(format!("`score.judge_max_new_tokens` = {max_new_tokens} must be at least 1 and at most 32768"));
    }
    let seeds = match raw.judge_seeds.as_deref() {
        None => DEFAULT_JUDGE_SEEDS,
        Some(&[a, b]) if a != b => [a, b],
        Some(other) => return Err(format!("`score.judge_seeds` = {other:?} must be two different seeds")),
    };
    Ok(Some(JudgeModel {
        model,
        template: raw.judge_template.clone(),
        cpu_requantize: raw.judge_cpu_requantize,
        max_new_tokens,
        seeds,
        server,
    }))
}

/// The `judge_endpoint` keys. A judge server and an in-process judge model exclude each other:
/// the in-process keys are errors beside `judge_endpoint`, the server's keys errors without it.
fn judge_server(raw: &RawScoreStage) -> Result<Option<JudgeServer>, String> {
    let Some(endpoint) = &raw.judge_endpoint else {
        let server_keys = [
            ("judge_api_key_file", raw.judge_api_key_file.is_some()),
            ("judge_timeout", raw.judge_timeout.is_some()),
            ("judge_retries", raw.judge_retries.is_some()),
            ("judge_concurrency", raw.judge_concurrency.is_some()),
        ];
        return match server_keys.iter().find(|(_, present)| *present) {
            Some((key, _)) => Err(format!(
                "`score.{key}` is set but `score.judge_endpoint` is not: it applies to a judge server only"
            )),
            None => Ok(None),
        };
    };
    let endpoint = judge_endpoint(endpoint)?;
    let in_process = [
        ("judge_template", raw.judge_template.is_some()),
        ("judge_cpu_requantize", raw.judge_cpu_requantize.is_some()),
    ];
    if let Some((key, _)) = in_process.iter().find(|(_, present)| *present) {
        return Err(format!(
            "`score.{key}` applies to an in-process judge model, not to the judge server `score.judge_endpoint` = \
             {endpoint:?}: the server applies its own template and weights"
        ));
    }
    let api_key_file = match raw.judge_api_key_file.as_deref() {
        Some(p) if p.trim().is_empty() => {
            return Err("`score.judge_api_key_file` must be a path on the agent, not empty".to_owned());
        }
        other => other.map(str::to_owned),
    };
    let timeout_s = match raw.judge_timeout.as_deref() {
        None => DEFAULT_JUDGE_TIMEOUT_S,
        Some(t) => humantime::parse_duration(t)
            .map_err(|e| format!("`score.judge_timeout` = {t:?} is not a duration such as \"60s\" or \"2m\": {e}"))?
            .as_secs(),
    };
    if !(1..=MAX_JUDGE_TIMEOUT_S).contains(&timeout_s) {
        let t = raw.judge_timeout.as_deref().unwrap_or_default();
        return Err(format!("`score.judge_timeout` = {t:?} must be at least 1s and at most 1h"));
    }
    let retries = raw.judge_retries.unwrap_or(DEFAULT_JUDGE_RETRIES);
    if retries > MAX_JUDGE_RETRIES {
        return Err(format!("`score.judge_retries` = {retries} must be at most {MAX_JUDGE_RETRIES}"));
    }
    let concurrency = raw.judge_concurrency.unwrap_or(DEFAULT_JUDGE_CONCURRENCY);
    if !(1..=MAX_JUDGE_CONCURRENCY).contains(&concurrency) {
        return Err(format!(
            "`score.judge_concurrency` = {concurrency} must be at least 1 and at most {MAX_JUDGE_CONCURRENCY}"
        ));
    }
    Ok(Some(JudgeServer { endpoint, api_key_file, timeout_s, retries, concurrency }))
}

/// An `http(s)://host[:port][/path]` base URL, returned without its trailing slash. Credentials in
/// the URL are refused: they would be logged with it.
fn judge_endpoint(raw: &str) -> Result<String, String> {
    let bad = |why: &str| format!("`score.judge_endpoint` = {raw:?} {why}");
    let uri: http::Uri = raw.trim().parse().map_err(|e| bad(&format!("is not a URL: {e}")))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(bad(&format!("has scheme {other:?}: use http or https"))),
        None => return Err(bad("has no scheme: write it as http://host:port/v1")),
    }
    let Some(authority) = uri.authority().filter(|a| !a.host().is_empty()) else {
        return Err(bad("has no host"));
    };
    if authority.as_str().contains('@') {
        return Err(bad("carries credentials: put the key in a file named by `score.judge_api_key_file`"));
    }
    if uri.query().is_some() {
        return Err(bad("has a query: give the base URL, e.g. http://host:port/v1"));
    }
    if uri.path().ends_with("/chat/completions") || uri.path().ends_with("/chat/completions/") {
        return Err(bad("ends in /chat/completions: give the base URL, e.g. http://host:port/v1"));
    }
    Ok(raw.trim().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use crate::spec::PhaseSpec;

    const SPEC: &str = "experiment = \"e\"\nphase = \"1\"\n[eval]\nmodel = \"m\"\nsuite = \"s.toml\"\n";

    #[test]
    fn eval_timeout_defaults_parses_and_names_its_key() {
        let spec = PhaseSpec::parse(SPEC, "p.toml").unwrap();
        assert_eq!(spec.eval.unwrap().timeout_s, crate::spec::DEFAULT_TIMEOUT.as_secs());
        let spec = PhaseSpec::parse(&format!("{SPEC}timeout = \"20m\"\n"), "p.toml").unwrap();
        assert_eq!(spec.eval.unwrap().timeout_s, 1200);
        for bad in ["\"soon\"", "\"0s\""] {
            let msg = PhaseSpec::parse(&format!("{SPEC}timeout = {bad}\n"), "p.toml").unwrap_err().to_string();
            assert!(msg.contains("eval.timeout") && msg.contains("p.toml"), "{bad}: {msg}");
        }
    }

    #[test]
    fn score_calibration_defaults_to_true_and_is_strict() {
        let spec = PhaseSpec::parse(&format!("{SPEC}[score]\n"), "p.toml").unwrap();
        assert!(spec.score.unwrap().calibration);
        let spec = PhaseSpec::parse(&format!("{SPEC}[score]\ncalibration = false\n"), "p.toml").unwrap();
        assert!(!spec.score.unwrap().calibration);
        let msg =
            PhaseSpec::parse(&format!("{SPEC}[score]\ncalibration = \"no\"\n"), "p.toml").unwrap_err().to_string();
        assert!(msg.contains("calibration"), "{msg}");
        let msg = PhaseSpec::parse(&format!("{SPEC}[score]\ncalibrate = false\n"), "p.toml").unwrap_err().to_string();
        assert!(msg.contains("calibrate"), "{msg}");
    }

    #[test]
    fn score_timeout_defaults_parses_and_names_its_key() {
        let spec = PhaseSpec::parse(&format!("{SPEC}[score]\n"), "p.toml").unwrap();
        assert_eq!(spec.score.unwrap().timeout_s, crate::spec::DEFAULT_TIMEOUT.as_secs());
        let spec = PhaseSpec::parse(&format!("{SPEC}[score]\ntimeout = \"90m\"\n"), "p.toml").unwrap();
        assert_eq!(spec.score.unwrap().timeout_s, 5400);
        let msg = PhaseSpec::parse(&format!("{SPEC}[score]\ntimeout = \"later\"\n"), "p.toml").unwrap_err().to_string();
        assert!(msg.contains("score.timeout") && msg.contains("p.toml"), "{msg}");
    }

    #[test]
    fn a_judge_can_ask_for_a_gpu_and_the_score_stage_is_placed_by_it() {
        let judge = "[score]\nmode = \"judge\"\njudge_model = \"j\"\nrequires = { gpu = true, vram_mib = 6000 }\n";
        let spec = PhaseSpec::parse(&format!("{SPEC}{judge}"), "p.toml").unwrap();
        let plans = spec.stages();
        let score = plans.iter().find(|p| p.stage == crate::domain::Stage::Score).unwrap();
        assert!(score.requires.gpu);
        assert_eq!(score.requires.vram_mib, 6000);
        let rules_on_gpu = "[score]\nrequires = { gpu = true }\n";
        let msg = PhaseSpec::parse(&format!("{SPEC}{rules_on_gpu}"), "p.toml").unwrap_err().to_string();
        assert!(msg.contains("score.requires") && msg.contains("judge"), "{msg}");
    }
}
