//! The reporter: a verdict becomes a check run (or a commit status), one living PR comment, and for
//! nightly runs one regression issue per experiment.
//!
//! Read → decide → write: the executor ([`Reporter`]) reads the little it needs from GitHub (the
//! comment carrying the report's marker, the open regression issue), the pure functions
//! ([`decide_submitted`], [`decide_verdict`], [`decide_nightly`], and for outcomes without a verdict
//! [`decide_run_ended`] and [`decide_notice`]) return [`Action`]s, and the executor applies them
//! through a [`GithubSink`].

use gate_rules::Verdict;

use crate::config::{CommentPolicy, InconclusivePolicy};
use crate::sink::{Conclusion, GithubSink, SinkError, StatusState};
use crate::types::{CheckRunId, CommentId, CommitSha, IssueNumber, PrNumber, RepoName};

mod without_verdict;

pub use without_verdict::{EndedRun, Notice, RunEnd, decide_notice, decide_run_ended, run_end_outcome};

/// GitHub's limit on a check run's `output.summary`, in characters.
pub const CHECK_RUN_SUMMARY_LIMIT: usize = 65_535;
/// GitHub's limit on a comment or issue body, in characters.
pub const BODY_LIMIT: usize = gate_rules::report::GITHUB_COMMENT_LIMIT;
/// GitHub's limit on a commit status description, in characters.
pub const STATUS_DESCRIPTION_LIMIT: usize = 140;
/// The description of a pending status.
const IN_PROGRESS: &str = "phasegate run in progress";
/// The label of nightly regression issues.
pub const REGRESSION_LABEL: &str = "phasegate-regression";

/// A decided verdict, with what the reporter shows of it.
#[derive(Debug, Clone)]
pub struct VerdictReport {
    pub experiment: String,
    /// The candidate phase's label ("10").
    pub phase: String,
    pub verdict: Verdict,
    /// Scores for the title trend, oldest first, candidate last (`None`: unscored phase).
    pub scores: Vec<Option<f64>>,
    /// The markdown report from `gate_rules::report::render_markdown` (marker on its first line).
    pub markdown: String,
    /// Link to the run: the dashboard when configured.
    pub details_url: Option<String>,
    /// A maintainer merged over the verdict (`phasegate override`).
    pub overridden: Option<Override>,
}

/// Who decided to merge over a verdict, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub by: String,
    pub reason: String,
}

impl VerdictReport {
    /// The report as delivered: an override is said right under the marker line (which stays
    /// first, so the one comment is still found and updated).
    pub fn delivered_markdown(&self) -> String {
        let Some(o) = &self.overridden else { return self.markdown.clone() };
        let note = format!(
            "> **Overridden by {}**: the verdict stays {}, and the check passes because a maintainer decided \
             to merge over it. Reason: {}\n",
            o.by,
            self.verdict.as_str().to_uppercase(),
            o.reason.replace('\n', " ")
        );
        match self.markdown.split_once('\n') {
            Some((marker, rest)) => format!("{marker}\n{note}\n{rest}"),
            None => format!("{}\n{note}", self.markdown),
        }
    }
}

/// What has been delivered for one PR run so far. The coordinator stores it next to the verdict,
/// passes it back on every (re)delivery and replaces it with what each call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Delivery {
    pub check_run: Option<CheckRunId>,
    pub comment: Option<CommentId>,
    /// Check runs answered 403: this and later deliveries use commit statuses.
    pub checks_forbidden: bool,
    /// Nightly only: the open regression issue after this delivery.
    pub issue: Option<IssueNumber>,
}

/// What the pure decision sees of a PR's current state on GitHub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrState {
    pub check_run: Option<CheckRunId>,
    /// The comment carrying this experiment's marker, if any.
    pub comment: Option<CommentId>,
    pub checks_forbidden: bool,
}

/// The reporter's settings from `[github]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    pub comment: CommentPolicy,
    pub inconclusive: InconclusivePolicy,
}

impl From<&crate::config::GithubConfig> for Policy {
    fn from(config: &crate::config::GithubConfig) -> Self {
        Policy { comment: config.comment, inconclusive: config.inconclusive }
    }
}

/// One effect on GitHub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    CreateCheckRun {
        name: String,
        details_url: Option<String>,
    },
    /// Completes `id`; with `id: None` (no run was created at submission) a run is created first.
    /// `status` is the commit status posted instead when check runs turn out to be forbidden.
    CompleteCheckRun {
        id: Option<CheckRunId>,
        name: String,
        details_url: Option<String>,
        conclusion: Conclusion,
        title: String,
        summary: String,
        status: StatusState,
    },
    CreateStatus {
        state: StatusState,
        context: String,
        description: String,
        target_url: Option<String>,
    },
    CreateComment {
        body: String,
    },
    UpdateComment {
        id: CommentId,
        body: String,
    },
    CreateIssue {
        title: String,
        body: String,
        labels: Vec<String>,
    },
    UpdateIssueBody {
        issue: IssueNumber,
        body: String,
    },
    CommentOnIssue {
        issue: IssueNumber,
        body: String,
    },
    CloseIssue {
        issue: IssueNumber,
    },
}

/// A delivery that stopped part-way: `delivery` holds what was done (store it), `source` why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source}")]
pub struct DeliveryError {
    pub delivery: Delivery,
    pub source: SinkError,
}

/// `phasegate / <experiment>`.
pub fn check_run_name(experiment: &str) -> String {
    format!("phasegate / {experiment}")
}

/// `phasegate/<experiment>`.
pub fn status_context(experiment: &str) -> String {
    format!("phasegate/{experiment}")
}

/// The title of an open regression issue starts with this.
pub fn issue_title_prefix(experiment: &str) -> String {
    format!("phasegate regression: {experiment}")
}

/// The check-run conclusion for `verdict`.
pub fn conclusion(verdict: Verdict, inconclusive: InconclusivePolicy) -> Conclusion {
    match (verdict, inconclusive) {
        (Verdict::Pass | Verdict::Warn, _) => Conclusion::Success,
        (Verdict::Fail, _) => Conclusion::Failure,
        (Verdict::Inconclusive | Verdict::InsufficientBaseline, InconclusivePolicy::Neutral) => Conclusion::Neutral,
        (Verdict::Inconclusive | Verdict::InsufficientBaseline, InconclusivePolicy::Failure) => Conclusion::Failure,
    }
}

/// Statuses have no neutral: a neutral conclusion does not block, so it posts `success`. A
/// cancelled check run posts `error` (no verdict), as every outcome without a verdict does.
pub fn status_state(conclusion: Conclusion) -> StatusState {
    match conclusion {
        Conclusion::Success | Conclusion::Neutral => StatusState::Success,
        Conclusion::Failure => StatusState::Failure,
        Conclusion::Cancelled => StatusState::Error,
    }
}

/// "phase 10: FAIL — 5.5 → 3.125"; without scores just "phase 10: FAIL".
pub fn title(phase: &str, verdict: Verdict, scores: &[Option<f64>]) -> String {
    let head = format!("phase {phase}: {}", verdict.as_str().to_uppercase());
    if scores.is_empty() {
        return head;
    }
    let trend: Vec<String> = scores.iter().map(|s| s.map_or_else(|| "—".to_owned(), num)).collect();
    format!("{head} — {}", trend.join(" → "))
}

/// Up to three decimals, trailing zeros trimmed, as the gate-rules report prints scores.
fn num(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".to_owned();
    }
    let text = format!("{x:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" { "0".to_owned() } else { text.to_owned() }
}

/// `text` if it fits `limit` characters, else its head and a note saying where it was cut. The
/// head keeps the report's marker line, so a cut comment is still found and updated.
pub fn fit(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let note = format!(
        "\n\n> **Note:** this report was cut at {limit} characters to fit GitHub's limit; the full report is \
         stored with the run.\n"
    );
    let room = limit.saturating_sub(note.chars().count());
    let head: String = text.chars().take(room).collect();
    format!("{head}{note}").chars().take(limit).collect()
}

/// A PR run was submitted: an in-progress check run, or a pending status without checks permission.
pub fn decide_submitted(experiment: &str, details_url: Option<&str>, checks_forbidden: bool) -> Vec<Action> {
    if checks_forbidden {
        return vec![Action::CreateStatus {
            state: StatusState::Pending,
            context: status_context(experiment),
            description: IN_PROGRESS.to_owned(),
            target_url: details_url.map(str::to_owned),
        }];
    }
    vec![Action::CreateCheckRun { name: check_run_name(experiment), details_url: details_url.map(str::to_owned) }]
}

/// A fork PR waits for `label`: a neutral check run (or pending status) that says so.
pub fn decide_waiting_for_label(experiment: &str, label: &str, checks_forbidden: bool) -> Vec<Action> {
    let title = format!("waiting for a maintainer to add the label `{label}`");
    if checks_forbidden {
        return vec![Action::CreateStatus {
            state: StatusState::Pending,
            context: status_context(experiment),
            description: fit_line(&title, STATUS_DESCRIPTION_LIMIT),
            target_url: None,
        }];
    }
    let summary = format!(
        "This pull request comes from a fork. phasegate runs fine-tuning jobs on its own GPU agents, so a \
         maintainer must review the change and add the label `{label}` to start the run. Each new push needs \
         the label to be added again."
    );
    vec![Action::CompleteCheckRun {
        id: None,
        name: check_run_name(experiment),
        details_url: None,
        conclusion: Conclusion::Neutral,
        title,
        summary,
        status: StatusState::Pending,
    }]
}

/// The gate decided a PR run: complete the check run (or post a status) and keep the one comment.
pub fn decide_verdict(report: &VerdictReport, state: PrState, pr: Option<PrNumber>, policy: Policy) -> Vec<Action> {
    // An override completes the check as `success` and says so in the title.
    let (conclusion, title) = match &report.overridden {
        Some(o) => (
            Conclusion::Success,
            format!("{} (overridden by {})", title(&report.phase, report.verdict, &report.scores), o.by),
        ),
        None => (conclusion(report.verdict, policy.inconclusive), title(&report.phase, report.verdict, &report.scores)),
    };
    let markdown = report.delivered_markdown();
    let mut actions = vec![if state.checks_forbidden {
        Action::CreateStatus {
            state: status_state(conclusion),
            context: status_context(&report.experiment),
            description: fit_line(&title, STATUS_DESCRIPTION_LIMIT),
            target_url: report.details_url.clone(),
        }
    } else {
        Action::CompleteCheckRun {
            id: state.check_run,
            name: check_run_name(&report.experiment),
            details_url: report.details_url.clone(),
            conclusion,
            title,
            summary: fit(&markdown, CHECK_RUN_SUMMARY_LIMIT),
            status: status_state(conclusion),
        }
    }];
    if pr.is_some() {
        let body = fit(&markdown, BODY_LIMIT);
        match (state.comment, policy.comment, report.verdict) {
            (Some(id), _, _) => actions.push(Action::UpdateComment { id, body }),
            (None, CommentPolicy::OnFailure, Verdict::Pass) => {}
            (None, _, _) => actions.push(Action::CreateComment { body }),
        }
    }
    actions
}

/// A nightly verdict: open or update the experiment's regression issue on fail, close it on pass or
/// warn; inconclusive and insufficient-baseline verdicts change nothing.
pub fn decide_nightly(report: &VerdictReport, open_issue: Option<IssueNumber>) -> Vec<Action> {
    let headline = title(&report.phase, report.verdict, &report.scores);
    match (report.verdict, open_issue) {
        (Verdict::Fail, None) => vec![Action::CreateIssue {
            title: format!("{}: {headline}", issue_title_prefix(&report.experiment)),
            body: nightly_body(report, &headline),
            labels: vec![REGRESSION_LABEL.to_owned()],
        }],
        (Verdict::Fail, Some(issue)) => {
            vec![Action::UpdateIssueBody { issue, body: nightly_body(report, &headline) }]
        }
        (Verdict::Pass | Verdict::Warn, Some(issue)) => vec![
            Action::CommentOnIssue {
                issue,
                body: format!("The nightly run passed again ({headline}); closing.{}", link(report)),
            },
            Action::CloseIssue { issue },
        ],
        _ => Vec::new(),
    }
}

fn link(report: &VerdictReport) -> String {
    report.details_url.as_deref().map(|u| format!(" [Run]({u})")).unwrap_or_default()
}

fn nightly_body(report: &VerdictReport, headline: &str) -> String {
    let intro = format!("The nightly run of `{}` failed: **{headline}**.{}\n\n", report.experiment, link(report));
    fit(&format!("{intro}{}", report.markdown), BODY_LIMIT)
}

pub(crate) fn fit_line(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(limit.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Where a PR delivery goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub repo: RepoName,
    pub sha: CommitSha,
    /// `None` for runs without a PR (workflow route on a branch): no comment.
    pub pr: Option<PrNumber>,
}

/// Applies the decisions through a sink.
#[derive(Debug)]
pub struct Reporter<S> {
    sink: S,
    policy: Policy,
}

impl<S: GithubSink> Reporter<S> {
    pub fn new(sink: S, policy: Policy) -> Self {
        Reporter { sink, policy }
    }

    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// A PR run was submitted: creates the in-progress check run `phasegate / <experiment>`.
    pub async fn on_run_submitted(
        &self,
        target: &Target,
        experiment: &str,
        details_url: Option<&str>,
        previous: Delivery,
    ) -> Result<Delivery, DeliveryError> {
        let actions = decide_submitted(experiment, details_url, previous.checks_forbidden);
        self.apply(target, experiment, actions, previous).await
    }

    /// A fork PR is held until a maintainer adds `label`; the check run says so.
    pub async fn on_waiting_for_label(
        &self,
        target: &Target,
        experiment: &str,
        label: &str,
        previous: Delivery,
    ) -> Result<Delivery, DeliveryError> {
        let actions = decide_waiting_for_label(experiment, label, previous.checks_forbidden);
        self.apply(target, experiment, actions, previous).await
    }

    /// A PR run ended without a verdict (failed, cancelled, superseded): completes its check run
    /// (or posts a status) saying so. Safe to call again with the returned [`Delivery`].
    pub async fn on_run_ended(
        &self,
        target: &Target,
        run: &EndedRun,
        previous: Delivery,
    ) -> Result<Delivery, DeliveryError> {
        let state =
            PrState { check_run: previous.check_run, comment: None, checks_forbidden: previous.checks_forbidden };
        let actions = decide_run_ended(run, state);
        self.apply(target, &run.experiment, actions, previous).await
    }

    /// Something to show on a PR head that has no run (a fork waiting for its label, a webhook
    /// event that could not start a run): a completed check run, or a status.
    pub async fn on_notice(
        &self,
        target: &Target,
        experiment: &str,
        notice: &Notice,
        previous: Delivery,
    ) -> Result<Delivery, DeliveryError> {
        let actions = decide_notice(experiment, notice, previous.checks_forbidden);
        self.apply(target, experiment, actions, previous).await
    }

    /// The gate decided: completes the check run and creates or updates the one PR comment.
    /// Safe to call again with the returned (or error-carried) [`Delivery`] until it succeeds.
    pub async fn on_verdict(
        &self,
        target: &Target,
        report: &VerdictReport,
        previous: Delivery,
    ) -> Result<Delivery, DeliveryError> {
        let fail = |source| DeliveryError { delivery: previous, source };
        let marker = gate_rules::report::marker(&report.experiment);
        let comment = match target.pr {
            Some(pr) => self.sink.find_comment_with_marker(&target.repo, pr, &marker).await.map_err(fail)?,
            None => None,
        };
        let state = PrState { check_run: previous.check_run, comment, checks_forbidden: previous.checks_forbidden };
        let actions = decide_verdict(report, state, target.pr, self.policy);
        self.apply(target, &report.experiment, actions, Delivery { comment, ..previous }).await
    }

    /// A nightly verdict on `repo`: opens, updates or closes the experiment's regression issue.
    pub async fn on_nightly_verdict(&self, repo: &RepoName, report: &VerdictReport) -> Result<Delivery, DeliveryError> {
        let fail = |source| DeliveryError { delivery: Delivery::default(), source };
        let prefix = issue_title_prefix(&report.experiment);
        let open = self.sink.find_open_issue(repo, REGRESSION_LABEL, &prefix).await.map_err(fail)?;
        let mut delivery = Delivery { issue: open, ..Delivery::default() };
        for action in decide_nightly(report, open) {
            let result = match action {
                Action::CreateIssue { title, body, labels } => {
                    self.sink.create_issue(repo, &title, &body, &labels).await.map(|n| delivery.issue = Some(n))
                }
                Action::UpdateIssueBody { issue, body } => self.sink.update_issue_body(repo, issue, &body).await,
                Action::CommentOnIssue { issue, body } => {
                    self.sink.comment_on_issue(repo, issue, &body).await.map(drop)
                }
                Action::CloseIssue { issue } => {
                    self.sink.close_issue(repo, issue).await.map(|()| delivery.issue = None)
                }
                other => unreachable!("decide_nightly returned a PR action: {other:?}"),
            };
            result.map_err(|source| DeliveryError { delivery, source })?;
        }
        Ok(delivery)
    }

    async fn apply(
        &self,
        target: &Target,
        experiment: &str,
        actions: Vec<Action>,
        mut delivery: Delivery,
    ) -> Result<Delivery, DeliveryError> {
        for action in actions {
            if let Err(source) = self.apply_one(target, experiment, action, &mut delivery).await {
                return Err(DeliveryError { delivery, source });
            }
        }
        Ok(delivery)
    }

    async fn apply_one(
        &self,
        target: &Target,
        experiment: &str,
        action: Action,
        delivery: &mut Delivery,
    ) -> Result<(), SinkError> {
        let (repo, sha) = (&target.repo, &target.sha);
        match action {
            Action::CreateCheckRun { name, details_url } => {
                match self.sink.create_check_run(repo, sha, &name, details_url.as_deref()).await {
                    Ok(id) => delivery.check_run = Some(id),
                    Err(SinkError::Forbidden { .. }) => {
                        delivery.checks_forbidden = true;
                        let context = status_context(experiment);
                        let url = details_url.as_deref();
                        self.sink.create_status(repo, sha, StatusState::Pending, &context, IN_PROGRESS, url).await?;
                    }
                    Err(e) => return Err(e),
                }
            }
            Action::CompleteCheckRun { id, name, details_url, conclusion, title, summary, status } => {
                match self.complete(target, id, &name, details_url.as_deref(), conclusion, &title, &summary).await {
                    Ok(id) => delivery.check_run = Some(id),
                    Err(SinkError::Forbidden { .. }) => {
                        delivery.checks_forbidden = true;
                        let (context, description) =
                            (status_context(experiment), fit_line(&title, STATUS_DESCRIPTION_LIMIT));
                        let url = details_url.as_deref();
                        self.sink.create_status(repo, sha, status, &context, &description, url).await?;
                    }
                    Err(e) => return Err(e),
                }
            }
            Action::CreateStatus { state, context, description, target_url } => {
                self.sink.create_status(repo, sha, state, &context, &description, target_url.as_deref()).await?;
            }
            Action::CreateComment { body } => {
                let Some(pr) = target.pr else { return Ok(()) };
                delivery.comment = Some(self.sink.create_comment(repo, pr, &body).await?);
            }
            Action::UpdateComment { id, body } => self.sink.update_comment(repo, id, &body).await?,
            other => unreachable!("PR decisions never return issue actions: {other:?}"),
        }
        Ok(())
    }

    #[expect(clippy::too_many_arguments, reason = "one check-run completion, spelled out")]
    async fn complete(
        &self,
        target: &Target,
        id: Option<CheckRunId>,
        name: &str,
        details_url: Option<&str>,
        conclusion: Conclusion,
        title: &str,
        summary: &str,
    ) -> Result<CheckRunId, SinkError> {
        let id = match id {
            Some(id) => id,
            None => self.sink.create_check_run(&target.repo, &target.sha, name, details_url).await?,
        };
        self.sink.complete_check_run(&target.repo, id, conclusion, title, summary).await?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests;
