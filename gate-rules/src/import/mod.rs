//! Import of the JSON shapes users already have: pure parsers from text plus a file name (used in
//! every error, with the field), and a thin loader that reads files and merges the parts of one
//! phase into one [`Phase`]. An import is all or nothing: any error and no phase is returned.
//!
//! Shapes are detected from their keys: `log_history` → HF `trainer_state.json`; `results` → eval
//! responses; `scores` whose entries carry `score` → rubric score file; `scores` whose entries carry
//! `d1`… (as a list with `qid` or an object keyed by question id) → per-dimension score file;
//! training summary keys (`final_loss`, `epochs`, ...) → `training_metrics.json`.
//! Any shape may also carry an `environment` object (GPU, driver, CUDA, libraries, dtype), which
//! becomes the phase's environment fingerprint.

mod error;
mod json;
mod merge;
mod responses;
mod scores;
mod shape;
mod training;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use error::ImportError;
pub use merge::merge;

use crate::phase::{ConfigEntry, DatasetInfo, Phase, QuestionEval, TrainingMetrics};
use crate::rubric::AutoZeroHit;

/// Which JSON shape a file had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    TrainingMetrics,
    RubricScores,
    DimensionScores,
    EvalResponses,
    TrainerState,
}

/// What one file contributes to a phase.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedPart {
    pub file: String,
    pub shape: Shape,
    /// Phase label from the file, or the override.
    pub phase: Option<String>,
    pub questions: Vec<QuestionEval>,
    pub responses: Vec<ImportedResponse>,
    pub training: TrainingMetrics,
    pub config: Vec<ConfigEntry>,
    pub generation: Vec<ConfigEntry>,
    pub dataset: Option<DatasetInfo>,
    pub environment: Vec<ConfigEntry>,
    pub notes: Vec<String>,
}

/// One generated response from an eval responses file.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedResponse {
    pub qid: String,
    pub question: Option<String>,
    pub response: String,
    pub seed: Option<u64>,
    pub truncated: bool,
    pub auto_zero: Vec<AutoZeroHit>,
    /// Field path of the entry, for errors found while merging.
    pub field: String,
}

impl ImportedPart {
    fn new(file: &str, shape: Shape, phase: Option<String>) -> ImportedPart {
        ImportedPart {
            file: file.to_owned(),
            shape,
            phase,
            questions: Vec::new(),
            responses: Vec::new(),
            training: TrainingMetrics::default(),
            config: Vec::new(),
            generation: Vec::new(),
            dataset: None,
            environment: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// Parses one file's text; `name` names the file in errors. `phase_override` supplies the label
/// when the file has none, and must agree with the file's label when it has one.
pub fn parse_file(name: &str, text: &str, phase_override: Option<&str>) -> Result<ImportedPart, ImportError> {
    let root = json::parse(name, text)?;
    shape::parse(name, &root, phase_override)
}

/// Reads and parses `paths`, then merges them into one phase of `experiment` (not yet accepted:
/// accepting is the caller's decision).
pub fn load_files(paths: &[PathBuf], experiment: &str, phase_override: Option<&str>) -> Result<Phase, ImportError> {
    let mut parts = Vec::with_capacity(paths.len());
    for path in paths {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ImportError::Read { file: name.clone(), source })?;
        parts.push(parse_file(&name, &text, phase_override)?);
    }
    merge(parts, experiment)
}

#[cfg(test)]
mod tests;
