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

/// The fixed text a coordinator answers when its disk is full or failing (see the coordinator's
/// `StorageFault`); a read-only data dir has its own.
const OUT_OF_SPACE: &str = "coordinator out of disk space";
const READ_ONLY: &str = "coordinator data dir is read-only";

/// How std renders the OS errors of a full, failing or read-only disk (ENOSPC, EDQUOT, EIO, EROFS)
/// inside any error's message: the net under every `usage` failure, since many library errors
/// carry an `io::Error` only as text.
const DISK_OS_ERRORS: [&str; 4] = ["(os error 28)", "(os error 122)", "(os error 5)", "(os error 30)"];

/// Whether an I/O error is the disk's fault rather than the input's: full, failing or read-only.
pub fn is_disk_fault(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT | libc::EIO | libc::EROFS))
        || matches!(e.kind(), K::StorageFull | K::QuotaExceeded | K::ReadOnlyFilesystem)
}

impl Failure {
    /// A usage or input error (2), unless the message shows a full, failing or read-only disk:
    /// that is infrastructure (3) whatever the command was doing.
    pub fn usage(message: impl Into<String>) -> Self {
        let message = message.into();
        if DISK_OS_ERRORS.iter().any(|e| message.contains(e)) {
            return Self::infra(message);
        }
        Self { code: Code::Usage, message, hint: None }
    }

    /// A failed file operation: infrastructure (3) when the disk is full, failing or read-only,
    /// else a usage error (2: the path or its contents are wrong).
    pub fn io(message: impl Into<String>, e: &std::io::Error) -> Self {
        if is_disk_fault(e) { Self::infra(message) } else { Self::usage(message) }
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
            C::Unavailable if s.message().contains(OUT_OF_SPACE) => Self::infra(format!("{what}: {}", s.message()))
                .with_hint("free space on the coordinator's data dir; it resumes writes by itself, no restart needed"),
            C::Unavailable if s.message().contains(READ_ONLY) => Self::infra(format!("{what}: {}", s.message()))
                .with_hint("remount the coordinator's data dir read-write"),
            C::Unavailable => Self::infra(format!("{what}: coordinator unreachable ({})", s.message()))
                .with_hint("is `phasegate serve` running at that address?"),
            _ => Self::infra(format!("{what}: {}", s.message())),
        }
    }
}

pub type Result<T> = std::result::Result<T, Failure>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_coordinator_out_of_disk_space_is_an_infrastructure_failure_that_says_so() {
        let status = tonic::Status::unavailable("coordinator out of disk space: database or disk is full");
        let f = Failure::from_status("failed to submit the run", &status);
        assert_eq!(f.code, Code::Infrastructure);
        assert!(f.message.contains("coordinator out of disk space"), "{}", f.message);
        assert!(!f.message.contains("unreachable"), "{}", f.message);
        assert!(f.hint.as_deref().unwrap_or_default().contains("free space"));
        let read_only = tonic::Status::unavailable("coordinator data dir is read-only: attempt to write");
        assert_eq!(Failure::from_status("x", &read_only).code, Code::Infrastructure);
    }

    #[test]
    fn disk_full_and_read_only_errors_are_infrastructure_everywhere() {
        for errno in [libc::ENOSPC, libc::EDQUOT, libc::EIO, libc::EROFS] {
            let e = std::io::Error::from_raw_os_error(errno);
            assert_eq!(Failure::io(format!("failed to write out.json: {e}"), &e).code, Code::Infrastructure, "{e}");
            // The same error arriving as text inside another error's message.
            assert_eq!(Failure::usage(format!("failed to pack the bundle: {e}")).code, Code::Infrastructure, "{e}");
        }
        let missing = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(Failure::io(format!("failed to read spec: {missing}"), &missing).code, Code::Usage);
        assert_eq!(Failure::usage("phase: must not be empty").code, Code::Usage);
    }
}
