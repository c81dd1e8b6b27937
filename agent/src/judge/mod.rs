//! The optional LLM judge of the score stage (`score.mode = "judge" | "both"`): a judge model
//! behind [`JudgeBackend`] scores each answer twice with different seeds after passing calibration
//! on the suite's anchors. The pure pieces (prompt, reply parsing, agreement, calibration check)
//! are `phasegate_score::judge`; this module runs them against a model and shapes what the scores
//! file records ([`JudgeReport`]). The judge is an in-process model ([`EngineBackend`]) or an
//! OpenAI-compatible server ([`http::HttpBackend`], `score.judge_endpoint`); [`pairwise`] compares
//! two answers with either.

mod backend;
mod flow;
pub(crate) mod http;
pub(crate) mod pairwise;
mod record;

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;

pub(crate) use backend::{BackendError, EngineBackend, JudgeBackend, JudgeCall};
pub(crate) use flow::{JudgeSettings, calibrate, check_sample_fits, judge_samples};
pub(crate) use record::{JudgeOutcome, JudgeReport};

/// Judge calls per backend request (one engine batch); progress is reported after each.
pub(crate) const JUDGE_BATCH: usize = 16;
