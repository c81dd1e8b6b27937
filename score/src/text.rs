//! Text normalisation shared by every rule. Rubric phrases are written by people with or without
//! accents and in any case, and small models drop accents freely, so every lookup folds both sides.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Lowercase, strip accents, straighten typographic quotes and collapse whitespace runs.
pub(crate) fn fold(text: &str) -> String {
    let folded: String = text
        .nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            '\u{2018}' | '\u{2019}' | '\u{02bc}' => '\'',
            '\u{201c}' | '\u{201d}' => '"',
            other => other,
        })
        .collect();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Folded words: runs of letters and digits; everything else separates.
pub(crate) fn words(text: &str) -> Vec<String> {
    fold(text).split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_owned).collect()
}

/// A text prepared for phrase lookups that respect word boundaries ("rust" does not match "trust").
#[derive(Debug, Clone)]
pub(crate) struct WordText {
    padded: String,
}

impl WordText {
    pub(crate) fn new(text: &str) -> Self {
        Self { padded: format!(" {} ", words(text).join(" ")) }
    }

    pub(crate) fn contains(&self, phrase: &str) -> bool {
        let needle = words(phrase).join(" ");
        !needle.is_empty() && self.padded.contains(&format!(" {needle} "))
    }

    /// The first phrase of `phrases` found in the text, as written in the suite.
    pub(crate) fn first_of<'a>(&self, phrases: &'a [String]) -> Option<&'a str> {
        phrases.iter().find(|p| self.contains(p)).map(String::as_str)
    }
}

/// Whether the answer ends like a finished sentence. Emoji and closing symbols count as an end;
/// a letter, digit or a connector such as a comma means generation stopped mid-sentence.
pub(crate) fn ends_sentence(text: &str) -> bool {
    let trimmed = text.trim_end_matches(|c: char| {
        c.is_whitespace() || matches!(c, '"' | '\'' | ')' | ']' | '»' | '”' | '’' | '*' | '_')
    });
    match trimmed.chars().last() {
        None => false,
        Some(c) => !(c.is_alphanumeric() || matches!(c, ',' | ';' | ':' | '-' | '–' | '—' | '(')),
    }
}

/// A short excerpt of `text` around byte offset `at`, on char boundaries, for evidence in reports.
pub(crate) fn excerpt(text: &str, at: usize, len: usize) -> String {
    const CONTEXT: usize = 30;
    let start = floor_boundary(text, at.saturating_sub(CONTEXT));
    let end = floor_boundary(text, (at + len + CONTEXT).min(text.len()));
    let mut out = text[start..end].split_whitespace().collect::<Vec<_>>().join(" ");
    if start > 0 {
        out.insert(0, '…');
    }
    if end < text.len() {
        out.push('…');
    }
    out
}

fn floor_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_strips_accents_case_and_curly_quotes() {
        assert_eq!(fold("  Não   SEI\u{2019} Você "), "nao sei' voce");
    }

    #[test]
    fn word_text_matches_on_word_boundaries_only() {
        let text = WordText::new("Eu uso Rust, não confio em trust.");
        assert!(text.contains("rust"));
        assert!(text.contains("NAO confio"));
        assert!(!text.contains("rus"));
        assert!(!text.contains(""));
    }

    #[test]
    fn ends_sentence_table() {
        let cases = [
            ("Tudo certo.", true),
            ("Tudo certo!\n", true),
            ("Será?", true),
            ("Até mais 😊", true),
            ("Ele disse \"sim.\"", true),
            ("e depois a gente", false),
            ("primeiro,", false),
            ("", false),
        ];
        for (text, expected) in cases {
            assert_eq!(ends_sentence(text), expected, "{text:?}");
        }
    }

    #[test]
    fn excerpt_respects_char_boundaries() {
        let text = "ação ".repeat(30);
        let e = excerpt(&text, 41, 4);
        assert!(e.starts_with('…') && e.ends_with('…'));
    }
}
