//! Token-length statistics of the rendered examples. The lengths are an input: the caller
//! renders each example with the model's chat template and counts its tokens.

use serde::{Deserialize, Serialize};

/// Examples over `max_length` listed by index.
const LISTED: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenLengthStats {
    pub min: usize,
    pub p50: usize,
    pub p95: usize,
    pub max: usize,
    /// The limit compared with, when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    /// Examples longer than `max_length` (0 without a limit).
    pub over_max_length: usize,
    /// Tokens the longest example exceeds `max_length` by.
    pub max_excess: usize,
    /// Tokens over `max_length` in all examples together: what training would cut off.
    pub truncated_tokens: usize,
    /// The longest examples over the limit, longest first.
    pub over: Vec<OverLength>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverLength {
    pub example_index: usize,
    pub tokens: usize,
    pub excess: usize,
}

/// Statistics of `lengths` (one per example); `None` for no examples.
pub fn stats(lengths: &[usize], max_length: Option<usize>) -> Option<TokenLengthStats> {
    let mut sorted = lengths.to_vec();
    sorted.sort_unstable();
    let (&min, &max) = (sorted.first()?, sorted.last()?);
    let limit = max_length.unwrap_or(usize::MAX);
    let mut over: Vec<OverLength> = lengths
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > limit)
        .map(|(example_index, &tokens)| OverLength { example_index, tokens, excess: tokens - limit })
        .collect();
    over.sort_by(|a, b| b.tokens.cmp(&a.tokens).then(a.example_index.cmp(&b.example_index)));
    let over_max_length = over.len();
    let truncated_tokens = over.iter().map(|o| o.excess).sum();
    let max_excess = over.first().map_or(0, |o| o.excess);
    over.truncate(LISTED);
    Some(TokenLengthStats {
        min,
        p50: percentile(&sorted, 50),
        p95: percentile(&sorted, 95),
        max,
        max_length,
        over_max_length,
        max_excess,
        truncated_tokens,
        over,
    })
}

/// Nearest-rank percentile of a sorted, non-empty slice.
fn percentile(sorted: &[usize], p: usize) -> usize {
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let lengths: Vec<usize> = (1..=100).collect();
        let s = stats(&lengths, None).unwrap();
        assert_eq!((s.min, s.p50, s.p95, s.max, s.over_max_length), (1, 50, 95, 100, 0));
        let one = stats(&[7], None).unwrap();
        assert_eq!((one.min, one.p50, one.p95, one.max), (7, 7, 7, 7));
        assert!(stats(&[], Some(3)).is_none());
    }

    #[test]
    fn examples_over_the_limit_are_counted_with_their_excess() {
        let s = stats(&[100, 600, 512, 900, 20], Some(512)).unwrap();
        assert_eq!((s.over_max_length, s.max_excess, s.truncated_tokens), (2, 388, 476));
        let listed: Vec<(usize, usize)> = s.over.iter().map(|o| (o.example_index, o.excess)).collect();
        assert_eq!(listed, [(3, 388), (1, 88)]);
    }
}
