//! The agent's connection to the coordinator: register, heartbeat, lease and run jobs.
//!
//! The agent owns no durable state. After a coordinator restart it keeps its jobs running and
//! registers again with the leases it holds; the coordinator keeps those it still owns and names the
//! ones to stop.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tonic::Code;

use phasegate_proto::client::{AgentClient, ConnectError, agent_client_as, channel};
use phasegate_proto::domain::Lease;
use phasegate_proto::pb;

use crate::caps::{CapsConfig, GpuProbe, gather};
use crate::job::{JobContext, execute};
use crate::retry::RetryPolicy;

/// The lease TTL assumed until the coordinator names its own (the coordinator's default).
const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);

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

/// Jobs this agent runs now: job id → (its lease, token included, and cancel switch).
type Running = Arc<Mutex<HashMap<u64, (Lease, watch::Sender<bool>)>>>;

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
    /// The environment fingerprint of the last registration, for eval results.
    environment: Mutex<BTreeMap<String, String>>,
}

/// Runs the agent until `shutdown` resolves. Running jobs are stopped on shutdown.
pub async fn run(
    config: AgentConfig,
    probe: Arc<dyn GpuProbe>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
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
        environment: Mutex::default(),
    });
    agent.register_until_accepted().await?;
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(agent.clone().heartbeat_loop());
    for _ in 0..agent.config.max_jobs.max(1) {
        tasks.spawn(agent.clone().lease_loop());
    }
    shutdown.await;
    tracing::info!("agent shutting down; stopping running jobs");
    for (_, (_, cancel)) in agent.running.lock().map(|m| m.clone()).unwrap_or_default() {
        let _ = cancel.send(true);
    }
    tasks.abort_all();
    Ok(())
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
        let running = self.running.lock().map(|m| m.values().map(|(l, _)| pb::JobLease::from(*l)).collect());
        running.unwrap_or_default()
    }

    fn stop(&self, jobs: &[u64]) {
        let Ok(map) = self.running.lock() else { return };
        for job in jobs {
            if let Some((_, cancel)) = map.get(job) {
                tracing::warn!(job, "coordinator no longer owns this job; stopping it");
                let _ = cancel.send(true);
            }
        }
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
        tracing::info!(agent = %self.config.name, "registered with the coordinator");
        Ok(())
    }

    /// Registers, retrying while the coordinator is unreachable; a refusal (bad token or bad
    /// capabilities) is final.
    async fn register_until_accepted(&self) -> Result<(), AgentError> {
        let mut delay = Duration::from_millis(200);
        loop {
            match self.register().await {
                Ok(()) => return Ok(()),
                Err(s)
                    if matches!(
                        s.code(),
                        Code::Unauthenticated
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
            let request = pb::HeartbeatRequest {
                agent_name: self.config.name.clone(),
                gpus: self
                    .probe
                    .measure_free_vram()
                    .into_iter()
                    .map(|(index, free_vram_mib)| pb::GpuFree { index, free_vram_mib })
                    .collect(),
                running: self.leases(),
            };
            let mut client = self.client.clone();
            match client.heartbeat(request).await {
                Ok(resp) => {
                    let resp = resp.into_inner();
                    self.stop(&resp.stop_jobs);
                    if resp.reregister {
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

    async fn lease_loop(self: Arc<Self>) {
        loop {
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

    async fn run_job(&self, a: pb::Assignment) {
        let (cancel_tx, cancel_rx) = watch::channel(false);
        if let (Ok(lease), Ok(mut m)) = (Lease::of_assignment(&a), self.running.lock()) {
            m.insert(a.job_id, (lease, cancel_tx));
        }
        let job_id = a.job_id;
        tracing::info!(job = job_id, stage = %a.stage, attempt = a.attempt, "running job");
        let ctx = JobContext {
            client: self.client.clone(),
            work_dir: self.config.work_dir.clone(),
            probe: self.probe.clone(),
            grace: self.config.grace,
            model_cache: self.config.model_cache.clone(),
            environment: self.environment.lock().map(|e| e.clone()).unwrap_or_default(),
            retry: RetryPolicy::for_lease_ttl(self.lease_ttl.lock().map(|t| *t).unwrap_or(DEFAULT_LEASE_TTL)),
        };
        execute(ctx, a, cancel_rx).await;
        let running: HashSet<u64> = match self.running.lock() {
            Ok(mut m) => {
                m.remove(&job_id);
                m.keys().copied().collect()
            }
            Err(_) => return,
        };
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
