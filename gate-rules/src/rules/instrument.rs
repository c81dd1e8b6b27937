//! `instrument`, a check that is always on: the candidate and a baseline are compared only on
//! scores from the same instrument and the same rubric scale. A rules score and a human score
//! of the same answer differ by more than most regressions, so a mixed comparison says nothing
//! about quality.
//!
//! The shells (`phasegate gate`, the coordinator's gate stage) re-score a baseline's stored
//! responses with the candidate's rules scorer before they call `evaluate`; the re-scored phase
//! records the instrument it was first scored by, and this check says so. When no re-scoring was
//! possible, it warns, and the verdict is at best `inconclusive` (still `fail` when a regression
//! rule fires).

use super::Context;
use crate::finding::{Finding, RuleId, Severity};
use crate::phase::Phase;

/// Whether `baseline`'s scores can be compared with `candidate`'s: same instrument, same scale.
pub(crate) fn comparable(candidate: &Phase, baseline: &Phase) -> bool {
    candidate.instrument().same_as(&baseline.instrument()) && candidate.rubric().same_scale(&baseline.rubric())
}

pub(crate) fn check(ctx: &Context<'_>) -> Vec<Finding> {
    let candidate = ctx.candidate;
    let mut findings = Vec::new();
    for b in ctx.baselines {
        let phase = b.phase;
        if let Some(first) = &phase.rescored_from {
            findings.push(
                Finding::new(
                    RuleId::Instrument,
                    Severity::Info,
                    format!(
                        "phase {} re-scored from its stored responses with {} (it was scored by {first}), \
                         the candidate's instrument",
                        phase.label,
                        phase.instrument()
                    ),
                )
                .against(&phase.label),
            );
        }
        if comparable(candidate, phase) {
            continue;
        }
        let message = if candidate.rubric().same_scale(&phase.rubric()) {
            format!(
                "phase {} was scored by {}, the candidate by {}: scores from different instruments are not \
                 comparable, and the phase has {} to re-score (run `phasegate rescore` or import it with the \
                 candidate's scorer)",
                phase.label,
                phase.instrument(),
                candidate.instrument(),
                if phase.has_responses() { "responses, but no rules scorer was at hand" } else { "no responses" }
            )
        } else {
            format!(
                "phase {} was scored on another rubric ({}) than the candidate ({}): scores on different \
                 scales are not comparable",
                phase.label,
                dims(phase),
                dims(candidate)
            )
        };
        findings.push(Finding::new(RuleId::Instrument, Severity::Warn, message).against(&phase.label));
    }
    findings
}

/// "D1 0–2, D2 0–2" for a message.
fn dims(phase: &Phase) -> String {
    let rubric = phase.rubric();
    let shown: Vec<String> = rubric.dimensions().iter().map(|d| format!("{} {}–{}", d.id, d.min, d.max)).collect();
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use phasegate_rubric::{Dimension, DimensionId, Instrument, Rubric};

    use crate::config::GateConfig;
    use crate::evaluate::evaluate;
    use crate::finding::{RuleId, Severity};
    use crate::testkit::phase;
    use crate::verdict::Verdict;

    fn rules_v2() -> Instrument {
        Instrument::Rules { version: "2".into(), suite_digest: "sha256:ab".into() }
    }

    fn accepted(label: &str, ordinal: u64, points: &[f64], instrument: Instrument) -> crate::phase::Phase {
        let mut p = phase(label, ordinal, points);
        p.accepted = true;
        p.instrument = Some(instrument);
        p
    }

    #[test]
    fn same_instrument_raises_nothing() {
        let history = [accepted("1", 1, &[7.0; 8], rules_v2())];
        let cand = accepted("2", 2, &[7.0; 8], rules_v2());
        let eval = evaluate(&history, &cand, &GateConfig::default());
        assert!(eval.findings.iter().all(|f| f.rule != RuleId::Instrument), "{:?}", eval.findings);
        assert_eq!(eval.verdict, Verdict::Pass);
    }

    #[test]
    fn another_instrument_makes_a_pass_inconclusive() {
        let history = [accepted("1", 1, &[7.0; 8], Instrument::Human)];
        let cand = accepted("2", 2, &[7.0; 8], rules_v2());
        let eval = evaluate(&history, &cand, &GateConfig::default());
        let f: Vec<_> = eval.findings.iter().filter(|f| f.rule == RuleId::Instrument).collect();
        assert_eq!(f.len(), 1, "{:?}", eval.findings);
        assert_eq!(f[0].severity, Severity::Warn);
        assert!(f[0].message.contains("human scores") && f[0].message.contains("rules scorer 2"), "{}", f[0].message);
        assert_eq!(eval.verdict, Verdict::Inconclusive);
    }

    #[test]
    fn another_instrument_still_fails_on_a_regression() {
        let history = [accepted("1", 1, &[8.0; 8], Instrument::Human)];
        let cand = accepted("2", 2, &[1.0; 8], rules_v2());
        let eval = evaluate(&history, &cand, &GateConfig::default());
        assert!(eval.findings.iter().any(|f| f.rule == RuleId::Instrument));
        assert_eq!(eval.verdict, Verdict::Fail);
    }

    #[test]
    fn another_scale_is_not_comparable_even_from_people() {
        let dims = ["a", "b"].map(|id| Dimension::new(DimensionId::new(id).unwrap(), id, 0, 5)).to_vec();
        let mut cand = accepted("2", 2, &[7.0; 8], Instrument::Human);
        cand.rubric = Some(Rubric::new("1", dims).unwrap());
        let history = [accepted("1", 1, &[7.0; 8], Instrument::Human)];
        let eval = evaluate(&history, &cand, &GateConfig::default());
        let f = eval.findings.iter().find(|f| f.rule == RuleId::Instrument).expect("an instrument finding");
        assert!(f.message.contains("another rubric") && f.message.contains("a 0–5"), "{}", f.message);
        assert_eq!(eval.verdict, Verdict::Inconclusive);
    }

    #[test]
    fn baselines_come_from_the_candidates_instrument_when_there_is_one() {
        let history = [
            accepted("1", 1, &[9.0; 8], Instrument::Human),
            accepted("2", 2, &[6.0; 8], rules_v2()),
            accepted("3", 3, &[8.0; 8], Instrument::Human),
        ];
        let cand = accepted("4", 4, &[6.0; 8], rules_v2());
        let eval = evaluate(&history, &cand, &GateConfig::default());
        let labels: Vec<&str> = eval.statistics.iter().map(|s| s.baseline.as_str()).collect();
        assert_eq!(labels, ["2"], "best and previous among the rules-scored phases");
        assert!(eval.findings.iter().all(|f| f.rule != RuleId::Instrument), "{:?}", eval.findings);
        assert_eq!(eval.verdict, Verdict::Pass);
    }

    #[test]
    fn a_rescored_baseline_is_reported_and_compared() {
        let mut base = accepted("1", 1, &[7.0; 8], rules_v2());
        base.rescored_from = Some(Instrument::Human);
        let cand = accepted("2", 2, &[7.0; 8], rules_v2());
        let eval = evaluate(&[base], &cand, &GateConfig::default());
        let f = eval.findings.iter().find(|f| f.rule == RuleId::Instrument).expect("an instrument finding");
        assert_eq!(f.severity, Severity::Info);
        assert!(f.message.contains("re-scored") && f.message.contains("human scores"), "{}", f.message);
        assert_eq!(eval.verdict, Verdict::Pass);
    }
}
