//! Per-agent credentials: a 256-bit random secret per credential, bound to one agent name.
//!
//! The store keeps only the SHA-256 of each secret. The agent service's interceptor is synchronous,
//! so the coordinator keeps the table in memory (loaded at start, changed with the store) and
//! records uses there; the ticker writes "last used" times back in batches. Looking a secret up by
//! its digest needs no constant-time comparison: the digest of a guess tells nothing about the
//! secret.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use tonic::Status;

use phasegate_proto::domain::AgentName;
use phasegate_proto::pb;

use crate::shell::{Shared, now_ms, store_status};
use crate::store::{AgentTokenRecord, Store};

#[derive(Debug, Clone)]
struct Entry {
    id: i64,
    agent: AgentName,
    revoked: bool,
}

/// What a presented secret is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    Valid { id: i64, agent: AgentName },
    Revoked { id: i64, agent: AgentName },
    Unknown,
}

#[derive(Debug, Default)]
pub(crate) struct Credentials {
    by_digest: RwLock<HashMap<String, Entry>>,
    /// Uses not yet written to the store: credential id → last use.
    used: Mutex<HashMap<i64, i64>>,
}

/// The hex SHA-256 of a secret, as stored.
pub(crate) fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.trim().as_bytes()))
}

/// A fresh 256-bit secret from the CSPRNG, hex.
fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Credentials {
    pub fn load(records: &[AgentTokenRecord]) -> Self {
        let table = Self::default();
        for r in records {
            table.insert(r);
        }
        table
    }

    fn insert(&self, r: &AgentTokenRecord) {
        // A row whose name no longer parses can never authenticate anyone.
        let Ok(agent) = AgentName::parse("agent_name", &r.agent_name) else { return };
        if let Ok(mut map) = self.by_digest.write() {
            map.insert(r.secret_sha256.clone(), Entry { id: r.id, agent, revoked: r.revoked_ms.is_some() });
        }
    }

    fn revoke(&self, ids: &[i64]) {
        if let Ok(mut map) = self.by_digest.write() {
            for e in map.values_mut().filter(|e| ids.contains(&e.id)) {
                e.revoked = true;
            }
        }
    }

    /// Resolves a presented secret and, when valid, records its use at `now_ms`.
    pub fn resolve(&self, secret: &str, now_ms: i64) -> Lookup {
        let entry = self.by_digest.read().ok().and_then(|m| m.get(&digest(secret)).cloned());
        match entry {
            None => Lookup::Unknown,
            Some(e) if e.revoked => Lookup::Revoked { id: e.id, agent: e.agent },
            Some(e) => {
                if let Ok(mut used) = self.used.lock() {
                    used.insert(e.id, now_ms);
                }
                Lookup::Valid { id: e.id, agent: e.agent }
            }
        }
    }

    fn take_used(&self) -> Vec<(i64, i64)> {
        self.used.lock().map(|mut u| u.drain().collect()).unwrap_or_default()
    }
}

fn to_pb(r: &AgentTokenRecord) -> pb::AgentToken {
    pb::AgentToken {
        id: r.id as u64,
        agent_name: r.agent_name.clone(),
        created_ms: r.created_ms,
        last_used_ms: r.last_used_ms.unwrap_or(0),
        revoked_ms: r.revoked_ms.unwrap_or(0),
    }
}

impl<S: Store> Shared<S> {
    /// Creates a credential for `agent`; returns it with its secret (shown once, never stored).
    pub async fn create_agent_token(&self, agent: &AgentName) -> Result<(pb::AgentToken, String), Status> {
        let secret = new_secret();
        let sha = digest(&secret);
        let now = now_ms() as i64;
        let id = self.store.insert_agent_token(agent.as_str(), &sha, now).await.map_err(store_status)?;
        let record = AgentTokenRecord {
            id,
            agent_name: agent.to_string(),
            secret_sha256: sha,
            created_ms: now,
            last_used_ms: None,
            revoked_ms: None,
        };
        self.credentials.insert(&record);
        tracing::info!(agent = %agent, id, "agent credential created");
        Ok((to_pb(&record), secret))
    }

    /// Every credential, never a secret; "last used" as of now.
    pub async fn agent_tokens(&self) -> Result<Vec<pb::AgentToken>, Status> {
        self.flush_credential_use().await?;
        let records = self.store.agent_tokens().await.map_err(store_status)?;
        Ok(records.iter().map(to_pb).collect())
    }

    /// Revokes the credential numbered `name_or_id`, or every unrevoked credential of the agent so
    /// named. Refused agents learn it at their next call.
    pub async fn revoke_agent_token(&self, name_or_id: &str) -> Result<Vec<pb::AgentToken>, Status> {
        let records = self.store.agent_tokens().await.map_err(store_status)?;
        let id: Option<i64> = name_or_id.parse().ok();
        let chosen: Vec<&AgentTokenRecord> = records
            .iter()
            .filter(|r| r.revoked_ms.is_none())
            .filter(|r| Some(r.id) == id || r.agent_name == name_or_id)
            .collect();
        if chosen.is_empty() {
            return Err(Status::not_found(format!(
                "no unrevoked agent credential has id or agent name {}",
                phasegate_proto::redact::shown(name_or_id)
            )));
        }
        let ids: Vec<i64> = chosen.iter().map(|r| r.id).collect();
        let now = now_ms() as i64;
        self.store.revoke_agent_tokens(&ids, now).await.map_err(store_status)?;
        self.credentials.revoke(&ids);
        tracing::info!(ids = ?ids, "agent credentials revoked");
        Ok(chosen.into_iter().map(|r| pb::AgentToken { revoked_ms: now, ..to_pb(r) }).collect())
    }

    /// Writes the uses recorded since the last flush.
    pub async fn flush_credential_use(&self) -> Result<(), Status> {
        let used = self.credentials.take_used();
        if used.is_empty() {
            return Ok(());
        }
        self.store.touch_agent_tokens(&used).await.map_err(store_status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: i64, agent: &str, secret: &str, revoked: bool) -> AgentTokenRecord {
        AgentTokenRecord {
            id,
            agent_name: agent.into(),
            secret_sha256: digest(secret),
            created_ms: 1,
            last_used_ms: None,
            revoked_ms: revoked.then_some(2),
        }
    }

    #[test]
    fn resolves_by_digest_and_records_use() {
        let table = Credentials::load(&[record(1, "gpu-1", "s1", false), record(2, "gpu-2", "s2", true)]);
        let gpu1 = AgentName::parse("n", "gpu-1").unwrap();
        assert_eq!(table.resolve("s1", 10), Lookup::Valid { id: 1, agent: gpu1 });
        assert!(matches!(table.resolve("s2", 11), Lookup::Revoked { id: 2, .. }));
        assert_eq!(table.resolve("nope", 12), Lookup::Unknown);
        assert_eq!(table.take_used(), vec![(1, 10)], "only valid uses are recorded");
        table.revoke(&[1]);
        assert!(matches!(table.resolve("s1", 13), Lookup::Revoked { id: 1, .. }));
    }

    #[test]
    fn secrets_are_256_bit_and_distinct() {
        let (a, b) = (new_secret(), new_secret());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_ne!(digest(&a), a, "only the digest is stored");
    }
}
