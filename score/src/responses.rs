//! The eval responses file: what the eval engine generated for one phase, and what the scorer reads.
//! Unknown keys are tolerated on purpose: files from older eval scripts carry extra fields
//! (previews, notes) that must not block scoring.

use crate::error::ResponsesError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Generation parameters as the engine recorded them (`max_new_tokens`, `temperature`, `top_p`,
/// `top_k`, `repetition_penalty`, `samples`, `seed`, ...). Kept as an ordered map so the gate can
/// compare any key between phases without this crate knowing every engine's knobs.
pub type GenerationParams = BTreeMap<String, serde_json::Value>;

/// One phase's generated answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Responses {
    pub phase: String,
    pub model: String,
    #[serde(default)]
    pub adapter: Option<String>,
    /// RFC 3339 time the eval finished, as written by the engine.
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub generation_params: GenerationParams,
    pub results: Vec<ResponseRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<Timing>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
}

/// One sampled answer to one question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseRecord {
    pub qid: String,
    pub question: String,
    pub response: String,
    /// Sample index within the question, 0-based; older single-sample files omit it.
    #[serde(default)]
    pub sample: u32,
    /// Seed this sample was generated with; absent in files from tools that did not record it.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Generation stopped at `max_new_tokens` rather than at an end token.
    #[serde(default)]
    pub truncated: bool,
    /// Generated tokens.
    #[serde(default)]
    pub tokens: Option<u32>,
    /// Automatic-zero triggers the producer already found; the scorer adds them to its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d4_auto_fail: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d4_auto_score: Option<u32>,
}

/// Throughput and wall time of the eval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    pub prompt_tokens_per_s: f64,
    pub generation_tokens_per_s: f64,
    pub wall_s: f64,
}

impl Responses {
    /// Parse a responses file. `path` only names the file in errors.
    pub fn from_json_str(text: &str, path: &Path) -> Result<Responses, ResponsesError> {
        serde_json::from_str(text).map_err(|source| ResponsesError::Parse { path: path.to_owned(), source })
    }

    /// Read and parse a responses file.
    pub fn load(path: &Path) -> Result<Responses, ResponsesError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ResponsesError::Read { path: path.to_owned(), source })?;
        Self::from_json_str(&text, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"{
        "phase": "phase-10", "model": "smollm2-135m-instruct", "adapter": null,
        "timestamp": "2026-03-01T10:00:00Z",
        "generation_params": {"max_new_tokens": 150, "temperature": 0.7, "samples": 3},
        "results": [{"qid": "Q1", "question": "Quem é o Tomás?", "response": "Oi.",
                     "sample": 2, "seed": 42, "truncated": true, "tokens": 150,
                     "d4_auto_fail": ["<|user|>"], "d4_auto_score": 0}],
        "timing": {"prompt_tokens_per_s": 300.5, "generation_tokens_per_s": 80.0, "wall_s": 61.2},
        "peak_rss_mib": 412.0
    }"#;

    #[test]
    fn parses_the_full_shape_and_round_trips() {
        let parsed = Responses::from_json_str(FULL, Path::new("r.json")).unwrap();
        let record = &parsed.results[0];
        assert_eq!((record.sample, record.seed, record.truncated), (2, Some(42), true));
        assert_eq!(parsed.timing.as_ref().unwrap().wall_s, 61.2);
        let again = serde_json::to_string(&parsed).unwrap();
        assert_eq!(Responses::from_json_str(&again, Path::new("r.json")).unwrap(), parsed);
    }

    #[test]
    fn older_files_without_sampling_fields_parse() {
        let old = r#"{"phase": "9", "model": "tinyllama", "results": [
            {"qid": "Q5", "question": "Me fala sobre você.", "response": "Meu nome é Tomás.",
             "response_preview": "ignored"}]}"#;
        let parsed = Responses::from_json_str(old, Path::new("old.json")).unwrap();
        assert_eq!(parsed.results[0].sample, 0);
        assert_eq!(parsed.results[0].seed, None);
        assert!(!parsed.results[0].truncated);
    }

    #[test]
    fn errors_name_the_file_and_the_missing_field() {
        let err =
            Responses::from_json_str(r#"{"phase": "9", "results": []}"#, Path::new("x.json")).unwrap_err().to_string();
        assert!(err.contains("x.json") && err.contains("model"), "{err}");
    }
}
