//! The dataset diff: what a candidate dataset adds, removes and changes against a baseline.
//!
//! Examples are matched as multisets: first by digest (unchanged), then the rest by normalised
//! prompt — a prompt on both sides with a different answer is `changed`. What is left is
//! `added` (candidate only) or `removed` (baseline only). Matching is symmetric, so swapping
//! the two sides swaps added and removed and keeps `changed`.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::example::Example;
use super::normalise::{normalise, words};
use crate::finding::excerpt;

const EXCERPT_CHARS: usize = 80;
/// Words of the prompt that name a group ("+18 examples like 'Me fala sobre…'").
const GROUP_WORDS: usize = 3;
/// Excerpts listed per kind.
const LISTED: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffReport {
    pub before: usize,
    pub after: usize,
    pub added: usize,
    pub removed: usize,
    pub changed: usize,
    pub unchanged: usize,
    pub added_groups: Vec<DiffGroup>,
    pub removed_groups: Vec<DiffGroup>,
    /// The first few added examples (candidate indices).
    pub added_examples: Vec<DiffExample>,
    /// The first few removed examples (baseline indices).
    pub removed_examples: Vec<DiffExample>,
    /// The first few changed examples (candidate indices, baseline answer in `before`).
    pub changed_examples: Vec<DiffExample>,
}

/// Examples that share the first words of their prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffGroup {
    /// The first words of the prompt as the first example has them ("Me fala sobre").
    pub prefix: String,
    pub count: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffExample {
    pub index: usize,
    pub prompt: String,
    pub answer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
}

impl DiffReport {
    pub fn is_empty(&self) -> bool {
        self.added == 0 && self.removed == 0 && self.changed == 0
    }
}

/// Diffs `after` (the candidate) against `before` (the baseline); digests are per example.
pub fn diff(
    before: &[&Example],
    before_digests: &[[u8; 32]],
    after: &[&Example],
    after_digests: &[[u8; 32]],
) -> DiffReport {
    let (left_before, left_after) = drop_equal(before_digests, after_digests);
    let prompt = |e: &Example| normalise(&e.prompt());
    let mut by_prompt: HashMap<String, Vec<usize>> = HashMap::new();
    for &i in left_before.iter().rev() {
        by_prompt.entry(prompt(before[i])).or_default().push(i);
    }
    let (mut added, mut changed) = (Vec::new(), Vec::new());
    for &i in &left_after {
        match by_prompt.get_mut(&prompt(after[i])).and_then(Vec::pop) {
            Some(b) => changed.push((b, i)),
            None => added.push(i),
        }
    }
    let mut removed: Vec<usize> = by_prompt.into_values().flatten().collect();
    removed.sort_unstable();
    let listed =
        |side: &[&Example], idx: &[usize]| idx.iter().take(LISTED).map(|&i| example(i, side[i], None)).collect();
    DiffReport {
        before: before.len(),
        after: after.len(),
        added: added.len(),
        removed: removed.len(),
        changed: changed.len(),
        unchanged: after.len() - left_after.len(),
        added_groups: group(after, &added),
        removed_groups: group(before, &removed),
        added_examples: listed(after, &added),
        removed_examples: listed(before, &removed),
        changed_examples: changed
            .iter()
            .take(LISTED)
            .map(|&(b, a)| example(a, after[a], Some(excerpt(&before[b].answer(), EXCERPT_CHARS))))
            .collect(),
    }
}

/// Indices on each side left once equal digests are paired off (as multisets).
fn drop_equal(before: &[[u8; 32]], after: &[[u8; 32]]) -> (Vec<usize>, Vec<usize>) {
    (unmatched(before, after), unmatched(after, before))
}

/// Indices of `side` whose digest has no copy left in `other`, copies counted.
fn unmatched(side: &[[u8; 32]], other: &[[u8; 32]]) -> Vec<usize> {
    let mut count: HashMap<&[u8; 32], usize> = HashMap::new();
    for d in other {
        *count.entry(d).or_default() += 1;
    }
    let mut left = Vec::new();
    for (i, d) in side.iter().enumerate() {
        match count.get_mut(d) {
            Some(n) if *n > 0 => *n -= 1,
            _ => left.push(i),
        }
    }
    left
}

fn example(index: usize, e: &Example, before: Option<String>) -> DiffExample {
    DiffExample {
        index,
        prompt: excerpt(&e.prompt(), EXCERPT_CHARS),
        answer: excerpt(&e.answer(), EXCERPT_CHARS),
        before,
    }
}

/// Groups by the first folded words of the prompt, largest first.
fn group(side: &[&Example], indices: &[usize]) -> Vec<DiffGroup> {
    let mut groups: BTreeMap<Vec<String>, (usize, String, usize)> = BTreeMap::new();
    for &i in indices {
        let prompt = side[i].prompt();
        let key: Vec<String> = words(&prompt).into_iter().take(GROUP_WORDS).collect();
        let shown: Vec<&str> = prompt.split_whitespace().take(GROUP_WORDS).collect();
        let entry = groups.entry(key).or_insert((0, shown.join(" "), i));
        entry.0 += 1;
    }
    let mut out: Vec<(usize, String, usize)> = groups.into_values().collect();
    out.sort_by(|a, b| b.0.cmp(&a.0).then(a.2.cmp(&b.2)));
    out.into_iter().map(|(count, prefix, _)| DiffGroup { prefix, count }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::example::chat;
    use crate::data::normalise::example_digest;

    fn run(before: &[Example], after: &[Example]) -> DiffReport {
        let b: Vec<&Example> = before.iter().collect();
        let a: Vec<&Example> = after.iter().collect();
        let bd: Vec<[u8; 32]> = before.iter().map(example_digest).collect();
        let ad: Vec<[u8; 32]> = after.iter().map(example_digest).collect();
        diff(&b, &bd, &a, &ad)
    }

    #[test]
    fn added_removed_changed_and_unchanged_are_counted() {
        let before = [chat("Oi", "Olá!"), chat("Você é filho do Tomás?", "Não."), chat("Quem é você?", "Sou a Iara.")];
        let after = [
            chat("Oi", "Olá!"),
            chat("Quem é  você?", "Eu sou a Iara, parceira do Tomás."),
            chat("Me fala sobre você.", "Sou a Iara."),
            chat("Me fala sobre o Quintal.", "É um app."),
            chat("Como vai?", "Bem."),
        ];
        let d = run(&before, &after);
        assert_eq!((d.before, d.after, d.added, d.removed, d.changed, d.unchanged), (3, 5, 3, 1, 1, 1));
        assert_eq!(d.added_groups[0], DiffGroup { prefix: "Me fala sobre".into(), count: 2 });
        assert_eq!(d.removed_groups, [DiffGroup { prefix: "Você é filho".into(), count: 1 }]);
        assert_eq!(d.changed_examples[0].index, 1);
        assert_eq!(d.changed_examples[0].before.as_deref(), Some("Sou a Iara."));
    }

    #[test]
    fn repeated_examples_are_matched_as_multisets() {
        let before = [chat("Oi", "Olá!"), chat("Oi", "Olá!")];
        let after = [chat("Oi", "Olá!")];
        let d = run(&before, &after);
        assert_eq!((d.added, d.removed, d.changed, d.unchanged), (0, 1, 0, 1));
    }
}
