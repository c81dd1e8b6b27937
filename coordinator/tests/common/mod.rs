//! Helpers shared by the coordinator's integration tests: the bundled persona-v1 experiment and a
//! coordinator served in process.

// Each test binary uses part of this.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::TcpListener;

use phasegate_coordinator::{AccessFile, ServeConfig, ShellConfig};

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

/// A coordinator served in process on a data dir that outlives it (for restarts).
pub struct Coordinator {
    pub access: AccessFile,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Coordinator {
    pub async fn start(data_dir: &Path, shell: ShellConfig) -> Self {
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", grpc.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let config = ServeConfig { data_dir: data_dir.to_owned(), shell, tls: None };
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(e) = phasegate_coordinator::run(config, grpc, http, shutdown).await {
                panic!("coordinator failed: {e}");
            }
        });
        let path = data_dir.join("access.toml");
        let mut tries = 0;
        let access = loop {
            if let Ok(a) = AccessFile::load(&path)
                && a.address == address
            {
                break a;
            }
            tries += 1;
            assert!(tries < 200, "the coordinator never wrote {}", path.display());
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        Self { access, stop: Some(stop), task: Some(task) }
    }

    /// Shuts the coordinator down and waits until it has stopped.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
