//! Shape detection and the fields every shape may carry (phase label, environment).

use super::json::{At, Json};
use super::{ImportError, ImportedPart, Shape, responses, scores, training};
use crate::phase::ConfigEntry;

const TRAINING_KEYS: [&str; 6] =
    ["final_loss", "vram_peak_gb", "vram_peak_mib", "num_examples", "epochs", "max_length"];

pub(crate) fn parse(file: &str, root: &Json, phase_override: Option<&str>) -> Result<ImportedPart, ImportError> {
    let at = At::root(file, root);
    if !matches!(root, Json::Object(_)) {
        return Err(at.wrong("an object"));
    }
    let shape = detect(&at)?;
    let label = phase_label(&at, phase_override)?;
    let mut part = ImportedPart::new(file, shape, label);
    match shape {
        Shape::RubricScores => scores::rubric_file(&at, &mut part)?,
        Shape::DimensionScores => scores::dimension_file(&at, &mut part)?,
        Shape::TrainingMetrics => training::metrics_file(&at, &mut part)?,
        Shape::TrainerState => training::trainer_state(&at, &mut part)?,
        Shape::EvalResponses => responses::responses_file(&at, &mut part)?,
    }
    if let Some(env) = at.get("environment") {
        part.environment = env
            .entries()?
            .into_iter()
            .map(|(k, v)| ConfigEntry { key: k.to_owned(), value: v.value.to_text() })
            .collect();
    }
    Ok(part)
}

fn detect(at: &At<'_>) -> Result<Shape, ImportError> {
    if at.get("log_history").is_some() {
        return Ok(Shape::TrainerState);
    }
    if at.get("results").is_some() {
        return Ok(Shape::EvalResponses);
    }
    if let Some(scores) = at.get("scores") {
        return scores_shape(&scores);
    }
    if TRAINING_KEYS.iter().any(|k| at.get(k).is_some()) {
        return Ok(Shape::TrainingMetrics);
    }
    let keys: Vec<&str> = at.entries()?.into_iter().map(|(k, _)| k).collect();
    Err(ImportError::UnknownShape {
        file: at.file.to_owned(),
        keys: if keys.is_empty() { "none".to_owned() } else { keys.join(", ") },
    })
}

/// The first entry of `scores` decides: `score` → rubric score file, `d1`… → per-dimension file.
fn scores_shape(scores: &At<'_>) -> Result<Shape, ImportError> {
    let first = match scores.value {
        Json::Array(_) => scores.array()?.into_iter().next(),
        Json::Object(_) => scores.entries()?.into_iter().next().map(|(_, v)| v),
        _ => return Err(scores.wrong("an array or an object")),
    };
    let Some(first) = first else {
        return Err(scores.invalid("no scores".to_owned()));
    };
    if scores::dimension_keys(&first).next().is_some() {
        Ok(Shape::DimensionScores)
    } else if first.get("score").is_some() {
        Ok(Shape::RubricScores)
    } else {
        Err(first.invalid("neither `score` nor per-dimension fields `d1`… found".to_owned()))
    }
}

/// "Phase 9", "phase9", 9 and "9" all label phase "9".
pub(crate) fn normalize_label(raw: &str) -> String {
    let trimmed = raw.trim();
    let lower = trimmed.to_lowercase();
    match lower.strip_prefix("phase") {
        Some(rest) if !rest.trim_start_matches([' ', '_', '-']).is_empty() => {
            rest.trim_start_matches([' ', '_', '-']).to_owned()
        }
        _ => trimmed.to_owned(),
    }
}

fn phase_label(at: &At<'_>, phase_override: Option<&str>) -> Result<Option<String>, ImportError> {
    let from_file = match at.get("phase") {
        None => None,
        Some(node) => Some(match node.value {
            Json::Number(n) => n.to_string(),
            Json::String(s) => normalize_label(s),
            _ => return Err(node.wrong("a number or a string")),
        }),
    };
    let wanted = phase_override.map(normalize_label);
    match (from_file, wanted) {
        (Some(found), Some(expected)) if found != expected => {
            Err(ImportError::PhaseMismatch { file: at.file.to_owned(), found, expected, other: "--phase".to_owned() })
        }
        (found, wanted) => Ok(wanted.or(found)),
    }
}
