//! Lease tokens, per-agent credentials, live agent names and protocol versions, over real gRPC on
//! `127.0.0.1:0` with a temp data dir. The tests play the agents through the raw protocol.

mod common;

use std::path::PathBuf;

use futures::StreamExt as _;
use sha2::{Digest as _, Sha256};
use tonic::Code;

use phasegate_coordinator::ShellConfig;
use phasegate_proto::PROTOCOL_VERSION;
use phasegate_proto::client::{AgentClient, ControlClient, agent_client, agent_client_as, channel, control_client};
use phasegate_proto::pb;

use common::Coordinator;

const SPEC: &str = r#"experiment = "lease-test"
phase = "1"
priority = "manual"

[finetune]
command = ["python3", "train.py"]
requires = { gpu = false, vram_mib = 0, labels = [] }
timeout = "1m"
"#;

/// A lease token nobody was issued (the right length, so it is checked, not rejected as malformed).
const FORGED: &str = "00112233445566778899aabbccddeeff";

/// What these tests ask of the shared in-process coordinator.
impl Coordinator {
    /// An agent client with the shared token that names itself `name`.
    fn agent(&self, name: &str) -> AgentClient {
        agent_client_as(channel(&self.access.address, None).unwrap(), &self.access.agent_token, name).unwrap()
    }

    /// An agent client presenting `token` and no name header.
    fn agent_with(&self, token: &str) -> AgentClient {
        agent_client(channel(&self.access.address, None).unwrap(), token).unwrap()
    }

    fn control(&self) -> ControlClient {
        control_client(channel(&self.access.address, None).unwrap(), &self.access.client_token).unwrap()
    }

    async fn submit(&self) -> u64 {
        let req = pb::SubmitRunRequest { spec_toml: SPEC.into(), spec_path: "phase.toml".into(), ..Default::default() };
        self.control().submit_run(req).await.unwrap().into_inner().run_id
    }

    async fn job(&self, run_id: u64) -> pb::Job {
        let run = self.control().get_run(pb::GetRunRequest { run_id }).await.unwrap().into_inner();
        run.jobs.into_iter().next().expect("the run has a job")
    }

    async fn create_token(&self, agent: &str) -> (pb::AgentToken, String) {
        let req = pb::CreateAgentTokenRequest { agent_name: agent.into() };
        let resp = self.control().create_agent_token(req).await.unwrap().into_inner();
        (resp.token.expect("the created credential"), resp.secret)
    }
}

fn register_request(name: &str, instance: &str, running: Vec<pb::JobLease>) -> pb::RegisterRequest {
    pb::RegisterRequest {
        agent_name: name.into(),
        capabilities: Some(pb::Capabilities {
            hostname: "test-host".into(),
            cpus: 4,
            max_jobs: 1,
            ..Default::default()
        }),
        running,
        protocol_version: PROTOCOL_VERSION,
        instance: instance.into(),
    }
}

async fn register(agent: &mut AgentClient, name: &str) -> pb::RegisterResponse {
    agent.register(register_request(name, &format!("{name}-process"), vec![])).await.unwrap().into_inner()
}

/// Leases and starts the queued job as `name`.
async fn lease_and_start(agent: &mut AgentClient, name: &str) -> pb::Assignment {
    let req = pb::LeaseJobRequest { agent_name: name.into(), wait_ms: 5000 };
    let a = agent.lease_job(req).await.unwrap().into_inner().assignment.expect("a job was leased");
    assert_eq!(a.lease_token.len(), 32, "a 128-bit lease token in hex");
    agent.start_job(pb::StartJobRequest { lease: Some(lease(&a, &a.lease_token)) }).await.unwrap();
    a
}

fn lease(a: &pb::Assignment, token: &str) -> pb::JobLease {
    pb::JobLease { job_id: a.job_id, epoch: a.epoch, token: token.into() }
}

/// A completion claiming success with invented metrics.
fn completion(lease: pb::JobLease) -> pb::CompleteJobRequest {
    pb::CompleteJobRequest {
        lease: Some(lease),
        success: true,
        exit_code: Some(0),
        metrics: Some(pb::JobMetrics { final_loss: Some(0.01), ..Default::default() }),
        ..Default::default()
    }
}

fn assert_code(result: Result<impl std::fmt::Debug, tonic::Status>, code: Code, needle: &str) -> String {
    let status = result.expect_err("the request must be rejected");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(needle), "the message must contain {needle:?}: {}", status.message());
    status.message().to_owned()
}

/// The job is still running on `holder` with nothing reported, and its agent is not told to stop.
async fn assert_untouched(c: &Coordinator, run_id: u64, holder: &mut AgentClient, name: &str, a: &pb::Assignment) {
    let job = c.job(run_id).await;
    assert_eq!((job.state.as_str(), job.agent.as_str()), ("running", name));
    assert!(job.metrics.is_none() && job.error.is_empty(), "nothing was recorded: {job:?}");
    let hb = pb::HeartbeatRequest {
        agent_name: name.into(),
        running: vec![lease(a, &a.lease_token)],
        gpus: vec![],
        draining: false,
        leaving: false,
    };
    assert!(holder.heartbeat(hb).await.unwrap().into_inner().stop_jobs.is_empty(), "the holder keeps its job");
}

async fn complete_for_real(holder: &mut AgentClient, a: &pb::Assignment) {
    let mut done = completion(lease(a, &a.lease_token));
    done.metrics = Some(pb::JobMetrics { final_loss: Some(0.9), ..Default::default() });
    holder.complete_job(done).await.unwrap();
}

/// Agents `real` and `rogue` with the shared token, both registered, and one submitted run whose
/// job `real` leased and started.
async fn real_and_rogue(c: &Coordinator) -> (AgentClient, AgentClient, u64, pb::Assignment) {
    let (mut real, mut rogue) = (c.agent("real"), c.agent("rogue"));
    register(&mut real, "real").await;
    register(&mut rogue, "rogue").await;
    let run_id = c.submit().await;
    let a = lease_and_start(&mut real, "real").await;
    (real, rogue, run_id, a)
}

#[tokio::test]
async fn a_forged_completion_from_a_second_agent_with_the_shared_token_is_denied() {
    let dir = tempfile::tempdir().unwrap();
    let c = Coordinator::start(dir.path(), ShellConfig::default()).await;
    let (mut real, mut rogue, run_id, a) = real_and_rogue(&c).await;

    // The job id and epoch are easy to guess; the token is not.
    let msg = assert_code(rogue.complete_job(completion(lease(&a, FORGED))).await, Code::PermissionDenied, "token");
    assert!(!msg.contains(&a.lease_token) && !msg.contains(FORGED), "tokens never appear in errors: {msg}");
    // Even the right token is refused from an agent that does not hold the lease.
    let stolen = completion(lease(&a, &a.lease_token));
    assert_code(rogue.complete_job(stolen).await, Code::PermissionDenied, "leased to agent real, not to agent rogue");
    assert_untouched(&c, run_id, &mut real, "real", &a).await;

    complete_for_real(&mut real, &a).await;
    let job = c.job(run_id).await;
    assert_eq!(job.state, "succeeded");
    assert_eq!(job.metrics.and_then(|m| m.final_loss), Some(0.9), "the real agent's metrics, not invented ones");
}

#[tokio::test]
async fn a_forged_completion_with_another_agents_credential_is_denied() {
    let dir = tempfile::tempdir().unwrap();
    let c = Coordinator::start(dir.path(), ShellConfig::default()).await;
    let (_, secret) = c.create_token("rogue").await;
    let mut real = c.agent("real");
    let mut rogue = c.agent_with(&secret);
    register(&mut real, "real").await;
    register(&mut rogue, "rogue").await;
    let run_id = c.submit().await;
    let a = lease_and_start(&mut real, "real").await;

    assert_code(rogue.complete_job(completion(lease(&a, FORGED))).await, Code::PermissionDenied, "token");
    // The credential says who calls: no header needed to be refused as the wrong agent.
    let stolen = completion(lease(&a, &a.lease_token));
    assert_code(rogue.complete_job(stolen).await, Code::PermissionDenied, "not to agent rogue");
    assert_untouched(&c, run_id, &mut real, "real", &a).await;

    complete_for_real(&mut real, &a).await;
    assert_eq!(c.job(run_id).await.state, "succeeded");
}

#[tokio::test]
async fn a_wrong_lease_token_with_the_right_epoch_is_denied_on_every_job_call() {
    let dir = tempfile::tempdir().unwrap();
    let c = Coordinator::start(dir.path(), ShellConfig::default()).await;
    let mut agent = c.agent("a1");
    register(&mut agent, "a1").await;
    let run_id = c.submit().await;
    let req = pb::LeaseJobRequest { agent_name: "a1".into(), wait_ms: 5000 };
    let a = agent.lease_job(req).await.unwrap().into_inner().assignment.expect("a job was leased");
    let forged = lease(&a, FORGED);

    let start = pb::StartJobRequest { lease: Some(forged.clone()) };
    assert_code(agent.start_job(start).await, Code::PermissionDenied, "lease token");
    assert_eq!(c.job(run_id).await.state, "leased", "a refused start changes nothing");

    let batch = pb::EventBatch { lease: Some(forged.clone()), batch_seq: 1, ..Default::default() };
    let mut acks = agent.stream_events(futures::stream::iter(vec![batch])).await.unwrap().into_inner();
    let first = acks.next().await.expect("the stream answers");
    assert_code(first, Code::PermissionDenied, "lease token");

    let data = b"forged weights".to_vec();
    let header = pb::ArtifactHeader {
        job_id: a.job_id,
        epoch: a.epoch,
        lease_token: FORGED.into(),
        name: "adapter.bin".into(),
        size: data.len() as u64,
        sha256: hex::encode(Sha256::digest(&data)),
    };
    let chunks = vec![
        pb::ArtifactChunk { part: Some(pb::artifact_chunk::Part::Header(header)) },
        pb::ArtifactChunk { part: Some(pb::artifact_chunk::Part::Data(data)) },
    ];
    assert_code(agent.upload_artifact(futures::stream::iter(chunks)).await, Code::PermissionDenied, "lease token");

    assert_code(agent.complete_job(completion(forged)).await, Code::PermissionDenied, "lease token");
    // A missing token cannot prove anything either.
    let bare = completion(lease(&a, ""));
    assert_code(agent.complete_job(bare).await, Code::PermissionDenied, "lease.token");
    assert_eq!(c.job(run_id).await.state, "leased");
}

#[tokio::test]
async fn the_lease_token_survives_a_coordinator_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir: PathBuf = dir.path().join("data");
    let c = Coordinator::start(&data_dir, ShellConfig::default()).await;
    let mut agent = c.agent("a1");
    register(&mut agent, "a1").await;
    let run_id = c.submit().await;
    let a = lease_and_start(&mut agent, "a1").await;
    c.stop().await;

    let c = Coordinator::start(&data_dir, ShellConfig::default()).await;
    let mut agent = c.agent("a1");
    // Re-attach: the forged lease is to be stopped, the real one kept.
    let forged = register_request("a1", "a1-process", vec![lease(&a, FORGED)]);
    assert_eq!(agent.register(forged).await.unwrap().into_inner().stop_jobs, vec![a.job_id]);
    let real = register_request("a1", "a1-process", vec![lease(&a, &a.lease_token)]);
    assert!(agent.register(real).await.unwrap().into_inner().stop_jobs.is_empty(), "the restored lease is kept");
    complete_for_real(&mut agent, &a).await;
    assert_eq!(c.job(run_id).await.state, "succeeded");
}

#[tokio::test]
async fn agent_credentials_are_created_listed_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let c = Coordinator::start(dir.path(), ShellConfig::default()).await;
    let (created, secret) = c.create_token("gpu-1").await;
    assert_eq!((created.agent_name.as_str(), secret.len()), ("gpu-1", 64), "a 256-bit secret in hex");
    let (second, other) = c.create_token("gpu-2").await;
    assert_ne!(secret, other);

    let mut agent = c.agent_with(&secret);
    register(&mut agent, "gpu-1").await;
    // Bound to its name: it cannot register another agent.
    let as_other = agent.register(register_request("gpu-2", "x", vec![])).await;
    assert_code(as_other, Code::PermissionDenied, "belongs to agent gpu-1, not gpu-2");

    let list = c.control().list_agent_tokens(pb::ListAgentTokensRequest {}).await.unwrap().into_inner().tokens;
    assert_eq!(
        list.iter().map(|t| (t.id, t.agent_name.as_str())).collect::<Vec<_>>(),
        [(created.id, "gpu-1"), (second.id, "gpu-2")]
    );
    assert!(list[0].last_used_ms > 0 && list[1].last_used_ms == 0, "{list:?}");
    assert!(list.iter().all(|t| t.created_ms > 0 && t.revoked_ms == 0));
    let listed = format!("{list:?}");
    assert!(!listed.contains(&secret) && !listed.contains(&other), "a listing never shows a secret");

    let revoke = pb::RevokeAgentTokenRequest { name_or_id: "gpu-1".into() };
    let revoked = c.control().revoke_agent_token(revoke).await.unwrap().into_inner().revoked;
    assert_eq!(revoked.iter().map(|t| t.id).collect::<Vec<_>>(), [created.id]);
    let refused = agent.register(register_request("gpu-1", "gpu-1-process", vec![])).await;
    assert_code(refused, Code::Unauthenticated, &format!("agent credential {} of agent gpu-1 was revoked", created.id));
    // By id too; then nothing is left to revoke.
    let by_id = pb::RevokeAgentTokenRequest { name_or_id: second.id.to_string() };
    assert_eq!(c.control().revoke_agent_token(by_id.clone()).await.unwrap().into_inner().revoked.len(), 1);
    assert_code(c.control().revoke_agent_token(by_id).await, Code::NotFound, "no unrevoked agent credential");
    let list = c.control().list_agent_tokens(pb::ListAgentTokensRequest {}).await.unwrap().into_inner().tokens;
    assert!(list.iter().all(|t| t.revoked_ms > 0), "{list:?}");
}

#[tokio::test]
async fn without_the_shared_agent_token_only_credentials_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let shell = ShellConfig { shared_agent_token: false, ..ShellConfig::default() };
    let c = Coordinator::start(dir.path(), shell).await;
    let mut shared = c.agent("a1");
    assert_code(
        shared.register(register_request("a1", "p", vec![])).await,
        Code::Unauthenticated,
        "shared agent token is off",
    );
    let (_, secret) = c.create_token("a1").await;
    register(&mut c.agent_with(&secret), "a1").await;
}

#[tokio::test]
async fn a_live_agent_name_is_refused_without_its_credential_and_taken_over_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let c = Coordinator::start(dir.path(), ShellConfig::default()).await;
    let mut first = c.agent("gpu-1");
    first.register(register_request("gpu-1", "first-process", vec![])).await.unwrap();

    let mut second = c.agent("gpu-1");
    let msg = assert_code(
        second.register(register_request("gpu-1", "second-process", vec![])).await,
        Code::AlreadyExists,
        "agent name gpu-1 belongs to a live agent",
    );
    assert!(msg.contains("phasegate token create --agent gpu-1"), "{msg}");
    // The same process registering again (after a network blip) is not a newcomer.
    first.register(register_request("gpu-1", "first-process", vec![])).await.unwrap();

    let (_, secret) = c.create_token("gpu-1").await;
    let mut owner = c.agent_with(&secret);
    owner.register(register_request("gpu-1", "owner-process", vec![])).await.unwrap();
    // Now the owner's registration is the live one.
    let again = first.register(register_request("gpu-1", "first-process", vec![])).await;
    assert_code(again, Code::AlreadyExists, "gpu-1");
}

#[tokio::test]
async fn an_agent_of_another_protocol_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let c = Coordinator::start(dir.path(), ShellConfig::default()).await;
    let mut old = register_request("old", "p", vec![]);
    old.protocol_version = 0;
    let msg = assert_code(c.agent("old").register(old).await, Code::FailedPrecondition, "agent protocol 1");
    assert_eq!(
        msg,
        format!(
            "agent protocol 1 is not supported by coordinator protocol {PROTOCOL_VERSION} (supported: {PROTOCOL_VERSION})"
        )
    );
    let agents = c.control().list_agents(pb::ListAgentsRequest {}).await.unwrap().into_inner().agents;
    assert!(agents.is_empty(), "a refused agent is not registered: {agents:?}");
    let resp = register(&mut c.agent("new"), "new").await;
    assert_eq!(resp.protocol_version, PROTOCOL_VERSION);
}

/// A completion whose answer was lost (the coordinator restarted after committing it) is sent
/// again by the agent: the repeat is acknowledged and changes nothing, before and after a restart.
/// A repeat with another outcome, token or holder is still refused.
#[tokio::test]
async fn a_repeated_completion_is_acknowledged_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = Coordinator::start(dir.path(), ShellConfig::default()).await;
    let (mut real, mut rogue, run_id, a) = real_and_rogue(&c).await;
    complete_for_real(&mut real, &a).await;
    let done = c.job(run_id).await;
    assert_eq!(done.state, "succeeded");

    let mut repeat = completion(lease(&a, &a.lease_token));
    repeat.metrics = Some(pb::JobMetrics { final_loss: Some(0.9), ..Default::default() });
    real.complete_job(repeat.clone()).await.expect("the repeat is acknowledged");
    let mut flipped = repeat.clone();
    flipped.success = false;
    assert_code(real.complete_job(flipped.clone()).await, Code::FailedPrecondition, "not known or no longer active");
    assert_code(rogue.complete_job(repeat.clone()).await, Code::FailedPrecondition, "");
    assert_code(real.complete_job(completion(lease(&a, FORGED))).await, Code::FailedPrecondition, "");
    assert_eq!(c.job(run_id).await, done, "no repeat changed the job");

    // After a restart the run has left the scheduler: the store remembers the completion.
    c.stop().await;
    let c = Coordinator::start(dir.path(), ShellConfig::default()).await;
    let mut real = c.agent("real");
    register(&mut real, "real").await;
    real.complete_job(repeat).await.expect("the repeat is acknowledged after a restart");
    assert_code(real.complete_job(flipped).await, Code::FailedPrecondition, "");
    assert_eq!(c.job(run_id).await, done, "nothing changed");
}

/// Every refusal of a caller and every error about the access file is read for secret text: the
/// shared tokens, an agent credential, a lease token and the near misses presented with them
/// appear in none of them, not even in part.
#[tokio::test]
async fn no_error_message_contains_secret_text() {
    let dir = tempfile::tempdir().unwrap();
    let c = Coordinator::start(dir.path(), ShellConfig::default()).await;
    let (_, secret) = c.create_token("gpu-1").await;
    let near_miss = |t: &str| format!("{}{}", &t[..t.len() - 1], if t.ends_with('0') { '1' } else { '0' });
    let (client_miss, agent_miss, secret_miss) =
        (near_miss(&c.access.client_token), near_miss(&c.access.agent_token), near_miss(&secret));
    let mut messages = Vec::new();
    let mut note = |r: Result<String, tonic::Status>| messages.push(r.expect_err("refused").message().to_owned());
    let ch = || channel(&c.access.address, None).unwrap();

    for token in [&client_miss, &c.access.agent_token, &secret] {
        let mut control = control_client(ch(), token).unwrap();
        note(control.list_runs(pb::ListRunsRequest::default()).await.map(|r| format!("{r:?}")));
    }
    for token in [&agent_miss, &c.access.client_token, &secret_miss] {
        let mut agent = agent_client(ch(), token).unwrap();
        note(agent.register(register_request("gpu-1", "p", vec![])).await.map(|r| format!("{r:?}")));
    }
    let mut credentialed = c.agent_with(&secret);
    note(credentialed.register(register_request("gpu-2", "p", vec![])).await.map(|r| format!("{r:?}")));

    let (mut real, mut rogue, _, a) = real_and_rogue(&c).await;
    let miss = near_miss(&a.lease_token);
    for token in [&a.lease_token, &miss] {
        note(rogue.complete_job(completion(lease(&a, token))).await.map(|r| format!("{r:?}")));
        let start = pb::StartJobRequest { lease: Some(lease(&a, token)) };
        note(rogue.start_job(start).await.map(|r| format!("{r:?}")));
    }
    note(real.start_job(pb::StartJobRequest { lease: Some(lease(&a, &miss)) }).await.map(|r| format!("{r:?}")));

    c.create_token("gpu-3").await;
    let revoke = pb::RevokeAgentTokenRequest { name_or_id: "gpu-1".into() };
    c.control().revoke_agent_token(revoke).await.unwrap();
    note(credentialed.register(register_request("gpu-1", "p", vec![])).await.map(|r| format!("{r:?}")));

    // The access file truncated inside a token, and edited so a token lost its closing quote.
    let text = std::fs::read_to_string(dir.path().join("access.toml")).unwrap();
    let cut = text.find(&c.access.agent_token).unwrap() + 20;
    let broken =
        [text[..cut].to_owned(), text.replacen(&format!("{}\"", c.access.client_token), &c.access.client_token, 1)];
    for (i, body) in broken.iter().enumerate() {
        let path = dir.path().join(format!("broken-{i}.toml"));
        std::fs::write(&path, body).unwrap();
        messages.push(phasegate_coordinator::AccessFile::load(&path).expect_err("broken").to_string());
    }

    let secrets = [
        &c.access.client_token,
        &c.access.agent_token,
        &secret,
        &a.lease_token,
        &client_miss,
        &agent_miss,
        &secret_miss,
        &miss,
    ];
    assert_eq!(messages.len(), 15);
    for m in &messages {
        assert!(!m.is_empty());
        for s in secrets {
            // No 12-hex-digit run of a secret (48 bits) appears anywhere in an error.
            for w in s.as_bytes().windows(12) {
                let piece = std::str::from_utf8(w).unwrap();
                assert!(!m.contains(piece), "an error shows secret text {piece:?}: {m}");
            }
        }
    }
}
