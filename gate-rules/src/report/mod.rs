//! Reports: the markdown PR comment in the style of the team's own phase report, and the JSON form
//! of verdict + findings + statistics for machines. Rendering is pure; posting is the caller's job.
//!
//! The markdown must fit a length budget (GitHub's 65,536 characters). When it does not, it is
//! re-rendered with less: first without response excerpts, then with fewer, newer phases; as a last
//! resort it is cut. Every shortened report says what was left out.

mod chart;
mod findings;
mod sections;
mod tables;

use crate::config::GateConfig;
use crate::evaluate::{BaselineRole, Evaluation, Timeline};
use crate::phase::Phase;

/// GitHub's limit on the body of a comment, in characters.
pub const GITHUB_COMMENT_LIMIT: usize = 65_536;

/// The hidden first line that lets the GitHub reporter find and update its own comment.
pub fn marker(experiment: &str) -> String {
    let safe: String =
        experiment.chars().map(|c| if c.is_alphanumeric() || "-_./".contains(c) { c } else { '_' }).collect();
    format!("<!-- phasegate:report experiment={safe} -->")
}

/// The machine-readable report: the evaluation as pretty JSON.
pub fn render_json(evaluation: &Evaluation) -> String {
    serde_json::to_string_pretty(evaluation)
        .unwrap_or_else(|e| format!("{{\"error\": \"failed to serialise evaluation: {e}\"}}"))
}

/// What one rendering pass includes; later passes include less.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Detail {
    pub(crate) excerpts: bool,
    /// Phases in the title trend and the per-question and per-dimension tables (candidate included).
    pub(crate) table_phases: usize,
    pub(crate) chart_phases: usize,
}

const FULL: Detail = Detail { excerpts: true, table_phases: 4, chart_phases: 20 };
const SHORTER: [Detail; 5] = [
    Detail { excerpts: false, ..FULL },
    Detail { excerpts: false, table_phases: 4, chart_phases: 10 },
    Detail { excerpts: false, table_phases: 3, chart_phases: 5 },
    Detail { excerpts: false, table_phases: 2, chart_phases: 2 },
    Detail { excerpts: false, table_phases: 1, chart_phases: 1 },
];

/// Everything the sections read: the same history view `evaluate` used.
#[derive(Debug)]
pub(crate) struct Input<'a> {
    pub(crate) evaluation: &'a Evaluation,
    pub(crate) timeline: Timeline<'a>,
    pub(crate) candidate: &'a Phase,
    pub(crate) config: &'a GateConfig,
}

impl<'a> Input<'a> {
    /// The latest `n` phases, candidate last.
    pub(crate) fn recent(&self, n: usize) -> Vec<&'a Phase> {
        let keep = n.saturating_sub(1).min(self.timeline.phases.len());
        let mut out = self.timeline.phases[self.timeline.phases.len() - keep..].to_vec();
        out.push(self.candidate);
        out
    }

    pub(crate) fn baseline(&self, role: BaselineRole) -> Option<&'a Phase> {
        let label = &self.evaluation.statistics.iter().find(|s| s.roles.contains(&role))?.baseline;
        self.timeline.phases.iter().copied().find(|p| &p.label == label)
    }
}

/// Renders the markdown report within `budget_chars` characters (see the module docs).
pub fn render_markdown(
    evaluation: &Evaluation,
    history: &[Phase],
    candidate: &Phase,
    config: &GateConfig,
    budget_chars: usize,
) -> String {
    let input = Input { evaluation, timeline: Timeline::new(history, candidate), candidate, config };
    let full = render(&input, FULL);
    if chars(&full) <= budget_chars {
        return full;
    }
    for detail in SHORTER {
        let text = render(&input, detail);
        let text = format!("{text}\n{}\n", shortened_note(&input, detail, budget_chars));
        if chars(&text) <= budget_chars {
            return text;
        }
    }
    cut(&render(&input, SHORTER[SHORTER.len() - 1]), budget_chars)
}

fn render(input: &Input<'_>, detail: Detail) -> String {
    let mut out = String::new();
    out.push_str(&marker(&input.evaluation.experiment));
    out.push('\n');
    sections::title(&mut out, input, detail);
    sections::scoring(&mut out, input);
    sections::changes(&mut out, input);
    sections::training(&mut out, input);
    tables::questions(&mut out, input, detail);
    tables::dimensions(&mut out, input, detail);
    tables::improved_regressed(&mut out, input);
    findings::findings(&mut out, input, detail);
    findings::statistics(&mut out, input);
    findings::pairwise(&mut out, input);
    chart::chart(&mut out, input, detail);
    out
}

fn shortened_note(input: &Input<'_>, detail: Detail, budget: usize) -> String {
    let total = input.timeline.phases.len() + 1;
    let mut parts = vec!["response excerpts dropped".to_owned()];
    if detail.table_phases < FULL.table_phases.min(total) || detail.chart_phases < FULL.chart_phases.min(total) {
        parts.push(format!(
            "older phases dropped (tables show the last {} phases, the chart the last {} of {total})",
            detail.table_phases.min(total),
            detail.chart_phases.min(total)
        ));
    }
    format!("> **Note:** this report was shortened to fit {} characters: {}.", thousands(budget), parts.join("; "))
}

/// Last resort: keep the head (marker, title, verdict) and say where it was cut.
fn cut(text: &str, budget: usize) -> String {
    let note = format!(
        "\n\n> **Note:** this report was cut at {} characters; excerpts and older phases were dropped first.\n",
        thousands(budget)
    );
    let room = budget.saturating_sub(chars(&note));
    let head: String = text.chars().take(room).collect();
    let mut out = format!("{head}{note}");
    if chars(&out) > budget {
        out = out.chars().take(budget).collect();
    }
    out
}

pub(crate) fn chars(text: &str) -> usize {
    text.chars().count()
}

pub(crate) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests;
