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

use phasegate_coordinator::github::{GithubSetup, load_config};
use phasegate_coordinator::{AccessFile, ServeConfig, ShellConfig};
use phasegate_github::Secret;
use phasegate_github::webhook::sign;
use phasegate_proto::client::{AgentClient, ControlClient, agent_client, channel, control_client};
use phasegate_proto::pb;

use common::{dataset, import_history};

const SECRET: &str = "webhook-s3cret";
const TOKEN: &str = "ghp_test_token";
const SHA1: &str = "1111111111111111111111111111111111111111";
const SHA2: &str = "2222222222222222222222222222222222222222";
const SHA3: &str = "3333333333333333333333333333333333333333";
/// Quick delivery retries for tests: 3 attempts, 50 ms doubling to 1 s.
const QUICK_RETRIES: &str = "delivery_attempts = 3\ndelivery_initial_delay_ms = 50\ndelivery_max_delay_ms = 1000\n";
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
    github_tarball_with(sha, &files)
}

/// [`github_tarball`] holding `files`.
fn github_tarball_with(sha: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
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
        builder.append_data(&mut header, format!("acme-lab-{}/{name}", &sha[..7]), *data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// Writes `phasegate.toml` (and the secret files it names) for a mock at `api_url`, with `retries`
/// (the `delivery_*` keys) in its `[github]` section.
fn write_config(dir: &Path, api_url: &str, retries: &str) -> PathBuf {
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    std::fs::write(dir.join("secret"), SECRET).unwrap();
    let text = format!(
        r#"[github]
api_url = "{api_url}"
token_file = "{token}"
webhook_secret_file = "{secret}"
max_retries = 0
{retries}
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
        Self::start_with(server, history, QUICK_RETRIES).await
    }

    async fn start_with(server: &MockServer, history: bool, retries: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        if history {
            import_history(&data_dir).await;
        }
        let path = write_config(dir.path(), &server.uri(), retries);
        let config = load_config(&path).unwrap().expect("a [github] section");
        let shell = ShellConfig { github: Some(GithubSetup::new(config)), ..ShellConfig::default() };
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

    fn agent(&self) -> AgentClient {
        agent_client(channel(&self.access.address, None).unwrap(), &self.access.agent_token).unwrap()
    }

    /// Registers agent `idle` over the agent API. It leases only when the test says so, so the
    /// runs it fits stay queued until then.
    async fn register_idle_agent(&self) -> AgentClient {
        let mut agent = self.agent();
        let caps = pb::Capabilities { hostname: "h".into(), cpus: 2, max_jobs: 1, ..Default::default() };
        let req = pb::RegisterRequest {
            agent_name: "idle".into(),
            capabilities: Some(caps),
            running: vec![],
            protocol_version: phasegate_proto::PROTOCOL_VERSION,
            ..Default::default()
        };
        agent.register(req).await.unwrap();
        agent
    }

    /// GETs `route` from the HTTP side port; returns the body.
    async fn http_get(&self, route: &str) -> String {
        let mut stream = TcpStream::connect(self.http).await.unwrap();
        let head = format!("GET {route} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.http);
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        String::from_utf8_lossy(&response).into_owned()
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
            keep_job_dirs: phasegate_agent::DEFAULT_KEEP_JOB_DIRS,
            drain_timeout: phasegate_agent::DEFAULT_DRAIN_TIMEOUT,
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
    pr_payload_from(action, sha, "acme/lab")
}

/// A `pull_request` payload whose head lives in `head_repo` (a fork when not `acme/lab`).
fn pr_payload_from(action: &str, sha: &str, head_repo: &str) -> Value {
    let repo = json!({ "full_name": "acme/lab", "default_branch": "main" });
    let head = json!({ "full_name": head_repo, "default_branch": "main" });
    json!({
        "action": action,
        "number": 7,
        "pull_request": {
            "number": 7,
            "head": { "sha": sha, "ref": "tune-epochs", "repo": head },
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
    let huge = vec![b' '; phasegate_coordinator::HttpLimits::default().max_webhook_bytes + 1];
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
    // No agent fits yet, so the run fails at submission; its end is reported (and refused).
    let run_id = control.submit_run(submit).await.unwrap().into_inner().run_id;
    let run = control.get_run(pb::GetRunRequest { run_id }).await.unwrap().into_inner();
    assert_eq!(run.priority, "pr");
    let d = settled_delivery(&mut control, run_id).await;
    assert_eq!((d.stage.as_str(), d.status.as_str(), d.attempts), ("ended", "given_up", 1));
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
    // An agent that fits but leases nothing: the run stays queued while its check run is retried.
    coordinator.register_idle_agent().await;
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

/// Waits until run `run_id` has a GitHub delivery that `done` accepts.
async fn wait_delivery(
    control: &mut ControlClient,
    run_id: u64,
    done: impl Fn(&pb::GithubDelivery) -> bool,
) -> pb::GithubDelivery {
    for _ in 0..500 {
        let run = control.get_run(pb::GetRunRequest { run_id }).await.unwrap().into_inner();
        if let Some(d) = run.github_delivery.filter(&done) {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("run {run_id}'s github delivery never got there");
}

/// The delivery of `run_id` once it is no longer pending.
async fn settled_delivery(control: &mut ControlClient, run_id: u64) -> pb::GithubDelivery {
    wait_delivery(control, run_id, |d| d.status != "pending").await
}

async fn submit_pr(control: &mut ControlClient, sha: &str) -> u64 {
    let submit = pb::SubmitRunRequest {
        spec_toml: SPEC.into(),
        spec_path: "phase.toml".into(),
        trigger: Some(pb::Trigger { pr: Some(7), sha: sha.into(), branch: "b".into(), repo: "acme/lab".into() }),
        ..Default::default()
    };
    control.submit_run(submit).await.unwrap().into_inner().run_id
}

/// Check run `id` is created on `sha` (POST) and completed (PATCH).
async fn mount_check_run(server: &MockServer, id: u64, sha: &str) {
    Mock::given(method("POST"))
        .and(path("/repos/acme/lab/check-runs"))
        .and(body_partial_json(json!({ "head_sha": sha })))
        .respond_with(ResponseTemplate::new(201).set_body_json(check_run_json(id, sha)))
        .mount(server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("/repos/acme/lab/check-runs/{id}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(check_run_json(id, sha)))
        .mount(server)
        .await;
}

/// The body phasegate sends to create its check run on `sha`.
fn created(sha: &str, details_url: Option<&str>) -> Value {
    let mut body = json!({ "name": "phasegate / persona-v1", "head_sha": sha, "status": "in_progress" });
    if let Some(url) = details_url {
        body["details_url"] = json!(url);
    }
    body
}

fn completed(conclusion: &str, title: &str, summary: &str) -> Value {
    json!({ "status": "completed", "conclusion": conclusion, "output": { "title": title, "summary": summary } })
}

/// The idle agent leases the queued job, starts it and reports it failed with `error`.
async fn fail_next_job(agent: &mut AgentClient, error: &str) {
    let req = pb::LeaseJobRequest { agent_name: "idle".into(), wait_ms: 5000 };
    let a = agent.lease_job(req).await.unwrap().into_inner().assignment.expect("a job to lease");
    let lease = || Some(pb::JobLease { job_id: a.job_id, epoch: a.epoch, token: a.lease_token.clone() });
    agent.start_job(pb::StartJobRequest { lease: lease() }).await.unwrap();
    let complete = pb::CompleteJobRequest { lease: lease(), success: false, error: error.into(), ..Default::default() };
    agent.complete_job(complete).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pr_run_whose_stage_fails_completes_its_check_run_as_failure() {
    let server = MockServer::start().await;
    mount_check_run(&server, 1, SHA1).await;
    let coordinator = Coordinator::start(&server, false).await;
    let mut agent = coordinator.register_idle_agent().await;
    let mut control = coordinator.control();
    let run_id = submit_pr(&mut control, SHA1).await;
    let url = format!("http://dash.test/runs/{run_id}");
    assert_eq!(wait_for(&server, "POST", "/repos/acme/lab/check-runs", 1).await, [created(SHA1, Some(&url))]);

    fail_next_job(&mut agent, "exit status 3\nTraceback: boom").await;
    let patches = wait_for(&server, "PATCH", "/repos/acme/lab/check-runs/1", 1).await;
    let summary = format!(
        "The run ended without a verdict: stage `finetune` failed, so the gate did not compare this phase with the \
         accepted history.\n\n```text\nexit status 3\nTraceback: boom\n```\n\n[Run details]({url})"
    );
    assert_eq!(patches, [completed("failure", "phase 10: run failed — finetune: exit status 3", &summary)]);
    let d = settled_delivery(&mut control, run_id).await;
    assert_eq!((d.stage.as_str(), d.status.as_str(), d.error.as_str()), ("ended", "delivered", ""));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(received(&server, "POST", "/repos/acme/lab/check-runs").await.len(), 1, "nothing more");
    assert_eq!(received(&server, "PATCH", "/repos/acme/lab/check-runs/1").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superseded_and_cancelled_pr_runs_complete_their_check_runs_as_cancelled() {
    let server = MockServer::start().await;
    mount_check_run(&server, 1, SHA1).await;
    mount_check_run(&server, 2, SHA2).await;
    let coordinator = Coordinator::start(&server, false).await;
    coordinator.register_idle_agent().await;
    let mut control = coordinator.control();
    let first = submit_pr(&mut control, SHA1).await;
    wait_for(&server, "POST", "/repos/acme/lab/check-runs", 1).await;

    // A newer push to PR 7 supersedes the first run.
    let second = submit_pr(&mut control, SHA2).await;
    let patches = wait_for(&server, "PATCH", "/repos/acme/lab/check-runs/1", 1).await;
    let summary = format!(
        "A newer push to this pull request started [run {second}](http://dash.test/runs/{second}), which \
         cancelled this run before the gate decided; there is no verdict for this commit. The newer run reports \
         on its own head.\n\n[Run details](http://dash.test/runs/{first})"
    );
    let title = format!("phase 10: run superseded by run {second}");
    assert_eq!(patches, [completed("cancelled", &title, &summary)]);

    // An operator cancels the second.
    let posts = wait_for(&server, "POST", "/repos/acme/lab/check-runs", 2).await;
    assert_eq!(posts[1], created(SHA2, Some(&format!("http://dash.test/runs/{second}"))));
    control.cancel_run(pb::CancelRunRequest { run_id: second }).await.unwrap();
    let patches = wait_for(&server, "PATCH", "/repos/acme/lab/check-runs/2", 1).await;
    let summary = format!(
        "The run was cancelled before the gate decided (cancelled by user); there is no verdict.\n\n\
         [Run details](http://dash.test/runs/{second})"
    );
    assert_eq!(patches, [completed("cancelled", "phase 10: run cancelled", &summary)]);
    for run in [first, second] {
        let d = settled_delivery(&mut control, run).await;
        assert_eq!((d.stage.as_str(), d.status.as_str()), ("ended", "delivered"), "run {run}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_checks_permission_a_failed_run_posts_an_error_status() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/lab/check-runs"))
        .respond_with(
            ResponseTemplate::new(403).set_body_json(json!({ "message": "Resource not accessible by integration" })),
        )
        .mount(&server)
        .await;
    let statuses = format!("/repos/acme/lab/statuses/{SHA1}");
    Mock::given(method("POST"))
        .and(path(statuses.as_str()))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "id": 1, "state": "pending" })))
        .mount(&server)
        .await;
    let coordinator = Coordinator::start(&server, false).await;
    let mut agent = coordinator.register_idle_agent().await;
    let mut control = coordinator.control();
    let run_id = submit_pr(&mut control, SHA1).await;
    wait_for(&server, "POST", &statuses, 1).await;
    fail_next_job(&mut agent, "exit status 3").await;
    let posted = wait_for(&server, "POST", &statuses, 2).await;
    let url = format!("http://dash.test/runs/{run_id}");
    let status = |state: &str, description: &str| json!({ "state": state, "context": "phasegate/persona-v1", "description": description, "target_url": url });
    assert_eq!(
        posted,
        [
            status("pending", "phasegate run in progress"),
            status("error", "phase 10: run failed — finetune: exit status 3"),
        ]
    );
    assert_eq!(received(&server, "POST", "/repos/acme/lab/check-runs").await.len(), 1, "the 403 is remembered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_cannot_start_a_run_shows_why_on_the_pr_and_counts_it() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/lab/pulls/7/files"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{ "filename": SPEC_PATH }])))
        .mount(&server)
        .await;
    // SHA1: the tarball cannot be downloaded; SHA2: the spec is missing; SHA3: the spec is invalid.
    Mock::given(method("GET"))
        .and(path(format!("/repos/acme/lab/tarball/{SHA1}")))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({ "message": "Not Found" })))
        .mount(&server)
        .await;
    let without_spec = github_tarball_with(SHA2, &[("README.md", b"# lab\n")]);
    let invalid = github_tarball_with(SHA3, &[(SPEC_PATH, b"experiment = \"persona-v1\"\nphase = 10\n")]);
    for (sha, tarball) in [(SHA2, without_spec), (SHA3, invalid)] {
        Mock::given(method("GET"))
            .and(path(format!("/repos/acme/lab/tarball/{sha}")))
            .respond_with(ResponseTemplate::new(200).set_body_bytes(tarball))
            .mount(&server)
            .await;
    }
    for (id, sha) in [(1, SHA1), (2, SHA2), (3, SHA3)] {
        mount_check_run(&server, id, sha).await;
    }
    let coordinator = Coordinator::start(&server, false).await;

    assert_eq!(coordinator.signed("pull_request", &pr_payload("opened", SHA1)).await, 202);
    let patches = wait_for(&server, "PATCH", "/repos/acme/lab/check-runs/1", 1).await;
    let error = "failed to download the repository at 1111111: failed to download tarball on acme/lab: not found \
                 (404): Not Found";
    let summary = format!(
        "phasegate could not start a run of `persona-v1` for this commit.\n\n```text\n{error}\n```\n\nThe next \
         push to the pull request tries again."
    );
    assert_eq!(patches, [completed("failure", &format!("phasegate could not start: {error}"), &summary)]);

    assert_eq!(coordinator.signed("pull_request", &pr_payload("synchronize", SHA2)).await, 202);
    let patches = wait_for(&server, "PATCH", "/repos/acme/lab/check-runs/2", 1).await;
    let summary = format!(
        "phasegate could not start a run of `persona-v1` for this commit: the repository file `{SPEC_PATH}` could \
         not be used.\n\n```text\nno such file at this commit\n```\n\nFix the file and push again."
    );
    let title = format!("phasegate could not start: {SPEC_PATH}: no such file at this commit");
    assert_eq!(patches, [completed("failure", &title, &summary)]);

    assert_eq!(coordinator.signed("pull_request", &pr_payload("synchronize", SHA3)).await, 202);
    let patches = wait_for(&server, "PATCH", "/repos/acme/lab/check-runs/3", 1).await;
    let title = patches[0]["output"]["title"].as_str().unwrap();
    assert_eq!(title, format!("phasegate could not start: {SPEC_PATH}: TOML parse error at line 2, column 9"));
    let summary = patches[0]["output"]["summary"].as_str().unwrap();
    assert!(summary.contains("phase = 10") && summary.contains("invalid type: integer `10`"), "{summary}");
    assert_eq!(patches[0]["conclusion"], "failure");

    let posts = received(&server, "POST", "/repos/acme/lab/check-runs").await;
    assert_eq!(posts, [created(SHA1, None), created(SHA2, None), created(SHA3, None)]);
    let metrics = coordinator.http_get("/metrics").await;
    assert!(metrics.contains("phasegate_github_webhook_failures_total 3\n"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_pr_waiting_for_its_label_is_shown_through_the_retried_delivery() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/lab/pulls/7/files"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{ "filename": SPEC_PATH }])))
        .mount(&server)
        .await;
    // GitHub is briefly down: the first create answers 502, the delivery loop tries again.
    Mock::given(method("POST"))
        .and(path("/repos/acme/lab/check-runs"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_check_run(&server, 1, SHA1).await;
    let coordinator = Coordinator::start(&server, false).await;

    let payload = pr_payload_from("opened", SHA1, "stranger/lab");
    assert_eq!(coordinator.signed("pull_request", &payload).await, 202);
    let patches = wait_for(&server, "PATCH", "/repos/acme/lab/check-runs/1", 1).await;
    let summary = "This pull request comes from a fork. phasegate runs fine-tuning jobs on its own GPU agents, so \
                   a maintainer must review the change and add the label `phasegate:run` to start the run. Each \
                   new push needs the label to be added again.";
    let title = "waiting for a maintainer to add the label `phasegate:run`";
    assert_eq!(patches, [completed("neutral", title, summary)]);
    let posts = received(&server, "POST", "/repos/acme/lab/check-runs").await;
    assert_eq!(posts, [created(SHA1, None), created(SHA1, None)], "the 502 was retried");
    assert!(received(&server, "GET", &format!("/repos/acme/lab/tarball/{SHA1}")).await.is_empty(), "no run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_attempt_count_gives_up_after_that_many_attempts_visibly_on_the_run() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/lab/check-runs"))
        .respond_with(ResponseTemplate::new(502).set_body_string("bad gateway"))
        .mount(&server)
        .await;
    let retries = "delivery_attempts = 2\ndelivery_initial_delay_ms = 50\ndelivery_max_delay_ms = 100\n";
    let coordinator = Coordinator::start_with(&server, false, retries).await;
    coordinator.register_idle_agent().await;
    let mut control = coordinator.control();
    let run_id = submit_pr(&mut control, SHA1).await;
    let d = settled_delivery(&mut control, run_id).await;
    assert_eq!((d.stage.as_str(), d.status.as_str(), d.attempts), ("submitted", "given_up", 2));
    assert!(d.error.contains("failed to create check run on acme/lab") && d.error.contains("502"), "{}", d.error);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let url = format!("http://dash.test/runs/{run_id}");
    let posts = received(&server, "POST", "/repos/acme/lab/check-runs").await;
    assert_eq!(posts, [created(SHA1, Some(&url)), created(SHA1, Some(&url))], "two attempts, then no more");
}
