//! The coordinator's gRPC and HTTP services, in process on `127.0.0.1:0` with a temp data dir.
//!
//! The test plays the agent itself through the raw protocol, so every step is visible and asserted.

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt as _;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tonic::Code;

use phasegate_coordinator::{AccessFile, CoreConfigPublic, ServeConfig, ShellConfig};
use phasegate_proto::client::{AgentClient, ControlClient, agent_client, channel, control_client};
use phasegate_proto::pb;

/// A minimal valid spec; `{extra}` is spliced into `[finetune]`.
fn spec(requires: &str, extra: &str) -> String {
    format!(
        r#"experiment = "grpc-test"
phase = "1"
priority = "manual"

[finetune]
command = ["python3", "train.py"]
requires = {requires}
timeout = "1m"
{extra}
"#
    )
}

const CPU_JOB: &str = "{ gpu = false, vram_mib = 0, labels = [] }";

/// A coordinator served in process; shut down when dropped.
struct Coordinator {
    _dir: tempfile::TempDir,
    access: AccessFile,
    http: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Coordinator {
    async fn start(shell: ShellConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_addr = http.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let config = ServeConfig { data_dir: dir.path().join("data"), shell, tls: None };
        tokio::spawn(async move {
            let result = phasegate_coordinator::run(config, grpc, http, async move {
                let _ = stopped.await;
            })
            .await;
            if let Err(e) = result {
                panic!("coordinator failed: {e}");
            }
        });
        let path = dir.path().join("data").join("access.toml");
        let mut tries = 0;
        let access = loop {
            if let Ok(a) = AccessFile::load(&path) {
                break a;
            }
            tries += 1;
            assert!(tries < 200, "the coordinator never wrote {}", path.display());
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        Self { _dir: dir, access, http: http_addr, stop: Some(stop) }
    }

    async fn default() -> Self {
        Self::start(ShellConfig::default()).await
    }

    fn agent_with(&self, token: &str) -> AgentClient {
        agent_client(channel(&self.access.address, None).unwrap(), token).unwrap()
    }

    fn control_with(&self, token: &str) -> ControlClient {
        control_client(channel(&self.access.address, None).unwrap(), token).unwrap()
    }

    fn agent(&self) -> AgentClient {
        self.agent_with(&self.access.agent_token)
    }

    fn control(&self) -> ControlClient {
        self.control_with(&self.access.client_token)
    }

    async fn submit(&self, spec_toml: String) -> u64 {
        let req = pb::SubmitRunRequest { spec_toml, spec_path: "phase.toml".into(), ..Default::default() };
        self.control().submit_run(req).await.unwrap().into_inner().run_id
    }

    async fn get_run(&self, run_id: u64) -> pb::Run {
        self.control().get_run(pb::GetRunRequest { run_id }).await.unwrap().into_inner()
    }

    /// `GET path` over a hand-written HTTP/1.1 request; returns (status line, body).
    async fn http_get(&self, path: &str) -> (String, String) {
        let mut stream = TcpStream::connect(self.http).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.http);
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn caps(gpus: &[(&str, u64)]) -> pb::Capabilities {
    pb::Capabilities {
        hostname: "test-host".into(),
        cpus: 4,
        ram_mib: 8192,
        gpus: gpus
            .iter()
            .zip(0..)
            .map(|((name, vram), index)| pb::Gpu {
                index,
                name: (*name).into(),
                uuid: format!("GPU-{index}"),
                total_vram_mib: *vram,
                free_vram_mib: *vram,
            })
            .collect(),
        max_jobs: 1,
        ..Default::default()
    }
}

async fn register(agent: &mut AgentClient, name: &str, gpus: &[(&str, u64)]) {
    let req = pb::RegisterRequest {
        agent_name: name.into(),
        capabilities: Some(caps(gpus)),
        running: vec![],
        protocol_version: phasegate_proto::PROTOCOL_VERSION,
        ..Default::default()
    };
    agent.register(req).await.unwrap();
}

async fn lease(agent: &mut AgentClient, name: &str) -> pb::Assignment {
    let req = pb::LeaseJobRequest { agent_name: name.into(), wait_ms: 5000 };
    agent.lease_job(req).await.unwrap().into_inner().assignment.expect("a job was leased")
}

fn job_lease(a: &pb::Assignment) -> Option<pb::JobLease> {
    Some(pb::JobLease { job_id: a.job_id, epoch: a.epoch, token: a.lease_token.clone() })
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn upload_chunks(header: pb::ArtifactHeader, data: &[u8]) -> Vec<pb::ArtifactChunk> {
    use pb::artifact_chunk::Part;
    let mut chunks = vec![pb::ArtifactChunk { part: Some(Part::Header(header)) }];
    chunks.extend(data.chunks(7).map(|c| pb::ArtifactChunk { part: Some(Part::Data(c.to_vec())) }));
    chunks
}

async fn upload(
    agent: &mut AgentClient,
    a: &pb::Assignment,
    name: &str,
    data: &[u8],
) -> Result<pb::ArtifactRef, tonic::Status> {
    let header = pb::ArtifactHeader {
        job_id: a.job_id,
        epoch: a.epoch,
        lease_token: a.lease_token.clone(),
        name: name.into(),
        size: data.len() as u64,
        sha256: sha256_hex(data),
    };
    let resp = agent.upload_artifact(futures::stream::iter(upload_chunks(header, data))).await?;
    Ok(resp.into_inner().artifact.expect("artifact ref"))
}

fn batch(a: &pb::Assignment, batch_seq: u64, lines: &[(u64, &str)], loss: Option<(u64, f64)>) -> pb::EventBatch {
    pb::EventBatch {
        lease: job_lease(a),
        batch_seq,
        lines: lines
            .iter()
            .map(|(seq, text)| pb::LogLine { seq: *seq, stream: "stdout".into(), text: (*text).into(), ts_ms: 1 })
            .collect(),
        metrics: loss
            .map(|(step, loss)| pb::MetricPoint {
                step: Some(step),
                values: vec![pb::KeyValueNumber { key: "loss".into(), value: loss }],
            })
            .into_iter()
            .collect(),
    }
}

/// Sends batches on one event stream and returns the acks, or the status that ended the stream.
async fn stream_events(
    agent: &mut AgentClient,
    batches: Vec<pb::EventBatch>,
) -> Result<Vec<pb::EventAck>, tonic::Status> {
    let n = batches.len();
    let mut acks = agent.stream_events(futures::stream::iter(batches)).await?.into_inner();
    let mut out = Vec::new();
    while out.len() < n {
        match acks.next().await {
            Some(ack) => out.push(ack?),
            None => break,
        }
    }
    Ok(out)
}

async fn fetch_logs(control: &mut ControlClient, run_id: u64) -> Vec<String> {
    let mut stream = control.fetch_logs(pb::FetchLogsRequest { run_id, follow: false }).await.unwrap().into_inner();
    let mut lines = Vec::new();
    while let Some(chunk) = stream.next().await {
        lines.extend(chunk.unwrap().lines.into_iter().map(|l| l.text));
    }
    lines
}

fn assert_invalid(result: Result<impl std::fmt::Debug, tonic::Status>, field: &str) {
    let status = result.expect_err("the request must be rejected");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains(field), "the message must name `{field}`: {}", status.message());
}

fn assert_unauthenticated(result: Result<impl std::fmt::Debug, tonic::Status>) {
    let status = result.expect_err("the request must be rejected");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

#[tokio::test]
async fn requests_without_the_right_token_are_unauthenticated() {
    let c = Coordinator::default().await;
    let ch = || channel(&c.access.address, None).unwrap();

    // No token at all.
    let mut bare_control = pb::control_service_client::ControlServiceClient::new(ch());
    assert_unauthenticated(bare_control.list_runs(pb::ListRunsRequest::default()).await);
    let mut bare_agent = pb::agent_service_client::AgentServiceClient::new(ch());
    let req = pb::LeaseJobRequest { agent_name: "a1".into(), wait_ms: 0 };
    assert_unauthenticated(bare_agent.lease_job(req.clone()).await);

    // A wrong token, and each role's token on the other role's service.
    assert_unauthenticated(c.control_with("not-the-token").list_agents(pb::ListAgentsRequest {}).await);
    assert_unauthenticated(c.control_with(&c.access.agent_token).list_agents(pb::ListAgentsRequest {}).await);
    assert_unauthenticated(c.agent_with(&c.access.client_token).lease_job(req).await);
    let register = pb::RegisterRequest {
        agent_name: "a1".into(),
        capabilities: Some(caps(&[])),
        running: vec![],
        protocol_version: phasegate_proto::PROTOCOL_VERSION,
        ..Default::default()
    };
    assert_unauthenticated(c.agent_with(&c.access.client_token).register(register.clone()).await);

    // Nothing was registered by the rejected calls; the right tokens work.
    let agents = c.control().list_agents(pb::ListAgentsRequest {}).await.unwrap().into_inner().agents;
    assert!(agents.is_empty(), "{agents:?}");
    c.agent().register(register).await.unwrap();
    assert_eq!(c.control().list_agents(pb::ListAgentsRequest {}).await.unwrap().into_inner().agents.len(), 1);
}

#[tokio::test]
async fn malformed_requests_are_invalid_arguments_naming_the_field() {
    let c = Coordinator::default().await;
    let mut control = c.control();
    let mut agent = c.agent();

    assert_invalid(control.get_run(pb::GetRunRequest { run_id: 0 }).await, "run_id");
    assert_invalid(control.cancel_run(pb::CancelRunRequest { run_id: 0 }).await, "run_id");

    let bad_name = pb::RegisterRequest {
        agent_name: "no spaces".into(),
        capabilities: Some(caps(&[])),
        running: vec![],
        protocol_version: phasegate_proto::PROTOCOL_VERSION,
        ..Default::default()
    };
    assert_invalid(agent.register(bad_name).await, "agent_name");
    let no_caps = pb::RegisterRequest {
        agent_name: "a1".into(),
        capabilities: None,
        running: vec![],
        protocol_version: phasegate_proto::PROTOCOL_VERSION,
        ..Default::default()
    };
    assert_invalid(agent.register(no_caps).await, "capabilities");
    let mut zero_jobs = caps(&[]);
    zero_jobs.max_jobs = 0;
    let req = pb::RegisterRequest {
        agent_name: "a1".into(),
        capabilities: Some(zero_jobs),
        running: vec![],
        protocol_version: phasegate_proto::PROTOCOL_VERSION,
        ..Default::default()
    };
    assert_invalid(agent.register(req).await, "capabilities.max_jobs");
    assert_invalid(agent.lease_job(pb::LeaseJobRequest { agent_name: String::new(), wait_ms: 0 }).await, "agent_name");

    let zero_job = Some(pb::JobLease { job_id: 0, epoch: 1, token: String::new() });
    assert_invalid(agent.start_job(pb::StartJobRequest { lease: zero_job.clone() }).await, "lease.job_id");
    assert_invalid(agent.start_job(pb::StartJobRequest { lease: None }).await, "lease");
    let complete = pb::CompleteJobRequest { lease: zero_job, success: true, ..Default::default() };
    assert_invalid(agent.complete_job(complete).await, "lease.job_id");

    let submit =
        |spec_toml: String| pb::SubmitRunRequest { spec_toml, spec_path: "phase.toml".into(), ..Default::default() };
    assert_invalid(control.submit_run(submit(spec(CPU_JOB, "epochz = 3"))).await, "epochz");
    let mut unknown_bundle = submit(spec(CPU_JOB, ""));
    unknown_bundle.bundle_sha256 = sha256_hex(b"never uploaded");
    assert_invalid(control.submit_run(unknown_bundle).await, "bundle_sha256");
    let mut bad_bundle = submit(spec(CPU_JOB, ""));
    bad_bundle.bundle_sha256 = "xyz".into();
    assert_invalid(control.submit_run(bad_bundle).await, "bundle_sha256");
    let mut bad_sha = submit(spec(CPU_JOB, ""));
    bad_sha.trigger = Some(pb::Trigger { sha: "not-a-sha!".into(), ..Default::default() });
    assert_invalid(control.submit_run(bad_sha).await, "trigger.sha");

    // None of the rejected submissions created a run.
    let runs = control.list_runs(pb::ListRunsRequest::default()).await.unwrap().into_inner().runs;
    assert!(runs.is_empty(), "{runs:?}");
}

#[tokio::test]
async fn full_agent_protocol_round_trip() {
    let c = Coordinator::default().await;
    let mut agent = c.agent();
    let mut control = c.control();
    register(&mut agent, "a1", &[]).await;
    let run_id = c.submit(spec(CPU_JOB, "")).await;
    assert_eq!(c.get_run(run_id).await.state, "queued");

    let a = lease(&mut agent, "a1").await;
    assert_eq!(a.run_id, run_id);
    assert_eq!(a.stage, "finetune");
    assert_eq!(a.attempt, 1);
    assert!(a.epoch > 0);
    let Some(pb::assignment::Work::Command(work)) = &a.work else { panic!("a command job: {a:?}") };
    assert_eq!(work.argv, ["python3", "train.py"]);
    assert_eq!(work.timeout_ms, 60_000);

    agent.start_job(pb::StartJobRequest { lease: job_lease(&a) }).await.unwrap();
    let run = c.get_run(run_id).await;
    assert_eq!(
        (run.state.as_str(), run.jobs[0].state.as_str(), run.jobs[0].agent.as_str()),
        ("running", "running", "a1")
    );

    let acks = stream_events(
        &mut agent,
        vec![
            batch(&a, 1, &[(1, "step 1 loss 2.0"), (2, "step 2 loss 1.5")], Some((1, 2.0))),
            batch(&a, 2, &[(3, "training done")], Some((2, 1.5))),
        ],
    )
    .await
    .unwrap();
    let acked: Vec<_> = acks.iter().map(|k| (k.job_id, k.batch_seq)).collect();
    assert_eq!(acked, [(a.job_id, 1), (a.job_id, 2)]);
    let progress = c.get_run(run_id).await.jobs[0].progress.expect("progress of a running job");
    assert_eq!((progress.step, progress.loss), (Some(2), Some(1.5)));

    let adapter = b"{\"r\": 16}".repeat(5);
    let artifact = upload(&mut agent, &a, "output/adapter/adapter_config.json", &adapter).await.unwrap();
    assert_eq!((artifact.sha256.clone(), artifact.size), (sha256_hex(&adapter), adapter.len() as u64));

    let metrics = pb::JobMetrics {
        final_loss: Some(1.5),
        vram_peak_mib: Some(1900),
        loss_curve: vec![
            pb::LossPoint { step: 1, epoch: Some(0.5), loss: 2.0 },
            pb::LossPoint { step: 2, epoch: Some(1.0), loss: 1.5 },
        ],
        summary_json: r#"{"lora_r": 16}"#.into(),
        ..Default::default()
    };
    let complete = pb::CompleteJobRequest {
        lease: job_lease(&a),
        success: true,
        exit_code: Some(0),
        metrics: Some(metrics.clone()),
        artifacts: vec![artifact.clone()],
        ..Default::default()
    };
    agent.complete_job(complete).await.unwrap();

    let run = c.get_run(run_id).await;
    assert_eq!(run.state, "succeeded", "{run:?}");
    let job = &run.jobs[0];
    assert_eq!((job.state.as_str(), job.attempts), ("succeeded", 1));
    assert_eq!(job.metrics.as_ref(), Some(&metrics));
    assert_eq!(job.artifacts, std::slice::from_ref(&artifact));
    assert_eq!(fetch_logs(&mut control, run_id).await, ["step 1 loss 2.0", "step 2 loss 1.5", "training done"]);

    // The uploaded artifact can be downloaded back, byte for byte.
    let mut chunks = agent
        .download_artifact(pb::DownloadArtifactRequest { sha256: artifact.sha256.clone() })
        .await
        .unwrap()
        .into_inner();
    let mut downloaded = Vec::new();
    while let Some(chunk) = chunks.next().await {
        if let Some(pb::artifact_chunk::Part::Data(d)) = chunk.unwrap().part {
            downloaded.extend(d);
        }
    }
    assert_eq!(downloaded, adapter);
}

#[tokio::test]
async fn a_stale_epoch_is_rejected_and_changes_nothing() {
    let shell = ShellConfig {
        core: CoreConfigPublic { lease_ttl: Duration::from_millis(300), max_attempts: 3 },
        heartbeat_interval: Duration::from_millis(100),
        ..ShellConfig::default()
    };
    let c = Coordinator::start(shell).await;
    let mut agent = c.agent();
    let mut control = c.control();
    register(&mut agent, "a1", &[]).await;
    let run_id = c.submit(spec(CPU_JOB, "")).await;
    let old = lease(&mut agent, "a1").await;
    agent.start_job(pb::StartJobRequest { lease: job_lease(&old) }).await.unwrap();

    // No heartbeat: the lease expires and the job is requeued; a second agent leases it again.
    register(&mut agent, "a2", &[]).await;
    let new = lease(&mut agent, "a2").await;
    assert_eq!(new.job_id, old.job_id);
    assert!(new.epoch > old.epoch, "the epoch must grow: {} then {}", old.epoch, new.epoch);
    assert_eq!(new.attempt, 2);
    // a2 keeps its lease alive while the stale calls are made.
    let mut beats = c.agent();
    let renew = pb::HeartbeatRequest {
        agent_name: "a2".into(),
        gpus: vec![],
        running: job_lease(&new).into_iter().collect(),
        draining: false,
        leaving: false,
    };
    let heartbeat = tokio::spawn(async move {
        loop {
            let _ = beats.heartbeat(renew.clone()).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let before = c.get_run(run_id).await;
    assert_eq!((before.jobs[0].state.as_str(), before.jobs[0].agent.as_str()), ("leased", "a2"));

    let stale = |s: tonic::Status| {
        assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    };
    let complete = pb::CompleteJobRequest { lease: job_lease(&old), success: true, ..Default::default() };
    stale(agent.complete_job(complete).await.expect_err("stale completion"));
    stale(agent.start_job(pb::StartJobRequest { lease: job_lease(&old) }).await.expect_err("stale start"));
    let lines = [(1, "from the lost attempt")];
    stale(stream_events(&mut agent, vec![batch(&old, 1, &lines, Some((1, 9.0)))]).await.expect_err("stale events"));
    stale(upload(&mut agent, &old, "adapter.bin", b"stale bytes").await.expect_err("stale upload"));

    let after = c.get_run(run_id).await;
    assert_eq!(after, before, "a stale call changed the run");
    assert!(fetch_logs(&mut control, run_id).await.is_empty());
    // The stale upload was refused before any data was stored.
    let download = agent.download_artifact(pb::DownloadArtifactRequest { sha256: sha256_hex(b"stale bytes") }).await;
    let missing = match download {
        Err(s) => s,
        Ok(resp) => resp.into_inner().next().await.expect("a response").expect_err("no such artifact"),
    };
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");

    // The current epoch still works.
    heartbeat.abort();
    let complete = pb::CompleteJobRequest { lease: job_lease(&new), success: true, ..Default::default() };
    agent.start_job(pb::StartJobRequest { lease: job_lease(&new) }).await.unwrap();
    agent.complete_job(complete).await.unwrap();
    let done = c.get_run(run_id).await;
    assert_eq!((done.state.as_str(), done.jobs[0].attempts), ("succeeded", 2));
}

#[tokio::test]
async fn a_job_no_agent_can_ever_fit_fails_the_run_at_once() {
    let c = Coordinator::default().await;
    let mut agent = c.agent();
    register(&mut agent, "small", &[("RTX 3050", 4096)]).await;
    register(&mut agent, "cpu", &[]).await;

    let run_id = c.submit(spec("{ gpu = true, vram_mib = 100000, labels = [] }", "")).await;
    let run = c.get_run(run_id).await;
    assert_eq!(run.state, "failed", "{run:?}");
    assert!(run.error.contains("100000 MiB"), "{}", run.error);
    assert!(run.error.contains("agent small: GPU 0 RTX 3050 (4096 MiB total)"), "{}", run.error);
    assert!(run.error.contains("agent cpu: no GPU"), "{}", run.error);

    // And it is never leased.
    let req = pb::LeaseJobRequest { agent_name: "small".into(), wait_ms: 200 };
    assert!(agent.lease_job(req).await.unwrap().into_inner().assignment.is_none());

    // A job that fits is accepted and queued.
    let fits = c.submit(spec("{ gpu = true, vram_mib = 4000, labels = [] }", "")).await;
    assert_eq!(c.get_run(fits).await.state, "queued");
}

#[tokio::test]
async fn healthz_and_metrics_over_http() {
    let c = Coordinator::default().await;
    let (status, body) = c.http_get("/healthz").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(body.trim(), "ok");

    let mut agent = c.agent();
    register(&mut agent, "a1", &[]).await;
    c.submit(spec(CPU_JOB, "")).await;
    c.submit(spec(CPU_JOB, "")).await;
    let (status, body) = c.http_get("/metrics").await;
    assert!(status.contains("200"), "{status}");
    for expected in [
        "phasegate_queue_depth 2\n",
        "phasegate_leases 0\n",
        "phasegate_agents{status=\"online\"} 1\n",
        "phasegate_runs_submitted_total 2\n",
        "phasegate_job_duration_seconds_count",
    ] {
        assert!(body.contains(expected), "missing {expected:?} in:\n{body}");
    }

    let (status, _) = c.http_get("/nope").await;
    assert!(status.contains("404"), "{status}");
}
