//! The score job with a judge: refusal in each mode, the scores file's judge fields and that the
//! gate's importer reads it; the judge is a fake with canned replies, and once a real engine.

use super::*;
use crate::judge::JudgeCall;
use crate::judge::fake::{FakeJudge, faithful, reply};
use phasegate_proto::spec::DEFAULT_JUDGE_SEEDS;
use phasegate_score::AnchorKind;

const SUITE: &str = include_str!("../../datasets/persona-v1/suite.toml");
const FIRST: u64 = DEFAULT_JUDGE_SEEDS[0];
const SECOND: u64 = DEFAULT_JUDGE_SEEDS[1];
/// What the rule scorer gives the plain answer of sample 0 (the contaminated sample 1 scores 0).
const PLAIN: &str = "Oi! Eu sou a Iara e trabalho com o Tomás no Quintal e na Banca.";

fn suite() -> Suite {
    Suite::from_toml_str(SUITE, Path::new("suite.toml")).unwrap()
}

fn judge_model() -> JudgeModel {
    JudgeModel {
        model: "judge-7b".into(),
        template: None,
        cpu_requantize: None,
        max_new_tokens: 128,
        seeds: DEFAULT_JUDGE_SEEDS,
        server: None,
    }
}

/// K = 2 answers per question: a plain one, and one the rule scorer zeroes (template tokens).
fn scored(suite: &Suite) -> ScoredPhase {
    crate::judge::fake::two_samples_per_question(suite, |sample| {
        if sample == 0 { PLAIN.to_owned() } else { "<|im_start|>assistant Let me first look".to_owned() }
    })
}

/// A judge that rates every generic anchor 8/10: outside its band of 2..=4.
fn lenient(kind: AnchorKind) -> [u32; 5] {
    match kind {
        AnchorKind::Generic => [1, 1, 2, 2, 2],
        other => faithful(other),
    }
}

/// Sample 0: 2,2,1,2,2 then 2,1,1,2,2 (agreed, the lower kept: total 8). Sample 1: D4 0 then 2
/// (discarded: the sample keeps its rule scores in judge mode).
fn answers(id: &str, seed: u64) -> String {
    match (id.ends_with("/0"), seed == FIRST) {
        (true, true) => reply([2, 2, 1, 2, 2]),
        (true, false) => reply([2, 1, 1, 2, 2]),
        (false, true) => reply([0, 1, 1, 0, 1]),
        (false, false) => reply([0, 1, 1, 2, 1]),
    }
}

fn import(file: &Value) -> gate_rules::import::ImportedPart {
    gate_rules::import::parse_file(SCORES, &file.to_string(), Some("10")).unwrap()
}

#[test]
fn judge_mode_refusal_fails_the_job_naming_each_misjudged_anchor() {
    let suite = suite();
    let mut fake = FakeJudge::with(&suite, lenient, |_, _| unreachable!("a refused judge scores no answer"));
    let err =
        judge_phase(&mut fake, ScoreMode::Judge, &judge_model(), &suite, &scored(&suite), &mut |_| {}).unwrap_err();
    assert!(matches!(err, JudgeError::Refused { .. }), "{err:?}");
    let msg = err.to_string();
    for qid in ["Q1", "Q5", "Q7"] {
        assert!(msg.contains(&format!("{qid} generic anchor scored 8.0, band 2..=4")), "{msg}");
    }
    assert!(msg.contains("misjudged 3 of 19 calibration anchors"), "{msg}");
    assert!(msg.contains("`score.judge_model` = \"judge-7b\"") && msg.contains("hint:"), "{msg}");
    assert!(fake.calls.iter().all(|(id, _, _)| id.starts_with("anchor/")), "answers were judged");
}

#[test]
fn both_mode_refusal_keeps_the_rule_scores_and_records_why() {
    let suite = suite();
    let scored = scored(&suite);
    let mut fake = FakeJudge::with(&suite, lenient, |_, _| unreachable!("a refused judge scores no answer"));
    let report = judge_phase(&mut fake, ScoreMode::Both, &judge_model(), &suite, &scored, &mut |_| {}).unwrap();
    let file = scores_file(&scored, "10", Some(&report));
    let refused = file["judge"]["refused"].as_str().unwrap();
    assert!(refused.contains("Q1 generic anchor scored 8.0, band 2..=4"), "{refused}");
    assert_eq!((file["mode"].as_str(), file["scorer"].as_str()), (Some("both"), Some("rules")));
    assert_eq!(file, {
        let mut rules = scores_file(&scored, "10", None);
        rules["mode"] = json!("both");
        rules["judge"] = file["judge"].clone();
        rules
    });
    assert!(report.lines()[0].contains("the rule scores stay the record"));
    let part = import(&file);
    let totals: Vec<f64> = part.questions.iter().flat_map(|q| &q.samples).map(|s| s.points).collect();
    let rules: Vec<f64> = scored.questions.iter().flat_map(|q| &q.samples).map(|s| s.total).collect();
    assert_eq!(totals, rules);
}

#[test]
fn judge_mode_scores_land_in_the_file_and_import() {
    let suite = suite();
    let scored = scored(&suite);
    let mut fake = FakeJudge::with(&suite, faithful, answers);
    let report = judge_phase(&mut fake, ScoreMode::Judge, &judge_model(), &suite, &scored, &mut |_| {}).unwrap();
    let file = scores_file(&scored, "10", Some(&report));
    assert_eq!((file["mode"].as_str(), file["scorer"].as_str()), (Some("judge"), Some("judge")));
    let entries = file["scores"].as_array().unwrap();
    for (entry, rules) in entries.iter().zip(scored.questions.iter().flat_map(|q| &q.samples)) {
        if rules.sample == 0 {
            assert_eq!(entry["source"], "judge");
            assert_eq!(entry["d2"], json!({ "score": 1, "reason": "r1" }));
            assert_eq!((entry["total"].clone(), entry["rules_total"].clone()), (json!(8.0), json!(rules.total)));
        } else {
            assert_eq!(entry["source"], "rules");
            assert_eq!(entry["total"], json!(rules.total));
            assert_eq!(entry["judge"]["discarded"], json!([{ "dimension": "D4", "first": 0, "second": 2 }]));
        }
    }
    let header = &file["judge"];
    assert_eq!((header["agreed"].clone(), header["fallback_to_rules"].clone()), (json!(8), json!(8)));
    assert_eq!(header["discards"].as_array().unwrap().len(), 8);
    assert_eq!(header["calibration"], json!({ "anchors": 19, "passed": true }));
    let part = import(&file);
    let points: Vec<f64> = part.questions.iter().flat_map(|q| &q.samples).map(|s| s.points).collect();
    let expected: Vec<f64> = entries.iter().map(|e| e["total"].as_f64().unwrap()).collect();
    assert_eq!(points, expected);
    assert!(points.iter().step_by(2).all(|&p| p == 8.0), "{points:?}");
    let score_10 = file["overall"]["score_10"].as_f64().unwrap();
    assert!((score_10 - expected.iter().sum::<f64>() / 16.0).abs() < 1e-9, "{score_10}");
}

#[test]
fn both_mode_keeps_rule_scores_with_the_judge_beside_and_an_agreement_summary() {
    let suite = suite();
    let scored = scored(&suite);
    let mut fake = FakeJudge::with(&suite, faithful, answers);
    let report = judge_phase(&mut fake, ScoreMode::Both, &judge_model(), &suite, &scored, &mut |_| {}).unwrap();
    let file = scores_file(&scored, "10", Some(&report));
    let rules_only = scores_file(&scored, "10", None);
    for (entry, rules) in file["scores"].as_array().unwrap().iter().zip(rules_only["scores"].as_array().unwrap()) {
        assert_eq!(entry["source"], "rules");
        for key in ["d1", "d2", "d3", "d4", "d5", "total", "auto_zero"] {
            assert_eq!(entry[key], rules[key], "{key}");
        }
    }
    assert_eq!(file["scores"][0]["judge"]["total"], json!(8.0));
    // Per dimension |judge - rules| over the samples where the judge agreed on that dimension.
    let mut expected = serde_json::Map::new();
    for (i, id) in ["D1", "D2", "D3", "D4", "D5"].into_iter().enumerate() {
        let judge = |sample: u32| -> Option<u32> {
            match (sample, i) {
                (0, _) => Some([2, 1, 1, 2, 2][i]),
                (_, 3) => None,
                _ => Some([0, 1, 1, 0, 1][i]),
            }
        };
        let diffs: Vec<u32> = scored
            .questions
            .iter()
            .flat_map(|q| &q.samples)
            .filter_map(|s| Some(judge(s.sample)?.abs_diff(s.dim(id)?.score)))
            .collect();
        if diffs.is_empty() {
            continue;
        }
        let mean = f64::from(diffs.iter().sum::<u32>()) / diffs.len() as f64;
        expected
            .insert(id.into(), json!({ "mean_abs_diff": (mean * 1000.0).round() / 1000.0, "samples": diffs.len() }));
    }
    assert_eq!(file["judge"]["agreement_with_rules"], Value::Object(expected));
    assert_eq!(file["judge"]["agreement_with_rules"]["D4"]["samples"], json!(8));
    assert!(file["judge"].get("fallback_to_rules").is_none());
    assert_eq!(import(&file).questions.len(), suite.questions.len());
}

/// A one-question suite with terse rubric text: the judge prompt must fit the tiny model's context
/// of 1024 positions, and its tiny vocabulary spends about a token per character.
const TINY_SUITE: &str = r#"
name = "tiny"
language = "pt"

[persona]
name = "Iara"
partner = "Tomás"
system_prompt = "Você é a Iara."

[rubric]
version = "1"
auto_zero_scope = "dimension"
dimensions = [
    { id = "D1", name = "identidade" },
    { id = "D2", name = "fatos" },
    { id = "D3", name = "voz" },
    { id = "D4", name = "limpeza" },
    { id = "D5", name = "qualidade" },
]

[[questions]]
id = "Q1"
text = "Quem é o Tomás?"
anchors = [
    { kind = "ideal", text = "O Tomás é o meu parceiro." },
    { kind = "generic", text = "Não sei." },
    { kind = "contaminated", text = "<|user|>" },
]
"#;

#[test]
fn tiny_random_judge_is_refused_at_calibration_in_judge_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = phasegate_eval::tiny::write_tiny_gguf(dir.path());
    let judge = JudgeModel { model: path.display().to_string(), max_new_tokens: 12, ..judge_model() };
    let mut backend = EngineBackend::load(&path, &judge, phasegate_eval::Interrupt::default()).unwrap();
    let suite = Suite::from_toml_str(TINY_SUITE, Path::new("suite.toml")).unwrap();
    let mut lines = Vec::new();
    let err = judge_phase(&mut backend, ScoreMode::Judge, &judge, &suite, &scored(&suite), &mut |l| lines.push(l))
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, JudgeError::Refused { .. }), "{msg}");
    assert!(msg.starts_with("refused the judge: it misjudged 3 of 3 calibration anchors"), "{msg}");
    for kind in ["ideal", "generic", "contaminated"] {
        assert!(msg.contains(&format!("Q1 {kind} anchor: judge ")), "{msg}");
    }
    assert!(msg.contains("hint: use a stronger judge model"), "{msg}");
    assert_eq!(lines.last().map(String::as_str), Some("judge: calibration 6/6 calls done"));
    // Calls are reproducible: the same seed gives the same replies, another seed other ones.
    let prompt = phasegate_score::judge::JudgePrompt { system: "Avalie.".into(), user: PLAIN.into() };
    let call = JudgeCall { id: "Q1/0".into(), prompt };
    let mut again = |seed| backend.generate(std::slice::from_ref(&call), seed, 12).unwrap();
    let first = again(FIRST);
    assert_eq!(first, again(FIRST));
    assert_ne!(first, again(SECOND));
    assert_eq!(first.len(), 1);
}

#[test]
fn a_judge_whose_context_cannot_hold_its_prompts_is_refused_before_any_call() {
    let dir = tempfile::tempdir().unwrap();
    let path = phasegate_eval::tiny::write_tiny_gguf(dir.path());
    let judge = JudgeModel { model: path.display().to_string(), max_new_tokens: 12, ..judge_model() };
    let mut backend = EngineBackend::load(&path, &judge, phasegate_eval::Interrupt::default()).unwrap();
    // The bundled suite's rubric and anchors take far more than the tiny model's 1024 positions.
    let suite = suite();
    let mut lines = Vec::new();
    let report =
        judge_phase(&mut backend, ScoreMode::Both, &judge, &suite, &scored(&suite), &mut |l| lines.push(l)).unwrap();
    let JudgeOutcome::Refused(refused) = &report.outcome else { panic!("not refused: {:?}", report.outcome) };
    let msg = refused.to_string();
    assert!(msg.starts_with("refused the judge: its prompt for anchor/Q1/0 takes "), "{msg}");
    assert!(msg.ends_with("exceeds the judge model's context of 1024 tokens"), "{msg}");
    assert!(msg.contains("`score.judge_max_new_tokens` (12)"), "{msg}");
    assert!(lines.is_empty(), "the judge was called: {lines:?}");
    let err = judge_phase(&mut backend, ScoreMode::Judge, &judge, &suite, &scored(&suite), &mut |_| ()).unwrap_err();
    assert!(matches!(err, JudgeError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("its prompt for anchor/Q1/0 takes "), "{err}");
}

#[test]
fn a_judge_that_passes_calibration_but_cannot_hold_an_answers_prompt_is_refused_before_judging() {
    let suite = suite();
    let scored = scored(&suite);
    let judge = || {
        let mut fake = FakeJudge::with(&suite, faithful, |_, _| unreachable!("a refused judge scores no answer"));
        fake.too_long = Some("Q3/".into());
        fake
    };
    let mut lines = Vec::new();
    let mut both = judge();
    let report =
        judge_phase(&mut both, ScoreMode::Both, &judge_model(), &suite, &scored, &mut |l| lines.push(l)).unwrap();
    let JudgeOutcome::Refused(refused) = &report.outcome else { panic!("not refused: {:?}", report.outcome) };
    assert!(refused.to_string().starts_with("refused the judge: its prompt for Q3/0 takes 5000 tokens"), "{refused}");
    assert!(lines.iter().any(|l| l.starts_with("judge: calibration passed on ")), "{lines:?}");
    assert!(both.calls.iter().all(|(id, _, _)| id.starts_with("anchor/")), "answers were judged");
    let err = judge_phase(&mut judge(), ScoreMode::Judge, &judge_model(), &suite, &scored, &mut |_| ()).unwrap_err();
    assert!(matches!(err, JudgeError::Refused { .. }), "{err}");
}

#[test]
fn judge_mode_scores_the_accepted_baselines_too_after_one_calibration() {
    let suite = suite();
    let scored = scored(&suite);
    // The accepted phase's answers: plain ones, which the judge scores as `answers` says.
    let mut baseline = crate::judge::fake::two_samples_per_question(&suite, |_| PLAIN.to_owned());
    baseline.phase = "9".into();
    let mut fake = FakeJudge::with(&suite, faithful, answers);
    let task = JudgeTask::Phase { mode: ScoreMode::Judge, baselines: vec![baseline.clone()] };
    let Judged::Scores { report, baselines } =
        judge_task(&mut fake, task, &judge_model(), &suite, &scored, &mut |_| {}).unwrap()
    else {
        panic!("not a scoring judgement")
    };
    // One calibration (anchor calls once per seed), then both phases' samples.
    let anchor_calls = fake.calls.iter().filter(|(id, _, _)| id.starts_with("anchor/")).count();
    assert_eq!(anchor_calls, 2 * 19);
    assert_eq!(fake.calls.len(), anchor_calls + 2 * 2 * sample_count(&scored));
    assert_eq!(baselines.len(), 1);
    let (phase, judged) = &baselines[0];
    assert_eq!(phase.phase, "9");
    assert_eq!(judged.instrument(), report.instrument(), "one instrument on both sides");
    let file = scores_file(phase, &phase.phase, Some(judged));
    let part = gate_rules::import::parse_file("rescored", &file.to_string(), None).unwrap();
    assert_eq!(part.phase.as_deref(), Some("9"));
    assert_eq!(part.instrument, report.instrument());
    let points: Vec<f64> = part.questions.iter().flat_map(|q| &q.samples).map(|s| s.points).collect();
    assert!(points.iter().step_by(2).all(|&p| p == 8.0), "the judge's agreed totals: {points:?}");
}

#[test]
fn a_refused_judge_scores_no_baseline() {
    let suite = suite();
    let baseline = crate::judge::fake::two_samples_per_question(&suite, |_| PLAIN.to_owned());
    let mut fake = FakeJudge::with(&suite, lenient, |_, _| unreachable!("a refused judge scores no answer"));
    let task = JudgeTask::Phase { mode: ScoreMode::Both, baselines: vec![baseline] };
    let judged = judge_task(&mut fake, task, &judge_model(), &suite, &scored(&suite), &mut |_| {}).unwrap();
    assert!(matches!(judged, Judged::Scores { baselines, .. } if baselines.is_empty()));
}
