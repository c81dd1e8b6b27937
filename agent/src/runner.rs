//! Running a `command` job: argv without a shell, in its own process group, with its output streamed
//! line by line, a timeout, cancellation, and VRAM sampling of its process tree.
//!
//! Contract:
//! - Output lines go into a bounded channel; when it is full the reader waits, so a slow consumer
//!   slows the job's pipes down instead of losing lines. If the receiver is gone, lines are dropped
//!   but the pipes are still drained so the job never blocks on a full pipe.
//! - Stop (timeout or cancel): SIGTERM to the whole group, then SIGKILL to the group once the grace
//!   period passes with any member still alive.
//! - The job is over when its leader exits; members of its group still running then are killed, so
//!   nothing keeps holding GPU memory after the job is reported.
//! - stdout lines starting with [`crate::metrics::METRIC_LINE_PREFIX`] are parsed and sent on the metrics channel
//!   (and logged like any other line); malformed ones are counted in the outcome.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;
use tokio::sync::{mpsc, watch};

use crate::caps::GpuProbe;
use crate::lifeline::{self, Lifeline};
use crate::metrics::{MetricPoint, parse_metric_line};
use crate::proctree;

/// Lines longer than this (in bytes) are cut, and the rest of the line is discarded.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// Appended to a cut line.
pub const TRUNCATED_MARKER: &str = " [line truncated by phasegate]";
/// How long to wait for the pipes to close after the job's group is gone; a process that left the
/// group (e.g. with `setsid`) could otherwise keep them open forever.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the group is checked for survivors during the grace period.
const GRACE_POLL: Duration = Duration::from_millis(50);

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    /// Program and arguments; never passed through a shell.
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    /// Added to the agent's own environment (and overriding it).
    pub env: BTreeMap<String, String>,
    pub timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Time between two VRAM samples.
    pub vram_sample_interval: Duration,
    /// Where to record the job's process group while it runs, so that a restarted agent can kill
    /// what an earlier one left behind (see [`crate::lifeline`]).
    pub pid_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of output, without its line ending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub stream: Stream,
    pub text: String,
    /// Milliseconds since the Unix epoch when the agent read the line.
    pub ts_ms: u64,
}

/// How the job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobExit {
    Exited(i32),
    /// Killed by a signal the agent did not send (e.g. the OOM killer).
    Signaled(i32),
    TimedOut,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub exit: JobExit,
    /// Peak VRAM of the job's processes; `None` when never measured.
    pub vram_peak_mib: Option<u64>,
    pub duration: Duration,
    /// Metric lines that could not be parsed (they were still logged).
    pub malformed_metric_lines: u64,
}

/// Where a running job's output and control come from and go to.
#[derive(Debug)]
pub struct RunIo {
    pub logs: mpsc::Sender<LogLine>,
    pub metrics: mpsc::Sender<MetricPoint>,
    /// The job is cancelled when this becomes `true`. A dropped sender never cancels.
    pub cancel: watch::Receiver<bool>,
    pub probe: Arc<dyn GpuProbe>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("failed to start a job: the command is empty")]
    EmptyCommand,
    #[error("failed to start `{program}` in {cwd}: {source}")]
    Spawn {
        program: String,
        cwd: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to wait for `{program}`: {source}")]
    Wait {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

/// Kills the group if the run is abandoned (its future dropped) before the job was reaped.
#[derive(Debug)]
struct GroupGuard {
    pgid: Pid,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = killpg(self.pgid, Signal::SIGKILL);
        }
    }
}

/// Runs the job to its end. Errors only when it cannot be started or waited for; everything the job
/// itself does is in the [`RunOutcome`].
pub async fn run_command(spec: &CommandSpec, io: RunIo) -> Result<RunOutcome, RunError> {
    let program = spec.argv.first().ok_or(RunError::EmptyCommand)?.clone();
    let started = Instant::now();
    let spawn_error = |source| RunError::Spawn { program: program.clone(), cwd: spec.cwd.clone(), source };
    let mut command = tokio::process::Command::new(&program);
    command
        .args(&spec.argv[1..])
        .current_dir(&spec.cwd)
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // The job's group dies with the agent, however the agent ends.
    let mut lifeline = Lifeline::arm(&mut command).map_err(spawn_error)?;
    let mut child = command.spawn().map_err(spawn_error)?;
    lifeline.started();
    let leader = child.id().unwrap_or(0);
    let pgid = Pid::from_raw(i32::try_from(leader).unwrap_or(i32::MAX));
    let mut guard = GroupGuard { pgid, armed: true };
    if let Some(path) = &spec.pid_file
        && let Err(e) = lifeline::record(path, leader)
    {
        tracing::warn!(file = %path.display(), error = %e, "failed to record the job's process group");
    }
    let readers = spawn_readers(&mut child, &io);

    let (exit, vram_peak_mib) =
        supervise(&mut child, spec, io, leader).await.map_err(|source| RunError::Wait { program, source })?;
    // Whatever is left of the group would outlive the job (and hold its GPU memory).
    let _ = killpg(pgid, Signal::SIGKILL);
    guard.armed = false;
    lifeline.release();
    if let Some(path) = &spec.pid_file {
        let _ = std::fs::remove_file(path);
    }
    let malformed_metric_lines = drain_readers(readers).await;
    Ok(RunOutcome { exit, vram_peak_mib, duration: started.elapsed(), malformed_metric_lines })
}

/// Waits for the leader while sampling VRAM, stopping the group on timeout or cancel.
async fn supervise(
    child: &mut Child,
    spec: &CommandSpec,
    io: RunIo,
    leader: u32,
) -> std::io::Result<(JobExit, Option<u64>)> {
    let RunIo { mut cancel, probe, .. } = io;
    let deadline = spec.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut sampler = tokio::time::interval(spec.vram_sample_interval.max(GRACE_POLL));
    sampler.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut peak: Option<u64> = None;
    loop {
        tokio::select! {
            status = child.wait() => {
                let status = status?;
                return Ok((exit_of(status), peak));
            }
            () = sleep_until_opt(deadline) => {
                stop_group(child, leader, spec.grace).await?;
                return Ok((JobExit::TimedOut, peak));
            }
            () = cancelled(&mut cancel) => {
                stop_group(child, leader, spec.grace).await?;
                return Ok((JobExit::Cancelled, peak));
            }
            _ = sampler.tick() => {
                let probe = Arc::clone(&probe);
                let sample = tokio::task::spawn_blocking(move || {
                    let pids = proctree::job_pids(leader);
                    probe.process_vram_used_mib(&pids)
                })
                .await
                .ok()
                .flatten();
                peak = peak.max(sample);
            }
        }
    }
}

fn exit_of(status: std::process::ExitStatus) -> JobExit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => JobExit::Exited(code),
        (None, Some(signal)) => JobExit::Signaled(signal),
        (None, None) => JobExit::Exited(-1),
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    loop {
        if *cancel.borrow_and_update() {
            return;
        }
        if cancel.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// SIGTERM to the group; SIGKILL once `grace` has passed with any member alive. Reaps the leader.
async fn stop_group(child: &mut Child, leader: u32, grace: Duration) -> std::io::Result<()> {
    let pgid = Pid::from_raw(i32::try_from(leader).unwrap_or(i32::MAX));
    let _ = killpg(pgid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    loop {
        // Reap the leader as soon as it exits, so its zombie does not count as alive.
        child.try_wait()?;
        if !proctree::group_alive(leader) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(GRACE_POLL).await;
    }
    if proctree::group_alive(leader) {
        tracing::debug!(pgid = leader, "job group outlived its grace period; killing it");
        let _ = killpg(pgid, Signal::SIGKILL);
    }
    child.wait().await.map(drop)
}

type Readers = [tokio::task::JoinHandle<u64>; 2];

fn spawn_readers(child: &mut Child, io: &RunIo) -> Readers {
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out = tokio::spawn(read_lines(stdout, Stream::Stdout, io.logs.clone(), Some(io.metrics.clone())));
    let err = tokio::spawn(read_lines(stderr, Stream::Stderr, io.logs.clone(), None));
    [out, err]
}

/// Waits for both pipes to close, for at most [`DRAIN_TIMEOUT`]; returns the malformed metric lines.
async fn drain_readers(readers: Readers) -> u64 {
    let mut malformed = 0;
    for mut reader in readers {
        match tokio::time::timeout(DRAIN_TIMEOUT, &mut reader).await {
            Ok(Ok(count)) => malformed += count,
            Ok(Err(e)) => tracing::warn!(error = %e, "job output reader failed"),
            Err(_) => {
                tracing::warn!("job output still open after its process group ended; stop reading");
                reader.abort();
            }
        }
    }
    malformed
}

/// Reads one pipe to its end; returns how many metric lines were malformed.
async fn read_lines<R: AsyncRead + Unpin>(
    pipe: Option<R>,
    stream: Stream,
    logs: mpsc::Sender<LogLine>,
    metrics: Option<mpsc::Sender<MetricPoint>>,
) -> u64 {
    let Some(pipe) = pipe else { return 0 };
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    let mut malformed = 0;
    let mut logs = Some(logs);
    let mut metrics = metrics;
    loop {
        buf.clear();
        match read_capped_line(&mut reader, &mut buf).await {
            Ok(None) => return malformed,
            Ok(Some(truncated)) => {
                let text = line_text(&buf, truncated);
                if let Some(sender) = &metrics {
                    match forward_metric(&text, sender).await {
                        Ok(true) => {}
                        Ok(false) => metrics = None,
                        Err(()) => malformed += 1,
                    }
                }
                let line = LogLine { stream, text, ts_ms: now_ms() };
                if let Some(sender) = &logs
                    && sender.send(line).await.is_err()
                {
                    logs = None;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, ?stream, "failed to read job output");
                return malformed;
            }
        }
    }
}

/// Sends the line's metric point if it is a metric line. `Ok(false)` when the receiver is gone,
/// `Err` when the line is a malformed metric line.
async fn forward_metric(text: &str, sender: &mpsc::Sender<MetricPoint>) -> Result<bool, ()> {
    match parse_metric_line(text) {
        Ok(Some(point)) => Ok(sender.send(point).await.is_ok()),
        Ok(None) => Ok(true),
        Err(e) => {
            tracing::debug!(error = %e, "malformed metric line");
            Err(())
        }
    }
}

/// Reads up to and including the next `\n`, keeping at most [`MAX_LINE_BYTES`] bytes in `buf` and
/// discarding the rest of a longer line. `None` at end of input; otherwise whether it was cut.
async fn read_capped_line<R: AsyncBufReadExt + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<bool>> {
    let mut truncated = false;
    let mut read_any = false;
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(read_any.then_some(truncated));
        }
        read_any = true;
        let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], i + 1),
            None => (chunk, chunk.len()),
        };
        let room = MAX_LINE_BYTES.saturating_sub(buf.len());
        truncated |= part.len() > room;
        buf.extend_from_slice(&part[..part.len().min(room)]);
        let found_newline = done > part.len();
        reader.consume(done);
        if found_newline {
            return Ok(Some(truncated));
        }
    }
}

fn line_text(bytes: &[u8], truncated: bool) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    if truncated {
        text.push_str(TRUNCATED_MARKER);
    }
    text
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
