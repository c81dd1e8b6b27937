//! Exact agreement: the share of pairs where scorer and human give the same level.

/// `None` for no pairs.
pub fn exact_agreement(pairs: &[(u32, u32)]) -> Option<f64> {
    if pairs.is_empty() {
        return None;
    }
    Some(pairs.iter().filter(|(a, b)| a == b).count() as f64 / pairs.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_agreement_table() {
        const THREE_OF_FOUR: [(u32, u32); 4] = [(0, 0), (1, 1), (2, 1), (2, 2)];
        assert_eq!(exact_agreement(&THREE_OF_FOUR), Some(0.75));
        assert_eq!(exact_agreement(&[(1, 2)]), Some(0.0));
        assert_eq!(exact_agreement(&[]), None);
    }
}
