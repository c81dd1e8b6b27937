//! Finding a job's metrics files and artifacts: the files under the job directory whose path,
//! relative to it, matches one of the spec's globs.
//!
//! Globs use `/` as separator; `*` stays within one path component and `**` crosses components
//! (`output/**/trainer_state.json` also matches `output/trainer_state.json`). The walk never follows a
//! symbolic link to a directory, and a link to a file is collected only when its target is a regular
//! file inside the job directory, so a job cannot make the agent upload files from elsewhere.

use std::fs;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// One matched file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectedFile {
    /// Path relative to the job directory, with `/` separators.
    pub rel_path: String,
    pub abs_path: PathBuf,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("failed to compile glob `{pattern}`: {source}")]
    Glob {
        pattern: String,
        #[source]
        source: globset::Error,
    },
    #[error("failed to read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Compiles the globs once, for repeated [`collect`] calls while a job runs.
#[derive(Debug, Clone)]
pub struct Matcher {
    set: GlobSet,
}

impl Matcher {
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, CollectError> {
        let mut builder = GlobSetBuilder::new();
        for pattern in patterns {
            let pattern = pattern.as_ref();
            let glob = GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .map_err(|source| CollectError::Glob { pattern: pattern.to_owned(), source })?;
            builder.add(glob);
        }
        let set = builder.build().map_err(|source| CollectError::Glob {
            pattern: patterns.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(", "),
            source,
        })?;
        Ok(Self { set })
    }

    pub fn is_match(&self, rel_path: &str) -> bool {
        self.set.is_match(rel_path)
    }
}

/// The files under `dir` matching `matcher`, sorted by relative path.
pub fn collect(dir: &Path, matcher: &Matcher) -> Result<Vec<CollectedFile>, CollectError> {
    let root = fs::canonicalize(dir).map_err(|source| io_err(dir, source))?;
    let mut found = Vec::new();
    let mut pending = vec![(root.clone(), String::new())];
    while let Some((abs_dir, rel_dir)) = pending.pop() {
        let entries = fs::read_dir(&abs_dir).map_err(|source| io_err(&abs_dir, source))?;
        for entry in entries {
            let entry = entry.map_err(|source| io_err(&abs_dir, source))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                tracing::debug!(path = %entry.path().display(), "skipping a non-UTF-8 file name");
                continue;
            };
            let rel = if rel_dir.is_empty() { name } else { format!("{rel_dir}/{name}") };
            let path = entry.path();
            let kind = entry.file_type().map_err(|source| io_err(&path, source))?;
            if kind.is_dir() {
                pending.push((path, rel));
            } else if matcher.is_match(&rel)
                && let Some(size) = file_size_inside(&root, &path, kind.is_symlink())?
            {
                found.push(CollectedFile { rel_path: rel, abs_path: path, size });
            }
        }
    }
    found.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    Ok(found)
}

/// The size of a regular file, or of a link's target when that is a regular file inside `root`;
/// `None` for anything else.
fn file_size_inside(root: &Path, path: &Path, is_link: bool) -> Result<Option<u64>, CollectError> {
    if !is_link {
        let meta = fs::symlink_metadata(path).map_err(|source| io_err(path, source))?;
        return Ok(meta.is_file().then_some(meta.len()));
    }
    let Ok(target) = fs::canonicalize(path) else {
        tracing::debug!(path = %path.display(), "skipping a dangling link");
        return Ok(None);
    };
    if !target.starts_with(root) {
        tracing::warn!(path = %path.display(), target = %target.display(), "skipping a link that points outside the job directory");
        return Ok(None);
    }
    let meta = fs::metadata(&target).map_err(|source| io_err(&target, source))?;
    Ok(meta.is_file().then_some(meta.len()))
}

fn io_err(path: &Path, source: std::io::Error) -> CollectError {
    CollectError::Io { path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, body: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, body).unwrap();
    }

    fn rels(found: &[CollectedFile]) -> Vec<&str> {
        found.iter().map(|f| f.rel_path.as_str()).collect()
    }

    fn job_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "train.py", "print()");
        write(root, "output/trainer_state.json", "{}");
        write(root, "output/checkpoint-10/trainer_state.json", "{}");
        write(root, "output/training_metrics.json", "{}");
        write(root, "output/final/adapter/adapter_model.safetensors", "weights");
        write(root, "output/final/adapter/adapter_config.json", "{}");
        write(root, "output/final/adapter/nested/x.bin", "x");
        write(root, "logs/trainer_state.json", "{}");
        dir
    }

    #[test]
    fn double_star_matches_zero_or_more_components() {
        let dir = job_dir();
        let matcher = Matcher::new(&["output/**/trainer_state.json"]).unwrap();
        let found = collect(dir.path(), &matcher).unwrap();
        assert_eq!(rels(&found), ["output/checkpoint-10/trainer_state.json", "output/trainer_state.json"]);
    }

    #[test]
    fn artifact_globs_take_whole_directories_in_order() {
        let dir = job_dir();
        let matcher = Matcher::new(&["output/**/adapter/**", "output/**/training_metrics.json"]).unwrap();
        let found = collect(dir.path(), &matcher).unwrap();
        assert_eq!(
            rels(&found),
            [
                "output/final/adapter/adapter_config.json",
                "output/final/adapter/adapter_model.safetensors",
                "output/final/adapter/nested/x.bin",
                "output/training_metrics.json",
            ]
        );
        assert_eq!(found[1].size, 7);
        assert!(found[1].abs_path.ends_with("output/final/adapter/adapter_model.safetensors"));
    }

    #[test]
    fn single_star_stays_in_one_component() {
        let dir = job_dir();
        let matcher = Matcher::new(&["output/*.json"]).unwrap();
        let found = collect(dir.path(), &matcher).unwrap();
        assert_eq!(rels(&found), ["output/trainer_state.json", "output/training_metrics.json"]);
    }

    #[test]
    fn links_out_of_the_directory_are_not_followed() {
        let dir = job_dir();
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret/trainer_state.json", "{}");
        write(outside.path(), "lone.json", "{}");
        let out = dir.path().join("output");
        std::os::unix::fs::symlink(outside.path().join("secret"), out.join("linked")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("lone.json"), out.join("lone.json")).unwrap();
        std::os::unix::fs::symlink(out.join("training_metrics.json"), out.join("inside.json")).unwrap();
        let matcher = Matcher::new(&["output/**"]).unwrap();
        let found = collect(dir.path(), &matcher).unwrap();
        let names = rels(&found);
        assert!(!names.iter().any(|n| n.contains("linked") || n.contains("lone")), "{names:?}");
        assert!(names.contains(&"output/inside.json"), "{names:?}");
    }

    #[test]
    fn bad_glob_is_named() {
        let err = Matcher::new(&["output/[*.json"]).unwrap_err();
        assert!(err.to_string().starts_with("failed to compile glob `output/[*.json`"), "{err}");
    }

    #[test]
    fn missing_directory_is_named() {
        let matcher = Matcher::new(&["**"]).unwrap();
        let err = collect(Path::new("/nonexistent-phasegate-dir"), &matcher).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-phasegate-dir"), "{err}");
    }
}
