//! The suite's own words: everything the suite says about its persona and its questions. Names the
//! suite uses (Iara, Quintal, SvelteKit) are known words and known entities; anything else an
//! answer names is invented unless the question names it.

use crate::suite::Suite;
use crate::text::words;
use std::collections::HashSet;

/// Folded words of the suite's persona, system prompt, questions and facts. Anchors
/// and false claims are left out: they are what answers should not say.
#[derive(Debug, Clone, Default)]
pub(crate) struct Vocabulary {
    words: HashSet<String>,
    /// Lowercase with accents kept: spelling counts ("primeíro" is not "primeiro").
    spelled: HashSet<String>,
    /// Folded names of the suite's world: capitalised words not at a sentence start (Tomás,
    /// Quintal, SvelteKit) and the persona's names.
    names: HashSet<String>,
}

impl Vocabulary {
    pub(crate) fn of(suite: &Suite) -> Self {
        let mut texts: Vec<&str> = Vec::new();
        texts.extend(suite.system_prompt.as_deref());
        if let Some(p) = &suite.persona {
            texts.extend([p.name.as_str(), p.partner.as_str()]);
            texts.extend(p.aliases.iter().chain(&p.partner_aliases).chain(&p.markers).map(String::as_str));
        }
        for q in &suite.questions {
            texts.push(&q.text);
            texts.extend(q.facts.iter().flatten().map(String::as_str));
        }
        let mut out = Self::from_texts(&texts);
        if let Some(p) = &suite.persona {
            out.names.extend(p.self_names().iter().chain(&p.partner_names()).flat_map(|n| words(n)));
        }
        out
    }

    pub(crate) fn from_texts(texts: &[&str]) -> Self {
        let mut out = Self::default();
        for text in texts {
            let w = words(text);
            out.words.extend(w);
            out.spelled.extend(spelled_words(text));
            out.names.extend(mid_sentence_names(text));
        }
        out
    }

    /// Whether the suite uses `word` (compared folded).
    pub(crate) fn contains(&self, word: &str) -> bool {
        words(word).iter().all(|w| self.words.contains(w)) && !word.trim().is_empty()
    }

    /// Whether `word` is a name of the suite's world (compared folded).
    pub(crate) fn is_name(&self, word: &str) -> bool {
        let w = words(word);
        !w.is_empty() && w.iter().all(|w| self.names.contains(w))
    }

    /// Whether the suite spells `word` this way (lowercase, accents kept).
    pub(crate) fn spells(&self, word: &str) -> bool {
        self.spelled.contains(&word.to_lowercase())
    }

    pub(crate) fn len(&self) -> usize {
        self.words.len()
    }
}

/// Lowercase words of letters with accents kept, for spelling lookups.
pub(crate) fn spelled_words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphabetic()).filter(|w| !w.is_empty()).map(str::to_lowercase)
}

/// Folded capitalised words of `text` that do not start a sentence.
fn mid_sentence_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut starts = true;
    for token in text.split_whitespace() {
        let word: String = token.chars().filter(|c| c.is_alphabetic()).collect();
        if !starts && word.chars().next().is_some_and(char::is_uppercase) {
            out.extend(words(&word));
        }
        starts = token.ends_with(['.', '!', '?', ':']);
    }
    out
}
