//! The source bundle: a spec's directory packed as a deterministic `.tar.gz` so agents need no git
//! access, and its safe unpacking into a job directory.
//!
//! Packing honours `.gitignore` files (also outside a git repository, and in parent directories, as
//! git would) and `.phasegateignore` files (same syntax, higher precedence), and always leaves out
//! `.git`. The same tree gives the same bytes: entries are sorted, and times, owners and modes are
//! fixed (only the executable bit survives). Symbolic links are kept when they point inside the tree
//! and skipped (listed in [`PackedBundle::skipped_links`]) otherwise.
//!
//! Unpacking trusts nothing in the archive: absolute paths, `..` components, links that could lead
//! outside the destination, writes through links, hard links and special files are rejected, and
//! [`UnpackLimits`] bound what a small archive may expand to (total bytes, entries, path depth). The
//! archive is read as a stream; each entry's size is checked against the limit before it is written.

use std::fs;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

/// The per-directory ignore file read besides `.gitignore`.
pub const IGNORE_FILE_NAME: &str = ".phasegateignore";

/// A packed bundle and its identity.
#[derive(Clone, PartialEq, Eq)]
pub struct PackedBundle {
    /// The `.tar.gz` bytes.
    pub bytes: Vec<u8>,
    /// Lowercase hex sha256 of `bytes`.
    pub sha256: String,
    /// Regular files and links packed.
    pub file_count: usize,
    /// Sum of the packed files' sizes before compression (what the limit applies to).
    pub content_bytes: u64,
    /// Links left out because they point outside the tree (relative paths).
    pub skipped_links: Vec<String>,
}

impl std::fmt::Debug for PackedBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedBundle")
            .field("size", &self.bytes.len())
            .field("sha256", &self.sha256)
            .field("file_count", &self.file_count)
            .field("content_bytes", &self.content_bytes)
            .field("skipped_links", &self.skipped_links)
            .finish()
    }
}

/// Most bytes an unpacked bundle may hold by default: twice the coordinator's default bundle limit.
pub const MAX_UNPACKED_BYTES: u64 = 1 << 30;
/// Most entries (files, directories, links) an unpacked bundle may hold by default.
pub const MAX_UNPACKED_ENTRIES: usize = 100_000;
/// Most path components an entry of a bundle may have.
pub const MAX_PATH_DEPTH: usize = 32;

/// What an archive may expand to; see [`unpack_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Sum of the entries' sizes.
    pub max_bytes: u64,
    pub max_entries: usize,
    /// Components of an entry's path (`a/b/c` is 3).
    pub max_depth: usize,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits { max_bytes: MAX_UNPACKED_BYTES, max_entries: MAX_UNPACKED_ENTRIES, max_depth: MAX_PATH_DEPTH }
    }
}

/// What [`unpack`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackSummary {
    pub file_count: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("failed to walk {path}: {source}")]
    Walk {
        path: PathBuf,
        #[source]
        source: ignore::Error,
    },
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "failed to pack {dir}: its files reach {total} bytes, over the limit of {limit} bytes; largest: {}\nhint: list large files in {IGNORE_FILE_NAME} or .gitignore",
        format_largest(.largest)
    )]
    TooLarge {
        dir: PathBuf,
        limit: u64,
        total: u64,
        /// The 5 largest files, largest first: relative path and size.
        largest: Vec<(String, u64)>,
    },
    #[error("failed to pack {path}: the name is not valid UTF-8")]
    NonUtf8Name { path: PathBuf },
    #[error("failed to write the bundle archive: {source}")]
    Write {
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read the bundle archive: {source}")]
    Archive {
        #[source]
        source: std::io::Error,
    },
    #[error("failed to unpack the bundle: {what} reaches {value}, over the limit of {limit}")]
    Limit { what: &'static str, value: u64, limit: u64 },
    #[error("failed to unpack entry `{entry}`: {reason}")]
    UnsafeEntry { entry: String, reason: String },
    #[error("failed to unpack entry `{entry}` into {dest}: {source}")]
    Unpack {
        entry: String,
        dest: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn format_largest(largest: &[(String, u64)]) -> String {
    let parts: Vec<String> = largest.iter().map(|(p, n)| format!("{p} ({n} bytes)")).collect();
    parts.join(", ")
}

/// One thing to pack, found by the walk.
#[derive(Debug)]
enum Item {
    Dir,
    File { size: u64, executable: bool },
    Link { target: PathBuf },
}

/// Packs `dir` into a deterministic `.tar.gz`, failing before any compression when the files' total
/// size exceeds `limit_bytes`.
pub fn pack(dir: &Path, limit_bytes: u64) -> Result<PackedBundle, BundleError> {
    let Walked { items, skipped_links } = walk(dir)?;
    let total: u64 = items
        .iter()
        .map(|(_, item)| match item {
            Item::File { size, .. } => *size,
            _ => 0,
        })
        .sum();
    if total > limit_bytes {
        return Err(too_large(dir, limit_bytes, total, &items));
    }
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    let mut file_count = 0;
    for (rel, item) in &items {
        append(&mut builder, dir, rel, item)?;
        file_count += usize::from(!matches!(item, Item::Dir));
    }
    let bytes = builder.into_inner().and_then(GzEncoder::finish).map_err(|source| BundleError::Write { source })?;
    Ok(PackedBundle { sha256: sha256_hex(&bytes), bytes, file_count, content_bytes: total, skipped_links })
}

fn too_large(dir: &Path, limit: u64, total: u64, items: &[(String, Item)]) -> BundleError {
    let mut files: Vec<(String, u64)> = items
        .iter()
        .filter_map(|(rel, item)| match item {
            Item::File { size, .. } => Some((rel.clone(), *size)),
            _ => None,
        })
        .collect();
    files.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    files.truncate(5);
    BundleError::TooLarge { dir: dir.to_path_buf(), limit, total, largest: files }
}

/// What the walk found, both sorted by relative path.
#[derive(Debug)]
struct Walked {
    items: Vec<(String, Item)>,
    skipped_links: Vec<String>,
}

fn walk(dir: &Path) -> Result<Walked, BundleError> {
    let walker = ignore::WalkBuilder::new(dir)
        .standard_filters(false)
        .git_ignore(true)
        .require_git(false)
        .parents(true)
        .add_custom_ignore_filename(IGNORE_FILE_NAME)
        .follow_links(false)
        .filter_entry(|e| e.file_name() != ".git")
        .build();
    let mut items = Vec::new();
    let mut skipped = Vec::new();
    for entry in walker {
        let entry = entry.map_err(|source| BundleError::Walk { path: dir.to_path_buf(), source })?;
        if entry.depth() == 0 {
            continue;
        }
        let path = entry.path();
        let rel = relative_name(dir, path)?;
        let meta = fs::symlink_metadata(path).map_err(|source| read_err(path, source))?;
        let item = if meta.is_dir() {
            Item::Dir
        } else if meta.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let executable = meta.permissions().mode() & 0o111 != 0;
            Item::File { size: meta.len(), executable }
        } else if meta.file_type().is_symlink() {
            let target = fs::read_link(path).map_err(|source| read_err(path, source))?;
            if check_link_target(&rel, &target).is_err() {
                skipped.push(rel);
                continue;
            }
            Item::Link { target }
        } else {
            continue;
        };
        items.push((rel, item));
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    skipped.sort();
    Ok(Walked { items, skipped_links: skipped })
}

fn relative_name(dir: &Path, path: &Path) -> Result<String, BundleError> {
    let rel = path.strip_prefix(dir).unwrap_or(path);
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    parts.map(|p| p.join("/")).ok_or_else(|| BundleError::NonUtf8Name { path: path.to_path_buf() })
}

fn append<W: Write>(builder: &mut tar::Builder<W>, dir: &Path, rel: &str, item: &Item) -> Result<(), BundleError> {
    let mut header = tar::Header::new_gnu();
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    let write_err = |source| BundleError::Write { source };
    match item {
        Item::Dir => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            builder.append_data(&mut header, rel, std::io::empty()).map_err(write_err)
        }
        Item::File { executable, .. } => {
            let path = dir.join(rel);
            // Read the whole file so the header size matches the content even if it changes.
            let data = fs::read(&path).map_err(|source| read_err(&path, source))?;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(if *executable { 0o755 } else { 0o644 });
            header.set_size(data.len() as u64);
            builder.append_data(&mut header, rel, data.as_slice()).map_err(write_err)
        }
        Item::Link { target } => {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            builder.append_link(&mut header, rel, target).map_err(write_err)
        }
    }
}

/// Unpacks a bundle into `dest` (created if missing; expected fresh) within the default
/// [`UnpackLimits`]. Fails on the first unsafe or duplicate entry, naming it.
pub fn unpack(bytes: &[u8], dest: &Path) -> Result<UnpackSummary, BundleError> {
    unpack_with(bytes, dest, &UnpackLimits::default())
}

/// [`unpack`] within `limits`: an entry that would pass one fails the unpack before it is written.
pub fn unpack_with(bytes: &[u8], dest: &Path, limits: &UnpackLimits) -> Result<UnpackSummary, BundleError> {
    fs::create_dir_all(dest).map_err(|source| read_err(dest, source))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    archive.set_preserve_mtime(false);
    let mut file_count = 0;
    let mut budget = Budget::new(limits);
    let entries = archive.entries().map_err(|source| BundleError::Archive { source })?;
    for entry in entries {
        let mut entry = entry.map_err(|source| BundleError::Archive { source })?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let rel = checked_entry_path(&name)?;
        budget.take(&rel, entry.size())?;
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Directory | tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|source| BundleError::Archive { source })?
                    .ok_or_else(|| unsafe_entry(&name, "the link has no target"))?;
                check_link_target(&name, &target).map_err(|reason| unsafe_entry(&name, reason))?;
            }
            other => {
                return Err(unsafe_entry(&name, format!("entry type {other:?} is not allowed")));
            }
        }
        let full = dest.join(&rel);
        check_no_link_on_the_way(dest, &rel, &name, kind.is_dir())?;
        let unpack_err = |source| BundleError::Unpack { entry: name.clone(), dest: dest.to_path_buf(), source };
        if let Some(parent) = full.parent() {
            fs::create_dir_all(parent).map_err(unpack_err)?;
        }
        entry.unpack(&full).map_err(unpack_err)?;
        file_count += usize::from(!kind.is_dir());
    }
    Ok(UnpackSummary { file_count })
}

/// What is left of [`UnpackLimits`] while entries are read. The tar reader copies exactly the
/// size a header declares, so checking the declared size bounds what is written.
#[derive(Debug)]
pub struct Budget {
    limits: UnpackLimits,
    bytes: u64,
    entries: usize,
}

impl Budget {
    pub fn new(limits: &UnpackLimits) -> Budget {
        Budget { limits: *limits, bytes: 0, entries: 0 }
    }

    /// Counts one entry at `rel` of `size` bytes, or names the limit it passes.
    pub fn take(&mut self, rel: &Path, size: u64) -> Result<(), BundleError> {
        let depth = rel.components().count();
        if depth > self.limits.max_depth {
            return Err(limit("the path depth", depth as u64, self.limits.max_depth as u64));
        }
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(limit("the entry count", self.entries as u64, self.limits.max_entries as u64));
        }
        self.bytes = self.bytes.saturating_add(size);
        if self.bytes > self.limits.max_bytes {
            return Err(limit("the unpacked size in bytes", self.bytes, self.limits.max_bytes));
        }
        Ok(())
    }
}

fn limit(what: &'static str, value: u64, limit: u64) -> BundleError {
    BundleError::Limit { what, value, limit }
}

/// The entry's path as a relative path of plain components.
fn checked_entry_path(name: &str) -> Result<PathBuf, BundleError> {
    let path = Path::new(name);
    let mut rel = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(unsafe_entry(name, "the path contains `..`")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_entry(name, "the path is absolute"));
            }
        }
    }
    if rel.as_os_str().is_empty() {
        return Err(unsafe_entry(name, "the path is empty"));
    }
    Ok(rel)
}

/// Rejects writing through a link (an ancestor that is a link) and overwriting anything already
/// there, except a directory entry for an existing directory.
fn check_no_link_on_the_way(dest: &Path, rel: &Path, name: &str, is_dir: bool) -> Result<(), BundleError> {
    let mut current = dest.to_path_buf();
    let count = rel.components().count();
    for (i, part) in rel.components().enumerate() {
        current.push(part);
        let Ok(meta) = fs::symlink_metadata(&current) else {
            return Ok(());
        };
        let last = i + 1 == count;
        if meta.file_type().is_symlink() {
            let reason = if last { "it would replace a link" } else { "its path goes through a link" };
            return Err(unsafe_entry(name, reason));
        }
        if last && !(is_dir && meta.is_dir()) {
            return Err(unsafe_entry(name, "the archive holds it twice"));
        }
    }
    Ok(())
}

/// A link target must be relative, with any `..` only at its start and no deeper than the link's
/// own directory. Keeping `..` leading means no link can be used to climb out of the tree through
/// another link (e.g. `a -> .` then `b -> a/..`).
fn check_link_target(link_rel: &str, target: &Path) -> Result<(), String> {
    if target.is_absolute() {
        return Err(format!("the link points to the absolute path {}", target.display()));
    }
    let depth =
        Path::new(link_rel).components().filter(|c| matches!(c, Component::Normal(_))).count().saturating_sub(1);
    let mut ups = 0;
    let mut seen_normal = false;
    for component in target.components() {
        match component {
            Component::ParentDir if seen_normal => {
                return Err(format!("the link target {} has `..` after a name", target.display()));
            }
            Component::ParentDir => ups += 1,
            Component::Normal(_) => seen_normal = true,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("the link points to the absolute path {}", target.display()));
            }
        }
    }
    if ups > depth {
        return Err(format!("the link target {} leaves the bundle", target.display()));
    }
    Ok(())
}

fn unsafe_entry(entry: &str, reason: impl Into<String>) -> BundleError {
    BundleError::UnsafeEntry { entry: entry.to_owned(), reason: reason.into() }
}

fn read_err(path: &Path, source: std::io::Error) -> BundleError {
    BundleError::Read { path: path.to_path_buf(), source }
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Lowercase hex sha256 of a file's content, read in chunks.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0_u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

#[cfg(test)]
#[path = "bundle_tests.rs"]
mod tests;
