//! Coherence within one answer: the same statement made again ("O João é o João. O João é o
//! João."), and a statement taken back ("escrevo os testes primeiro… testes eu não escrevo").

use crate::text::words;
use std::collections::HashMap;

/// A sentence needs this many words to count as a statement that can be repeated.
const MIN_STATEMENT_WORDS: usize = 3;
/// A negated word must be this long to count: short words ("é", "tem") are negated harmlessly.
const MIN_NEGATED_LETTERS: usize = 4;

/// Negations of the languages the scorer reads.
const NEGATIONS: &[&str] = &["nao", "nunca", "jamais", "not", "never"];

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Coherence {
    /// The most times any one statement is made.
    pub(crate) max_repeats: usize,
    /// The statement made most often, when it is made more than once.
    pub(crate) repeated: Option<String>,
    /// A word said plainly and also negated, as evidence of self-contradiction.
    pub(crate) contradiction: Option<String>,
}

impl Coherence {
    pub(crate) fn of(raw: &str) -> Self {
        let (max_repeats, repeated) = repeats(raw);
        Self { max_repeats, repeated, contradiction: contradiction(&words(raw)) }
    }
}

fn repeats(raw: &str) -> (usize, Option<String>) {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for sentence in raw.split(['.', '!', '?', '\n']) {
        let w = words(sentence);
        if w.len() >= MIN_STATEMENT_WORDS {
            *counts.entry(w.join(" ")).or_default() += 1;
        }
    }
    let best = counts.into_iter().max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)));
    match best {
        Some((s, n)) if n > 1 => (n, Some(s)),
        _ => (1, None),
    }
}

/// The first word that follows a negation and also appears earlier or later without one.
fn contradiction(w: &[String]) -> Option<String> {
    let negated = |i: usize| i > 0 && NEGATIONS.contains(&w[i - 1].as_str());
    (1..w.len()).filter(|&i| negated(i) && w[i].chars().count() >= MIN_NEGATED_LETTERS).find_map(|i| {
        let plain = (0..w.len()).any(|j| j != i && w[j] == w[i] && !negated(j) && !(j > 1 && negated(j - 1)));
        plain.then(|| format!("{} … {} {}", w[i], w[i - 1], w[i]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_statements_table() {
        const TWICE: &str = "O João é o João. O João é o João.";
        const THRICE: &str = "A gente usa Rust. A gente usa Rust! A gente usa Rust.";
        const VARIED: &str = "A gente usa Rust. O Tomás gosta de testes.";
        let cases = [(TWICE, 2, Some("o joao e o joao")), (THRICE, 3, Some("a gente usa rust")), (VARIED, 1, None)];
        for (text, times, statement) in cases {
            let c = Coherence::of(text);
            assert_eq!((c.max_repeats, c.repeated.as_deref()), (times, statement), "{text:?}");
        }
    }

    #[test]
    fn contradiction_table() {
        let cases = [
            ("Eu escrevo os testes primeiro. Só que testes eu não escrevo.", Some("escrevo … nao escrevo")),
            ("A gente gosta de Rust. Na verdade a gente não gosta de Rust.", Some("gosta … nao gosta")),
            ("Eu sempre pergunto antes. E nunca pergunto nada.", Some("pergunto … nunca pergunto")),
            // a negation of something not said plainly is no contradiction
            ("Eu não lembro das conversas antigas, então leio as notas.", None),
            // short words are negated harmlessly
            ("Não é fácil, mas é divertido.", None),
        ];
        for (text, expected) in cases {
            assert_eq!(Coherence::of(text).contradiction.as_deref(), expected, "{text:?}");
        }
    }
}
