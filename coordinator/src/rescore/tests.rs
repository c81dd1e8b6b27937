use std::path::{Path, PathBuf};

use gate_rules::{GateConfig, RuleId, Severity, evaluate};

use super::test_support::hand_scored;
use super::*;

fn dataset() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/persona-v1")
}

fn suite() -> Suite {
    Suite::load(&dataset().join("suite.toml")).unwrap()
}

/// The rules scorer on the bundled suite with a tiny dictionary: these tests look at what
/// re-scoring keeps and records, not at the scores.
fn rescorer() -> Rescorer {
    let suite = suite();
    let lexicon = Lexicon::from_hunspell("SET UTF-8\n", "3\nsou\na\niara\n", &suite).unwrap();
    Rescorer::new(suite, lexicon)
}

#[test]
fn a_hand_scored_phase_is_rescored_from_its_responses() {
    let rescorer = rescorer();
    let before = hand_scored(8);
    let after = rescorer.rescore(&before).unwrap();
    assert_eq!(after.instrument.as_ref(), Some(rescorer.instrument()));
    assert_eq!(after.rescored_from, Some(Instrument::Human));
    assert_eq!(after.earlier_scores.len(), 1);
    assert_eq!(after.earlier_scores[0].eval, before.eval, "the hand scores are kept");
    let ids = |p: &Phase| p.eval.iter().map(|q| (q.id.clone(), q.samples.len())).collect::<Vec<_>>();
    assert_eq!(ids(&after), ids(&before));
    for (a, b) in after.eval.iter().zip(&before.eval) {
        assert_eq!(a.samples[0].response, b.samples[0].response, "{}", a.id);
        assert!(a.samples[0].dimensions.iter().all(|d| d.reason.as_deref().is_some_and(|r| !r.is_empty())));
    }
    assert_eq!((after.label.as_str(), after.training.final_loss), (before.label.as_str(), before.training.final_loss));
}

#[test]
fn a_phase_without_responses_cannot_be_rescored() {
    let rescorer = rescorer();
    let err = rescorer.rescore(&hand_scored(6)).unwrap_err();
    assert!(matches!(err, RescoreError::NoResponses { .. }), "{err}");
}

#[test]
fn aligned_history_compares_one_instrument_and_says_so() {
    let rescorer = rescorer();
    let history: Vec<Phase> = (6..=8).map(hand_scored).collect();
    let mut candidate = rescorer.rescore(&hand_scored(9)).unwrap();
    candidate.rescored_from = None;
    candidate.accepted = false;

    let mixed = evaluate(&history, &candidate, &GateConfig::default());
    assert!(mixed.findings.iter().any(|f| f.rule == RuleId::Instrument && f.severity == Severity::Warn));

    let aligned = rescorer.align(&history, &candidate);
    assert_eq!(aligned[0].instrument(), Instrument::Human, "phase 6 keeps no responses");
    assert!(aligned[1..].iter().all(|p| p.instrument().same_as(rescorer.instrument())));
    let eval = evaluate(&aligned, &candidate, &GateConfig::default());
    let notes: Vec<_> = eval.findings.iter().filter(|f| f.rule == RuleId::Instrument).collect();
    assert!(notes.iter().all(|f| f.severity == Severity::Info), "{notes:?}");
    assert!(notes.iter().any(|f| f.message.contains("re-scored")), "{notes:?}");
}

#[test]
fn a_candidate_of_another_instrument_leaves_history_alone() {
    let rescorer = rescorer();
    let history: Vec<Phase> = (7..=8).map(hand_scored).collect();
    let aligned = rescorer.align(&history, &hand_scored(9));
    assert_eq!(aligned, history);
}

fn judge() -> Instrument {
    Instrument::Judge { model: "judge-7b".into(), endpoint: None, prompt_digest: "sha256:abc".into() }
}

/// `phase` as a judge-mode score job's `rescored_baselines` entry gives it: the judge's scores.
fn judged(phase: &Phase, points: f64) -> Phase {
    let mut out = phase.clone();
    out.instrument = Some(judge());
    for s in out.eval.iter_mut().flat_map(|q| q.samples.iter_mut()) {
        s.points = points;
    }
    out
}

#[test]
fn a_judge_candidate_adopts_its_judges_scores_of_the_baselines_and_keeps_the_hand_scores() {
    let history: Vec<Phase> = (7..=9).map(hand_scored).collect();
    let mut candidate = judged(&hand_scored(9), 4.0);
    candidate.label = "10".into();
    candidate.accepted = false;
    // The job scored phases 8 and 9 with the candidate's judge; phase 7 by another judge.
    let mut other = judged(&history[0], 9.0);
    other.instrument =
        Some(Instrument::Judge { model: "other".into(), endpoint: None, prompt_digest: "sha256:def".into() });
    let rescored = [other, judged(&history[1], 6.0), judged(&history[2], 6.0)];
    let adopted = adopt(&history, &rescored, &candidate);
    assert_eq!(adopted[0], history[0], "scores of another instrument change nothing");
    for (after, before) in adopted[1..].iter().zip(&history[1..]) {
        assert_eq!(after.instrument(), judge());
        assert_eq!(after.rescored_from, Some(Instrument::Human));
        assert_eq!(after.earlier_scores[0].eval, before.eval, "the hand scores are kept");
        assert_eq!(after.score(), Some(6.0));
    }
    let eval = evaluate(&adopted, &candidate, &GateConfig::default());
    assert!(eval.statistics.iter().all(|s| s.baseline != "7"), "phase 7 is not the candidate's instrument");
    assert!(eval.findings.iter().any(|f| f.rule == RuleId::OverallDrop && f.severity == Severity::Fail), "{eval:?}");
    let instrument: Vec<_> = eval.findings.iter().filter(|f| f.rule == RuleId::Instrument).collect();
    assert!(instrument.iter().all(|f| f.severity == Severity::Info), "{instrument:?}");
    // Already the candidate's instrument: nothing to adopt.
    assert_eq!(adopt(&adopted, &rescored, &candidate), adopted);
}

#[tokio::test]
async fn rescore_stores_new_scores_and_keeps_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let history = crate::history::History::create(dir.path()).await.unwrap();
    for n in [6, 8] {
        history.import_phase(hand_scored(n), n == 8).await.unwrap();
    }
    let rescorer = rescorer();
    let lines = history.rescore("persona-v1", &rescorer).await.unwrap();
    assert!(matches!(lines[0].outcome, crate::history::RescoreOutcome::Skipped(_)), "phase 6 has no responses");
    assert!(matches!(lines[1].outcome, crate::history::RescoreOutcome::Rescored { .. }));
    let stored = history.history("persona-v1").await.unwrap();
    let eight = &stored[1].phase;
    assert!(eight.accepted, "acceptance is kept");
    assert!(eight.instrument().same_as(rescorer.instrument()));
    assert_eq!(eight.earlier_scores[0].eval, hand_scored(8).eval);
    let again = history.rescore("persona-v1", &rescorer).await.unwrap();
    assert!(matches!(again[1].outcome, crate::history::RescoreOutcome::Current));
}
