//! Calibration anchors: hand-written answers stored with the suite's questions, each with the band
//! its score must fall in. They pin the deterministic scorer in tests and decide whether an LLM
//! judge may be used at all ([`crate::judge::check_calibration`]).

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
    /// The band an anchor of this kind must score in: ideal ≥ 9, generic ≈ 3 (2–4), contaminated 0.
    pub fn band(self) -> Band {
        match self {
            AnchorKind::Ideal => Band { min: 9.0, max: 10.0 },
            AnchorKind::Generic => Band { min: 2.0, max: 4.0 },
            AnchorKind::Contaminated => Band { min: 0.0, max: 0.0 },
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
            truncated: false,
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
pub fn check_scorer(suite: &Suite) -> Vec<AnchorOutcome> {
    anchors(suite)
        .into_iter()
        .filter_map(|anchor| {
            let question = suite.question(&anchor.qid)?;
            let score = score_sample(suite, question, &anchor.record());
            let within_band = anchor.kind.band().contains(score.normalized_10());
            Some(AnchorOutcome { anchor, score, within_band })
        })
        .collect()
}

#[cfg(test)]
mod tests;
