//! Who may take an agent name: a live registration keeps its name against newcomers.

use phasegate_proto::domain::AgentName;

use super::{Core, Rejection};

impl Core {
    /// Whether a registration under `name` may replace the one the core holds. A name whose agent
    /// is live (online, heard from within the lease TTL) is taken: only the same process
    /// (`instance`) or a caller holding that agent's own credential (`own_credential`) may register
    /// under it again. Changes nothing.
    pub fn check_registration(
        &self,
        name: &AgentName,
        instance: &str,
        own_credential: bool,
        now_ms: u64,
    ) -> Result<(), Rejection> {
        let Some(agent) = self.agents.get(name) else { return Ok(()) };
        let live = agent.online && agent.last_seen_ms + self.config.lease_ttl_ms > now_ms;
        let same_process = !instance.is_empty() && agent.instance == instance;
        if !live || same_process || own_credential {
            return Ok(());
        }
        Err(Rejection::NameInUse(name.clone()))
    }

    /// The agent process says it is exiting: it is offline from now on, so the next process may
    /// take its name at once (a `systemctl restart` after a drain). Leases it still holds expire
    /// as a silent agent's would. Returns whether the agent was known.
    pub fn on_agent_left(&mut self, name: &AgentName) -> bool {
        let Some(agent) = self.agents.get_mut(name) else { return false };
        agent.online = false;
        true
    }
}
