//! A suite with no persona and its own three 0–5 dimensions goes through the whole path a user's
//! would: the score stage's scores.json → import → gate → report, under its own names.

use std::path::Path;

use gate_rules::report::render_markdown;
use gate_rules::{GateConfig, RuleId, Verdict, evaluate};
use phasegate_score::{Lexicon, ResponseRecord, Responses, Suite, score_phase};

use super::scores_file;

const SQL_SUITE: &str = include_str!("../../datasets/sql-assistant/suite.toml");

const GOOD: [&str; 4] = [
    "Count the orders of the last seven days: SELECT count(*) FROM orders WHERE order_date >= now() - interval '7 days'; \
     It reads the orders table once and returns one number.",
    "Group the year's orders by month: SELECT date_trunc('month', order_date) AS month, sum(total) FROM orders \
     WHERE order_date >= date_trunc('year', now()) GROUP BY 1 ORDER BY 1; Each row is one month.",
    "Count orders per customer and keep the frequent ones: SELECT customer_id FROM orders GROUP BY customer_id \
     HAVING count(*) > 5; The having clause filters after grouping.",
    "Average the item counts per order: SELECT avg(items) FROM (SELECT order_id, count(*) AS items FROM order_items \
     GROUP BY order_id) t; The inner query counts the items of each order.",
];

fn responses(phase: &str, answers: &[&str; 4], suite: &Suite) -> Responses {
    let results = suite
        .questions
        .iter()
        .zip(answers)
        .map(|(q, a)| ResponseRecord {
            qid: q.id.clone(),
            question: q.text.clone(),
            response: (*a).to_owned(),
            sample: 0,
            seed: Some(7),
            truncated: false,
            tokens: None,
            d4_auto_fail: None,
            d4_auto_score: None,
        })
        .collect();
    Responses {
        phase: phase.into(),
        model: "sql-model".into(),
        adapter: None,
        timestamp: None,
        generation_params: Default::default(),
        results,
        timing: None,
        peak_rss_mib: None,
    }
}

/// An English dictionary that knows the words of the good answers (and of "syntax error").
fn lexicon(suite: &Suite) -> Lexicon {
    let mut words: Vec<String> = GOOD
        .iter()
        .chain(&["syntax error at or near"])
        .flat_map(|a| a.split(|c: char| !c.is_alphabetic()))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    words.sort();
    words.dedup();
    let dic = format!("{}\n{}\n", words.len(), words.join("\n"));
    Lexicon::from_hunspell("SET UTF-8\n", &dic, suite).unwrap()
}

/// The phase the gate stores from the score stage's file.
fn gated_phase(phase: &str, answers: &[&str; 4], suite: &Suite) -> gate_rules::Phase {
    let scored = score_phase(suite, &lexicon(suite), &responses(phase, answers, suite)).unwrap();
    let text = scores_file(&scored, phase, None).to_string();
    let part = gate_rules::import::parse_file("score/scores.json", &text, Some(phase)).unwrap();
    gate_rules::import::merge(vec![part], "sql-assistant").unwrap()
}

#[test]
fn a_suite_with_its_own_dimensions_scores_imports_gates_and_reports() {
    let suite = Suite::from_toml_str(SQL_SUITE, Path::new("suite.toml")).unwrap();
    let mut baseline = gated_phase("1", &GOOD, &suite);
    baseline.accepted = true;
    assert!(baseline.rubric().same_scale(&suite.rubric));
    assert_eq!(baseline.eval[0].max_points, 20.0, "2×5 + 5 + 5");
    let dims: Vec<&str> = baseline.eval[0].samples[0].dimensions.iter().map(|d| d.dimension.as_str()).collect();
    assert_eq!(dims, ["correctness", "executes", "style"]);

    let broken = ["syntax error at or near SELEC"; 4];
    let candidate = gated_phase("2", &broken, &suite);
    let config = GateConfig::default();
    let history = [baseline];
    let eval = evaluate(&history, &candidate, &config);
    assert!(eval.findings.iter().all(|f| f.rule != RuleId::Instrument), "one instrument: {:?}", eval.findings);
    assert!(eval.candidate_score.unwrap() < eval.statistics[0].baseline_score.unwrap() - 3.0, "{eval:?}");
    assert_eq!(eval.verdict, Verdict::Fail);
    let report = render_markdown(&eval, &history, &candidate, &config, 65_536);
    for name in ["correctness correct result 0–5 ×2", "executes runs without error 0–5", "style readable SQL 0–5"]
    {
        assert!(report.contains(name), "{name} missing from the report:\n{report}");
    }
    assert!(report.contains("| correctness correct result |"), "per-dimension table:\n{report}");
}
