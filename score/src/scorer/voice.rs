//! D3 voice: the persona's own voice in the suite's language, not a generic assistant's. Fluent,
//! neutral text in the right language is partial; full marks need first person and the persona's
//! own words ([`super::evidence`]); salad and loops have no voice at all.

use super::Rated;
use super::answer::Answer;
use super::evidence::Evidence;
use super::identity;

/// Distinct pieces of persona evidence full marks on voice need (first person among them): more than
/// identity needs, as a voice is more than a name. Measured on the training labels: 3 fits them
/// better than 2 (MAE of totals 0.91 against 0.97).
const VOICE_FULL_MARKS: usize = 3;
use crate::suite::{Persona, Suite};

pub(crate) fn rate(suite: &Suite, persona: &Persona, a: &Answer) -> Rated {
    // Claiming to be a language model is generic voice as well as a wrong identity.
    let generic = a
        .text
        .first_of(&suite.rules.voice.generic_markers)
        .or_else(|| a.text.first_of(&suite.rules.identity.other_identity_markers));
    if let Some(marker) = generic {
        return Rated::new(0, format!("generic-assistant phrase {marker:?}"));
    }
    if let Some(other) = identity::wrong_identity(suite, persona, a) {
        return Rated::new(0, format!("the voice of someone else: {other}"));
    }
    if let Some(found) = a.languages.dominant().filter(|l| *l != suite.language) {
        return Rated::new(0, format!("answers in {found}, suite language is {}", suite.language));
    }
    if let Some(salad) = &a.salad {
        return Rated::new(0, salad.clone());
    }
    let evidence = Evidence::of(persona, suite.language, a);
    let shown = evidence.describe();
    if let Some(repeated) = &a.coherence.repeated {
        return Rated::new(1, format!("voice spoiled by repetition: {repeated:?} ({shown})"));
    }
    if evidence.count() >= VOICE_FULL_MARKS && evidence.first_person {
        return Rated::new(2, format!("persona voice in {} ({shown})", suite.language));
    }
    Rated::new(1, format!("{}, but flat: little persona voice ({shown})", suite.language))
}
