//! Contamination of the eval by the training data: suite questions found in training prompts,
//! and the suite's reference or calibration answers found in training answers.
//!
//! Both sides are compared as folded words (`normalise::words`). A probe is `verbatim` in an
//! example when its whole word sequence appears there; it is `ngram` when at least
//! `threshold` of its word n-grams (n = `ngram_size`, or the probe's length when shorter) do.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::example::{Example, Role};
use super::normalise::{fnv64, hash_words, words};
use super::par;

/// What a probe is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeSide {
    /// An eval question: matched against the training prompts.
    Question,
    /// A reference or calibration answer: matched against the training answers.
    Answer,
}

/// One text of the eval suite that must not be in the training data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    pub qid: String,
    pub side: ProbeSide,
    /// What the text is, for messages: "question", "anchor ideal", ...
    pub label: String,
    pub text: String,
}

/// The parts of an eval suite the lint needs; the caller converts its suite type into this.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalSuite {
    pub name: String,
    /// The system prompt the eval sends, if any.
    pub system_prompt: Option<String>,
    pub probes: Vec<Probe>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchKind {
    Verbatim,
    Ngram,
}

/// One probe found in one example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contaminated {
    pub qid: String,
    pub example_index: usize,
    pub kind: MatchKind,
    /// The probe's label ("question", "anchor ideal", ...).
    pub what: String,
    /// Share of the probe's n-grams found in the example.
    pub overlap: f64,
    /// The example's file and line or index (filled by the lint, empty from `find`).
    #[serde(default)]
    pub location: String,
}

struct Prepared<'a> {
    probe: &'a Probe,
    words: Vec<u64>,
    n: usize,
    grams: Vec<u64>,
}

/// Every (probe, example) match, by probe then example index.
pub fn find(examples: &[&Example], suite: &EvalSuite, ngram_size: usize, threshold: f64) -> Vec<Contaminated> {
    let prepared: Vec<Prepared> = suite.probes.iter().filter_map(|p| prepare(p, ngram_size)).collect();
    // n-gram hash → (probe, position of the gram in the probe), per side and n.
    let mut index: HashMap<(bool, usize, u64), Vec<(usize, usize)>> = HashMap::new();
    for (pi, p) in prepared.iter().enumerate() {
        for (gi, g) in p.grams.iter().enumerate() {
            index.entry((p.probe.side == ProbeSide::Question, p.n, *g)).or_default().push((pi, gi));
        }
    }
    let sizes: HashSet<(bool, usize)> = prepared.iter().map(|p| (p.probe.side == ProbeSide::Question, p.n)).collect();
    let per_example = par::map(examples, |example| {
        let mut found = Vec::new();
        let mut w = Vec::new();
        for side in [true, false] {
            let text = side_text(example, side);
            if text.is_empty() {
                continue;
            }
            w.clear();
            hash_words(&text, &mut w);
            let mut hits: HashMap<usize, HashSet<usize>> = HashMap::new();
            for &(_, n) in sizes.iter().filter(|(s, _)| *s == side) {
                for gram in w.windows(n) {
                    for &(pi, gi) in index.get(&(side, n, gram_hash(gram))).into_iter().flatten() {
                        hits.entry(pi).or_default().insert(gi);
                    }
                }
            }
            for (pi, grams) in hits {
                let p = &prepared[pi];
                let overlap = grams.len() as f64 / p.grams.len() as f64;
                let kind = if overlap >= 1.0 && contains(&w, &p.words) {
                    MatchKind::Verbatim
                } else if overlap >= threshold {
                    MatchKind::Ngram
                } else {
                    continue;
                };
                found.push((pi, kind, overlap));
            }
        }
        found
    });
    let mut found: Vec<(usize, usize, MatchKind, f64)> = per_example
        .into_iter()
        .enumerate()
        .flat_map(|(ei, hits)| hits.into_iter().map(move |(pi, kind, overlap)| (pi, ei, kind, overlap)))
        .collect();
    found.sort_by_key(|(pi, ei, _, _)| (*pi, *ei));
    found.dedup_by_key(|(pi, ei, _, _)| (*pi, *ei));
    found
        .into_iter()
        .map(|(pi, ei, kind, overlap)| Contaminated {
            qid: prepared[pi].probe.qid.clone(),
            example_index: ei,
            kind,
            what: prepared[pi].probe.label.clone(),
            overlap,
            location: String::new(),
        })
        .collect()
}

fn prepare(probe: &Probe, ngram_size: usize) -> Option<Prepared<'_>> {
    let words: Vec<u64> = words(&probe.text).iter().map(|w| fnv64(w.as_bytes())).collect();
    if words.is_empty() {
        return None;
    }
    let n = ngram_size.clamp(1, words.len());
    let mut grams: Vec<u64> = words.windows(n).map(gram_hash).collect();
    grams.sort_unstable();
    grams.dedup();
    Some(Prepared { probe, words, n, grams })
}

fn gram_hash(gram: &[u64]) -> u64 {
    gram.iter().fold(0x243f_6a88_85a3_08d3, |acc, w| (acc ^ w).wrapping_mul(0x0100_0000_01b3).rotate_left(17))
}

/// Prompts (user and text turns) for questions, assistant turns for answers.
fn side_text(example: &Example, question: bool) -> String {
    let keep = |r: &Role| {
        if question { matches!(r, Role::User | Role::Text) } else { matches!(r, Role::Assistant | Role::Text) }
    };
    let parts: Vec<&str> = example.turns.iter().filter(|t| keep(&t.role)).map(|t| t.content.as_str()).collect();
    parts.join("\n")
}

fn contains(haystack: &[u64], needle: &[u64]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::example::chat;

    fn suite() -> EvalSuite {
        let probe = |qid: &str, side, label: &str, text: &str| Probe {
            qid: qid.into(),
            side,
            label: label.into(),
            text: text.into(),
        };
        EvalSuite {
            name: "s".into(),
            system_prompt: None,
            probes: vec![
                probe("Q5", ProbeSide::Question, "question", "Me fala sobre você."),
                probe("Q8", ProbeSide::Question, "question", "Quais são seus pontos fortes e fracos?"),
                probe(
                    "Q2",
                    ProbeSide::Answer,
                    "anchor ideal",
                    "O Quintal é um aplicativo de código aberto que conecta hortas comunitárias a voluntários.",
                ),
            ],
        }
    }

    #[test]
    fn each_match_kind_is_found_per_question_with_its_example() {
        let examples = [
            chat("Oi! Me fala sobre voce", "Sou a Iara."), // Q5 verbatim, accents folded
            chat("Quais são seus pontos fortes e seus fracos?", "Testes."), // Q8 ngram (4 of 5 trigrams)
            chat("Como está o tempo?", "Ensolarado."),     // nothing
            chat(
                "E o Quintal?",
                "O Quintal é um aplicativo de código aberto que conecta hortas comunitárias a voluntários da cidade.",
            ),
            chat("Fala sobre a Banca.", "Me fala sobre você."), // a question in an answer: not a match
        ];
        let refs: Vec<&Example> = examples.iter().collect();
        let found: Vec<(String, usize, MatchKind)> =
            find(&refs, &suite(), 3, 0.5).into_iter().map(|c| (c.qid, c.example_index, c.kind)).collect();
        assert_eq!(
            found,
            [
                ("Q5".to_owned(), 0, MatchKind::Verbatim),
                ("Q8".to_owned(), 1, MatchKind::Ngram),
                ("Q2".to_owned(), 3, MatchKind::Verbatim),
            ]
        );
    }

    #[test]
    fn the_threshold_decides_ngram_matches() {
        let examples = [chat("Quais são seus pontos fortes e seus fracos?", "Testes.")];
        let refs: Vec<&Example> = examples.iter().collect();
        assert_eq!(find(&refs, &suite(), 3, 0.5).len(), 1);
        assert!(find(&refs, &suite(), 3, 0.9).is_empty());
    }
}
