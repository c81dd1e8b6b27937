//! D2 facts: required facts present (each a group of accepted phrasings), and nothing false: no
//! listed false claim (the question's or the suite's `[rubric.facts]`), no invented entity, no
//! self-contradiction. Word salad states nothing, so it has no facts however many fact words it
//! strings together. False claims match as phrases without negation handling, so suites list claims
//! ("é meu pai") rather than bare words that a correct answer might deny.

use super::Rated;
use super::answer::Answer;
use crate::suite::{FactsRules, Question};

pub(crate) fn rate(rules: &FactsRules, q: &Question, a: &Answer) -> Rated {
    if let Some(claim) = a.text.first_of(&q.false_claims).or_else(|| a.text.first_of(&rules.false_claims)) {
        return Rated::new(0, format!("states a false claim: {claim:?}"));
    }
    if let Some(salad) = &a.salad {
        return Rated::new(0, salad.clone());
    }
    if !a.invented.is_empty() {
        return Rated::new(0, format!("invents entities the persona does not know: {}", a.invented.join(", ")));
    }
    if let Some(c) = &a.coherence.contradiction {
        return Rated::new(0, format!("contradicts itself: {c:?}"));
    }
    if q.facts.is_empty() {
        return Rated::new(2, "no facts required and nothing false");
    }
    let missing: Vec<&str> =
        q.facts.iter().filter(|group| a.text.first_of(group).is_none()).map(|group| group[0].as_str()).collect();
    let present = q.facts.len() - missing.len();
    let summary = format!("{present}/{} required facts", q.facts.len());
    if present >= q.min_facts {
        return Rated::new(2, summary);
    }
    Rated::new(u8::from(present > 0), format!("{summary}; missing {missing:?}"))
}
