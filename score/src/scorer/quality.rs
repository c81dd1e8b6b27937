//! D5 response quality: finished sentences, no repetition loops, a sensible length, one language.

use super::Rated;
use super::answer::Answer;
use crate::lang::Language;
use crate::suite::{QualityRules, Question};
use crate::text::ends_sentence;
use std::collections::HashSet;

/// A language needs at least this many stopword hits before its share counts as mixing.
const MIN_MIXING_HITS: usize = 3;

pub(crate) fn rate(rules: &QualityRules, q: &Question, a: &Answer) -> Rated {
    let share = repeated_share(&a.words, rules.repetition_ngram);
    if share >= rules.loop_share {
        return Rated::new(0, format!("repetition loop: {:.0}% repeated n-grams", share * 100.0));
    }
    let flags = flags(rules, q, a, share);
    match flags.len() {
        0 => Rated::new(2, "complete, varied, right length"),
        1 => Rated::new(1, flags[0].clone()),
        _ => Rated::new(0, flags.join("; ")),
    }
}

fn flags(rules: &QualityRules, q: &Question, a: &Answer, share: f64) -> Vec<String> {
    let mut flags = Vec::new();
    if !ends_sentence(a.raw) {
        flags.push(if a.hit_token_limit {
            "cut mid-sentence at the token limit".to_owned()
        } else {
            "ends mid-sentence".to_owned()
        });
    }
    if share >= rules.repetition_share {
        flags.push(format!("repetitive: {:.0}% repeated n-grams", share * 100.0));
    }
    let n = a.words.len();
    if n < q.min_words {
        flags.push(format!("too short: {n} words, expected at least {}", q.min_words));
    }
    if n > q.max_words {
        flags.push(format!("too long: {n} words, expected at most {}", q.max_words));
    }
    let (minority, hits) = a.languages.minority();
    if minority >= rules.mixing_share && hits >= MIN_MIXING_HITS {
        let l = a.languages;
        flags.push(format!(
            "mixes languages: {} {} / {} {} stopwords",
            l.count(Language::Pt),
            Language::Pt,
            l.count(Language::En),
            Language::En
        ));
    }
    flags
}

/// Share of word n-grams that repeat an earlier one: 0 for varied text, near 1 for a loop.
pub(crate) fn repeated_share(words: &[String], n: usize) -> f64 {
    if words.len() < n * 2 {
        return 0.0;
    }
    let grams: Vec<&[String]> = words.windows(n).collect();
    let distinct: HashSet<&[String]> = grams.iter().copied().collect();
    1.0 - distinct.len() as f64 / grams.len() as f64
}
