//! GitHub through the coordinator, in process: a coordinator on `127.0.0.1:0` configured with a
//! `[github]` section pointing at a local mock of GitHub's API (wiremock), signed webhook
//! deliveries sent over plain HTTP, and for the end-to-end test a real in-process agent running a
//! real command job.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use phasegate_coordinator::github::{DeliveryPolicy, GithubSetup, load_config};
use phasegate_coordinator::{AccessFile, ServeConfig, ShellConfig};
use phasegate_github::Secret;
use phasegate_github::webhook::sign;
use phasegate_proto::client::{ControlClient, channel, control_client};
use phasegate_proto::pb;

use common::{dataset, import_history};

const SECRET: &str = "webhook-s3cret";
const TOKEN: &str = "ghp_test_token";
const SHA1: &str = "1111111111111111111111111111111111111111";
const SHA2: &str = "2222222222222222222222222222222222222222";
const SPEC_PATH: &str = "experiments/persona/phase.toml";

/// Phase 10 of persona-v1, run by the dataset's stand-in trainer with rubric scores of 1/10: far
/// below the accepted history (phases 6-9), so the gate fails it.
const SPEC: &str = r#"
experiment = "persona-v1"
phase = "10"
[finetune]
command = ["python3", "train.py", "--steps", "3", "--step-seconds", "0", "--scores", "1,1,1,1,1,1,1,1"]
requires = { gpu = false, vram_mib = 0, labels = [] }
timeout = "2m"
metrics = ["output/**/trainer_state.json", "output/**/training_metrics.json"]
artifacts = ["output/eval_rubric.json"]
[gate]
config = "gate.toml"
results = ["output/eval_rubric.json"]
"#;

/// A tarball shaped like GitHub's: a pax global header, then one `acme-lab-<sha>/` folder.
fn github_tarball(sha: &str) -> Vec<u8> {
    let train = std::fs::read(dataset("phase10/train.py")).unwrap();
    let gate = std::fs::read(dataset("gate.toml")).unwrap();
    let files: [(&str, &[u8]); 4] = [
        ("README.md", b"# lab\n"),
        (SPEC_PATH, SPEC.as_bytes()),
        ("experiments/persona/train.py", &train),
        ("experiments/persona/gate.toml", &gate),
    ];
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()));
    let comment = format!("52 comment={sha}\n");
    let mut pax = tar::Header::new_ustar();
    pax.set_entry_type(tar::EntryType::XGlobalHeader);
    pax.set_size(comment.len() as u64);
    pax.set_cksum();
    builder.append_data(&mut pax, "pax_global_header", comment.as_bytes()).unwrap();
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, format!("acme-lab-{}/{name}", &sha[..7]), data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// Writes `phasegate.toml` (and the secret files it names) for a mock at `api_url`.
fn write_config(dir: &Path, api_url: &str) -> PathBuf {
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    std::fs::write(dir.join("secret"), SECRET).unwrap();
    let text = format!(
        r#"[github]
api_url = "{api_url}"
token_file = "{token}"
webhook_secret_file = "{secret}"
max_retries = 0

[[experiment]]
name = "persona-v1"
repo = "acme/lab"
paths = ["experiments/**"]
spec = "{SPEC_PATH}"
dashboard_url = "http://dash.test/runs/{{run}}"
"#,
        token = dir.join("token").display(),
        secret = dir.join("secret").display(),
    );
    let path = dir.join("phasegate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

struct Coordinator {
    dir: tempfile::TempDir,
    access: AccessFile,
    http: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Coordinator {
    async fn start(server: &MockServer, history: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        if history {
            import_history(&data_dir).await;
        }
        let config = load_config(&write_config(dir.path(), &server.uri())).unwrap().expect("a [github] section");
        let retry = DeliveryPolicy {
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(1),
            max_attempts: 3,
        };
        let shell = ShellConfig { github: Some(GithubSetup { config, retry }), ..ShellConfig::default() };
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_addr = http.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut server_stop = stopped.clone();
        let serve = ServeConfig { data_dir: data_dir.clone(), shell, tls: None };
        tokio::spawn(async move {
            let stop = async move {
                let _ = server_stop.wait_for(|s| *s).await;
            };
            phasegate_coordinator::run(serve, grpc, http, stop).await.expect("coordinator runs");
        });
        let access_path = data_dir.join("access.toml");
        for _ in 0..250 {
            if access_path.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let access = AccessFile::load(&access_path).unwrap();
        Coordinator { dir, access, http: http_addr, stop }
    }

    fn control(&self) -> ControlClient {
        control_client(channel(&self.access.address, None).unwrap(), &self.access.client_token).unwrap()
    }

    /// A real agent in this process, with no GPU.
    async fn start_agent(&self) {
        let config = phasegate_agent::AgentConfig {
            coordinator: self.access.address.clone(),
            token: self.access.agent_token.clone(),
            ca_pem: None,
            name: "e2e".into(),
            labels: vec![],
            work_dir: self.dir.path().join("agent"),
            max_jobs: 1,
            python_packages: Some(vec![]),
            grace: Duration::from_secs(1),
            lease_wait: Duration::from_secs(1),
            model_cache: self.dir.path().join("models"),
        };
        let probe = Arc::new(phasegate_agent::caps::FakeGpuProbe::default());
        let mut stop = self.stop.subscribe();
        tokio::spawn(phasegate_agent::run(config, probe, async move {
            let _ = stop.wait_for(|s| *s).await;
        }));
        let mut control = self.control();
        for _ in 0..250 {
            let agents = control.list_agents(pb::ListAgentsRequest {}).await.unwrap().into_inner().agents;
            if agents.iter().any(|a| a.online) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the agent did not register");
    }

    /// POSTs `body` to the webhook; returns the status code.
    async fn webhook(&self, event: &str, body: &[u8], signature: Option<&str>) -> u16 {
        let mut head = format!(
            "POST /github/webhook HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             X-GitHub-Event: {event}\r\nConnection: close\r\n",
            self.http,
            body.len()
        );
        if let Some(s) = signature {
            head.push_str(&format!("X-Hub-Signature-256: {s}\r\n"));
        }
        head.push_str("\r\n");
        let mut stream = TcpStream::connect(self.http).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        // A server that refuses early may close before the whole body is written.
        let _ = stream.write_all(body).await;
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        let text = String::from_utf8_lossy(&response);
        text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
    }

    async fn signed(&self, event: &str, body: &Value) -> u16 {
        let bytes = serde_json::to_vec(body).unwrap();
        self.webhook(event, &bytes, Some(&sign(&Secret::new(SECRET), &bytes))).await
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn pr_payload(action: &str, sha: &str) -> Value {
    let repo = json!({ "full_name": "acme/lab", "default_branch": "main" });
    json!({
        "action": action,
        "number": 7,
        "pull_request": {
            "number": 7,
            "head": { "sha": sha, "ref": "tune-epochs", "repo": repo },
            "base": { "sha": SHA1, "ref": "main", "repo": repo },
            "labels": []
        },
        "repository": repo
    })
}

fn check_run_json(id: u64, sha: &str) -> Value {
    json!({
        "id": id, "node_id": "CR", "details_url": null, "head_sha": sha,
        "url": "http://127.0.0.1/check-runs", "html_url": null, "conclusion": null,
        "output": { "title": null, "summary": null, "text": null, "annotations_count": 0, "annotations_url": "x" },
        "started_at": null, "completed_at": null, "name": "phasegate / persona-v1", "pull_requests": []
    })
}

/// The PR's comments, as GitHub would keep them: POST creates, GET lists, PATCH edits.
#[derive(Clone, Default)]
struct Comments(Arc<Mutex<Vec<(u64, String)>>>);

impl Respond for Comments {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut comments = self.0.lock().unwrap();
        let user = json!({ "login": "phasegate", "id": 1 });
        let body = || request.body_json::<Value>().unwrap()["body"].as_str().unwrap_or_default().to_owned();
        match request.method.as_str() {
            "POST" => {
                let id = 55 + comments.len() as u64;
                comments.push((id, body()));
                ResponseTemplate::new(201).set_body_json(json!({ "id": id, "body": body(), "user": user }))
            }
            "PATCH" => {
                let id: u64 = request.url.path().rsplit('/').next().unwrap().parse().unwrap();
                if let Some(c) = comments.iter_mut().find(|c| c.0 == id) {
                    c.1 = body();
                }
                ResponseTemplate::new(200).set_body_json(json!({ "id": id, "body": body(), "user": user }))
            }
            _ => {
                let list: Vec<Value> =
                    comments.iter().map(|(id, b)| json!({ "id": id, "body": b, "user": user })).collect();
                ResponseTemplate::new(200).set_body_json(list)
            }
        }
    }
}

async fn mount_github(server: &MockServer, comments: &Comments) {
    Mock::given(method("GET"))
        .and(path("/repos/acme/lab/pulls/7/files"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{ "filename": SPEC_PATH }])))
        .mount(server)
        .await;
    for (id, sha) in [(1, SHA1), (2, SHA2)] {
        Mock::given(method("GET"))
            .and(path(format!("/repos/acme/lab/tarball/{sha}")))
            .respond_with(ResponseTemplate::new(200).set_body_bytes(github_tarball(sha)))
            .mount(server)
            .await;
        Mock::given(method("POST"))
            .and(path("/repos/acme/lab/check-runs"))
            .and(body_partial_json(json!({ "head_sha": sha, "status": "in_progress" })))
            .respond_with(ResponseTemplate::new(201).set_body_json(check_run_json(id, sha)))
            .mount(server)
            .await;
        Mock::given(method("PATCH"))
            .and(path(format!("/repos/acme/lab/check-runs/{id}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(check_run_json(id, sha)))
            .mount(server)
            .await;
    }
    for (verb, route) in [("GET", "/repos/acme/lab/issues/7/comments"), ("POST", "/repos/acme/lab/issues/7/comments")] {
        Mock::given(method(verb)).and(path(route)).respond_with(comments.clone()).mount(server).await;
    }
    Mock::given(method("PATCH"))
        .and(wiremock::matchers::path_regex(r"^/repos/acme/lab/issues/comments/\d+$"))
        .respond_with(comments.clone())
        .mount(server)
        .await;
}

/// The requests the mock received with this method and path.
async fn received(server: &MockServer, verb: &str, route: &str) -> Vec<Value> {
    let requests = server.received_requests().await.unwrap_or_default();
    requests
        .iter()
        .filter(|r| r.method.as_str() == verb && r.url.path() == route)
        .map(|r| r.body_json::<Value>().unwrap_or(Value::Null))
        .collect()
}

async fn wait_for(server: &MockServer, verb: &str, route: &str, count: usize) -> Vec<Value> {
    for _ in 0..1500 {
        let got = received(server, verb, route).await;
        if got.len() >= count {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    panic!("the mock never received {count} × {verb} {route}");
}

async fn run_of_sha(control: &mut ControlClient, sha: &str) -> pb::Run {
    let runs = control.list_runs(pb::ListRunsRequest { limit: 10, ..Default::default() }).await.unwrap();
    let run = runs.into_inner().runs.into_iter().find(|r| r.trigger.as_ref().is_some_and(|t| t.sha == sha));
    let id = run.expect("a run for the pushed head").id;
    control.get_run(pb::GetRunRequest { run_id: id }).await.unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_signatures_are_checked_before_anything_else() {
    let server = MockServer::start().await;
    let coordinator = Coordinator::start(&server, false).await;
    let body = serde_json::to_vec(&pr_payload("opened", SHA1)).unwrap();
    assert_eq!(coordinator.webhook("pull_request", &body, None).await, 401, "missing header");
    let wrong = sign(&Secret::new("another secret"), &body);
    assert_eq!(coordinator.webhook("pull_request", &body, Some(&wrong)).await, 401, "wrong secret");
    let good = sign(&Secret::new(SECRET), &body);
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    assert_eq!(coordinator.webhook("pull_request", &tampered, Some(&good)).await, 401, "tampered body");
    assert_eq!(
        coordinator.webhook("pull_request", b"{not json", Some(&sign(&Secret::new(SECRET), b"{not json"))).await,
        400
    );
    let ping = br#"{"zen": "hi"}"#;
    assert_eq!(coordinator.webhook("ping", ping, Some(&sign(&Secret::new(SECRET), ping))).await, 200);
    let huge = vec![b' '; phasegate_github::webhook::MAX_BODY_BYTES + 1];
    assert_eq!(coordinator.webhook("pull_request", &huge, Some("sha256=00")).await, 413);
    // Nothing reached GitHub: rejected deliveries do nothing.
    assert!(server.received_requests().await.unwrap_or_default().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_github_keeps_refusing_is_given_up_visibly_on_the_run() {
    let server = MockServer::start().await;
    // Check runs fail for good (422); the check run is the first thing a PR run delivers.
    Mock::given(method("POST"))
        .and(path("/repos/acme/lab/check-runs"))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({ "message": "Validation Failed" })))
        .mount(&server)
        .await;
    let coordinator = Coordinator::start(&server, false).await;
    let mut control = coordinator.control();
    let trigger = pb::Trigger { pr: Some(7), sha: SHA1.into(), branch: "b".into(), repo: "acme/lab".into() };
    let submit = pb::SubmitRunRequest {
        spec_toml: SPEC.into(),
        spec_path: "phase.toml".into(),
        trigger: Some(trigger),
        priority: "pr".into(),
        ..Default::default()
    };
    // No agent fits yet, so the run fails at submission; it is still reported (no verdict: nothing).
    let run_id = control.submit_run(submit).await.unwrap().into_inner().run_id;
    let run = control.get_run(pb::GetRunRequest { run_id }).await.unwrap().into_inner();
    assert_eq!(run.priority, "pr");
    assert!(run.github_delivery.is_none(), "an ended run without a verdict gets no check run");
    coordinator.start_agent().await;
    let submit = pb::SubmitRunRequest {
        spec_toml: SPEC.into(),
        spec_path: "phase.toml".into(),
        trigger: Some(pb::Trigger { pr: Some(7), sha: SHA1.into(), branch: "b".into(), repo: "acme/lab".into() }),
        priority: "nightly-ish".into(),
        ..Default::default()
    };
    let err = control.submit_run(submit.clone()).await.unwrap_err();
    assert!(err.message().contains("priority"), "{}", err.message());
    let run_id = control.submit_run(pb::SubmitRunRequest { priority: String::new(), ..submit }).await.unwrap();
    let run_id = run_id.into_inner().run_id;
    for _ in 0..500 {
        let run = control.get_run(pb::GetRunRequest { run_id }).await.unwrap().into_inner();
        if let Some(d) = run.github_delivery.filter(|d| d.status == "given_up") {
            assert_eq!(d.attempts, 1, "a permanent error is not retried");
            assert!(d.error.contains("422") && d.error.contains("Validation Failed"), "{}", d.error);
            assert!(!d.error.contains(TOKEN));
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the delivery was not given up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_502_is_retried_by_the_delivery_loop_until_it_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/lab/check-runs"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/lab/check-runs"))
        .respond_with(ResponseTemplate::new(201).set_body_json(check_run_json(3, SHA1)))
        .mount(&server)
        .await;
    let coordinator = Coordinator::start(&server, false).await;
    coordinator.start_agent().await;
    let mut control = coordinator.control();
    let submit = pb::SubmitRunRequest {
        spec_toml: SPEC.into(),
        spec_path: "phase.toml".into(),
        trigger: Some(pb::Trigger { pr: Some(7), sha: SHA1.into(), branch: "b".into(), repo: "acme/lab".into() }),
        ..Default::default()
    };
    let run_id = control.submit_run(submit).await.unwrap().into_inner().run_id;
    let posts = wait_for(&server, "POST", "/repos/acme/lab/check-runs", 2).await;
    assert_eq!(posts[1]["details_url"], format!("http://dash.test/runs/{run_id}"));
    for _ in 0..500 {
        let run = control.get_run(pb::GetRunRequest { run_id }).await.unwrap().into_inner();
        if let Some(d) = run.github_delivery.filter(|d| d.status != "pending") {
            // The second attempt of the `submitted` stage created the check run.
            assert_eq!((d.stage.as_str(), d.status.as_str(), d.attempts), ("submitted", "delivered", 2));
            assert_eq!(d.error, "");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the check run was not delivered after the 502");
}

/// Issue 5's end-to-end test: a signed `pull_request` webhook → the repository tarball becomes the
/// run's source bundle → a real agent runs the job → the gate fails it against the accepted
/// history → the mock GitHub received the completed check run (`failure`) and one comment; a second
/// push (synchronize, new head) runs again and updates that same comment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_pr_webhook_runs_on_a_real_agent_and_reports_failure_then_updates_the_comment() {
    let server = MockServer::start().await;
    let comments = Comments::default();
    mount_github(&server, &comments).await;
    let coordinator = Coordinator::start(&server, true).await;
    coordinator.start_agent().await;
    let mut control = coordinator.control();

    assert_eq!(coordinator.signed("pull_request", &pr_payload("opened", SHA1)).await, 202);
    let completed = wait_for(&server, "PATCH", "/repos/acme/lab/check-runs/1", 1).await;
    assert_eq!(completed[0]["status"], "completed");
    assert_eq!(completed[0]["conclusion"], "failure");
    let title = completed[0]["output"]["title"].as_str().unwrap();
    assert!(title.starts_with("phase 10: FAIL — "), "{title}");
    let summary = completed[0]["output"]["summary"].as_str().unwrap();
    assert!(summary.contains("<!-- phasegate:report experiment=persona-v1 -->"), "{summary}");
    let created = wait_for(&server, "POST", "/repos/acme/lab/issues/7/comments", 1).await;
    assert!(created[0]["body"].as_str().unwrap().contains("phasegate:report experiment=persona-v1"));

    let first = run_of_sha(&mut control, SHA1).await;
    assert_eq!((first.state.as_str(), first.verdict.as_str(), first.priority.as_str()), ("succeeded", "fail", "pr"));
    let trigger = first.trigger.clone().unwrap();
    assert_eq!((trigger.pr, trigger.repo.as_str(), trigger.branch.as_str()), (Some(7), "acme/lab", "tune-epochs"));
    let opened = received(&server, "POST", "/repos/acme/lab/check-runs").await;
    assert_eq!(opened[0]["name"], "phasegate / persona-v1");
    assert_eq!(opened[0]["details_url"], format!("http://dash.test/runs/{}", first.id));

    assert_eq!(coordinator.signed("pull_request", &pr_payload("synchronize", SHA2)).await, 202);
    let completed = wait_for(&server, "PATCH", "/repos/acme/lab/check-runs/2", 1).await;
    assert_eq!(completed[0]["conclusion"], "failure");
    let updates = wait_for(&server, "PATCH", "/repos/acme/lab/issues/comments/55", 1).await;
    assert!(updates[0]["body"].as_str().unwrap().contains("phasegate:report experiment=persona-v1"));
    assert_eq!(received(&server, "POST", "/repos/acme/lab/issues/7/comments").await.len(), 1, "one comment");
    assert_eq!(comments.0.lock().unwrap().len(), 1);

    let second = run_of_sha(&mut control, SHA2).await;
    assert_eq!((second.verdict.as_str(), second.trigger.unwrap().pr), ("fail", Some(7)));
    let delivery = second.github_delivery.expect("the second run's delivery state");
    assert_eq!((delivery.stage.as_str(), delivery.status.as_str()), ("verdict", "delivered"));
    let requests = server.received_requests().await.unwrap_or_default();
    assert!(
        requests.iter().all(|r| r.headers.get("authorization").is_some_and(|v| v.to_str().unwrap().ends_with(TOKEN))),
        "every call carries the configured token"
    );
}
