//! Training metrics: pure parsers for the three sources a fine-tune job can report through, and the
//! merge of them into one [`JobMetrics`].
//!
//! Sources:
//! - `PHASEGATE_METRIC {json}` lines on the job's stdout ([`parse_metric_line`]);
//! - HF Trainer `trainer_state.json` files ([`parse_trainer_state`]);
//! - a `training_metrics.json` summary written by the training script ([`parse_summary`]).
//!
//! Nothing here does I/O: callers read the files and pass their text with the path used in messages.
//! Python's `json` module writes `NaN` and `Infinity` for non-finite floats (a diverged loss); those are
//! read as missing values rather than failing the whole file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The prefix that marks a metric line on stdout (with its trailing space).
pub const METRIC_LINE_PREFIX: &str = "PHASEGATE_METRIC ";

/// One `PHASEGATE_METRIC` line: the step, every finite numeric value, and everything else as JSON.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MetricPoint {
    pub step: Option<u64>,
    pub values: BTreeMap<String, f64>,
    /// Non-numeric fields (strings, booleans, lists, objects), kept as given.
    pub extra: Map<String, Value>,
}

/// One point of a loss curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossPoint {
    pub step: u64,
    pub epoch: Option<f64>,
    pub loss: f64,
}

/// One entry of a trainer state's `log_history`. Training entries carry `loss`; eval entries carry
/// `eval_loss`; the closing entry carries `train_loss` (a run average, not the final loss).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LogEntry {
    pub step: Option<u64>,
    pub epoch: Option<f64>,
    pub loss: Option<f64>,
    pub eval_loss: Option<f64>,
    pub learning_rate: Option<f64>,
    pub grad_norm: Option<f64>,
    /// Every other finite numeric field (`eval_runtime`, `train_loss`, `mean_token_accuracy`, ...).
    pub other: BTreeMap<String, f64>,
}

/// The parts of an HF Trainer `trainer_state.json` that phasegate uses.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TrainerState {
    pub global_step: Option<u64>,
    pub epoch: Option<f64>,
    pub best_metric: Option<f64>,
    pub best_model_checkpoint: Option<String>,
    pub log_history: Vec<LogEntry>,
}

/// A `training_metrics.json` summary. `fields` holds every key of the file, known or not; the typed
/// fields are the ones the merge uses, already checked.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TrainingSummary {
    pub final_loss: Option<f64>,
    pub vram_peak_gb: Option<f64>,
    pub fixes: Vec<String>,
    pub fields: Map<String, Value>,
}

/// Everything phasegate stores about a job's training metrics.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct JobMetrics {
    pub final_loss: Option<f64>,
    pub loss_curve: Vec<LossPoint>,
    pub eval_loss_curve: Vec<LossPoint>,
    pub vram_peak_mib: Option<u64>,
    /// The summary files' keys; a later file overrides an earlier one key by key.
    pub summary: Map<String, Value>,
}

/// A metrics file, parsed according to what it is.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricsFile {
    TrainerState(TrainerState),
    Summary(TrainingSummary),
}

/// Why a metric line or a metrics file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("failed to parse metric line as JSON: {source}")]
    LineJson {
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to parse metric line: expected a JSON object, got {found}")]
    LineNotObject { found: &'static str },
    #[error("failed to parse metric line: field `{field}` {reason}")]
    LineField { field: String, reason: String },
    #[error("failed to parse {path} as JSON: {source}")]
    FileJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to read {path}: field `{field}` {reason}")]
    FileField { path: PathBuf, field: String, reason: String },
}

/// Parses one stdout line. `Ok(None)` when the line is not a metric line at all.
pub fn parse_metric_line(line: &str) -> Result<Option<MetricPoint>, MetricsError> {
    let Some(body) = line.strip_prefix(METRIC_LINE_PREFIX) else {
        return Ok(None);
    };
    let value: Value =
        serde_json::from_str(&sanitize_non_finite(body)).map_err(|source| MetricsError::LineJson { source })?;
    let Value::Object(object) = value else {
        return Err(MetricsError::LineNotObject { found: json_kind(&value) });
    };
    let mut point = MetricPoint::default();
    for (key, value) in object {
        match (key.as_str(), value) {
            ("step", v) => {
                point.step = as_step(&v).map_err(|reason| MetricsError::LineField { field: "step".into(), reason })?;
            }
            (_, Value::Number(n)) => {
                if let Some(x) = n.as_f64().filter(|x| x.is_finite()) {
                    point.values.insert(key, x);
                }
            }
            (_, Value::Null) => {}
            (_, other) => {
                point.extra.insert(key, other);
            }
        }
    }
    Ok(Some(point))
}

/// Parses the text of a `trainer_state.json`.
pub fn parse_trainer_state(path: &Path, text: &str) -> Result<TrainerState, MetricsError> {
    let object = parse_object(path, text)?;
    let field_err = |field: String, reason: String| MetricsError::FileField { path: path.to_path_buf(), field, reason };
    let history = match object.get("log_history") {
        Some(Value::Array(items)) => items.as_slice(),
        Some(other) => {
            let reason = format!("must be a list, got {}", json_kind(other));
            return Err(field_err("log_history".into(), reason));
        }
        None => return Err(field_err("log_history".into(), "is missing".into())),
    };
    let mut state = TrainerState {
        global_step: as_step(object.get("global_step").unwrap_or(&Value::Null))
            .map_err(|r| field_err("global_step".into(), r))?,
        epoch: as_number(&object, "epoch").map_err(|r| field_err("epoch".into(), r))?,
        best_metric: as_number(&object, "best_metric").map_err(|r| field_err("best_metric".into(), r))?,
        best_model_checkpoint: object.get("best_model_checkpoint").and_then(Value::as_str).map(str::to_owned),
        log_history: Vec::with_capacity(history.len()),
    };
    for (i, item) in history.iter().enumerate() {
        let entry = parse_log_entry(item).map_err(|(field, reason)| {
            let field =
                if field.is_empty() { format!("log_history[{i}]") } else { format!("log_history[{i}].{field}") };
            field_err(field, reason)
        })?;
        state.log_history.push(entry);
    }
    Ok(state)
}

/// Parses one `log_history` item; the error names the field (empty for the item itself).
fn parse_log_entry(item: &Value) -> Result<LogEntry, (String, String)> {
    let Value::Object(object) = item else {
        return Err((String::new(), format!("must be an object, got {}", json_kind(item))));
    };
    let mut entry = LogEntry {
        step: as_step(object.get("step").unwrap_or(&Value::Null)).map_err(|r| ("step".to_owned(), r))?,
        ..LogEntry::default()
    };
    for (key, value) in object {
        if key == "step" {
            continue;
        }
        let number = as_number(object, key).map_err(|r| (key.clone(), r));
        let slot = match key.as_str() {
            "epoch" => &mut entry.epoch,
            "loss" => &mut entry.loss,
            "eval_loss" => &mut entry.eval_loss,
            "learning_rate" => &mut entry.learning_rate,
            "grad_norm" => &mut entry.grad_norm,
            _ => {
                // Unknown non-numeric fields (e.g. a string) are of no use for curves.
                if let Some(x) = value.as_f64().filter(|x| x.is_finite()) {
                    entry.other.insert(key.clone(), x);
                }
                continue;
            }
        };
        *slot = number?;
    }
    Ok(entry)
}

/// Parses the text of a `training_metrics.json` summary.
pub fn parse_summary(path: &Path, text: &str) -> Result<TrainingSummary, MetricsError> {
    const NUMERIC: [&str; 10] = [
        "num_examples",
        "epochs",
        "learning_rate",
        "lora_r",
        "lora_alpha",
        "batch_size",
        "gradient_accumulation_steps",
        "max_length",
        "final_loss",
        "vram_peak_gb",
    ];
    let object = parse_object(path, text)?;
    let field_err = |field: &str, reason: String| MetricsError::FileField {
        path: path.to_path_buf(),
        field: field.to_owned(),
        reason,
    };
    for key in NUMERIC {
        as_number(&object, key).map_err(|r| field_err(key, r))?;
    }
    for key in ["model", "dataset"] {
        match object.get(key) {
            None | Some(Value::Null | Value::String(_)) => {}
            Some(other) => {
                let reason = format!("must be a string, got {}", json_kind(other));
                return Err(field_err(key, reason));
            }
        }
    }
    match object.get("phase") {
        None | Some(Value::Null | Value::String(_) | Value::Number(_)) => {}
        Some(other) => {
            let reason = format!("must be a string or a number, got {}", json_kind(other));
            return Err(field_err("phase", reason));
        }
    }
    Ok(TrainingSummary {
        final_loss: as_number(&object, "final_loss").map_err(|r| field_err("final_loss", r))?,
        vram_peak_gb: as_number(&object, "vram_peak_gb").map_err(|r| field_err("vram_peak_gb", r))?,
        fixes: parse_fixes(&object).map_err(|r| field_err("fixes", r))?,
        fields: object,
    })
}

fn parse_fixes(object: &Map<String, Value>) -> Result<Vec<String>, String> {
    match object.get("fixes") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!("must be a list of strings, item {i} is {}", json_kind(other))),
            })
            .collect(),
        Some(other) => Err(format!("must be a list of strings, got {}", json_kind(other))),
    }
}

/// Parses a metrics file found by the spec's globs. A file named `trainer_state.json`, or any file
/// with a top-level `log_history`, is a trainer state; every other file is a summary.
pub fn parse_metrics_file(path: &Path, text: &str) -> Result<MetricsFile, MetricsError> {
    let named_state = path.file_name().is_some_and(|n| n == "trainer_state.json");
    let has_history = parse_object(path, text)?.contains_key("log_history");
    if named_state || has_history {
        parse_trainer_state(path, text).map(MetricsFile::TrainerState)
    } else {
        parse_summary(path, text).map(MetricsFile::Summary)
    }
}

/// Everything collected for one job, in the order it arrived, ready to [`MetricSources::merge`].
#[derive(Debug, Clone, Default)]
pub struct MetricSources {
    pub metric_lines: Vec<MetricPoint>,
    pub trainer_states: Vec<TrainerState>,
    pub summaries: Vec<TrainingSummary>,
    /// The peak VRAM the agent itself measured for the job's processes.
    pub measured_vram_peak_mib: Option<u64>,
}

impl MetricSources {
    /// Adds a parsed metrics file.
    pub fn add_file(&mut self, file: MetricsFile) {
        match file {
            MetricsFile::TrainerState(state) => self.trainer_states.push(state),
            MetricsFile::Summary(summary) => self.summaries.push(summary),
        }
    }

    /// Merges the sources. Precedence, documented because reports depend on it:
    /// - loss curves: the trainer states when any has a point (several files, e.g. checkpoints, are
    ///   combined by step, the state with the highest `global_step` winning a tie); otherwise the
    ///   metric lines that carry a `step` and a `loss` / `eval_loss`;
    /// - final loss: the last summary's `final_loss`, else the loss of the last trainer-state point,
    ///   else the `loss` of the last metric line that has one;
    /// - VRAM peak: the largest of the measured peak, summaries' `vram_peak_gb` (read as GiB) and metric
    ///   lines' `vram_peak_mib`;
    /// - summary: all summaries' keys, a later file overriding an earlier one.
    pub fn merge(&self) -> JobMetrics {
        let mut states: Vec<&TrainerState> = self.trainer_states.iter().collect();
        states.sort_by_key(|s| s.global_step.unwrap_or(0));
        let (mut loss_curve, mut eval_loss_curve) = curves_from_states(&states);
        let state_final = loss_curve.last().map(|p| p.loss);
        if loss_curve.is_empty() && eval_loss_curve.is_empty() {
            (loss_curve, eval_loss_curve) = curves_from_lines(&self.metric_lines);
        }
        let line_final = self.metric_lines.iter().rev().find_map(|p| p.values.get("loss").copied());
        let summary_final = self.summaries.iter().rev().find_map(|s| s.final_loss);
        let mut summary = Map::new();
        for s in &self.summaries {
            summary.extend(s.fields.clone());
        }
        JobMetrics {
            final_loss: summary_final.or(state_final).or(line_final),
            loss_curve,
            eval_loss_curve,
            vram_peak_mib: self.vram_peak_mib(),
            summary,
        }
    }

    fn vram_peak_mib(&self) -> Option<u64> {
        let from_summaries =
            self.summaries.iter().filter_map(|s| s.vram_peak_gb).filter(|gb| *gb >= 0.0).map(gib_to_mib);
        let from_lines = self
            .metric_lines
            .iter()
            .filter_map(|p| p.values.get("vram_peak_mib").copied())
            .filter(|mib| *mib >= 0.0)
            .map(|mib| mib.ceil() as u64);
        self.measured_vram_peak_mib.into_iter().chain(from_summaries).chain(from_lines).max()
    }
}

/// Callers pass a finite, non-negative value; `as` saturates anyway.
fn gib_to_mib(gib: f64) -> u64 {
    (gib * 1024.0).ceil() as u64
}

/// Curves from trainer states sorted by `global_step`: keyed by step, so a later (longer) state's
/// point replaces an earlier checkpoint's point for the same step.
fn curves_from_states(states: &[&TrainerState]) -> (Vec<LossPoint>, Vec<LossPoint>) {
    let mut train = BTreeMap::new();
    let mut eval = BTreeMap::new();
    for entry in states.iter().flat_map(|s| &s.log_history) {
        let Some(step) = entry.step else { continue };
        if let Some(loss) = entry.loss {
            train.insert(step, LossPoint { step, epoch: entry.epoch, loss });
        }
        if let Some(loss) = entry.eval_loss {
            eval.insert(step, LossPoint { step, epoch: entry.epoch, loss });
        }
    }
    (train.into_values().collect(), eval.into_values().collect())
}

fn curves_from_lines(lines: &[MetricPoint]) -> (Vec<LossPoint>, Vec<LossPoint>) {
    let mut train = BTreeMap::new();
    let mut eval = BTreeMap::new();
    for point in lines {
        let Some(step) = point.step else { continue };
        let epoch = point.values.get("epoch").copied();
        if let Some(&loss) = point.values.get("loss") {
            train.insert(step, LossPoint { step, epoch, loss });
        }
        if let Some(&loss) = point.values.get("eval_loss") {
            eval.insert(step, LossPoint { step, epoch, loss });
        }
    }
    (train.into_values().collect(), eval.into_values().collect())
}

fn parse_object(path: &Path, text: &str) -> Result<Map<String, Value>, MetricsError> {
    let value: Value = serde_json::from_str(&sanitize_non_finite(text))
        .map_err(|source| MetricsError::FileJson { path: path.to_path_buf(), source })?;
    match value {
        Value::Object(object) => Ok(object),
        other => Err(MetricsError::FileField {
            path: path.to_path_buf(),
            field: "(top level)".into(),
            reason: format!("must be a JSON object, got {}", json_kind(&other)),
        }),
    }
}

/// A step: a non-negative integer (an integral float such as `10.0` is accepted), or absent.
fn as_step(value: &Value) -> Result<Option<u64>, String> {
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => {
            if let Some(step) = n.as_u64() {
                return Ok(Some(step));
            }
            match n.as_f64() {
                Some(x) if x >= 0.0 && x.fract() == 0.0 && x < 1e15 => Ok(Some(x as u64)),
                _ => Err(format!("must be a non-negative integer, got {n}")),
            }
        }
        other => Err(format!("must be a non-negative integer, got {}", json_kind(other))),
    }
}

/// A finite number under `key`; absent, `null` and non-finite values (written as `null` by
/// [`sanitize_non_finite`]) are `None`.
fn as_number(object: &Map<String, Value>, key: &str) -> Result<Option<f64>, String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64().filter(|x| x.is_finite())),
        Some(other) => Err(format!("must be a number, got {}", json_kind(other))),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Replaces the bare tokens `NaN`, `Infinity` and `-Infinity` that Python's `json` writes (outside
/// strings) with `null`, so a diverged run's files still parse.
fn sanitize_non_finite(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("NaN") && !text.contains("Infinity") {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            in_string = c != '"' || escaped;
            escaped = c == '\\' && !escaped;
        } else if c == '"' {
            in_string = true;
        } else if let Some(token) = ["-Infinity", "Infinity", "NaN"].into_iter().find(|t| rest.starts_with(t)) {
            out.push_str("null");
            rest = &rest[token.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
