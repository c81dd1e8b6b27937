//! The calibration report as markdown (people) or JSON (tools).

use std::fmt::Write as _;

use super::report::Report;

fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3}"))
}

pub fn markdown(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Calibration of {} on suite {} ({} answers)\n", r.instrument, r.suite, r.answers);
    let _ = writeln!(out, "| figure (0–10 totals) | value |\n|---|---|");
    let _ = writeln!(out, "| MAE | {} |\n| bias (scorer − human) | {} |", num(r.mae), num(r.bias));
    let _ = writeln!(out, "| Pearson | {} |\n| Spearman | {} |\n", num(r.pearson), num(r.spearman));
    let _ = writeln!(out, "| dimension | quadratic-weighted kappa | exact agreement | human mean | scorer mean |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for d in &r.dimensions {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} | {:.2} |",
            d.id,
            num(d.kappa),
            num(d.exact),
            d.human_mean,
            d.scorer_mean
        );
    }
    for (title, groups) in [("phase", &r.phases), ("category", &r.categories)] {
        if groups.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n| {title} | answers | human mean /10 | scorer mean /10 |\n|---|---|---|---|");
        for g in groups {
            let _ = writeln!(out, "| {} | {} | {:.2} | {:.2} |", g.name, g.answers, g.human, g.scorer);
        }
    }
    let _ = writeln!(out, "\n## The {} worst disagreements\n", r.worst.len());
    for w in &r.worst {
        let category = w.category.as_deref().unwrap_or("-");
        let _ = writeln!(
            out,
            "- **{}** {} ({category}): human {:.1}, scorer {:.1}; human {:?}, scorer {:?}",
            w.id, w.qid, w.human, w.scorer, w.human_scores, w.scorer_scores
        );
        let excerpt: String = w.response.chars().take(160).collect::<String>().replace('\n', " ");
        let _ = writeln!(out, "  - answer: {excerpt}{}", if w.response.chars().count() > 160 { "…" } else { "" });
        for reason in &w.reasons {
            let _ = writeln!(out, "  - {reason}");
        }
    }
    out
}

pub fn json(r: &Report) -> String {
    serde_json::to_string_pretty(r).unwrap_or_default()
}
