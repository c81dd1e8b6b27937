//! Report body: every finding with its evidence, the statistics line per baseline, and the
//! pairwise judge's comparison.

use std::fmt::Write as _;

use super::{Detail, Input};
use crate::finding::{Finding, Severity};
use crate::numfmt::{loss, num, p};
use crate::rules::pairwise::{signed, tally};
use crate::stats::{Change, Comparison, Method, PairedStats, SamplesNeeded};

pub(crate) fn findings(out: &mut String, input: &Input<'_>, detail: Detail) {
    out.push_str("## Findings\n\n");
    let findings = &input.evaluation.findings;
    if findings.is_empty() {
        out.push_str("No findings.\n\n");
        return;
    }
    for severity in [Severity::Fail, Severity::Warn, Severity::Info] {
        for f in findings.iter().filter(|f| f.severity == severity) {
            finding(out, f, detail);
        }
    }
    out.push('\n');
}

fn finding(out: &mut String, f: &Finding, detail: Detail) {
    let confounder = if f.evidence.confounder { " (confounder)" } else { "" };
    let _ =
        writeln!(out, "- **{}** `{}`{confounder}: {}", f.severity.as_str().to_uppercase(), f.rule.as_str(), f.message);
    let e = &f.evidence;
    if !e.values.is_empty() {
        let values: Vec<String> = e
            .values
            .iter()
            .map(|v| {
                let value = match v.name.as_str() {
                    "p_value" => p(v.value),
                    name if name.ends_with("_loss") => loss(v.value),
                    _ => num(v.value),
                };
                format!("{} = {value}", v.name)
            })
            .collect();
        let _ = writeln!(out, "  - evidence: {}", values.join(", "));
    }
    if !e.questions.is_empty() {
        let _ = writeln!(out, "  - questions: {}", e.questions.join(", "));
    }
    for d in &e.differences {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".to_owned());
        let _ = writeln!(out, "  - `{}`: {} → {}", d.key, show(&d.baseline), show(&d.candidate));
    }
    if detail.excerpts {
        for x in &e.excerpts {
            let _ = writeln!(out, "  - phase {}, {}: “{}”", x.phase, x.question, x.text.replace('\n', " "));
        }
    }
}

pub(crate) fn statistics(out: &mut String, input: &Input<'_>) {
    out.push_str("## Statistics\n\n");
    let stats = &input.evaluation.statistics;
    if stats.is_empty() {
        out.push_str("No baseline to compare with: insufficient baseline.\n\n");
        return;
    }
    for s in stats {
        let roles: Vec<&str> = s.roles.iter().map(|r| r.as_str()).collect();
        let line = match &s.comparison {
            Comparison::Compared(c) => compared(c, input),
            Comparison::NoSharedQuestions => "no question scored on both sides: not comparable".to_owned(),
        };
        let _ = writeln!(out, "- vs phase {} ({}): {line}", s.baseline, roles.join(" and "));
    }
    out.push('\n');
}

fn compared(c: &PairedStats, input: &Input<'_>) -> String {
    let interval = c.interval.map_or_else(
        || "no interval: nothing can vary".to_owned(),
        |i| format!("95% CI {} to {}", num(i.low), num(i.high)),
    );
    let method = match c.method {
        Method::SignFlipExact { permutations } => {
            format!("exact sign-flip, {permutations} permutations")
        }
        Method::Bootstrap { resamples, seed } => {
            format!("two-level bootstrap, {resamples} resamples, seed {seed}")
        }
    };
    let k = if c.k_candidate == c.k_baseline {
        format!("K = {}", c.k_candidate)
    } else {
        format!("K = {} vs {}", c.k_candidate, c.k_baseline)
    };
    let unpaired =
        if c.unpaired.is_empty() { String::new() } else { format!(" (unpaired: {})", c.unpaired.join(", ")) };
    format!(
        "difference {} ({interval}), p = {} ({method}), {} questions{unpaired}, {k} → {}",
        num(c.difference),
        p(c.p_value),
        c.questions,
        reading(c, input)
    )
}

fn reading(c: &PairedStats, input: &Input<'_>) -> String {
    let min_effect = num(input.config.min_effect);
    match c.change {
        Change::Drop => "significant drop".to_owned(),
        Change::InconclusiveDrop => match c.samples_needed {
            Some(SamplesNeeded::PerQuestion { samples }) => {
                format!("inconclusive; about {samples} samples per question would settle it")
            }
            Some(SamplesNeeded::MoreQuestionsNeeded) => "inconclusive; more questions are needed".to_owned(),
            _ => "inconclusive".to_owned(),
        },
        Change::BelowMinEffect => format!("below min_effect {min_effect}: not a drop"),
        Change::Rise => "rise".to_owned(),
    }
}

/// The pairwise judge's comparison, beside the statistics of the scores.
pub(crate) fn pairwise(out: &mut String, input: &Input<'_>) {
    let (Some(c), Some(record)) = (&input.evaluation.pairwise, &input.candidate.pairwise) else { return };
    out.push_str("## Pairwise judging\n\n");
    let scope = if c.in_history { "" } else { " (not an accepted phase: reported, not judged)" };
    let summary = match (c.mean, c.p_value) {
        (Some(mean), Some(p_value)) => {
            format!(
                "mean preference {} (−1: the baseline's answers, +1: the candidate's) over {}",
                signed(mean),
                tally(c, p_value)
            )
        }
        _ => "no question had a readable preference".to_owned(),
    };
    let _ = writeln!(
        out,
        "The judge `{}` compared each answer with phase {}'s{scope}, asked in both orders: {summary}.\n",
        c.judge, c.baseline
    );
    out.push_str("| Question | Preference | Pairs |\n|---|---|---|\n");
    for q in &record.questions {
        let value = q.preference.map_or_else(|| "unreadable".to_owned(), signed);
        let _ = writeln!(out, "| {} | {value} | {} |", q.qid, q.pairs);
    }
    out.push('\n');
}
