use super::*;
use crate::stats::Change;
use crate::testkit::{MIXED_BASE, MIXED_DROP, PHASE_7, PHASE_8, PHASE_9, persona_history, phase, phase_k};

fn rules_of(e: &Evaluation, severity: Severity) -> Vec<RuleId> {
    e.findings.iter().filter(|f| f.severity == severity).map(|f| f.rule).collect()
}

#[test]
fn empty_history_is_insufficient_baseline_not_pass() {
    let e = evaluate(&[], &phase("9", 9, &PHASE_9), &GateConfig::default());
    assert_eq!(e.verdict, Verdict::InsufficientBaseline);
    assert_eq!(e.verdict.exit_code(), 4);
    assert!(e.findings.iter().any(|f| f.rule == RuleId::Baseline && f.message.contains("insufficient baseline")));
}

#[test]
fn candidate_only_failures_still_fail_without_history() {
    let mut cand = phase("9", 9, &PHASE_9);
    cand.eval[0].samples[0].response = Some("Olá <|im_start|>".to_owned());
    assert_eq!(evaluate(&[], &cand, &GateConfig::default()).verdict, Verdict::Fail);
}

#[test]
fn unscored_candidate_fails_closed() {
    let e = evaluate(&[phase("7", 7, &PHASE_7)], &phase("8", 8, &[]), &GateConfig::default());
    assert_eq!(e.verdict, Verdict::Fail);
    assert_eq!(rules_of(&e, Severity::Fail), [RuleId::Baseline]);
}

#[test]
fn unscored_or_foreign_or_unaccepted_history_does_not_count() {
    let mut foreign = phase("7", 7, &PHASE_7);
    foreign.experiment = "other".to_owned();
    let mut rejected = phase("7b", 7, &PHASE_7);
    rejected.accepted = false;
    let history = [foreign, rejected, phase("6", 6, &[])];
    let e = evaluate(&history, &phase("8", 8, &PHASE_8), &GateConfig::default());
    assert_eq!(e.verdict, Verdict::InsufficientBaseline);
    assert!(e.statistics.is_empty());
}

#[test]
fn candidate_inside_history_is_not_its_own_baseline() {
    let [p6, p7, p8, _] = persona_history();
    let history = [p6, p7, p8.clone()];
    let with = evaluate(&history, &p8, &GateConfig::default());
    let without = evaluate(&history[..2], &p8, &GateConfig::default());
    assert_eq!(with, without);
    assert!(with.statistics.iter().all(|s| s.baseline != "8"));
}

#[test]
fn best_and_previous_are_reported_side_by_side() {
    let history = persona_history();
    let e = evaluate(&history[..3], &history[3], &GateConfig::default());
    let got: Vec<(&str, &[BaselineRole])> =
        e.statistics.iter().map(|s| (s.baseline.as_str(), s.roles.as_slice())).collect();
    assert_eq!(got, [("7", &[BaselineRole::Best][..]), ("8", &[BaselineRole::Previous][..])]);
}

#[test]
fn same_phase_as_best_and_previous_is_compared_once() {
    let history = persona_history();
    let e = evaluate(&history[..2], &history[2], &GateConfig::default());
    assert_eq!(e.statistics.len(), 1);
    assert_eq!(e.statistics[0].roles, [BaselineRole::Best, BaselineRole::Previous]);
}

#[test]
fn verdict_table() {
    let config = GateConfig::default();
    let base = phase("1", 1, &MIXED_BASE);
    let mut warned = phase("2", 2, &MIXED_BASE);
    for q in warned.eval.iter_mut().take(3) {
        q.samples[0].truncated = true;
    }
    let cases = [
        ("same scores", phase("2", 2, &MIXED_BASE), Verdict::Pass),
        ("truncation warning", warned, Verdict::Warn),
        ("mixed drop", phase("2", 2, &MIXED_DROP), Verdict::Inconclusive),
        ("consistent drop", phase("2", 2, &[4.0; 8]), Verdict::Fail),
    ];
    for (name, cand, expected) in cases {
        assert_eq!(evaluate(std::slice::from_ref(&base), &cand, &config).verdict, expected, "{name}");
    }
}

#[test]
fn a_differing_question_text_warns_and_never_decides_pass_or_fail() {
    let config = GateConfig::default();
    let base = phase("1", 1, &MIXED_BASE);
    let reworded = |points: &[f64]| {
        let mut p = phase("2", 2, points);
        p.eval[0].question = "outra pergunta".to_owned();
        p
    };
    let cases = [
        ("same scores", reworded(&MIXED_BASE), Verdict::Warn),
        ("consistent drop", reworded(&[4.0; 8]), Verdict::Fail),
    ];
    for (name, cand, expected) in cases {
        let e = evaluate(std::slice::from_ref(&base), &cand, &config);
        assert_eq!(e.verdict, expected, "{name}");
        assert_eq!(rules_of(&e, Severity::Warn), [RuleId::QuestionText], "{name}");
        assert!(!rules_of(&e, Severity::Fail).contains(&RuleId::QuestionText), "{name}");
    }
}

#[test]
fn k_samples_are_averaged_before_pairing() {
    let base = phase_k("1", 1, &[vec![6.0, 8.0], vec![4.0, 4.0]]);
    let cand = phase_k("2", 2, &[vec![7.0, 7.0], vec![3.0, 5.0]]);
    let e = evaluate(&[base], &cand, &GateConfig::default());
    let Comparison::Compared(stats) = &e.statistics[0].comparison else { panic!() };
    assert_eq!((stats.difference, stats.k_candidate, stats.change), (0.0, 2, Change::BelowMinEffect));
    assert_eq!(e.verdict, Verdict::Pass);
}

#[test]
fn motivating_history_replays_as_the_issue_requires() {
    let config = GateConfig::default();
    let h = persona_history();
    let p7 = evaluate(&h[..1], &h[1], &config);
    assert_eq!(p7.verdict, Verdict::Pass, "{p7:#?}");
    let p8 = evaluate(&h[..2], &h[2], &config);
    assert_eq!(p8.verdict, Verdict::Fail);
    assert_eq!(rules_of(&p8, Severity::Fail), [RuleId::OverallDrop, RuleId::QuestionDrop]);
    let p9 = evaluate(&h[..3], &h[3], &config);
    assert_eq!(p9.verdict, Verdict::Fail);
    let fails = rules_of(&p9, Severity::Fail);
    assert!(fails.contains(&RuleId::RegressionStreak), "{fails:?}");
    assert_eq!(rules_of(&p9, Severity::Warn), [RuleId::LossScoreDivergence]);
    let previous = p9.statistics.iter().find(|s| s.roles.contains(&BaselineRole::Previous)).unwrap();
    let Comparison::Compared(stats) = &previous.comparison else { panic!() };
    assert_eq!((stats.difference, stats.change), (-0.125, Change::BelowMinEffect));
}
