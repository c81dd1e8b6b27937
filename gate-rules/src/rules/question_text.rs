//! `question_text`: not a rule of `gate.toml` but a check on what the comparison means. Scores are
//! paired by question id, so when the candidate and a baseline both record a text for the same id
//! and the texts differ, that question's comparison is not like for like (an edited suite, or a
//! history imported from another experiment) → a warning naming the id and both texts. It never
//! fails a phase: the scores may still be right, the reader has to judge.
//!
//! Texts are compared after Unicode NFC normalisation with runs of whitespace collapsed, so line
//! wrapping or a composed "é" against a decomposed one is not a difference; anything else is,
//! case and punctuation included, since it changes the prompt the model saw. A question whose
//! text is missing on either side, or that has no sample on either side, is not judged.

use unicode_normalization::UnicodeNormalization;

use super::{Context, describe};
use crate::evaluate::Baseline;
use crate::finding::{Finding, RuleId, Severity, excerpt};
use crate::phase::QuestionEval;

/// Characters of each question text quoted in the message.
const QUESTION_CHARS: usize = 80;

pub(crate) fn check(ctx: &Context<'_>) -> Vec<Finding> {
    let mut findings = Vec::new();
    for b in ctx.baselines {
        for q in &ctx.candidate.eval {
            let Some(base_q) = b.phase.question(&q.id) else {
                continue;
            };
            if differ(base_q, q) {
                findings.push(finding(b, base_q, q));
            }
        }
    }
    findings
}

/// True when both sides were scored, both record a text, and the texts differ.
fn differ(baseline: &QuestionEval, candidate: &QuestionEval) -> bool {
    let (Some(before), Some(now)) = (recorded(baseline), recorded(candidate)) else {
        return false;
    };
    before != now
}

/// The question's text in comparable form; `None` when it has no text or no sample.
fn recorded(q: &QuestionEval) -> Option<String> {
    let normal: String = q.question.nfc().collect();
    let text = normal.split_whitespace().collect::<Vec<_>>().join(" ");
    (!text.is_empty() && !q.samples.is_empty()).then_some(text)
}

fn finding(b: &Baseline<'_>, base_q: &QuestionEval, q: &QuestionEval) -> Finding {
    Finding::new(
        RuleId::QuestionText,
        Severity::Warn,
        format!(
            "{} asks a different question than in {}: “{}” → “{}”; the comparison for this question is not like \
             for like",
            q.id,
            describe(b),
            excerpt(&base_q.question, QUESTION_CHARS),
            excerpt(&q.question, QUESTION_CHARS)
        ),
    )
    .against(&b.phase.label)
    .question(&q.id)
}

#[cfg(test)]
mod tests {
    use crate::config::GateConfig;
    use crate::finding::{RuleId, Severity};
    use crate::phase::Phase;
    use crate::rules::test_support::findings_of;
    use crate::testkit::phase;

    const SCORES: [f64; 3] = [5.0, 6.0, 7.0];

    /// Phase `label` whose Q2 records `text`.
    fn asking(label: &str, ordinal: u64, text: &str) -> Phase {
        let mut p = phase(label, ordinal, &SCORES);
        p.eval[1].question = text.to_owned();
        p
    }

    fn judged(baseline: &Phase, candidate: &Phase) -> Vec<crate::finding::Finding> {
        findings_of(RuleId::QuestionText, std::slice::from_ref(baseline), candidate, &GateConfig::default())
    }

    /// Name, baseline's Q2 text, candidate's Q2 text, whether a finding is expected.
    type Case<'a> = (&'a str, &'a str, &'a str, bool);

    #[test]
    fn table() {
        let cases: [Case; 7] = [
            ("same text", "O que é o Quintal?", "O que é o Quintal?", false),
            ("different text", "O que é a Banca?", "O que é o Quintal?", true),
            ("only whitespace differs", "O que é  o\nQuintal? ", "O que é o Quintal?", false),
            ("composed against decomposed é", "O que \u{e9} o Quintal?", "O que e\u{301} o Quintal?", false),
            ("case is a difference", "o que é o quintal?", "O que é o Quintal?", true),
            ("no text in the baseline", "", "O que é o Quintal?", false),
            ("no text in the candidate", "O que é o Quintal?", "", false),
        ];
        for (name, before, now, expected) in cases {
            let found = judged(&asking("1", 1, before), &asking("2", 2, now));
            assert_eq!(found.len(), usize::from(expected), "{name}: {found:?}");
        }
    }

    #[test]
    fn finding_names_the_question_and_both_texts_and_does_not_fail() {
        let found = judged(&asking("1", 1, "O que é a Banca?"), &asking("2", 2, "O que é o Quintal?"));
        let f = &found[0];
        assert_eq!((f.severity, f.baseline.as_deref()), (Severity::Warn, Some("1")));
        assert_eq!(f.evidence.questions, ["Q2"]);
        assert_eq!(
            f.message,
            "Q2 asks a different question than in phase 1 (best and previous): “O que é a Banca?” → “O que é o \
             Quintal?”; the comparison for this question is not like for like"
        );
    }

    #[test]
    fn long_texts_are_shortened() {
        let long = "Me fala sobre o sistema da cooperativa, ".repeat(10);
        let found = judged(&asking("1", 1, &long), &asking("2", 2, "O que é o Quintal?"));
        assert!(found[0].message.contains("…”"), "{}", found[0].message);
        assert!(found[0].message.chars().count() < long.chars().count(), "{}", found[0].message);
    }

    #[test]
    fn unscored_question_is_not_judged() {
        let mut candidate = asking("2", 2, "O que é o Quintal?");
        candidate.eval[1].samples.clear();
        assert!(judged(&asking("1", 1, "O que é a Banca?"), &candidate).is_empty());
    }

    #[test]
    fn each_baseline_that_differs_gets_its_own_finding() {
        let history = [asking("1", 1, "O que é a Banca?"), asking("2", 2, "O que é a Banca?")];
        let mut best = history.clone();
        best[0].eval[0].samples[0].points = 9.0;
        let found =
            findings_of(RuleId::QuestionText, &best, &asking("3", 3, "O que é o Quintal?"), &GateConfig::default());
        let against: Vec<Option<&str>> = found.iter().map(|f| f.baseline.as_deref()).collect();
        assert_eq!(against, [Some("1"), Some("2")]);
    }
}
