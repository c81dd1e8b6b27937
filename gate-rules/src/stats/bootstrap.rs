//! Two-level paired bootstrap of the mean per-question difference: resample questions with
//! replacement, then, within each drawn question, the candidate's and the baseline's samples.
//! Both levels matter: questions differ in difficulty and each answer is one noisy draw.

use super::rng::SplitMix64;

/// One question's samples on the 0–10 scale.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PairedSamples<'a> {
    pub(crate) candidate: &'a [f64],
    pub(crate) baseline: &'a [f64],
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BootstrapResult {
    pub(crate) low: f64,
    pub(crate) high: f64,
    /// Two-sided: twice the smaller tail share around zero, with the +1 correction so it is never 0.
    pub(crate) p_value: f64,
}

/// `None` when there is nothing to resample: no questions, an empty sample list, or no resamples.
pub(crate) fn two_level(questions: &[PairedSamples<'_>], resamples: u32, seed: u64) -> Option<BootstrapResult> {
    if questions.is_empty()
        || resamples == 0
        || questions.iter().any(|q| q.candidate.is_empty() || q.baseline.is_empty())
    {
        return None;
    }
    let mut rng = SplitMix64::new(seed);
    let mut stats: Vec<f64> = (0..resamples).map(|_| one_resample(questions, &mut rng)).collect();
    stats.sort_by(f64::total_cmp);
    let at_or_below = stats.iter().filter(|s| **s <= 0.0).count();
    let at_or_above = stats.iter().filter(|s| **s >= 0.0).count();
    let tail = at_or_below.min(at_or_above) as f64;
    let b = f64::from(resamples);
    Some(BootstrapResult {
        low: percentile(&stats, 0.025),
        high: percentile(&stats, 0.975),
        p_value: (2.0 * (tail + 1.0) / (b + 1.0)).min(1.0),
    })
}

fn one_resample(questions: &[PairedSamples<'_>], rng: &mut SplitMix64) -> f64 {
    let n = questions.len();
    let mut total = 0.0;
    for _ in 0..n {
        let q = questions[rng.below(n)];
        total += resampled_mean(q.candidate, rng) - resampled_mean(q.baseline, rng);
    }
    total / n as f64
}

fn resampled_mean(samples: &[f64], rng: &mut SplitMix64) -> f64 {
    if samples.len() == 1 {
        return samples[0];
    }
    let k = samples.len();
    (0..k).map(|_| samples[rng.below(k)]).sum::<f64>() / k as f64
}

/// Nearest-rank percentile of sorted, non-empty `values`.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let last = sorted.len() - 1;
    let rank = (q * last as f64).round() as usize;
    sorted[rank.min(last)]
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESAMPLES: u32 = 2000;
    const SEED: u64 = 42;

    fn paired<'a>(c: &'a [f64], b: &'a [f64]) -> PairedSamples<'a> {
        PairedSamples { candidate: c, baseline: b }
    }

    #[test]
    fn a_consistent_drop_has_an_interval_below_zero() {
        let c = [[2.0, 3.0], [4.0, 3.0], [1.0, 2.0], [5.0, 4.0]];
        let b = [[6.0, 5.0], [7.0, 6.0], [4.0, 5.0], [8.0, 9.0]];
        let qs: Vec<_> = c.iter().zip(&b).map(|(c, b)| paired(c, b)).collect();
        let r = two_level(&qs, RESAMPLES, SEED).unwrap();
        assert!(r.high < 0.0, "{r:?}");
        assert!(r.p_value < 0.01, "{r:?}");
    }

    #[test]
    fn identical_phases_are_not_significant() {
        let s = [[2.0, 3.0], [4.0, 6.0]];
        let qs: Vec<_> = s.iter().map(|x| paired(x, x)).collect();
        let r = two_level(&qs, RESAMPLES, SEED).unwrap();
        assert!(r.low <= 0.0 && r.high >= 0.0 && r.p_value > 0.5, "{r:?}");
    }

    #[test]
    fn zero_variance_collapses_the_interval_and_keeps_p_positive() {
        let qs = [paired(&[3.0], &[5.0]), paired(&[3.0], &[5.0])];
        let r = two_level(&qs, RESAMPLES, SEED).unwrap();
        assert_eq!((r.low, r.high), (-2.0, -2.0));
        assert!(r.p_value > 0.0);
    }

    #[test]
    fn same_seed_same_result() {
        let qs = [paired(&[1.0, 4.0], &[5.0, 2.0]), paired(&[3.0, 3.0], &[1.0, 6.0])];
        assert_eq!(two_level(&qs, RESAMPLES, SEED), two_level(&qs, RESAMPLES, SEED));
    }

    #[test]
    fn nothing_to_resample_is_none() {
        assert_eq!(two_level(&[], RESAMPLES, SEED), None);
        assert_eq!(two_level(&[paired(&[], &[1.0])], RESAMPLES, SEED), None);
        assert_eq!(two_level(&[paired(&[1.0], &[1.0])], 0, SEED), None);
    }
}
