//! The CLI's documented exit codes and its expected failures.

use std::process::ExitCode;

/// Exit codes: the contract CI workflows rely on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Success = 0,
    Regression = 1,
    Usage = 2,
    Infrastructure = 3,
    Inconclusive = 4,
}

impl From<Code> for ExitCode {
    fn from(c: Code) -> Self {
        ExitCode::from(c as u8)
    }
}

/// An expected failure: a message (lowercase, what failed and with which value), an optional hint,
/// and its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: Code,
    pub message: String,
    pub hint: Option<String>,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Self { code: Code::Usage, message: message.into(), hint: None }
    }

    pub fn infra(message: impl Into<String>) -> Self {
        Self { code: Code::Infrastructure, message: message.into(), hint: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn code(&self) -> ExitCode {
        self.code.into()
    }

    pub fn print(&self) {
        eprintln!("error: {}", self.message);
        if let Some(h) = &self.hint {
            eprintln!("hint: {h}");
        }
    }

    /// Maps a gRPC status: bad input is a usage error, the rest is infrastructure.
    pub fn from_status(what: &str, s: &tonic::Status) -> Self {
        use tonic::Code as C;
        match s.code() {
            C::InvalidArgument | C::NotFound | C::FailedPrecondition => Self::usage(format!("{what}: {}", s.message())),
            C::Unauthenticated => Self::usage(format!("{what}: {}", s.message()))
                .with_hint("check the token: --access-file, --token-file or PHASEGATE_TOKEN"),
            C::Unavailable => Self::infra(format!("{what}: coordinator unreachable ({})", s.message()))
                .with_hint("is `phasegate serve` running at that address?"),
            _ => Self::infra(format!("{what}: {}", s.message())),
        }
    }
}

pub type Result<T> = std::result::Result<T, Failure>;
