//! D1 identity: the answer speaks as the persona, never claims to be someone else, and names the
//! partner (and itself) where the question asks for it.

use super::Rated;
use super::answer::Answer;
use super::evidence::{Evidence, FULL_MARKS};
use crate::suite::{Persona, Question, Suite};
use crate::text::fold;
use regex::Regex;
use std::sync::LazyLock;

// Self-introductions followed by a capitalised name. Articles are skipped only after Portuguese
// leads ("sou a Iara"); in English "I am a Python developer" would otherwise read as a name. The
// name must be capitalised-then-lowercase so "sou a IA do Tomás" is not a claim to be "IA".
static SELF_CLAIM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?:(?i:meu\s+nome\s+[eé]|me\s+chamo|pode\s+me\s+chamar\s+de|\bsou(?:\s+(?:o|a))?|my\s+name\s+is|\bi\s+am|\bi'm|\bcall\s+me))\s+(\p{Lu}\p{Ll}+)",
    )
    .expect("self-claim regex compiles")
});

pub(crate) fn rate(suite: &Suite, persona: &Persona, q: &Question, a: &Answer) -> Rated {
    let rules = &suite.rules.identity;
    if let Some(other) = wrong_identity(suite, persona, a) {
        return Rated::new(0, other);
    }
    let evidence = Evidence::of(persona, suite.language, a);
    if let Some(salad) = &a.salad {
        // Salad says nothing about who speaks; a clear own name in it is worth a partial.
        return Rated::new(u8::from(evidence.names_self && evidence.first_person), salad.clone());
    }
    if let Some(relation) = a.text.first_of(&rules.mild_relations) {
        return Rated::new(1, format!("mis-states the partnership: {relation:?}"));
    }
    if q.name_self && !evidence.names_self {
        return Rated::new(1, format!("does not say its name ({})", persona.name));
    }
    if q.name_partner && a.text.first_of(&persona.partner_names()).is_none() {
        return Rated::new(1, format!("does not name its partner ({})", persona.partner));
    }
    let shown = evidence.describe();
    let generic = a.text.first_of(&suite.rules.voice.generic_markers);
    match generic {
        // A generic assistant that neither speaks as the persona nor knows its world is a stranger.
        Some(marker) if evidence.count() == 0 && !mentions_suite(a) => {
            Rated::new(0, format!("a generic assistant ({marker:?}) that knows nothing of the persona"))
        }
        // First person alone could be anyone; with the persona's name, partner or markers it is her.
        _ if evidence.first_person && evidence.count() >= FULL_MARKS => {
            Rated::new(2, format!("speaks as {} ({shown})", persona.name))
        }
        _ => Rated::new(1, format!("no wrong identity, but nothing shows the persona speaking ({shown})")),
    }
}

/// Why the answer speaks as someone other than the persona, if it does: it introduces itself by
/// another name, describes itself as something else, or casts the partner as family.
pub(crate) fn wrong_identity(suite: &Suite, persona: &Persona, a: &Answer) -> Option<String> {
    let rules = &suite.rules.identity;
    if let Some(name) = foreign_self_claim(persona, a.raw) {
        return Some(format!("claims to be {name:?}, not {}", persona.name));
    }
    if let Some(marker) = a.text.first_of(&rules.other_identity_markers) {
        return Some(format!("identifies as something else: {marker:?}"));
    }
    let relation = a.text.first_of(&rules.wrong_relations)?;
    Some(format!("wrong relation to {}: {relation:?}", persona.partner))
}

/// Whether the answer names anything of the suite's world (the partner, the projects): an answer
/// that does not is a stranger's, not the persona's.
fn mentions_suite(a: &Answer) -> bool {
    a.raw.split_whitespace().any(|t| {
        let w: String = t.chars().filter(|c| c.is_alphabetic()).collect();
        w.chars().next().is_some_and(char::is_uppercase) && a.lexicon.vocabulary.is_name(&w)
    })
}

/// A name the answer introduces itself with that is not one of the persona's names.
fn foreign_self_claim(persona: &Persona, raw: &str) -> Option<String> {
    let own: Vec<String> =
        persona.self_names().iter().filter_map(|n| fold(n).split_whitespace().next().map(str::to_owned)).collect();
    SELF_CLAIM.captures_iter(raw).map(|c| c[1].to_owned()).find(|name| !own.contains(&fold(name)))
}
