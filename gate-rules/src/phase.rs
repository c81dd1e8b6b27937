//! The phase record: everything the gate knows about one phase of an experiment.
//!
//! Scores are stored as the rubric produced them (points per sample, with the per-dimension detail
//! as evidence) and are only normalised to the 0–10 scale when compared. Nothing here rounds.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use phasegate_rubric::{Instrument, Rubric};
use serde::{Deserialize, Serialize};

use crate::rubric::{AutoZeroHit, DimensionScore};

/// One phase of an experiment: a training run plus its evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    pub experiment: String,
    pub label: String,
    /// Position in the experiment's history. The gate orders history by `(ordinal, label)` and never
    /// by the order of the slice it is given, so verdicts do not depend on how the store lists phases.
    pub ordinal: u64,
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub accepted: bool,
    /// Training configuration in the order the source listed it (max_length, epochs, ...).
    #[serde(default)]
    pub config: Vec<ConfigEntry>,
    #[serde(default)]
    pub dataset: Option<DatasetInfo>,
    #[serde(default)]
    pub training: TrainingMetrics,
    /// Evaluation per question, in natural question order (Q1, Q2, ..., Q10).
    #[serde(default)]
    pub eval: Vec<QuestionEval>,
    /// Generation parameters of the eval (max_new_tokens, repetition_penalty, ...).
    #[serde(default)]
    pub generation: Vec<ConfigEntry>,
    /// Environment fingerprint: GPU, driver, CUDA, library versions, dtype, batch size.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub notes: Vec<String>,
    /// The rubric the scores follow; `None` for phases stored before rubrics were recorded (they
    /// follow [`Rubric::persona_v1`]) and for totals-only imports.
    #[serde(default)]
    pub rubric: Option<Rubric>,
    /// What produced the scores; `None` for phases stored before instruments were recorded
    /// (see [`Phase::instrument`]).
    #[serde(default)]
    pub instrument: Option<Instrument>,
    /// Set when the scores were re-derived from the stored responses by `instrument`: the
    /// instrument that scored them first.
    #[serde(default)]
    pub rescored_from: Option<Instrument>,
    /// Scores the phase had before it was re-scored, oldest first: nothing re-scoring replaces
    /// is lost.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_scores: Vec<EarlierScores>,
    /// A judge's preference between this phase's answers and a baseline phase's, question by
    /// question (the score stage's `pairwise` mode); compared by the `pairwise` rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairwise: Option<Preferences>,
}

/// What pairwise judging found: for each question, the judge's preference between this phase's
/// answers and the baseline phase's, asked in both orders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preferences {
    /// The baseline phase's label.
    pub baseline: String,
    /// The judge: its model, and where a judge server answered.
    pub judge: String,
    /// In the file's order.
    pub questions: Vec<QuestionPreference>,
}

/// The judge's preference on one question, in [−1, 1]: above 0 this phase's answers, below 0
/// the baseline's; `None` when no pair of answers had readable replies in both orders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionPreference {
    pub qid: String,
    pub preference: Option<f64>,
    /// Pairs of answers compared.
    #[serde(default)]
    pub pairs: u64,
}

/// One earlier scoring of a phase's samples, kept when `phasegate rescore` re-scores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlierScores {
    pub instrument: Instrument,
    #[serde(default)]
    pub rubric: Option<Rubric>,
    pub eval: Vec<QuestionEval>,
}

/// One ordered configuration key with its value as written by the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigEntry {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub digest: Option<String>,
    pub size: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingMetrics {
    pub final_loss: Option<f64>,
    #[serde(default)]
    pub loss_curve: Vec<LossPoint>,
    pub vram_peak_mib: Option<u64>,
    pub duration_secs: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossPoint {
    pub step: u64,
    pub loss: f64,
}

/// The K samples drawn for one eval question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionEval {
    pub id: String,
    #[serde(default)]
    pub question: String,
    /// Most points one sample can earn (the rubric's question maximum, 10 by default).
    pub max_points: f64,
    /// Fewest points one sample can earn (the rubric's question minimum, 0 by default).
    #[serde(default)]
    pub min_points: f64,
    pub samples: Vec<Sample>,
}

/// One generated response and its rubric score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    #[serde(default)]
    pub seed: Option<u64>,
    /// Total points after the rubric's aggregation (automatic zeros applied).
    pub points: f64,
    #[serde(default)]
    pub dimensions: Vec<DimensionScore>,
    #[serde(default)]
    pub response: Option<String>,
    #[serde(default)]
    pub truncated: bool,
    #[serde(default)]
    pub auto_zero: Vec<AutoZeroHit>,
}

impl Phase {
    /// An empty phase, for builders and importers.
    pub fn new(experiment: &str, label: &str, ordinal: u64) -> Phase {
        Phase {
            experiment: experiment.to_owned(),
            label: label.to_owned(),
            ordinal,
            parent: None,
            accepted: false,
            config: Vec::new(),
            dataset: None,
            training: TrainingMetrics::default(),
            eval: Vec::new(),
            generation: Vec::new(),
            environment: BTreeMap::new(),
            notes: Vec::new(),
            rubric: None,
            instrument: None,
            rescored_from: None,
            earlier_scores: Vec::new(),
            pairwise: None,
        }
    }

    /// The rubric the scores follow: the recorded one, else persona v1 (D1..D5, 0–2), the only
    /// rubric there was before rubrics were recorded.
    pub fn rubric(&self) -> Rubric {
        self.rubric.clone().unwrap_or_else(Rubric::persona_v1)
    }

    /// What produced the scores: the recorded instrument, else what an import without
    /// `--scorer` assumes: people when samples carry per-dimension scores, imported totals when
    /// they carry totals only.
    pub fn instrument(&self) -> Instrument {
        if let Some(i) = &self.instrument {
            return i.clone();
        }
        let per_dimension = self.eval.iter().flat_map(|q| &q.samples).any(|s| !s.dimensions.is_empty());
        if per_dimension { Instrument::Human } else { Instrument::Imported }
    }

    /// Whether the phase keeps a response for every sample, so another instrument can score it.
    pub fn has_responses(&self) -> bool {
        let mut samples = self.eval.iter().flat_map(|q| &q.samples).peekable();
        samples.peek().is_some() && samples.all(|s| s.response.is_some())
    }

    /// Phase score on the 0–10 scale: points above the minimum over the range, times ten, using
    /// the mean over the K samples of each question. `None` when no question has a sample.
    pub fn score(&self) -> Option<f64> {
        let (raw, range) = self
            .eval
            .iter()
            .filter_map(|q| Some((q.mean_points()? - q.min_points, q.range())))
            .fold((0.0, 0.0), |(r, m), (p, qm)| (r + p, m + qm));
        (range > 0.0).then(|| raw / range * 10.0)
    }

    pub fn question(&self, id: &str) -> Option<&QuestionEval> {
        self.eval.iter().find(|q| q.id == id)
    }

    pub fn config_value(&self, key: &str) -> Option<&str> {
        self.config.iter().find(|e| e.key == key).map(|e| e.value.as_str())
    }

    /// Total order used everywhere history is sorted.
    pub(crate) fn history_order(a: &Phase, b: &Phase) -> Ordering {
        a.ordinal.cmp(&b.ordinal).then_with(|| natural_cmp(&a.label, &b.label))
    }
}

impl QuestionEval {
    pub fn mean_points(&self) -> Option<f64> {
        mean(self.samples.iter().map(|s| s.points))
    }

    /// Points between the fewest and the most one sample can earn.
    pub fn range(&self) -> f64 {
        self.max_points - self.min_points
    }

    /// Mean score on the 0–10 scale; `None` without samples or with an empty range.
    pub fn normalized(&self) -> Option<f64> {
        let mean = self.mean_points()?;
        (self.range() > 0.0).then(|| (mean - self.min_points) / self.range() * 10.0)
    }

    /// Every sample's score on the 0–10 scale (empty with an empty range).
    pub(crate) fn normalized_samples(&self) -> Vec<f64> {
        if self.range() <= 0.0 {
            return Vec::new();
        }
        self.samples.iter().map(|s| (s.points - self.min_points) / self.range() * 10.0).collect()
    }
}

pub(crate) fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// Compares "Q2" < "Q10" and "phase9" < "phase10": runs of digits compare as numbers.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (a.chars().next(), b.chars().next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let (na, ra) = split_digits(a);
                let (nb, rb) = split_digits(b);
                let by_number = na
                    .trim_start_matches('0')
                    .len()
                    .cmp(&nb.trim_start_matches('0').len())
                    .then_with(|| na.trim_start_matches('0').cmp(nb.trim_start_matches('0')));
                if by_number != Ordering::Equal {
                    return by_number;
                }
                (a, b) = (ra, rb);
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(&y);
                }
                (a, b) = (&a[x.len_utf8()..], &b[y.len_utf8()..]);
            }
        }
    }
}

fn split_digits(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(end)
}

/// The number a phase label carries ("9", "phase9", "Phase 9" → 9), used as the default ordinal.
pub fn ordinal_from_label(label: &str) -> Option<u64> {
    let digits: String =
        label.chars().rev().skip_while(|c| !c.is_ascii_digit()).take_while(char::is_ascii_digit).collect();
    digits.chars().rev().collect::<String>().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_compares_digit_runs_as_numbers() {
        let mut ids = vec!["Q10", "Q2", "Q1", "Q02b"];
        ids.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(ids, ["Q1", "Q2", "Q02b", "Q10"]);
    }

    #[test]
    fn ordinal_is_the_last_number_in_the_label() {
        assert_eq!(ordinal_from_label("9"), Some(9));
        assert_eq!(ordinal_from_label("Phase 10"), Some(10));
        assert_eq!(ordinal_from_label("phase9-rerun"), Some(9));
        assert_eq!(ordinal_from_label("baseline"), None);
    }

    #[test]
    fn score_is_raw_over_max_without_rounding() {
        let mut phase = Phase::new("e", "8", 8);
        for (i, points) in [3.0, 5.0, 3.0, 5.0, 1.0, 4.0, 2.0, 3.0].into_iter().enumerate() {
            phase.eval.push(QuestionEval {
                id: format!("Q{}", i + 1),
                question: String::new(),
                max_points: 10.0,
                min_points: 0.0,
                samples: vec![Sample {
                    seed: None,
                    points,
                    dimensions: Vec::new(),
                    response: None,
                    truncated: false,
                    auto_zero: Vec::new(),
                }],
            });
        }
        assert_eq!(phase.score(), Some(26.0 / 80.0 * 10.0));
    }

    #[test]
    fn phase_without_samples_has_no_score() {
        assert_eq!(Phase::new("e", "1", 1).score(), None);
    }
}
