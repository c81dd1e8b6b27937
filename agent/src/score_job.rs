//! The `score` stage on the agent: the eval stage's responses (an input of the assignment), scored
//! on the suite's rubric by the deterministic scorer and, with `score.mode = "judge" | "both"`, by
//! an LLM judge ([`crate::judge`]), uploaded as [`SCORES`].
//!
//! The scores file is the per-dimension list shape `gate_rules::import` reads: one entry per
//! (question, sample) with `d1`…`d5` as `{score, reason}`, the total, the answer (for the report's
//! excerpts) and the triggers that zeroed it. The judge's fields sit beside them (see
//! [`crate::judge::JudgeReport`]); the importer ignores them.
//!
//! The rules scorer is held to the suite's calibration anchors first (`score.calibration`, default
//! true): in `rules` and `both` mode a scorer that scores an anchor outside its band fails the job,
//! naming the anchor, its kind, score and band. The judge is calibrated too. A judge refused at calibration fails the job in `judge` mode (the
//! error names every misjudged anchor); in `both` mode the rule scores stay the record and the file
//! says why the judge was refused. A judge model that cannot be resolved, loaded or run fails the
//! job in both modes: the spec asked for a judge. With `score.judge_endpoint` the judge is an
//! OpenAI-compatible server ([`crate::judge::http`]) under the same rules; a server that does not
//! answer, answers badly or times out fails the job naming the endpoint.
//!
//! In `pairwise` mode the judge compares each answer with the baseline's (`score.baseline_responses`)
//! instead of scoring it ([`crate::judge::pairwise`]); the rule scores stay the record and the file
//! gains a `pairwise` object.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use phasegate_eval::{EvalError, Interrupt};
use phasegate_proto::domain::Lease;
use phasegate_proto::pb;
use phasegate_proto::spec::{
    AcceptedResponses, EVAL_RESPONSES, JudgeModel, JudgeServer, RESCORED_BASELINES, SCORES, ScoreMode, ScoreStage,
    StageJob,
};
use phasegate_score::judge::JudgeRefused;
use phasegate_score::{Lexicon, Responses, SampleScore, ScoredPhase, Suite, score_phase};

use crate::events::Event;
use crate::job::{JobContext, Report};
use crate::judge::http::{ApiKey, HttpBackend, HttpJudge};
use crate::judge::pairwise::{PairwiseReport, judge_pairs};
use crate::judge::{
    BackendError, EngineBackend, JUDGE_BATCH, JudgeBackend, JudgeOutcome, JudgeReport, JudgeSettings, calibrate,
    check_sample_fits, judge_samples,
};

/// Why a score job failed; the job's error is this message.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScoreJobError {
    #[error(
        "failed to find the eval responses {EVAL_RESPONSES} among the inputs (inputs: {inputs})\n\
         hint: the [score] stage scores what the [eval] stage uploaded"
    )]
    NoResponses { inputs: String },
    #[error(transparent)]
    Responses(#[from] phasegate_score::ResponsesError),
    #[error(transparent)]
    Suite(#[from] phasegate_score::SuiteError),
    #[error(transparent)]
    Lexicon(#[from] phasegate_score::LexiconError),
    #[error(
        "{0}\n\
         hint: fix the scorer or the suite's anchors; `score.calibration = false` skips this check while a suite is authored"
    )]
    Calibration(#[from] phasegate_score::calibration::CalibrationError),
    #[error("failed to score {file} against suite `score.suite` = {suite}: {source}")]
    Score { file: String, suite: String, source: phasegate_score::ScoreError },
    #[error("failed to resolve `score.judge_model` = {model:?}: {source}")]
    JudgeModel { model: String, source: EvalError },
    #[error(transparent)]
    JudgeKey(#[from] crate::judge::http::KeyError),
    #[error(transparent)]
    JudgeServer(#[from] crate::judge::http::HttpJudgeError),
    #[error(transparent)]
    Judge(#[from] JudgeError),
    #[error("failed to write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Upload(String),
    #[error("the judge task stopped: {0}")]
    Task(String),
    #[error("failed to fetch the responses of accepted phase {phase}, the pairwise baseline: {detail}")]
    Baseline { phase: String, detail: String },
}

/// Why the judge failed a score job (resolving its model is [`ScoreJobError::JudgeModel`]).
#[derive(Debug, thiserror::Error)]
pub(crate) enum JudgeError {
    #[error("failed to load the judge model {path}: {source}")]
    Load { path: PathBuf, source: EvalError },
    #[error("failed to run the judge model `score.judge_model` = {model:?}: {source}")]
    Run { model: String, source: BackendError },
    #[error(
        "{source} (`score.judge_model` = {model:?}{at})\n\
         hint: use a stronger judge model, or `score.mode = \"both\"` to keep the rule scores and record the refusal"
    )]
    Refused {
        model: String,
        /// ` at {endpoint}` for a judge server, else empty.
        at: String,
        source: JudgeRefused,
    },
}

/// Where a score job runs and reports, and what stops its judge.
#[derive(Debug)]
pub(crate) struct ScoreIo<'a> {
    pub(crate) lease: Lease,
    pub(crate) dir: &'a Path,
    pub(crate) events: &'a mpsc::Sender<Event>,
    /// The coordinator's cancellation of the job.
    pub(crate) cancel: watch::Receiver<bool>,
}

pub(crate) async fn run(
    ctx: &JobContext,
    a: &pb::Assignment,
    job: &StageJob,
    stage: &ScoreStage,
    io: ScoreIo<'_>,
) -> Report {
    let events = io.events;
    match score(ctx, a, job, stage, io).await {
        Ok((artifact, summary)) => Report {
            success: true,
            metrics: Some(pb::JobMetrics { summary_json: summary.to_string(), ..Default::default() }),
            artifacts: vec![artifact],
            result_json: summary.to_string(),
            ..Default::default()
        },
        Err(e) => {
            let _ = events.send(Event::Agent(format!("score failed: {e}"))).await;
            Report { error: e.to_string(), ..Default::default() }
        }
    }
}

async fn score(
    ctx: &JobContext,
    a: &pb::Assignment,
    job: &StageJob,
    stage: &ScoreStage,
    io: ScoreIo<'_>,
) -> Result<(pb::ArtifactRef, Value), ScoreJobError> {
    let ScoreIo { lease, dir, events, cancel } = io;
    if !a.inputs.iter().any(|i| i.name == EVAL_RESPONSES) {
        let names: Vec<&str> = a.inputs.iter().map(|i| i.name.as_str()).collect();
        let inputs = if names.is_empty() { "none".to_owned() } else { names.join(", ") };
        return Err(ScoreJobError::NoResponses { inputs });
    }
    let suite = Suite::load(&dir.join(&stage.suite))?;
    let responses = Responses::load(&dir.join("inputs").join(EVAL_RESPONSES))?;
    let lexicon = Lexicon::load(&ctx.model_cache, &suite)?;
    // The rule scores are the record in rules and both modes: a scorer that misses the suite's own
    // anchors does not get to make one.
    if stage.calibration && stage.mode != ScoreMode::Judge {
        phasegate_score::calibration::enforce(&suite, &lexicon)?;
    }
    let scored = score_phase(&suite, &lexicon, &responses).map_err(|source| ScoreJobError::Score {
        file: EVAL_RESPONSES.to_owned(),
        suite: stage.suite.clone(),
        source,
    })?;
    let baseline = match (stage.mode, &stage.baseline_responses, &stage.accepted) {
        (ScoreMode::Pairwise, Some(path), _) => Some((path.clone(), Responses::load(&dir.join(path))?)),
        (ScoreMode::Pairwise, None, Some(accepted)) => {
            let say = format!("pairwise: the baseline is accepted phase {}", accepted.phase);
            let _ = events.send(Event::Agent(say)).await;
            Some(accepted_responses(ctx, accepted).await?)
        }
        (ScoreMode::Pairwise, None, None) => {
            let say = "pairwise: no accepted phase keeps its responses to compare with; only the rules score";
            let _ = events.send(Event::Agent(say.to_owned())).await;
            None
        }
        _ => None,
    };
    let task =
        match baseline {
            Some((file, responses)) => {
                // The baseline's answers, scored on the same suite.
                let baseline = score_phase(&suite, &lexicon, &responses).map_err(|source| ScoreJobError::Score {
                    file,
                    suite: stage.suite.clone(),
                    source,
                })?;
                Some(JudgeTask::Pairwise(Box::new(baseline)))
            }
            None if stage.mode == ScoreMode::Pairwise => None,
            None => {
                // In judge mode the judge scores the accepted baselines too: one instrument on both
                // sides of the gate's comparison.
                let mut baselines = Vec::new();
                if stage.mode == ScoreMode::Judge && stage.judge.is_some() {
                    for accepted in &stage.rescore {
                        let say = format!("judge: scoring accepted phase {} too, the gate's baseline", accepted.phase);
                        let _ = events.send(Event::Agent(say)).await;
                        let (file, responses) = accepted_responses(ctx, accepted).await?;
                        let scored = score_phase(&suite, &lexicon, &responses)
                            .map_err(|source| ScoreJobError::Score { file, suite: stage.suite.clone(), source })?;
                        baselines.push(scored);
                    }
                }
                Some(JudgeTask::Phase { mode: stage.mode, baselines })
            }
        };
    let judged = match (&stage.judge, task) {
        (Some(judge), Some(task)) => {
            // A cancellation or `score.timeout` stops an in-process judge between two generated
            // tokens, and drops a judge server's requests in flight.
            let interrupt = Interrupt::default();
            let timeout = std::time::Duration::from_secs(stage.timeout_s);
            let (stop_tx, stop) = watch::channel(None);
            let raise = interrupt.clone();
            let watchdog = tokio::spawn(async move {
                let reason = crate::job::stop_on(cancel, timeout, "score.timeout", raise).await;
                let _ = stop_tx.send(Some(reason));
            });
            let judged = match &judge.server {
                None => run_judge(&ctx.model_cache, task, judge, &suite, &scored, events, interrupt).await,
                Some(server) => run_server_judge(task, judge, server, &suite, &scored, events, stop).await,
            };
            watchdog.abort();
            Some(judged?)
        }
        _ => None,
    };
    let (judged, rescored, pairwise) = match judged {
        Some(Judged::Scores { report, baselines }) => (Some(report), baselines, None),
        Some(Judged::Pairwise(report)) => (None, Vec::new(), Some(report)),
        None => (None, Vec::new(), None),
    };
    let mut file = scores_file(&scored, &job.phase, judged.as_ref());
    let mut lines = score_lines(&scored, &file, judged.as_ref());
    if !rescored.is_empty() {
        let files: Vec<Value> = rescored.iter().map(|(b, r)| scores_file(b, &b.phase, Some(r))).collect();
        for f in &files {
            let score_10 = f["overall"]["score_10"].as_f64().unwrap_or_default();
            lines.push(format!("judge: accepted phase {} scores {score_10:.2}/10 by the judge", f["phase"]));
        }
        file[RESCORED_BASELINES] = Value::Array(files);
    }
    if let Some(p) = &pairwise {
        file["mode"] = json!(ScoreMode::Pairwise);
        file["pairwise"] = p.to_json();
        lines.extend(p.lines());
    }
    for line in lines {
        let _ = events.send(Event::Agent(line)).await;
    }
    let bytes = serde_json::to_vec_pretty(&file).unwrap_or_default();
    let path = dir.join(SCORES);
    let fail = |source| ScoreJobError::Write { path: path.clone(), source };
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(fail)?;
    }
    tokio::fs::write(&path, &bytes).await.map_err(fail)?;
    let artifact = crate::job::upload(ctx, lease, SCORES, bytes).await.map_err(ScoreJobError::Upload)?;
    let mut summary = summary(&scored, &file, judged.as_ref());
    if let Some(p) = &pairwise {
        summary["pairwise"] = p.summary();
    }
    Ok((artifact, summary))
}

/// The accepted phase's stored responses, from the coordinator's artifact store.
async fn accepted_responses(
    ctx: &JobContext,
    accepted: &AcceptedResponses,
) -> Result<(String, Responses), ScoreJobError> {
    let fail = |detail: String| ScoreJobError::Baseline { phase: accepted.phase.clone(), detail };
    let bytes = crate::job::download(&ctx.client, ctx.retry.clone(), &accepted.sha256).await.map_err(fail)?;
    let text = String::from_utf8(bytes).map_err(|e| fail(e.to_string()))?;
    let name = format!("accepted phase {} responses", accepted.phase);
    let responses = Responses::from_json_str(&text, Path::new(&name)).map_err(|e| fail(e.to_string()))?;
    Ok((name, responses))
}

/// What the judge is asked to do.
#[derive(Debug)]
pub(crate) enum JudgeTask {
    /// Score every answer (`judge` and `both` modes), then, once the judge is calibrated, every
    /// answer of `baselines` (`judge` mode).
    Phase { mode: ScoreMode, baselines: Vec<ScoredPhase> },
    /// Compare every answer with the baseline's (`pairwise` mode).
    Pairwise(Box<ScoredPhase>),
}

/// What the judge did.
#[derive(Debug)]
pub(crate) enum Judged {
    /// The phase's judgement, and each baseline the judge could score with its judgement.
    Scores {
        report: JudgeReport,
        baselines: Vec<(ScoredPhase, JudgeReport)>,
    },
    Pairwise(PairwiseReport),
}

/// Runs `task` with the judge behind `backend`.
fn judge_task(
    backend: &mut dyn JudgeBackend,
    task: JudgeTask,
    judge: &JudgeModel,
    suite: &Suite,
    scored: &ScoredPhase,
    progress: &mut dyn FnMut(String),
) -> Result<Judged, JudgeError> {
    match task {
        JudgeTask::Phase { mode, baselines } => {
            let report = judge_phase(backend, mode, judge, suite, scored, progress)?;
            let JudgeOutcome::Judged { anchors, .. } = report.outcome else {
                return Ok(Judged::Scores { report, baselines: Vec::new() });
            };
            let settings = settings(judge);
            let mut judged = Vec::new();
            for baseline in baselines {
                if let Err(refused) = check_sample_fits(backend, suite, &baseline, &settings) {
                    progress(format!("judge: accepted phase {} kept as scored: {refused}", baseline.phase));
                    continue;
                }
                let samples = judge_samples(backend, suite, &baseline, &settings, progress)
                    .map_err(|source| JudgeError::Run { model: judge.model.clone(), source })?;
                let outcome = JudgeOutcome::Judged { anchors, samples };
                judged.push((baseline, JudgeReport { outcome, ..report.clone() }));
            }
            Ok(Judged::Scores { report, baselines: judged })
        }
        JudgeTask::Pairwise(baseline) => {
            let questions = judge_pairs(backend, suite, scored, &baseline, &settings(judge), progress)
                .map_err(|source| JudgeError::Run { model: judge.model.clone(), source })?;
            Ok(Judged::Pairwise(PairwiseReport::new(judge, &baseline, questions)))
        }
    }
}

/// How the judge is called: a judge server takes as many calls per batch as it may have in
/// flight, at least a batch.
fn settings(judge: &JudgeModel) -> JudgeSettings {
    let in_flight = judge.server.as_ref().map_or(0, |s| usize::try_from(s.concurrency).unwrap_or(0));
    JudgeSettings {
        seeds: judge.seeds,
        max_new_tokens: usize::try_from(judge.max_new_tokens).unwrap_or(usize::MAX),
        batch: JUDGE_BATCH.max(in_flight),
    }
}

/// Resolves and loads the judge model, then judges on a blocking thread, saying how far it got.
async fn run_judge(
    cache: &Path,
    task: JudgeTask,
    judge: &JudgeModel,
    suite: &Suite,
    scored: &ScoredPhase,
    events: &mpsc::Sender<Event>,
    interrupt: Interrupt,
) -> Result<Judged, ScoreJobError> {
    let path = phasegate_eval::models::resolve(&judge.model, cache)
        .map_err(|source| ScoreJobError::JudgeModel { model: judge.model.clone(), source })?;
    let say = format!("judge: {} ({}), seeds {:?}, calibration first", judge.model, path.display(), judge.seeds);
    let _ = events.send(Event::Agent(say)).await;
    let (judge, suite, scored, events) = (judge.clone(), suite.clone(), scored.clone(), events.clone());
    let task = tokio::task::spawn_blocking(move || {
        let mut backend =
            EngineBackend::load(&path, &judge, interrupt).map_err(|source| JudgeError::Load { path, source })?;
        let info = backend.model_info();
        let line = format!("judge: loaded {} ({}, {})", info.name, info.architecture, info.dtype);
        let _ = events.blocking_send(Event::Agent(line));
        let mut progress = |line: String| {
            let _ = events.blocking_send(Event::Agent(line));
        };
        judge_task(&mut backend, task, &judge, &suite, &scored, &mut progress)
    });
    Ok(task.await.map_err(|e| ScoreJobError::Task(e.to_string()))??)
}

/// Reads the judge server's key, then judges on a blocking thread over HTTP, saying how far it got.
pub(crate) async fn run_server_judge(
    task: JudgeTask,
    judge: &JudgeModel,
    server: &JudgeServer,
    suite: &Suite,
    scored: &ScoredPhase,
    events: &mpsc::Sender<Event>,
    stop: watch::Receiver<Option<String>>,
) -> Result<Judged, ScoreJobError> {
    let key = server.api_key_file.as_deref().map(|p| ApiKey::read(Path::new(p))).transpose()?;
    let http = HttpJudge::new(server, &judge.model, key)?;
    let say = format!(
        "judge: {} at {} (up to {} requests at once), seeds {:?}, calibration first",
        judge.model, server.endpoint, server.concurrency, judge.seeds
    );
    let _ = events.send(Event::Agent(say)).await;
    let mut backend = HttpBackend::new(http, tokio::runtime::Handle::current(), stop);
    let (judge, suite, scored, events) = (judge.clone(), suite.clone(), scored.clone(), events.clone());
    let task = tokio::task::spawn_blocking(move || {
        let mut progress = |line: String| {
            let _ = events.blocking_send(Event::Agent(line));
        };
        judge_task(&mut backend, task, &judge, &suite, &scored, &mut progress)
    });
    Ok(task.await.map_err(|e| ScoreJobError::Task(e.to_string()))??)
}

/// Calibrates the judge, then judges every sample. A refusal fails in `judge` mode and is recorded
/// in `both` mode.
pub(crate) fn judge_phase(
    backend: &mut dyn JudgeBackend,
    mode: ScoreMode,
    judge: &JudgeModel,
    suite: &Suite,
    scored: &ScoredPhase,
    progress: &mut dyn FnMut(String),
) -> Result<JudgeReport, JudgeError> {
    let settings = settings(judge);
    let run_failed = |source| JudgeError::Run { model: judge.model.clone(), source };
    let at = judge.server.as_ref().map(|s| format!(" at {}", s.endpoint)).unwrap_or_default();
    // A refusal fails the job in `judge` mode and is the recorded outcome in `both` mode.
    let refuse = |source| match mode {
        ScoreMode::Judge => Err(JudgeError::Refused { model: judge.model.clone(), at: at.clone(), source }),
        _ => Ok(JudgeOutcome::Refused(source)),
    };
    let outcome = match calibrate(backend, suite, &settings, progress).map_err(run_failed)? {
        Err(refused) => refuse(refused)?,
        Ok(anchors) => {
            progress(format!("judge: calibration passed on {anchors} anchors"));
            match check_sample_fits(backend, suite, scored, &settings) {
                Err(refused) => refuse(refused)?,
                Ok(()) => JudgeOutcome::Judged {
                    anchors,
                    samples: judge_samples(backend, suite, scored, &settings, progress).map_err(run_failed)?,
                },
            }
        }
    };
    Ok(JudgeReport { mode, judge: judge.clone(), prompt_digest: phasegate_score::judge::prompt_digest(suite), outcome })
}

/// One line per question (the record's totals of its samples), one for the phase on the 0–10
/// scale, and the judge's lines.
fn score_lines(scored: &ScoredPhase, file: &Value, judged: Option<&JudgeReport>) -> Vec<String> {
    let entries = file["scores"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut lines: Vec<String> = scored
        .questions
        .iter()
        .map(|q| {
            let totals: Vec<String> =
                entries.iter().filter(|e| e["qid"] == q.qid.as_str()).map(|e| e["total"].to_string()).collect();
            let max = q.samples.first().map_or(0.0, |s| s.max);
            format!("score: {} {} of {max} per sample", q.qid, totals.join(", "))
        })
        .collect();
    lines.extend(judged.map(JudgeReport::lines).unwrap_or_default());
    let score_10 = file["overall"]["score_10"].as_f64().unwrap_or_default();
    lines.push(format!(
        "score: phase {score_10:.2}/10 over {} samples ({})",
        sample_count(scored),
        file["scorer"].as_str().unwrap_or("rules")
    ));
    lines
}

fn sample_count(scored: &ScoredPhase) -> usize {
    scored.questions.iter().map(|q| q.samples.len()).sum()
}

fn summary(scored: &ScoredPhase, file: &Value, judged: Option<&JudgeReport>) -> Value {
    let score_10 = file["overall"]["score_10"].as_f64().unwrap_or_default();
    let mut out = json!({
        "score_10": (score_10 * 1000.0).round() / 1000.0,
        "samples": sample_count(scored),
        "questions": scored.questions.len(),
        "auto_zero": scored.auto_zero_triggers().count(),
    });
    if let Some(j) = judged {
        out["judge"] = j.summary();
    }
    out
}

/// The per-dimension score file `gate_rules::import` reads (list form, one entry per sample).
/// The score stage's `score/scores.json` for rules scores alone: what `phasegate score` writes, so
/// files scored offline import exactly like the stage's.
pub fn rules_scores_file(scored: &ScoredPhase, phase: &str) -> Value {
    scores_file(scored, phase, None)
}

pub(crate) fn scores_file(scored: &ScoredPhase, phase: &str, judged: Option<&JudgeReport>) -> Value {
    let entries: Vec<Value> = scored
        .questions
        .iter()
        .flat_map(|q| {
            q.samples.iter().map(move |s| {
                let mut entry = sample_entry(&q.question, s);
                if let Some(j) = judged {
                    j.annotate(&mut entry, s, &scored.rubric);
                }
                entry
            })
        })
        .collect();
    let mode = judged.map_or(ScoreMode::Rules, |j| j.mode);
    let mut file = json!({
        "phase": phase,
        "model": scored.model,
        "adapter": scored.adapter,
        "suite": scored.suite,
        "rubric_version": scored.rubric_version,
        "rubric": scored.rubric,
        "instrument": judged.and_then(JudgeReport::instrument).unwrap_or_else(|| scored.instrument.clone()),
        "generation_params": scored.generation_params,
        "mode": mode,
        "scorer": if mode == ScoreMode::Judge { "judge" } else { "rules" },
        "overall": { "score_10": score_10(&entries), "samples": entries.len() },
        "scores": entries,
    });
    if let Some(j) = judged {
        file["judge"] = j.header(scored);
    }
    file
}

/// Sum of the entries' totals over the sum of their maxima, on the 0–10 scale, unrounded.
fn score_10(entries: &[Value]) -> f64 {
    let sum = |key: &str| entries.iter().filter_map(|e| e[key].as_f64()).sum::<f64>();
    let max = sum("max");
    if max > 0.0 { sum("total") * 10.0 / max } else { 0.0 }
}

fn sample_entry(question: &str, s: &SampleScore) -> Value {
    let mut entry = json!({
        "qid": s.qid,
        "question": question,
        "sample": s.sample,
        "seed": s.seed,
        "truncated": s.truncated,
        "response": s.response,
        "total": s.total,
        "max": s.max,
        "auto_zero": s.auto_zero.iter().map(|t| json!({
            "dimension": t.dim.as_str(), "pattern": t.pattern, "excerpt": t.excerpt,
        })).collect::<Vec<_>>(),
    });
    for d in &s.dims {
        entry[d.id.as_str().to_lowercase()] = json!({ "score": d.score, "reason": d.reason });
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUITE: &str = include_str!("../../datasets/persona-v1/suite.toml");

    /// K = 2 hand-written answers per question of the bundled suite.
    fn responses(suite: &Suite) -> Responses {
        let results = suite
            .questions
            .iter()
            .flat_map(|q| {
                (0..2u32).map(move |sample| phasegate_score::ResponseRecord {
                    qid: q.id.clone(),
                    question: q.text.clone(),
                    response: if sample == 0 {
                        "Oi! Eu sou a Iara e trabalho com o Tomás no Quintal e na Banca.".to_owned()
                    } else {
                        "<|im_start|>assistant Let me first analyze the question".to_owned()
                    },
                    sample,
                    seed: Some(100 + u64::from(sample)),
                    truncated: sample == 1,
                    tokens: Some(20),
                    d4_auto_fail: None,
                    d4_auto_score: None,
                })
            })
            .collect();
        Responses {
            phase: "10".into(),
            model: "tiny".into(),
            adapter: None,
            timestamp: None,
            generation_params: [("max_new_tokens".to_owned(), json!(20))].into_iter().collect(),
            results,
            timing: None,
            peak_rss_mib: None,
        }
    }

    #[test]
    fn scores_file_imports_with_k_samples_and_reasons() {
        let suite = Suite::from_toml_str(SUITE, Path::new("suite.toml")).unwrap();
        let scored = score_phase(&suite, &crate::judge::fake::lexicon(&suite), &responses(&suite)).unwrap();
        let text = scores_file(&scored, "10", None).to_string();
        let part = gate_rules::import::parse_file(SCORES, &text, Some("10")).unwrap();
        assert_eq!(part.shape, gate_rules::import::Shape::DimensionScores);
        assert_eq!(part.questions.len(), suite.questions.len());
        for (q, ours) in part.questions.iter().zip(&scored.questions) {
            assert_eq!(q.samples.len(), 2, "{}", q.id);
            for (sample, s) in q.samples.iter().zip(&ours.samples) {
                assert_eq!(sample.points, s.total);
                assert_eq!(sample.dimensions.len(), 5);
                assert!(sample.dimensions.iter().all(|d| d.reason.as_deref().is_some_and(|r| !r.is_empty())));
                assert_eq!(sample.response.as_deref(), Some(s.response.as_str()));
            }
            // The contaminated second sample is an automatic zero.
            assert_eq!(q.samples[1].points, 0.0, "{}", q.id);
        }
        let phase = gate_rules::import::merge(vec![part], "persona-v1").unwrap();
        assert_eq!(phase.generation[0].key, "max_new_tokens");
        assert_eq!(phase.config_value("model"), Some("tiny"));
    }

    #[test]
    fn score_lines_name_each_question_and_the_phase() {
        let suite = Suite::from_toml_str(SUITE, Path::new("suite.toml")).unwrap();
        let scored = score_phase(&suite, &crate::judge::fake::lexicon(&suite), &responses(&suite)).unwrap();
        let lines = score_lines(&scored, &scores_file(&scored, "10", None), None);
        assert_eq!(lines.len(), suite.questions.len() + 1);
        assert!(lines[0].starts_with("score: Q1 "), "{}", lines[0]);
        assert!(lines.last().unwrap().contains("over 16 samples"), "{lines:?}");
    }
}

#[cfg(test)]
#[path = "score_job_judge_tests.rs"]
mod judge_tests;

#[cfg(test)]
#[path = "score_job_sql_tests.rs"]
mod sql_tests;
