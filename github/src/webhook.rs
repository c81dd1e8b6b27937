//! The webhook side, pure: signature verification, event parsing, and the decision to run.
//!
//! The coordinator's HTTP endpoint calls, in order: [`verify_signature`] on the raw body (before
//! any parsing; reject with 401 and log nothing of the body on error), [`parse_event`], then for a
//! pull request the PR's file list through the sink, then [`decide`] once per configured
//! experiment of the repository.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::config::ExperimentConfig;
use crate::secret::Secret;
use crate::types::{CommitSha, IdError, PrNumber, RepoName};

/// The header carrying `sha256=<hex HMAC of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";
/// The header naming the event (`pull_request`, `push`, `ping`, ...).
pub const EVENT_HEADER: &str = "X-GitHub-Event";

/// Why a delivery's signature was rejected. Never includes the body or the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing {SIGNATURE_HEADER} header")]
    Missing,
    #[error("malformed {SIGNATURE_HEADER} header: expected `sha256=` and 64 hex digits")]
    Malformed,
    #[error("{SIGNATURE_HEADER} does not match the body")]
    Mismatch,
}

/// Why a verified payload could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("failed to parse `{event}` payload: {message}")]
    Json { event: String, message: String },
    #[error("failed to parse `{event}` payload: {source}")]
    Id { event: String, source: IdError },
}

/// Checks `header` (the value of [`SIGNATURE_HEADER`]) against the HMAC-SHA256 of `body` under
/// `secret`, in constant time.
pub fn verify_signature(secret: &Secret, header: Option<&str>, body: &[u8]) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digest = header.trim().strip_prefix("sha256=").ok_or(SignatureError::Malformed)?;
    let expected = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
    if expected.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    mac(secret, body).verify_slice(&expected).map_err(|_| SignatureError::Mismatch)
}

/// The header value GitHub would send for `body`: for tests and tools that replay deliveries.
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(mac(secret, body).finalize().into_bytes()))
}

fn mac(secret: &Secret, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(body);
    mac
}

/// A pull-request action phasegate acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrAction {
    Opened,
    Synchronize,
    Reopened,
    Labeled { label: String },
}

/// A `pull_request` delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequestEvent {
    pub action: PrAction,
    pub repo: RepoName,
    pub pr: PrNumber,
    pub head_sha: CommitSha,
    pub head_branch: String,
    /// `owner/name` of the head repository; `None` when the fork was deleted.
    pub head_repo: Option<String>,
    pub base_branch: String,
    pub labels: Vec<String>,
    /// The login of who caused the event (who added the label).
    pub sender: Option<String>,
}

impl PullRequestEvent {
    /// Code from another repository (or a deleted one) is a fork.
    pub fn is_fork(&self) -> bool {
        self.head_repo.as_deref() != Some(self.repo.to_string().as_str())
    }
}

/// A `push` delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEvent {
    pub repo: RepoName,
    /// The branch pushed to; `None` for tags.
    pub branch: Option<String>,
    pub default_branch: String,
    /// The new head; `None` when the branch was deleted.
    pub after: Option<CommitSha>,
    /// Files added, modified or removed by the pushed commits (GitHub lists at most 20 commits).
    pub changed_files: Vec<String>,
    /// The merged PR, when the head commit's message names it ("Merge pull request #12 ..." or a
    /// squash title ending in "(#12)").
    pub merged_pr: Option<PrNumber>,
}

/// A parsed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    PullRequest(PullRequestEvent),
    Push(PushEvent),
    /// Any other event or action: acknowledged, nothing done.
    Ignored {
        event: String,
        action: Option<String>,
    },
}

#[derive(Debug, Deserialize)]
struct RawRepo {
    full_name: String,
    #[serde(default)]
    default_branch: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawLabel {
    name: String,
}

#[derive(Debug, Deserialize)]
struct RawRef {
    sha: String,
    #[serde(rename = "ref")]
    branch: String,
    repo: Option<RawRepo>,
}

#[derive(Debug, Deserialize)]
struct RawPr {
    number: u64,
    head: RawRef,
    base: RawRef,
    #[serde(default)]
    labels: Vec<RawLabel>,
}

#[derive(Debug, Deserialize)]
struct RawPrEvent {
    action: String,
    pull_request: RawPr,
    repository: RawRepo,
    label: Option<RawLabel>,
    sender: Option<RawUser>,
}

#[derive(Debug, Deserialize)]
struct RawUser {
    login: String,
}

#[derive(Debug, Default, Deserialize)]
struct RawCommit {
    #[serde(default)]
    message: String,
    #[serde(default)]
    added: Vec<String>,
    #[serde(default)]
    removed: Vec<String>,
    #[serde(default)]
    modified: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct RawPush {
    #[serde(rename = "ref")]
    git_ref: String,
    after: String,
    #[serde(default)]
    deleted: bool,
    repository: RawRepo,
    #[serde(default)]
    commits: Vec<RawCommit>,
    head_commit: Option<RawCommit>,
}

/// Parses a verified payload of type `event` (the [`EVENT_HEADER`] value).
pub fn parse_event(event: &str, body: &[u8]) -> Result<Event, WebhookError> {
    let json = |e: serde_json::Error| WebhookError::Json { event: event.to_owned(), message: e.to_string() };
    let id = |source| WebhookError::Id { event: event.to_owned(), source };
    match event {
        "pull_request" => {
            let raw: RawPrEvent = serde_json::from_slice(body).map_err(json)?;
            let action = match (raw.action.as_str(), raw.label) {
                ("opened", _) => PrAction::Opened,
                ("synchronize", _) => PrAction::Synchronize,
                ("reopened", _) => PrAction::Reopened,
                ("labeled", Some(label)) => PrAction::Labeled { label: label.name },
                _ => return Ok(Event::Ignored { event: event.to_owned(), action: Some(raw.action) }),
            };
            let pr = raw.pull_request;
            Ok(Event::PullRequest(PullRequestEvent {
                action,
                repo: RepoName::try_from(raw.repository.full_name.as_str()).map_err(id)?,
                pr: PrNumber(pr.number),
                head_sha: CommitSha::try_from(pr.head.sha.as_str()).map_err(id)?,
                head_branch: pr.head.branch,
                head_repo: pr.head.repo.map(|r| r.full_name),
                base_branch: pr.base.branch,
                labels: pr.labels.into_iter().map(|l| l.name).collect(),
                sender: raw.sender.map(|u| u.login),
            }))
        }
        "push" => {
            let raw: RawPush = serde_json::from_slice(body).map_err(json)?;
            Ok(Event::Push(push_event(raw).map_err(id)?))
        }
        _ => Ok(Event::Ignored { event: event.to_owned(), action: None }),
    }
}

fn push_event(raw: RawPush) -> Result<PushEvent, IdError> {
    let mut changed_files: Vec<String> = Vec::new();
    for c in &raw.commits {
        for f in c.added.iter().chain(&c.removed).chain(&c.modified) {
            if !changed_files.contains(f) {
                changed_files.push(f.clone());
            }
        }
    }
    Ok(PushEvent {
        repo: RepoName::try_from(raw.repository.full_name.as_str())?,
        branch: raw.git_ref.strip_prefix("refs/heads/").map(str::to_owned),
        default_branch: raw.repository.default_branch.unwrap_or_default(),
        after: if raw.deleted { None } else { Some(CommitSha::try_from(raw.after.as_str())?) },
        changed_files,
        merged_pr: raw.head_commit.as_ref().and_then(|c| merged_pr(&c.message)),
    })
}

/// "Merge pull request #12 from ..." (merge commit) or "Title (#12)" (squash) → 12.
fn merged_pr(message: &str) -> Option<PrNumber> {
    let first = message.lines().next()?.trim();
    let digits = |s: &str| s.parse::<u64>().ok().map(PrNumber);
    if let Some(rest) = first.strip_prefix("Merge pull request #") {
        return digits(rest.split_whitespace().next()?);
    }
    let inner = first.strip_suffix(')')?.rsplit_once("(#")?.1;
    digits(inner)
}

/// Why an event starts nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreReason {
    UnsupportedEvent,
    OtherRepository,
    NoMatchingPaths,
    /// A label other than the experiment's fork label, or the fork label on a non-fork PR.
    IrrelevantLabel,
    NotDefaultBranch,
    BranchDeleted,
}

/// What the coordinator does with one event for one experiment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Ignore(IgnoreReason),
    /// Run the experiment on the PR's head. A run for an older head of the same PR is superseded.
    StartRun {
        repo: RepoName,
        pr: PrNumber,
        head_sha: CommitSha,
        head_branch: String,
        base_branch: String,
    },
    /// A fork PR: create the check run saying a maintainer must add `label`; run nothing.
    WaitForLabel {
        repo: RepoName,
        pr: PrNumber,
        head_sha: CommitSha,
        label: String,
    },
    /// A maintainer added the experiment's `override_label`: override the PR's failing verdict.
    OverrideVerdict {
        repo: RepoName,
        pr: PrNumber,
        label: String,
        by: String,
    },
    /// A push to the default branch: accept the merged phase into the history.
    AcceptMerged {
        repo: RepoName,
        branch: String,
        sha: CommitSha,
        pr: Option<PrNumber>,
    },
}

/// Decides what `event` means for `experiment`, given the files the PR changes (from
/// `list_pr_files`; for a push, the payload's own list is used as well).
///
/// Fork PRs never run on their own: only the `labeled` action with the fork label starts them, for
/// the head at that moment; every new push waits again (the label approves one reviewed head).
pub fn decide(event: &Event, experiment: &ExperimentConfig, changed_files: &[String]) -> Decision {
    match event {
        Event::PullRequest(pr) => decide_pr(pr, experiment, changed_files),
        Event::Push(push) => decide_push(push, experiment, changed_files),
        Event::Ignored { .. } => Decision::Ignore(IgnoreReason::UnsupportedEvent),
    }
}

fn decide_pr(pr: &PullRequestEvent, experiment: &ExperimentConfig, changed_files: &[String]) -> Decision {
    if pr.repo != experiment.repo {
        return Decision::Ignore(IgnoreReason::OtherRepository);
    }
    if !experiment.matches_any(changed_files) {
        return Decision::Ignore(IgnoreReason::NoMatchingPaths);
    }
    let start = || Decision::StartRun {
        repo: pr.repo.clone(),
        pr: pr.pr,
        head_sha: pr.head_sha.clone(),
        head_branch: pr.head_branch.clone(),
        base_branch: pr.base_branch.clone(),
    };
    match &pr.action {
        PrAction::Labeled { label } if experiment.override_label.as_ref() == Some(label) => Decision::OverrideVerdict {
            repo: pr.repo.clone(),
            pr: pr.pr,
            label: label.clone(),
            by: pr.sender.clone().unwrap_or_else(|| "a maintainer".to_owned()),
        },
        PrAction::Labeled { label } if pr.is_fork() && *label == experiment.fork_label => start(),
        PrAction::Labeled { .. } => Decision::Ignore(IgnoreReason::IrrelevantLabel),
        PrAction::Opened | PrAction::Synchronize | PrAction::Reopened if pr.is_fork() => Decision::WaitForLabel {
            repo: pr.repo.clone(),
            pr: pr.pr,
            head_sha: pr.head_sha.clone(),
            label: experiment.fork_label.clone(),
        },
        PrAction::Opened | PrAction::Synchronize | PrAction::Reopened => start(),
    }
}

fn decide_push(push: &PushEvent, experiment: &ExperimentConfig, changed_files: &[String]) -> Decision {
    if push.repo != experiment.repo {
        return Decision::Ignore(IgnoreReason::OtherRepository);
    }
    let Some(sha) = &push.after else { return Decision::Ignore(IgnoreReason::BranchDeleted) };
    let Some(branch) = push.branch.as_ref().filter(|b| **b == push.default_branch) else {
        return Decision::Ignore(IgnoreReason::NotDefaultBranch);
    };
    if !experiment.matches_any(changed_files) && !experiment.matches_any(&push.changed_files) {
        return Decision::Ignore(IgnoreReason::NoMatchingPaths);
    }
    Decision::AcceptMerged { repo: push.repo.clone(), branch: branch.clone(), sha: sha.clone(), pr: push.merged_pr }
}

#[cfg(test)]
mod tests;
