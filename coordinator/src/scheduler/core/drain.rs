//! Draining agents and jobs given back: an operator's drain, and releases by a draining agent.

use phasegate_proto::domain::{AgentName, JobState, Lease};

use super::{Core, Effects, Rejection};
use crate::scheduler::AttemptRecord;

impl Core {
    /// Drains an agent (`drained_ms`: since when; the shell stored it) or undrains it (`None`).
    /// A drained agent is leased nothing new; its running jobs go on. Undraining makes work
    /// available to it again.
    pub fn on_agent_drained(&mut self, name: &AgentName, drained_ms: Option<u64>) -> Result<Effects, Rejection> {
        let agent = self.agents.get_mut(name).ok_or_else(|| Rejection::UnknownAgent(name.clone()))?;
        let undrained = agent.drained_ms.is_some() && drained_ms.is_none();
        agent.drained_ms = drained_ms;
        Ok(Effects { work_available: undrained, ..Effects::default() })
    }

    /// Whether the agent process itself is draining: its waiting lease requests end at once (it
    /// sends no more), while an operator's drain only makes them wait empty-handed.
    pub fn is_self_draining(&self, name: &AgentName) -> bool {
        self.agents.get(name).is_some_and(|a| a.self_draining)
    }

    /// The holder gives a leased job back unfinished: it is queued again at once, and this attempt
    /// does not count against `max_attempts`. Fenced like a completion. The job keeps the released
    /// lease's token so a repeat of this release is recognised ([`Core::repeats_release`]).
    pub fn on_job_released(
        &mut self,
        lease: Lease,
        caller: Option<&AgentName>,
        reason: &str,
    ) -> Result<Effects, Rejection> {
        let (run, _) = self.check_lease(lease, caller)?;
        let key = self.runs.get(&run).map(|r| (r.priority, r.seq, lease.job));
        let Some(job) = self.jobs.get_mut(&lease.job) else { return Err(Rejection::UnknownJob(lease.job)) };
        let agent = job.agent.take();
        let holder = agent.as_ref().map(ToString::to_string).unwrap_or_default();
        job.history.push(AttemptRecord {
            attempt: job.attempt,
            agent: holder,
            outcome: format!("released: {reason}"),
            released: true,
        });
        job.state = JobState::Queued;
        job.gpu = None;
        if let Some(a) = agent.as_ref().and_then(|a| self.agents.get_mut(a)) {
            a.running.remove(&lease.job);
        }
        if let Some(key) = key {
            self.queue.insert(key);
        }
        let mut effects = Effects { work_available: true, ..Effects::default() };
        self.snapshot(lease.job, &mut effects);
        self.refresh_run(run, &mut effects);
        Ok(effects)
    }

    /// Whether a release the core refuses repeats the one that gave the job back (its answer
    /// lost): the job is still queued at that epoch with that lease's token, and the caller (when
    /// known) is the agent that released it. Such a repeat is acknowledged and changes nothing.
    pub fn repeats_release(&self, lease: Lease, caller: Option<&AgentName>) -> bool {
        self.jobs.get(&lease.job).is_some_and(|j| {
            let last = j.history.last();
            j.state == JobState::Queued
                && j.epoch == lease.epoch
                && j.token == Some(lease.token)
                && last.is_some_and(|h| h.released && h.attempt == j.attempt)
                && caller.is_none_or(|c| last.is_some_and(|h| h.agent == c.as_str()))
        })
    }
}
