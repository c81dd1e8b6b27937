//! phasegate on GitHub: the `[github]` and `[[experiment]]` configuration, the reporter that turns a
//! verdict into a check run, one living PR comment, a commit-status fallback and nightly regression
//! issues, and the pure webhook side (signature check, event parsing, the decision to run).
//!
//! It owns GitHub's vocabulary and nothing of the coordinator: it does not store verdicts, schedule
//! runs, or serve HTTP. Decisions are pure functions returning values ([`reporter::decide_verdict`],
//! [`webhook::decide`]); every effect goes through the small [`GithubSink`] trait, implemented over
//! octocrab by [`OctocrabSink`] and by the recording [`FakeSink`] for tests.

pub mod config;
mod fake;
mod octocrab_sink;
pub mod reporter;
mod secret;
mod sink;
mod types;
pub mod webhook;

pub use config::{CommentPolicy, ConfigError, Credentials, ExperimentConfig, GithubConfig, InconclusivePolicy};
pub use fake::{FakeSink, SinkCall};
pub use octocrab_sink::{OctocrabSink, RetryPolicy};
pub use reporter::{
    Action, Delivery, DeliveryError, EndedRun, Notice, Override, Policy, PrState, Reporter, RunEnd, Target,
    VerdictReport,
};
pub use secret::Secret;
pub use sink::{Conclusion, GithubSink, SinkError, StatusState};
pub use types::{CheckRunId, CommentId, CommitSha, IdError, IssueNumber, PrNumber, RepoName};
