use super::*;
use crate::evaluate::evaluate;
use crate::testkit::{persona_history, phase};

fn report(history: &[Phase], candidate: &Phase, budget: usize) -> String {
    let config = GateConfig::default();
    let e = evaluate(history, candidate, &config);
    render_markdown(&e, history, candidate, &config, budget)
}

#[test]
fn marker_is_the_first_line_and_safe_inside_a_comment() {
    let h = persona_history();
    let text = report(&h[..3], &h[3], GITHUB_COMMENT_LIMIT);
    assert_eq!(text.lines().next(), Some("<!-- phasegate:report experiment=persona-v1 -->"));
    assert_eq!(marker("a --> b"), "<!-- phasegate:report experiment=a_--__b -->");
}

#[test]
fn report_has_every_section_the_issue_lists() {
    let h = persona_history();
    let text = report(&h[..3], &h[3], GITHUB_COMMENT_LIMIT);
    for needle in [
        "# persona-v1 phase 9: FAIL (2.875 → 5.5 → 3.25 → 3.125)",
        "## Changes from phase 8",
        "## Training results",
        "| Question | Phase 6 | Phase 7 | Phase 8 | Phase 9 | Trend |",
        "### What improved (vs phase 8)",
        "### What regressed (vs phase 8)",
        "## Findings",
        "## Statistics",
        "below min_effect 0.5: not a drop",
        "xychart-beta",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn the_changes_table_counts_changed_added_and_removed_keys() {
    let entry = |key: &str, value: &str| crate::phase::ConfigEntry { key: key.into(), value: value.into() };
    let mut h = persona_history();
    h[2].config = vec![entry("epochs", "3"), entry("lr", "2e-4"), entry("max_length", "512")];
    let mut candidate = h[3].clone();
    candidate.config = vec![entry("epochs", "3"), entry("lr", "1e-4"), entry("lora_dropout", "0.1")];
    let text = report(&h[..3], &candidate, GITHUB_COMMENT_LIMIT);
    assert!(text.contains("## Changes from phase 8\n\n1 changed, 1 added, 1 removed.\n"), "{text}");
}

#[test]
fn findings_show_a_question_asked_differently_than_in_the_baseline() {
    let h = persona_history();
    let mut candidate = h[1].clone();
    candidate.eval[1].question = "O que é o Quintal?".to_owned();
    let text = report(&h[..1], &candidate, GITHUB_COMMENT_LIMIT);
    let line = "- **WARN** `question_text`: Q2 asks a different question than in phase 6 (best and previous): \
                “pergunta 2” → “O que é o Quintal?”; the comparison for this question is not like for like\n  - questions: Q2";
    assert!(text.contains(line), "{text}");
}

#[test]
fn over_budget_drops_excerpts_first_and_says_so() {
    let mut h = persona_history();
    for p in &mut h {
        p.eval[4].samples[0].response = Some(format!("Meu nome é Tomás e eu trabalho com {} ", p.label).repeat(20));
    }
    let full = report(&h[..2], &h[2], GITHUB_COMMENT_LIMIT);
    assert!(full.contains("“"), "the full report quotes responses");
    let budget = chars(&full) - 1;
    let short = report(&h[..2], &h[2], budget);
    assert!(chars(&short) <= budget);
    assert!(!short.contains("“"));
    assert!(short.contains("response excerpts dropped"), "{short}");
    assert!(!short.contains("older phases dropped"), "{short}");
}

#[test]
fn long_history_drops_older_phases_next_and_says_so() {
    let history: Vec<Phase> = (1..=40).map(|i| phase(&i.to_string(), i, &[5.0; 40])).collect();
    let candidate = phase("41", 41, &[5.0; 40]);
    let full = report(&history, &candidate, GITHUB_COMMENT_LIMIT);
    assert!(full.contains("\"22\""), "the chart shows 20 phases");
    let short = report(&history, &candidate, chars(&full) - 200);
    assert!(short.contains("older phases dropped"), "{short}");
    assert!(!short.contains("\"22\""));
}

#[test]
fn tiny_budget_is_a_hard_cut_that_keeps_the_marker() {
    let h = persona_history();
    let text = report(&h[..3], &h[3], 600);
    assert!(chars(&text) <= 600);
    assert!(text.starts_with("<!-- phasegate:report"));
    assert!(text.contains("was cut at 600 characters"));
}

#[test]
fn json_form_carries_verdict_findings_and_statistics() {
    let h = persona_history();
    let e = evaluate(&h[..3], &h[3], &GateConfig::default());
    let value: serde_json::Value = serde_json::from_str(&render_json(&e)).unwrap();
    assert_eq!(value["verdict"], "fail");
    assert!(value["findings"].as_array().is_some_and(|f| f.iter().any(|f| f["rule"] == "regression_streak")));
    assert_eq!(value["statistics"][1]["comparison"]["change"], "below_min_effect");
    let back: Evaluation = serde_json::from_value(value).unwrap();
    assert_eq!(back, e);
}

#[test]
fn thousands_separator() {
    assert_eq!(thousands(65_536), "65,536");
    assert_eq!(thousands(999), "999");
}

#[test]
fn a_pairwise_judged_candidate_gets_its_own_section_beside_the_statistics() {
    use crate::phase::{Preferences, QuestionPreference};
    let h = persona_history();
    let mut candidate = h[3].clone();
    candidate.accepted = false;
    candidate.pairwise = Some(Preferences {
        baseline: "8".to_owned(),
        judge: "judge-7b".to_owned(),
        questions: (1..=8)
            .map(|i| QuestionPreference { qid: format!("Q{i}"), preference: (i != 8).then_some(-0.5), pairs: 1 })
            .collect(),
    });
    let text = report(&h[..3], &candidate, GITHUB_COMMENT_LIMIT);
    let stats = text.find("## Statistics").unwrap();
    let pairwise = text.find("## Pairwise judging").expect(&text);
    assert!(pairwise > stats, "{text}");
    for needle in [
        "The judge `judge-7b` compared each answer with phase 8's, asked in both orders: mean preference −0.500",
        "over 7 questions (baseline preferred on 7, candidate on 0, 0 ties), sign-flip p = 0.0156",
        "| Q1 | −0.500 | 1 |",
        "| Q8 | unreadable | 1 |",
        "prefers phase 8's answers",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert!(!report(&h[..3], &h[3], GITHUB_COMMENT_LIMIT).contains("## Pairwise judging"));
}
