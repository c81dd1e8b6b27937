//! Rules over the whole history, in one linear pass each:
//! rule 3, `regression_streak` — the candidate and the k − 1 accepted phases before it all score
//! more than `min_effect` below the best phase before each of them → fail, trend written out;
//! rule 10, `plateau` — N phases in a row (ending with the candidate) without beating the best
//! before them → info ("capacity ceiling?").

use super::Context;
use crate::finding::{Finding, RuleId, Severity};
use crate::numfmt::num;
use crate::stats::EPSILON;

/// The sequence history + candidate, with the best score strictly before each position. Only
/// phases scored like the candidate count, when there are any: a trend across instruments is
/// the instruments' difference.
struct Series<'a> {
    labels: Vec<&'a str>,
    scores: Vec<Option<f64>>,
    /// `best_before[j]`: best (score, position) among positions `0..j`.
    best_before: Vec<Option<(f64, usize)>>,
}

impl<'a> Series<'a> {
    fn new(ctx: &Context<'a>) -> Series<'a> {
        let t = ctx.timeline;
        let kept: Vec<usize> = (0..t.phases.len()).filter(|&i| t.eligible(i)).collect();
        let mut labels: Vec<&str> = kept.iter().map(|&i| t.phases[i].label.as_str()).collect();
        labels.push(&ctx.candidate.label);
        let mut scores: Vec<Option<f64>> = kept.iter().map(|&i| t.scores[i]).collect();
        scores.push(ctx.candidate_score);
        let mut best_before = Vec::with_capacity(scores.len());
        let mut best: Option<(f64, usize)> = None;
        for (j, score) in scores.iter().enumerate() {
            best_before.push(best);
            if let Some(s) = *score
                && best.is_none_or(|(b, _)| s >= b)
            {
                best = Some((s, j));
            }
        }
        Series { labels, scores, best_before }
    }

    fn last(&self) -> usize {
        self.scores.len() - 1
    }
}

pub(crate) fn streak(ctx: &Context<'_>) -> Option<Finding> {
    let k = ctx.config.rules.regression_streak.k as usize;
    let series = Series::new(ctx);
    let last = series.last();
    if k == 0 || last + 1 < k + 1 {
        return None;
    }
    let first = last + 1 - k;
    let below = |j: usize| match (series.scores[j], series.best_before[j]) {
        (Some(s), Some((best, _))) => s < best - ctx.config.min_effect - EPSILON,
        _ => false,
    };
    if !(first..=last).all(below) {
        return None;
    }
    let (best, best_at) = series.best_before[first]?;
    let mut scores = vec![best];
    scores.extend((first..=last).filter_map(|j| series.scores[j]));
    let mut labels = vec![series.labels[best_at]];
    labels.extend(&series.labels[first..=last]);
    let mut finding = Finding::new(
        RuleId::RegressionStreak,
        Severity::Fail,
        format!(
            "{k} phases in a row score more than {} below the best before them: {} (phases {})",
            num(ctx.config.min_effect),
            arrow(scores.iter().map(|s| num(*s))),
            arrow(labels.iter().map(|l| (*l).to_owned()))
        ),
    )
    .against(series.labels[best_at]);
    for (label, score) in labels.iter().zip(&scores) {
        finding = finding.value(&format!("phase {label}"), *score);
    }
    Some(finding)
}

pub(crate) fn plateau(ctx: &Context<'_>) -> Option<Finding> {
    let n = ctx.config.rules.plateau.n as usize;
    let series = Series::new(ctx);
    let mut count = 0;
    for j in (0..=series.last()).rev() {
        match (series.scores[j], series.best_before[j]) {
            (Some(s), Some((best, _))) if s <= best + EPSILON => count += 1,
            _ => break,
        }
    }
    if count < n {
        return None;
    }
    let (best, best_at) = series.best_before[series.last() + 1 - count]?;
    Some(
        Finding::new(
            RuleId::Plateau,
            Severity::Info,
            format!(
                "{count} phases in a row without beating the best ({} in phase {}): capacity ceiling?",
                num(best),
                series.labels[best_at]
            ),
        )
        .against(series.labels[best_at])
        .value("phases", count as f64)
        .value("best", best),
    )
}

fn arrow(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(" → ")
}

#[cfg(test)]
mod tests {
    use crate::config::GateConfig;
    use crate::finding::{RuleId, Severity};
    use crate::phase::Phase;
    use crate::rules::test_support::findings_of;
    use crate::testkit::phase;

    /// History with one question per phase, so each phase's score equals its single value.
    fn run(rule: RuleId, scores: &[f64], config: &GateConfig) -> Vec<crate::finding::Finding> {
        let mut phases: Vec<Phase> =
            scores.iter().enumerate().map(|(i, s)| phase(&(i + 1).to_string(), i as u64 + 1, &[*s])).collect();
        let candidate = phases.pop().unwrap();
        findings_of(rule, &phases, &candidate, config)
    }

    #[test]
    fn streak_table() {
        let config = GateConfig::default();
        let cases: [(&str, &[f64], bool); 6] = [
            ("the team's 7, 8, 9", &[2.875, 5.5, 3.25, 3.125], true),
            ("one bad phase is not a streak", &[2.875, 5.5, 5.4, 3.125], false),
            ("just min_effect below is not more than it", &[5.5, 5.0, 5.0], false),
            ("recovered candidate", &[5.5, 3.25, 5.5], false),
            ("too short a history", &[3.0, 1.0], false),
            ("falling from a new best", &[2.0, 6.0, 5.0, 4.0], true),
        ];
        for (name, scores, expected) in cases {
            let found = run(RuleId::RegressionStreak, scores, &config);
            assert_eq!(!found.is_empty(), expected, "{name}: {found:?}");
        }
    }

    #[test]
    fn streak_writes_the_trend_out() {
        let found = run(RuleId::RegressionStreak, &[2.875, 5.5, 3.25, 3.125], &GateConfig::default());
        assert_eq!(found[0].severity, Severity::Fail);
        assert!(found[0].message.contains("5.5 → 3.25 → 3.125"), "{}", found[0].message);
        assert!(found[0].message.contains("phases 2 → 3 → 4"), "{}", found[0].message);
    }

    #[test]
    fn streak_length_is_configurable() {
        let mut config = GateConfig::default();
        config.rules.regression_streak.k = 3;
        assert!(run(RuleId::RegressionStreak, &[2.875, 5.5, 3.25, 3.125], &config).is_empty());
        assert_eq!(run(RuleId::RegressionStreak, &[5.5, 3.25, 3.125, 3.0], &config).len(), 1);
    }

    #[test]
    fn plateau_table() {
        let config = GateConfig::default();
        let cases: [(&str, &[f64], bool); 4] = [
            ("two phases below the best", &[2.875, 5.5, 3.25, 3.125], false),
            ("three phases below the best", &[5.5, 3.25, 3.125, 5.5], true),
            ("new best resets", &[5.5, 3.0, 3.0, 6.0], false),
            ("no history", &[5.0], false),
        ];
        for (name, scores, expected) in cases {
            let found = run(RuleId::Plateau, scores, &config);
            assert_eq!(!found.is_empty(), expected, "{name}: {found:?}");
            assert!(found.iter().all(|f| f.severity == Severity::Info));
        }
    }
}
