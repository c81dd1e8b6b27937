//! The OpenAI chat-completions wire format, pure: the request body of a judge call and the reply
//! text read back from the answer.

use serde_json::{Value, json};

use phasegate_eval::derive_seed;

use super::super::backend::{JUDGE_TEMPERATURE, JUDGE_TOP_P, JudgeCall};

/// Characters of a server's answer quoted in an error.
const EXCERPT_CHARS: usize = 200;

/// The seed sent with a call: derived from the run's seed and the call id, as the in-process judge
/// derives each prompt's, so each call draws its own stream and a rerun draws the same. Kept to 31
/// bits: servers read `seed` as a 32-bit or signed integer.
pub(crate) fn call_seed(seed: u64, call_id: &str) -> u64 {
    derive_seed(seed, call_id, 0) & 0x7fff_ffff
}

/// `POST /chat/completions` body of one judge call.
pub(crate) fn request_body(model: &str, call: &JudgeCall, seed: u64, max_tokens: usize) -> Value {
    json!({
        "model": model,
        "messages": [
            { "role": "system", "content": call.prompt.system },
            { "role": "user", "content": call.prompt.user },
        ],
        "temperature": JUDGE_TEMPERATURE,
        "top_p": JUDGE_TOP_P,
        "max_tokens": max_tokens,
        "seed": call_seed(seed, &call.id),
        "stream": false,
    })
}

/// Why an answer with a success status is not a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReplyError {
    NotJson,
    NoContent,
}

/// `choices[0].message.content` of a chat-completions answer.
pub(crate) fn reply_content(body: &[u8]) -> Result<String, ReplyError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| ReplyError::NotJson)?;
    value["choices"][0]["message"]["content"].as_str().map(str::to_owned).ok_or(ReplyError::NoContent)
}

/// The start of an answer, on one line, for an error message.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None if one_line.is_empty() => "(empty body)".to_owned(),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_content_reads_the_first_choice_or_says_what_is_wrong() {
        let cases: [(&str, Result<&str, ReplyError>); 5] = [
            (r#"{"choices":[{"message":{"role":"assistant","content":"{\"D1\":1}"}}]}"#, Ok("{\"D1\":1}")),
            (r#"{"choices":[{"message":{"content":"a"}},{"message":{"content":"b"}}]}"#, Ok("a")),
            (r#"{"choices":[]}"#, Err(ReplyError::NoContent)),
            (r#"{"error":{"message":"no"}}"#, Err(ReplyError::NoContent)),
            ("<html>bad gateway</html>", Err(ReplyError::NotJson)),
        ];
        for (body, expected) in cases {
            assert_eq!(reply_content(body.as_bytes()), expected.map(str::to_owned), "{body}");
        }
    }

    #[test]
    fn call_seeds_are_stable_31_bit_and_differ_by_call_and_seed() {
        let a = call_seed(1, "Q1/0");
        assert_eq!(a, call_seed(1, "Q1/0"));
        assert_ne!(a, call_seed(1, "Q1/1"));
        assert_ne!(a, call_seed(2, "Q1/0"));
        assert!([a, call_seed(2, "Q1/0")].iter().all(|s| *s <= 0x7fff_ffff));
    }

    #[test]
    fn excerpts_are_one_line_and_short() {
        assert_eq!(excerpt(b"a\n  b"), "a b");
        assert_eq!(excerpt(b""), "(empty body)");
        assert_eq!(excerpt("x".repeat(500).as_bytes()).chars().count(), EXCERPT_CHARS + 1);
    }
}
