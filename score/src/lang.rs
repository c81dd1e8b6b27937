//! A cheap Portuguese-vs-English detector from stopword frequencies. Good enough to tell a persona
//! answering in the suite's language from a base model drifting into English; not a general detector.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Languages the scorer can check answers against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Pt,
    En,
}

impl Language {
    pub(crate) const SUPPORTED: &str = "pt, en";
    pub(crate) const ALL: [Language; 2] = [Language::Pt, Language::En];

    pub(crate) fn parse(code: &str) -> Option<Self> {
        match code {
            "pt" => Some(Self::Pt),
            "en" => Some(Self::En),
            _ => None,
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pt => "pt",
            Self::En => "en",
        })
    }
}

// Words shared by both languages ("a", "do", "no", "me") are left out on purpose. Lookups are on
// lowercase text with accents kept, so the informal "tô" does not count as the English "to".
const PT: &[&str] = &[
    "o", "os", "um", "uma", "uns", "umas", "de", "da", "das", "dos", "em", "na", "nas", "nos", "que", "e", "é", "para",
    "pra", "com", "não", "nao", "mais", "por", "mas", "ao", "aos", "eu", "você", "voce", "ele", "ela", "isso", "esse",
    "essa", "este", "esta", "meu", "minha", "seu", "sua", "também", "muito", "quando", "como", "sou", "são", "está",
    "estou", "tem", "ter", "foi", "ser", "sobre", "porque", "já", "gente", "nosso", "nossa", "pelo", "pela", "num",
    "numa",
];
const EN: &[&str] = &[
    "the", "and", "of", "to", "in", "is", "are", "it", "that", "this", "for", "with", "you", "my", "i", "we", "on",
    "be", "have", "has", "was", "not", "but", "or", "by", "from", "at", "what", "which", "can", "will", "would",
    "about", "they", "an", "your", "our", "there", "their", "just", "also", "more", "very", "i'm", "it's", "don't",
    "am", "been", "were", "if", "so",
];

/// Whether `word` (any case) is a stopword of `language`: a foreign word, not a made-up one, in an
/// answer of another language.
pub(crate) fn is_stopword(language: Language, word: &str) -> bool {
    let lower = word.to_lowercase();
    match language {
        Language::Pt => PT.contains(&lower.as_str()),
        Language::En => EN.contains(&lower.as_str()),
    }
}

/// Fewer stopword hits than this and the text is too short to call a language.
const MIN_HITS: usize = 3;

/// Stopword hits per language in one text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct LanguageCounts {
    pub(crate) pt: usize,
    pub(crate) en: usize,
}

impl LanguageCounts {
    pub(crate) fn of(text: &str) -> Self {
        let lower = text.to_lowercase();
        let mut counts = Self::default();
        for word in lower.split(|c: char| !(c.is_alphanumeric() || c == '\'')) {
            let word = word.trim_matches('\'');
            counts.pt += usize::from(PT.contains(&word));
            counts.en += usize::from(EN.contains(&word));
        }
        counts
    }

    pub(crate) fn count(self, language: Language) -> usize {
        match language {
            Language::Pt => self.pt,
            Language::En => self.en,
        }
    }

    /// The language with most hits, or None when the text is too short to tell.
    pub(crate) fn dominant(self) -> Option<Language> {
        if self.pt + self.en < MIN_HITS {
            return None;
        }
        Some(if self.pt >= self.en { Language::Pt } else { Language::En })
    }

    /// Share of hits of the less frequent language, and its hit count.
    pub(crate) fn minority(self) -> (f64, usize) {
        let total = self.pt + self.en;
        let minority = self.pt.min(self.en);
        if total == 0 {
            return (0.0, 0);
        }
        (minority as f64 / total as f64, minority)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_portuguese_and_english() {
        let pt = LanguageCounts::of("Eu trabalho com o Tomás e a gente conversa muito sobre o projeto.");
        assert_eq!(pt.dominant(), Some(Language::Pt));
        let en = LanguageCounts::of("I am an assistant and I can help you with the project.");
        assert_eq!(en.dominant(), Some(Language::En));
    }

    #[test]
    fn too_few_hits_is_undecided() {
        assert_eq!(LanguageCounts::of("Rust, Postgres, Docker.").dominant(), None);
    }

    #[test]
    fn informal_to_is_not_english() {
        assert_eq!(LanguageCounts::of("tô aqui").en, 0);
    }

    #[test]
    fn minority_share_measures_mixing() {
        let mixed = LanguageCounts::of("Eu gosto de código e the tests are in the repo and it is fine.");
        let (share, hits) = mixed.minority();
        assert!(share > 0.2 && hits >= 3, "{mixed:?}");
    }
}
