//! tonic services: they convert wire types (in `phasegate_proto::domain`) and call the shell.

mod agent;
mod control;
mod convert;
mod rescore;
mod upload;

pub(crate) use agent::AgentApi;
pub(crate) use control::ControlApi;
