//! Draining an agent with real processes on loopback: a SIGTERM (as systemd sends on a stop or
//! restart) lets the running job finish and takes nothing new; past `--drain-timeout`, or on a
//! second signal, the job is stopped and given back to run elsewhere without costing an attempt.

mod common;

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use common::{Cluster, command_spec, wait_for};

/// Long enough for any single run on a loaded 2-core machine.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// A job that runs for a minute on its first attempt and finishes at once on a later one.
const SLOW_FIRST_ATTEMPT: &str =
    "echo $$ > leader.pid; if [ \"$PHASEGATE_ATTEMPT\" = 1 ]; then sleep 60; fi; echo done";

fn job(run: &Value) -> &Value {
    run["jobs"].as_array().and_then(|j| j.first()).unwrap_or_else(|| panic!("run has no job: {run}"))
}

fn wait_job_state(cluster: &Cluster, run: u64, state: &str) -> Value {
    wait_for(&format!("run {run}'s job to be {state}"), RUN_TIMEOUT, || {
        let v = cluster.json(&["show", &run.to_string(), "--json"]).ok()?;
        (job(&v)["state"] == state).then_some(v)
    })
}

fn listed_agent(cluster: &Cluster, name: &str) -> Option<Value> {
    let agents = cluster.json(&["agents", "--json"]).ok()?;
    agents.as_array()?.iter().find(|a| a["name"] == name).cloned()
}

/// The pid the first attempt's shell wrote in its job directory on agent `name`.
fn first_attempt_pid(cluster: &Cluster, name: &str, run: &Value) -> u32 {
    let dir = cluster.dir.path().join(format!("work-{name}/jobs/{}-1", job(run)["id"]));
    let text = std::fs::read_to_string(dir.join("leader.pid")).expect("the job wrote its pid");
    text.trim().parse().expect("a pid")
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|t| t.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])))
        .is_some_and(|dead| !dead)
}

/// `(agent, released)` of each attempt in the job's history.
fn history(job: &Value) -> Vec<(String, bool)> {
    let entries = job["history"].as_array().cloned().unwrap_or_default();
    entries.iter().map(|h| (h["agent"].as_str().unwrap_or("").to_owned(), h["released"] == true)).collect()
}

#[test]
fn a_sigtermed_agent_finishes_its_running_job_takes_nothing_new_and_exits_0() {
    let mut cluster = Cluster::start(&["a1"]);
    let first = cluster.submit(&command_spec(cluster.dir.path(), "first", "sleep 3; echo done", "[]"));
    wait_job_state(&cluster, first, "running");
    cluster.signal_agent("a1", Signal::SIGTERM);
    wait_for("the agent to be listed draining", RUN_TIMEOUT, || {
        let a = listed_agent(&cluster, "a1")?;
        (a["draining"] == true && a["drain"] == "agent").then_some(())
    });
    let second = cluster.submit(&command_spec(cluster.dir.path(), "second", "echo second", "[]"));

    let run = cluster.wait_ended(first, RUN_TIMEOUT);
    assert_eq!(run["state"], "succeeded", "{run}\n{}", cluster.child_logs());
    assert_eq!(job(&run)["attempts"], 1, "{run}");
    let logs = cluster.cli(&["logs", &first.to_string()]);
    assert!(String::from_utf8_lossy(&logs.stdout).contains("done"), "the job ran to its end");
    let status = cluster.wait_agent_exit("a1", RUN_TIMEOUT);
    assert!(status.success(), "the drained agent exits 0: {status}\n{}", cluster.child_logs());

    let queued = cluster.show(second);
    assert_eq!(job(&queued)["state"], "queued", "the draining agent took nothing new: {queued}");
    assert_eq!(job(&queued)["attempts"], 0, "{queued}");
}

#[test]
fn a_drained_agent_frees_its_name_so_a_restart_registers_at_once() {
    let mut cluster = Cluster::start(&["a1"]);
    cluster.signal_agent("a1", Signal::SIGTERM);
    let status = cluster.wait_agent_exit("a1", RUN_TIMEOUT);
    assert!(status.success(), "the drained agent exits 0: {status}\n{}", cluster.child_logs());
    // Well within the 2 s lease TTL: the agent said it left, so it is offline and its name free.
    let listed = listed_agent(&cluster, "a1").expect("a1 is listed");
    assert_eq!(listed["online"], false, "the agent that left is offline at once: {listed}");

    // A `systemctl restart`: the next process under the same name and the shared token.
    cluster.start_agent("a1");
    cluster.wait_agents_online(&["a1"]);
    let run = cluster.submit(&command_spec(cluster.dir.path(), "after", "echo after", "[]"));
    let run = cluster.wait_ended(run, RUN_TIMEOUT);
    assert_eq!(run["state"], "succeeded", "{run}\n{}", cluster.child_logs());
}

#[test]
fn an_agent_restarted_after_a_crash_waits_for_its_name_instead_of_exiting() {
    let mut cluster = Cluster::start(&["a1"]);
    cluster.kill_agent("a1");
    // The killed process said nothing: its name stays live for a lease TTL. The newcomer waits.
    cluster.start_agent("a1");
    let run = cluster.submit(&command_spec(cluster.dir.path(), "after-crash", "echo after", "[]"));
    let run = cluster.wait_ended(run, RUN_TIMEOUT);
    assert_eq!(
        run["state"],
        "succeeded",
        "the restarted agent took the name and ran the job: {run}\n{}",
        cluster.child_logs()
    );
    let log = std::fs::read_to_string(cluster.dir.path().join("agent-a1.log")).unwrap_or_default();
    assert!(log.contains("name in use; waiting for it to come free"), "it was refused first and waited:\n{log}");
}

#[test]
fn past_the_drain_timeout_the_job_is_released_and_another_agent_runs_it() {
    let mut cluster = Cluster::start(&[]);
    cluster.start_agent_with("a1", &["--drain-timeout", "1s"]);
    cluster.wait_agents_online(&["a1"]);
    let run_id = cluster.submit(&command_spec(cluster.dir.path(), "slow", SLOW_FIRST_ATTEMPT, "[]"));
    wait_job_state(&cluster, run_id, "running");
    cluster.signal_agent("a1", Signal::SIGTERM);
    let status = cluster.wait_agent_exit("a1", RUN_TIMEOUT);
    assert!(status.success(), "the agent exits 0 after giving its job back: {status}\n{}", cluster.child_logs());

    let run = cluster.show(run_id);
    assert!(!alive(first_attempt_pid(&cluster, "a1", &run)), "the job was stopped");
    assert_eq!(job(&run)["state"], "queued", "released and queued again at once: {run}\n{}", cluster.child_logs());
    assert_eq!(history(job(&run)), [("a1".to_owned(), true)], "{run}");
    assert!(job(&run)["history"][0]["outcome"].as_str().is_some_and(|o| o.contains("drain timeout")), "{run}");

    cluster.start_agent("a2");
    let run = cluster.wait_ended(run_id, RUN_TIMEOUT);
    let job = job(&run);
    assert_eq!(run["state"], "succeeded", "{run}\n{}", cluster.child_logs());
    assert_eq!((job["agent"].as_str(), job["attempts"].as_u64()), (Some("a2"), Some(2)), "{run}");
    assert_eq!(history(job), [("a1".to_owned(), true), ("a2".to_owned(), false)], "a release, not a failure: {run}");
    assert!(!job["history"][1]["outcome"].as_str().unwrap_or("").contains("lost"), "{run}");
}

#[test]
fn a_second_signal_during_the_drain_stops_the_job_at_once_and_gives_it_back() {
    let mut cluster = Cluster::start(&["a1"]);
    let run_id = cluster.submit(&command_spec(cluster.dir.path(), "slow", SLOW_FIRST_ATTEMPT, "[]"));
    wait_job_state(&cluster, run_id, "running");
    cluster.signal_agent("a1", Signal::SIGTERM);
    wait_for("the agent to be listed draining", RUN_TIMEOUT, || {
        listed_agent(&cluster, "a1").is_some_and(|a| a["draining"] == true).then_some(())
    });
    // The default drain timeout is an hour: only the second signal ends this drain.
    cluster.signal_agent("a1", Signal::SIGINT);
    let status = cluster.wait_agent_exit("a1", RUN_TIMEOUT);
    assert!(status.success(), "{status}\n{}", cluster.child_logs());
    let run = cluster.show(run_id);
    assert_eq!(job(&run)["state"], "queued", "{run}\n{}", cluster.child_logs());
    assert_eq!(history(job(&run)), [("a1".to_owned(), true)], "{run}");
    assert!(job(&run)["history"][0]["outcome"].as_str().is_some_and(|o| o.contains("asked to stop now")), "{run}");
}

#[test]
fn an_operator_drains_and_undrains_an_agent_by_name() {
    let cluster = Cluster::start(&["a1"]);
    let out = cluster.cli(&["agents", "drain", "a1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("agent a1 is draining"));
    let run_id = cluster.submit(&command_spec(cluster.dir.path(), "held", "echo held", "[]"));
    let a = listed_agent(&cluster, "a1").expect("listed");
    assert_eq!((a["draining"].as_bool(), a["drain"].as_str()), (Some(true), Some("operator")), "{a}");
    let text = String::from_utf8_lossy(&cluster.cli(&["agents"]).stdout).into_owned();
    assert!(text.contains("online draining"), "{text}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(job(&cluster.show(run_id))["state"], "queued", "a drained agent is leased nothing");

    let missing = cluster.cli(&["agents", "drain", "nobody"]);
    assert_eq!(missing.status.code(), Some(2), "an unknown agent is an input error");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nobody"));

    assert!(cluster.cli(&["agents", "undrain", "a1"]).status.success());
    let run = cluster.wait_ended(run_id, RUN_TIMEOUT);
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(listed_agent(&cluster, "a1").expect("listed")["draining"], false);
}
