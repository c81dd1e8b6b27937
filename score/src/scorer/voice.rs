//! D3 voice: the persona's own voice in the suite's language, not a generic assistant's.

use super::Rated;
use super::answer::Answer;
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
    if let Some(found) = a.languages.dominant().filter(|l| *l != suite.language) {
        return Rated::new(0, format!("answers in {found}, suite language is {}", suite.language));
    }
    let names = persona.self_names();
    match a.text.first_of(&persona.markers).or_else(|| a.text.first_of(&names)) {
        Some(marker) => Rated::new(2, format!("persona voice ({marker:?}) in {}", suite.language)),
        None => Rated::new(1, "right language, no persona voice markers"),
    }
}
