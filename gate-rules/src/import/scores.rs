//! Score files: the rubric score file (one total per question) and the per-dimension file (each of
//! the rubric's dimensions with score and reason: `d1`…`d5` for persona v1), whose `scores` is a
//! list with `qid` or an object keyed by question id. Totals written in the file must match the
//! weighted sum the rubric computes.

use std::collections::{HashMap, HashSet};

use phasegate_rubric::Rubric;

use super::json::{At, Json};
use super::{ImportError, ImportedPart};
use crate::phase::{ConfigEntry, Preferences, QuestionEval, QuestionPreference, Sample};
use crate::rubric::{DimensionScore, aggregate};

pub(crate) fn rubric_file(at: &At<'_>, part: &mut ImportedPart) -> Result<(), ImportError> {
    let mut questions = Questions::default();
    for (qid, q) in at.field("scores")?.entries()? {
        questions.check_unique(&q, qid, true)?;
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
        questions.push(part, qid, q.opt_str("question")?, (0.0, max_points), sample);
    }
    check_overall(at, part)?;
    part.training.final_loss = at.opt_f64("training_loss_final")?;
    common(at, part)
}

pub(crate) fn dimension_file(at: &At<'_>, part: &mut ImportedPart, rubric: &Rubric) -> Result<(), ImportError> {
    let scores = at.field("scores")?;
    let keyed = !matches!(scores.value, Json::Array(_));
    let entries: Vec<(String, At<'_>)> = match scores.value {
        Json::Array(_) => scores
            .array()?
            .into_iter()
            .map(|q| Ok((q.field("qid")?.str()?.to_owned(), q)))
            .collect::<Result<_, ImportError>>()?,
        _ => scores.entries()?.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    };
    let mut questions = Questions::default();
    for (qid, q) in entries {
        questions.check_unique(&q, &qid, keyed)?;
        let dims = dimensions(&q, rubric)?;
        let points = aggregate(rubric, &dims, &[]);
        if let Some(total) = q.get("total") {
            let written = total.f64()?;
            if (written - points).abs() > 1e-9 {
                return Err(total.invalid(format!("total {written} does not equal the sum of dimensions {points}")));
            }
        }
        let mut sample = blank_sample(points);
        sample.dimensions = dims;
        sample.response = match q.opt_str("response")? {
            Some(r) => Some(r.to_owned()),
            None => q.opt_str("response_preview")?.map(str::to_owned),
        };
        let range = (rubric.question_min(), rubric.question_max());
        questions.push(part, &qid, q.opt_str("question")?, range, sample);
    }
    part.training.final_loss = at.opt_f64("training_loss")?;
    if let Some(p) = at.get("pairwise") {
        part.pairwise = Some(preferences(&p)?);
    }
    if let Some(version) = at.opt_str("rubric_version")? {
        part.notes.push(format!("rubric version {version}"));
    }
    common(at, part)
}

/// Keys of one score entry that are the rubric's dimension ids (any case), or look like the
/// persona ids `d1`, `d2`, ..., in file order.
pub(crate) fn dimension_keys<'a>(q: &At<'a>, rubric: &Rubric) -> impl Iterator<Item = (&'a str, At<'a>)> {
    let persona_like =
        |k: &str| k.len() >= 2 && k[..1].eq_ignore_ascii_case("d") && k[1..].chars().all(|c| c.is_ascii_digit());
    q.entries().unwrap_or_default().into_iter().filter(move |(k, _)| rubric.dimension(k).is_some() || persona_like(k))
}

fn dimensions(q: &At<'_>, rubric: &Rubric) -> Result<Vec<DimensionScore>, ImportError> {
    let ids = || rubric.dimensions().iter().map(|d| d.id.as_str()).collect::<Vec<_>>().join(", ");
    let mut out = Vec::new();
    for (key, d) in dimension_keys(q, rubric) {
        let Some(dim) = rubric.dimension(key) else {
            return Err(d.invalid(format!("unknown dimension {key}: the rubric has {}", ids())));
        };
        let score_at = match d.value {
            Json::Object(_) => d.field("score")?,
            _ => d.clone(),
        };
        let score = score_at.u64()?;
        if !dim.contains(score) {
            return Err(
                score_at.invalid(format!("score {score} of {} is outside its range {}–{}", dim.id, dim.min, dim.max))
            );
        }
        out.push(DimensionScore {
            dimension: dim.id.to_string(),
            score: u32::try_from(score).unwrap_or(u32::MAX),
            reason: d.opt_str("reason").unwrap_or(None).map(str::to_owned),
        });
    }
    if out.is_empty() {
        return Err(q.invalid(format!("no per-dimension scores (the rubric has {})", ids())));
    }
    Ok(out)
}

/// The `pairwise` object: `baseline.phase`, `model` (and `endpoint`), and `questions[]` with `qid`,
/// `preference` (in [−1, 1], or null when no pair was readable) and `pairs`.
fn preferences(at: &At<'_>) -> Result<Preferences, ImportError> {
    let baseline = at.field("baseline")?.field("phase")?;
    let baseline = match baseline.value {
        Json::Number(n) => n.to_string(),
        _ => super::shape::normalize_label(baseline.str()?),
    };
    let model = at.field("model")?.str()?;
    let judge = match at.opt_str("endpoint")? {
        Some(endpoint) => format!("{model} at {endpoint}"),
        None => model.to_owned(),
    };
    let mut questions = Vec::new();
    let mut seen = HashSet::new();
    for q in at.field("questions")?.array()? {
        let qid = q.field("qid")?.str()?;
        if !seen.insert(qid) {
            return Err(q.invalid(format!("duplicate question id {qid}")));
        }
        let preference = match q.get("preference") {
            Some(v) => {
                let value = v.f64()?;
                if !(-1.0..=1.0).contains(&value) {
                    return Err(v.invalid(format!("preference {value} is outside −1 to 1")));
                }
                Some(value)
            }
            None => None,
        };
        let pairs = match q.get("pairs") {
            Some(v) => v.u64()?,
            None => 0,
        };
        questions.push(QuestionPreference { qid: qid.to_owned(), preference, pairs });
    }
    Ok(Preferences { baseline, judge, questions })
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

/// The questions of one score file as they are read: where each question is in
/// `part.questions` (so adding a sample is constant time, not a scan), and which samples were seen.
#[derive(Debug, Default)]
struct Questions {
    index: HashMap<String, usize>,
    /// `(qid, sample)` pairs of entries that name their sample.
    samples: HashSet<(String, u64)>,
}

impl Questions {
    /// Rejects an entry that repeats a question's sample: the same `sample` number twice, or (in
    /// an object keyed by question id, `keyed`) the same key twice without sample numbers.
    /// Repeated entries of a question with distinct `sample` numbers, or in a list, are its K samples.
    fn check_unique(&mut self, q: &At<'_>, qid: &str, keyed: bool) -> Result<(), ImportError> {
        match q.get("sample") {
            Some(at) => {
                let sample = at.u64()?;
                if !self.samples.insert((qid.to_owned(), sample)) {
                    return Err(at.invalid(format!("duplicate sample {sample} of question {qid}")));
                }
            }
            None if keyed && self.index.contains_key(qid) => {
                return Err(q.invalid(format!("duplicate question id {qid}")));
            }
            None => {}
        }
        Ok(())
    }

    /// Adds a sample to its question; a question id seen again is another of its K samples.
    /// `(min, max)` are the fewest and most points a sample can earn.
    fn push(
        &mut self,
        part: &mut ImportedPart,
        qid: &str,
        question: Option<&str>,
        (min, max): (f64, f64),
        sample: Sample,
    ) {
        if let Some(&i) = self.index.get(qid) {
            part.questions[i].samples.push(sample);
            return;
        }
        self.index.insert(qid.to_owned(), part.questions.len());
        part.questions.push(QuestionEval {
            id: qid.to_owned(),
            question: question.unwrap_or_default().to_owned(),
            max_points: max,
            min_points: min,
            samples: vec![sample],
        });
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
