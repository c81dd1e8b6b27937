//! Pearson's correlation of paired values.

/// `None` for fewer than two pairs, zero variance on either side, or non-finite values.
pub fn pearson(pairs: &[(f64, f64)]) -> Option<f64> {
    if pairs.len() < 2 || pairs.iter().any(|(a, b)| !a.is_finite() || !b.is_finite()) {
        return None;
    }
    let n = pairs.len() as f64;
    let (mx, my) = (pairs.iter().map(|p| p.0).sum::<f64>() / n, pairs.iter().map(|p| p.1).sum::<f64>() / n);
    let cov: f64 = pairs.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let vx: f64 = pairs.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    let vy: f64 = pairs.iter().map(|(_, y)| (y - my).powi(2)).sum();
    if vx == 0.0 || vy == 0.0 {
        return None;
    }
    Some(cov / (vx * vy).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_table() {
        // x = 1,2,3; y = 1,3,2: means 2,2; cov = (-1)(-1) + 0 + (1)(0) = 1; vx = 2, vy = 2 -> 0.5
        const HALF: [(f64, f64); 3] = [(1.0, 1.0), (2.0, 3.0), (3.0, 2.0)];
        const PERFECT_NEGATIVE: [(f64, f64); 3] = [(1.0, 6.0), (2.0, 4.0), (3.0, 2.0)];
        assert!((pearson(&HALF).unwrap() - 0.5).abs() < 1e-12);
        assert!((pearson(&PERFECT_NEGATIVE).unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(pearson(&[(1.0, 2.0), (1.0, 3.0)]), None, "zero variance");
        assert_eq!(pearson(&[(1.0, 2.0)]), None, "one pair");
    }
}
