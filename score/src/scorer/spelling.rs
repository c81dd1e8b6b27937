//! The share of an answer's words that neither the dictionary of the suite's language nor the suite
//! itself knows: near 0 for fluent Portuguese, high for pseudo-Portuguese ("primeíro cúbre oquelo").

use crate::lang::{Language, is_stopword};
use crate::lexicon::Lexicon;

/// Words shorter than this are not counted: single letters are initials, list marks or articles.
/// Only words that start in lower case count.
const MIN_LETTERS: usize = 2;

/// How many of an answer's words the lexicon does not know.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Spelling {
    pub(crate) words: usize,
    pub(crate) unknown: Vec<String>,
    /// Known words written without their accents ("tambem").
    pub(crate) accentless: usize,
}

impl Spelling {
    pub(crate) fn of(lexicon: &Lexicon, raw: &str) -> Self {
        let mut out = Self::default();
        // Capitalised words are names (Python, MongoDB): the entity check judges those.
        let counted = |w: &&str| w.chars().count() >= MIN_LETTERS && w.chars().next().is_some_and(char::is_lowercase);
        for word in raw.split(|c: char| !c.is_alphabetic()).filter(counted) {
            out.words += 1;
            if lexicon.knows(word) || foreign_stopword(lexicon, word) {
                continue;
            }
            if lexicon.knows_without_accents(word) {
                out.accentless += 1;
            } else {
                out.unknown.push(word.to_owned());
            }
        }
        out
    }

    /// Unknown words over counted words; 0 for an answer without words.
    pub(crate) fn unknown_share(&self) -> f64 {
        if self.words == 0 { 0.0 } else { self.unknown.len() as f64 / self.words as f64 }
    }
}

/// A stopword of another language the scorer reads ("that", "the"): mixing, which D5 judges, not
/// pseudo-language.
pub(crate) fn foreign_stopword(lexicon: &Lexicon, word: &str) -> bool {
    Language::ALL.iter().any(|l| *l != lexicon.language && is_stopword(*l, word))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{bundled, knowing};

    #[test]
    fn spelling_table() {
        const KNOWN: &str = "também a gente usa o código";
        let suite = bundled();
        let lexicon = knowing(&suite, &[KNOWN]);
        // (answer, counted words, unknown, accentless)
        let cases: [(&str, usize, usize, usize); 5] = [
            ("a gente também usa o código", 4, 0, 0),
            // accents dropped: a misspelling, not a made-up word
            ("a gente tambem usa o codigo", 4, 0, 2),
            ("a gente usa o cúbre oquelo", 4, 2, 0),
            // names start in capitals and are the entity check's; single letters are not counted
            ("a gente usa Python e MongoDB", 2, 0, 0),
            // stopwords of another language are mixing, not pseudo-words
            ("a gente usa the code", 4, 1, 0),
        ];
        for (text, words, unknown, accentless) in cases {
            let s = Spelling::of(&lexicon, text);
            assert_eq!((s.words, s.unknown.len(), s.accentless), (words, unknown, accentless), "{text:?}: {s:?}");
        }
    }
}
