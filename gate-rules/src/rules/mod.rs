//! The eleven rules of `gate.toml`, plus `question_text`, a check that is always on (a baseline
//! whose question ids mean other questions). Each file holds one rule (or two that share a walk
//! over history) as plain functions from the evaluation context to findings.
//!
//! How `overall_drop`, `question_drop` and `regression_streak` combine, and why none is weakened:
//! - `overall_drop` needs both size (> `min_effect`) and significance (p < `alpha`). With K = 1 and
//!   8 questions the exact sign-flip floor is 2/256 ≈ 0.008, so a drop that hits (nearly) every
//!   question is significant — phase 8 against 7 — while a mixed one stays inconclusive.
//! - `question_drop` needs no significance: a single question falling ≥ 3 of 10 points (Q5: 8 → 1)
//!   is far outside the rubric's per-dimension noise and is evidence by itself.
//! - `regression_streak` needs no significance either: k phases in a row each more than
//!   `min_effect` below the best before them are k independent measurements agreeing. This is
//!   what catches phase 9, whose difference from phase 8 alone (−0.125) is below `min_effect`
//!   and is reported as such, not as a drop.

mod candidate;
mod divergence;
mod environment;
pub(crate) mod instrument;
mod overall_drop;
pub(crate) mod pairwise;
mod question_drop;
pub(crate) mod question_text;
mod trend;

use crate::config::GateConfig;
use crate::evaluate::{Baseline, PairwiseComparison, Timeline};
use crate::finding::Finding;
use crate::phase::Phase;

/// Everything a rule may look at; built once per evaluation.
#[derive(Debug)]
pub(crate) struct Context<'a> {
    pub(crate) config: &'a GateConfig,
    pub(crate) candidate: &'a Phase,
    pub(crate) candidate_score: Option<f64>,
    pub(crate) timeline: &'a Timeline<'a>,
    pub(crate) baselines: &'a [Baseline<'a>],
    /// The candidate's pairwise judging, when it has one.
    pub(crate) pairwise: Option<&'a PairwiseComparison>,
}

/// Runs every enabled rule in the documented order.
pub(crate) fn run_all(ctx: &Context<'_>) -> Vec<Finding> {
    let rules = &ctx.config.rules;
    let mut findings = Vec::new();
    if rules.overall_drop.enabled {
        findings.extend(overall_drop::check(ctx));
    }
    if rules.question_drop.enabled {
        findings.extend(question_drop::check(ctx));
    }
    if rules.regression_streak.enabled {
        findings.extend(trend::streak(ctx));
    }
    if rules.loss_score_divergence.enabled {
        findings.extend(divergence::check(ctx));
    }
    if rules.auto_fail.enabled {
        findings.extend(candidate::auto_fail(ctx));
    }
    findings.extend(candidate::min_score(ctx));
    findings.extend(candidate::vram_budget(ctx));
    if rules.truncation.enabled {
        findings.extend(candidate::truncation(ctx));
    }
    if rules.environment.enabled {
        findings.extend(environment::check(ctx));
    }
    if rules.plateau.enabled {
        findings.extend(trend::plateau(ctx));
    }
    if rules.pairwise.enabled {
        findings.extend(pairwise::check(ctx));
    }
    findings
}

/// "phase 7 (best and previous)".
pub(crate) fn describe(baseline: &Baseline<'_>) -> String {
    let roles: Vec<&str> = baseline.roles.iter().map(|r| r.as_str()).collect();
    format!("phase {} ({})", baseline.phase.label, roles.join(" and "))
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::config::GateConfig;
    use crate::evaluate::evaluate;
    use crate::finding::{Finding, RuleId};
    use crate::phase::Phase;

    /// Findings of one rule when `candidate` is judged against `history`.
    pub(crate) fn findings_of(rule: RuleId, history: &[Phase], candidate: &Phase, config: &GateConfig) -> Vec<Finding> {
        evaluate(history, candidate, config).findings.into_iter().filter(|f| f.rule == rule).collect()
    }
}
