//! Normalised text and example identity.
//!
//! Two examples are the same example when their normalised turns are equal: Unicode NFC, runs of
//! whitespace collapsed to one space, ends trimmed. Case and punctuation count (they are what the
//! model learns). The fuzzy checks (near-duplicates, contamination) work on `words`, which also
//! fold case and drop accents and punctuation.

use std::borrow::Cow;

use sha2::{Digest, Sha256};
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

use super::example::Example;

/// NFC, whitespace collapsed, trimmed.
pub fn normalise(text: &str) -> String {
    let nfc = nfc(text);
    let mut out = String::with_capacity(nfc.len());
    for word in nfc.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// `text` in NFC; most text already is, and the quick check says so without composing.
fn nfc(text: &str) -> Cow<'_, str> {
    match is_nfc_quick(text.chars()) {
        IsNormalized::Yes => Cow::Borrowed(text),
        IsNormalized::No | IsNormalized::Maybe => Cow::Owned(text.nfc().collect()),
    }
}

/// Lower-cased words with accents and punctuation dropped: what fuzzy matching compares
/// ("Você" and "voce" are one word, as people type both).
pub fn words(text: &str) -> Vec<String> {
    let folded: String = text.nfd().filter(|c| !is_combining_mark(*c)).flat_map(char::to_lowercase).collect();
    folded.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_owned).collect()
}

/// FNV-1a hashes of `words(text)`, streamed without allocating a string per word: the hot
/// path of the near-duplicate and contamination checks. `hash_words(t) == words(t).map(fnv64)`.
pub fn hash_words(text: &str, out: &mut Vec<u64>) {
    const START: u64 = 0xcbf2_9ce4_8422_2325;
    let mut h = START;
    let mut in_word = false;
    let push = |c: char, h: &mut u64| {
        let mut buf = [0u8; 4];
        for b in c.encode_utf8(&mut buf).bytes() {
            *h ^= u64::from(b);
            *h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    let end = |in_word: &mut bool, h: &mut u64, out: &mut Vec<u64>| {
        if *in_word {
            out.push(*h);
        }
        *in_word = false;
        *h = START;
    };
    for c in text.chars() {
        if c.is_ascii() {
            if c.is_ascii_alphanumeric() {
                push(c.to_ascii_lowercase(), &mut h);
                in_word = true;
            } else {
                end(&mut in_word, &mut h, out);
            }
            continue;
        }
        unicode_normalization::char::decompose_canonical(c, |d| {
            if is_combining_mark(d) {
                return;
            }
            for l in d.to_lowercase() {
                if l.is_alphanumeric() {
                    push(l, &mut h);
                    in_word = true;
                } else {
                    end(&mut in_word, &mut h, out);
                }
            }
        });
    }
    end(&mut in_word, &mut h, out);
}

/// The identity of an example: SHA-256 over its normalised turns, roles included.
pub fn example_digest(example: &Example) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for turn in &example.turns {
        hasher.update(turn.role.as_str().as_bytes());
        hasher.update([0]);
        // The bytes of `normalise(&turn.content)`, fed without building the string.
        for (i, word) in nfc(&turn.content).split_whitespace().enumerate() {
            if i > 0 {
                hasher.update(b" ");
            }
            hasher.update(word.as_bytes());
        }
        hasher.update([0]);
    }
    hasher.finalize().into()
}

/// Digest of a whole dataset: its examples' digests, in order.
pub fn dataset_digest(digests: &[[u8; 32]]) -> String {
    let mut hasher = Sha256::new();
    for d in digests {
        hasher.update(d);
    }
    hex(&hasher.finalize())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A 64-bit FNV-1a hash: stable across runs and platforms, unlike std's `RandomState`, so
/// MinHash signatures (and thus near-duplicate verdicts) are deterministic.
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::example::{Position, Role, Turn};

    fn example(turns: &[(Role, &str)]) -> Example {
        Example {
            position: Position::Line(1),
            turns: turns.iter().map(|(r, c)| Turn { role: r.clone(), content: (*c).to_owned() }).collect(),
        }
    }

    #[test]
    fn normalise_composes_and_collapses_whitespace() {
        // "é" as e + combining acute, with CRLF and tabs around.
        assert_eq!(normalise("  Voce\u{302}\r\n\t é  "), "Você é");
    }

    #[test]
    fn words_fold_case_and_drop_punctuation() {
        assert_eq!(words("Me fala sobre VOCÊ!"), ["me", "fala", "sobre", "voce"]);
        assert_eq!(words("me  fala sobre voce"), words("Me fala sobre você."));
    }

    #[test]
    fn hashed_words_are_the_hashes_of_the_words() {
        for text in ["Me fala sobre VOCÊ!", "  Ação,  pão e feijão\r\n — 42 vezes? ", "", "Voce\u{302} ÉRA ﬁm İstanbul"]
        {
            let mut hashed = Vec::new();
            hash_words(text, &mut hashed);
            let expected: Vec<u64> = words(text).iter().map(|w| fnv64(w.as_bytes())).collect();
            assert_eq!(hashed, expected, "{text:?}");
        }
    }

    #[test]
    fn digest_ignores_whitespace_and_composition_but_not_roles_or_case() {
        let a = example(&[(Role::User, "Oi,  tudo bem?"), (Role::Assistant, "Tudo e\u{301}")]);
        let b = example(&[(Role::User, "Oi, tudo bem?\r\n"), (Role::Assistant, "Tudo é")]);
        let c = example(&[(Role::User, "oi, tudo bem?"), (Role::Assistant, "Tudo é")]);
        let d = example(&[(Role::Assistant, "Oi, tudo bem?"), (Role::Assistant, "Tudo é")]);
        assert_eq!(example_digest(&a), example_digest(&b));
        assert_ne!(example_digest(&a), example_digest(&c));
        assert_ne!(example_digest(&a), example_digest(&d));
    }
}
