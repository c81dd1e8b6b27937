//! An order-preserving JSON tree and a cursor over it that knows its path, so every import error
//! can name the file and the field ("scores[2].d3.score"). Order matters: config keys keep the
//! order the user wrote them in, and serde_json's map would sort them.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::error::ImportError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        serde_json::Number::from_f64(v).map(Json::Number).ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Json>()? {
            entries.push((k, v));
        }
        Ok(Json::Object(entries))
    }
}

impl Json {
    fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }

    /// The value as config text: strings as they are, other scalars as JSON, lists joined.
    pub(crate) fn to_text(&self) -> String {
        match self {
            Json::Null => "null".to_owned(),
            Json::Bool(b) => b.to_string(),
            Json::Number(n) => n.to_string(),
            Json::String(s) => s.clone(),
            Json::Array(items) => items.iter().map(Json::to_text).collect::<Vec<_>>().join(", "),
            Json::Object(entries) => {
                let inner: Vec<String> = entries.iter().map(|(k, v)| format!("{k}: {}", v.to_text())).collect();
                format!("{{{}}}", inner.join(", "))
            }
        }
    }
}

impl Json {
    /// The value as serde_json sees it, for fields read with a serde type (rubric, instrument).
    pub(crate) fn to_value(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => Value::Number(n.clone()),
            Json::String(s) => Value::String(s.clone()),
            Json::Array(items) => Value::Array(items.iter().map(Json::to_value).collect()),
            Json::Object(entries) => Value::Object(entries.iter().map(|(k, v)| (k.clone(), v.to_value())).collect()),
        }
    }
}

pub(crate) fn parse(file: &str, text: &str) -> Result<Json, ImportError> {
    serde_json::from_str(text).map_err(|e| ImportError::Json {
        file: file.to_owned(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}

/// A value with the file and the path it came from.
#[derive(Debug, Clone)]
pub(crate) struct At<'a> {
    pub(crate) file: &'a str,
    pub(crate) path: String,
    pub(crate) value: &'a Json,
}

impl<'a> At<'a> {
    pub(crate) fn root(file: &'a str, value: &'a Json) -> At<'a> {
        At { file, path: String::new(), value }
    }

    fn child(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_owned() } else { format!("{}.{key}", self.path) }
    }

    pub(crate) fn field_name(&self, key: &str) -> String {
        self.child(key)
    }

    /// Name for errors about this value itself.
    pub(crate) fn name(&self) -> String {
        if self.path.is_empty() { "(top level)".to_owned() } else { self.path.clone() }
    }

    pub(crate) fn get(&self, key: &str) -> Option<At<'a>> {
        let Json::Object(entries) = self.value else {
            return None;
        };
        entries.iter().find(|(k, v)| k == key && *v != Json::Null).map(|(_, v)| At {
            file: self.file,
            path: self.child(key),
            value: v,
        })
    }

    pub(crate) fn field(&self, key: &str) -> Result<At<'a>, ImportError> {
        self.get(key).ok_or_else(|| ImportError::MissingField { file: self.file.to_owned(), field: self.child(key) })
    }

    pub(crate) fn wrong(&self, expected: &'static str) -> ImportError {
        ImportError::WrongType {
            file: self.file.to_owned(),
            field: self.name(),
            expected,
            found: self.value.kind().to_owned(),
        }
    }

    pub(crate) fn invalid(&self, reason: String) -> ImportError {
        ImportError::Invalid { file: self.file.to_owned(), field: self.name(), reason }
    }

    pub(crate) fn str(&self) -> Result<&'a str, ImportError> {
        match self.value {
            Json::String(s) => Ok(s),
            _ => Err(self.wrong("a string")),
        }
    }

    pub(crate) fn f64(&self) -> Result<f64, ImportError> {
        match self.value {
            Json::Number(n) => n.as_f64().ok_or_else(|| self.wrong("a finite number")),
            _ => Err(self.wrong("a number")),
        }
    }

    pub(crate) fn u64(&self) -> Result<u64, ImportError> {
        match self.value {
            Json::Number(n) => n.as_u64().ok_or_else(|| self.wrong("a non-negative integer")),
            _ => Err(self.wrong("a non-negative integer")),
        }
    }

    pub(crate) fn bool(&self) -> Result<bool, ImportError> {
        match self.value {
            Json::Bool(b) => Ok(*b),
            _ => Err(self.wrong("true or false")),
        }
    }

    pub(crate) fn array(&self) -> Result<Vec<At<'a>>, ImportError> {
        let Json::Array(items) = self.value else {
            return Err(self.wrong("an array"));
        };
        Ok(items
            .iter()
            .enumerate()
            .map(|(i, v)| At { file: self.file, path: format!("{}[{i}]", self.path), value: v })
            .collect())
    }

    pub(crate) fn entries(&self) -> Result<Vec<(&'a str, At<'a>)>, ImportError> {
        let Json::Object(entries) = self.value else {
            return Err(self.wrong("an object"));
        };
        Ok(entries.iter().map(|(k, v)| (k.as_str(), At { file: self.file, path: self.child(k), value: v })).collect())
    }

    /// The value read as a serde type; a mismatch is an error naming the field.
    pub(crate) fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, ImportError> {
        serde_json::from_value(self.value.to_value()).map_err(|e| self.invalid(e.to_string()))
    }

    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<&'a str>, ImportError> {
        self.get(key).map(|v| v.str()).transpose()
    }

    pub(crate) fn opt_f64(&self, key: &str) -> Result<Option<f64>, ImportError> {
        self.get(key).map(|v| v.f64()).transpose()
    }
}
