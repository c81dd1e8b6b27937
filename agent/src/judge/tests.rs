//! The judge flow and what it records, against a fake judge with canned replies.

use std::path::Path;

use phasegate_proto::spec::{JudgeModel, ScoreMode};
use phasegate_score::judge::Disagreement;
use phasegate_score::{DimId, ScoredPhase, Suite};
use serde_json::json;

use super::fake::{FakeJudge, faithful, reply};
use super::flow::{SampleJudgement, Unreadable};
use super::*;

const SUITE: &str = include_str!("../../../datasets/persona-v1/suite.toml");
const SEEDS: [u64; 2] = [5, 9];
const MAX_NEW_TOKENS: usize = 64;
const BATCH: usize = 4;

fn suite() -> Suite {
    Suite::from_toml_str(SUITE, Path::new("suite.toml")).unwrap()
}

fn settings() -> JudgeSettings {
    JudgeSettings { seeds: SEEDS, max_new_tokens: MAX_NEW_TOKENS, batch: BATCH }
}

/// Two samples per question, the same plain answer.
fn scored(suite: &Suite) -> ScoredPhase {
    crate::judge::fake::two_samples_per_question(suite, |sample| {
        format!("Oi, eu sou a Iara e trabalho com o Tomás. Resposta {sample}.")
    })
}

fn quiet() -> impl FnMut(String) {
    |_| {}
}

#[test]
fn calls_go_with_both_seeds_in_batches_under_stable_ids() {
    let suite = suite();
    let scored = scored(&suite);
    let mut fake = FakeJudge::with(&suite, faithful, |_, _| reply([2; 5]));
    let mut lines = Vec::new();
    let samples = judge_samples(&mut fake, &suite, &scored, &settings(), &mut |l| lines.push(l)).unwrap();
    let ids: Vec<String> =
        scored.questions.iter().flat_map(|q| (0..2).map(move |s| format!("{}/{s}", q.qid))).collect();
    assert_eq!(fake.ids_with_seed(SEEDS[0]), ids);
    assert_eq!(fake.ids_with_seed(SEEDS[1]), ids);
    assert_eq!(fake.calls.len(), 2 * ids.len());
    assert!(fake.calls.iter().all(|c| c.2 == MAX_NEW_TOKENS));
    assert!(fake.requests.iter().all(|&n| n <= BATCH), "{:?}", fake.requests);
    assert_eq!(samples.len(), ids.len());
    assert_eq!(lines.last().unwrap(), &format!("judge: answers {0}/{0} calls done", 2 * ids.len()));
}

#[test]
fn agreement_within_one_is_kept_and_wider_gaps_are_discarded_and_listed() {
    let suite = suite();
    let scored = scored(&suite);
    // Sample 0: one point apart on D2 (kept, lower). Sample 1 of Q1: two apart on D3 (discarded).
    let mut fake = FakeJudge::with(&suite, faithful, |id, seed| match (id, seed == SEEDS[0]) {
        ("Q1/1", true) => reply([2, 2, 2, 2, 2]),
        ("Q1/1", false) => reply([2, 2, 0, 2, 1]),
        (_, true) => reply([2, 2, 2, 1, 2]),
        (_, false) => reply([2, 1, 2, 1, 2]),
    });
    let samples = judge_samples(&mut fake, &suite, &scored, &settings(), &mut quiet()).unwrap();
    let kept = samples[0].complete().unwrap();
    assert_eq!(kept.scores.iter().map(|d| d.score).collect::<Vec<_>>(), [2, 1, 2, 1, 2]);
    let discarded = samples[1].outcome.as_ref().unwrap();
    assert_eq!(discarded.discarded, [Disagreement { id: DimId::new("D3").unwrap(), first: 2, second: 0 }]);
    assert_eq!(samples[1].complete(), None);

    let judge = JudgeModel {
        model: "j".into(),
        template: None,
        cpu_requantize: None,
        max_new_tokens: 64,
        seeds: SEEDS,
        server: None,
    };
    let report = JudgeReport {
        mode: ScoreMode::Both,
        judge,
        prompt_digest: "sha256:test".into(),
        outcome: JudgeOutcome::Judged { anchors: 3, samples },
    };
    let header = report.header(&scored);
    assert_eq!(
        (header["samples"].clone(), header["agreed"].clone(), header["discarded"].clone()),
        (json!(16), json!(15), json!(1))
    );
    assert_eq!(header["discards"], json!([{ "qid": "Q1", "sample": 1, "dimension": "D3", "first": 2, "second": 0 }]));
    assert_eq!(header["unreadable"], json!(0));
    let lines = report.lines();
    assert!(lines[0].contains("15 of 16 samples agreed") && lines[0].contains("1 discarded"), "{lines:?}");
    assert!(lines.contains(&"judge: discarded Q1 sample 1: D3 2 vs 0".to_owned()), "{lines:?}");
}

#[test]
fn unreadable_reply_is_reported_with_its_sample_and_seed() {
    let suite = suite();
    let scored = scored(&suite);
    let mut fake = FakeJudge::with(&suite, faithful, |id, seed| {
        if id == "Q2/0" && seed == SEEDS[1] { "Nota 8 de 10, muito bom.".to_owned() } else { reply([2; 5]) }
    });
    let samples = judge_samples(&mut fake, &suite, &scored, &settings(), &mut quiet()).unwrap();
    let bad: Vec<&SampleJudgement> = samples.iter().filter(|s| s.outcome.is_err()).collect();
    assert_eq!(bad.len(), 1);
    assert_eq!((bad[0].qid.as_str(), bad[0].sample), ("Q2", 0));
    let Err(Unreadable { seed, error }) = &bad[0].outcome else { unreachable!() };
    assert_eq!(*seed, SEEDS[1]);
    assert!(error.to_string().contains("holds no JSON object"), "{error}");

    let judge = JudgeModel {
        model: "j".into(),
        template: None,
        cpu_requantize: None,
        max_new_tokens: 64,
        seeds: SEEDS,
        server: None,
    };
    let report = JudgeReport {
        mode: ScoreMode::Judge,
        judge,
        prompt_digest: "sha256:test".into(),
        outcome: JudgeOutcome::Judged { anchors: 3, samples },
    };
    let header = report.header(&scored);
    assert_eq!(header["unreadable"], json!(1));
    assert_eq!(header["fallback_to_rules"], json!(1));
    let listed = &header["unreadable_replies"][0];
    assert_eq!(
        (listed["qid"].clone(), listed["sample"].clone(), listed["seed"].clone()),
        (json!("Q2"), json!(0), json!(SEEDS[1]))
    );
    assert!(report.lines().iter().any(|l| l.starts_with("judge: unreadable Q2 sample 0 (seed 9)")));
}

#[test]
fn calibration_judges_every_anchor_with_both_seeds() {
    let suite = suite();
    let anchors = phasegate_score::calibration::anchors(&suite).len();
    let mut fake = FakeJudge::with(&suite, faithful, |_, _| unreachable!("only anchors are judged"));
    assert_eq!(calibrate(&mut fake, &suite, &settings(), &mut quiet()).unwrap(), Ok(anchors));
    assert_eq!(fake.ids_with_seed(SEEDS[0]).len(), anchors);
    assert_eq!(fake.ids_with_seed(SEEDS[1]).len(), anchors);
}

#[test]
fn calibration_refuses_a_judge_that_disagrees_with_itself_on_an_anchor() {
    let suite = suite();
    let mut fake = FakeJudge::new(|call, seed| {
        if call.id == "anchor/Q1/0" && seed == SEEDS[1] { reply([0, 2, 2, 2, 1]) } else { reply([2, 2, 2, 2, 1]) }
    });
    let refused = calibrate(&mut fake, &suite, &settings(), &mut quiet()).unwrap().unwrap_err().to_string();
    assert!(refused.contains("Q1 ideal anchor: judge disagreed with itself on [D1]"), "{refused}");
}
