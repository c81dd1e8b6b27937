//! Rules on the candidate alone: 5 `auto_fail`, 6 `min_score`, 7 `vram_budget`, 8 `truncation`.
//! They need no baseline, so they still speak when the history is too short.

use std::collections::BTreeSet;

use super::Context;
use crate::finding::{Finding, RuleId, Severity};
use crate::numfmt::num;
use crate::rubric::{AutoZeroHit, scan};
use crate::stats::EPSILON;

/// Any response that hit an automatic-zero trigger, recorded by the scorer or found in the text.
pub(crate) fn auto_fail(ctx: &Context<'_>) -> Vec<Finding> {
    let extra = &ctx.config.rules.auto_fail.extra_triggers;
    let mut findings = Vec::new();
    for q in &ctx.candidate.eval {
        let mut hits: BTreeSet<AutoZeroHit> = BTreeSet::new();
        let mut quoted: Option<&str> = None;
        for s in &q.samples {
            let mut found = s.auto_zero.clone();
            if let Some(text) = &s.response {
                found.extend(scan(text, extra));
            }
            if !found.is_empty() && quoted.is_none() {
                quoted = s.response.as_deref();
            }
            hits.extend(found);
        }
        if hits.is_empty() {
            continue;
        }
        let mut triggers: Vec<String> = Vec::new();
        // Hits the scorer charged to a dimension first, so the dimension is the one shown.
        for h in hits.iter().filter(|h| !h.dimension.is_empty()).chain(hits.iter().filter(|h| h.dimension.is_empty())) {
            let shown = match h.dimension.as_str() {
                "" => format!("`{}`", h.trigger),
                dim => format!("`{}` ({dim})", h.trigger),
            };
            // The scorer's hit and the gate's own scan of the same phrase are one trigger.
            if !triggers.iter().any(|t| t.starts_with(&format!("`{}`", h.trigger))) {
                triggers.push(shown);
            }
        }
        let mut f = Finding::new(
            RuleId::AutoFail,
            Severity::Fail,
            format!("{} hit automatic-zero trigger {}", q.id, triggers.join(", ")),
        )
        .question(&q.id);
        if let Some(text) = quoted {
            f = f.excerpt(&ctx.candidate.label, &q.id, text);
        }
        findings.push(f);
    }
    findings
}

pub(crate) fn min_score(ctx: &Context<'_>) -> Option<Finding> {
    let floor = ctx.config.rules.min_score.floor?;
    let score = ctx.candidate_score?;
    (score < floor - EPSILON).then(|| {
        Finding::new(
            RuleId::MinScore,
            Severity::Fail,
            format!("score {} is below the floor {}", num(score), num(floor)),
        )
        .value("score", score)
        .value("floor", floor)
    })
}

pub(crate) fn vram_budget(ctx: &Context<'_>) -> Option<Finding> {
    let budget = ctx.config.rules.vram_budget.max_mib?;
    let peak = ctx.candidate.training.vram_peak_mib?;
    (peak > budget).then(|| {
        Finding::new(
            RuleId::VramBudget,
            Severity::Fail,
            format!("VRAM peak {peak} MiB is above the budget of {budget} MiB"),
        )
        .value("vram_peak_mib", peak as f64)
        .value("budget_mib", budget as f64)
    })
}

pub(crate) fn truncation(ctx: &Context<'_>) -> Option<Finding> {
    let total: usize = ctx.candidate.eval.iter().map(|q| q.samples.len()).sum();
    if total == 0 {
        return None;
    }
    let truncated = ctx.candidate.eval.iter().flat_map(|q| &q.samples).filter(|s| s.truncated).count();
    let cut: Vec<&str> =
        ctx.candidate.eval.iter().filter(|q| q.samples.iter().any(|s| s.truncated)).map(|q| q.id.as_str()).collect();
    let share = truncated as f64 / total as f64 * 100.0;
    let limit = ctx.config.rules.truncation.max_share_pct;
    if share <= limit + EPSILON {
        return None;
    }
    let mut f = Finding::new(
        RuleId::Truncation,
        Severity::Warn,
        format!("{truncated} of {total} responses ({}%) were cut mid-sentence, above {}%", num(share), num(limit)),
    )
    .value("share_pct", share)
    .value("limit_pct", limit);
    for id in cut {
        f = f.question(id);
    }
    Some(f)
}

#[cfg(test)]
mod tests {
    use crate::config::GateConfig;
    use crate::finding::{RuleId, Severity};
    use crate::phase::Phase;
    use crate::rubric::AutoZeroHit;
    use crate::rules::test_support::findings_of;
    use crate::testkit::phase;

    fn judged(rule: RuleId, candidate: &Phase, config: &GateConfig) -> Vec<crate::finding::Finding> {
        findings_of(rule, &[phase("1", 1, &[5.0; 4])], candidate, config)
    }

    /// Name, response text, hit recorded by the scorer, trigger the finding must quote.
    type Case<'a> = (&'a str, Option<&'a str>, Option<AutoZeroHit>, Option<&'a str>);

    #[test]
    fn auto_fail_table() {
        let config = GateConfig {
            rules: crate::config::Rules {
                auto_fail: crate::config::AutoFail { enabled: true, extra_triggers: vec!["como um modelo".to_owned()] },
                ..Default::default()
            },
            ..GateConfig::default()
        };
        let cases: [Case; 5] = [
            ("clean", Some("Sou a Iara."), None, None),
            ("template token in text", Some("Oi<|im_end|>"), None, Some("<|im_end|>")),
            (
                "recorded by the scorer",
                Some("Oi."),
                Some(AutoZeroHit { dimension: "D4".to_owned(), trigger: "task planning".to_owned() }),
                Some("task planning"),
            ),
            ("extra trigger", Some("Como um modelo de linguagem..."), None, Some("como um modelo")),
            ("no response text", None, None, None),
        ];
        for (name, response, recorded, expected) in cases {
            let mut cand = phase("2", 2, &[5.0; 4]);
            cand.eval[2].samples[0].response = response.map(str::to_owned);
            cand.eval[2].samples[0].auto_zero.extend(recorded);
            let found = judged(RuleId::AutoFail, &cand, &config);
            match expected {
                Some(trigger) => {
                    assert_eq!(found.len(), 1, "{name}");
                    assert_eq!(found[0].severity, Severity::Fail);
                    assert!(found[0].message.contains(&format!("`{trigger}`")), "{name}: {}", found[0].message);
                    assert_eq!(found[0].evidence.questions, ["Q3"]);
                }
                None => assert!(found.is_empty(), "{name}: {found:?}"),
            }
        }
    }

    #[test]
    fn min_score_table() {
        let cases = [(None, 2.0, false), (Some(4.0), 3.9, true), (Some(4.0), 4.0, false)];
        for (floor, score, expected) in cases {
            let mut config = GateConfig::default();
            config.rules.min_score.floor = floor;
            let found = judged(RuleId::MinScore, &phase("2", 2, &[score; 4]), &config);
            assert_eq!(!found.is_empty(), expected, "{floor:?} {score}");
        }
    }

    #[test]
    fn vram_table() {
        let cases = [
            (None, Some(9000), false),
            (Some(3600), Some(3601), true),
            (Some(3600), Some(3600), false),
            (Some(3600), None, false),
        ];
        for (budget, peak, expected) in cases {
            let mut config = GateConfig::default();
            config.rules.vram_budget.max_mib = budget;
            let mut cand = phase("2", 2, &[5.0; 4]);
            cand.training.vram_peak_mib = peak;
            assert_eq!(!judged(RuleId::VramBudget, &cand, &config).is_empty(), expected, "{budget:?} {peak:?}");
        }
    }

    #[test]
    fn truncation_table() {
        let cases = [(0, false), (1, false), (2, true)];
        for (cut, expected) in cases {
            let mut cand = phase("2", 2, &[5.0; 4]);
            for q in cand.eval.iter_mut().take(cut) {
                q.samples[0].truncated = true;
            }
            let found = judged(RuleId::Truncation, &cand, &GateConfig::default());
            assert_eq!(!found.is_empty(), expected, "{cut} of 4");
            assert!(found.iter().all(|f| f.severity == Severity::Warn && f.evidence.questions.len() == cut));
        }
    }
}
