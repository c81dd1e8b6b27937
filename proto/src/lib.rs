//! The phasegate wire contract and its one conversion into domain types.
//!
//! `pb` is the code generated from `proto/phasegate/v1/phasegate.proto`. `domain` holds the validated
//! types the coordinator, agent and CLI work with; `spec` parses the TOML phase spec. Conversions
//! from wire to domain happen here and nowhere else, returning errors that name the field.
//! This crate owns no I/O beyond reading a spec file.

pub mod client;
pub mod domain;
mod lease_token;
pub mod protocol;
pub mod redact;
pub mod spec;

pub use protocol::PROTOCOL_VERSION;

/// Generated protobuf and gRPC code (package `phasegate.v1`).
pub mod pb {
    tonic::include_proto!("phasegate.v1");
}

/// Largest gRPC message accepted or sent, on both sides.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Size of one artifact chunk on the wire.
pub const CHUNK_BYTES: usize = 256 * 1024;
