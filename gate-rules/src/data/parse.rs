//! Reading dataset bytes into examples: the format is detected from the records' shape.
//!
//! Real exports are messy, so the reader accepts a UTF-8 BOM, CRLF line ends (in the file and
//! inside values), blank lines, unknown extra fields (`id`, `source`, `weight`, ...), the role
//! spellings tools emit (`from: "user"/"assistant"` in ShareGPT, `role`/`content` keys inside
//! `conversations`, content given as a list of text parts) and Alpaca's empty `input`. A record
//! that still cannot be read becomes a [`MalformedRecord`] naming its line or index and field;
//! only a file that cannot be read at all is a [`DatasetError`].

use serde_json::{Map, Value};

use super::example::{Dataset, Example, Format, Layout, MalformedRecord, Position, Role, Turn};
use super::par;

/// A dataset file that cannot be linted at all. Messages name the file, line or index, and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatasetError {
    #[error("failed to read dataset {file}: line {line} is not valid UTF-8")]
    Encoding { file: String, line: usize },
    #[error("failed to read dataset {file}: the file is empty")]
    Empty { file: String },
    #[error("failed to parse dataset {file} as a JSON array: line {line}, column {column}: {message}")]
    Json { file: String, line: usize, column: usize, message: String },
    #[error(
        "failed to read dataset {file}: {position}: no known format: {found}\nhint: records need a field `conversations` (ShareGPT), `messages`, `instruction` (Alpaca), `prompt` or `text`"
    )]
    UnknownFormat { file: String, position: Position, found: String },
}

/// Parses one dataset file; `file` only names it in messages. Records are parsed on all cores.
pub fn parse_dataset(file: &str, bytes: &[u8]) -> Result<Dataset, DatasetError> {
    let text = decode(file, bytes)?;
    let trimmed = text.trim_start();
    if trimmed.trim_end().is_empty() {
        return Err(DatasetError::Empty { file: file.to_owned() });
    }
    let (layout, format, records) = if trimmed.starts_with('[') {
        let values = json_array(file, text)?;
        let format = detect(file, values.iter().map(|(p, v)| (*p, Ok(v.clone()))))?;
        (Layout::JsonArray, format, par::map(&values, |(position, value)| record(format, *position, value)))
    } else {
        let lines: Vec<(Position, &str)> = text
            .split('\n')
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(i, line)| (Position::Line(i + 1), line.trim_end_matches('\r')))
            .collect();
        // Lazily: detection stops at the first record with a known shape.
        let parsed =
            lines.iter().map(|(p, line)| (*p, serde_json::from_str::<Value>(line).map_err(|e| json_problem(&e))));
        let format = detect(file, parsed)?;
        let records = par::map(&lines, |(position, line)| match serde_json::from_str::<Value>(line) {
            Ok(value) => record(format, *position, &value),
            Err(e) => Err(MalformedRecord { position: *position, field: "(record)".into(), problem: json_problem(&e) }),
        });
        (Layout::Jsonl, format, records)
    };
    let mut examples = Vec::with_capacity(records.len());
    let mut malformed = Vec::new();
    for r in records {
        match r {
            Ok(example) => examples.push(example),
            Err(m) => malformed.push(m),
        }
    }
    Ok(Dataset { file: file.to_owned(), format, layout, examples, malformed })
}

fn record(format: Format, position: Position, value: &Value) -> Result<Example, MalformedRecord> {
    read_example(format, value).map(|turns| Example { position, turns }).map_err(|(field, problem)| MalformedRecord {
        position,
        field,
        problem,
    })
}

fn decode<'a>(file: &str, bytes: &'a [u8]) -> Result<&'a str, DatasetError> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()].iter().filter(|b| **b == b'\n').count() + 1;
        DatasetError::Encoding { file: file.to_owned(), line }
    })
}

fn json_problem(e: &serde_json::Error) -> String {
    format!("not valid JSON: {}", e.to_string().split(" at line").next().unwrap_or_default())
}

fn json_array(file: &str, text: &str) -> Result<Vec<(Position, Value)>, DatasetError> {
    let values: Vec<Value> = serde_json::from_str(text).map_err(|e| DatasetError::Json {
        file: file.to_owned(),
        line: e.line(),
        column: e.column(),
        message: e.to_string().split(" at line").next().unwrap_or_default().to_owned(),
    })?;
    Ok(values.into_iter().enumerate().map(|(i, v)| (Position::Index(i), v)).collect())
}

/// The format of the first record that has a known shape (records are looked at in order and
/// only until one is found).
fn detect(
    file: &str,
    records: impl Iterator<Item = (Position, Result<Value, String>)>,
) -> Result<Format, DatasetError> {
    let mut first: Option<(Position, Result<Value, String>)> = None;
    for (position, record) in records {
        if let Some(format) = record.as_ref().ok().and_then(Value::as_object).and_then(shape) {
            return Ok(format);
        }
        first.get_or_insert((position, record));
    }
    let unknown = |position, found| DatasetError::UnknownFormat { file: file.to_owned(), position, found };
    match first {
        Some((position, Ok(Value::Object(map)))) => {
            let fields: Vec<String> = map.keys().map(|k| format!("`{k}`")).collect();
            let found = if fields.is_empty() {
                "the record has no fields".into()
            } else {
                format!("found {}", fields.join(", "))
            };
            Err(unknown(position, found))
        }
        Some((position, Ok(_))) => Err(unknown(position, "the record is not a JSON object".into())),
        Some((position, Err(problem))) => Err(unknown(position, problem)),
        None => Err(DatasetError::Empty { file: file.to_owned() }),
    }
}

fn shape(map: &Map<String, Value>) -> Option<Format> {
    if map.contains_key("conversations") {
        Some(Format::Sharegpt)
    } else if map.contains_key("messages") {
        Some(Format::Messages)
    } else if map.contains_key("instruction") {
        Some(Format::Alpaca)
    } else if map.contains_key("prompt") {
        Some(Format::PromptCompletion)
    } else if map.contains_key("text") {
        Some(Format::Text)
    } else {
        None
    }
}

/// A field path and what is wrong with it.
type Bad = (String, String);

fn read_example(format: Format, value: &Value) -> Result<Vec<Turn>, Bad> {
    let Some(map) = value.as_object() else {
        return Err(("(record)".into(), format!("is not a JSON object (the file is {})", format.as_str())));
    };
    match format {
        Format::Sharegpt => read_turns(map, "conversations", &["from", "role"], &["value", "content"], sharegpt_role),
        Format::Messages => read_turns(map, "messages", &["role", "from"], &["content", "value"], messages_role),
        Format::Alpaca => read_alpaca(map),
        Format::PromptCompletion => {
            Ok(vec![turn(Role::User, string(map, "prompt")?), turn(Role::Assistant, string(map, "completion")?)])
        }
        Format::Text => Ok(vec![turn(Role::Text, string(map, "text")?)]),
    }
}

fn read_turns(
    map: &Map<String, Value>,
    list: &str,
    role_keys: &[&str],
    content_keys: &[&str],
    role: fn(&str) -> Role,
) -> Result<Vec<Turn>, Bad> {
    let Some(items) = map.get(list).and_then(Value::as_array) else {
        return Err((list.to_owned(), "is missing or not an array of turns".into()));
    };
    let mut turns = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = |key: &str| format!("{list}[{i}].{key}");
        let Some(obj) = item.as_object() else {
            return Err((format!("{list}[{i}]"), "is not an object".into()));
        };
        let Some(name) = role_keys.iter().find_map(|k| obj.get(*k)).and_then(Value::as_str) else {
            return Err((field(role_keys[0]), "is missing or not a string".into()));
        };
        let content = match content_keys.iter().find_map(|k| obj.get(*k)) {
            Some(value) => content_text(value).ok_or_else(|| (field(content_keys[0]), "is not a string".into()))?,
            None => return Err((field(content_keys[0]), "is missing".into())),
        };
        turns.push(turn(role(name), content));
    }
    Ok(turns)
}

/// A string, a list of `{"type": "text", "text": ...}` parts, or null (an empty turn).
fn content_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Null => Some(String::new()),
        Value::Array(parts) => {
            let texts: Option<Vec<&str>> =
                parts.iter().map(|p| p.as_str().or_else(|| p.get("text").and_then(Value::as_str))).collect();
            texts.map(|t| t.join(""))
        }
        _ => None,
    }
}

fn sharegpt_role(name: &str) -> Role {
    match name.trim().to_ascii_lowercase().as_str() {
        "human" | "user" => Role::User,
        "gpt" | "assistant" | "bot" | "chatgpt" | "model" => Role::Assistant,
        "system" => Role::System,
        _ => Role::Other(name.to_owned()),
    }
}

fn messages_role(name: &str) -> Role {
    match name.trim().to_ascii_lowercase().as_str() {
        "user" | "human" => Role::User,
        "assistant" | "gpt" => Role::Assistant,
        "system" | "developer" => Role::System,
        _ => Role::Other(name.to_owned()),
    }
}

fn read_alpaca(map: &Map<String, Value>) -> Result<Vec<Turn>, Bad> {
    let instruction = string(map, "instruction")?;
    let input = optional_string(map, "input")?;
    let output = string(map, "output")?;
    let mut turns = Vec::with_capacity(3);
    if let Some(system) = optional_string(map, "system")?.filter(|s| !s.trim().is_empty()) {
        turns.push(turn(Role::System, system));
    }
    let prompt = match input.filter(|i| !i.trim().is_empty()) {
        Some(input) => format!("{instruction}\n\n{input}"),
        None => instruction,
    };
    turns.push(turn(Role::User, prompt));
    turns.push(turn(Role::Assistant, output));
    Ok(turns)
}

fn string(map: &Map<String, Value>, key: &str) -> Result<String, Bad> {
    match map.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err((key.to_owned(), "is not a string".into())),
        None => Err((key.to_owned(), "is missing".into())),
    }
}

fn optional_string(map: &Map<String, Value>, key: &str) -> Result<Option<String>, Bad> {
    match map.get(key) {
        Some(Value::String(s)) => Ok(Some(s.clone())),
        None | Some(Value::Null) => Ok(None),
        Some(_) => Err((key.to_owned(), "is not a string".into())),
    }
}

fn turn(role: Role, content: String) -> Turn {
    let content = if content.contains('\r') { content.replace("\r\n", "\n") } else { content };
    Turn { role, content }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Dataset {
        parse_dataset("train.jsonl", text.as_bytes()).unwrap()
    }

    fn roles(example: &Example) -> Vec<&str> {
        example.turns.iter().map(|t| t.role.as_str()).collect()
    }

    #[test]
    fn each_format_is_detected_by_shape() {
        let table = [
            (r#"{"conversations":[{"from":"human","value":"a"},{"from":"gpt","value":"b"}]}"#, Format::Sharegpt),
            (r#"{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}"#, Format::Messages),
            (r#"{"instruction":"a","input":"","output":"b"}"#, Format::Alpaca),
            (r#"{"prompt":"a","completion":"b"}"#, Format::PromptCompletion),
            (r#"{"text":"a b"}"#, Format::Text),
        ];
        for (line, format) in table {
            let jsonl = parse(line);
            assert_eq!(jsonl.format, format, "{line}");
            assert_eq!(jsonl.layout, Layout::Jsonl);
            let array = parse_dataset("train.json", format!("[{line}]").as_bytes()).unwrap();
            assert_eq!((array.format, array.layout), (format, Layout::JsonArray));
            assert_eq!(array.examples[0].position, Position::Index(0));
            assert_eq!(
                array.examples,
                jsonl
                    .examples
                    .iter()
                    .map(|e| Example { position: Position::Index(0), ..e.clone() })
                    .collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn messy_exports_are_accepted() {
        let text = "\u{feff}{\"id\":7,\"source\":\"x\",\"weight\":1,\"conversations\":[{\"from\":\"system\",\"value\":\"s\"},{\"from\":\"user\",\"value\":\"a\\r\\nb\"},{\"from\":\"assistant\",\"value\":\"c\"}]}\r\n\r\n{\"conversations\":[{\"role\":\"user\",\"content\":\"d\"},{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"e\"}]}]}\r\n\n";
        let d = parse(text);
        assert!(d.malformed.is_empty(), "{:?}", d.malformed);
        assert_eq!(d.examples.len(), 2);
        assert_eq!(roles(&d.examples[0]), ["system", "user", "assistant"]);
        assert_eq!(d.examples[0].turns[1].content, "a\nb");
        assert_eq!(d.examples[1].position, Position::Line(3));
        assert_eq!(d.examples[1].turns[1].content, "e");
    }

    #[test]
    fn alpaca_input_joins_the_instruction_only_when_present() {
        let d = parse(
            "{\"instruction\":\"a\",\"input\":\"\",\"output\":\"b\"}\n{\"instruction\":\"a\",\"input\":\"x\",\"output\":\"b\",\"system\":\"s\"}",
        );
        assert_eq!(d.examples[0].turns[0].content, "a");
        assert_eq!(roles(&d.examples[1]), ["system", "user", "assistant"]);
        assert_eq!(d.examples[1].turns[1].content, "a\n\nx");
    }

    #[test]
    fn bad_records_are_reported_with_line_and_field() {
        let text = [
            r#"{"conversations":[{"from":"human","value":"a"},{"from":"gpt","value":"b"}]}"#,
            r#"{"conversations":[{"from":"human","value":"a"},{"from":"gpt","value":3}]}"#,
            r#"{"conversations": [ {"from":"human""#,
            r#"{"messages":[]}"#,
            r#"["not", "an", "object"]"#,
        ]
        .join("\n");
        let d = parse(&text);
        assert_eq!(d.examples.len(), 1);
        let found: Vec<(Position, &str)> = d.malformed.iter().map(|m| (m.position, m.field.as_str())).collect();
        assert_eq!(
            found,
            [
                (Position::Line(2), "conversations[1].value"),
                (Position::Line(3), "(record)"),
                (Position::Line(4), "conversations"),
                (Position::Line(5), "(record)"),
            ]
        );
    }

    #[test]
    fn unreadable_files_are_errors_naming_file_and_place() {
        let cases: [(&[u8], &str); 4] = [
            (b"", "empty"),
            (b"{\"a\":1}\n{\"question\":\"q\",\"answer\":\"r\"}", "line 1: no known format: found `a`"),
            (b"[{\"text\": \"a\"},\n {\"text\": }]", "line 2, column"),
            (b"{\"text\":\"a\"}\n{\"text\":\"\xff\"}", "line 2 is not valid UTF-8"),
        ];
        for (bytes, expected) in cases {
            let err = parse_dataset("data/bad.jsonl", bytes).unwrap_err().to_string();
            assert!(err.contains("data/bad.jsonl") && err.contains(expected), "{err}");
        }
    }
}
