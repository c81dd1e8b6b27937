//! Reading a judge reply into scores. Tolerates code fences, prose around the JSON, single quotes,
//! scores written as strings ("2", "2/2") or as bare numbers, keys in any case, a `scores` wrapper
//! and a list form; anything else is a clear error naming the dimension and the value.

use super::lenient::read_value;
use crate::suite::{DimId, Dimension, Rubric};
use serde_json::{Map, Value};

/// One dimension as the judge scored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JudgeDim {
    pub id: DimId,
    pub score: u32,
    pub reason: String,
}

/// A parsed judge reply: every rubric dimension, D1..D5 in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JudgeScores {
    pub dims: Vec<JudgeDim>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JudgeReplyError {
    #[error("judge reply holds no JSON object: {excerpt:?}")]
    NoJson { excerpt: String },
    #[error("judge reply has no score for {id}: {excerpt:?}")]
    MissingDimension { id: DimId, excerpt: String },
    #[error("judge score for {id} is not an integer: {value}")]
    BadScore { id: DimId, value: String },
    #[error("judge score for {id} is {score}, outside {min}..={max}")]
    OutOfRange { id: DimId, score: i64, min: u32, max: u32 },
}

/// Parse a judge reply against the rubric it was given.
pub fn parse_reply(reply: &str, rubric: &Rubric) -> Result<JudgeScores, JudgeReplyError> {
    let object = first_object(reply).ok_or_else(|| JudgeReplyError::NoJson { excerpt: short(reply) })?;
    let entries = entries(&object);
    let dims = rubric.dimensions().iter().map(|d| dim(d, &entries, reply)).collect::<Result<_, _>>()?;
    Ok(JudgeScores { dims })
}

/// The first `{` that starts a readable object, anywhere in the reply (fences and prose skipped).
pub(super) fn first_object(reply: &str) -> Option<Map<String, Value>> {
    reply.char_indices().filter(|(_, c)| *c == '{').find_map(|(at, _)| match read_value(&reply[at..]) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    })
}

/// Per-dimension entries keyed by lowercase key, from `{"D1": ..}`, `{"scores": {..}}` or
/// `{"scores": [{"dimension": "D1", ..}]}`.
pub(super) fn entries(object: &Map<String, Value>) -> Map<String, Value> {
    let inner = object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("scores") || k.eq_ignore_ascii_case("dimensions"))
        .map(|(_, v)| v);
    match inner {
        Some(Value::Object(map)) => lowercase_keys(map),
        Some(Value::Array(items)) => items.iter().filter_map(list_entry).collect(),
        _ => lowercase_keys(object),
    }
}

fn lowercase_keys(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter().map(|(k, v)| (k.trim().to_lowercase(), v.clone())).collect()
}

fn list_entry(item: &Value) -> Option<(String, Value)> {
    let map = item.as_object()?;
    let id = ["id", "dimension", "dim", "name"].iter().find_map(|k| field(map, k).and_then(Value::as_str))?;
    Some((id.trim().to_lowercase(), item.clone()))
}

pub(super) fn field<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v)
}

fn dim(d: &Dimension, entries: &Map<String, Value>, reply: &str) -> Result<JudgeDim, JudgeReplyError> {
    let entry = [d.id.as_str().to_lowercase(), d.name.to_lowercase()]
        .iter()
        .find_map(|k| entries.get(k))
        .ok_or_else(|| JudgeReplyError::MissingDimension { id: d.id.clone(), excerpt: short(reply) })?;
    let (raw, reason) = match entry {
        Value::Object(map) => (
            field(map, "score")
                .ok_or_else(|| JudgeReplyError::MissingDimension { id: d.id.clone(), excerpt: short(reply) })?,
            ["reason", "justification", "motivo"]
                .iter()
                .find_map(|k| field(map, k).and_then(Value::as_str))
                .unwrap_or_default(),
        ),
        other => (other, ""),
    };
    Ok(JudgeDim { id: d.id.clone(), score: score(d, raw)?, reason: reason.trim().to_owned() })
}

fn score(d: &Dimension, raw: &Value) -> Result<u32, JudgeReplyError> {
    let bad = || JudgeReplyError::BadScore { id: d.id.clone(), value: raw.to_string() };
    let number = match raw {
        Value::Number(n) => n.as_f64(),
        // "2", "2/2", "2 pontos"
        Value::String(s) => {
            s.trim().split(|c: char| c == '/' || c.is_whitespace()).next().and_then(|head| head.parse::<f64>().ok())
        }
        _ => None,
    }
    .ok_or_else(bad)?;
    if number.fract() != 0.0 || !number.is_finite() {
        return Err(bad());
    }
    let int = number as i64;
    if int < i64::from(d.min) || int > i64::from(d.max) {
        return Err(JudgeReplyError::OutOfRange { id: d.id.clone(), score: int, min: d.min, max: d.max });
    }
    u32::try_from(int).map_err(|_| bad())
}

pub(super) fn short(text: &str) -> String {
    const MAX: usize = 80;
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &flat[..at]),
        None => flat,
    }
}
