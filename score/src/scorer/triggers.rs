//! Automatic-zero triggers: the rubric's phrases and regexes on every dimension, system-prompt bleed
//! on the cleanliness dimension, and triggers the responses file already reported.

use super::answer::Answer;
use crate::scores::{Trigger, TriggerKind};
use crate::suite::{DimId, Suite, TriggerPattern};
use crate::text::{excerpt, fold};
use std::collections::HashSet;

pub(crate) fn find(suite: &Suite, answer: &Answer, reported: Option<&[String]>) -> Vec<Trigger> {
    let folded = fold(answer.raw);
    let mut found = Vec::new();
    for dimension in &suite.rules.dimensions {
        found.extend(dimension.auto_zero.iter().filter_map(|p| matched(&dimension.id, p, answer.raw, &folded)));
    }
    let target = suite.rules.cleanliness_dimension();
    let bleed_len = suite.rules.cleanliness.bleed_ngram;
    if let Some(prompt) = &suite.system_prompt {
        found.extend(bleed(target, prompt, &answer.words, bleed_len));
    }
    found.extend(reported.unwrap_or_default().iter().map(|r| Trigger {
        dim: target.clone(),
        kind: TriggerKind::Reported,
        pattern: r.clone(),
        excerpt: String::new(),
    }));
    found
}

fn matched(dim: &DimId, pattern: &TriggerPattern, raw: &str, folded: &str) -> Option<Trigger> {
    match pattern {
        // Phrases match as folded substrings, not on word boundaries: template tokens such as
        // `<|user|>` are mostly punctuation.
        TriggerPattern::Phrase(phrase) => {
            let at = folded.find(&fold(phrase))?;
            Some(Trigger {
                dim: dim.clone(),
                kind: TriggerKind::Phrase,
                pattern: phrase.clone(),
                excerpt: excerpt(folded, at, phrase.len()),
            })
        }
        TriggerPattern::Regex(regex) => {
            let m = regex.find(raw)?;
            Some(Trigger {
                dim: dim.clone(),
                kind: TriggerKind::Regex,
                pattern: regex.as_str().to_owned(),
                excerpt: excerpt(raw, m.start(), m.len()),
            })
        }
    }
}

/// The first run of `n` answer words that also occurs in the system prompt.
fn bleed(dim: &DimId, system_prompt: &str, answer: &[String], n: usize) -> Option<Trigger> {
    if answer.len() < n {
        return None;
    }
    let prompt = crate::text::words(system_prompt);
    let grams: HashSet<&[String]> = prompt.windows(n).collect();
    let copied = answer.windows(n).find(|w| grams.contains(w))?;
    Some(Trigger {
        dim: dim.clone(),
        kind: TriggerKind::SystemPromptBleed,
        pattern: copied.join(" "),
        excerpt: format!("{n} consecutive words copied from the system prompt"),
    })
}
