//! Score files: the rubric score file (one total per question) and the manual per-dimension file
//! (`d1`…`d5` with score and reason), whose `scores` is a list with `qid` or an object keyed by
//! question id. Totals written in the file must match the sum the rubric computes.

use super::json::{At, Json};
use super::{ImportError, ImportedPart};
use crate::phase::{ConfigEntry, QuestionEval, Sample};
use crate::rubric::{DimensionScore, Rubric};

pub(crate) fn rubric_file(at: &At<'_>, part: &mut ImportedPart) -> Result<(), ImportError> {
    for (qid, q) in at.field("scores")?.entries()? {
        let score = q.field("score")?;
        let max = q.field("max_score")?;
        let (points, max_points) = (score.f64()?, max.f64()?);
        if max_points <= 0.0 {
            return Err(max.invalid(format!("max_score must be above 0, found {max_points}")));
        }
        if !(0.0..=max_points).contains(&points) {
            return Err(score.invalid(format!("score {points} is outside 0 to {max_points}")));
        }
        let mut sample = blank_sample(points);
        sample.response = q.opt_str("response_preview")?.map(str::to_owned);
        push_sample(part, qid, q.opt_str("question")?, max_points, sample);
    }
    check_overall(at, part)?;
    part.training.final_loss = at.opt_f64("training_loss_final")?;
    common(at, part)
}

pub(crate) fn dimension_file(at: &At<'_>, part: &mut ImportedPart) -> Result<(), ImportError> {
    let rubric = Rubric::persona_v1();
    let scores = at.field("scores")?;
    let entries: Vec<(String, At<'_>)> = match scores.value {
        Json::Array(_) => scores
            .array()?
            .into_iter()
            .map(|q| Ok((q.field("qid")?.str()?.to_owned(), q)))
            .collect::<Result<_, ImportError>>()?,
        _ => scores.entries()?.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    };
    for (qid, q) in entries {
        let dims = dimensions(&q, &rubric)?;
        let points = rubric.aggregate(&dims, &[]);
        if let Some(total) = q.get("total") {
            let written = total.f64()?;
            if (written - f64::from(points)).abs() > 1e-9 {
                return Err(total.invalid(format!("total {written} does not equal the sum of dimensions {points}")));
            }
        }
        let mut sample = blank_sample(f64::from(points));
        sample.dimensions = dims;
        sample.response = match q.opt_str("response")? {
            Some(r) => Some(r.to_owned()),
            None => q.opt_str("response_preview")?.map(str::to_owned),
        };
        push_sample(part, &qid, q.opt_str("question")?, f64::from(rubric.question_max()), sample);
    }
    part.training.final_loss = at.opt_f64("training_loss")?;
    if let Some(version) = at.opt_str("rubric_version")? {
        part.notes.push(format!("rubric version {version}"));
    }
    common(at, part)
}

/// Keys `d1`, `d2`, ... (any case) of one score entry, in file order.
pub(crate) fn dimension_keys<'a>(q: &At<'a>) -> impl Iterator<Item = (&'a str, At<'a>)> {
    q.entries()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k.len() >= 2 && k[..1].eq_ignore_ascii_case("d") && k[1..].chars().all(|c| c.is_ascii_digit()))
}

fn dimensions(q: &At<'_>, rubric: &Rubric) -> Result<Vec<DimensionScore>, ImportError> {
    let mut out = Vec::new();
    for (key, d) in dimension_keys(q) {
        let Some(dim) = rubric.dimension(key) else {
            return Err(
                d.invalid(format!("unknown dimension {key}: the rubric has D1 to D{}", rubric.dimensions.len()))
            );
        };
        let score_at = match d.value {
            Json::Object(_) => d.field("score")?,
            _ => d.clone(),
        };
        let score = score_at.u64()?;
        if score > u64::from(dim.max) {
            return Err(score_at.invalid(format!("score {score} is above the maximum {} of {}", dim.max, dim.id)));
        }
        out.push(DimensionScore {
            dimension: dim.id.clone(),
            score: u32::try_from(score).unwrap_or(u32::MAX),
            reason: d.opt_str("reason").unwrap_or(None).map(str::to_owned),
        });
    }
    if out.is_empty() {
        return Err(q.invalid("no per-dimension scores (`d1`…)".to_owned()));
    }
    Ok(out)
}

fn check_overall(at: &At<'_>, part: &ImportedPart) -> Result<(), ImportError> {
    let Some(overall) = at.get("overall") else {
        return Ok(());
    };
    let sum: f64 = part.questions.iter().flat_map(|q| &q.samples).map(|s| s.points).sum();
    if let Some(total) = overall.get("total") {
        let written = total.f64()?;
        if (written - sum).abs() > 1e-9 {
            return Err(total.invalid(format!("total {written} does not equal the sum of question scores {sum}")));
        }
    }
    Ok(())
}

fn blank_sample(points: f64) -> Sample {
    Sample { seed: None, points, dimensions: Vec::new(), response: None, truncated: false, auto_zero: Vec::new() }
}

/// Adds a sample to its question; a question id seen again is another of its K samples.
fn push_sample(part: &mut ImportedPart, qid: &str, question: Option<&str>, max_points: f64, sample: Sample) {
    match part.questions.iter_mut().find(|q| q.id == qid) {
        Some(q) => q.samples.push(sample),
        None => part.questions.push(QuestionEval {
            id: qid.to_owned(),
            question: question.unwrap_or_default().to_owned(),
            max_points,
            samples: vec![sample],
        }),
    }
}

/// Fields shared by score and responses files: model, adapter, generation parameters.
pub(crate) fn common(at: &At<'_>, part: &mut ImportedPart) -> Result<(), ImportError> {
    for key in ["model", "adapter"] {
        if let Some(v) = at.get(key) {
            part.config.push(ConfigEntry { key: key.to_owned(), value: v.value.to_text() });
        }
    }
    if let Some(params) = at.get("generation_params") {
        part.generation = params
            .entries()?
            .into_iter()
            .map(|(k, v)| ConfigEntry { key: k.to_owned(), value: v.value.to_text() })
            .collect();
    }
    Ok(())
}
