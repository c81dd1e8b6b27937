//! The shape every dataset format is read into: examples made of role-tagged turns.

use serde::{Deserialize, Serialize};

/// Which file format a dataset was detected as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `{"conversations": [{"from": "human"|"gpt"|"system", "value": ...}]}`
    Sharegpt,
    /// `{"messages": [{"role": "system"|"user"|"assistant", "content": ...}]}`
    Messages,
    /// `{"instruction", "input", "output"}`
    Alpaca,
    /// `{"prompt", "completion"}`
    PromptCompletion,
    /// `{"text"}`
    Text,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Sharegpt => "sharegpt",
            Format::Messages => "messages",
            Format::Alpaca => "alpaca",
            Format::PromptCompletion => "prompt_completion",
            Format::Text => "text",
        }
    }
}

/// How a file is laid out: one JSON array, or one JSON value per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    JsonArray,
    Jsonl,
}

/// Where a record sits in its file: a 1-based line of a JSONL file, or a 0-based index of a
/// JSON array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    Line(usize),
    Index(usize),
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Line(n) => write!(f, "line {n}"),
            Position::Index(n) => write!(f, "index {n}"),
        }
    }
}

/// The speaker of a turn, after each format's spellings are mapped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
    /// A `{text}` record: raw text, no chat roles.
    Text,
    /// A role this format does not know, as written.
    Other(String),
}

impl Role {
    pub fn as_str(&self) -> &str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Text => "text",
            Role::Other(name) => name,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub role: Role,
    /// The text as the file has it (CRLF already turned into LF).
    pub content: String,
}

/// One training example.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    pub position: Position,
    pub turns: Vec<Turn>,
}

impl Example {
    /// The user turns, joined: what the model is asked.
    pub fn prompt(&self) -> String {
        self.joined(|r| matches!(r, Role::User | Role::Text))
    }

    /// The assistant turns, joined: what the model learns to say.
    pub fn answer(&self) -> String {
        self.joined(|r| *r == Role::Assistant)
    }

    /// The system turn's text, if the example has one.
    pub fn system(&self) -> Option<&str> {
        self.turns.iter().find(|t| t.role == Role::System).map(|t| t.content.as_str())
    }

    fn joined(&self, keep: impl Fn(&Role) -> bool) -> String {
        let parts: Vec<&str> = self.turns.iter().filter(|t| keep(&t.role)).map(|t| t.content.as_str()).collect();
        parts.join("\n")
    }
}

/// A record that could not be read as an example of the file's format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MalformedRecord {
    pub position: Position,
    /// The field at fault, as a path (`conversations[2].value`), or `(record)`.
    pub field: String,
    pub problem: String,
}

/// One parsed dataset file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dataset {
    /// The file's name as the caller gave it (only used in messages).
    pub file: String,
    pub format: Format,
    pub layout: Layout,
    pub examples: Vec<Example>,
    pub malformed: Vec<MalformedRecord>,
}

/// A one-exchange example (user, then assistant) at line 1: the checks' tests build data with it.
#[cfg(test)]
pub(crate) fn chat(user: &str, answer: &str) -> Example {
    Example {
        position: Position::Line(1),
        turns: vec![
            Turn { role: Role::User, content: user.into() },
            Turn { role: Role::Assistant, content: answer.into() },
        ],
    }
}
