//! `phasegate gc` against a real `phasegate serve` and agent: a dry run names the run it would
//! prune and removes nothing; the real gc removes its logs and artifacts, and `show` and `logs`
//! say so.

mod common;

use std::time::Duration;

use serde_json::Value;

use common::{Cluster, command_spec};

fn text(out: &std::process::Output) -> String {
    assert!(out.status.success(), "phasegate failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn artifact_path(cluster: &Cluster, run: &Value) -> std::path::PathBuf {
    let sha = run["jobs"][0]["artifacts"][0]["sha256"].as_str().expect("the job uploaded an artifact").to_owned();
    cluster.data_dir().join("artifacts").join(&sha[..2]).join(sha)
}

#[test]
fn gc_dry_run_then_gc_prune_the_older_run_and_show_and_logs_say_so() {
    let cluster = Cluster::start(&["a1"]);
    let script = "mkdir -p out && echo \"training line of $$\" && echo \"weights of $$\" > out/weights.txt";
    let mut runs = Vec::new();
    for name in ["first", "second"] {
        let spec = command_spec(cluster.dir.path(), name, script, "[\"out/*\"]");
        let run = cluster.submit(&spec);
        let ended = cluster.wait_ended(run, Duration::from_secs(60));
        assert_eq!(ended["state"], "succeeded", "{ended}");
        runs.push((run, ended));
    }
    let (old, old_run) = &runs[0];
    let old_blob = artifact_path(&cluster, old_run);
    let new_blob = artifact_path(&cluster, &runs[1].1);
    assert!(old_blob.is_file() && new_blob.is_file());
    let args = ["--keep-runs", "1", "--older-than", "0s", "--json"];

    let dry = cluster.json(&[&["gc", "--dry-run"][..], &args].concat()).expect("gc --dry-run");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["run_ids"], serde_json::json!([old]), "{dry}");
    // Its artifact and its source bundle (each spec directory, and so each bundle, differs).
    assert!(dry["log_lines"].as_u64().unwrap() >= 1 && dry["blobs"] == 2, "{dry}");
    assert!(old_blob.is_file(), "a dry run deletes nothing");
    assert!(text(&cluster.cli(&["logs", &old.to_string()])).contains("training line"), "the logs stay");
    assert_eq!(cluster.show(*old)["pruned_ms"], Value::Null);

    let real = cluster.json(&[&["gc"][..], &args].concat()).expect("gc");
    assert_eq!(real["run_ids"], dry["run_ids"]);
    for key in ["log_lines", "metric_points", "blobs", "bytes_freed"] {
        assert_eq!(real[key], dry[key], "{key}: the real gc removes what the dry run counted");
    }
    assert!(!old_blob.exists() && new_blob.is_file());
    let shown = text(&cluster.cli(&["show", &old.to_string()]));
    assert!(shown.contains("removed by gc on"), "{shown}");
    let logs = text(&cluster.cli(&["logs", &old.to_string()]));
    assert!(logs.contains("removed by gc on") && !logs.contains("training line"), "{logs}");
    assert!(text(&cluster.cli(&["logs", &runs[1].0.to_string()])).contains("training line"));

    let again = text(&cluster.cli(&["gc", "--keep-runs", "1", "--older-than", "0s"]));
    assert!(again.starts_with("gc pruned no runs: 0 log lines"), "{again}");
}
