//! The scheduler state and its event handlers.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use phasegate_proto::domain::{
    AgentCaps, AgentName, Epoch, JobId, JobState, Lease, LeaseToken, Priority, Requirements, RunId, RunState, Stage,
};

use super::effects::{AttemptRecord, Effects, JobSnapshot, RunUpdate};
use super::placement::fit_now;

mod coordinator_jobs;
mod drain;
mod registration;

#[derive(Debug, Clone, Copy)]
pub(crate) struct CoreConfig {
    pub lease_ttl_ms: u64,
    pub max_attempts: u32,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self { lease_ttl_ms: 30_000, max_attempts: 3 }
    }
}

/// The error a superseded run ends with; [`superseded_by`] reads it back.
pub(crate) fn superseded_reason(newer: RunId) -> String {
    format!("{SUPERSEDED_BY}{}", newer.0)
}

/// The newer run named by a cancelled run's error, when a newer push superseded it.
pub(crate) fn superseded_by(error: &str) -> Option<RunId> {
    error.strip_prefix(SUPERSEDED_BY)?.parse().ok().map(RunId)
}

const SUPERSEDED_BY: &str = "superseded by run ";

/// A run as submitted (after the shell made it durable and assigned ids).
#[derive(Debug, Clone)]
pub(crate) struct NewRun {
    pub id: RunId,
    pub priority: Priority,
    /// `(repo, pr)` of a pull-request run: a newer run with the same key supersedes this one.
    pub pr_key: Option<(String, u64)>,
    pub jobs: Vec<NewJob>,
}

/// A job of a run, in the state the store holds it (fresh, or restored after a restart).
#[derive(Debug, Clone)]
pub(crate) struct NewJob {
    pub id: JobId,
    pub stage: Stage,
    pub depends_on: Vec<JobId>,
    pub requires: Requirements,
    pub state: JobState,
    pub epoch: Epoch,
    /// The token of the current lease; `None` while the job is not leased.
    pub token: Option<LeaseToken>,
    pub attempt: u32,
    pub agent: Option<AgentName>,
    pub gpu: Option<u32>,
    pub history: Vec<AttemptRecord>,
}

/// Why an agent's report was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Rejection {
    #[error("job {0} is not known or no longer active")]
    UnknownJob(JobId),
    #[error("stale lease for job {job}: epoch {given} is not the current epoch {current}")]
    StaleEpoch { job: JobId, given: Epoch, current: Epoch },
    #[error("job {job} is {state}, not leased")]
    NotLeased { job: JobId, state: JobState },
    #[error("agent {0} is not registered")]
    UnknownAgent(AgentName),
    #[error("job {job} is {state}, not a coordinator job in the right state")]
    NotReady { job: JobId, state: JobState },
    #[error("lease token for job {job} epoch {epoch} is not the one issued with that lease")]
    WrongToken { job: JobId, epoch: Epoch },
    #[error("job {job} is leased to agent {holder}, not to agent {caller}")]
    NotHolder { job: JobId, holder: String, caller: AgentName },
    #[error(
        "agent name {0} belongs to a live agent; register with that agent's own credential \
         (phasegate token create --agent {0}) or wait until it stops heartbeating"
    )]
    NameInUse(AgentName),
}

impl Rejection {
    /// The caller is not the lease holder (or not the owner of the name): refused as a permission
    /// failure, not as a stale report.
    pub fn is_denial(&self) -> bool {
        matches!(self, Self::WrongToken { .. } | Self::NotHolder { .. } | Self::NameInUse(_))
    }
}

#[derive(Debug)]
struct Job {
    run: RunId,
    stage: Stage,
    depends_on: Vec<JobId>,
    requires: Requirements,
    state: JobState,
    epoch: Epoch,
    token: Option<LeaseToken>,
    attempt: u32,
    agent: Option<AgentName>,
    gpu: Option<u32>,
    lease_expires_ms: u64,
    error: String,
    history: Vec<AttemptRecord>,
}

impl Job {
    /// Attempts that count against `max_attempts`: leases, less those the agent gave back.
    fn counted_attempts(&self) -> u32 {
        let released = self.history.iter().filter(|h| h.released).count();
        self.attempt.saturating_sub(u32::try_from(released).unwrap_or(u32::MAX))
    }
}

#[derive(Debug)]
struct Run {
    priority: Priority,
    seq: u64,
    pr_key: Option<(String, u64)>,
    jobs: Vec<JobId>,
    state: RunState,
}

#[derive(Debug)]
struct Agent {
    caps: AgentCaps,
    /// The registering process (random per agent process); empty for agents restored from the store.
    instance: String,
    last_seen_ms: u64,
    online: bool,
    running: BTreeSet<JobId>,
    /// When an operator drained it (kept in the store); `None`: not drained by an operator.
    drained_ms: Option<u64>,
    /// The agent process said it is draining (it was asked to stop); not kept: a new process
    /// under the name starts undrained.
    self_draining: bool,
    /// It registered with this core; `false` for an agent restored from the store, which is leased
    /// nothing until it registers (its registration says what it still runs).
    registered: bool,
}

impl Agent {
    fn new(caps: AgentCaps, instance: &str, now_ms: u64, online: bool) -> Self {
        Self {
            caps,
            instance: instance.to_owned(),
            last_seen_ms: now_ms,
            online,
            running: BTreeSet::new(),
            drained_ms: None,
            self_draining: false,
            registered: false,
        }
    }

    /// A draining agent is leased nothing new; its running jobs go on.
    fn is_draining(&self) -> bool {
        self.drained_ms.is_some() || self.self_draining
    }
}

/// What the core knows of an agent, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AgentStatus {
    pub online: bool,
    pub last_seen_ms: u64,
    pub running: Vec<JobId>,
    pub drained_ms: Option<u64>,
    pub self_draining: bool,
}

/// Result of a heartbeat.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct HeartbeatOutcome {
    pub stop: Vec<JobId>,
    pub reregister: bool,
    /// Some GPU reports more free VRAM than before: a waiting job may fit now.
    pub capacity_grew: bool,
    /// The agent said it is draining and had not before: its waiting lease requests should end.
    pub drain_began: bool,
}

/// The whole scheduling state. Holds active runs only; a run leaves the core when it ends.
#[derive(Debug)]
pub(crate) struct Core {
    config: CoreConfig,
    runs: HashMap<RunId, Run>,
    jobs: HashMap<JobId, Job>,
    agents: BTreeMap<AgentName, Agent>,
    /// Queued jobs by (priority, submission order): the leasing order.
    queue: BTreeSet<(Priority, u64, JobId)>,
    next_seq: u64,
}

impl Core {
    pub fn new(config: CoreConfig) -> Self {
        Self {
            config,
            runs: HashMap::new(),
            jobs: HashMap::new(),
            agents: BTreeMap::new(),
            queue: BTreeSet::new(),
            next_seq: 0,
        }
    }

    /// Agents known to the core, for placement checks and listings.
    pub fn agents(&self) -> impl Iterator<Item = (&AgentName, &AgentCaps)> {
        self.agents.iter().map(|(n, a)| (n, &a.caps))
    }

    pub fn agent_status(&self, name: &AgentName) -> Option<AgentStatus> {
        self.agents.get(name).map(|a| AgentStatus {
            online: a.online,
            last_seen_ms: a.last_seen_ms,
            running: a.running.iter().copied().collect(),
            drained_ms: a.drained_ms,
            self_draining: a.self_draining,
        })
    }

    pub fn is_active_run(&self, run: RunId) -> bool {
        self.runs.contains_key(&run)
    }

    pub fn queued_jobs(&self) -> usize {
        self.queue.len()
    }

    pub fn leased_jobs(&self) -> usize {
        self.jobs.values().filter(|j| j.state.is_leased()).count()
    }

    pub fn online_agents(&self) -> usize {
        self.agents.values().filter(|a| a.online).count()
    }

    /// Adds a run. Restored jobs keep their state; leased ones get a fresh TTL so their agents can
    /// re-attach after a coordinator restart.
    pub fn on_run_submitted(&mut self, run: NewRun, now_ms: u64) -> Effects {
        let mut effects = Effects::default();
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut ids = Vec::with_capacity(run.jobs.len());
        for mut j in run.jobs {
            ids.push(j.id);
            // The coordinator's own jobs died with it: run them again.
            let requeued = j.stage.runs_on_coordinator() && j.state.is_leased();
            if requeued {
                j.state = JobState::Queued;
            }
            if j.state == JobState::Queued {
                self.queue.insert((run.priority, seq, j.id));
                effects.work_available = true;
            }
            if let (true, Some(agent)) = (j.state.is_leased(), &j.agent)
                && let Some(a) = self.agents.get_mut(agent)
            {
                a.running.insert(j.id);
            }
            // A queued job keeps the token of the lease it was released from, so a repeat of that
            // release is recognised; no check accepts a token for a job that is not leased.
            let keeps_token = j.state.is_leased() || j.state == JobState::Queued;
            let job = Job {
                run: run.id,
                stage: j.stage,
                depends_on: j.depends_on,
                requires: j.requires,
                state: j.state,
                epoch: j.epoch,
                token: if keeps_token { j.token } else { None },
                attempt: j.attempt,
                agent: j.agent,
                gpu: j.gpu,
                lease_expires_ms: now_ms + self.config.lease_ttl_ms,
                error: String::new(),
                history: j.history,
            };
            self.jobs.insert(j.id, job);
            if requeued {
                self.snapshot(j.id, &mut effects);
            }
        }
        let state = RunState::Queued;
        self.runs.insert(run.id, Run { priority: run.priority, seq, pr_key: run.pr_key, jobs: ids, state });
        self.refresh_run(run.id, &mut effects);
        effects
    }

    /// Cancels the active runs of the same pull request as `newer` (a newer push supersedes them).
    pub fn supersede(&mut self, newer: RunId, pr_key: &(String, u64)) -> (Vec<RunId>, Effects) {
        let older: Vec<RunId> = self
            .runs
            .iter()
            .filter(|(id, r)| **id != newer && r.pr_key.as_ref() == Some(pr_key))
            .map(|(id, _)| *id)
            .collect();
        let mut effects = Effects::default();
        for id in &older {
            effects.merge(self.on_run_cancelled(*id, &superseded_reason(newer)));
        }
        (older, effects)
    }

    /// Cancels every unfinished job of a run. Agents learn it at their next heartbeat.
    pub fn on_run_cancelled(&mut self, run: RunId, reason: &str) -> Effects {
        let mut effects = Effects::default();
        let Some(r) = self.runs.get(&run) else { return effects };
        for id in r.jobs.clone() {
            if self.jobs.get(&id).is_some_and(|j| !j.state.is_terminal()) {
                self.finish_job(id, JobState::Cancelled, reason, "cancelled", None, &mut effects);
            }
        }
        self.refresh_run(run, &mut effects);
        effects
    }

    /// Adds an agent known from before a restart: offline until it registers again, but counted
    /// when deciding whether a job could ever be placed. `drained_ms`: when an operator drained it.
    pub fn on_agent_restored(&mut self, name: AgentName, caps: AgentCaps, drained_ms: Option<u64>, now_ms: u64) {
        let agent = Agent { drained_ms, ..Agent::new(caps, "", now_ms, false) };
        self.agents.insert(name, agent);
    }

    /// Registers or re-attaches an agent. Reported jobs that are still its valid leases are kept;
    /// the others must be stopped. Jobs the core thinks the agent runs but it did not report are lost.
    /// The caller checked the name with [`Core::check_registration`] first.
    pub fn on_agent_registered(
        &mut self,
        name: AgentName,
        caps: AgentCaps,
        instance: &str,
        reported: &[Lease],
        now_ms: u64,
    ) -> (Vec<JobId>, Effects) {
        let mut effects = Effects::default();
        let mut agent = Agent { registered: true, ..Agent::new(caps, instance, now_ms, true) };
        let mut same_process = false;
        let previous = match self.agents.remove(&name) {
            Some(old) => {
                same_process = !instance.is_empty() && old.instance == instance;
                // An operator's drain outlives re-registrations; the process's own drain only
                // holds while the same process registers again.
                agent.drained_ms = old.drained_ms;
                agent.self_draining = old.self_draining && same_process;
                old.running
            }
            None => BTreeSet::new(),
        };
        self.agents.insert(name.clone(), agent);
        let mut stop = Vec::new();
        for lease in reported {
            if self.owns(&name, *lease) {
                self.attach(&name, lease.job, now_ms);
            } else {
                stop.push(lease.job);
            }
        }
        let reported_ids: BTreeSet<JobId> = reported.iter().map(|l| l.job).collect();
        for missing in previous.difference(&reported_ids) {
            if same_process {
                // The same process registering again (after a failed heartbeat) built its list
                // before a lease granted since was on its way to it: the lease stays, unrenewed,
                // and lapses as any silent lease does if the agent never reports it.
                if let Some(a) = self.agents.get_mut(&name) {
                    a.running.insert(*missing);
                }
            } else {
                self.lose_job(*missing, &format!("agent {name} restarted without it"), &mut effects);
            }
        }
        effects.work_available = true;
        (stop, effects)
    }

    /// Renews the leases an agent holds, updates its free VRAM and its own drain (`draining`), and
    /// says which jobs it must stop.
    pub fn on_heartbeat(
        &mut self,
        name: &AgentName,
        free_vram: &[(u32, u64)],
        reported: &[Lease],
        draining: bool,
        now_ms: u64,
    ) -> HeartbeatOutcome {
        if !self.agents.contains_key(name) {
            return HeartbeatOutcome { reregister: true, ..HeartbeatOutcome::default() };
        }
        let mut stop = Vec::new();
        let mut capacity_grew = false;
        let mut drain_began = false;
        for lease in reported {
            if self.owns(name, *lease) {
                if let Some(j) = self.jobs.get_mut(&lease.job) {
                    j.lease_expires_ms = now_ms + self.config.lease_ttl_ms;
                }
            } else {
                stop.push(lease.job);
            }
        }
        if let Some(agent) = self.agents.get_mut(name) {
            agent.last_seen_ms = now_ms;
            agent.online = true;
            drain_began = draining && !agent.self_draining;
            agent.self_draining = draining;
            for (index, free) in free_vram {
                if let Some(g) = agent.caps.gpus.iter_mut().find(|g| g.index == *index) {
                    let free = (*free).min(g.total_vram_mib);
                    capacity_grew |= free > g.free_vram_mib;
                    g.free_vram_mib = free;
                }
            }
        }
        HeartbeatOutcome { stop, reregister: false, capacity_grew, drain_began }
    }

    /// Leases the most urgent ready job that fits the agent now, if any; nothing to a draining agent.
    /// `token` is the fresh lease token the shell drew for this lease (used only if a job is leased).
    pub fn on_lease_request(
        &mut self,
        name: &AgentName,
        token: LeaseToken,
        now_ms: u64,
    ) -> Result<Option<(Lease, Effects)>, Rejection> {
        let agent = self.agents.get(name).ok_or_else(|| Rejection::UnknownAgent(name.clone()))?;
        if !agent.registered {
            // Known from before a restart: a lease granted now could cross the registration the
            // agent is sending, which would then report it missing and requeue a running job.
            return Err(Rejection::UnknownAgent(name.clone()));
        }
        if agent.is_draining() || agent.running.len() >= agent.caps.max_jobs as usize {
            return Ok(None);
        }
        let promised = self.promised_vram(name);
        let mut chosen = None;
        for &(prio, seq, id) in &self.queue {
            let Some(job) = self.jobs.get(&id) else { continue };
            if job.stage.runs_on_coordinator() || !self.deps_done(job) {
                continue;
            }
            if let Some(gpu) = fit_now(&job.requires, &agent.caps, &promised) {
                chosen = Some(((prio, seq, id), gpu));
                break;
            }
        }
        let Some((key, gpu)) = chosen else { return Ok(None) };
        self.queue.remove(&key);
        let id = key.2;
        let ttl = self.config.lease_ttl_ms;
        let Some(job) = self.jobs.get_mut(&id) else { return Ok(None) };
        job.state = JobState::Leased;
        job.epoch = Epoch(job.epoch.0 + 1);
        job.token = Some(token);
        job.attempt += 1;
        job.agent = Some(name.clone());
        job.gpu = gpu;
        job.lease_expires_ms = now_ms + ttl;
        let lease = Lease { job: id, epoch: job.epoch, token };
        let run = job.run;
        if let Some(a) = self.agents.get_mut(name) {
            a.running.insert(id);
        }
        let mut effects = Effects::default();
        self.snapshot(id, &mut effects);
        self.refresh_run(run, &mut effects);
        Ok(Some((lease, effects)))
    }

    /// Checks that a report carries the current lease of an active job, with the token issued for
    /// it, from its holder. `caller` is the agent the request identified itself as (its credential's
    /// agent, or the name it sent); `None` when the shared token was used without a name, so only
    /// the token proves who holds the lease.
    pub fn check_lease(&self, lease: Lease, caller: Option<&AgentName>) -> Result<(RunId, Stage), Rejection> {
        let job = self.jobs.get(&lease.job).ok_or(Rejection::UnknownJob(lease.job))?;
        if job.stage.runs_on_coordinator() {
            return Err(Rejection::UnknownJob(lease.job));
        }
        if job.epoch != lease.epoch {
            return Err(Rejection::StaleEpoch { job: lease.job, given: lease.epoch, current: job.epoch });
        }
        if !job.state.is_leased() {
            return Err(Rejection::NotLeased { job: lease.job, state: job.state });
        }
        if job.token != Some(lease.token) {
            return Err(Rejection::WrongToken { job: lease.job, epoch: lease.epoch });
        }
        if let Some(caller) = caller
            && job.agent.as_ref() != Some(caller)
        {
            let holder = job.agent.as_ref().map(ToString::to_string).unwrap_or_default();
            return Err(Rejection::NotHolder { job: lease.job, holder, caller: caller.clone() });
        }
        Ok((job.run, job.stage))
    }

    pub fn on_job_started(
        &mut self,
        lease: Lease,
        caller: Option<&AgentName>,
        now_ms: u64,
    ) -> Result<Effects, Rejection> {
        self.check_lease(lease, caller)?;
        let mut effects = Effects::default();
        if let Some(job) = self.jobs.get_mut(&lease.job) {
            job.lease_expires_ms = now_ms + self.config.lease_ttl_ms;
            if job.state == JobState::Leased {
                job.state = JobState::Running;
                self.snapshot(lease.job, &mut effects);
            }
        }
        Ok(effects)
    }

    /// Completes a job. Its dependents become ready, or are cancelled when it failed.
    pub fn on_job_completed(
        &mut self,
        lease: Lease,
        caller: Option<&AgentName>,
        success: bool,
        error: &str,
    ) -> Result<Effects, Rejection> {
        let (run, _) = self.check_lease(lease, caller)?;
        let mut effects = Effects::default();
        let (state, outcome) = if success { (JobState::Succeeded, "succeeded") } else { (JobState::Failed, "failed") };
        // The completed lease's token stays with the job: a repeat of this completion (its answer
        // lost in a restart) is recognised by it, and nothing else can use it (the job is not leased).
        self.finish_job(lease.job, state, error, outcome, Some(lease.token), &mut effects);
        if success {
            effects.work_available = true;
        }
        self.refresh_run(run, &mut effects);
        Ok(effects)
    }

    /// Completes a job whose result is the run's verdict and ends it here (a lint whose verdict is
    /// `fail`): the job succeeded, every later stage is cancelled with `reason` before it is
    /// leased, and the run ends `succeeded` (it produced its judgement; the caller stored the
    /// verdict first).
    pub fn on_job_completed_ending_run(
        &mut self,
        lease: Lease,
        caller: Option<&AgentName>,
        reason: &str,
    ) -> Result<Effects, Rejection> {
        let (run, _) = self.check_lease(lease, caller)?;
        let mut effects = Effects::default();
        self.finish_job(lease.job, JobState::Succeeded, "", "succeeded", Some(lease.token), &mut effects);
        let later: Vec<JobId> = self.runs.get(&run).map(|r| r.jobs.clone()).unwrap_or_default();
        for id in later {
            if self.jobs.get(&id).is_some_and(|j| !j.state.is_terminal()) {
                self.finish_job(id, JobState::Cancelled, reason, "cancelled", None, &mut effects);
            }
        }
        self.end_run(run, RunState::Succeeded, String::new(), &mut effects);
        Ok(effects)
    }

    /// Whether a completion the core refuses repeats the one that completed the job: same lease,
    /// token and holder, same outcome. Such a report is answered as delivered and changes nothing.
    pub fn repeats_completion(&self, lease: Lease, caller: Option<&AgentName>, success: bool) -> bool {
        self.jobs.get(&lease.job).is_some_and(|j| {
            is_repeat_completion(
                CompletedLease { state: j.state, epoch: j.epoch, token: j.token, agent: j.agent.as_ref() },
                lease,
                caller,
                success,
            )
        })
    }

    /// Expires leases whose TTL passed (requeue, or fail after `max_attempts`) and marks silent agents
    /// offline.
    pub fn on_tick(&mut self, now_ms: u64) -> Effects {
        let mut effects = Effects::default();
        let expired: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.state.is_leased() && !j.stage.runs_on_coordinator() && j.lease_expires_ms <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let agent = self.jobs.get(&id).and_then(|j| j.agent.clone()).map(|a| a.to_string()).unwrap_or_default();
            self.lose_job(id, &format!("lease expired on agent {agent}"), &mut effects);
        }
        let ttl = self.config.lease_ttl_ms;
        for agent in self.agents.values_mut() {
            if agent.online && agent.last_seen_ms + ttl <= now_ms {
                agent.online = false;
            }
        }
        effects
    }

    /// A leased job whose agent is gone: requeue it, or fail it with the attempts' history.
    fn lose_job(&mut self, id: JobId, why: &str, effects: &mut Effects) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        if !job.state.is_leased() {
            return;
        }
        let agent = job.agent.take();
        job.token = None;
        job.history.push(AttemptRecord {
            attempt: job.attempt,
            agent: agent.as_ref().map(ToString::to_string).unwrap_or_default(),
            outcome: why.to_owned(),
            released: false,
        });
        if let Some(a) = agent.as_ref().and_then(|a| self.agents.get_mut(a)) {
            a.running.remove(&id);
        }
        let Some(job) = self.jobs.get_mut(&id) else { return };
        let run = job.run;
        let counted = job.counted_attempts();
        if counted >= self.config.max_attempts {
            let attempts: Vec<String> =
                job.history.iter().map(|h| format!("attempt {} on {}: {}", h.attempt, h.agent, h.outcome)).collect();
            let error = format!("agent lost after {counted} attempts ({})", attempts.join("; "));
            job.state = JobState::Failed;
            job.gpu = None;
            job.error = error;
            self.snapshot(id, effects);
            self.refresh_run(run, effects);
        } else {
            job.state = JobState::Queued;
            job.gpu = None;
            let key = self.runs.get(&run).map(|r| (r.priority, r.seq, id));
            if let Some(key) = key {
                self.queue.insert(key);
            }
            effects.work_available = true;
            self.snapshot(id, effects);
            self.refresh_run(run, effects);
        }
    }

    /// Ends a job in `state`. `token`: the lease token the finished job keeps (the completing
    /// lease's, so a repeated completion is recognised), or none.
    fn finish_job(
        &mut self,
        id: JobId,
        state: JobState,
        error: &str,
        outcome: &str,
        token: Option<LeaseToken>,
        effects: &mut Effects,
    ) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        if job.state == JobState::Queued {
            let key = self.runs.get(&job.run).map(|r| (r.priority, r.seq, id));
            if let Some(key) = key {
                self.queue.remove(&key);
            }
        }
        let Some(job) = self.jobs.get_mut(&id) else { return };
        if job.state.is_leased() {
            job.history.push(AttemptRecord {
                attempt: job.attempt,
                agent: job.agent.as_ref().map(ToString::to_string).unwrap_or_default(),
                outcome: outcome.to_owned(),
                released: false,
            });
        }
        job.state = state;
        job.token = token;
        job.error = error.to_owned();
        if let Some(agent) = job.agent.clone()
            && let Some(a) = self.agents.get_mut(&agent)
        {
            a.running.remove(&id);
        }
        self.snapshot(id, effects);
    }

    /// Recomputes a run's state from its jobs; cascades failure to unfinished jobs; drops ended runs.
    fn refresh_run(&mut self, run_id: RunId, effects: &mut Effects) {
        let Some(run) = self.runs.get(&run_id) else { return };
        let job_ids = run.jobs.clone();
        let states: Vec<(JobId, JobState, String, Stage)> = job_ids
            .iter()
            .filter_map(|id| self.jobs.get(id).map(|j| (*id, j.state, j.error.clone(), j.stage)))
            .collect();
        if let Some((_, _, err, stage)) = states.iter().find(|s| s.1 == JobState::Failed) {
            let reason = format!("skipped: stage {} failed", stage.as_str());
            let error = format!("stage {} failed: {err}", stage.as_str());
            for (id, state, _, _) in &states {
                if !state.is_terminal() {
                    self.finish_job(*id, JobState::Cancelled, &reason, "cancelled", None, effects);
                }
            }
            return self.end_run(run_id, RunState::Failed, error, effects);
        }
        let new_state = if states.iter().all(|s| s.1 == JobState::Succeeded) {
            RunState::Succeeded
        } else if states.iter().all(|s| s.1.is_terminal()) {
            let reason = states.iter().find(|s| s.1 == JobState::Cancelled).map(|s| s.2.clone()).unwrap_or_default();
            return self.end_run(run_id, RunState::Cancelled, reason, effects);
        } else if states.iter().any(|s| s.1 != JobState::Queued) {
            RunState::Running
        } else {
            RunState::Queued
        };
        if new_state.is_terminal() {
            return self.end_run(run_id, new_state, String::new(), effects);
        }
        if let Some(run) = self.runs.get_mut(&run_id)
            && run.state != new_state
        {
            run.state = new_state;
            effects.runs.insert(run_id, RunUpdate { state: new_state, error: String::new() });
        }
    }

    fn end_run(&mut self, run_id: RunId, state: RunState, error: String, effects: &mut Effects) {
        if let Some(run) = self.runs.remove(&run_id) {
            for id in run.jobs {
                self.jobs.remove(&id);
                self.queue.remove(&(run.priority, run.seq, id));
            }
        }
        effects.runs.insert(run_id, RunUpdate { state, error });
    }

    fn owns(&self, agent: &AgentName, lease: Lease) -> bool {
        self.jobs.get(&lease.job).is_some_and(|j| {
            j.epoch == lease.epoch
                && j.state.is_leased()
                && j.token == Some(lease.token)
                && j.agent.as_ref() == Some(agent)
        })
    }

    fn attach(&mut self, agent: &AgentName, job: JobId, now_ms: u64) {
        if let Some(j) = self.jobs.get_mut(&job) {
            j.lease_expires_ms = now_ms + self.config.lease_ttl_ms;
        }
        if let Some(a) = self.agents.get_mut(agent) {
            a.running.insert(job);
        }
    }

    fn deps_done(&self, job: &Job) -> bool {
        // Dependencies that already left the core belong to an ended run; this job would be gone too.
        job.depends_on.iter().all(|d| self.jobs.get(d).is_some_and(|j| j.state == JobState::Succeeded))
    }

    fn promised_vram(&self, agent: &AgentName) -> Vec<u64> {
        let Some(a) = self.agents.get(agent) else { return Vec::new() };
        let mut promised = vec![0; a.caps.gpus.len()];
        for id in &a.running {
            let Some(job) = self.jobs.get(id) else { continue };
            if let Some(pos) = job.gpu.and_then(|g| a.caps.gpus.iter().position(|x| x.index == g)) {
                promised[pos] += job.requires.vram_mib;
            }
        }
        promised
    }

    #[cfg(test)]
    pub fn promised_vram_for_test(&self, agent: &AgentName) -> Vec<u64> {
        self.promised_vram(agent)
    }

    fn snapshot(&self, id: JobId, effects: &mut Effects) {
        let Some(j) = self.jobs.get(&id) else { return };
        effects.jobs.insert(
            id,
            JobSnapshot {
                id,
                run: j.run,
                state: j.state,
                epoch: j.epoch,
                token: j.token,
                attempt: j.attempt,
                agent: j.agent.clone(),
                gpu: j.gpu,
                error: j.error.clone(),
                history: j.history.clone(),
            },
        );
    }
}

/// How a finished job was completed, as the core or the store remembers it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CompletedLease<'a> {
    pub state: JobState,
    pub epoch: Epoch,
    pub token: Option<LeaseToken>,
    pub agent: Option<&'a AgentName>,
}

/// A completion repeats the one that ended the job when it carries that lease (epoch and token),
/// comes from its holder (when the caller is known) and reports the same outcome.
pub(crate) fn is_repeat_completion(
    done: CompletedLease<'_>,
    lease: Lease,
    caller: Option<&AgentName>,
    success: bool,
) -> bool {
    let outcome = if success { JobState::Succeeded } else { JobState::Failed };
    done.state == outcome
        && done.epoch == lease.epoch
        && done.token == Some(lease.token)
        && caller.is_none_or(|c| done.agent == Some(c))
}
