//! Snapshots of the markdown report for the bundled history: the team's phase 8 and phase 9
//! reports, now generated, and phase 9 under a budget that forces the shortening rule.

mod common;

use gate_rules::{evaluate, report};

fn render(candidate: u32, budget: usize) -> String {
    let history = common::history();
    let index = (candidate - 6) as usize;
    let config = common::gate_config();
    let e = evaluate(&history[..index], &history[index], &config);
    report::render_markdown(&e, &history[..index], &history[index], &config, budget)
}

#[test]
fn phase_8_report() {
    insta::assert_snapshot!(render(8, report::GITHUB_COMMENT_LIMIT));
}

#[test]
fn phase_9_report() {
    insta::assert_snapshot!(render(9, report::GITHUB_COMMENT_LIMIT));
}

#[test]
fn phase_9_report_within_a_small_budget() {
    let full = render(9, report::GITHUB_COMMENT_LIMIT);
    let budget = full.chars().count() - 100;
    let short = render(9, budget);
    assert!(short.chars().count() <= budget);
    insta::assert_snapshot!(short);
}
