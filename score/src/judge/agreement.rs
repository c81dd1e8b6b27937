//! Self-agreement of two judge calls with different seeds. A dimension whose two scores differ by more
//! than one point is noise, not a judgement: it is discarded and reported, never averaged in.

use super::parse::JudgeScores;
use crate::scores::DimScore;
use crate::suite::{DimId, Rubric};
use serde::{Deserialize, Serialize};

/// Largest difference between the two calls that still counts as agreement.
pub const MAX_SPREAD: u32 = 1;

/// A dimension the two calls disagreed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disagreement {
    pub id: DimId,
    pub first: u32,
    pub second: u32,
}

/// The judge's usable scores and the dimensions it could not agree with itself on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agreement {
    /// Agreed dimensions, D1..D5 order, each with the lower of the two scores.
    pub scores: Vec<DimScore>,
    pub discarded: Vec<Disagreement>,
}

impl Agreement {
    /// Weighted total over all dimensions, or None when a dimension was discarded.
    pub fn total(&self, rubric: &Rubric) -> Option<f64> {
        self.discarded.is_empty().then(|| rubric.total(self.scores.iter().map(|d| (d.id.as_str(), d.score))))
    }
}

/// Combine two parsed replies for the same answer. Where they agree within [`MAX_SPREAD`] the lower
/// score is kept: a gate should not pass on the judge's more generous mood.
pub fn agree(first: &JudgeScores, second: &JudgeScores, rubric: &Rubric) -> Agreement {
    let mut out = Agreement { scores: Vec::new(), discarded: Vec::new() };
    for a in &first.dims {
        let Some(b) = second.dims.iter().find(|b| b.id == a.id) else {
            continue;
        };
        if a.score.abs_diff(b.score) > MAX_SPREAD {
            out.discarded.push(Disagreement { id: a.id.clone(), first: a.score, second: b.score });
            continue;
        }
        let lower = if b.score < a.score { b } else { a };
        let Some(dimension) = rubric.dimension(a.id.as_str()) else {
            continue;
        };
        out.scores.push(DimScore {
            id: a.id.clone(),
            score: lower.score,
            max: dimension.max,
            reason: lower.reason.clone(),
        });
    }
    out
}
