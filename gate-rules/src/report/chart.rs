//! The mermaid `xychart-beta` chart of score and final loss by phase (GitHub renders it).

use std::fmt::Write as _;

use super::{Detail, Input};
use crate::numfmt::{loss, num};

pub(crate) fn chart(out: &mut String, input: &Input<'_>, detail: Detail) {
    let phases = input.recent(detail.chart_phases);
    let labels: Vec<String> = phases.iter().map(|p| format!("\"{}\"", p.label.replace('"', "'"))).collect();
    let scores: Vec<Option<f64>> = phases.iter().map(|p| p.score()).collect();
    let losses: Vec<Option<f64>> = phases.iter().map(|p| p.training.final_loss).collect();
    let top = losses.iter().flatten().fold(10.0_f64, |m, l| m.max(l.ceil()));
    let series = |values: &[Option<f64>], fmt: fn(f64) -> String| -> String {
        values.iter().map(|v| v.map_or_else(|| "0".to_owned(), fmt)).collect::<Vec<_>>().join(", ")
    };
    out.push_str("## Score and loss by phase\n\n```mermaid\nxychart-beta\n");
    let _ = writeln!(
        out,
        "    title \"{}: score (bars, 0-10) and final training loss (line)\"",
        input.evaluation.experiment.replace('"', "'")
    );
    let _ = writeln!(out, "    x-axis [{}]", labels.join(", "));
    let _ = writeln!(out, "    y-axis \"score / loss\" 0 --> {}", num(top));
    let _ = writeln!(out, "    bar [{}]", series(&scores, num));
    if losses.iter().any(Option::is_some) {
        let _ = writeln!(out, "    line [{}]", series(&losses, loss));
    }
    out.push_str("```\n");
    if scores.iter().chain(&losses).any(Option::is_none) && losses.iter().any(Option::is_some) {
        out.push_str("\nPhases without a recorded score or loss are drawn at 0.\n");
    }
}
