//! The coordinator's GitHub side with the recording `FakeSink`, a temp-file SQLite store and the
//! real shell (no runtime loops: each test drives `sync` and `on_event` itself).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use phasegate_github::webhook::{Event, IgnoreReason, PrAction, PullRequestEvent, PushEvent};
use phasegate_github::{
    CheckRunId, CommentId, CommitSha, Conclusion, ConfigError, Delivery, DeliveryError, FakeSink, GithubConfig,
    PrNumber, RepoName, SinkCall, SinkError,
};
use phasegate_proto::domain::{AgentName, Lease, Priority, RunId, Trigger};
use phasegate_proto::pb;

use super::GithubSetup;
use super::config::parse_config;
use super::delivery::Deliverer;
use super::delivery::{
    DELIVERED, DeliveryPolicy, GIVEN_UP, Kind, PENDING, Step, after_attempt, next_step, redeliver_with, trend,
};
use super::notices::SUPERSEDED;
use super::service::{EventOutcome, GithubService};
use crate::artifacts::ArtifactStore;
use crate::shell::{Shared, ShellConfig};
use crate::store::{GithubDeliveryRecord, PhaseRecord, SqliteStore, Store, VerdictRecord};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const CONFIG: &str = r#"
[github]
api_url = "http://127.0.0.1:9"
max_retries = 0

[[experiment]]
name = "persona"
repo = "acme/lab"
paths = ["experiments/**"]
spec = "experiments/persona/phase.toml"
dashboard_url = "http://dash.test/runs/{run}"
override_label = "phasegate:override"
"#;
const SPEC: &str = r#"
experiment = "persona"
phase = "10"
[finetune]
command = ["true"]
requires = { gpu = false, vram_mib = 0, labels = [] }
[gate]
config = "gate.toml"
results = ["output/eval_*.json"]
"#;

fn env(key: &str) -> Option<String> {
    (key == phasegate_github::config::ENV_TOKEN).then(|| "t0ken".to_owned())
}

fn no_files(path: &Path) -> Result<String, ConfigError> {
    Err(ConfigError::SecretFile { path: path.to_owned(), source: std::io::ErrorKind::NotFound.into() })
}

fn config() -> GithubConfig {
    parse_config(CONFIG, Path::new("phasegate.toml"), &env, &no_files).unwrap().unwrap()
}

fn repo() -> RepoName {
    RepoName::try_from("acme/lab").unwrap()
}

struct Env {
    _dir: tempfile::TempDir,
    shared: Arc<Shared<SqliteStore>>,
    service: Arc<GithubService<SqliteStore, FakeSink>>,
}

async fn env_with(sink: FakeSink) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("phasegate.db")).await.unwrap();
    let artifacts = ArtifactStore::open(dir.path().join("artifacts")).unwrap();
    let shared = Shared::restore(store, artifacts, ShellConfig::default()).await.unwrap();
    let caps = pb::Capabilities { hostname: "h".into(), cpus: 1, max_jobs: 1, ..Default::default() };
    shared.register(AgentName::parse("agent", "a1").unwrap(), caps, &[], "", false).await.unwrap();
    let setup = GithubSetup { config: config(), retry: DeliveryPolicy::default() };
    let service = GithubService::new(shared.clone(), sink, &setup);
    Env { _dir: dir, shared, service }
}

impl Env {
    async fn submit(&self, pr: Option<u64>, priority: Priority) -> RunId {
        let trigger = Trigger { pr, sha: SHA.into(), branch: "b".into(), repo: "acme/lab".into() };
        self.shared.submit_as(SPEC, "phase.toml", String::new(), trigger, Some(priority), true).await.unwrap().0
    }

    async fn verdict(&self, run: RunId, verdict: &str) {
        let report = format!("{}\nphase 10: {verdict}\n", gate_rules::report::marker("persona"));
        let record = VerdictRecord { verdict: verdict.into(), report, evaluation_json: "{}".into() };
        self.shared.store.set_verdict(run, &record).await.unwrap();
    }

    async fn delivery(&self, run: RunId) -> GithubDeliveryRecord {
        self.shared.store.github_delivery(run).await.unwrap().expect("a delivery row")
    }

    fn writes(&self) -> Vec<SinkCall> {
        self.service.sink().writes()
    }
}

#[tokio::test]
async fn a_pr_run_gets_a_check_run_then_its_verdict_and_one_comment() {
    let env = env_with(FakeSink::new()).await;
    let run = env.submit(Some(7), Priority::Pr).await;
    env.service.sync(run).await;
    let url = format!("http://dash.test/runs/{run}");
    assert_eq!(
        env.writes(),
        [SinkCall::CreateCheckRun {
            repo: "acme/lab".into(),
            sha: SHA.into(),
            name: "phasegate / persona".into(),
            details_url: Some(url),
        }]
    );
    let row = env.delivery(run).await;
    assert_eq!((row.stage.as_str(), row.status.as_str(), row.attempts), ("submitted", DELIVERED, 1));
    // Nothing is due until the verdict: another change of the run sends nothing.
    env.service.sync(run).await;
    assert_eq!(env.writes().len(), 1);

    env.verdict(run, "fail").await;
    env.service.sync(run).await;
    let writes = env.writes();
    assert_eq!(writes.len(), 3, "{writes:?}");
    let SinkCall::CompleteCheckRun { id, conclusion, title, .. } = &writes[1] else { panic!("{writes:?}") };
    assert_eq!((*id, *conclusion, title.as_str()), (CheckRunId(101), Conclusion::Failure, "phase 10: FAIL"));
    assert!(matches!(&writes[2], SinkCall::CreateComment { pr: PrNumber(7), .. }), "{writes:?}");
    let row = env.delivery(run).await;
    assert_eq!((row.stage.as_str(), row.status.as_str(), row.last_error.as_str()), ("verdict", DELIVERED, ""));
    let stored: Delivery = serde_json::from_str(&row.delivery_json).unwrap();
    assert_eq!((stored.check_run, stored.comment), (Some(CheckRunId(101)), Some(CommentId(102))));
    env.service.sync(run).await;
    env.service.pass().await;
    assert_eq!(env.writes().len(), 3, "a delivered verdict is not sent again");
}

#[tokio::test]
async fn a_second_run_of_the_pr_updates_the_same_comment() {
    let env = env_with(FakeSink::new()).await;
    let first = env.submit(Some(7), Priority::Pr).await;
    env.verdict(first, "fail").await;
    env.service.sync(first).await;
    let second = env.submit(Some(7), Priority::Pr).await;
    env.verdict(second, "pass").await;
    env.service.sync(second).await;
    let writes = env.writes();
    let creates = writes.iter().filter(|c| matches!(c, SinkCall::CreateComment { .. })).count();
    assert_eq!(creates, 1, "{writes:?}");
    assert!(
        matches!(writes.last(), Some(SinkCall::UpdateComment { id: CommentId(102), body, .. }) if body.contains("pass")),
        "{writes:?}"
    );
}

#[tokio::test]
async fn runs_without_pr_or_configured_experiment_are_not_reported() {
    let env = env_with(FakeSink::new()).await;
    let manual = env.submit(None, Priority::Manual).await;
    env.verdict(manual, "fail").await;
    env.service.sync(manual).await;
    let trigger = Trigger { pr: Some(3), sha: SHA.into(), branch: "b".into(), repo: "acme/other".into() };
    let other = env.shared.submit_as(SPEC, "phase.toml", String::new(), trigger, None, true).await.unwrap().0;
    env.service.sync(other).await;
    assert!(env.service.sink().calls().is_empty());
    assert!(env.shared.store.github_delivery(manual).await.unwrap().is_none());
}

#[tokio::test]
async fn a_failing_nightly_opens_the_regression_issue() {
    let env = env_with(FakeSink::new()).await;
    let run = env.submit(None, Priority::Nightly).await;
    env.service.sync(run).await;
    assert!(env.writes().is_empty(), "nightly runs get no check run");
    env.verdict(run, "fail").await;
    env.service.sync(run).await;
    let writes = env.writes();
    assert!(
        matches!(&writes[..], [SinkCall::CreateIssue { title, labels, .. }]
            if title.starts_with("phasegate regression: persona") && labels == &["phasegate-regression"]),
        "{writes:?}"
    );
    let row = env.delivery(run).await;
    assert_eq!((row.kind.as_str(), row.status.as_str()), ("nightly", DELIVERED));
}

#[tokio::test]
async fn checks_forbidden_falls_back_to_statuses_and_remembers_it() {
    let env = env_with(FakeSink::new().forbid_check_runs()).await;
    let run = env.submit(Some(7), Priority::Pr).await;
    env.service.sync(run).await;
    env.verdict(run, "pass").await;
    env.service.sync(run).await;
    let writes = env.writes();
    let statuses: Vec<_> = writes
        .iter()
        .filter_map(|c| match c {
            SinkCall::CreateStatus { state, .. } => Some(state.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, ["pending", "success"], "{writes:?}");
    let check_run_calls = writes.iter().filter(|c| matches!(c, SinkCall::CreateCheckRun { .. })).count();
    assert_eq!(check_run_calls, 1, "the 403 is remembered in the stored delivery: {writes:?}");
}

#[tokio::test]
async fn redelivery_sends_a_delivered_verdict_again() {
    let env = env_with(FakeSink::new()).await;
    let run = env.submit(Some(7), Priority::Pr).await;
    let deliverer = Deliverer::new(FakeSink::new(), config(), DeliveryPolicy::default());
    let err = redeliver_with(&env.shared.store, &deliverer, run.0).await.unwrap_err();
    assert!(err.to_string().contains("has no verdict"), "{err}");
    env.verdict(run, "fail").await;
    let outcome = redeliver_with(&env.shared.store, &deliverer, run.0).await.unwrap();
    assert_eq!((outcome.status.as_str(), outcome.error.as_str()), (DELIVERED, ""));
    let again = redeliver_with(&env.shared.store, &deliverer, run.0).await.unwrap();
    assert_eq!(again.status, DELIVERED);
    let comments: Vec<_> = deliverer
        .sink()
        .writes()
        .into_iter()
        .filter(|c| !matches!(c, SinkCall::CompleteCheckRun { .. } | SinkCall::CreateCheckRun { .. }))
        .collect();
    assert!(matches!(&comments[..], [SinkCall::CreateComment { .. }, SinkCall::UpdateComment { .. }]), "{comments:?}");
    let err = redeliver_with(&env.shared.store, &deliverer, 999).await.unwrap_err();
    assert_eq!(err.to_string(), "no run 999");
}

#[tokio::test]
async fn an_override_completes_the_same_check_run_again_as_success_naming_who_and_why() {
    let env = env_with(FakeSink::new()).await;
    let run = env.submit(Some(7), Priority::Pr).await;
    env.service.sync(run).await;
    let err = env.shared.override_verdict(run, "ana", "on purpose").await.unwrap_err();
    assert!(err.message().contains("no verdict yet"), "{err:?}");
    env.verdict(run, "fail").await;
    env.service.sync(run).await;
    let delivered = env.writes().len();
    for (by, reason, expected) in [("ana", "  ", "reason: say why"), ("", "why", "by: name who")] {
        let err = env.shared.override_verdict(run, by, reason).await.unwrap_err();
        assert!(err.message().contains(expected), "{err:?}");
    }
    let mut reopened = env.shared.verdict_reopened.subscribe();
    let entry = env.shared.override_verdict(run, "ana", "the new persona drops Q3 on purpose").await.unwrap();
    assert_eq!(entry.by, "ana");
    assert_eq!(reopened.recv().await.unwrap(), run, "the delivery loop learns the verdict reopened");
    env.service.sync(run).await;
    assert_eq!(env.writes().len(), delivered, "a settled run stays settled for plain changes");
    env.service.reopen(run).await;
    let writes = env.writes();
    let again = &writes[delivered..];
    let [SinkCall::CompleteCheckRun { id, conclusion, title, summary, .. }, SinkCall::UpdateComment { body, .. }] =
        again
    else {
        panic!("the verdict is delivered again, to the same check run and comment: {again:?}")
    };
    let first = writes.iter().find_map(|c| match c {
        SinkCall::CompleteCheckRun { id, .. } => Some(*id),
        _ => None,
    });
    assert_eq!(Some(*id), first, "the same check run");
    assert_eq!(*conclusion, Conclusion::Success);
    assert!(title.contains("FAIL") && title.contains("overridden by ana"), "{title}");
    for text in [summary, body] {
        assert!(text.contains("**Overridden by ana**") && text.contains("drops Q3 on purpose"), "{text}");
    }
    let record = env.shared.store.run(run).await.unwrap().unwrap();
    assert_eq!(record.verdict, "fail", "the verdict itself stays");
    assert_eq!(record.overridden.map(|o| o.reason), Some("the new persona drops Q3 on purpose".into()));
    // A passing verdict blocks nothing: there is nothing to override.
    let passing = env.submit(Some(8), Priority::Pr).await;
    env.verdict(passing, "pass").await;
    let err = env.shared.override_verdict(passing, "ana", "why").await.unwrap_err();
    assert!(err.message().contains("nothing to override"), "{err:?}");
}

#[tokio::test]
async fn the_configured_label_overrides_the_prs_failing_verdict_naming_who_added_it() {
    let env = env_with(FakeSink::new().with_pr_files(&["experiments/persona/data.jsonl"])).await;
    let run = env.submit(Some(7), Priority::Pr).await;
    env.verdict(run, "fail").await;
    env.service.sync(run).await;
    let labeled = pr_event(PrAction::Labeled { label: "phasegate:override".into() }, "acme/lab");
    let outcomes = env.service.on_event(&labeled).await;
    assert_eq!(outcomes, [EventOutcome::Overridden { experiment: "persona".into(), run }]);
    let record = env.shared.store.run(run).await.unwrap().unwrap();
    let o = record.overridden.expect("the override is stored with the run");
    assert_eq!(o.by, "ana");
    assert!(o.reason.contains("label `phasegate:override` added to pull request #7 by ana"), "{}", o.reason);
    env.service.reopen(run).await;
    let completed: Vec<_> = env
        .writes()
        .into_iter()
        .filter_map(|c| match c {
            SinkCall::CompleteCheckRun { conclusion, title, .. } => Some((conclusion, title)),
            _ => None,
        })
        .collect();
    let (conclusion, title) = completed.last().expect("the check run is completed again");
    assert_eq!(*conclusion, Conclusion::Success, "{completed:?}");
    assert!(title.contains("overridden by ana"), "{title}");
    // Another label is not an override.
    let other = pr_event(PrAction::Labeled { label: "bug".into() }, "acme/lab");
    assert!(matches!(&env.service.on_event(&other).await[..], [EventOutcome::Ignored { .. }]));
}

fn pr_event(action: PrAction, head_repo: &str) -> Event {
    Event::PullRequest(PullRequestEvent {
        action,
        repo: repo(),
        pr: PrNumber(7),
        head_sha: CommitSha::try_from(SHA).unwrap(),
        head_branch: "feature".into(),
        head_repo: Some(head_repo.into()),
        base_branch: "main".into(),
        labels: vec![],
        sender: Some("ana".into()),
    })
}

#[tokio::test]
async fn webhook_fork_prs_wait_for_the_label_and_unmatched_paths_are_ignored() {
    let env = env_with(FakeSink::new().with_pr_files(&["experiments/persona/data.jsonl"])).await;
    let outcomes = env.service.on_event(&pr_event(PrAction::Opened, "stranger/lab")).await;
    assert_eq!(outcomes, [EventOutcome::WaitingForLabel { experiment: "persona".into() }]);
    assert!(env.writes().is_empty(), "the webhook side only stores the notice");
    env.service.pass().await;
    let writes = env.writes();
    assert!(
        matches!(&writes[..], [SinkCall::CreateCheckRun { .. }, SinkCall::CompleteCheckRun { conclusion: Conclusion::Neutral, title, .. }]
            if title.contains("phasegate:run")),
        "{writes:?}"
    );

    let env = env_with(FakeSink::new().with_pr_files(&["README.md"])).await;
    let outcomes = env.service.on_event(&pr_event(PrAction::Synchronize, "acme/lab")).await;
    assert_eq!(
        outcomes,
        [EventOutcome::Ignored { experiment: "persona".into(), reason: IgnoreReason::NoMatchingPaths }]
    );
    assert!(env.writes().is_empty());
}

#[tokio::test]
async fn webhook_push_to_the_default_branch_accepts_the_merged_prs_phase() {
    let env = env_with(FakeSink::new()).await;
    let run = env.submit(Some(7), Priority::Pr).await;
    env.verdict(run, "pass").await;
    let mut phase = gate_rules::Phase::new("persona", "10", 10);
    phase.accepted = false;
    env.shared.store.upsert_phase(&phase, Some(run), 1).await.unwrap();
    let push = |pr| {
        Event::Push(PushEvent {
            repo: repo(),
            branch: Some("main".into()),
            default_branch: "main".into(),
            after: Some(CommitSha::try_from(SHA).unwrap()),
            changed_files: vec!["experiments/persona/phase.toml".into()],
            merged_pr: pr,
        })
    };
    let outcomes = env.service.on_event(&push(Some(PrNumber(8)))).await;
    assert!(matches!(&outcomes[..], [EventOutcome::Failed { error, .. }] if error.contains("#8")), "{outcomes:?}");
    let outcomes = env.service.on_event(&push(Some(PrNumber(7)))).await;
    assert_eq!(outcomes, [EventOutcome::Accepted { experiment: "persona".into(), run, phase: "10".into() }]);
    let phases = env.shared.store.phases("persona").await.unwrap();
    assert!(phases.iter().all(|p| p.phase.accepted), "phase 10 is accepted");
}

fn record(stage: Step, status: &str, next: Option<i64>) -> GithubDeliveryRecord {
    GithubDeliveryRecord {
        run_id: RunId(1),
        kind: "pr".into(),
        stage: stage.as_str().into(),
        status: status.into(),
        delivery_json: "{}".into(),
        last_error: String::new(),
        attempts: 1,
        next_attempt_ms: next,
        updated_ms: 0,
    }
}

#[test]
fn next_step_table() {
    use Step::{Ended, Submitted, Verdict};
    let sub_done = record(Submitted, DELIVERED, None);
    let sub_wait = record(Submitted, PENDING, Some(100));
    let ver_done = record(Verdict, DELIVERED, None);
    let ver_wait = record(Verdict, PENDING, Some(100));
    let ver_gone = record(Verdict, GIVEN_UP, None);
    // (kind, verdict, active, existing, now, force) → step
    type Case<'a> = (Kind, bool, bool, Option<&'a GithubDeliveryRecord>, i64, bool, Option<Step>);
    let end_done = record(Ended, DELIVERED, None);
    let end_wait = record(Ended, PENDING, Some(100));
    let cases: [Case<'_>; 23] = [
        (Kind::Pr, false, true, None, 0, false, Some(Submitted)),
        // A PR run that ended without a verdict: its check run is completed, once.
        (Kind::Pr, false, false, None, 0, false, Some(Ended)),
        (Kind::Pr, false, false, Some(&sub_done), 0, false, Some(Ended)),
        (Kind::Pr, false, false, Some(&sub_wait), 0, false, Some(Ended)),
        (Kind::Pr, false, false, Some(&end_done), 0, false, None),
        (Kind::Pr, false, false, Some(&end_wait), 99, false, None),
        (Kind::Pr, false, false, Some(&end_wait), 100, false, Some(Ended)),
        (Kind::Pr, false, false, Some(&end_done), 0, true, Some(Ended)),
        (Kind::Nightly, false, false, None, 0, false, None),
        // A verdict stored after the end (the gate finished as the run was cancelled) still goes out.
        (Kind::Pr, true, false, Some(&end_done), 0, false, Some(Verdict)),
        (Kind::Pr, true, false, Some(&end_wait), 0, false, Some(Verdict)),
        (Kind::Nightly, false, true, None, 0, false, None),
        (Kind::Pr, false, true, Some(&sub_done), 0, false, None),
        (Kind::Pr, false, true, Some(&sub_wait), 50, false, None),
        (Kind::Pr, false, true, Some(&sub_wait), 100, false, Some(Submitted)),
        (Kind::Pr, true, false, None, 0, false, Some(Verdict)),
        (Kind::Pr, true, false, Some(&sub_done), 0, false, Some(Verdict)),
        (Kind::Pr, true, false, Some(&sub_wait), 0, false, Some(Verdict)),
        (Kind::Pr, true, false, Some(&ver_done), 0, false, None),
        (Kind::Pr, true, false, Some(&ver_wait), 99, false, None),
        (Kind::Nightly, true, false, Some(&ver_wait), 100, false, Some(Verdict)),
        (Kind::Pr, true, false, Some(&ver_gone), 100, false, None),
        (Kind::Pr, true, false, Some(&ver_gone), 0, true, Some(Verdict)),
    ];
    for (i, (kind, verdict, active, existing, now, force, want)) in cases.into_iter().enumerate() {
        assert_eq!(next_step(kind, verdict, active, existing, now, force), want, "case {i}");
    }
}

#[test]
fn attempts_back_off_then_give_up_and_permanent_errors_give_up_at_once() {
    let policy =
        DeliveryPolicy { initial_delay: Duration::from_secs(1), max_delay: Duration::from_secs(5), max_attempts: 4 };
    assert_eq!((1..=5).map(|a| policy.backoff(a).as_secs()).collect::<Vec<_>>(), [1, 2, 4, 5, 5], "doubling, capped");
    let gave_up = SinkError::GaveUp {
        operation: "create check run",
        repo: "acme/lab".into(),
        attempts: 1,
        last: "http 502".into(),
    };
    let partial = Delivery { check_run: Some(CheckRunId(9)), ..Delivery::default() };
    let transient = Err(DeliveryError { delivery: partial, source: gave_up });
    let r = after_attempt(RunId(1), Kind::Pr, Step::Verdict, 2, &transient, &policy, 1_000);
    assert_eq!((r.status.as_str(), r.next_attempt_ms, r.attempts), (PENDING, Some(3_000), 2));
    assert!(r.last_error.contains("http 502"), "{}", r.last_error);
    let kept: Delivery = serde_json::from_str(&r.delivery_json).unwrap();
    assert_eq!(kept.check_run, Some(CheckRunId(9)), "what was done before the failure is kept");
    let r = after_attempt(RunId(1), Kind::Pr, Step::Verdict, 4, &transient, &policy, 1_000);
    assert_eq!((r.status.as_str(), r.next_attempt_ms), (GIVEN_UP, None));
    let forbidden =
        SinkError::Api { operation: "create comment", repo: "acme/lab".into(), status: 422, message: "bad".into() };
    let permanent = Err(DeliveryError { delivery: Delivery::default(), source: forbidden });
    let r = after_attempt(RunId(1), Kind::Pr, Step::Verdict, 1, &permanent, &policy, 1_000);
    assert_eq!(r.status, GIVEN_UP);
    assert!(r.last_error.contains("http 422"), "{}", r.last_error);
}

#[test]
fn the_title_trend_is_the_last_accepted_score_then_the_candidate() {
    let phase = |label: &str, ordinal: u64, accepted: bool| {
        let mut p = gate_rules::Phase::new("persona", label, ordinal);
        p.accepted = accepted;
        PhaseRecord { phase: p, run_id: None, verdict: String::new(), overridden: None }
    };
    let history = [phase("8", 8, true), phase("9", 9, true), phase("10", 10, false), phase("11", 11, true)];
    let candidate = &history[2].phase;
    assert_eq!(trend(&history, Some(candidate)).len(), 2, "phase 9 then the candidate");
    assert!(trend(&history, None).is_empty());
    assert_eq!(trend(&history[2..3], Some(candidate)).len(), 1, "no baseline: the candidate alone");
}

#[test]
fn config_file_sections_are_strict() {
    let parse = |text: &str| parse_config(text, Path::new("p.toml"), &env, &no_files);
    assert!(parse("").unwrap().is_none(), "no [github]: GitHub stays off");
    let err = parse("[server]\nx = 1\n").unwrap_err().to_string();
    assert!(err.contains("unknown section `server`") && err.contains("p.toml"), "{err}");
    let err = parse("[[experiment]]\nname = \"a\"\nrepo = \"o/r\"\nspec = \"s\"\n").unwrap_err().to_string();
    assert!(err.contains("need a [github] section"), "{err}");
    let err = parse("[github]\ntoken = \"x\"\n").unwrap_err().to_string();
    assert!(err.contains("token"), "{err}");
    let config = parse(CONFIG).unwrap().unwrap();
    assert_eq!(config.experiments.len(), 1);
    assert!(!format!("{config:?}").contains("t0ken"), "secrets are redacted");
}

impl Env {
    /// Leases the run's first job to agent `a1` and reports it failed with `error`.
    async fn fail_first_job(&self, error: &str) {
        let agent = AgentName::parse("agent", "a1").unwrap();
        let a = self.shared.lease(&agent, Duration::ZERO).await.unwrap().expect("a job to lease");
        let lease = Lease::of_assignment(&a).unwrap();
        let req = pb::CompleteJobRequest { success: false, error: error.into(), ..Default::default() };
        self.shared.complete(lease, Some(&agent), req).await.unwrap();
    }
}

#[tokio::test]
async fn a_pr_run_that_fails_completes_its_check_run_with_the_stage_and_error() {
    let env = env_with(FakeSink::new()).await;
    let run = env.submit(Some(7), Priority::Pr).await;
    env.service.sync(run).await;
    env.fail_first_job("exit status 3\nTraceback ...").await;
    env.service.sync(run).await;
    let writes = env.writes();
    let [SinkCall::CreateCheckRun { .. }, SinkCall::CompleteCheckRun { id, conclusion, title, summary, .. }] =
        &writes[..]
    else {
        panic!("{writes:?}")
    };
    assert_eq!((*id, *conclusion), (CheckRunId(101), Conclusion::Failure));
    assert_eq!(title, "phase 10: run failed — finetune: exit status 3");
    assert!(summary.contains("Traceback ...") && summary.contains("stage `finetune` failed"), "{summary}");
    let row = env.delivery(run).await;
    assert_eq!((row.stage.as_str(), row.status.as_str(), row.attempts), ("ended", DELIVERED, 1));
    env.service.sync(run).await;
    env.service.pass().await;
    assert_eq!(env.writes().len(), 2, "an end is delivered once");
}

#[tokio::test]
async fn cancelled_and_superseded_pr_runs_complete_their_check_runs_as_cancelled() {
    let env = env_with(FakeSink::new()).await;
    let first = env.submit(Some(7), Priority::Pr).await;
    env.service.sync(first).await;
    let second = env.submit(Some(7), Priority::Pr).await;
    env.service.sync(first).await;
    env.service.sync(second).await;
    assert!(env.shared.cancel(second).await.unwrap());
    env.service.sync(second).await;
    let completed: Vec<_> = env
        .writes()
        .into_iter()
        .filter_map(|c| match c {
            SinkCall::CompleteCheckRun { id, conclusion, title, summary, .. } => Some((id, conclusion, title, summary)),
            _ => None,
        })
        .collect();
    let [(id1, c1, t1, s1), (id2, c2, t2, s2)] = &completed[..] else { panic!("{completed:?}") };
    assert_eq!((*id1, *c1, t1.as_str()), (CheckRunId(101), Conclusion::Cancelled, "phase 10: run superseded by run 2"));
    assert!(s1.starts_with("A newer push to this pull request started [run 2](http://dash.test/runs/2)"), "{s1}");
    assert_eq!((*id2, *c2, t2.as_str()), (CheckRunId(102), Conclusion::Cancelled, "phase 10: run cancelled"));
    assert!(s2.contains("(cancelled by user)"), "{s2}");
}

#[tokio::test]
async fn an_ended_run_without_checks_permission_posts_an_error_status() {
    let env = env_with(FakeSink::new().forbid_check_runs()).await;
    let run = env.submit(Some(7), Priority::Pr).await;
    env.service.sync(run).await;
    env.fail_first_job("exit status 3").await;
    env.service.sync(run).await;
    let statuses: Vec<_> = env
        .writes()
        .into_iter()
        .filter_map(|c| match c {
            SinkCall::CreateStatus { state, description, .. } => Some((state.as_str(), description)),
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("pending", "phasegate run in progress".into()),
            ("error", "phase 10: run failed — finetune: exit status 3".into())
        ]
    );
}

#[tokio::test]
async fn an_ended_run_can_be_delivered_again_by_the_operator() {
    let env = env_with(FakeSink::new()).await;
    let run = env.submit(Some(7), Priority::Pr).await;
    assert!(env.shared.cancel(run).await.unwrap());
    let deliverer = Deliverer::new(FakeSink::new(), config(), DeliveryPolicy::default());
    for _ in 0..2 {
        let outcome = redeliver_with(&env.shared.store, &deliverer, run.0).await.unwrap();
        assert_eq!(outcome.status, DELIVERED);
    }
    let completions =
        deliverer.sink().writes().iter().filter(|c| matches!(c, SinkCall::CompleteCheckRun { .. })).count();
    assert_eq!(completions, 2);
    let nightly = env.submit(None, Priority::Nightly).await;
    let err = redeliver_with(&env.shared.store, &deliverer, nightly.0).await.unwrap_err();
    assert!(err.to_string().contains("has no verdict"), "{err}");
}

#[tokio::test]
async fn a_webhook_run_that_cannot_start_shows_the_error_on_the_pr() {
    // The fake's tarball is empty: not a gzip archive.
    let env = env_with(FakeSink::new().with_pr_files(&["experiments/persona/data.jsonl"])).await;
    let outcomes = env.service.on_event(&pr_event(PrAction::Opened, "acme/lab")).await;
    assert!(
        matches!(&outcomes[..], [EventOutcome::Failed { error, .. }] if error.contains("failed to read the repository tarball")),
        "{outcomes:?}"
    );
    env.service.pass().await;
    let writes = env.writes();
    let [SinkCall::CreateCheckRun { sha, .. }, SinkCall::CompleteCheckRun { conclusion, title, summary, .. }] =
        &writes[..]
    else {
        panic!("{writes:?}")
    };
    assert_eq!((sha.as_str(), *conclusion), (SHA, Conclusion::Failure));
    assert!(title.starts_with("phasegate could not start: failed to read the repository tarball"), "{title}");
    assert!(summary.contains("The next push to the pull request tries again."), "{summary}");
    let metrics =
        env.shared.stats.render(&crate::metrics::Gauges { queued: 0, leased: 0, agents_online: 0, agents_known: 0 });
    assert!(metrics.contains("phasegate_github_webhook_failures_total 1\n"), "{metrics}");
}

#[tokio::test]
async fn notices_are_stored_first_and_survive_a_restart() {
    let env = env_with(FakeSink::new().with_pr_files(&["experiments/persona/data.jsonl"])).await;
    env.service.on_event(&pr_event(PrAction::Synchronize, "stranger/lab")).await;
    // The coordinator stops before delivering; a new service over the same store delivers it.
    let setup = GithubSetup { config: config(), retry: DeliveryPolicy::default() };
    let restarted = GithubService::new(env.shared.clone(), FakeSink::new(), &setup);
    restarted.pass().await;
    assert!(env.writes().is_empty());
    let writes = restarted.sink().writes();
    assert!(
        matches!(
            &writes[..],
            [SinkCall::CreateCheckRun { .. }, SinkCall::CompleteCheckRun { conclusion: Conclusion::Neutral, .. }]
        ),
        "{writes:?}"
    );
    restarted.pass().await;
    assert_eq!(restarted.sink().writes().len(), 2, "a delivered notice is not sent again");
}

#[tokio::test]
async fn a_notice_overtaken_by_a_run_of_the_pr_is_not_shown() {
    let env = env_with(FakeSink::new().with_pr_files(&["experiments/persona/data.jsonl"])).await;
    env.service.on_event(&pr_event(PrAction::Opened, "stranger/lab")).await;
    // The label was added before the notice went out: the run's own check run is what counts.
    let run = env.submit(Some(7), Priority::Pr).await;
    env.service.pass().await;
    env.service.sync(run).await;
    let writes = env.writes();
    assert!(matches!(&writes[..], [SinkCall::CreateCheckRun { .. }]), "{writes:?}");
    let due = env.shared.store.due_github_notices(i64::MAX, 10).await.unwrap();
    assert!(due.is_empty());
    let notice = env.shared.store.github_notice(crate::store::NoticeId(1)).await.unwrap().unwrap();
    assert_eq!(notice.status, SUPERSEDED);
}

#[tokio::test]
async fn the_end_of_a_run_is_delivered_after_a_restart() {
    let env = env_with(FakeSink::new()).await;
    let run = env.submit(Some(7), Priority::Pr).await;
    env.service.sync(run).await;
    // The run fails, and the coordinator stops before delivering that.
    env.fail_first_job("exit status 3").await;
    let setup = GithubSetup { config: config(), retry: DeliveryPolicy::default() };
    let restarted = GithubService::new(env.shared.clone(), FakeSink::new(), &setup);
    restarted.pass().await;
    let writes = restarted.sink().writes();
    assert!(
        matches!(
            &writes[..],
            [SinkCall::CompleteCheckRun { id: CheckRunId(101), conclusion: Conclusion::Failure, .. }]
        ),
        "the stored check run is completed: {writes:?}"
    );
}
