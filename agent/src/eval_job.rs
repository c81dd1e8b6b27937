//! The `eval` stage on the agent: the suite's questions, asked of a model (plus the fine-tune's
//! adapter) K times each, written as an eval-responses file and uploaded as [`EVAL_RESPONSES`].
//!
//! The model resolves on this agent (a path, or a name in its model cache). Generation runs on a
//! blocking thread, a chunk of prompts at a time so progress can be reported between chunks; the
//! seed of sample i of question q derives from (seed, q, i), so chunking does not change answers.
//! The file records the generation parameters actually used and the environment (the agent's
//! fingerprint plus device, dtype and batch size), which the gate compares between phases.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use phasegate_eval::{
    CpuRequantize, Engine, EvalError, GenerationOutput, GenerationParams, Interrupt, ModelInfo, ModelSpec, Prompt,
    RepetitionPenaltyScope,
};
use phasegate_proto::domain::Lease;
use phasegate_proto::spec::{EVAL_RESPONSES, EvalStage, PenaltyScope, Requantize, StageJob};
use phasegate_score::{ResponseRecord, Responses, Suite, Timing};

use crate::events::Event;
use crate::job::{JobContext, Report};
use crate::metrics::MetricPoint;

/// How often a line says the eval is still generating.
const TICK: Duration = Duration::from_secs(15);

/// Why an eval job failed; the job's error is this message.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EvalJobError {
    #[error(transparent)]
    Suite(#[from] phasegate_score::SuiteError),
    #[error(
        "failed to find the adapter `eval.adapter` = {prefix:?} among the finetune artifacts (inputs: {inputs})\n\
         hint: list the adapter files in `finetune.artifacts`"
    )]
    Adapter { prefix: String, inputs: String },
    #[error("failed to resolve `eval.model` = {model:?}: {source}")]
    Model { model: String, source: EvalError },
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error("failed to write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Upload(String),
    #[error("the eval task stopped: {0}")]
    Task(String),
}

/// Everything generation needs, prepared before the blocking work.
#[derive(Debug)]
struct Plan {
    model_path: PathBuf,
    spec: ModelSpec,
    suite: Suite,
    prompts: Vec<Prompt>,
    params: GenerationParams,
    timeout: Duration,
}

/// What generation produced.
#[derive(Debug)]
struct Generated {
    info: ModelInfo,
    output: GenerationOutput,
    load_s: f64,
}

pub(crate) async fn run(
    ctx: &JobContext,
    job: &StageJob,
    stage: &EvalStage,
    lease: Lease,
    dir: &Path,
    events: &mpsc::Sender<Event>,
    cancel: watch::Receiver<bool>,
) -> Report {
    let started = Instant::now();
    match eval(ctx, job, stage, lease, dir, events, cancel).await {
        Ok((artifact, summary)) => Report {
            success: true,
            metrics: Some(phasegate_proto::pb::JobMetrics {
                duration_s: Some(started.elapsed().as_secs_f64()),
                summary_json: summary.to_string(),
                ..Default::default()
            }),
            artifacts: vec![artifact],
            result_json: summary.to_string(),
            ..Default::default()
        },
        Err(e) => {
            let _ = events.send(Event::Agent(format!("eval failed: {e}"))).await;
            Report { error: e.to_string(), ..Default::default() }
        }
    }
}

async fn eval(
    ctx: &JobContext,
    job: &StageJob,
    stage: &EvalStage,
    lease: Lease,
    dir: &Path,
    events: &mpsc::Sender<Event>,
    cancel: watch::Receiver<bool>,
) -> Result<(phasegate_proto::pb::ArtifactRef, serde_json::Value), EvalJobError> {
    let plan = plan(stage, dir, &ctx.model_cache)?;
    let say = format!(
        "eval: {} questions x {} samples, up to {} new tokens, model {}",
        plan.prompts.len(),
        plan.params.samples,
        plan.params.max_new_tokens,
        plan.model_path.display()
    );
    let _ = events.send(Event::Agent(say)).await;
    let wall = Instant::now();
    let generated = generate(&plan, events, cancel).await?;
    let wall_s = wall.elapsed().as_secs_f64();
    let responses = responses(job, stage, &plan, &generated, wall_s);
    let environment = environment(&ctx.environment, &generated.info, &plan.params);
    let mut file = serde_json::to_value(&responses).unwrap_or_default();
    file["environment"] = serde_json::to_value(&environment).unwrap_or_default();
    let bytes = serde_json::to_vec_pretty(&file).unwrap_or_default();
    let path = dir.join(EVAL_RESPONSES);
    write(&path, &bytes).await?;
    let artifact = crate::job::upload(ctx, lease, EVAL_RESPONSES, bytes).await.map_err(EvalJobError::Upload)?;
    let summary = summary(&responses, &generated);
    let _ = events.send(Event::Agent(format!("eval: done; wrote {EVAL_RESPONSES}: {summary}"))).await;
    Ok((artifact, summary))
}

async fn write(path: &Path, bytes: &[u8]) -> Result<(), EvalJobError> {
    let fail = |source| EvalJobError::Write { path: path.to_owned(), source };
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(fail)?;
    }
    tokio::fs::write(path, bytes).await.map_err(fail)
}

fn plan(stage: &EvalStage, dir: &Path, cache: &Path) -> Result<Plan, EvalJobError> {
    let suite = Suite::load(&dir.join(&stage.suite))?;
    let model_path = phasegate_eval::models::resolve(&stage.model, cache)
        .map_err(|source| EvalJobError::Model { model: stage.model.clone(), source })?;
    let adapter = stage.adapter.as_deref().map(|prefix| adapter_dir(dir, prefix)).transpose()?;
    let spec = ModelSpec {
        reference: model_path.display().to_string(),
        adapter,
        template_override: stage.template.clone(),
        cpu_requantize: stage.cpu_requantize.map(|Requantize::Q8_0| CpuRequantize::Q8_0),
    };
    let prompts = prompts(&suite);
    Ok(Plan { model_path, spec, suite, prompts, params: params(stage), timeout: Duration::from_secs(stage.timeout_s) })
}

/// The adapter directory among the downloaded inputs (`inputs/<prefix>`).
fn adapter_dir(dir: &Path, prefix: &str) -> Result<PathBuf, EvalJobError> {
    let path = dir.join("inputs").join(prefix);
    if path.join("adapter_config.json").is_file() {
        return Ok(path);
    }
    let inputs = crate::collect::Matcher::new(&["**".to_owned()])
        .and_then(|m| crate::collect::collect(&dir.join("inputs"), &m))
        .map(|files| files.into_iter().map(|f| f.rel_path).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    let inputs = if inputs.is_empty() { "none".to_owned() } else { inputs };
    Err(EvalJobError::Adapter { prefix: prefix.to_owned(), inputs })
}

/// One prompt per question: the suite's system prompt (the persona's, where it has one) and the
/// question text.
pub(crate) fn prompts(suite: &Suite) -> Vec<Prompt> {
    suite
        .questions
        .iter()
        .map(|q| Prompt { qid: q.id.clone(), system: suite.system_prompt.clone(), user: q.text.clone() })
        .collect()
}

/// The spec's parameters over the engine's defaults.
pub(crate) fn params(stage: &EvalStage) -> GenerationParams {
    let g = &stage.generation;
    let d = GenerationParams::default();
    GenerationParams {
        max_new_tokens: g.max_new_tokens.map_or(d.max_new_tokens, |v| v as usize),
        temperature: g.temperature.unwrap_or(d.temperature),
        top_p: g.top_p.unwrap_or(d.top_p),
        top_k: g.top_k.map_or(d.top_k, |v| v as usize),
        repetition_penalty: g.repetition_penalty.map_or(d.repetition_penalty, |v| v as f32),
        repetition_penalty_scope: match g.repetition_penalty_scope {
            PenaltyScope::All => RepetitionPenaltyScope::All,
            PenaltyScope::Generated => RepetitionPenaltyScope::Generated,
        },
        samples: g.samples.map_or(d.samples, |v| v as usize),
        seed: g.seed.unwrap_or(d.seed),
        max_batch: g.max_batch.map_or(d.max_batch, |v| v as usize),
    }
}

/// Loads the model and generates on a blocking thread, a chunk of prompts at a time, saying how
/// far it got; a ticker says it is alive while a chunk runs.
/// A cancellation from the coordinator or `eval.timeout` stops the generation at its next
/// decoding step.
async fn generate(
    plan: &Plan,
    events: &mpsc::Sender<Event>,
    cancel: watch::Receiver<bool>,
) -> Result<Generated, EvalJobError> {
    let done = Arc::new(AtomicUsize::new(0));
    let total = plan.prompts.len() * plan.params.samples;
    let ticker = tokio::spawn(tick(events.clone(), done.clone(), total));
    let interrupt = Interrupt::default();
    let watchdog = tokio::spawn(crate::job::stop_on(cancel, plan.timeout, "eval.timeout", interrupt.clone()));
    let (path, spec, prompts, params) =
        (plan.model_path.clone(), plan.spec.clone(), plan.prompts.clone(), plan.params.clone());
    let progress = events.clone();
    let result = tokio::task::spawn_blocking(move || {
        generate_blocking(&path, &spec, &prompts, &params, &progress, &done, interrupt)
    })
    .await;
    ticker.abort();
    watchdog.abort();
    result.map_err(|e| EvalJobError::Task(e.to_string()))?
}

async fn tick(events: mpsc::Sender<Event>, done: Arc<AtomicUsize>, total: usize) {
    let started = Instant::now();
    loop {
        tokio::time::sleep(TICK).await;
        let line = format!(
            "eval: generating, {:.0} s elapsed, {}/{total} answers done",
            started.elapsed().as_secs_f64(),
            done.load(Ordering::Relaxed)
        );
        if events.send(Event::Agent(line)).await.is_err() {
            return;
        }
    }
}

fn generate_blocking(
    path: &Path,
    spec: &ModelSpec,
    prompts: &[Prompt],
    params: &GenerationParams,
    events: &mpsc::Sender<Event>,
    done: &AtomicUsize,
    interrupt: Interrupt,
) -> Result<Generated, EvalJobError> {
    let started = Instant::now();
    let engine = Engine::load_path(path, spec)?.with_interrupt(interrupt);
    let load_s = started.elapsed().as_secs_f64();
    let info = engine.model_info().clone();
    let _ = events.blocking_send(Event::Agent(format!(
        "eval: loaded {} ({}, {}, {} parameters) in {load_s:.1} s",
        info.name, info.architecture, info.dtype, info.parameters
    )));
    let total = prompts.len() * params.samples;
    let per_chunk = (params.max_batch / params.samples.max(1)).max(1);
    let mut output = GenerationOutput::default();
    for chunk in prompts.chunks(per_chunk) {
        let part = engine.generate(chunk, params)?;
        output.answers.extend(part.answers);
        add_timing(&mut output.timing, &part.timing);
        let n = done.fetch_add(chunk.len() * params.samples, Ordering::Relaxed) + chunk.len() * params.samples;
        let _ = events.blocking_send(Event::Agent(format!("eval: {n}/{total} answers done")));
        let values =
            BTreeMap::from([("answers_done".to_owned(), n as f64), ("answers_total".to_owned(), total as f64)]);
        let point = MetricPoint { step: Some(n as u64), values, extra: serde_json::Map::new() };
        let _ = events.blocking_send(Event::Metric(point));
    }
    Ok(Generated { info, output, load_s })
}

/// Sums the token counts and wall times of chunks, and recomputes the rates from them.
fn add_timing(total: &mut phasegate_eval::Timing, part: &phasegate_eval::Timing) {
    let secs = |tokens: usize, rate: f64| if rate > 0.0 { tokens as f64 / rate } else { 0.0 };
    let prompt_s =
        secs(total.prompt_tokens, total.prompt_tokens_per_s) + secs(part.prompt_tokens, part.prompt_tokens_per_s);
    let gen_s = secs(total.generated_tokens, total.generation_tokens_per_s)
        + secs(part.generated_tokens, part.generation_tokens_per_s);
    total.prompt_tokens += part.prompt_tokens;
    total.generated_tokens += part.generated_tokens;
    total.wall_s += part.wall_s;
    total.prompt_tokens_per_s = if prompt_s > 0.0 { total.prompt_tokens as f64 / prompt_s } else { 0.0 };
    total.generation_tokens_per_s = if gen_s > 0.0 { total.generated_tokens as f64 / gen_s } else { 0.0 };
}

/// The eval-responses file (`phasegate_score::Responses`).
fn responses(job: &StageJob, stage: &EvalStage, plan: &Plan, generated: &Generated, wall_s: f64) -> Responses {
    let text_of = |qid: &str| plan.suite.question(qid).map(|q| q.text.clone()).unwrap_or_default();
    let results = generated
        .output
        .answers
        .iter()
        .map(|a| ResponseRecord {
            qid: a.qid.clone(),
            question: text_of(&a.qid),
            response: a.text.clone(),
            sample: u32::try_from(a.sample).unwrap_or(u32::MAX),
            seed: Some(a.seed),
            truncated: a.truncated,
            tokens: u32::try_from(a.generated_tokens).ok(),
            d4_auto_fail: None,
            d4_auto_score: None,
        })
        .collect();
    let t = &generated.output.timing;
    Responses {
        phase: job.phase.clone(),
        model: stage.model.clone(),
        adapter: stage.adapter.clone(),
        timestamp: None,
        generation_params: generation_params(&plan.params),
        results,
        timing: Some(Timing {
            prompt_tokens_per_s: t.prompt_tokens_per_s,
            generation_tokens_per_s: t.generation_tokens_per_s,
            wall_s,
        }),
        peak_rss_mib: peak_rss_mib(),
    }
}

/// The parameters used, as the gate compares them between phases.
pub(crate) fn generation_params(p: &GenerationParams) -> phasegate_score::GenerationParams {
    let scope = match p.repetition_penalty_scope {
        RepetitionPenaltyScope::All => "all",
        RepetitionPenaltyScope::Generated => "generated",
    };
    let mut out = phasegate_score::GenerationParams::new();
    out.insert("max_new_tokens".into(), p.max_new_tokens.into());
    out.insert("temperature".into(), p.temperature.into());
    out.insert("top_p".into(), p.top_p.into());
    out.insert("top_k".into(), p.top_k.into());
    // The engine holds an f32; record the value as written (1.3, not 1.2999999523162842).
    let penalty: f64 = p.repetition_penalty.to_string().parse().unwrap_or(f64::from(p.repetition_penalty));
    out.insert("repetition_penalty".into(), penalty.into());
    out.insert("repetition_penalty_scope".into(), scope.into());
    out.insert("samples".into(), p.samples.into());
    out.insert("seed".into(), p.seed.into());
    out
}

/// The agent's fingerprint plus what this eval ran with: engine, weight type, batch size.
fn environment(
    agent: &BTreeMap<String, String>,
    info: &ModelInfo,
    params: &GenerationParams,
) -> BTreeMap<String, String> {
    let mut env = agent.clone();
    env.insert("eval_engine".into(), "candle".into());
    env.insert("dtype".into(), info.dtype.clone());
    env.insert("batch_size".into(), params.max_batch.to_string());
    env
}

/// Peak resident memory of this process (`VmHWM`), in MiB: the agent's, model and KV caches included.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn summary(responses: &Responses, generated: &Generated) -> serde_json::Value {
    let t = &generated.output.timing;
    let truncated = responses.results.iter().filter(|r| r.truncated).count();
    serde_json::json!({
        "answers": responses.results.len(),
        "truncated": truncated,
        "model": generated.info.name,
        "dtype": generated.info.dtype,
        "load_s": (generated.load_s * 100.0).round() / 100.0,
        "generated_tokens": t.generated_tokens,
        "generation_tokens_per_s": (t.generation_tokens_per_s * 10.0).round() / 10.0,
        "prompt_tokens_per_s": (t.prompt_tokens_per_s * 10.0).round() / 10.0,
        "wall_s": responses.timing.as_ref().map(|t| (t.wall_s * 100.0).round() / 100.0),
        "peak_rss_mib": responses.peak_rss_mib.map(f64::round),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reason an interrupt was raised with, if any: a tiny engine reports it when asked to
    /// generate.
    fn raised(interrupt: &Interrupt) -> Option<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = phasegate_eval::tiny::write_tiny_gguf(dir.path());
        let spec = ModelSpec { reference: path.display().to_string(), ..ModelSpec::default() };
        let engine = Engine::load_path(&path, &spec).unwrap().with_interrupt(interrupt.clone());
        let prompt = Prompt { qid: "Q1".into(), system: None, user: "Oi".into() };
        let params = GenerationParams { max_new_tokens: 2, ..GenerationParams::default() };
        match engine.generate(&[prompt], &params) {
            Err(EvalError::Interrupted(reason)) => Some(reason),
            Ok(_) => None,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_timeout_stops_generation_and_says_so() {
        let (_tx, rx) = watch::channel(false);
        let interrupt = Interrupt::default();
        let watchdog =
            tokio::spawn(crate::job::stop_on(rx, Duration::from_secs(1200), "eval.timeout", interrupt.clone()));
        tokio::time::sleep(Duration::from_secs(1199)).await;
        assert_eq!(raised(&interrupt), None);
        tokio::time::sleep(Duration::from_secs(2)).await;
        watchdog.await.unwrap();
        assert_eq!(raised(&interrupt).as_deref(), Some("`eval.timeout` (20m) reached"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_score_stage_timeout_is_named_as_its_own_key() {
        let (_tx, rx) = watch::channel(false);
        let interrupt = Interrupt::default();
        crate::job::stop_on(rx, Duration::from_secs(90 * 60), "score.timeout", interrupt.clone()).await;
        assert_eq!(raised(&interrupt).as_deref(), Some("`score.timeout` (1h 30m) reached"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancellation_stops_generation() {
        let (tx, rx) = watch::channel(false);
        let interrupt = Interrupt::default();
        let watchdog =
            tokio::spawn(crate::job::stop_on(rx, Duration::from_secs(3600), "eval.timeout", interrupt.clone()));
        tokio::task::yield_now().await;
        assert_eq!(raised(&interrupt), None);
        tx.send(true).unwrap();
        watchdog.await.unwrap();
        assert_eq!(raised(&interrupt).as_deref(), Some("the job was cancelled"));
    }
}
