//! The pure parts of pairwise judging (`mode = "pairwise"`): the judge sees the candidate's and the
//! baseline's answers to the same question and says, per rubric dimension, which is better.
//!
//! Judges favour one position (often the first), so each pair is asked in both orders: candidate
//! as A then baseline as A. A dimension counts for the answer both orders prefer; orders that
//! disagree, or a tie in either, count as a tie. A pair's preference is the mean of its dimensions'
//! (+1 candidate, −1 baseline, 0 tie), each weighted by its share of the question's points
//! (weight × range), so it lies in [−1, 1]; a question's preference is the mean over its pairs.
//! The per-question preferences are what a sign-flip test reads (`gate_rules::preference_p_value`).
//!
//! As in the single-answer prompt, the judge sees only the persona, the question, the rubric and
//! the two answers: never which one is the candidate.

use serde_json::{Map, Value};

use super::parse::{entries, field, first_object, short};
use super::prompt::{JudgePrompt, question_context, rubric_text};
use crate::suite::{DimId, Dimension, Question, Rubric, Suite};

/// Which answer the judge preferred on a dimension, by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preferred {
    A,
    B,
    Tie,
}

/// One dimension of a pairwise reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairwiseDim {
    pub id: DimId,
    pub preferred: Preferred,
    pub reason: String,
}

/// A parsed pairwise reply: every rubric dimension, in rubric order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairwiseReply {
    pub dims: Vec<PairwiseDim>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairwiseReplyError {
    #[error("pairwise judge reply holds no JSON object: {excerpt:?}")]
    NoJson { excerpt: String },
    #[error("pairwise judge reply has no choice for {id}: {excerpt:?}")]
    MissingDimension { id: DimId, excerpt: String },
    #[error("pairwise judge choice for {id} is {value}, not \"A\", \"B\" or \"tie\"")]
    BadChoice { id: DimId, value: String },
}

/// The two orders a pair is judged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    CandidateFirst,
    BaselineFirst,
}

/// The prompt comparing `candidate` and `baseline`, placed as A and B by `order`.
pub fn build_pairwise_prompt(
    suite: &Suite,
    question: &Question,
    candidate: &str,
    baseline: &str,
    order: Order,
) -> JudgePrompt {
    let (a, b) = match order {
        Order::CandidateFirst => (candidate, baseline),
        Order::BaselineFirst => (baseline, candidate),
    };
    let mut user = question_context(suite, question);
    user.push_str(&format!(
        "\nAnswer A:\n<<<\n{a}\n>>>\n\nAnswer B:\n<<<\n{b}\n>>>\n\nReply with the JSON object only."
    ));
    JudgePrompt { system: system_text(suite), user }
}

fn system_text(suite: &Suite) -> String {
    let fields: Vec<String> = suite
        .rubric
        .dimensions()
        .iter()
        .map(|d| format!("\"{}\": {{\"better\": \"A\" | \"B\" | \"tie\", \"reason\": \"...\"}}", d.id))
        .collect();
    let mut out = String::from(
        "You are a strict evaluator comparing two answers, A and B, given by fine-tuned persona \
         models to the same question. For every rubric dimension say which answer is better on \
         that dimension, or \"tie\" when neither is, with a one-sentence reason. The order of the \
         answers says nothing about their quality. Reply with JSON only, no other text, in exactly \
         this shape:\n",
    );
    out.push_str(&format!("{{{}}}", fields.join(", ")));
    out.push_str(&rubric_text(suite));
    out
}

/// Reads a pairwise reply against the rubric it was given; as lenient as the scoring reply
/// (fences, prose, single quotes, key case), and a choice may be the bare string.
pub fn parse_pairwise_reply(reply: &str, rubric: &Rubric) -> Result<PairwiseReply, PairwiseReplyError> {
    let object = first_object(reply).ok_or_else(|| PairwiseReplyError::NoJson { excerpt: short(reply) })?;
    let entries = entries(&object);
    let dims = rubric.dimensions().iter().map(|d| dim(d, &entries, reply)).collect::<Result<_, _>>()?;
    Ok(PairwiseReply { dims })
}

fn dim(d: &Dimension, entries: &Map<String, Value>, reply: &str) -> Result<PairwiseDim, PairwiseReplyError> {
    let missing = || PairwiseReplyError::MissingDimension { id: d.id.clone(), excerpt: short(reply) };
    let entry = [d.id.as_str().to_lowercase(), d.name.to_lowercase()]
        .iter()
        .find_map(|k| entries.get(k))
        .ok_or_else(missing)?;
    let (raw, reason) = match entry {
        Value::Object(map) => (
            ["better", "winner", "preferred", "choice"].iter().find_map(|k| field(map, k)).ok_or_else(missing)?,
            field(map, "reason").and_then(Value::as_str).unwrap_or_default(),
        ),
        other => (other, ""),
    };
    let preferred =
        choice(raw).ok_or_else(|| PairwiseReplyError::BadChoice { id: d.id.clone(), value: raw.to_string() })?;
    Ok(PairwiseDim { id: d.id.clone(), preferred, reason: reason.trim().to_owned() })
}

/// "A", "answer a", "B", "tie", "equal", ... in any case.
fn choice(raw: &Value) -> Option<Preferred> {
    let text = raw.as_str()?.trim().trim_matches(|c: char| c == '"' || c == '\'' || c == '.').to_lowercase();
    let text = text.strip_prefix("answer ").unwrap_or(&text);
    match text {
        "a" => Some(Preferred::A),
        "b" => Some(Preferred::B),
        "tie" | "equal" | "same" | "draw" | "neither" | "both" | "none" => Some(Preferred::Tie),
        _ => None,
    }
}

/// One dimension of a pair judged in both orders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DimPreference {
    pub id: DimId,
    /// +1 the candidate, −1 the baseline, 0 a tie or orders that disagree.
    pub preference: i8,
    /// The two orders did not give the same verdict: a position effect (the same position chosen
    /// both times) or a tie in one order only.
    pub orders_disagree: bool,
}

/// Combines the two orders' replies (both parsed against the same rubric) per dimension.
pub fn both_orders(candidate_first: &PairwiseReply, baseline_first: &PairwiseReply) -> Vec<DimPreference> {
    candidate_first
        .dims
        .iter()
        .zip(&baseline_first.dims)
        .map(|(first, second)| {
            let a = for_candidate(first.preferred, Order::CandidateFirst);
            let b = for_candidate(second.preferred, Order::BaselineFirst);
            let preference = if a == b { a } else { 0 };
            DimPreference { id: first.id.clone(), preference, orders_disagree: a != b }
        })
        .collect()
}

/// +1 when the position chosen holds the candidate, −1 the baseline, 0 a tie.
fn for_candidate(preferred: Preferred, order: Order) -> i8 {
    match (preferred, order) {
        (Preferred::Tie, _) => 0,
        (Preferred::A, Order::CandidateFirst) | (Preferred::B, Order::BaselineFirst) => 1,
        (Preferred::B, Order::CandidateFirst) | (Preferred::A, Order::BaselineFirst) => -1,
    }
}

/// A pair's preference in [−1, 1]: its dimensions' mean, each weighted by its share of the
/// question's points. None when no dimension of `dims` has points in `rubric`.
pub fn pair_preference(dims: &[DimPreference], rubric: &Rubric) -> Option<f64> {
    let share = |id: &DimId| rubric.dimension(id.as_str()).map(|d| d.weight * f64::from(d.max - d.min));
    let (sum, total) = dims
        .iter()
        .filter_map(|d| Some((share(&d.id)?, d.preference)))
        .fold((0.0, 0.0), |(sum, total), (w, p)| (sum + w * f64::from(p), total + w));
    (total > 0.0).then(|| sum / total)
}

/// A question's preference: the mean of its pairs' (samples compared one to one). None for none.
pub fn question_preference(pairs: &[f64]) -> Option<f64> {
    (!pairs.is_empty()).then(|| pairs.iter().sum::<f64>() / pairs.len() as f64)
}

#[cfg(test)]
#[path = "pairwise_tests.rs"]
mod tests;
