//! The `github_notices` table: check runs to show on pull request heads that have no run.

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use super::corrupt;
use crate::store::{GithubNoticeRecord, NewGithubNotice, NoticeId, StoreError};

const INSERT: &str = "INSERT INTO github_notices (repo, pr, sha, experiment, kind, notice_json, status, \
     next_attempt_ms, created_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?) RETURNING id";
const GET: &str = "SELECT id, repo, pr, sha, experiment, kind, notice_json, status, delivery_json, last_error, \
     attempts, next_attempt_ms, created_ms, updated_ms FROM github_notices WHERE id = ?";
const UPDATE: &str = "UPDATE github_notices SET status = ?, delivery_json = ?, last_error = ?, attempts = ?, \
     next_attempt_ms = ?, updated_ms = ? WHERE id = ?";
const DUE: &str = "SELECT id FROM github_notices WHERE status = 'pending' AND next_attempt_ms <= ? \
     ORDER BY next_attempt_ms, id LIMIT ?";
const OUTDATED: &str = "SELECT EXISTS (SELECT 1 FROM github_notices WHERE repo = ?1 AND pr = ?2 \
     AND experiment = ?3 AND id > ?4) OR EXISTS (SELECT 1 FROM runs WHERE repo = ?1 AND pr = ?2 \
     AND experiment = ?3 AND created_ms >= ?5)";

pub(super) async fn insert(pool: &SqlitePool, notice: &NewGithubNotice) -> Result<NoticeId, StoreError> {
    let row = sqlx::query(INSERT)
        .bind(&notice.repo)
        .bind(notice.pr as i64)
        .bind(&notice.sha)
        .bind(&notice.experiment)
        .bind(&notice.kind)
        .bind(&notice.notice_json)
        .bind(notice.created_ms)
        .bind(notice.created_ms)
        .bind(notice.created_ms)
        .fetch_one(pool)
        .await?;
    Ok(NoticeId(row.try_get(0)?))
}

pub(super) async fn get(pool: &SqlitePool, id: NoticeId) -> Result<Option<GithubNoticeRecord>, StoreError> {
    let row = sqlx::query(GET).bind(id.0).fetch_optional(pool).await?;
    row.as_ref().map(record_from_row).transpose()
}

pub(super) async fn update(pool: &SqlitePool, record: &GithubNoticeRecord) -> Result<(), StoreError> {
    sqlx::query(UPDATE)
        .bind(&record.status)
        .bind(&record.delivery_json)
        .bind(&record.last_error)
        .bind(i64::from(record.attempts))
        .bind(record.next_attempt_ms)
        .bind(record.updated_ms)
        .bind(record.id.0)
        .execute(pool)
        .await?;
    Ok(())
}

pub(super) async fn due(pool: &SqlitePool, now_ms: i64, limit: u32) -> Result<Vec<NoticeId>, StoreError> {
    let rows = sqlx::query(DUE).bind(now_ms).bind(i64::from(limit)).fetch_all(pool).await?;
    rows.iter().map(|r| Ok(NoticeId(r.try_get("id")?))).collect()
}

pub(super) async fn outdated(pool: &SqlitePool, record: &GithubNoticeRecord) -> Result<bool, StoreError> {
    let n = &record.notice;
    let row = sqlx::query(OUTDATED)
        .bind(&n.repo)
        .bind(n.pr as i64)
        .bind(&n.experiment)
        .bind(record.id.0)
        .bind(n.created_ms)
        .fetch_one(pool)
        .await?;
    Ok(row.try_get::<bool, _>(0)?)
}

fn record_from_row(row: &SqliteRow) -> Result<GithubNoticeRecord, StoreError> {
    let attempts: i64 = row.try_get("attempts")?;
    let pr: i64 = row.try_get("pr")?;
    Ok(GithubNoticeRecord {
        id: NoticeId(row.try_get("id")?),
        notice: NewGithubNotice {
            repo: row.try_get("repo")?,
            pr: u64::try_from(pr).map_err(|e| corrupt("github_notices", e))?,
            sha: row.try_get("sha")?,
            experiment: row.try_get("experiment")?,
            kind: row.try_get("kind")?,
            notice_json: row.try_get("notice_json")?,
            created_ms: row.try_get("created_ms")?,
        },
        status: row.try_get("status")?,
        delivery_json: row.try_get("delivery_json")?,
        last_error: row.try_get("last_error")?,
        attempts: u32::try_from(attempts).map_err(|e| corrupt("github_notices", e))?,
        next_attempt_ms: row.try_get("next_attempt_ms")?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

#[cfg(test)]
mod tests {
    use phasegate_proto::domain::{Priority, RunState, Trigger};

    use super::super::SqliteStore;
    use crate::store::{NewGithubNotice, NewRunRecord, Store};

    fn notice(pr: u64, created_ms: i64) -> NewGithubNotice {
        NewGithubNotice {
            repo: "o/r".into(),
            pr,
            sha: "0123abcd".into(),
            experiment: "exp".into(),
            kind: "start_failed".into(),
            notice_json: r#"{"kind":"start_failed","file":null,"error":"x"}"#.into(),
            created_ms,
        }
    }

    #[tokio::test]
    async fn notices_round_trip_come_due_and_are_outdated_by_newer_notices_and_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).await.unwrap();
        let a = store.insert_github_notice(&notice(7, 100)).await.unwrap();
        let b = store.insert_github_notice(&notice(8, 200)).await.unwrap();
        assert_eq!(store.due_github_notices(150, 10).await.unwrap(), [a]);
        assert_eq!(store.due_github_notices(200, 10).await.unwrap(), [a, b]);

        let mut record = store.github_notice(a).await.unwrap().unwrap();
        assert_eq!((record.notice.clone(), record.status.as_str(), record.attempts), (notice(7, 100), "pending", 0));
        assert!(!store.github_notice_outdated(&record).await.unwrap(), "PR 8 is another pull request");
        record.status = "given_up".into();
        record.last_error = "http 422".into();
        record.attempts = 1;
        record.next_attempt_ms = None;
        store.update_github_notice(&record).await.unwrap();
        assert_eq!(store.github_notice(a).await.unwrap().unwrap(), record);
        assert_eq!(store.due_github_notices(1_000, 10).await.unwrap(), [b]);

        // A newer notice of PR 7, or a run of PR 7 created since, outdates it.
        let c = store.insert_github_notice(&notice(7, 300)).await.unwrap();
        assert!(store.github_notice_outdated(&record).await.unwrap());
        let newest = store.github_notice(c).await.unwrap().unwrap();
        assert!(!store.github_notice_outdated(&newest).await.unwrap());
        let run = NewRunRecord {
            experiment: "exp".into(),
            phase: "10".into(),
            description: String::new(),
            priority: Priority::Pr,
            spec_toml: String::new(),
            spec_path: "phase.toml".into(),
            bundle_sha256: String::new(),
            trigger: Trigger { pr: Some(7), sha: "0123abcd".into(), branch: "b".into(), repo: "o/r".into() },
            created_ms: 300,
            state: RunState::Queued,
            error: String::new(),
            jobs: vec![],
        };
        store.insert_run(&run).await.unwrap();
        assert!(store.github_notice_outdated(&newest).await.unwrap());
        assert!(store.github_notice(crate::store::NoticeId(99)).await.unwrap().is_none());
    }
}
