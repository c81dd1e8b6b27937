//! The real sink against a local mock of GitHub's REST API: exact methods, paths and JSON bodies.

use std::time::Duration;

use gate_rules::Verdict;
use phasegate_github::reporter::{self, CHECK_RUN_SUMMARY_LIMIT, REGRESSION_LABEL};
use phasegate_github::{
    CommitSha, Credentials, Delivery, GithubSink, OctocrabSink, Policy, PrNumber, RepoName, Reporter, RetryPolicy,
    Secret, SinkError, Target, VerdictReport,
};
use serde_json::{Value, json};
use wiremock::matchers::{bearer_token, body_json, header_regex, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const TOKEN: &str = "ghp_test_token_value";
const URL: &str = "http://dash.local/runs/7";
const TITLE: &str = "phase 10: FAIL — 5.5 → 3.125";

fn fast_retries() -> RetryPolicy {
    RetryPolicy { max_retries: 3, initial_delay: Duration::from_millis(1), max_delay: Duration::from_millis(5) }
}

fn sink(server: &MockServer) -> OctocrabSink {
    OctocrabSink::new(&server.uri(), &Credentials::Token(Secret::new(TOKEN)), fast_retries()).unwrap()
}

fn repo() -> RepoName {
    RepoName::try_from("acme/lab").unwrap()
}

fn target(pr: Option<u64>) -> Target {
    Target { repo: repo(), sha: CommitSha::try_from(SHA).unwrap(), pr: pr.map(PrNumber) }
}

fn report(verdict: Verdict) -> VerdictReport {
    VerdictReport {
        experiment: "persona".to_owned(),
        phase: "10".to_owned(),
        verdict,
        scores: vec![Some(5.5), Some(3.125)],
        markdown: format!("{}\n# persona phase 10", gate_rules::report::marker("persona")),
        details_url: Some(URL.to_owned()),
        overridden: None,
    }
}

fn check_run_json(id: u64) -> Value {
    json!({
        "id": id, "node_id": "CR_1", "details_url": URL, "head_sha": SHA,
        "url": "http://127.0.0.1/check-runs/1", "html_url": null, "conclusion": null,
        "output": { "title": null, "summary": null, "text": null, "annotations_count": 0, "annotations_url": "x" },
        "started_at": null, "completed_at": null, "name": "phasegate / persona", "pull_requests": []
    })
}

async fn mount_create_check_run(server: &MockServer, id: u64) {
    Mock::given(method("POST"))
        .and(path("/repos/acme/lab/check-runs"))
        .and(bearer_token(TOKEN))
        .and(body_json(json!({
            "name": "phasegate / persona", "head_sha": SHA, "details_url": URL, "status": "in_progress"
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(check_run_json(id)))
        .expect(1)
        .mount(server)
        .await;
}

fn complete_body(conclusion: &str, title: &str, summary: &str) -> Value {
    json!({ "status": "completed", "conclusion": conclusion, "output": { "title": title, "summary": summary } })
}

#[tokio::test]
async fn check_run_is_created_in_progress_then_completed() {
    let server = MockServer::start().await;
    mount_create_check_run(&server, 42).await;
    let r = report(Verdict::Fail);
    Mock::given(method("PATCH"))
        .and(path("/repos/acme/lab/check-runs/42"))
        .and(body_json(complete_body("failure", TITLE, &r.markdown)))
        .respond_with(ResponseTemplate::new(200).set_body_json(check_run_json(42)))
        .expect(1)
        .mount(&server)
        .await;
    let reporter = Reporter::new(sink(&server), Policy::default());
    let d = reporter.on_run_submitted(&target(None), "persona", Some(URL), Delivery::default()).await.unwrap();
    assert_eq!(d.check_run.map(|c| c.0), Some(42));
    let d = reporter.on_verdict(&target(None), &r, d).await.unwrap();
    assert_eq!(d.check_run.map(|c| c.0), Some(42));
}

fn comment(id: u64, body: &str) -> Value {
    json!({ "id": id, "body": body, "user": { "login": "someone", "id": 1 } })
}

#[tokio::test]
async fn marker_on_the_second_page_is_updated_in_place() {
    let server = MockServer::start().await;
    let r = report(Verdict::Fail);
    let next = format!("<{}/repos/acme/lab/issues/12/comments?per_page=100&page=2>; rel=\"next\"", server.uri());
    Mock::given(method("GET"))
        .and(path("/repos/acme/lab/issues/12/comments"))
        .and(query_param("per_page", "100"))
        .and(query_param_is_missing("page"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Link", next.as_str())
                .set_body_json(json!([comment(1, "looks good"), comment(2, "<!-- other:marker -->")])),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/lab/issues/12/comments"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([comment(77, &r.markdown)])))
        .expect(1)
        .mount(&server)
        .await;
    let new_body = format!("{}\n# updated", gate_rules::report::marker("persona"));
    Mock::given(method("PATCH"))
        .and(path("/repos/acme/lab/issues/comments/77"))
        .and(body_json(json!({ "body": new_body })))
        .respond_with(ResponseTemplate::new(200).set_body_json(comment(77, &new_body)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/lab/issues/12/comments"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/repos/acme/lab/check-runs/5"))
        .respond_with(ResponseTemplate::new(200).set_body_json(check_run_json(5)))
        .expect(1)
        .mount(&server)
        .await;
    let reporter = Reporter::new(sink(&server), Policy::default());
    let updated = VerdictReport { markdown: new_body.clone(), ..r };
    let previous = Delivery { check_run: Some(phasegate_github::CheckRunId(5)), ..Delivery::default() };
    let d = reporter.on_verdict(&target(Some(12)), &updated, previous).await.unwrap();
    assert_eq!(d.comment.map(|c| c.0), Some(77));
}

#[tokio::test]
async fn comment_is_created_when_none_carries_the_marker() {
    let server = MockServer::start().await;
    let r = report(Verdict::Fail);
    Mock::given(method("GET"))
        .and(path("/repos/acme/lab/issues/12/comments"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([comment(1, "unrelated")])))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/lab/issues/12/comments"))
        .and(body_json(json!({ "body": r.markdown })))
        .respond_with(ResponseTemplate::new(201).set_body_json(comment(90, &r.markdown)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/repos/acme/lab/check-runs/5"))
        .respond_with(ResponseTemplate::new(200).set_body_json(check_run_json(5)))
        .mount(&server)
        .await;
    let reporter = Reporter::new(sink(&server), Policy::default());
    let previous = Delivery { check_run: Some(phasegate_github::CheckRunId(5)), ..Delivery::default() };
    let d = reporter.on_verdict(&target(Some(12)), &r, previous).await.unwrap();
    assert_eq!(d.comment.map(|c| c.0), Some(90));
}

#[tokio::test]
async fn forbidden_check_runs_fall_back_to_commit_statuses() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/lab/check-runs"))
        .respond_with(
            ResponseTemplate::new(403).set_body_json(json!({ "message": "Resource not accessible by integration" })),
        )
        .expect(1)
        .mount(&server)
        .await;
    let status_path = format!("/repos/acme/lab/statuses/{SHA}");
    for (state, description) in [("pending", "phasegate run in progress"), ("failure", TITLE)] {
        Mock::given(method("POST"))
            .and(path(status_path.as_str()))
            .and(body_json(json!({
                "state": state, "context": "phasegate/persona", "description": description, "target_url": URL
            })))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "id": 1, "state": state })))
            .expect(1)
            .mount(&server)
            .await;
    }
    let reporter = Reporter::new(sink(&server), Policy::default());
    let d = reporter.on_run_submitted(&target(None), "persona", Some(URL), Delivery::default()).await.unwrap();
    assert!(d.checks_forbidden);
    reporter.on_verdict(&target(None), &report(Verdict::Fail), d).await.unwrap();
}

fn issue(number: u64, title: &str) -> Value {
    json!({ "number": number, "title": title })
}

#[tokio::test]
async fn nightly_issue_is_opened_updated_and_closed() {
    let server = MockServer::start().await;
    let reporter = Reporter::new(sink(&server), Policy::default());
    let fail = report(Verdict::Fail);
    let [reporter::Action::CreateIssue { title, body, .. }] = &reporter::decide_nightly(&fail, None)[..] else {
        panic!()
    };
    let list = || {
        Mock::given(method("GET"))
            .and(path("/repos/acme/lab/issues"))
            .and(query_param("state", "open"))
            .and(query_param("labels", REGRESSION_LABEL))
    };

    list().respond_with(ResponseTemplate::new(200).set_body_json(json!([]))).mount(&server).await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/lab/issues"))
        .and(body_json(json!({ "title": title, "body": body, "labels": [REGRESSION_LABEL] })))
        .respond_with(ResponseTemplate::new(201).set_body_json(issue(8, title)))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(reporter.on_nightly_verdict(&repo(), &fail).await.unwrap().issue.map(|i| i.0), Some(8));
    server.verify().await;
    server.reset().await;

    let open = json!([issue(8, title), { "number": 3, "title": title, "pull_request": {} }, issue(2, "other")]);
    list().respond_with(ResponseTemplate::new(200).set_body_json(open.clone())).mount(&server).await;
    Mock::given(method("PATCH"))
        .and(path("/repos/acme/lab/issues/8"))
        .and(body_json(json!({ "body": body })))
        .respond_with(ResponseTemplate::new(200).set_body_json(issue(8, title)))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(reporter.on_nightly_verdict(&repo(), &fail).await.unwrap().issue.map(|i| i.0), Some(8));
    server.verify().await;
    server.reset().await;

    list().respond_with(ResponseTemplate::new(200).set_body_json(open)).mount(&server).await;
    let pass = report(Verdict::Pass);
    let closing = format!("The nightly run passed again (phase 10: PASS — 5.5 → 3.125); closing. [Run]({URL})");
    Mock::given(method("POST"))
        .and(path("/repos/acme/lab/issues/8/comments"))
        .and(body_json(json!({ "body": closing })))
        .respond_with(ResponseTemplate::new(201).set_body_json(comment(500, &closing)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/repos/acme/lab/issues/8"))
        .and(body_json(json!({ "state": "closed", "state_reason": "completed" })))
        .respond_with(ResponseTemplate::new(200).set_body_json(issue(8, title)))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(reporter.on_nightly_verdict(&repo(), &pass).await.unwrap().issue, None);
}

#[tokio::test]
async fn github_app_exchanges_a_jwt_for_an_installation_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/app/installations/99/access_tokens"))
        .and(header_regex("Authorization", r"^Bearer [A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "token": "ghs_installation", "expires_at": "2099-01-01T00:00:00Z", "permissions": {}
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/lab/check-runs"))
        .and(bearer_token("ghs_installation"))
        .respond_with(ResponseTemplate::new(201).set_body_json(check_run_json(7)))
        .expect(2)
        .mount(&server)
        .await;
    let pem = include_str!("fixtures/test-app-key.pem");
    let credentials = Credentials::App { app_id: 1234, private_key_pem: Secret::new(pem), installation_id: 99 };
    let sink = OctocrabSink::new(&server.uri(), &credentials, fast_retries()).unwrap();
    let sha = CommitSha::try_from(SHA).unwrap();
    for _ in 0..2 {
        let id = sink.create_check_run(&repo(), &sha, "phasegate / persona", None).await.unwrap();
        assert_eq!(id.0, 7);
    }
}

#[tokio::test]
async fn a_502_is_retried_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/lab/check-runs"))
        .respond_with(ResponseTemplate::new(502).set_body_string("Bad Gateway"))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    mount_create_check_run(&server, 42).await;
    let sha = CommitSha::try_from(SHA).unwrap();
    let id = sink(&server).create_check_run(&repo(), &sha, "phasegate / persona", Some(URL)).await.unwrap();
    assert_eq!(id.0, 42);
}

#[tokio::test]
async fn rate_limits_are_retried_and_persistent_5xx_gives_up() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/lab/issues/12/comments"))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", "0")
                .set_body_json(json!({ "message": "API rate limit exceeded" })),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/lab/issues/12/comments"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/lab/issues/12/comments"))
        .respond_with(ResponseTemplate::new(201).set_body_json(comment(3, "x")))
        .with_priority(3)
        .mount(&server)
        .await;
    let id = sink(&server).create_comment(&repo(), PrNumber(12), "x").await.unwrap();
    assert_eq!(id.0, 3);

    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/lab/pulls/12/files"))
        .respond_with(ResponseTemplate::new(503))
        .expect(4)
        .mount(&server)
        .await;
    let err = sink(&server).list_pr_files(&repo(), PrNumber(12)).await.unwrap_err();
    assert!(matches!(err, SinkError::GaveUp { attempts: 4, .. }), "{err}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn a_report_longer_than_the_limit_is_cut_in_the_request() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path("/repos/acme/lab/check-runs/5"))
        .respond_with(ResponseTemplate::new(200).set_body_json(check_run_json(5)))
        .expect(1)
        .mount(&server)
        .await;
    let mut r = report(Verdict::Fail);
    r.markdown.push_str(&"é".repeat(100_000));
    let reporter = Reporter::new(sink(&server), Policy::default());
    let previous = Delivery { check_run: Some(phasegate_github::CheckRunId(5)), ..Delivery::default() };
    reporter.on_verdict(&target(None), &r, previous).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    let summary = body["output"]["summary"].as_str().unwrap();
    assert_eq!(summary.chars().count(), CHECK_RUN_SUMMARY_LIMIT);
    assert!(summary.starts_with(&gate_rules::report::marker("persona")));
    assert!(summary.ends_with("the full report is stored with the run.\n"), "{}", &summary[summary.len() - 200..]);
}

#[tokio::test]
async fn errors_never_contain_the_token() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path("/repos/acme/lab/issues/comments/4"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({ "message": format!("Bad credentials {TOKEN}") })),
        )
        .mount(&server)
        .await;
    let err = sink(&server).update_comment(&repo(), phasegate_github::CommentId(4), "x").await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(matches!(err, SinkError::Api { status: 401, .. }), "{shown}");
    assert!(!shown.contains(TOKEN) && shown.contains("<redacted>"), "{shown}");
    assert!(!format!("{:?}", sink(&server)).contains(TOKEN));
}

#[tokio::test]
async fn pr_files_walk_every_page_and_tarballs_follow_the_redirect() {
    let server = MockServer::start().await;
    let next = format!("<{}/repos/acme/lab/pulls/12/files?per_page=100&page=2>; rel=\"next\"", server.uri());
    Mock::given(method("GET"))
        .and(path("/repos/acme/lab/pulls/12/files"))
        .and(query_param_is_missing("page"))
        .respond_with(
            ResponseTemplate::new(200).insert_header("Link", next.as_str()).set_body_json(json!([{ "filename": "a" }])),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/lab/pulls/12/files"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{ "filename": "datasets/b.jsonl" }])))
        .mount(&server)
        .await;
    let files = sink(&server).list_pr_files(&repo(), PrNumber(12)).await.unwrap();
    assert_eq!(files, ["a", "datasets/b.jsonl"]);

    let archive = format!("{}/codeload/acme/lab/tar.gz/{SHA}", server.uri());
    Mock::given(method("GET"))
        .and(path(format!("/repos/acme/lab/tarball/{SHA}")))
        .respond_with(ResponseTemplate::new(302).insert_header("Location", archive.as_str()))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/codeload/acme/lab/tar.gz/{SHA}")))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![0x1f, 0x8b, 8, 0]))
        .mount(&server)
        .await;
    let sha = CommitSha::try_from(SHA).unwrap();
    let bytes = sink(&server).download_tarball(&repo(), &sha, 4).await.unwrap();
    assert_eq!(bytes, [0x1f, 0x8b, 8, 0]);
    let err = sink(&server).download_tarball(&repo(), &sha, 3).await.unwrap_err().to_string();
    assert!(err.contains("download tarball") && err.contains("larger than the limit of 3 bytes"), "{err}");
}
