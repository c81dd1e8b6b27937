//! The gate's side of the rubric: per-dimension scores as phases record them, the aggregation of
//! those scores with automatic zeros, and the automatic-fail phrases the gate looks for in
//! responses itself. The rubric type is `phasegate_rubric::Rubric`, owned by the suite.

use phasegate_rubric::Rubric;
use serde::{Deserialize, Serialize};

/// One dimension's score for one sample, with the scorer's reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DimensionScore {
    pub dimension: String,
    pub score: u32,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A response that hit an automatic-zero trigger. `dimension` is the rubric dimension the scorer
/// charged it to, or empty when the gate found the phrase in the text itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AutoZeroHit {
    pub dimension: String,
    pub trigger: String,
}

/// Phrases the `auto_fail` rule looks for in every response, whatever the rubric: chat-template
/// tokens, an agent narrating its plan, and a recited system prompt. `gate.toml` adds its own.
pub const AUTO_FAIL_PHRASES: [&str; 15] = [
    "<|im_start|>",
    "<|im_end|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "</s>",
    "[INST]",
    "[/INST]",
    "step 1:",
    "passo 1:",
    "let me think step by step",
    "vou analisar a pergunta",
    "you are a helpful assistant",
    "você é a iara",
    "system prompt",
];

/// Question total: the rubric's weighted sum of dimension scores, where a dimension with an
/// automatic-zero hit counts zero whatever the scorer wrote.
pub(crate) fn aggregate(rubric: &Rubric, scores: &[DimensionScore], hits: &[AutoZeroHit]) -> f64 {
    rubric.total(
        scores
            .iter()
            .filter(|s| !hits.iter().any(|h| h.dimension.eq_ignore_ascii_case(&s.dimension)))
            .map(|s| (s.dimension.as_str(), s.score)),
    )
}

/// Every phrase of [`AUTO_FAIL_PHRASES`] and `extra` that `response` contains, ignoring case.
pub(crate) fn scan(response: &str, extra: &[String]) -> Vec<AutoZeroHit> {
    let lower = response.to_lowercase();
    AUTO_FAIL_PHRASES
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
        .filter(|t| !t.is_empty() && lower.contains(&t.to_lowercase()))
        .map(|t| AutoZeroHit { dimension: String::new(), trigger: t.to_owned() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(values: [u32; 5]) -> Vec<DimensionScore> {
        values
            .iter()
            .enumerate()
            .map(|(i, &score)| DimensionScore { dimension: format!("D{}", i + 1), score, reason: None })
            .collect()
    }

    #[test]
    fn aggregate_sums_dimensions() {
        assert_eq!(aggregate(&Rubric::persona_v1(), &scores([1, 2, 0, 2, 1]), &[]), 6.0);
    }

    #[test]
    fn auto_zero_hit_zeroes_only_its_dimension() {
        let hit = AutoZeroHit { dimension: "d4".to_owned(), trigger: "</s>".to_owned() };
        assert_eq!(aggregate(&Rubric::persona_v1(), &scores([1, 2, 0, 2, 1]), &[hit]), 4.0);
    }

    #[test]
    fn scan_finds_template_tokens_case_insensitively() {
        let hits = scan("Olá!<|IM_END|> tudo bem", &[]);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].trigger, "<|im_end|>");
    }

    #[test]
    fn scan_adds_the_gate_configs_phrases() {
        let hits = scan("Como assistente virtual...", &["assistente virtual".to_owned()]);
        assert_eq!(hits[0].trigger, "assistente virtual");
    }
}
