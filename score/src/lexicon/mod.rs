//! The lexicon the rules scorer reads answers with: a Hunspell dictionary of the suite's language
//! and the suite's own vocabulary (persona, system prompt, questions, facts), from which it knows
//! which words are real words of the language and which names belong to the suite.
//!
//! [`Lexicon::load`] is the only I/O: it reads `index.aff` and `index.dic` from
//! `<model cache>/dictionaries/<language>/`, where `phasegate models pull dictionary-pt` (or
//! `dictionary-en`) puts them. [`Lexicon::from_hunspell`] builds one from in-memory text for tests.

mod vocabulary;

use crate::error::LexiconError;
use crate::lang::Language;
use crate::suite::Suite;
use crate::text::fold;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
pub(crate) use vocabulary::Vocabulary;

/// The dictionary of the suite's language and the suite's vocabulary. Opaque: the scorer reads it.
pub struct Lexicon {
    dictionary: spellbook::Dictionary,
    pub(crate) vocabulary: Vocabulary,
    /// The dictionary's stems folded (no accents, lower case): small models drop accents
    /// ("tambem"), which is a misspelling, not a made-up word.
    folded_stems: HashSet<String>,
    pub(crate) language: Language,
}

impl std::fmt::Debug for Lexicon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lexicon").field("vocabulary", &self.vocabulary.len()).finish_non_exhaustive()
    }
}

/// The name of the package `phasegate models pull` fetches the dictionary of `language` from.
pub fn dictionary_package(language: Language) -> &'static str {
    match language {
        Language::Pt => "dictionary-pt",
        Language::En => "dictionary-en",
    }
}

/// Where the dictionary of `language` lives in the model cache.
pub fn dictionary_dir(model_cache: &Path, language: Language) -> PathBuf {
    model_cache.join("dictionaries").join(language.to_string())
}

impl Lexicon {
    /// Reads the dictionary of the suite's language from the model cache.
    pub fn load(model_cache: &Path, suite: &Suite) -> Result<Lexicon, LexiconError> {
        let dir = dictionary_dir(model_cache, suite.language);
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => LexiconError::Missing {
                    language: suite.language,
                    dir: dir.clone(),
                    package: dictionary_package(suite.language),
                },
                _ => LexiconError::Read { path, source },
            })
        };
        let (aff, dic) = (read("index.aff")?, read("index.dic")?);
        Self::from_hunspell(&aff, &dic, suite).map_err(|e| match e {
            LexiconError::Parse { message, .. } => LexiconError::Parse { path: dir.join("index.aff"), message },
            other => other,
        })
    }

    /// A lexicon from the text of a Hunspell `.aff` and `.dic` (tests use a tiny one).
    pub fn from_hunspell(aff: &str, dic: &str, suite: &Suite) -> Result<Lexicon, LexiconError> {
        let dictionary = spellbook::Dictionary::new(aff, dic)
            .map_err(|e| LexiconError::Parse { path: PathBuf::from("<memory>"), message: e.to_string() })?;
        let folded_stems = dic.lines().skip(1).filter_map(|l| l.split('/').next()).map(fold).collect();
        Ok(Lexicon { dictionary, vocabulary: Vocabulary::of(suite), folded_stems, language: suite.language })
    }

    /// Whether `word` is a dictionary stem once accents are ignored ("tambem" for "também").
    pub(crate) fn knows_without_accents(&self, word: &str) -> bool {
        self.folded_stems.contains(&fold(word))
    }

    /// Whether `word` (as written in the answer) is a word of the language or of the suite.
    pub(crate) fn knows(&self, word: &str) -> bool {
        self.vocabulary.spells(word) || self.dictionary.check(word) || self.dictionary.check(&word.to_lowercase())
    }
}

#[cfg(test)]
pub(crate) mod tests;
