//! Retention: which old runs lose their job logs, metric points and artifacts ([`policy`], pure),
//! and the collection that applies it to the store and the artifact files ([`collect`]).
//!
//! Run and job rows, verdicts, reports and phases are never deleted: history stays, and a pruned
//! run says when gc removed what it had.

mod collect;
mod policy;

pub use policy::{DEFAULT_KEEP_RUNS, DEFAULT_OLDER_THAN_MS, RetentionPolicy};
pub(crate) use policy::{RunAge, runs_to_prune};
