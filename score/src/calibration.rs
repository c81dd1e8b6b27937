//! Calibration anchors: hand-written answers stored with the suite's questions, each with the band
//! its score must fall in. They hold the rules scorer to its bands wherever it scores
//! ([`enforce`]: the score job and `phasegate calibrate` refuse a scorer that misses one) and decide
//! whether an LLM judge may be used at all ([`crate::judge::check_calibration`]).
//!
//! Bands on the 0–10 scale: ideal 9–10, generic 2–4, contaminated 0, word salad 0–1, word salad
//! with persona words 0–3, wrong identity 0–3, fluent hallucination 0–5, and a truncated good answer
//! 4–9: cut mid-sentence it loses D5 (at most 9), but what it says before the cut still counts.

use crate::lexicon::Lexicon;
use crate::responses::ResponseRecord;
use crate::scorer::score_sample;
use crate::scores::SampleScore;
use crate::suite::{AnchorKind, Suite};
use serde::{Deserialize, Serialize};

/// An inclusive band on the 0–10 scale.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Band {
    pub min: f64,
    pub max: f64,
}

impl Band {
    pub fn contains(self, score_10: f64) -> bool {
        // Tolerate float noise from normalising totals of rubrics whose maximum is not 10.
        const EPS: f64 = 1e-9;
        score_10 >= self.min - EPS && score_10 <= self.max + EPS
    }
}

impl AnchorKind {
    /// The band an anchor of this kind must score in (see the module docs).
    pub fn band(self) -> Band {
        match self {
            AnchorKind::Ideal => Band { min: 9.0, max: 10.0 },
            AnchorKind::Generic => Band { min: 2.0, max: 4.0 },
            AnchorKind::Contaminated => Band { min: 0.0, max: 0.0 },
            AnchorKind::WordSalad => Band { min: 0.0, max: 1.0 },
            AnchorKind::WordSaladPersona | AnchorKind::WrongIdentity => Band { min: 0.0, max: 3.0 },
            AnchorKind::FluentHallucination => Band { min: 0.0, max: 5.0 },
            AnchorKind::Truncated => Band { min: 4.0, max: 9.0 },
        }
    }
}

/// A calibration anchor with the question it answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anchor {
    pub qid: String,
    pub question: String,
    pub kind: AnchorKind,
    pub text: String,
}

impl Anchor {
    /// The anchor as a response record, ready for [`score_sample`] or a judge prompt.
    pub fn record(&self) -> ResponseRecord {
        ResponseRecord {
            qid: self.qid.clone(),
            question: self.question.clone(),
            response: self.text.clone(),
            sample: 0,
            seed: None,
            // A truncated anchor stands for an answer cut at the token limit.
            truncated: self.kind == AnchorKind::Truncated,
            tokens: None,
            d4_auto_fail: None,
            d4_auto_score: None,
        }
    }
}

/// Every anchor of the suite, in question order.
pub fn anchors(suite: &Suite) -> Vec<Anchor> {
    suite
        .questions
        .iter()
        .flat_map(|q| {
            q.anchors.iter().map(|a| Anchor {
                qid: q.id.clone(),
                question: q.text.clone(),
                kind: a.kind,
                text: a.text.clone(),
            })
        })
        .collect()
}

/// How the deterministic scorer scored one anchor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnchorOutcome {
    pub anchor: Anchor,
    pub score: SampleScore,
    pub within_band: bool,
}

/// Score every anchor with the deterministic scorer.
pub fn check_scorer(suite: &Suite, lexicon: &Lexicon) -> Vec<AnchorOutcome> {
    anchors(suite)
        .into_iter()
        .filter_map(|anchor| {
            let question = suite.question(&anchor.qid)?;
            let score = score_sample(suite, lexicon, question, &anchor.record());
            let within_band = anchor.kind.band().contains(score.normalized_10());
            Some(AnchorOutcome { anchor, score, within_band })
        })
        .collect()
}

/// Anchors of the suite the rules scorer scored outside their bands.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationError {
    pub suite: String,
    pub missed: Vec<AnchorOutcome>,
}

impl std::fmt::Display for CalibrationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.missed.len();
        write!(f, "the rules scorer misses {n} calibration anchor(s) of suite {}: ", self.suite)?;
        let each: Vec<String> = self
            .missed
            .iter()
            .map(|o| {
                let band = o.anchor.kind.band();
                format!(
                    "{} {} anchor scored {:.1}/10, band {}..={}",
                    o.anchor.qid,
                    o.anchor.kind.as_str(),
                    o.score.normalized_10(),
                    band.min,
                    band.max
                )
            })
            .collect();
        f.write_str(&each.join("; "))
    }
}

impl std::error::Error for CalibrationError {}

/// Fails naming every anchor the rules scorer scores outside its band: scores of a scorer that
/// misjudges the suite's own anchors mean nothing.
pub fn enforce(suite: &Suite, lexicon: &Lexicon) -> Result<(), CalibrationError> {
    let missed: Vec<AnchorOutcome> = check_scorer(suite, lexicon).into_iter().filter(|o| !o.within_band).collect();
    if missed.is_empty() { Ok(()) } else { Err(CalibrationError { suite: suite.name.clone(), missed }) }
}

#[cfg(test)]
mod tests;
