//! Retention (`CollectGarbage`) over real gRPC on `127.0.0.1:0` with a temp data dir: runs of two
//! experiments with logs, metric points, uploaded artifacts and bundles, one accepted phase's run
//! and one running run, played by a fake agent through the raw protocol.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures::StreamExt as _;
use sha2::{Digest as _, Sha256};

use phasegate_coordinator::ShellConfig;
use phasegate_proto::client::{AgentClient, ControlClient, agent_client_as, channel, control_client};
use phasegate_proto::pb;

use common::{Coordinator, dataset, import_history};

/// A gated run of phase 10: its fine-tune uploads a rubric score file, the coordinator gates it.
const GATED: &str = r#"
experiment = "persona-v1"
phase = "10"
[finetune]
command = ["python3", "train.py"]
artifacts = ["output/eval_rubric.json"]
[gate]
config = "gate.toml"
results = ["output/eval_*.json"]
"#;

fn plain(experiment: &str) -> String {
    format!(
        "experiment = \"{experiment}\"\nphase = \"11\"\npriority = \"manual\"\n[finetune]\n\
         command = [\"python3\", \"train.py\"]\nartifacts = [\"out/*\"]\n\
         requires = {{ gpu = false, vram_mib = 0, labels = [] }}\ntimeout = \"1m\"\n"
    )
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn chunks(header: pb::ArtifactHeader, data: &[u8]) -> Vec<pb::ArtifactChunk> {
    vec![
        pb::ArtifactChunk { part: Some(pb::artifact_chunk::Part::Header(header)) },
        pb::ArtifactChunk { part: Some(pb::artifact_chunk::Part::Data(data.to_vec())) },
    ]
}

/// A gzipped tar holding `gate.toml`, like the source bundle `phasegate submit` uploads.
fn gate_bundle() -> Vec<u8> {
    let config = std::fs::read(dataset("gate.toml")).unwrap();
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()));
    let mut header = tar::Header::new_gnu();
    header.set_size(config.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, "gate.toml", config.as_slice()).unwrap();
    builder.into_inner().unwrap().finish().unwrap()
}

fn rubric() -> Vec<u8> {
    let entries: Vec<String> =
        (1..=8).map(|i| format!("\"Q{i}\": {{\"score\": {}, \"max_score\": 10}}", 4 + i % 3)).collect();
    format!("{{\"phase\": \"10\", \"scores\": {{{}}}}}", entries.join(", ")).into_bytes()
}

/// The blob file of `sha256` in the data dir.
fn blob_path(dir: &Path, sha256: &str) -> PathBuf {
    dir.join("artifacts").join(&sha256[..2]).join(sha256)
}

/// A fake agent (named `fake`, four jobs at once) and a client of one in-process coordinator.
struct Fake {
    agent: AgentClient,
    control: ControlClient,
}

impl Fake {
    async fn new(c: &Coordinator) -> Self {
        let ch = channel(&c.access.address, None).unwrap();
        let mut agent = agent_client_as(ch.clone(), &c.access.agent_token, "fake").unwrap();
        let caps = pb::Capabilities { hostname: "fake".into(), cpus: 4, max_jobs: 4, ..Default::default() };
        let register = pb::RegisterRequest {
            agent_name: "fake".into(),
            capabilities: Some(caps),
            protocol_version: phasegate_proto::PROTOCOL_VERSION,
            instance: "fake-process".into(),
            ..Default::default()
        };
        agent.register(register).await.unwrap();
        Self { agent, control: control_client(ch, &c.access.client_token).unwrap() }
    }

    async fn upload_bundle(&mut self, data: &[u8]) -> String {
        let header = pb::ArtifactHeader {
            name: "source-bundle.tar.gz".into(),
            size: data.len() as u64,
            sha256: sha(data),
            ..Default::default()
        };
        let up = self.control.upload_bundle(futures::stream::iter(chunks(header, data))).await.unwrap();
        up.into_inner().artifact.unwrap().sha256
    }

    async fn submit(&mut self, spec: &str, bundle_sha256: &str) -> u64 {
        let req = pb::SubmitRunRequest {
            spec_toml: spec.into(),
            spec_path: "phase.toml".into(),
            bundle_sha256: bundle_sha256.into(),
            trigger: Some(pb::Trigger::default()),
            priority: String::new(),
            // Every submission of these tests must run: retention is about what runs leave.
            no_cache: true,
        };
        self.control.submit_run(req).await.unwrap().into_inner().run_id
    }

    /// Leases and starts the one queued job.
    async fn start(&mut self) -> pb::JobLease {
        let req = pb::LeaseJobRequest { agent_name: "fake".into(), wait_ms: 5_000 };
        let a = self.agent.lease_job(req).await.unwrap().into_inner().assignment.expect("a job was leased");
        let lease = pb::JobLease { job_id: a.job_id, epoch: a.epoch, token: a.lease_token };
        self.agent.start_job(pb::StartJobRequest { lease: Some(lease.clone()) }).await.unwrap();
        lease
    }

    /// Streams `lines` log lines and `points` metric points, and waits for their acknowledgement.
    async fn report(&mut self, lease: &pb::JobLease, lines: u64, points: u64) {
        let batch = pb::EventBatch {
            lease: Some(lease.clone()),
            batch_seq: 1,
            lines: (1..=lines)
                .map(|seq| pb::LogLine { seq, stream: "stdout".into(), text: format!("step {seq}"), ts_ms: 1 })
                .collect(),
            metrics: (0..points)
                .map(|step| pb::MetricPoint {
                    step: Some(step),
                    values: vec![pb::KeyValueNumber { key: "loss".into(), value: 1.0 / (step + 1) as f64 }],
                })
                .collect(),
        };
        let mut acks = self.agent.stream_events(futures::stream::iter(vec![batch])).await.unwrap().into_inner();
        acks.next().await.expect("an acknowledgement").expect("the events are stored");
    }

    async fn upload(&mut self, lease: &pb::JobLease, name: &str, data: &[u8]) -> pb::ArtifactRef {
        let header = pb::ArtifactHeader {
            job_id: lease.job_id,
            epoch: lease.epoch,
            lease_token: lease.token.clone(),
            name: name.into(),
            size: data.len() as u64,
            sha256: sha(data),
        };
        let up = self.agent.upload_artifact(futures::stream::iter(chunks(header, data))).await.unwrap();
        up.into_inner().artifact.unwrap()
    }

    async fn complete(&mut self, lease: pb::JobLease, artifacts: Vec<pb::ArtifactRef>) {
        let done = pb::CompleteJobRequest {
            lease: Some(lease),
            success: true,
            exit_code: Some(0),
            metrics: Some(pb::JobMetrics { final_loss: Some(0.8), ..Default::default() }),
            artifacts,
            ..Default::default()
        };
        self.agent.complete_job(done).await.unwrap();
    }

    /// A one-job run of `experiment` that logs, records metric points and uploads `artifacts`.
    async fn finished_run(
        &mut self,
        experiment: &str,
        bundle: &str,
        lines: u64,
        points: u64,
        artifacts: &[&[u8]],
    ) -> u64 {
        let run = self.submit(&plain(experiment), bundle).await;
        let lease = self.start().await;
        self.report(&lease, lines, points).await;
        let mut refs = Vec::new();
        for (i, data) in artifacts.iter().enumerate() {
            refs.push(self.upload(&lease, &format!("out/file{i}"), data).await);
        }
        self.complete(lease, refs).await;
        assert_eq!(self.wait_for_end(run).await.state, "succeeded");
        run
    }

    async fn run(&mut self, run_id: u64) -> pb::Run {
        self.control.get_run(pb::GetRunRequest { run_id }).await.unwrap().into_inner()
    }

    async fn wait_for_end(&mut self, run_id: u64) -> pb::Run {
        for _ in 0..500 {
            let run = self.run(run_id).await;
            if matches!(run.state.as_str(), "succeeded" | "failed" | "cancelled") {
                return run;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("run {run_id} did not end");
    }

    async fn log_lines(&mut self, run_id: u64) -> usize {
        let req = pb::FetchLogsRequest { run_id, follow: false };
        let mut stream = self.control.fetch_logs(req).await.unwrap().into_inner();
        let mut n = 0;
        while let Some(chunk) = stream.next().await {
            n += chunk.unwrap().lines.len();
        }
        n
    }

    async fn gc(
        &mut self,
        dry_run: bool,
        keep_runs: Option<u32>,
        older_than_ms: Option<u64>,
    ) -> pb::CollectGarbageResponse {
        let req = pb::CollectGarbageRequest { dry_run, keep_runs, older_than_ms };
        self.control.collect_garbage(req).await.unwrap().into_inner()
    }
}

/// The counts of a response, without the dry-run flag: what a dry run and the real one share.
fn figures(r: &pb::CollectGarbageResponse) -> (Vec<u64>, u64, u64, u64, u64, u32, u64) {
    (r.run_ids.clone(), r.log_lines, r.metric_points, r.blobs, r.bytes_freed, r.keep_runs, r.older_than_ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_prunes_old_runs_but_keeps_the_accepted_active_newest_and_shared() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path();
    import_history(data_dir).await;
    let c = Coordinator::start(data_dir, ShellConfig::default()).await;
    let mut f = Fake::new(&c).await;

    // persona-v1: run 1 is gated and accepted; run 2 is old and plain; run 3 is the newest.
    let gate_bundle = f.upload_bundle(&gate_bundle()).await;
    let accepted = f.submit(GATED, &gate_bundle).await;
    let lease = f.start().await;
    f.report(&lease, 2, 1).await;
    let rubric = rubric();
    let rubric_ref = f.upload(&lease, "output/eval_rubric.json", &rubric).await;
    f.complete(lease, vec![rubric_ref]).await;
    let gated = f.wait_for_end(accepted).await;
    assert_eq!(gated.state, "succeeded", "{}", gated.error);
    let req = pb::AcceptPhaseRequest { run_id: accepted, ..Default::default() };
    f.control.accept_phase(req).await.unwrap();
    let shared: &[u8] = b"tokenizer shared by runs 2 and 3";
    let unique_a: &[u8] = b"adapter weights of run 2, nowhere else";
    let old_a = f.finished_run("persona-v1", "", 3, 2, &[shared, unique_a]).await;
    let newest_a = f.finished_run("persona-v1", "", 1, 1, &[shared]).await;

    // other: run 4 (its own bundle) is old; run 5 is still running; run 6 is the newest.
    let bundle_b: &[u8] = b"the source bundle of run 4 only";
    let bundle_b_sha = f.upload_bundle(bundle_b).await;
    let unique_b: &[u8] = b"checkpoint of run 4";
    let old_b = f.finished_run("other", &bundle_b_sha, 2, 1, &[unique_b]).await;
    let running = f.submit(&plain("other"), "").await;
    let running_lease = f.start().await;
    f.report(&running_lease, 4, 2).await;
    let newest_b = f.finished_run("other", "", 1, 0, &[]).await;

    // The default policy (30 days): every run here finished moments ago, so nothing is due.
    let none = f.gc(true, None, None).await;
    assert!(none.run_ids.is_empty(), "{none:?}");
    assert_eq!((none.keep_runs, none.older_than_ms), (20, 30 * 24 * 60 * 60 * 1000));

    let gone = [sha(unique_a), sha(unique_b), bundle_b_sha.clone()];
    let kept = [sha(shared), sha(&rubric), gate_bundle.clone()];
    let freed = (unique_a.len() + unique_b.len() + bundle_b.len()) as u64;
    let expected = (vec![old_a, old_b], 3 + 2, 2 + 1, 3, freed, 1, 0);

    let dry = f.gc(true, Some(1), Some(0)).await;
    assert!(dry.dry_run);
    assert_eq!(figures(&dry), expected);
    for sha in gone.iter().chain(&kept) {
        assert!(blob_path(data_dir, sha).is_file(), "a dry run deletes nothing: {sha}");
    }
    assert_eq!((f.log_lines(old_a).await, f.log_lines(old_b).await), (3, 2), "a dry run keeps the logs");
    let before = f.run(old_a).await;
    assert_eq!(before.pruned_ms, 0);
    assert_eq!(before.jobs[0].artifacts.len(), 2);

    let real = f.gc(false, Some(1), Some(0)).await;
    assert!(!real.dry_run);
    assert_eq!(figures(&real), expected, "the real gc removes what the dry run reported");
    for sha in &gone {
        assert!(!blob_path(data_dir, sha).exists(), "{sha} is deleted");
    }
    for sha in &kept {
        assert!(blob_path(data_dir, sha).is_file(), "{sha} is kept");
    }
    for run in [old_a, old_b] {
        assert_eq!(f.log_lines(run).await, 0, "run {run} lost its logs");
        let pruned = f.run(run).await;
        assert!(pruned.pruned_ms > 0, "run {run} says it was pruned");
        assert_eq!(pruned.state, "succeeded", "the run row stays");
        assert!(pruned.jobs.iter().all(|j| j.artifacts.is_empty() && j.metrics.is_some()), "{pruned:?}");
    }
    for (run, lines) in [(accepted, 2), (newest_a, 1), (running, 4), (newest_b, 1)] {
        assert_eq!(f.log_lines(run).await, lines, "run {run} keeps its logs");
        assert_eq!(f.run(run).await.pruned_ms, 0);
    }
    let accepted_run = f.run(accepted).await;
    assert_eq!(accepted_run.verdict, gated.verdict);
    assert!(accepted_run.jobs.iter().any(|j| j.artifacts.iter().any(|a| a.sha256 == sha(&rubric))));

    let again = f.gc(false, Some(1), Some(0)).await;
    assert_eq!(figures(&again), (vec![], 0, 0, 0, 0, 1, 0), "a second gc prunes nothing");

    // The running run finishes normally after the gc.
    f.complete(running_lease, vec![]).await;
    assert_eq!(f.wait_for_end(running).await.state, "succeeded");
    c.stop().await;
}

fn age(path: &Path, by: Duration) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - by).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_sweeps_old_files_no_table_names_and_spares_young_and_recorded_ones() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path();
    let c = Coordinator::start(data_dir, ShellConfig::default()).await;
    let mut f = Fake::new(&c).await;
    let two_hours = Duration::from_secs(2 * 60 * 60);

    // A blob left by a crash between a gc's commit and its deletions, and a stale upload.
    let stray: &[u8] = b"an artifact whose row a crashed gc removed";
    let stray_path = blob_path(data_dir, &sha(stray));
    std::fs::create_dir_all(stray_path.parent().unwrap()).unwrap();
    std::fs::write(&stray_path, stray).unwrap();
    age(&stray_path, two_hours);
    let stale_tmp = data_dir.join("artifacts/tmp/.tmpUPLOAD");
    std::fs::write(&stale_tmp, b"half an upload").unwrap();
    age(&stale_tmp, two_hours);
    // Young: maybe an upload whose row is being written.
    let young: &[u8] = b"placed a moment ago";
    let young_path = blob_path(data_dir, &sha(young));
    std::fs::create_dir_all(young_path.parent().unwrap()).unwrap();
    std::fs::write(&young_path, young).unwrap();
    // Recorded but used by no run yet (a bundle before its submission): its row keeps it.
    let recorded = f.upload_bundle(b"a bundle about to be submitted").await;
    age(&blob_path(data_dir, &recorded), two_hours);

    let freed = (stray.len() + b"half an upload".len()) as u64;
    let dry = f.gc(true, None, None).await;
    assert_eq!((dry.run_ids.len(), dry.blobs, dry.bytes_freed), (0, 2, freed));
    assert!(stray_path.is_file() && stale_tmp.is_file(), "a dry run deletes nothing");

    let real = f.gc(false, None, None).await;
    assert_eq!((real.blobs, real.bytes_freed), (2, freed));
    assert!(!stray_path.exists() && !stale_tmp.exists());
    assert!(young_path.is_file(), "a file younger than an hour is kept");
    assert!(blob_path(data_dir, &recorded).is_file(), "a recorded blob is kept");
    let req = pb::SubmitRunRequest {
        spec_toml: plain("other"),
        spec_path: "phase.toml".into(),
        bundle_sha256: recorded,
        ..Default::default()
    };
    f.control.submit_run(req).await.expect("the kept bundle can still be submitted");
    c.stop().await;
}
