//! The `phases` table (the gate's history) and the verdict columns of `runs`.

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use phasegate_proto::domain::RunId;

use super::corrupt;
use crate::store::{PhaseRecord, StoreError, VerdictRecord};

const UPSERT: &str = "INSERT INTO phases (experiment, label, ordinal, accepted, run_id, phase_json, created_ms) \
     VALUES (?, ?, ?, ?, ?, ?, ?) \
     ON CONFLICT (experiment, label) DO UPDATE SET ordinal = excluded.ordinal, accepted = excluded.accepted, \
     run_id = excluded.run_id, phase_json = excluded.phase_json, created_ms = excluded.created_ms";
const OF_EXPERIMENT: &str = "SELECT p.accepted, p.run_id, p.phase_json, COALESCE(r.verdict, '') AS verdict, \
     r.override_by, r.override_reason \
     FROM phases p LEFT JOIN runs r ON r.id = p.run_id WHERE p.experiment = ? ORDER BY p.ordinal, p.label";
const OF_RUN: &str = "SELECT p.accepted, p.run_id, p.phase_json, COALESCE(r.verdict, '') AS verdict, \
     r.override_by, r.override_reason \
     FROM phases p LEFT JOIN runs r ON r.id = p.run_id WHERE p.run_id = ? ORDER BY p.id DESC LIMIT 1";
const ACCEPT: &str = "UPDATE phases SET accepted = 1 WHERE experiment = ? AND label = ?";
const SET_VERDICT: &str = "UPDATE runs SET verdict = ?, report = ?, evaluation_json = ? WHERE id = ?";

pub(super) async fn upsert(
    pool: &SqlitePool,
    phase: &gate_rules::Phase,
    run: Option<RunId>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let json = serde_json::to_string(phase).map_err(|e| corrupt("phases", e))?;
    sqlx::query(UPSERT)
        .bind(&phase.experiment)
        .bind(&phase.label)
        .bind(phase.ordinal as i64)
        .bind(phase.accepted)
        .bind(run.map(|r| r.0 as i64))
        .bind(json)
        .bind(now_ms)
        .execute(pool)
        .await?;
    Ok(())
}

pub(super) async fn of_experiment(pool: &SqlitePool, experiment: &str) -> Result<Vec<PhaseRecord>, StoreError> {
    let rows = sqlx::query(OF_EXPERIMENT).bind(experiment).fetch_all(pool).await?;
    rows.iter().map(record_from_row).collect()
}

pub(super) async fn of_run(pool: &SqlitePool, run: RunId) -> Result<Option<PhaseRecord>, StoreError> {
    let row = sqlx::query(OF_RUN).bind(run.0 as i64).fetch_optional(pool).await?;
    row.as_ref().map(record_from_row).transpose()
}

pub(super) async fn accept(pool: &SqlitePool, experiment: &str, label: &str) -> Result<bool, StoreError> {
    let done = sqlx::query(ACCEPT).bind(experiment).bind(label).execute(pool).await?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn set_verdict(pool: &SqlitePool, run: RunId, verdict: &VerdictRecord) -> Result<(), StoreError> {
    let done = sqlx::query(SET_VERDICT)
        .bind(&verdict.verdict)
        .bind(&verdict.report)
        .bind(&verdict.evaluation_json)
        .bind(run.0 as i64)
        .execute(pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NoRun(run));
    }
    Ok(())
}

fn record_from_row(row: &SqliteRow) -> Result<PhaseRecord, StoreError> {
    let json: String = row.try_get("phase_json")?;
    let mut phase: gate_rules::Phase = serde_json::from_str(&json).map_err(|e| corrupt("phases", e))?;
    phase.accepted = row.try_get("accepted")?;
    let overridden = match row.try_get::<Option<String>, _>("override_by")? {
        Some(by) => Some((by, row.try_get::<Option<String>, _>("override_reason")?.unwrap_or_default())),
        None => None,
    };
    Ok(PhaseRecord { phase, run_id: row.try_get("run_id")?, verdict: row.try_get("verdict")?, overridden })
}

#[cfg(test)]
mod tests {
    use super::super::SqliteStore;
    use crate::store::{Store, VerdictRecord};
    use phasegate_proto::domain::RunId;

    fn phase(label: &str, ordinal: u64, accepted: bool) -> gate_rules::Phase {
        let mut p = gate_rules::Phase::new("exp", label, ordinal);
        p.accepted = accepted;
        p
    }

    #[tokio::test]
    async fn phases_upsert_order_and_accept() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).await.unwrap();
        store.upsert_phase(&phase("phase10", 10, false), None, 1).await.unwrap();
        store.upsert_phase(&phase("phase9", 9, true), None, 1).await.unwrap();
        store.upsert_phase(&phase("other", 1, true), None, 1).await.unwrap();
        let labels: Vec<_> = store.phases("exp").await.unwrap().into_iter().map(|r| r.phase.label).collect();
        assert_eq!(labels, ["other", "phase9", "phase10"]);
        assert!(store.accept_phase("exp", "phase10").await.unwrap());
        assert!(!store.accept_phase("exp", "phase11").await.unwrap());
        let all = store.phases("exp").await.unwrap();
        assert!(all.iter().all(|r| r.phase.accepted));
        // Re-importing replaces the record, acceptance included.
        store.upsert_phase(&phase("phase10", 10, false), None, 2).await.unwrap();
        let p10 = store.phases("exp").await.unwrap().into_iter().find(|r| r.phase.label == "phase10").unwrap();
        assert!(!p10.phase.accepted);
        assert!(store.phases("nothing").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn set_verdict_on_unknown_run_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).await.unwrap();
        let v = VerdictRecord { verdict: "pass".into(), report: "r".into(), evaluation_json: "{}".into() };
        assert!(store.set_verdict(RunId(7), &v).await.is_err());
        assert!(store.phase_of_run(RunId(7)).await.unwrap().is_none());
    }
}
