//! GitHub for the coordinator: which runs are reported, the persisted delivery state and its retry
//! loop, the webhook endpoint, and turning a repository tarball into a run's source bundle.
//!
//! `phasegate-github` owns GitHub's vocabulary (the reporter's decisions, the sink, webhook
//! signatures and decisions); this module owns storage and scheduling around it. The verdict and the
//! report are stored by the gate stage before anything here runs, so a GitHub outage never loses a
//! verdict: delivery is retried with backoff until it succeeds or is given up, and a given-up
//! delivery is visible on the run (`github_delivery` in `phasegate show --json`).

mod config;
mod delivery;
mod service;
mod source;
mod webhook;

pub use config::{ConfigFileError, load_config};
pub use delivery::{DeliveryPolicy, RedeliverError, RedeliveryOutcome, redeliver};
pub use phasegate_github::GithubConfig;
pub(crate) use service::GithubService;
pub(crate) use webhook::router;

/// GitHub settings of a running coordinator: the `[github]` config and how patiently deliveries
/// are retried.
#[derive(Debug, Clone)]
pub struct GithubSetup {
    pub config: GithubConfig,
    pub retry: DeliveryPolicy,
}

#[cfg(test)]
mod tests;
