//! Executes one leased job: prepare its directory, run it, collect metrics and artifacts, report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::{mpsc, watch};

use phasegate_proto::client::AgentClient;
use phasegate_proto::domain::Lease;
use phasegate_proto::spec::{JobWork, StageJob};
use phasegate_proto::{CHUNK_BYTES, pb};

use crate::caps::GpuProbe;
use crate::collect::{Matcher, collect};
use crate::events::{Event, stream_events};
use crate::metrics::{JobMetrics, MetricSources, parse_metrics_file};
use crate::retry::{RetryPolicy, retry};
use crate::runner::{CommandSpec, JobExit, RunIo, run_command};

/// What a finished job reports.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub success: bool,
    pub error: String,
    pub exit_code: Option<i32>,
    pub metrics: Option<pb::JobMetrics>,
    pub artifacts: Vec<pb::ArtifactRef>,
    pub result_json: String,
}

#[derive(Debug, Clone)]
pub(crate) struct JobContext {
    pub client: AgentClient,
    pub work_dir: PathBuf,
    pub probe: Arc<dyn GpuProbe>,
    pub grace: Duration,
    /// Where eval jobs resolve model names.
    pub model_cache: PathBuf,
    /// The agent's environment fingerprint as last registered (eval results record it).
    pub environment: BTreeMap<String, String>,
    /// How the job's calls to the coordinator ride out an outage.
    pub retry: RetryPolicy,
}

/// How [`execute`] left a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobEnd {
    /// Its end was reported (or the report refused: the job belongs to someone else now).
    Reported,
    /// `cancel` fired: nothing was reported. The coordinator no longer owns the job, or the agent
    /// stopped it to give it back.
    Stopped,
}

/// Runs an assignment to its end and reports it, unless `cancel` fired (then nothing is reported:
/// the lease is gone, or the caller gives the job back).
pub(crate) async fn execute(ctx: JobContext, a: pb::Assignment, cancel: watch::Receiver<bool>) -> JobEnd {
    let lease = match Lease::of_assignment(&a) {
        Ok(lease) => lease,
        Err(e) => {
            // Without a valid lease nothing this job reports would be accepted.
            tracing::error!(job = a.job_id, error = %e, "assignment without a usable lease; not running it");
            return JobEnd::Stopped;
        }
    };
    let (events_tx, events_rx) = mpsc::channel::<Event>(1024);
    let streamer = tokio::spawn(stream_events(ctx.client.clone(), lease, events_rx));
    let report = run_stages(&ctx, &a, lease, &events_tx, cancel.clone()).await;
    drop(events_tx);
    match streamer.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(job = a.job_id, error = %e, "events not delivered"),
        Err(e) => tracing::warn!(job = a.job_id, error = %e, "event streamer crashed"),
    }
    if *cancel.borrow() {
        tracing::info!(job = a.job_id, "job stopped");
        return JobEnd::Stopped;
    }
    complete(&ctx.client, ctx.retry, lease, report).await;
    JobEnd::Reported
}

async fn run_stages(
    ctx: &JobContext,
    a: &pb::Assignment,
    lease: Lease,
    events: &mpsc::Sender<Event>,
    cancel: watch::Receiver<bool>,
) -> Report {
    let dir = ctx.work_dir.join("jobs").join(format!("{}-{}", a.job_id, a.attempt));
    let say = |text: String| {
        let events = events.clone();
        async move {
            let _ = events.send(Event::Agent(text)).await;
        }
    };
    if let Err(e) = prepare_dir(ctx, a, &dir).await {
        say(format!("failed to prepare the job directory: {e}")).await;
        return Report {
            error: format!("failed to prepare the job directory {}: {e}", dir.display()),
            ..Default::default()
        };
    }
    let started = retry(ctx.retry.clone(), "start job", || {
        let mut client = ctx.client.clone();
        async move { client.start_job(pb::StartJobRequest { lease: Some(lease.into()) }).await }
    })
    .await;
    if let Err(s) = started {
        return Report { error: format!("failed to mark the job running: {}", s.message()), ..Default::default() };
    }
    match &a.work {
        Some(pb::assignment::Work::Command(cmd)) => run_command_job(ctx, a, lease, cmd, &dir, events, cancel).await,
        Some(pb::assignment::Work::StageJson(json)) => run_stage_job(ctx, a, lease, json, &dir, events, cancel).await,
        None => Report { error: "the assignment carries no work".into(), ..Default::default() },
    }
}

/// A non-command stage (eval, score), described by the spec's section as JSON.
async fn run_stage_job(
    ctx: &JobContext,
    a: &pb::Assignment,
    lease: Lease,
    json: &str,
    dir: &Path,
    events: &mpsc::Sender<Event>,
    cancel: watch::Receiver<bool>,
) -> Report {
    let job = match StageJob::from_json(json) {
        Ok(job) => job,
        Err(e) => {
            let error = format!(
                "failed to read the {} stage's work: {e}\nhint: agent and coordinator versions differ?",
                a.stage
            );
            return Report { error, ..Default::default() };
        }
    };
    match &job.work {
        JobWork::Lint(stage) => crate::lint_job::run(ctx, stage, lease, dir, events, cancel).await,
        JobWork::Eval(stage) => crate::eval_job::run(ctx, &job, stage, lease, dir, events, cancel).await,
        JobWork::Score(stage) => {
            let io = crate::score_job::ScoreIo { lease, dir, events, cancel };
            crate::score_job::run(ctx, a, &job, stage, io).await
        }
    }
}

/// Raises `interrupt` when the job is cancelled or `timeout` — the spec's `timeout_key`
/// (`eval.timeout`, `score.timeout`) — has passed; the engine stops at its next token. Returns the
/// reason raised.
pub(crate) async fn stop_on(
    mut cancel: watch::Receiver<bool>,
    timeout: Duration,
    timeout_key: &'static str,
    interrupt: phasegate_eval::Interrupt,
) -> String {
    let cancelled = async {
        while !*cancel.borrow_and_update() {
            if cancel.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    let reason = tokio::select! {
        () = cancelled => "the job was cancelled".to_owned(),
        () = tokio::time::sleep(timeout) => {
            format!("`{timeout_key}` ({}) reached", humantime::format_duration(timeout))
        }
    };
    interrupt.raise(reason.clone());
    reason
}

async fn run_command_job(
    ctx: &JobContext,
    a: &pb::Assignment,
    lease: Lease,
    cmd: &pb::CommandWork,
    dir: &Path,
    events: &mpsc::Sender<Event>,
    cancel: watch::Receiver<bool>,
) -> Report {
    let mut env: BTreeMap<String, String> = cmd.env.iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect();
    if let Some(gpu) = a.gpu_index {
        env.insert("CUDA_VISIBLE_DEVICES".into(), gpu.to_string());
    }
    env.insert("PHASEGATE_JOB_ID".into(), a.job_id.to_string());
    env.insert("PHASEGATE_RUN_ID".into(), a.run_id.to_string());
    env.insert("PHASEGATE_ATTEMPT".into(), a.attempt.to_string());
    let spec = CommandSpec {
        argv: cmd.argv.clone(),
        cwd: dir.to_owned(),
        env,
        timeout: (cmd.timeout_ms > 0).then(|| Duration::from_millis(cmd.timeout_ms)),
        grace: ctx.grace,
        vram_sample_interval: Duration::from_secs(2),
        pid_file: Some(crate::lifeline::pid_dir(&ctx.work_dir).join(format!("{}-{}", a.job_id, a.attempt))),
    };
    let (log_tx, mut log_rx) = mpsc::channel(256);
    let (metric_tx, mut metric_rx) = mpsc::channel(256);
    let io = RunIo { logs: log_tx, metrics: metric_tx, cancel, probe: ctx.probe.clone() };
    let forward_events = events.clone();
    let forwarder = tokio::spawn(async move {
        let mut points = Vec::new();
        loop {
            tokio::select! {
                Some(line) = log_rx.recv() => { let _ = forward_events.send(Event::Line(line)).await; }
                Some(point) = metric_rx.recv() => {
                    points.push(point.clone());
                    let _ = forward_events.send(Event::Metric(point)).await;
                }
                else => return points,
            }
        }
    });
    let outcome = run_command(&spec, io).await;
    let points = forwarder.await.unwrap_or_default();
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            return Report { error: e.to_string(), ..Default::default() };
        }
    };
    let mut sources =
        MetricSources { metric_lines: points, measured_vram_peak_mib: outcome.vram_peak_mib, ..Default::default() };
    let mut problems = Vec::new();
    collect_metric_files(dir, &cmd.metrics_globs, &mut sources, &mut problems);
    let metrics = to_pb(&sources.merge(), outcome.duration);
    let artifacts = match upload_artifacts(ctx, lease, dir, &cmd.artifact_globs).await {
        Ok(list) => list,
        Err(e) => {
            problems.push(e);
            Vec::new()
        }
    };
    for p in &problems {
        let _ = events.send(Event::Agent(p.clone())).await;
    }
    let (success, exit_code, error) = match outcome.exit {
        JobExit::Exited(0) => (problems.is_empty(), Some(0), problems.join("; ")),
        JobExit::Exited(code) => (false, Some(code), format!("command exited with status {code}")),
        JobExit::Signaled(sig) => (false, None, format!("command killed by signal {sig}")),
        JobExit::TimedOut => (false, None, format!("command timed out after {:?}", spec.timeout.unwrap_or_default())),
        JobExit::Cancelled => (false, None, "command cancelled".to_owned()),
    };
    Report { success, error, exit_code, metrics: Some(metrics), artifacts, result_json: String::new() }
}

fn collect_metric_files(dir: &Path, globs: &[String], sources: &mut MetricSources, problems: &mut Vec<String>) {
    if globs.is_empty() {
        return;
    }
    let files = match Matcher::new(globs).and_then(|m| collect(dir, &m)) {
        Ok(f) => f,
        Err(e) => return problems.push(e.to_string()),
    };
    for f in files {
        match std::fs::read_to_string(&f.abs_path) {
            Ok(text) => match parse_metrics_file(Path::new(&f.rel_path), &text) {
                Ok(parsed) => sources.add_file(parsed),
                Err(e) => problems.push(e.to_string()),
            },
            Err(e) => problems.push(format!("failed to read metrics file {}: {e}", f.rel_path)),
        }
    }
}

fn to_pb(m: &JobMetrics, duration: Duration) -> pb::JobMetrics {
    let curve = |c: &[crate::metrics::LossPoint]| {
        c.iter().map(|p| pb::LossPoint { step: p.step, epoch: p.epoch, loss: p.loss }).collect()
    };
    pb::JobMetrics {
        final_loss: m.final_loss,
        vram_peak_mib: m.vram_peak_mib,
        loss_curve: curve(&m.loss_curve),
        eval_loss_curve: curve(&m.eval_loss_curve),
        summary_json: serde_json::Value::Object(m.summary.clone()).to_string(),
        duration_s: Some(duration.as_secs_f64()),
    }
}

/// Creates a fresh job directory with the run's source bundle and the earlier stages' artifacts.
async fn prepare_dir(ctx: &JobContext, a: &pb::Assignment, dir: &Path) -> Result<(), String> {
    if dir.exists() {
        tokio::fs::remove_dir_all(dir).await.map_err(|e| e.to_string())?;
    }
    tokio::fs::create_dir_all(dir).await.map_err(|e| e.to_string())?;
    if !a.bundle_sha256.is_empty() {
        let bytes = download(&ctx.client, ctx.retry.clone(), &a.bundle_sha256).await?;
        let dest = dir.to_owned();
        tokio::task::spawn_blocking(move || crate::bundle::unpack(&bytes, &dest))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }
    for input in &a.inputs {
        let bytes = download(&ctx.client, ctx.retry.clone(), &input.sha256).await?;
        let rel = Path::new(&input.name);
        if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(format!("input artifact name {:?} escapes the job directory", input.name));
        }
        let path = dir.join("inputs").join(rel);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(|e| e.to_string())?;
        }
        tokio::fs::write(&path, bytes).await.map_err(|e| format!("failed to write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Downloads an artifact and checks its digest. A download cut off by a coordinator restart starts
/// again from the beginning.
pub(crate) async fn download(client: &AgentClient, policy: RetryPolicy, sha256: &str) -> Result<Vec<u8>, String> {
    let bytes = retry(policy, "download artifact", || download_once(client.clone(), sha256))
        .await
        .map_err(|s| format!("failed to download artifact {sha256}: {}", s.message()))?;
    let actual = crate::bundle::sha256_hex(&bytes);
    if actual != sha256 {
        return Err(format!("downloaded artifact {sha256} has digest {actual}"));
    }
    Ok(bytes)
}

async fn download_once(mut client: AgentClient, sha256: &str) -> Result<Vec<u8>, tonic::Status> {
    let mut stream =
        client.download_artifact(pb::DownloadArtifactRequest { sha256: sha256.to_owned() }).await?.into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        if let Some(pb::artifact_chunk::Part::Data(d)) = chunk?.part {
            bytes.extend_from_slice(&d);
        }
    }
    Ok(bytes)
}

async fn upload_artifacts(
    ctx: &JobContext,
    lease: Lease,
    dir: &Path,
    globs: &[String],
) -> Result<Vec<pb::ArtifactRef>, String> {
    if globs.is_empty() {
        return Ok(Vec::new());
    }
    let files = Matcher::new(globs).and_then(|m| collect(dir, &m)).map_err(|e| e.to_string())?;
    let mut refs = Vec::with_capacity(files.len());
    for f in files {
        let bytes =
            tokio::fs::read(&f.abs_path).await.map_err(|e| format!("failed to read artifact {}: {e}", f.rel_path))?;
        refs.push(upload(ctx, lease, &f.rel_path, bytes).await?);
    }
    Ok(refs)
}

/// Uploads one artifact in chunks, fenced by the job's lease. An upload cut off by a coordinator
/// restart is sent again whole (the store keeps artifacts by digest, so a repeat is harmless).
pub(crate) async fn upload(
    ctx: &JobContext,
    lease: Lease,
    name: &str,
    bytes: Vec<u8>,
) -> Result<pb::ArtifactRef, String> {
    let header = pb::ArtifactHeader {
        job_id: lease.job.0,
        epoch: lease.epoch.0,
        lease_token: lease.token.to_hex(),
        name: name.to_owned(),
        size: bytes.len() as u64,
        sha256: crate::bundle::sha256_hex(&bytes),
    };
    let resp = retry(ctx.retry.clone(), "upload artifact", || {
        let mut chunks = vec![pb::ArtifactChunk { part: Some(pb::artifact_chunk::Part::Header(header.clone())) }];
        chunks.extend(
            bytes
                .chunks(CHUNK_BYTES)
                .map(|c| pb::ArtifactChunk { part: Some(pb::artifact_chunk::Part::Data(c.to_vec())) }),
        );
        let mut client = ctx.client.clone();
        async move { client.upload_artifact(futures::stream::iter(chunks)).await }
    })
    .await
    .map_err(|s| format!("failed to upload artifact {name}: {}", s.message()))?;
    resp.into_inner().artifact.ok_or_else(|| format!("failed to upload artifact {name}: no reference returned"))
}

/// Gives a job back unfinished so it is queued again at once without counting the attempt,
/// retrying while the coordinator does not answer (within the policy's limit: a lease that
/// expires meanwhile requeues the job anyway). A refusal means the job is no longer ours.
pub(crate) async fn release(client: &AgentClient, policy: RetryPolicy, lease: Lease, reason: &str) {
    let req = pb::ReleaseJobRequest { lease: Some(lease.into()), reason: reason.to_owned() };
    let done = retry(policy, "release job", || {
        let mut c = client.clone();
        let req = req.clone();
        async move { c.release_job(req).await }
    })
    .await;
    match done {
        Ok(_) => tracing::info!(job = %lease.job, reason, "job given back to the coordinator"),
        Err(s) => tracing::warn!(job = %lease.job, error = s.message(), "release not accepted"),
    }
}

/// Reports the end of a job, retrying for as long as the coordinator does not answer (it may be
/// restarting; the agent re-attaches the lease when it is back). A refusal (stale lease) ends the
/// retries: the job belongs to someone else now.
async fn complete(client: &AgentClient, policy: RetryPolicy, lease: Lease, report: Report) {
    let req = pb::CompleteJobRequest {
        lease: Some(lease.into()),
        success: report.success,
        error: report.error,
        exit_code: report.exit_code,
        metrics: report.metrics,
        artifacts: report.artifacts,
        result_json: report.result_json,
    };
    let done = retry(policy.forever(), "complete job", || {
        let mut c = client.clone();
        let req = req.clone();
        async move { c.complete_job(req).await }
    })
    .await;
    if let Err(s) = done {
        tracing::warn!(job = %lease.job, error = s.message(), "completion rejected");
    }
}
