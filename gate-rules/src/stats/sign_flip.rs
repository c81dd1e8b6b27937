//! Exact two-sided sign-flip permutation test of the mean paired difference.
//!
//! Under "no change" each question's difference is as likely to have either sign, so the p-value
//! is the share of the 2^n sign assignments whose |sum| is at least the observed |sum|. The
//! identity and the all-flipped assignment always count, so the smallest possible p is 2 / 2^n
//! (2/256 for 8 questions): with fewer than six questions no result reaches alpha = 0.05.

/// Largest n enumerated; beyond it callers use the bootstrap.
pub(crate) const MAX_EXACT: usize = 24;

/// Slack for float sums that are equal in exact arithmetic but differ in the last bits.
const TIE_SLACK: f64 = 1e-9;

/// p-value, or `None` for no differences or more than [`MAX_EXACT`] of them.
pub(crate) fn p_value(diffs: &[f64]) -> Option<f64> {
    let n = diffs.len();
    if n == 0 || n > MAX_EXACT {
        return None;
    }
    let observed = diffs.iter().sum::<f64>().abs();
    let total: u64 = 1 << n;
    let extreme = (0..total)
        .filter(|mask| {
            let sum: f64 = diffs.iter().enumerate().map(|(i, d)| if mask >> i & 1 == 1 { -d } else { *d }).sum();
            sum.abs() >= observed - TIE_SLACK
        })
        .count();
    Some(extreme as f64 / total as f64)
}

/// Draws of the Monte Carlo test beyond [`MAX_EXACT`] preferences.
const MONTE_CARLO_DRAWS: u32 = 20_000;
/// Fixed, so the same preferences always give the same p-value.
const MONTE_CARLO_SEED: u64 = 0x7061_6972_7769_7365;

/// Two-sided sign-flip p-value of per-question preferences (pairwise judging: each in [−1, 1], the
/// candidate preferred above 0): under "no preference" each is as likely to have either sign.
/// Exact up to [`MAX_EXACT`] questions; beyond, a seeded Monte Carlo estimate
/// ((extreme + 1) / (draws + 1), never 0). `None` for no preferences or a non-finite one.
pub fn preference_p_value(prefs: &[f64]) -> Option<f64> {
    if prefs.is_empty() || prefs.iter().any(|p| !p.is_finite()) {
        return None;
    }
    if prefs.len() <= MAX_EXACT {
        return p_value(prefs);
    }
    let observed = prefs.iter().sum::<f64>().abs();
    let mut rng = super::SplitMix64::new(MONTE_CARLO_SEED);
    let extreme = (0..MONTE_CARLO_DRAWS)
        .filter(|_| {
            let sum: f64 = prefs.iter().map(|p| if rng.next_u64() >> 63 == 1 { -p } else { *p }).sum();
            sum.abs() >= observed - TIE_SLACK
        })
        .count();
    Some((extreme as f64 + 1.0) / (f64::from(MONTE_CARLO_DRAWS) + 1.0))
}

/// Smallest p-value the exact test can give with `n` questions.
pub(crate) fn smallest_p(n: usize) -> f64 {
    2.0 / 2f64.powi(i32::try_from(n).unwrap_or(i32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_drops_of_eight_questions_give_the_floor() {
        let p = p_value(&[-2.0, -2.0, -2.0, -2.0, -7.0, -1.0, -1.0, -1.0]).unwrap();
        assert_eq!(p, smallest_p(8));
        assert_eq!(p, 2.0 / 256.0);
    }

    #[test]
    fn a_zero_difference_doubles_the_extreme_count() {
        let p = p_value(&[-1.0, -4.0, -2.0, -2.0, -7.0, -2.0, -1.0, 0.0]).unwrap();
        assert_eq!(p, 4.0 / 256.0);
    }

    #[test]
    fn mixed_signs_are_not_significant() {
        let p = p_value(&[1.0, -2.0, 0.0, 0.0, 0.0, -1.0, 0.0, 1.0]).unwrap();
        assert!(p > 0.5, "p = {p}");
    }

    #[test]
    fn preference_p_values_from_exact_to_monte_carlo() {
        const EIGHT: usize = 8;
        const MANY: usize = MAX_EXACT + 16;
        // A clear preference on every one of many questions: far below any alpha.
        let clear = preference_p_value(&[0.6; MANY]).unwrap();
        assert!(clear > 0.0 && clear <= 1.0 / f64::from(MONTE_CARLO_DRAWS), "{clear}");
        // Alternating preferences cancel: no evidence either way.
        let mixed: Vec<f64> = (0..MANY).map(|i| if i % 2 == 0 { 0.5 } else { -0.5 }).collect();
        assert!(preference_p_value(&mixed).unwrap() > 0.9);
        // Reproducible from the preferences alone.
        let noisy: Vec<f64> = (0..MANY).map(|i| [0.2, -0.1, 0.4, 0.0, -0.3][i % 5]).collect();
        assert_eq!(preference_p_value(&noisy), preference_p_value(&noisy));
        let cases: [(&[f64], Option<f64>); 5] = [
            (&[1.0; EIGHT], Some(smallest_p(EIGHT))),
            (&[-1.0; EIGHT], Some(smallest_p(EIGHT))),
            (&[0.0; EIGHT], Some(1.0)),
            (&[], None),
            (&[0.5, f64::NAN], None),
        ];
        for (prefs, expected) in cases {
            assert_eq!(preference_p_value(prefs), expected, "{prefs:?}");
        }
    }

    #[test]
    fn degenerate_inputs() {
        assert_eq!(p_value(&[]), None);
        assert_eq!(p_value(&[0.0; 3]), Some(1.0));
        assert_eq!(p_value(&[-3.0]), Some(1.0));
        assert_eq!(p_value(&[1.0; MAX_EXACT + 1]), None);
    }
}
