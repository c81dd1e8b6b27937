//! The TOML phase spec that `phasegate submit` sends and the coordinator turns into a run.
//!
//! Unknown keys are errors that name the key and the file. The spec is a small DAG of stages
//! (finetune → eval → score → gate); each present stage depends on the present stages before it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::domain::{Priority, Requirements, Stage};

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
    finetune: Option<RawCommandStage>,
    #[serde(default)]
    gate: Option<RawGateStage>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateStage {
    config: String,
    results: Vec<String>,
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
}

/// A validated phase spec.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseSpec {
    pub experiment: String,
    pub phase: String,
    pub description: String,
    pub parent: Option<String>,
    pub priority: Priority,
    pub finetune: Option<CommandStage>,
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
}

/// One node of the run's DAG.
#[derive(Debug, Clone, PartialEq)]
pub struct StagePlan {
    pub stage: Stage,
    pub depends_on: Vec<Stage>,
    pub requires: Requirements,
    pub work: StageWork,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StageWork {
    Command(CommandStage),
    Gate(GateStage),
}

/// Default timeout of a command stage when the spec gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

impl PhaseSpec {
    /// Parses and validates spec text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &str) -> Result<Self, SpecError> {
        let err = |message: String| SpecError { path: path.to_owned(), message };
        let raw: RawSpec = toml::from_str(text).map_err(|e| err(e.to_string().trim_end().to_owned()))?;
        check_name("experiment", &raw.experiment).map_err(err)?;
        check_name("phase", &raw.phase).map_err(err)?;
        let finetune = raw.finetune.map(|s| command_stage("finetune", s)).transpose().map_err(err)?;
        let gate = raw.gate.map(gate_stage).transpose().map_err(err)?;
        if gate.is_some() && finetune.is_none() {
            return Err(err("the [gate] stage needs an earlier stage whose artifacts hold the results: \
                 add a [finetune] section"
                .to_owned()));
        }
        let spec = Self {
            experiment: raw.experiment,
            phase: raw.phase,
            description: raw.description,
            parent: raw.parent,
            priority: raw.priority.unwrap_or(Priority::Manual),
            finetune,
            gate,
        };
        if spec.stages().is_empty() {
            return Err(err("the spec has no stage: add a [finetune] section".to_owned()));
        }
        Ok(spec)
    }

    /// The stages of the run in dependency order.
    pub fn stages(&self) -> Vec<StagePlan> {
        let mut plans: Vec<StagePlan> = Vec::new();
        if let Some(ft) = &self.finetune {
            plans.push(StagePlan {
                stage: Stage::Finetune,
                depends_on: Vec::new(),
                requires: ft.requires.clone(),
                work: StageWork::Command(ft.clone()),
            });
        }
        if let Some(gate) = &self.gate {
            plans.push(StagePlan {
                stage: Stage::Gate,
                depends_on: plans.iter().map(|p| p.stage).collect(),
                requires: Requirements::default(),
                work: StageWork::Gate(gate.clone()),
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

fn gate_stage(raw: RawGateStage) -> Result<GateStage, String> {
    relative_path("`gate.config`", &raw.config)?;
    if raw.results.is_empty() {
        return Err("`gate.results` must list at least one glob of result files".to_owned());
    }
    for glob in &raw.results {
        relative_path("`gate.results` glob", glob)?;
        globset::Glob::new(glob).map_err(|e| format!("`gate.results` glob {glob:?} is not a valid glob: {e}"))?;
    }
    Ok(GateStage { config: raw.config, results: raw.results })
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

fn command_stage(section: &str, raw: RawCommandStage) -> Result<CommandStage, String> {
    if raw.command.is_empty() || raw.command[0].is_empty() {
        return Err(format!("`{section}.command` must name a program"));
    }
    let timeout = match raw.timeout {
        None => DEFAULT_TIMEOUT,
        Some(t) => humantime::parse_duration(&t)
            .map_err(|e| format!("`{section}.timeout` = {t:?} is not a duration such as \"2h\" or \"90m\": {e}"))?,
    };
    if timeout.is_zero() {
        return Err(format!("`{section}.timeout` must be positive"));
    }
    if raw.requires.vram_mib > 0 && !raw.requires.gpu {
        return Err(format!("`{section}.requires.vram_mib` is set but `gpu` is false"));
    }
    for glob in raw.metrics.iter().chain(&raw.artifacts) {
        if glob.starts_with('/') || glob.split('/').any(|p| p == "..") {
            return Err(format!("`{section}` glob {glob:?} must be relative to the job directory"));
        }
    }
    Ok(CommandStage {
        command: raw.command,
        requires: raw.requires,
        timeout,
        env: raw.env,
        metrics: raw.metrics,
        artifacts: raw.artifacts,
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

    #[test]
    fn vram_without_gpu_is_rejected() {
        let text = SPEC.replace("gpu = true", "gpu = false");
        let msg = PhaseSpec::parse(&text, "p.toml").unwrap_err().to_string();
        assert!(msg.contains("requires.vram_mib"), "{msg}");
    }
}
