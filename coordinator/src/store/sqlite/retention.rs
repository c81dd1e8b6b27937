//! Retention: the rows `phasegate gc` reads to decide, and the pruning of a run's logs, metric
//! points, job artifact rows and unreferenced blob rows (the files go after the commit).

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::AtomicBool;

use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use phasegate_proto::domain::RunId;

use super::{corrupt, finish};
use crate::retention::RunAge;
use crate::store::{PruneOutcome, StoreError};

const AGES: &str = "SELECT id, experiment, state, finished_ms, pruned_ms FROM runs ORDER BY id";
const ACCEPTED: &str = "SELECT DISTINCT run_id FROM phases WHERE accepted = 1 AND run_id IS NOT NULL";
/// Marks a run pruned, unless it is active, accepted (since the decision) or pruned already.
const MARK: &str = "UPDATE runs SET pruned_ms = ? WHERE id = ? AND pruned_ms IS NULL \
     AND state NOT IN ('queued', 'running') \
     AND NOT EXISTS (SELECT 1 FROM phases p WHERE p.run_id = runs.id AND p.accepted = 1) \
     RETURNING bundle_sha256";
const DELETE_LOGS: &str = "DELETE FROM job_logs WHERE job_id IN (SELECT id FROM jobs WHERE run_id = ?)";
const DELETE_POINTS: &str = "DELETE FROM job_metric_points WHERE job_id IN (SELECT id FROM jobs WHERE run_id = ?)";
const DELETE_JOB_ARTIFACTS: &str =
    "DELETE FROM job_artifacts WHERE job_id IN (SELECT id FROM jobs WHERE run_id = ?) RETURNING sha256";
/// Whether a job artifact or a kept run's bundle still names the blob.
const STILL_REFERENCED: &str = "SELECT EXISTS (SELECT 1 FROM job_artifacts WHERE sha256 = ?) \
     OR EXISTS (SELECT 1 FROM runs WHERE bundle_sha256 = ? AND pruned_ms IS NULL)";
const DELETE_BLOB_ROW: &str = "DELETE FROM artifacts WHERE sha256 = ? RETURNING size";
const KNOWN_BLOBS: &str = "SELECT sha256 FROM artifacts UNION SELECT sha256 FROM job_artifacts \
     UNION SELECT bundle_sha256 FROM runs WHERE pruned_ms IS NULL AND bundle_sha256 != ''";

pub(super) async fn ages(pool: &SqlitePool) -> Result<Vec<RunAge>, StoreError> {
    let rows = sqlx::query(AGES).fetch_all(pool).await?;
    rows.iter()
        .map(|r| {
            let state: String = r.try_get("state")?;
            let id: i64 = r.try_get("id")?;
            Ok(RunAge {
                id: RunId(id as u64),
                experiment: r.try_get("experiment")?,
                state: state.parse().map_err(|e| corrupt("runs", format!("run {id}: state: {e}")))?,
                finished_ms: r.try_get("finished_ms")?,
                pruned: r.try_get::<Option<i64>, _>("pruned_ms")?.is_some(),
            })
        })
        .collect()
}

pub(super) async fn accepted(pool: &SqlitePool) -> Result<BTreeSet<RunId>, StoreError> {
    let rows = sqlx::query(ACCEPTED).fetch_all(pool).await?;
    rows.iter().map(|r| Ok(RunId(r.try_get::<i64, _>("run_id")? as u64))).collect()
}

pub(super) async fn known_blobs(pool: &SqlitePool) -> Result<HashSet<String>, StoreError> {
    let rows = sqlx::query(KNOWN_BLOBS).fetch_all(pool).await?;
    rows.iter().map(|r| Ok(r.try_get::<String, _>(0)?)).collect()
}

/// Prunes `runs` in one transaction; commits it when `apply`, else rolls it back (a dry run that
/// counts exactly what the real one would remove).
pub(super) async fn prune(
    pool: &SqlitePool,
    failed_write: &AtomicBool,
    runs: &[RunId],
    now_ms: i64,
    apply: bool,
) -> Result<PruneOutcome, StoreError> {
    let mut tx = pool.begin().await?;
    let outcome = prune_rows(&mut tx, runs, now_ms).await;
    if apply {
        return finish(tx, outcome, failed_write).await;
    }
    if let Err(e) = tx.rollback().await {
        tracing::warn!(error = %e, "rolling back a dry run of gc failed");
    }
    outcome
}

async fn prune_rows(tx: &mut Transaction<'_, Sqlite>, runs: &[RunId], now_ms: i64) -> Result<PruneOutcome, StoreError> {
    let mut out = PruneOutcome::default();
    let mut candidates = BTreeSet::new();
    for run in runs {
        let id = run.0 as i64;
        let Some(row) = sqlx::query(MARK).bind(now_ms).bind(id).fetch_optional(&mut **tx).await? else {
            continue;
        };
        out.runs.push(*run);
        candidates.insert(row.try_get::<String, _>("bundle_sha256")?);
        out.log_lines += sqlx::query(DELETE_LOGS).bind(id).execute(&mut **tx).await?.rows_affected();
        out.metric_points += sqlx::query(DELETE_POINTS).bind(id).execute(&mut **tx).await?.rows_affected();
        for row in sqlx::query(DELETE_JOB_ARTIFACTS).bind(id).fetch_all(&mut **tx).await? {
            candidates.insert(row.try_get::<String, _>("sha256")?);
        }
    }
    candidates.remove("");
    for sha in candidates {
        let kept: bool = sqlx::query(STILL_REFERENCED).bind(&sha).bind(&sha).fetch_one(&mut **tx).await?.try_get(0)?;
        if kept {
            continue;
        }
        if let Some(row) = sqlx::query(DELETE_BLOB_ROW).bind(&sha).fetch_optional(&mut **tx).await? {
            out.blobs.push((sha, row.try_get::<i64, _>("size")? as u64));
        }
    }
    Ok(out)
}
