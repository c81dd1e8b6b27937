use super::*;
use crate::fake::{FakeSink, SinkCall};

const EXP: &str = "persona";
const URL: &str = "http://dash.local/runs/7";

fn report(verdict: Verdict) -> VerdictReport {
    VerdictReport {
        experiment: EXP.to_owned(),
        phase: "10".to_owned(),
        verdict,
        scores: vec![Some(5.5), Some(3.125)],
        markdown: format!("{}\n# report", gate_rules::report::marker(EXP)),
        details_url: Some(URL.to_owned()),
        overridden: None,
    }
}

fn target() -> Target {
    Target {
        repo: RepoName::try_from("acme/lab").unwrap(),
        sha: CommitSha::try_from("0123456789abcdef0123456789abcdef01234567").unwrap(),
        pr: Some(PrNumber(12)),
    }
}

fn kinds(actions: &[Action]) -> Vec<&'static str> {
    actions
        .iter()
        .map(|a| match a {
            Action::CreateCheckRun { .. } => "create-check",
            Action::CompleteCheckRun { id: Some(_), .. } => "complete-check",
            Action::CompleteCheckRun { id: None, .. } => "create+complete-check",
            Action::CreateStatus { .. } => "status",
            Action::CreateComment { .. } => "create-comment",
            Action::UpdateComment { .. } => "update-comment",
            Action::CreateIssue { .. } => "create-issue",
            Action::UpdateIssueBody { .. } => "update-issue",
            Action::CommentOnIssue { .. } => "comment-issue",
            Action::CloseIssue { .. } => "close-issue",
        })
        .collect()
}

#[test]
fn titles_show_the_trend() {
    assert_eq!(title("10", Verdict::Fail, &[Some(5.5), Some(3.125)]), "phase 10: FAIL — 5.5 → 3.125");
    assert_eq!(title("3", Verdict::Pass, &[Some(2.0), None, Some(2.25)]), "phase 3: PASS — 2 → — → 2.25");
    assert_eq!(title("1", Verdict::InsufficientBaseline, &[]), "phase 1: INSUFFICIENT_BASELINE");
    assert_eq!(title("4", Verdict::Warn, &[Some(1.0 / 3.0)]), "phase 4: WARN — 0.333");
}

#[test]
fn conclusion_table() {
    use InconclusivePolicy::{Failure, Neutral};
    let table = [
        (Verdict::Pass, Neutral, Conclusion::Success),
        (Verdict::Warn, Neutral, Conclusion::Success),
        (Verdict::Fail, Neutral, Conclusion::Failure),
        (Verdict::Inconclusive, Neutral, Conclusion::Neutral),
        (Verdict::InsufficientBaseline, Neutral, Conclusion::Neutral),
        (Verdict::Pass, Failure, Conclusion::Success),
        (Verdict::Fail, Failure, Conclusion::Failure),
        (Verdict::Inconclusive, Failure, Conclusion::Failure),
        (Verdict::InsufficientBaseline, Failure, Conclusion::Failure),
    ];
    for (verdict, policy, expected) in table {
        assert_eq!(conclusion(verdict, policy), expected, "{verdict} {policy:?}");
    }
    assert_eq!(status_state(Conclusion::Neutral), StatusState::Success);
    assert_eq!(status_state(Conclusion::Failure), StatusState::Failure);
}

/// verdict, comment policy, stored check run, comment found by marker, checks forbidden, PR, actions.
type Row =
    (Verdict, CommentPolicy, Option<CheckRunId>, Option<CommentId>, bool, Option<PrNumber>, &'static [&'static str]);

#[test]
fn verdict_decision_table() {
    use CommentPolicy::{Always, OnFailure};
    let run = Some(CheckRunId(5));
    let existing = Some(CommentId(9));
    let pr = Some(PrNumber(12));
    #[rustfmt::skip]
    let table: [Row; 10] = [
        (Verdict::Fail, Always, run, None, false, pr, &["complete-check", "create-comment"]),
        (Verdict::Fail, Always, run, existing, false, pr, &["complete-check", "update-comment"]),
        (Verdict::Pass, Always, run, None, false, pr, &["complete-check", "create-comment"]),
        (Verdict::Pass, OnFailure, run, None, false, pr, &["complete-check"]),
        (Verdict::Pass, OnFailure, run, existing, false, pr, &["complete-check", "update-comment"]),
        (Verdict::Warn, OnFailure, run, None, false, pr, &["complete-check", "create-comment"]),
        (Verdict::Inconclusive, OnFailure, run, None, false, pr, &["complete-check", "create-comment"]),
        (Verdict::Fail, Always, None, None, false, pr, &["create+complete-check", "create-comment"]),
        (Verdict::Fail, Always, run, existing, true, pr, &["status", "update-comment"]),
        (Verdict::Fail, Always, run, None, false, None, &["complete-check"]),
    ];
    for (verdict, comment, check_run, found, forbidden, pr, expected) in table {
        let state = PrState { check_run, comment: found, checks_forbidden: forbidden };
        let policy = Policy { comment, inconclusive: InconclusivePolicy::Neutral };
        let actions = decide_verdict(&report(verdict), state, pr, policy);
        assert_eq!(kinds(&actions), expected, "{verdict} {comment:?} {state:?} {pr:?}");
    }
}

#[test]
fn completed_check_run_carries_title_and_report() {
    let actions = decide_verdict(&report(Verdict::Fail), PrState::default(), None, Policy::default());
    let [Action::CompleteCheckRun { name, conclusion, title, summary, details_url, .. }] = &actions[..] else {
        panic!("{actions:?}")
    };
    assert_eq!(name, "phasegate / persona");
    assert_eq!(*conclusion, Conclusion::Failure);
    assert_eq!(title, "phase 10: FAIL — 5.5 → 3.125");
    assert_eq!(summary, &report(Verdict::Fail).markdown);
    assert_eq!(details_url.as_deref(), Some(URL));
}

#[test]
fn an_overridden_fail_completes_the_check_as_success_and_says_who_and_why() {
    let mut r = report(Verdict::Fail);
    r.overridden = Some(Override { by: "ana".into(), reason: "the drop is the new persona\non purpose".into() });
    let state = PrState { check_run: Some(CheckRunId(4)), comment: Some(CommentId(9)), checks_forbidden: false };
    let actions = decide_verdict(&r, state, Some(PrNumber(1)), Policy::default());
    let [Action::CompleteCheckRun { conclusion, title, summary, status, .. }, Action::UpdateComment { body, .. }] =
        &actions[..]
    else {
        panic!("{actions:?}")
    };
    assert_eq!(*conclusion, Conclusion::Success);
    assert_eq!(*status, StatusState::Success);
    assert_eq!(title, "phase 10: FAIL — 5.5 → 3.125 (overridden by ana)");
    for text in [summary, body] {
        assert!(text.starts_with(&format!("{}\n", gate_rules::report::marker(EXP))), "the marker stays first: {text}");
        assert!(
            text.contains("**Overridden by ana**") && text.contains("the drop is the new persona on purpose"),
            "{text}"
        );
        assert!(text.contains("the verdict stays FAIL"), "{text}");
    }
    // Without an override the same verdict fails the check.
    let plain = decide_verdict(&report(Verdict::Fail), state, Some(PrNumber(1)), Policy::default());
    let Action::CompleteCheckRun { conclusion, .. } = &plain[0] else { panic!() };
    assert_eq!(*conclusion, Conclusion::Failure);
}

#[test]
fn long_reports_are_cut_with_a_note_and_keep_the_marker() {
    let mut r = report(Verdict::Fail);
    r.markdown.push_str(&"x".repeat(CHECK_RUN_SUMMARY_LIMIT * 2));
    let actions = decide_verdict(&r, PrState::default(), Some(PrNumber(1)), Policy::default());
    let Action::CompleteCheckRun { summary, .. } = &actions[0] else { panic!() };
    assert_eq!(summary.chars().count(), CHECK_RUN_SUMMARY_LIMIT);
    assert!(summary.starts_with(&gate_rules::report::marker(EXP)));
    assert!(summary.contains("this report was cut at 65535 characters"));
    let Action::CreateComment { body } = &actions[1] else { panic!() };
    assert_eq!(body.chars().count(), BODY_LIMIT);
    assert_eq!(fit("short", 10), "short");
}

#[test]
fn nightly_decision_table() {
    let open = Some(IssueNumber(3));
    #[rustfmt::skip]
    let table: [(Verdict, Option<IssueNumber>, &[&str]); 8] = [
        (Verdict::Fail, None, &["create-issue"]),
        (Verdict::Fail, open, &["update-issue"]),
        (Verdict::Pass, open, &["comment-issue", "close-issue"]),
        (Verdict::Warn, open, &["comment-issue", "close-issue"]),
        (Verdict::Pass, None, &[]),
        (Verdict::Inconclusive, open, &[]),
        (Verdict::InsufficientBaseline, None, &[]),
        (Verdict::Inconclusive, None, &[]),
    ];
    for (verdict, issue, expected) in table {
        assert_eq!(kinds(&decide_nightly(&report(verdict), issue)), expected, "{verdict} {issue:?}");
    }
    let [Action::CreateIssue { title, labels, .. }] = &decide_nightly(&report(Verdict::Fail), None)[..] else {
        panic!()
    };
    assert_eq!(title, "phasegate regression: persona: phase 10: FAIL — 5.5 → 3.125");
    assert_eq!(labels, &[REGRESSION_LABEL.to_owned()]);
}

#[tokio::test]
async fn submitted_then_verdict_then_second_push_updates_the_same_comment() {
    let reporter = Reporter::new(FakeSink::new(), Policy::default());
    let t = target();
    let d = reporter.on_run_submitted(&t, EXP, Some(URL), Delivery::default()).await.unwrap();
    let run = d.check_run.unwrap();
    let d = reporter.on_verdict(&t, &report(Verdict::Fail), d).await.unwrap();
    let comment = d.comment.unwrap();
    let d2 = reporter.on_verdict(&t, &report(Verdict::Pass), Delivery { check_run: None, ..d }).await.unwrap();
    assert_eq!(d2.comment, Some(comment));
    let writes = reporter.sink().writes();
    let creates = writes.iter().filter(|c| matches!(c, SinkCall::CreateComment { .. })).count();
    let updates: Vec<_> =
        writes.iter().filter(|c| matches!(c, SinkCall::UpdateComment { id, .. } if *id == comment)).collect();
    assert_eq!((creates, updates.len()), (1, 1), "{writes:?}");
    assert!(writes.iter().any(|c| matches!(c, SinkCall::CompleteCheckRun { id, .. } if *id == run)));
}

#[tokio::test]
async fn forbidden_check_runs_fall_back_to_statuses() {
    let reporter = Reporter::new(FakeSink::new().forbid_check_runs(), Policy::default());
    let t = target();
    let d = reporter.on_run_submitted(&t, EXP, Some(URL), Delivery::default()).await.unwrap();
    assert!(d.checks_forbidden && d.check_run.is_none());
    reporter.on_verdict(&t, &report(Verdict::Fail), d).await.unwrap();
    let statuses: Vec<_> = reporter
        .sink()
        .writes()
        .into_iter()
        .filter_map(|c| match c {
            SinkCall::CreateStatus { state, context, description, .. } => Some((state, context, description)),
            _ => None,
        })
        .collect();
    let context = "phasegate/persona".to_owned();
    assert_eq!(
        statuses,
        vec![
            (StatusState::Pending, context.clone(), IN_PROGRESS.to_owned()),
            (StatusState::Failure, context, "phase 10: FAIL — 5.5 → 3.125".to_owned()),
        ]
    );
}

#[tokio::test]
async fn nightly_opens_updates_and_closes_one_issue() {
    let reporter = Reporter::new(FakeSink::new(), Policy::default());
    let repo = target().repo;
    let opened = reporter.on_nightly_verdict(&repo, &report(Verdict::Fail)).await.unwrap().issue.unwrap();
    let again = reporter.on_nightly_verdict(&repo, &report(Verdict::Fail)).await.unwrap();
    assert_eq!(again.issue, Some(opened));
    let closed = reporter.on_nightly_verdict(&repo, &report(Verdict::Pass)).await.unwrap();
    assert_eq!(closed.issue, None);
    let writes = reporter.sink().writes();
    assert!(
        matches!(&writes[..], [
        SinkCall::CreateIssue { .. },
        SinkCall::UpdateIssueBody { issue: a, .. },
        SinkCall::CommentOnIssue { issue: b, .. },
        SinkCall::CloseIssue { issue: c, .. },
    ] if *a == opened && *b == opened && *c == opened),
        "{writes:?}"
    );
}

#[tokio::test]
async fn fork_waiting_for_label_says_so_in_a_neutral_check_run() {
    let reporter = Reporter::new(FakeSink::new(), Policy::default());
    reporter.on_waiting_for_label(&target(), EXP, "phasegate:run", Delivery::default()).await.unwrap();
    let writes = reporter.sink().writes();
    assert!(
        matches!(&writes[..], [
        SinkCall::CreateCheckRun { .. },
        SinkCall::CompleteCheckRun { conclusion: Conclusion::Neutral, title, .. },
    ] if title.contains("`phasegate:run`")),
        "{writes:?}"
    );
}

#[tokio::test]
async fn an_ended_run_completes_the_submitted_check_run_and_falls_back_to_an_error_status() {
    let reporter = Reporter::new(FakeSink::new(), Policy::default());
    let t = target();
    let d = reporter.on_run_submitted(&t, EXP, Some(URL), Delivery::default()).await.unwrap();
    let run = EndedRun {
        experiment: EXP.to_owned(),
        phase: "10".to_owned(),
        end: RunEnd::Failed { stage: Some("finetune".into()), error: "exit status 3".into() },
        details_url: Some(URL.to_owned()),
    };
    let after = reporter.on_run_ended(&t, &run, d).await.unwrap();
    assert_eq!(after, d, "nothing new to remember");
    let writes = reporter.sink().writes();
    assert!(
        matches!(&writes[1..], [SinkCall::CompleteCheckRun { id, conclusion: Conclusion::Failure, title, .. }]
            if Some(*id) == d.check_run && title == "phase 10: run failed — finetune: exit status 3"),
        "{writes:?}"
    );

    // Check runs forbidden only now: the completion falls back to an `error` status, not `failure`.
    let reporter = Reporter::new(FakeSink::new().forbid_check_runs(), Policy::default());
    let cancelled = EndedRun { end: RunEnd::Cancelled { reason: "cancelled by user".into() }, ..run };
    let d = reporter.on_run_ended(&t, &cancelled, Delivery::default()).await.unwrap();
    assert!(d.checks_forbidden);
    let writes = reporter.sink().writes();
    assert!(
        matches!(writes.last(), Some(SinkCall::CreateStatus { state: StatusState::Error, description, .. })
            if description == "phase 10: run cancelled"),
        "{writes:?}"
    );
}

#[tokio::test]
async fn a_start_failure_notice_is_one_completed_failure_check_run() {
    let reporter = Reporter::new(FakeSink::new(), Policy::default());
    let notice = Notice::StartFailed { file: Some("experiments/persona/phase.toml".into()), error: "not found".into() };
    let d = reporter.on_notice(&target(), EXP, &notice, Delivery::default()).await.unwrap();
    let writes = reporter.sink().writes();
    assert!(
        matches!(&writes[..], [
            SinkCall::CreateCheckRun { name, .. },
            SinkCall::CompleteCheckRun { id, conclusion: Conclusion::Failure, title, .. },
        ] if name == "phasegate / persona" && Some(*id) == d.check_run
            && title == "phasegate could not start: experiments/persona/phase.toml: not found"),
        "{writes:?}"
    );
}
