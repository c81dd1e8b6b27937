//! A recording, in-memory [`GithubSink`] for tests of the reporter and the coordinator.

use std::sync::{Mutex, MutexGuard};

use crate::sink::{Conclusion, GithubSink, SinkError, StatusState};
use crate::types::{CheckRunId, CommentId, CommitSha, IssueNumber, PrNumber, RepoName};

/// One call the fake received, with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkCall {
    CreateCheckRun { repo: String, sha: String, name: String, details_url: Option<String> },
    CompleteCheckRun { repo: String, id: CheckRunId, conclusion: Conclusion, title: String, summary: String },
    FindComment { repo: String, pr: PrNumber },
    CreateComment { repo: String, pr: PrNumber, body: String },
    UpdateComment { repo: String, id: CommentId, body: String },
    CreateStatus { repo: String, sha: String, state: StatusState, context: String, description: String },
    FindOpenIssue { repo: String, label: String, title_prefix: String },
    CreateIssue { repo: String, title: String, body: String, labels: Vec<String> },
    UpdateIssueBody { repo: String, issue: IssueNumber, body: String },
    CommentOnIssue { repo: String, issue: IssueNumber, body: String },
    CloseIssue { repo: String, issue: IssueNumber },
    ListPrFiles { repo: String, pr: PrNumber },
    DownloadTarball { repo: String, sha: String },
}

#[derive(Debug, Default)]
struct State {
    calls: Vec<SinkCall>,
    next_id: u64,
    comments: Vec<(PrNumber, CommentId, String)>,
    open_issues: Vec<(IssueNumber, String, Vec<String>)>,
    pr_files: Vec<String>,
    forbid_check_runs: bool,
}

/// Records every call; comments and issues it creates can be found again, like on GitHub.
#[derive(Debug, Default)]
pub struct FakeSink {
    state: Mutex<State>,
}

impl FakeSink {
    pub fn new() -> Self {
        FakeSink { state: Mutex::new(State { next_id: 100, ..State::default() }) }
    }

    /// Check-run calls answer 403, as for a token without `checks: write`.
    pub fn forbid_check_runs(self) -> Self {
        self.lock().forbid_check_runs = true;
        self
    }

    pub fn with_comment(self, pr: PrNumber, id: CommentId, body: &str) -> Self {
        self.lock().comments.push((pr, id, body.to_owned()));
        self
    }

    pub fn with_open_issue(self, number: IssueNumber, title: &str, label: &str) -> Self {
        self.lock().open_issues.push((number, title.to_owned(), vec![label.to_owned()]));
        self
    }

    pub fn with_pr_files(self, files: &[&str]) -> Self {
        self.lock().pr_files = files.iter().map(|f| (*f).to_owned()).collect();
        self
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<SinkCall> {
        self.lock().calls.clone()
    }

    /// The calls that change something on GitHub (no finds or lists).
    pub fn writes(&self) -> Vec<SinkCall> {
        self.calls()
            .into_iter()
            .filter(|c| {
                !matches!(
                    c,
                    SinkCall::FindComment { .. }
                        | SinkCall::FindOpenIssue { .. }
                        | SinkCall::ListPrFiles { .. }
                        | SinkCall::DownloadTarball { .. }
                )
            })
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn note(&self, call: SinkCall) {
        self.lock().calls.push(call);
    }

    fn record(&self, call: SinkCall) -> MutexGuard<'_, State> {
        let mut state = self.lock();
        state.calls.push(call);
        state
    }
}

fn forbidden(operation: &'static str, repo: &RepoName) -> SinkError {
    SinkError::Forbidden { operation, repo: repo.to_string(), message: "Resource not accessible by integration".into() }
}

impl GithubSink for FakeSink {
    async fn create_check_run(
        &self,
        repo: &RepoName,
        sha: &CommitSha,
        name: &str,
        details_url: Option<&str>,
    ) -> Result<CheckRunId, SinkError> {
        let mut s = self.record(SinkCall::CreateCheckRun {
            repo: repo.to_string(),
            sha: sha.to_string(),
            name: name.to_owned(),
            details_url: details_url.map(str::to_owned),
        });
        if s.forbid_check_runs {
            return Err(forbidden("create check run", repo));
        }
        s.next_id += 1;
        Ok(CheckRunId(s.next_id))
    }

    async fn complete_check_run(
        &self,
        repo: &RepoName,
        id: CheckRunId,
        conclusion: Conclusion,
        title: &str,
        summary: &str,
    ) -> Result<(), SinkError> {
        let s = self.record(SinkCall::CompleteCheckRun {
            repo: repo.to_string(),
            id,
            conclusion,
            title: title.to_owned(),
            summary: summary.to_owned(),
        });
        if s.forbid_check_runs { Err(forbidden("complete check run", repo)) } else { Ok(()) }
    }

    async fn find_comment_with_marker(
        &self,
        repo: &RepoName,
        pr: PrNumber,
        marker: &str,
    ) -> Result<Option<CommentId>, SinkError> {
        let s = self.record(SinkCall::FindComment { repo: repo.to_string(), pr });
        Ok(s.comments.iter().find(|(p, _, body)| *p == pr && body.contains(marker)).map(|(_, id, _)| *id))
    }

    async fn create_comment(&self, repo: &RepoName, pr: PrNumber, body: &str) -> Result<CommentId, SinkError> {
        let mut s = self.record(SinkCall::CreateComment { repo: repo.to_string(), pr, body: body.to_owned() });
        s.next_id += 1;
        let id = CommentId(s.next_id);
        s.comments.push((pr, id, body.to_owned()));
        Ok(id)
    }

    async fn update_comment(&self, repo: &RepoName, id: CommentId, body: &str) -> Result<(), SinkError> {
        let mut s = self.record(SinkCall::UpdateComment { repo: repo.to_string(), id, body: body.to_owned() });
        if let Some(c) = s.comments.iter_mut().find(|c| c.1 == id) {
            c.2 = body.to_owned();
        }
        Ok(())
    }

    async fn create_status(
        &self,
        repo: &RepoName,
        sha: &CommitSha,
        state: StatusState,
        context: &str,
        description: &str,
        _target_url: Option<&str>,
    ) -> Result<(), SinkError> {
        self.note(SinkCall::CreateStatus {
            repo: repo.to_string(),
            sha: sha.to_string(),
            state,
            context: context.to_owned(),
            description: description.to_owned(),
        });
        Ok(())
    }

    async fn find_open_issue(
        &self,
        repo: &RepoName,
        label: &str,
        title_prefix: &str,
    ) -> Result<Option<IssueNumber>, SinkError> {
        let s = self.record(SinkCall::FindOpenIssue {
            repo: repo.to_string(),
            label: label.to_owned(),
            title_prefix: title_prefix.to_owned(),
        });
        let found =
            s.open_issues.iter().filter(|(_, t, l)| t.starts_with(title_prefix) && l.iter().any(|x| x == label));
        Ok(found.map(|(n, _, _)| *n).min())
    }

    async fn create_issue(
        &self,
        repo: &RepoName,
        title: &str,
        body: &str,
        labels: &[String],
    ) -> Result<IssueNumber, SinkError> {
        let mut s = self.record(SinkCall::CreateIssue {
            repo: repo.to_string(),
            title: title.to_owned(),
            body: body.to_owned(),
            labels: labels.to_vec(),
        });
        s.next_id += 1;
        let number = IssueNumber(s.next_id);
        s.open_issues.push((number, title.to_owned(), labels.to_vec()));
        Ok(number)
    }

    async fn update_issue_body(&self, repo: &RepoName, issue: IssueNumber, body: &str) -> Result<(), SinkError> {
        self.note(SinkCall::UpdateIssueBody { repo: repo.to_string(), issue, body: body.to_owned() });
        Ok(())
    }

    async fn comment_on_issue(&self, repo: &RepoName, issue: IssueNumber, body: &str) -> Result<CommentId, SinkError> {
        let mut s = self.record(SinkCall::CommentOnIssue { repo: repo.to_string(), issue, body: body.to_owned() });
        s.next_id += 1;
        Ok(CommentId(s.next_id))
    }

    async fn close_issue(&self, repo: &RepoName, issue: IssueNumber) -> Result<(), SinkError> {
        let mut s = self.record(SinkCall::CloseIssue { repo: repo.to_string(), issue });
        s.open_issues.retain(|(n, _, _)| *n != issue);
        Ok(())
    }

    async fn list_pr_files(&self, repo: &RepoName, pr: PrNumber) -> Result<Vec<String>, SinkError> {
        Ok(self.record(SinkCall::ListPrFiles { repo: repo.to_string(), pr }).pr_files.clone())
    }

    async fn download_tarball(&self, repo: &RepoName, sha: &CommitSha, _max_bytes: u64) -> Result<Vec<u8>, SinkError> {
        self.note(SinkCall::DownloadTarball { repo: repo.to_string(), sha: sha.to_string() });
        Ok(Vec::new())
    }
}
