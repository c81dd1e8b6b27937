//! GitHub for the coordinator: which runs are reported, the persisted delivery state and its retry
//! loop, the webhook endpoint, and turning a repository tarball into a run's source bundle.
//!
//! `phasegate-github` owns GitHub's vocabulary (the reporter's decisions, the sink, webhook
//! signatures and decisions); this module owns storage and scheduling around it. The verdict and the
//! report are stored by the gate stage before anything here runs, so a GitHub outage never loses a
//! verdict: delivery is retried with backoff until it succeeds or is given up, and a given-up
//! delivery is visible on the run (`github_delivery` in `phasegate show --json`). The same holds
//! for the end of a run without a verdict, and for notices on PR heads that have no run.

mod config;
mod delivery;
mod notices;
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

impl GithubSetup {
    /// The setup `[github]` describes: its `delivery_*` keys give the retry policy.
    pub fn new(config: GithubConfig) -> Self {
        let retry = DeliveryPolicy::from(&config);
        GithubSetup { config, retry }
    }
}

#[cfg(test)]
mod tests;
