//! `phasegate bench scheduler`: a real coordinator process on loopback and N simulated agents that
//! heartbeat, lease and complete zero-work jobs. Prints throughput, lease latency and the
//! coordinator's peak RSS.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use phasegate_coordinator::AccessFile;
use phasegate_proto::client::{AgentClient, agent_client, channel, control_client};
use phasegate_proto::pb;

use crate::cli::BenchSchedulerArgs;
use crate::exit::{Code, Failure, Result};
use crate::out::outln;

/// Channels (HTTP/2 connections) the simulated agents share.
const CONNECTIONS: usize = 8;

const SPEC: &str = "experiment = \"bench\"\nphase = \"1\"\n[finetune]\ncommand = [\"true\"]\n";

pub async fn scheduler(args: BenchSchedulerArgs) -> Result<Code> {
    let dir = tempfile::tempdir().map_err(|e| Failure::infra(format!("failed to create a temp dir: {e}")))?;
    let mut coordinator = start_coordinator(dir.path())?;
    let result = drive(&args, dir.path(), coordinator.id()).await;
    let _ = coordinator.kill();
    let _ = coordinator.wait();
    let figures = result?;
    outln!("{figures}");
    Ok(Code::Success)
}

fn start_coordinator(dir: &std::path::Path) -> Result<std::process::Child> {
    let exe = std::env::current_exe().map_err(|e| Failure::infra(format!("failed to find phasegate itself: {e}")))?;
    std::process::Command::new(exe)
        .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| Failure::infra(format!("failed to start the coordinator: {e}")))
}

#[derive(Debug, Default)]
struct Counters {
    completed: AtomicU64,
}

async fn drive(args: &BenchSchedulerArgs, dir: &std::path::Path, pid: u32) -> Result<String> {
    let access = wait_for_access(&dir.join("access.toml")).await?;
    let infra = |e: String| Failure::infra(e);
    let channels: Vec<_> = (0..CONNECTIONS)
        .map(|_| channel(&access.address, None))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| infra(e.to_string()))?;
    let mut control = control_client(channels[0].clone(), &access.client_token).map_err(|e| infra(e.to_string()))?;
    let agents: Vec<AgentClient> = (0..args.agents as usize)
        .map(|i| agent_client(channels[i % CONNECTIONS].clone(), &access.agent_token))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| infra(e.to_string()))?;
    for (i, a) in agents.iter().enumerate() {
        register(a.clone(), i).await?;
    }
    eprintln!("bench: {} agents registered; submitting {} jobs", args.agents, args.jobs);
    submit_all(&mut control, args.jobs).await?;
    let saturated = measure(&agents, args.jobs as u64, None).await?;
    eprintln!("bench: saturated phase done; submitting {} more jobs for the paced phase", args.jobs);
    submit_all(&mut control, args.jobs).await?;
    // Each agent leases once per `agents / rate` seconds: the offered load is `rate` leases/s.
    let period = Duration::from_secs_f64(f64::from(args.agents) / f64::from(args.rate.max(1)));
    let paced = measure(&agents, args.jobs as u64, Some(period)).await?;
    let rss = peak_rss_mib(pid);
    Ok(format!(
        "scheduler bench: {} agents over {CONNECTIONS} connections, {} jobs per phase\n\
         saturated (every agent leases as fast as it can):\n{}\n\
         paced at {} leases/s offered:\n{}\n\
         coordinator peak RSS: {} MiB",
        args.agents,
        args.jobs,
        saturated,
        args.rate,
        paced,
        rss.map(|r| r.to_string()).unwrap_or_else(|| "unknown".into()),
    ))
}

async fn submit_all(control: &mut phasegate_proto::client::ControlClient, jobs: u32) -> Result<()> {
    for _ in 0..jobs {
        let req = pb::SubmitRunRequest { spec_toml: SPEC.into(), spec_path: "bench.toml".into(), ..Default::default() };
        control.submit_run(req).await.map_err(|s| Failure::infra(format!("submit failed: {}", s.message())))?;
    }
    Ok(())
}

/// Runs every agent until `total` jobs completed; returns the figures as text.
async fn measure(agents: &[AgentClient], total: u64, period: Option<Duration>) -> Result<String> {
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, a) in agents.iter().enumerate() {
        tasks.spawn(sim_agent(a.clone(), i, total, period, counters.clone()));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    while let Some(r) = tasks.join_next().await {
        latencies.extend(r.map_err(|e| Failure::infra(e.to_string()))??);
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let done = counters.completed.load(Ordering::Relaxed);
    Ok(format!(
        "  {done} jobs completed in {:.2} s: {:.0} completed jobs/s\n  lease latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        elapsed.as_secs_f64(),
        done as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        pct(1.0),
    ))
}

async fn wait_for_access(path: &std::path::Path) -> Result<AccessFile> {
    for _ in 0..200 {
        if let Ok(a) = AccessFile::load(path) {
            return Ok(a);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(Failure::infra("the coordinator did not start within 10 s"))
}

async fn register(mut client: AgentClient, i: usize) -> Result<()> {
    let req = pb::RegisterRequest {
        agent_name: format!("sim-{i:05}"),
        capabilities: Some(pb::Capabilities { hostname: "bench".into(), cpus: 1, max_jobs: 1, ..Default::default() }),
        running: Vec::new(),
        protocol_version: phasegate_proto::PROTOCOL_VERSION,
        ..Default::default()
    };
    client.register(req).await.map_err(|s| Failure::infra(format!("register failed: {}", s.message())))?;
    Ok(())
}

/// Leases and completes jobs until all are done. Returns the latencies of the leases that got a job.
async fn sim_agent(
    mut client: AgentClient,
    i: usize,
    total: u64,
    period: Option<Duration>,
    counters: Arc<Counters>,
) -> Result<Vec<Duration>> {
    let name = format!("sim-{i:05}");
    let mut latencies = Vec::new();
    let mut last_heartbeat = Instant::now();
    let mut ticker = period.map(|p| {
        // Spread the agents' first leases over one period so the offered load is even.
        let offset = p.mul_f64((i % 1000) as f64 / 1000.0);
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + offset, p);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    while counters.completed.load(Ordering::Relaxed) < total {
        if let Some(t) = ticker.as_mut() {
            t.tick().await;
            if counters.completed.load(Ordering::Relaxed) >= total {
                break;
            }
        }
        if last_heartbeat.elapsed() > Duration::from_secs(5) {
            let hb = pb::HeartbeatRequest { agent_name: name.clone(), ..Default::default() };
            let _ = client.heartbeat(hb).await;
            last_heartbeat = Instant::now();
        }
        let t = Instant::now();
        let req = pb::LeaseJobRequest { agent_name: name.clone(), wait_ms: 200 };
        let resp = client.lease_job(req).await.map_err(|s| Failure::infra(format!("lease failed: {}", s.message())))?;
        let Some(a) = resp.into_inner().assignment else {
            continue;
        };
        latencies.push(t.elapsed());
        let done = pb::CompleteJobRequest {
            lease: Some(pb::JobLease { job_id: a.job_id, epoch: a.epoch, token: a.lease_token.clone() }),
            success: true,
            ..Default::default()
        };
        client.complete_job(done).await.map_err(|s| Failure::infra(format!("complete failed: {}", s.message())))?;
        counters.completed.fetch_add(1, Ordering::Relaxed);
    }
    Ok(latencies)
}

pub(crate) fn peak_rss_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}
