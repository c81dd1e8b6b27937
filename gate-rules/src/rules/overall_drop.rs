//! Rule 1, `overall_drop`: the mean score fell by more than `min_effect` and the paired test says
//! the drop is real → fail. Too large to ignore but not significant → an inconclusive warning
//! (the verdict becomes `inconclusive`). A fall within `min_effect` is reported as such: not a drop.

use super::{Context, describe};
use crate::finding::{Finding, RuleId, Severity};
use crate::numfmt::{num, p};
use crate::stats::{Change, Comparison, PairedStats, SamplesNeeded};

pub(crate) fn check(ctx: &Context<'_>) -> Vec<Finding> {
    ctx.baselines
        .iter()
        .filter_map(|b| {
            let Comparison::Compared(stats) = &b.comparison else {
                return None;
            };
            let finding = match stats.change {
                Change::Drop => Finding::new(
                    RuleId::OverallDrop,
                    Severity::Fail,
                    format!(
                        "score fell by {} against {}: {} → {}, p = {} < alpha {}",
                        num(-stats.difference),
                        describe(b),
                        num(b.score?),
                        num(ctx.candidate_score?),
                        p(stats.p_value),
                        num(ctx.config.alpha)
                    ),
                ),
                Change::InconclusiveDrop => Finding::new(
                    RuleId::OverallDrop,
                    Severity::Warn,
                    format!(
                        "score fell by {} against {} but the drop is not significant (p = {} ≥ alpha {}): inconclusive; {}",
                        num(-stats.difference),
                        describe(b),
                        p(stats.p_value),
                        num(ctx.config.alpha),
                        settle_hint(stats)
                    ),
                ),
                Change::BelowMinEffect if stats.difference < 0.0 => Finding::new(
                    RuleId::OverallDrop,
                    Severity::Info,
                    format!(
                        "difference {} against {} is below min_effect {}: not a drop",
                        num(stats.difference),
                        describe(b),
                        num(ctx.config.min_effect)
                    ),
                ),
                Change::BelowMinEffect | Change::Rise => return None,
            };
            Some(with_stats(finding.against(&b.phase.label), stats))
        })
        .collect()
}

fn settle_hint(stats: &PairedStats) -> String {
    match stats.samples_needed {
        Some(SamplesNeeded::PerQuestion { samples }) => {
            format!("about {samples} samples per question (now {}) would settle it", stats.k_candidate)
        }
        Some(SamplesNeeded::MoreQuestionsNeeded) => "more samples alone cannot settle it: add questions".to_owned(),
        Some(SamplesNeeded::NotEstimable) | None => "the needed sample count cannot be estimated".to_owned(),
    }
}

fn with_stats(mut finding: Finding, stats: &PairedStats) -> Finding {
    finding = finding.value("difference", stats.difference);
    if let Some(interval) = stats.interval {
        finding = finding.value("ci95_low", interval.low).value("ci95_high", interval.high);
    }
    finding
        .value("p_value", stats.p_value)
        .value("questions", stats.questions as f64)
        .value("k", stats.k_candidate as f64)
}

#[cfg(test)]
mod tests {
    use crate::config::GateConfig;
    use crate::finding::{RuleId, Severity};
    use crate::rules::test_support::findings_of;
    use crate::testkit::{MIXED_BASE, MIXED_DROP, PHASE_7, PHASE_8, PHASE_9, phase};

    #[test]
    fn table() {
        let config = GateConfig::default();
        let (mixed_base, mixed_cand) = crate::testkit::mixed_drop_k2();
        let cases = [
            ("significant drop", vec![phase("7", 7, &PHASE_7)], phase("8", 8, &PHASE_8), Some(Severity::Fail)),
            ("below min_effect", vec![phase("8", 8, &PHASE_8)], phase("9", 9, &PHASE_9), Some(Severity::Info)),
            ("rise", vec![phase("8", 8, &PHASE_8)], phase("7", 9, &PHASE_7), None),
            ("inconclusive", vec![mixed_base], mixed_cand, Some(Severity::Warn)),
        ];
        for (name, history, candidate, expected) in cases {
            let found = findings_of(RuleId::OverallDrop, &history, &candidate, &config);
            assert_eq!(found.first().map(|f| f.severity), expected, "{name}: {found:?}");
        }
    }

    #[test]
    fn disabled_rule_reports_nothing() {
        let mut config = GateConfig::default();
        config.rules.overall_drop.enabled = false;
        assert!(
            findings_of(RuleId::OverallDrop, &[phase("7", 7, &PHASE_7)], &phase("8", 8, &PHASE_8), &config).is_empty()
        );
    }

    #[test]
    fn inconclusive_message_says_how_many_samples_would_settle_it() {
        let base = phase("1", 1, &MIXED_BASE);
        let cand = phase("2", 2, &MIXED_DROP);
        let found = findings_of(RuleId::OverallDrop, &[base], &cand, &GateConfig::default());
        assert_eq!(found[0].severity, Severity::Warn);
        assert!(found[0].message.contains("samples per question"), "{}", found[0].message);
    }
}
