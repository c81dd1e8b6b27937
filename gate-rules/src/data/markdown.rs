//! The markdown rendering of a [`LintReport`], for terminals, PR comments and the run report.

use std::fmt::Write as _;

use super::report::LintReport;

/// Contaminated examples listed in the table.
const LISTED: usize = 20;

pub fn render_markdown(report: &LintReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## Dataset lint: {}\n", report.verdict.as_str().to_uppercase());
    summary(&mut out, report);
    findings(&mut out, report);
    contamination(&mut out, report);
    diff(&mut out, report);
    out
}

/// The "Data" section of a run's gate report: what the lint stage saw in the run's dataset — the
/// diff against the baseline (with its largest groups), contamination and token lengths — in at
/// most `budget` characters (the first lines are kept whole; the rest is cut with a note).
pub fn render_data_section(report: &LintReport, budget: usize) -> String {
    let mut out = format!(
        "\n### Data\n\nLint **{}**: {} examples ({}), digest `{}`",
        report.verdict.as_str(),
        report.examples,
        report.format,
        &report.digest[..report.digest.len().min(16)]
    );
    let fails = report.findings.iter().filter(|f| f.severity == crate::finding::Severity::Fail).count();
    let warns = report.findings.iter().filter(|f| f.severity == crate::finding::Severity::Warn).count();
    let _ = writeln!(
        out,
        "; {fails} failing and {warns} warning findings (the lint job's `lint/report.md` has them all).\n"
    );
    if let Some(d) = &report.diff {
        let _ = write!(
            out,
            "- diff: {} → {} examples, +{} added, −{} removed, {} changed",
            d.before, d.after, d.added, d.removed, d.changed
        );
        let groups: Vec<String> = [("+", &d.added_groups), ("−", &d.removed_groups)]
            .iter()
            .flat_map(|(sign, gs)| {
                gs.iter().take(3).map(move |g| format!("{sign}{} like '{}…'", g.count, cell(&g.prefix)))
            })
            .collect();
        if !groups.is_empty() {
            let _ = write!(out, ": {}", groups.join(", "));
        }
        out.push('\n');
    }
    match report.contaminated.len() {
        0 => out.push_str("- contamination: none of the suite's questions or anchors is in the data\n"),
        n => {
            let mut qids: Vec<&str> = report.contaminated.iter().map(|c| c.qid.as_str()).collect();
            qids.dedup();
            let _ = writeln!(out, "- contamination: {n} matches, questions {}", qids.join(", "));
        }
    }
    if let Some(t) = &report.token_lengths {
        let limit = t.max_length.map_or(String::new(), |m| format!(", {} over max_length {m}", t.over_max_length));
        let _ = writeln!(out, "- tokens: min {} · p50 {} · p95 {} · max {}{limit}", t.min, t.p50, t.p95, t.max);
    }
    if out.len() > budget {
        let cut = (0..=budget.saturating_sub(40)).rev().find(|i| out.is_char_boundary(*i)).unwrap_or(0);
        out.truncate(cut);
        out.push_str("\n… (cut to fit)\n");
    }
    out
}

fn summary(out: &mut String, r: &LintReport) {
    let files: Vec<String> = r.datasets.iter().map(|d| format!("`{}` ({})", d.file, d.format.as_str())).collect();
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| examples | {} in {} |", r.examples, files.join(", "));
    let _ = writeln!(out, "| format | {} |", r.format);
    let _ = writeln!(out, "| digest | `{}` |", &r.digest[..r.digest.len().min(16)]);
    match &r.token_lengths {
        Some(t) => {
            let limit = t.max_length.map_or(String::new(), |m| format!(", {} over max_length {m}", t.over_max_length));
            let _ = writeln!(out, "| tokens | min {} · p50 {} · p95 {} · max {}{limit} |", t.min, t.p50, t.p95, t.max);
        }
        None => {
            let _ = writeln!(out, "| tokens | not measured |");
        }
    }
    let exact: usize = r.duplicates.exact.iter().map(|g| g.indices.len() - 1).sum();
    let _ = writeln!(out, "| duplicates | {exact} exact, {} near-duplicate groups |", r.duplicates.near.len());
    let _ = writeln!(out, "| contaminated | {} matches |\n", r.contaminated.len());
}

fn findings(out: &mut String, r: &LintReport) {
    if r.findings.is_empty() {
        out.push_str("No findings.\n\n");
        return;
    }
    out.push_str("| severity | rule | finding |\n|---|---|---|\n");
    for f in &r.findings {
        let _ = writeln!(out, "| {} | `{}` | {} |", f.severity.as_str(), f.rule.as_str(), cell(&f.message));
    }
    out.push('\n');
}

fn contamination(out: &mut String, r: &LintReport) {
    if r.contaminated.is_empty() {
        return;
    }
    out.push_str(
        "### Eval contamination\n\n| question | eval text | example | where | match |\n|---|---|---:|---|---|\n",
    );
    for c in r.contaminated.iter().take(LISTED) {
        let kind = match c.kind {
            super::contamination::MatchKind::Verbatim => "verbatim".to_owned(),
            super::contamination::MatchKind::Ngram => format!("n-gram {:.0}%", c.overlap * 100.0),
        };
        let _ = writeln!(out, "| {} | {} | #{} | {} | {kind} |", c.qid, c.what, c.example_index, cell(&c.location));
    }
    if r.contaminated.len() > LISTED {
        let _ = writeln!(out, "\n…and {} more.", r.contaminated.len() - LISTED);
    }
    out.push('\n');
}

fn diff(out: &mut String, r: &LintReport) {
    let Some(d) = &r.diff else { return };
    let _ = writeln!(
        out,
        "### Dataset diff\n\n{} → {} examples: **+{}** added, **−{}** removed, **{}** changed, {} unchanged.\n",
        d.before, d.after, d.added, d.removed, d.changed, d.unchanged
    );
    for (sign, groups) in [("+", &d.added_groups), ("−", &d.removed_groups)] {
        for g in groups.iter().take(5) {
            let _ = writeln!(out, "- {sign}{} like '{}…'", g.count, cell(&g.prefix));
        }
    }
    for (title, list) in
        [("added", &d.added_examples), ("removed", &d.removed_examples), ("changed", &d.changed_examples)]
    {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n**{title}**\n");
        for e in list {
            let before = e.before.as_ref().map_or(String::new(), |b| format!(" (was: {})", cell(b)));
            let _ = writeln!(out, "- #{} {} → {}{before}", e.index, cell(&e.prompt), cell(&e.answer));
        }
    }
    out.push('\n');
}

/// Text safe inside a markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}
