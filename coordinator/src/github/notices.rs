//! Notices: what phasegate shows on a pull request head that has no run (a fork PR waiting for its
//! label, a webhook event that could not start a run). They are stored first and delivered by the
//! delivery task with the same retries as a run's deliveries, so neither a GitHub outage nor a
//! coordinator restart loses one. A notice that a newer notice or a run of the same PR and
//! experiment has overtaken is marked `superseded` instead of being shown late.

use phasegate_github::{CommitSha, Delivery, DeliveryError, GithubSink, Notice, PrNumber, RepoName, SinkError, Target};

use super::delivery::{Deliverer, PENDING, attempt_outcome};
use super::source::SourceError;
use crate::store::{GithubNoticeRecord, NewGithubNotice, NoticeId, Store, StoreError};

/// The status of a notice that was overtaken before it could be shown.
pub(crate) const SUPERSEDED: &str = "superseded";

/// What the PR is told when a webhook event cannot start a run, and what the log says. Failures
/// inside the coordinator (artifact store, database) stay in the log: their messages may name
/// local paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StartFailure {
    /// The notice for the PR.
    pub notice: Notice,
    /// The full error, for the log and the event's outcome.
    pub detail: String,
}

impl StartFailure {
    /// The repository file `file` could not be used.
    pub(crate) fn file(file: &str, error: impl Into<String>) -> Self {
        let error = error.into();
        let detail = format!("{file}: {error}");
        StartFailure { notice: Notice::StartFailed { file: Some(file.to_owned()), error }, detail }
    }

    /// A failure the PR author can read in full (GitHub's answer, the tarball's shape).
    pub(crate) fn public(error: impl Into<String>) -> Self {
        let error = error.into();
        StartFailure { notice: Notice::StartFailed { file: None, error: error.clone() }, detail: error }
    }

    /// A failure inside the coordinator: the PR gets a generic line, the log the detail.
    pub(crate) fn internal(detail: impl Into<String>) -> Self {
        let error = "an internal error on the phasegate coordinator (its log has the details)".to_owned();
        StartFailure { notice: Notice::StartFailed { file: None, error }, detail: detail.into() }
    }

    pub(crate) fn from_source(e: SourceError) -> Self {
        match e {
            SourceError::NoSpec(path) => StartFailure::file(&path, "no such file at this commit"),
            SourceError::Spec { path, message } => StartFailure::file(&path, message),
            SourceError::Bundle(_) | SourceError::Io(_) => StartFailure::internal(e.to_string()),
            SourceError::SpecPath(_)
            | SourceError::Archive(_)
            | SourceError::TopLevel { .. }
            | SourceError::TooLarge { .. } => StartFailure::public(e.to_string()),
        }
    }
}

/// Whether a stored notice is due for an attempt at `now_ms`.
pub(crate) fn notice_due(record: &GithubNoticeRecord, now_ms: i64) -> bool {
    record.status == PENDING && record.next_attempt_ms.is_none_or(|t| t <= now_ms)
}

/// Stores `notice` for the head `target` (a PR head) of `experiment`; the delivery task shows it.
pub(crate) async fn store_notice<S: Store>(
    store: &S,
    target: &Target,
    experiment: &str,
    notice: &Notice,
    now_ms: i64,
) -> Result<NoticeId, StoreError> {
    let record = NewGithubNotice {
        repo: target.repo.to_string(),
        pr: target.pr.map_or(0, |p| p.0),
        sha: target.sha.to_string(),
        experiment: experiment.to_owned(),
        kind: notice.kind().to_owned(),
        notice_json: serde_json::to_string(notice)
            .map_err(|e| StoreError::Corrupt { table: "github_notices", detail: e.to_string() })?,
        created_ms: now_ms,
    };
    store.insert_github_notice(&record).await
}

impl<G: GithubSink> Deliverer<G> {
    /// One attempt to show notice `id` when it is due; the outcome is stored before this returns.
    /// `None` when nothing was due.
    pub(crate) async fn sync_notice<S: Store>(
        &self,
        store: &S,
        id: NoticeId,
        now_ms: i64,
    ) -> Result<Option<GithubNoticeRecord>, StoreError> {
        let Some(mut record) = store.github_notice(id).await? else { return Ok(None) };
        if !notice_due(&record, now_ms) {
            return Ok(None);
        }
        record.updated_ms = now_ms;
        if store.github_notice_outdated(&record).await? {
            tracing::info!(notice = %id, kind = %record.notice.kind, "github notice overtaken by a newer one or a run");
            record.status = SUPERSEDED.to_owned();
            record.next_attempt_ms = None;
            store.update_github_notice(&record).await?;
            return Ok(Some(record));
        }
        let previous: Delivery = serde_json::from_str(&record.delivery_json).unwrap_or_default();
        let result = match parse(&record) {
            Ok((target, notice)) => {
                self.reporter().on_notice(&target, &record.notice.experiment, &notice, previous).await
            }
            Err(source) => Err(DeliveryError { delivery: previous, source }),
        };
        record.attempts = record.attempts.saturating_add(1);
        match &result {
            Ok(_) => tracing::info!(notice = %id, kind = %record.notice.kind, "notice delivered to github"),
            Err(e) => tracing::warn!(
                notice = %id, kind = %record.notice.kind, attempts = record.attempts, error = %e.source,
                "github notice delivery failed"
            ),
        }
        let outcome = attempt_outcome(record.attempts, &result, self.policy(), now_ms);
        record.status = outcome.status.to_owned();
        record.delivery_json = serde_json::to_string(&outcome.delivery).unwrap_or_default();
        record.last_error = outcome.last_error;
        record.next_attempt_ms = outcome.next_attempt_ms;
        store.update_github_notice(&record).await?;
        Ok(Some(record))
    }
}

/// The stored notice's target and content; an unusable row is a permanent failure.
fn parse(record: &GithubNoticeRecord) -> Result<(Target, Notice), SinkError> {
    let n = &record.notice;
    let unusable =
        |message: String| SinkError::Response { operation: "deliver a notice", repo: n.repo.clone(), message };
    let repo = RepoName::try_from(n.repo.as_str()).map_err(|e| unusable(e.to_string()))?;
    let sha = CommitSha::try_from(n.sha.as_str()).map_err(|e| unusable(e.to_string()))?;
    let notice = serde_json::from_str(&n.notice_json)
        .map_err(|e| unusable(format!("unreadable stored notice {}: {e}", record.id)))?;
    Ok((Target { repo, sha, pr: Some(PrNumber(n.pr)) }, notice))
}
