//! The `github_deliveries` table: what has been delivered to GitHub for each run.

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use phasegate_proto::domain::RunId;

use super::corrupt;
use crate::store::{GithubDeliveryRecord, StoreError};

const GET: &str = "SELECT run_id, kind, stage, status, delivery_json, last_error, attempts, next_attempt_ms, \
     updated_ms FROM github_deliveries WHERE run_id = ?";
const PUT: &str = "INSERT INTO github_deliveries (run_id, kind, stage, status, delivery_json, last_error, attempts, \
     next_attempt_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
     ON CONFLICT (run_id) DO UPDATE SET kind = excluded.kind, stage = excluded.stage, status = excluded.status, \
     delivery_json = excluded.delivery_json, last_error = excluded.last_error, attempts = excluded.attempts, \
     next_attempt_ms = excluded.next_attempt_ms, updated_ms = excluded.updated_ms";
const DUE: &str = "SELECT run_id FROM github_deliveries WHERE status = 'pending' AND next_attempt_ms <= ? \
     ORDER BY next_attempt_ms, run_id LIMIT ?";
const ENDS_NOT_STARTED: &str = "SELECT d.run_id FROM github_deliveries d JOIN runs r ON r.id = d.run_id \
     WHERE (d.stage = 'submitted' AND (r.verdict != '' OR r.state NOT IN ('queued', 'running'))) \
     OR (d.stage = 'ended' AND r.verdict != '') ORDER BY d.run_id LIMIT ?";
const LATEST_VERDICT_OF_PR: &str = "SELECT id FROM runs WHERE repo = ? AND pr = ? AND experiment = ? \
     AND verdict != '' ORDER BY id DESC LIMIT 1";

pub(super) async fn get(pool: &SqlitePool, run: RunId) -> Result<Option<GithubDeliveryRecord>, StoreError> {
    let row = sqlx::query(GET).bind(run.0 as i64).fetch_optional(pool).await?;
    row.as_ref().map(record_from_row).transpose()
}

pub(super) async fn put(pool: &SqlitePool, record: &GithubDeliveryRecord) -> Result<(), StoreError> {
    sqlx::query(PUT)
        .bind(record.run_id.0 as i64)
        .bind(&record.kind)
        .bind(&record.stage)
        .bind(&record.status)
        .bind(&record.delivery_json)
        .bind(&record.last_error)
        .bind(i64::from(record.attempts))
        .bind(record.next_attempt_ms)
        .bind(record.updated_ms)
        .execute(pool)
        .await?;
    Ok(())
}

pub(super) async fn due(pool: &SqlitePool, now_ms: i64, limit: u32) -> Result<Vec<RunId>, StoreError> {
    let rows = sqlx::query(DUE).bind(now_ms).bind(i64::from(limit)).fetch_all(pool).await?;
    ids(&rows, "run_id")
}

pub(super) async fn ends_not_started(pool: &SqlitePool, limit: u32) -> Result<Vec<RunId>, StoreError> {
    let rows = sqlx::query(ENDS_NOT_STARTED).bind(i64::from(limit)).fetch_all(pool).await?;
    ids(&rows, "run_id")
}

pub(super) async fn latest_verdict_of_pr(
    pool: &SqlitePool,
    repo: &str,
    pr: u64,
    experiment: &str,
) -> Result<Option<RunId>, StoreError> {
    let row =
        sqlx::query(LATEST_VERDICT_OF_PR).bind(repo).bind(pr as i64).bind(experiment).fetch_optional(pool).await?;
    Ok(ids(row.as_slice(), "id")?.into_iter().next())
}

fn ids(rows: &[SqliteRow], column: &str) -> Result<Vec<RunId>, StoreError> {
    rows.iter().map(|r| Ok(RunId(r.try_get::<i64, _>(column)? as u64))).collect()
}

fn record_from_row(row: &SqliteRow) -> Result<GithubDeliveryRecord, StoreError> {
    let attempts: i64 = row.try_get("attempts")?;
    Ok(GithubDeliveryRecord {
        run_id: RunId(row.try_get::<i64, _>("run_id")? as u64),
        kind: row.try_get("kind")?,
        stage: row.try_get("stage")?,
        status: row.try_get("status")?,
        delivery_json: row.try_get("delivery_json")?,
        last_error: row.try_get("last_error")?,
        attempts: u32::try_from(attempts).map_err(|e| corrupt("github_deliveries", e))?,
        next_attempt_ms: row.try_get("next_attempt_ms")?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

#[cfg(test)]
mod tests {
    use phasegate_proto::domain::{Priority, RunId, RunState, Trigger};

    use super::super::SqliteStore;
    use crate::store::{GithubDeliveryRecord, NewRunRecord, Store, VerdictRecord};

    fn record(run: RunId, status: &str, next: Option<i64>) -> GithubDeliveryRecord {
        GithubDeliveryRecord {
            run_id: run,
            kind: "pr".into(),
            stage: "submitted".into(),
            status: status.into(),
            delivery_json: "{}".into(),
            last_error: String::new(),
            attempts: 1,
            next_attempt_ms: next,
            updated_ms: 1,
        }
    }

    async fn run(store: &SqliteStore, pr: u64) -> RunId {
        run_in(store, pr, RunState::Queued).await
    }

    async fn run_in(store: &SqliteStore, pr: u64, state: RunState) -> RunId {
        let record = NewRunRecord {
            experiment: "exp".into(),
            phase: "10".into(),
            description: String::new(),
            priority: Priority::Pr,
            spec_toml: String::new(),
            spec_path: "phase.toml".into(),
            bundle_sha256: String::new(),
            trigger: Trigger { pr: Some(pr), sha: "0123abcd".into(), branch: "b".into(), repo: "o/r".into() },
            created_ms: 1,
            state,
            error: String::new(),
            jobs: vec![],
        };
        store.insert_run(&record).await.unwrap().0
    }

    #[tokio::test]
    async fn deliveries_round_trip_and_are_found_when_due() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).await.unwrap();
        let (a, b, c) = (run(&store, 7).await, run(&store, 7).await, run(&store, 8).await);
        assert!(store.github_delivery(a).await.unwrap().is_none());
        store.put_github_delivery(&record(a, "pending", Some(50))).await.unwrap();
        store.put_github_delivery(&record(b, "pending", Some(5))).await.unwrap();
        store.put_github_delivery(&record(c, "delivered", None)).await.unwrap();
        assert_eq!(store.due_github_deliveries(10, 10).await.unwrap(), [b]);
        assert_eq!(store.due_github_deliveries(100, 10).await.unwrap(), [b, a]);
        let mut given_up = record(a, "given_up", None);
        given_up.last_error = "forbidden".into();
        store.put_github_delivery(&given_up).await.unwrap();
        let back = store.github_delivery(a).await.unwrap().unwrap();
        assert_eq!((back.status.as_str(), back.last_error.as_str()), ("given_up", "forbidden"));
        assert!(store.put_github_delivery(&record(RunId(99), "pending", None)).await.is_err(), "needs its run");

        // A verdict on a run whose delivery is still at `submitted` is waiting to be delivered.
        assert!(store.github_ends_not_started(10).await.unwrap().is_empty());
        let v = VerdictRecord { verdict: "fail".into(), report: "r".into(), evaluation_json: "{}".into() };
        store.set_verdict(b, &v).await.unwrap();
        assert_eq!(store.github_ends_not_started(10).await.unwrap(), [b]);
        // So is a run that ended without one, and a verdict that came after the end was delivered.
        let failed = run_in(&store, 9, RunState::Failed).await;
        store.put_github_delivery(&record(failed, "delivered", None)).await.unwrap();
        assert_eq!(store.github_ends_not_started(10).await.unwrap(), [b, failed]);
        let mut ended = record(failed, "delivered", None);
        ended.stage = "ended".into();
        store.put_github_delivery(&ended).await.unwrap();
        assert_eq!(store.github_ends_not_started(10).await.unwrap(), [b]);
        store.set_verdict(failed, &v).await.unwrap();
        assert_eq!(store.github_ends_not_started(10).await.unwrap(), [b, failed]);
        assert_eq!(store.latest_verdict_run("o/r", 7, "exp").await.unwrap(), Some(b));
        assert_eq!(store.latest_verdict_run("o/r", 8, "exp").await.unwrap(), None);
    }
}
