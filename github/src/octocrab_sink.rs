//! [`GithubSink`] over GitHub's REST API with octocrab.
//!
//! Typed octocrab builders are used for creating check runs and statuses; completing check runs,
//! comments, issues and PR files go through octocrab's typed escape hatch (`get`/`post`/`patch`) into lean response structs of ours,
//! so a field GitHub adds or drops cannot break delivery. octocrab's own retry layer is off: retries
//! happen here, bounded by [`RetryPolicy`], with exponential backoff and GitHub's `retry-after` /
//! `x-ratelimit-reset` headers honoured up to the policy's maximum delay.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::BodyExt;
use octocrab::models::{AppId, InstallationId};
use octocrab::params::checks::CheckRunStatus;
use octocrab::service::middleware::retry::RetryConfig;
use octocrab::{Octocrab, Page};
use serde::Deserialize;
use serde_json::json;

use crate::config::{Credentials, GithubConfig};
use crate::secret::Secret;
use crate::sink::{Conclusion, GithubSink, SinkError, StatusState};
use crate::types::{CheckRunId, CommentId, CommitSha, IssueNumber, PrNumber, RepoName};

/// How often and how patiently transient failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0: no retry).
    pub max_retries: u32,
    /// The first backoff; each retry doubles it.
    pub initial_delay: Duration,
    /// No single wait is longer, whatever GitHub's headers ask for.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_retries: 5, initial_delay: Duration::from_secs(1), max_delay: Duration::from_secs(60) }
    }
}

impl RetryPolicy {
    fn backoff(&self, retry: u32) -> Duration {
        self.initial_delay.saturating_mul(2u32.saturating_pow(retry.saturating_sub(1))).min(self.max_delay)
    }
}

/// The real sink. Build it inside a tokio runtime.
#[derive(Debug, Clone)]
pub struct OctocrabSink {
    crab: Octocrab,
    retry: RetryPolicy,
    /// Scrubbed from every error message.
    secrets: Vec<Secret>,
}

#[derive(Debug, Deserialize)]
struct Id {
    id: u64,
}

#[derive(Debug, Deserialize)]
struct LeanComment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LeanIssue {
    number: u64,
    #[serde(default)]
    title: String,
    #[serde(default)]
    pull_request: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
struct LeanFile {
    filename: String,
}

enum Failure {
    Retry { message: String, wait: Option<Duration> },
    Fatal(SinkError),
}

impl OctocrabSink {
    /// A sink for `[github]`: its API URL, credentials and retry settings.
    pub fn from_config(config: &GithubConfig) -> Result<Self, SinkError> {
        let retry = RetryPolicy {
            max_retries: config.max_retries,
            initial_delay: config.retry_initial_delay,
            max_delay: config.retry_max_delay,
        };
        Self::new(&config.api_url, &config.credentials, retry)
    }

    /// A sink talking to `api_url` (GitHub, GitHub Enterprise's `/api/v3`, or a test server).
    /// With App credentials, installation tokens are fetched on first use and refreshed by octocrab.
    pub fn new(api_url: &str, credentials: &Credentials, retry: RetryPolicy) -> Result<Self, SinkError> {
        let setup = |e: octocrab::Error| SinkError::Setup { message: error_text(&e) };
        let builder = Octocrab::builder().add_retry_config(RetryConfig::None).base_uri(api_url).map_err(setup)?;
        let (crab, secrets) = match credentials {
            Credentials::Token(token) => {
                (builder.personal_token(token.expose().to_owned()).build().map_err(setup)?, vec![token.clone()])
            }
            Credentials::App { app_id, private_key_pem, installation_id } => {
                let key = octocrab::EncodingKey::from_rsa_pem(private_key_pem.expose().as_bytes())
                    .map_err(|e| SinkError::Setup { message: format!("invalid GitHub App private key: {e}") })?;
                let app = builder.app(AppId(*app_id), key).build().map_err(setup)?;
                (app.installation(InstallationId(*installation_id)).map_err(setup)?, vec![private_key_pem.clone()])
            }
        };
        Ok(OctocrabSink { crab, retry, secrets })
    }

    /// Runs `call` until it succeeds, fails for good, or the retries are spent.
    async fn call<T, F, Fut>(&self, operation: &'static str, repo: &RepoName, mut call: F) -> Result<T, SinkError>
    where
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = Result<T, octocrab::Error>> + Send,
        T: Send,
    {
        let mut retries = 0;
        loop {
            let error = match call().await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let (message, wait) = match self.classify(operation, repo, &error) {
                Failure::Fatal(e) => return Err(e),
                Failure::Retry { message, wait } => (message, wait),
            };
            retries += 1;
            if retries > self.retry.max_retries {
                return Err(SinkError::GaveUp { operation, repo: repo.to_string(), attempts: retries, last: message });
            }
            let delay = wait.unwrap_or_else(|| self.retry.backoff(retries)).min(self.retry.max_delay);
            tracing::warn!(operation, %repo, retry = retries, ?delay, "github call failed, retrying: {message}");
            tokio::time::sleep(delay).await;
        }
    }

    fn classify(&self, operation: &'static str, repo: &RepoName, error: &octocrab::Error) -> Failure {
        let message = self.scrub(&error_text(error));
        let repo = repo.to_string();
        let octocrab::Error::GitHub { source, .. } = error else {
            return match error {
                octocrab::Error::Hyper { .. } | octocrab::Error::Service { .. } | octocrab::Error::Http { .. } => {
                    Failure::Retry { message, wait: None }
                }
                _ => Failure::Fatal(SinkError::Response { operation, repo, message }),
            };
        };
        let status = source.status_code.as_u16();
        let wait = source.headers.as_ref().and_then(rate_limit_wait);
        match status {
            500..=599 => Failure::Retry { message: format!("http {status}: {message}"), wait: None },
            429 => Failure::Retry { message: format!("http 429: {message}"), wait },
            403 if wait.is_some() => Failure::Retry { message: format!("rate limited: {message}"), wait },
            403 => Failure::Fatal(SinkError::Forbidden { operation, repo, message }),
            404 => Failure::Fatal(SinkError::NotFound { operation, repo, message }),
            _ => Failure::Fatal(SinkError::Api { operation, repo, status, message }),
        }
    }

    fn scrub(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_owned(), |text, s| s.scrub(&text))
    }

    /// Walks pages from `route` until `stop` says so or the pages end; returns what was kept.
    async fn walk<T, R>(
        &self,
        operation: &'static str,
        repo: &RepoName,
        route: &str,
        query: &[(&str, &str)],
        mut visit: impl FnMut(T) -> Option<R> + Send,
    ) -> Result<Option<R>, SinkError>
    where
        T: serde::de::DeserializeOwned + Send,
        R: Send,
    {
        let params: Vec<(&str, &str)> = [("per_page", "100")].into_iter().chain(query.iter().copied()).collect();
        let mut page: Page<T> = self.call(operation, repo, || self.crab.get(route, Some(&params))).await?;
        loop {
            for item in page.take_items() {
                if let Some(found) = visit(item) {
                    return Ok(Some(found));
                }
            }
            let Some(next) = page.next.clone() else { return Ok(None) };
            let next = Some(next);
            match self.call(operation, repo, || self.crab.get_page::<T>(&next)).await? {
                Some(p) => page = p,
                None => return Ok(None),
            }
        }
    }
}

/// How long GitHub asks us to wait: `retry-after` seconds, or until `x-ratelimit-reset` when the
/// remaining quota is zero. `None` when the response carries neither (not a rate limit).
fn rate_limit_wait(headers: &http::HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(seconds) = get("retry-after") {
        return Some(Duration::from_secs(seconds));
    }
    if get("x-ratelimit-remaining") == Some(0) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        return Some(Duration::from_secs(get("x-ratelimit-reset").unwrap_or(now).saturating_sub(now).max(1)));
    }
    None
}

/// The error and its sources on one line. octocrab's `GitHub` variant prints only its name, so its
/// message is taken from the source.
fn error_text(error: &octocrab::Error) -> String {
    if let octocrab::Error::GitHub { source, .. } = error {
        return source.message.clone();
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.lines().next().unwrap_or_default().to_owned()
}

fn octo_state(s: StatusState) -> octocrab::models::StatusState {
    match s {
        StatusState::Pending => octocrab::models::StatusState::Pending,
        StatusState::Success => octocrab::models::StatusState::Success,
        StatusState::Failure => octocrab::models::StatusState::Failure,
        StatusState::Error => octocrab::models::StatusState::Error,
    }
}

fn route(repo: &RepoName, rest: &str) -> String {
    format!("/repos/{}/{}/{rest}", repo.owner(), repo.name())
}

impl GithubSink for OctocrabSink {
    async fn create_check_run(
        &self,
        repo: &RepoName,
        sha: &CommitSha,
        name: &str,
        details_url: Option<&str>,
    ) -> Result<CheckRunId, SinkError> {
        let run = self
            .call("create check run", repo, || async {
                let checks = self.crab.checks(repo.owner(), repo.name());
                let mut builder = checks.create_check_run(name, sha.as_str()).status(CheckRunStatus::InProgress);
                if let Some(url) = details_url {
                    builder = builder.details_url(url);
                }
                builder.send().await
            })
            .await?;
        Ok(CheckRunId(run.id.into_inner()))
    }

    async fn complete_check_run(
        &self,
        repo: &RepoName,
        id: CheckRunId,
        conclusion: Conclusion,
        title: &str,
        summary: &str,
    ) -> Result<(), SinkError> {
        // octocrab's typed update builder also serialises `check_run_id` into the body; the escape
        // hatch sends exactly GitHub's documented fields.
        let route = route(repo, &format!("check-runs/{id}"));
        let request = json!({
            "status": "completed",
            "conclusion": conclusion.as_str(),
            "output": { "title": title, "summary": summary },
        });
        self.call("complete check run", repo, || self.crab.patch::<Id, _, _>(&route, Some(&request))).await.map(drop)
    }

    async fn find_comment_with_marker(
        &self,
        repo: &RepoName,
        pr: PrNumber,
        marker: &str,
    ) -> Result<Option<CommentId>, SinkError> {
        let route = route(repo, &format!("issues/{pr}/comments"));
        self.walk("find comment", repo, &route, &[], |c: LeanComment| {
            c.body.is_some_and(|b| b.contains(marker)).then_some(CommentId(c.id))
        })
        .await
    }

    async fn create_comment(&self, repo: &RepoName, pr: PrNumber, body: &str) -> Result<CommentId, SinkError> {
        let route = route(repo, &format!("issues/{pr}/comments"));
        let request = json!({ "body": body });
        let id: Id = self.call("create comment", repo, || self.crab.post(&route, Some(&request))).await?;
        Ok(CommentId(id.id))
    }

    async fn update_comment(&self, repo: &RepoName, id: CommentId, body: &str) -> Result<(), SinkError> {
        let route = route(repo, &format!("issues/comments/{id}"));
        let body = json!({ "body": body });
        self.call("update comment", repo, || self.crab.patch::<Id, _, _>(&route, Some(&body))).await.map(drop)
    }

    async fn create_status(
        &self,
        repo: &RepoName,
        sha: &CommitSha,
        state: StatusState,
        context: &str,
        description: &str,
        target_url: Option<&str>,
    ) -> Result<(), SinkError> {
        self.call("create status", repo, || async {
            let repos = self.crab.repos(repo.owner(), repo.name());
            let mut builder = repos
                .create_status(sha.to_string(), octo_state(state))
                .context(context.to_owned())
                .description(description.to_owned());
            if let Some(url) = target_url {
                builder = builder.target(url.to_owned());
            }
            builder.send().await
        })
        .await
        .map(drop)
    }

    async fn find_open_issue(
        &self,
        repo: &RepoName,
        label: &str,
        title_prefix: &str,
    ) -> Result<Option<IssueNumber>, SinkError> {
        let route = route(repo, "issues");
        let query = [("state", "open"), ("labels", label)];
        let mut lowest: Option<u64> = None;
        self.walk("find open issue", repo, &route, &query, |i: LeanIssue| {
            if i.pull_request.is_none() && i.title.starts_with(title_prefix) {
                lowest = Some(lowest.map_or(i.number, |n| n.min(i.number)));
            }
            None::<()>
        })
        .await?;
        Ok(lowest.map(IssueNumber))
    }

    async fn create_issue(
        &self,
        repo: &RepoName,
        title: &str,
        body: &str,
        labels: &[String],
    ) -> Result<IssueNumber, SinkError> {
        let route = route(repo, "issues");
        let request = json!({ "title": title, "body": body, "labels": labels });
        let issue: LeanIssue = self.call("create issue", repo, || self.crab.post(&route, Some(&request))).await?;
        Ok(IssueNumber(issue.number))
    }

    async fn update_issue_body(&self, repo: &RepoName, issue: IssueNumber, body: &str) -> Result<(), SinkError> {
        let route = route(repo, &format!("issues/{issue}"));
        let request = json!({ "body": body });
        self.call("update issue", repo, || self.crab.patch::<LeanIssue, _, _>(&route, Some(&request))).await.map(drop)
    }

    async fn comment_on_issue(&self, repo: &RepoName, issue: IssueNumber, body: &str) -> Result<CommentId, SinkError> {
        self.create_comment(repo, PrNumber(issue.0), body).await
    }

    async fn close_issue(&self, repo: &RepoName, issue: IssueNumber) -> Result<(), SinkError> {
        let route = route(repo, &format!("issues/{issue}"));
        let request = json!({ "state": "closed", "state_reason": "completed" });
        self.call("close issue", repo, || self.crab.patch::<LeanIssue, _, _>(&route, Some(&request))).await.map(drop)
    }

    async fn list_pr_files(&self, repo: &RepoName, pr: PrNumber) -> Result<Vec<String>, SinkError> {
        let route = route(repo, &format!("pulls/{pr}/files"));
        let mut files = Vec::new();
        self.walk("list pull request files", repo, &route, &[], |f: LeanFile| {
            files.push(f.filename);
            None::<()>
        })
        .await?;
        Ok(files)
    }

    async fn download_tarball(&self, repo: &RepoName, sha: &CommitSha, max_bytes: u64) -> Result<Vec<u8>, SinkError> {
        let operation = "download tarball";
        let read = self
            .call(operation, repo, || async {
                let response = self.crab.repos(repo.owner(), repo.name()).download_tarball(sha.as_str()).await?;
                let mut body = octocrab::map_github_error(response).await?.into_body();
                // Streamed into memory frame by frame, stopping at the cap: the size GitHub
                // announces is not trusted.
                let mut bytes = Vec::new();
                while let Some(frame) = body.frame().await {
                    if let Ok(data) = frame?.into_data() {
                        if (bytes.len() + data.len()) as u64 > max_bytes {
                            return Ok(None);
                        }
                        bytes.extend_from_slice(&data);
                    }
                }
                Ok(Some(bytes))
            })
            .await?;
        read.ok_or_else(|| SinkError::Response {
            operation,
            repo: repo.to_string(),
            message: format!("the tarball is larger than the limit of {max_bytes} bytes"),
        })
    }
}
