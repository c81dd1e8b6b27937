//! Properties of the dataset diff, through `gate_rules::data::lint`: a dataset diffed against
//! itself is empty, and swapping baseline and candidate swaps added and removed.

use gate_rules::data::{Dataset, DiffReport, LintConfig, LintInput, TokenLengths, lint, parse_dataset};
use proptest::prelude::*;

/// Few prompts and answers, so generated datasets share, repeat and change examples.
const PROMPTS: [&str; 5] = ["Oi", "Quem é você?", "Me fala sobre o Quintal.", "Como vai?", "E a Banca?"];
const ANSWERS: [&str; 4] = ["Olá!", "Sou a Iara.", "É um app de hortas.", "Bem, e você?"];

fn dataset(name: &str, pairs: &[(usize, usize)]) -> Dataset {
    let lines: Vec<String> = pairs
        .iter()
        .map(|&(p, a)| serde_json::json!({"prompt": PROMPTS[p], "completion": ANSWERS[a]}).to_string())
        .collect();
    parse_dataset(name, lines.join("\n").as_bytes()).unwrap()
}

fn diff(before: &[(usize, usize)], after: &[(usize, usize)]) -> DiffReport {
    let (b, a) = ([dataset("before.jsonl", before)], [dataset("after.jsonl", after)]);
    let config = LintConfig::default();
    let lengths = TokenLengths::Skipped("not needed".into());
    let input = LintInput { datasets: &a, baseline: Some(&b), suite: None, config: &config, token_lengths: &lengths };
    lint(&input).diff.unwrap()
}

fn pairs() -> impl Strategy<Value = Vec<(usize, usize)>> {
    prop::collection::vec((0..PROMPTS.len(), 0..ANSWERS.len()), 1..30)
}

proptest! {
    #[test]
    fn a_dataset_diffed_against_itself_is_empty(a in pairs()) {
        let d = diff(&a, &a);
        prop_assert!(d.is_empty(), "{d:?}");
        prop_assert_eq!((d.before, d.after, d.unchanged), (a.len(), a.len(), a.len()));
        prop_assert!(d.added_groups.is_empty() && d.removed_groups.is_empty());
    }

    #[test]
    fn swapping_the_sides_swaps_added_and_removed(a in pairs(), b in pairs()) {
        let forward = diff(&a, &b);
        let back = diff(&b, &a);
        prop_assert_eq!(forward.added, back.removed);
        prop_assert_eq!(forward.removed, back.added);
        prop_assert_eq!(forward.changed, back.changed);
        prop_assert_eq!(forward.unchanged, back.unchanged);
        prop_assert_eq!(forward.after, forward.unchanged + forward.changed + forward.added);
        prop_assert_eq!(forward.before, forward.unchanged + forward.changed + forward.removed);
    }
}
