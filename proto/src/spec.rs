//! The TOML phase spec that `phasegate submit` sends and the coordinator turns into a run.
//!
//! Unknown keys are errors that name the key and the file. The spec is a small DAG of stages
//! (lint → finetune → eval → score → gate); each present stage depends on the present stages
//! before it.
//! `[finetune]` is optional when `[eval]` is present (an eval of a base model); `[score]` needs
//! `[eval]`; `[gate]` needs an earlier stage and reads the score files by default.

mod eval;
mod lint;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::domain::{Priority, Requirements, Stage};

pub use eval::{
    AcceptedResponses, DEFAULT_JUDGE_CONCURRENCY, DEFAULT_JUDGE_MAX_NEW_TOKENS, DEFAULT_JUDGE_RETRIES,
    DEFAULT_JUDGE_SEEDS, DEFAULT_JUDGE_TIMEOUT_S, EvalGeneration, EvalStage, JobWork, JudgeModel, JudgeServer,
    PenaltyScope, Requantize, ScoreMode, ScoreStage, StageJob, TEMPLATE_NAMES,
};
pub use lint::{AcceptedDataset, DEFAULT_LINT_TIMEOUT_S, LINT_REPORT_JSON, LINT_REPORT_MD, LintOutcome, LintStage};

/// A spec that could not be read or accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to parse spec {path}: {message}")]
pub struct SpecError {
    pub path: String,
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    experiment: String,
    phase: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    parent: Option<String>,
    #[serde(default)]
    priority: Option<Priority>,
    #[serde(default)]
    lint: Option<lint::RawLintStage>,
    #[serde(default)]
    finetune: Option<RawCommandStage>,
    #[serde(default)]
    eval: Option<eval::RawEvalStage>,
    #[serde(default)]
    score: Option<eval::RawScoreStage>,
    #[serde(default)]
    gate: Option<RawGateStage>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateStage {
    config: String,
    #[serde(default)]
    results: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommandStage {
    command: Vec<String>,
    #[serde(default)]
    requires: Requirements,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    metrics: Vec<String>,
    #[serde(default)]
    artifacts: Vec<String>,
    #[serde(default)]
    cache: Option<bool>,
}

/// A validated phase spec.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseSpec {
    pub experiment: String,
    pub phase: String,
    pub description: String,
    pub parent: Option<String>,
    pub priority: Priority,
    pub lint: Option<LintStage>,
    pub finetune: Option<CommandStage>,
    pub eval: Option<EvalStage>,
    pub score: Option<ScoreStage>,
    pub gate: Option<GateStage>,
}

/// The gate stage, run by the coordinator once every earlier stage succeeded: import the results
/// the earlier stages uploaded as artifacts, judge them against the experiment's accepted history,
/// store verdict and report with the run.
#[derive(Debug, Clone, PartialEq)]
pub struct GateStage {
    /// Path of the `gate.toml`, relative to the spec's directory (it travels in the source bundle).
    pub config: String,
    /// Globs over the artifact names of earlier stages (paths relative to the job directory, e.g.
    /// `output/eval_rubric.json`); the files they match are imported as the candidate's results.
    /// With a `[score]` stage and no `results`, [`DEFAULT_SCORED_RESULTS`].
    pub results: Vec<String>,
}

/// A stage that runs an external command on an agent (the fine-tune path for HF/PEFT scripts).
#[derive(Debug, Clone, PartialEq)]
pub struct CommandStage {
    pub command: Vec<String>,
    pub requires: Requirements,
    pub timeout: Duration,
    pub env: BTreeMap<String, String>,
    pub metrics: Vec<String>,
    pub artifacts: Vec<String>,
    /// `cache` (default true): an earlier succeeded job with the same inputs stands in for this
    /// stage. `false` always runs it (a command with side effects or a non-deterministic one).
    pub cache: bool,
}

/// One node of the run's DAG.
#[derive(Debug, Clone, PartialEq)]
pub struct StagePlan {
    pub stage: Stage,
    pub depends_on: Vec<Stage>,
    pub requires: Requirements,
    pub work: StageWork,
    /// The stage's `cache` key (false for the gate, which always judges against today's history).
    pub cache: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StageWork {
    Lint(LintStage),
    Command(CommandStage),
    Eval(EvalStage),
    Score(ScoreStage),
    Gate(GateStage),
}

/// Default timeout of a command stage when the spec gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// The longest duration a spec may give (30 days): anything longer is a typo, and durations are
/// sent on as milliseconds, where a larger value would wrap.
pub const MAX_SPEC_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Artifact names the eval and score stages upload.
pub const EVAL_RESPONSES: &str = "eval/responses.json";
pub const SCORES: &str = "score/scores.json";
/// The key of a judge-mode scores file that lists the accepted phases the judge scored too
/// (`ScoreStage::rescore`), each in the scores file's own shape.
pub const RESCORED_BASELINES: &str = "rescored_baselines";
/// What `[gate]` imports when a `[score]` stage is present and `results` is not given: the
/// per-dimension scores, and the responses (truncation flags, seeds, generation parameters,
/// environment).
pub const DEFAULT_SCORED_RESULTS: [&str; 2] = [SCORES, EVAL_RESPONSES];

impl PhaseSpec {
    /// Parses and validates spec text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &str) -> Result<Self, SpecError> {
        let err = |message: String| SpecError { path: path.to_owned(), message };
        let raw: RawSpec = toml::from_str(text).map_err(|e| err(e.to_string().trim_end().to_owned()))?;
        check_name("experiment", &raw.experiment).map_err(err)?;
        check_name("phase", &raw.phase).map_err(err)?;
        let finetune = raw.finetune.map(|s| command_stage("finetune", s)).transpose().map_err(err)?;
        let eval = raw.eval.map(eval::eval_stage).transpose().map_err(err)?;
        check_order(finetune.is_some(), eval.as_ref(), raw.score.is_some()).map_err(err)?;
        let score = raw
            .score
            .map(|s| eval::score_stage(s, eval.as_ref().map(|e| e.suite.as_str())))
            .transpose()
            .map_err(err)?;
        let gate = raw.gate.map(|g| gate_stage(g, score.is_some())).transpose().map_err(err)?;
        let lint = raw
            .lint
            .map(|l| {
                lint::lint_stage(
                    l,
                    eval.as_ref().map(|e| e.suite.as_str()),
                    eval.as_ref().map(|e| e.model.as_str()),
                    gate.as_ref().map(|g| g.config.as_str()),
                )
            })
            .transpose()
            .map_err(err)?;
        if gate.is_some() && finetune.is_none() && eval.is_none() {
            return Err(err("the [gate] stage needs an earlier stage whose artifacts hold the results: \
                 add a [finetune] or an [eval] section"
                .to_owned()));
        }
        let spec = Self {
            experiment: raw.experiment,
            phase: raw.phase,
            description: raw.description,
            parent: raw.parent,
            priority: raw.priority.unwrap_or(Priority::Manual),
            lint,
            finetune,
            eval,
            score,
            gate,
        };
        if spec.stages().is_empty() {
            return Err(err("the spec has no stage: add a [lint], [finetune] or [eval] section".to_owned()));
        }
        Ok(spec)
    }

    /// The JSON an agent receives for a non-command stage (`Assignment.stage_json`).
    pub fn stage_job(&self, work: &StageWork) -> Option<StageJob> {
        let work = match work {
            StageWork::Lint(l) => JobWork::Lint(l.clone()),
            StageWork::Eval(e) => JobWork::Eval(e.clone()),
            StageWork::Score(s) => JobWork::Score(s.clone()),
            StageWork::Command(_) | StageWork::Gate(_) => return None,
        };
        Some(StageJob { experiment: self.experiment.clone(), phase: self.phase.clone(), work })
    }

    /// The stages of the run in dependency order.
    pub fn stages(&self) -> Vec<StagePlan> {
        let mut plans: Vec<StagePlan> = Vec::new();
        if let Some(lint) = &self.lint {
            // No GPU: the lint reads files and a tokenizer, and must never wait for a GPU agent.
            plans.push(StagePlan {
                stage: Stage::Lint,
                depends_on: Vec::new(),
                requires: Requirements::default(),
                work: StageWork::Lint(lint.clone()),
                cache: lint.cache,
            });
        }
        if let Some(ft) = &self.finetune {
            plans.push(StagePlan {
                stage: Stage::Finetune,
                depends_on: plans.iter().map(|p| p.stage).collect(),
                requires: ft.requires.clone(),
                work: StageWork::Command(ft.clone()),
                cache: ft.cache,
            });
        }
        if let Some(eval) = &self.eval {
            plans.push(StagePlan {
                stage: Stage::Eval,
                depends_on: plans.iter().map(|p| p.stage).collect(),
                requires: eval.requires.clone(),
                work: StageWork::Eval(eval.clone()),
                cache: eval.cache,
            });
        }
        if let Some(score) = &self.score {
            plans.push(StagePlan {
                stage: Stage::Score,
                depends_on: plans.iter().map(|p| p.stage).collect(),
                requires: score.requires.clone(),
                work: StageWork::Score(score.clone()),
                cache: score.cache,
            });
        }
        if let Some(gate) = &self.gate {
            plans.push(StagePlan {
                stage: Stage::Gate,
                depends_on: plans.iter().map(|p| p.stage).collect(),
                requires: Requirements::default(),
                work: StageWork::Gate(gate.clone()),
                cache: false,
            });
        }
        plans
    }
}

fn relative_path(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || value.starts_with('/') || value.split('/').any(|p| p == "..") {
        return Err(format!("{what} {value:?} must be a relative path inside the spec's directory"));
    }
    Ok(())
}

/// Stages that need an earlier one: an adapter needs the fine-tune, the score needs the eval.
fn check_order(finetune: bool, eval: Option<&EvalStage>, score: bool) -> Result<(), String> {
    if eval.is_some_and(|e| e.adapter.is_some()) && !finetune {
        return Err("`eval.adapter` names artifacts of the [finetune] stage, but the spec has none".to_owned());
    }
    if score && eval.is_none() {
        return Err("the [score] stage scores the answers of an [eval] stage: add an [eval] section".to_owned());
    }
    Ok(())
}

fn gate_stage(raw: RawGateStage, scored: bool) -> Result<GateStage, String> {
    relative_path("`gate.config`", &raw.config)?;
    let results = match raw.results {
        Some(r) => r,
        None if scored => DEFAULT_SCORED_RESULTS.iter().map(|s| (*s).to_owned()).collect(),
        None => {
            return Err("`gate.results` is required without a [score] stage: list the result files' globs".to_owned());
        }
    };
    if results.is_empty() {
        return Err("`gate.results` must list at least one glob of result files".to_owned());
    }
    for (i, glob) in results.iter().enumerate() {
        relative_path(&format!("`gate.results[{i}]` glob"), glob)?;
        globset::Glob::new(glob).map_err(|e| format!("`gate.results[{i}]` glob {glob:?} is not a valid glob: {e}"))?;
    }
    Ok(GateStage { config: raw.config, results })
}

fn check_name(key: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 100
        && value.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("`{key}` = {value:?} must be 1-100 characters of letters, digits, '.', '_' or '-'"))
    }
}

/// A duration the spec gives at `key`: humantime syntax, above zero and at most
/// [`MAX_SPEC_DURATION`].
pub(crate) fn spec_duration(key: &str, value: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(value)
        .map_err(|e| format!("`{key}` = {value:?} is not a duration such as \"2h\" or \"90m\": {e}"))?;
    if d.is_zero() {
        return Err(format!("`{key}` = {value:?} must be positive"));
    }
    if d > MAX_SPEC_DURATION {
        return Err(format!("`{key}` = {value:?} is longer than the limit of 30 days"));
    }
    Ok(d)
}

/// Globs the agent matches in the job directory, compiled as it compiles them (a `/` is never
/// matched by `*`), so a bad one fails the submission, not the job after it ran.
fn check_job_globs(key: &str, globs: &[String]) -> Result<(), String> {
    for (i, glob) in globs.iter().enumerate() {
        if glob.starts_with('/') || glob.split('/').any(|p| p == "..") {
            return Err(format!("`{key}[{i}]`: glob {glob:?} must be relative to the job directory"));
        }
        globset::GlobBuilder::new(glob)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("`{key}[{i}]`: invalid glob {glob:?}: {e}"))?;
    }
    Ok(())
}

fn command_stage(section: &str, raw: RawCommandStage) -> Result<CommandStage, String> {
    if raw.command.is_empty() || raw.command[0].is_empty() {
        return Err(format!("`{section}.command` must name a program"));
    }
    let timeout = match raw.timeout.as_deref() {
        None => DEFAULT_TIMEOUT,
        Some(t) => spec_duration(&format!("{section}.timeout"), t)?,
    };
    if raw.requires.vram_mib > 0 && !raw.requires.gpu {
        return Err(format!("`{section}.requires.vram_mib` is set but `gpu` is false"));
    }
    check_job_globs(&format!("{section}.metrics"), &raw.metrics)?;
    check_job_globs(&format!("{section}.artifacts"), &raw.artifacts)?;
    Ok(CommandStage {
        command: raw.command,
        requires: raw.requires,
        timeout,
        env: raw.env,
        metrics: raw.metrics,
        artifacts: raw.artifacts,
        cache: raw.cache.unwrap_or(true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
experiment = "persona-v1"
phase = "10"
description = "max_length back to 512, 8 epochs"
priority = "pr"

[finetune]
command = ["python3", "train.py", "--epochs", "8"]
requires = { gpu = true, vram_mib = 2500, labels = ["cuda"] }
timeout = "2h"
env = { PYTHONUNBUFFERED = "1" }
metrics = ["output/**/trainer_state.json"]
artifacts = ["output/**/adapter/**"]
"#;

    #[test]
    fn parses_the_documented_example() {
        let spec = PhaseSpec::parse(SPEC, "phase.toml").unwrap();
        assert_eq!(spec.experiment, "persona-v1");
        assert_eq!(spec.priority, Priority::Pr);
        let ft = spec.finetune.as_ref().unwrap();
        assert_eq!(ft.timeout, Duration::from_secs(7200));
        assert_eq!(ft.requires.vram_mib, 2500);
        assert!(ft.requires.labels.contains("cuda"));
        assert_eq!(spec.stages().len(), 1);
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let text = SPEC.replace("timeout = \"2h\"", "timeout = \"2h\"\nepochs = 3");
        let err = PhaseSpec::parse(&text, "exp/phase.toml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("exp/phase.toml"), "{msg}");
        assert!(msg.contains("epochs"), "{msg}");
    }

    #[test]
    fn bad_timeout_is_named() {
        let text = SPEC.replace("\"2h\"", "\"soon\"");
        let msg = PhaseSpec::parse(&text, "p.toml").unwrap_err().to_string();
        assert!(msg.contains("finetune.timeout") && msg.contains("soon"), "{msg}");
    }

    #[test]
    fn absurd_or_overflowing_durations_are_errors_not_wrapped() {
        for t in ["18446744073709552s", "31days", "0s"] {
            let text = SPEC.replace("\"2h\"", &format!("{t:?}"));
            let msg = PhaseSpec::parse(&text, "p.toml").unwrap_err().to_string();
            assert!(msg.contains("`finetune.timeout`") && msg.contains(t), "{msg}");
        }
        let text = SPEC.replace("\"2h\"", "\"30days\"");
        assert_eq!(PhaseSpec::parse(&text, "p.toml").unwrap().finetune.unwrap().timeout, MAX_SPEC_DURATION);
        let eval = "[eval]\nmodel = \"m\"\nsuite = \"suite.json\"\ntimeout = \"18446744073709552s\"\n";
        let text = format!("experiment = \"e\"\nphase = \"1\"\n{eval}");
        let msg = PhaseSpec::parse(&text, "p.toml").unwrap_err().to_string();
        assert!(msg.contains("`eval.timeout`") && msg.contains("longer than the limit of 30 days"), "{msg}");
    }

    #[test]
    fn bad_metric_and_artifact_globs_are_named_at_parse_time() {
        let text = SPEC.replace("artifacts = [\"output/**/adapter/**\"]", "artifacts = [\"a/**\", \"out/[\"]");
        let msg = PhaseSpec::parse(&text, "p.toml").unwrap_err().to_string();
        assert!(msg.contains("`finetune.artifacts[1]`: invalid glob \"out/[\""), "{msg}");
        let text = SPEC.replace("metrics = [\"output/**/trainer_state.json\"]", "metrics = [\"{a,b\"]");
        let msg = PhaseSpec::parse(&text, "p.toml").unwrap_err().to_string();
        assert!(msg.contains("`finetune.metrics[0]`: invalid glob \"{a,b\""), "{msg}");
    }

    #[test]
    fn spec_without_stage_is_rejected() {
        let msg = PhaseSpec::parse("experiment = \"e\"\nphase = \"1\"\n", "p.toml").unwrap_err().to_string();
        assert!(msg.contains("no stage"), "{msg}");
    }

    #[test]
    fn gate_section_adds_a_gate_stage_after_the_others() {
        let text = format!("{SPEC}\n[gate]\nconfig = \"gate.toml\"\nresults = [\"output/eval_*.json\"]\n");
        let spec = PhaseSpec::parse(&text, "p.toml").unwrap();
        let gate = spec.gate.as_ref().unwrap();
        assert_eq!(gate.config, "gate.toml");
        let plans = spec.stages();
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[1].stage, Stage::Gate);
        assert_eq!(plans[1].depends_on, vec![Stage::Finetune]);
        assert!(!plans[1].requires.gpu);
    }

    #[test]
    fn gate_section_is_strict() {
        let cases = [
            ("config = \"gate.toml\"\nresults = [\"a.json\"]\nextra = 1", "extra"),
            ("config = \"../gate.toml\"\nresults = [\"a.json\"]", "gate.config"),
            ("config = \"gate.toml\"\nresults = []", "gate.results"),
            ("config = \"gate.toml\"\nresults = [\"a[.json\"]", "not a valid glob"),
            ("results = [\"a.json\"]", "config"),
        ];
        for (body, needle) in cases {
            let text = format!("{SPEC}\n[gate]\n{body}\n");
            let msg = PhaseSpec::parse(&text, "p.toml").unwrap_err().to_string();
            assert!(msg.contains(needle), "{body}: {msg}");
        }
        let alone = "experiment = \"e\"\nphase = \"1\"\n[gate]\nconfig = \"g.toml\"\nresults = [\"a\"]\n";
        let msg = PhaseSpec::parse(alone, "p.toml").unwrap_err().to_string();
        assert!(msg.contains("needs an earlier stage"), "{msg}");
    }

    const EVAL_ONLY: &str = r#"
experiment = "persona-v1"
phase = "10-smollm2"

[eval]
model = "smollm2-135m-instruct"
suite = "suite.toml"
template = "chatml"
cpu_requantize = "q8_0"
max_new_tokens = 150
temperature = 0.7
top_p = 0.9
top_k = 40
repetition_penalty = 1.1
repetition_penalty_scope = "generated"
samples = 3
seed = 7
max_batch = 24

[score]
mode = "rules"

[gate]
config = "gate.toml"
"#;

    #[test]
    fn lint_runs_first_without_a_gpu_and_takes_suite_model_and_config_from_the_other_sections() {
        let text = format!("{EVAL_ONLY}\n[lint]\ndatasets = [\"data/train.jsonl\"]\nmax_length = 512\n");
        let spec = PhaseSpec::parse(&text, "p.toml").unwrap();
        let lint = spec.lint.as_ref().unwrap();
        assert_eq!(lint.suite.as_deref(), Some("suite.toml"));
        assert_eq!(lint.config.as_deref(), Some("gate.toml"));
        assert_eq!(lint.model.as_deref(), Some("smollm2-135m-instruct"));
        assert_eq!(lint.timeout_s, DEFAULT_LINT_TIMEOUT_S);
        let plans = spec.stages();
        assert_eq!(plans[0].stage, Stage::Lint);
        assert!(plans[0].depends_on.is_empty() && !plans[0].requires.gpu);
        assert!(plans[1..].iter().all(|p| p.depends_on.contains(&Stage::Lint)), "{plans:?}");
        let job = spec.stage_job(&plans[0].work).unwrap();
        assert_eq!(StageJob::from_json(&job.to_json()).unwrap(), job);
        // A lint alone is a whole run: the data is checked before anything else exists.
        let alone = PhaseSpec::parse("experiment = \"e\"\nphase = \"1\"\n[lint]\ndatasets = [\"a.jsonl\"]\n", "p.toml");
        let alone = alone.unwrap();
        assert_eq!(alone.stages().len(), 1);
        assert_eq!(alone.lint.unwrap().suite, None);
    }

    #[test]
    fn bad_lint_keys_are_named() {
        for (section, expected) in [
            ("datasets = []", "`lint.datasets` must list"),
            ("datasets = [\"../train.jsonl\"]", "`lint.datasets[0]`"),
            ("datasets = [\"a.jsonl\"]\nmax_length = 0", "`lint.max_length` = 0"),
            ("datasets = [\"a.jsonl\"]\ntemplate = \"llama9\"", "`lint.template` = \"llama9\""),
            ("datasets = [\"a.jsonl\"]\nbaseline = [\"/abs.jsonl\"]", "`lint.baseline[0]`"),
            ("datasets = [\"a.jsonl\"]\nepochs = 3", "epochs"),
        ] {
            let text = format!("experiment = \"e\"\nphase = \"1\"\n[lint]\n{section}\n");
            let msg = PhaseSpec::parse(&text, "p.toml").unwrap_err().to_string();
            assert!(msg.contains(expected) && msg.contains("p.toml"), "{section}: {msg}");
        }
    }

    #[test]
    fn eval_score_gate_without_finetune_form_a_chain() {
        let spec = PhaseSpec::parse(EVAL_ONLY, "p.toml").unwrap();
        let eval = spec.eval.as_ref().unwrap();
        assert_eq!((eval.model.as_str(), eval.suite.as_str()), ("smollm2-135m-instruct", "suite.toml"));
        assert_eq!(eval.cpu_requantize, Some(Requantize::Q8_0));
        assert_eq!(eval.generation.samples, Some(3));
        assert_eq!(eval.generation.repetition_penalty_scope, PenaltyScope::Generated);
        assert_eq!(spec.score.as_ref().unwrap().suite, "suite.toml");
        assert_eq!(spec.gate.as_ref().unwrap().results, DEFAULT_SCORED_RESULTS.map(str::to_owned));
        let plans = spec.stages();
        let order: Vec<(Stage, Vec<Stage>)> = plans.iter().map(|p| (p.stage, p.depends_on.clone())).collect();
        assert_eq!(
            order,
            [(Stage::Eval, vec![]), (Stage::Score, vec![Stage::Eval]), (Stage::Gate, vec![Stage::Eval, Stage::Score]),]
        );
    }

    #[test]
    fn finetune_eval_score_depend_in_order() {
        let text =
            format!("{SPEC}\n[eval]\nmodel = \"m\"\nsuite = \"s.toml\"\nadapter = \"output/adapter/\"\n[score]\n");
        let spec = PhaseSpec::parse(&text, "p.toml").unwrap();
        assert_eq!(spec.eval.as_ref().unwrap().adapter.as_deref(), Some("output/adapter"));
        let plans = spec.stages();
        assert_eq!(plans[1].depends_on, vec![Stage::Finetune]);
        assert_eq!(plans[2].depends_on, vec![Stage::Finetune, Stage::Eval]);
    }

    #[test]
    fn stage_job_round_trips_as_json() {
        let spec = PhaseSpec::parse(EVAL_ONLY, "p.toml").unwrap();
        let plans = spec.stages();
        let job = spec.stage_job(&plans[0].work).unwrap();
        let back = StageJob::from_json(&job.to_json()).unwrap();
        assert_eq!(back, job);
        assert_eq!(back.phase, "10-smollm2");
        assert!(matches!(back.work, JobWork::Eval(_)));
        assert!(matches!(spec.stage_job(&plans[1].work).unwrap().work, JobWork::Score(_)));
        assert!(spec.stage_job(&plans[2].work).is_none());
        let err = StageJob::from_json("{\"experiment\": \"e\"}").unwrap_err();
        assert_eq!(err.field, "stage_json");
    }

    #[test]
    fn eval_and_score_sections_are_strict() {
        let cases = [
            ("max_new_tokens = 150", "max_new_tokens = 150\nbeams = 4", "beams"),
            ("max_new_tokens = 150", "max_new_tokens = 0", "eval.max_new_tokens"),
            ("top_p = 0.9", "top_p = 1.5", "eval.top_p"),
            ("temperature = 0.7", "temperature = -1.0", "eval.temperature"),
            ("samples = 3", "samples = 0", "eval.samples"),
            ("template = \"chatml\"", "template = \"alpaca\"", "eval.template"),
            ("cpu_requantize = \"q8_0\"", "cpu_requantize = \"q2_k\"", "q2_k"),
            ("\"generated\"", "\"prompt\"", "prompt"),
            ("suite = \"suite.toml\"", "suite = \"../suite.toml\"", "eval.suite"),
            ("model = \"smollm2-135m-instruct\"", "model = \"\"", "eval.model"),
            ("mode = \"rules\"", "mode = \"judge\"", "score.judge_model"),
            ("mode = \"rules\"", "mode = \"both\"", "score.judge_model"),
            ("mode = \"rules\"", "mode = \"vibes\"", "score.mode"),
            ("mode = \"rules\"", "mode = \"rules\"\nextra = 1", "extra"),
        ];
        for (old, new, needle) in cases {
            assert!(EVAL_ONLY.contains(old), "{old}");
            let msg = PhaseSpec::parse(&EVAL_ONLY.replace(old, new), "p.toml").unwrap_err().to_string();
            assert!(msg.contains(needle) && msg.contains("p.toml"), "{new}: {msg}");
        }
    }

    /// `EVAL_ONLY` with its `[score]` section's `mode = "rules"` replaced by `body`.
    fn with_score(body: &str) -> String {
        EVAL_ONLY.replace("[score]\nmode = \"rules\"\n", &format!("[score]\n{body}\n"))
    }

    #[test]
    fn judge_modes_take_a_judge_model_with_defaults() {
        for (mode, expected) in [("judge", ScoreMode::Judge), ("both", ScoreMode::Both)] {
            let text = with_score(&format!("mode = \"{mode}\"\njudge_model = \"qwen2.5-1.5b-instruct\""));
            let spec = PhaseSpec::parse(&text, "p.toml").unwrap();
            let score = spec.score.as_ref().unwrap();
            assert_eq!(score.mode, expected);
            let judge = score.judge.as_ref().unwrap();
            assert_eq!(judge.model, "qwen2.5-1.5b-instruct");
            assert_eq!((judge.template.as_deref(), judge.cpu_requantize), (None, None));
            assert_eq!(judge.max_new_tokens, DEFAULT_JUDGE_MAX_NEW_TOKENS);
            assert_eq!(judge.seeds, DEFAULT_JUDGE_SEEDS);
        }
        let rules = PhaseSpec::parse(EVAL_ONLY, "p.toml").unwrap();
        assert_eq!(rules.score.as_ref().unwrap().judge, None);
    }

    #[test]
    fn judge_keys_are_read_and_travel_to_the_agent() {
        let text = with_score(
            "mode = \"both\"\njudge_model = \"models/judge.gguf\"\njudge_template = \"phi3\"\n\
             judge_max_new_tokens = 300\njudge_seeds = [7, 11]\njudge_cpu_requantize = \"q8_0\"",
        );
        let spec = PhaseSpec::parse(&text, "p.toml").unwrap();
        let expected = JudgeModel {
            model: "models/judge.gguf".into(),
            template: Some("phi3".into()),
            cpu_requantize: Some(Requantize::Q8_0),
            max_new_tokens: 300,
            seeds: [7, 11],
            server: None,
        };
        assert_eq!(spec.score.as_ref().unwrap().judge.as_ref(), Some(&expected));
        let plans = spec.stages();
        let job = StageJob::from_json(&spec.stage_job(&plans[1].work).unwrap().to_json()).unwrap();
        let JobWork::Score(score) = job.work else { panic!("not a score job") };
        assert_eq!(score.judge, Some(expected));
    }

    #[test]
    fn judge_keys_are_strict_and_named() {
        let judge = "mode = \"judge\"\njudge_model = \"j\"";
        let cases = [
            ("mode = \"judge\"\njudge_model = \"  \"".to_owned(), "score.judge_model"),
            (format!("{judge}\njudge_template = \"alpaca\""), "score.judge_template"),
            (format!("{judge}\njudge_max_new_tokens = 0"), "score.judge_max_new_tokens"),
            (format!("{judge}\njudge_seeds = [3, 3]"), "score.judge_seeds"),
            (format!("{judge}\njudge_seeds = [1]"), "score.judge_seeds"),
            (format!("{judge}\njudge_seeds = [1, 2, 3]"), "score.judge_seeds"),
            (format!("{judge}\njudge_cpu_requantize = \"q2_k\""), "q2_k"),
            (format!("{judge}\njudge_temperature = 0.2"), "judge_temperature"),
            ("mode = \"rules\"\njudge_model = \"j\"".to_owned(), "score.judge_model"),
            ("judge_seeds = [1, 2]".to_owned(), "score.judge_seeds"),
        ];
        for (body, needle) in cases {
            let msg = PhaseSpec::parse(&with_score(&body), "p.toml").unwrap_err().to_string();
            assert!(msg.contains(needle) && msg.contains("p.toml"), "{body}: {msg}");
        }
    }

    const SERVER_JUDGE: &str =
        "mode = \"judge\"\njudge_model = \"smollm2\"\njudge_endpoint = \"http://127.0.0.1:8080/v1/\"";

    #[test]
    fn a_judge_server_is_read_with_defaults_and_travels_to_the_agent() {
        let spec = PhaseSpec::parse(&with_score(SERVER_JUDGE), "p.toml").unwrap();
        let judge = spec.score.as_ref().unwrap().judge.clone().unwrap();
        let expected = JudgeServer {
            endpoint: "http://127.0.0.1:8080/v1".into(),
            api_key_file: None,
            timeout_s: DEFAULT_JUDGE_TIMEOUT_S,
            retries: DEFAULT_JUDGE_RETRIES,
            concurrency: DEFAULT_JUDGE_CONCURRENCY,
        };
        assert_eq!((judge.model.as_str(), judge.server.as_ref()), ("smollm2", Some(&expected)));
        let text = with_score(&format!(
            "{SERVER_JUDGE}\njudge_api_key_file = \"/etc/phasegate/judge.key\"\njudge_timeout = \"2m\"\n\
             judge_retries = 0\njudge_concurrency = 8"
        ));
        let spec = PhaseSpec::parse(&text, "p.toml").unwrap();
        let plans = spec.stages();
        let job = StageJob::from_json(&spec.stage_job(&plans[1].work).unwrap().to_json()).unwrap();
        let JobWork::Score(score) = job.work else { panic!("not a score job") };
        let server = score.judge.unwrap().server.unwrap();
        assert_eq!(
            server,
            JudgeServer {
                endpoint: "http://127.0.0.1:8080/v1".into(),
                api_key_file: Some("/etc/phasegate/judge.key".into()),
                timeout_s: 120,
                retries: 0,
                concurrency: 8,
            }
        );
    }

    #[test]
    fn judge_server_keys_are_strict_and_name_key_and_value() {
        let endpoint = |url: &str| format!("mode = \"judge\"\njudge_model = \"m\"\njudge_endpoint = \"{url}\"");
        let cases = [
            (endpoint("ftp://h/v1"), "`score.judge_endpoint` = \"ftp://h/v1\" has scheme \"ftp\""),
            (endpoint("localhost:8080/v1"), "`score.judge_endpoint` = \"localhost:8080/v1\""),
            (endpoint("http://user:pw@h/v1"), "carries credentials"),
            (endpoint("http://h/v1?x=1"), "has a query"),
            (endpoint("http://h/v1/chat/completions"), "ends in /chat/completions"),
            (endpoint("not a url"), "`score.judge_endpoint` = \"not a url\" is not a URL"),
            (
                "mode = \"judge\"\njudge_endpoint = \"http://h/v1\"".to_owned(),
                "`score.judge_model` must name the model",
            ),
            (format!("{SERVER_JUDGE}\njudge_template = \"phi3\""), "`score.judge_template` applies to an in-process"),
            (format!("{SERVER_JUDGE}\njudge_cpu_requantize = \"q8_0\""), "`score.judge_cpu_requantize` applies"),
            (format!("{SERVER_JUDGE}\njudge_timeout = \"soon\""), "`score.judge_timeout` = \"soon\""),
            (format!("{SERVER_JUDGE}\njudge_timeout = \"200ms\""), "`score.judge_timeout` = \"200ms\" must be"),
            (format!("{SERVER_JUDGE}\njudge_timeout = \"2h\""), "at most 1h"),
            (format!("{SERVER_JUDGE}\njudge_retries = 11"), "`score.judge_retries` = 11"),
            (format!("{SERVER_JUDGE}\njudge_concurrency = 0"), "`score.judge_concurrency` = 0"),
            (format!("{SERVER_JUDGE}\njudge_concurrency = 65"), "`score.judge_concurrency` = 65"),
            (format!("{SERVER_JUDGE}\njudge_api_key_file = \" \""), "`score.judge_api_key_file` must be a path"),
            (
                "mode = \"judge\"\njudge_model = \"j\"\njudge_retries = 2".to_owned(),
                "`score.judge_retries` is set but `score.judge_endpoint` is not",
            ),
            (
                "mode = \"both\"\njudge_model = \"j\"\njudge_api_key_file = \"k\"".to_owned(),
                "`score.judge_api_key_file` is set but",
            ),
            (
                "judge_endpoint = \"http://h/v1\"".to_owned(),
                "`score.judge_endpoint` is set but `score.mode` is \"rules\"",
            ),
        ];
        for (body, needle) in cases {
            let msg = PhaseSpec::parse(&with_score(&body), "p.toml").unwrap_err().to_string();
            assert!(msg.contains(needle) && msg.contains("p.toml"), "{body}: {msg}");
        }
    }

    #[test]
    fn pairwise_takes_a_judge_and_the_baseline_responses() {
        let body = "mode = \"pairwise\"\njudge_model = \"j\"\nbaseline_responses = \"baselines/9.json\"";
        let spec = PhaseSpec::parse(&with_score(body), "p.toml").unwrap();
        let score = spec.score.as_ref().unwrap();
        assert_eq!(score.mode, ScoreMode::Pairwise);
        assert_eq!(score.baseline_responses.as_deref(), Some("baselines/9.json"));
        assert_eq!(score.judge.as_ref().map(|j| j.model.as_str()), Some("j"));
        let plans = spec.stages();
        let job = StageJob::from_json(&spec.stage_job(&plans[1].work).unwrap().to_json()).unwrap();
        let JobWork::Score(sent) = job.work else { panic!("not a score job") };
        assert_eq!(sent.baseline_responses.as_deref(), Some("baselines/9.json"));
        // Without a file, the coordinator fills in the accepted phase's responses at submission.
        let spec = PhaseSpec::parse(&with_score("mode = \"pairwise\"\njudge_model = \"j\""), "p.toml").unwrap();
        let score = spec.score.as_ref().unwrap();
        assert_eq!((score.baseline_responses.as_ref(), score.accepted.as_ref()), (None, None));
        let cases = [
            ("mode = \"pairwise\"\nbaseline_responses = \"b.json\"", "`score.judge_model` must name"),
            (
                "mode = \"both\"\njudge_model = \"j\"\nbaseline_responses = \"b.json\"",
                "`score.baseline_responses` is set",
            ),
            (
                "mode = \"pairwise\"\njudge_model = \"j\"\nbaseline_responses = \"/abs/b.json\"",
                "score.baseline_responses",
            ),
            ("mode = \"pairs\"", "not one of rules, judge, both, pairwise"),
        ];
        for (body, needle) in cases {
            let msg = PhaseSpec::parse(&with_score(body), "p.toml").unwrap_err().to_string();
            assert!(msg.contains(needle) && msg.contains("p.toml"), "{body}: {msg}");
        }
    }

    #[test]
    fn stages_that_need_an_earlier_one_are_rejected() {
        let no_eval = "experiment = \"e\"\nphase = \"1\"\n[score]\nsuite = \"s.toml\"\n";
        let msg = PhaseSpec::parse(no_eval, "p.toml").unwrap_err().to_string();
        assert!(msg.contains("[score]") && msg.contains("[eval]"), "{msg}");
        let adapter =
            EVAL_ONLY.replace("suite = \"suite.toml\"", "suite = \"suite.toml\"\nadapter = \"output/adapter\"");
        let msg = PhaseSpec::parse(&adapter, "p.toml").unwrap_err().to_string();
        assert!(msg.contains("eval.adapter") && msg.contains("[finetune]"), "{msg}");
        let unscored = EVAL_ONLY.replace("[score]\nmode = \"rules\"\n", "");
        let msg = PhaseSpec::parse(&unscored, "p.toml").unwrap_err().to_string();
        assert!(msg.contains("gate.results"), "{msg}");
    }

    #[test]
    fn vram_without_gpu_is_rejected() {
        let text = SPEC.replace("gpu = true", "gpu = false");
        let msg = PhaseSpec::parse(&text, "p.toml").unwrap_err().to_string();
        assert!(msg.contains("requires.vram_mib"), "{msg}");
    }
}
