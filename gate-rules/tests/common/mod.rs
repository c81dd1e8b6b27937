//! Loads the bundled persona-v1 history the way the CLI's `phasegate import` would.

use std::path::{Path, PathBuf};

use gate_rules::{GateConfig, InstrumentKind, Phase, import};

pub const EXPERIMENT: &str = "persona-v1";

pub fn dataset_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/persona-v1")
}

/// Imports phase `n` from `history/phaseN/` (every JSON file there) and marks it accepted, since
/// the team merged every one of them. The team scored every phase by hand, phase 6's totals
/// included, so the import says `--scorer human`.
pub fn load_phase(n: u32) -> Phase {
    let dir = dataset_dir().join(format!("history/phase{n}"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("failed to list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let options = import::ImportOptions { scorer: Some(InstrumentKind::Human), ..Default::default() };
    let mut phase = import::load_files_with(&files, EXPERIMENT, &options).unwrap_or_else(|e| panic!("{e}"));
    phase.accepted = true;
    phase
}

pub fn history() -> Vec<Phase> {
    (6..=9).map(load_phase).collect()
}

pub fn gate_config() -> GateConfig {
    let path = dataset_dir().join("gate.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    GateConfig::from_toml_str(&text, Path::new("datasets/persona-v1/gate.toml")).unwrap()
}
