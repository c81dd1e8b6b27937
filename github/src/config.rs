//! The `[github]` and `[[experiment]]` sections of `phasegate.toml`.
//!
//! Parsing is strict: an unknown key inside these sections is an error that names the key and the
//! file. Other top-level sections belong to the coordinator and are ignored here. Secrets are read
//! from the files the config names, or from `PHASEGATE_GITHUB_*` environment variables, never from
//! the command line; they are held as [`Secret`] so a logged config shows `<redacted>`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;

use crate::secret::Secret;
use crate::types::{IdError, RepoName};

/// GitHub's public REST API: the default `api_url`.
pub const DEFAULT_API_URL: &str = "https://api.github.com";
/// The label a maintainer adds to let a fork PR run on the agents.
pub const DEFAULT_FORK_LABEL: &str = "phasegate:run";
/// Environment variables read when the config names no file for a secret.
pub const ENV_TOKEN: &str = "PHASEGATE_GITHUB_TOKEN";
pub const ENV_PRIVATE_KEY: &str = "PHASEGATE_GITHUB_PRIVATE_KEY";
pub const ENV_WEBHOOK_SECRET: &str = "PHASEGATE_GITHUB_WEBHOOK_SECRET";
/// Defaults of the coordinator's delivery retries (after a call's own retries gave up).
pub const DEFAULT_DELIVERY_ATTEMPTS: u32 = 12;
pub const DEFAULT_DELIVERY_INITIAL_DELAY_MS: u64 = 30_000;
pub const DEFAULT_DELIVERY_MAX_DELAY_MS: u64 = 30 * 60_000;

/// Why the GitHub configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config {path}: experiment `{experiment}`: {source}")]
    Repo { path: PathBuf, experiment: String, source: IdError },
    #[error("invalid config {path}: experiment `{experiment}` has invalid glob `{glob}`: {message}")]
    Glob { path: PathBuf, experiment: String, glob: String, message: String },
    #[error("invalid config {path}: experiment name `{name}` is used twice")]
    DuplicateExperiment { path: PathBuf, name: String },
    #[error("invalid config {path}: [github] {message}\nhint: {hint}")]
    Credentials { path: PathBuf, message: String, hint: &'static str },
    #[error("failed to read secret file {path}: {source}")]
    SecretFile { path: PathBuf, source: std::io::Error },
    #[error("invalid config {path}: [github] {key} must be greater than zero, got {value}")]
    NonPositive { path: PathBuf, key: &'static str, value: u64 },
    #[error("invalid config {path}: [github] {key} ({value}) must not be less than {other} ({other_value})")]
    LessThan { path: PathBuf, key: &'static str, value: u64, other: &'static str, other_value: u64 },
}

/// When the reporter creates a PR comment (an existing one is always updated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommentPolicy {
    #[default]
    Always,
    OnFailure,
}

/// The check-run conclusion for inconclusive and insufficient-baseline verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InconclusivePolicy {
    #[default]
    Neutral,
    Failure,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGithub {
    api_url: Option<String>,
    token_file: Option<PathBuf>,
    app_id: Option<u64>,
    private_key_file: Option<PathBuf>,
    installation_id: Option<u64>,
    webhook_secret_file: Option<PathBuf>,
    #[serde(default)]
    comment: CommentPolicy,
    #[serde(default)]
    inconclusive: InconclusivePolicy,
    max_retries: Option<u32>,
    retry_initial_delay_ms: Option<u64>,
    retry_max_delay_ms: Option<u64>,
    delivery_attempts: Option<u32>,
    delivery_initial_delay_ms: Option<u64>,
    delivery_max_delay_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExperiment {
    name: String,
    repo: String,
    #[serde(default)]
    paths: Vec<String>,
    spec: String,
    fork_label: Option<String>,
    override_label: Option<String>,
    dashboard_url: Option<String>,
}

/// The two sections this crate owns; everything else in the file is the coordinator's.
#[derive(Debug, Deserialize)]
struct RawSections {
    github: Option<toml::Value>,
    #[serde(default)]
    experiment: Vec<toml::Value>,
}

/// How phasegate authenticates to GitHub.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A personal (or fine-grained) access token.
    Token(Secret),
    /// A GitHub App installation: octocrab exchanges a JWT signed with the key for installation
    /// tokens lazily and refreshes them.
    App { app_id: u64, private_key_pem: Secret, installation_id: u64 },
}

/// The validated `[github]` section.
#[derive(Debug, Clone)]
pub struct GithubConfig {
    pub api_url: String,
    pub credentials: Credentials,
    /// `None` when neither `webhook_secret_file` nor the environment provides one: the webhook
    /// endpoint must then stay disabled.
    pub webhook_secret: Option<Secret>,
    pub comment: CommentPolicy,
    pub inconclusive: InconclusivePolicy,
    pub max_retries: u32,
    pub retry_initial_delay: Duration,
    pub retry_max_delay: Duration,
    /// Attempts of one delivery stage by the coordinator before it is given up (each attempt
    /// includes the call's own `max_retries`).
    pub delivery_attempts: u32,
    /// The coordinator's wait after the first failed delivery attempt; doubles after each failure.
    pub delivery_initial_delay: Duration,
    pub delivery_max_delay: Duration,
    pub experiments: Vec<ExperimentConfig>,
}

/// One `[[experiment]]` entry.
#[derive(Debug, Clone)]
pub struct ExperimentConfig {
    pub name: String,
    pub repo: RepoName,
    /// The globs as written, for messages.
    pub paths: Vec<String>,
    /// Path of the phase spec inside the repository.
    pub spec: String,
    pub fork_label: String,
    /// A maintainer adding this label to a PR overrides its run's failing verdict, as
    /// `phasegate override` does, naming who added it; `None`: no label overrides.
    pub override_label: Option<String>,
    pub dashboard_url: Option<String>,
    matcher: GlobSet,
}

impl ExperimentConfig {
    /// Whether any of `files` (repository-relative paths) matches the experiment's `paths` globs.
    pub fn matches_any(&self, files: &[String]) -> bool {
        files.iter().any(|f| self.matcher.is_match(f))
    }
}

impl GithubConfig {
    /// Reads and validates `path`, taking missing secrets from the process environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let env = |key: &str| std::env::var(key).ok();
        Self::parse(&text, path, &env, &read_file)
    }

    /// Parses the `[github]` and `[[experiment]]` sections of `text` (a missing `[github]` section is
    /// an error: the caller checks for it first when GitHub is optional). `env` and `read` are the
    /// only I/O.
    pub fn parse(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        read: &dyn Fn(&Path) -> Result<String, ConfigError>,
    ) -> Result<Self, ConfigError> {
        let parse_err = |e: toml::de::Error| ConfigError::Parse { path: path.to_owned(), message: one_line(&e) };
        let sections: RawSections = toml::from_str(text).map_err(parse_err)?;
        let Some(github) = sections.github else {
            return Err(ConfigError::Parse { path: path.to_owned(), message: "missing [github] section".to_owned() });
        };
        let raw: RawGithub = github.try_into().map_err(|e| prefixed(path, "[github]", e))?;
        let mut experiments = Vec::new();
        for (i, value) in sections.experiment.into_iter().enumerate() {
            let raw: RawExperiment =
                value.try_into().map_err(|e| prefixed(path, &format!("[[experiment]] #{}", i + 1), e))?;
            let exp = experiment(raw, path)?;
            if experiments.iter().any(|e: &ExperimentConfig| e.name == exp.name) {
                return Err(ConfigError::DuplicateExperiment { path: path.to_owned(), name: exp.name });
            }
            experiments.push(exp);
        }
        github_config(raw, experiments, path, env, read)
    }

    /// The experiments configured for `repo`.
    pub fn experiments_for<'a>(&'a self, repo: &'a RepoName) -> impl Iterator<Item = &'a ExperimentConfig> + 'a {
        self.experiments.iter().filter(move |e| &e.repo == repo)
    }

    pub fn experiment(&self, name: &str) -> Option<&ExperimentConfig> {
        self.experiments.iter().find(|e| e.name == name)
    }
}

/// Reads a secret file, trimming the trailing newline editors add.
pub fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
        .map_err(|source| ConfigError::SecretFile { path: path.to_owned(), source })
}

fn one_line(e: &toml::de::Error) -> String {
    e.to_string().lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join(" ")
}

fn prefixed(path: &Path, section: &str, e: toml::de::Error) -> ConfigError {
    ConfigError::Parse { path: path.to_owned(), message: format!("{section}: {}", one_line(&e)) }
}

fn experiment(raw: RawExperiment, path: &Path) -> Result<ExperimentConfig, ConfigError> {
    let repo = RepoName::try_from(raw.repo.as_str()).map_err(|source| ConfigError::Repo {
        path: path.to_owned(),
        experiment: raw.name.clone(),
        source,
    })?;
    let mut builder = GlobSetBuilder::new();
    for glob in &raw.paths {
        let parsed = Glob::new(glob).map_err(|e| ConfigError::Glob {
            path: path.to_owned(),
            experiment: raw.name.clone(),
            glob: glob.clone(),
            message: e.kind().to_string(),
        })?;
        builder.add(parsed);
    }
    let matcher = builder.build().map_err(|e| ConfigError::Glob {
        path: path.to_owned(),
        experiment: raw.name.clone(),
        glob: raw.paths.join(", "),
        message: e.to_string(),
    })?;
    Ok(ExperimentConfig {
        name: raw.name,
        repo,
        paths: raw.paths,
        spec: raw.spec,
        fork_label: raw.fork_label.unwrap_or_else(|| DEFAULT_FORK_LABEL.to_owned()),
        override_label: raw.override_label.filter(|l| !l.trim().is_empty()),
        dashboard_url: raw.dashboard_url,
        matcher,
    })
}

fn github_config(
    raw: RawGithub,
    experiments: Vec<ExperimentConfig>,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    read: &dyn Fn(&Path) -> Result<String, ConfigError>,
) -> Result<GithubConfig, ConfigError> {
    let credentials = credentials(&raw, path, env, read)?;
    let webhook_secret = secret(raw.webhook_secret_file.as_deref(), ENV_WEBHOOK_SECRET, env, read)?;
    let delay = |key: &'static str, value: Option<u64>, default: u64| match value {
        Some(0) => Err(ConfigError::NonPositive { path: path.to_owned(), key, value: 0 }),
        v => Ok(Duration::from_millis(v.unwrap_or(default))),
    };
    let (delivery_initial_delay, delivery_max_delay) = delivery_delays(&raw, path)?;
    let delivery_attempts = match raw.delivery_attempts {
        Some(0) => return Err(ConfigError::NonPositive { path: path.to_owned(), key: "delivery_attempts", value: 0 }),
        v => v.unwrap_or(DEFAULT_DELIVERY_ATTEMPTS),
    };
    Ok(GithubConfig {
        api_url: raw.api_url.unwrap_or_else(|| DEFAULT_API_URL.to_owned()).trim_end_matches('/').to_owned(),
        credentials,
        webhook_secret,
        comment: raw.comment,
        inconclusive: raw.inconclusive,
        max_retries: raw.max_retries.unwrap_or(5),
        retry_initial_delay: delay("retry_initial_delay_ms", raw.retry_initial_delay_ms, 1_000)?,
        retry_max_delay: delay("retry_max_delay_ms", raw.retry_max_delay_ms, 60_000)?,
        delivery_attempts,
        delivery_initial_delay,
        delivery_max_delay,
        experiments,
    })
}

/// `delivery_initial_delay_ms` and `delivery_max_delay_ms`: both positive, the cap not below the
/// first wait.
fn delivery_delays(raw: &RawGithub, path: &Path) -> Result<(Duration, Duration), ConfigError> {
    let initial = raw.delivery_initial_delay_ms.unwrap_or(DEFAULT_DELIVERY_INITIAL_DELAY_MS);
    let max = raw.delivery_max_delay_ms.unwrap_or(DEFAULT_DELIVERY_MAX_DELAY_MS.max(initial));
    for (key, value) in [("delivery_initial_delay_ms", initial), ("delivery_max_delay_ms", max)] {
        if value == 0 {
            return Err(ConfigError::NonPositive { path: path.to_owned(), key, value });
        }
    }
    if max < initial {
        return Err(ConfigError::LessThan {
            path: path.to_owned(),
            key: "delivery_max_delay_ms",
            value: max,
            other: "delivery_initial_delay_ms",
            other_value: initial,
        });
    }
    Ok((Duration::from_millis(initial), Duration::from_millis(max)))
}

fn secret(
    file: Option<&Path>,
    env_key: &str,
    env: &dyn Fn(&str) -> Option<String>,
    read: &dyn Fn(&Path) -> Result<String, ConfigError>,
) -> Result<Option<Secret>, ConfigError> {
    match file {
        Some(file) => read(file).map(|s| Some(Secret::new(s))),
        None => Ok(env(env_key).filter(|s| !s.is_empty()).map(Secret::new)),
    }
}

fn credentials(
    raw: &RawGithub,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    read: &dyn Fn(&Path) -> Result<String, ConfigError>,
) -> Result<Credentials, ConfigError> {
    let err =
        |message: &str, hint| ConfigError::Credentials { path: path.to_owned(), message: message.to_owned(), hint };
    let app_keys = raw.app_id.is_some() || raw.installation_id.is_some() || raw.private_key_file.is_some();
    if raw.token_file.is_some() && app_keys {
        return Err(err(
            "sets both token_file and GitHub App keys",
            "use either token_file or app_id + private_key_file + installation_id",
        ));
    }
    if app_keys {
        let (Some(app_id), Some(installation_id)) = (raw.app_id, raw.installation_id) else {
            return Err(err("GitHub App auth needs both app_id and installation_id", "set the missing key"));
        };
        let key = secret(raw.private_key_file.as_deref(), ENV_PRIVATE_KEY, env, read)?.ok_or_else(|| {
            err("GitHub App auth needs a private key", "set private_key_file or PHASEGATE_GITHUB_PRIVATE_KEY")
        })?;
        return Ok(Credentials::App { app_id, private_key_pem: key, installation_id });
    }
    secret(raw.token_file.as_deref(), ENV_TOKEN, env, read)?.map(Credentials::Token).ok_or_else(|| {
        err(
            "has no credentials",
            "set token_file, app_id + private_key_file + installation_id, or PHASEGATE_GITHUB_TOKEN",
        )
    })
}

#[cfg(test)]
mod tests;
