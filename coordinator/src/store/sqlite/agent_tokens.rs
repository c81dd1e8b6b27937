//! The `agent_tokens` table: per-agent credentials, stored as the SHA-256 of their secret.

use sqlx::{Row, SqlitePool};

use crate::store::{AgentTokenRecord, StoreError};

pub(super) async fn insert(
    pool: &SqlitePool,
    agent: &str,
    secret_sha256: &str,
    now_ms: i64,
) -> Result<i64, StoreError> {
    let row =
        sqlx::query("INSERT INTO agent_tokens (agent_name, secret_sha256, created_ms) VALUES (?, ?, ?) RETURNING id")
            .bind(agent)
            .bind(secret_sha256)
            .bind(now_ms)
            .fetch_one(pool)
            .await?;
    Ok(row.try_get("id")?)
}

pub(super) async fn all(pool: &SqlitePool) -> Result<Vec<AgentTokenRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, agent_name, secret_sha256, created_ms, last_used_ms, revoked_ms FROM agent_tokens ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AgentTokenRecord {
                id: r.try_get("id")?,
                agent_name: r.try_get("agent_name")?,
                secret_sha256: r.try_get("secret_sha256")?,
                created_ms: r.try_get("created_ms")?,
                last_used_ms: r.try_get("last_used_ms")?,
                revoked_ms: r.try_get("revoked_ms")?,
            })
        })
        .collect()
}

pub(super) async fn revoke(pool: &SqlitePool, ids: &[i64], now_ms: i64) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    for id in ids {
        sqlx::query("UPDATE agent_tokens SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL")
            .bind(now_ms)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn touch(pool: &SqlitePool, used: &[(i64, i64)]) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    for (id, at) in used {
        sqlx::query("UPDATE agent_tokens SET last_used_ms = MAX(COALESCE(last_used_ms, 0), ?) WHERE id = ?")
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
