//! Jobs the coordinator runs itself (the gate): never leased to agents. The shell asks which are
//! ready, starts them (queued → running, so each runs once), does the I/O outside the core, and
//! reports back. A coordinator restart loses its own running jobs, so restored ones are queued
//! again (see `on_run_submitted`).

use phasegate_proto::domain::{JobId, JobState, RunId};

use super::{Core, Rejection};
use crate::scheduler::effects::Effects;

impl Core {
    /// Queued coordinator jobs whose dependencies all succeeded, in leasing order.
    pub fn ready_coordinator_jobs(&self) -> Vec<(RunId, JobId)> {
        self.queue
            .iter()
            .filter_map(|&(_, _, id)| self.jobs.get(&id).map(|j| (id, j)))
            .filter(|(_, j)| j.stage.runs_on_coordinator() && self.deps_done(j))
            .map(|(id, j)| (j.run, id))
            .collect()
    }

    /// The shell starts a ready coordinator job: it leaves the queue and becomes running.
    pub fn on_coordinator_job_started(&mut self, id: JobId) -> Result<Effects, Rejection> {
        let job = self.jobs.get(&id).ok_or(Rejection::UnknownJob(id))?;
        if !job.stage.runs_on_coordinator() || job.state != JobState::Queued || !self.deps_done(job) {
            return Err(Rejection::NotReady { job: id, state: job.state });
        }
        let run = job.run;
        if let Some(key) = self.runs.get(&run).map(|r| (r.priority, r.seq, id)) {
            self.queue.remove(&key);
        }
        let mut effects = Effects::default();
        if let Some(job) = self.jobs.get_mut(&id) {
            job.state = JobState::Running;
            job.attempt += 1;
        }
        self.snapshot(id, &mut effects);
        self.refresh_run(run, &mut effects);
        Ok(effects)
    }

    /// The shell finished a coordinator job. `success` says whether the job could run (a gate that
    /// rendered a FAIL verdict succeeded); a failure fails the run like any stage.
    pub fn on_coordinator_job_done(&mut self, id: JobId, success: bool, error: &str) -> Result<Effects, Rejection> {
        let job = self.jobs.get(&id).ok_or(Rejection::UnknownJob(id))?;
        if !job.stage.runs_on_coordinator() || job.state != JobState::Running {
            return Err(Rejection::NotReady { job: id, state: job.state });
        }
        let run = job.run;
        let mut effects = Effects::default();
        let (state, outcome) = if success { (JobState::Succeeded, "succeeded") } else { (JobState::Failed, "failed") };
        self.finish_job(id, state, error, outcome, None, &mut effects);
        if success {
            effects.work_available = true;
        }
        self.refresh_run(run, &mut effects);
        Ok(effects)
    }
}
