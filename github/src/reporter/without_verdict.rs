//! Outcomes without a verdict: a PR run that ended before the gate decided, and notices on a PR
//! head that has no run at all (a fork waiting for its label, a webhook event that could not start
//! a run). Each becomes one completed check run, or one commit status without `checks: write`.
//!
//! Conclusions and states, and why: a verdict's `failure` means "the gate found a regression", so
//! an outcome without a verdict never posts the `failure` *status*; it posts `error` ("phasegate
//! could not decide"), which blocks a required status like `failure` does.
//!
//! | outcome | check run | commit status |
//! |---|---|---|
//! | a stage failed, or the run could not be scheduled | `failure` | `error` |
//! | cancelled by an operator | `cancelled` | `error` |
//! | superseded by a newer push | `cancelled` | `error` |
//! | every stage succeeded, but the spec has no `[gate]` | `neutral` | `success` |
//! | could not start (tarball, spec file) | `failure` | `error` |
//! | fork PR waiting for its label | `neutral` | `pending` |

use super::{
    Action, CHECK_RUN_SUMMARY_LIMIT, PrState, STATUS_DESCRIPTION_LIMIT, check_run_name, decide_waiting_for_label, fit,
    fit_line, status_context,
};
use crate::sink::{Conclusion, StatusState};

/// How much of an error's first line a title shows, in characters.
const TITLE_DETAIL_LIMIT: usize = 200;
/// How much of an error a summary shows, in characters (GitHub's limit is far above).
const SUMMARY_ERROR_LIMIT: usize = 8_000;

/// Why a PR run ended without a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// Stage `stage` failed with `error`; `stage: None` when the run could not be scheduled at all
    /// (no agent can ever run it).
    Failed { stage: Option<String>, error: String },
    /// An operator cancelled the run; `reason` as the coordinator recorded it.
    Cancelled { reason: String },
    /// A newer push to the pull request started run `by`, which cancelled this one.
    Superseded { by: u64, details_url: Option<String> },
    /// Every stage succeeded, but the spec has no `[gate]` stage: nothing was judged.
    NoGate,
}

/// A PR run that ended without a verdict, as its check run shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedRun {
    pub experiment: String,
    /// The phase's label ("10").
    pub phase: String,
    pub end: RunEnd,
    /// Link to the run: the dashboard when configured.
    pub details_url: Option<String>,
}

/// Something shown on a PR head that has no run. Stored (as JSON) until it is delivered, so it
/// survives a coordinator restart.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// A fork PR is held until a maintainer adds `label`.
    WaitingForLabel { label: String },
    /// A webhook event could not start a run: `error`, caused by the repository file `file` when
    /// one is at fault (the experiment's phase spec).
    StartFailed { file: Option<String>, error: String },
}

impl Notice {
    /// `waiting_for_label` | `start_failed`, as stored beside the JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Notice::WaitingForLabel { .. } => "waiting_for_label",
            Notice::StartFailed { .. } => "start_failed",
        }
    }
}

/// The check-run conclusion and the fallback commit status of a run that ended without a verdict.
pub fn run_end_outcome(end: &RunEnd) -> (Conclusion, StatusState) {
    match end {
        RunEnd::Failed { .. } => (Conclusion::Failure, StatusState::Error),
        RunEnd::Cancelled { .. } | RunEnd::Superseded { .. } => (Conclusion::Cancelled, StatusState::Error),
        RunEnd::NoGate => (Conclusion::Neutral, StatusState::Success),
    }
}

/// A PR run ended without a verdict: complete its check run (creating it when the run never got
/// one), or post a status without checks permission. The PR comment is left alone: it carries the
/// last verdict's report.
pub fn decide_run_ended(run: &EndedRun, state: PrState) -> Vec<Action> {
    let (conclusion, status) = run_end_outcome(&run.end);
    let title = ended_title(&run.phase, &run.end);
    if state.checks_forbidden {
        return vec![Action::CreateStatus {
            state: status,
            context: status_context(&run.experiment),
            description: fit_line(&title, STATUS_DESCRIPTION_LIMIT),
            target_url: run.details_url.clone(),
        }];
    }
    vec![Action::CompleteCheckRun {
        id: state.check_run,
        name: check_run_name(&run.experiment),
        details_url: run.details_url.clone(),
        conclusion,
        title,
        summary: fit(&ended_summary(run), CHECK_RUN_SUMMARY_LIMIT),
        status,
    }]
}

/// What to show for `notice` on the head of a PR of `experiment`.
pub fn decide_notice(experiment: &str, notice: &Notice, checks_forbidden: bool) -> Vec<Action> {
    match notice {
        Notice::WaitingForLabel { label } => decide_waiting_for_label(experiment, label, checks_forbidden),
        Notice::StartFailed { file, error } => {
            decide_start_failed(experiment, file.as_deref(), error, checks_forbidden)
        }
    }
}

/// A webhook event could not start a run: a completed `failure` check run naming the file and the
/// error, or an `error` status.
fn decide_start_failed(experiment: &str, file: Option<&str>, error: &str, checks_forbidden: bool) -> Vec<Action> {
    let detail = first_line(error);
    let title = match file {
        Some(file) => format!("phasegate could not start: {file}: {detail}"),
        None => format!("phasegate could not start: {detail}"),
    };
    if checks_forbidden {
        return vec![Action::CreateStatus {
            state: StatusState::Error,
            context: status_context(experiment),
            description: fit_line(&title, STATUS_DESCRIPTION_LIMIT),
            target_url: None,
        }];
    }
    let summary = match file {
        Some(file) => format!(
            "phasegate could not start a run of `{experiment}` for this commit: the repository file `{file}` \
             could not be used.\n\n{}\n\nFix the file and push again.",
            code_block(error)
        ),
        None => format!(
            "phasegate could not start a run of `{experiment}` for this commit.\n\n{}\n\nThe next push to the \
             pull request tries again.",
            code_block(error)
        ),
    };
    vec![Action::CompleteCheckRun {
        id: None,
        name: check_run_name(experiment),
        details_url: None,
        conclusion: Conclusion::Failure,
        title,
        summary: fit(&summary, CHECK_RUN_SUMMARY_LIMIT),
        status: StatusState::Error,
    }]
}

/// "phase 10: run failed — finetune: exit status 3", "phase 10: run superseded by run 12".
fn ended_title(phase: &str, end: &RunEnd) -> String {
    let head = format!("phase {phase}: ");
    let tail = match end {
        RunEnd::Failed { stage, error } => match (stage, first_line(error)) {
            (Some(stage), detail) if detail.is_empty() => format!("run failed — stage {stage}"),
            (Some(stage), detail) => format!("run failed — {stage}: {detail}"),
            (None, detail) if detail.is_empty() => "run failed".to_owned(),
            (None, detail) => format!("run failed — {detail}"),
        },
        RunEnd::Cancelled { .. } => "run cancelled".to_owned(),
        RunEnd::Superseded { by, .. } => format!("run superseded by run {by}"),
        RunEnd::NoGate => "run finished without a verdict".to_owned(),
    };
    head + &tail
}

fn ended_summary(run: &EndedRun) -> String {
    let body = match &run.end {
        RunEnd::Failed { stage: Some(stage), error } => format!(
            "The run ended without a verdict: stage `{stage}` failed, so the gate did not compare this phase with \
             the accepted history.\n\n{}",
            code_block(error)
        ),
        RunEnd::Failed { stage: None, error } => {
            format!("The run ended without a verdict: it could not be scheduled.\n\n{}", code_block(error))
        }
        RunEnd::Cancelled { reason } => {
            format!("The run was cancelled before the gate decided ({}); there is no verdict.", first_line(reason))
        }
        RunEnd::Superseded { by, details_url } => {
            let newer = match details_url {
                Some(url) => format!("[run {by}]({url})"),
                None => format!("run {by}"),
            };
            format!(
                "A newer push to this pull request started {newer}, which cancelled this run before the gate \
                 decided; there is no verdict for this commit. The newer run reports on its own head."
            )
        }
        RunEnd::NoGate => "Every stage succeeded, but the phase spec has no `[gate]` stage, so nothing was \
                           compared with the accepted history."
            .to_owned(),
    };
    match &run.details_url {
        Some(url) => format!("{body}\n\n[Run details]({url})"),
        None => body,
    }
}

/// The first non-empty line of `text`, trimmed and cut to fit a title.
fn first_line(text: &str) -> String {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default();
    fit_line(line, TITLE_DETAIL_LIMIT)
}

/// `text` in a fenced block whose fence is longer than any run of backticks inside it.
fn code_block(text: &str) -> String {
    let text = fit_line(text.trim_end(), SUMMARY_ERROR_LIMIT);
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}text\n{text}\n{fence}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::CheckRunId;

    fn ended(end: RunEnd) -> EndedRun {
        EndedRun {
            experiment: "persona".to_owned(),
            phase: "10".to_owned(),
            end,
            details_url: Some("http://dash.local/runs/7".to_owned()),
        }
    }

    fn failed(stage: Option<&str>, error: &str) -> RunEnd {
        RunEnd::Failed { stage: stage.map(str::to_owned), error: error.to_owned() }
    }

    #[test]
    fn outcome_table() {
        let superseded = RunEnd::Superseded { by: 12, details_url: None };
        #[rustfmt::skip]
        let table = [
            (failed(Some("finetune"), "exit status 3"), Conclusion::Failure, StatusState::Error,
                "phase 10: run failed — finetune: exit status 3"),
            (failed(Some("gate"), ""), Conclusion::Failure, StatusState::Error, "phase 10: run failed — stage gate"),
            (failed(None, "no registered agent can ever run it\nhint: x"), Conclusion::Failure, StatusState::Error,
                "phase 10: run failed — no registered agent can ever run it"),
            (RunEnd::Cancelled { reason: "cancelled by user".into() }, Conclusion::Cancelled, StatusState::Error,
                "phase 10: run cancelled"),
            (superseded, Conclusion::Cancelled, StatusState::Error, "phase 10: run superseded by run 12"),
            (RunEnd::NoGate, Conclusion::Neutral, StatusState::Success, "phase 10: run finished without a verdict"),
        ];
        for (end, conclusion, status, title) in table {
            assert_eq!(run_end_outcome(&end), (conclusion, status), "{end:?}");
            assert_eq!(ended_title("10", &end), title);
        }
    }

    #[test]
    fn an_ended_run_completes_its_check_run_or_posts_an_error_status() {
        let run = ended(failed(Some("finetune"), "exit status 3\nstderr: boom"));
        let state = PrState { check_run: Some(CheckRunId(5)), ..PrState::default() };
        let [Action::CompleteCheckRun { id, conclusion, title, summary, status, details_url, .. }] =
            &decide_run_ended(&run, state)[..]
        else {
            panic!()
        };
        assert_eq!((*id, *conclusion, *status), (Some(CheckRunId(5)), Conclusion::Failure, StatusState::Error));
        assert_eq!(title, "phase 10: run failed — finetune: exit status 3");
        assert!(
            summary.contains("stage `finetune` failed")
                && summary.contains("```text\nexit status 3\nstderr: boom\n```")
        );
        assert!(summary.ends_with("[Run details](http://dash.local/runs/7)"), "{summary}");
        assert_eq!(details_url.as_deref(), Some("http://dash.local/runs/7"));

        let forbidden = PrState { checks_forbidden: true, ..state };
        let actions = decide_run_ended(&ended(RunEnd::Cancelled { reason: "cancelled by user".into() }), forbidden);
        assert_eq!(
            actions,
            [Action::CreateStatus {
                state: StatusState::Error,
                context: "phasegate/persona".into(),
                description: "phase 10: run cancelled".into(),
                target_url: Some("http://dash.local/runs/7".into()),
            }]
        );
    }

    #[test]
    fn a_superseded_run_names_the_newer_run() {
        let end = RunEnd::Superseded { by: 12, details_url: Some("http://dash.local/runs/12".into()) };
        let [Action::CompleteCheckRun { id: None, conclusion: Conclusion::Cancelled, summary, .. }] =
            &decide_run_ended(&ended(end), PrState::default())[..]
        else {
            panic!()
        };
        assert!(summary.starts_with("A newer push to this pull request started [run 12](http://dash.local/runs/12)"));
    }

    #[test]
    fn start_failures_name_the_file_and_the_error() {
        let notice = Notice::StartFailed {
            file: Some("experiments/persona/phase.toml".into()),
            error: "TOML parse error at line 3\n```x```".into(),
        };
        let [Action::CompleteCheckRun { id: None, conclusion, title, summary, status, .. }] =
            &decide_notice("persona", &notice, false)[..]
        else {
            panic!()
        };
        assert_eq!((*conclusion, *status), (Conclusion::Failure, StatusState::Error));
        assert_eq!(title, "phasegate could not start: experiments/persona/phase.toml: TOML parse error at line 3");
        assert!(summary.contains("````text\nTOML parse error at line 3\n```x```\n````"), "{summary}");
        let [Action::CreateStatus { state: StatusState::Error, description, .. }] =
            &decide_notice("persona", &notice, true)[..]
        else {
            panic!()
        };
        assert!(description.chars().count() <= STATUS_DESCRIPTION_LIMIT);
        let no_file = Notice::StartFailed { file: None, error: "failed to download tarball: 404".into() };
        let [Action::CompleteCheckRun { title, .. }] = &decide_notice("persona", &no_file, false)[..] else { panic!() };
        assert_eq!(title, "phasegate could not start: failed to download tarball: 404");
    }

    #[test]
    fn waiting_for_label_falls_back_to_a_pending_status() {
        let notice = Notice::WaitingForLabel { label: "phasegate:run".into() };
        let [Action::CompleteCheckRun { conclusion: Conclusion::Neutral, status: StatusState::Pending, .. }] =
            &decide_notice("persona", &notice, false)[..]
        else {
            panic!()
        };
        let json = serde_json::to_string(&notice).unwrap();
        assert_eq!(json, r#"{"kind":"waiting_for_label","label":"phasegate:run"}"#);
        assert_eq!(serde_json::from_str::<Notice>(&json).unwrap(), notice);
        assert_eq!(notice.kind(), "waiting_for_label");
    }
}
