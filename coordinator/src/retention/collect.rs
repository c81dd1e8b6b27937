//! `phasegate gc` and the daily retention pass: read → decide ([`runs_to_prune`]) → write (one
//! store transaction) → delete files.
//!
//! Files are deleted only after the database commit. A crash in between leaves files no table
//! names; the sweep of a later gc removes those, as it removes any blob file no table names, once
//! it is older than [`SWEEP_MIN_AGE_MS`] (an upload places its file before it records the row).

use std::collections::HashSet;

use tonic::Status;

use super::{RetentionPolicy, runs_to_prune};
use crate::artifacts::{ArtifactStore, StoredFile};
use crate::shell::{Shared, store_status};
use crate::store::{StorageFault, Store};
use phasegate_proto::domain::RunId;

/// Files no table names are left alone until they are this old: one hour.
pub(crate) const SWEEP_MIN_AGE_MS: i64 = 60 * 60 * 1000;

/// What a gc removed, or in a dry run would remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GcReport {
    pub dry_run: bool,
    pub policy: RetentionPolicy,
    pub runs: Vec<RunId>,
    pub log_lines: u64,
    pub metric_points: u64,
    /// Blob files (artifacts, bundles, stale temporary uploads) deleted.
    pub blobs: u64,
    /// The sizes of those files.
    pub bytes_freed: u64,
}

fn file_status(what: &str, e: &std::io::Error) -> Status {
    let detail = format!("gc failed to {what}: {e}");
    match StorageFault::of_io(e) {
        Some(fault) => fault.status(&detail),
        None => Status::internal(detail),
    }
}

impl<S: Store> Shared<S> {
    /// Applies `policy` at `now_ms`; with `dry_run`, changes nothing and reports the same figures.
    pub(crate) async fn collect_garbage(
        &self,
        policy: RetentionPolicy,
        dry_run: bool,
        now_ms: i64,
    ) -> Result<GcReport, Status> {
        let ages = self.store.run_ages().await.map_err(store_status)?;
        let accepted = self.store.accepted_runs().await.map_err(store_status)?;
        let chosen = runs_to_prune(&ages, &accepted, policy, now_ms);
        // No upload places a file from here to the end, so none is deleted under its new row.
        let _deleting = self.artifacts.deleting().await;
        let mut pruned = self.store.prune_runs(&chosen, now_ms, !dry_run).await.map_err(store_status)?;
        let known = self.store.known_blobs().await.map_err(store_status)?;
        let artifacts = self.artifacts.clone();
        let unreferenced = std::mem::take(&mut pruned.blobs);
        let deleted =
            tokio::task::spawn_blocking(move || delete_files(&artifacts, &unreferenced, &known, dry_run, now_ms))
                .await
                .map_err(|e| Status::internal(format!("gc failed: {e}")))?;
        let (blobs, bytes_freed) = deleted?;
        let report = GcReport {
            dry_run,
            policy,
            runs: pruned.runs,
            log_lines: pruned.log_lines,
            metric_points: pruned.metric_points,
            blobs,
            bytes_freed,
        };
        tracing::info!(
            dry_run,
            runs = report.runs.len(),
            log_lines = report.log_lines,
            metric_points = report.metric_points,
            blobs = report.blobs,
            bytes = report.bytes_freed,
            "gc"
        );
        Ok(report)
    }
}

/// Deletes (or, in a dry run, counts) the files of the blobs whose rows the prune removed, then
/// sweeps files no table names that are old enough; returns how many files and bytes.
fn delete_files(
    artifacts: &ArtifactStore,
    unreferenced: &[(String, u64)],
    known: &HashSet<String>,
    dry_run: bool,
    now_ms: i64,
) -> Result<(u64, u64), Status> {
    let (mut blobs, mut bytes) = (0u64, 0u64);
    for (sha, size) in unreferenced {
        let gone = if dry_run {
            artifacts.path_of(sha).is_file()
        } else if known.contains(sha) {
            // A row names it again: the row is the truth, keep the file.
            false
        } else {
            artifacts.remove(sha).map_err(|e| file_status(&format!("delete blob {sha}"), &e))?
        };
        if gone {
            blobs += 1;
            bytes += size;
        }
    }
    let files = artifacts.stored_files().map_err(|e| file_status("list the artifact directory", &e))?;
    for file in files.iter().filter(|f| sweepable(f, known, now_ms)) {
        let gone = dry_run
            || artifacts
                .remove_stored(file)
                .map_err(|e| file_status(&format!("delete {}", file.path.display()), &e))?;
        if gone {
            blobs += 1;
            bytes += file.size;
        }
    }
    Ok((blobs, bytes))
}

/// A file no table names (or a temporary upload) older than [`SWEEP_MIN_AGE_MS`].
fn sweepable(file: &StoredFile, known: &HashSet<String>, now_ms: i64) -> bool {
    let old = file.modified_ms <= now_ms.saturating_sub(SWEEP_MIN_AGE_MS);
    old && file.sha256.as_ref().is_none_or(|sha| !known.contains(sha))
}
