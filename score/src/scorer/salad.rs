//! Word salad and pseudo-language: an answer whose words are largely unknown to the dictionary of
//! the suite's language says nothing, whatever persona words it contains. Such an answer scores
//! zero on D5 and on the content dimensions (D1, D2, D3).
//!
//! The signal kept is the dictionary share: the share of an answer's lower-case words that neither
//! the dictionary of the suite's language (accents aside) nor the suite knows. An answer is salad at
//! [`SALAD_UNKNOWN_SHARE`] or more, or at [`SALAD_MANY_UNKNOWN_SHARE`] with at least
//! [`SALAD_MANY_UNKNOWN`] made-up words. Measured on the training labels (122 answers): it flags 19
//! of the 20 pseudo-Portuguese answers (15 of 16 `smollm2`, 4 of 4 `gibberish`) and none of the 96
//! others (0 of 8 `excellent`, 16 `mediocre`, 6 `hallucination`, 4 `english`, ...). English
//! answers and mixed ones are left to the language checks: their unknown words are English.
//!
//! Salad made of real words ("a Banca é feita de Pix que caminha entre as bancas") is not caught: it
//! flags 0 of the 6 `word_salad` answers, and none of the other candidates measured on the same
//! labels separated them either. Means for `word_salad` / `excellent` / `mediocre`: share of
//! function words 0.49 / 0.50 / 0.45, of content words the suite uses 0.44 / 0.49 / 0.46, of word
//! pairs the suite's text has 0.13 / 0.21 / 0.13, of pairs of suite words that the suite pairs 0.31 /
//! 0.46 / 0.32, type/token ratio 0.85 / 0.77 / 0.94: the ranges overlap, so none is used, and
//! real-word salad is left to a judge.
//!
//! The answer's likelihood under a reference model (teacher-forced SmolLM2-135M-Instruct, the
//! eval engine's `Engine::log_probs`; `phasegate-eval`'s `fluency_labels` example) was measured on
//! the same training labels and does not separate either. Means for `word_salad` / `excellent` /
//! `mediocre`: mean token NLL as the assistant's answer 3.81 / 3.56 / 3.59 nats, as plain text
//! 5.11 / 4.68 / 5.24; what shuffling the words costs as the answer 1.51 / 1.95 / 1.94, as plain
//! text 1.00 / 1.29 / 1.08; share of tokens above 8 nats 0.13 / 0.10 / 0.11. Catching all 6
//! `word_salad` answers by the best of these (answer-turn order gain ≤ 2.04, p90 token NLL ≥ 7.81)
//! also flags 53 and 33 of the 96 answers that are not salad: a 135M model reads Portuguese too
//! poorly to tell surreal from plain.

use super::spelling::Spelling;

/// Share of unknown words from which an answer is pseudo-language.
pub(crate) const SALAD_UNKNOWN_SHARE: f64 = 0.12;
/// A lower share suffices when this many distinct made-up words show it is no slip of the pen.
pub(crate) const SALAD_MANY_UNKNOWN: usize = 3;
/// The share that suffices with [`SALAD_MANY_UNKNOWN`] made-up words.
pub(crate) const SALAD_MANY_UNKNOWN_SHARE: f64 = 0.05;
/// Answers with fewer counted words than this are too short to call salad.
const MIN_WORDS: usize = 5;

/// Why the answer is salad, or None. An answer in another language than the suite's is that, not
/// salad: its words are unknown to the suite language's dictionary for another reason.
pub(crate) fn verdict(spelling: &Spelling, other_language: bool) -> Option<String> {
    let share = spelling.unknown_share();
    let many = spelling.unknown.len() >= SALAD_MANY_UNKNOWN && share >= SALAD_MANY_UNKNOWN_SHARE;
    if other_language || spelling.words < MIN_WORDS || (share < SALAD_UNKNOWN_SHARE && !many) {
        return None;
    }
    let examples: Vec<&str> = spelling.unknown.iter().take(3).map(String::as_str).collect();
    Some(format!(
        "word salad: {:.0}% of words unknown to the dictionary ({} of {}, e.g. {})",
        share * 100.0,
        spelling.unknown.len(),
        spelling.words,
        examples.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{bundled, knowing};

    /// The words the tiny test dictionary knows: fluent Portuguese answers of the table.
    const KNOWN: &str = "o quintal é um aplicativo que liga hortas a voluntários da cidade e a gente cuida dele";

    #[test]
    fn salad_table() {
        let suite = bundled();
        let lexicon = knowing(&suite, &[KNOWN]);
        let cases = [
            ("O Quintal é um aplicativo que liga hortas a voluntários da cidade.", false, false),
            ("O quintal é o primeíro cúbre, oquelo que desenvolvemos a gente.", false, true),
            // too short to call
            ("oquelo cúbre", false, false),
            // unknown words of an answer in another language are that language's
            ("O quintal é oquelo cúbre primeíro estrondo.", true, false),
        ];
        for (text, other_language, expected) in cases {
            let spelling = Spelling::of(&lexicon, text);
            assert_eq!(verdict(&spelling, other_language).is_some(), expected, "{text:?}: {spelling:?}");
        }
    }

    #[test]
    fn the_reason_quotes_the_share_and_examples() {
        let suite = bundled();
        let lexicon = knowing(&suite, &[KNOWN]);
        let reason = verdict(&Spelling::of(&lexicon, "o quintal cúbre oquelo primeíro a gente"), false).unwrap();
        assert!(
            reason.starts_with("word salad: 60% of words unknown to the dictionary (3 of 5")
                && reason.contains("cúbre"),
            "{reason}"
        );
    }
}
