//! Draining agents and released jobs, over real gRPC on `127.0.0.1:0` with a temp data dir. The
//! tests play the agents through the raw protocol.

mod common;

use tonic::Code;

use phasegate_coordinator::{CoreConfigPublic, ShellConfig};
use phasegate_proto::PROTOCOL_VERSION;
use phasegate_proto::client::{AgentClient, ControlClient, agent_client, agent_client_as, channel, control_client};
use phasegate_proto::pb;

use common::Coordinator;

const SPEC: &str = r#"experiment = "drain-test"
phase = "1"
priority = "manual"

[finetune]
command = ["python3", "train.py"]
requires = { gpu = false, vram_mib = 0, labels = [] }
timeout = "1m"
"#;

/// A lease token nobody was issued.
const FORGED: &str = "00112233445566778899aabbccddeeff";

impl Coordinator {
    fn agent(&self, name: &str) -> AgentClient {
        agent_client_as(channel(&self.access.address, None).unwrap(), &self.access.agent_token, name).unwrap()
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

    async fn set_draining(&self, name: &str, draining: bool) -> Result<pb::Agent, tonic::Status> {
        let req = pb::SetAgentDrainingRequest { agent_name: name.into(), draining };
        Ok(self.control().set_agent_draining(req).await?.into_inner().agent.expect("the agent"))
    }

    async fn listed(&self, name: &str) -> pb::Agent {
        let agents = self.control().list_agents(pb::ListAgentsRequest {}).await.unwrap().into_inner().agents;
        agents.into_iter().find(|a| a.name == name).unwrap_or_else(|| panic!("agent {name} is listed"))
    }
}

async fn register(agent: &mut AgentClient, name: &str, instance: &str) {
    let req = pb::RegisterRequest {
        agent_name: name.into(),
        capabilities: Some(pb::Capabilities {
            hostname: "test-host".into(),
            cpus: 4,
            max_jobs: 1,
            ..Default::default()
        }),
        running: vec![],
        protocol_version: PROTOCOL_VERSION,
        instance: instance.into(),
    };
    agent.register(req).await.unwrap();
}

/// One lease request that waits `wait_ms` at most.
async fn try_lease(agent: &mut AgentClient, name: &str, wait_ms: u32) -> Option<pb::Assignment> {
    let req = pb::LeaseJobRequest { agent_name: name.into(), wait_ms };
    agent.lease_job(req).await.unwrap().into_inner().assignment
}

async fn lease_and_start(agent: &mut AgentClient, name: &str) -> pb::Assignment {
    let a = try_lease(agent, name, 5000).await.expect("a job was leased");
    agent.start_job(pb::StartJobRequest { lease: Some(lease(&a, &a.lease_token)) }).await.unwrap();
    a
}

fn lease(a: &pb::Assignment, token: &str) -> pb::JobLease {
    pb::JobLease { job_id: a.job_id, epoch: a.epoch, token: token.into() }
}

fn release(lease: pb::JobLease) -> pb::ReleaseJobRequest {
    pb::ReleaseJobRequest { lease: Some(lease), reason: "the drain timeout (1s) of the agent passed".into() }
}

fn assert_code(result: Result<impl std::fmt::Debug, tonic::Status>, code: Code, needle: &str) {
    let status = result.expect_err("the request must be rejected");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(needle), "the message must contain {needle:?}: {}", status.message());
}

#[tokio::test]
async fn a_drained_agent_is_leased_nothing_until_it_is_undrained() {
    let dir = tempfile::tempdir().unwrap();
    let c = Coordinator::start(dir.path(), ShellConfig::default()).await;
    let mut agent = c.agent("gpu-1");
    register(&mut agent, "gpu-1", "p1").await;
    let drained = c.set_draining("gpu-1", true).await.unwrap();
    assert!(drained.draining && drained.drained_ms > 0 && !drained.agent_draining, "{drained:?}");
    let run_id = c.submit().await;

    assert!(try_lease(&mut agent, "gpu-1", 300).await.is_none(), "a drained agent is leased nothing");
    assert_eq!(c.job(run_id).await.state, "queued", "the job waits");
    let listed = c.listed("gpu-1").await;
    assert!(listed.online && listed.draining, "{listed:?}");

    // Draining again keeps the time it was first drained.
    assert_eq!(c.set_draining("gpu-1", true).await.unwrap().drained_ms, drained.drained_ms);
    let undrained = c.set_draining("gpu-1", false).await.unwrap();
    assert!(!undrained.draining && undrained.drained_ms == 0, "{undrained:?}");
    let a = try_lease(&mut agent, "gpu-1", 5000).await.expect("undrained, it gets the queued job");
    assert_eq!(c.job(run_id).await.state, "leased");
    assert!(a.job_id > 0);

    assert_code(c.set_draining("gpu-9", true).await, Code::NotFound, "gpu-9");
    assert_code(c.set_draining("not a name!", true).await, Code::InvalidArgument, "agent_name");
}

#[tokio::test]
async fn a_waiting_lease_request_is_answered_when_its_agent_is_undrained() {
    let dir = tempfile::tempdir().unwrap();
    let c = Coordinator::start(dir.path(), ShellConfig::default()).await;
    let mut agent = c.agent("gpu-1");
    register(&mut agent, "gpu-1", "p1").await;
    c.set_draining("gpu-1", true).await.unwrap();
    c.submit().await;
    let waiting = tokio::spawn(async move { try_lease(&mut agent, "gpu-1", 20_000).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "a drained agent's request waits");
    c.set_draining("gpu-1", false).await.unwrap();
    assert!(waiting.await.unwrap().is_some(), "undraining hands the waiting request the job");
}

#[tokio::test]
async fn a_drain_survives_re_registration_and_a_coordinator_restart() {
    let dir = tempfile::tempdir().unwrap();
    let c = Coordinator::start(dir.path(), ShellConfig::default()).await;
    let mut agent = c.agent("gpu-1");
    register(&mut agent, "gpu-1", "p1").await;
    c.set_draining("gpu-1", true).await.unwrap();
    register(&mut agent, "gpu-1", "p1").await;
    let run_id = c.submit().await;
    assert!(try_lease(&mut agent, "gpu-1", 200).await.is_none(), "re-registering does not undrain");
    c.stop().await;

    let c = Coordinator::start(dir.path(), ShellConfig::default()).await;
    let listed = c.listed("gpu-1").await;
    assert!(!listed.online && listed.draining && listed.drained_ms > 0, "restored drained: {listed:?}");
    let mut agent = c.agent("gpu-1");
    register(&mut agent, "gpu-1", "p2").await;
    assert!(try_lease(&mut agent, "gpu-1", 200).await.is_none(), "still drained after the restart");
    assert_eq!(c.job(run_id).await.state, "queued");
    c.set_draining("gpu-1", false).await.unwrap();
    assert!(try_lease(&mut agent, "gpu-1", 5000).await.is_some());
}

#[tokio::test]
async fn an_agent_that_says_it_is_draining_is_listed_so_and_leased_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = Coordinator::start(dir.path(), ShellConfig::default()).await;
    let mut agent = c.agent("gpu-1");
    register(&mut agent, "gpu-1", "p1").await;
    c.submit().await;
    let hb = pb::HeartbeatRequest { agent_name: "gpu-1".into(), draining: true, ..Default::default() };
    agent.heartbeat(hb).await.unwrap();
    let listed = c.listed("gpu-1").await;
    assert!(listed.draining && listed.agent_draining && listed.drained_ms == 0, "{listed:?}");
    assert!(try_lease(&mut agent, "gpu-1", 5000).await.is_none(), "a draining agent is leased nothing");
    // A new process under the name (taking it over with the agent's own credential) starts undrained.
    let req = pb::CreateAgentTokenRequest { agent_name: "gpu-1".into() };
    let secret = c.control().create_agent_token(req).await.unwrap().into_inner().secret;
    let mut agent = agent_client(channel(&c.access.address, None).unwrap(), &secret).unwrap();
    register(&mut agent, "gpu-1", "p2").await;
    assert!(!c.listed("gpu-1").await.draining);
    assert!(try_lease(&mut agent, "gpu-1", 5000).await.is_some());
}

#[tokio::test]
async fn a_released_job_is_requeued_at_once_and_its_attempts_are_not_counted() {
    let dir = tempfile::tempdir().unwrap();
    let shell = ShellConfig {
        core: CoreConfigPublic { max_attempts: 1, ..ShellConfig::default().core },
        ..ShellConfig::default()
    };
    let c = Coordinator::start(dir.path(), shell).await;
    let (mut a1, mut a2) = (c.agent("a1"), c.agent("a2"));
    register(&mut a1, "a1", "p1").await;
    register(&mut a2, "a2", "p2").await;
    let run_id = c.submit().await;

    // Released twice, by two agents, with max_attempts 1.
    for (agent, name) in [(&mut a1, "a1"), (&mut a2, "a2")] {
        let a = lease_and_start(agent, name).await;
        agent.release_job(release(lease(&a, &a.lease_token))).await.unwrap();
        let job = c.job(run_id).await;
        assert_eq!((job.state.as_str(), job.agent.as_str()), ("queued", ""), "{job:?}");
        // A repeat (its answer lost) is acknowledged and changes nothing.
        agent.release_job(release(lease(&a, &a.lease_token))).await.expect("a repeated release is acknowledged");
        assert_eq!(c.job(run_id).await, job);
    }
    let a = lease_and_start(&mut a1, "a1").await;
    let done = pb::CompleteJobRequest { lease: Some(lease(&a, &a.lease_token)), success: true, ..Default::default() };
    a1.complete_job(done).await.unwrap();
    let job = c.job(run_id).await;
    assert_eq!(job.state, "succeeded", "{job:?}");
    let released: Vec<(&str, bool)> = job.history.iter().map(|h| (h.agent.as_str(), h.released)).collect();
    assert_eq!(released, [("a1", true), ("a2", true), ("a1", false)], "{:?}", job.history);
    assert!(job.history[0].outcome.contains("drain timeout"), "{:?}", job.history);
}

#[tokio::test]
async fn a_forged_or_stale_release_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = Coordinator::start(dir.path(), ShellConfig::default()).await;
    let (mut real, mut rogue) = (c.agent("real"), c.agent("rogue"));
    register(&mut real, "real", "p1").await;
    register(&mut rogue, "rogue", "p2").await;
    let run_id = c.submit().await;
    let a = lease_and_start(&mut real, "real").await;

    assert_code(rogue.release_job(release(lease(&a, FORGED))).await, Code::PermissionDenied, "lease token");
    let stolen = release(lease(&a, &a.lease_token));
    assert_code(rogue.release_job(stolen).await, Code::PermissionDenied, "leased to agent real, not to agent rogue");
    assert_code(real.release_job(release(lease(&a, ""))).await, Code::PermissionDenied, "lease.token");
    let job = c.job(run_id).await;
    assert_eq!((job.state.as_str(), job.agent.as_str()), ("running", "real"), "nothing changed: {job:?}");
    assert!(job.history.is_empty());

    // Released for real, leased again: the old lease is stale.
    real.release_job(release(lease(&a, &a.lease_token))).await.unwrap();
    let again = lease_and_start(&mut rogue, "rogue").await;
    assert_eq!(again.epoch, a.epoch + 1);
    assert_code(real.release_job(release(lease(&a, &a.lease_token))).await, Code::FailedPrecondition, "stale");
    assert_eq!(c.job(run_id).await.agent, "rogue");
}
