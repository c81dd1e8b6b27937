//! The SQLite store on temp files: migrations, round trips, atomic state transitions, log dedupe and
//! crash safety (what was committed is in the files on disk, whatever happens to the process next).

use std::collections::BTreeSet;
use std::path::Path;

use phasegate_proto::domain::{
    AgentCaps, AgentName, Epoch, JobState, LEASE_TOKEN_BYTES, Lease, LeaseToken, Priority, RunState, Stage,
};

fn test_token() -> LeaseToken {
    LeaseToken::from_bytes([7; LEASE_TOKEN_BYTES])
}

use super::*;
use crate::scheduler::{Core, CoreConfig, NewJob, NewRun};
use crate::store::NewJobRecord;

const NOW: u64 = 1_000_000;

async fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(&dir.join("phasegate.db")).await.expect("open store")
}

fn requires() -> pb::Requirements {
    pb::Requirements { gpu: true, vram_mib: 2500, labels: vec!["a100".into()] }
}

fn work() -> pb::Assignment {
    pb::Assignment {
        stage: "finetune".into(),
        bundle_sha256: "ab".repeat(32),
        work: Some(pb::assignment::Work::Command(pb::CommandWork {
            argv: vec!["python3".into(), "train.py".into()],
            timeout_ms: 60_000,
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn new_run(experiment: &str, state: RunState, error: &str) -> NewRunRecord {
    NewRunRecord {
        experiment: experiment.into(),
        phase: "10".into(),
        description: "eight epochs".into(),
        priority: Priority::Pr,
        spec_toml: "experiment = \"x\"".into(),
        spec_path: "phase.toml".into(),
        bundle_sha256: "ab".repeat(32),
        trigger: Trigger { pr: Some(7), sha: "0123abcd".into(), branch: "fix".into(), repo: "o/r".into() },
        created_ms: 42,
        state,
        error: error.into(),
        jobs: vec![NewJobRecord {
            stage: Stage::Finetune,
            depends_on: vec![],
            requires: requires(),
            work: work(),
            cache_key: None,
            cached: None,
        }],
    }
}

fn agent() -> AgentName {
    AgentName::parse("agent", "a1").unwrap()
}

/// A core holding `run` (as the shell would after inserting it) and one agent that fits its jobs.
fn core_with(run: RunId, jobs: &[JobId]) -> Core {
    let mut core = Core::new(CoreConfig::default());
    let requires = phasegate_proto::domain::Requirements {
        gpu: true,
        vram_mib: 2500,
        labels: BTreeSet::from(["a100".to_owned()]),
    };
    let new_jobs = jobs
        .iter()
        .map(|id| NewJob {
            id: *id,
            stage: Stage::Finetune,
            depends_on: vec![],
            requires: requires.clone(),
            state: JobState::Queued,
            epoch: Epoch(0),
            token: None,
            attempt: 0,
            agent: None,
            gpu: None,
            history: vec![],
        })
        .collect();
    let _ = core.on_run_submitted(NewRun { id: run, priority: Priority::Pr, pr_key: None, jobs: new_jobs }, NOW);
    let gpu = phasegate_proto::domain::GpuInfo {
        index: 0,
        name: "A100".into(),
        total_vram_mib: 40_000,
        free_vram_mib: 40_000,
    };
    let caps = AgentCaps { gpus: vec![gpu], labels: BTreeSet::from(["a100".to_owned()]), max_jobs: 1 };
    let _ = core.on_agent_registered(agent(), caps, "", &[], NOW);
    core
}

fn metrics() -> pb::JobMetrics {
    pb::JobMetrics {
        final_loss: Some(0.81),
        vram_peak_mib: Some(1900),
        loss_curve: vec![
            pb::LossPoint { step: 1, epoch: Some(0.5), loss: 2.3 },
            pb::LossPoint { step: 2, epoch: Some(1.0), loss: 0.81 },
        ],
        summary_json: r#"{"lora_r":16}"#.into(),
        ..Default::default()
    }
}

fn artifact() -> pb::ArtifactRef {
    pb::ArtifactRef { name: "output/adapter/adapter_config.json".into(), sha256: "cd".repeat(32), size: 17 }
}

fn line(seq: u64, text: &str) -> pb::LogLine {
    pb::LogLine { seq, stream: "stdout".into(), text: text.into(), ts_ms: seq as i64 }
}

/// Leases and starts the run's job; returns the lease.
async fn lease_and_start(store: &SqliteStore, core: &mut Core) -> Lease {
    let (lease, effects) = core.on_lease_request(&agent(), test_token(), NOW).unwrap().expect("a job to lease");
    store.apply(&effects, &JobResult::default(), NOW as i64).await.unwrap();
    let effects = core.on_job_started(lease, None, NOW).unwrap();
    store.apply(&effects, &JobResult::default(), NOW as i64).await.unwrap();
    lease
}

fn success(lease: Lease) -> JobResult {
    JobResult {
        job: Some(lease.job),
        metrics: Some(metrics()),
        result_json: r#"{"ok":true}"#.into(),
        exit_code: Some(0),
        artifacts: vec![artifact()],
    }
}

#[tokio::test]
async fn migrations_create_the_schema_on_a_fresh_file_and_reapply_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'").fetch_all(&store.pool).await.unwrap();
    for table in ["runs", "jobs", "job_logs", "job_metric_points", "artifacts", "job_artifacts", "agents"] {
        assert!(tables.iter().any(|t| t == table), "missing table {table}: {tables:?}");
    }
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "sql"))
        .count();
    let applied: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success").fetch_one(&store.pool).await.unwrap();
    assert_eq!(applied, files as i64, "every embedded migration is applied once");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&store.pool).await.unwrap();
    assert_eq!(mode, "wal");
    store.pool.close().await;

    // Opening again runs no migration twice and keeps working.
    let store = open(dir.path()).await;
    let again: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations").fetch_one(&store.pool).await.unwrap();
    assert_eq!(again, files as i64);
    assert!(store.active_runs().await.unwrap().is_empty());
}

#[tokio::test]
async fn runs_and_jobs_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let record = new_run("persona-v1", RunState::Queued, "");
    let (run_id, job_ids) = store.insert_run(&record).await.unwrap();
    assert_eq!(job_ids.len(), 1);

    let run = store.run(run_id).await.unwrap().expect("the run");
    assert_eq!(run.id as u64, run_id.0);
    assert_eq!(
        (run.experiment.as_str(), run.phase.as_str(), run.description.as_str()),
        ("persona-v1", "10", "eight epochs")
    );
    assert_eq!((run.priority.as_str(), run.state.as_str(), run.error.as_str()), ("pr", "queued", ""));
    assert_eq!(run.trigger, record.trigger);
    assert_eq!(run.created_ms, 42);
    assert_eq!(run.jobs.len(), 1);

    let job = store.job(job_ids[0]).await.unwrap().expect("the job");
    assert_eq!(job.id as u64, job_ids[0].0);
    assert_eq!(job.run_id as u64, run_id.0);
    assert_eq!((job.stage.as_str(), job.state.as_str(), job.epoch, job.attempt), ("finetune", "queued", 0, 0));
    assert_eq!(job.requires, requires());
    assert_eq!(job.work, work());
    assert_eq!((job.agent.clone(), job.metrics.clone()), (None, None));
    assert_eq!(run.jobs[0].work, job.work);

    // A run failed at submission (nothing can place it) keeps its error; its jobs are cancelled.
    let (failed, failed_jobs) =
        store.insert_run(&new_run("other", RunState::Failed, "no registered agent can ever run it")).await.unwrap();
    let failed = store.run(failed).await.unwrap().unwrap();
    assert_eq!((failed.state.as_str(), failed.error.as_str()), ("failed", "no registered agent can ever run it"));
    let fj = store.job(failed_jobs[0]).await.unwrap().unwrap();
    assert_eq!(fj.state, "cancelled");

    // Listing: newest first, filtered by experiment.
    let all: Vec<i64> = store.runs(10, "").await.unwrap().iter().map(|r| r.id).collect();
    assert_eq!(all, [failed.id, run.id]);
    let only: Vec<i64> = store.runs(10, "persona-v1").await.unwrap().iter().map(|r| r.id).collect();
    assert_eq!(only, [run.id]);
    assert!(store.run(RunId(999)).await.unwrap().is_none());
    assert!(store.job(JobId(999)).await.unwrap().is_none());

    // Agents round trip (and upsert replaces).
    let mut caps = pb::Capabilities { hostname: "box".into(), cpus: 8, max_jobs: 1, ..Default::default() };
    store
        .upsert_agent(&AgentRecord {
            name: "a1".into(),
            capabilities: caps.clone(),
            registered_ms: 1,
            draining_ms: None,
        })
        .await
        .unwrap();
    caps.cpus = 16;
    store
        .upsert_agent(&AgentRecord {
            name: "a1".into(),
            capabilities: caps.clone(),
            registered_ms: 2,
            draining_ms: None,
        })
        .await
        .unwrap();
    let agents = store.agents().await.unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!((agents[0].capabilities.clone(), agents[0].registered_ms), (caps, 2));

    // A drain is kept by a re-registration's upsert, and only an unknown agent is not found.
    assert!(store.set_agent_draining("a1", Some(5)).await.unwrap());
    assert!(!store.set_agent_draining("nobody", Some(5)).await.unwrap());
    store.upsert_agent(&AgentRecord { registered_ms: 3, ..agents[0].clone() }).await.unwrap();
    assert_eq!(store.agents().await.unwrap()[0].draining_ms, Some(5));
    assert!(store.set_agent_draining("a1", None).await.unwrap());
    assert_eq!(store.agents().await.unwrap()[0].draining_ms, None);
}

#[tokio::test]
async fn apply_writes_the_job_snapshot_run_update_and_result_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let (run_id, jobs) = store.insert_run(&new_run("e", RunState::Queued, "")).await.unwrap();
    let mut core = core_with(run_id, &jobs);
    let lease = lease_and_start(&store, &mut core).await;

    let job = store.job(jobs[0]).await.unwrap().unwrap();
    assert_eq!((job.state.as_str(), job.epoch as u64, job.attempt), ("running", lease.epoch.0, 1));
    assert_eq!((job.agent.as_deref(), job.gpu_index), (Some("a1"), Some(0)));
    assert_eq!(store.run(run_id).await.unwrap().unwrap().state, "running");

    let effects = core.on_job_completed(lease, None, true, "").unwrap();
    assert!(!effects.jobs.is_empty() && !effects.runs.is_empty(), "completion changes a job and its run");
    store.apply(&effects, &success(lease), NOW as i64 + 5).await.unwrap();

    let run = store.run(run_id).await.unwrap().unwrap();
    assert_eq!(run.state, "succeeded");
    let job = &run.jobs[0];
    assert_eq!(job.state, "succeeded");
    assert_eq!(job.metrics, Some(metrics()));
    assert_eq!(job.result_json, r#"{"ok":true}"#);
    assert_eq!(job.artifacts, [artifact()]);
    assert_eq!(job.history.len(), 1, "{:?}", job.history);
    assert_eq!(job.history[0].outcome, "succeeded");
}

#[tokio::test]
async fn a_failing_apply_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let (run_id, jobs) = store.insert_run(&new_run("e", RunState::Queued, "")).await.unwrap();
    let mut core = core_with(run_id, &jobs);
    let lease = lease_and_start(&store, &mut core).await;
    let before = store.run(run_id).await.unwrap().unwrap();

    // The run update is written after the job rows and the result: make exactly that statement fail.
    sqlx::query(
        "CREATE TRIGGER refuse_run_end BEFORE UPDATE OF state ON runs WHEN NEW.state = 'succeeded' \
         BEGIN SELECT RAISE(ABORT, 'refused by test'); END",
    )
    .execute(&store.pool)
    .await
    .unwrap();
    let effects = core.on_job_completed(lease, None, true, "").unwrap();
    let err = store.apply(&effects, &success(lease), NOW as i64 + 5).await.expect_err("the trigger refuses");
    assert!(err.to_string().contains("refused by test"), "{err}");

    let after = store.run(run_id).await.unwrap().unwrap();
    assert_eq!(after.state, before.state);
    assert_eq!(after.jobs[0].state, "running", "the job snapshot was rolled back");
    assert_eq!(after.jobs[0].metrics, None, "the result was rolled back");
    assert!(after.jobs[0].artifacts.is_empty(), "the artifacts were rolled back");
}

#[tokio::test]
async fn log_lines_are_deduplicated_by_job_and_seq() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let (run_id, jobs) = store.insert_run(&new_run("e", RunState::Queued, "")).await.unwrap();
    let job = jobs[0];
    let point = |step: u64| pb::MetricPoint {
        step: Some(step),
        values: vec![pb::KeyValueNumber { key: "loss".into(), value: 1.0 / step as f64 }],
    };

    store.append_events(job, 1, &[line(1, "one"), line(2, "two")], &[point(1)]).await.unwrap();
    // A resent batch (after a reconnect) overlaps what is stored: the first copy wins, new lines land.
    store.append_events(job, 1, &[line(1, "one again"), line(2, "two again")], &[point(1)]).await.unwrap();
    store.append_events(job, 2, &[line(2, "two once more"), line(3, "three")], &[point(2)]).await.unwrap();

    let logs = store.logs(run_id, (0, 0), 100).await.unwrap();
    let texts: Vec<&str> = logs.iter().map(|l| l.line.text.as_str()).collect();
    assert_eq!(texts, ["one", "two", "three"]);
    assert!(logs.iter().all(|l| l.job_id as u64 == job.0 && l.stage == "finetune"));
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM job_metric_points").fetch_one(&store.pool).await.unwrap();
    assert_eq!(count, 2, "metric points are deduplicated by (job, batch)");
    assert_eq!(store.last_metric(job).await.unwrap(), Some(point(2)));

    // Paging continues after (job, seq).
    let rest = store.logs(run_id, (job.0 as i64, 1), 100).await.unwrap();
    assert_eq!(rest.iter().map(|l| l.line.seq).collect::<Vec<_>>(), [2, 3]);
    let first = store.logs(run_id, (0, 0), 1).await.unwrap();
    assert_eq!(first.len(), 1);
}

/// Copies the database files as they are on disk now, while the store is still open: what a process
/// killed at this moment would leave behind.
fn snapshot_files(from: &Path, to: &Path) {
    for suffix in ["", "-wal"] {
        let src = from.join(format!("phasegate.db{suffix}"));
        if src.exists() {
            std::fs::copy(&src, to.join(format!("phasegate.db{suffix}"))).unwrap();
        }
    }
}

#[tokio::test]
async fn committed_state_survives_a_crash_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let (done_id, done_jobs) = store.insert_run(&new_run("e", RunState::Queued, "")).await.unwrap();
    let mut core = core_with(done_id, &done_jobs);
    let lease = lease_and_start(&store, &mut core).await;
    store.append_events(done_jobs[0], 1, &[line(1, "step 1"), line(2, "step 2")], &[]).await.unwrap();
    store.record_artifact(&artifact().sha256, artifact().size, 7).await.unwrap();
    let effects = core.on_job_completed(lease, None, true, "").unwrap();
    store.apply(&effects, &success(lease), NOW as i64).await.unwrap();
    let (queued_id, _) = store.insert_run(&new_run("e", RunState::Queued, "")).await.unwrap();
    let caps = pb::Capabilities { hostname: "box".into(), max_jobs: 1, ..Default::default() };
    store
        .upsert_agent(&AgentRecord {
            name: "a1".into(),
            capabilities: caps.clone(),
            registered_ms: 3,
            draining_ms: None,
        })
        .await
        .unwrap();

    let expected_done = store.run(done_id).await.unwrap().unwrap();
    let crashed = tempfile::tempdir().unwrap();
    snapshot_files(dir.path(), crashed.path());
    drop(store);

    let reopened = open(crashed.path()).await;
    let done = reopened.run(done_id).await.unwrap().expect("the finished run");
    assert_eq!(done.state, "succeeded");
    assert_eq!(done.jobs[0].state, expected_done.jobs[0].state);
    assert_eq!(done.jobs[0].epoch, expected_done.jobs[0].epoch);
    assert_eq!(done.jobs[0].history, expected_done.jobs[0].history);
    assert_eq!(done.jobs[0].metrics, Some(metrics()));
    assert_eq!(done.jobs[0].artifacts, [artifact()]);
    let logs = reopened.logs(done_id, (0, 0), 100).await.unwrap();
    assert_eq!(logs.iter().map(|l| l.line.text.as_str()).collect::<Vec<_>>(), ["step 1", "step 2"]);
    assert!(reopened.artifact_known(&artifact().sha256).await.unwrap());
    assert!(!reopened.artifact_known(&"ef".repeat(32)).await.unwrap());
    assert_eq!(reopened.run(queued_id).await.unwrap().unwrap().state, "queued");
    let agents = reopened.agents().await.unwrap();
    assert_eq!((agents.len(), agents[0].capabilities.clone()), (1, caps));
}

#[tokio::test]
async fn active_runs_are_the_unfinished_ones_with_their_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let (queued, queued_jobs) = store.insert_run(&new_run("e", RunState::Queued, "")).await.unwrap();
    let (running, running_jobs) = store.insert_run(&new_run("e", RunState::Queued, "")).await.unwrap();
    let (finished, finished_jobs) = store.insert_run(&new_run("e", RunState::Queued, "")).await.unwrap();
    let (unplaceable, _) = store.insert_run(&new_run("e", RunState::Failed, "nothing fits")).await.unwrap();

    let mut core = core_with(finished, &finished_jobs);
    let lease = lease_and_start(&store, &mut core).await;
    let effects = core.on_job_completed(lease, None, false, "exit code 1").unwrap();
    store.apply(&effects, &JobResult::default(), NOW as i64).await.unwrap();
    let mut core = core_with(running, &running_jobs);
    let lease = lease_and_start(&store, &mut core).await;

    let active = store.active_runs().await.unwrap();
    let ids: Vec<u64> = active.iter().map(|r| r.id as u64).collect();
    assert_eq!(ids, [queued.0, running.0], "finished {finished:?} and failed {unplaceable:?} are not active");
    assert_eq!(active[0].jobs.iter().map(|j| j.id as u64).collect::<Vec<_>>(), [queued_jobs[0].0]);
    assert_eq!(active[0].jobs[0].state, "queued");
    let job = &active[1].jobs[0];
    assert_eq!((job.id as u64, job.state.as_str()), (running_jobs[0].0, "running"));
    assert_eq!((job.epoch as u64, job.agent.as_deref()), (lease.epoch.0, Some("a1")));
    assert_eq!(job.lease_token.as_deref(), Some(lease.token.to_hex().as_str()), "the lease token is durable");
}
