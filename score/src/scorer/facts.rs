//! D2 facts: required facts present (each a group of accepted phrasings), listed false claims absent.
//! False claims match as phrases without negation handling, so suites list claims ("é meu pai")
//! rather than bare words that a correct answer might deny.

use super::Rated;
use super::answer::Answer;
use crate::suite::Question;

pub(crate) fn rate(q: &Question, a: &Answer) -> Rated {
    if let Some(claim) = a.text.first_of(&q.false_claims) {
        return Rated::new(0, format!("states a false claim: {claim:?}"));
    }
    if q.facts.is_empty() {
        return Rated::new(2, "no facts required and no false claims");
    }
    let missing: Vec<&str> =
        q.facts.iter().filter(|group| a.text.first_of(group).is_none()).map(|group| group[0].as_str()).collect();
    let present = q.facts.len() - missing.len();
    let summary = format!("{present}/{} required facts", q.facts.len());
    if present >= q.min_facts {
        return Rated::new(2, summary);
    }
    let level = u8::from(present > 0 && 2 * present >= q.min_facts);
    Rated::new(level, format!("{summary}; missing {missing:?}"))
}
