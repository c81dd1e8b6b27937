//! `gate.toml`: typed, strict configuration of the rules and the statistics.
//!
//! Unknown keys are errors naming the key (with its table) and the file. Every value is checked
//! for range after parsing, so a config that loads is one the rules can use.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::{LintConfig, LintRule};
use crate::finding::Severity;

/// All gate settings; `GateConfig::default()` is the documented default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateConfig {
    /// Smallest change of the 0–10 phase score that counts as a change at all.
    pub min_effect: f64,
    /// Significance level of the paired test.
    pub alpha: f64,
    /// Power the "samples needed" estimate plans for.
    pub power: f64,
    /// Bootstrap resamples (interval, and p-value when the exact test is too large).
    pub resamples: u32,
    /// Seed of the bootstrap, so verdicts are deterministic.
    pub seed: u64,
    /// Largest question count for which the exact sign-flip test (2^n flips) is used.
    pub exact_max_questions: u32,
    pub rules: Rules,
    /// `[lint]`: the dataset pre-gate (`phasegate lint`).
    pub lint: LintConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    pub overall_drop: Toggle,
    pub question_drop: QuestionDrop,
    pub regression_streak: Streak,
    pub loss_score_divergence: Divergence,
    pub auto_fail: AutoFail,
    pub min_score: MinScore,
    pub vram_budget: VramBudget,
    pub truncation: Truncation,
    pub environment: Environment,
    pub plateau: Plateau,
    pub pairwise: Pairwise,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Toggle {
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuestionDrop {
    pub enabled: bool,
    /// Points of 10 one question may fall before the gate fails.
    pub max_question_drop: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Streak {
    pub enabled: bool,
    pub k: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Divergence {
    pub enabled: bool,
    pub min_loss_improvement_pct: f64,
    pub severity: Severity,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutoFail {
    pub enabled: bool,
    /// Phrases that count as automatic-zero triggers on top of the rubric's.
    pub extra_triggers: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MinScore {
    /// Absolute floor on the 0–10 score; absent means the rule is off.
    pub floor: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VramBudget {
    /// Budget in MiB; absent means the rule is off.
    pub max_mib: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Truncation {
    pub enabled: bool,
    pub max_share_pct: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Environment {
    pub enabled: bool,
    /// Environment or generation keys whose differences are not confounders.
    pub ignore_keys: Vec<String>,
}

/// `[rules.pairwise]`: a pairwise judge's preference for the baseline's answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pairwise {
    pub enabled: bool,
    /// Smallest mean preference (of −1..1) for the baseline that counts as a preference at all.
    pub min_preference: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Plateau {
    pub enabled: bool,
    pub n: u32,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            min_effect: 0.5,
            alpha: 0.05,
            power: 0.8,
            resamples: 10_000,
            seed: 0x5eed_9a7e,
            exact_max_questions: 16,
            rules: Rules::default(),
            lint: LintConfig::default(),
        }
    }
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            overall_drop: Toggle { enabled: true },
            question_drop: QuestionDrop::default(),
            regression_streak: Streak::default(),
            loss_score_divergence: Divergence::default(),
            auto_fail: AutoFail::default(),
            min_score: MinScore::default(),
            vram_budget: VramBudget::default(),
            truncation: Truncation::default(),
            environment: Environment::default(),
            plateau: Plateau::default(),
            pairwise: Pairwise::default(),
        }
    }
}

impl Default for Toggle {
    fn default() -> Self {
        Toggle { enabled: true }
    }
}

impl Default for QuestionDrop {
    fn default() -> Self {
        QuestionDrop { enabled: true, max_question_drop: 3.0 }
    }
}

impl Default for Streak {
    fn default() -> Self {
        Streak { enabled: true, k: 2 }
    }
}

impl Default for Divergence {
    fn default() -> Self {
        Divergence { enabled: true, min_loss_improvement_pct: 10.0, severity: Severity::Warn }
    }
}

impl Default for AutoFail {
    fn default() -> Self {
        AutoFail { enabled: true, extra_triggers: Vec::new() }
    }
}

impl Default for Truncation {
    fn default() -> Self {
        Truncation { enabled: true, max_share_pct: 25.0 }
    }
}

impl Default for Environment {
    fn default() -> Self {
        Environment { enabled: true, ignore_keys: Vec::new() }
    }
}

impl Default for Pairwise {
    fn default() -> Self {
        Pairwise { enabled: true, min_preference: 0.25 }
    }
}

impl Default for Plateau {
    fn default() -> Self {
        Plateau { enabled: true, n: 3 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to parse gate config {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("failed to load gate config {}: unknown key `{key}`\nhint: known keys here are {known}", path.display())]
    UnknownKey { path: PathBuf, key: String, known: String },
    #[error("failed to load gate config {}: `{key}` = {value} is out of range: {expected}", path.display())]
    OutOfRange { path: PathBuf, key: String, value: String, expected: &'static str },
}

/// Known keys per table, checked before typed parsing so the error names the dotted key.
const TOP_KEYS: &[&str] =
    &["min_effect", "alpha", "power", "resamples", "seed", "exact_max_questions", "rules", "lint"];
const RULE_KEYS: &[(&str, &[&str])] = &[
    ("overall_drop", &["enabled"]),
    ("question_drop", &["enabled", "max_question_drop"]),
    ("regression_streak", &["enabled", "k"]),
    ("loss_score_divergence", &["enabled", "min_loss_improvement_pct", "severity"]),
    ("auto_fail", &["enabled", "extra_triggers"]),
    ("min_score", &["floor"]),
    ("vram_budget", &["max_mib"]),
    ("truncation", &["enabled", "max_share_pct"]),
    ("environment", &["enabled", "ignore_keys"]),
    ("plateau", &["enabled", "n"]),
    ("pairwise", &["enabled", "min_preference"]),
];

impl GateConfig {
    /// Parses and validates a `gate.toml`; `path` only names the file in errors.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<GateConfig, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| parse_error(path, &e))?;
        check_keys(&table, path)?;
        let config: GateConfig = toml::from_str(text).map_err(|e| parse_error(path, &e))?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let r = &self.rules;
        let checks: [(&str, f64, bool, &'static str); 11] = [
            ("min_effect", self.min_effect, (0.0..=10.0).contains(&self.min_effect), "0 to 10"),
            ("alpha", self.alpha, self.alpha > 0.0 && self.alpha < 1.0, "between 0 and 1"),
            ("power", self.power, self.power > 0.0 && self.power < 1.0, "between 0 and 1"),
            ("resamples", f64::from(self.resamples), self.resamples >= 100, "at least 100"),
            ("exact_max_questions", f64::from(self.exact_max_questions), self.exact_max_questions <= 24, "at most 24"),
            (
                "rules.question_drop.max_question_drop",
                r.question_drop.max_question_drop,
                r.question_drop.max_question_drop > 0.0 && r.question_drop.max_question_drop <= 10.0,
                "above 0, at most 10",
            ),
            ("rules.regression_streak.k", f64::from(r.regression_streak.k), r.regression_streak.k >= 1, "at least 1"),
            (
                "rules.loss_score_divergence.min_loss_improvement_pct",
                r.loss_score_divergence.min_loss_improvement_pct,
                (0.0..=100.0).contains(&r.loss_score_divergence.min_loss_improvement_pct),
                "0 to 100",
            ),
            (
                "rules.truncation.max_share_pct",
                r.truncation.max_share_pct,
                (0.0..=100.0).contains(&r.truncation.max_share_pct),
                "0 to 100",
            ),
            ("rules.plateau.n", f64::from(r.plateau.n), r.plateau.n >= 2, "at least 2"),
            (
                "rules.pairwise.min_preference",
                r.pairwise.min_preference,
                r.pairwise.min_preference > 0.0 && r.pairwise.min_preference <= 1.0,
                "above 0, at most 1",
            ),
        ];
        let lint = self.lint.out_of_range();
        let failed =
            checks.into_iter().find(|c| !c.2).map(|(key, value, _, expected)| (key, value.to_string(), expected));
        if let Some((key, value, expected)) = failed.or(lint) {
            return Err(ConfigError::OutOfRange { path: path.to_owned(), key: key.to_owned(), value, expected });
        }
        match r.min_score.floor {
            Some(floor) if !(0.0..=10.0).contains(&floor) => Err(ConfigError::OutOfRange {
                path: path.to_owned(),
                key: "rules.min_score.floor".to_owned(),
                value: floor.to_string(),
                expected: "0 to 10",
            }),
            _ => Ok(()),
        }
    }
}

fn parse_error(path: &Path, error: &toml::de::Error) -> ConfigError {
    ConfigError::Parse { path: path.to_owned(), message: error.to_string().trim_end().to_owned() }
}

fn check_keys(table: &toml::Table, path: &Path) -> Result<(), ConfigError> {
    check_table(table, "", TOP_KEYS, path)?;
    if let Some(toml::Value::Table(lint)) = table.get("lint") {
        check_table(lint, "lint.", LintConfig::KEYS, path)?;
        if let Some(toml::Value::Table(severity)) = lint.get("severity") {
            let names: Vec<&str> = LintRule::ALL.iter().map(|r| r.as_str()).collect();
            check_table(severity, "lint.severity.", &names, path)?;
        }
    }
    let Some(toml::Value::Table(rules)) = table.get("rules") else {
        return Ok(());
    };
    let rule_names: Vec<&str> = RULE_KEYS.iter().map(|(name, _)| *name).collect();
    check_table(rules, "rules.", &rule_names, path)?;
    for (name, keys) in RULE_KEYS {
        if let Some(toml::Value::Table(rule)) = rules.get(*name) {
            check_table(rule, &format!("rules.{name}."), keys, path)?;
        }
    }
    Ok(())
}

fn check_table(table: &toml::Table, prefix: &str, known: &[&str], path: &Path) -> Result<(), ConfigError> {
    match table.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => Err(ConfigError::UnknownKey {
            path: path.to_owned(),
            key: format!("{prefix}{key}"),
            known: known.join(", "),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<GateConfig, ConfigError> {
        GateConfig::from_toml_str(text, Path::new("gate.toml"))
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        assert_eq!(load("").unwrap(), GateConfig::default());
    }

    #[test]
    fn bundled_gate_toml_loads_with_the_defaults_plus_a_vram_budget() {
        let text = include_str!("../../datasets/persona-v1/gate.toml");
        let config = load(text).unwrap();
        assert_eq!(config.min_effect, 0.5);
        assert_eq!(config.rules.vram_budget.max_mib, Some(3600));
        let mut expected = config.clone();
        expected.rules.vram_budget.max_mib = None;
        assert_eq!(expected, GateConfig::default());
    }

    #[test]
    fn values_are_read_from_their_tables() {
        let config = load(
            "min_effect = 0.25\n[rules.loss_score_divergence]\nseverity = \"fail\"\n[rules.min_score]\nfloor = 4.0\n",
        )
        .unwrap();
        assert_eq!(config.min_effect, 0.25);
        assert_eq!(config.rules.loss_score_divergence.severity, Severity::Fail);
        assert_eq!(config.rules.min_score.floor, Some(4.0));
    }

    #[test]
    fn unknown_keys_name_the_key_and_the_file() {
        let table = [
            ("min_efect = 0.5", "min_efect"),
            ("[rules.question_drop]\nmax_drop = 3", "rules.question_drop.max_drop"),
            ("[rules.streak]\nk = 2", "rules.streak"),
        ];
        for (text, key) in table {
            let err = load(text).unwrap_err();
            assert!(matches!(&err, ConfigError::UnknownKey { key: k, .. } if k == key), "{err}");
            let message = err.to_string();
            assert!(message.contains("gate.toml") && message.contains(key), "{message}");
        }
    }

    #[test]
    fn the_lint_table_is_read_and_strict() {
        use crate::data::LintLevel;
        let config = load(
            "[lint]\nmax_length = 512\nepochs = 8\nnear_duplicate_threshold = 0.9\n[lint.severity]\ncontamination = \"warn\"\nnear_duplicate = \"off\"\n",
        )
        .unwrap();
        assert_eq!(config.lint.max_length, Some(512));
        assert_eq!(config.lint.epochs, Some(8));
        assert_eq!(config.lint.severity_of(LintRule::Contamination), Some(Severity::Warn));
        assert_eq!(config.lint.severity_of(LintRule::NearDuplicate), None);
        assert_eq!(load("").unwrap().lint.severity_of(LintRule::Contamination), Some(Severity::Fail));
        assert_eq!(config.lint.severity.get(&LintRule::NearDuplicate), Some(&LintLevel::Off));
        for (text, key) in [
            ("[lint]\nmax_len = 3", "lint.max_len"),
            ("[lint.severity]\ncontaminated = \"fail\"", "lint.severity.contaminated"),
        ] {
            let err = load(text).unwrap_err();
            assert!(matches!(&err, ConfigError::UnknownKey { key: k, .. } if k == key), "{err}");
        }
        let err = load("[lint.severity]\ncontamination = \"loud\"").unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
        let err = load("[lint]\nngram_threshold = 1.5").unwrap_err();
        assert!(err.to_string().contains("lint.ngram_threshold"), "{err}");
    }

    #[test]
    fn wrong_types_and_ranges_are_errors_naming_the_file() {
        let err = load("alpha = \"high\"").unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }));
        assert!(err.to_string().contains("gate.toml"), "{err}");
        let err = load("alpha = 1.5").unwrap_err();
        assert!(matches!(&err, ConfigError::OutOfRange { key, .. } if key == "alpha"), "{err}");
        let err = load("[rules.regression_streak]\nk = 0").unwrap_err();
        assert!(err.to_string().contains("rules.regression_streak.k"), "{err}");
    }
}
