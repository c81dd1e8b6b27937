use std::path::Path;

use super::*;
use crate::caps::FakeGpuProbe;

const SAMPLE: Duration = Duration::from_millis(50);

fn spec(script: &str, dir: &Path) -> CommandSpec {
    CommandSpec {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        cwd: dir.to_path_buf(),
        env: BTreeMap::new(),
        timeout: None,
        grace: Duration::from_secs(5),
        vram_sample_interval: SAMPLE,
        pid_file: None,
    }
}

/// Channels and a cancel switch for one run.
struct Harness {
    logs: mpsc::Receiver<LogLine>,
    metrics: mpsc::Receiver<MetricPoint>,
    cancel: watch::Sender<bool>,
    io: Option<RunIo>,
}

fn harness(capacity: usize, probe: Arc<dyn GpuProbe>) -> Harness {
    let (log_tx, logs) = mpsc::channel(capacity);
    let (metric_tx, metrics) = mpsc::channel(capacity);
    let (cancel, cancel_rx) = watch::channel(false);
    Harness { logs, metrics, cancel, io: Some(RunIo { logs: log_tx, metrics: metric_tx, cancel: cancel_rx, probe }) }
}

fn no_gpu() -> Arc<dyn GpuProbe> {
    Arc::new(FakeGpuProbe::default())
}

/// Runs to completion with a large channel and returns the outcome and all lines.
async fn run_all(spec: &CommandSpec) -> (RunOutcome, Vec<LogLine>, Vec<MetricPoint>) {
    let mut h = harness(10_000, no_gpu());
    let outcome = run_command(spec, h.io.take().unwrap()).await.unwrap();
    let mut lines = Vec::new();
    while let Ok(line) = h.logs.try_recv() {
        lines.push(line);
    }
    let mut points = Vec::new();
    while let Ok(point) = h.metrics.try_recv() {
        points.push(point);
    }
    (outcome, lines, points)
}

fn texts(lines: &[LogLine], stream: Stream) -> Vec<&str> {
    lines.iter().filter(|l| l.stream == stream).map(|l| l.text.as_str()).collect()
}

/// Alive and not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| proctree::parse_stat(&s))
        .is_some_and(|s| s.state != 'Z')
}

/// SIGKILL is delivered asynchronously: give the killed process a moment to disappear.
fn gone_soon(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn read_pid(path: &Path) -> u32 {
    std::fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

#[tokio::test]
async fn streams_both_outputs_line_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec("echo one; echo err1 >&2; printf 'two\\r\\n'; echo $GREETING; printf 'no newline'", dir.path());
    spec.env.insert("GREETING".into(), "hello from env".into());
    let (outcome, lines, _) = run_all(&spec).await;
    assert_eq!(outcome.exit, JobExit::Exited(0));
    assert_eq!(texts(&lines, Stream::Stdout), ["one", "two", "hello from env", "no newline"]);
    assert_eq!(texts(&lines, Stream::Stderr), ["err1"]);
    assert!(lines.iter().all(|l| l.ts_ms > 1_600_000_000_000));
}

#[tokio::test]
async fn runs_in_the_given_directory_without_a_shell() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec("", dir.path());
    spec.argv = vec!["pwd".into()];
    let (_, lines, _) = run_all(&spec).await;
    let expected = std::fs::canonicalize(dir.path()).unwrap();
    assert_eq!(texts(&lines, Stream::Stdout), [expected.to_str().unwrap()]);
    spec.argv = vec!["echo".into(), "$HOME; ls".into()];
    let (_, lines, _) = run_all(&spec).await;
    assert_eq!(texts(&lines, Stream::Stdout), ["$HOME; ls"]);
}

#[tokio::test]
async fn reports_exit_codes_and_signals() {
    let dir = tempfile::tempdir().unwrap();
    let (outcome, _, _) = run_all(&spec("exit 3", dir.path())).await;
    assert_eq!(outcome.exit, JobExit::Exited(3));
    let (outcome, _, _) = run_all(&spec("kill -9 $$", dir.path())).await;
    assert_eq!(outcome.exit, JobExit::Signaled(9));
}

#[tokio::test]
async fn start_failures_name_the_program() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec("", dir.path());
    spec.argv = vec!["phasegate-no-such-program".into()];
    let err = run_command(&spec, harness(4, no_gpu()).io.take().unwrap()).await.unwrap_err();
    assert!(err.to_string().starts_with("failed to start `phasegate-no-such-program` in "), "{err}");
    spec.argv.clear();
    let err = run_command(&spec, harness(4, no_gpu()).io.take().unwrap()).await.unwrap_err();
    assert!(matches!(err, RunError::EmptyCommand));
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild.pid");
    let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
    let mut spec = spec(&script, dir.path());
    spec.timeout = Some(Duration::from_millis(300));
    spec.grace = Duration::from_millis(500);
    let started = Instant::now();
    let (outcome, _, _) = run_all(&spec).await;
    assert_eq!(outcome.exit, JobExit::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    let grandchild = read_pid(&pid_file);
    assert!(gone_soon(grandchild), "grandchild sleep {grandchild} survived");
}

#[tokio::test]
async fn cancel_escalates_to_sigkill_after_grace() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("child.pid");
    // Ignoring TERM is inherited by the `sleep`, so only SIGKILL ends them.
    let script = format!("trap '' TERM; sleep 30 & echo $! > {}; echo ready; wait", pid_file.display());
    let mut spec = spec(&script, dir.path());
    spec.grace = Duration::from_millis(400);
    let mut h = harness(16, no_gpu());
    let io = h.io.take().unwrap();
    let run = tokio::spawn(async move { run_command(&spec, io).await });
    assert_eq!(h.logs.recv().await.unwrap().text, "ready");
    let cancelled_at = Instant::now();
    h.cancel.send(true).unwrap();
    let outcome = run.await.unwrap().unwrap();
    assert_eq!(outcome.exit, JobExit::Cancelled);
    let waited = cancelled_at.elapsed();
    assert!(waited >= Duration::from_millis(400), "killed before the grace period: {waited:?}");
    assert!(waited < Duration::from_secs(4), "{waited:?}");
    assert!(gone_soon(read_pid(&pid_file)), "the TERM-ignoring sleep survived SIGKILL");
}

#[tokio::test]
async fn cancel_ends_early_when_the_job_honours_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let script = "trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.05; done";
    let mut spec = spec(script, dir.path());
    spec.grace = Duration::from_secs(10);
    let mut h = harness(16, no_gpu());
    let io = h.io.take().unwrap();
    let run = tokio::spawn(async move { run_command(&spec, io).await });
    assert_eq!(h.logs.recv().await.unwrap().text, "ready");
    let cancelled_at = Instant::now();
    h.cancel.send(true).unwrap();
    let outcome = run.await.unwrap().unwrap();
    assert_eq!(outcome.exit, JobExit::Cancelled);
    assert!(cancelled_at.elapsed() < Duration::from_secs(5));
    let mut rest = Vec::new();
    while let Some(line) = h.logs.recv().await {
        rest.push(line.text);
    }
    // The shell may also report the terminated `sleep` on stderr.
    assert!(rest.iter().any(|t| t == "got-term"), "{rest:?}");
}

#[tokio::test]
async fn a_full_channel_slows_the_job_without_losing_lines() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec("i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done", dir.path());
    let mut h = harness(1, no_gpu());
    let io = h.io.take().unwrap();
    let run = tokio::spawn(async move { run_command(&spec, io).await });
    let mut received = Vec::new();
    while let Some(line) = h.logs.recv().await {
        if received.len() % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        received.push(line.text);
    }
    assert_eq!(run.await.unwrap().unwrap().exit, JobExit::Exited(0));
    let expected: Vec<String> = (0..300).map(|i| format!("line-{i}")).collect();
    assert_eq!(received, expected);
}

#[tokio::test]
async fn metric_lines_are_parsed_and_still_logged() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"echo 'PHASEGATE_METRIC {"step": 10, "loss": 2.38}'
echo 'PHASEGATE_METRIC {"step": 20, "loss": 1.9, "eval_loss": 2.1}'
echo 'PHASEGATE_METRIC {broken'
echo 'PHASEGATE_METRIC {"step": 30, "loss": 1.0}' >&2"#;
    let (outcome, lines, points) = run_all(&spec(script, dir.path())).await;
    assert_eq!(outcome.malformed_metric_lines, 1);
    let steps: Vec<Option<u64>> = points.iter().map(|p| p.step).collect();
    // stderr is not a metric source.
    assert_eq!(steps, [Some(10), Some(20)]);
    assert_eq!(points[1].values.get("eval_loss"), Some(&2.1));
    assert_eq!(texts(&lines, Stream::Stdout).len(), 3);
}

#[tokio::test]
async fn very_long_lines_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let script = "head -c 40000 /dev/zero | tr '\\0' 'x'; echo; echo after";
    let (_, lines, _) = run_all(&spec(script, dir.path())).await;
    let out = texts(&lines, Stream::Stdout);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].len(), MAX_LINE_BYTES + TRUNCATED_MARKER.len());
    assert!(out[0].ends_with(TRUNCATED_MARKER));
    assert_eq!(out[1], "after");
}

#[tokio::test]
async fn invalid_utf8_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let (_, lines, _) = run_all(&spec("printf 'caf\\351\\n'", dir.path())).await;
    assert_eq!(texts(&lines, Stream::Stdout), ["caf\u{fffd}"]);
}

#[tokio::test]
async fn vram_peak_is_sampled_for_the_job_processes() {
    let dir = tempfile::tempdir().unwrap();
    let probe = Arc::new(FakeGpuProbe { process_vram: Some(2345), ..FakeGpuProbe::default() });
    let mut h = harness(16, Arc::clone(&probe) as Arc<dyn GpuProbe>);
    let spec = spec("sleep 0.3; true", dir.path());
    let outcome = run_command(&spec, h.io.take().unwrap()).await.unwrap();
    assert_eq!(outcome.vram_peak_mib, Some(2345));
    let asked = probe.asked_pids.lock().unwrap();
    assert!(asked.len() >= 2, "sampled {} times", asked.len());
    assert!(asked.iter().any(|pids| pids.len() >= 2), "the sleep child was never seen: {asked:?}");
}

#[tokio::test]
async fn no_gpu_means_no_vram_peak() {
    let dir = tempfile::tempdir().unwrap();
    let (outcome, _, _) = run_all(&spec("sleep 0.1", dir.path())).await;
    assert_eq!(outcome.vram_peak_mib, None);
}

#[tokio::test]
async fn leftover_group_members_are_killed_when_the_leader_exits() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("bg.pid");
    let script = format!("sleep 30 >/dev/null 2>&1 & echo $! > {}", pid_file.display());
    let (outcome, _, _) = run_all(&spec(&script, dir.path())).await;
    assert_eq!(outcome.exit, JobExit::Exited(0));
    let bg = read_pid(&pid_file);
    // SIGKILL delivery is asynchronous; give it a moment.
    for _ in 0..50 {
        if !alive(bg) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("background process {bg} survived its job");
}
