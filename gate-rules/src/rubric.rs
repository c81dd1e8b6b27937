//! The rubric: named dimensions with integer ranges, automatic-zero triggers and the aggregation
//! from dimension scores to a question total.

use serde::{Deserialize, Serialize};

/// A scoring rubric. Question total = sum of dimensions; phase raw = sum over questions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rubric {
    pub version: String,
    pub dimensions: Vec<Dimension>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dimension {
    /// Short id as score files write it ("D1"; files may spell it "d1").
    pub id: String,
    pub name: String,
    pub max: u32,
    /// Case-insensitive phrases that force this dimension to zero when a response contains them.
    #[serde(default)]
    pub auto_zero_triggers: Vec<String>,
}

/// One dimension's score for one sample, with the scorer's reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DimensionScore {
    pub dimension: String,
    pub score: u32,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A response that hit an automatic-zero trigger of a dimension.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AutoZeroHit {
    pub dimension: String,
    pub trigger: String,
}

const TEMPLATE_TOKENS: [&str; 8] =
    ["<|im_start|>", "<|im_end|>", "<|system|>", "<|user|>", "<|assistant|>", "</s>", "[INST]", "[/INST]"];
const TASK_PLANNING: [&str; 4] = ["step 1:", "passo 1:", "let me think step by step", "vou analisar a pergunta"];
const PROMPT_BLEED: [&str; 3] = ["you are a helpful assistant", "você é a iara", "system prompt"];

impl Rubric {
    /// The persona rubric v1.0: D1 identity, D2 facts, D3 voice, D4 behavioural cleanliness (with
    /// automatic zeros for template tokens, task planning and system-prompt bleed), D5 response
    /// quality; each 0–2, so 0–10 per question.
    pub fn persona_v1() -> Rubric {
        let triggers: Vec<String> =
            TEMPLATE_TOKENS.iter().chain(&TASK_PLANNING).chain(&PROMPT_BLEED).map(|t| (*t).to_owned()).collect();
        let dim = |id: &str, name: &str, auto: &[String]| Dimension {
            id: id.to_owned(),
            name: name.to_owned(),
            max: 2,
            auto_zero_triggers: auto.to_vec(),
        };
        Rubric {
            version: "1.0".to_owned(),
            dimensions: vec![
                dim("D1", "identity", &[]),
                dim("D2", "facts", &[]),
                dim("D3", "voice", &[]),
                dim("D4", "behavioural cleanliness", &triggers),
                dim("D5", "response quality", &[]),
            ],
        }
    }

    pub fn question_max(&self) -> u32 {
        self.dimensions.iter().map(|d| d.max).sum()
    }

    /// Finds a dimension by id, ignoring ASCII case ("d4" finds "D4").
    pub fn dimension(&self, id: &str) -> Option<&Dimension> {
        self.dimensions.iter().find(|d| d.id.eq_ignore_ascii_case(id))
    }

    /// Question total: the sum of dimension scores, where a dimension with an automatic-zero hit
    /// counts zero whatever the scorer wrote.
    pub fn aggregate(&self, scores: &[DimensionScore], hits: &[AutoZeroHit]) -> u32 {
        scores
            .iter()
            .filter(|s| !hits.iter().any(|h| h.dimension.eq_ignore_ascii_case(&s.dimension)))
            .map(|s| s.score)
            .sum()
    }

    /// Every trigger (of the rubric plus `extra`, counted against the last dimension with triggers)
    /// that `response` contains.
    pub fn scan(&self, response: &str, extra: &[String]) -> Vec<AutoZeroHit> {
        let lower = response.to_lowercase();
        let mut hits = Vec::new();
        for dim in &self.dimensions {
            for trigger in &dim.auto_zero_triggers {
                if lower.contains(&trigger.to_lowercase()) {
                    hits.push(AutoZeroHit { dimension: dim.id.clone(), trigger: trigger.clone() });
                }
            }
        }
        let extra_dim =
            self.dimensions.iter().rev().find(|d| !d.auto_zero_triggers.is_empty()).map_or("auto", |d| d.id.as_str());
        for trigger in extra {
            if !trigger.is_empty() && lower.contains(&trigger.to_lowercase()) {
                hits.push(AutoZeroHit { dimension: extra_dim.to_owned(), trigger: trigger.clone() });
            }
        }
        hits
    }
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
    fn persona_rubric_has_ten_points_per_question() {
        assert_eq!(Rubric::persona_v1().question_max(), 10);
    }

    #[test]
    fn aggregate_sums_dimensions() {
        assert_eq!(Rubric::persona_v1().aggregate(&scores([1, 2, 0, 2, 1]), &[]), 6);
    }

    #[test]
    fn auto_zero_hit_zeroes_only_its_dimension() {
        let hit = AutoZeroHit { dimension: "d4".to_owned(), trigger: "</s>".to_owned() };
        assert_eq!(Rubric::persona_v1().aggregate(&scores([1, 2, 0, 2, 1]), &[hit]), 4);
    }

    #[test]
    fn scan_finds_template_tokens_case_insensitively() {
        let hits = Rubric::persona_v1().scan("Olá!<|IM_END|> tudo bem", &[]);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].trigger, "<|im_end|>");
        assert_eq!(hits[0].dimension, "D4");
    }

    #[test]
    fn scan_counts_extra_triggers_against_the_trigger_dimension() {
        let hits = Rubric::persona_v1().scan("Como assistente virtual...", &["assistente virtual".to_owned()]);
        assert_eq!(hits[0].dimension, "D4");
    }
}
