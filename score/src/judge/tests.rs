use super::*;
use crate::calibration::anchors;
use crate::test_support::bundled;
use crate::{AnchorKind, DimId, Rubric};

const PERFECT: &str = r#"{"D1": {"score": 2, "reason": "a"}, "D2": {"score": 2, "reason": "b"},
    "D3": {"score": 2, "reason": "c"}, "D4": {"score": 2, "reason": "d"},
    "D5": {"score": 2, "reason": "e"}}"#;

fn scores_of(reply: &str, rubric: &Rubric) -> Vec<u32> {
    parse_reply(reply, rubric).unwrap().dims.iter().map(|d| d.score).collect()
}

#[test]
fn prompt_holds_persona_question_answer_and_rubric_only() {
    let suite = bundled();
    let q = suite.question("Q1").unwrap();
    let p = build_prompt(&suite, q, "O Tomás é meu parceiro.");
    assert!(p.user.contains(suite.system_prompt.as_deref().unwrap()));
    assert!(p.user.contains("Quem é o Tomás?"));
    assert!(p.user.contains("O Tomás é meu parceiro."));
    assert!(p.user.contains("desenvolvedor | programador"));
    for d in suite.rubric.dimensions() {
        assert!(p.system.contains(&format!("{} {}", d.id, d.name)), "{}", d.id);
    }
    // no anchor text may leak into the prompt
    for a in &q.anchors {
        assert!(!p.user.contains(&a.text) && !p.system.contains(&a.text));
    }
    assert!(!p.system.to_lowercase().contains("anchor"));
}

#[test]
fn parses_tolerated_reply_shapes() {
    let rubric = bundled().rubric;
    let cases = [
        (PERFECT.to_owned(), [2, 2, 2, 2, 2]),
        (format!("```json\n{PERFECT}\n```\nHope that helps!"), [2, 2, 2, 2, 2]),
        (
            "Here is my evaluation: {'d1': {'score': '1', 'reason': 'it's fine'}, 'd2': {'score': '0/2'}, \
             'd3': 2, 'd4': '2', 'd5': {'score': 1.0,},} Done."
                .to_owned(),
            [1, 0, 2, 2, 1],
        ),
        (
            r#"{"scores": [{"dimension": "D1", "score": 0}, {"dimension": "D2", "score": 1},
                {"dimension": "D3", "score": 1}, {"dimension": "D4", "score": 2},
                {"dimension": "D5", "score": 2}]}"#
                .to_owned(),
            [0, 1, 1, 2, 2],
        ),
        (
            r#"{"scores": {"identidade": 1, "fatos": 1, "voz": 1, "limpeza de comportamento": 1, "D5": 1}}"#.to_owned(),
            [1, 1, 1, 1, 1],
        ),
        (format!("I think {{this}} is wrong. {PERFECT}"), [2, 2, 2, 2, 2]),
    ];
    for (reply, expected) in cases {
        assert_eq!(scores_of(&reply, &rubric), expected, "{reply}");
    }
    let reasons =
        parse_reply("{'D1': {'score': 1, 'reason': 'it's fine'}, D2: 0, D3: 0, D4: 0, D5: 0}", &rubric).unwrap();
    assert_eq!(reasons.dims[0].reason, "it's fine");
}

#[test]
fn rejects_unusable_replies_clearly() {
    let rubric = bundled().rubric;
    let cases = [
        ("I would give it a 7 out of 10.", "judge reply holds no JSON object"),
        (r#"{"D1": 2, "D2": 2, "D3": 2, "D4": 2}"#, "judge reply has no score for D5"),
        (r#"{"D1": 3, "D2": 2, "D3": 2, "D4": 2, "D5": 2}"#, "judge score for D1 is 3, outside 0..=2"),
        (r#"{"D1": 1.5, "D2": 2, "D3": 2, "D4": 2, "D5": 2}"#, "judge score for D1 is not an integer: 1.5"),
        (r#"{"D1": "high", "D2": 2, "D3": 2, "D4": 2, "D5": 2}"#, "judge score for D1 is not an integer: \"high\""),
        (r#"{"D1": {"reason": "no score"}, "D2": 2, "D3": 2, "D4": 2, "D5": 2}"#, "no score for D1"),
    ];
    for (reply, expected) in cases {
        let err = parse_reply(reply, &rubric).unwrap_err().to_string();
        assert!(err.contains(expected), "{reply}: {err}");
    }
}

fn judged(scores: [u32; 5]) -> JudgeScores {
    JudgeScores {
        dims: ["D1", "D2", "D3", "D4", "D5"]
            .into_iter()
            .zip(scores)
            .map(|(id, score)| JudgeDim { id: DimId::new(id).unwrap(), score, reason: format!("{id}={score}") })
            .collect(),
    }
}

#[test]
fn agreement_keeps_the_lower_score_within_one_and_discards_wider_gaps() {
    let rubric = bundled().rubric;
    let a = agree(&judged([2, 2, 0, 1, 2]), &judged([1, 0, 0, 2, 2]), &rubric);
    let kept: Vec<(&str, u32)> = a.scores.iter().map(|d| (d.id.as_str(), d.score)).collect();
    assert_eq!(kept, [("D1", 1), ("D3", 0), ("D4", 1), ("D5", 2)]);
    assert_eq!(a.scores[0].reason, "D1=1");
    assert_eq!(a.discarded, [Disagreement { id: DimId::new("D2").unwrap(), first: 2, second: 0 }]);
    assert_eq!(a.total(&rubric), None);
    assert_eq!(agree(&judged([2; 5]), &judged([2; 5]), &rubric).total(&rubric), Some(10.0));
}

/// A judge that gives each anchor kind the same fixed scores on both calls.
fn judge_all(suite: &crate::Suite, by_kind: impl Fn(AnchorKind) -> [u32; 5]) -> Vec<AnchorJudgement> {
    anchors(suite)
        .into_iter()
        .map(|anchor| {
            let s = judged(by_kind(anchor.kind));
            AnchorJudgement { agreement: Ok(agree(&s, &s, &suite.rubric)), anchor }
        })
        .collect()
}

fn faithful(kind: AnchorKind) -> [u32; 5] {
    match kind {
        AnchorKind::Ideal => [2, 2, 2, 2, 1],
        AnchorKind::Generic => [0, 0, 1, 2, 0],
        AnchorKind::Contaminated | AnchorKind::WordSalad => [0; 5],
        AnchorKind::WordSaladPersona | AnchorKind::WrongIdentity => [0, 0, 0, 2, 0],
        AnchorKind::FluentHallucination => [1, 0, 1, 2, 1],
        AnchorKind::Truncated => [2, 2, 2, 2, 1],
    }
}

#[test]
fn calibrated_judge_is_accepted() {
    let suite = bundled();
    assert_eq!(check_calibration(&suite.rubric, &judge_all(&suite, faithful)), Ok(()));
}

#[test]
fn judge_outside_a_band_is_refused_naming_the_anchor() {
    let suite = bundled();
    let lenient = |kind| match kind {
        AnchorKind::Generic => [1, 1, 2, 2, 2],
        other => faithful(other),
    };
    let err = check_calibration(&suite.rubric, &judge_all(&suite, lenient)).unwrap_err();
    let JudgeRefused::Misjudged { misjudged, judged } = &err else {
        panic!("{err}");
    };
    assert_eq!((misjudged.len(), *judged), (3, 19));
    assert!(err.to_string().contains("Q1 generic anchor scored 8.0, band 2..=4"), "{err}");
}

#[test]
fn judge_that_disagrees_with_itself_on_an_anchor_is_refused() {
    let suite = bundled();
    let mut all = judge_all(&suite, faithful);
    all[0].agreement = Ok(agree(&judged([2; 5]), &judged([0, 2, 2, 2, 2]), &suite.rubric));
    let err = check_calibration(&suite.rubric, &all).unwrap_err().to_string();
    assert!(err.contains("Q1 ideal anchor: judge disagreed with itself on [D1]"), "{err}");
}

#[test]
fn judge_with_an_unreadable_anchor_reply_is_refused_naming_the_anchor() {
    let suite = bundled();
    let mut all = judge_all(&suite, faithful);
    all[1].agreement = parse_reply("no idea, sorry", &suite.rubric).map(|s| agree(&s, &s, &suite.rubric));
    let err = check_calibration(&suite.rubric, &all).unwrap_err();
    let JudgeRefused::Misjudged { misjudged, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(misjudged.len(), 1);
    assert!(matches!(misjudged[0].unreadable, Some(JudgeReplyError::NoJson { .. })));
    let kind = all[1].anchor.kind.as_str();
    let expected = format!("{} {kind} anchor: judge reply holds no JSON object", all[1].anchor.qid);
    assert!(err.to_string().contains(&expected), "{err}");
}

#[test]
fn judge_cannot_be_calibrated_without_anchors() {
    let suite = bundled();
    assert_eq!(check_calibration(&suite.rubric, &[]), Err(JudgeRefused::NoAnchors));
}
