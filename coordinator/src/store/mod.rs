//! Durable state behind a small trait: SQLite now, PostgreSQL when several coordinators share state.
//!
//! Contract: every method commits before it returns `Ok`, so the caller may acknowledge what it
//! wrote. A method that writes several rows writes them in one transaction.

mod fault;
mod records;
mod sqlite;

use std::collections::{BTreeSet, HashSet};
use std::future::Future;

pub use fault::StorageFault;
pub(crate) use records::{
    AgentRecord, AgentTokenRecord, GithubDeliveryRecord, GithubNoticeRecord, JobRecord, LogRecord, NewGithubNotice,
    NewJobRecord, NewRunRecord, NoticeId, OverrideRecord, PhaseRecord, PruneOutcome, RunRecord, VerdictRecord,
};
pub use sqlite::SqliteStore;

use crate::retention::RunAge;
use crate::scheduler::Effects;
use phasegate_proto::domain::{JobId, RunId};
use phasegate_proto::pb;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("failed to open the database {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("failed to migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    #[error("run {0} does not exist")]
    NoRun(RunId),
}

impl StoreError {
    /// The storage fault behind this error (full, failing or read-only disk), if that is what it is.
    pub fn fault(&self) -> Option<StorageFault> {
        match self {
            Self::Open { source, .. } | Self::Sql(source) => StorageFault::of_sqlx(source),
            Self::Migrate(
                sqlx::migrate::MigrateError::Execute(source) | sqlx::migrate::MigrateError::ExecuteMigration(source, _),
            ) => StorageFault::of_sqlx(source),
            _ => None,
        }
    }
}

/// What a completed job reported, written together with the state change.
#[derive(Debug, Clone, Default)]
pub(crate) struct JobResult {
    pub job: Option<JobId>,
    pub metrics: Option<pb::JobMetrics>,
    pub result_json: String,
    pub exit_code: Option<i32>,
    pub artifacts: Vec<pb::ArtifactRef>,
}

pub(crate) trait Store: Clone + Send + Sync + 'static {
    /// Inserts a run and its jobs; returns their ids (jobs in the order given).
    fn insert_run(&self, run: &NewRunRecord) -> impl Future<Output = Result<(RunId, Vec<JobId>), StoreError>> + Send;
    /// Writes the job and run rows an event changed, plus an optional job result, atomically.
    /// Writes several events' changes, in order, in one transaction (group commit): all or nothing.
    fn apply_batch(
        &self,
        items: &[(&Effects, &JobResult)],
        now_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Stores log lines and metric points; lines already stored (same job and seq) are ignored.
    fn append_events(
        &self,
        job: JobId,
        batch_seq: u64,
        lines: &[pb::LogLine],
        metrics: &[pb::MetricPoint],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn record_artifact(
        &self,
        sha256: &str,
        size: u64,
        now_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn artifact_known(&self, sha256: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Inserts or updates an agent's capabilities and registration time; its drain is kept.
    fn upsert_agent(&self, agent: &AgentRecord) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Sets (`Some(since)`) or clears an operator's drain of an agent; `false` when no such agent.
    fn set_agent_draining(
        &self,
        name: &str,
        draining_ms: Option<i64>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    fn agents(&self) -> impl Future<Output = Result<Vec<AgentRecord>, StoreError>> + Send;
    /// Stores a new credential of `agent` by its secret's SHA-256; returns its id.
    fn insert_agent_token(
        &self,
        agent: &str,
        secret_sha256: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;
    /// Every credential, revoked ones included, by id.
    fn agent_tokens(&self) -> impl Future<Output = Result<Vec<AgentTokenRecord>, StoreError>> + Send;
    /// Marks credentials revoked (those already revoked keep their first revocation time).
    fn revoke_agent_tokens(&self, ids: &[i64], now_ms: i64) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Records when credentials were last used: `(id, time)`; a time never moves backwards.
    fn touch_agent_tokens(&self, used: &[(i64, i64)]) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Runs that are not finished, with all their jobs: what the scheduler rebuilds itself from.
    fn active_runs(&self) -> impl Future<Output = Result<Vec<RunRecord>, StoreError>> + Send;
    fn run(&self, id: RunId) -> impl Future<Output = Result<Option<RunRecord>, StoreError>> + Send;
    fn runs(&self, limit: u32, experiment: &str) -> impl Future<Output = Result<Vec<RunRecord>, StoreError>> + Send;
    fn job(&self, id: JobId) -> impl Future<Output = Result<Option<JobRecord>, StoreError>> + Send;
    /// Records a maintainer's override of the run's verdict and makes the verdict's GitHub
    /// delivery due again; `false` when the run has no verdict.
    fn set_override(
        &self,
        run: RunId,
        record: &OverrideRecord,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The newest succeeded job whose inputs had this digest and whose artifacts are all still
    /// stored: what a stage with the same key reuses.
    fn cache_source(&self, key: &str) -> impl Future<Output = Result<Option<JobRecord>, StoreError>> + Send;
    /// Log lines of a run after `after` (job id, seq), in order.
    fn logs(
        &self,
        run: RunId,
        after: (i64, i64),
        limit: u32,
    ) -> impl Future<Output = Result<Vec<LogRecord>, StoreError>> + Send;
    /// The latest metric point of a job, for progress displays.
    fn last_metric(&self, job: JobId) -> impl Future<Output = Result<Option<pb::MetricPoint>, StoreError>> + Send;
    /// Inserts or replaces the phase `(experiment, label)`: the newest record of a label wins, its
    /// `accepted` flag included (changed results must be accepted again). `run` links the phase to
    /// the run whose gate stage produced it.
    fn upsert_phase(
        &self,
        phase: &gate_rules::Phase,
        run: Option<RunId>,
        now_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Every phase of an experiment, accepted or not, ordered by `(ordinal, label)`.
    fn phases(&self, experiment: &str) -> impl Future<Output = Result<Vec<PhaseRecord>, StoreError>> + Send;
    /// The phase a run's gate stage stored, if any.
    fn phase_of_run(&self, run: RunId) -> impl Future<Output = Result<Option<PhaseRecord>, StoreError>> + Send;
    /// Marks a phase accepted; `false` when no such phase exists.
    fn accept_phase(&self, experiment: &str, label: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Writes a run's verdict, report and evaluation JSON; [`StoreError::NoRun`] for an unknown run.
    fn set_verdict(&self, run: RunId, verdict: &VerdictRecord) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The GitHub delivery state of a run, if it has one.
    fn github_delivery(
        &self,
        run: RunId,
    ) -> impl Future<Output = Result<Option<GithubDeliveryRecord>, StoreError>> + Send;
    /// Inserts or replaces a run's GitHub delivery state.
    fn put_github_delivery(&self, record: &GithubDeliveryRecord)
    -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Runs whose delivery is `pending` with its next attempt at or before `now_ms`, soonest first.
    fn due_github_deliveries(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<RunId>, StoreError>> + Send;
    /// Runs whose end is not yet being delivered: the delivery is still at the `submitted` stage
    /// though the run has a verdict or is no longer active, or at `ended` though a verdict came.
    fn github_ends_not_started(&self, limit: u32) -> impl Future<Output = Result<Vec<RunId>, StoreError>> + Send;
    /// Stores a notice, pending and due at once; returns its id.
    fn insert_github_notice(
        &self,
        notice: &NewGithubNotice,
    ) -> impl Future<Output = Result<NoticeId, StoreError>> + Send;
    fn github_notice(
        &self,
        id: NoticeId,
    ) -> impl Future<Output = Result<Option<GithubNoticeRecord>, StoreError>> + Send;
    /// Writes a notice's delivery state (status, delivery, error, attempts, next attempt).
    fn update_github_notice(&self, record: &GithubNoticeRecord) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Notices `pending` with their next attempt at or before `now_ms`, soonest first.
    fn due_github_notices(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<NoticeId>, StoreError>> + Send;
    /// Whether a newer notice, or a run created at or after the notice, exists for the same pull
    /// request and experiment: then the notice is outdated and must not be shown.
    fn github_notice_outdated(
        &self,
        notice: &GithubNoticeRecord,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The newest run of `experiment` for pull request `pr` of `repo` that has a verdict.
    fn latest_verdict_run(
        &self,
        repo: &str,
        pr: u64,
        experiment: &str,
    ) -> impl Future<Output = Result<Option<RunId>, StoreError>> + Send;
    /// Every run's id, experiment, state, end time and whether it was pruned (for retention).
    fn run_ages(&self) -> impl Future<Output = Result<Vec<RunAge>, StoreError>> + Send;
    /// The runs of accepted phases: retention never prunes them.
    fn accepted_runs(&self) -> impl Future<Output = Result<BTreeSet<RunId>, StoreError>> + Send;
    /// Removes the job logs, metric points and job artifact rows of `runs`, marks them pruned at
    /// `now_ms`, and removes the rows of blobs no kept run references any more, in one
    /// transaction; a run accepted or pruned since the decision is skipped.
    /// With `apply` false the transaction is rolled back: a dry run with the same figures.
    fn prune_runs(
        &self,
        runs: &[RunId],
        now_ms: i64,
        apply: bool,
    ) -> impl Future<Output = Result<PruneOutcome, StoreError>> + Send;
    /// Every blob digest some table names (artifacts, job artifacts, bundles of runs not pruned).
    fn known_blobs(&self) -> impl Future<Output = Result<HashSet<String>, StoreError>> + Send;
}
