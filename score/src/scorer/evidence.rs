//! What shows the persona speaking: its own names, its markers ("a gente", "meu parceiro") and
//! first-person speech. One marker phrase alone is not enough for full marks on D1 or D3.

use super::answer::Answer;
use crate::lang::Language;
use crate::suite::Persona;

/// Distinct pieces of evidence needed for full marks.
pub(crate) const FULL_MARKS: usize = 2;

const FIRST_PERSON_PT: &[&str] = &["eu", "meu", "minha", "meus", "minhas", "me", "comigo", "nosso", "nossa"];
/// "a gente", Brazilian first person plural.
const WE_PT: &str = "a gente";
const FIRST_PERSON_EN: &[&str] = &["i", "my", "me", "we", "our", "us"];

/// The persona evidence of an answer: each distinct marker or own name, and first person.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Evidence {
    pub(crate) names_self: bool,
    pub(crate) names_partner: bool,
    pub(crate) markers: Vec<String>,
    pub(crate) first_person: bool,
}

impl Evidence {
    pub(crate) fn of(persona: &Persona, language: Language, a: &Answer) -> Self {
        let pronouns = match language {
            Language::Pt => FIRST_PERSON_PT,
            Language::En => FIRST_PERSON_EN,
        };
        Self {
            names_self: a.text.first_of(&persona.self_names()).is_some(),
            names_partner: a.text.first_of(&persona.partner_names()).is_some(),
            markers: persona.markers.iter().filter(|m| a.text.contains(m)).cloned().collect(),
            first_person: a.words.iter().any(|w| pronouns.contains(&w.as_str())) || a.text.contains(WE_PT),
        }
    }

    pub(crate) fn count(&self) -> usize {
        usize::from(self.names_self)
            + usize::from(self.names_partner)
            + self.markers.len()
            + usize::from(self.first_person)
    }

    pub(crate) fn describe(&self) -> String {
        let mut parts: Vec<String> = self.markers.iter().map(|m| format!("{m:?}")).collect();
        if self.names_partner {
            parts.insert(0, "partner".to_owned());
        }
        if self.names_self {
            parts.insert(0, "own name".to_owned());
        }
        if self.first_person {
            parts.push("first person".to_owned());
        }
        if parts.is_empty() { "nothing".to_owned() } else { parts.join(", ") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{bundled, knowing};

    #[test]
    fn evidence_table() {
        let suite = bundled();
        let persona = suite.persona.clone().unwrap();
        let lexicon = knowing(&suite, &[]);
        let q = suite.question("Q1").unwrap();
        // (answer, count, first person)
        let cases = [
            // own name, partner, a marker, first person
            ("Eu sou a Iara e o Tomás é meu parceiro.", 4, true),
            ("A gente programa junto.", 2, true),
            ("O Quintal conecta hortas a voluntários.", 0, false),
            ("Eu gosto de testes.", 1, true),
        ];
        for (text, count, first_person) in cases {
            let a = Answer::new(text, false, &suite, &lexicon, q);
            let e = Evidence::of(&persona, suite.language, &a);
            assert_eq!((e.count(), e.first_person), (count, first_person), "{text:?}: {e:?}");
        }
    }
}
