//! Eval responses files: one entry per generated response, with the automatic-zero triggers the
//! eval found. Truncation is the file's `truncated` flag when present, else a heuristic: the text
//! does not end like a sentence.

use super::json::At;
use super::scores::common;
use super::{ImportError, ImportedPart, ImportedResponse};
use crate::rubric::AutoZeroHit;

/// Characters a complete answer may end with.
const SENTENCE_ENDS: &[char] = &['.', '!', '?', '…', '"', '”', '»', ')', ']', '*', '`', '\''];

pub(crate) fn responses_file(at: &At<'_>, part: &mut ImportedPart) -> Result<(), ImportError> {
    for r in at.field("results")?.array()? {
        let response = r.field("response")?.str()?.to_owned();
        let truncated = match r.get("truncated") {
            Some(flag) => flag.bool()?,
            None => looks_truncated(&response),
        };
        let mut auto_zero = Vec::new();
        if let Some(list) = r.get("d4_auto_fail") {
            for trigger in list.array()? {
                auto_zero.push(AutoZeroHit { dimension: "D4".to_owned(), trigger: trigger.str()?.to_owned() });
            }
        }
        if let Some(score) = r.get("d4_auto_score") {
            score.f64()?;
        }
        part.responses.push(ImportedResponse {
            qid: r.field("qid")?.str()?.to_owned(),
            question: r.opt_str("question")?.map(str::to_owned),
            response,
            seed: r.get("seed").map(|s| s.u64()).transpose()?,
            truncated,
            auto_zero,
            field: r.field_name("qid"),
        });
    }
    if let Some(ts) = at.opt_str("timestamp")? {
        part.notes.push(format!("eval run at {ts}"));
    }
    common(at, part)
}

/// True when the response stops mid-sentence (what a low `max_new_tokens` does).
pub(crate) fn looks_truncated(response: &str) -> bool {
    let text = response.trim_end();
    !text.is_empty() && !text.ends_with(SENTENCE_ENDS)
}
