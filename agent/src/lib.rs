//! phasegate agent: what runs on each GPU (or CPU) box.
//!
//! This crate owns the agent's local work: measuring the host's capabilities ([`caps`]), running a
//! job's command with streamed output, timeout and cancellation ([`runner`]), reading training
//! metrics ([`metrics`]), finding metrics files and artifacts ([`collect`]) and packing/unpacking
//! source bundles ([`bundle`]), and the gRPC client loop that registers, heartbeats, leases jobs and
//! reports them ([`run`]). Lint jobs check the run's datasets before any GPU work ([`lint_job`]). Eval jobs generate with `phasegate-eval` and score jobs score with
//! `phasegate-score` (and, when the spec asks for it, an LLM judge run through `phasegate-eval`);
//! this crate only wires them to files, artifacts and events. It does not own the wire protocol or
//! scheduling decisions.

pub mod bundle;
pub mod caps;
mod client;
pub mod collect;
mod eval_job;
mod events;
mod job;
mod job_dirs;
mod judge;
mod lifeline;
pub mod lint_job;
pub mod metrics;
mod proctree;
mod retry;
pub mod runner;
mod score_job;

pub use client::{AgentConfig, AgentError, StopRequest, run, run_until};
/// The default of [`AgentConfig::drain_timeout`] (`phasegate agent --drain-timeout`).
pub const DEFAULT_DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);
pub use job_dirs::DEFAULT_KEEP_JOB_DIRS;
pub use score_job::rules_scores_file;

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
