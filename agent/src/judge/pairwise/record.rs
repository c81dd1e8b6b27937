//! What pairwise judging adds to the scores file (`pairwise`), the job's summary and its lines:
//! the baseline, each question's preference, the sign-flip p-value over them, and every order
//! disagreement count and unreadable reply. The rule scores stay the phase record.

use serde_json::{Value, json};

use phasegate_proto::spec::JudgeModel;
use phasegate_score::ScoredPhase;
use phasegate_score::judge::pairwise::Order;

use super::QuestionPreference;

/// The judge's preference between the candidate and the baseline over the phase.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PairwiseReport {
    model: String,
    endpoint: Option<String>,
    baseline_phase: String,
    baseline_model: String,
    questions: Vec<QuestionPreference>,
    /// Mean of the questions' preferences; None when no question had a readable pair.
    mean: Option<f64>,
    /// Sign-flip test of the questions' preferences; None as `mean`.
    p_value: Option<f64>,
}

impl PairwiseReport {
    pub(crate) fn new(judge: &JudgeModel, baseline: &ScoredPhase, questions: Vec<QuestionPreference>) -> Self {
        let values: Vec<f64> = questions.iter().filter_map(|q| q.preference).collect();
        let mean = (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
        Self {
            model: judge.model.clone(),
            endpoint: judge.server.as_ref().map(|s| s.endpoint.clone()),
            baseline_phase: baseline.phase.clone(),
            baseline_model: baseline.model.clone(),
            p_value: gate_rules::preference_p_value(&values),
            mean,
            questions,
        }
    }

    /// The scores file's `pairwise` object.
    pub(crate) fn to_json(&self) -> Value {
        let questions: Vec<Value> = self
            .questions
            .iter()
            .map(|q| {
                json!({
                    "qid": q.qid,
                    "preference": q.preference.map(round3),
                    "pairs": q.pairs,
                    "order_disagreements": q.order_disagreements,
                    "unreadable": q.unreadable.iter().map(|u| json!({
                        "sample": u.sample, "order": order_name(u.order), "error": u.error.to_string(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "model": self.model,
            "endpoint": self.endpoint,
            "baseline": { "phase": self.baseline_phase, "model": self.baseline_model },
            "preference": self.mean.map(round3),
            "p_value": self.p_value,
            "test": "sign_flip",
            "questions": questions,
        })
    }

    pub(crate) fn summary(&self) -> Value {
        json!({ "model": self.model, "preference": self.mean.map(round3), "p_value": self.p_value,
                "questions": self.questions.len() })
    }

    /// One line for the phase, one per question with unreadable replies.
    pub(crate) fn lines(&self) -> Vec<String> {
        let mut lines = vec![match (self.mean, self.p_value) {
            (Some(mean), Some(p)) => format!(
                "pairwise: preference {mean:+.3} for this phase over baseline phase {} (−1..1, sign-flip p = {p:.4}) over {} questions",
                self.baseline_phase,
                self.questions.len()
            ),
            _ => format!("pairwise: no readable comparison with baseline phase {}", self.baseline_phase),
        }];
        for q in self.questions.iter().filter(|q| !q.unreadable.is_empty()) {
            let which: Vec<String> = q
                .unreadable
                .iter()
                .map(|u| format!("sample {} {}: {}", u.sample, order_name(u.order), u.error))
                .collect();
            lines.push(format!("pairwise: unreadable {} {}", q.qid, which.join("; ")));
        }
        lines
    }
}

fn order_name(order: Order) -> &'static str {
    match order {
        Order::CandidateFirst => "candidate_first",
        Order::BaselineFirst => "baseline_first",
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
