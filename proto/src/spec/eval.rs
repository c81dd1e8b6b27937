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
    requires: Requirements,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScoreStage {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    suite: Option<String>,
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
    /// Placement needs; they do not travel to the agent (the scheduler already used them).
    #[serde(skip)]
    pub requires: Requirements,
}

/// How the score stage scores answers. Only the deterministic rubric is implemented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoreMode {
    Rules,
}

/// The score stage: score every eval answer on the suite's rubric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreStage {
    pub mode: ScoreMode,
    /// The eval suite TOML, relative to the spec's directory (the eval stage's by default).
    pub suite: String,
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
#[expect(clippy::large_enum_variant, reason = "one value per assignment, parsed once: boxing buys nothing")]
pub enum JobWork {
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
        requires: raw.requires,
    })
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
        Some(m @ ("judge" | "both")) => {
            return Err(format!(
                "`score.mode` = {m:?} is not supported yet: the LLM judge is not wired into runs; use \"rules\""
            ));
        }
        Some(other) => return Err(format!("`score.mode` = {other:?} is not one of rules, judge, both")),
    };
    let suite = match (raw.suite, eval_suite) {
        (Some(s), _) => s,
        (None, Some(s)) => s.to_owned(),
        (None, None) => return Err("`score.suite` is required without an [eval] stage".to_owned()),
    };
    super::relative_path("`score.suite`", &suite)?;
    Ok(ScoreStage { mode, suite })
}
