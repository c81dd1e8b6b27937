//! Mean absolute error and bias of a scorer against human scores.

/// Mean absolute error and mean signed error (scorer − human) of paired values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Error {
    pub mae: f64,
    /// Positive when the scorer scores higher than people do.
    pub bias: f64,
}

/// `None` for no pairs or a non-finite value.
pub fn error(pairs: &[(f64, f64)]) -> Option<Error> {
    if pairs.is_empty() || pairs.iter().any(|(a, b)| !a.is_finite() || !b.is_finite()) {
        return None;
    }
    let n = pairs.len() as f64;
    let mae = pairs.iter().map(|(s, h)| (s - h).abs()).sum::<f64>() / n;
    let bias = pairs.iter().map(|(s, h)| s - h).sum::<f64>() / n;
    Some(Error { mae, bias })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mae_and_bias_table() {
        // (scorer, human): errors +2, -1, 0, +1 -> |e| mean 4/4 = 1.0, signed mean 2/4 = 0.5
        const PAIRS: [(f64, f64); 4] = [(5.0, 3.0), (2.0, 3.0), (7.0, 7.0), (1.0, 0.0)];
        assert_eq!(error(&PAIRS), Some(Error { mae: 1.0, bias: 0.5 }));
        assert_eq!(error(&[]), None);
        assert_eq!(error(&[(f64::NAN, 1.0)]), None);
    }
}
