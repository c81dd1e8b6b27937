//! Helpers shared by the coordinator's integration tests: the bundled persona-v1 experiment.

use std::path::{Path, PathBuf};

use phasegate_coordinator::history::History;

/// A path inside `datasets/persona-v1`.
pub fn dataset(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/persona-v1").join(rel)
}

/// Imports the bundled history (phases 6-9) into `data_dir` as accepted phases.
pub async fn import_history(data_dir: &Path) {
    let history = History::create(data_dir).await.unwrap();
    for phase in ["6", "7", "8", "9"] {
        let dir = dataset(&format!("history/phase{phase}"));
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        let parsed = gate_rules::import::load_files(&files, "persona-v1", Some(phase)).unwrap();
        history.import_phase(parsed, true).await.unwrap();
    }
}
