//! The judge server's API key: read once from a file, sent as a bearer token, shown nowhere.

use std::fmt;
use std::path::{Path, PathBuf};

/// A secret that prints as `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

/// `score.judge_api_key_file` could not give a key. Names the file, never its content.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyError {
    #[error("failed to read `score.judge_api_key_file` = {path:?}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("`score.judge_api_key_file` = {path:?} holds no key (the file is empty)")]
    Empty { path: PathBuf },
    #[error("`score.judge_api_key_file` = {path:?} holds more than one line or a character a header cannot carry")]
    Malformed { path: PathBuf },
}

impl ApiKey {
    /// The file's content without surrounding whitespace (a trailing newline is usual).
    pub(crate) fn read(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.to_owned(), source })?;
        Self::new(text.trim()).map_err(|empty| match empty {
            true => KeyError::Empty { path: path.to_owned() },
            false => KeyError::Malformed { path: path.to_owned() },
        })
    }

    /// Err(true) when empty, Err(false) when it cannot be an HTTP header value.
    fn new(key: &str) -> Result<Self, bool> {
        if key.is_empty() {
            return Err(true);
        }
        if !key.chars().all(|c| c.is_ascii_graphic()) {
            return Err(false);
        }
        Ok(Self(key.to_owned()))
    }

    /// The `Authorization` header value, marked sensitive so hyper never logs it.
    pub(crate) fn header(&self) -> http::HeaderValue {
        let mut value = http::HeaderValue::from_str(&format!("Bearer {}", self.0))
            .unwrap_or_else(|_| http::HeaderValue::from_static("Bearer"));
        value.set_sensitive(true);
        value
    }

    /// `text` with every occurrence of the key replaced, for server replies quoted in errors.
    pub(crate) fn redact(&self, text: &str) -> String {
        text.replace(&self.0, "[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "sk-test-0123456789";

    #[test]
    fn a_key_reads_trimmed_and_shows_nowhere() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, format!("{SECRET}\n")).unwrap();
        let key = ApiKey::read(&path).unwrap();
        assert_eq!(key.header().to_str().unwrap(), format!("Bearer {SECRET}"));
        assert!(key.header().is_sensitive());
        assert!(!format!("{key:?}").contains(SECRET));
        assert_eq!(key.redact(&format!("bad key {SECRET}!")), "bad key [redacted]!");
    }

    #[test]
    fn a_missing_empty_or_multi_line_key_file_is_named_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("missing", None, "failed to read"),
            ("empty", Some("\n"), "holds no key"),
            ("two-lines", Some("sk-a\nsk-b"), "more than one line"),
        ];
        for (name, content, needle) in cases {
            let path = dir.path().join(name);
            if let Some(c) = content {
                std::fs::write(&path, c).unwrap();
            }
            let msg = ApiKey::read(&path).unwrap_err().to_string();
            assert!(msg.contains(needle) && msg.contains(name) && msg.contains("score.judge_api_key_file"), "{msg}");
            assert!(!msg.contains("sk-"), "{msg}");
        }
    }
}
