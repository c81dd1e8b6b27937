//! The coordinator's data dir: private to its owner (0700, files 0600) and held by one coordinator.
//!
//! A coordinator takes an exclusive lock on `coordinator.lock` before it touches anything else in
//! the dir, so a second one on the same dir is refused at once instead of rewriting `access.toml`
//! and scheduling from the same database. The lock is `flock(2)` (std's `File::try_lock`): the
//! kernel drops it when the process dies, so a killed coordinator leaves no stale lock. The file
//! holds the holder's pid, for the refusal message only.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::{Read as _, Seek as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// The lock file inside the data dir.
pub const LOCK_FILE: &str = "coordinator.lock";

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("failed to create data dir {}: {source}", path.display())]
    Create { path: PathBuf, source: std::io::Error },
    #[error("failed to lock data dir {}: {source}", path.display())]
    Lock { path: PathBuf, source: std::io::Error },
    #[error("data dir {} is in use by another coordinator{}", path.display(), holder(*pid))]
    InUse { path: PathBuf, pid: Option<u32> },
}

fn holder(pid: Option<u32>) -> String {
    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
}

/// Creates `dir` (and missing parents) with mode 0700, or tightens an existing `dir` to 0700 when
/// group or others have any access.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The held lock on a data dir; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    dir: PathBuf,
}

impl DataDirLock {
    /// Creates the data dir privately and locks it; [`DataDirError::InUse`] at once when another
    /// process holds it.
    pub fn acquire(dir: &Path) -> Result<Self, DataDirError> {
        create_private_dir(dir).map_err(|source| DataDirError::Create { path: dir.to_owned(), source })?;
        let path = dir.join(LOCK_FILE);
        let lock_err = |source| DataDirError::Lock { path: dir.to_owned(), source };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(lock_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(DataDirError::InUse { path: dir.to_owned(), pid: read_pid(&mut file) });
            }
            Err(std::fs::TryLockError::Error(source)) => return Err(lock_err(source)),
        }
        // The pid is a courtesy for the next one refused; failing to write it is not fatal.
        let _ = file.set_len(0).and_then(|()| file.rewind()).and_then(|()| write!(file, "{}", std::process::id()));
        Ok(Self { _file: file, dir: dir.to_owned() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_with_the_holders_pid() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let first = DataDirLock::acquire(&dir).unwrap();
        let err = DataDirLock::acquire(&dir).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, DataDirError::InUse { pid: Some(p), .. } if p == std::process::id()), "{text}");
        assert!(text.contains(&dir.display().to_string()), "{text}");
        assert!(text.contains(&format!("pid {}", std::process::id())), "{text}");
        drop(first);
        DataDirLock::acquire(&dir).expect("free again once the holder is gone");
    }

    #[test]
    fn the_dir_is_created_0700_and_a_loose_one_is_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_private_dir(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        let _lock = DataDirLock::acquire(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(LOCK_FILE)), 0o600);
    }
}
