//! Rows as the store reads and writes them.

use phasegate_proto::domain::{Priority, RunId, RunState, Stage, Trigger};
use phasegate_proto::pb;

use crate::scheduler::AttemptRecord;

/// A per-agent credential: its secret is never stored, only the secret's SHA-256 (hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AgentTokenRecord {
    pub id: i64,
    pub agent_name: String,
    pub secret_sha256: String,
    pub created_ms: i64,
    pub last_used_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub(crate) struct NewJobRecord {
    pub stage: Stage,
    /// Indices into the run's job list.
    pub depends_on: Vec<usize>,
    pub requires: pb::Requirements,
    pub work: pb::Assignment,
    /// The digest of the job's inputs (see `stage_cache`); `None`: never cached.
    pub cache_key: Option<String>,
    /// The earlier succeeded job whose results this one reuses: it is inserted succeeded.
    pub cached: Option<JobRecord>,
}

#[derive(Debug, Clone)]
pub(crate) struct NewRunRecord {
    pub experiment: String,
    pub phase: String,
    pub description: String,
    pub priority: Priority,
    pub spec_toml: String,
    pub spec_path: String,
    pub bundle_sha256: String,
    pub trigger: Trigger,
    pub created_ms: i64,
    pub state: RunState,
    pub error: String,
    pub jobs: Vec<NewJobRecord>,
}

#[derive(Debug, Clone)]
pub(crate) struct JobRecord {
    pub id: i64,
    pub run_id: i64,
    pub stage: String,
    pub depends_on: Vec<i64>,
    pub requires: pb::Requirements,
    /// The assignment template: the work of the stage, without lease fields.
    pub work: pb::Assignment,
    pub state: String,
    pub epoch: i64,
    /// The current lease's token (hex); after a completion, the completing lease's (a repeated
    /// completion is recognised by it); `None` otherwise.
    pub lease_token: Option<String>,
    pub attempt: i64,
    pub agent: Option<String>,
    pub gpu_index: Option<i64>,
    pub error: String,
    pub history: Vec<AttemptRecord>,
    pub metrics: Option<pb::JobMetrics>,
    pub result_json: String,
    pub artifacts: Vec<pb::ArtifactRef>,
    /// The job whose results this one reuses, and its run.
    pub cached_from: Option<(i64, i64)>,
}

#[derive(Debug, Clone)]
pub(crate) struct RunRecord {
    pub id: i64,
    pub experiment: String,
    pub phase: String,
    pub description: String,
    pub priority: String,
    pub state: String,
    pub error: String,
    pub trigger: Trigger,
    pub created_ms: i64,
    pub spec_toml: String,
    pub spec_path: String,
    pub bundle_sha256: String,
    pub verdict: String,
    pub report: String,
    pub evaluation_json: String,
    /// When gc removed the run's logs, metric points and artifacts; `None`: they are all kept.
    pub pruned_ms: Option<i64>,
    /// A maintainer merged over the verdict.
    pub overridden: Option<OverrideRecord>,
    pub jobs: Vec<JobRecord>,
}

/// Who merged over a run's verdict, why and when (`phasegate override`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OverrideRecord {
    pub by: String,
    pub reason: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct AgentRecord {
    pub name: String,
    pub capabilities: pb::Capabilities,
    pub registered_ms: i64,
    /// When an operator drained the agent. Read from the store; [`super::Store::upsert_agent`]
    /// keeps the stored value whatever this holds (only `set_agent_draining` changes it).
    pub draining_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub(crate) struct LogRecord {
    pub job_id: i64,
    pub stage: String,
    pub line: pb::LogLine,
}

/// One phase of the gate's history as stored: the phase (its `accepted` flag taken from the
/// column), the run that produced it and that run's verdict, if any.
#[derive(Debug, Clone)]
pub(crate) struct PhaseRecord {
    pub phase: gate_rules::Phase,
    pub run_id: Option<i64>,
    pub verdict: String,
    /// `(by, reason)` when a maintainer merged over that run's verdict.
    pub overridden: Option<(String, String)>,
}

/// What a gate stage decided for a run.
#[derive(Debug, Clone)]
pub(crate) struct VerdictRecord {
    pub verdict: String,
    pub report: String,
    pub evaluation_json: String,
}

/// What has been delivered to GitHub for a run (see the `github_deliveries` migration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GithubDeliveryRecord {
    pub run_id: RunId,
    /// `pr` | `nightly`.
    pub kind: String,
    /// `submitted` | `verdict` | `ended`.
    pub stage: String,
    /// `pending` | `delivered` | `given_up`.
    pub status: String,
    /// `phasegate_github::Delivery` as JSON.
    pub delivery_json: String,
    pub last_error: String,
    pub attempts: u32,
    pub next_attempt_ms: Option<i64>,
    pub updated_ms: i64,
}

/// The id of a row of `github_notices`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct NoticeId(pub i64);

impl std::fmt::Display for NoticeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A notice to show on a pull request head that has no run (see the `github_notices` migration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewGithubNotice {
    pub repo: String,
    pub pr: u64,
    pub sha: String,
    pub experiment: String,
    /// `waiting_for_label` | `start_failed`.
    pub kind: String,
    /// `phasegate_github::Notice` as JSON.
    pub notice_json: String,
    pub created_ms: i64,
}

/// A stored notice and its delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GithubNoticeRecord {
    pub id: NoticeId,
    pub notice: NewGithubNotice,
    /// `pending` | `delivered` | `given_up` | `superseded`.
    pub status: String,
    /// `phasegate_github::Delivery` as JSON.
    pub delivery_json: String,
    pub last_error: String,
    pub attempts: u32,
    pub next_attempt_ms: Option<i64>,
    pub updated_ms: i64,
}

/// What pruning runs removed from the database (or, in a dry run, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PruneOutcome {
    /// The runs pruned, in the order given (a run accepted or pruned since the decision is left out).
    pub runs: Vec<RunId>,
    pub log_lines: u64,
    pub metric_points: u64,
    /// Blobs (sha256, size) no kept run references any more; their rows are gone, their files are
    /// the caller's to delete after the commit.
    pub blobs: Vec<(String, u64)>,
}
