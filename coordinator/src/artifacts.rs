//! Content-addressed artifact files in the data dir: `artifacts/ab/abcdef...` named by sha256.
//!
//! Writes go to a temporary file in the same directory, are fsynced, checked against the digest
//! the sender announced, then renamed into place, so a reader never sees a partial artifact.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use crate::data_dir::create_private_dir;
use crate::store::StorageFault;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("failed to write artifact under {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("artifact {name} is {actual} bytes, but its header announced {announced}")]
    SizeMismatch { name: String, announced: u64, actual: u64 },
    #[error("artifact {name} has sha256 {actual}, but its header announced {announced}")]
    DigestMismatch { name: String, announced: String, actual: String },
    #[error("artifact {name} exceeds the limit of {limit} bytes")]
    TooLarge { name: String, limit: u64 },
}

impl ArtifactError {
    /// The gRPC answer: a full, failing or read-only disk is `UNAVAILABLE` with the storage fault's
    /// message, another I/O error is internal, and a size or digest mismatch is the sender's error.
    pub(crate) fn status(&self) -> tonic::Status {
        match self {
            Self::Io { source, .. } => match StorageFault::of_io(source) {
                Some(fault) => fault.status(self),
                None => tonic::Status::internal(self.to_string()),
            },
            _ => tonic::Status::invalid_argument(self.to_string()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: PathBuf,
    /// Uploads hold it shared from placing a file to recording its row; gc holds it exclusively
    /// from checking that a blob has no row to deleting its file, so a blob uploaded again while
    /// gc runs is never deleted under its new row.
    placing: Arc<tokio::sync::RwLock<()>>,
}

/// A file in the artifact directory, as gc's sweep sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub path: PathBuf,
    /// The digest its name gives: `None` for an upload's temporary file.
    pub sha256: Option<String>,
    pub size: u64,
    /// Last modification, in milliseconds since the Unix epoch.
    pub modified_ms: i64,
}

/// An artifact being received.
#[derive(Debug)]
pub struct Incoming {
    name: String,
    announced_size: u64,
    announced_sha: String,
    limit: u64,
    file: tempfile::NamedTempFile,
    hasher: Sha256,
    written: u64,
}

impl ArtifactStore {
    pub fn open(root: PathBuf) -> Result<Self, ArtifactError> {
        create_private_dir(&root.join("tmp")).map_err(|source| ArtifactError::Io { path: root.clone(), source })?;
        Ok(Self { root, placing: Arc::default() })
    }

    /// Held by an upload from [`Self::finish`] until its row is recorded.
    pub async fn placing(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.placing.read().await
    }

    /// Held by gc while it deletes files whose rows it has checked are gone.
    pub async fn deleting(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.placing.write().await
    }

    /// Deletes a blob's file; `Ok(false)` when there was none.
    pub fn remove(&self, sha256: &str) -> std::io::Result<bool> {
        remove_file(&self.path_of(sha256))
    }

    /// Deletes a file [`Self::stored_files`] listed; `Ok(false)` when it is gone already.
    pub fn remove_stored(&self, file: &StoredFile) -> std::io::Result<bool> {
        remove_file(&file.path)
    }

    /// Every blob file (`ab/abcdef...`, named by a 64-digit sha256) and every temporary upload
    /// file; other names are not phasegate's and are left out.
    pub fn stored_files(&self) -> std::io::Result<Vec<StoredFile>> {
        let mut out = Vec::new();
        for dir in std::fs::read_dir(&self.root)? {
            let dir = dir?;
            let name = dir.file_name().to_string_lossy().into_owned();
            let is_tmp = name == "tmp";
            if !(is_tmp || is_hex(&name, 2)) {
                continue;
            }
            if !dir.file_type()?.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(dir.path())? {
                let file = file?;
                let meta = file.metadata()?;
                let fname = file.file_name().to_string_lossy().into_owned();
                let is_blob = is_hex(&fname, 64) && fname.starts_with(&name);
                if !meta.is_file() || !(is_tmp || is_blob) {
                    continue;
                }
                let modified = meta.modified()?.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
                out.push(StoredFile {
                    path: file.path(),
                    sha256: is_blob.then_some(fname),
                    size: meta.len(),
                    modified_ms: i64::try_from(modified).unwrap_or(i64::MAX),
                });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    pub fn path_of(&self, sha256: &str) -> PathBuf {
        self.root.join(&sha256[..2]).join(sha256)
    }

    pub fn begin(&self, name: &str, size: u64, sha256: &str, limit: u64) -> Result<Incoming, ArtifactError> {
        if size > limit {
            return Err(ArtifactError::TooLarge { name: name.to_owned(), limit });
        }
        let dir = self.root.join("tmp");
        let file = tempfile::NamedTempFile::new_in(&dir).map_err(|source| ArtifactError::Io { path: dir, source })?;
        Ok(Incoming {
            name: name.to_owned(),
            announced_size: size,
            announced_sha: sha256.to_owned(),
            limit,
            file,
            hasher: Sha256::new(),
            written: 0,
        })
    }

    /// Stores `bytes` the coordinator made itself; returns their digest and size.
    pub fn put(&self, name: &str, bytes: &[u8]) -> Result<(String, u64), ArtifactError> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let mut incoming = self.begin(name, bytes.len() as u64, &sha256, u64::MAX)?;
        incoming.write(bytes)?;
        self.finish(incoming)
    }

    /// Verifies and moves a received artifact into place; returns its digest and size.
    pub fn finish(&self, mut incoming: Incoming) -> Result<(String, u64), ArtifactError> {
        let io = |path: &Path, source| ArtifactError::Io { path: path.to_owned(), source };
        if incoming.written != incoming.announced_size {
            return Err(ArtifactError::SizeMismatch {
                name: incoming.name,
                announced: incoming.announced_size,
                actual: incoming.written,
            });
        }
        let actual = hex::encode(incoming.hasher.finalize_reset());
        if actual != incoming.announced_sha {
            return Err(ArtifactError::DigestMismatch {
                name: incoming.name,
                announced: incoming.announced_sha,
                actual,
            });
        }
        incoming.file.as_file().sync_all().map_err(|e| io(incoming.file.path(), e))?;
        let dest = self.path_of(&actual);
        let parent = dest.parent().unwrap_or(&self.root).to_owned();
        create_private_dir(&parent).map_err(|e| io(&parent, e))?;
        incoming.file.persist(&dest).map_err(|e| io(&dest, e.error))?;
        // The rename is durable only once the directory entry is.
        std::fs::File::open(&parent).and_then(|d| d.sync_all()).map_err(|e| io(&parent, e))?;
        Ok((actual, incoming.written))
    }
}

/// Whether `name` is `len` hexadecimal digits.
fn is_hex(name: &str, len: usize) -> bool {
    name.len() == len && name.bytes().all(|b| b.is_ascii_hexdigit())
}

fn remove_file(path: &Path) -> std::io::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

impl Incoming {
    pub fn write(&mut self, data: &[u8]) -> Result<(), ArtifactError> {
        self.written += data.len() as u64;
        if self.written > self.limit || self.written > self.announced_size {
            return Err(ArtifactError::SizeMismatch {
                name: self.name.clone(),
                announced: self.announced_size,
                actual: self.written,
            });
        }
        self.hasher.update(data);
        let path = self.file.path().to_owned();
        self.file.write_all(data).map_err(|source| ArtifactError::Io { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_by_digest_and_rejects_wrong_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path().join("a")).unwrap();
        let data = b"adapter weights";
        let sha = hex::encode(Sha256::digest(data));
        let mut inc = store.begin("adapter.safetensors", data.len() as u64, &sha, 1 << 20).unwrap();
        inc.write(data).unwrap();
        let (got, size) = store.finish(inc).unwrap();
        assert_eq!((got.as_str(), size), (sha.as_str(), data.len() as u64));
        assert_eq!(std::fs::read(store.path_of(&sha)).unwrap(), data);

        let mut bad = store.begin("x", 3, &sha, 1 << 20).unwrap();
        bad.write(b"abc").unwrap();
        assert!(matches!(store.finish(bad), Err(ArtifactError::DigestMismatch { .. })));
    }
}
