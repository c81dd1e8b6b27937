//! A forgiving JSON reader for judge replies. Small models write almost-JSON: single quotes, bare
//! keys, trailing commas, text after the object. This reads one value from the start of the input
//! and ignores whatever follows it.

use serde_json::{Map, Number, Value};

/// Where the reader gave up, as a char offset into the input, and what it expected there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LenientError {
    pub(crate) offset: usize,
    pub(crate) expected: &'static str,
}

/// Read one value from the start of `input` (after whitespace).
pub(crate) fn read_value(input: &str) -> Result<Value, LenientError> {
    let mut reader = Reader { chars: input.chars().collect(), at: 0 };
    reader.value()
}

struct Reader {
    chars: Vec<char>,
    at: usize,
}

impl Reader {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    fn fail<T>(&self, expected: &'static str) -> Result<T, LenientError> {
        Err(LenientError { offset: self.at, expected })
    }

    fn value(&mut self) -> Result<Value, LenientError> {
        self.skip_ws();
        match self.peek() {
            Some('{') => self.object(),
            Some('[') => self.array(),
            Some(q @ ('"' | '\'')) => self.string(q).map(Value::String),
            Some(c) if c == '-' || c.is_ascii_digit() => self.number(),
            Some(c) if c.is_alphabetic() => Ok(self.word()),
            _ => self.fail("a value"),
        }
    }

    fn object(&mut self) -> Result<Value, LenientError> {
        self.at += 1;
        let mut map = Map::new();
        loop {
            self.skip_ws();
            match self.peek() {
                Some('}') => {
                    self.at += 1;
                    return Ok(Value::Object(map));
                }
                Some(',') => self.at += 1,
                Some(_) => {
                    let key = self.key()?;
                    self.skip_ws();
                    if self.peek() != Some(':') {
                        return self.fail("':' after an object key");
                    }
                    self.at += 1;
                    let value = self.value()?;
                    map.insert(key, value);
                }
                None => return self.fail("'}'"),
            }
        }
    }

    fn array(&mut self) -> Result<Value, LenientError> {
        self.at += 1;
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                Some(']') => {
                    self.at += 1;
                    return Ok(Value::Array(items));
                }
                Some(',') => self.at += 1,
                Some(_) => items.push(self.value()?),
                None => return self.fail("']'"),
            }
        }
    }

    fn key(&mut self) -> Result<String, LenientError> {
        match self.peek() {
            Some(q @ ('"' | '\'')) => self.string(q),
            Some(c) if c.is_alphanumeric() || c == '_' => Ok(self.bare()),
            _ => self.fail("an object key"),
        }
    }

    fn bare(&mut self) -> String {
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-') {
            self.at += 1;
        }
        self.chars[start..self.at].iter().collect()
    }

    fn word(&mut self) -> Value {
        let word = self.bare();
        match word.as_str() {
            "true" | "True" => Value::Bool(true),
            "false" | "False" => Value::Bool(false),
            "null" | "None" => Value::Null,
            _ => Value::String(word),
        }
    }

    fn number(&mut self) -> Result<Value, LenientError> {
        let start = self.at;
        self.at += 1;
        while self.peek().is_some_and(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')) {
            self.at += 1;
        }
        let text: String = self.chars[start..self.at].iter().collect();
        if let Ok(int) = text.parse::<i64>() {
            return Ok(Value::Number(int.into()));
        }
        match text.parse::<f64>().ok().and_then(Number::from_f64) {
            Some(n) => Ok(Value::Number(n)),
            None => {
                self.at = start;
                self.fail("a number")
            }
        }
    }

    fn string(&mut self, quote: char) -> Result<String, LenientError> {
        self.at += 1;
        let mut out = String::new();
        while let Some(c) = self.peek() {
            self.at += 1;
            match c {
                '\\' => out.push(self.escape()),
                c if c == quote && self.closes(quote) => return Ok(out),
                c => out.push(c),
            }
        }
        self.fail("a closing quote")
    }

    /// A double quote always closes. A single quote closes only before a delimiter, so the
    /// apostrophe in `'it's fine'` stays inside the string.
    fn closes(&self, quote: char) -> bool {
        if quote == '"' {
            return true;
        }
        let next = self.chars[self.at..].iter().find(|c| !c.is_whitespace());
        matches!(next, None | Some(',' | '}' | ']' | ':'))
    }

    fn escape(&mut self) -> char {
        let Some(c) = self.peek() else { return '\\' };
        self.at += 1;
        match c {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            'u' => self.unicode_escape(),
            other => other,
        }
    }

    fn unicode_escape(&mut self) -> char {
        let hex: String = self.chars.iter().skip(self.at).take(4).collect();
        match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
            Some(c) if hex.len() == 4 => {
                self.at += 4;
                c
            }
            _ => '\u{fffd}',
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_strict_json() {
        let v = read_value(r#"{"D1": {"score": 2, "reason": "ok \"quoted\""}}"#).unwrap();
        assert_eq!(v, json!({"D1": {"score": 2, "reason": "ok \"quoted\""}}));
    }

    #[test]
    fn reads_single_quotes_with_apostrophes_bare_keys_and_trailing_commas() {
        let v = read_value("{D1: {'score': '2', 'reason': 'it's fine',},}").unwrap();
        assert_eq!(v, json!({"D1": {"score": "2", "reason": "it's fine"}}));
    }

    #[test]
    fn ignores_text_after_the_value() {
        let v = read_value("[1, 2.5] and that is my verdict.").unwrap();
        assert_eq!(v, json!([1, 2.5]));
    }

    #[test]
    fn reports_where_it_gave_up() {
        let err = read_value("{\"D1\" 2}").unwrap_err();
        assert_eq!(err.offset, 6);
        assert_eq!(err.expected, "':' after an object key");
        assert!(read_value("{\"D1\": 2").is_err());
    }
}
