//! Storage faults: the data dir's disk is full, failing, or mounted read-only.
//!
//! These are not bugs and not the caller's fault: the coordinator rolls back, answers
//! `UNAVAILABLE` with one of the fixed messages below (clients match on them), keeps serving reads,
//! and retries writes as they come, so it resumes by itself once space is back.

use std::io;

/// What went wrong with the disk under the data dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageFault {
    /// ENOSPC or EDQUOT; SQLite's `SQLITE_FULL`.
    Full,
    /// EIO; SQLite's `SQLITE_IOERR` family (which is also what a full disk gives on some paths).
    Io,
    /// EROFS; SQLite's `SQLITE_READONLY` family.
    ReadOnly,
}

/// SQLite's primary result codes (the low byte of an extended code).
const SQLITE_READONLY: i32 = 8;
const SQLITE_IOERR: i32 = 10;
const SQLITE_FULL: i32 = 13;

impl StorageFault {
    /// The fault an OS error stands for, if any.
    /// The fault an OS error stands for, if any; also through a wrapper that kept only the kind or
    /// holds the OS error inside (tempfile adds the path that way).
    pub fn of_io(e: &io::Error) -> Option<Self> {
        match e.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => return Some(Self::Full),
            Some(libc::EIO) => return Some(Self::Io),
            Some(libc::EROFS) => return Some(Self::ReadOnly),
            Some(_) => return None,
            None => {}
        }
        match e.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Some(Self::Full),
            io::ErrorKind::ReadOnlyFilesystem => Some(Self::ReadOnly),
            _ => e.get_ref()?.downcast_ref::<io::Error>().and_then(Self::of_io),
        }
    }

    /// The fault a database error stands for, if any.
    pub fn of_sqlx(e: &sqlx::Error) -> Option<Self> {
        match e {
            sqlx::Error::Io(io) => Self::of_io(io),
            sqlx::Error::Database(db) => {
                let code: i32 = db.code()?.parse().ok()?;
                match code & 0xff {
                    SQLITE_FULL => Some(Self::Full),
                    SQLITE_IOERR => Some(Self::Io),
                    SQLITE_READONLY => Some(Self::ReadOnly),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// The fixed text clients recognise; every fault that blocks writes starts with it.
    pub fn message(self) -> &'static str {
        match self {
            Self::Full => "coordinator out of disk space",
            Self::Io => "coordinator out of disk space or its disk failed (i/o error)",
            Self::ReadOnly => "coordinator data dir is read-only",
        }
    }

    /// The gRPC answer: `UNAVAILABLE`, since the same request succeeds once the disk is fixed.
    pub fn status(self, detail: &dyn std::fmt::Display) -> tonic::Status {
        tonic::Status::unavailable(format!("{}: {detail}", self.message()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_map_to_faults() {
        let of = |n| StorageFault::of_io(&io::Error::from_raw_os_error(n));
        assert_eq!(of(libc::ENOSPC), Some(StorageFault::Full));
        assert_eq!(of(libc::EDQUOT), Some(StorageFault::Full));
        assert_eq!(of(libc::EIO), Some(StorageFault::Io));
        assert_eq!(of(libc::EROFS), Some(StorageFault::ReadOnly));
        assert_eq!(of(libc::ENOENT), None);
        assert_eq!(StorageFault::of_io(&io::Error::other("x")), None);
        let wrapped = io::Error::new(io::ErrorKind::StorageFull, "no space at path /x");
        assert_eq!(StorageFault::of_io(&wrapped), Some(StorageFault::Full));
        let wrapped = io::Error::other(io::Error::from_raw_os_error(libc::EIO));
        assert_eq!(StorageFault::of_io(&wrapped), Some(StorageFault::Io));
    }

    #[test]
    fn every_write_blocking_message_names_the_disk() {
        for f in [StorageFault::Full, StorageFault::Io] {
            assert!(f.message().starts_with("coordinator out of disk space"), "{f:?}");
            assert_eq!(f.status(&"x").code(), tonic::Code::Unavailable);
        }
    }
}
