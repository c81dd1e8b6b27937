//! Report head: title with the score trend, the verdict line, "Changes from phase N" and the
//! training results.

use std::fmt::Write as _;

use super::{Detail, Input};
use crate::evaluate::BaselineRole;
use crate::numfmt::{loss, num, pct};
use crate::phase::{ConfigEntry, Phase};

pub(crate) fn title(out: &mut String, input: &Input<'_>, detail: Detail) {
    let e = input.evaluation;
    let trend: Vec<String> =
        input.recent(detail.table_phases).iter().map(|p| p.score().map_or_else(|| "—".to_owned(), num)).collect();
    let _ = writeln!(
        out,
        "# {} phase {}: {} ({})\n",
        e.experiment,
        e.candidate,
        e.verdict.as_str().to_uppercase(),
        trend.join(" → ")
    );
    let score = e.candidate_score.map_or_else(|| "no score".to_owned(), |s| format!("{}/10", num(s)));
    let baselines: Vec<String> = e
        .statistics
        .iter()
        .map(|s| {
            let roles: Vec<&str> = s.roles.iter().map(|r| r.as_str()).collect();
            let score = s.baseline_score.map_or_else(|| "—".to_owned(), |v| format!("{}/10", num(v)));
            format!("phase {} ({}) {score}", s.baseline, roles.join(" and "))
        })
        .collect();
    let baselines = if baselines.is_empty() { "none".to_owned() } else { baselines.join(", ") };
    let _ = writeln!(
        out,
        "**Verdict:** `{}` (exit code {}) · **Score:** {score} · **Baselines:** {baselines}\n",
        e.verdict.as_str(),
        e.verdict.exit_code()
    );
}

/// What scored each compared phase and on which rubric: scores from different instruments are
/// not comparable, so the reader sees it before any number.
pub(crate) fn scoring(out: &mut String, input: &Input<'_>) {
    let candidate = input.candidate;
    let rubric = candidate.rubric();
    let dims: Vec<String> = rubric
        .dimensions()
        .iter()
        .map(|d| {
            let weight = if d.weight == 1.0 { String::new() } else { format!(" ×{}", num(d.weight)) };
            format!("{} {} {}–{}{weight}", d.id, d.name, d.min, d.max)
        })
        .collect();
    let recorded = if candidate.rubric.is_some() { "" } else { ", assumed: none recorded" };
    let digest = rubric.digest();
    let short = digest.strip_prefix("sha256:").unwrap_or(&digest);
    let _ = writeln!(
        out,
        "**Rubric** {} (`{}`{recorded}): {}\n",
        rubric.version(),
        &short[..short.len().min(12)],
        dims.join(", ")
    );
    let mut scored = vec![format!("phase {} (candidate): {}", candidate.label, candidate.instrument())];
    for s in &input.evaluation.statistics {
        let Some(phase) = input.timeline.phases.iter().find(|p| p.label == s.baseline) else { continue };
        let again = match &phase.rescored_from {
            Some(first) => format!(", re-scored from its stored responses (first scored by {first})"),
            None => String::new(),
        };
        scored.push(format!("phase {}: {}{again}", phase.label, phase.instrument()));
    }
    let _ = writeln!(out, "**Scored by:** {}\n", scored.join(" · "));
}

pub(crate) fn changes(out: &mut String, input: &Input<'_>) {
    let Some(previous) = input.baseline(BaselineRole::Previous) else {
        out.push_str("## Changes\n\nNo previous phase to compare with.\n\n");
        return;
    };
    let mut rows = diff_entries(&previous.config, &input.candidate.config, "");
    rows.extend(diff_entries(&previous.generation, &input.candidate.generation, " (eval)"));
    rows.extend(dataset_rows(previous, input.candidate));
    let _ = writeln!(out, "## Changes from phase {}\n", previous.label);
    if rows.is_empty() {
        out.push_str("No configuration changes.\n\n");
        return;
    }
    let added = rows.iter().filter(|(_, before, _)| before.is_none()).count();
    let removed = rows.iter().filter(|(_, _, after)| after.is_none()).count();
    let _ = writeln!(out, "{} changed, {added} added, {removed} removed.\n", rows.len() - added - removed);
    let _ = writeln!(out, "| Parameter | Phase {} | Phase {} |\n|---|---|---|", previous.label, input.candidate.label);
    for (key, before, after) in rows {
        let _ = writeln!(out, "| {key} | {} | **{}** |", cell(&before), cell(&after));
    }
    out.push('\n');
}

type Row = (String, Option<String>, Option<String>);

/// Keys that differ, in the previous phase's order, then keys new in the candidate.
fn diff_entries(before: &[ConfigEntry], after: &[ConfigEntry], suffix: &str) -> Vec<Row> {
    let find = |list: &[ConfigEntry], key: &str| list.iter().find(|e| e.key == key).map(|e| e.value.clone());
    let mut keys: Vec<&str> = before.iter().map(|e| e.key.as_str()).collect();
    keys.extend(after.iter().map(|e| e.key.as_str()).filter(|k| !before.iter().any(|e| e.key == *k)));
    keys.into_iter()
        .filter_map(|key| {
            let (b, a) = (find(before, key), find(after, key));
            (b != a).then(|| (format!("{key}{suffix}"), b, a))
        })
        .collect()
}

fn dataset_rows(before: &Phase, after: &Phase) -> Vec<Row> {
    let size = |p: &Phase| p.dataset.as_ref().and_then(|d| d.size).map(|s| s.to_string());
    let digest = |p: &Phase| p.dataset.as_ref().and_then(|d| d.digest.clone());
    [("dataset size", size(before), size(after)), ("dataset digest", digest(before), digest(after))]
        .into_iter()
        .filter(|(_, b, a)| b != a)
        .map(|(k, b, a)| (k.to_owned(), b, a))
        .collect()
}

fn cell(value: &Option<String>) -> String {
    value.as_deref().map_or_else(|| "—".to_owned(), |v| v.replace('|', "\\|"))
}

pub(crate) fn training(out: &mut String, input: &Input<'_>) {
    out.push_str("## Training results\n\n");
    let t = &input.candidate.training;
    let mut lines = Vec::new();
    if let Some(final_loss) = t.final_loss {
        lines.push(format!("- **Final loss:** {}{}", loss(final_loss), loss_changes(input, final_loss)));
    }
    if let Some(peak) = t.vram_peak_mib {
        let budget = input
            .config
            .rules
            .vram_budget
            .max_mib
            .map_or_else(|| "no budget set".to_owned(), |b| format!("budget {b} MiB"));
        lines.push(format!("- **VRAM peak:** {peak} MiB ({budget})"));
    }
    if let Some(secs) = t.duration_secs {
        lines.push(format!("- **Training time:** {} min {} s", secs / 60, secs % 60));
    }
    if let (Some(first), Some(last)) = (t.loss_curve.first(), t.loss_curve.last()) {
        lines.push(format!(
            "- **Loss curve:** {} points, {} at step {} → {} at step {}",
            t.loss_curve.len(),
            loss(first.loss),
            first.step,
            loss(last.loss),
            last.step
        ));
    }
    if let Some(d) = &input.candidate.dataset {
        let size = d.size.map_or_else(|| "size unknown".to_owned(), |s| format!("{s} examples"));
        let digest = d.digest.as_deref().map(|g| format!(" · digest `{g}`")).unwrap_or_default();
        lines.push(format!("- **Dataset:** {size}{digest}"));
    }
    if lines.is_empty() {
        lines.push("No training metrics recorded.".to_owned());
    }
    out.push_str(&lines.join("\n"));
    out.push_str("\n\n");
}

fn loss_changes(input: &Input<'_>, now: f64) -> String {
    let mut parts = Vec::new();
    for s in &input.evaluation.statistics {
        let Some(base) = input.timeline.phases.iter().find(|p| p.label == s.baseline) else {
            continue;
        };
        let Some(before) = base.training.final_loss.filter(|l| *l > 0.0) else {
            continue;
        };
        let roles: Vec<&str> = s.roles.iter().map(|r| r.as_str()).collect();
        parts.push(format!(
            "phase {} ({}): {}, {}",
            base.label,
            roles.join(" and "),
            loss(before),
            pct((now - before) / before * 100.0)
        ));
    }
    if parts.is_empty() { String::new() } else { format!(" ({})", parts.join("; ")) }
}
