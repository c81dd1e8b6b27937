//! Report tables: per-question scores over the last phases with a trend column, per-dimension
//! averages, and what improved or regressed against the previous phase.

use std::fmt::Write as _;

use super::{Detail, Input};
use crate::evaluate::BaselineRole;
use crate::finding::excerpt;
use crate::numfmt::{num, trend};
use crate::phase::{Phase, mean, natural_cmp};

const QUESTION_TEXT_CHARS: usize = 40;

pub(crate) fn questions(out: &mut String, input: &Input<'_>, detail: Detail) {
    let phases = input.recent(detail.table_phases);
    out.push_str("## Evaluation scores\n\n");
    let ids = question_ids(&phases);
    if ids.is_empty() {
        out.push_str("No scored questions.\n\n");
        return;
    }
    header(out, "Question", &phases);
    for id in &ids {
        let values: Vec<Option<f64>> = phases.iter().map(|p| p.question(id).and_then(|q| q.normalized())).collect();
        let _ = writeln!(out, "| {} | {} |", question_title(&phases, id), row(&values, num));
    }
    let totals: Vec<Option<f64>> = phases.iter().map(|p| p.score()).collect();
    let _ = writeln!(out, "| **Total** | {} |", row(&totals, |v| format!("{}/10", num(v))));
    out.push('\n');
}

pub(crate) fn dimensions(out: &mut String, input: &Input<'_>, detail: Detail) {
    let phases = input.recent(detail.table_phases);
    let mut dims: Vec<String> = Vec::new();
    for s in phases.iter().flat_map(|p| &p.eval).flat_map(|q| &q.samples) {
        for d in &s.dimensions {
            if !dims.iter().any(|x| x.eq_ignore_ascii_case(&d.dimension)) {
                dims.push(d.dimension.clone());
            }
        }
    }
    if dims.is_empty() {
        return;
    }
    dims.sort_by(|a, b| natural_cmp(a, b));
    out.push_str("## Per-dimension averages\n\n");
    header(out, "Dimension", &phases);
    let rubric = input.candidate.rubric();
    for dim in &dims {
        let values: Vec<Option<f64>> = phases.iter().map(|p| dimension_mean(p, dim)).collect();
        let name = rubric.dimension(dim).map_or_else(|| dim.clone(), |d| format!("{} {}", d.id, d.name));
        let _ = writeln!(out, "| {name} | {} |", row(&values, num));
    }
    out.push('\n');
}

pub(crate) fn improved_regressed(out: &mut String, input: &Input<'_>) {
    let Some(previous) = input.baseline(BaselineRole::Previous) else {
        return;
    };
    let mut improved = Vec::new();
    let mut regressed = Vec::new();
    for q in &input.candidate.eval {
        let (Some(now), Some(before)) = (q.normalized(), previous.question(&q.id).and_then(|b| b.normalized())) else {
            continue;
        };
        let line = format!(
            "- {}: {} → {} ({})",
            question_title(&[input.candidate], &q.id),
            num(before),
            num(now),
            trend(now - before)
        );
        if now > before {
            improved.push(line);
        } else if now < before {
            regressed.push(line);
        }
    }
    for (heading, lines) in [("What improved", improved), ("What regressed", regressed)] {
        let _ = writeln!(out, "### {heading} (vs phase {})\n", previous.label);
        if lines.is_empty() {
            out.push_str("- nothing\n");
        } else {
            out.push_str(&lines.join("\n"));
            out.push('\n');
        }
        out.push('\n');
    }
}

fn header(out: &mut String, first: &str, phases: &[&Phase]) {
    let names: Vec<String> = phases.iter().map(|p| format!("Phase {}", p.label)).collect();
    let _ = writeln!(out, "| {first} | {} | Trend |", names.join(" | "));
    let _ = writeln!(out, "|---|{}---|", "---|".repeat(phases.len()));
}

/// Cells for each phase (the candidate's in bold) and the trend against the one before it.
fn row(values: &[Option<f64>], fmt: impl Fn(f64) -> String) -> String {
    let last = values.len() - 1;
    let mut cells: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Some(v) if i == last => format!("**{}**", fmt(*v)),
            Some(v) => fmt(*v),
            None => "—".to_owned(),
        })
        .collect();
    let change = match (values.get(last.wrapping_sub(1)).copied().flatten(), values[last]) {
        (Some(before), Some(now)) => trend(now - before),
        _ => "—".to_owned(),
    };
    cells.push(change);
    cells.join(" | ")
}

fn question_ids(phases: &[&Phase]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for q in phases.iter().flat_map(|p| &p.eval) {
        if !ids.contains(&q.id) {
            ids.push(q.id.clone());
        }
    }
    ids.sort_by(|a, b| natural_cmp(a, b));
    ids
}

/// "Q5: Me fala sobre você." from the newest phase that has the question's text.
fn question_title(phases: &[&Phase], id: &str) -> String {
    let text = phases.iter().rev().filter_map(|p| p.question(id)).map(|q| q.question.as_str()).find(|t| !t.is_empty());
    match text {
        Some(t) => format!("{id}: {}", excerpt(t, QUESTION_TEXT_CHARS).replace('|', "\\|")),
        None => id.to_owned(),
    }
}

fn dimension_mean(phase: &Phase, dim: &str) -> Option<f64> {
    mean(
        phase
            .eval
            .iter()
            .flat_map(|q| &q.samples)
            .flat_map(|s| &s.dimensions)
            .filter(|d| d.dimension.eq_ignore_ascii_case(dim))
            .map(|d| f64::from(d.score)),
    )
}
