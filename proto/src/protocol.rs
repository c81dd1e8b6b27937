//! The agent protocol version, exchanged at registration.
//!
//! Bump [`PROTOCOL_VERSION`] when an agent built for the old contract would misbehave against the
//! new one (version 2 added lease tokens: an older agent cannot prove it holds its leases).

/// The protocol this build speaks. Version 1 is every agent that sent no version.
pub const PROTOCOL_VERSION: u32 = 2;

/// The protocols this build accepts from its peer.
pub const SUPPORTED_PROTOCOLS: &[u32] = &[PROTOCOL_VERSION];

/// A peer speaks a protocol this build does not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{peer_role} protocol {peer} is not supported by {own_role} protocol {own} (supported: {})", supported_list())]
pub struct ProtocolMismatch {
    pub peer_role: &'static str,
    pub peer: u32,
    pub own_role: &'static str,
    pub own: u32,
}

fn supported_list() -> String {
    SUPPORTED_PROTOCOLS.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

/// The version a wire field carries: 0 (not sent) is protocol 1.
pub fn from_wire(raw: u32) -> u32 {
    raw.max(1)
}

/// Checks the peer's version (`raw`, as received) against what this build supports.
pub fn check(peer_role: &'static str, raw: u32, own_role: &'static str) -> Result<(), ProtocolMismatch> {
    let peer = from_wire(raw);
    if SUPPORTED_PROTOCOLS.contains(&peer) {
        Ok(())
    } else {
        Err(ProtocolMismatch { peer_role, peer, own_role, own: PROTOCOL_VERSION })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_without_a_version_is_protocol_1_and_refused() {
        let err = check("agent", 0, "coordinator").unwrap_err();
        assert_eq!(err.to_string(), "agent protocol 1 is not supported by coordinator protocol 2 (supported: 2)");
        assert!(check("agent", PROTOCOL_VERSION, "coordinator").is_ok());
    }
}
