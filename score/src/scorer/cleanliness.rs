//! D4 behavioural cleanliness beyond the automatic zeros (which `triggers` finds): soft artefacts
//! such as a "Resposta:" label lower the score without zeroing the answer.

use super::Rated;
use super::answer::Answer;
use crate::suite::CleanlinessRules;
use crate::text::fold;

pub(crate) fn rate(rules: &CleanlinessRules, a: &Answer) -> Rated {
    // Salad has no clean prose to speak of: absence of artefacts is not evidence of clean
    // behaviour there, so it is not full marks (and a word salad lands at 1/10 or below).
    if let Some(salad) = &a.salad {
        return Rated::new(1, format!("no prose to call clean: {salad}"));
    }
    // Folded substrings, not words: the colon is what makes "Resposta:" a label and not a noun.
    let folded = fold(a.raw);
    match rules.soft_phrases.iter().find(|p| !p.trim().is_empty() && folded.contains(&fold(p))) {
        Some(phrase) => Rated::new(1, format!("artefact {phrase:?}")),
        None => Rated::new(2, "no template, planning or prompt artefacts"),
    }
}
