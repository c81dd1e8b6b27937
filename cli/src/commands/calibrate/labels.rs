//! Label files: answers with human scores. Two shapes are read, both JSON arrays of objects: the
//! label set's (`{id, qid, category, source, truncated, response, scores: {D1..D5}, reasons,
//! phase?}`) and a plain one (`{qid, response, scores: {dim: n}}`). Every error names the file, the
//! entry and the field.

use std::path::Path;

use serde_json::{Map, Value};

use phasegate_score::Suite;

/// One labelled answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    /// `id`, else `<file>#<index>`.
    pub id: String,
    pub qid: String,
    pub category: Option<String>,
    pub phase: Option<String>,
    pub truncated: bool,
    pub response: String,
    /// Human scores in the rubric's dimension order.
    pub scores: Vec<u32>,
}

/// What is wrong with a label file, naming the file and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid labels {file}: {field}: {problem}")]
pub struct LabelError {
    pub file: String,
    pub field: String,
    pub problem: String,
}

pub fn parse(file: &Path, text: &str, suite: &Suite) -> Result<Vec<Label>, LabelError> {
    let name = file.display().to_string();
    let fail = |field: String, problem: String| LabelError { file: name.clone(), field, problem };
    let value: Value = serde_json::from_str(text).map_err(|e| fail("(file)".into(), e.to_string()))?;
    let entries = value.as_array().ok_or_else(|| fail("(file)".into(), "is not a JSON array".into()))?;
    let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let obj = e.as_object().ok_or_else(|| fail(format!("[{i}]"), "is not an object".into()))?;
            entry(obj, i, &stem, suite).map_err(|(field, problem)| fail(format!("[{i}].{field}"), problem))
        })
        .collect()
}

fn entry(obj: &Map<String, Value>, i: usize, stem: &str, suite: &Suite) -> Result<Label, (String, String)> {
    let qid = string(obj, "qid")?.ok_or(("qid".to_owned(), "is missing".to_owned()))?;
    if suite.question(&qid).is_none() {
        return Err(("qid".into(), format!("{qid:?} is not a question of suite {}", suite.name)));
    }
    let response = string(obj, "response")?.ok_or(("response".to_owned(), "is missing".to_owned()))?;
    let truncated = match obj.get("truncated") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(("truncated".into(), format!("{other} is not true or false"))),
    };
    Ok(Label {
        id: string(obj, "id")?.unwrap_or_else(|| format!("{stem}#{i}")),
        qid,
        category: string(obj, "category")?,
        phase: string(obj, "phase")?,
        truncated,
        response,
        scores: scores(obj, suite)?,
    })
}

/// An optional string field; a number is read as its text (phases are often numbers).
fn string(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, (String, String)> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) if key == "phase" => Ok(Some(n.to_string())),
        Some(other) => Err((key.to_owned(), format!("{other} is not a string"))),
    }
}

fn scores(obj: &Map<String, Value>, suite: &Suite) -> Result<Vec<u32>, (String, String)> {
    let scores = obj.get("scores").and_then(Value::as_object).ok_or(("scores".to_owned(), "is missing".to_owned()))?;
    if let Some(key) = scores.keys().find(|k| suite.rubric.dimension(k).is_none()) {
        return Err((format!("scores.{key}"), format!("is not a dimension of suite {}", suite.name)));
    }
    suite
        .rubric
        .dimensions()
        .iter()
        .map(|d| {
            let field = format!("scores.{}", d.id.as_str());
            let value =
                scores.iter().find(|(k, _)| d.id.is(k)).map(|(_, v)| v).ok_or((field.clone(), "is missing".into()))?;
            let n = value.as_u64().ok_or((field.clone(), format!("{value} is not a whole number")))?;
            if !d.contains(n) {
                return Err((field, format!("{n} is outside {}..={}", d.min, d.max)));
            }
            Ok(n as u32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suite() -> Suite {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/persona-v1/suite.toml");
        Suite::load(&path).unwrap()
    }

    const SCORES: &str = r#"{"D1": 2, "D2": 1, "D3": 2, "D4": 2, "D5": 0}"#;

    #[test]
    fn both_shapes_parse() {
        let full = format!(
            r#"[{{"id": "r1", "qid": "Q1", "category": "bad", "source": "written", "truncated": true,
                 "response": "oi", "scores": {SCORES}, "reasons": {{}}, "phase": 7}}]"#
        );
        let plain = format!(r#"[{{"qid": "Q2", "response": "oi", "scores": {SCORES}}}]"#);
        let a = parse(Path::new("a.json"), &full, &suite()).unwrap();
        assert_eq!((a[0].id.as_str(), a[0].phase.as_deref(), a[0].truncated), ("r1", Some("7"), true));
        assert_eq!(a[0].scores, [2, 1, 2, 2, 0]);
        let b = parse(Path::new("dir/b.json"), &plain, &suite()).unwrap();
        assert_eq!((b[0].id.as_str(), b[0].category.as_deref()), ("b#0", None));
    }

    #[test]
    fn errors_name_file_entry_and_field() {
        let ok = format!(r#"{{"qid": "Q1", "response": "oi", "scores": {SCORES}}}"#);
        let cases = [
            ("{}".to_owned(), "(file): is not a JSON array"),
            (format!("[{ok}, {{\"response\": \"x\"}}]"), "[1].qid: is missing"),
            (format!("[{}]", ok.replace("Q1", "Q9")), "[0].qid: \"Q9\" is not a question"),
            (format!("[{}]", ok.replace("\"D5\": 0", "\"D5\": 3")), "[0].scores.D5: 3 is outside 0..=2"),
            (format!("[{}]", ok.replace("\"D5\": 0", "\"D6\": 0")), "[0].scores.D6: is not a dimension"),
            (format!("[{}]", ok.replace("\"D1\": 2", "\"D1\": \"2\"")), "[0].scores.D1: \"2\" is not a whole number"),
        ];
        for (text, expected) in cases {
            let err = parse(Path::new("l.json"), &text, &suite()).unwrap_err().to_string();
            assert!(err.starts_with("invalid labels l.json: "), "{err}");
            assert!(err.contains(expected), "{err:?} lacks {expected:?}");
        }
    }
}
