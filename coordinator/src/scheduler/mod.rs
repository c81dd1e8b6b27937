//! The scheduling core: synchronous, no I/O, no async runtime, time passed in as `now_ms`.
//!
//! Every event handler (`on_*`) mutates the in-memory [`Core`] and returns [`Effects`]: the job and
//! run rows that changed, which the async shell must make durable before it acknowledges anything.
//! The shell never decides; the core never touches the store.

mod core;
mod effects;
mod placement;

#[cfg(test)]
mod tests;

pub(crate) use self::core::{
    AgentStatus, CompletedLease, Core, CoreConfig, HeartbeatOutcome, NewJob, NewRun, Rejection, is_repeat_completion,
    superseded_by,
};
pub(crate) use self::effects::{AttemptRecord, Effects};
pub(crate) use self::placement::unplaceable;
