//! Merging the parts of one phase: labels must agree, score files give the samples (per-dimension
//! files before total-only ones), responses attach to those samples in order, and scalar training
//! metrics come from the most authoritative file that has them.

use std::collections::{BTreeMap, HashMap};

use phasegate_rubric::{Instrument, Rubric};

use super::{ImportError, ImportedPart, Shape};
use crate::phase::{ConfigEntry, Phase, QuestionEval, TrainingMetrics, natural_cmp, ordinal_from_label};
use crate::rubric::aggregate;

/// Merges parts into one phase of `experiment`; all or nothing.
pub fn merge(parts: Vec<ImportedPart>, experiment: &str) -> Result<Phase, ImportError> {
    let first = parts.first().ok_or(ImportError::NoFiles)?;
    let label = label(&parts)?.ok_or_else(|| ImportError::NoPhase { file: first.file.clone() })?;
    let mut phase = Phase::new(experiment, &label, ordinal_from_label(&label).unwrap_or(0));
    let mut ranked: Vec<&ImportedPart> = parts.iter().collect();
    ranked.sort_by_key(|p| rank(p.shape));
    phase.eval = questions(&ranked)?;
    phase.rubric = agreed(&ranked, |p| p.rubric.as_ref(), |a, b| a.same_scale(b), "rubric")?;
    phase.instrument = agreed(&ranked, |p| p.instrument.as_ref(), Instrument::same_as, "instrument")?;
    phase.pairwise = agreed(&ranked, |p| p.pairwise.as_ref(), PartialEq::eq, "pairwise")?;
    let rubric = phase.rubric();
    attach_responses(&mut phase.eval, &parts, &rubric)?;
    phase.training = training(&ranked);
    phase.config = entries(&parts, |p| &p.config, "")?;
    phase.generation = entries(&parts, |p| &p.generation, "generation_params.")?;
    phase.environment = entries(&parts, |p| &p.environment, "environment.")?
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect::<BTreeMap<_, _>>();
    phase.dataset = ranked.iter().find_map(|p| p.dataset.clone());
    phase.notes = parts.iter().flat_map(|p| p.notes.iter().cloned()).collect();
    Ok(phase)
}

/// Which file wins for a value several may give: the training summary, then score files, then
/// responses, then the trainer log (whose last logged loss is a step loss, not the final summary).
fn rank(shape: Shape) -> u8 {
    match shape {
        Shape::TrainingMetrics => 0,
        Shape::DimensionScores => 1,
        Shape::RubricScores => 2,
        Shape::EvalResponses => 3,
        Shape::TrainerState => 4,
    }
}

fn label(parts: &[ImportedPart]) -> Result<Option<String>, ImportError> {
    let mut found: Option<(&str, &str)> = None;
    for p in parts {
        let Some(l) = p.phase.as_deref() else {
            continue;
        };
        match found {
            Some((expected, other)) if expected != l => {
                return Err(ImportError::PhaseMismatch {
                    file: p.file.clone(),
                    found: l.to_owned(),
                    expected: expected.to_owned(),
                    other: other.to_owned(),
                });
            }
            Some(_) => {}
            None => found = Some((l, &p.file)),
        }
    }
    Ok(found.map(|(l, _)| l.to_owned()))
}

fn questions(ranked: &[&ImportedPart]) -> Result<Vec<QuestionEval>, ImportError> {
    let mut out: Vec<(QuestionEval, &str)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for part in ranked {
        for q in &part.questions {
            match index.get(q.id.as_str()) {
                Some(&i) => check_same(&out[i].0, q, part, out[i].1)?,
                None => {
                    index.insert(&q.id, out.len());
                    out.push((q.clone(), &part.file));
                }
            }
        }
    }
    let mut eval: Vec<QuestionEval> = out.into_iter().map(|(q, _)| q).collect();
    eval.sort_by(|a, b| natural_cmp(&a.id, &b.id));
    Ok(eval)
}

/// The one value (rubric, instrument) the score files give; two that disagree are an error.
fn agreed<T: Clone + std::fmt::Debug>(
    ranked: &[&ImportedPart],
    pick: impl Fn(&ImportedPart) -> Option<&T>,
    same: impl Fn(&T, &T) -> bool,
    field: &str,
) -> Result<Option<T>, ImportError> {
    let mut found: Option<(&T, &str)> = None;
    for part in ranked {
        let Some(value) = pick(part) else { continue };
        match found {
            Some((have, other)) if !same(have, value) => {
                return Err(ImportError::Conflict {
                    file: part.file.clone(),
                    field: field.to_owned(),
                    found: format!("{value:?}"),
                    other_file: other.to_owned(),
                    expected: format!("{have:?}"),
                });
            }
            Some(_) => {}
            None => found = Some((value, &part.file)),
        }
    }
    Ok(found.map(|(v, _)| v.clone()))
}

/// Two score files scoring the same question must agree on its points.
fn check_same(have: &QuestionEval, q: &QuestionEval, part: &ImportedPart, other: &str) -> Result<(), ImportError> {
    let points = |q: &QuestionEval| q.samples.iter().map(|s| s.points).collect::<Vec<_>>();
    if points(have) == points(q) && have.max_points == q.max_points {
        return Ok(());
    }
    let show = |q: &QuestionEval| format!("{:?} of {}", points(q), q.max_points);
    Err(ImportError::Conflict {
        file: part.file.clone(),
        field: format!("scores.{}", q.id),
        found: show(q),
        other_file: other.to_owned(),
        expected: show(have),
    })
}

/// Responses fill the samples of their question in order; the rubric then re-aggregates any
/// sample whose response hit an automatic-zero trigger.
fn attach_responses(eval: &mut [QuestionEval], parts: &[ImportedPart], rubric: &Rubric) -> Result<(), ImportError> {
    let mut used: BTreeMap<String, usize> = BTreeMap::new();
    let index: HashMap<String, usize> = eval.iter().enumerate().map(|(i, q)| (q.id.clone(), i)).collect();
    for part in parts {
        for r in &part.responses {
            let unscored =
                || ImportError::Unscored { file: part.file.clone(), field: r.field.clone(), qid: r.qid.clone() };
            let q = index.get(&r.qid).map(|&i| &mut eval[i]).ok_or_else(unscored)?;
            let index = used.entry(r.qid.clone()).or_default();
            let sample = q.samples.get_mut(*index).ok_or_else(unscored)?;
            *index += 1;
            if q.question.is_empty() {
                q.question = r.question.clone().unwrap_or_default();
            }
            sample.response = Some(r.response.clone());
            sample.truncated = r.truncated;
            sample.seed = r.seed.or(sample.seed);
            sample.auto_zero.extend(r.auto_zero.iter().cloned());
            if !sample.dimensions.is_empty() && !sample.auto_zero.is_empty() {
                sample.points = aggregate(rubric, &sample.dimensions, &sample.auto_zero);
            }
        }
    }
    Ok(())
}

fn training(ranked: &[&ImportedPart]) -> TrainingMetrics {
    let first = |f: &dyn Fn(&TrainingMetrics) -> bool| ranked.iter().map(|p| &p.training).find(|t| f(t)).cloned();
    TrainingMetrics {
        final_loss: ranked.iter().find_map(|p| p.training.final_loss),
        loss_curve: first(&|t| !t.loss_curve.is_empty()).map(|t| t.loss_curve).unwrap_or_default(),
        vram_peak_mib: ranked.iter().find_map(|p| p.training.vram_peak_mib),
        duration_secs: ranked.iter().find_map(|p| p.training.duration_secs),
    }
}

/// Key/values of all parts in file order; a key given twice must have the same value.
fn entries(
    parts: &[ImportedPart],
    pick: impl Fn(&ImportedPart) -> &Vec<ConfigEntry>,
    prefix: &str,
) -> Result<Vec<ConfigEntry>, ImportError> {
    let mut out: Vec<(ConfigEntry, &str)> = Vec::new();
    for part in parts {
        for e in pick(part) {
            match out.iter().find(|(have, _)| have.key == e.key) {
                Some((have, _)) if have.value == e.value => {}
                Some((have, other)) => {
                    return Err(ImportError::Conflict {
                        file: part.file.clone(),
                        field: format!("{prefix}{}", e.key),
                        found: e.value.clone(),
                        other_file: (*other).to_owned(),
                        expected: have.value.clone(),
                    });
                }
                None => out.push((e.clone(), &part.file)),
            }
        }
    }
    Ok(out.into_iter().map(|(e, _)| e).collect())
}
