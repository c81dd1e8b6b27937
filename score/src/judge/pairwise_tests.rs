use super::*;
use crate::test_support::bundled;

const CANDIDATE: &str = "Oi! Eu sou a Iara, e o Tomás é o meu parceiro no Quintal.";
const BASELINE: &str = "I am an AI assistant. How can I help you today?";
/// Every dimension of the bundled rubric (D1..D5, 0–2 each, weight 1).
const ALL_A: &str = r#"{"D1": {"better": "A", "reason": "names herself"}, "D2": {"better": "A"},
    "D3": {"better": "A"}, "D4": {"better": "A"}, "D5": {"better": "A"}}"#;

use Preferred::{A, B, Tie};

fn choices(reply: &str) -> Vec<Preferred> {
    parse_pairwise_reply(reply, &bundled().rubric).unwrap().dims.iter().map(|d| d.preferred).collect()
}

fn reply_of(choices: [Preferred; 5]) -> PairwiseReply {
    let rubric = bundled().rubric;
    let dims = rubric
        .dimensions()
        .iter()
        .zip(choices)
        .map(|(d, preferred)| PairwiseDim { id: d.id.clone(), preferred, reason: String::new() })
        .collect();
    PairwiseReply { dims }
}

#[test]
fn the_prompt_holds_both_answers_in_the_order_asked_and_never_says_which_is_the_candidate() {
    let suite = bundled();
    let q = suite.question("Q1").unwrap();
    let first = build_pairwise_prompt(&suite, q, CANDIDATE, BASELINE, Order::CandidateFirst);
    let second = build_pairwise_prompt(&suite, q, CANDIDATE, BASELINE, Order::BaselineFirst);
    assert_eq!(first.system, second.system);
    let position = |p: &JudgePrompt, text: &str| p.user.find(text).unwrap();
    assert!(position(&first, CANDIDATE) < position(&first, BASELINE));
    assert!(position(&second, BASELINE) < position(&second, CANDIDATE));
    assert!(first.user.contains("Answer A:") && first.user.contains("Answer B:"));
    assert!(first.user.contains("Quem é o Tomás?") && first.user.contains("desenvolvedor | programador"));
    for d in suite.rubric.dimensions() {
        assert!(first.system.contains(&format!("{} {}", d.id, d.name)), "{}", d.id);
        assert!(first.system.contains(&format!("\"{}\": {{\"better\"", d.id)), "{}", d.id);
    }
    for text in [&first.system, &first.user] {
        let lower = text.to_lowercase();
        assert!(!lower.contains("candidate") && !lower.contains("baseline"), "{text}");
    }
}

#[test]
fn replies_are_read_leniently() {
    let cases: [(String, [Preferred; 5]); 4] = [
        (ALL_A.to_owned(), [A; 5]),
        (format!("```json\n{ALL_A}\n```\nDone."), [A; 5]),
        (
            "{'d1': 'B', 'd2': {'winner': 'Answer B'}, 'D3': {'Better': 'tie'}, 'd4': {'choice': 'equal'}, \
             'D5': {'preferred': 'a.'}}"
                .to_owned(),
            [B, B, Tie, Tie, A],
        ),
        (
            r#"{"scores": [{"dimension": "D1", "better": "A"}, {"dimension": "D2", "better": "B"},
               {"dimension": "D3", "better": "tie"}, {"dimension": "D4", "better": "A"},
               {"dimension": "D5", "better": "b"}]}"#
                .to_owned(),
            [A, B, Tie, A, B],
        ),
    ];
    for (reply, expected) in cases {
        assert_eq!(choices(&reply), expected, "{reply}");
    }
}

#[test]
fn unusable_replies_say_what_is_wrong() {
    let rubric = bundled().rubric;
    let cases = [
        ("A is better overall.", "holds no JSON object"),
        (r#"{"D1": "A", "D2": "A", "D3": "A", "D4": "A"}"#, "no choice for D5"),
        (r#"{"D1": "C", "D2": "A", "D3": "A", "D4": "A", "D5": "A"}"#, "choice for D1 is \"C\""),
        (r#"{"D1": {"reason": "x"}, "D2": "A", "D3": "A", "D4": "A", "D5": "A"}"#, "no choice for D1"),
        (r#"{"D1": 1, "D2": "A", "D3": "A", "D4": "A", "D5": "A"}"#, "choice for D1 is 1"),
    ];
    for (reply, needle) in cases {
        let msg = parse_pairwise_reply(reply, &rubric).unwrap_err().to_string();
        assert!(msg.contains(needle), "{reply}: {msg}");
    }
}

#[test]
fn both_orders_cancel_position_bias() {
    // (choice with the candidate as A, choice with the baseline as A) → (preference, disagree)
    let cases = [
        ((A, B), (1, false)),  // the candidate both times
        ((B, A), (-1, false)), // the baseline both times
        ((A, A), (0, true)),   // always the first answer: position bias, a tie
        ((B, B), (0, true)),   // always the second answer
        ((Tie, Tie), (0, false)),
        ((A, Tie), (0, true)), // one order only: a tie
        ((Tie, A), (0, true)),
    ];
    for ((first, second), (preference, disagree)) in cases {
        let dims = both_orders(&reply_of([first; 5]), &reply_of([second; 5]));
        assert_eq!(dims.len(), 5);
        for d in dims {
            assert_eq!((d.preference, d.orders_disagree), (preference, disagree), "{first:?}, {second:?}: {}", d.id);
        }
    }
}

#[test]
fn a_pair_preference_is_the_points_weighted_mean_in_minus_one_to_one() {
    let rubric = bundled().rubric;
    let cases: [([Preferred; 5], [Preferred; 5], f64); 4] = [
        ([A; 5], [B; 5], 1.0),
        ([B; 5], [A; 5], -1.0),
        ([A; 5], [A; 5], 0.0),
        // Candidate on D1 and D2, baseline on D3, position bias on D4, tie on D5: (1 + 1 - 1) / 5.
        ([A, A, B, A, Tie], [B, B, A, A, Tie], 0.2),
    ];
    for (first, second, expected) in cases {
        let p = pair_preference(&both_orders(&reply_of(first), &reply_of(second)), &rubric).unwrap();
        assert!((p - expected).abs() < 1e-12, "{first:?} {second:?}: {p}");
    }
}

#[test]
fn dimensions_count_by_their_share_of_the_points() {
    const WIDE_MAX: u32 = 6;
    let mut dims = bundled().rubric.dimensions().to_vec();
    // D1 becomes 0–6 (weight 1): 6 of the 14 points.
    dims[0].max = WIDE_MAX;
    let rubric = crate::Rubric::new("wide", dims).unwrap();
    let only_d1 = both_orders(&reply_of([A, Tie, Tie, Tie, Tie]), &reply_of([B, Tie, Tie, Tie, Tie]));
    let p = pair_preference(&only_d1, &rubric).unwrap();
    assert!((p - 6.0 / 14.0).abs() < 1e-12, "{p}");
    assert_eq!(pair_preference(&[], &rubric), None);
}

#[test]
fn a_question_preference_is_the_mean_of_its_pairs() {
    assert_eq!(question_preference(&[1.0, 0.0, -0.5, 0.5]), Some(0.25));
    assert_eq!(question_preference(&[]), None);
}
