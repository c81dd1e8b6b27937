//! Scorer output: one score per dimension per sample, with reasons and any automatic-zero triggers,
//! grouped by question. This is what the coordinator stores and `gate-rules` aggregates.

use crate::responses::GenerationParams;
use crate::suite::{DimId, Rubric};
use phasegate_rubric::Instrument;
use serde::{Deserialize, Serialize};

/// A dimension's score for one sample, with a one-line reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DimScore {
    pub id: DimId,
    pub score: u32,
    pub max: u32,
    pub reason: String,
}

/// What kind of evidence fired an automatic zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// A phrase listed in the rubric (template token, task-planning phrase, ...).
    Phrase,
    /// A regex listed in the rubric (markdown header, role label, ...).
    Regex,
    /// A long run of words copied from the persona system prompt.
    SystemPromptBleed,
    /// Reported by the producer of the responses file (`d4_auto_fail`).
    Reported,
}

/// An automatic-zero trigger that fired, with the text that fired it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub dim: DimId,
    pub kind: TriggerKind,
    /// The rubric phrase or regex, or the copied words.
    pub pattern: String,
    /// The answer around the match.
    pub excerpt: String,
}

/// All dimension scores of one sampled answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleScore {
    pub qid: String,
    pub sample: u32,
    pub seed: Option<u64>,
    pub response: String,
    pub truncated: bool,
    /// The rubric's dimensions in rubric order.
    pub dims: Vec<DimScore>,
    pub auto_zero: Vec<Trigger>,
    /// Weighted sum of the dimension scores (see [`phasegate_rubric::Rubric::total`]).
    pub total: f64,
    /// Lowest and highest total an answer can score.
    pub min: f64,
    pub max: f64,
}

impl SampleScore {
    /// Total on the 0–10 scale, unrounded.
    pub fn normalized_10(&self) -> f64 {
        ratio_10(self.total - self.min, self.max - self.min)
    }

    pub fn dim(&self, id: &str) -> Option<&DimScore> {
        self.dims.iter().find(|d| d.id.is(id))
    }
}

/// A question with its scored samples, in sample order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredQuestion {
    pub qid: String,
    pub question: String,
    pub samples: Vec<SampleScore>,
}

impl ScoredQuestion {
    /// Mean sample total, unrounded; None without samples.
    pub fn mean_total(&self) -> Option<f64> {
        if self.samples.is_empty() {
            return None;
        }
        let sum: f64 = self.samples.iter().map(|s| s.total).sum();
        Some(sum / self.samples.len() as f64)
    }
}

/// Every sample of one phase, scored. Questions follow the suite's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredPhase {
    pub suite: String,
    pub rubric_version: String,
    pub phase: String,
    pub model: String,
    pub adapter: Option<String>,
    pub timestamp: Option<String>,
    pub generation_params: GenerationParams,
    /// The suite's rubric, recorded with the scores so readers need not load the suite.
    pub rubric: Rubric,
    /// The rules scorer on the suite (or the judge that replaced its scores).
    pub instrument: Instrument,
    pub questions: Vec<ScoredQuestion>,
}

impl ScoredPhase {
    /// Sum of every sample's total over the sum of their maxima, on the 0–10 scale, unrounded.
    /// With the same K for every question this equals the mean of per-question means.
    pub fn normalized_10(&self) -> f64 {
        let samples = || self.questions.iter().flat_map(|q| &q.samples);
        ratio_10(samples().map(|s| s.total - s.min).sum(), samples().map(|s| s.max - s.min).sum())
    }

    /// Every trigger that fired, with the question it fired on.
    pub fn auto_zero_triggers(&self) -> impl Iterator<Item = (&str, &Trigger)> {
        self.questions
            .iter()
            .flat_map(|q| &q.samples)
            .flat_map(|s| s.auto_zero.iter().map(move |t| (s.qid.as_str(), t)))
    }
}

fn ratio_10(total: f64, max: f64) -> f64 {
    if max <= 0.0 {
        return 0.0;
    }
    total * 10.0 / max
}
