//! Rule 2, `question_drop`: one question fell by at least `max_question_drop` points of 10 → fail,
//! naming the question, both scores and excerpts of both responses. No significance needed: a
//! fall that large on one question is evidence by itself (the team's Q5 went 8 → 1).

use super::{Context, describe};
use crate::evaluate::Baseline;
use crate::finding::{Finding, RuleId, Severity};
use crate::numfmt::num;
use crate::phase::QuestionEval;
use crate::stats::EPSILON;

pub(crate) fn check(ctx: &Context<'_>) -> Vec<Finding> {
    let limit = ctx.config.rules.question_drop.max_question_drop;
    let mut findings = Vec::new();
    for b in ctx.baselines {
        for q in &ctx.candidate.eval {
            let Some(base_q) = b.phase.question(&q.id) else {
                continue;
            };
            let (Some(now), Some(before)) = (q.normalized(), base_q.normalized()) else {
                continue;
            };
            if before - now >= limit - EPSILON {
                findings.push(finding(ctx, b, q, base_q, before, now));
            }
        }
    }
    findings
}

fn finding(
    ctx: &Context<'_>,
    b: &Baseline<'_>,
    q: &QuestionEval,
    base_q: &QuestionEval,
    before: f64,
    now: f64,
) -> Finding {
    let title = if q.question.is_empty() { q.id.clone() } else { format!("{} ({})", q.id, q.question) };
    let mut f = Finding::new(
        RuleId::QuestionDrop,
        Severity::Fail,
        format!(
            "{title} fell {} → {} ({} points of 10) against {}",
            num(before),
            num(now),
            num(now - before),
            describe(b)
        ),
    )
    .against(&b.phase.label)
    .question(&q.id)
    .value("baseline", before)
    .value("candidate", now)
    .value("max_question_drop", ctx.config.rules.question_drop.max_question_drop);
    if let Some(text) = first_response(base_q) {
        f = f.excerpt(&b.phase.label, &q.id, text);
    }
    if let Some(text) = first_response(q) {
        f = f.excerpt(&ctx.candidate.label, &q.id, text);
    }
    f
}

fn first_response(q: &QuestionEval) -> Option<&str> {
    q.samples.iter().find_map(|s| s.response.as_deref())
}

#[cfg(test)]
mod tests {
    use crate::config::GateConfig;
    use crate::finding::RuleId;
    use crate::rules::test_support::findings_of;
    use crate::testkit::{PHASE_7, PHASE_8, phase};

    /// Name, baseline points, candidate points, questions expected to fail.
    type Case<'a> = (&'a str, &'a [f64], &'a [f64], &'a [&'a str]);

    #[test]
    fn table() {
        let config = GateConfig::default();
        let cases: [Case; 4] = [
            ("the team's Q5: 8 to 1", &PHASE_7, &PHASE_8, &["Q5"]),
            ("exactly the limit fails", &[6.0, 5.0], &[3.0, 5.0], &["Q1"]),
            ("just under the limit passes", &[6.0, 5.0], &[3.5, 5.0], &[]),
            ("rises never fail", &[1.0, 1.0], &[9.0, 9.0], &[]),
        ];
        for (name, before, after, expected) in cases {
            let found = findings_of(RuleId::QuestionDrop, &[phase("1", 1, before)], &phase("2", 2, after), &config);
            let questions: Vec<&str> = found.iter().map(|f| f.evidence.questions[0].as_str()).collect();
            assert_eq!(questions, expected, "{name}");
        }
    }

    #[test]
    fn evidence_has_both_scores_and_both_excerpts() {
        let found = findings_of(
            RuleId::QuestionDrop,
            &[phase("7", 7, &PHASE_7)],
            &phase("8", 8, &PHASE_8),
            &GateConfig::default(),
        );
        let f = &found[0];
        assert!(f.message.contains("8 → 1"), "{}", f.message);
        let phases: Vec<&str> = f.evidence.excerpts.iter().map(|e| e.phase.as_str()).collect();
        assert_eq!(phases, ["7", "8"]);
    }
}
