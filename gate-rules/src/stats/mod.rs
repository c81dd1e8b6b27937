//! Noise-aware paired comparison of a candidate phase with one baseline phase.
//!
//! Questions are paired by id; each question contributes the difference of its mean 0–10 scores.
//! The p-value comes from the exact sign-flip test when 2^n is small, otherwise from the two-level
//! bootstrap; the 95% interval always comes from the bootstrap (fixed seed). Each estimator lives
//! in its own file and is total: degenerate inputs give an explicit outcome, never NaN.
//!
//! The mean of per-question differences equals the difference of phase scores (raw / max × 10)
//! whenever every paired question has the same maximum, which the rubric guarantees.

mod bootstrap;
mod normal;
mod power;
mod rng;
mod sign_flip;

use serde::{Deserialize, Serialize};

pub use power::SamplesNeeded;
pub(crate) use rng::SplitMix64;
pub use sign_flip::preference_p_value;

use crate::config::GateConfig;
use crate::phase::{Phase, natural_cmp};
use bootstrap::PairedSamples;

/// The outcome of comparing a candidate with one baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Comparison {
    Compared(PairedStats),
    /// No question has samples on both sides.
    NoSharedQuestions,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedStats {
    /// Questions paired (scored on both sides).
    pub questions: usize,
    /// Questions scored on one side only; left out of the comparison.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unpaired: Vec<String>,
    /// Fewest samples per question on each side (the K of the report).
    pub k_candidate: usize,
    pub k_baseline: usize,
    /// Mean per-question difference, candidate − baseline, on the 0–10 scale.
    pub difference: f64,
    /// 95% bootstrap interval of the difference; `None` when nothing can vary (one question, K = 1).
    pub interval: Option<Interval>,
    pub p_value: f64,
    pub method: Method,
    pub change: Change,
    /// Set for an inconclusive drop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples_needed: Option<SamplesNeeded>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Method {
    SignFlipExact { permutations: u64 },
    Bootstrap { resamples: u32, seed: u64 },
}

/// How the difference reads against `min_effect` and `alpha`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Fell by more than `min_effect` and significant at `alpha`.
    Drop,
    /// Fell by more than `min_effect` but not significant: the verdict is inconclusive.
    InconclusiveDrop,
    /// |difference| ≤ `min_effect`: not a change, whatever its sign.
    BelowMinEffect,
    /// Rose by more than `min_effect`.
    Rise,
}

/// Float slack for threshold comparisons of sums of small fractions.
pub(crate) const EPSILON: f64 = 1e-9;

/// Compares `candidate` with `baseline` question by question.
pub(crate) fn compare(candidate: &Phase, baseline: &Phase, config: &GateConfig) -> Comparison {
    let pairs = pair_questions(candidate, baseline);
    if pairs.paired.is_empty() {
        return Comparison::NoSharedQuestions;
    }
    let samples: Vec<PairedSamples<'_>> =
        pairs.paired.iter().map(|(c, b)| PairedSamples { candidate: c, baseline: b }).collect();
    let diffs: Vec<f64> = pairs.paired.iter().map(|(c, b)| mean(c) - mean(b)).collect();
    let difference = mean(&diffs);
    let n = diffs.len();
    let boot = bootstrap::two_level(&samples, config.resamples, config.seed);
    let exact = (n <= config.exact_max_questions as usize).then(|| sign_flip::p_value(&diffs)).flatten();
    let (p_value, method) = match (exact, boot) {
        (Some(p), _) => (p, Method::SignFlipExact { permutations: 1 << n }),
        (None, Some(b)) => (b.p_value, Method::Bootstrap { resamples: config.resamples, seed: config.seed }),
        (None, None) => (1.0, Method::SignFlipExact { permutations: 0 }),
    };
    let k_candidate = pairs.paired.iter().map(|(c, _)| c.len()).min().unwrap_or(0);
    let k_baseline = pairs.paired.iter().map(|(_, b)| b.len()).min().unwrap_or(0);
    let interval =
        boot.filter(|_| n > 1 || k_candidate > 1 || k_baseline > 1).map(|b| Interval { low: b.low, high: b.high });
    let change = classify(difference, p_value, config);
    let samples_needed = (change == Change::InconclusiveDrop).then(|| {
        power::samples_needed(&power::PowerInput {
            diffs: &diffs,
            within_variance: within_variance(&pairs.paired),
            k_candidate,
            k_baseline,
            alpha: config.alpha,
            power: config.power,
        })
    });
    Comparison::Compared(PairedStats {
        questions: n,
        unpaired: pairs.unpaired,
        k_candidate,
        k_baseline,
        difference,
        interval,
        p_value,
        method,
        change,
        samples_needed,
    })
}

fn classify(difference: f64, p_value: f64, config: &GateConfig) -> Change {
    if difference < -config.min_effect - EPSILON {
        if p_value < config.alpha { Change::Drop } else { Change::InconclusiveDrop }
    } else if difference > config.min_effect + EPSILON {
        Change::Rise
    } else {
        Change::BelowMinEffect
    }
}

struct Pairs {
    paired: Vec<(Vec<f64>, Vec<f64>)>,
    unpaired: Vec<String>,
}

fn pair_questions(candidate: &Phase, baseline: &Phase) -> Pairs {
    let mut paired = Vec::new();
    let mut unpaired = Vec::new();
    for q in &candidate.eval {
        let c = q.normalized_samples();
        let b = baseline.question(&q.id).map(|b| b.normalized_samples()).unwrap_or_default();
        if c.is_empty() || b.is_empty() {
            unpaired.push(q.id.clone());
        } else {
            paired.push((c, b));
        }
    }
    for q in &baseline.eval {
        if candidate.question(&q.id).is_none() {
            unpaired.push(q.id.clone());
        }
    }
    unpaired.sort_by(|a, b| natural_cmp(a, b));
    Pairs { paired, unpaired }
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Pooled variance of samples within a question and side, over every list with K ≥ 2.
fn within_variance(paired: &[(Vec<f64>, Vec<f64>)]) -> Option<f64> {
    let (ss, df) =
        paired.iter().flat_map(|(c, b)| [c, b]).filter(|s| s.len() >= 2).fold((0.0, 0usize), |(ss, df), s| {
            let m = mean(s);
            (ss + s.iter().map(|x| (x - m).powi(2)).sum::<f64>(), df + s.len() - 1)
        });
    (df > 0).then(|| ss / df as f64)
}

#[cfg(test)]
mod tests;
