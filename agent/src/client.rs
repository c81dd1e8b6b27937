//! The agent's connection to the coordinator: register, heartbeat, lease and run jobs.
//!
//! The agent owns no durable state. After a coordinator restart it keeps its jobs running and
//! registers again with the leases it holds; the coordinator keeps those it still owns and names the
//! ones to stop.
//!
//! Draining ([`run_until`] with [`StopRequest::Drain`]): the agent tells the coordinator in its
//! heartbeats, its lease loops end (an assignment that arrives meanwhile is given back unstarted),
//! and it waits for its running jobs before it returns. When the drain timeout passes, or a
//! [`StopRequest::Now`] comes, it stops its jobs and gives them back (`ReleaseJob`), so they are
//! queued again at once without costing an attempt.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::Code;

use phasegate_proto::client::{AgentClient, ConnectError, agent_client_as, channel};
use phasegate_proto::domain::Lease;
use phasegate_proto::pb;

use crate::caps::{CapsConfig, GpuProbe, gather};
use crate::job::{JobContext, JobEnd, execute, release};
use crate::retry::RetryPolicy;

/// The lease TTL assumed until the coordinator names its own (the coordinator's default).
const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);
/// How long a newcomer waits for its name to come free (the live agent under it exits or falls
/// silent for a lease TTL) before the refusal is final: a restart after a crash takes the name
/// once the old process's registration lapses.
const NAME_WAIT: Duration = Duration::from_secs(120);

/// How an agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub coordinator: String,
    pub token: String,
    pub ca_pem: Option<PathBuf>,
    pub name: String,
    pub labels: Vec<String>,
    pub work_dir: PathBuf,
    pub max_jobs: u32,
    pub python_packages: Option<Vec<String>>,
    /// Time between SIGTERM and SIGKILL when a job is stopped.
    pub grace: Duration,
    /// How long one lease request waits on the coordinator.
    pub lease_wait: Duration,
    /// The model cache eval jobs resolve model names in (`phasegate models pull` fills it).
    pub model_cache: PathBuf,
    /// Finished job directories kept for debugging; older ones are deleted after each job.
    pub keep_job_dirs: usize,
    /// How long a drain waits for running jobs before it stops them and gives them back.
    pub drain_timeout: Duration,
}

/// What the agent is asked to do ([`run_until`]), in the order asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopRequest {
    /// Lease nothing new, let running jobs finish, then return (SIGTERM, SIGINT).
    Drain,
    /// Stop running jobs now and give them back, then return (a second SIGTERM or SIGINT).
    Now,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("failed to create work dir {path}: {source}")]
    WorkDir { path: PathBuf, source: std::io::Error },
    #[error("the coordinator refused the registration: {0}")]
    Refused(String),
}

/// A job this agent runs now.
#[derive(Debug)]
struct RunningJob {
    /// Its lease, token included.
    lease: Lease,
    cancel: watch::Sender<bool>,
    /// Set when the agent stops the job to give it back: the reason sent with the release.
    release: Option<String>,
    /// Becomes true once this attempt's processes have ended.
    ended: watch::Receiver<bool>,
}

/// What [`Agent::admit`] decides for an assignment (`None`: draining, give it back).
enum Admission {
    Run(Admitted),
    /// A newer attempt of the job runs here already: the coordinator refuses this one's lease.
    Stale,
}

/// What [`Agent::admit`] hands a newly admitted attempt.
struct Admitted {
    cancelled: watch::Receiver<bool>,
    /// Set by the attempt when it has ended.
    ended: watch::Sender<bool>,
    /// An earlier attempt of the same job still running here, told to stop: wait for its end
    /// before starting, so two attempts of one job never run side by side.
    predecessor: Option<watch::Receiver<bool>>,
}

/// Jobs this agent runs now, by job id.
type Running = Arc<Mutex<HashMap<u64, RunningJob>>>;

#[derive(Debug)]
struct Agent {
    client: AgentClient,
    config: AgentConfig,
    caps: CapsConfig,
    probe: Arc<dyn GpuProbe>,
    running: Running,
    /// Random per process: tells the coordinator a re-registration is this process again.
    instance: String,
    heartbeat: Mutex<Duration>,
    /// The coordinator's lease TTL as last registered: a job's calls ride out outages of a few TTLs.
    lease_ttl: Mutex<Duration>,
    /// When the coordinator last answered this agent: a job's call gives up only after that long
    /// a silence, not after that long of its own failed attempts.
    contact: Arc<crate::retry::Contact>,
    /// The environment fingerprint of the last registration, for eval results.
    environment: Mutex<BTreeMap<String, String>>,
    /// Set (under the `running` lock) when a drain begins: nothing new is leased or started.
    draining: AtomicBool,
}

/// The agent's loops: the heartbeat, and one lease loop per job slot (each runs its jobs).
struct Loops {
    heartbeat: JoinSet<()>,
    leases: JoinSet<()>,
}

/// Runs the agent until `shutdown` resolves. Running jobs are stopped on shutdown and not given
/// back (`phasegate up` and `demo` stop their coordinator at the same time).
pub async fn run(
    config: AgentConfig,
    probe: Arc<dyn GpuProbe>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    let (agent, mut loops) = start(config, probe).await?;
    shutdown.await;
    tracing::info!("agent shutting down; stopping running jobs");
    if let Ok(running) = agent.running.lock() {
        for job in running.values() {
            let _ = job.cancel.send(true);
        }
    }
    loops.leases.abort_all();
    loops.heartbeat.abort_all();
    Ok(())
}

/// Runs the agent until it has drained: the first request drains (a [`StopRequest::Now`] also
/// stops the jobs at once), a later one stops the jobs now, and one after that abandons them
/// (their lifelines kill them). Returns once no job runs. A stream that ends before it asked
/// anything counts as [`StopRequest::Now`]; once it asked, an end asks nothing more. A request
/// while the agent is still registering (the coordinator unreachable) ends it at once: it runs
/// nothing yet.
pub async fn run_until(
    config: AgentConfig,
    probe: Arc<dyn GpuProbe>,
    requests: impl Stream<Item = StopRequest> + Send + Unpin,
) -> Result<(), AgentError> {
    let drain_timeout = config.drain_timeout;
    let mut requests = requests.fuse();
    let (agent, mut loops) = tokio::select! {
        started = start(config, probe) => started?,
        _ = requests.next() => {
            tracing::info!("asked to stop before the agent registered; exiting");
            return Ok(());
        }
    };
    let first = requests.next().await.unwrap_or(StopRequest::Now);
    agent.begin_drain().await;
    let stop_reason = if first == StopRequest::Now {
        Some(format!("agent {} was asked to stop now", agent.config.name))
    } else {
        tokio::select! {
            () = join_all(&mut loops.leases) => None,
            () = tokio::time::sleep(drain_timeout) => Some(format!(
                "the drain timeout ({}) of agent {} passed",
                humantime::format_duration(drain_timeout),
                agent.config.name
            )),
            () = next_request(&mut requests) => Some(format!("agent {} was asked to stop now", agent.config.name)),
        }
    };
    if let Some(reason) = stop_reason {
        agent.stop_and_release(&reason);
        tokio::select! {
            () = join_all(&mut loops.leases) => {}
            () = next_request(&mut requests) => {
                tracing::warn!("asked again: abandoning the running jobs (their lifelines end them)");
                loops.leases.abort_all();
            }
        }
    }
    loops.heartbeat.abort_all();
    agent.leave().await;
    tracing::info!(agent = %agent.config.name, "agent drained; exiting");
    Ok(())
}

async fn join_all(set: &mut JoinSet<()>) {
    while set.join_next().await.is_some() {}
}

/// The next request; never resolves once the stream has ended.
async fn next_request(requests: &mut (impl futures::stream::FusedStream<Item = StopRequest> + Unpin)) {
    if requests.next().await.is_none() {
        std::future::pending::<()>().await;
    }
}

/// Prepares the work dir, registers, and starts the heartbeat and lease loops.
async fn start(config: AgentConfig, probe: Arc<dyn GpuProbe>) -> Result<(Arc<Agent>, Loops), AgentError> {
    std::fs::create_dir_all(&config.work_dir)
        .map_err(|source| AgentError::WorkDir { path: config.work_dir.clone(), source })?;
    // Jobs of an earlier agent on this work dir belong to nobody now (this agent holds no lease
    // yet): stop them before taking new work, so they do not run beside their requeued attempts.
    let leftovers = crate::lifeline::kill_leftovers(&crate::lifeline::pid_dir(&config.work_dir));
    if !leftovers.is_empty() {
        tracing::warn!(groups = ?leftovers, "killed jobs left over from an earlier agent");
    }
    let client = agent_client_as(channel(&config.coordinator, config.ca_pem.as_deref())?, &config.token, &config.name)?;
    let mut caps = CapsConfig::new(env!("CARGO_PKG_VERSION"), config.labels.clone());
    if let Some(p) = &config.python_packages {
        caps.python_packages = p.clone();
    }
    let agent = Arc::new(Agent {
        client,
        config,
        caps,
        probe,
        running: Arc::default(),
        instance: new_instance(),
        heartbeat: Mutex::new(Duration::from_secs(5)),
        lease_ttl: Mutex::new(DEFAULT_LEASE_TTL),
        contact: Arc::default(),
        environment: Mutex::default(),
        draining: AtomicBool::new(false),
    });
    agent.register_until_accepted().await?;
    let mut loops = Loops { heartbeat: JoinSet::new(), leases: JoinSet::new() };
    loops.heartbeat.spawn(agent.clone().heartbeat_loop());
    for _ in 0..agent.config.max_jobs.max(1) {
        loops.leases.spawn(agent.clone().lease_loop());
    }
    Ok((agent, loops))
}

/// 128 random bits, hex.
fn new_instance() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Agent {
    fn leases(&self) -> Vec<pb::JobLease> {
        let running = self.running.lock().map(|m| m.values().map(|j| pb::JobLease::from(j.lease)).collect());
        running.unwrap_or_default()
    }

    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    fn stop(&self, jobs: &[u64]) {
        let Ok(map) = self.running.lock() else { return };
        for job in jobs {
            if let Some(j) = map.get(job) {
                tracing::warn!(job, "coordinator no longer owns this job; stopping it");
                let _ = j.cancel.send(true);
            }
        }
    }

    /// Stops leasing and tells the coordinator at once (the heartbeats say so from now on), so a
    /// lease request it holds open ends.
    async fn begin_drain(&self) {
        if let Ok(_guard) = self.running.lock() {
            self.draining.store(true, Ordering::SeqCst);
        }
        let jobs = self.running.lock().map(|m| m.len()).unwrap_or(0);
        tracing::info!(
            jobs,
            timeout = %humantime::format_duration(self.config.drain_timeout),
            "draining: leasing nothing new; waiting for the running jobs"
        );
        // A coordinator that does not answer learns it from the heartbeats later.
        self.tell(false, "the drain").await;
    }

    /// Tells the coordinator this process is exiting, so the next one may take the name at once.
    /// A coordinator that does not answer frees the name after a lease TTL of silence.
    async fn leave(&self) {
        self.tell(true, "the agent is leaving").await;
    }

    /// One heartbeat out of turn, bounded to 5 s; a failure is only logged (`what` names the news).
    async fn tell(&self, leaving: bool, what: &str) {
        match tokio::time::timeout(Duration::from_secs(5), self.beat(leaving)).await {
            Ok(Ok(_)) => {}
            Ok(Err(s)) => tracing::info!(error = s.message(), "failed to tell the coordinator about {what}"),
            Err(_) => tracing::info!("the coordinator did not answer the heartbeat about {what} in 5 s"),
        }
    }

    /// Stops every running job; each is given back once it has stopped ([`Agent::run_job`]).
    fn stop_and_release(&self, reason: &str) {
        let Ok(mut map) = self.running.lock() else { return };
        tracing::warn!(jobs = map.len(), reason, "stopping the running jobs to give them back");
        for job in map.values_mut() {
            job.release = Some(reason.to_owned());
            let _ = job.cancel.send(true);
        }
    }

    /// Takes a job on, unless a drain began: then it is handed back for the caller to give back.
    /// An earlier attempt of the same job still running here (the coordinator requeued it while
    /// its lease was on the way, e.g. across a re-registration) is stopped: the new lease
    /// supersedes it.
    fn admit(&self, lease: Lease) -> Option<Admission> {
        let mut map = self.running.lock().ok()?;
        if self.is_draining() {
            return None;
        }
        Some(admit_into(&mut map, lease))
    }

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::for_lease_ttl(self.lease_ttl.lock().map(|t| *t).unwrap_or(DEFAULT_LEASE_TTL))
            .with_contact(self.contact.clone())
    }

    async fn register(&self) -> Result<(), tonic::Status> {
        let caps = gather(&self.caps, self.probe.as_ref()).await;
        if let Ok(mut env) = self.environment.lock() {
            *env = environment(&caps);
        }
        let request = pb::RegisterRequest {
            agent_name: self.config.name.clone(),
            capabilities: Some(to_pb(caps, self.config.max_jobs)),
            running: self.leases(),
            protocol_version: phasegate_proto::PROTOCOL_VERSION,
            instance: self.instance.clone(),
        };
        let mut client = self.client.clone();
        let resp = client.register(request).await?.into_inner();
        phasegate_proto::protocol::check("coordinator", resp.protocol_version, "agent")
            .map_err(|e| tonic::Status::failed_precondition(e.to_string()))?;
        if let Ok(mut hb) = self.heartbeat.lock() {
            *hb = Duration::from_millis(resp.heartbeat_interval_ms.max(100));
        }
        if resp.lease_ttl_ms > 0
            && let Ok(mut ttl) = self.lease_ttl.lock()
        {
            *ttl = Duration::from_millis(resp.lease_ttl_ms);
        }
        self.stop(&resp.stop_jobs);
        self.contact.note();
        tracing::info!(agent = %self.config.name, "registered with the coordinator");
        Ok(())
    }

    /// Registers, retrying while the coordinator is unreachable and, for up to [`NAME_WAIT`],
    /// while the name belongs to a live agent; a refusal (bad token or bad capabilities) is final.
    async fn register_until_accepted(&self) -> Result<(), AgentError> {
        let mut delay = Duration::from_millis(200);
        let started = tokio::time::Instant::now();
        loop {
            match self.register().await {
                Ok(()) => return Ok(()),
                Err(s) if s.code() == Code::AlreadyExists && started.elapsed() < NAME_WAIT => {
                    tracing::warn!(error = s.message(), "name in use; waiting for it to come free");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(s)
                    if matches!(
                        s.code(),
                        Code::Unauthenticated
                            | Code::AlreadyExists
                            | Code::InvalidArgument
                            | Code::PermissionDenied
                            | Code::FailedPrecondition
                    ) =>
                {
                    return Err(AgentError::Refused(s.message().to_owned()));
                }
                Err(s) => {
                    tracing::info!(error = s.message(), "coordinator unreachable; retrying registration");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn heartbeat_loop(self: Arc<Self>) {
        let mut lost = false;
        loop {
            let interval = self.heartbeat.lock().map(|d| *d).unwrap_or(Duration::from_secs(5));
            tokio::time::sleep(interval).await;
            if lost {
                // Re-attach after an outage: the coordinator may have restarted.
                lost = self.register().await.is_err();
                continue;
            }
            match self.beat(false).await {
                Ok(reregister) => {
                    self.contact.note();
                    if reregister {
                        lost = self.register().await.is_err();
                    }
                }
                Err(s) => {
                    tracing::info!(error = s.message(), "heartbeat failed");
                    lost = true;
                }
            }
        }
    }

    /// One heartbeat: renews the leases, stops the jobs the coordinator names; returns whether it
    /// asks the agent to register again.
    async fn beat(&self, leaving: bool) -> Result<bool, tonic::Status> {
        let request = pb::HeartbeatRequest {
            agent_name: self.config.name.clone(),
            gpus: self
                .probe
                .measure_free_vram()
                .into_iter()
                .map(|(index, free_vram_mib)| pb::GpuFree { index, free_vram_mib })
                .collect(),
            running: self.leases(),
            draining: self.is_draining(),
            leaving,
        };
        let mut client = self.client.clone();
        let resp = client.heartbeat(request).await?.into_inner();
        self.stop(&resp.stop_jobs);
        Ok(resp.reregister)
    }

    /// Leases and runs jobs until a drain begins.
    async fn lease_loop(self: Arc<Self>) {
        while !self.is_draining() {
            let mut client = self.client.clone();
            let request = pb::LeaseJobRequest {
                agent_name: self.config.name.clone(),
                wait_ms: self.config.lease_wait.as_millis() as u32,
            };
            match client.lease_job(request).await {
                Ok(resp) => {
                    if let Some(a) = resp.into_inner().assignment {
                        self.run_job(a).await;
                    }
                }
                Err(s) => {
                    if s.code() == Code::FailedPrecondition {
                        let _ = self.register().await;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Runs an assignment, or gives it back unstarted when a drain began while it was on its way.
    async fn run_job(&self, a: pb::Assignment) {
        let job_id = a.job_id;
        let Ok(lease) = Lease::of_assignment(&a) else {
            tracing::error!(job = job_id, "assignment without a usable lease; not running it");
            return;
        };
        let Some(admitted) = self.admit(lease) else {
            let reason = format!("agent {} is draining; the job was not started", self.config.name);
            release(&self.client, self.retry_policy(), lease, &reason).await;
            return;
        };
        let Admission::Run(Admitted { cancelled: cancel_rx, ended, predecessor }) = admitted else { return };
        if let Some(mut older) = predecessor {
            let _ = older.wait_for(|ended| *ended).await;
        }
        tracing::info!(job = job_id, stage = %a.stage, attempt = a.attempt, "running job");
        let ctx = JobContext {
            client: self.client.clone(),
            work_dir: self.config.work_dir.clone(),
            probe: self.probe.clone(),
            grace: self.config.grace,
            model_cache: self.config.model_cache.clone(),
            environment: self.environment.lock().map(|e| e.clone()).unwrap_or_default(),
            retry: self.retry_policy(),
        };
        let end = execute(ctx, a, cancel_rx).await;
        let _ = ended.send(true);
        let (running, given_back): (HashSet<u64>, Option<String>) = match self.running.lock() {
            Ok(mut m) => {
                let job = take_own(&mut m, lease);
                (m.keys().copied().collect(), job.and_then(|j| j.release))
            }
            Err(_) => return,
        };
        if let (JobEnd::Stopped, Some(reason)) = (end, given_back) {
            release(&self.client, self.retry_policy(), lease, &reason).await;
        }
        let (jobs_dir, keep) = (self.config.work_dir.join("jobs"), self.config.keep_job_dirs);
        let deleted =
            tokio::task::spawn_blocking(move || crate::job_dirs::collect_garbage(&jobs_dir, keep, &running)).await;
        if let Ok(deleted) = deleted.as_deref()
            && !deleted.is_empty()
        {
            tracing::debug!(count = deleted.len(), keep, "old job directories deleted");
        }
    }
}

/// Enters an attempt into the running jobs; see [`Agent::admit`].
fn admit_into(map: &mut HashMap<u64, RunningJob>, lease: Lease) -> Admission {
    if let Some(newer) = map.get(&lease.job.0).filter(|j| j.lease.epoch > lease.epoch) {
        tracing::warn!(
            job = lease.job.0,
            epoch = lease.epoch.0,
            running_epoch = newer.lease.epoch.0,
            "a stale attempt of a job running here arrived late; not running it"
        );
        return Admission::Stale;
    }
    let (cancel, cancelled) = watch::channel(false);
    let (ended_tx, ended) = watch::channel(false);
    let previous = map.insert(lease.job.0, RunningJob { lease, cancel, release: None, ended });
    let predecessor = previous.map(|old| {
        tracing::warn!(
            job = lease.job.0,
            old_epoch = old.lease.epoch.0,
            new_epoch = lease.epoch.0,
            "a newer attempt of a job running here arrived; stopping the older one first"
        );
        let _ = old.cancel.send(true);
        old.ended
    });
    Admission::Run(Admitted { cancelled, ended: ended_tx, predecessor })
}

/// Removes the attempt's own entry: a newer attempt of the job may have taken it.
fn take_own(map: &mut HashMap<u64, RunningJob>, lease: Lease) -> Option<RunningJob> {
    match map.get(&lease.job.0) {
        Some(j) if j.lease.epoch == lease.epoch => map.remove(&lease.job.0),
        _ => None,
    }
}

/// The fingerprint plus the GPU model (`none` on a CPU box), as eval results record it.
fn environment(caps: &crate::caps::Capabilities) -> BTreeMap<String, String> {
    let mut env = caps.fingerprint.clone();
    let gpu = caps.gpus.first().map_or_else(|| "none".to_owned(), |g| g.name.clone());
    env.insert("gpu".to_owned(), gpu);
    env
}

fn to_pb(c: crate::caps::Capabilities, max_jobs: u32) -> pb::Capabilities {
    pb::Capabilities {
        hostname: c.hostname,
        cpus: c.cpu_count,
        ram_mib: c.ram_mib,
        gpus: c
            .gpus
            .into_iter()
            .map(|g| pb::Gpu {
                index: g.index,
                name: g.name,
                uuid: g.uuid,
                total_vram_mib: g.total_vram_mib,
                free_vram_mib: g.free_vram_mib,
            })
            .collect(),
        driver_version: c.driver_version.unwrap_or_default(),
        cuda_version: c.cuda_version.unwrap_or_default(),
        labels: c.labels,
        environment: c.fingerprint.into_iter().map(|(key, value)| pb::KeyValue { key, value }).collect(),
        max_jobs,
    }
}

#[cfg(test)]
mod tests {
    use phasegate_proto::domain::{Epoch, JobId, LeaseToken};

    use super::*;

    fn lease(job: u64, epoch: u64) -> Lease {
        Lease { job: JobId(job), epoch: Epoch(epoch), token: LeaseToken::from_bytes([epoch as u8; 16]) }
    }

    #[test]
    fn a_newer_attempt_stops_the_older_and_waits_for_its_end() {
        let mut map = HashMap::new();
        let Admission::Run(first) = admit_into(&mut map, lease(4, 1)) else { panic!("first attempt refused") };
        assert!(first.predecessor.is_none());
        let Admission::Run(second) = admit_into(&mut map, lease(4, 2)) else { panic!("newer attempt refused") };
        assert!(*first.cancelled.borrow(), "the older attempt was not told to stop");
        let mut predecessor = second.predecessor.expect("the newer attempt does not wait for the older");
        assert!(!*predecessor.borrow_and_update());
        first.ended.send(true).unwrap();
        assert!(*predecessor.borrow_and_update(), "the older attempt's end does not reach the newer");
        // The older attempt ending takes nothing away from the newer one.
        assert!(take_own(&mut map, lease(4, 1)).is_none());
        assert_eq!(map[&4].lease.epoch, Epoch(2));
        assert!(take_own(&mut map, lease(4, 2)).is_some());
        assert!(map.is_empty());
    }

    #[test]
    fn a_stale_attempt_arriving_late_does_not_run_or_stop_the_newer() {
        let mut map = HashMap::new();
        let Admission::Run(newer) = admit_into(&mut map, lease(4, 3)) else { panic!("refused") };
        assert!(matches!(admit_into(&mut map, lease(4, 2)), Admission::Stale));
        assert!(!*newer.cancelled.borrow(), "a stale attempt stopped the newer one");
        assert_eq!(map[&4].lease.epoch, Epoch(3));
    }
}
