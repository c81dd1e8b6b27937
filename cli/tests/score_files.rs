//! `phasegate score`: response files from other tools, scored offline, import like the score
//! stage's own scores.json; bad files exit 2 naming the file and the field.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs phasegate with a model cache holding a tiny Portuguese dictionary: these tests look at
/// file shapes and errors, not at scores, so they need no downloaded dictionary.
fn phasegate(args: &[&str]) -> std::process::Output {
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("dictionaries/pt");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.aff"), "SET UTF-8\n").unwrap();
    std::fs::write(dir.join("index.dic"), "3\nsou\na\niara\n").unwrap();
    Command::new(env!("CARGO_BIN_EXE_phasegate"))
        .args(args)
        .arg("--model-cache")
        .arg(cache.path())
        .current_dir(root())
        .output()
        .unwrap()
}

const SUITE: &str = "datasets/persona-v1/suite.toml";

#[test]
fn a_history_file_is_scored_in_the_score_stage_shape() {
    let out = phasegate(&["score", "datasets/persona-v1/history/phase9/eval_responses_phase9.json", "--suite", SUITE]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["instrument"]["kind"], "rules");
    assert_eq!(json["scores"].as_array().unwrap().len(), 8);
    assert!(json["overall"]["score_10"].as_f64().is_some());
    let part = gate_rules::import::parse_file("scores.json", &text, None).unwrap();
    assert_eq!(part.phase.as_deref(), Some("9"));
    assert_eq!(part.instrument.unwrap().kind(), gate_rules::InstrumentKind::Rules);
    assert!(part.questions.iter().all(|q| q.samples[0].response.is_some() && q.samples[0].dimensions.len() == 5));
}

#[test]
fn files_without_phase_model_or_sample_numbers_are_scored() {
    let dir = tempfile::tempdir().unwrap();
    let suite = phasegate_score::Suite::load(&root().join(SUITE)).unwrap();
    let results: Vec<serde_json::Value> = suite
        .questions
        .iter()
        .flat_map(|q| {
            ["Sou a Iara e trabalho com o Tomás.", "Oi."]
                .map(|r| serde_json::json!({"qid": q.id, "question": q.text, "response": r}))
        })
        .collect();
    let file = dir.path().join("old_eval_phase12.json");
    std::fs::write(&file, serde_json::json!({ "results": results }).to_string()).unwrap();
    let out_file = dir.path().join("scores.json");
    let out = phasegate(&["score", file.to_str().unwrap(), "--suite", SUITE, "--out", out_file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out_file).unwrap()).unwrap();
    assert_eq!(json["phase"], "12", "the label comes from the file name");
    let samples: Vec<u64> = json["scores"].as_array().unwrap().iter().map(|s| s["sample"].as_u64().unwrap()).collect();
    assert_eq!(&samples[..2], [0, 1], "K samples numbered in file order");
}

#[test]
fn bad_files_exit_2_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (r#"{"results": [{"qid": "Q1", "response": "x"}]}"#, "results[0].question"),
        (r#"{"answers": []}"#, "results"),
        (r#"{"results": [{"qid": "Q99", "question": "?", "response": "x"}]}"#, "Q99"),
        ("{not json", "as JSON"),
    ];
    for (i, (text, field)) in cases.into_iter().enumerate() {
        let file = dir.path().join(format!("bad{i}.json"));
        std::fs::write(&file, text).unwrap();
        let out = phasegate(&["score", file.to_str().unwrap(), "--suite", SUITE]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(&format!("bad{i}.json")) && err.contains(field), "{field}: {err}");
    }
}
