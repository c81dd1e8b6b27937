//! The `[gate]` stage of a run, executed by the coordinator itself: read → decide → write.
//!
//! Read: the run's spec, the `gate.toml` from its source bundle, the earlier stages' artifacts that
//! match `results`, the finetune job's metrics and the experiment's accepted history. Decide: build
//! the candidate phase and call `gate_rules` (pure). Write: the candidate phase (not accepted,
//! linked to the run), the verdict, the report and the evaluation JSON.
//!
//! The job succeeds whenever a verdict was stored, FAIL included: the verdict is the run's judgement,
//! not its health. It fails only when the gate could not run (unreadable results, bad config).

use std::io::Read as _;
use std::path::{Path, PathBuf};

use gate_rules::data::LintReport;
use gate_rules::import::ImportError;
use gate_rules::report::GITHUB_COMMENT_LIMIT;
use gate_rules::{ConfigEntry, DatasetInfo, GateConfig, LossPoint, Phase};
use phasegate_proto::domain::{JobId, RunId, Stage};
use phasegate_proto::pb;
use phasegate_proto::spec::{GateStage, LINT_REPORT_JSON, PhaseSpec, RESCORED_BASELINES};

use crate::history::{accepted, decide};
use crate::rescore::Rescorer;
use crate::shell::{Shared, now_ms};
use crate::store::{JobRecord, JobResult, RunRecord, Store, StoreError, VerdictRecord};

/// Largest result file or gate.toml the gate reads.
const MAX_FILE_BYTES: u64 = 16 << 20;

/// Characters of the report kept for the "Data" section.
const DATA_SECTION_BUDGET: usize = 1500;

/// Why a gate stage could not produce a verdict; the job fails with this message.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GateStageError {
    #[error("run {0} does not exist")]
    NoRun(RunId),
    #[error("the run's spec has no [gate] section")]
    NoGateSection,
    #[error(transparent)]
    Spec(#[from] phasegate_proto::spec::SpecError),
    #[error("failed to read gate.config {path} from the source bundle {bundle}: {detail}")]
    Bundle { path: String, bundle: String, detail: String },
    #[error(transparent)]
    Config(#[from] gate_rules::ConfigError),
    #[error("no artifact of the earlier stages matches gate.results {globs:?} (artifacts: {names})")]
    NoResults { globs: Vec<String>, names: String },
    #[error("failed to read result artifact {name}: {detail}")]
    Artifact { name: String, detail: String },
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the gate task stopped: {0}")]
    Task(String),
}

/// Everything the decision needs, read before it.
#[derive(Debug)]
struct GateInput {
    spec: PhaseSpec,
    config: GateConfig,
    /// `(artifact name, text)` of every matching result file, in name order.
    results: Vec<(String, String)>,
    finetune: Option<pb::JobMetrics>,
    history: Vec<Phase>,
    /// The rules scorer of the run's suite (when the run has a score stage), to re-score
    /// baselines another instrument scored.
    rescorer: Option<Rescorer>,
    /// `(stage, run)` of each earlier stage whose results were reused from that run.
    cached: Vec<(String, i64)>,
    /// The lint stage's report, when the run has one.
    data: Option<LintReport>,
}

impl<S: Store> Shared<S> {
    /// Starts and runs every ready coordinator job (the gate) of every run, one at a time.
    pub(crate) async fn run_coordinator_jobs(&self) {
        for (run, job) in self.start_ready_coordinator_jobs().await {
            let outcome = self.run_gate(run).await;
            if let Err(e) = &outcome {
                tracing::warn!(run = %run, job = %job, error = %e, "gate stage failed");
            }
            let error = outcome.err().map(|e| e.to_string()).unwrap_or_default();
            let mut core = self.core.lock().await;
            match core.on_coordinator_job_done(job, error.is_empty(), &error) {
                Ok(effects) => {
                    if let Err(e) = self.commit(&mut core, &effects, &JobResult::default()).await {
                        tracing::warn!(job = %job, error = %e, "failed to store the gate job's end");
                    }
                }
                Err(r) => tracing::info!(job = %job, reason = %r, "gate job ended elsewhere (run cancelled?)"),
            }
        }
    }

    async fn start_ready_coordinator_jobs(&self) -> Vec<(RunId, JobId)> {
        let mut core = self.core.lock().await;
        let mut started = Vec::new();
        for (run, job) in core.ready_coordinator_jobs() {
            let Ok(effects) = core.on_coordinator_job_started(job) else { continue };
            match self.commit(&mut core, &effects, &JobResult::default()).await {
                Ok(()) => started.push((run, job)),
                Err(e) => tracing::warn!(job = %job, error = %e, "failed to start the gate job"),
            }
        }
        started
    }

    /// Read → decide → write for one run.
    async fn run_gate(&self, run: RunId) -> Result<(), GateStageError> {
        let input = self.read_gate_input(run).await?;
        let mut candidate = candidate(&input.spec, &input.results, input.finetune.as_ref())?;
        if let (None, Some(data)) = (&candidate.dataset, &input.data) {
            // The lint read the run's dataset: its identity and size go with the phase, so the
            // Changes table shows when the data changed between phases.
            candidate.dataset =
                Some(DatasetInfo { digest: Some(data.digest.clone()), size: Some(data.examples as u64) });
        }
        let history = match &input.rescorer {
            Some(r) => r.align(&input.history, &candidate),
            None => input.history.clone(),
        };
        let history = crate::rescore::adopt(&history, &rescored_baselines(&input.spec, &input.results)?, &candidate);
        let data_budget = if input.data.is_some() { DATA_SECTION_BUDGET } else { 0 };
        let mut outcome = decide(&history, &candidate, &input.config, GITHUB_COMMENT_LIMIT - 300 - data_budget);
        if let Some(data) = &input.data {
            outcome.markdown.push_str(&gate_rules::data::render_data_section(data, DATA_SECTION_BUDGET));
        }
        if let Some(note) = cached_note(&input.cached) {
            outcome.markdown.push_str(&note);
        }
        tracing::info!(run = %run, verdict = %outcome.verdict(), "gate verdict");
        // A re-evaluation of an accepted phase (a nightly run) must not replace the accepted record
        // and so drop it from the history: its result lives on the run (verdict, evaluation).
        let accepted_already = input.history.iter().any(|p| p.accepted && p.label == candidate.label);
        if !accepted_already {
            self.store.upsert_phase(&candidate, Some(run), now_ms() as i64).await?;
        }
        let record = VerdictRecord {
            verdict: outcome.verdict().as_str().to_owned(),
            report: outcome.markdown,
            evaluation_json: outcome.json,
        };
        self.store.set_verdict(run, &record).await?;
        Ok(())
    }

    async fn read_gate_input(&self, run: RunId) -> Result<GateInput, GateStageError> {
        let record = self.store.run(run).await?.ok_or(GateStageError::NoRun(run))?;
        let spec = PhaseSpec::parse(&record.spec_toml, &record.spec_path)?;
        let gate = spec.gate.clone().ok_or(GateStageError::NoGateSection)?;
        let finetune = record.jobs.iter().find(|j| j.stage == Stage::Finetune.as_str()).and_then(|j| j.metrics.clone());
        let bundle = (!record.bundle_sha256.is_empty()).then(|| self.artifacts.path_of(&record.bundle_sha256));
        let sources = result_sources(&gate, &record, |sha| self.artifacts.path_of(sha))?;
        let suite = spec.score.as_ref().map(|s| s.suite.clone());
        let cache = self.config.model_cache.clone().unwrap_or_else(phasegate_eval::models::default_cache_dir);
        let (config, results, rescorer) = tokio::task::spawn_blocking(move || {
            let (config, results) = read_files(&gate, bundle.as_deref(), &sources)?;
            let rescorer = match (suite, bundle.as_deref()) {
                (Some(suite), Some(bundle)) => rules_scorer(bundle, &suite, &cache),
                _ => None,
            };
            Ok::<_, GateStageError>((config, results, rescorer))
        })
        .await
        .map_err(|e| GateStageError::Task(e.to_string()))??;
        let history = accepted(self.store.phases(&spec.experiment).await?);
        let cached = record.jobs.iter().filter_map(|j| j.cached_from.map(|(_, run)| (j.stage.clone(), run))).collect();
        let lint_report = record
            .jobs
            .iter()
            .filter(|j| j.stage == Stage::Lint.as_str())
            .flat_map(|j| j.artifacts.iter())
            .find(|a| a.name == LINT_REPORT_JSON)
            .map(|a| (a.name.clone(), self.artifacts.path_of(&a.sha256)));
        let data = match lint_report {
            Some((name, path)) => Some(
                tokio::task::spawn_blocking(move || {
                    let text = read_limited(std::fs::File::open(&path).map_err(|e| e.to_string()))
                        .map_err(|detail| GateStageError::Artifact { name: name.clone(), detail })?;
                    serde_json::from_str::<LintReport>(&text)
                        .map_err(|e| GateStageError::Artifact { name, detail: e.to_string() })
                })
                .await
                .map_err(|e| GateStageError::Task(e.to_string()))??,
            ),
            None => None,
        };
        Ok(GateInput { spec, config, results, finetune, history, rescorer, cached, data })
    }
}

/// The report's line naming the stages that did not run because their inputs were unchanged.
fn cached_note(cached: &[(String, i64)]) -> Option<String> {
    if cached.is_empty() {
        return None;
    }
    let stages: Vec<String> = cached.iter().map(|(stage, run)| format!("{stage} (run {run})")).collect();
    Some(format!(
        "\n\n_Cached: {} — inputs unchanged, results reused instead of running again (`submit --no-cache` runs them)._\n",
        stages.join(", ")
    ))
}

/// The artifacts of the run's other jobs whose names match `results`: `(name, file)` by name.
fn result_sources(
    gate: &GateStage,
    run: &RunRecord,
    path_of: impl Fn(&str) -> PathBuf,
) -> Result<Vec<(String, PathBuf)>, GateStageError> {
    let mut builder = globset::GlobSetBuilder::new();
    for glob in &gate.results {
        // The spec parser validated every glob.
        if let Ok(g) = globset::Glob::new(glob) {
            builder.add(g);
        }
    }
    let set = builder.build().map_err(|e| GateStageError::Task(e.to_string()))?;
    let earlier = run.jobs.iter().filter(|j| j.stage != Stage::Gate.as_str());
    let mut found: Vec<(String, PathBuf)> = earlier
        .flat_map(|j: &JobRecord| j.artifacts.iter())
        .filter(|a| set.is_match(&a.name))
        .map(|a| (a.name.clone(), path_of(&a.sha256)))
        .collect();
    found.sort();
    found.dedup_by(|a, b| a.0 == b.0);
    if found.is_empty() {
        let names: Vec<&str> = run.jobs.iter().flat_map(|j| j.artifacts.iter().map(|a| a.name.as_str())).collect();
        let names = if names.is_empty() { "none".to_owned() } else { names.join(", ") };
        return Err(GateStageError::NoResults { globs: gate.results.clone(), names });
    }
    Ok(found)
}

/// Blocking reads: the gate.toml out of the bundle, then each result file.
fn read_files(
    gate: &GateStage,
    bundle: Option<&Path>,
    sources: &[(String, PathBuf)],
) -> Result<(GateConfig, Vec<(String, String)>), GateStageError> {
    let bad_bundle = |detail: String| GateStageError::Bundle {
        path: gate.config.clone(),
        bundle: bundle.map(|b| b.display().to_string()).unwrap_or_else(|| "(none)".to_owned()),
        detail,
    };
    let bundle = bundle.ok_or_else(|| bad_bundle("the run has no source bundle".to_owned()))?;
    let text = file_from_bundle(bundle, &gate.config).map_err(bad_bundle)?;
    let config = GateConfig::from_toml_str(&text, Path::new(&gate.config))?;
    let mut results = Vec::with_capacity(sources.len());
    for (name, path) in sources {
        let text = read_limited(std::fs::File::open(path).map_err(|e| e.to_string()))
            .map_err(|detail| GateStageError::Artifact { name: name.clone(), detail })?;
        results.push((name.clone(), text));
    }
    Ok((config, results))
}

/// The rules scorer on the run's suite, read from the source bundle. Without it the gate still
/// runs: baselines from another instrument then keep the verdict at best inconclusive.
fn rules_scorer(bundle: &Path, suite: &str, model_cache: &Path) -> Option<Rescorer> {
    let loaded = file_from_bundle(bundle, suite).and_then(|text| {
        let suite = phasegate_score::Suite::from_toml_str(&text, Path::new(suite)).map_err(|e| e.to_string())?;
        let lexicon = phasegate_score::Lexicon::load(model_cache, &suite).map_err(|e| e.to_string())?;
        Ok((suite, lexicon))
    });
    match loaded {
        Ok((suite, lexicon)) => Some(Rescorer::new(suite, lexicon)),
        Err(e) => {
            tracing::warn!(suite, error = %e, "cannot re-score baselines: the run's suite does not load");
            None
        }
    }
}

fn read_limited(file: Result<impl std::io::Read, String>) -> Result<String, String> {
    let mut text = String::new();
    file?.take(MAX_FILE_BYTES + 1).read_to_string(&mut text).map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    Ok(text)
}

/// One file of a gzipped tar source bundle, as text.
fn file_from_bundle(bundle: &Path, wanted: &str) -> Result<String, String> {
    let file = std::fs::File::open(bundle).map_err(|e| e.to_string())?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let wanted = Path::new(wanted.trim_start_matches("./"));
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        if entry.path().map_err(|e| e.to_string())?.as_ref() == wanted {
            return read_limited(Ok(entry));
        }
    }
    Err("no such file in the bundle (it must sit in the spec's directory)".to_owned())
}

/// The pure step before `evaluate`: the candidate phase from the imported result files, the
/// finetune job's metrics and the spec (experiment, label, parent, command-line settings).
fn candidate(
    spec: &PhaseSpec,
    results: &[(String, String)],
    finetune: Option<&pb::JobMetrics>,
) -> Result<Phase, ImportError> {
    let parts = results
        .iter()
        .map(|(name, text)| gate_rules::import::parse_file(name, text, Some(&spec.phase)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut phase = gate_rules::import::merge(parts, &spec.experiment)?;
    phase.accepted = false;
    if phase.parent.is_none() {
        phase.parent.clone_from(&spec.parent);
    }
    if let Some(m) = finetune {
        apply_metrics(&mut phase, m);
    }
    if let Some(ft) = &spec.finetune {
        for entry in command_settings(&ft.command) {
            if phase.config_value(&entry.key).is_none() {
                phase.config.push(entry);
            }
        }
    }
    Ok(phase)
}

/// The accepted phases a judge-mode score job scored with the candidate's judge
/// (`rescored_baselines`, each in the scores file's shape), as phases of the experiment.
fn rescored_baselines(spec: &PhaseSpec, results: &[(String, String)]) -> Result<Vec<Phase>, ImportError> {
    let mut out = Vec::new();
    for (name, text) in results {
        let Ok(serde_json::Value::Object(root)) = serde_json::from_str::<serde_json::Value>(text) else { continue };
        let Some(serde_json::Value::Array(files)) = root.get(RESCORED_BASELINES) else { continue };
        for (i, file) in files.iter().enumerate() {
            let part = gate_rules::import::parse_file(
                &format!("{name} ({RESCORED_BASELINES}[{i}])"),
                &file.to_string(),
                None,
            )?;
            out.push(gate_rules::import::merge(vec![part], &spec.experiment)?);
        }
    }
    Ok(out)
}

/// What the agent measured wins over what a result file claims.
fn apply_metrics(phase: &mut Phase, m: &pb::JobMetrics) {
    let t = &mut phase.training;
    t.final_loss = m.final_loss.or(t.final_loss);
    t.vram_peak_mib = m.vram_peak_mib.or(t.vram_peak_mib);
    t.duration_secs = m.duration_s.map(|d| d.round() as u64).or(t.duration_secs);
    if !m.loss_curve.is_empty() {
        t.loss_curve = m.loss_curve.iter().map(|p| LossPoint { step: p.step, loss: p.loss }).collect();
    }
}

/// `--key value` pairs of a training command (`--max-length 512` → `max_length = 512`), the
/// settings the spec itself declares.
fn command_settings(argv: &[String]) -> Vec<ConfigEntry> {
    let mut out = Vec::new();
    for pair in argv.windows(2) {
        let (Some(key), value) = (pair[0].strip_prefix("--"), &pair[1]) else { continue };
        if key.is_empty() || key.contains('=') || value.starts_with("--") {
            continue;
        }
        out.push(ConfigEntry { key: key.replace('-', "_"), value: value.clone() });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUBRIC: &str = r#"{"phase": "10", "scores": {
        "Q1": {"question": "who are you?", "score": 8, "max_score": 10, "notes": ""},
        "Q2": {"question": "what do you do?", "score": 6, "max_score": 10, "notes": ""}}}"#;

    fn spec() -> PhaseSpec {
        let text = "experiment = \"persona-v1\"\nphase = \"10\"\nparent = \"9\"\n[finetune]\n\
            command = [\"python3\", \"train.py\", \"--epochs\", \"8\", \"--max-length\", \"512\", \"--dry\"]\n\
            [gate]\nconfig = \"gate.toml\"\nresults = [\"output/eval_rubric.json\"]\n";
        PhaseSpec::parse(text, "phase.toml").unwrap()
    }

    #[test]
    fn candidate_takes_results_metrics_and_spec_settings() {
        let metrics = pb::JobMetrics {
            final_loss: Some(0.81),
            vram_peak_mib: Some(1900),
            duration_s: Some(61.6),
            loss_curve: vec![pb::LossPoint { step: 1, epoch: None, loss: 2.0 }],
            ..Default::default()
        };
        let results = vec![("output/eval_rubric.json".to_owned(), RUBRIC.to_owned())];
        let phase = candidate(&spec(), &results, Some(&metrics)).unwrap();
        assert_eq!((phase.experiment.as_str(), phase.label.as_str(), phase.accepted), ("persona-v1", "10", false));
        assert_eq!(phase.parent.as_deref(), Some("9"));
        assert_eq!(phase.score(), Some(7.0));
        assert_eq!(phase.training.final_loss, Some(0.81));
        assert_eq!(phase.training.vram_peak_mib, Some(1900));
        assert_eq!(phase.training.duration_secs, Some(62));
        assert_eq!(phase.training.loss_curve.len(), 1);
        assert_eq!(phase.config_value("epochs"), Some("8"));
        assert_eq!(phase.config_value("max_length"), Some("512"));
        assert_eq!(phase.config_value("dry"), None);
    }

    #[test]
    fn rescored_baselines_of_a_judge_mode_file_are_read_as_phases() {
        let entry = |phase: u32, score: u32| {
            format!(
                r#"{{"phase": "{phase}", "instrument": {{"kind": "judge", "model": "j", "prompt_digest": "d"}},
                "scores": [{{"qid": "Q1", "d1": {score}, "d2": 2, "d3": 2, "d4": 2, "d5": 2}}]}}"#
            )
        };
        let file = format!(
            r#"{{"phase": "10", "scores": [{{"qid": "Q1", "d1": 1, "d2": 1, "d3": 1, "d4": 1, "d5": 1}}],
            "rescored_baselines": [{}, {}]}}"#,
            entry(7, 2),
            entry(9, 0)
        );
        let results = vec![("score/scores.json".to_owned(), file)];
        let phases = rescored_baselines(&spec(), &results).unwrap();
        let got: Vec<(&str, Option<f64>)> = phases.iter().map(|p| (p.label.as_str(), p.score())).collect();
        assert_eq!(got, [("7", Some(10.0)), ("9", Some(8.0))]);
        assert!(phases.iter().all(|p| p.instrument().kind() == gate_rules::InstrumentKind::Judge));
        let bad = vec![("score/scores.json".to_owned(), r#"{"rescored_baselines": [{"phase": "7"}]}"#.to_owned())];
        let msg = rescored_baselines(&spec(), &bad).unwrap_err().to_string();
        assert!(msg.contains("score/scores.json (rescored_baselines[0])"), "{msg}");
    }

    #[test]
    fn malformed_result_names_the_artifact() {
        let results = vec![("output/eval_rubric.json".to_owned(), "{\"phase\": \"10\"".to_owned())];
        let msg = candidate(&spec(), &results, None).unwrap_err().to_string();
        assert!(msg.contains("output/eval_rubric.json"), "{msg}");
    }

    #[test]
    fn gate_toml_is_read_from_the_bundle() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gate.toml"), "min_effect = 0.7\n").unwrap();
        let file = std::fs::File::create(dir.path().join("b.tar.gz")).unwrap();
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::default()));
        builder.append_path_with_name(dir.path().join("gate.toml"), "gate.toml").unwrap();
        builder.into_inner().unwrap().finish().unwrap();
        let text = file_from_bundle(&dir.path().join("b.tar.gz"), "./gate.toml").unwrap();
        assert_eq!(text, "min_effect = 0.7\n");
        let err = file_from_bundle(&dir.path().join("b.tar.gz"), "other.toml").unwrap_err();
        assert!(err.contains("no such file"), "{err}");
    }
}
