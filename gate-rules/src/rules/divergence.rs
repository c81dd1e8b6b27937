//! Rule 4, `loss_score_divergence`: the final training loss improved by at least the configured
//! share against a baseline while the score fell by at least `min_effect` → warn (or fail):
//! "lower loss, worse generation", the overfitting signal of the team's phase 9.

use super::{Context, describe};
use crate::finding::{Finding, RuleId};
use crate::numfmt::{loss, num, pct};
use crate::stats::EPSILON;

pub(crate) fn check(ctx: &Context<'_>) -> Vec<Finding> {
    let rule = &ctx.config.rules.loss_score_divergence;
    let (Some(now_loss), Some(now_score)) = (ctx.candidate.training.final_loss, ctx.candidate_score) else {
        return Vec::new();
    };
    ctx.baselines
        .iter()
        .filter_map(|b| {
            let before_loss = b.phase.training.final_loss.filter(|l| *l > 0.0)?;
            let before_score = b.score?;
            let improvement_pct = (before_loss - now_loss) / before_loss * 100.0;
            let fall = before_score - now_score;
            if improvement_pct < rule.min_loss_improvement_pct - EPSILON || fall < ctx.config.min_effect - EPSILON {
                return None;
            }
            Some(
                Finding::new(
                    RuleId::LossScoreDivergence,
                    rule.severity,
                    format!(
                        "lower loss, worse generation: final loss {} → {} ({}) while the score fell {} → {} against {}",
                        loss(before_loss),
                        loss(now_loss),
                        pct(-improvement_pct),
                        num(before_score),
                        num(now_score),
                        describe(b)
                    ),
                )
                .against(&b.phase.label)
                .value("baseline_loss", before_loss)
                .value("candidate_loss", now_loss)
                .value("baseline_score", before_score)
                .value("candidate_score", now_score),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::config::GateConfig;
    use crate::finding::{RuleId, Severity};
    use crate::rules::test_support::findings_of;
    use crate::testkit::{PHASE_7, PHASE_8, PHASE_9, phase, with_loss};

    #[test]
    fn table() {
        let config = GateConfig::default();
        let cases = [
            ("phase 9 against 7: -15.7% loss, -2.375 score", &PHASE_7, 0.9171, &PHASE_9, 0.7732, true),
            ("phase 9 against 8: loss fell, score within min_effect", &PHASE_8, 1.2035, &PHASE_9, 0.7732, false),
            ("loss rose", &PHASE_7, 0.9171, &PHASE_8, 1.2035, false),
            ("loss fell 5% only", &PHASE_7, 1.0, &PHASE_9, 0.95, false),
            ("both improved", &PHASE_8, 1.2035, &PHASE_7, 0.9171, false),
        ];
        for (name, before, before_loss, after, after_loss, expected) in cases {
            let history = [with_loss(phase("1", 1, before), before_loss)];
            let found = findings_of(
                RuleId::LossScoreDivergence,
                &history,
                &with_loss(phase("2", 2, after), after_loss),
                &config,
            );
            assert_eq!(!found.is_empty(), expected, "{name}: {found:?}");
        }
    }

    #[test]
    fn severity_is_configurable() {
        let mut config = GateConfig::default();
        config.rules.loss_score_divergence.severity = Severity::Fail;
        let history = [with_loss(phase("7", 7, &PHASE_7), 0.9171)];
        let found =
            findings_of(RuleId::LossScoreDivergence, &history, &with_loss(phase("9", 9, &PHASE_9), 0.7732), &config);
        assert_eq!(found[0].severity, Severity::Fail);
        assert!(found[0].message.starts_with("lower loss, worse generation"));
    }

    #[test]
    fn missing_losses_give_nothing() {
        let found = findings_of(
            RuleId::LossScoreDivergence,
            &[phase("6", 6, &PHASE_7)],
            &with_loss(phase("9", 9, &PHASE_9), 0.5),
            &GateConfig::default(),
        );
        assert!(found.is_empty());
    }
}
