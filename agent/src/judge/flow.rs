//! The judge flow over a [`JudgeBackend`]: calibrate on the suite's anchors, then judge every
//! sample twice, once per seed, and keep what the two calls agree on. Nothing here does I/O but the
//! backend's calls; what to do with the outcome (fail, record, fall back) is the caller's.

use phasegate_score::calibration::{Anchor, anchors};
use phasegate_score::judge::{
    Agreement, AnchorJudgement, JudgeRefused, JudgeReplyError, agree, build_prompt, check_calibration, parse_reply,
};
use phasegate_score::{Rubric, ScoredPhase, Suite};

use super::backend::{BackendError, JudgeBackend, JudgeCall};

/// How the judge is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JudgeSettings {
    /// Every prompt is judged once with each seed.
    pub(crate) seeds: [u64; 2],
    pub(crate) max_new_tokens: usize,
    /// Calls per backend request; progress is reported after each.
    pub(crate) batch: usize,
}

/// One of a sample's two replies that could not be read as scores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unreadable {
    /// The seed of the unreadable call (the first one when both are).
    pub(crate) seed: u64,
    pub(crate) error: JudgeReplyError,
}

/// The judge's view of one sample: what its two calls agreed on, or an unreadable reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SampleJudgement {
    pub(crate) qid: String,
    pub(crate) sample: u32,
    pub(crate) outcome: Result<Agreement, Unreadable>,
}

impl SampleJudgement {
    /// The agreed scores when every dimension was agreed on; None when a dimension was discarded or
    /// a reply was unreadable.
    pub(crate) fn complete(&self) -> Option<&Agreement> {
        self.outcome.as_ref().ok().filter(|a| a.discarded.is_empty())
    }
}

/// Judges every calibration anchor of the suite (both seeds) and checks each lands in its band;
/// a judge whose context cannot hold an anchor's prompt is refused before any call. The outer
/// error is a backend failure; the inner one the judge's refusal.
pub(crate) fn calibrate(
    backend: &mut dyn JudgeBackend,
    suite: &Suite,
    settings: &JudgeSettings,
    progress: &mut dyn FnMut(String),
) -> Result<Result<usize, JudgeRefused>, BackendError> {
    let (judged_anchors, calls) = anchor_calls(suite);
    if let Err(refused) = backend.check_fits(&calls, settings.max_new_tokens) {
        return Ok(Err(refused));
    }
    let outcomes = judge_twice(backend, &calls, &suite.rubric, settings, "calibration", progress)?;
    let judged: Vec<AnchorJudgement> = judged_anchors
        .into_iter()
        .zip(outcomes)
        .map(|(anchor, outcome)| AnchorJudgement { anchor, agreement: outcome.map_err(|u| u.error) })
        .collect();
    Ok(check_calibration(&suite.rubric, &judged).map(|()| judged.len()))
}

/// The calibration anchors and their judge calls.
fn anchor_calls(suite: &Suite) -> (Vec<Anchor>, Vec<JudgeCall>) {
    let mut judged_anchors = Vec::new();
    let mut calls = Vec::new();
    for (i, anchor) in anchors(suite).into_iter().enumerate() {
        let Some(question) = suite.question(&anchor.qid) else { continue };
        let prompt = build_prompt(suite, question, &anchor.text);
        calls.push(JudgeCall { id: format!("anchor/{}/{i}", anchor.qid), prompt });
        judged_anchors.push(anchor);
    }
    (judged_anchors, calls)
}

/// The (question, sample) keys of a scored phase and their judge calls, in the phase's order.
fn sample_calls(suite: &Suite, scored: &ScoredPhase) -> (Vec<(String, u32)>, Vec<JudgeCall>) {
    let mut keys = Vec::new();
    let mut calls = Vec::new();
    for q in &scored.questions {
        let Some(question) = suite.question(&q.qid) else { continue };
        for s in &q.samples {
            let prompt = build_prompt(suite, question, &s.response);
            calls.push(JudgeCall { id: format!("{}/{}", q.qid, s.sample), prompt });
            keys.push((q.qid.clone(), s.sample));
        }
    }
    (keys, calls)
}

/// Refuses a judge whose context cannot hold the prompt of every sample of the phase (the
/// calibration checks its own prompts).
pub(crate) fn check_sample_fits(
    backend: &dyn JudgeBackend,
    suite: &Suite,
    scored: &ScoredPhase,
    settings: &JudgeSettings,
) -> Result<(), JudgeRefused> {
    backend.check_fits(&sample_calls(suite, scored).1, settings.max_new_tokens)
}

/// Judges every (question, sample) of a scored phase twice, in the phase's order.
pub(crate) fn judge_samples(
    backend: &mut dyn JudgeBackend,
    suite: &Suite,
    scored: &ScoredPhase,
    settings: &JudgeSettings,
    progress: &mut dyn FnMut(String),
) -> Result<Vec<SampleJudgement>, BackendError> {
    let (keys, calls) = sample_calls(suite, scored);
    let outcomes = judge_twice(backend, &calls, &suite.rubric, settings, "answers", progress)?;
    Ok(keys
        .into_iter()
        .zip(outcomes)
        .map(|((qid, sample), outcome)| SampleJudgement { qid, sample, outcome })
        .collect())
}

/// Every call with the first seed, then with the second; each pair parsed and combined.
fn judge_twice(
    backend: &mut dyn JudgeBackend,
    calls: &[JudgeCall],
    rubric: &Rubric,
    settings: &JudgeSettings,
    what: &str,
    progress: &mut dyn FnMut(String),
) -> Result<Vec<Result<Agreement, Unreadable>>, BackendError> {
    let total = calls.len() * 2;
    let mut done = 0;
    let mut replies: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for (seed, out) in settings.seeds.iter().zip(&mut replies) {
        for chunk in calls.chunks(settings.batch.max(1)) {
            let got = backend.generate(chunk, *seed, settings.max_new_tokens)?;
            if got.len() != chunk.len() {
                return Err(BackendError(format!(
                    "the judge returned {} replies for {} prompts",
                    got.len(),
                    chunk.len()
                )));
            }
            out.extend(got);
            done += chunk.len();
            progress(format!("judge: {what} {done}/{total} calls done"));
        }
    }
    let [first, second] = settings.seeds;
    let read = |reply: &str, seed: u64| parse_reply(reply, rubric).map_err(|error| Unreadable { seed, error });
    Ok(replies[0]
        .iter()
        .zip(&replies[1])
        .map(|(a, b)| Ok(agree(&read(a, first)?, &read(b, second)?, rubric)))
        .collect())
}
