//! D5 response quality: finished sentences, no repetition loops, a sensible length, one language.

use super::Rated;
use super::answer::Answer;
use crate::lang::Language;
use crate::suite::{QualityRules, Question};
use crate::text::ends_sentence;
use std::collections::HashSet;

/// A language needs at least this many stopword hits before its share counts as mixing.
const MIN_MIXING_HITS: usize = 3;

/// A statement made this many times is a loop: D5 zero.
pub(crate) const LOOP_REPEATS: usize = 3;
/// Share of unknown words from which the answer is flagged as misspelt.
pub(crate) const MISSPELT_SHARE: f64 = 0.05;

pub(crate) fn rate(rules: &QualityRules, q: &Question, a: &Answer) -> Rated {
    if let Some(salad) = &a.salad {
        return Rated::new(0, salad.clone());
    }
    if a.coherence.max_repeats >= LOOP_REPEATS {
        let said = a.coherence.repeated.as_deref().unwrap_or_default();
        return Rated::new(0, format!("repetition loop: {said:?} {} times", a.coherence.max_repeats));
    }
    let share = repeated_share(&a.words, rules.repetition_ngram);
    // A loop of n-grams that is one statement said twice is a repetition, not a loop.
    if share >= rules.loop_share && a.coherence.max_repeats != 2 {
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
    if a.spelling.unknown_share() >= MISSPELT_SHARE {
        flags.push(format!("misspelt: {}", spelling_reason(a)));
    }
    if let Some(said) = &a.coherence.repeated {
        flags.push(format!("says {said:?} twice"));
    }
    if let Some(c) = &a.coherence.contradiction {
        flags.push(format!("contradicts itself: {c:?}"));
    }
    // A statement said twice is one flaw, flagged above; its n-grams repeat because of it.
    if share >= rules.repetition_share && a.coherence.repeated.is_none() {
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

fn spelling_reason(a: &Answer) -> String {
    let examples: Vec<&str> = a.spelling.unknown.iter().take(3).map(String::as_str).collect();
    format!(
        "{:.0}% of words unknown to the dictionary ({} of {}, e.g. {})",
        a.spelling.unknown_share() * 100.0,
        a.spelling.unknown.len(),
        a.spelling.words,
        examples.join(", ")
    )
}
