//! `phasegate bench chaos`: a real coordinator and agents on loopback, a stream of command jobs
//! with log lines, metrics and artifacts, and random SIGKILLs of the coordinator or an agent, each
//! restarted after a random pause. Afterwards every acknowledged run must exist and have ended, no
//! run may have failed for any reason but `agent lost`, no job may have run on two agents at once
//! (by the job's own ledger) and every succeeded job's logs, loss curve and artifact must be whole.

mod check;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use sha2::{Digest as _, Sha256};

use phasegate_coordinator::AccessFile;
use phasegate_proto::client::{ControlClient, channel, control_client};
use phasegate_proto::pb;

use crate::cli::BenchChaosArgs;
use crate::exit::{Code, Failure, Result};
use crate::out::outln;
use check::{Expect, KeySeen, RunSeen, Tally};

/// Steps (log lines, loss points) of every job, 150 ms apart.
const STEPS: u64 = 8;

/// The longest any single call of the driver waits on the coordinator.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn chaos(args: BenchChaosArgs) -> Result<Code> {
    let infra = |what: &str, e: std::io::Error| Failure::infra(format!("{what}: {e}"));
    let tmp = tempfile::Builder::new().prefix("phasegate-chaos-").tempdir().map_err(|e| infra("temp dir", e))?;
    let root = match &args.keep_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| infra("failed to create --keep-dir", e))?;
            dir.clone()
        }
        None => tmp.path().to_owned(),
    };
    let seed = args.seed.unwrap_or_else(|| rand::rng().random());
    eprintln!(
        "chaos: seed {seed}, {} trials, lease TTL {:?}, files under {}",
        args.trials,
        args.lease_ttl,
        root.display()
    );
    let mut fleet = Fleet::start(&root, &args)?;
    let result = drive(&mut fleet, &args, seed).await;
    fleet.stop_all();
    let (tally, figures) = result?;
    outln!("{figures}");
    if tally.defects() > 0 {
        eprintln!("chaos: logs of the coordinator and agents are under {}", root.display());
        if args.keep_dir.is_none() {
            // Keep the evidence of a failing run.
            let _ = tmp.keep();
        }
        return Ok(Code::Regression);
    }
    Ok(Code::Success)
}

async fn drive(fleet: &mut Fleet, args: &BenchChaosArgs, seed: u64) -> Result<(Tally, String)> {
    let started = Instant::now();
    let access = fleet.wait_access().await?;
    let mut control = connect(&access)?;
    fleet.create_credentials(&mut control).await?;
    for name in fleet.agent_names() {
        fleet.start_agent(&name)?;
    }
    fleet.wait_online(&mut control).await?;
    let submitted: Submitted = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let submitter = tokio::spawn(submit_stream(
        connect(&access)?,
        fleet.root.clone(),
        args.submit_every,
        submitted.clone(),
        stop.clone(),
    ));
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut coordinator_kills, mut agent_kills) = (0u32, 0u32);
    for trial in 1..=args.trials {
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..2000))).await;
        let names = fleet.agent_names();
        let victim = if rng.random_bool(0.5) { None } else { Some(names[rng.random_range(0..names.len())].clone()) };
        let down = Duration::from_millis(rng.random_range(0..=args.max_down.as_millis() as u64));
        match &victim {
            None => {
                coordinator_kills += 1;
                fleet.kill_coordinator();
                tokio::time::sleep(down).await;
                fleet.start_coordinator()?;
            }
            Some(name) => {
                agent_kills += 1;
                fleet.kill_agent(name);
                tokio::time::sleep(down).await;
                fleet.start_agent(name)?;
            }
        }
        let who = victim.as_deref().unwrap_or("coordinator");
        eprintln!("chaos: trial {trial}/{}: killed {who}, restarted after {} ms", args.trials, down.as_millis());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = submitter.await;
    let submitted = submitted.lock().map(|s| s.clone()).unwrap_or_default();
    eprintln!("chaos: {} submits; waiting for every run to end", submitted.len());
    let ended = wait_ended(&mut control, &submitted, args.settle).await;
    let keys = observe(&mut control, &fleet.root, &submitted).await?;
    let tally = check::tally(&keys, &Expect { steps: STEPS });
    if let Err(waited) = ended {
        eprintln!("chaos: runs still active after {waited:?}");
    }
    let figures = render(&tally, args, seed, coordinator_kills, agent_kills, started.elapsed());
    Ok((tally, figures))
}

fn render(t: &Tally, args: &BenchChaosArgs, seed: u64, coordinator: u32, agents: u32, took: Duration) -> String {
    let mut s = format!(
        "chaos bench: {} trials ({coordinator} coordinator kills, {agents} agent kills, down 0-{} ms), \
         lease TTL {} ms, max attempts {}, seed {seed}, {:.0} s\n\
         runs acknowledged: {}  (stored without an answer: {})\n\
         succeeded: {}  agent lost: {}  re-executed after a lost attempt: {}\n\
         false failures: {}\n\
         double runs: {}\n\
         losses: {}\n\
         not ended: {}\n\
         incomplete logs, metrics or artifacts: {}",
        args.trials,
        args.max_down.as_millis(),
        args.lease_ttl.as_millis(),
        args.max_attempts,
        took.as_secs_f64(),
        t.acknowledged,
        t.stored_unacknowledged,
        t.succeeded,
        t.agent_lost,
        t.reexecuted,
        t.false_failures.len(),
        t.double_runs.len(),
        t.losses.len(),
        t.not_terminal.len(),
        t.incomplete.len(),
    );
    for d in t.false_failures.iter().chain(&t.double_runs).chain(&t.losses).chain(&t.not_terminal).chain(&t.incomplete)
    {
        s.push_str(&format!("\n  defect: {d}"));
    }
    s
}

/// Each submit's idempotency key and, when the coordinator answered, the run it created.
type Submitted = Arc<Mutex<Vec<(String, Option<u64>)>>>;

/// Submits a job every `every` until told to stop. Each submit gets a fresh key: a submit that
/// errored may still have been stored, and its key tells the two apart afterwards.
async fn submit_stream(
    mut client: ControlClient,
    root: PathBuf,
    every: Duration,
    submitted: Submitted,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut n = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        n += 1;
        let key = format!("k{n:05}");
        let acknowledged = match write_spec(&root, &key) {
            Ok(spec) => {
                // Every submission must run: the bench counts runs that execute through the faults.
                let submit =
                    crate::commands::submit::submit_spec(&mut client, &spec, pb::Trigger::default(), 1 << 20, true);
                match tokio::time::timeout(CALL_TIMEOUT, submit).await {
                    Ok(Ok((_, resp))) => Some(resp.run_id),
                    _ => None,
                }
            }
            Err(e) => {
                eprintln!("chaos: failed to write the spec of {key}: {e}");
                None
            }
        };
        if let Ok(mut s) = submitted.lock() {
            s.push((key, acknowledged));
        }
        tokio::time::sleep(every).await;
    }
}

/// The job: a ledger line at start, a log line, a metric and a ledger tick per step, an artifact,
/// and a ledger line at the end (or when stopped). The agent's name is read off its work dir
/// (`<root>/work-<agent>/jobs/<job>-<attempt>`).
fn job_script(ledger: &Path, key: &str) -> String {
    let ledger = ledger.display();
    format!(
        "L='{ledger}'; w=$(dirname \"$(dirname \"$PWD\")\"); a=${{w##*/work-}}\n\
         echo \"start $$ $(date +%s%N) $a $PHASEGATE_ATTEMPT\" >> \"$L\"\n\
         trap 'echo \"stop $$ $(date +%s%N)\" >> \"$L\"; exit 143' TERM\n\
         i=1\n\
         while [ $i -le {STEPS} ]; do\n\
         echo \"line $i of {key}\"\n\
         echo \"PHASEGATE_METRIC {{\\\"step\\\": $i, \\\"loss\\\": 0.$i}}\"\n\
         echo \"tick $$ $(date +%s%N)\" >> \"$L\"\n\
         sleep 0.15\n\
         i=$((i + 1))\n\
         done\n\
         mkdir -p out && printf '%s' '{key}' > out/a\n\
         echo \"end $$ $(date +%s%N)\" >> \"$L\"\n"
    )
}

fn write_spec(root: &Path, key: &str) -> std::io::Result<PathBuf> {
    let dir = root.join("specs").join(key);
    std::fs::create_dir_all(&dir)?;
    let ledger = root.join("ledger");
    std::fs::create_dir_all(&ledger)?;
    let ledger = ledger.join(key);
    let script = toml::Value::String(job_script(&ledger, key)).to_string();
    let spec = format!(
        "experiment = \"chaos\"\nphase = \"{key}\"\n\n[finetune]\ncommand = [\"sh\", \"-c\", {script}]\n\
         requires = {{ gpu = false, vram_mib = 0, labels = [] }}\ntimeout = \"2m\"\nartifacts = [\"out/**\"]\n"
    );
    let path = dir.join("phase.toml");
    std::fs::write(&path, spec)?;
    Ok(path)
}

/// Polls until every acknowledged run has ended; `Err(waited)` when `settle` passed first.
async fn wait_ended(
    control: &mut ControlClient,
    submitted: &[(String, Option<u64>)],
    settle: Duration,
) -> std::result::Result<(), Duration> {
    let start = Instant::now();
    let mut active: Vec<u64> = submitted.iter().filter_map(|(_, id)| *id).collect();
    while !active.is_empty() {
        if start.elapsed() > settle {
            return Err(start.elapsed());
        }
        let mut still = Vec::new();
        for id in active {
            match get_run(control, id).await {
                Ok(Some(run)) if is_terminal(&run.state) => {}
                // A run that does not exist is a loss; the tally names it.
                Ok(None) => {}
                _ => still.push(id),
            }
        }
        active = still;
        if !active.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}

fn is_terminal(state: &str) -> bool {
    matches!(state, "succeeded" | "failed" | "cancelled")
}

async fn get_run(control: &mut ControlClient, id: u64) -> std::result::Result<Option<pb::Run>, tonic::Status> {
    let call = control.get_run(pb::GetRunRequest { run_id: id });
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(r)) => Ok(Some(r.into_inner())),
        Ok(Err(s)) if s.code() == tonic::Code::NotFound => Ok(None),
        Ok(Err(s)) => Err(s),
        Err(_) => Err(tonic::Status::deadline_exceeded("get run timed out")),
    }
}

/// Reads back every key's run (by id when acknowledged, else by its phase label), logs and ledger.
async fn observe(
    control: &mut ControlClient,
    root: &Path,
    submitted: &[(String, Option<u64>)],
) -> Result<Vec<KeySeen>> {
    let status = |what: &str, s: tonic::Status| Failure::infra(format!("{what}: {}", s.message()));
    let listed = control
        .list_runs(pb::ListRunsRequest { limit: 1000, experiment: "chaos".into() })
        .await
        .map_err(|s| status("failed to list runs", s))?
        .into_inner()
        .runs;
    let by_phase: BTreeMap<String, u64> = listed.iter().map(|r| (r.phase.clone(), r.id)).collect();
    let mut keys = Vec::new();
    for (key, acknowledged) in submitted {
        let id = acknowledged.or_else(|| by_phase.get(key).copied());
        let run = match id {
            Some(id) => {
                let run = retry_get(control, id).await.map_err(|s| status(&format!("failed to read run {id}"), s))?;
                match run {
                    Some(run) => Some(seen(control, run).await?),
                    None => None,
                }
            }
            None => None,
        };
        let ledger = std::fs::read_to_string(root.join("ledger").join(key)).unwrap_or_default();
        let artifact = hex_sha256(key.as_bytes());
        keys.push(KeySeen { key: key.clone(), acknowledged: acknowledged.is_some(), run, ledger, artifact });
    }
    Ok(keys)
}

async fn retry_get(control: &mut ControlClient, id: u64) -> std::result::Result<Option<pb::Run>, tonic::Status> {
    let mut last = None;
    for _ in 0..10 {
        match get_run(control, id).await {
            Ok(r) => return Ok(r),
            Err(s) => last = Some(s),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(last.unwrap_or_else(|| tonic::Status::unavailable("no answer")))
}

async fn seen(control: &mut ControlClient, run: pb::Run) -> Result<RunSeen> {
    let job = run.jobs.first().cloned().unwrap_or_default();
    let mut lines = Vec::new();
    if run.state == "succeeded" {
        let what = format!("failed to fetch the logs of run {}", run.id);
        let mut stream = control
            .fetch_logs(pb::FetchLogsRequest { run_id: run.id, follow: false })
            .await
            .map_err(|s| Failure::infra(format!("{what}: {}", s.message())))?
            .into_inner();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|s| Failure::infra(format!("{what}: {}", s.message())))?;
            lines.extend(chunk.lines.into_iter().map(|l| (l.seq, l.text)));
        }
    }
    let metrics = job.metrics.clone().unwrap_or_default();
    Ok(RunSeen {
        id: run.id,
        state: run.state.clone(),
        error: run.error.clone(),
        job_error: job.error.clone(),
        attempts: job.attempts,
        lines,
        loss_steps: metrics.loss_curve.iter().map(|p| p.step).collect(),
        artifacts: job.artifacts.iter().map(|a| (a.name.clone(), a.sha256.clone())).collect(),
    })
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn connect(access: &AccessFile) -> Result<ControlClient> {
    let ch = channel(&access.address, None).map_err(|e| Failure::infra(e.to_string()))?;
    control_client(ch, &access.client_token).map_err(|e| Failure::infra(e.to_string()))
}

/// The processes under test: one coordinator and the agents, each a `phasegate` child with its
/// stderr appended to a file under the root.
struct Fleet {
    root: PathBuf,
    exe: PathBuf,
    grpc: u16,
    http: u16,
    lease_ttl: Duration,
    max_attempts: u32,
    coordinator: Option<Child>,
    agents: BTreeMap<String, Option<Child>>,
}

impl Fleet {
    fn start(root: &Path, args: &BenchChaosArgs) -> Result<Self> {
        let exe =
            std::env::current_exe().map_err(|e| Failure::infra(format!("failed to find phasegate itself: {e}")))?;
        let mut fleet = Self {
            root: root.to_owned(),
            exe,
            grpc: free_port()?,
            http: free_port()?,
            lease_ttl: args.lease_ttl,
            max_attempts: args.max_attempts,
            coordinator: None,
            agents: (1..=args.agents).map(|i| (format!("a{i}"), None)).collect(),
        };
        fleet.start_coordinator()?;
        Ok(fleet)
    }

    fn agent_names(&self) -> Vec<String> {
        self.agents.keys().cloned().collect()
    }

    fn log(&self, name: &str) -> Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join(format!("{name}.log")))
            .map_err(|e| Failure::infra(format!("failed to open the {name} log: {e}")))
    }

    fn start_coordinator(&mut self) -> Result<()> {
        // Agents are told to heartbeat four times per TTL.
        let heartbeat = format!("{}ms", (self.lease_ttl.as_millis() / 4).max(100));
        let child = Command::new(&self.exe)
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{}", self.grpc), "--http", &format!("127.0.0.1:{}", self.http)])
            .arg("--data-dir")
            .arg(self.root.join("data"))
            .args(["--lease-ttl", &format!("{}ms", self.lease_ttl.as_millis()), "--heartbeat", &heartbeat])
            .args(["--max-attempts", &self.max_attempts.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.log("coordinator")?)
            .spawn()
            .map_err(|e| Failure::infra(format!("failed to start the coordinator: {e}")))?;
        self.coordinator = Some(child);
        Ok(())
    }

    fn kill_coordinator(&mut self) {
        if let Some(child) = self.coordinator.take() {
            sigkill(child);
        }
    }

    fn start_agent(&mut self, name: &str) -> Result<()> {
        let child = Command::new(&self.exe)
            .arg("agent")
            .args(["--coordinator", &format!("http://127.0.0.1:{}", self.grpc)])
            .arg("--token-file")
            .arg(self.root.join(format!("{name}.token")))
            .args(["--name", name, "--max-jobs", "2", "--grace", "1s"])
            .arg("--work-dir")
            .arg(self.root.join(format!("work-{name}")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.log(&format!("agent-{name}"))?)
            .spawn()
            .map_err(|e| Failure::infra(format!("failed to start agent {name}: {e}")))?;
        self.agents.insert(name.to_owned(), Some(child));
        Ok(())
    }

    fn kill_agent(&mut self, name: &str) {
        if let Some(child) = self.agents.get_mut(name).and_then(Option::take) {
            sigkill(child);
        }
    }

    fn stop_all(&mut self) {
        for name in self.agent_names() {
            self.kill_agent(&name);
        }
        self.kill_coordinator();
    }

    async fn wait_access(&self) -> Result<AccessFile> {
        let path = self.root.join("data").join("access.toml");
        for _ in 0..300 {
            if let Ok(a) = AccessFile::load(&path) {
                return Ok(a);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(Failure::infra("the coordinator did not start within 15 s"))
    }

    /// One credential per agent, so a restarted agent replaces its own live registration.
    async fn create_credentials(&self, control: &mut ControlClient) -> Result<()> {
        for name in self.agent_names() {
            let req = pb::CreateAgentTokenRequest { agent_name: name.clone() };
            let secret = retry(|| {
                let mut c = control.clone();
                let req = req.clone();
                async move { c.create_agent_token(req).await.map(|r| r.into_inner().secret) }
            })
            .await
            .map_err(|s| Failure::infra(format!("failed to create a credential for {name}: {}", s.message())))?;
            let path = self.root.join(format!("{name}.token"));
            std::fs::write(&path, secret)
                .map_err(|e| Failure::infra(format!("failed to write {}: {e}", path.display())))?;
        }
        Ok(())
    }

    async fn wait_online(&self, control: &mut ControlClient) -> Result<()> {
        let want = self.agent_names();
        for _ in 0..300 {
            if let Ok(r) = control.list_agents(pb::ListAgentsRequest {}).await {
                let online = r.into_inner().agents.into_iter().filter(|a| a.online).map(|a| a.name).collect::<Vec<_>>();
                if want.iter().all(|n| online.contains(n)) {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(Failure::infra("the agents did not come online within 30 s"))
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Retries a call for up to 15 s while the coordinator starts.
async fn retry<T, F, Fut>(mut call: F) -> std::result::Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, tonic::Status>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => return Err(s),
        }
    }
}

fn sigkill(mut child: Child) {
    // ESRCH (already gone) is fine: the point is that it is not running afterwards.
    let _ = child.kill();
    let _ = child.wait();
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Failure::infra(format!("failed to bind a loopback port: {e}")))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| Failure::infra(format!("failed to read a port: {e}")))
}
