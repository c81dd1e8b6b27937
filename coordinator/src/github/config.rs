//! `phasegate serve --config phasegate.toml`: the sections the coordinator knows, strictly.

use std::path::{Path, PathBuf};

use phasegate_github::{ConfigError, GithubConfig};

/// Top-level sections of `phasegate.toml`; any other is an error.
const SECTIONS: [&str; 2] = ["github", "experiment"];

/// Why `phasegate.toml` was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("failed to read config {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("invalid config {}: unknown section `{key}`\nhint: phasegate.toml knows [github] and [[experiment]]", path.display())]
    UnknownSection { path: PathBuf, key: String },
    #[error("invalid config {}: [[experiment]] entries need a [github] section", path.display())]
    ExperimentsWithoutGithub { path: PathBuf },
    #[error(transparent)]
    Github(#[from] ConfigError),
}

/// Reads `phasegate.toml`: `None` when it has no `[github]` section (nothing GitHub-related runs).
/// Secrets are read from the files the config names or the `PHASEGATE_GITHUB_*` environment.
pub fn load_config(path: &Path) -> Result<Option<GithubConfig>, ConfigFileError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read { path: path.to_owned(), source })?;
    let env = |key: &str| std::env::var(key).ok();
    parse_config(&text, path, &env, &phasegate_github::config::read_file)
}

/// [`load_config`] without I/O of its own: `env` and `read` fetch secrets.
pub(crate) fn parse_config(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    read: &dyn Fn(&Path) -> Result<String, ConfigError>,
) -> Result<Option<GithubConfig>, ConfigFileError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| ConfigFileError::Parse {
        path: path.to_owned(),
        message: e.to_string().lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join(" "),
    })?;
    if let Some(key) = table.keys().find(|k| !SECTIONS.contains(&k.as_str())) {
        return Err(ConfigFileError::UnknownSection { path: path.to_owned(), key: key.clone() });
    }
    if !table.contains_key("github") {
        if table.contains_key("experiment") {
            return Err(ConfigFileError::ExperimentsWithoutGithub { path: path.to_owned() });
        }
        return Ok(None);
    }
    Ok(Some(GithubConfig::parse(text, path, env, read)?))
}
