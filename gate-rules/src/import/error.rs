//! Import errors: each names the file and, where it applies, the field.

/// Why an import failed; nothing is imported when any file fails.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("failed to import: no files given")]
    NoFiles,
    #[error("failed to read {file}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse {file} as JSON at line {line}, column {column}: {message}")]
    Json { file: String, line: usize, column: usize, message: String },
    #[error(
        "failed to import {file}: unknown shape (top-level keys: {keys})\nhint: expected a rubric score file, a per-dimension score file, training_metrics.json, trainer_state.json or an eval responses file"
    )]
    UnknownShape { file: String, keys: String },
    #[error("failed to import {file}: missing field `{field}`")]
    MissingField { file: String, field: String },
    #[error("failed to import {file}: field `{field}` should be {expected}, found {found}")]
    WrongType { file: String, field: String, expected: &'static str, found: String },
    #[error("failed to import {file}: field `{field}`: {reason}")]
    Invalid { file: String, field: String, reason: String },
    #[error("failed to import {file}: no phase label in field `phase`\nhint: pass --phase LABEL")]
    NoPhase { file: String },
    #[error("failed to import {file}: field `phase` is {found} but {other} says {expected}")]
    PhaseMismatch { file: String, found: String, expected: String, other: String },
    #[error("failed to import {file}: field `{field}` is {found} but {other_file} says {expected}")]
    Conflict { file: String, field: String, found: String, other_file: String, expected: String },
    #[error(
        "failed to import {file}: field `{field}`: no score for question {qid} in any file\nhint: import the score file of the same phase together with the responses"
    )]
    Unscored { file: String, field: String, qid: String },
}
