//! The deterministic scorer: each rubric dimension is scored by the check the suite gives it
//! (identity, facts, voice, cleanliness, quality), each giving a level 0–2 with a one-line reason
//! that is mapped onto the dimension's range; automatic-zero triggers are applied on top.
//!
//! Every answer is analysed once ([`answer`]): its spelling against the suite language's dictionary
//! ([`spelling`], [`salad`]), the names it uses that the suite does not know ([`entities`]),
//! repeated and taken-back statements ([`coherence`]) and the persona evidence in it ([`evidence`]).
//! Absence of evidence is not full marks: word salad scores zero on D1, D2, D3 and D5, a fact no
//! answer states is missing, and one marker phrase does not make a persona voice.
//!
//! Automatic zeros: by default (`auto_zero_scope = "answer"`) a trigger zeroes the whole answer, not
//! only its dimension. An answer that leaks template tokens, narrates an agent's plan or recites the
//! system prompt is unusable as a persona answer however correct its facts are, and the calibration
//! requires such an answer to score 0/10. A suite can set `auto_zero_scope = "dimension"` to zero only
//! the dimension whose trigger fired.

mod answer;
mod cleanliness;
mod coherence;
mod entities;
mod evidence;
mod facts;
mod identity;
mod phase;
mod quality;
mod salad;
mod spelling;
mod triggers;
mod voice;

pub use phase::score_phase;

use crate::error::ScoreError;
use crate::lexicon::Lexicon;
use crate::responses::ResponseRecord;
use crate::scores::{DimScore, SampleScore, Trigger};
use crate::suite::{AutoZeroScope, Check, Dimension, Question, Suite};
use answer::Answer;
use phasegate_rubric::Instrument;

/// Version of the rules scorer. Bump it with every change that can change a score: phases scored
/// by another version are another instrument, and the gate re-scores their stored responses.
pub const RULES_VERSION: &str = "2";

/// The rules scorer on `suite`, as phases record it.
pub fn instrument(suite: &Suite) -> Instrument {
    Instrument::Rules { version: RULES_VERSION.to_owned(), suite_digest: suite.digest.clone() }
}

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

/// Score one sampled answer to `question`. Pure and deterministic. Every rubric dimension needs
/// a rules check ([`check_rules`] says which does not).
pub fn score_sample(suite: &Suite, lexicon: &Lexicon, question: &Question, record: &ResponseRecord) -> SampleScore {
    let answer = Answer::new(&record.response, record.truncated, suite, lexicon, question);
    let auto_zero = triggers::find(suite, &answer, record.d4_auto_fail.as_deref());
    let dims: Vec<DimScore> = suite
        .rubric
        .dimensions()
        .iter()
        .zip(&suite.rules.dimensions)
        .map(|(d, rules)| dim_score(suite, d, rate(suite, rules.check, question, &answer), &auto_zero))
        .collect();
    SampleScore {
        qid: record.qid.clone(),
        sample: record.sample,
        seed: record.seed,
        response: record.response.clone(),
        truncated: record.truncated,
        total: suite.rubric.total(dims.iter().map(|d| (d.id.as_str(), d.score))),
        min: suite.rubric.question_min(),
        max: suite.rubric.question_max(),
        dims,
        auto_zero,
    }
}

/// Fails naming the first rubric dimension the rules scorer has no check for.
pub fn check_rules(suite: &Suite) -> Result<(), ScoreError> {
    match suite.rules.dimensions.iter().find(|d| d.check.is_none()) {
        Some(d) => Err(ScoreError::NoRulesCheck { id: d.id.to_string(), suite: suite.name.clone() }),
        None => Ok(()),
    }
}

fn rate(suite: &Suite, check: Option<Check>, question: &Question, answer: &Answer) -> Rated {
    if answer.is_empty() {
        return Rated::new(0, "empty answer");
    }
    let persona = suite.persona.as_ref();
    match (check, persona) {
        (Some(Check::Identity), Some(p)) => identity::rate(suite, p, question, answer),
        (Some(Check::Facts), _) => facts::rate(&suite.rules.facts, question, answer),
        (Some(Check::Voice), Some(p)) => voice::rate(suite, p, answer),
        (Some(Check::Cleanliness), _) => cleanliness::rate(&suite.rules.cleanliness, answer),
        (Some(Check::Quality), _) => quality::rate(&suite.rules.quality, question, answer),
        // Suite validation refuses identity and voice checks without a persona, and scoring
        // refuses dimensions without a check (`check_rules`).
        (Some(c), None) => Rated::new(0, format!("the {} check needs a persona", c.as_str())),
        (None, _) => Rated::new(0, "no rules check for this dimension"),
    }
}

/// A rule's level (0 bad, 1 partial, 2 good) on the dimension's range.
fn scale(d: &Dimension, level: u8) -> u32 {
    d.min + (d.max - d.min) * u32::from(level.min(2)) / 2
}

fn dim_score(suite: &Suite, d: &Dimension, rated: Rated, triggers: &[Trigger]) -> DimScore {
    let own = triggers.iter().find(|t| t.dim == d.id);
    let zeroing = match suite.rules.auto_zero_scope {
        AutoZeroScope::Answer => own.or(triggers.first()),
        AutoZeroScope::Dimension => own,
    };
    let (score, reason) = match zeroing {
        Some(t) if t.dim == d.id => (d.min, format!("automatic zero: {:?}", t.pattern)),
        Some(t) => (d.min, format!("automatic zero from {}: {:?}", t.dim, t.pattern)),
        None => (scale(d, rated.level), rated.reason),
    };
    DimScore { id: d.id.clone(), score, max: d.max, reason }
}

#[cfg(test)]
mod tests;
