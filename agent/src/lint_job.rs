//! The `lint` stage on the agent, and the file side of `phasegate lint`: read the dataset files,
//! the suite and `gate.toml`, measure rendered token lengths with the model's tokenizer (from
//! this agent's model cache), and hand everything to `gate_rules::data::lint` (pure).
//!
//! The job succeeds whenever a report was made, `fail` included: the lint's verdict is the run's
//! judgement, which the coordinator acts on (it stops the run before any GPU stage is leased).
//! It fails only when the lint could not run (a file that cannot be read at all, no tokenizer).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gate_rules::data::{Dataset, EvalSuite, LintConfig, LintInput, LintReport, Probe, ProbeSide, TokenLengths};
use phasegate_eval::{ChatMessage, TokenCounter};
use phasegate_proto::domain::Lease;
use phasegate_proto::spec::{AcceptedDataset, LINT_REPORT_JSON, LINT_REPORT_MD, LintOutcome, LintStage};
use tokio::sync::{mpsc, watch};

use crate::events::Event;
use crate::job::{JobContext, Report};

/// Why a lint could not produce a report. Every message names the file, and the line or field
/// where there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LintError {
    /// A file is missing, unreadable or not a dataset/suite/config at all.
    #[error("{0}")]
    Input(String),
    /// The tokenizer could not be loaded or could not encode.
    #[error("{0}")]
    Tokenizer(String),
}

/// Reads and parses dataset files; `shown` turns a path into the name messages use.
pub fn read_datasets(paths: &[PathBuf], shown: impl Fn(&Path) -> String) -> Result<Vec<Dataset>, LintError> {
    paths
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path)
                .map_err(|e| LintError::Input(format!("failed to read dataset {}: {e}", shown(path))))?;
            gate_rules::data::parse_dataset(&shown(path), &bytes).map_err(|e| LintError::Input(e.to_string()))
        })
        .collect()
}

/// The suite's questions (against prompts) and calibration answers (against answers).
pub fn probes(suite: &phasegate_score::Suite) -> EvalSuite {
    let mut probes = Vec::new();
    for q in &suite.questions {
        let probe = |side, label: String, text: &str| Probe { qid: q.id.clone(), side, label, text: text.to_owned() };
        probes.push(probe(ProbeSide::Question, "question".into(), &q.text));
        for a in &q.anchors {
            probes.push(probe(ProbeSide::Answer, format!("{} anchor", a.kind.as_str()), &a.text));
        }
    }
    EvalSuite { name: suite.name.clone(), system_prompt: suite.system_prompt.clone(), probes }
}

/// Token lengths with `[lint] model`'s tokenizer, or why they are skipped.
pub fn measure(datasets: &[Dataset], config: &LintConfig, cache: &Path) -> Result<TokenLengths, LintError> {
    let Some(model) = &config.model else {
        return Ok(TokenLengths::Skipped(
            "no tokenizer: pass --model NAME|PATH (or set `[lint] model`) to measure rendered lengths".into(),
        ));
    };
    let path = phasegate_eval::models::resolve(model, cache).map_err(|e| LintError::Tokenizer(e.to_string()))?;
    let counter = TokenCounter::load(&path, config.template.as_deref())
        .map_err(|e| LintError::Tokenizer(format!("failed to load the tokenizer of {model}: {e}")))?;
    let conversations: Vec<Vec<ChatMessage<'_>>> = datasets
        .iter()
        .flat_map(|d| &d.examples)
        .map(|e| e.turns.iter().map(|t| ChatMessage { role: t.role.as_str(), content: &t.content }).collect())
        .collect();
    let lengths = counter
        .lengths(&conversations)
        .map_err(|e| LintError::Tokenizer(format!("failed to measure token lengths with {model}: {e}")))?;
    Ok(TokenLengths::Measured { model: counter.describe(), lengths })
}

/// Where the accepted phase's bundle is unpacked inside the job directory.
const ACCEPTED_DIR: &str = ".phasegate-accepted";

/// The whole lint of one stage, on files under `dir` (the job directory, where the source bundle
/// is unpacked, and the accepted phase's bundle under [`ACCEPTED_DIR`] when the stage has one).
/// Blocking.
pub fn lint_stage(stage: &LintStage, dir: &Path, cache: &Path) -> Result<LintReport, LintError> {
    let shown = |p: &Path| p.strip_prefix(dir).unwrap_or(p).display().to_string();
    let mut config = match &stage.config {
        Some(rel) => {
            let path = dir.join(rel);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| LintError::Input(format!("failed to read `lint.config` {rel}: {e}")))?;
            gate_rules::GateConfig::from_toml_str(&text, Path::new(rel))
                .map_err(|e| LintError::Input(e.to_string()))?
                .lint
        }
        None => LintConfig::default(),
    };
    config.max_length = stage.max_length.map(|n| n as usize).or(config.max_length);
    config.model = stage.model.clone().or(config.model);
    config.template = stage.template.clone().or(config.template);
    let files = |rels: &[String]| rels.iter().map(|r| dir.join(r)).collect::<Vec<_>>();
    let datasets = read_datasets(&files(&stage.datasets), shown)?;
    let baseline = match (&stage.accepted, stage.baseline.is_empty()) {
        (_, false) => Some(read_datasets(&files(&stage.baseline), shown)?),
        (Some(accepted), true) => {
            let root = dir.join(ACCEPTED_DIR);
            let paths: Vec<PathBuf> = accepted.datasets.iter().map(|d| root.join(d)).collect();
            let named = |p: &Path| {
                format!("accepted phase {}: {}", accepted.phase, p.strip_prefix(&root).unwrap_or(p).display())
            };
            Some(read_datasets(&paths, named)?)
        }
        (None, true) => None,
    };
    let suite = match &stage.suite {
        Some(rel) => {
            Some(probes(&phasegate_score::Suite::load(&dir.join(rel)).map_err(|e| LintError::Input(e.to_string()))?))
        }
        None => None,
    };
    let lengths = measure(&datasets, &config, cache)?;
    Ok(gate_rules::data::lint(&LintInput {
        datasets: &datasets,
        baseline: baseline.as_deref(),
        suite: suite.as_ref(),
        config: &config,
        token_lengths: &lengths,
    }))
}

/// Downloads the accepted phase's bundle and unpacks it under [`ACCEPTED_DIR`].
async fn unpack_accepted(ctx: &JobContext, accepted: &AcceptedDataset, dir: &Path) -> Result<(), String> {
    let bytes = crate::job::download(&ctx.client, ctx.retry.clone(), &accepted.bundle_sha256).await?;
    let dest = dir.join(ACCEPTED_DIR);
    tokio::task::spawn_blocking(move || crate::bundle::unpack(&bytes, &dest).map(|_| ()).map_err(|e| e.to_string()))
        .await
        .map_err(|e| e.to_string())?
}

pub(crate) async fn run(
    ctx: &JobContext,
    stage: &LintStage,
    lease: Lease,
    dir: &Path,
    events: &mpsc::Sender<Event>,
    mut cancel: watch::Receiver<bool>,
) -> Report {
    let started = Instant::now();
    let say = format!("lint: {} dataset file(s): {}", stage.datasets.len(), stage.datasets.join(", "));
    let _ = events.send(Event::Agent(say)).await;
    if let (Some(accepted), true) = (&stage.accepted, stage.baseline.is_empty()) {
        let say = format!("lint: diffing against accepted phase {} (run {})", accepted.phase, accepted.run);
        let _ = events.send(Event::Agent(say)).await;
        if let Err(e) = unpack_accepted(ctx, accepted, dir).await {
            let error =
                format!("failed to fetch the dataset of accepted phase {} (run {}): {e}", accepted.phase, accepted.run);
            return Report { error, ..Default::default() };
        }
    }
    let (owned_stage, owned_dir, cache) = (stage.clone(), dir.to_owned(), ctx.model_cache.clone());
    let task = tokio::task::spawn_blocking(move || lint_stage(&owned_stage, &owned_dir, &cache));
    let timeout = Duration::from_secs(stage.timeout_s);
    let cancelled = async {
        while !*cancel.borrow_and_update() {
            if cancel.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    // The checks have no stopping points; a cancelled or timed-out lint's thread finishes on its
    // own and its report is dropped.
    let linted = tokio::select! {
        joined = task => joined.map_err(|e| LintError::Input(format!("the lint task stopped: {e}"))).and_then(|r| r),
        () = cancelled => Err(LintError::Input("the job was cancelled".into())),
        () = tokio::time::sleep(timeout) => {
            Err(LintError::Input(format!("`lint.timeout` ({}) reached", humantime::format_duration(timeout))))
        }
    };
    let report = match linted {
        Ok(report) => report,
        Err(e) => {
            let _ = events.send(Event::Agent(format!("lint failed: {e}"))).await;
            return Report { error: e.to_string(), ..Default::default() };
        }
    };
    let markdown = gate_rules::data::render_markdown(&report);
    let json = serde_json::to_vec_pretty(&report).unwrap_or_default();
    let mut artifacts = Vec::with_capacity(2);
    for (name, bytes) in [(LINT_REPORT_JSON, json), (LINT_REPORT_MD, markdown.clone().into_bytes())] {
        match crate::job::upload(ctx, lease, name, bytes).await {
            Ok(a) => artifacts.push(a),
            Err(e) => return Report { error: e, ..Default::default() },
        }
    }
    let outcome = LintOutcome {
        verdict: report.verdict.as_str().to_owned(),
        examples: report.examples,
        findings: report.findings.len(),
        markdown,
    };
    let summary = format!(
        "lint: {} examples, {} finding(s), verdict {} ({:.1} s)",
        outcome.examples,
        outcome.findings,
        outcome.verdict,
        started.elapsed().as_secs_f64()
    );
    let _ = events.send(Event::Agent(summary)).await;
    let result_json = serde_json::to_string(&outcome).unwrap_or_default();
    Report {
        success: true,
        metrics: Some(phasegate_proto::pb::JobMetrics {
            duration_s: Some(started.elapsed().as_secs_f64()),
            summary_json: serde_json::json!({"examples": outcome.examples, "findings": outcome.findings, "verdict": outcome.verdict})
                .to_string(),
            ..Default::default()
        }),
        artifacts,
        result_json,
        ..Default::default()
    }
}
