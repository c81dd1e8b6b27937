//! The gate's phase history for offline use: the CLI's `import`, `history`, `gate`, `accept` and
//! `rescore` open the same SQLite file a coordinator serves from (`<data dir>/phasegate.db`), with
//! or without a server running (SQLite's WAL lets both write).
//!
//! Read → decide → write: [`History::gate`] loads the accepted history, calls
//! [`gate_rules::evaluate`] and renders the report; it stores nothing (an offline candidate is a
//! file, not a run).

use std::path::{Path, PathBuf};

use gate_rules::{Evaluation, GateConfig, Phase, Verdict};
use phasegate_proto::domain::RunId;

use crate::rescore::Rescorer;
use crate::shell::now_ms;
use crate::store::{SqliteStore, Store, StoreError};

/// The database file inside a data dir.
pub const DB_FILE: &str = "phasegate.db";

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("no phasegate database at {}", path.display())]
    NoDatabase { path: PathBuf },
    #[error("failed to create data dir {}: {source}", path.display())]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no phase {label} in experiment {experiment}")]
    NoPhase { experiment: String, label: String },
    #[error("run {run} has no gated phase")]
    NoRunPhase { run: u64 },
}

/// One row of `phasegate history`.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub phase: Phase,
    /// The run whose gate stage produced the phase; `None` for imported phases.
    pub run: Option<u64>,
    /// That run's verdict (`pass`, `fail`, ...); empty when there is none.
    pub verdict: String,
    /// `(by, reason)` when a maintainer merged over that verdict (`phasegate override`).
    pub overridden: Option<(String, String)>,
}

/// What `rescore` did to one phase.
#[derive(Debug, Clone)]
pub struct RescoreLine {
    pub label: String,
    /// The instrument the phase was scored by before.
    pub from: gate_rules::Instrument,
    /// Its 0–10 score before.
    pub before: Option<f64>,
    pub outcome: RescoreOutcome,
}

#[derive(Debug, Clone)]
pub enum RescoreOutcome {
    /// Re-scored and stored, with its score after.
    Rescored { after: Option<f64> },
    /// Already scored by this instrument.
    Current,
    /// Not re-scored, and why (no responses, other questions).
    Skipped(String),
}

/// The gate's answer for an offline candidate, with the history it was judged against.
#[derive(Debug, Clone)]
pub struct GateOutcome {
    pub evaluation: Evaluation,
    pub markdown: String,
    pub json: String,
}

impl GateOutcome {
    pub fn verdict(&self) -> Verdict {
        self.evaluation.verdict
    }
}

/// A handle on the history stored in a data dir.
#[derive(Debug, Clone)]
pub struct History {
    store: SqliteStore,
}

impl History {
    /// Opens (creating if needed) the data dir's database: for `import`.
    pub async fn create(data_dir: &Path) -> Result<History, HistoryError> {
        crate::data_dir::create_private_dir(data_dir)
            .map_err(|source| HistoryError::DataDir { path: data_dir.to_owned(), source })?;
        Ok(History { store: SqliteStore::open(&data_dir.join(DB_FILE)).await? })
    }

    /// Opens an existing data dir's database: reading a directory that holds none is an error, not
    /// an empty history.
    pub async fn open(data_dir: &Path) -> Result<History, HistoryError> {
        let path = data_dir.join(DB_FILE);
        if !path.is_file() {
            return Err(HistoryError::NoDatabase { path });
        }
        Ok(History { store: SqliteStore::open(&path).await? })
    }

    /// Stores an imported phase; `accept` adds it to the accepted history at once.
    pub async fn import_phase(&self, mut phase: Phase, accept: bool) -> Result<(), HistoryError> {
        phase.accepted = accept;
        self.store.upsert_phase(&phase, None, now_ms() as i64).await?;
        Ok(())
    }

    /// Every phase of an experiment, ordered by `(ordinal, label)`.
    pub async fn history(&self, experiment: &str) -> Result<Vec<HistoryEntry>, HistoryError> {
        let rows = self.store.phases(experiment).await?;
        Ok(rows
            .into_iter()
            .map(|r| HistoryEntry {
                phase: r.phase,
                run: r.run_id.map(|id| id as u64),
                verdict: r.verdict,
                overridden: r.overridden,
            })
            .collect())
    }

    /// Accepts the phase `label` of `experiment`.
    pub async fn accept(&self, experiment: &str, label: &str) -> Result<(), HistoryError> {
        if self.store.accept_phase(experiment, label).await? {
            Ok(())
        } else {
            Err(HistoryError::NoPhase { experiment: experiment.to_owned(), label: label.to_owned() })
        }
    }

    /// Accepts the phase a run's gate stage stored; returns it.
    pub async fn accept_run(&self, run: u64) -> Result<Phase, HistoryError> {
        let mut phase = self.run_phase(run).await?;
        self.accept(&phase.experiment, &phase.label).await?;
        phase.accepted = true;
        Ok(phase)
    }

    /// The candidate phase a run's gate stage stored.
    pub async fn run_phase(&self, run: u64) -> Result<Phase, HistoryError> {
        let record = self.store.phase_of_run(RunId(run)).await?;
        record.map(|r| r.phase).ok_or(HistoryError::NoRunPhase { run })
    }

    /// Judges `candidate` against the accepted history of its experiment (read → decide; nothing
    /// is written). `budget_chars` bounds the markdown report. With a `rescorer` (the rules
    /// scorer that scored the candidate), baselines another instrument scored are re-scored
    /// from their stored responses first.
    pub async fn gate(
        &self,
        candidate: &Phase,
        config: &GateConfig,
        budget_chars: usize,
        rescorer: Option<&Rescorer>,
    ) -> Result<GateOutcome, HistoryError> {
        let mut history = accepted(self.store.phases(&candidate.experiment).await?);
        if let Some(r) = rescorer {
            history = r.align(&history, candidate);
        }
        Ok(decide(&history, candidate, config, budget_chars))
    }

    /// Re-scores every stored phase of `experiment` that keeps its responses with `rescorer`
    /// (see [`rescore_stored`]). One line per phase; none when the experiment has no phases.
    pub async fn rescore(&self, experiment: &str, rescorer: &Rescorer) -> Result<Vec<RescoreLine>, HistoryError> {
        Ok(rescore_stored(&self.store, experiment, rescorer).await?)
    }

    /// The rubric stored with the accepted history of `experiment`: the newest accepted phase's
    /// that records one.
    pub async fn rubric(&self, experiment: &str) -> Result<Option<gate_rules::Rubric>, HistoryError> {
        let history = accepted(self.store.phases(experiment).await?);
        Ok(history.into_iter().rev().find_map(|p| p.rubric))
    }
}

/// Re-scores every phase of `experiment` in `store` that keeps its responses with `rescorer`,
/// storing each as it was (accepted or not, its run) with the new scores and the old ones in
/// `earlier_scores`. Phases already scored by `rescorer` are left alone, and so are phases that
/// cannot be re-scored (no responses, other questions). One line per phase, in history order.
///
/// The one implementation of re-scoring a stored history: `phasegate rescore` on a data dir
/// ([`History::rescore`]) and through a coordinator (the `RescorePhases` RPC).
pub(crate) async fn rescore_stored<S: Store>(
    store: &S,
    experiment: &str,
    rescorer: &Rescorer,
) -> Result<Vec<RescoreLine>, StoreError> {
    let mut lines = Vec::new();
    for record in store.phases(experiment).await? {
        let phase = record.phase;
        let before = phase.score();
        let outcome = if phase.instrument().same_as(rescorer.instrument()) {
            RescoreOutcome::Current
        } else {
            match rescorer.rescore(&phase) {
                Ok(new) => {
                    let after = new.score();
                    let run = record.run_id.map(|id| RunId(id as u64));
                    store.upsert_phase(&new, run, now_ms() as i64).await?;
                    RescoreOutcome::Rescored { after }
                }
                Err(e) => RescoreOutcome::Skipped(e.to_string()),
            }
        };
        lines.push(RescoreLine { label: phase.label.clone(), from: phase.instrument(), before, outcome });
    }
    Ok(lines)
}

/// The accepted phases of a stored history.
pub(crate) fn accepted(rows: Vec<crate::store::PhaseRecord>) -> Vec<Phase> {
    rows.into_iter().map(|r| r.phase).filter(|p| p.accepted).collect()
}

/// The pure step: evaluate and render both reports.
pub(crate) fn decide(history: &[Phase], candidate: &Phase, config: &GateConfig, budget_chars: usize) -> GateOutcome {
    let evaluation = gate_rules::evaluate(history, candidate, config);
    let markdown = gate_rules::report::render_markdown(&evaluation, history, candidate, config, budget_chars);
    let json = gate_rules::report::render_json(&evaluation);
    GateOutcome { evaluation, markdown, json }
}
