//! Tokenizers rebuilt from GGUF vocabulary metadata, as `tokenizer.json` documents.
//!
//! We describe the tokenizer as the JSON that Hugging Face would ship and let the `tokenizers`
//! crate parse it: the same pipeline then serves GGUF files and test fixtures.

use serde_json::{Value, json};
use std::collections::HashMap;

/// `tokenizer.ggml.token_type` values, as llama.cpp writes them.
pub(crate) const TOKEN_TYPE_CONTROL: i32 = 3;
pub(crate) const TOKEN_TYPE_USER_DEFINED: i32 = 4;
pub(crate) const TOKEN_TYPE_BYTE: i32 = 6;

/// SentencePiece's word-boundary marker.
pub(crate) const SPM_SPACE: char = '\u{2581}';

/// Which tokenizer family a GGUF vocabulary belongs to (`tokenizer.ggml.model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VocabKind {
    /// `gpt2`: byte-level BPE with explicit merges (SmolLM2, Llama 3).
    ByteLevelBpe,
    /// `llama`: SentencePiece BPE with scores and `<0xXX>` byte fallback (TinyLlama, Mistral).
    SentencePiece,
}

/// The vocabulary part of GGUF metadata.
#[derive(Debug, Clone)]
pub(crate) struct VocabSpec {
    pub(crate) kind: VocabKind,
    pub(crate) tokens: Vec<String>,
    pub(crate) token_types: Vec<i32>,
    pub(crate) scores: Vec<f32>,
    /// `"left right"` pairs; empty for SentencePiece.
    pub(crate) merges: Vec<String>,
    pub(crate) unk_id: Option<u32>,
}

/// The `tokenizer.json` document equivalent to `spec`.
pub(crate) fn tokenizer_json(spec: &VocabSpec) -> Value {
    let vocab: serde_json::Map<String, Value> =
        spec.tokens.iter().enumerate().map(|(id, token)| (token.clone(), json!(id))).collect();
    let added: Vec<Value> = special_ids(spec)
        .map(|id| {
            json!({"id": id, "content": spec.tokens[id], "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    match spec.kind {
        VocabKind::ByteLevelBpe => byte_level_json(vocab, merge_pairs(&spec.merges), added),
        VocabKind::SentencePiece => {
            let unk = spec.unk_id.map(|id| spec.tokens[id as usize].clone());
            sentencepiece_json(vocab, spm_merges(spec), added, unk)
        }
    }
}

fn special_ids(spec: &VocabSpec) -> impl Iterator<Item = usize> + '_ {
    spec.token_types
        .iter()
        .enumerate()
        .filter_map(|(id, &kind)| matches!(kind, TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED).then_some(id))
}

fn merge_pairs(merges: &[String]) -> Vec<Value> {
    merges.iter().filter_map(|m| m.split_once(' ')).map(|(a, b)| json!([a, b])).collect()
}

fn byte_level_json(vocab: serde_json::Map<String, Value>, merges: Vec<Value>, added: Vec<Value>) -> Value {
    json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
        ]},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": merges}
    })
}

fn sentencepiece_json(
    vocab: serde_json::Map<String, Value>,
    merges: Vec<Value>,
    added: Vec<Value>,
    unk: Option<String>,
) -> Value {
    let space = SPM_SPACE.to_string();
    json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": space},
            {"type": "Replace", "pattern": {"String": " "}, "content": space}
        ]},
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": space}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}
        ]},
        "model": {"type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
                  "ignore_merges": false, "vocab": vocab, "merges": merges}
    })
}

/// SentencePiece BPE merges the pair whose joined piece scores highest; a BPE model reproduces
/// that when its merges are every split of a normal piece into two pieces, ordered by the score
/// of the joined piece (then by the ids of the halves, as Hugging Face's converter does).
fn spm_merges(spec: &VocabSpec) -> Vec<Value> {
    let ids: HashMap<&str, usize> =
        spec.tokens.iter().enumerate().filter(|(id, _)| is_normal(spec, *id)).map(|(id, t)| (t.as_str(), id)).collect();
    let mut merges: Vec<(f32, usize, usize, &str, &str)> = Vec::new();
    for (&piece, &id) in &ids {
        for (split, _) in piece.char_indices().skip(1) {
            let (left, right) = piece.split_at(split);
            if let (Some(&l), Some(&r)) = (ids.get(left), ids.get(right)) {
                let score = spec.scores.get(id).copied().unwrap_or(0.0);
                merges.push((score, l, r, left, right));
            }
        }
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    merges.iter().map(|m| json!([m.3, m.4])).collect()
}

fn is_normal(spec: &VocabSpec, id: usize) -> bool {
    let kind = spec.token_types.get(id).copied().unwrap_or(1);
    !matches!(kind, TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED | TOKEN_TYPE_BYTE) && Some(id as u32) != spec.unk_id
}

/// GPT-2's printable stand-ins for the 256 byte values, used by byte-level BPE vocabularies.
#[cfg(any(test, feature = "testutil"))]
pub(crate) fn byte_level_alphabet() -> Vec<char> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut extra = 0;
    (0..256u32)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap_or('?')
            } else {
                extra += 1;
                char::from_u32(255 + extra).unwrap_or('?')
            }
        })
        .collect()
}
