//! Import of the JSON shapes users already have: pure parsers from text plus a file name (used in
//! every error, with the field), and a thin loader that reads files and merges the parts of one
//! phase into one [`Phase`]. An import is all or nothing: any error and no phase is returned.
//!
//! Shapes are detected from their keys: `log_history` → HF `trainer_state.json`; `results` → eval
//! responses; `scores` whose entries carry `score` → rubric score file (totals only); `scores`
//! whose entries carry the rubric's dimension ids (`d1`…, `correctness`, … as a list with `qid` or
//! an object keyed by question id) → per-dimension score file; training summary keys
//! (`final_loss`, `epochs`, ...) → `training_metrics.json`.
//!
//! A per-dimension file is read with the rubric it carries (`rubric`, as the score stage writes
//! it), else the experiment's rubric ([`ImportOptions::rubric`]: from `--suite` or the accepted
//! history), else persona v1 (D1..D5, 0–2). Each file's instrument is the one it records
//! (`instrument`), else `--scorer`, else people for per-dimension files and imported totals for
//! totals-only files.
//! A per-dimension file may carry `pairwise` (the score stage's pairwise mode): the baseline phase,
//! the judge and each question's preference in [−1, 1].
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

use phasegate_rubric::{Instrument, InstrumentKind, Rubric};
use serde::{Deserialize, Serialize};

pub use error::ImportError;
pub use merge::merge;

use crate::phase::{ConfigEntry, DatasetInfo, Phase, Preferences, QuestionEval, TrainingMetrics};
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

/// What an import knows besides the files.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Supplies the phase label when a file has none; must agree when it has one (`--phase`).
    pub phase: Option<String>,
    /// The experiment's rubric, for per-dimension files that do not carry their own.
    pub rubric: Option<Rubric>,
    /// What scored the files (`--scorer`), for files that do not record it.
    pub scorer: Option<InstrumentKind>,
}

impl ImportOptions {
    /// Options with only a phase label.
    pub fn phase(label: Option<&str>) -> ImportOptions {
        ImportOptions { phase: label.map(str::to_owned), ..ImportOptions::default() }
    }
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
    /// The rubric a score file's scores follow (per-dimension files only).
    pub rubric: Option<Rubric>,
    /// What scored a score file's scores.
    pub instrument: Option<Instrument>,
    /// A per-dimension score file's `pairwise` object (pairwise judging).
    pub pairwise: Option<Preferences>,
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
            rubric: None,
            instrument: None,
            pairwise: None,
        }
    }
}

/// Parses one file's text; `name` names the file in errors. `phase_override` supplies the label
/// when the file has none, and must agree with the file's label when it has one.
pub fn parse_file(name: &str, text: &str, phase_override: Option<&str>) -> Result<ImportedPart, ImportError> {
    parse_file_with(name, text, &ImportOptions::phase(phase_override))
}

/// [`parse_file`] with the experiment's rubric and the instrument the user named.
pub fn parse_file_with(name: &str, text: &str, options: &ImportOptions) -> Result<ImportedPart, ImportError> {
    let root = json::parse(name, text)?;
    shape::parse(name, &root, options)
}

/// Reads and parses `paths`, then merges them into one phase of `experiment` (not yet accepted:
/// accepting is the caller's decision).
pub fn load_files(paths: &[PathBuf], experiment: &str, phase_override: Option<&str>) -> Result<Phase, ImportError> {
    load_files_with(paths, experiment, &ImportOptions::phase(phase_override))
}

/// [`load_files`] with the experiment's rubric and the instrument the user named.
pub fn load_files_with(paths: &[PathBuf], experiment: &str, options: &ImportOptions) -> Result<Phase, ImportError> {
    let mut parts = Vec::with_capacity(paths.len());
    for path in paths {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ImportError::Read { file: name.clone(), source })?;
        parts.push(parse_file_with(&name, &text, options)?);
    }
    merge(parts, experiment)
}

#[cfg(test)]
mod tests;
