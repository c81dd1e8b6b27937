//! How many samples per question would settle an inconclusive drop at the configured power.
//!
//! The variance of a question's difference splits into a part that more samples cannot shrink
//! (questions really differ: tau²) and within-question sampling noise (sigma² · (1/Kc + 1/Kb)).
//! With K samples on both sides, SE(K)² = (tau² + 2·sigma²/K) / n, and the drop |D| is detected at
//! power 1 − beta when |D| / SE(K) ≥ z(1 − alpha/2) + z(power). With K = 1 the two parts cannot be
//! told apart, so all the variance is taken as sampling noise (tau² = 0): an optimistic estimate,
//! reported as such.

use super::normal;
use super::sign_flip;

/// The answer of the power estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SamplesNeeded {
    /// About this many samples per question (on both sides) would settle it.
    PerQuestion { samples: u32 },
    /// More samples cannot settle it: too few questions for the exact test to reach alpha, or the
    /// drop is smaller than the spread between questions allows.
    MoreQuestionsNeeded,
    /// No spread to estimate from (zero variance) or no effect to detect.
    NotEstimable,
}

/// Inputs of the estimate; all scores on the 0–10 scale.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PowerInput<'a> {
    pub(crate) diffs: &'a [f64],
    /// Pooled within-question sample variance, when some question has K ≥ 2 on a side.
    pub(crate) within_variance: Option<f64>,
    pub(crate) k_candidate: usize,
    pub(crate) k_baseline: usize,
    pub(crate) alpha: f64,
    pub(crate) power: f64,
}

/// Cap of the answer: beyond it the estimate says more about the model than the data.
const MAX_SAMPLES: f64 = 10_000.0;

pub(crate) fn samples_needed(input: &PowerInput<'_>) -> SamplesNeeded {
    let n = input.diffs.len();
    if n < 2 || input.k_candidate == 0 || input.k_baseline == 0 {
        return SamplesNeeded::MoreQuestionsNeeded;
    }
    if n <= sign_flip::MAX_EXACT && sign_flip::smallest_p(n) >= input.alpha {
        return SamplesNeeded::MoreQuestionsNeeded;
    }
    let nf = n as f64;
    let mean = input.diffs.iter().sum::<f64>() / nf;
    let var_d = input.diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (nf - 1.0);
    let (Some(z_a), Some(z_b)) = (normal::quantile(1.0 - input.alpha / 2.0), normal::quantile(input.power)) else {
        return SamplesNeeded::NotEstimable;
    };
    let inv_k = 1.0 / input.k_candidate as f64 + 1.0 / input.k_baseline as f64;
    let sigma2 = input.within_variance.unwrap_or(var_d / inv_k);
    let tau2 = (var_d - sigma2 * inv_k).max(0.0);
    if mean == 0.0 || sigma2 <= 0.0 || !var_d.is_finite() {
        return SamplesNeeded::NotEstimable;
    }
    let target_se2 = (mean.abs() / (z_a + z_b)).powi(2);
    let room = nf * target_se2 - tau2;
    if room <= 0.0 {
        return SamplesNeeded::MoreQuestionsNeeded;
    }
    let k = (2.0 * sigma2 / room).ceil().max(1.0);
    if k > MAX_SAMPLES {
        return SamplesNeeded::MoreQuestionsNeeded;
    }
    SamplesNeeded::PerQuestion { samples: k as u32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALPHA: f64 = 0.05;
    const POWER: f64 = 0.8;

    fn input(diffs: &[f64], within: Option<f64>, k: usize) -> PowerInput<'_> {
        PowerInput { diffs, within_variance: within, k_candidate: k, k_baseline: k, alpha: ALPHA, power: POWER }
    }

    #[test]
    fn noisier_data_needs_more_samples() {
        let diffs = [-1.5, -0.5, -2.0, 0.5, -1.5, -1.0, -0.5, -1.5];
        let quiet = samples_needed(&input(&diffs, Some(0.2), 2));
        let loud = samples_needed(&input(&diffs, Some(0.6), 2));
        let (SamplesNeeded::PerQuestion { samples: q }, SamplesNeeded::PerQuestion { samples: l }) = (quiet, loud)
        else {
            panic!("{quiet:?} {loud:?}");
        };
        assert!(l > q, "{q} {l}");
    }

    #[test]
    fn k_one_treats_all_variance_as_noise() {
        let diffs = [-3.0, 1.0, -2.0, 0.5, -2.5, 1.5, -1.0, -2.5];
        assert!(
            matches!(samples_needed(&input(&diffs, None, 1)), SamplesNeeded::PerQuestion { samples } if samples > 1)
        );
    }

    #[test]
    fn five_questions_can_never_reach_alpha() {
        let diffs = [-1.0, -2.0, 1.0, -3.0, -1.0];
        assert_eq!(samples_needed(&input(&diffs, Some(1.0), 1)), SamplesNeeded::MoreQuestionsNeeded);
    }

    #[test]
    fn between_question_spread_cannot_be_sampled_away() {
        let diffs = [-9.0, 8.0, -9.0, 8.0, -9.0, 8.0, -9.0, 7.0];
        assert_eq!(samples_needed(&input(&diffs, Some(0.1), 4)), SamplesNeeded::MoreQuestionsNeeded);
    }

    #[test]
    fn degenerate_inputs_are_explicit() {
        assert_eq!(samples_needed(&input(&[-1.0], None, 1)), SamplesNeeded::MoreQuestionsNeeded);
        assert_eq!(samples_needed(&input(&[-1.0; 8], None, 1)), SamplesNeeded::NotEstimable);
        assert_eq!(samples_needed(&input(&[0.0; 8], Some(1.0), 2)), SamplesNeeded::NotEstimable);
    }
}
