//! `pairwise`: the judge compared the candidate's answers with a baseline phase's, question by
//! question, in both orders (the score stage's pairwise mode). That comparison is tested on its
//! own, beside the absolute scores: the sign-flip test of the per-question preferences, as
//! `overall_drop` tests the per-question differences. A mean preference for the baseline of at
//! least `min_preference` (of −1..1) with p < `alpha` fails; one that is not significant is an
//! inconclusive warning; a smaller one is reported as no preference. A preference for a phase
//! outside the accepted history is reported, not judged: it is not the phase the gate compares with.

use super::Context;
use crate::evaluate::{PairwiseComparison, Timeline};
use crate::finding::{Finding, RuleId, Severity};
use crate::numfmt::{num, p};
use crate::phase::Phase;
use crate::stats::preference_p_value;

/// The candidate's pairwise record as a comparison; `None` without one.
pub(crate) fn compare(candidate: &Phase, timeline: &Timeline<'_>) -> Option<PairwiseComparison> {
    let record = candidate.pairwise.as_ref()?;
    let values: Vec<f64> = record.questions.iter().filter_map(|q| q.preference).collect();
    let mean = (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
    let count = |keep: fn(f64) -> bool| values.iter().filter(|&&v| keep(v)).count();
    Some(PairwiseComparison {
        baseline: record.baseline.clone(),
        judge: record.judge.clone(),
        in_history: timeline.phases.iter().any(|p| p.label == record.baseline),
        questions: values.len(),
        unreadable: record.questions.len() - values.len(),
        mean,
        p_value: preference_p_value(&values),
        candidate_preferred: count(|v| v > 0.0),
        baseline_preferred: count(|v| v < 0.0),
        ties: count(|v| v == 0.0),
    })
}

pub(crate) fn check(ctx: &Context<'_>) -> Vec<Finding> {
    let Some(c) = ctx.pairwise else { return Vec::new() };
    let against = format!("phase {}", c.baseline);
    let finding = |severity, text: String| vec![Finding::new(RuleId::Pairwise, severity, text).against(&c.baseline)];
    if !c.in_history {
        return finding(
            Severity::Info,
            format!(
                "the pairwise judge compared with {against}, which is not an accepted phase of {}: reported, not judged",
                ctx.candidate.experiment
            ),
        );
    }
    let (Some(mean), Some(p_value)) = (c.mean, c.p_value) else {
        return finding(
            Severity::Warn,
            format!("pairwise judging against {against} gave no readable preference on any question"),
        );
    };
    let min = ctx.config.rules.pairwise.min_preference;
    let alpha = ctx.config.alpha;
    let tally = format!("{} over {}", signed(mean), tally(c, p_value));
    let found = if mean <= -min && p_value < alpha {
        finding(
            Severity::Fail,
            format!(
                "the judge ({}) prefers {against}'s answers: mean preference {tally} < alpha {}",
                c.judge,
                num(alpha)
            ),
        )
    } else if mean <= -min {
        finding(
            Severity::Warn,
            format!(
                "the judge ({}) leans to {against}'s answers but not significantly: mean preference {tally} ≥ alpha {}: inconclusive",
                c.judge,
                num(alpha)
            ),
        )
    } else if mean < min {
        finding(
            Severity::Info,
            format!(
                "no pairwise preference against {against}: mean {} is within min_preference {}; {tally}",
                signed(mean),
                num(min)
            ),
        )
    } else {
        finding(
            Severity::Info,
            format!("the judge ({}) prefers the candidate's answers to {against}'s: {tally}", c.judge),
        )
    };
    found
        .into_iter()
        .map(|f| f.value("preference", mean).value("p_value", p_value).value("questions", c.questions as f64))
        .collect()
}

/// "8 questions (baseline preferred on 7, candidate on 1, 0 ties), sign-flip p = 0.0156".
pub(crate) fn tally(c: &PairwiseComparison, p_value: f64) -> String {
    format!(
        "{} questions (baseline preferred on {}, candidate on {}, {} ties), sign-flip p = {}",
        c.questions,
        c.baseline_preferred,
        c.candidate_preferred,
        c.ties,
        p(p_value)
    )
}

/// A preference with its sign: "+0.250", "−0.625".
pub(crate) fn signed(value: f64) -> String {
    if value < 0.0 { format!("−{:.3}", -value) } else { format!("+{value:.3}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GateConfig;
    use crate::evaluate::evaluate;
    use crate::phase::{Preferences, QuestionPreference};
    use crate::testkit::phase;
    use crate::verdict::Verdict;

    /// Eight questions scored 6/10 in both phases: the absolute scores show no change.
    const FLAT: [f64; 8] = [6.0; 8];

    fn candidate(baseline: &str, prefs: &[Option<f64>]) -> Phase {
        let mut c = phase("10", 10, &FLAT);
        c.accepted = false;
        c.pairwise = Some(Preferences {
            baseline: baseline.to_owned(),
            judge: "judge-7b".to_owned(),
            questions: prefs
                .iter()
                .enumerate()
                .map(|(i, &preference)| QuestionPreference { qid: format!("Q{}", i + 1), preference, pairs: 2 })
                .collect(),
        });
        c
    }

    fn pairwise_findings(history: &[Phase], candidate: &Phase, config: &GateConfig) -> (Verdict, Vec<Finding>) {
        let e = evaluate(history, candidate, config);
        (e.verdict, e.findings.into_iter().filter(|f| f.rule == RuleId::Pairwise).collect())
    }

    /// (case, baseline, preferences, verdict, severity of the pairwise finding)
    type Case = (&'static str, &'static str, [Option<f64>; 8], Verdict, Option<Severity>);

    #[test]
    fn pairwise_table() {
        let history = [phase("9", 9, &FLAT)];
        let config = GateConfig::default();
        let all = |v: f64| [Some(v); 8];
        let cases: [Case; 7] = [
            ("baseline preferred everywhere", "9", all(-0.6), Verdict::Fail, Some(Severity::Fail)),
            (
                "baseline preferred on most, not significant",
                "9",
                [Some(-0.8), Some(-0.8), Some(-0.8), Some(-0.8), Some(-0.8), Some(0.4), Some(0.4), Some(0.4)],
                Verdict::Inconclusive,
                Some(Severity::Warn),
            ),
            ("a lean below min_preference", "9", all(-0.1), Verdict::Pass, Some(Severity::Info)),
            ("candidate preferred", "9", all(0.5), Verdict::Pass, Some(Severity::Info)),
            ("no readable pair", "9", [None; 8], Verdict::Inconclusive, Some(Severity::Warn)),
            ("a baseline outside the history", "3", all(-1.0), Verdict::Pass, Some(Severity::Info)),
            ("ties everywhere", "9", all(0.0), Verdict::Pass, Some(Severity::Info)),
        ];
        for (case, baseline, prefs, verdict, severity) in cases {
            let (got, findings) = pairwise_findings(&history, &candidate(baseline, &prefs), &config);
            assert_eq!(got, verdict, "{case}: {findings:?}");
            assert_eq!(findings.first().map(|f| f.severity), severity, "{case}: {findings:?}");
            assert!(findings.iter().all(|f| f.baseline.as_deref() == Some(baseline)), "{case}");
        }
    }

    #[test]
    fn the_fail_names_the_judge_the_tally_and_the_p_value() {
        let history = [phase("9", 9, &FLAT)];
        let mut prefs = [Some(-0.5); 8];
        prefs[7] = Some(0.25);
        let (_, findings) = pairwise_findings(&history, &candidate("9", &prefs), &GateConfig::default());
        let text = &findings[0].message;
        assert!(text.contains("judge-7b") && text.contains("phase 9"), "{text}");
        assert!(text.contains("baseline preferred on 7, candidate on 1, 0 ties"), "{text}");
        assert!(text.contains("p = 0.016") || text.contains("p = 0.0156"), "{text}");
    }

    #[test]
    fn a_disabled_rule_reports_the_comparison_but_judges_nothing() {
        let history = [phase("9", 9, &FLAT)];
        let mut config = GateConfig::default();
        config.rules.pairwise.enabled = false;
        let c = candidate("9", &[Some(-1.0); 8]);
        let e = evaluate(&history, &c, &config);
        assert_eq!(e.verdict, Verdict::Pass);
        let pairwise = e.pairwise.expect("the comparison is reported");
        assert_eq!((pairwise.questions, pairwise.baseline_preferred, pairwise.mean), (8, 8, Some(-1.0)));
        assert_eq!(pairwise.p_value, Some(2.0 / 256.0));
    }

    #[test]
    fn without_pairwise_judging_nothing_is_reported() {
        let history = [phase("9", 9, &FLAT)];
        let mut c = phase("10", 10, &FLAT);
        c.accepted = false;
        let e = evaluate(&history, &c, &GateConfig::default());
        assert!(e.pairwise.is_none() && e.findings.iter().all(|f| f.rule != RuleId::Pairwise));
    }
}
