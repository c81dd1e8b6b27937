//! A judge with canned replies that records every request, for tests of the judge flow and of the
//! score job.

use std::collections::BTreeMap;

use phasegate_score::calibration::anchors;
use phasegate_score::judge::JudgeRefused;
use phasegate_score::{AnchorKind, Suite};

use super::backend::{BackendError, JudgeBackend, JudgeCall};

type Replies = Box<dyn FnMut(&JudgeCall, u64) -> String + Send>;

/// Replies from a closure of (call, seed); records (call id, seed, max_new_tokens) per call and the
/// size of every request.
pub(crate) struct FakeJudge {
    replies: Replies,
    pub(crate) calls: Vec<(String, u64, usize)>,
    pub(crate) requests: Vec<usize>,
    /// Calls whose id starts with this do not fit the judge's context (`check_fits`).
    pub(crate) too_long: Option<String>,
}

impl FakeJudge {
    pub(crate) fn new(replies: impl FnMut(&JudgeCall, u64) -> String + Send + 'static) -> Self {
        Self { replies: Box::new(replies), calls: Vec::new(), requests: Vec::new(), too_long: None }
    }

    /// Anchors scored by `anchor(kind)` on both calls, answers by `answer(call id, seed)`.
    pub(crate) fn with(
        suite: &Suite,
        anchor: impl Fn(AnchorKind) -> [u32; 5] + Send + 'static,
        mut answer: impl FnMut(&str, u64) -> String + Send + 'static,
    ) -> Self {
        let kinds = anchor_kinds(suite);
        Self::new(move |call, seed| match kinds.get(&call.id) {
            Some(kind) => reply(anchor(*kind)),
            None => answer(&call.id, seed),
        })
    }

    /// The ids of the calls made with `seed`, in order.
    pub(crate) fn ids_with_seed(&self, seed: u64) -> Vec<&str> {
        self.calls.iter().filter(|c| c.1 == seed).map(|c| c.0.as_str()).collect()
    }
}

impl JudgeBackend for FakeJudge {
    fn check_fits(&self, calls: &[JudgeCall], max_new_tokens: usize) -> Result<(), JudgeRefused> {
        let Some(prefix) = &self.too_long else { return Ok(()) };
        match calls.iter().find(|c| c.id.starts_with(prefix.as_str())) {
            Some(call) => Err(JudgeRefused::PromptTooLong {
                call: call.id.clone(),
                prompt_tokens: 5000,
                max_new_tokens,
                context: 4096,
            }),
            None => Ok(()),
        }
    }

    fn generate(&mut self, calls: &[JudgeCall], seed: u64, max_new_tokens: usize) -> Result<Vec<String>, BackendError> {
        self.requests.push(calls.len());
        Ok(calls
            .iter()
            .map(|c| {
                self.calls.push((c.id.clone(), seed, max_new_tokens));
                (self.replies)(c, seed)
            })
            .collect())
    }
}

/// The call id of every anchor, as the flow names them, with its kind.
fn anchor_kinds(suite: &Suite) -> BTreeMap<String, AnchorKind> {
    anchors(suite).into_iter().enumerate().map(|(i, a)| (format!("anchor/{}/{i}", a.qid), a.kind)).collect()
}

/// A well-formed reply with these D1..D5 scores.
pub(crate) fn reply(scores: [u32; 5]) -> String {
    let dims: Vec<String> = scores
        .iter()
        .enumerate()
        .map(|(i, s)| format!("\"D{}\": {{\"score\": {s}, \"reason\": \"r{s}\"}}", i + 1))
        .collect();
    format!("{{{}}}", dims.join(", "))
}

/// Anchor scores a calibrated judge gives: ideal 9/10, generic 3/10, contaminated 0/10.
pub(crate) fn faithful(kind: AnchorKind) -> [u32; 5] {
    match kind {
        AnchorKind::Ideal => [2, 2, 2, 2, 1],
        AnchorKind::Generic => [0, 0, 1, 2, 0],
        AnchorKind::Contaminated | AnchorKind::WordSalad => [0; 5],
        AnchorKind::WordSaladPersona | AnchorKind::WrongIdentity => [0, 0, 0, 2, 0],
        AnchorKind::FluentHallucination => [1, 0, 1, 2, 1],
        AnchorKind::Truncated => [2, 2, 2, 2, 1],
    }
}

/// The rule scores of `answer(sample)` given as samples 0 and 1 of every question of `suite`.
pub(crate) fn two_samples_per_question(suite: &Suite, answer: impl Fn(u32) -> String) -> phasegate_score::ScoredPhase {
    let results = suite
        .questions
        .iter()
        .flat_map(|q| {
            (0..2u32).map(|sample| phasegate_score::ResponseRecord {
                qid: q.id.clone(),
                question: q.text.clone(),
                response: answer(sample),
                sample,
                seed: Some(u64::from(sample)),
                truncated: false,
                tokens: Some(20),
                d4_auto_fail: None,
                d4_auto_score: None,
            })
        })
        .collect();
    let responses = phasegate_score::Responses {
        phase: "10".into(),
        model: "tiny".into(),
        adapter: None,
        timestamp: None,
        generation_params: Default::default(),
        results,
        timing: None,
        peak_rss_mib: None,
    };
    phasegate_score::score_phase(suite, &lexicon(suite), &responses).unwrap()
}

/// A tiny in-memory dictionary for tests: the agent's tests need no downloaded one.
pub(crate) fn lexicon(suite: &Suite) -> phasegate_score::Lexicon {
    const AFF: &str = "SET UTF-8\n";
    const DIC: &str = "6\neu\nsou\na\ne\ntrabalho\ncom\n";
    phasegate_score::Lexicon::from_hunspell(AFF, DIC, suite).expect("tiny dictionary")
}
