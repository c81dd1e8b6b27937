//! One answer, analysed once and shared by every rule.

use crate::lang::LanguageCounts;
use crate::text::{WordText, words};

#[derive(Debug)]
pub(crate) struct Answer<'a> {
    pub(crate) raw: &'a str,
    pub(crate) words: Vec<String>,
    pub(crate) text: WordText,
    pub(crate) languages: LanguageCounts,
    /// The engine stopped generation at `max_new_tokens`.
    pub(crate) hit_token_limit: bool,
}

impl<'a> Answer<'a> {
    pub(crate) fn new(raw: &'a str, hit_token_limit: bool) -> Self {
        Self { raw, words: words(raw), text: WordText::new(raw), languages: LanguageCounts::of(raw), hit_token_limit }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}
