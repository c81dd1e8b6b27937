//! The operations phasegate performs on GitHub, as one small trait with a documented contract.
//!
//! Implementations: [`crate::OctocrabSink`] (GitHub's REST API) and [`crate::FakeSink`] (records
//! calls, for tests). The reporter and the coordinator only ever talk to GitHub through this trait.

use std::future::Future;

use crate::types::{CheckRunId, CommentId, CommitSha, IssueNumber, PrNumber, RepoName};

/// A check run's final conclusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conclusion {
    Success,
    Failure,
    Neutral,
    /// The run ended before the gate decided (cancelled by an operator or superseded by a newer push).
    Cancelled,
}

impl Conclusion {
    pub fn as_str(self) -> &'static str {
        match self {
            Conclusion::Success => "success",
            Conclusion::Failure => "failure",
            Conclusion::Neutral => "neutral",
            Conclusion::Cancelled => "cancelled",
        }
    }
}

/// A commit status state (statuses have no neutral).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusState {
    Pending,
    Success,
    Failure,
    Error,
}

impl StatusState {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusState::Pending => "pending",
            StatusState::Success => "success",
            StatusState::Failure => "failure",
            StatusState::Error => "error",
        }
    }
}

/// Why a GitHub operation failed. Messages never contain credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// 403 without rate-limit signs: the credentials lack a permission (e.g. `checks: write`).
    #[error("failed to {operation} on {repo}: forbidden (403): {message}")]
    Forbidden { operation: &'static str, repo: String, message: String },
    #[error("failed to {operation} on {repo}: not found (404): {message}")]
    NotFound { operation: &'static str, repo: String, message: String },
    /// Any other non-retryable HTTP error (422 validation, 401, ...).
    #[error("failed to {operation} on {repo}: http {status}: {message}")]
    Api { operation: &'static str, repo: String, status: u16, message: String },
    /// Retryable failures (5xx, 429, rate limit, transport) persisted through every attempt.
    #[error("failed to {operation} on {repo}: gave up after {attempts} attempts: {last}")]
    GaveUp { operation: &'static str, repo: String, attempts: u32, last: String },
    /// GitHub answered something this client could not use (unexpected JSON, bad redirect).
    #[error("failed to {operation} on {repo}: unexpected response: {message}")]
    Response { operation: &'static str, repo: String, message: String },
    #[error("failed to set up the GitHub client: {message}")]
    Setup { message: String },
}

impl SinkError {
    /// Whether delivering again later may succeed (the coordinator keeps the delivery pending).
    pub fn is_transient(&self) -> bool {
        matches!(self, SinkError::GaveUp { .. })
    }
}

/// phasegate's operations on GitHub.
///
/// Contract for every implementation:
/// - Each method is one logical operation; retries of transient failures (5xx, 429, rate limits,
///   transport errors) happen inside, bounded, and only a final failure is returned.
/// - `find_*` and `list_*` walk **all** pages before answering.
/// - Create operations are not idempotent: a retried create after a lost response may duplicate
///   (the reporter finds comments by marker and issues by label + title prefix, so those heal).
/// - A 403 that is not a rate limit is returned as [`SinkError::Forbidden`] without retrying; the
///   reporter uses it to fall back from check runs to commit statuses.
/// - Errors never contain the token, private key or webhook secret.
pub trait GithubSink: Send + Sync {
    /// Creates check run `name` on `sha`, status `in_progress`, linking to `details_url`.
    fn create_check_run(
        &self,
        repo: &RepoName,
        sha: &CommitSha,
        name: &str,
        details_url: Option<&str>,
    ) -> impl Future<Output = Result<CheckRunId, SinkError>> + Send;

    /// Completes check run `id` with `conclusion` and output `title` + markdown `summary`.
    fn complete_check_run(
        &self,
        repo: &RepoName,
        id: CheckRunId,
        conclusion: Conclusion,
        title: &str,
        summary: &str,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The first comment on PR `pr` whose body contains `marker`, searching every page.
    fn find_comment_with_marker(
        &self,
        repo: &RepoName,
        pr: PrNumber,
        marker: &str,
    ) -> impl Future<Output = Result<Option<CommentId>, SinkError>> + Send;

    fn create_comment(
        &self,
        repo: &RepoName,
        pr: PrNumber,
        body: &str,
    ) -> impl Future<Output = Result<CommentId, SinkError>> + Send;

    /// Replaces the body of comment `id`.
    fn update_comment(
        &self,
        repo: &RepoName,
        id: CommentId,
        body: &str,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Posts a commit status; a later status with the same `context` supersedes it.
    fn create_status(
        &self,
        repo: &RepoName,
        sha: &CommitSha,
        state: StatusState,
        context: &str,
        description: &str,
        target_url: Option<&str>,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The open issue with `label` whose title starts with `title_prefix` (lowest number if
    /// several), searching every page. Pull requests are never returned.
    fn find_open_issue(
        &self,
        repo: &RepoName,
        label: &str,
        title_prefix: &str,
    ) -> impl Future<Output = Result<Option<IssueNumber>, SinkError>> + Send;

    fn create_issue(
        &self,
        repo: &RepoName,
        title: &str,
        body: &str,
        labels: &[String],
    ) -> impl Future<Output = Result<IssueNumber, SinkError>> + Send;

    fn update_issue_body(
        &self,
        repo: &RepoName,
        issue: IssueNumber,
        body: &str,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    fn comment_on_issue(
        &self,
        repo: &RepoName,
        issue: IssueNumber,
        body: &str,
    ) -> impl Future<Output = Result<CommentId, SinkError>> + Send;

    fn close_issue(&self, repo: &RepoName, issue: IssueNumber) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Every file path the PR changes (renames give the new path), all pages.
    fn list_pr_files(
        &self,
        repo: &RepoName,
        pr: PrNumber,
    ) -> impl Future<Output = Result<Vec<String>, SinkError>> + Send;

    /// The repository at `sha` as a gzipped tarball (the run's source bundle), read as a stream
    /// and failing (a [`SinkError::Response`]) as soon as it passes `max_bytes`.
    fn download_tarball(
        &self,
        repo: &RepoName,
        sha: &CommitSha,
        max_bytes: u64,
    ) -> impl Future<Output = Result<Vec<u8>, SinkError>> + Send;
}
