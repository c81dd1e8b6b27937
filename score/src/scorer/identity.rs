//! D1 identity: the answer speaks as the persona, never claims to be someone else, and names the
//! partner (and itself) where the question asks for it.

use super::Rated;
use super::answer::Answer;
use crate::suite::{IdentityRules, Persona, Question};
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

pub(crate) fn rate(persona: &Persona, rules: &IdentityRules, q: &Question, a: &Answer) -> Rated {
    if let Some(name) = foreign_self_claim(persona, a.raw) {
        return Rated::new(0, format!("claims to be {name:?}, not {}", persona.name));
    }
    if let Some(marker) = a.text.first_of(&rules.other_identity_markers) {
        return Rated::new(0, format!("identifies as something else: {marker:?}"));
    }
    let names_self = a.text.first_of(&persona.self_names()).is_some();
    let names_partner = a.text.first_of(&persona.partner_names()).is_some();
    if q.name_self && !names_self {
        return Rated::new(1, format!("does not say its name ({})", persona.name));
    }
    if q.name_partner && !names_partner {
        return Rated::new(1, format!("does not name its partner ({})", persona.partner));
    }
    match a.text.first_of(&persona.markers) {
        _ if names_self => Rated::new(2, format!("speaks as {}", persona.name)),
        Some(marker) => Rated::new(2, format!("speaks as the persona ({marker:?})")),
        None => Rated::new(1, "no wrong identity, but nothing shows the persona speaking"),
    }
}

/// A name the answer introduces itself with that is not one of the persona's names.
fn foreign_self_claim(persona: &Persona, raw: &str) -> Option<String> {
    let own: Vec<String> =
        persona.self_names().iter().filter_map(|n| fold(n).split_whitespace().next().map(str::to_owned)).collect();
    SELF_CLAIM.captures_iter(raw).map(|c| c[1].to_owned()).find(|name| !own.contains(&fold(name)))
}
