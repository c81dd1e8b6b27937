//! The pure parts of the optional LLM judge. The eval engine runs the judge model; this module builds
//! what it is asked, reads what it answers, checks that two calls agree and refuses a judge that
//! misjudges the calibration anchors.
//!
//! Flow for the engine: `build_prompt` → call the judge twice with different seeds → `parse_reply`
//! on each → `agree` → use `Agreement::scores`, report `Agreement::discarded`. Before any of that,
//! judge every anchor of [`crate::calibration::anchors`] the same way and call `check_calibration`.

mod agreement;
mod calibrate;
mod lenient;
pub mod pairwise;
mod parse;
mod prompt;

pub use agreement::{Agreement, Disagreement, MAX_SPREAD, agree};
pub use calibrate::{AnchorJudgement, JudgeRefused, MisjudgedAnchor, check_calibration};
pub use parse::{JudgeDim, JudgeReplyError, JudgeScores, parse_reply};
pub use prompt::{JudgePrompt, build_prompt, prompt_digest};

#[cfg(test)]
mod tests;
