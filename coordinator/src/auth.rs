//! Access tokens: `DATA_DIR/access.toml` (mode 0600), created on first start.
//!
//! Agents and clients hold different tokens; each gRPC service accepts only its own. Tokens are
//! 256-bit random values; they are compared in constant time and never logged.

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use tonic::{Request, Status};

use crate::credentials::Lookup;

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessFile {
    /// The coordinator's gRPC address as clients should dial it, e.g. `http://127.0.0.1:7070`.
    pub address: String,
    pub agent_token: String,
    pub client_token: String,
}

impl fmt::Debug for AccessFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessFile")
            .field("address", &self.address)
            .field("agent_token", &"<redacted>")
            .field("client_token", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("failed to read access file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("failed to parse access file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("failed to write access file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl AccessFile {
    pub fn load(path: &Path) -> Result<Self, AccessError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| AccessError::Read { path: path.to_owned(), source })?;
        toml::from_str(&text)
            .map_err(|e| AccessError::Parse { path: path.to_owned(), message: parse_problem(&text, &e) })
    }

    /// Loads the access file, creating it with fresh tokens when missing. The address is updated to
    /// the one the coordinator listens on now.
    pub fn load_or_create(path: &Path, address: &str) -> Result<Self, AccessError> {
        let mut access = if path.exists() {
            tighten(path).map_err(|source| AccessError::Write { path: path.to_owned(), source })?;
            Self::load(path)?
        } else {
            Self { address: String::new(), agent_token: random_token(), client_token: random_token() }
        };
        if access.address != address {
            access.address = address.to_owned();
            access.write(path)?;
        }
        Ok(access)
    }

    fn write(&self, path: &Path) -> Result<(), AccessError> {
        let err = |source| AccessError::Write { path: path.to_owned(), source };
        let text = toml::to_string(self).map_err(|e| err(std::io::Error::other(e)))?;
        let tmp = path.with_extension("toml.tmp");
        let mut file =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(err)?;
        file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }
}

/// The keys of an access file, the only file text an error may quote.
const KEYS: [&str; 3] = ["address", "agent_token", "client_token"];

/// What is wrong with an access file that does not parse, by line and key, never quoting a value:
/// toml's own message shows the offending line, which in this file holds a token.
fn parse_problem(text: &str, e: &toml::de::Error) -> String {
    let message = e.message();
    if message.starts_with("missing field")
        && let Some(key) = KEYS.iter().find(|k| message.contains(&format!("`{k}`")))
    {
        return format!("missing key `{key}` (the file may be truncated)");
    }
    let what = if message.starts_with("unknown field") {
        "unknown key"
    } else if message.starts_with("invalid type") {
        "the value has the wrong type (every value is a quoted string)"
    } else {
        "not a valid `key = \"value\"` line (the file may be truncated or edited)"
    };
    let Some(span) = e.span() else { return what.to_owned() };
    let line_no = text.get(..span.start).unwrap_or(text).matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("");
    let key = line.split_once('=').map(|(k, _)| k.trim().trim_matches('"'));
    match key.and_then(|k| KEYS.iter().find(|known| **known == k)) {
        Some(key) => format!("line {line_no}, key `{key}`: {what}"),
        None => format!("line {line_no}: {what}; the keys are {}", KEYS.join(", ")),
    }
}

/// Takes group and other access away from an existing access file.
fn tighten(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Who an agent request authenticated as; the agent service's interceptor puts it in the request's
/// extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AgentCredential {
    /// The shared agent token: any agent, under the name it gives.
    Shared,
    /// A per-agent credential: only agent `agent`.
    Own { id: i64, agent: phasegate_proto::domain::AgentName },
}

/// Constant-time comparison of a presented token with the expected one.
fn same_token(presented: &[u8], expected: &[u8]) -> bool {
    if presented.len() != expected.len() {
        return false;
    }
    presented.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// A tonic interceptor that requires `authorization: Bearer <token>`.
#[derive(Clone)]
pub struct RequireToken {
    expected: String,
    role: &'static str,
}

impl fmt::Debug for RequireToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireToken").field("role", &self.role).finish_non_exhaustive()
    }
}

impl RequireToken {
    pub fn new(expected: &str, role: &'static str) -> Self {
        Self { expected: format!("Bearer {expected}"), role }
    }
}

impl tonic::service::Interceptor for RequireToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        match request.metadata().get("authorization") {
            Some(v) if same_token(v.as_bytes(), self.expected.as_bytes()) => Ok(request),
            Some(_) => Err(Status::unauthenticated(format!("invalid {} token", self.role))),
            None => Err(Status::unauthenticated(format!("missing {} token (authorization: Bearer ...)", self.role))),
        }
    }
}

/// The agent service's interceptor: accepts the shared agent token (unless it is switched off) or
/// an unrevoked per-agent credential, and records which in the request's extensions.
#[derive(Clone)]
pub(crate) struct AgentAuth {
    /// `Bearer <shared token>`; `None`: only per-agent credentials are accepted.
    shared: Option<String>,
    credentials: std::sync::Arc<crate::credentials::Credentials>,
}

impl fmt::Debug for AgentAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentAuth").field("shared", &self.shared.is_some()).finish_non_exhaustive()
    }
}

impl AgentAuth {
    pub fn new(shared: Option<&str>, credentials: std::sync::Arc<crate::credentials::Credentials>) -> Self {
        Self { shared: shared.map(|t| format!("Bearer {t}")), credentials }
    }

    fn identify(&self, presented: &[u8]) -> Result<AgentCredential, Status> {
        if let Some(shared) = &self.shared
            && same_token(presented, shared.as_bytes())
        {
            return Ok(AgentCredential::Shared);
        }
        let secret = std::str::from_utf8(presented).ok().and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
        match self.credentials.resolve(secret, crate::shell::now_ms() as i64) {
            Lookup::Valid { id, agent } => Ok(AgentCredential::Own { id, agent }),
            Lookup::Revoked { id, agent } => {
                Err(Status::unauthenticated(format!("agent credential {id} of agent {agent} was revoked")))
            }
            Lookup::Unknown if self.shared.is_none() => Err(Status::unauthenticated(
                "invalid agent token (the shared agent token is off: use a per-agent credential \
                 from `phasegate token create --agent NAME`)",
            )),
            Lookup::Unknown => Err(Status::unauthenticated("invalid agent token")),
        }
    }
}

impl tonic::service::Interceptor for AgentAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let Some(value) = request.metadata().get("authorization") else {
            return Err(Status::unauthenticated("missing agent token (authorization: Bearer ...)"));
        };
        let credential = self.identify(value.as_bytes())?;
        request.extensions_mut().insert(credential);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn created_with_mode_0600_and_distinct_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.toml");
        let a = AccessFile::load_or_create(&path, "http://127.0.0.1:1").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_ne!(a.agent_token, a.client_token);
        assert!(a.agent_token.len() >= 32);
        let b = AccessFile::load_or_create(&path, "http://127.0.0.1:2").unwrap();
        assert_eq!(a.agent_token, b.agent_token);
        assert_eq!(b.address, "http://127.0.0.1:2");
        assert!(!format!("{b:?}").contains(&b.agent_token));
    }

    /// Truncated, edited and mistyped access files: the error names the line and key, never a token.
    #[test]
    fn parse_errors_name_the_key_but_quote_no_token_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.toml");
        let good = AccessFile::load_or_create(&path, "http://127.0.0.1:1").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let secret = &good.client_token;
        let cut = text.find(secret.as_str()).unwrap() + 20;
        let token_line = text.lines().find(|l| l.contains(secret.as_str())).unwrap();
        let cases = [
            ("truncated mid-token", text[..cut].to_owned()),
            ("quote removed", text.replacen(&format!("\"{secret}\""), &format!("\"{secret}"), 1)),
            ("bare token line", text.replacen(token_line, secret, 1)),
            ("token as a key", text.replacen(token_line, &format!("{secret} = \"x\""), 1)),
            ("unquoted value", text.replacen(&format!("\"{secret}\""), &secret[..16], 1)),
            ("key lost", text.replacen(token_line, "", 1)),
        ];
        for (case, edited) in cases {
            std::fs::write(&path, &edited).unwrap();
            let err = AccessFile::load(&path).unwrap_err().to_string();
            assert!(err.starts_with("failed to parse access file"), "{case}: {err}");
            for token in [&good.client_token, &good.agent_token] {
                assert!(!err.contains(&token[..8]), "{case}: the error quotes token text: {err}");
            }
            assert!(err.contains("client_token") || err.contains("line "), "{case}: says nothing useful: {err}");
        }
    }

    #[test]
    fn a_loose_access_file_is_tightened_to_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.toml");
        AccessFile::load_or_create(&path, "http://127.0.0.1:1").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        AccessFile::load_or_create(&path, "http://127.0.0.1:1").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn token_comparison() {
        assert!(same_token(b"Bearer abc", b"Bearer abc"));
        assert!(!same_token(b"Bearer abd", b"Bearer abc"));
        assert!(!same_token(b"Bearer ab", b"Bearer abc"));
    }
}
