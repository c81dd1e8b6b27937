//! `evaluate`: history + candidate + config → verdict, findings and statistics.
//!
//! History is every phase of the slice that is accepted, belongs to the candidate's experiment
//! and is not the candidate itself (same label); so the candidate may or may not be in the slice,
//! which lets a nightly run re-evaluate the latest accepted phase. History is sorted by
//! `(ordinal, label)`, so the slice's order never matters, and the candidate counts as the newest
//! phase. Work is linear in the history (one score per phase, one pass for best and streaks);
//! the statistics run against at most two baselines.

use serde::{Deserialize, Serialize};

use crate::config::GateConfig;
use crate::finding::{Finding, RuleId, Severity};
use crate::phase::Phase;
use crate::rules::{self, Context};
use crate::stats::{self, Comparison};
use crate::verdict::Verdict;

/// The gate's answer for one candidate; serialised as the machine-readable report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub experiment: String,
    pub candidate: String,
    pub verdict: Verdict,
    /// Candidate score on the 0–10 scale, unrounded.
    pub candidate_score: Option<f64>,
    /// Best baseline first, then the previous one (one entry when they are the same phase).
    pub statistics: Vec<BaselineComparison>,
    /// Missing inputs first, then instruments, then differing question texts, then rule order;
    /// within each, baseline order.
    pub findings: Vec<Finding>,
    /// The pairwise judge's preference between the candidate's answers and a baseline's, when
    /// the candidate was judged pairwise: its own comparison, beside `statistics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairwise: Option<PairwiseComparison>,
}

/// The per-question preferences of pairwise judging, tested with the sign-flip test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairwiseComparison {
    pub baseline: String,
    pub judge: String,
    /// Whether the baseline is an accepted phase of the history (else it is reported, not judged).
    pub in_history: bool,
    /// Questions with a readable preference.
    pub questions: usize,
    /// Questions without one.
    pub unreadable: usize,
    /// Mean preference in [−1, 1] (above 0: the candidate); `None` without readable questions.
    pub mean: Option<f64>,
    /// Two-sided sign-flip p-value of the preferences.
    pub p_value: Option<f64>,
    pub candidate_preferred: usize,
    pub baseline_preferred: usize,
    pub ties: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineComparison {
    pub baseline: String,
    pub roles: Vec<BaselineRole>,
    pub baseline_score: Option<f64>,
    pub comparison: Comparison,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineRole {
    /// The highest-scoring accepted phase (the latest one on ties).
    Best,
    /// The latest accepted phase with scores.
    Previous,
}

impl BaselineRole {
    pub fn as_str(self) -> &'static str {
        match self {
            BaselineRole::Best => "best",
            BaselineRole::Previous => "previous",
        }
    }
}

/// The sorted history with one score per phase, computed once.
#[derive(Debug)]
pub(crate) struct Timeline<'a> {
    pub(crate) phases: Vec<&'a Phase>,
    pub(crate) scores: Vec<Option<f64>>,
    /// Whether each phase's scores come from the candidate's instrument and rubric scale.
    comparable: Vec<bool>,
    /// Whether any phase with scores is comparable: then only those are baselines.
    any_comparable: bool,
}

impl<'a> Timeline<'a> {
    pub(crate) fn new(history: &'a [Phase], candidate: &Phase) -> Timeline<'a> {
        let mut phases: Vec<&Phase> = history
            .iter()
            .filter(|p| p.accepted && p.experiment == candidate.experiment && p.label != candidate.label)
            .collect();
        phases.sort_by(|a, b| Phase::history_order(a, b));
        let scores: Vec<Option<f64>> = phases.iter().map(|p| p.score()).collect();
        let comparable: Vec<bool> = phases.iter().map(|p| rules::instrument::comparable(candidate, p)).collect();
        let any_comparable = comparable.iter().zip(&scores).any(|(c, s)| *c && s.is_some());
        Timeline { phases, scores, comparable, any_comparable }
    }

    /// Baselines come from phases scored like the candidate when there is one with scores; from
    /// any phase otherwise (and the `instrument` check says so).
    pub(crate) fn eligible(&self, i: usize) -> bool {
        !self.any_comparable || self.comparable[i]
    }

    pub(crate) fn best(&self) -> Option<usize> {
        let mut best: Option<(usize, f64)> = None;
        for (i, score) in self.scores.iter().enumerate() {
            if let Some(s) = *score
                && self.eligible(i)
                && best.is_none_or(|(_, b)| s >= b)
            {
                best = Some((i, s));
            }
        }
        best.map(|(i, _)| i)
    }

    pub(crate) fn previous(&self) -> Option<usize> {
        (0..self.scores.len()).rev().find(|&i| self.scores[i].is_some() && self.eligible(i))
    }
}

/// A baseline phase with its comparison, as the rules see it.
#[derive(Debug)]
pub(crate) struct Baseline<'a> {
    pub(crate) phase: &'a Phase,
    pub(crate) score: Option<f64>,
    pub(crate) roles: Vec<BaselineRole>,
    pub(crate) comparison: Comparison,
}

/// Judges `candidate` against `history` (see the module docs for which phases count).
pub fn evaluate(history: &[Phase], candidate: &Phase, config: &GateConfig) -> Evaluation {
    let timeline = Timeline::new(history, candidate);
    let baselines = baselines(&timeline, candidate, config);
    let candidate_score = candidate.score();
    let pairwise = rules::pairwise::compare(candidate, &timeline);
    let ctx = Context {
        config,
        candidate,
        candidate_score,
        timeline: &timeline,
        baselines: &baselines,
        pairwise: pairwise.as_ref(),
    };
    let mut findings = input_findings(&ctx);
    findings.extend(rules::instrument::check(&ctx));
    findings.extend(rules::question_text::check(&ctx));
    findings.extend(rules::run_all(&ctx));
    let verdict = verdict(&findings, &baselines);
    Evaluation {
        experiment: candidate.experiment.clone(),
        candidate: candidate.label.clone(),
        verdict,
        candidate_score,
        statistics: baselines
            .into_iter()
            .map(|b| BaselineComparison {
                baseline: b.phase.label.clone(),
                roles: b.roles,
                baseline_score: b.score,
                comparison: b.comparison,
            })
            .collect(),
        findings,
        pairwise,
    }
}

fn baselines<'a>(timeline: &Timeline<'a>, candidate: &Phase, config: &GateConfig) -> Vec<Baseline<'a>> {
    let mut picked: Vec<(usize, Vec<BaselineRole>)> = Vec::new();
    for (index, role) in [(timeline.best(), BaselineRole::Best), (timeline.previous(), BaselineRole::Previous)] {
        let Some(index) = index else { continue };
        match picked.iter_mut().find(|(i, _)| *i == index) {
            Some((_, roles)) => roles.push(role),
            None => picked.push((index, vec![role])),
        }
    }
    picked
        .into_iter()
        .map(|(i, roles)| Baseline {
            phase: timeline.phases[i],
            score: timeline.scores[i],
            roles,
            comparison: stats::compare(candidate, timeline.phases[i], config),
        })
        .collect()
}

/// Findings about missing inputs: they are not rules of `gate.toml`, they keep the gate closed.
fn input_findings(ctx: &Context<'_>) -> Vec<Finding> {
    let mut findings = Vec::new();
    if ctx.candidate_score.is_none() {
        findings.push(Finding::new(
            RuleId::Baseline,
            Severity::Fail,
            format!("candidate phase {} has no scored questions: nothing to judge", ctx.candidate.label),
        ));
    }
    if ctx.baselines.is_empty() {
        findings.push(Finding::new(
            RuleId::Baseline,
            Severity::Info,
            format!(
                "no accepted phase of {} with scores to compare with: insufficient baseline",
                ctx.candidate.experiment
            ),
        ));
    }
    for b in ctx.baselines {
        if b.comparison == Comparison::NoSharedQuestions && ctx.candidate_score.is_some() {
            findings.push(
                Finding::new(
                    RuleId::Baseline,
                    Severity::Info,
                    format!("no question is scored in both phase {} and the candidate", b.phase.label),
                )
                .against(&b.phase.label),
            );
        }
    }
    findings
}

/// Fail beats everything; then a missing baseline; then an inconclusive drop (reported by
/// `overall_drop` or `pairwise` as a warning) or a baseline from another instrument; then warnings; else pass. Failures of candidate-only rules
/// (auto_fail, vram_budget, ...) still fail without a baseline: fail closed, with the reason.
fn verdict(findings: &[Finding], baselines: &[Baseline<'_>]) -> Verdict {
    if findings.iter().any(|f| f.severity == Severity::Fail) {
        return Verdict::Fail;
    }
    if !baselines.iter().any(|b| matches!(b.comparison, Comparison::Compared(_))) {
        return Verdict::InsufficientBaseline;
    }
    let inconclusive = [RuleId::OverallDrop, RuleId::Instrument, RuleId::Pairwise];
    if findings.iter().any(|f| inconclusive.contains(&f.rule) && f.severity == Severity::Warn) {
        return Verdict::Inconclusive;
    }
    if findings.iter().any(|f| f.severity == Severity::Warn) {
        return Verdict::Warn;
    }
    Verdict::Pass
}

#[cfg(test)]
mod tests;
