//! What a core event changed, for the shell to persist.

use std::collections::BTreeMap;

use phasegate_proto::domain::{AgentName, Epoch, JobId, JobState, LeaseToken, RunId, RunState};

/// One attempt of a job, kept in the job's history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct AttemptRecord {
    pub attempt: u32,
    pub agent: String,
    pub outcome: String,
    /// The agent gave the job back unfinished (a drain): the attempt does not count against
    /// `max_attempts`. Absent in rows written before releases existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub released: bool,
}

/// The durable part of a job after a change.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JobSnapshot {
    pub id: JobId,
    pub run: RunId,
    pub state: JobState,
    pub epoch: Epoch,
    /// The lease token, stored with the lease so a restarted coordinator still knows its holder.
    pub token: Option<LeaseToken>,
    pub attempt: u32,
    pub agent: Option<AgentName>,
    pub gpu: Option<u32>,
    pub error: String,
    pub history: Vec<AttemptRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunUpdate {
    pub state: RunState,
    pub error: String,
}

/// Everything one event changed. Maps keep only the latest snapshot of each row.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Effects {
    pub jobs: BTreeMap<JobId, JobSnapshot>,
    pub runs: BTreeMap<RunId, RunUpdate>,
    /// True when a job became ready to lease, so waiting agents should look again.
    pub work_available: bool,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty() && self.runs.is_empty()
    }

    pub fn merge(&mut self, other: Effects) {
        self.jobs.extend(other.jobs);
        self.runs.extend(other.runs);
        self.work_available |= other.work_available;
    }
}
