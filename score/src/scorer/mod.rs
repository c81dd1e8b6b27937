//! The deterministic scorer: one rule per dimension, each giving a level 0–2 with a one-line reason,
//! then automatic-zero triggers applied on top.
//!
//! Automatic zeros: by default (`auto_zero_scope = "answer"`) a trigger zeroes the whole answer, not
//! only its dimension. An answer that leaks template tokens, narrates an agent's plan or recites the
//! system prompt is unusable as a persona answer however correct its facts are, and the calibration
//! requires such an answer to score 0/10. A suite can set `auto_zero_scope = "dimension"` to zero only
//! the dimension whose trigger fired.

mod answer;
mod cleanliness;
mod facts;
mod identity;
mod phase;
mod quality;
mod triggers;
mod voice;

pub use phase::score_phase;

use crate::responses::ResponseRecord;
use crate::scores::{DimScore, SampleScore, Trigger};
use crate::suite::{AutoZeroScope, DimId, Question, Rubric, Suite};
use answer::Answer;

/// A rule's verdict before it is mapped onto the dimension's range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rated {
    /// 0 bad, 1 partial, 2 good.
    pub(crate) level: u8,
    pub(crate) reason: String,
}

impl Rated {
    pub(crate) fn new(level: u8, reason: impl Into<String>) -> Self {
        Self { level, reason: reason.into() }
    }
}

/// Score one sampled answer to `question`. Pure and deterministic.
pub fn score_sample(suite: &Suite, question: &Question, record: &ResponseRecord) -> SampleScore {
    let answer = Answer::new(&record.response, record.truncated);
    let auto_zero = triggers::find(suite, &answer, record.d4_auto_fail.as_deref());
    let rated = rate_all(suite, question, &answer);
    let dims: Vec<DimScore> =
        DimId::ALL.into_iter().zip(rated).map(|(id, r)| dim_score(&suite.rubric, id, r, &auto_zero)).collect();
    SampleScore {
        qid: record.qid.clone(),
        sample: record.sample,
        seed: record.seed,
        response: record.response.clone(),
        truncated: record.truncated,
        total: dims.iter().map(|d| d.score).sum(),
        max: suite.rubric.max_total(),
        dims,
        auto_zero,
    }
}

fn rate_all(suite: &Suite, question: &Question, answer: &Answer) -> [Rated; 5] {
    if answer.is_empty() {
        return std::array::from_fn(|_| Rated::new(0, "empty answer"));
    }
    [
        identity::rate(&suite.persona, &suite.rubric.identity, question, answer),
        facts::rate(question, answer),
        voice::rate(suite, answer),
        cleanliness::rate(&suite.rubric.cleanliness, answer),
        quality::rate(&suite.rubric.quality, question, answer),
    ]
}

fn dim_score(rubric: &Rubric, id: DimId, rated: Rated, triggers: &[Trigger]) -> DimScore {
    let dimension = rubric.dimension(id);
    let own = triggers.iter().find(|t| t.dim == id);
    let zeroing = match rubric.auto_zero_scope {
        AutoZeroScope::Answer => own.or(triggers.first()),
        AutoZeroScope::Dimension => own,
    };
    let (score, reason) = match zeroing {
        Some(t) if t.dim == id => (dimension.min, format!("automatic zero: {:?}", t.pattern)),
        Some(t) => (dimension.min, format!("automatic zero from {}: {:?}", t.dim, t.pattern)),
        None => (dimension.scale(rated.level), rated.reason),
    };
    DimScore { id, score, max: dimension.max, reason }
}

#[cfg(test)]
mod tests;
