//! Invented entities: names (capitalised words, acronyms, camel case) that neither the suite (its
//! persona, system prompt, questions, facts, `[rubric.facts] known_entities`) nor the question uses.
//! "professor Diego Rodrigues", "CLARÍCULO", "AgroPag" are what a persona answer must not make up.

use crate::lexicon::Lexicon;
use crate::suite::{Question, Suite};
use crate::text::words;

/// The names in `raw` that the suite does not know, in order, each once.
pub(crate) fn invented(suite: &Suite, lexicon: &Lexicon, question: &Question, raw: &str) -> Vec<String> {
    let known = |word: &str| {
        lexicon.vocabulary.contains(word)
            || words(&question.text).contains(&words(word).concat())
            || suite.rules.facts.known_entities.iter().any(|k| words(k).contains(&words(word).concat()))
    };
    let mut found: Vec<String> = Vec::new();
    let mut sentence_start = true;
    for token in raw.lines().flat_map(|line| std::iter::once("\n").chain(line.split_whitespace())) {
        if token == "\n" {
            sentence_start = true;
            continue;
        }
        // Contractions ("I'm", "d'água") are not names.
        let word: String = if token.contains(['\'', '’']) {
            String::new()
        } else {
            token.chars().filter(|c| c.is_alphabetic()).collect()
        };
        let starts = sentence_start;
        sentence_start = token.ends_with(['.', '!', '?', ':', ';']);
        if word.chars().count() < 2 || !word.chars().any(char::is_uppercase) || known(&word) {
            continue;
        }
        // A capital at the start of a sentence is grammar: only a word the dictionary does not know
        // in lower case is a name there.
        if starts && (lexicon.knows(&word.to_lowercase()) || super::spelling::foreign_stopword(lexicon, &word)) {
            continue;
        }
        if !found.contains(&word) {
            found.push(word);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{bundled, knowing};

    #[test]
    fn invented_entities_table() {
        const KNOWN: &str = "eu trabalho com o na e fui criada pelo professor essas são as principais";
        let suite = bundled();
        let lexicon = knowing(&suite, &[KNOWN]);
        let q = suite.question("Q5").unwrap();
        let cases: [(&str, &[&str]); 6] = [
            ("Eu trabalho com o Tomás na Ipê Digital e no Quintal.", &[]),
            ("Fui criada pelo professor Diego Rodrigues.", &["Diego", "Rodrigues"]),
            ("Eu trabalho no CLARÍCULO e no AgroPag.", &["CLARÍCULO", "AgroPag"]),
            // a capital that starts a sentence (or a line) is grammar when the word is known
            ("- Rust\n- Docker\n\nEssas são as principais.", &[]),
            // the suite's known_entities
            ("Eu trabalho com a API do Quintal.", &[]),
            // each name once
            ("Joana e Joana.", &["Joana"]),
        ];
        for (text, expected) in cases {
            assert_eq!(invented(&suite, &lexicon, q, text), expected, "{text:?}");
        }
    }

    #[test]
    fn names_of_the_question_are_known() {
        let suite = bundled();
        let lexicon = knowing(&suite, &[]);
        let q = suite.question("Q3").unwrap();
        assert!(invented(&suite, &lexicon, q, "a Banca, o sistema da Ipê Digital").is_empty());
    }
}
