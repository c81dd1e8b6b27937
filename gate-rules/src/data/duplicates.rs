//! Duplicate examples: exact (same digest) and near (MinHash/LSH over word shingles).
//!
//! Near-duplicates are found in three steps, each linear in the dataset: a MinHash signature of
//! each example's word 3-shingles (system turns left out, since many examples share one); LSH
//! banding of the signatures, sorted per band so memory stays flat; then the exact Jaccard
//! similarity of every candidate pair, recomputed from the text, so the verdict does not depend
//! on the estimate. In a band bucket each member is compared with the few members before it,
//! which bounds the work when many examples share a bucket. Hashes are hand-written (FNV-1a and
//! a SplitMix64 finaliser) because the results must not change between runs or platforms.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::example::{Example, Role};
use super::normalise::hash_words;
use super::par;

const SHINGLE: usize = 3;
const HASHES: usize = 64;
/// Members of one band bucket each member is compared with.
const BUCKET_WINDOW: usize = 8;

/// Examples with the same digest, by index; the first is the original.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExactGroup {
    pub indices: Vec<usize>,
}

/// Examples whose shingle sets are at least `threshold` similar to another of the group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NearGroup {
    pub indices: Vec<usize>,
    /// The highest Jaccard similarity of a pair in the group.
    pub jaccard: f64,
}

/// Groups of examples with equal digests, in order of first appearance.
pub fn exact(digests: &[[u8; 32]]) -> Vec<ExactGroup> {
    let mut by_digest: HashMap<&[u8; 32], Vec<usize>> = HashMap::new();
    for (i, d) in digests.iter().enumerate() {
        by_digest.entry(d).or_default().push(i);
    }
    let mut groups: Vec<ExactGroup> =
        by_digest.into_values().filter(|v| v.len() > 1).map(|indices| ExactGroup { indices }).collect();
    groups.sort_by_key(|g| g.indices[0]);
    groups
}

/// Groups of near-duplicates with Jaccard ≥ `threshold` that are not exact duplicates.
pub fn near(examples: &[&Example], digests: &[[u8; 32]], threshold: f64) -> Vec<NearGroup> {
    // Only the signatures are kept (512 bytes an example); candidates' shingles are recomputed.
    let signatures: Vec<Option<[u64; HASHES]>> = par::map(examples, |e| {
        let set = shingle_set(e);
        (!set.is_empty()).then(|| signature(&set))
    });
    let rows = rows_for(threshold);
    let mut seen: HashSet<(usize, usize)> = HashSet::new();
    let mut parent: Vec<usize> = (0..examples.len()).collect();
    let mut best: BTreeMap<usize, f64> = BTreeMap::new();
    for band in 0..HASHES / rows {
        let mut keys: Vec<(u64, usize)> = signatures
            .iter()
            .enumerate()
            .filter_map(|(i, sig)| sig.as_ref().map(|sig| (band_key(&sig[band * rows..(band + 1) * rows]), i)))
            .collect();
        keys.sort_unstable();
        for run in keys.chunk_by(|a, b| a.0 == b.0) {
            for (k, &(_, b)) in run.iter().enumerate() {
                for &(_, a) in &run[k.saturating_sub(BUCKET_WINDOW)..k] {
                    if digests[a] == digests[b] || !seen.insert((a, b)) {
                        continue;
                    }
                    let j = jaccard(&shingle_set(examples[a]), &shingle_set(examples[b]));
                    if j >= threshold {
                        let root = union(&mut parent, a, b);
                        let entry = best.entry(root).or_insert(0.0);
                        *entry = entry.max(j);
                    }
                }
            }
        }
    }
    groups(&mut parent, &best)
}

fn groups(parent: &mut [usize], best: &BTreeMap<usize, f64>) -> Vec<NearGroup> {
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..parent.len() {
        let root = find(parent, i);
        members.entry(root).or_default().push(i);
    }
    let mut best_by_root: HashMap<usize, f64> = HashMap::new();
    for (&r, &j) in best {
        let root = find(parent, r);
        let e = best_by_root.entry(root).or_insert(0.0);
        *e = e.max(j);
    }
    let mut out: Vec<NearGroup> = members
        .into_iter()
        .filter(|(_, m)| m.len() > 1)
        .map(|(root, indices)| NearGroup { indices, jaccard: best_by_root.get(&root).copied().unwrap_or(0.0) })
        .collect();
    out.sort_by_key(|g| g.indices[0]);
    out
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

fn union(parent: &mut [usize], a: usize, b: usize) -> usize {
    let (ra, rb) = (find(parent, a), find(parent, b));
    let (root, child) = if ra < rb { (ra, rb) } else { (rb, ra) };
    parent[child] = root;
    root
}

/// Rows per band: the most rows whose LSH curve still makes a pair at `threshold` a candidate
/// with probability ≥ 0.99 (more rows, fewer false candidates).
fn rows_for(threshold: f64) -> usize {
    [16, 8, 4, 2]
        .into_iter()
        .find(|&r| {
            let bands = (HASHES / r) as i32;
            1.0 - (1.0 - threshold.powi(r as i32)).powi(bands) >= 0.99
        })
        .unwrap_or(1)
}

/// Sorted, deduplicated hashes of the word 3-shingles of the non-system turns.
fn shingle_set(example: &Example) -> Vec<u64> {
    let mut text = String::new();
    for t in example.turns.iter().filter(|t| t.role != Role::System) {
        text.push_str(&t.content);
        text.push('\n');
    }
    let mut w = Vec::with_capacity(text.len() / 5);
    hash_words(&text, &mut w);
    let mut set: Vec<u64> =
        w.windows(SHINGLE.min(w.len()).max(1)).map(|s| s.iter().fold(0, |acc, h| mix(acc ^ h))).collect();
    set.sort_unstable();
    set.dedup();
    set
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The MinHash signature: per hash function, the smallest value over the shingles. Function
/// `i` is a cheap xor-multiply-xorshift permutation of the once-mixed shingle hash, so a
/// signature costs three operations per shingle and function.
fn signature(shingles: &[u64]) -> [u64; HASHES] {
    let seeds: [u64; HASHES] = std::array::from_fn(|i| mix(i as u64 + 1));
    let mut sig = [u64::MAX; HASHES];
    for &s in shingles {
        let m = mix(s);
        for (slot, seed) in sig.iter_mut().zip(&seeds) {
            let x = (m ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            *slot = (*slot).min(x ^ (x >> 29));
        }
    }
    sig
}

fn band_key(values: &[u64]) -> u64 {
    values.iter().fold(0x51_7cc1_b727_220a, |acc, v| mix(acc ^ v))
}

/// Exact Jaccard similarity of two sorted sets.
fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    let (mut i, mut j, mut both) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                both += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - both;
    if union == 0 { 0.0 } else { both as f64 / union as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::example::chat;
    use crate::data::normalise::example_digest;

    const ANSWER: &str = "A gente mantém o Quintal, um aplicativo que conecta hortas comunitárias a voluntários \
        do bairro, com backend em Rust e banco PostgreSQL, e a Banca, o sistema das feiras.";

    fn run(examples: &[Example], threshold: f64) -> (Vec<ExactGroup>, Vec<NearGroup>) {
        let refs: Vec<&Example> = examples.iter().collect();
        let digests: Vec<[u8; 32]> = examples.iter().map(example_digest).collect();
        (exact(&digests), near(&refs, &digests, threshold))
    }

    #[test]
    fn exact_copies_are_exact_not_near() {
        let e = [chat("O que vocês fazem?", ANSWER), chat("Oi", "Oi!"), chat("O que  vocês fazem?", ANSWER)];
        let (exact, near) = run(&e, 0.8);
        assert_eq!(exact, [ExactGroup { indices: vec![0, 2] }]);
        assert!(near.is_empty(), "{near:?}");
    }

    #[test]
    fn a_small_edit_is_a_near_duplicate_and_an_unrelated_example_is_not() {
        let edited = ANSWER.replace("do bairro", "da cidade");
        let e = [
            chat("O que vocês fazem?", ANSWER),
            chat("Conta sobre seu dia.", "Hoje revisei testes de integração com o Tomás e almoçamos pão de queijo."),
            chat("O que vocês fazem?", &edited),
        ];
        let (exact, near) = run(&e, 0.7);
        assert!(exact.is_empty());
        assert_eq!(near.len(), 1, "{near:?}");
        assert_eq!(near[0].indices, [0, 2]);
        assert!(near[0].jaccard >= 0.7 && near[0].jaccard < 1.0, "{}", near[0].jaccard);
        let (_, strict) = run(&e, 0.99);
        assert!(strict.is_empty(), "a higher threshold drops the pair: {strict:?}");
    }

    #[test]
    fn case_and_punctuation_changes_are_near_duplicates_with_jaccard_one() {
        let e = [chat("O que vocês fazem?", ANSWER), chat("o que voces fazem", &ANSWER.to_uppercase())];
        let (_, near) = run(&e, 0.9);
        assert_eq!(near.len(), 1);
        assert_eq!(near[0].jaccard, 1.0);
    }

    #[test]
    fn rows_per_band_follow_the_threshold() {
        assert!(rows_for(0.5) < rows_for(0.9));
        assert_eq!(HASHES % rows_for(0.8), 0);
    }
}
