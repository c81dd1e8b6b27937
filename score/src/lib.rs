//! phasegate-score owns the eval suite format (persona, rubric, questions, calibration anchors), the
//! eval responses file format, the deterministic rubric scorer and the pure parts of the optional LLM
//! judge (prompt building, reply parsing, self-agreement and calibration checks).
//!
//! It does not generate text, call a judge model, store scores or decide whether a phase regressed:
//! the eval engine runs models, the coordinator stores results and `gate-rules` judges phases. The only
//! I/O here is [`Suite::load`], [`Responses::load`] and [`Lexicon::load`], thin wrappers over the pure
//! parsers.

pub mod agreement;
pub mod calibration;
mod error;
pub mod judge;
mod lang;
mod lexicon;
mod responses;
mod scorer;
mod scores;
mod suite;
#[cfg(test)]
mod test_support;
mod text;

pub use error::{LexiconError, ResponsesError, ScoreError, SuiteError, SuiteProblem};
pub use lang::Language;
pub use lexicon::{Lexicon, dictionary_dir, dictionary_package};
pub use phasegate_rubric::{Instrument, InstrumentKind};
pub use responses::{GenerationParams, ResponseRecord, Responses, Timing};
pub use scorer::{RULES_VERSION, check_rules, instrument, score_phase, score_sample};
pub use scores::{DimScore, SampleScore, ScoredPhase, ScoredQuestion, Trigger, TriggerKind};
pub use suite::{
    AnchorKind, AnchorText, AutoZeroScope, Check, CleanlinessRules, DimId, Dimension, DimensionRules, FactsRules,
    IdentityRules, Persona, QualityRules, Question, Rubric, Rules, Suite, TriggerPattern, VoiceRules,
};
