//! The `[lint]` stage of a run, with real processes on loopback: a run whose dataset holds the
//! suite's questions stops at the lint stage with the run's verdict `fail` (exit 1) and its later
//! stage is cancelled before any agent leases it; the same run on clean data goes on to the next
//! stage. Token lengths come from a tiny model written by the test.

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::Cluster;
use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// An experiment directory: the dataset, the persona suite, the fixture's `gate.toml`, a tiny
/// model, and a spec whose `[finetune]` (no GPU, so an idle agent could lease it at once) only
/// leaves a marker file behind.
fn experiment(cluster: &Cluster, dataset: &str) -> (PathBuf, PathBuf) {
    let dir = cluster.dir.path().join("exp");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let copy = |from: &str, to: &str| std::fs::copy(Path::new(ROOT).join(from), dir.join(to)).unwrap();
    copy(&format!("datasets/lint-fixture/{dataset}"), "data/train.jsonl");
    copy("datasets/persona-v1/suite.toml", "suite.toml");
    copy("datasets/lint-fixture/gate.toml", "gate.toml");
    let model = phasegate_eval::tiny::write_tiny_gguf(cluster.dir.path());
    let marker = cluster.dir.path().join("finetune-ran");
    let spec = format!(
        r#"experiment = "lint-stage"
phase = "1"

[lint]
datasets = ["data/train.jsonl"]
suite = "suite.toml"
config = "gate.toml"
model = {model:?}
max_length = 3000

[finetune]
command = ["sh", "-c", "touch {marker}"]
timeout = "1m"
"#,
        model = model.display().to_string(),
        marker = marker.display(),
    );
    std::fs::write(dir.join("phase.toml"), spec).unwrap();
    (dir.join("phase.toml"), marker)
}

fn job<'a>(run: &'a Value, stage: &str) -> &'a Value {
    run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["stage"] == stage)
        .unwrap_or_else(|| panic!("no {stage} job: {run}"))
}

#[test]
fn a_run_whose_data_holds_the_eval_questions_fails_at_the_lint_stage_before_any_lease() {
    let cluster = Cluster::start(&["a1"]);
    let (spec, marker) = experiment(&cluster, "train.jsonl");
    let started = Instant::now();
    let out = cluster.cli(&["submit", spec.to_str().unwrap(), "--wait", "--json"]);
    let took = started.elapsed();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the lint's fail is the run's verdict (exit 1), not a failed stage (3)\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.child_logs()
    );
    let submitted: Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = cluster.show(submitted["id"].as_u64().unwrap());
    assert_eq!(run["verdict"], "fail", "{run}");
    assert_eq!(run["state"], "succeeded", "{run}");
    let report = run["report"].as_str().unwrap();
    assert!(report.contains("Stopped at the lint stage") && report.contains("contamination"), "{report}");
    let lint = job(&run, "lint");
    assert_eq!(lint["state"], "succeeded", "{run}");
    let names: Vec<&str> = lint["artifacts"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["lint/report.json", "lint/report.md"], "{run}");
    let finetune = job(&run, "finetune");
    assert_eq!(finetune["state"], "cancelled", "{run}");
    assert!(finetune["error"].as_str().unwrap().contains("lint verdict is fail"), "{run}");
    let never_leased = finetune["history"].as_array().unwrap().is_empty()
        && finetune["attempts"] == 0
        && finetune["agent"].as_str().is_none_or(str::is_empty);
    assert!(never_leased, "never leased: {run}");
    assert!(!marker.exists(), "the stage after a failing lint must not run");
    eprintln!("lint stage failed the run in {:.1} s", took.as_secs_f64());

    // A maintainer merges over it deliberately: who and why are stored with the run.
    let id = submitted["id"].as_u64().unwrap().to_string();
    let out = cluster.cli(&["override", &id, "--reason", "the eval questions are in on purpose", "--by", "ana"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = cluster.show(submitted["id"].as_u64().unwrap());
    assert_eq!(run["verdict"], "fail", "the verdict stays: {run}");
    assert_eq!(run["override"]["by"], "ana", "{run}");
    assert_eq!(run["override"]["reason"], "the eval questions are in on purpose", "{run}");
    let text = String::from_utf8_lossy(&cluster.cli(&["show", &id]).stdout).into_owned();
    assert!(text.contains("overridden by ana") && text.contains("on purpose"), "{text}");
    let out = cluster.cli(&["override", &id, "--reason", "", "--by", "ana"]);
    assert_eq!(out.status.code(), Some(2), "an empty reason is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("reason"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_run_on_clean_data_passes_the_lint_stage_and_goes_on() {
    let cluster = Cluster::start(&["a1"]);
    let (spec, marker) = experiment(&cluster, "clean.jsonl");
    let out = cluster.cli(&["submit", spec.to_str().unwrap(), "--wait", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", String::from_utf8_lossy(&out.stderr), cluster.child_logs());
    let submitted: Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = cluster.show(submitted["id"].as_u64().unwrap());
    assert_eq!(run["state"], "succeeded", "{run}");
    assert!(run["verdict"].is_null(), "a passing lint is no verdict of its own: {run}");
    assert_eq!(job(&run, "lint")["state"], "succeeded", "{run}");
    assert_eq!(job(&run, "finetune")["state"], "succeeded", "{run}");
    assert!(marker.exists(), "the finetune runs after a passing lint");
    // Without a verdict there is nothing to override.
    let id = submitted["id"].as_u64().unwrap().to_string();
    let out = cluster.cli(&["override", &id, "--reason", "why", "--by", "ana"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no verdict yet"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
