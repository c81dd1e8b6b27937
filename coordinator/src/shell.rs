//! The async shell around the scheduling core: read → decide (core) → write (store) → acknowledge.
//!
//! One `tokio::sync::Mutex` guards the core and is held across the store write, so the store sees
//! state changes in the order the core made them. If a write fails, the in-memory core may be ahead
//! of the store; the shell then rebuilds the core from the store, which is the source of truth.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Mutex, Notify, broadcast};
use tonic::Status;

use phasegate_proto::domain::{
    AgentCaps, AgentName, Epoch, JobId, JobState, LEASE_TOKEN_BYTES, Lease, LeaseToken, Priority, RunId, RunState,
    Stage, Trigger,
};
use phasegate_proto::pb;
use phasegate_proto::spec::{
    AcceptedDataset, AcceptedResponses, LintOutcome, PhaseSpec, ScoreMode, StagePlan, StageWork,
};

use gate_rules::Phase;

use crate::artifacts::ArtifactStore;
use crate::credentials::Credentials;
use crate::history::accepted;
use crate::metrics::Stats;
use crate::scheduler::{
    AgentStatus, CompletedLease, Core, CoreConfig, Effects, HeartbeatOutcome, NewJob, NewRun, Rejection,
    is_repeat_completion, unplaceable,
};
use crate::stage_cache::{self, CacheUse};
use crate::store::{
    AgentRecord, JobRecord, JobResult, NewJobRecord, NewRunRecord, OverrideRecord, Store, StoreError, VerdictRecord,
};
use crate::writer::{Pending, WriteQueue};

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A store error as gRPC answers it: `UNAVAILABLE`, with a storage fault's fixed message (a full
/// disk: "coordinator out of disk space") so clients can say what to fix.
pub(crate) fn store_status(e: StoreError) -> Status {
    tracing::error!(error = %e, "store failure");
    match e.fault() {
        Some(fault) => fault.status(&e),
        None => Status::unavailable(format!("coordinator store failure: {e}")),
    }
}

pub(crate) fn rejection_status(r: Rejection) -> Status {
    match r {
        Rejection::UnknownAgent(_) => Status::failed_precondition(format!("{r}; register first")),
        // Its own code: a newcomer waits for the name to come free (the live agent exits or falls
        // silent) rather than giving up as it would on a bad credential.
        Rejection::NameInUse(_) => Status::already_exists(r.to_string()),
        _ if r.is_denial() => Status::permission_denied(r.to_string()),
        _ => Status::failed_precondition(r.to_string()),
    }
}

/// A fresh lease token from the operating system's CSPRNG (through `rand`'s thread RNG, which is
/// seeded from it and cryptographically secure).
fn new_lease_token() -> LeaseToken {
    use rand::RngCore as _;
    let mut bytes = [0u8; LEASE_TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    LeaseToken::from_bytes(bytes)
}

/// Settings of a running coordinator.
#[derive(Debug, Clone)]
pub struct ShellConfig {
    pub core: CoreConfigPublic,
    pub heartbeat_interval: Duration,
    pub artifact_limit_bytes: u64,
    pub bundle_limit_bytes: u64,
    /// `[github]` reporting and the webhook; `None`: nothing GitHub-related runs.
    pub github: Option<crate::github::GithubSetup>,
    /// The model cache the gate stage reads the suite language's dictionary from, to re-score
    /// baselines with the candidate's rules scorer (and `RescorePhases`, to re-score a stored
    /// history); `None`: the default cache (`$PHASEGATE_MODEL_CACHE`, else
    /// `~/.cache/phasegate/models`).
    pub model_cache: Option<std::path::PathBuf>,
    /// Whether agents may authenticate with the shared agent token of `access.toml`; when off, only
    /// per-agent credentials are accepted (`phasegate serve --no-shared-agent-token`).
    pub shared_agent_token: bool,
    /// Bounds of the HTTP side port (connections, timeouts, webhook body size).
    pub http: crate::HttpLimits,
    /// Retention applied by the coordinator itself once a day; `None` (the default): only
    /// `phasegate gc` prunes.
    pub retention: Option<crate::RetentionPolicy>,
}

/// The scheduling limits users can set.
#[derive(Debug, Clone, Copy)]
pub struct CoreConfigPublic {
    pub lease_ttl: Duration,
    pub max_attempts: u32,
}

impl Default for ShellConfig {
    fn default() -> Self {
        Self {
            core: CoreConfigPublic { lease_ttl: Duration::from_secs(30), max_attempts: 3 },
            heartbeat_interval: Duration::from_secs(5),
            artifact_limit_bytes: 8 << 30,
            bundle_limit_bytes: 512 << 20,
            github: None,
            model_cache: None,
            shared_agent_token: true,
            http: crate::HttpLimits::default(),
            retention: None,
        }
    }
}

/// What a lease of a job hands out, besides the lease fields.
#[derive(Debug, Clone)]
struct JobTemplate {
    run: RunId,
    work: pb::Assignment,
    depends_on: Vec<JobId>,
}

#[derive(Debug)]
pub(crate) struct Shared<S> {
    pub core: Mutex<Core>,
    pub store: S,
    pub artifacts: ArtifactStore,
    pub work: Notify,
    /// Woken when a job succeeded, so a coordinator job (the gate) may have become ready.
    pub coordinator_work: Notify,
    pub runs_changed: broadcast::Sender<RunId>,
    /// A run whose verdict was delivered has something new to deliver (an override): GitHub
    /// delivery forgets that the run was settled.
    pub verdict_reopened: broadcast::Sender<RunId>,
    pub stats: Stats,
    pub config: ShellConfig,
    /// Per-agent credentials, as the agent service's interceptor checks them.
    pub credentials: Arc<Credentials>,
    lease_started: std::sync::Mutex<HashMap<JobId, Instant>>,
    writes: WriteQueue,
    /// The work of each unfinished job, so a lease needs no store read (filled at submission;
    /// jobs restored after a restart are read from the store on their first lease).
    templates: std::sync::Mutex<HashMap<JobId, JobTemplate>>,
}

impl<S: Store> Shared<S> {
    /// Builds the shell and restores the core from the store (after a restart: every active run,
    /// its jobs with their epochs and attempts, and the agents known before).
    pub async fn restore(store: S, artifacts: ArtifactStore, config: ShellConfig) -> Result<Arc<Self>, StoreError> {
        let core = Self::load_core(&store, &config).await?;
        let credentials = Arc::new(Credentials::load(&store.agent_tokens().await?));
        let (runs_changed, _) = broadcast::channel(1024);
        let (verdict_reopened, _) = broadcast::channel(64);
        let writes = WriteQueue::spawn(store.clone());
        Ok(Arc::new(Self {
            core: Mutex::new(core),
            store,
            artifacts,
            work: Notify::new(),
            coordinator_work: Notify::new(),
            runs_changed,
            verdict_reopened,
            stats: Stats::default(),
            config,
            credentials,
            lease_started: std::sync::Mutex::new(HashMap::new()),
            writes,
            templates: std::sync::Mutex::new(HashMap::new()),
        }))
    }

    async fn load_core(store: &S, config: &ShellConfig) -> Result<Core, StoreError> {
        let now = now_ms();
        let mut core = Core::new(CoreConfig {
            lease_ttl_ms: config.core.lease_ttl.as_millis() as u64,
            max_attempts: config.core.max_attempts,
        });
        for agent in store.agents().await? {
            let (Ok(name), Ok(caps)) =
                (AgentName::parse("name", &agent.name), AgentCaps::try_from(&agent.capabilities))
            else {
                continue;
            };
            core.on_agent_restored(name, caps, agent.draining_ms.map(|ms| ms.max(0) as u64), now);
        }
        for run in store.active_runs().await? {
            let priority: Priority = run.priority.parse().unwrap_or(Priority::Manual);
            let pr_key = run.trigger.pr.map(|pr| (run.trigger.repo.clone(), pr));
            let jobs = run.jobs.iter().map(restored_job).collect::<Result<Vec<_>, _>>()?;
            core.on_run_submitted(NewRun { id: RunId(run.id as u64), priority, pr_key, jobs }, now);
        }
        Ok(core)
    }

    /// Persists what an event changed, then wakes waiting agents and watchers. On a store failure the
    /// core is rebuilt from the store so it never runs ahead of what is durable. The caller holds the
    /// scheduler lock throughout; hot paths use [`Self::enqueue`] and [`Self::settle`] instead so
    /// the lock is released while the write is in flight and concurrent events share a transaction.
    pub async fn commit(&self, core: &mut Core, effects: &Effects, result: &JobResult) -> Result<(), Status> {
        if effects.is_empty() && result.job.is_none() {
            // Nothing to persist, but the event may still have made work available (a registration).
            self.after_commit(effects);
            return Ok(());
        }
        let mut pending = self.writes.push(effects.clone(), result.clone());
        if let Err(e) = pending.durable().await {
            if let Ok(fresh) = Self::load_core(&self.store, &self.config).await {
                *core = fresh;
            }
            return Err(e.status());
        }
        self.after_commit(effects);
        Ok(())
    }

    /// Queues an event's changes for the group-commit writer. Call with the scheduler lock held.
    pub fn enqueue(&self, effects: Effects, result: JobResult) -> Pending {
        self.writes.push(effects, result)
    }

    /// Waits (without the scheduler lock) until a queued event is durable, then notifies.
    pub async fn settle(&self, mut pending: Pending) -> Result<(), Status> {
        if let Err(e) = pending.durable().await {
            let mut core = self.core.lock().await;
            if let Ok(fresh) = Self::load_core(&self.store, &self.config).await {
                *core = fresh;
            }
            return Err(e.status());
        }
        self.after_commit(&pending.effects);
        Ok(())
    }

    fn after_commit(&self, effects: &Effects) {
        if effects.work_available {
            self.work.notify_waiters();
        }
        if effects.jobs.values().any(|j| j.state == JobState::Succeeded) {
            // notify_one keeps a permit, so a wake-up between two passes is not lost.
            self.coordinator_work.notify_one();
        }
        let mut runs: Vec<RunId> = effects.runs.keys().copied().collect();
        runs.extend(effects.jobs.values().map(|j| j.run));
        runs.sort();
        runs.dedup();
        for run in runs {
            let _ = self.runs_changed.send(run);
        }
        for job in effects.jobs.values() {
            if job.state.is_terminal() {
                if let Ok(mut t) = self.templates.lock() {
                    t.remove(&job.id);
                }
                let started = self.lease_started.lock().ok().and_then(|mut m| m.remove(&job.id));
                self.stats.job_finished(job.state, started.map(|s| s.elapsed()));
            } else if job.state == JobState::Leased
                && let Ok(mut m) = self.lease_started.lock()
            {
                m.insert(job.id, Instant::now());
            }
        }
    }

    /// Submits a run of the spec; `priority` overrides the spec's own (webhook runs are `pr`,
    /// scheduled re-runs `nightly`).
    pub async fn submit_as(
        &self,
        spec_toml: &str,
        spec_path: &str,
        bundle_sha256: String,
        trigger: Trigger,
        priority: Option<Priority>,
        no_cache: bool,
    ) -> Result<(RunId, Vec<RunId>), Status> {
        let mut spec = PhaseSpec::parse(spec_toml, spec_path).map_err(|e| Status::invalid_argument(e.to_string()))?;
        if let Some(priority) = priority {
            spec.priority = priority;
        }
        if !bundle_sha256.is_empty() && !self.store.artifact_known(&bundle_sha256).await.map_err(store_status)? {
            return Err(Status::invalid_argument(format!(
                "bundle_sha256: no uploaded source bundle has digest {bundle_sha256}"
            )));
        }
        if let Some(lint) = spec.lint.as_mut()
            && lint.baseline.is_empty()
        {
            lint.accepted = self.accepted_dataset(&spec.experiment).await?;
        }
        if let Some(score) = spec.score.as_mut()
            && score.mode == ScoreMode::Pairwise
            && score.baseline_responses.is_none()
        {
            score.accepted = self.accepted_responses(&spec.experiment).await?;
        }
        if let Some(score) = spec.score.as_mut()
            && score.mode == ScoreMode::Judge
        {
            score.rescore = self.baselines_to_rescore(&spec.experiment).await?;
        }
        let plans = spec.stages();
        // A nightly run exists to catch drift: it never reads the cache.
        let cache_use =
            if no_cache || spec.priority == Priority::Nightly { CacheUse::WriteOnly } else { CacheUse::ReadWrite };
        let cached = self.cache_lookups(&plans, &bundle_sha256, cache_use).await?;
        let mut core = self.core.lock().await;
        let unfit = plans
            .iter()
            .filter(|p| !p.stage.runs_on_coordinator())
            .find_map(|p| unplaceable(&p.requires, core.agents()));
        let mut jobs = Vec::with_capacity(plans.len());
        for (plan, (cache_key, source)) in plans.iter().zip(&cached) {
            let depends_on = plan.depends_on.iter().filter_map(|d| plans.iter().position(|p| p.stage == *d)).collect();
            jobs.push(NewJobRecord {
                stage: plan.stage,
                depends_on,
                requires: pb::Requirements::from(&plan.requires),
                work: assignment_template(&spec, &plan.work, plan.stage, &bundle_sha256),
                cache_key: cache_key.clone(),
                cached: source.clone(),
            });
        }
        let record = NewRunRecord {
            experiment: spec.experiment.clone(),
            phase: spec.phase.clone(),
            description: spec.description.clone(),
            priority: spec.priority,
            spec_toml: spec_toml.to_owned(),
            spec_path: spec_path.to_owned(),
            bundle_sha256,
            trigger: trigger.clone(),
            created_ms: now_ms() as i64,
            state: if unfit.is_some() { RunState::Failed } else { RunState::Queued },
            error: unfit.clone().unwrap_or_default(),
            jobs,
        };
        let (run_id, job_ids) = self.store.insert_run(&record).await.map_err(store_status)?;
        self.stats.run_submitted();
        if let Ok(mut templates) = self.templates.lock() {
            for (job, id) in record.jobs.iter().zip(&job_ids) {
                let depends_on = job.depends_on.iter().filter_map(|i| job_ids.get(*i).copied()).collect();
                templates.insert(*id, JobTemplate { run: run_id, work: job.work.clone(), depends_on });
            }
        }
        if unfit.is_some() {
            let _ = self.runs_changed.send(run_id);
            return Ok((run_id, Vec::new()));
        }
        let pr_key = trigger.pr.map(|pr| (trigger.repo.clone(), pr));
        let new_jobs = plans
            .iter()
            .zip(&job_ids)
            .zip(&cached)
            .map(|((plan, id), (_, source))| NewJob {
                id: *id,
                stage: plan.stage,
                depends_on: plan
                    .depends_on
                    .iter()
                    .filter_map(|d| plans.iter().position(|p| p.stage == *d).map(|i| job_ids[i]))
                    .collect(),
                requires: plan.requires.clone(),
                state: if source.is_some() { JobState::Succeeded } else { JobState::Queued },
                epoch: Epoch(0),
                token: None,
                attempt: 0,
                agent: None,
                gpu: None,
                history: Vec::new(),
            })
            .collect();
        let mut effects = core.on_run_submitted(
            NewRun { id: run_id, priority: spec.priority, pr_key: pr_key.clone(), jobs: new_jobs },
            now_ms(),
        );
        let mut superseded = Vec::new();
        if let Some(key) = &pr_key {
            let (older, cancel_effects) = core.supersede(run_id, key);
            superseded = older;
            effects.merge(cancel_effects);
        }
        self.commit(&mut core, &effects, &JobResult::default()).await?;
        if cached.iter().any(|(_, source)| source.is_some()) {
            // Stages born succeeded may leave the gate ready at once: no completion will wake it.
            self.coordinator_work.notify_one();
        }
        // A queued run changes no row yet, so the commit may announce nothing; watchers (the GitHub
        // check run) must still learn of the new run.
        let _ = self.runs_changed.send(run_id);
        Ok((run_id, superseded))
    }

    /// The dataset of the experiment's newest accepted phase, when a run of this coordinator
    /// produced it with a `[lint]` stage and its bundle is still stored: the lint's diff baseline.
    async fn accepted_dataset(&self, experiment: &str) -> Result<Option<AcceptedDataset>, Status> {
        let phases = self.store.phases(experiment).await.map_err(store_status)?;
        let Some(newest) = phases.iter().rev().find(|p| p.phase.accepted) else { return Ok(None) };
        // An imported phase has no dataset here; an older accepted one would be the wrong baseline.
        let Some(run_id) = newest.run_id else { return Ok(None) };
        let Some(run) = self.store.run(RunId(run_id as u64)).await.map_err(store_status)? else { return Ok(None) };
        if run.bundle_sha256.is_empty() || !self.store.artifact_known(&run.bundle_sha256).await.map_err(store_status)? {
            return Ok(None);
        }
        let Some(lint) = PhaseSpec::parse(&run.spec_toml, &run.spec_path).ok().and_then(|s| s.lint) else {
            return Ok(None);
        };
        Ok(Some(AcceptedDataset {
            phase: newest.phase.label.clone(),
            run: run_id as u64,
            bundle_sha256: run.bundle_sha256,
            datasets: lint.datasets,
        }))
    }

    /// The stored responses of the experiment's newest accepted phase that keeps them, as a blob:
    /// the pairwise judge's baseline.
    async fn accepted_responses(&self, experiment: &str) -> Result<Option<AcceptedResponses>, Status> {
        let phases = accepted(self.store.phases(experiment).await.map_err(store_status)?);
        match phases.iter().rev().find(|p| p.has_responses()) {
            Some(newest) => Ok(Some(self.responses_blob(newest).await?)),
            None => Ok(None),
        }
    }

    /// The best and the previous accepted phase that keep their responses, as blobs: the phases
    /// a judge-scored candidate is compared with, for the judge to score too.
    async fn baselines_to_rescore(&self, experiment: &str) -> Result<Vec<AcceptedResponses>, Status> {
        let phases = accepted(self.store.phases(experiment).await.map_err(store_status)?);
        let kept: Vec<&Phase> = phases.iter().filter(|p| p.has_responses() && p.score().is_some()).collect();
        let previous = kept.last().copied();
        // The latest of equal scores, as the gate picks its best baseline.
        let best = kept.iter().copied().max_by(|a, b| a.score().partial_cmp(&b.score()).unwrap_or(Ordering::Equal));
        let mut out = Vec::new();
        for phase in [best, previous].into_iter().flatten() {
            if !out.iter().any(|a: &AcceptedResponses| a.phase == phase.label) {
                out.push(self.responses_blob(phase).await?);
            }
        }
        Ok(out)
    }

    /// Stores a phase's responses (the eval stage's shape) as a blob for a score job to fetch.
    async fn responses_blob(&self, phase: &Phase) -> Result<AcceptedResponses, Status> {
        let responses = crate::rescore::responses_of(phase).map_err(|e| Status::failed_precondition(e.to_string()))?;
        let bytes = serde_json::to_vec_pretty(&responses).map_err(|e| Status::internal(e.to_string()))?;
        let artifacts = self.artifacts.clone();
        let _placing = self.artifacts.placing().await;
        let (sha256, size) = tokio::task::spawn_blocking(move || artifacts.put("baseline-responses.json", &bytes))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| e.status())?;
        self.store.record_artifact(&sha256, size, now_ms() as i64).await.map_err(store_status)?;
        Ok(AcceptedResponses { phase: phase.label.clone(), sha256 })
    }

    /// Each plan's cache key and, where the cache may stand in for it, the succeeded job it
    /// reuses. A lint whose verdict was `fail` is never reused (that run ended at it; running it
    /// again takes seconds and stores the verdict again).
    async fn cache_lookups(
        &self,
        plans: &[StagePlan],
        bundle_sha256: &str,
        cache_use: CacheUse,
    ) -> Result<Vec<(Option<String>, Option<JobRecord>)>, Status> {
        let wanted = stage_cache::files_needed(plans);
        let digests = if bundle_sha256.is_empty() {
            wanted.iter().map(|w| (w.clone(), stage_cache::FileDigest::Missing)).collect()
        } else {
            let bundle = self.artifacts.path_of(bundle_sha256);
            tokio::task::spawn_blocking(move || stage_cache::bundle_digests(&bundle, &wanted))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(|e| Status::invalid_argument(format!("bundle_sha256: {e}")))?
        };
        let nonce = new_lease_token().to_hex();
        let keys = stage_cache::stage_keys(plans, bundle_sha256, &digests, cache_use, &nonce);
        let mut out = Vec::with_capacity(keys.len());
        for (plan, key) in plans.iter().zip(keys) {
            let Some(key) = key else {
                out.push((None, None));
                continue;
            };
            let source = if key.lookup { self.store.cache_source(&key.key).await.map_err(store_status)? } else { None };
            let failed_lint = |j: &JobRecord| {
                plan.stage == Stage::Lint
                    && serde_json::from_str::<LintOutcome>(&j.result_json).map_or(true, |o| o.verdict == "fail")
            };
            out.push((Some(key.key), source.filter(|j| !failed_lint(j))));
        }
        Ok(out)
    }

    /// Records a maintainer's decision to merge over the run's verdict (`phasegate override`).
    /// Only a verdict that blocks can be overridden; the verdict stays, the report and the PR's
    /// check run say who overrode it and why.
    pub async fn override_verdict(&self, run: RunId, by: &str, reason: &str) -> Result<OverrideRecord, Status> {
        let (by, reason) = (by.trim(), reason.trim());
        if reason.is_empty() {
            return Err(Status::invalid_argument("reason: say why the verdict is overridden"));
        }
        if reason.chars().count() > MAX_OVERRIDE_REASON {
            return Err(Status::invalid_argument(format!(
                "reason: {} characters is longer than the limit of {MAX_OVERRIDE_REASON}",
                reason.chars().count()
            )));
        }
        if by.is_empty() || by.chars().count() > 100 {
            return Err(Status::invalid_argument("by: name who overrides the verdict (1-100 characters)"));
        }
        let record = self.store.run(run).await.map_err(store_status)?;
        let record = record.ok_or_else(|| Status::not_found(format!("no run {run}")))?;
        match record.verdict.as_str() {
            "" => return Err(Status::failed_precondition(format!("run {run} has no verdict yet"))),
            "pass" | "warn" => {
                return Err(Status::failed_precondition(format!(
                    "run {run}'s verdict is {}: it blocks nothing, so there is nothing to override",
                    record.verdict
                )));
            }
            _ => {}
        }
        let entry = OverrideRecord { by: by.to_owned(), reason: reason.to_owned(), at_ms: now_ms() as i64 };
        if !self.store.set_override(run, &entry).await.map_err(store_status)? {
            return Err(Status::failed_precondition(format!("run {run} has no verdict yet")));
        }
        tracing::info!(run = %run, by = %entry.by, "verdict overridden");
        let _ = self.verdict_reopened.send(run);
        let _ = self.runs_changed.send(run);
        Ok(entry)
    }

    pub async fn cancel(&self, run: RunId) -> Result<bool, Status> {
        let mut core = self.core.lock().await;
        if !core.is_active_run(run) {
            return Ok(false);
        }
        let effects = core.on_run_cancelled(run, "cancelled by user");
        self.commit(&mut core, &effects, &JobResult::default()).await?;
        Ok(true)
    }

    /// Registers an agent. `instance` identifies the agent process; `own_credential` says the caller
    /// presented this agent's own credential, which may take over a live registration of the name.
    pub async fn register(
        &self,
        name: AgentName,
        caps_pb: pb::Capabilities,
        running: &[Lease],
        instance: &str,
        own_credential: bool,
    ) -> Result<Vec<JobId>, Status> {
        let caps = AgentCaps::try_from(&caps_pb).map_err(|e| Status::invalid_argument(e.to_string()))?;
        // The lock is held from the check to the change, so two newcomers cannot both take a name,
        // and a refused one never overwrites the live agent's stored capabilities.
        let mut core = self.core.lock().await;
        core.check_registration(&name, instance, own_credential, now_ms()).map_err(rejection_status)?;
        let record = AgentRecord {
            name: name.to_string(),
            capabilities: caps_pb,
            registered_ms: now_ms() as i64,
            draining_ms: None,
        };
        self.store.upsert_agent(&record).await.map_err(store_status)?;
        let (stop, effects) = core.on_agent_registered(name, caps, instance, running, now_ms());
        // The registration's effects mark work available, so the commit wakes waiting lease requests.
        self.commit(&mut core, &effects, &JobResult::default()).await?;
        Ok(stop)
    }

    /// `draining`: the agent process says it is draining (it was asked to stop); `leaving`: it is
    /// exiting now.
    pub async fn heartbeat(
        &self,
        name: &AgentName,
        free: &[(u32, u64)],
        running: &[Lease],
        draining: bool,
        leaving: bool,
    ) -> HeartbeatOutcome {
        let mut core = self.core.lock().await;
        let outcome = core.on_heartbeat(name, free, running, draining, now_ms());
        if leaving && core.on_agent_left(name) {
            tracing::info!(agent = %name, "agent left; its name is free");
        }
        drop(core);
        // Only grown free VRAM can make a waiting job fit; waking every long-poll on every heartbeat
        // would make each heartbeat cost one core pass per waiting agent. A drain that began wakes
        // them too, so the draining agent's waiting request ends at once.
        if outcome.capacity_grew || outcome.drain_began {
            self.work.notify_waiters();
        }
        outcome
    }

    /// Long-poll lease: waits up to `wait` for a job this agent fits. An agent draining itself is
    /// answered "nothing" at once; one an operator drained waits empty-handed (it keeps asking).
    pub async fn lease(&self, name: &AgentName, wait: Duration) -> Result<Option<pb::Assignment>, Status> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.work.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut core = self.core.lock().await;
                if core.is_self_draining(name) {
                    return Ok(None);
                }
                let token = new_lease_token();
                if let Some((lease, effects)) =
                    core.on_lease_request(name, token, now_ms()).map_err(rejection_status)?
                {
                    let gpu = effects.jobs.get(&lease.job).and_then(|j| j.gpu);
                    let attempt = effects.jobs.get(&lease.job).map(|j| j.attempt).unwrap_or(1);
                    let pending = self.enqueue(effects, JobResult::default());
                    drop(core);
                    self.settle(pending).await?;
                    return self.assignment(lease, gpu, attempt).await.map(Some);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(None);
            }
        }
    }

    async fn assignment(&self, lease: Lease, gpu: Option<u32>, attempt: u32) -> Result<pb::Assignment, Status> {
        let cached = self.templates.lock().ok().and_then(|t| t.get(&lease.job).cloned());
        let template = match cached {
            Some(t) => t,
            None => {
                let job = self.store.job(lease.job).await.map_err(store_status)?;
                let job = job.ok_or_else(|| Status::internal(format!("leased job {} has no row", lease.job)))?;
                let depends_on = job.depends_on.iter().map(|d| JobId(*d as u64)).collect();
                JobTemplate { run: RunId(job.run_id as u64), work: job.work, depends_on }
            }
        };
        let mut inputs = Vec::new();
        for dep in &template.depends_on {
            if let Some(d) = self.store.job(*dep).await.map_err(store_status)? {
                inputs.extend(d.artifacts);
            }
        }
        let mut a = template.work;
        a.job_id = lease.job.0;
        a.epoch = lease.epoch.0;
        a.lease_token = lease.token.to_hex();
        a.run_id = template.run.0;
        a.attempt = attempt;
        a.gpu_index = gpu;
        a.inputs = inputs;
        Ok(a)
    }

    /// `caller`, here and below: the agent the request identified itself as (see
    /// [`crate::scheduler::Core::check_lease`]).
    pub async fn start(&self, lease: Lease, caller: Option<&AgentName>) -> Result<(), Status> {
        let mut core = self.core.lock().await;
        let effects = core.on_job_started(lease, caller, now_ms()).map_err(rejection_status)?;
        if effects.is_empty() {
            return Ok(());
        }
        let pending = self.enqueue(effects, JobResult::default());
        drop(core);
        self.settle(pending).await
    }

    /// Checks a lease without changing anything (events and uploads are fenced by it).
    pub async fn check(&self, lease: Lease, caller: Option<&AgentName>) -> Result<(RunId, Stage), Status> {
        self.core.lock().await.check_lease(lease, caller).map_err(rejection_status)
    }

    pub async fn events(&self, lease: Lease, caller: Option<&AgentName>, batch: &pb::EventBatch) -> Result<(), Status> {
        let (run, _) = self.check(lease, caller).await?;
        self.store
            .append_events(lease.job, batch.batch_seq, &batch.lines, &batch.metrics)
            .await
            .map_err(store_status)?;
        let _ = self.runs_changed.send(run);
        Ok(())
    }

    pub async fn complete(
        &self,
        lease: Lease,
        caller: Option<&AgentName>,
        req: pb::CompleteJobRequest,
    ) -> Result<(), Status> {
        // Fence first: a stale or foreign lease is refused as such whatever else the report carries.
        // A repeat of the completion that ended the job (its answer lost in a restart) is answered
        // as delivered and changes nothing.
        let (run, stage) = match self.check(lease, caller).await {
            Ok(checked) => checked,
            Err(refused) => {
                if self.repeats_completion(lease, caller, req.success).await? {
                    tracing::info!(job = %lease.job, "repeated completion acknowledged again");
                    return Ok(());
                }
                return Err(refused);
            }
        };
        for a in &req.artifacts {
            if !self.store.artifact_known(&a.sha256).await.map_err(store_status)? {
                return Err(Status::invalid_argument(format!(
                    "artifacts: {} ({}) was never uploaded",
                    a.name, a.sha256
                )));
            }
        }
        // A lint whose verdict is `fail` is the run's verdict: stored before the run ends, so the
        // run is never seen ended without it, and a repeat of this completion stores it again.
        let lint_fail = match stage {
            Stage::Lint if req.success => lint_failure(&req.result_json)?,
            _ => None,
        };
        if let Some(verdict) = &lint_fail {
            self.store.set_verdict(run, verdict).await.map_err(store_status)?;
            tracing::info!(run = %run, "lint verdict fail: the later stages are cancelled");
        }
        let mut core = self.core.lock().await;
        let effects = match lint_fail {
            Some(_) => core.on_job_completed_ending_run(lease, caller, LINT_FAILED),
            None => core.on_job_completed(lease, caller, req.success, &req.error),
        }
        .map_err(rejection_status)?;
        let result = JobResult {
            job: Some(lease.job),
            metrics: req.metrics,
            result_json: req.result_json,
            exit_code: req.exit_code,
            artifacts: req.artifacts,
        };
        let pending = self.enqueue(effects, result);
        drop(core);
        self.settle(pending).await
    }

    /// Gives a leased job back unfinished (see [`crate::scheduler::Core::on_job_released`]). A
    /// repeat of the release that already requeued the job is answered as delivered.
    pub async fn release(&self, lease: Lease, caller: Option<&AgentName>, reason: &str) -> Result<(), Status> {
        let mut core = self.core.lock().await;
        let effects = match core.on_job_released(lease, caller, reason) {
            Ok(effects) => effects,
            Err(_) if core.repeats_release(lease, caller) => {
                tracing::info!(job = %lease.job, "repeated release acknowledged again");
                return Ok(());
            }
            Err(refused) => return Err(rejection_status(refused)),
        };
        let pending = self.enqueue(effects, JobResult::default());
        drop(core);
        self.settle(pending).await
    }

    /// Drains (`draining`) or undrains an agent: stored first, then the core learns it. Returns
    /// the agent's status after the change; an agent the coordinator does not know is `NOT_FOUND`.
    pub async fn set_draining(&self, name: &AgentName, draining: bool) -> Result<AgentStatus, Status> {
        let mut core = self.core.lock().await;
        let unknown = || Status::not_found(format!("agent_name: no agent {name} is registered"));
        let before = core.agent_status(name).ok_or_else(unknown)?;
        // Draining an agent already drained keeps the time it was first drained.
        let since = draining.then(|| before.drained_ms.unwrap_or_else(now_ms));
        if !self.store.set_agent_draining(name.as_str(), since.map(|ms| ms as i64)).await.map_err(store_status)? {
            return Err(unknown());
        }
        let effects = core.on_agent_drained(name, since).map_err(|_| unknown())?;
        self.after_commit(&effects);
        core.agent_status(name).ok_or_else(unknown)
    }

    /// Whether the core, or for a job whose run has ended the store, remembers this exact
    /// completion (see [`crate::scheduler::is_repeat_completion`]).
    async fn repeats_completion(
        &self,
        lease: Lease,
        caller: Option<&AgentName>,
        success: bool,
    ) -> Result<bool, Status> {
        if self.core.lock().await.repeats_completion(lease, caller, success) {
            return Ok(true);
        }
        let Some(record) = self.store.job(lease.job).await.map_err(store_status)? else { return Ok(false) };
        let Ok(job) = restored_job(&record) else { return Ok(false) };
        let done = CompletedLease { state: job.state, epoch: job.epoch, token: job.token, agent: job.agent.as_ref() };
        Ok(is_repeat_completion(done, lease, caller, success))
    }

    /// Expires leases; called periodically.
    pub async fn tick(&self) -> Result<(), Status> {
        let mut core = self.core.lock().await;
        let effects = core.on_tick(now_ms());
        self.commit(&mut core, &effects, &JobResult::default()).await
    }
}

/// Longest `phasegate override --reason`.
const MAX_OVERRIDE_REASON: usize = 2000;

/// Why the stages after a failing lint did not run.
const LINT_FAILED: &str = "skipped: the lint verdict is fail (see the report)";

/// The verdict record of a lint job's result when its verdict is `fail`; `None` otherwise.
fn lint_failure(result_json: &str) -> Result<Option<VerdictRecord>, Status> {
    let outcome: LintOutcome = serde_json::from_str(result_json)
        .map_err(|e| Status::invalid_argument(format!("result_json: not a lint outcome: {e}")))?;
    if outcome.verdict != "fail" {
        return Ok(None);
    }
    let summary = serde_json::json!({
        "stage": "lint",
        "verdict": outcome.verdict,
        "examples": outcome.examples,
        "findings": outcome.findings,
    });
    // The lint's markdown is bounded (a few examples per finding, 20 contaminated listed);
    // GitHub delivery fits it to a comment with a note where it cuts.
    let report = format!(
        "**Stopped at the lint stage: the data fails its checks, so no later stage ran.**\n\n{}",
        outcome.markdown
    );
    Ok(Some(VerdictRecord { verdict: outcome.verdict, report, evaluation_json: summary.to_string() }))
}

fn restored_job(j: &crate::store::JobRecord) -> Result<NewJob, StoreError> {
    let bad = |detail: String| StoreError::Corrupt { table: "jobs", detail };
    let requires = phasegate_proto::domain::Requirements {
        gpu: j.requires.gpu,
        vram_mib: j.requires.vram_mib,
        labels: j.requires.labels.iter().cloned().collect(),
    };
    Ok(NewJob {
        id: JobId(j.id as u64),
        stage: j.stage.parse().map_err(bad)?,
        depends_on: j.depends_on.iter().map(|d| JobId(*d as u64)).collect(),
        requires,
        state: j.state.parse().map_err(bad)?,
        epoch: Epoch(j.epoch as u64),
        token: j
            .lease_token
            .as_deref()
            .map(|t| LeaseToken::parse("lease_token", t))
            .transpose()
            .map_err(|e| bad(format!("job {}: {e}", j.id)))?,
        attempt: j.attempt as u32,
        agent: j.agent.as_deref().and_then(|a| AgentName::parse("agent", a).ok()),
        gpu: j.gpu_index.map(|g| g as u32),
        history: j.history.clone(),
    })
}

fn assignment_template(spec: &PhaseSpec, work: &StageWork, stage: Stage, bundle: &str) -> pb::Assignment {
    let work = match work {
        // The coordinator runs the gate itself; the spec (stored with the run) describes it.
        StageWork::Gate(_) => None,
        StageWork::Lint(_) | StageWork::Eval(_) | StageWork::Score(_) => {
            spec.stage_job(work).map(|job| pb::assignment::Work::StageJson(job.to_json()))
        }
        StageWork::Command(c) => Some(pb::assignment::Work::Command(pb::CommandWork {
            argv: c.command.clone(),
            env: c.env.iter().map(|(k, v)| pb::KeyValue { key: k.clone(), value: v.clone() }).collect(),
            timeout_ms: c.timeout.as_millis() as u64,
            metrics_globs: c.metrics.clone(),
            artifact_globs: c.artifacts.clone(),
        })),
    };
    pb::Assignment { stage: stage.as_str().to_owned(), bundle_sha256: bundle.to_owned(), work, ..Default::default() }
}
