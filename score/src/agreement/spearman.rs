//! Spearman's rank correlation: Pearson's correlation of the ranks, ties given their mean rank.

/// `None` where [`super::pearson`] of the ranks is undefined.
pub fn spearman(pairs: &[(f64, f64)]) -> Option<f64> {
    if pairs.iter().any(|(a, b)| !a.is_finite() || !b.is_finite()) {
        return None;
    }
    let xs = ranks(&pairs.iter().map(|p| p.0).collect::<Vec<_>>());
    let ys = ranks(&pairs.iter().map(|p| p.1).collect::<Vec<_>>());
    super::pearson(&xs.into_iter().zip(ys).collect::<Vec<_>>())
}

/// 1-based ranks; tied values share the mean of the ranks they span.
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut out = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        let mean_rank = (start + end + 1) as f64 / 2.0;
        for &i in &order[start..end] {
            out[i] = mean_rank;
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_share_their_mean_rank() {
        assert_eq!(ranks(&[10.0, 20.0, 10.0, 5.0]), [2.5, 4.0, 2.5, 1.0]);
    }

    #[test]
    fn spearman_table() {
        // monotone but not linear: ranks agree exactly
        const MONOTONE: [(f64, f64); 4] = [(1.0, 1.0), (2.0, 4.0), (3.0, 9.0), (4.0, 100.0)];
        // ranks x = 1,2,3; y = 1,3,2 -> Pearson of ranks 0.5 (as in pearson's table)
        const HALF: [(f64, f64); 3] = [(1.0, 10.0), (2.0, 30.0), (3.0, 20.0)];
        assert!((spearman(&MONOTONE).unwrap() - 1.0).abs() < 1e-12);
        assert!((spearman(&HALF).unwrap() - 0.5).abs() < 1e-12);
        assert_eq!(spearman(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }
}
