//! Which runs retention prunes: a pure function of the runs, the accepted phases' runs, the
//! policy and `now` (no store, no clock, no files).

use std::collections::{BTreeMap, BTreeSet};

use phasegate_proto::domain::{RunId, RunState};

/// Runs kept per experiment whatever their age, unless the caller says otherwise.
pub const DEFAULT_KEEP_RUNS: u32 = 20;
/// Age (since the run finished) before a run may be pruned: 30 days.
pub const DEFAULT_OLDER_THAN_MS: u64 = 30 * 24 * 60 * 60 * 1000;

/// How much history keeps its logs, metric points and artifacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// The newest runs of each experiment that are never pruned (the newest one always is kept,
    /// even with 0).
    pub keep_runs: u32,
    /// A run is pruned only once it finished at least this long ago.
    pub older_than_ms: u64,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self { keep_runs: DEFAULT_KEEP_RUNS, older_than_ms: DEFAULT_OLDER_THAN_MS }
    }
}

/// What the policy needs to know of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunAge {
    pub id: RunId,
    pub experiment: String,
    pub state: RunState,
    /// When the run ended; `None` while it runs (or for a row that never recorded it).
    pub finished_ms: Option<i64>,
    /// Already pruned: counted among the newest runs, but not pruned again.
    pub pruned: bool,
}

/// The runs to prune, in id order: each is terminal, finished at least `older_than_ms` before
/// `now_ms`, not among the `keep_runs` newest runs of its experiment (by id; the newest is always
/// kept), not the run of an accepted phase, and not pruned already.
pub(crate) fn runs_to_prune(
    runs: &[RunAge],
    accepted: &BTreeSet<RunId>,
    policy: RetentionPolicy,
    now_ms: i64,
) -> Vec<RunId> {
    let mut by_experiment: BTreeMap<&str, Vec<&RunAge>> = BTreeMap::new();
    for run in runs {
        by_experiment.entry(run.experiment.as_str()).or_default().push(run);
    }
    let keep = policy.keep_runs.max(1) as usize;
    let cutoff = now_ms.saturating_sub(i64::try_from(policy.older_than_ms).unwrap_or(i64::MAX));
    let mut out: Vec<RunId> = by_experiment
        .into_values()
        .flat_map(|mut runs| {
            runs.sort_by_key(|r| std::cmp::Reverse(r.id));
            runs.into_iter().skip(keep)
        })
        .filter(|r| !r.pruned && r.state.is_terminal() && !accepted.contains(&r.id))
        .filter(|r| r.finished_ms.is_some_and(|f| f <= cutoff))
        .map(|r| r.id)
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: i64 = 24 * 60 * 60 * 1000;
    const NOW: i64 = 400 * DAY_MS;

    fn run(id: u64, experiment: &str, state: RunState, finished_days_ago: Option<i64>) -> RunAge {
        RunAge {
            id: RunId(id),
            experiment: experiment.into(),
            state,
            finished_ms: finished_days_ago.map(|d| NOW - d * DAY_MS),
            pruned: false,
        }
    }

    fn old(id: u64, experiment: &str) -> RunAge {
        run(id, experiment, RunState::Succeeded, Some(100))
    }

    fn policy(keep_runs: u32, older_than_days: u64) -> RetentionPolicy {
        RetentionPolicy { keep_runs, older_than_ms: older_than_days * DAY_MS as u64 }
    }

    fn ids(v: &[u64]) -> Vec<RunId> {
        v.iter().map(|i| RunId(*i)).collect()
    }

    #[test]
    fn defaults_keep_twenty_runs_and_thirty_days() {
        assert_eq!(RetentionPolicy::default(), policy(20, 30));
    }

    #[test]
    fn keeps_the_newest_runs_of_each_experiment() {
        let runs: Vec<RunAge> = (1..=5).map(|i| old(i, "a")).chain((6..=8).map(|i| old(i, "b"))).collect();
        let got = runs_to_prune(&runs, &BTreeSet::new(), policy(2, 30), NOW);
        assert_eq!(got, ids(&[1, 2, 3, 6]));
    }

    #[test]
    fn the_newest_run_is_kept_even_with_keep_runs_zero() {
        let runs: Vec<RunAge> = (1..=3).map(|i| old(i, "a")).collect();
        assert_eq!(runs_to_prune(&runs, &BTreeSet::new(), policy(0, 30), NOW), ids(&[1, 2]));
    }

    #[test]
    fn runs_younger_than_the_limit_are_kept() {
        let runs = vec![
            run(1, "a", RunState::Failed, Some(31)),
            run(2, "a", RunState::Cancelled, Some(29)),
            run(3, "a", RunState::Succeeded, Some(30)),
            old(9, "a"),
        ];
        assert_eq!(runs_to_prune(&runs, &BTreeSet::new(), policy(1, 30), NOW), ids(&[1, 3]));
    }

    #[test]
    fn active_accepted_pruned_and_unfinished_runs_are_kept() {
        let mut pruned = old(4, "a");
        pruned.pruned = true;
        let runs = vec![
            run(1, "a", RunState::Running, None),
            run(2, "a", RunState::Queued, None),
            old(3, "a"),
            pruned,
            run(5, "a", RunState::Succeeded, None),
            old(6, "a"),
            old(10, "a"),
        ];
        let accepted = BTreeSet::from([RunId(3)]);
        assert_eq!(runs_to_prune(&runs, &accepted, policy(1, 30), NOW), ids(&[6]));
    }

    #[test]
    fn already_pruned_runs_still_count_among_the_newest() {
        let mut newest = old(3, "a");
        newest.pruned = true;
        let runs = vec![old(1, "a"), old(2, "a"), newest];
        assert_eq!(runs_to_prune(&runs, &BTreeSet::new(), policy(2, 30), NOW), ids(&[1]));
    }

    #[test]
    fn a_huge_age_limit_prunes_nothing() {
        let runs: Vec<RunAge> = (1..=3).map(|i| old(i, "a")).collect();
        let never = RetentionPolicy { keep_runs: 0, older_than_ms: u64::MAX };
        assert!(runs_to_prune(&runs, &BTreeSet::new(), never, NOW).is_empty());
    }
}
