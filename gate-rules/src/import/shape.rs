//! Shape detection and the fields every shape may carry (phase label, environment).

use phasegate_rubric::{Instrument, Rubric};

use super::json::{At, Json};
use super::{ImportError, ImportOptions, ImportedPart, Shape, responses, scores, training};
use crate::phase::ConfigEntry;

const TRAINING_KEYS: [&str; 6] =
    ["final_loss", "vram_peak_gb", "vram_peak_mib", "num_examples", "epochs", "max_length"];

pub(crate) fn parse(file: &str, root: &Json, options: &ImportOptions) -> Result<ImportedPart, ImportError> {
    let at = At::root(file, root);
    if !matches!(root, Json::Object(_)) {
        return Err(at.wrong("an object"));
    }
    let rubric = match at.get("rubric") {
        Some(r) => r.decode::<Rubric>()?,
        None => options.rubric.clone().unwrap_or_else(Rubric::persona_v1),
    };
    let shape = detect(&at, &rubric)?;
    let label = phase_label(&at, options.phase.as_deref())?;
    let mut part = ImportedPart::new(file, shape, label);
    match shape {
        Shape::RubricScores => scores::rubric_file(&at, &mut part)?,
        Shape::DimensionScores => {
            scores::dimension_file(&at, &mut part, &rubric)?;
            part.rubric = Some(rubric);
        }
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
    part.instrument = instrument(&at, shape, options)?;
    Ok(part)
}

/// The file's recorded instrument, else `--scorer`, else people for per-dimension scores and
/// imported totals for totals-only files; `None` for files without scores. A recorded
/// instrument of another kind than `--scorer` is an error: nothing is silently replaced.
fn instrument(at: &At<'_>, shape: Shape, options: &ImportOptions) -> Result<Option<Instrument>, ImportError> {
    let default = match shape {
        Shape::DimensionScores => Instrument::Human,
        Shape::RubricScores => Instrument::Imported,
        _ => return Ok(None),
    };
    let Some(node) = at.get("instrument") else {
        return Ok(Some(options.scorer.map_or(default, Instrument::of_kind)));
    };
    let recorded: Instrument = node.decode()?;
    match options.scorer {
        Some(kind) if kind != recorded.kind() => Err(node.invalid(format!(
            "the file records the {} instrument ({recorded}) but --scorer says {}",
            recorded.kind().as_str(),
            kind.as_str()
        ))),
        _ => Ok(Some(recorded)),
    }
}

fn detect(at: &At<'_>, rubric: &Rubric) -> Result<Shape, ImportError> {
    if at.get("log_history").is_some() {
        return Ok(Shape::TrainerState);
    }
    if at.get("results").is_some() {
        return Ok(Shape::EvalResponses);
    }
    if let Some(scores) = at.get("scores") {
        return scores_shape(&scores, rubric);
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

/// The first entry of `scores` decides: `score` → rubric score file, the rubric's dimension ids
/// (or `d1`…) → per-dimension file.
fn scores_shape(scores: &At<'_>, rubric: &Rubric) -> Result<Shape, ImportError> {
    let first = match scores.value {
        Json::Array(_) => scores.array()?.into_iter().next(),
        Json::Object(_) => scores.entries()?.into_iter().next().map(|(_, v)| v),
        _ => return Err(scores.wrong("an array or an object")),
    };
    let Some(first) = first else {
        return Err(scores.invalid("no scores".to_owned()));
    };
    if scores::dimension_keys(&first, rubric).next().is_some() {
        Ok(Shape::DimensionScores)
    } else if first.get("score").is_some() {
        Ok(Shape::RubricScores)
    } else {
        let ids: Vec<&str> = rubric.dimensions().iter().map(|d| d.id.as_str()).collect();
        Err(first.invalid(format!("neither `score` nor per-dimension fields ({}) found", ids.join(", "))))
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
