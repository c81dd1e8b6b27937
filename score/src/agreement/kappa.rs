//! Cohen's kappa with quadratic weights, for ordinal levels such as a rubric's 0–2: a
//! disagreement of two levels costs four times one of one level. 1 is perfect agreement, 0 what
//! chance gives with the same marginals, below 0 worse than chance.

/// Levels run `min..=max`. `None` for no pairs, a level outside the range, a range of one level,
/// or marginals that leave no room for disagreement (both sides constant).
pub fn quadratic_weighted_kappa(pairs: &[(u32, u32)], min: u32, max: u32) -> Option<f64> {
    if pairs.is_empty() || max <= min || pairs.iter().any(|&(a, b)| a.min(b) < min || a.max(b) > max) {
        return None;
    }
    let k = (max - min + 1) as usize;
    let mut observed = vec![vec![0.0f64; k]; k];
    for &(a, b) in pairs {
        observed[(a - min) as usize][(b - min) as usize] += 1.0;
    }
    let rows: Vec<f64> = observed.iter().map(|r| r.iter().sum()).collect();
    let cols: Vec<f64> = (0..k).map(|j| observed.iter().map(|r| r[j]).sum()).collect();
    let n = pairs.len() as f64;
    let (mut disagreed, mut expected) = (0.0, 0.0);
    for i in 0..k {
        for j in 0..k {
            let w = ((i as f64) - (j as f64)).powi(2) / ((k - 1) as f64).powi(2);
            disagreed += w * observed[i][j];
            expected += w * rows[i] * cols[j] / n;
        }
    }
    if expected == 0.0 {
        return None;
    }
    Some(1.0 - disagreed / expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_agreement_is_one() {
        const SAME: [(u32, u32); 3] = [(0, 0), (1, 1), (2, 2)];
        assert_eq!(quadratic_weighted_kappa(&SAME, 0, 2), Some(1.0));
    }

    #[test]
    fn hand_computed_kappa() {
        // pairs (0,0), (1,2), (2,2), (2,1); rows (scorer) 1,1,2; cols (human) 1,1,2; n = 4.
        // weights (i-j)^2/4: observed disagreement 0.25 + 0.25 = 0.5.
        // expected E_ij = row_i * col_j / 4: sum of w*E =
        //   (0,1) .25*1*1/4 + (0,2) 1*1*2/4 + (1,0) .25*1*1/4 + (1,2) .25*1*2/4
        //   + (2,0) 1*2*1/4 + (2,1) .25*2*1/4 = 0.0625+0.5+0.0625+0.125+0.5+0.125 = 1.375
        // kappa = 1 - 0.5/1.375 = 0.636363...
        const PAIRS: [(u32, u32); 4] = [(0, 0), (1, 2), (2, 2), (2, 1)];
        let kappa = quadratic_weighted_kappa(&PAIRS, 0, 2).unwrap();
        assert!((kappa - (1.0 - 0.5 / 1.375)).abs() < 1e-12, "{kappa}");
    }

    #[test]
    fn systematic_opposites_are_below_zero() {
        const OPPOSITE: [(u32, u32); 2] = [(0, 2), (2, 0)];
        assert_eq!(quadratic_weighted_kappa(&OPPOSITE, 0, 2), Some(-1.0));
    }

    #[test]
    fn degenerate_inputs_have_no_kappa() {
        assert_eq!(quadratic_weighted_kappa(&[], 0, 2), None);
        assert_eq!(quadratic_weighted_kappa(&[(1, 1), (1, 1)], 0, 2), None, "both constant");
        assert_eq!(quadratic_weighted_kappa(&[(3, 1)], 0, 2), None, "level out of range");
        assert_eq!(quadratic_weighted_kappa(&[(0, 0)], 0, 0), None, "one level");
    }
}
