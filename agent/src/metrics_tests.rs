use super::*;

/// A trimmed `trainer_state.json` as HF Trainer 4.4x writes it, including a diverged `grad_norm`.
const TRAINER_STATE: &str = r#"{
  "best_metric": 1.0312,
  "best_model_checkpoint": "output/checkpoint-20",
  "epoch": 2.0,
  "eval_steps": 10,
  "global_step": 20,
  "is_hyper_param_search": false,
  "log_history": [
    {"epoch": 0.5, "grad_norm": 1.91, "learning_rate": 0.0002, "loss": 2.381, "step": 5},
    {"epoch": 1.0, "grad_norm": NaN, "learning_rate": 0.00015, "loss": 1.742, "step": 10},
    {"epoch": 1.0, "eval_loss": 1.402, "eval_runtime": 3.1, "eval_samples_per_second": 25.5, "step": 10},
    {"epoch": 1.5, "grad_norm": 0.88, "learning_rate": 0.0001, "loss": 1.204, "step": 15},
    {"epoch": 2.0, "grad_norm": 0.71, "learning_rate": 5e-05, "loss": 0.917, "step": 20},
    {"epoch": 2.0, "eval_loss": 1.0312, "eval_runtime": 3.0, "step": 20},
    {"epoch": 2.0, "step": 20, "total_flos": 1.2e15, "train_loss": 1.56, "train_runtime": 301.2}
  ],
  "logging_steps": 5,
  "max_steps": 20,
  "trial_name": null
}"#;

const SUMMARY: &str = r#"{
  "model": "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
  "dataset": "persona_v7.jsonl",
  "num_examples": 97,
  "epochs": 8,
  "learning_rate": 0.0002,
  "lora_r": 16,
  "lora_alpha": 32,
  "batch_size": 1,
  "gradient_accumulation_steps": 4,
  "max_length": 512,
  "final_loss": 0.917,
  "vram_peak_gb": 3.2,
  "phase": "7",
  "fixes": ["chat template", "system prompt"],
  "optimizer": "paged_adamw_8bit"
}"#;

fn path(name: &str) -> PathBuf {
    PathBuf::from(name)
}

#[test]
fn metric_line_splits_step_numbers_and_extra() {
    let line = r#"PHASEGATE_METRIC {"step": 10, "loss": 2.38, "lr": 1e-4, "stage": "train", "ok": true}"#;
    let point = parse_metric_line(line).unwrap().unwrap();
    assert_eq!(point.step, Some(10));
    assert_eq!(point.values.get("loss"), Some(&2.38));
    assert_eq!(point.values.get("lr"), Some(&1e-4));
    assert_eq!(point.extra.get("stage"), Some(&Value::from("train")));
    assert_eq!(point.extra.get("ok"), Some(&Value::Bool(true)));
}

#[test]
fn non_metric_lines_are_none() {
    assert!(parse_metric_line("step 10 loss 2.38").unwrap().is_none());
    assert!(parse_metric_line("PHASEGATE_METRIC{}").unwrap().is_none());
}

#[test]
fn malformed_metric_lines_are_errors() {
    let err = parse_metric_line("PHASEGATE_METRIC {\"step\": 1,").unwrap_err();
    assert!(matches!(err, MetricsError::LineJson { .. }), "{err}");
    let err = parse_metric_line("PHASEGATE_METRIC [1, 2]").unwrap_err();
    assert_eq!(err.to_string(), "failed to parse metric line: expected a JSON object, got a list");
    let err = parse_metric_line(r#"PHASEGATE_METRIC {"step": -3}"#).unwrap_err();
    assert_eq!(err.to_string(), "failed to parse metric line: field `step` must be a non-negative integer, got -3");
}

#[test]
fn metric_line_nan_loss_is_dropped() {
    let point = parse_metric_line(r#"PHASEGATE_METRIC {"step": 3, "loss": NaN, "note": "NaN here"}"#).unwrap().unwrap();
    assert_eq!(point.values.get("loss"), None);
    assert_eq!(point.extra.get("note"), Some(&Value::from("NaN here")));
}

#[test]
fn trainer_state_parses_log_history() {
    let state = parse_trainer_state(&path("trainer_state.json"), TRAINER_STATE).unwrap();
    assert_eq!(state.global_step, Some(20));
    assert_eq!(state.best_metric, Some(1.0312));
    assert_eq!(state.best_model_checkpoint.as_deref(), Some("output/checkpoint-20"));
    assert_eq!(state.log_history.len(), 7);
    let second = &state.log_history[1];
    assert_eq!((second.step, second.loss, second.grad_norm), (Some(10), Some(1.742), None));
    let eval = &state.log_history[2];
    assert_eq!(eval.eval_loss, Some(1.402));
    assert_eq!(eval.other.get("eval_runtime"), Some(&3.1));
    assert_eq!(state.log_history[6].other.get("train_loss"), Some(&1.56));
}

#[test]
fn trainer_state_errors_name_file_and_field() {
    let p = path("output/trainer_state.json");
    let err = parse_trainer_state(&p, r#"{"global_step": 3}"#).unwrap_err();
    assert_eq!(err.to_string(), "failed to read output/trainer_state.json: field `log_history` is missing");
    let bad_loss = r#"{"log_history": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": "low"}]}"#;
    let err = parse_trainer_state(&p, bad_loss).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to read output/trainer_state.json: field `log_history[1].loss` must be a number, got a string"
    );
    let err = parse_trainer_state(&p, r#"{"log_history": [3]}"#).unwrap_err();
    assert!(err.to_string().contains("`log_history[0]` must be an object"), "{err}");
    let err = parse_trainer_state(&p, "{\"log_history\": [").unwrap_err();
    assert!(err.to_string().starts_with("failed to parse output/trainer_state.json as JSON"), "{err}");
}

#[test]
fn summary_keeps_unknown_keys_and_checks_known_ones() {
    let summary = parse_summary(&path("training_metrics.json"), SUMMARY).unwrap();
    assert_eq!(summary.final_loss, Some(0.917));
    assert_eq!(summary.vram_peak_gb, Some(3.2));
    assert_eq!(summary.fixes, ["chat template", "system prompt"]);
    assert_eq!(summary.fields.get("optimizer"), Some(&Value::from("paged_adamw_8bit")));
    assert_eq!(summary.fields.get("lora_r"), Some(&Value::from(16)));

    let p = path("out/training_metrics.json");
    let err = parse_summary(&p, r#"{"final_loss": "0.9"}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to read out/training_metrics.json: field `final_loss` must be a number, got a string"
    );
    let err = parse_summary(&p, r#"{"fixes": ["a", 2]}"#).unwrap_err();
    assert!(err.to_string().contains("`fixes` must be a list of strings, item 1 is a number"));
    let err = parse_summary(&p, "[]").unwrap_err();
    assert!(err.to_string().contains("must be a JSON object, got a list"), "{err}");
}

#[test]
fn metrics_file_is_classified_by_name_or_content() {
    let state = parse_metrics_file(&path("a/trainer_state.json"), TRAINER_STATE).unwrap();
    assert!(matches!(state, MetricsFile::TrainerState(_)));
    let renamed = parse_metrics_file(&path("a/state-copy.json"), TRAINER_STATE).unwrap();
    assert!(matches!(renamed, MetricsFile::TrainerState(_)));
    let summary = parse_metrics_file(&path("a/training_metrics.json"), SUMMARY).unwrap();
    assert!(matches!(summary, MetricsFile::Summary(_)));
}

fn line(step: u64, loss: f64) -> MetricPoint {
    parse_metric_line(&format!("PHASEGATE_METRIC {{\"step\": {step}, \"loss\": {loss}}}")).unwrap().unwrap()
}

#[test]
fn merge_prefers_summary_then_trainer_state_then_lines() {
    let state = parse_trainer_state(&path("s.json"), TRAINER_STATE).unwrap();
    let mut summary = parse_summary(&path("m.json"), SUMMARY).unwrap();
    summary.final_loss = Some(0.5);
    let mut sources = MetricSources { metric_lines: vec![line(1, 3.0), line(2, 2.5)], ..MetricSources::default() };
    assert_eq!(sources.merge().final_loss, Some(2.5));
    sources.trainer_states.push(state);
    assert_eq!(sources.merge().final_loss, Some(0.917));
    sources.summaries.push(summary);
    assert_eq!(sources.merge().final_loss, Some(0.5));
}

#[test]
fn merge_uses_trainer_state_curves_over_lines() {
    let state = parse_trainer_state(&path("s.json"), TRAINER_STATE).unwrap();
    let sources =
        MetricSources { metric_lines: vec![line(1, 3.0)], trainer_states: vec![state], ..MetricSources::default() };
    let merged = sources.merge();
    let steps: Vec<u64> = merged.loss_curve.iter().map(|p| p.step).collect();
    assert_eq!(steps, [5, 10, 15, 20]);
    assert_eq!(merged.loss_curve[0].epoch, Some(0.5));
    let eval: Vec<(u64, f64)> = merged.eval_loss_curve.iter().map(|p| (p.step, p.loss)).collect();
    assert_eq!(eval, [(10, 1.402), (20, 1.0312)]);
}

#[test]
fn merge_combines_checkpoints_by_step() {
    let early = r#"{"global_step": 10, "log_history": [
        {"step": 5, "loss": 2.0}, {"step": 10, "loss": 1.9}]}"#;
    let late = r#"{"global_step": 20, "log_history": [
        {"step": 5, "loss": 2.0}, {"step": 10, "loss": 1.8}, {"step": 20, "loss": 1.1}]}"#;
    let sources = MetricSources {
        // Arrival order must not matter: the state with the larger global_step wins.
        trainer_states: vec![
            parse_trainer_state(&path("late.json"), late).unwrap(),
            parse_trainer_state(&path("early.json"), early).unwrap(),
        ],
        ..MetricSources::default()
    };
    let merged = sources.merge();
    let curve: Vec<(u64, f64)> = merged.loss_curve.iter().map(|p| (p.step, p.loss)).collect();
    assert_eq!(curve, [(5, 2.0), (10, 1.8), (20, 1.1)]);
    assert_eq!(merged.final_loss, Some(1.1));
}

#[test]
fn merge_falls_back_to_line_curve() {
    let sources = MetricSources { metric_lines: vec![line(2, 2.5), line(1, 3.0)], ..MetricSources::default() };
    let merged = sources.merge();
    let steps: Vec<u64> = merged.loss_curve.iter().map(|p| p.step).collect();
    assert_eq!(steps, [1, 2]);
    // The last line received, not the highest step, gives the final loss.
    assert_eq!(merged.final_loss, Some(3.0));
}

#[test]
fn merge_vram_peak_is_max_of_measured_and_reported() {
    let summary = parse_summary(&path("m.json"), SUMMARY).unwrap();
    let mut sources =
        MetricSources { summaries: vec![summary], measured_vram_peak_mib: Some(3000), ..MetricSources::default() };
    // 3.2 GiB = 3276.8 MiB, rounded up.
    assert_eq!(sources.merge().vram_peak_mib, Some(3277));
    sources.measured_vram_peak_mib = Some(4000);
    assert_eq!(sources.merge().vram_peak_mib, Some(4000));
    assert_eq!(MetricSources::default().merge().vram_peak_mib, None);
}

#[test]
fn merge_summary_later_file_overrides() {
    let a = parse_summary(&path("a.json"), r#"{"phase": "7", "lora_r": 8}"#).unwrap();
    let b = parse_summary(&path("b.json"), r#"{"phase": "8"}"#).unwrap();
    let sources = MetricSources { summaries: vec![a, b], ..MetricSources::default() };
    let merged = sources.merge();
    assert_eq!(merged.summary.get("phase"), Some(&Value::from("8")));
    assert_eq!(merged.summary.get("lora_r"), Some(&Value::from(8)));
}

#[test]
fn job_metrics_serialises() {
    let sources = MetricSources { metric_lines: vec![line(1, 3.0)], ..MetricSources::default() };
    let json = serde_json::to_value(sources.merge()).unwrap();
    assert_eq!(json["final_loss"], Value::from(3.0));
    assert_eq!(json["loss_curve"][0]["step"], Value::from(1));
    let back: JobMetrics = serde_json::from_value(json).unwrap();
    assert_eq!(back, sources.merge());
}

#[test]
fn sanitize_leaves_strings_alone() {
    let text = r#"{"a": NaN, "b": "NaN \" Infinity", "c": -Infinity, "d": Infinity}"#;
    assert_eq!(sanitize_non_finite(text), r#"{"a": null, "b": "NaN \" Infinity", "c": null, "d": null}"#);
}
