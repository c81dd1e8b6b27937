use super::*;
use phasegate_rubric::{Instrument, InstrumentKind, Rubric};

const RUBRIC: &str = r#"{"phase": 6, "model": "m", "generation_params": {"max_new_tokens": 200, "temperature": 0.7},
  "scores": {"Q1": {"question": "Quem?", "score": 3, "max_score": 10, "notes": ""},
             "Q2": {"question": "O quê?", "score": 4, "max_score": 10}},
  "overall": {"total": 7, "max": 20, "normalized_10": 3.5, "rounded": 3.5}, "verdict": "x"}"#;
const DIMS_LIST: &str = r#"{"phase": "Phase 8", "training_loss": 1.2, "rubric_version": "1.0", "scores": [
  {"qid": "Q1", "question": "Quem?", "d1": {"score": 0, "reason": "r"}, "d2": {"score": 1, "reason": "r"},
   "d3": {"score": 1}, "d4": {"score": 2}, "d5": {"score": 1}, "total": 5},
  {"qid": "Q2", "d1": {"score": 2}, "d2": {"score": 2}, "d3": {"score": 2}, "d4": {"score": 2}, "d5": {"score": 2}, "total": 10}],
  "summary": {"whatever": true}}"#;
const DIMS_KEYED: &str = r#"{"phase": 8, "scores": {
  "Q1": {"question": "Quem?", "response_preview": "Sou", "d1": {"score": 0, "reason": "r"}, "d2": {"score": 1, "reason": "r"},
         "d3": {"score": 1}, "d4": {"score": 2}, "d5": {"score": 1}, "total": 5},
  "Q2": {"d1": {"score": 2}, "d2": {"score": 2}, "d3": {"score": 2}, "d4": {"score": 2}, "d5": {"score": 2}, "total": 10}}}"#;
const METRICS: &str = r#"{"model": "m", "dataset": "d.json", "num_examples": 97, "epochs": 10, "max_length": 1024,
  "final_loss": 0.7732, "vram_peak_gb": 1.88, "phase": 9, "fixes": ["a"], "lora_r": 16}"#;
const TRAINER: &str = r#"{"global_step": 20, "log_history": [{"loss": 2.0, "step": 10, "epoch": 1},
  {"eval_loss": 1.9, "step": 10}, {"loss": 1.5, "step": 20, "epoch": 2}, {"train_runtime": 90.4, "step": 20, "train_loss": 1.7}]}"#;
const RESPONSES: &str = r#"{"phase": 8, "model": "m", "timestamp": "t", "generation_params": {"max_new_tokens": 300},
  "results": [{"qid": "Q1", "question": "Quem?", "response": "Oi<|im_end|>", "d4_auto_fail": ["<|im_end|>"], "d4_auto_score": 0},
              {"qid": "Q2", "question": "O quê?", "response": "Uma resposta cortada no meio de"}]}"#;

fn parse(name: &str, text: &str) -> ImportedPart {
    parse_file(name, text, None).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn shapes_are_detected() {
    let table = [
        (RUBRIC, Shape::RubricScores),
        (DIMS_LIST, Shape::DimensionScores),
        (DIMS_KEYED, Shape::DimensionScores),
        (METRICS, Shape::TrainingMetrics),
        (TRAINER, Shape::TrainerState),
        (RESPONSES, Shape::EvalResponses),
    ];
    for (text, shape) in table {
        assert_eq!(parse("f.json", text).shape, shape);
    }
}

#[test]
fn rubric_score_file_gives_totals_and_generation_params() {
    let part = parse("r.json", RUBRIC);
    assert_eq!(part.phase.as_deref(), Some("6"));
    let points: Vec<f64> = part.questions.iter().map(|q| q.samples[0].points).collect();
    assert_eq!(points, [3.0, 4.0]);
    assert_eq!(part.generation[0].key, "max_new_tokens");
    assert_eq!(part.generation[1].value, "0.7");
}

#[test]
fn both_forms_of_per_dimension_scores_agree() {
    let list = parse("l.json", DIMS_LIST);
    let keyed = parse("k.json", DIMS_KEYED);
    assert_eq!(list.phase.as_deref(), Some("8"), "\"Phase 8\" is label 8");
    let points = |p: &ImportedPart| p.questions.iter().map(|q| (q.id.clone(), q.samples[0].points)).collect::<Vec<_>>();
    assert_eq!(points(&list), points(&keyed));
    assert_eq!(list.questions[0].samples[0].dimensions.len(), 5);
    assert_eq!(list.training.final_loss, Some(1.2));
}

/// A score file of `score.mode = "judge"`: the record's `d1`… come from the judge (first sample) or
/// the rules (second, where the judge disagreed with itself); the judge's own view and summary sit
/// beside them and must not be read as scores.
const JUDGE_MODE: &str = r#"{"phase": "10", "model": "m", "mode": "judge", "scorer": "judge",
  "overall": {"score_10": 5.0, "samples": 2},
  "judge": {"model": "j", "seeds": [1, 2], "calibration": {"anchors": 9, "passed": true}, "samples": 2,
            "agreed": 1, "discarded": 1, "unreadable": 0, "fallback_to_rules": 1,
            "discards": [{"qid": "Q1", "sample": 1, "dimension": "D4", "first": 0, "second": 2}],
            "agreement_with_rules": {"D1": {"mean_abs_diff": 0.5, "samples": 2}}},
  "scores": [
  {"qid": "Q1", "sample": 0, "source": "judge", "rules_total": 4, "auto_zero": [],
   "d1": {"score": 2, "reason": "judge"}, "d2": {"score": 2}, "d3": {"score": 1}, "d4": {"score": 2}, "d5": {"score": 1},
   "total": 8, "max": 10,
   "judge": {"total": 8, "d1": {"score": 2, "reason": "judge"}, "d2": {"score": 2}, "d3": {"score": 1},
             "d4": {"score": 2}, "d5": {"score": 1}, "discarded": []}},
  {"qid": "Q1", "sample": 1, "source": "rules", "auto_zero": [],
   "d1": {"score": 1, "reason": "rules"}, "d2": {"score": 0}, "d3": {"score": 1}, "d4": {"score": 0}, "d5": {"score": 0},
   "total": 2, "max": 10,
   "judge": {"total": null, "d1": {"score": 0}, "discarded": [{"dimension": "D4", "first": 0, "second": 2}]}}]}"#;

#[test]
fn judge_mode_score_file_imports_the_record_and_ignores_the_judge_fields() {
    let part = parse("score/scores.json", JUDGE_MODE);
    assert_eq!(part.shape, Shape::DimensionScores);
    assert_eq!(part.questions.len(), 1);
    let samples = &part.questions[0].samples;
    assert_eq!(samples.iter().map(|s| s.points).collect::<Vec<_>>(), [8.0, 2.0]);
    let first_dims: Vec<u32> = samples[0].dimensions.iter().map(|d| d.score).collect();
    assert_eq!(first_dims, [2, 2, 1, 2, 1]);
    assert_eq!(samples[0].dimensions[0].reason.as_deref(), Some("judge"));
    assert_eq!(samples[1].dimensions[0].reason.as_deref(), Some("rules"));
}

#[test]
fn training_metrics_keep_unknown_keys_as_ordered_config() {
    let part = parse("training_metrics.json", METRICS);
    let keys: Vec<&str> = part.config.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["model", "dataset", "epochs", "max_length", "lora_r"]);
    assert_eq!(part.training.vram_peak_mib, Some(1925));
    assert_eq!(part.dataset.as_ref().and_then(|d| d.size), Some(97));
    assert_eq!(part.notes, ["a"]);
}

#[test]
fn trainer_state_gives_the_loss_curve() {
    let part = parse("trainer_state.json", TRAINER);
    assert_eq!(part.training.loss_curve.len(), 2);
    assert_eq!(part.training.final_loss, Some(1.5));
    assert_eq!(part.training.duration_secs, Some(90));
}

#[test]
fn responses_carry_triggers_and_truncation() {
    let part = parse("responses.json", RESPONSES);
    assert_eq!(part.responses[0].auto_zero[0].trigger, "<|im_end|>");
    assert!(part.responses[1].truncated);
}

#[test]
fn parts_of_one_phase_merge_into_one_record() {
    let parts = vec![
        parse("scores.json", DIMS_LIST),
        parse("responses.json", RESPONSES),
        parse_file("trainer_state.json", TRAINER, Some("8")).unwrap(),
    ];
    let phase = merge(parts, "persona-v1").unwrap();
    assert_eq!((phase.label.as_str(), phase.ordinal), ("8", 8));
    assert_eq!(phase.training.final_loss, Some(1.2), "the score file's summary beats the trainer log");
    assert_eq!(phase.training.loss_curve.len(), 2);
    let q1 = &phase.eval[0].samples[0];
    assert_eq!(q1.response.as_deref(), Some("Oi<|im_end|>"));
    assert_eq!(q1.points, 3.0, "D4's automatic zero takes its 2 points");
    assert_eq!(phase.generation[0].value, "300");
}

/// Every malformed file is rejected with an error naming the file and the field.
#[test]
fn malformed_files_name_file_and_field() {
    let table: [(&str, &str, &str); 12] = [
        ("{\"scores\": [", "line 1", "failed to parse"),
        ("[1, 2]", "(top level)", "should be an object"),
        ("{\"hello\": 1}", "hello", "unknown shape"),
        (r#"{"phase": 1, "scores": [{"d1": {"score": 1}}]}"#, "scores[0].qid", "missing field"),
        (
            r#"{"phase": 1, "scores": {"Q1": {"score": "high", "max_score": 10}}}"#,
            "scores.Q1.score",
            "should be a number",
        ),
        (r#"{"phase": 1, "scores": {"Q1": {"score": 12, "max_score": 10}}}"#, "scores.Q1.score", "outside 0 to 10"),
        (r#"{"phase": 1, "scores": {"Q1": {"score": 2}}}"#, "scores.Q1.max_score", "missing field"),
        (
            r#"{"phase": 1, "scores": {"Q1": {"score": 2, "max_score": 10}}, "overall": {"total": 3}}"#,
            "overall.total",
            "does not equal",
        ),
        (
            r#"{"phase": 1, "scores": [{"qid": "Q1", "d1": {"score": 1}, "total": 2}]}"#,
            "scores[0].total",
            "does not equal",
        ),
        (r#"{"phase": 1, "scores": [{"qid": "Q1", "d6": {"score": 1}}]}"#, "scores[0].d6", "unknown dimension"),
        (
            r#"{"phase": 1, "scores": [{"qid": "Q1", "d1": {"score": 3}}]}"#,
            "scores[0].d1.score",
            "outside its range 0–2",
        ),
        (r#"{"phase": 1, "results": [{"qid": "Q1"}]}"#, "results[0].response", "missing field"),
    ];
    for (text, field, words) in table {
        let message = parse_file("bad.json", text, None).unwrap_err().to_string();
        assert!(message.contains("bad.json"), "{message}");
        assert!(message.contains(field), "{field}: {message}");
        assert!(message.contains(words), "{words}: {message}");
    }
}

#[test]
fn phase_labels_must_agree() {
    let err = parse_file("r.json", RUBRIC, Some("7")).unwrap_err();
    assert!(
        matches!(&err, ImportError::PhaseMismatch { found, expected, .. } if found == "6" && expected == "7"),
        "{err}"
    );
    let err = merge(vec![parse("r.json", RUBRIC), parse("l.json", DIMS_LIST)], "e").unwrap_err();
    assert!(err.to_string().contains("l.json") && err.to_string().contains("r.json"), "{err}");
    let unlabeled = parse("t.json", TRAINER);
    let err = merge(vec![unlabeled], "e").unwrap_err();
    assert!(matches!(err, ImportError::NoPhase { .. }), "{err}");
}

#[test]
fn conflicting_or_unscored_parts_import_nothing() {
    let other = DIMS_KEYED
        .replace("\"total\": 10", "\"total\": 9")
        .replace("\"d5\": {\"score\": 2}, \"total\": 9", "\"d5\": {\"score\": 1}, \"total\": 9");
    let err = merge(vec![parse("a.json", DIMS_KEYED), parse("b.json", &other)], "e").unwrap_err();
    assert!(matches!(&err, ImportError::Conflict { field, .. } if field == "scores.Q2"), "{err}");
    let extra = RESPONSES.replace("\"qid\": \"Q2\"", "\"qid\": \"Q9\"");
    let err = merge(vec![parse("s.json", DIMS_LIST), parse("resp.json", &extra)], "e").unwrap_err();
    assert!(
        matches!(&err, ImportError::Unscored { field, qid, .. } if field == "results[1].qid" && qid == "Q9"),
        "{err}"
    );
    let err = merge(
        vec![parse("m.json", METRICS), parse("m2.json", &METRICS.replace("\"epochs\": 10", "\"epochs\": 8"))],
        "e",
    )
    .unwrap_err();
    assert!(matches!(&err, ImportError::Conflict { field, .. } if field == "epochs"), "{err}");
}

#[test]
fn unreadable_files_are_named() {
    let err = load_files(&[PathBuf::from("no/such/file.json")], "e", None).unwrap_err();
    assert!(err.to_string().contains("no/such/file.json"), "{err}");
    assert!(matches!(load_files(&[], "e", None), Err(ImportError::NoFiles)));
}

/// A SQL assistant's rubric: three 0–5 dimensions, `correctness` counting double.
fn sql_rubric() -> Rubric {
    use phasegate_rubric::{Dimension, DimensionId};
    let dim = |id: &str, weight: f64| Dimension { weight, ..Dimension::new(DimensionId::new(id).unwrap(), id, 0, 5) };
    Rubric::new("1", vec![dim("correctness", 2.0), dim("executes", 1.0), dim("style", 1.0)]).unwrap()
}

const SQL_SCORES: &str = r#"{"phase": "3", "scores": [
  {"qid": "Q1", "question": "Top customers?", "Correctness": {"score": 4, "reason": "misses ties"},
   "EXECUTES": {"score": 5}, "style": 3, "total": 16},
  {"qid": "Q2", "question": "Monthly revenue?", "correctness": 5, "executes": 5, "style": 5}]}"#;

#[test]
fn per_dimension_files_follow_the_experiments_rubric() {
    let options = ImportOptions { rubric: Some(sql_rubric()), ..ImportOptions::default() };
    let part = parse_file_with("sql.json", SQL_SCORES, &options).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(part.shape, Shape::DimensionScores);
    let q1 = &part.questions[0];
    assert_eq!((q1.min_points, q1.max_points), (0.0, 20.0));
    assert_eq!(q1.samples[0].points, 16.0, "weighted: 2×4 + 5 + 3");
    assert_eq!(q1.samples[0].dimensions[0].dimension, "correctness", "the rubric's spelling is kept");
    assert_eq!(part.instrument, Some(Instrument::Human));
    let phase = merge(vec![part], "sql").unwrap();
    assert_eq!(phase.score(), Some((16.0 + 20.0) / 40.0 * 10.0));
    assert!(phase.rubric().same_scale(&sql_rubric()));
}

#[test]
fn per_dimension_errors_name_file_field_and_range() {
    let options = ImportOptions { rubric: Some(sql_rubric()), ..ImportOptions::default() };
    let table = [
        (
            r#"{"phase": 1, "scores": [{"qid": "Q1", "correctness": 6, "executes": 1}]}"#,
            "scores[0].correctness",
            "outside its range 0–5",
        ),
        (
            r#"{"phase": 1, "scores": [{"qid": "Q1", "correctness": 1, "d2": 1}]}"#,
            "scores[0].d2",
            "the rubric has correctness, executes, style",
        ),
        (
            r#"{"phase": 1, "scores": [{"qid": "Q1", "correctness": 1, "total": 3}]}"#,
            "scores[0].total",
            "does not equal",
        ),
        (r#"{"phase": 1, "scores": [{"qid": "Q1", "quality": 1}]}"#, "scores[0]", "correctness, executes, style"),
    ];
    for (text, field, words) in table {
        let message = parse_file_with("sql.json", text, &options).unwrap_err().to_string();
        assert!(
            message.contains("sql.json") && message.contains(field) && message.contains(words),
            "{field}: {message}"
        );
    }
}

#[test]
fn a_file_carries_its_own_rubric_and_instrument() {
    let rubric = serde_json::to_string(&sql_rubric()).unwrap();
    let text = format!(
        r#"{{"phase": "3", "rubric": {rubric}, "instrument": {{"kind": "rules", "version": "2", "suite_digest": "sha256:ab"}},
            "scores": [{{"qid": "Q1", "correctness": 1, "executes": 2, "style": 3}}]}}"#
    );
    let part = parse_file("scores.json", &text, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(part.questions[0].max_points, 20.0);
    assert_eq!(part.instrument, Some(Instrument::Rules { version: "2".into(), suite_digest: "sha256:ab".into() }));
    let other = ImportOptions { scorer: Some(InstrumentKind::Human), ..ImportOptions::default() };
    let message = parse_file_with("scores.json", &text, &other).unwrap_err().to_string();
    assert!(message.contains("`instrument`") && message.contains("--scorer says human"), "{message}");
}

#[test]
fn scorer_sets_the_instrument_of_files_that_do_not_record_it() {
    assert_eq!(parse("r.json", RUBRIC).instrument, Some(Instrument::Imported));
    assert_eq!(parse("l.json", DIMS_LIST).instrument, Some(Instrument::Human));
    let human = ImportOptions { scorer: Some(InstrumentKind::Human), ..ImportOptions::default() };
    let part = parse_file_with("r.json", RUBRIC, &human).unwrap();
    assert_eq!(part.instrument, Some(Instrument::Human));
    assert_eq!(parse("t.json", TRAINER).instrument, None);
}

fn dims_entry(qid: &str, sample: Option<u64>) -> String {
    let sample = sample.map(|s| format!(r#""sample": {s}, "#)).unwrap_or_default();
    format!(r#"{{"qid": "{qid}", {sample}"d1": 1, "d2": 1, "d3": 1, "d4": 1, "d5": 1}}"#)
}

#[test]
fn repeated_samples_of_a_question_are_samples_but_a_repeated_sample_is_an_error() {
    let file = |entries: &[String]| format!(r#"{{"phase": 8, "scores": [{}]}}"#, entries.join(","));
    let samples = file(&[dims_entry("Q1", Some(0)), dims_entry("Q1", Some(1)), dims_entry("Q2", Some(0))]);
    let part = parse("k.json", &samples);
    assert_eq!(part.questions.len(), 2);
    assert_eq!(part.questions[0].samples.len(), 2);
    // Without sample numbers, list entries of one question are its samples in order.
    assert_eq!(parse("k.json", &file(&[dims_entry("Q1", None), dims_entry("Q1", None)])).questions[0].samples.len(), 2);

    let twice = file(&[dims_entry("Q1", Some(0)), dims_entry("Q2", Some(0)), dims_entry("Q1", Some(0))]);
    let err = parse_file("dup.json", &twice, None).unwrap_err().to_string();
    assert!(err.contains("dup.json") && err.contains("scores[2].sample"), "{err}");
    assert!(err.contains("duplicate sample 0 of question Q1"), "{err}");

    let keyed = r#"{"phase": 6, "scores": {"Q1": {"score": 3, "max_score": 10}, "Q1": {"score": 4, "max_score": 10}}}"#;
    let err = parse_file("keyed.json", keyed, None).unwrap_err().to_string();
    assert!(
        err.contains("keyed.json") && err.contains("`scores.Q1`") && err.contains("duplicate question id Q1"),
        "{err}"
    );
}

#[test]
fn a_large_import_keeps_every_question() {
    let n = 100_000;
    let entries: Vec<String> = (0..n).map(|i| format!(r#""Q{i}": {{"score": 1, "max_score": 2}}"#)).collect();
    let text = format!(r#"{{"phase": 6, "scores": {{{}}}}}"#, entries.join(","));
    let phase = merge(vec![parse("big.json", &text)], "persona").unwrap();
    assert_eq!(phase.eval.len(), n);
    assert!(phase.eval.iter().all(|q| q.samples.len() == 1));
}

/// A score stage's file in pairwise mode: the rule scores, and the judge's preferences against
/// phase 9 (Q2 had no readable pair).
const PAIRWISE: &str = r#"{"phase": 10, "mode": "pairwise", "scores": [
  {"qid": "Q1", "d1": {"score": 1}, "d2": {"score": 1}, "d3": {"score": 1}, "d4": {"score": 1}, "d5": {"score": 1}},
  {"qid": "Q2", "d1": {"score": 2}, "d2": {"score": 2}, "d3": {"score": 2}, "d4": {"score": 2}, "d5": {"score": 2}}],
  "pairwise": {"model": "judge-7b", "endpoint": "http://127.0.0.1:8080/v1", "baseline": {"phase": "9", "model": "m"},
    "preference": -0.5, "p_value": 1.0, "test": "sign_flip",
    "questions": [{"qid": "Q1", "preference": -0.5, "pairs": 2, "order_disagreements": 1, "unreadable": []},
                  {"qid": "Q2", "preference": null, "pairs": 2, "order_disagreements": 0, "unreadable": []}]}}"#;

#[test]
fn a_pairwise_score_file_carries_the_judges_preferences() {
    let phase = merge(vec![parse("scores.json", PAIRWISE)], "persona-v1").unwrap();
    let prefs = phase.pairwise.expect("pairwise preferences");
    assert_eq!(prefs.baseline, "9");
    assert_eq!(prefs.judge, "judge-7b at http://127.0.0.1:8080/v1");
    let got: Vec<(&str, Option<f64>, u64)> =
        prefs.questions.iter().map(|q| (q.qid.as_str(), q.preference, q.pairs)).collect();
    assert_eq!(got, [("Q1", Some(-0.5), 2), ("Q2", None, 2)]);
    assert_eq!(phase.eval.len(), 2, "the rule scores stay the record");
}

#[test]
fn bad_pairwise_objects_name_file_and_field() {
    let table = [
        (
            r#""qid": "Q1", "preference": -0.5"#,
            r#""qid": "Q1", "preference": -1.5"#,
            "pairwise.questions[0].preference",
            "outside −1 to 1",
        ),
        (r#""baseline": {"phase": "9", "model": "m"}"#, r#""baseline": {}"#, "pairwise.baseline.phase", "missing"),
        (
            r#"{"qid": "Q2", "preference""#,
            r#"{"qid": "Q1", "preference""#,
            "pairwise.questions[1]",
            "duplicate question id Q1",
        ),
    ];
    for (from, to, field, words) in table {
        let text = PAIRWISE.replacen(from, to, 1);
        let message = parse_file("scores.json", &text, None).unwrap_err().to_string();
        assert!(message.contains("scores.json") && message.contains(field), "{field}: {message}");
        assert!(message.contains(words), "{words}: {message}");
    }
}
