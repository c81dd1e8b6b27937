//! The agreement figures of a scorer against labelled answers: pure, from (label, scorer score)
//! pairs to the numbers `phasegate calibrate` prints.

use std::collections::BTreeMap;

use serde::Serialize;

use phasegate_score::agreement::{error, exact_agreement, pearson, quadratic_weighted_kappa, spearman};
use phasegate_score::{SampleScore, Suite};

use super::labels::Label;

/// How many of the worst disagreements the report lists.
pub const WORST: usize = 10;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub suite: String,
    pub instrument: String,
    pub answers: usize,
    /// On the 0–10 scale of an answer's total.
    pub mae: Option<f64>,
    pub bias: Option<f64>,
    pub pearson: Option<f64>,
    pub spearman: Option<f64>,
    pub dimensions: Vec<DimensionAgreement>,
    pub phases: Vec<GroupMeans>,
    pub categories: Vec<GroupMeans>,
    pub worst: Vec<Disagreement>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DimensionAgreement {
    pub id: String,
    pub kappa: Option<f64>,
    pub exact: Option<f64>,
    pub human_mean: f64,
    pub scorer_mean: f64,
}

/// Mean 0–10 totals of one phase or category.
#[derive(Debug, Clone, Serialize)]
pub struct GroupMeans {
    pub name: String,
    pub answers: usize,
    pub human: f64,
    pub scorer: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Disagreement {
    pub id: String,
    pub qid: String,
    pub category: Option<String>,
    pub human: f64,
    pub scorer: f64,
    pub human_scores: Vec<u32>,
    pub scorer_scores: Vec<u32>,
    /// The scorer's reason per dimension, `D1: …`.
    pub reasons: Vec<String>,
    pub response: String,
}

/// One labelled answer and the scorer's score of it.
#[derive(Debug, Clone)]
pub struct Scored<'a> {
    pub label: &'a Label,
    pub score: SampleScore,
}

impl Scored<'_> {
    fn human_10(&self, suite: &Suite) -> f64 {
        let dims = suite.rubric.dimensions().iter().zip(&self.label.scores).map(|(d, s)| (d.id.as_str(), *s));
        suite.rubric.to_10(suite.rubric.total(dims))
    }
}

pub fn build(suite: &Suite, scored: &[Scored<'_>]) -> Report {
    let totals: Vec<(f64, f64)> = scored.iter().map(|s| (s.score.normalized_10(), s.human_10(suite))).collect();
    let err = error(&totals);
    let dimensions = suite
        .rubric
        .dimensions()
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let pairs: Vec<(u32, u32)> = scored.iter().map(|s| (s.score.dims[i].score, s.label.scores[i])).collect();
            DimensionAgreement {
                id: d.id.to_string(),
                kappa: quadratic_weighted_kappa(&pairs, d.min, d.max),
                exact: exact_agreement(&pairs),
                human_mean: mean(pairs.iter().map(|p| f64::from(p.1))),
                scorer_mean: mean(pairs.iter().map(|p| f64::from(p.0))),
            }
        })
        .collect();
    Report {
        suite: suite.name.clone(),
        instrument: phasegate_score::instrument(suite).to_string(),
        answers: scored.len(),
        mae: err.map(|e| e.mae),
        bias: err.map(|e| e.bias),
        pearson: pearson(&totals),
        spearman: spearman(&totals),
        dimensions,
        phases: groups(suite, scored, |l| l.phase.clone()),
        categories: groups(suite, scored, |l| l.category.clone()),
        worst: worst(suite, scored),
    }
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

fn groups(suite: &Suite, scored: &[Scored<'_>], key: impl Fn(&Label) -> Option<String>) -> Vec<GroupMeans> {
    let mut by: BTreeMap<String, Vec<&Scored<'_>>> = BTreeMap::new();
    for s in scored {
        if let Some(k) = key(s.label) {
            by.entry(k).or_default().push(s);
        }
    }
    by.into_iter()
        .map(|(name, members)| GroupMeans {
            name,
            answers: members.len(),
            human: mean(members.iter().map(|s| s.human_10(suite))),
            scorer: mean(members.iter().map(|s| s.score.normalized_10())),
        })
        .collect()
}

fn worst(suite: &Suite, scored: &[Scored<'_>]) -> Vec<Disagreement> {
    let mut all: Vec<Disagreement> = scored
        .iter()
        .map(|s| Disagreement {
            id: s.label.id.clone(),
            qid: s.label.qid.clone(),
            category: s.label.category.clone(),
            human: s.human_10(suite),
            scorer: s.score.normalized_10(),
            human_scores: s.label.scores.clone(),
            scorer_scores: s.score.dims.iter().map(|d| d.score).collect(),
            reasons: s.score.dims.iter().map(|d| format!("{}: {}", d.id, d.reason)).collect(),
            response: s.label.response.clone(),
        })
        .collect();
    // Largest gap first; ties in label order, so the list is stable.
    all.sort_by(|a, b| (b.scorer - b.human).abs().total_cmp(&(a.scorer - a.human).abs()));
    all.truncate(WORST);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn suite() -> Suite {
        Suite::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/persona-v1/suite.toml")).unwrap()
    }

    fn label(id: &str, category: &str, scores: [u32; 5]) -> Label {
        Label {
            id: id.into(),
            qid: "Q1".into(),
            category: Some(category.into()),
            phase: None,
            truncated: false,
            response: String::new(),
            scores: scores.to_vec(),
        }
    }

    #[test]
    fn figures_groups_and_worst_first() {
        let suite = suite();
        let lexicon = phasegate_score::Lexicon::from_hunspell("SET UTF-8\n", "1\neu\n", &suite).unwrap();
        let q = suite.question("Q1").unwrap();
        // An empty answer scores 0 everywhere; the humans gave 10 and 4.
        let labels = [label("a", "good", [2; 5]), label("b", "bad", [0, 0, 0, 2, 2])];
        let scored: Vec<Scored<'_>> = labels
            .iter()
            .map(|l| Scored {
                label: l,
                score: phasegate_score::score_sample(&suite, &lexicon, q, &super::super::record(q, l)),
            })
            .collect();
        let r = build(&suite, &scored);
        // errors -10 and -4: MAE 7, bias -7
        assert_eq!((r.answers, r.mae, r.bias), (2, Some(7.0), Some(-7.0)));
        assert_eq!(r.pearson, None, "the scorer's totals do not vary");
        assert_eq!(r.worst.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(
            r.categories.iter().map(|g| (g.name.as_str(), g.human)).collect::<Vec<_>>(),
            [("bad", 4.0), ("good", 10.0)]
        );
        assert!(r.phases.is_empty());
    }
}
