//! One answer, analysed once and shared by every rule.

use super::coherence::Coherence;
use super::spelling::Spelling;
use crate::lang::{Language, LanguageCounts};
use crate::lexicon::Lexicon;
use crate::suite::{Question, Suite};
use crate::text::{WordText, words};

/// This many stopwords of another language and the answer is (partly) in that language.
const FOREIGN_STOPWORDS: usize = 3;

#[derive(Debug)]
pub(crate) struct Answer<'a> {
    pub(crate) raw: &'a str,
    pub(crate) words: Vec<String>,
    pub(crate) text: WordText,
    pub(crate) languages: LanguageCounts,
    /// The engine stopped generation at `max_new_tokens`.
    pub(crate) hit_token_limit: bool,
    pub(crate) spelling: Spelling,
    /// Why the answer is word salad or pseudo-language ([`super::salad`]), if it is.
    pub(crate) salad: Option<String>,
    /// Names the suite does not know ([`super::entities`]).
    pub(crate) invented: Vec<String>,
    pub(crate) coherence: Coherence,
    pub(crate) lexicon: &'a Lexicon,
}

impl<'a> Answer<'a> {
    pub(crate) fn new(raw: &'a str, hit_token_limit: bool, suite: &Suite, lexicon: &'a Lexicon, q: &Question) -> Self {
        let spelling = Spelling::of(lexicon, raw);
        let languages = LanguageCounts::of(raw);
        // Unknown words of an answer in (or mixed with) another language are that language's.
        let other_language =
            Language::ALL.iter().any(|l| *l != suite.language && languages.count(*l) >= FOREIGN_STOPWORDS);
        Self {
            raw,
            words: words(raw),
            text: WordText::new(raw),
            languages,
            hit_token_limit,
            salad: super::salad::verdict(&spelling, other_language),
            spelling,
            // Names are checked against a persona's world; a suite without one has no such list.
            invented: if other_language || suite.persona.is_none() {
                Vec::new()
            } else {
                super::entities::invented(suite, lexicon, q, raw)
            },
            coherence: Coherence::of(raw),
            lexicon,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}
