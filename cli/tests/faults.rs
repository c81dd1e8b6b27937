//! Faults a fleet meets every week, with real processes on loopback: a coordinator outage while a
//! job starts or finishes, an agent killed under its job, a job quiet before it exits.

mod common;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use common::{Cluster, command_spec, wait_for};

/// Long enough for any single run on a loaded 2-core machine.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn job(run: &Value) -> &Value {
    run["jobs"].as_array().and_then(|j| j.first()).unwrap_or_else(|| panic!("run has no job: {run}"))
}

/// The job directories the agent `name` made, newest attempt last.
fn job_dirs(cluster: &Cluster, name: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cluster.dir.path().join(format!("work-{name}")).join("jobs"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}

fn read_file_in_job(cluster: &Cluster, agent: &str, file: &str) -> Option<String> {
    job_dirs(cluster, agent).iter().find_map(|d| std::fs::read_to_string(d.join(file)).ok())
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|t| t.rsplit_once(')').map(|(_, rest)| rest.trim_start().chars().next()))
        .flatten()
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// A job that prints, then stays quiet for a second before it exits, is reported within a second
/// of exiting (it used to wait out a 30 s acknowledgement timeout).
#[test]
fn a_job_quiet_before_it_exits_completes_within_a_second_of_exiting() {
    let cluster = Cluster::start(&["a1"]);
    let spec = command_spec(cluster.dir.path(), "quiet", "echo hi; sleep 1; date +%s%N > exited", "[]");
    let run_id = cluster.submit(&spec);
    // The first poll that sees the job succeeded started at or after its completion.
    let seen_ns = wait_for("the job to succeed", RUN_TIMEOUT, || {
        let before = now_ns();
        let run = cluster.json(&["show", &run_id.to_string(), "--json"]).ok()?;
        let state = job(&run)["state"].as_str().map(str::to_owned)?;
        assert_ne!(state, "failed", "{run}");
        (state == "succeeded").then_some(before)
    });
    let exited: u128 = read_file_in_job(&cluster, "a1", "exited")
        .expect("the job wrote its exit time")
        .trim()
        .parse()
        .expect("nanoseconds");
    let late = Duration::from_nanos(u64::try_from(seen_ns.saturating_sub(exited)).unwrap_or(u64::MAX));
    assert!(late < Duration::from_secs(1), "completion reported {late:?} after the job exited");
}

/// The probe's reproduction: the coordinator is SIGKILLed 1 s into a job that writes an artifact
/// at 2 s, and restarted 3 s later. The upload and completion ride out the outage.
#[test]
fn a_coordinator_outage_while_a_job_uploads_costs_the_job_nothing() {
    let mut cluster = Cluster::start(&["a1"]);
    let spec = command_spec(cluster.dir.path(), "upload", "sleep 2; mkdir -p out; echo x > out/a", r#"["out/**"]"#);
    let run_id = cluster.submit(&spec);
    wait_for("the job to start", RUN_TIMEOUT, || {
        let run = cluster.json(&["show", &run_id.to_string(), "--json"]).ok()?;
        (job(&run)["state"] == "running").then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    cluster.kill_coordinator();
    std::thread::sleep(Duration::from_secs(3));
    cluster.start_coordinator();
    let run = cluster.wait_ended(run_id, RUN_TIMEOUT);
    let job = job(&run);
    assert_eq!(job["state"], "succeeded", "{run}\n{}", cluster.child_logs());
    assert_eq!(job["attempts"], 1, "{job}");
    let names: Vec<&str> =
        job["artifacts"].as_array().into_iter().flatten().filter_map(|a| a["name"].as_str()).collect();
    assert_eq!(names, ["out/a"], "{job}");
}

/// A coordinator that is down when a job is leased and about to start: marking it running and the
/// bundle download are retried as well.
#[test]
fn a_coordinator_outage_as_a_job_starts_costs_the_job_nothing() {
    let mut cluster = Cluster::start(&["a1"]);
    // The agent leases, then the coordinator dies before the agent could report the job running.
    // A job right after a restart is the same race from the other side: run several back to back.
    let mut runs = Vec::new();
    for i in 0..3 {
        let spec = command_spec(cluster.dir.path(), &format!("s{i}"), "echo started; sleep 0.5", "[]");
        runs.push(cluster.submit(&spec));
    }
    std::thread::sleep(Duration::from_millis(300));
    cluster.kill_coordinator();
    std::thread::sleep(Duration::from_secs(2));
    cluster.start_coordinator();
    for run_id in runs {
        let run = cluster.wait_ended(run_id, RUN_TIMEOUT);
        assert_eq!(run["state"], "succeeded", "{run}\n{}", cluster.child_logs());
    }
}

/// A SIGKILLed agent takes its job's processes with it (they used to keep running beside the
/// requeued attempt).
#[test]
fn a_killed_agents_job_processes_are_gone_within_two_seconds() {
    let mut cluster = Cluster::start(&["a1"]);
    let script = "sleep 300 & echo $! > child.pid; echo $$ > leader.pid; wait";
    let spec = command_spec(cluster.dir.path(), "orphan", script, "[]");
    cluster.submit(&spec);
    let pids: Vec<u32> = wait_for("the job to record its pids", RUN_TIMEOUT, || {
        let leader = read_file_in_job(&cluster, "a1", "leader.pid")?.trim().parse().ok()?;
        let child = read_file_in_job(&cluster, "a1", "child.pid")?.trim().parse().ok()?;
        Some(vec![leader, child])
    });
    assert!(pids.iter().all(|p| alive(*p)), "the job runs");
    cluster.kill_agent("a1");
    let gone = wait_for_opt(Duration::from_secs(2), || pids.iter().all(|p| !alive(*p)));
    assert!(gone, "processes {pids:?} outlived their agent by 2 s");
}

fn wait_for_opt(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}
