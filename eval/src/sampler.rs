//! Next-token choice: repetition penalty, temperature, top-k, top-p, seeded sampling.

use crate::spec::{GenerationParams, RepetitionPenaltyScope};
use rand::Rng;
use rand::rngs::StdRng;

/// The seed of sample `sample` of question `qid`: a stable hash (FNV-1a then splitmix64) so
/// that it does not depend on the Rust release or on the order of questions.
pub fn derive_seed(seed: u64, qid: &str, sample: usize) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = seed.to_le_bytes().into_iter().chain(qid.bytes()).chain([0xff]).chain((sample as u64).to_le_bytes());
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    splitmix64(hash)
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Applies the penalty the way Hugging Face does: positive logits are divided, negative ones
/// multiplied, once per distinct token of the context.
pub(crate) fn apply_repetition_penalty(
    logits: &mut [f32],
    params: &GenerationParams,
    prompt: &[u32],
    generated: &[u32],
) {
    let penalty = params.repetition_penalty;
    if penalty == 1.0 {
        return;
    }
    let mut context: Vec<u32> = match params.repetition_penalty_scope {
        RepetitionPenaltyScope::All => prompt.iter().chain(generated).copied().collect(),
        RepetitionPenaltyScope::Generated => generated.to_vec(),
    };
    context.sort_unstable();
    context.dedup();
    for id in context {
        if let Some(logit) = logits.get_mut(id as usize) {
            *logit = if *logit > 0.0 { *logit / penalty } else { *logit * penalty };
        }
    }
}

/// Picks the next token from penalised logits: top-k, then temperature, then the nucleus (the
/// most likely tokens, by probability then id, whose mass reaches `top_p`), then a seeded draw
/// over the kept tokens in that order.
pub(crate) fn choose(logits: &[f32], params: &GenerationParams, rng: &mut StdRng) -> u32 {
    if params.temperature <= 0.0 {
        return argmax(logits);
    }
    let mut candidates: Vec<(u32, f32)> = (0..logits.len() as u32).zip(logits.iter().copied()).collect();
    if params.top_k > 0 && params.top_k < candidates.len() {
        candidates.select_nth_unstable_by(params.top_k - 1, |a, b| b.1.total_cmp(&a.1));
        candidates.truncate(params.top_k);
    }
    let max = candidates.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
    let mut weighted: Vec<(u32, f64)> =
        candidates.iter().map(|c| (c.0, ((f64::from(c.1) - f64::from(max)) / params.temperature).exp())).collect();
    if params.top_p < 1.0 {
        let total: f64 = weighted.iter().map(|w| w.1).sum();
        let keep = nucleus(&mut weighted, params.top_p * total);
        weighted.truncate(keep);
    }
    let total: f64 = weighted.iter().map(|w| w.1).sum();
    let mut draw = rng.random::<f64>() * total;
    for (token, weight) in &weighted {
        draw -= weight;
        if draw <= 0.0 {
            return *token;
        }
    }
    weighted.last().map_or(0, |w| w.0)
}

/// Moves the nucleus — the heaviest weights, by weight then id, whose sum first reaches `mass` —
/// to the front of `weighted`, in that order, and returns its length. Selects a few candidates
/// at a time instead of sorting the whole vocabulary: the nucleus is usually a handful of tokens.
fn nucleus(weighted: &mut [(u32, f64)], mass: f64) -> usize {
    let order = |a: &(u32, f64), b: &(u32, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let mut take = 64.min(weighted.len());
    loop {
        if take < weighted.len() {
            weighted.select_nth_unstable_by(take - 1, order);
        }
        weighted[..take].sort_unstable_by(order);
        let mut cumulative = 0.0;
        if let Some(i) = weighted[..take].iter().position(|w| {
            cumulative += w.1;
            cumulative >= mass
        }) {
            return i + 1;
        }
        if take == weighted.len() {
            return take;
        }
        take = (take * 8).min(weighted.len());
    }
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in logits.iter().enumerate() {
        if *v > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn derived_seeds_differ_by_question_and_sample_and_are_stable() {
        let a = derive_seed(7, "q1", 0);
        assert_eq!(a, derive_seed(7, "q1", 0));
        assert_ne!(a, derive_seed(7, "q1", 1));
        assert_ne!(a, derive_seed(7, "q2", 0));
        assert_ne!(a, derive_seed(8, "q1", 0));
    }

    #[test]
    fn penalty_scope_all_includes_prompt_tokens_and_generated_does_not() {
        let mut params = GenerationParams { repetition_penalty: 2.0, ..Default::default() };
        let mut all = vec![4.0, -4.0, 4.0];
        apply_repetition_penalty(&mut all, &params, &[0, 1, 0], &[2]);
        assert_eq!(all, vec![2.0, -8.0, 2.0]);
        params.repetition_penalty_scope = RepetitionPenaltyScope::Generated;
        let mut generated = vec![4.0, -4.0, 4.0];
        apply_repetition_penalty(&mut generated, &params, &[0, 1], &[2]);
        assert_eq!(generated, vec![4.0, -4.0, 2.0]);
    }

    #[test]
    fn zero_temperature_is_greedy_and_top_k_one_is_greedy_too() {
        let logits = [0.1, 3.0, 2.9, -1.0];
        let mut rng = StdRng::seed_from_u64(1);
        let greedy = GenerationParams { temperature: 0.0, ..Default::default() };
        assert_eq!(choose(&logits, &greedy, &mut rng), 1);
        let top1 = GenerationParams { temperature: 5.0, top_k: 1, ..Default::default() };
        for _ in 0..20 {
            assert_eq!(choose(&logits, &top1, &mut rng), 1);
        }
    }

    #[test]
    fn the_nucleus_is_the_heaviest_prefix_in_weight_then_id_order_at_any_size() {
        let mut rng = StdRng::seed_from_u64(11);
        for n in [5usize, 64, 65, 700, 5000] {
            let weights: Vec<(u32, f64)> = (0..n as u32).map(|i| (i, f64::from(rng.random_range(0..50u32)))).collect();
            let total: f64 = weights.iter().map(|w| w.1).sum();
            for p in [0.05, 0.5, 0.9, 0.999] {
                let mut sorted = weights.clone();
                sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                let mut cumulative = 0.0;
                let expected = sorted.iter().position(|w| {
                    cumulative += w.1;
                    cumulative >= p * total
                });
                let mut fast = weights.clone();
                let keep = nucleus(&mut fast, p * total);
                assert_eq!(Some(keep - 1), expected, "n = {n}, p = {p}");
                assert_eq!(&fast[..keep], &sorted[..keep], "n = {n}, p = {p}");
            }
        }
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        let logits = [10.0, 9.0, -10.0, -10.0];
        let params = GenerationParams { temperature: 1.0, top_p: 0.5, ..Default::default() };
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..50 {
            assert_eq!(choose(&logits, &params, &mut rng), 0);
        }
    }
}
