//! The embedded SQLite store (WAL, one file in the data dir).
//!
//! `synchronous = NORMAL` in WAL mode makes every commit durable against a killed process (the WAL
//! is written before `COMMIT` returns); only an OS crash or power loss can drop the last commits.
//!
//! A failed write (a full or failing disk) must not leave a pooled connection inside a transaction:
//! it would hold SQLite's write lock ("database is locked" for every later writer, even after space
//! is back) and read an old snapshot. Every transaction here is rolled back, awaited, on its error
//! path ([`finish`]), and a connection returning to the pool is checked and closed, not reused, when
//! either sqlx or SQLite itself still sees a transaction ([`left_in_transaction`]).

use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prost::Message;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection as _, Row, Sqlite, SqlitePool, Transaction};

use phasegate_proto::domain::{JobId, RunId, Trigger};
use phasegate_proto::pb;

use super::{
    AgentRecord, AgentTokenRecord, GithubDeliveryRecord, GithubNoticeRecord, JobRecord, JobResult, LogRecord,
    NewGithubNotice, NewRunRecord, NoticeId, OverrideRecord, PhaseRecord, PruneOutcome, RunRecord, Store, StoreError,
    VerdictRecord,
};
use crate::scheduler::Effects;

mod agent_tokens;
mod github;
mod github_notices;
mod phases;
mod retention;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Set by the first failed transaction; from then on the pool's release check also asks SQLite.
    failed_write: Arc<AtomicBool>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs the embedded migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open { path: path.display().to_string(), source };
        private_files(path).map_err(|e| open_err(sqlx::Error::Io(e)))?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let failed_write = Arc::new(AtomicBool::new(false));
        let check = failed_write.clone();
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .after_release(move |conn, _| {
                let ask_sqlite = check.load(Ordering::Relaxed);
                Box::pin(async move {
                    let stuck = left_in_transaction(conn, ask_sqlite).await;
                    if stuck {
                        tracing::warn!("closing a database connection left inside a transaction");
                    }
                    Ok(!stuck)
                })
            })
            .connect_with(options)
            .await
            .map_err(open_err)?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool, failed_write })
    }

    /// One event's changes in their own transaction (tests drive the store directly).
    #[cfg(test)]
    pub(crate) async fn apply(&self, effects: &Effects, result: &JobResult, now_ms: i64) -> Result<(), StoreError> {
        self.apply_batch(&[(effects, result)], now_ms).await
    }

    async fn jobs_of(&self, run_ids: &[i64]) -> Result<Vec<JobRecord>, StoreError> {
        let mut out = Vec::new();
        for run in run_ids {
            let rows = sqlx::query(
                "SELECT id, run_id, stage, depends_on, requires, work, state, epoch, lease_token, attempt, agent, \
                 gpu_index, error, history, metrics, result_json, cached_from, \
                 (SELECT c.run_id FROM jobs c WHERE c.id = jobs.cached_from) AS cached_from_run \
                 FROM jobs WHERE run_id = ? ORDER BY id",
            )
            .bind(run)
            .fetch_all(&self.pool)
            .await?;
            for row in rows {
                let mut job = job_from_row(&row)?;
                job.artifacts = self.job_artifacts(job.id).await?;
                out.push(job);
            }
        }
        Ok(out)
    }

    async fn job_artifacts(&self, job: i64) -> Result<Vec<pb::ArtifactRef>, StoreError> {
        let rows = sqlx::query("SELECT name, sha256, size FROM job_artifacts WHERE job_id = ? ORDER BY name")
            .bind(job)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(pb::ArtifactRef {
                    name: r.try_get("name")?,
                    sha256: r.try_get("sha256")?,
                    size: r.try_get::<i64, _>("size")? as u64,
                })
            })
            .collect()
    }

    async fn attach_jobs(&self, mut runs: Vec<RunRecord>) -> Result<Vec<RunRecord>, StoreError> {
        let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
        let mut jobs = self.jobs_of(&ids).await?;
        for run in &mut runs {
            let (mine, rest): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|j| j.run_id == run.id);
            run.jobs = mine;
            jobs = rest;
        }
        Ok(runs)
    }
}

/// The database file and its WAL and shared-memory files, created or tightened to mode 0600 before
/// SQLite opens them (SQLite gives the WAL and shm files the database file's mode).
fn private_files(db: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(db)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let path = Path::new(&name);
        match std::fs::metadata(path) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether a connection is still inside a transaction, by sqlx's count or, with `ask_sqlite`, by
/// SQLite's own state (`BEGIN` fails inside a transaction). A failed check counts as stuck: the
/// connection is closed. Asking SQLite costs two statements per release, so it starts only once a
/// write has failed; until then sqlx's count and SQLite's agree.
async fn left_in_transaction(conn: &mut SqliteConnection, ask_sqlite: bool) -> bool {
    if conn.is_in_transaction() {
        return true;
    }
    if !ask_sqlite {
        return false;
    }
    match sqlx::raw_sql("BEGIN").execute(&mut *conn).await {
        Ok(_) => sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await.is_err(),
        Err(_) => true,
    }
}

/// Ends a transaction: commits after `Ok`; after `Err`, rolls back and waits for it, so the
/// connection goes back to the pool outside any transaction. (A failed `COMMIT` drops the
/// transaction, whose rollback runs before the pool's check of the connection.)
async fn finish<T>(
    tx: Transaction<'_, Sqlite>,
    outcome: Result<T, StoreError>,
    failed_write: &AtomicBool,
) -> Result<T, StoreError> {
    match outcome {
        Ok(value) => {
            if let Err(e) = tx.commit().await {
                failed_write.store(true, Ordering::Relaxed);
                return Err(e.into());
            }
            Ok(value)
        }
        Err(e) => {
            failed_write.store(true, Ordering::Relaxed);
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(error = %rollback, "rollback after a failed write failed");
            }
            Err(e)
        }
    }
}

fn corrupt(table: &'static str, detail: impl ToString) -> StoreError {
    StoreError::Corrupt { table, detail: detail.to_string() }
}

fn decode<M: Message + Default>(table: &'static str, bytes: &[u8]) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|e| corrupt(table, e))
}

fn job_from_row(row: &SqliteRow) -> Result<JobRecord, StoreError> {
    let depends: String = row.try_get("depends_on")?;
    let history: String = row.try_get("history")?;
    let metrics: Option<Vec<u8>> = row.try_get("metrics")?;
    Ok(JobRecord {
        id: row.try_get("id")?,
        run_id: row.try_get("run_id")?,
        stage: row.try_get("stage")?,
        depends_on: serde_json::from_str(&depends).map_err(|e| corrupt("jobs", e))?,
        requires: decode("jobs", &row.try_get::<Vec<u8>, _>("requires")?)?,
        work: decode("jobs", &row.try_get::<Vec<u8>, _>("work")?)?,
        state: row.try_get("state")?,
        epoch: row.try_get("epoch")?,
        lease_token: row.try_get("lease_token")?,
        attempt: row.try_get("attempt")?,
        agent: row.try_get("agent")?,
        gpu_index: row.try_get("gpu_index")?,
        error: row.try_get("error")?,
        history: serde_json::from_str(&history).map_err(|e| corrupt("jobs", e))?,
        metrics: metrics.map(|m| decode("jobs", &m)).transpose()?,
        result_json: row.try_get("result_json")?,
        artifacts: Vec::new(),
        cached_from: match (
            row.try_get::<Option<i64>, _>("cached_from")?,
            row.try_get::<Option<i64>, _>("cached_from_run")?,
        ) {
            (Some(job), Some(run)) => Some((job, run)),
            _ => None,
        },
    })
}

fn run_from_row(row: &SqliteRow) -> Result<RunRecord, StoreError> {
    let pr: Option<i64> = row.try_get("pr")?;
    Ok(RunRecord {
        id: row.try_get("id")?,
        experiment: row.try_get("experiment")?,
        phase: row.try_get("phase")?,
        description: row.try_get("description")?,
        priority: row.try_get("priority")?,
        state: row.try_get("state")?,
        error: row.try_get("error")?,
        trigger: Trigger {
            pr: pr.map(|p| p as u64),
            sha: row.try_get("sha")?,
            branch: row.try_get("branch")?,
            repo: row.try_get("repo")?,
        },
        created_ms: row.try_get("created_ms")?,
        spec_toml: row.try_get("spec_toml")?,
        spec_path: row.try_get("spec_path")?,
        bundle_sha256: row.try_get("bundle_sha256")?,
        verdict: row.try_get("verdict")?,
        report: row.try_get("report")?,
        evaluation_json: row.try_get("evaluation_json")?,
        pruned_ms: row.try_get("pruned_ms")?,
        overridden: match (
            row.try_get::<Option<String>, _>("override_by")?,
            row.try_get::<Option<i64>, _>("override_ms")?,
        ) {
            (Some(by), Some(at_ms)) => Some(OverrideRecord {
                by,
                reason: row.try_get::<Option<String>, _>("override_reason")?.unwrap_or_default(),
                at_ms,
            }),
            _ => None,
        },
        jobs: Vec::new(),
    })
}

/// The rows one event changed, written inside the caller's transaction.
async fn write_effects(
    tx: &mut Transaction<'_, Sqlite>,
    effects: &Effects,
    result: &JobResult,
    now_ms: i64,
) -> Result<(), StoreError> {
    for job in effects.jobs.values() {
        let history = serde_json::to_string(&job.history).map_err(|e| corrupt("jobs", e))?;
        sqlx::query(
            "UPDATE jobs SET state = ?, epoch = ?, lease_token = ?, attempt = ?, agent = ?, gpu_index = ?, \
                 error = ?, history = ?, updated_ms = ? WHERE id = ?",
        )
        .bind(job.state.as_str())
        .bind(job.epoch.0 as i64)
        .bind(job.token.map(|t| t.to_hex()))
        .bind(i64::from(job.attempt))
        .bind(job.agent.as_ref().map(|a| a.as_str().to_owned()))
        .bind(job.gpu.map(i64::from))
        .bind(&job.error)
        .bind(history)
        .bind(now_ms)
        .bind(job.id.0 as i64)
        .execute(&mut **tx)
        .await?;
    }
    if let Some(job) = result.job {
        sqlx::query("UPDATE jobs SET metrics = ?, result_json = ?, exit_code = ? WHERE id = ?")
            .bind(result.metrics.as_ref().map(Message::encode_to_vec))
            .bind(&result.result_json)
            .bind(result.exit_code)
            .bind(job.0 as i64)
            .execute(&mut **tx)
            .await?;
        for a in &result.artifacts {
            sqlx::query("INSERT OR REPLACE INTO job_artifacts (job_id, name, sha256, size) VALUES (?, ?, ?, ?)")
                .bind(job.0 as i64)
                .bind(&a.name)
                .bind(&a.sha256)
                .bind(a.size as i64)
                .execute(&mut **tx)
                .await?;
        }
    }
    for (run, update) in &effects.runs {
        sqlx::query("UPDATE runs SET state = ?, error = ?, finished_ms = ? WHERE id = ?")
            .bind(update.state.as_str())
            .bind(&update.error)
            .bind(update.state.is_terminal().then_some(now_ms))
            .bind(run.0 as i64)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// A run's row and its jobs' rows; returns their ids (jobs in the order given).
async fn insert_run_rows(tx: &mut Transaction<'_, Sqlite>, run: &NewRunRecord) -> Result<(i64, Vec<i64>), StoreError> {
    let run_id: i64 = sqlx::query(
        "INSERT INTO runs (experiment, phase, description, priority, state, error, spec_toml, spec_path, \
         bundle_sha256, pr, sha, branch, repo, created_ms, finished_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(&run.experiment)
    .bind(&run.phase)
    .bind(&run.description)
    .bind(run.priority.as_str())
    .bind(run.state.as_str())
    .bind(&run.error)
    .bind(&run.spec_toml)
    .bind(&run.spec_path)
    .bind(&run.bundle_sha256)
    .bind(run.trigger.pr.map(|p| p as i64))
    .bind(&run.trigger.sha)
    .bind(&run.trigger.branch)
    .bind(&run.trigger.repo)
    .bind(run.created_ms)
    .bind(run.state.is_terminal().then_some(run.created_ms))
    .fetch_one(&mut **tx)
    .await?
    .try_get(0)?;
    let job_state = match run.state {
        phasegate_proto::domain::RunState::Failed => "cancelled",
        _ => "queued",
    };
    let mut ids: Vec<i64> = Vec::with_capacity(run.jobs.len());
    for job in &run.jobs {
        let deps: Vec<i64> = job.depends_on.iter().filter_map(|i| ids.get(*i).copied()).collect();
        // A cached job is born succeeded, with its source's results (the source's own source
        // when it was cached too, so a chain always names the job that ran).
        let cached = job.cached.as_ref().filter(|_| job_state == "queued");
        let state = if cached.is_some() { "succeeded" } else { job_state };
        let id: i64 = sqlx::query(
            "INSERT INTO jobs (run_id, stage, depends_on, requires, work, state, error, updated_ms, cache_key, \
             cached_from, metrics, result_json) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(run_id)
        .bind(job.stage.as_str())
        .bind(serde_json::to_string(&deps).map_err(|e| corrupt("jobs", e))?)
        .bind(job.requires.encode_to_vec())
        .bind(job.work.encode_to_vec())
        .bind(state)
        .bind(if job_state == "cancelled" { run.error.as_str() } else { "" })
        .bind(run.created_ms)
        .bind(&job.cache_key)
        .bind(cached.map(|c| c.cached_from.map_or(c.id, |(source, _)| source)))
        .bind(cached.and_then(|c| c.metrics.as_ref()).map(Message::encode_to_vec))
        .bind(cached.map_or("", |c| c.result_json.as_str()))
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
        for a in cached.map(|c| c.artifacts.as_slice()).unwrap_or_default() {
            sqlx::query("INSERT INTO job_artifacts (job_id, name, sha256, size) VALUES (?, ?, ?, ?)")
                .bind(id)
                .bind(&a.name)
                .bind(&a.sha256)
                .bind(a.size as i64)
                .execute(&mut **tx)
                .await?;
        }
        ids.push(id);
    }
    Ok((run_id, ids))
}

async fn append_event_rows(
    tx: &mut Transaction<'_, Sqlite>,
    job: JobId,
    batch_seq: u64,
    lines: &[pb::LogLine],
    metrics: &[pb::MetricPoint],
) -> Result<(), StoreError> {
    for line in lines {
        sqlx::query("INSERT OR IGNORE INTO job_logs (job_id, seq, stream, text, ts_ms) VALUES (?, ?, ?, ?, ?)")
            .bind(job.0 as i64)
            .bind(line.seq as i64)
            .bind(&line.stream)
            .bind(&line.text)
            .bind(line.ts_ms)
            .execute(&mut **tx)
            .await?;
    }
    for (idx, point) in metrics.iter().enumerate() {
        sqlx::query("INSERT OR IGNORE INTO job_metric_points (job_id, batch_seq, idx, point) VALUES (?, ?, ?, ?)")
            .bind(job.0 as i64)
            .bind(batch_seq as i64)
            .bind(idx as i64)
            .bind(point.encode_to_vec())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

impl Store for SqliteStore {
    async fn insert_run(&self, run: &NewRunRecord) -> Result<(RunId, Vec<JobId>), StoreError> {
        let mut tx = self.pool.begin().await?;
        let outcome = insert_run_rows(&mut tx, run).await;
        let (run_id, ids) = finish(tx, outcome, &self.failed_write).await?;
        Ok((RunId(run_id as u64), ids.into_iter().map(|i| JobId(i as u64)).collect()))
    }

    async fn apply_batch(&self, items: &[(&Effects, &JobResult)], now_ms: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut outcome = Ok(());
        for (effects, result) in items {
            outcome = write_effects(&mut tx, effects, result, now_ms).await;
            if outcome.is_err() {
                break;
            }
        }
        finish(tx, outcome, &self.failed_write).await
    }

    async fn append_events(
        &self,
        job: JobId,
        batch_seq: u64,
        lines: &[pb::LogLine],
        metrics: &[pb::MetricPoint],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let outcome = append_event_rows(&mut tx, job, batch_seq, lines, metrics).await;
        finish(tx, outcome, &self.failed_write).await
    }

    async fn record_artifact(&self, sha256: &str, size: u64, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query("INSERT OR IGNORE INTO artifacts (sha256, size, created_ms) VALUES (?, ?, ?)")
            .bind(sha256)
            .bind(size as i64)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn artifact_known(&self, sha256: &str) -> Result<bool, StoreError> {
        let row =
            sqlx::query("SELECT 1 FROM artifacts WHERE sha256 = ?").bind(sha256).fetch_optional(&self.pool).await?;
        Ok(row.is_some())
    }

    async fn upsert_phase(&self, phase: &gate_rules::Phase, run: Option<RunId>, now_ms: i64) -> Result<(), StoreError> {
        phases::upsert(&self.pool, phase, run, now_ms).await
    }

    async fn phases(&self, experiment: &str) -> Result<Vec<PhaseRecord>, StoreError> {
        phases::of_experiment(&self.pool, experiment).await
    }

    async fn phase_of_run(&self, run: RunId) -> Result<Option<PhaseRecord>, StoreError> {
        phases::of_run(&self.pool, run).await
    }

    async fn accept_phase(&self, experiment: &str, label: &str) -> Result<bool, StoreError> {
        phases::accept(&self.pool, experiment, label).await
    }

    async fn set_verdict(&self, run: RunId, verdict: &VerdictRecord) -> Result<(), StoreError> {
        phases::set_verdict(&self.pool, run, verdict).await
    }

    async fn github_delivery(&self, run: RunId) -> Result<Option<GithubDeliveryRecord>, StoreError> {
        github::get(&self.pool, run).await
    }

    async fn put_github_delivery(&self, record: &GithubDeliveryRecord) -> Result<(), StoreError> {
        github::put(&self.pool, record).await
    }

    async fn due_github_deliveries(&self, now_ms: i64, limit: u32) -> Result<Vec<RunId>, StoreError> {
        github::due(&self.pool, now_ms, limit).await
    }

    async fn github_ends_not_started(&self, limit: u32) -> Result<Vec<RunId>, StoreError> {
        github::ends_not_started(&self.pool, limit).await
    }

    async fn insert_github_notice(&self, notice: &NewGithubNotice) -> Result<NoticeId, StoreError> {
        github_notices::insert(&self.pool, notice).await
    }

    async fn github_notice(&self, id: NoticeId) -> Result<Option<GithubNoticeRecord>, StoreError> {
        github_notices::get(&self.pool, id).await
    }

    async fn update_github_notice(&self, record: &GithubNoticeRecord) -> Result<(), StoreError> {
        github_notices::update(&self.pool, record).await
    }

    async fn due_github_notices(&self, now_ms: i64, limit: u32) -> Result<Vec<NoticeId>, StoreError> {
        github_notices::due(&self.pool, now_ms, limit).await
    }

    async fn github_notice_outdated(&self, notice: &GithubNoticeRecord) -> Result<bool, StoreError> {
        github_notices::outdated(&self.pool, notice).await
    }

    async fn latest_verdict_run(&self, repo: &str, pr: u64, experiment: &str) -> Result<Option<RunId>, StoreError> {
        github::latest_verdict_of_pr(&self.pool, repo, pr, experiment).await
    }

    async fn run_ages(&self) -> Result<Vec<crate::retention::RunAge>, StoreError> {
        retention::ages(&self.pool).await
    }

    async fn accepted_runs(&self) -> Result<std::collections::BTreeSet<RunId>, StoreError> {
        retention::accepted(&self.pool).await
    }

    async fn prune_runs(&self, runs: &[RunId], now_ms: i64, apply: bool) -> Result<PruneOutcome, StoreError> {
        retention::prune(&self.pool, &self.failed_write, runs, now_ms, apply).await
    }

    async fn known_blobs(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        retention::known_blobs(&self.pool).await
    }

    async fn upsert_agent(&self, agent: &AgentRecord) -> Result<(), StoreError> {
        // An upsert, not a replace: a replace would drop the row's other columns (the drain).
        sqlx::query(
            "INSERT INTO agents (name, capabilities, registered_ms) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET capabilities = excluded.capabilities, \
             registered_ms = excluded.registered_ms",
        )
        .bind(&agent.name)
        .bind(agent.capabilities.encode_to_vec())
        .bind(agent.registered_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn set_agent_draining(&self, name: &str, draining_ms: Option<i64>) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE agents SET draining_ms = ? WHERE name = ?")
            .bind(draining_ms)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn insert_agent_token(&self, agent: &str, secret_sha256: &str, now_ms: i64) -> Result<i64, StoreError> {
        agent_tokens::insert(&self.pool, agent, secret_sha256, now_ms).await
    }

    async fn agent_tokens(&self) -> Result<Vec<AgentTokenRecord>, StoreError> {
        agent_tokens::all(&self.pool).await
    }

    async fn revoke_agent_tokens(&self, ids: &[i64], now_ms: i64) -> Result<(), StoreError> {
        agent_tokens::revoke(&self.pool, ids, now_ms).await
    }

    async fn touch_agent_tokens(&self, used: &[(i64, i64)]) -> Result<(), StoreError> {
        agent_tokens::touch(&self.pool, used).await
    }

    async fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        let rows = sqlx::query("SELECT name, capabilities, registered_ms, draining_ms FROM agents ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AgentRecord {
                    name: r.try_get("name")?,
                    capabilities: decode("agents", &r.try_get::<Vec<u8>, _>("capabilities")?)?,
                    registered_ms: r.try_get("registered_ms")?,
                    draining_ms: r.try_get("draining_ms")?,
                })
            })
            .collect()
    }

    async fn active_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        const Q: &str = "SELECT id, experiment, phase, description, priority, state, error, spec_toml, spec_path, \
             bundle_sha256, pr, sha, branch, repo, created_ms, verdict, report, evaluation_json, pruned_ms, \
             override_by, override_reason, override_ms \
             FROM runs WHERE state IN ('queued', 'running') ORDER BY id";
        let rows = sqlx::query(Q).fetch_all(&self.pool).await?;
        let runs = rows.iter().map(run_from_row).collect::<Result<Vec<_>, _>>()?;
        self.attach_jobs(runs).await
    }

    async fn run(&self, id: RunId) -> Result<Option<RunRecord>, StoreError> {
        const Q: &str = "SELECT id, experiment, phase, description, priority, state, error, spec_toml, spec_path, \
             bundle_sha256, pr, sha, branch, repo, created_ms, verdict, report, evaluation_json, pruned_ms, \
             override_by, override_reason, override_ms \
             FROM runs WHERE id = ?";
        let Some(row) = sqlx::query(Q).bind(id.0 as i64).fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let runs = self.attach_jobs(vec![run_from_row(&row)?]).await?;
        Ok(runs.into_iter().next())
    }

    async fn runs(&self, limit: u32, experiment: &str) -> Result<Vec<RunRecord>, StoreError> {
        const Q: &str = "SELECT id, experiment, phase, description, priority, state, error, spec_toml, spec_path, \
             bundle_sha256, pr, sha, branch, repo, created_ms, verdict, report, evaluation_json, pruned_ms, \
             override_by, override_reason, override_ms \
             FROM runs WHERE (? = '' OR experiment = ?) ORDER BY id DESC LIMIT ?";
        let rows =
            sqlx::query(Q).bind(experiment).bind(experiment).bind(i64::from(limit)).fetch_all(&self.pool).await?;
        let runs = rows.iter().map(run_from_row).collect::<Result<Vec<_>, _>>()?;
        self.attach_jobs(runs).await
    }

    async fn set_override(&self, run: RunId, record: &OverrideRecord) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let outcome = async {
            let updated = sqlx::query(
                "UPDATE runs SET override_by = ?, override_reason = ?, override_ms = ? WHERE id = ? AND verdict != ''",
            )
            .bind(&record.by)
            .bind(&record.reason)
            .bind(record.at_ms)
            .bind(run.0 as i64)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            // The verdict was delivered without the override: deliver it again (same check run
            // and comment), now with it.
            sqlx::query(
                "UPDATE github_deliveries SET status = 'pending', next_attempt_ms = NULL, attempts = 0 \
                 WHERE run_id = ? AND stage = 'verdict'",
            )
            .bind(run.0 as i64)
            .execute(&mut *tx)
            .await?;
            Ok::<_, StoreError>(updated == 1)
        }
        .await;
        finish(tx, outcome, &self.failed_write).await
    }

    async fn cache_source(&self, key: &str) -> Result<Option<JobRecord>, StoreError> {
        // The newest succeeded job with the key whose run still has its artifacts; its blobs
        // are checked too (a blob another run kept may still have gone with a failed disk).
        let row = sqlx::query(
            "SELECT j.id FROM jobs j JOIN runs r ON r.id = j.run_id \
             WHERE j.cache_key = ? AND j.state = 'succeeded' AND r.pruned_ms IS NULL ORDER BY j.id DESC LIMIT 1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let Some(job) = self.job(JobId(row.try_get::<i64, _>(0)? as u64)).await? else { return Ok(None) };
        for a in &job.artifacts {
            if !self.artifact_known(&a.sha256).await? {
                return Ok(None);
            }
        }
        Ok(Some(job))
    }

    async fn job(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, run_id, stage, depends_on, requires, work, state, epoch, lease_token, attempt, agent, \
                 gpu_index, error, history, metrics, result_json, cached_from, \
                 (SELECT c.run_id FROM jobs c WHERE c.id = jobs.cached_from) AS cached_from_run \
             FROM jobs WHERE id = ?",
        )
        .bind(id.0 as i64)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut job = job_from_row(&row)?;
        job.artifacts = self.job_artifacts(job.id).await?;
        Ok(Some(job))
    }

    async fn logs(&self, run: RunId, after: (i64, i64), limit: u32) -> Result<Vec<LogRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT l.job_id, j.stage, l.seq, l.stream, l.text, l.ts_ms FROM job_logs l JOIN jobs j ON j.id = l.job_id \
             WHERE j.run_id = ? AND (l.job_id > ? OR (l.job_id = ? AND l.seq > ?)) ORDER BY l.job_id, l.seq LIMIT ?",
        )
        .bind(run.0 as i64)
        .bind(after.0)
        .bind(after.0)
        .bind(after.1)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LogRecord {
                    job_id: r.try_get("job_id")?,
                    stage: r.try_get("stage")?,
                    line: pb::LogLine {
                        seq: r.try_get::<i64, _>("seq")? as u64,
                        stream: r.try_get("stream")?,
                        text: r.try_get("text")?,
                        ts_ms: r.try_get("ts_ms")?,
                    },
                })
            })
            .collect()
    }

    async fn last_metric(&self, job: JobId) -> Result<Option<pb::MetricPoint>, StoreError> {
        let row = sqlx::query(
            "SELECT point FROM job_metric_points WHERE job_id = ? ORDER BY batch_seq DESC, idx DESC LIMIT 1",
        )
        .bind(job.0 as i64)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| decode("job_metric_points", &r.try_get::<Vec<u8>, _>("point")?)).transpose()
    }
}

#[cfg(test)]
#[path = "sqlite_tests.rs"]
mod tests;
