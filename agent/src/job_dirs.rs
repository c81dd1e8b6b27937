//! Job directory clean-up: once a job is done its directory (`jobs/<job>-<attempt>`) is deleted,
//! except the newest few kept for debugging. Newest means the highest job id then attempt (ids
//! only grow on a coordinator), so the choice needs no clock. Directories of running jobs and
//! anything not named like a job directory are never touched.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Finished job directories kept by default (`phasegate agent --keep-job-dirs`).
pub const DEFAULT_KEEP_JOB_DIRS: usize = 5;

/// `<job>-<attempt>` as numbers, or `None` for any other name.
fn parse_name(name: &str) -> Option<(u64, u64)> {
    let (job, attempt) = name.split_once('-')?;
    Some((job.parse().ok()?, attempt.parse().ok()?))
}

/// The job directories under `jobs_dir` to delete: all finished ones but the `keep` newest.
/// `running` holds the job ids still running. Pure apart from listing `jobs_dir`.
pub(crate) fn to_delete(names: &[String], keep: usize, running: &HashSet<u64>) -> Vec<String> {
    let mut finished: Vec<((u64, u64), &String)> = names
        .iter()
        .filter_map(|n| parse_name(n).map(|id| (id, n)))
        .filter(|((job, _), _)| !running.contains(job))
        .collect();
    finished.sort_by_key(|f| std::cmp::Reverse(f.0));
    finished.into_iter().skip(keep).map(|(_, n)| n.clone()).collect()
}

/// Deletes the finished job directories under `jobs_dir` beyond the `keep` newest; returns those
/// deleted. A directory that cannot be deleted is logged and left. Blocking.
pub(crate) fn collect_garbage(jobs_dir: &Path, keep: usize, running: &HashSet<u64>) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(jobs_dir) else { return Vec::new() };
    let names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    let mut deleted = Vec::new();
    for name in to_delete(&names, keep, running) {
        let path = jobs_dir.join(&name);
        match std::fs::remove_dir_all(&path) {
            Ok(()) => deleted.push(path),
            Err(e) => tracing::warn!(dir = %path.display(), error = %e, "failed to delete a job directory"),
        }
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEP: usize = 2;

    #[test]
    fn keeps_the_newest_finished_dirs_and_never_running_or_foreign_ones() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["3-1", "10-1", "10-2", "7-1", "12-1", "notes", "9-x"] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
            std::fs::write(dir.path().join(name).join("out.txt"), "x").unwrap();
        }
        // Job 3 still runs; 12 and 10-2 are the newest finished.
        let deleted = collect_garbage(dir.path(), KEEP, &HashSet::from([3]));
        let mut deleted: Vec<String> =
            deleted.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        deleted.sort();
        assert_eq!(deleted, ["10-1", "7-1"]);
        let mut left: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["10-2", "12-1", "3-1", "9-x", "notes"]);
        // Nothing more to do the second time.
        assert!(collect_garbage(dir.path(), KEEP, &HashSet::from([3])).is_empty());
    }

    #[test]
    fn keep_zero_deletes_every_finished_dir() {
        let names: Vec<String> = ["1-1", "2-1"].map(String::from).to_vec();
        assert_eq!(to_delete(&names, 0, &HashSet::new()), ["2-1", "1-1"]);
        assert!(to_delete(&names, DEFAULT_KEEP_JOB_DIRS, &HashSet::new()).is_empty());
    }
}
