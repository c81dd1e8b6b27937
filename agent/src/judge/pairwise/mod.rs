//! Pairwise judging over a [`JudgeBackend`] (in process or a judge server): each candidate sample
//! against the baseline's sample of the same index for the same question, asked in both orders
//! with the first judge seed. The pure parts (prompt, reply, both-order aggregation) are
//! `phasegate_score::judge::pairwise`; the per-question preferences feed
//! `gate_rules::preference_p_value` ([`PairwiseReport`]). The baseline's answers come from the
//! spec's `score.baseline_responses`.

use phasegate_score::judge::pairwise::{
    Order, PairwiseReplyError, both_orders, build_pairwise_prompt, pair_preference, parse_pairwise_reply,
    question_preference,
};
use phasegate_score::{ScoredPhase, Suite};

use super::backend::{BackendError, JudgeBackend, JudgeCall};
use super::flow::JudgeSettings;

mod record;
pub(crate) use record::PairwiseReport;

/// One pair whose reply in one order could not be read; the pair is left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnreadablePair {
    pub(crate) sample: u32,
    pub(crate) order: Order,
    pub(crate) error: PairwiseReplyError,
}

/// The judge's preference between candidate and baseline on one question.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QuestionPreference {
    pub(crate) qid: String,
    /// Mean over the readable pairs, in [−1, 1] (above 0: the candidate); None when none was.
    pub(crate) preference: Option<f64>,
    pub(crate) pairs: usize,
    /// Dimensions, over all pairs, where the two orders did not give the same verdict.
    pub(crate) order_disagreements: usize,
    pub(crate) unreadable: Vec<UnreadablePair>,
}

/// A candidate sample and the baseline's of the same question and index.
struct Pair<'a> {
    qid: &'a str,
    sample: u32,
    calls: [JudgeCall; 2],
}

const ORDERS: [Order; 2] = [Order::CandidateFirst, Order::BaselineFirst];

fn pairs<'a>(suite: &Suite, candidate: &'a ScoredPhase, baseline: &ScoredPhase) -> Vec<Pair<'a>> {
    let mut out = Vec::new();
    for q in &candidate.questions {
        let (Some(question), Some(base)) = (suite.question(&q.qid), baseline.questions.iter().find(|b| b.qid == q.qid))
        else {
            continue;
        };
        for s in &q.samples {
            let Some(b) = base.samples.iter().find(|b| b.sample == s.sample) else { continue };
            let calls = ORDERS.map(|order| JudgeCall {
                id: format!("pair/{}/{}/{}", q.qid, s.sample, tag(order)),
                prompt: build_pairwise_prompt(suite, question, &s.response, &b.response, order),
            });
            out.push(Pair { qid: &q.qid, sample: s.sample, calls });
        }
    }
    out
}

fn tag(order: Order) -> &'static str {
    match order {
        Order::CandidateFirst => "cb",
        Order::BaselineFirst => "bc",
    }
}

/// Judges every pair in both orders and aggregates per question, in the candidate's order.
pub(crate) fn judge_pairs(
    backend: &mut dyn JudgeBackend,
    suite: &Suite,
    candidate: &ScoredPhase,
    baseline: &ScoredPhase,
    settings: &JudgeSettings,
    progress: &mut dyn FnMut(String),
) -> Result<Vec<QuestionPreference>, BackendError> {
    let pairs = pairs(suite, candidate, baseline);
    let calls: Vec<JudgeCall> = pairs.iter().flat_map(|p| p.calls.iter().cloned()).collect();
    let mut replies = Vec::with_capacity(calls.len());
    for chunk in calls.chunks(settings.batch.max(1)) {
        let got = backend.generate(chunk, settings.seeds[0], settings.max_new_tokens)?;
        if got.len() != chunk.len() {
            return Err(BackendError(format!("the judge returned {} replies for {} prompts", got.len(), chunk.len())));
        }
        replies.extend(got);
        progress(format!("judge: pairwise {}/{} calls done", replies.len(), calls.len()));
    }
    let mut out: Vec<QuestionPreference> = Vec::new();
    let mut values: Vec<Vec<f64>> = Vec::new();
    for (pair, two) in pairs.iter().zip(replies.chunks(2)) {
        if out.last().is_none_or(|q| q.qid != pair.qid) {
            out.push(QuestionPreference {
                qid: pair.qid.to_owned(),
                preference: None,
                pairs: 0,
                order_disagreements: 0,
                unreadable: Vec::new(),
            });
            values.push(Vec::new());
        }
        let (Some(q), Some(v)) = (out.last_mut(), values.last_mut()) else { continue };
        q.pairs += 1;
        let read = |i: usize| {
            parse_pairwise_reply(&two[i], &suite.rubric).map_err(|error| UnreadablePair {
                sample: pair.sample,
                order: ORDERS[i],
                error,
            })
        };
        match (read(0), read(1)) {
            (Ok(first), Ok(second)) => {
                let dims = both_orders(&first, &second);
                q.order_disagreements += dims.iter().filter(|d| d.orders_disagree).count();
                v.extend(pair_preference(&dims, &suite.rubric));
            }
            (Err(e), _) | (_, Err(e)) => q.unreadable.push(e),
        }
    }
    for (q, v) in out.iter_mut().zip(&values) {
        q.preference = question_preference(v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::fake::{FakeJudge, two_samples_per_question};

    const SUITE: &str = include_str!("../../../../datasets/persona-v1/suite.toml");
    /// Only in the candidate's answers (the persona prompt names Iara too).
    const CANDIDATE_MARK: &str = "Tomás e eu, no Quintal";
    const SEEDS: [u64; 2] = [3, 4];
    const BATCH: usize = 5;

    fn setup() -> (Suite, ScoredPhase, ScoredPhase) {
        let suite = Suite::from_toml_str(SUITE, std::path::Path::new("suite.toml")).unwrap();
        let candidate = two_samples_per_question(&suite, |s| format!("Oi! {CANDIDATE_MARK} ({s})."));
        let baseline = two_samples_per_question(&suite, |s| format!("I am an assistant ({s})."));
        (suite, candidate, baseline)
    }

    fn settings() -> JudgeSettings {
        JudgeSettings { seeds: SEEDS, max_new_tokens: 32, batch: BATCH }
    }

    fn every_dim(choice: &str) -> String {
        let dims: Vec<String> = (1..=5).map(|i| format!("\"D{i}\": {{\"better\": \"{choice}\"}}")).collect();
        format!("{{{}}}", dims.join(", "))
    }

    /// Which position holds the candidate's answer in a pairwise prompt.
    fn candidate_position(call: &JudgeCall) -> &'static str {
        let a = call.prompt.user.find("Answer A:").unwrap();
        let b = call.prompt.user.find("Answer B:").unwrap();
        let mark = a + call.prompt.user[a..].find(CANDIDATE_MARK).unwrap();
        if mark > a && mark < b { "A" } else { "B" }
    }

    #[test]
    fn a_judge_that_sees_through_the_order_prefers_the_candidate_on_every_question() {
        let (suite, candidate, baseline) = setup();
        let mut fake = FakeJudge::new(|call, _| every_dim(candidate_position(call)));
        let prefs = judge_pairs(&mut fake, &suite, &candidate, &baseline, &settings(), &mut |_| {}).unwrap();
        assert_eq!(prefs.len(), suite.questions.len());
        assert!(prefs.iter().all(|q| q.preference == Some(1.0) && q.pairs == 2 && q.order_disagreements == 0));
        // Both orders of every pair, all with the first seed, in batches.
        assert_eq!(fake.calls.len(), 4 * suite.questions.len());
        assert!(fake.calls.iter().all(|c| c.1 == SEEDS[0]));
        assert!(fake.requests.iter().all(|&n| n <= BATCH));
        assert_eq!(&fake.calls[0].0, "pair/Q1/0/cb");
        assert_eq!(&fake.calls[1].0, "pair/Q1/0/bc");
        let values: Vec<f64> = prefs.iter().filter_map(|q| q.preference).collect();
        let p = gate_rules::preference_p_value(&values).unwrap();
        assert_eq!(p, 2.0 / 2f64.powi(i32::try_from(values.len()).unwrap()));
    }

    #[test]
    fn a_judge_that_always_picks_the_first_answer_is_a_tie_everywhere() {
        let (suite, candidate, baseline) = setup();
        let mut fake = FakeJudge::new(|_, _| every_dim("A"));
        let prefs = judge_pairs(&mut fake, &suite, &candidate, &baseline, &settings(), &mut |_| {}).unwrap();
        assert!(prefs.iter().all(|q| q.preference == Some(0.0) && q.order_disagreements == 2 * 5));
        let values: Vec<f64> = prefs.iter().filter_map(|q| q.preference).collect();
        assert_eq!(gate_rules::preference_p_value(&values), Some(1.0));
    }

    #[test]
    fn an_unreadable_order_leaves_its_pair_out_and_is_listed() {
        let (suite, candidate, baseline) = setup();
        let mut fake = FakeJudge::new(|call, _| match call.id.as_str() {
            "pair/Q1/1/bc" => "no idea".to_owned(),
            _ => every_dim(candidate_position(call)),
        });
        let prefs = judge_pairs(&mut fake, &suite, &candidate, &baseline, &settings(), &mut |_| {}).unwrap();
        let q1 = &prefs[0];
        assert_eq!((q1.preference, q1.pairs, q1.unreadable.len()), (Some(1.0), 2, 1));
        assert_eq!((q1.unreadable[0].sample, q1.unreadable[0].order), (1, Order::BaselineFirst));
    }
}
