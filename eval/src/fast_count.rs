//! Token counts of byte-level BPE tokenizers (GPT-2 style: SmolLM2, GPT-2, Qwen-style vocabularies
//! with the GPT-2 split pattern) without building encodings: the lint needs how many tokens a
//! rendered conversation has, not which. The same pipeline as `tokenizers` — added tokens split
//! first, then optional individual digits, then the GPT-2 split pattern, then BPE merges by rank
//! on each piece's bytes — with each distinct piece's count remembered.
//!
//! Used only for a tokenizer whose `tokenizer.json` describes exactly this pipeline
//! ([`FastCounter::from_tokenizer`] says `None` otherwise, and the caller encodes with
//! `tokenizers`). Its counts are checked against `tokenizers` on real and random text in tests.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, MatchKind};
use regex::Regex;
use serde_json::Value;
use tokenizers::Tokenizer;

/// The GPT-2 split pattern without its `\s+(?!\S)` lookahead, which [`FastCounter::pieces`]
/// applies by hand (the `regex` crate has no lookaround; its alternation is leftmost-first as in
/// the original).
const SPLIT: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+";

/// Pieces a memo holds before it starts over (bounds memory on huge numbers of distinct words).
const MEMO_LIMIT: usize = 1 << 20;

/// Each distinct piece's count, kept by one thread across the texts it counts.
pub(crate) type Memo = HashMap<Vec<u8>, u32>;

#[derive(Debug)]
pub(crate) struct FastCounter {
    split: Regex,
    digits: bool,
    /// Added tokens by content.
    added: Vec<String>,
    /// Finds them, leftmost-longest as `tokenizers` does.
    added_finder: Option<AhoCorasick>,
    /// Byte → id of its byte-level token; `None` where the vocabulary lacks it (SmolLM2 has no
    /// token for bytes valid UTF-8 never holds, nor for a few control characters): `tokenizers`
    /// then drops the byte (no unknown token, no byte fallback), and so does this.
    byte_ids: [Option<u32>; 256],
    /// `(left, right)` → `(rank, merged)`.
    merges: HashMap<(u32, u32), (u32, u32)>,
}

impl FastCounter {
    /// The counter for `tokenizer` when its pipeline is exactly the one implemented here.
    pub(crate) fn from_tokenizer(tokenizer: &Tokenizer) -> Option<Self> {
        let json: Value = serde_json::from_str(&tokenizer.to_string(false).ok()?).ok()?;
        if !json["normalizer"].is_null() || json["model"]["type"].as_str() != Some("BPE") {
            return None;
        }
        let digits = supported_pre_tokenizer(&json["pre_tokenizer"])?;
        let model = &json["model"];
        let plain = |key: &str| model[key].is_null() || model[key] == Value::Bool(false);
        let simple = model["dropout"].is_null()
            && plain("continuing_subword_prefix")
            && plain("end_of_word_suffix")
            && plain("byte_fallback")
            && plain("ignore_merges");
        if !simple {
            return None;
        }
        let vocab: HashMap<&str, u32> = model["vocab"]
            .as_object()?
            .iter()
            .map(|(k, v)| Some((k.as_str(), u32::try_from(v.as_u64()?).ok()?)))
            .collect::<Option<_>>()?;
        let table = byte_table();
        let mut byte_ids = [None; 256];
        for (b, c) in table.iter().enumerate() {
            byte_ids[b] = vocab.get(c.to_string().as_str()).copied();
        }
        if !model["unk_token"].is_null() {
            return None;
        }
        let mut merges = HashMap::new();
        for (rank, m) in model["merges"].as_array()?.iter().enumerate() {
            let (left, right) = match m {
                Value::String(s) => s.split_once(' ')?,
                Value::Array(pair) => (pair.first()?.as_str()?, pair.get(1)?.as_str()?),
                _ => return None,
            };
            let merged = vocab.get(format!("{left}{right}").as_str())?;
            let key = (*vocab.get(left)?, *vocab.get(right)?);
            merges.entry(key).or_insert((rank as u32, *merged));
        }
        let mut added = Vec::new();
        for t in json["added_tokens"].as_array()? {
            let flag = |k: &str| t[k].as_bool().unwrap_or(false);
            if flag("single_word") || flag("lstrip") || flag("rstrip") || flag("normalized") {
                return None;
            }
            added.push(t["content"].as_str()?.to_owned());
        }
        added.retain(|a| !a.is_empty());
        let added_finder = if added.is_empty() {
            None
        } else {
            Some(AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(&added).ok()?)
        };
        Some(Self { split: Regex::new(SPLIT).ok()?, digits, added, added_finder, byte_ids, merges })
    }

    /// Whether `text` starts with the added token `content` (the BOS check of the caller).
    pub(crate) fn starts_with_added(&self, text: &str, content: &str) -> bool {
        self.added.iter().any(|a| a == content) && text.starts_with(content)
    }

    /// How many tokens `tokenizers` would give `text` (no special tokens added).
    pub(crate) fn count(&self, text: &str, memo: &mut Memo) -> usize {
        if memo.len() > MEMO_LIMIT {
            memo.clear();
        }
        let Some(finder) = &self.added_finder else { return self.count_segment(text, memo) };
        let mut total = 0;
        let mut at = 0;
        for m in finder.find_iter(text) {
            total += self.count_segment(&text[at..m.start()], memo) + 1;
            at = m.end();
        }
        total + self.count_segment(&text[at..], memo)
    }

    fn count_segment(&self, segment: &str, memo: &mut Memo) -> usize {
        let mut total = 0;
        if self.digits {
            // Every numeric character is its own piece; the pattern runs between them.
            let mut start = 0;
            for (i, c) in segment.char_indices() {
                if c.is_numeric() {
                    total += self.count_split(&segment[start..i], memo);
                    total += self.piece(&segment[i..i + c.len_utf8()], memo);
                    start = i + c.len_utf8();
                }
            }
            total += self.count_split(&segment[start..], memo);
        } else {
            total += self.count_split(segment, memo);
        }
        total
    }

    /// The GPT-2 pattern's pieces of `text`, counted.
    fn count_split(&self, text: &str, memo: &mut Memo) -> usize {
        let mut total = 0;
        let mut at = 0;
        while at < text.len() {
            let Some(m) = self.split.find_at(text, at) else { break };
            let (start, mut end) = (m.start(), m.end());
            let run = &text[start..end];
            // `\s+(?!\S)`: a run of whitespace followed by more text leaves its last character
            // to the next piece (where ` ?\p{L}+` and the like take a space).
            if end < text.len() && run.chars().all(char::is_whitespace) && run.chars().count() > 1 {
                end -= run.chars().next_back().map_or(0, char::len_utf8);
            }
            total += self.piece(&text[start..end], memo);
            at = end;
        }
        total
    }

    fn piece(&self, piece: &str, memo: &mut Memo) -> usize {
        if piece.is_empty() {
            return 0;
        }
        if let Some(n) = memo.get(piece.as_bytes()) {
            return *n as usize;
        }
        let n = self.bpe(piece.as_bytes());
        memo.insert(piece.as_bytes().to_vec(), n as u32);
        n
    }

    /// BPE on one piece: the lowest-ranked adjacent pair merges first (leftmost on ties).
    fn bpe(&self, bytes: &[u8]) -> usize {
        let mut symbols: Vec<u32> = bytes.iter().filter_map(|b| self.byte_ids[*b as usize]).collect();
        loop {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| self.merges.get(&(w[0], w[1])).map(|(rank, merged)| (*rank, i, *merged)))
                .min_by_key(|(rank, i, _)| (*rank, *i));
            let Some((_, i, merged)) = best else { return symbols.len() };
            symbols[i] = merged;
            symbols.remove(i + 1);
        }
    }
}

/// `Some(digits)` when the pre-tokenizer is GPT-2's byte-level split, optionally after
/// individual digits; `None` for anything else.
fn supported_pre_tokenizer(p: &Value) -> Option<bool> {
    let byte_level = |p: &Value| {
        p["type"] == "ByteLevel" && p["add_prefix_space"] == Value::Bool(false) && p["use_regex"] != Value::Bool(false)
    };
    if byte_level(p) {
        return Some(false);
    }
    if p["type"] == "Sequence" {
        let steps = p["pretokenizers"].as_array()?;
        match &steps[..] {
            [d, b] if d["type"] == "Digits" && d["individual_digits"] == Value::Bool(true) && byte_level(b) => {
                return Some(true);
            }
            [b] if byte_level(b) => return Some(false),
            _ => {}
        }
    }
    None
}

/// GPT-2's byte → printable character table.
fn byte_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable = (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        table[b as usize] = if printable {
            char::from(b)
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap_or('\0')
        };
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn gguf_tokenizer(path: &std::path::Path) -> Tokenizer {
        let mut reader = std::io::BufReader::new(std::fs::File::open(path).unwrap());
        let content = candle_core::quantized::gguf_file::Content::read(&mut reader).unwrap();
        let meta = crate::gguf::GgufMeta { path, content: &content };
        crate::tokenizer::from_gguf(&meta).unwrap().inner
    }

    fn tokenizer() -> Tokenizer {
        let dir = tempfile::tempdir().unwrap();
        gguf_tokenizer(&crate::tiny::write_tiny_gguf(dir.path()))
    }

    /// Every text of `texts` counts as `tokenizers` counts it.
    fn check_against(tokenizer: &Tokenizer, texts: &[String]) {
        let counter = FastCounter::from_tokenizer(tokenizer).expect("the GGUF byte-level BPE is supported");
        let mut memo = Memo::new();
        for text in texts {
            let expected = tokenizer.encode_fast(text.as_str(), false).unwrap().get_ids().len();
            assert_eq!(counter.count(text, &mut memo), expected, "{text:?}");
        }
    }

    fn texts(specials: &[String]) -> Vec<String> {
        let mut rng = StdRng::seed_from_u64(7);
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../datasets/lint-fixture");
        let mut texts = Vec::new();
        for file in ["train.jsonl", "messy-sharegpt.json", "openai-messages.jsonl", "clean.jsonl"] {
            texts.extend(std::fs::read_to_string(format!("{dir}/{file}")).unwrap().lines().map(str::to_owned));
        }
        texts.extend((0..3000).map(|_| random_text(&mut rng, specials)));
        texts
    }

    /// Text of the kinds a chat dataset holds: words with accents, digits, punctuation, runs of
    /// spaces, newlines and tabs, contractions, emoji, CJK, and the special tokens of the template.
    fn random_text(rng: &mut StdRng, specials: &[String]) -> String {
        const PARTS: [&str; 26] = [
            "Você",
            " é",
            " a",
            " Iara",
            "ção",
            "'s",
            "'ll",
            "don't",
            " 42",
            "2026",
            "3.14",
            " ",
            "  ",
            "\n",
            "\n\n",
            "\t",
            " \n ",
            "!",
            "?!",
            " —",
            "🙂",
            "日本語",
            "x",
            "   end",
            "\u{4}",
            "\u{1d}",
        ];
        let mut out = String::new();
        for _ in 0..rng.random_range(0..40) {
            if !specials.is_empty() && rng.random_range(0..12) == 0 {
                out.push_str(&specials[rng.random_range(0..specials.len())]);
            } else {
                out.push_str(PARTS[rng.random_range(0..PARTS.len())]);
            }
        }
        out
    }

    #[test]
    fn counts_equal_the_tokenizers_crate_on_random_and_real_text() {
        let tokenizer = tokenizer();
        let specials = FastCounter::from_tokenizer(&tokenizer).unwrap().added;
        check_against(&tokenizer, &texts(&specials));
    }

    /// The same with the real SmolLM2 tokenizer (49,152 tokens, 48,900 merges) when the model
    /// cache holds it (`.ci/run` pulls it); says that it skips otherwise.
    #[test]
    fn counts_equal_the_tokenizers_crate_with_smollm2_when_cached() {
        let cache = std::env::var_os("PHASEGATE_MODEL_CACHE").map(std::path::PathBuf::from);
        let path = cache.map(|c| c.join("smollm2-135m-instruct.gguf")).filter(|p| p.is_file());
        let Some(path) = path else {
            eprintln!("skipping: smollm2-135m-instruct is not in $PHASEGATE_MODEL_CACHE");
            return;
        };
        let tokenizer = gguf_tokenizer(&path);
        let specials = FastCounter::from_tokenizer(&tokenizer).unwrap().added;
        check_against(&tokenizer, &texts(&specials));
    }

    #[test]
    fn other_pipelines_are_not_claimed() {
        let mut json: Value = serde_json::from_str(&tokenizer().to_string(false).unwrap()).unwrap();
        json["pre_tokenizer"] = serde_json::json!({"type": "Whitespace"});
        let other: Tokenizer = json.to_string().parse().unwrap();
        assert!(FastCounter::from_tokenizer(&other).is_none());
    }
}
