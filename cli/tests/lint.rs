//! `phasegate lint` on the bundled fixture, with the real binary: every problem kind of
//! `datasets/lint-fixture/train.jsonl` is reported, the clean file passes, exit codes follow the
//! verdict (0 pass/warn, 1 fail, 2 bad input naming file, line and field), and token lengths come
//! from a tiny model written by the test (no downloaded one).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const FIXTURE: &str = "datasets/lint-fixture";
const SUITE: &str = "datasets/persona-v1/suite.toml";
/// Example index of the fixture's over-long example (train.jsonl line 20; lines 13 and 14 are
/// malformed records, so examples after them sit three below their line).
const LONG_EXAMPLE: u64 = 17;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn phasegate(args: &[&str]) -> Output {
    // An empty model cache: only paths the test passes are models.
    let cache = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_phasegate"))
        .args(args)
        .arg("--model-cache")
        .arg(cache.path())
        .current_dir(root())
        .output()
        .unwrap()
}

fn fixture(name: &str) -> String {
    format!("{FIXTURE}/{name}")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    })
}

fn rules(report: &Value) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["rule"].as_str().unwrap().to_owned(), f["severity"].as_str().unwrap().to_owned()))
        .collect()
}

#[test]
fn the_fixture_reports_every_problem_kind_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let model = phasegate_eval::tiny::write_tiny_gguf(dir.path());
    let train = fixture("train.jsonl");
    let (baseline, config) = (fixture("baseline.jsonl"), fixture("gate.toml"));
    let args = ["lint", &train, "--baseline", &baseline, "--suite", SUITE, "--config", &config];
    // The tiny tokenizer knows few merges (about two characters a token): a limit that only
    // the over-long example exceeds.
    let model = model.to_str().unwrap();
    let out = phasegate(&[&args[..], &["--model", model, "--max-length", "3000", "--format", "json"]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json(&out);
    assert_eq!(report["verdict"], "fail");
    assert_eq!(report["examples"], 22);
    assert_eq!(report["format"], "sharegpt");
    let found = rules(&report);
    for rule in [
        "malformed_record",
        "empty_turn",
        "role_order",
        "unknown_role",
        "missing_assistant",
        "exact_duplicate",
        "near_duplicate",
        "contamination",
        "token_lengths",
        "over_max_length",
        "epoch_exposure",
        "system_prompt_mismatch",
        "dataset_diff",
    ] {
        assert!(found.iter().any(|(r, _)| r == rule), "{rule} missing from {found:?}");
    }
    assert!(found.contains(&("contamination".into(), "fail".into())));
    assert!(found.contains(&("near_duplicate".into(), "warn".into())), "gate.toml raises near_duplicate to warn");

    let lengths = &report["token_lengths"];
    assert_eq!(lengths["over_max_length"], 1, "{lengths}");
    assert_eq!(lengths["over"][0]["example_index"], LONG_EXAMPLE);
    assert!(lengths["min"].as_u64() <= lengths["p50"].as_u64() && lengths["p95"].as_u64() <= lengths["max"].as_u64());

    let contaminated: Vec<(String, u64, String)> = report["contaminated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["qid"].as_str().unwrap().into(),
                c["example_index"].as_u64().unwrap(),
                c["kind"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected = [("Q1", 7, "verbatim"), ("Q1", 9, "ngram"), ("Q5", 6, "verbatim"), ("Q8", 8, "ngram")];
    assert_eq!(contaminated, expected.map(|(q, i, k)| (q.to_owned(), i, k.to_owned())));

    assert_eq!(report["duplicates"]["exact"][0]["indices"], serde_json::json!([1, 10]));
    assert_eq!(report["duplicates"]["near"][0]["indices"], serde_json::json!([11, 12]));
    let diff = &report["diff"];
    assert_eq!((diff["before"].as_u64(), diff["after"].as_u64()), (Some(13), Some(22)));
    assert_eq!((diff["removed"].as_u64(), diff["changed"].as_u64()), (Some(3), Some(1)));
    assert_eq!(diff["removed_groups"][0], serde_json::json!({"prefix": "Você é filho", "count": 3}));
}

#[test]
fn markdown_names_the_problems_with_file_and_line() {
    let train = fixture("train.jsonl");
    let out = phasegate(&["lint", &train, "--suite", SUITE]);
    assert_eq!(out.status.code(), Some(1));
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(md.starts_with("## Dataset lint: FAIL"), "{md}");
    assert!(md.contains("line 14: field `conversations[2].value` is not a string"), "{md}");
    assert!(md.contains("| Q5 | question | #6 | datasets/lint-fixture/train.jsonl line 7 | verbatim |"), "{md}");
    assert!(md.contains("token lengths not measured"), "without --model: {md}");
}

#[test]
fn the_clean_file_and_the_real_exports_pass() {
    let dir = tempfile::tempdir().unwrap();
    let model = phasegate_eval::tiny::write_tiny_gguf(dir.path());
    for (file, format, examples) in [
        ("clean.jsonl", "sharegpt", 10),
        ("messy-sharegpt.json", "sharegpt", 6),
        ("openai-messages.jsonl", "messages", 5),
    ] {
        let path = fixture(file);
        let out = phasegate(&["lint", &path, "--suite", SUITE, "--model", model.to_str().unwrap(), "--format", "json"]);
        assert_eq!(out.status.code(), Some(0), "{file}: {}", String::from_utf8_lossy(&out.stdout));
        let report = json(&out);
        assert_eq!(report["verdict"], "pass", "{file}: {:?}", rules(&report));
        assert_eq!((report["format"].as_str(), report["examples"].as_u64()), (Some(format), Some(examples)));
        assert!(rules(&report).iter().all(|(_, s)| s == "info"), "{file}: {:?}", rules(&report));
        assert!(report["token_lengths"]["p50"].as_u64() > Some(100), "the persona system prompt is rendered: {file}");
    }
}

#[test]
fn unreadable_input_exits_2_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("qa.jsonl");
    std::fs::write(&bad, "{\"question\": \"Quem é o Tomás?\", \"answer\": \"Meu parceiro.\"}\n").unwrap();
    let out = phasegate(&["lint", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("qa.jsonl") && stderr.contains("line 1") && stderr.contains("`question`"), "{stderr}");

    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "[\n {\"text\": \"a\"},\n {\"text\": }\n]").unwrap();
    let out = phasegate(&["lint", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.json") && stderr.contains("line 3"), "{stderr}");

    let config = dir.path().join("gate.toml");
    std::fs::write(&config, "[lint]\nmax_len = 512\n").unwrap();
    let out = phasegate(&["lint", &fixture("clean.jsonl"), "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lint.max_len"));

    let out = phasegate(&["lint", &fixture("clean.jsonl"), "--model", "no-such-model"]);
    assert_eq!(out.status.code(), Some(2), "an unknown model is bad input");
}
