//! End to end with the real `phasegate` binary: a coordinator and two agents as separate processes.
//!
//! Timings are short (lease TTL 2 s, heartbeats every 500 ms) so the failure scenarios finish in
//! seconds; every wait polls with a deadline.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{Cluster, example_spec, history_files, write_tiny_dictionary};

/// Long enough for any single run on a loaded 2-core machine.
const RUN_TIMEOUT: Duration = Duration::from_secs(45);

/// `(step, loss)` pairs from the trainer's `step K/N epoch E loss L` log lines.
fn losses_from_logs(logs: &str) -> Vec<(u64, f64)> {
    logs.lines()
        .filter_map(|line| {
            let rest = &line[line.find("step ")? + "step ".len()..];
            let (step, rest) = rest.split_once('/')?;
            let loss = rest.rsplit_once(" loss ")?.1;
            Some((step.parse().ok()?, loss.trim().parse().ok()?))
        })
        .collect()
}

/// The run's finetune job.
fn finetune(run: &Value) -> &Value {
    let jobs = run["jobs"].as_array().unwrap_or_else(|| panic!("run has no jobs: {run}"));
    jobs.iter().find(|j| j["stage"] == "finetune").unwrap_or_else(|| panic!("run has no finetune job: {run}"))
}

fn loss_curve(job: &Value) -> Vec<(u64, f64)> {
    job["metrics"]["loss_curve"]
        .as_array()
        .unwrap_or_else(|| panic!("job has no loss curve: {job}"))
        .iter()
        .map(|p| (p["step"].as_u64().expect("step"), p["loss"].as_f64().expect("loss")))
        .collect()
}

#[test]
fn command_job_completes_and_its_loss_curve_is_stored() {
    const STEPS: u32 = 24;
    let cluster = Cluster::start(&["a1", "a2"]);
    let spec = example_spec(cluster.dir.path(), "spec", STEPS, 0.01, None);

    let out = cluster.cli(&["submit", spec.to_str().unwrap(), "--wait", "--json"]);
    assert_eq!(out.status.code(), Some(0), "submit --wait failed: {}", String::from_utf8_lossy(&out.stderr));
    let waited: Value = serde_json::from_slice(&out.stdout).expect("submit --json prints the run");
    let run_id = waited["id"].as_u64().expect("run id");

    let run = cluster.show(run_id);
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["experiment"], "persona-v1");
    assert_eq!(run["phase"], "10");
    let job = finetune(&run);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 1, "{job}");
    assert!(["a1", "a2"].contains(&job["agent"].as_str().unwrap_or_default()), "{job}");

    // The stored curve is what the trainer printed: compare with its own log lines.
    let logs = cluster.cli(&["logs", &run_id.to_string()]);
    assert!(logs.status.success(), "logs failed: {}", String::from_utf8_lossy(&logs.stderr));
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(logs.contains("training done"), "logs lack the trainer's last line:\n{logs}");
    let printed = losses_from_logs(&logs);
    assert_eq!(printed.len(), STEPS as usize, "expected one training line per step:\n{logs}");
    let curve = loss_curve(job);
    assert_eq!(curve.len(), printed.len(), "curve {curve:?} vs printed {printed:?}");
    for ((cs, cl), (ps, pl)) in curve.iter().zip(&printed) {
        assert_eq!(cs, ps);
        assert!((cl - pl).abs() < 1e-3, "step {cs}: stored loss {cl}, printed {pl}");
    }
    assert!(curve.first().unwrap().1 > curve.last().unwrap().1, "the stand-in loss decays: {curve:?}");
    let final_loss = job["metrics"]["final_loss"].as_f64().expect("final_loss stored");
    assert!((final_loss - printed.last().unwrap().1).abs() < 1e-3, "final loss {final_loss} vs {printed:?}");

    let artifacts = job["artifacts"].as_array().expect("artifacts");
    assert!(
        artifacts.iter().any(|a| a["name"].as_str().is_some_and(|n| n.ends_with("adapter_config.json"))),
        "the adapter was not uploaded: {artifacts:?}"
    );
}

#[test]
fn job_needing_more_vram_than_any_agent_fails_at_once() {
    let cluster = Cluster::start(&["a1", "a2"]);
    let spec = example_spec(cluster.dir.path(), "big", 4, 0.01, Some("{ gpu = true, vram_mib = 100000, labels = [] }"));

    let started = Instant::now();
    let out = cluster.cli(&["submit", spec.to_str().unwrap(), "--wait", "--json"]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(3), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    // "At once": no lease, no timeout — well under one lease TTL plus CLI start-up.
    assert!(took < Duration::from_secs(10), "failing the run took {took:?}");

    let waited: Value = serde_json::from_slice(&out.stdout).expect("submit --json prints the run");
    let run = cluster.show(waited["id"].as_u64().expect("run id"));
    assert_eq!(run["state"], "failed", "{run}");
    let job = finetune(&run);
    assert_eq!(job["attempts"], 0, "the job must never have been leased: {job}");
    let error = format!("{} {}", run["error"].as_str().unwrap_or_default(), job["error"].as_str().unwrap_or_default());
    assert!(error.contains("100000 MiB"), "the error names the requirement: {error}");
    for agent in ["a1", "a2"] {
        assert!(error.contains(&format!("agent {agent}: no GPU")), "the error lists {agent} and its capacity: {error}");
    }
}

#[test]
fn agent_killed_mid_job_the_job_finishes_on_the_other_agent() {
    let mut cluster = Cluster::start(&["a1", "a2"]);
    let spec = example_spec(cluster.dir.path(), "slow", 120, 0.05, None);
    let run_id = cluster.submit(&spec);

    let victim = cluster.wait_running(run_id, RUN_TIMEOUT);
    cluster.kill_agent(&victim);
    let survivor = if victim == "a1" { "a2" } else { "a1" };

    let run = cluster.wait_ended(run_id, RUN_TIMEOUT);
    assert_eq!(run["state"], "succeeded", "{run}");
    let job = finetune(&run);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");
    assert_eq!(job["agent"], survivor, "{job}");
    let history = job["history"].as_array().expect("history");
    assert!(history.iter().any(|h| h["agent"] == victim.as_str()), "the lost attempt is recorded: {history:?}");
    assert!(job["metrics"]["final_loss"].as_f64().is_some(), "{job}");
}

#[test]
fn coordinator_killed_mid_job_restarts_with_every_run_and_the_job_completes() {
    let mut cluster = Cluster::start(&["a1", "a2"]);
    let quick = example_spec(cluster.dir.path(), "quick", 4, 0.01, None);
    let done = cluster.submit(&quick);
    let done_before = cluster.wait_ended(done, RUN_TIMEOUT);
    assert_eq!(done_before["state"], "succeeded", "{done_before}");

    let slow = example_spec(cluster.dir.path(), "slow", 100, 0.05, None);
    let running = cluster.submit(&slow);
    let agent = cluster.wait_running(running, RUN_TIMEOUT);
    let runs_before = cluster.json(&["runs", "--json"]).expect("runs");

    cluster.kill_coordinator();
    cluster.start_coordinator();

    // Every acknowledged run is still there, the finished one unchanged.
    let runs_after = cluster.json(&["runs", "--json"]).expect("runs after restart");
    let ids = |v: &Value| -> Vec<u64> { v.as_array().unwrap().iter().map(|r| r["id"].as_u64().unwrap()).collect() };
    let mut before = ids(&runs_before);
    let mut after = ids(&runs_after);
    before.sort_unstable();
    after.sort_unstable();
    assert_eq!(before, after);
    let done_after = cluster.show(done);
    assert_eq!(done_after["state"], "succeeded");
    assert_eq!(finetune(&done_after)["metrics"], finetune(&done_before)["metrics"]);

    // The agent re-attaches and the running job completes, on its first attempt.
    let run = cluster.wait_ended(running, RUN_TIMEOUT);
    assert_eq!(run["state"], "succeeded", "{run}");
    let job = finetune(&run);
    assert_eq!(job["attempts"], 1, "the job must not have been restarted: {job}");
    assert_eq!(job["agent"], agent.as_str(), "{job}");
    assert_eq!(loss_curve(job).len(), 100, "{job}");
}

/// `import` and `accept` through a running coordinator (as a user of a remote one would): the
/// phase lands in the coordinator's history, and a bad file is refused naming it, importing nothing.
#[test]
fn import_and_accept_go_through_a_named_coordinator() {
    let cluster = Cluster::start(&[]);
    let history = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/persona-v1/history");
    let files = |phase: &str| -> Vec<String> {
        let mut f: Vec<String> = std::fs::read_dir(history.join(format!("phase{phase}")))
            .unwrap()
            .map(|e| e.unwrap().path().display().to_string())
            .collect();
        f.sort();
        f
    };
    for (phase, accept) in [("7", true), ("8", false)] {
        let mut args = vec!["import", "--experiment", "persona-v1"];
        if accept {
            args.push("--accept");
        }
        let f = files(phase);
        args.extend(f.iter().map(String::as_str));
        let out = cluster.cli(&args);
        assert!(out.status.success(), "import {phase}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = cluster.cli(&["accept", "--experiment", "persona-v1", "--phase", "8"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bad = cluster.cli(&["accept", "--experiment", "persona-v1", "--phase", "99"]);
    assert_eq!(bad.status.code(), Some(2), "an unknown phase is a usage error");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no phase 99"), "{}", String::from_utf8_lossy(&bad.stderr));

    // The coordinator's own data dir now holds both phases, accepted.
    let rows = stored_history(&cluster);
    let labels: Vec<(String, bool)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["label"].as_str().unwrap_or_default().to_owned(), r["accepted"].as_bool().unwrap_or(false)))
        .collect();
    assert_eq!(labels, [("7".to_owned(), true), ("8".to_owned(), true)], "{rows}");
}

/// `rescore` through a running coordinator (as a user of a remote one would): the CLI sends the
/// suite, the coordinator re-scores the hand-scored phases of its own history with the dictionary of
/// its own model cache, keeping the hand scores and each phase's acceptance.
#[test]
fn rescore_goes_through_a_named_coordinator_and_keeps_the_hand_scores() {
    let cache = tempfile::tempdir().unwrap();
    write_tiny_dictionary(cache.path());
    let cluster = Cluster::start_with_env(&[], &[("PHASEGATE_MODEL_CACHE", cache.path().as_os_str())]);
    for phase in ["6", "7", "8", "9"] {
        let files = history_files(phase);
        let mut args = vec!["import", "--experiment", "persona-v1", "--accept", "--scorer", "human"];
        args.extend(files.iter().map(String::as_str));
        let out = cluster.cli(&args);
        assert!(out.status.success(), "import {phase}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/persona-v1/suite.toml");
    // The CLI's own model cache holds no dictionary: the coordinator's is the one used.
    let no_dictionary = tempfile::tempdir().unwrap();
    let rescore = |experiment: &str| {
        cluster.cli(&[
            "rescore",
            "--experiment",
            experiment,
            "--suite",
            suite.to_str().unwrap(),
            "--model-cache",
            no_dictionary.path().to_str().unwrap(),
        ])
    };

    let out = rescore("persona-v1");
    assert!(out.status.success(), "rescore: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "one line per phase:\n{stdout}");
    assert!(lines[0].starts_with("phase 6: kept as scored by human scores: "), "no responses kept:\n{stdout}");
    let mut after = Vec::new();
    for (line, label) in lines[1..].iter().zip(["7", "8", "9"]) {
        let prefix = format!("phase {label}: ");
        assert!(line.starts_with(&prefix) && line.contains(" (human scores → rules scorer "), "{stdout}");
        // "phase 7: 6.250 → 1.234 (human scores → rules scorer 2 (suite ...))"
        let scores = line[prefix.len()..].split(" (").next().unwrap();
        let (_, new) = scores.split_once(" → ").unwrap_or_else(|| panic!("no scores in {line:?}"));
        after.push((label.to_owned(), new.to_owned()));
    }

    // Stored: a second run finds every re-scored phase on the suite's rules scorer already.
    let out = rescore("persona-v1");
    assert!(out.status.success(), "rescore again: {}", String::from_utf8_lossy(&out.stderr));
    let again = String::from_utf8_lossy(&out.stdout).into_owned();
    for label in ["7", "8", "9"] {
        assert!(again.contains(&format!("phase {label}: already scored by rules scorer ")), "{again}");
    }

    // The coordinator's own data dir holds the new scores, the rules instrument and the hand scores.
    let rows = stored_history(&cluster);
    for (label, new) in &after {
        let row = rows.as_array().unwrap().iter().find(|r| r["label"] == label.as_str()).expect("phase listed");
        assert_eq!(row["accepted"], true, "acceptance is kept: {row}");
        assert_eq!(format!("{:.3}", row["score"].as_f64().unwrap()), *new, "{row}");
    }
    let phases = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let history = phasegate_coordinator::history::History::open(&cluster.data_dir()).await.unwrap();
        history.history("persona-v1").await.unwrap()
    });
    for entry in &phases[1..] {
        let phase = &entry.phase;
        assert_eq!(phase.instrument().kind(), gate_rules::InstrumentKind::Rules, "phase {}", phase.label);
        assert_eq!(phase.rescored_from, Some(gate_rules::Instrument::Human), "phase {}", phase.label);
        let [earlier] = phase.earlier_scores.as_slice() else { panic!("phase {}: one earlier score", phase.label) };
        assert_eq!(earlier.instrument, gate_rules::Instrument::Human, "phase {}", phase.label);
        assert!(earlier.eval.iter().all(|q| q.samples.iter().all(|s| s.response.is_some())), "phase {}", phase.label);
    }
    assert_eq!(phases[0].phase.instrument(), gate_rules::Instrument::Human, "phase 6 is left as it was");

    // An experiment without phases is the same usage error as offline.
    let none = rescore("persona-v2");
    assert_eq!(none.status.code(), Some(2), "{}", String::from_utf8_lossy(&none.stderr));
    let stderr = String::from_utf8_lossy(&none.stderr);
    assert!(stderr.contains("error: no phases in experiment persona-v2"), "{stderr}");
    assert!(stderr.contains("hint: list the experiment's phases with `phasegate history EXPERIMENT`"), "{stderr}");
}

/// Starts `phasegate agent` with a per-agent credential (not the access file), stderr piped.
fn agent_with_credential(cluster: &Cluster, name: &str, token_file: &std::path::Path) -> std::process::Child {
    Command::new(common::BIN)
        .arg("agent")
        .args(["--coordinator", &format!("http://127.0.0.1:{}", cluster.grpc_port)])
        .arg("--token-file")
        .arg(token_file)
        .args(["--name", name, "--grace", "1s"])
        .arg("--work-dir")
        .arg(cluster.dir.path().join(format!("work-{name}")))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn agent")
}

#[test]
fn a_credential_is_printed_once_listed_without_its_secret_bound_to_its_agent_and_revocable() {
    let cluster = Cluster::start(&[]);
    let out = cluster.cli(&["token", "create", "--agent", "gpu-1"]);
    assert!(out.status.success(), "token create failed: {}", String::from_utf8_lossy(&out.stderr));
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(secret.len(), 64, "the secret alone on stdout: {secret:?}");
    let token_file = cluster.dir.path().join("gpu-1.token");
    std::fs::write(&token_file, &secret).unwrap();

    let mut agent = agent_with_credential(&cluster, "gpu-1", &token_file);
    cluster.wait_agents_online(&["gpu-1"]);

    // The same credential under another name is refused, and the agent says why.
    let wrong = agent_with_credential(&cluster, "gpu-2", &token_file).wait_with_output().unwrap();
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("belongs to agent gpu-1, not gpu-2"), "{stderr}");

    let list = cluster.cli(&["token", "list", "--json"]);
    assert!(list.status.success(), "token list failed: {}", String::from_utf8_lossy(&list.stderr));
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(!text.contains(&secret), "a listing never shows the secret: {text}");
    let tokens: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(tokens[0]["agent"], "gpu-1", "{tokens}");
    assert!(tokens[0]["last_used_ms"].as_i64().is_some_and(|t| t > 0), "{tokens}");
    assert!(tokens[0]["revoked_ms"].is_null(), "{tokens}");

    let revoke = cluster.cli(&["token", "revoke", "gpu-1"]);
    assert!(revoke.status.success(), "token revoke failed: {}", String::from_utf8_lossy(&revoke.stderr));
    assert!(String::from_utf8_lossy(&revoke.stdout).contains("revoked credential 1 of agent gpu-1"));
    let again = cluster.cli(&["token", "revoke", "gpu-1"]);
    assert!(!again.status.success(), "nothing is left to revoke");
    common::sigkill(&mut agent);
}

/// `phasegate history persona-v1 --json` read from the coordinator's own data dir.
fn stored_history(cluster: &Cluster) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_phasegate"))
        .args(["history", "persona-v1", "--json", "--data-dir"])
        .arg(cluster.data_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}
