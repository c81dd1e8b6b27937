//! `phasegate calibrate` as users run it: the binary, the bundled suite, label files written here
//! and a tiny dictionary in a temporary model cache (the tests need no downloaded one).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_phasegate");
const SUITE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../datasets/persona-v1/suite.toml");

/// Two answers in the plain shape, one good and one empty-ish.
const LABELS: &str = r#"[
  {"qid": "Q1", "response": "Eu sou a Iara e o Tomás é meu parceiro.", "scores": {"D1": 2, "D2": 0, "D3": 1, "D4": 2, "D5": 1}},
  {"qid": "Q2", "response": "sou a", "scores": {"D1": 0, "D2": 0, "D3": 0, "D4": 2, "D5": 0}}
]"#;

fn cache_with_tiny_dictionary(root: &Path) -> PathBuf {
    let dir = phasegate_score::dictionary_dir(root, phasegate_score::Language::Pt);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.aff"), "SET UTF-8\n").unwrap();
    std::fs::write(dir.join("index.dic"), "3\neu\nsou\na\n").unwrap();
    root.to_owned()
}

fn calibrate(cache: &Path, labels: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args(["calibrate", "--suite", SUITE, "--labels"])
        .arg(labels)
        .arg("--model-cache")
        .arg(cache)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn calibrate_prints_the_figures_and_exits_zero() {
    let root = tempfile::tempdir().unwrap();
    let cache = cache_with_tiny_dictionary(&root.path().join("cache"));
    let labels = root.path().join("labels.json");
    std::fs::write(&labels, LABELS).unwrap();
    // The tiny dictionary cannot hold the anchors in their bands, so measure without that check.
    let out = calibrate(&cache, &labels, &["--no-calibration", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["answers"], 2);
    assert!(report["mae"].is_number() && report["dimensions"].as_array().unwrap().len() == 5, "{report}");
    assert!(report["instrument"].as_str().unwrap().contains("rules scorer 2"), "{report}");
}

#[test]
fn calibrate_refuses_a_scorer_that_misses_an_anchor() {
    let root = tempfile::tempdir().unwrap();
    let cache = cache_with_tiny_dictionary(&root.path().join("cache"));
    let labels = root.path().join("labels.json");
    std::fs::write(&labels, LABELS).unwrap();
    let out = calibrate(&cache, &labels, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("Q1 ideal anchor scored") && stderr.contains("--no-calibration"), "{stderr}");
}

#[test]
fn bad_labels_exit_two_naming_file_and_field() {
    let root = tempfile::tempdir().unwrap();
    let labels = root.path().join("bad.json");
    std::fs::write(&labels, r#"[{"qid": "Q1", "response": "oi", "scores": {"D1": 2}}]"#).unwrap();
    // No dictionary at all: the input is checked first.
    let out = calibrate(&root.path().join("empty-cache"), &labels, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.json") && stderr.contains("[0].scores.D2: is missing"), "{stderr}");
}

#[test]
fn a_missing_dictionary_names_the_pull_command() {
    let root = tempfile::tempdir().unwrap();
    let labels = root.path().join("labels.json");
    std::fs::write(&labels, LABELS).unwrap();
    let out = calibrate(&root.path().join("empty-cache"), &labels, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("phasegate models pull dictionary-pt"), "{stderr}");
}
