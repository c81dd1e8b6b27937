//! The `[gate]` stage end to end, in process: a coordinator on 127.0.0.1:0, the bundled persona-v1
//! history imported offline into its data dir, and a fake agent driven by hand (register, lease,
//! start, upload a rubric score file, complete). The gate must store a verdict and a report.

mod common;

use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use phasegate_coordinator::history::History;
use phasegate_coordinator::{AccessFile, ServeConfig, ShellConfig};
use phasegate_proto::client::{AgentClient, ControlClient, agent_client, channel, control_client};
use phasegate_proto::pb;

use common::{dataset, import_history};

const SPEC: &str = r#"
experiment = "persona-v1"
phase = "10"
[finetune]
command = ["python3", "train.py", "--epochs", "8", "--max-length", "512"]
artifacts = ["output/eval_rubric.json"]
[gate]
config = "gate.toml"
results = ["output/eval_*.json"]
"#;

/// A gzipped tar holding `gate.toml`, like the source bundle `phasegate submit` uploads.
fn bundle() -> Vec<u8> {
    let config = std::fs::read(dataset("gate.toml")).unwrap();
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()));
    let mut header = tar::Header::new_gnu();
    header.set_size(config.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, "gate.toml", config.as_slice()).unwrap();
    builder.into_inner().unwrap().finish().unwrap()
}

fn chunks(header: pb::ArtifactHeader, data: Vec<u8>) -> Vec<pb::ArtifactChunk> {
    vec![
        pb::ArtifactChunk { part: Some(pb::artifact_chunk::Part::Header(header)) },
        pb::ArtifactChunk { part: Some(pb::artifact_chunk::Part::Data(data)) },
    ]
}

fn header(name: &str, data: &[u8], lease: Option<&pb::JobLease>) -> pb::ArtifactHeader {
    pb::ArtifactHeader {
        job_id: lease.map_or(0, |l| l.job_id),
        epoch: lease.map_or(0, |l| l.epoch),
        lease_token: lease.map(|l| l.token.clone()).unwrap_or_default(),
        name: name.to_owned(),
        size: data.len() as u64,
        sha256: hex::encode(Sha256::digest(data)),
    }
}

/// A rubric score file of phase 10: 40/80 = 5.0, Q5 back at 6 (no question texts: nothing to
/// compare with the history's).
fn rubric() -> Vec<u8> {
    let scores = [6, 5, 4, 5, 6, 4, 5, 5];
    let entries: Vec<String> = scores
        .iter()
        .enumerate()
        .map(|(i, s)| format!("\"Q{}\": {{\"score\": {s}, \"max_score\": 10}}", i + 1))
        .collect();
    format!("{{\"phase\": \"10\", \"scores\": {{{}}}}}", entries.join(", ")).into_bytes()
}

async fn start(dir: &Path) -> (AgentClient, ControlClient, tokio::sync::oneshot::Sender<()>) {
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = ServeConfig { data_dir: dir.to_owned(), shell: ShellConfig::default(), tls: None };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(phasegate_coordinator::run(config, grpc, http, async move {
        let _ = stop_rx.await;
    }));
    let access_path = dir.join("access.toml");
    for _ in 0..200 {
        if access_path.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let access = AccessFile::load(&access_path).unwrap();
    let ch = channel(&access.address, None).unwrap();
    let agent = agent_client(ch.clone(), &access.agent_token).unwrap();
    let control = control_client(ch, &access.client_token).unwrap();
    (agent, control, stop_tx)
}

/// Registers the fake agent: a run whose jobs no known agent fits fails at submission.
async fn register(agent: &mut AgentClient) {
    let caps = pb::Capabilities { hostname: "fake".into(), cpus: 1, max_jobs: 1, ..Default::default() };
    let register = pb::RegisterRequest {
        agent_name: "fake".into(),
        capabilities: Some(caps),
        running: vec![],
        protocol_version: phasegate_proto::PROTOCOL_VERSION,
        ..Default::default()
    };
    agent.register(register).await.unwrap();
}

async fn finish_finetune(agent: &mut AgentClient) {
    let leased = agent.lease_job(pb::LeaseJobRequest { agent_name: "fake".into(), wait_ms: 5_000 }).await.unwrap();
    let a = leased.into_inner().assignment.expect("the finetune job is leased");
    assert_eq!(a.stage, "finetune");
    let lease = pb::JobLease { job_id: a.job_id, epoch: a.epoch, token: a.lease_token.clone() };
    agent.start_job(pb::StartJobRequest { lease: Some(lease.clone()) }).await.unwrap();
    let data = rubric();
    let h = header("output/eval_rubric.json", &data, Some(&lease));
    let uploaded = agent.upload_artifact(futures::stream::iter(chunks(h, data))).await.unwrap().into_inner();
    let metrics = pb::JobMetrics { final_loss: Some(0.81), vram_peak_mib: Some(1900), ..Default::default() };
    let complete = pb::CompleteJobRequest {
        lease: Some(lease),
        success: true,
        metrics: Some(metrics),
        artifacts: uploaded.artifact.into_iter().collect(),
        ..Default::default()
    };
    agent.complete_job(complete).await.unwrap();
    // Nothing else is for agents: the gate runs on the coordinator.
    let next = agent.lease_job(pb::LeaseJobRequest { agent_name: "fake".into(), wait_ms: 200 }).await.unwrap();
    assert!(next.into_inner().assignment.is_none());
}

async fn wait_for_end(control: &mut ControlClient, run_id: u64) -> pb::Run {
    for _ in 0..500 {
        let run = control.get_run(pb::GetRunRequest { run_id }).await.unwrap().into_inner();
        if matches!(run.state.as_str(), "succeeded" | "failed" | "cancelled") {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("run {run_id} did not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_stage_stores_verdict_and_report() {
    let dir = tempfile::tempdir().unwrap();
    import_history(dir.path()).await;
    let (mut agent, mut control, stop) = start(dir.path()).await;
    register(&mut agent).await;

    let bytes = bundle();
    let h = header("source-bundle.tar.gz", &bytes, None);
    let up = control.upload_bundle(futures::stream::iter(chunks(h, bytes))).await.unwrap().into_inner();
    let bundle_sha256 = up.artifact.unwrap().sha256;
    let submit = pb::SubmitRunRequest {
        spec_toml: SPEC.into(),
        spec_path: "phase10/phase.toml".into(),
        bundle_sha256,
        trigger: Some(pb::Trigger::default()),
        priority: String::new(),
        no_cache: false,
    };
    let run_id = control.submit_run(submit).await.unwrap().into_inner().run_id;
    finish_finetune(&mut agent).await;

    let run = wait_for_end(&mut control, run_id).await;
    assert_eq!(run.state, "succeeded", "{}", run.error);
    assert!(["pass", "warn", "fail", "inconclusive"].contains(&run.verdict.as_str()), "verdict {:?}", run.verdict);
    assert!(run.report.contains("<!-- phasegate:report experiment=persona-v1 -->"), "{}", run.report);
    assert!(run.report.contains("phase 10"), "{}", run.report);
    let _ = stop.send(());

    let history = History::open(dir.path()).await.unwrap();
    let stored = history.run_phase(run_id).await.unwrap();
    assert_eq!((stored.label.as_str(), stored.accepted), ("10", false));
    assert_eq!(stored.training.final_loss, Some(0.81));
    let rows = history.history("persona-v1").await.unwrap();
    let row = rows.iter().find(|r| r.phase.label == "10").unwrap();
    assert_eq!((row.run, row.verdict.as_str()), (Some(run_id), run.verdict.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_without_matching_results_fails_the_run_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, mut control, stop) = start(dir.path()).await;
    register(&mut agent).await;
    let bytes = bundle();
    let h = header("source-bundle.tar.gz", &bytes, None);
    let up = control.upload_bundle(futures::stream::iter(chunks(h, bytes))).await.unwrap().into_inner();
    let spec = SPEC.replace("output/eval_*.json", "output/missing_*.json");
    let submit = pb::SubmitRunRequest {
        spec_toml: spec,
        spec_path: "phase.toml".into(),
        bundle_sha256: up.artifact.unwrap().sha256,
        trigger: Some(pb::Trigger::default()),
        priority: String::new(),
        no_cache: false,
    };
    let run_id = control.submit_run(submit).await.unwrap().into_inner().run_id;
    finish_finetune(&mut agent).await;
    let run = wait_for_end(&mut control, run_id).await;
    assert_eq!(run.state, "failed");
    assert!(run.error.contains("gate") && run.error.contains("output/missing_*.json"), "{}", run.error);
    assert!(run.verdict.is_empty());
    let _ = stop.send(());
}

/// A re-evaluation of an accepted phase (what a nightly run does) gets its own verdict but must not
/// replace the accepted record, which would drop the phase from the history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_evaluating_an_accepted_phase_keeps_it_accepted() {
    let dir = tempfile::tempdir().unwrap();
    import_history(dir.path()).await;
    let (mut agent, mut control, stop) = start(dir.path()).await;
    register(&mut agent).await;
    let bytes = bundle();
    let h = header("source-bundle.tar.gz", &bytes, None);
    let up = control.upload_bundle(futures::stream::iter(chunks(h, bytes))).await.unwrap().into_inner();
    let bundle_sha256 = up.artifact.unwrap().sha256;
    let mut runs = Vec::new();
    for priority in ["manual", "nightly"] {
        let submit = pb::SubmitRunRequest {
            spec_toml: SPEC.into(),
            spec_path: "phase10/phase.toml".into(),
            bundle_sha256: bundle_sha256.clone(),
            trigger: Some(pb::Trigger::default()),
            priority: priority.into(),
            no_cache: false,
        };
        let run_id = control.submit_run(submit).await.unwrap().into_inner().run_id;
        finish_finetune(&mut agent).await;
        let run = wait_for_end(&mut control, run_id).await;
        assert_eq!(run.state, "succeeded", "{}", run.error);
        assert!(!run.verdict.is_empty(), "run {run_id} has a verdict");
        runs.push(run_id);
        if priority == "manual" {
            History::open(dir.path()).await.unwrap().accept("persona-v1", "10").await.unwrap();
        }
    }
    let _ = stop.send(());

    let history = History::open(dir.path()).await.unwrap();
    let rows = history.history("persona-v1").await.unwrap();
    let ten = rows.iter().find(|r| r.phase.label == "10").unwrap();
    assert!(ten.phase.accepted, "phase 10 must stay in the accepted history after the nightly run");
    assert_eq!(ten.run, Some(runs[0]), "the accepted record is still the first run's");
}
