//! The coordinator's GitHub service: the delivery loop and what a webhook event does.
//!
//! Delivery is driven by run changes (`runs_changed`: a submitted PR run gets its in-progress check
//! run, a stored verdict or the end of a run without one is delivered), by stored notices (a fork
//! waiting for its label, a webhook event that could not start a run), by a periodic pass over due
//! retries and ends not yet delivered, and by a catch-up pass at start and after missed
//! notifications. One task delivers, so two attempts for the same run or notice never overlap: the
//! webhook side only stores notices and wakes that task.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::broadcast::error::RecvError;

use phasegate_github::webhook::{self, Decision, Event, IgnoreReason};
use phasegate_github::{CommitSha, ExperimentConfig, GithubSink, Notice, PrNumber, RepoName, Target};
use phasegate_proto::domain::{Priority, RunId, Trigger};
use phasegate_proto::spec::PhaseSpec;

use super::GithubSetup;
use super::delivery::{DELIVERED, Deliverer, GIVEN_UP, Step, SyncOutcome};
use super::notices::{StartFailure, store_notice};
use super::source::source_bundle;
use crate::shell::{Shared, now_ms};
use crate::store::Store;

/// How many recent runs the catch-up pass looks at.
const CATCH_UP_RUNS: u32 = 200;
/// Runs handled per periodic pass.
const PASS_LIMIT: u32 = 50;
/// Forget settled runs beyond this many (they are looked at again, cheaply, if they change).
const SETTLED_MAX: usize = 10_000;

/// What one webhook event did for one configured experiment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EventOutcome {
    Ignored { experiment: String, reason: IgnoreReason },
    Started { experiment: String, run: RunId, superseded: Vec<RunId> },
    WaitingForLabel { experiment: String },
    Accepted { experiment: String, run: RunId, phase: String },
    Overridden { experiment: String, run: RunId },
    Failed { experiment: String, error: String },
}

#[derive(Debug)]
pub(crate) struct GithubService<S, G> {
    shared: Arc<Shared<S>>,
    deliverer: Deliverer<G>,
    /// Runs with nothing left to deliver: not reported, or their verdict delivered or given up.
    settled: Mutex<HashSet<RunId>>,
    /// Woken when the webhook side stored a notice.
    notices: Notify,
}

impl<S: Store, G: GithubSink + 'static> GithubService<S, G> {
    pub(crate) fn new(shared: Arc<Shared<S>>, sink: G, setup: &GithubSetup) -> Arc<Self> {
        let deliverer = Deliverer::new(sink, setup.config.clone(), setup.retry);
        Arc::new(GithubService { shared, deliverer, settled: Mutex::new(HashSet::new()), notices: Notify::new() })
    }

    pub(crate) fn config(&self) -> &phasegate_github::GithubConfig {
        self.deliverer.config()
    }

    #[cfg(test)]
    pub(crate) fn sink(&self) -> &G {
        self.deliverer.sink()
    }

    /// Delivers until `stop` turns true.
    pub(crate) async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut changes = self.shared.runs_changed.subscribe();
        let mut reopened = self.shared.verdict_reopened.subscribe();
        self.catch_up().await;
        let tick = self.deliverer.policy().initial_delay.clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                change = changes.recv() => match change {
                    Ok(run) => self.sync(run).await,
                    Err(RecvError::Lagged(_)) => self.catch_up().await,
                    Err(RecvError::Closed) => return,
                },
                Ok(run) = reopened.recv() => self.reopen(run).await,
                _ = interval.tick() => self.pass().await,
                _ = self.notices.notified() => self.pass_notices().await,
                _ = stop.changed() => return,
            }
        }
    }

    /// One attempt for `run` if one is due; failures of the store are logged (the next pass retries).
    /// The run's verdict has something new to deliver (an override): sync it even if it was
    /// settled.
    pub(crate) async fn reopen(&self, run: RunId) {
        if let Ok(mut s) = self.settled.lock() {
            s.remove(&run);
        }
        self.sync(run).await;
    }

    pub(crate) async fn sync(&self, run: RunId) {
        if self.settled.lock().is_ok_and(|s| s.contains(&run)) {
            return;
        }
        let settled = match self.deliverer.sync(&self.shared.store, run, now_ms() as i64, false).await {
            Ok(SyncOutcome::NotReported) => true,
            Ok(SyncOutcome::Attempted(r)) => {
                r.stage == Step::Verdict.as_str() && (r.status == DELIVERED || r.status == GIVEN_UP)
            }
            Ok(SyncOutcome::Idle) => false,
            Err(e) => {
                tracing::warn!(run = %run, error = %e, "github delivery: store failure");
                false
            }
        };
        if settled && let Ok(mut s) = self.settled.lock() {
            if s.len() >= SETTLED_MAX {
                s.clear();
            }
            s.insert(run);
        }
    }

    /// Due retries, run ends (with or without a verdict) whose delivery has not started, and due
    /// notices.
    pub(crate) async fn pass(&self) {
        let store = &self.shared.store;
        let due = store.due_github_deliveries(now_ms() as i64, PASS_LIMIT).await;
        let waiting = store.github_ends_not_started(PASS_LIMIT).await;
        for runs in [due, waiting] {
            match runs {
                Ok(runs) => {
                    for run in runs {
                        self.sync(run).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "github delivery: store failure"),
            }
        }
        self.pass_notices().await;
    }

    /// One attempt for each due notice.
    async fn pass_notices(&self) {
        let store = &self.shared.store;
        let due = match store.due_github_notices(now_ms() as i64, PASS_LIMIT).await {
            Ok(due) => due,
            Err(e) => return tracing::warn!(error = %e, "github delivery: store failure"),
        };
        for id in due {
            if let Err(e) = self.deliverer.sync_notice(store, id, now_ms() as i64).await {
                tracing::warn!(notice = %id, error = %e, "github delivery: store failure");
            }
        }
    }

    /// Stores `notice` for the delivery task and wakes it.
    async fn notify(&self, target: &Target, experiment: &str, notice: &Notice) -> Result<(), String> {
        store_notice(&self.shared.store, target, experiment, notice, now_ms() as i64)
            .await
            .map_err(|e| format!("failed to store the github notice: {e}"))?;
        self.notices.notify_one();
        Ok(())
    }

    /// After a start or missed notifications: the recent runs, then the periodic pass.
    async fn catch_up(&self) {
        match self.shared.store.runs(CATCH_UP_RUNS, "").await {
            Ok(runs) => {
                for run in runs.iter().rev() {
                    self.sync(RunId(run.id as u64)).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "github delivery: store failure"),
        }
        self.pass().await;
    }

    /// A verified, parsed webhook event: what it means for each experiment of its repository.
    pub(crate) async fn on_event(&self, event: &Event) -> Vec<EventOutcome> {
        let repo = match event {
            Event::PullRequest(pr) => &pr.repo,
            Event::Push(push) => &push.repo,
            Event::Ignored { .. } => return Vec::new(),
        };
        let experiments: Vec<&ExperimentConfig> = self.config().experiments_for(repo).collect();
        if experiments.is_empty() {
            tracing::info!(%repo, "webhook for a repository without [[experiment]]: ignored");
            return Vec::new();
        }
        let files = match event {
            Event::PullRequest(pr) => match self.deliverer.sink().list_pr_files(repo, pr.pr).await {
                Ok(files) => files,
                Err(e) => {
                    // Without the files it is unknown whether an experiment applies: nothing is shown on
                    // the PR, the log and the failure counter tell the operator.
                    let error = e.to_string();
                    tracing::warn!(%repo, pr = %pr.pr, %error, "webhook: failed to list the pull request's files");
                    for _ in &experiments {
                        self.shared.stats.github_webhook_failed();
                    }
                    return experiments
                        .iter()
                        .map(|x| EventOutcome::Failed { experiment: x.name.clone(), error: error.clone() })
                        .collect();
                }
            },
            _ => Vec::new(),
        };
        let mut outcomes = Vec::with_capacity(experiments.len());
        for experiment in experiments {
            let outcome = self.apply(webhook::decide(event, experiment, &files), experiment).await;
            match &outcome {
                EventOutcome::Failed { experiment, error } => {
                    self.shared.stats.github_webhook_failed();
                    tracing::warn!(%repo, %experiment, %error, "webhook event failed");
                }
                _ => tracing::info!(?outcome, "webhook handled"),
            }
            outcomes.push(outcome);
        }
        outcomes
    }

    async fn apply(&self, decision: Decision, experiment: &ExperimentConfig) -> EventOutcome {
        let name = experiment.name.clone();
        let failed = |error: String| EventOutcome::Failed { experiment: experiment.name.clone(), error };
        match decision {
            Decision::Ignore(reason) => EventOutcome::Ignored { experiment: name, reason },
            Decision::StartRun { repo, pr, head_sha, head_branch, .. } => {
                match self.start_run(experiment, &repo, pr, &head_sha, head_branch).await {
                    Ok((run, superseded)) => EventOutcome::Started { experiment: name, run, superseded },
                    Err(failure) => {
                        let target = Target { repo, sha: head_sha, pr: Some(pr) };
                        match self.notify(&target, &name, &failure.notice).await {
                            Ok(()) => failed(failure.detail),
                            Err(e) => failed(format!("{}; {e}", failure.detail)),
                        }
                    }
                }
            }
            Decision::WaitForLabel { repo, pr, head_sha, label } => {
                let target = Target { repo, sha: head_sha, pr: Some(pr) };
                match self.notify(&target, &name, &Notice::WaitingForLabel { label }).await {
                    Ok(()) => EventOutcome::WaitingForLabel { experiment: name },
                    Err(e) => failed(e),
                }
            }
            Decision::OverrideVerdict { repo, pr, label, by } => {
                let reason = format!("label `{label}` added to pull request #{pr} by {by}");
                match self.override_by_label(experiment, &repo, pr, &by, &reason).await {
                    Ok(run) => EventOutcome::Overridden { experiment: name, run },
                    Err(error) => failed(error),
                }
            }
            Decision::AcceptMerged { repo, pr, .. } => match self.accept_merged(experiment, &repo, pr).await {
                Ok((run, phase)) => EventOutcome::Accepted { experiment: name, run, phase },
                Err(error) => failed(error),
            },
        }
    }

    /// Downloads the repository at `sha`, makes the spec's directory the run's source bundle and
    /// submits the spec with priority `pr` (an older run of the same PR is superseded).
    async fn start_run(
        &self,
        experiment: &ExperimentConfig,
        repo: &RepoName,
        pr: PrNumber,
        sha: &CommitSha,
        branch: String,
    ) -> Result<(RunId, Vec<RunId>), StartFailure> {
        let (spec, limit) = (experiment.spec.clone(), self.shared.config.bundle_limit_bytes);
        // The compressed repository is capped by the bundle limit too: it is held in memory.
        let tarball =
            self.deliverer.sink().download_tarball(repo, sha, limit).await.map_err(|e| {
                StartFailure::public(format!("failed to download the repository at {}: {e}", short(sha)))
            })?;
        let artifacts = self.shared.artifacts.clone();
        let (source, (digest, size)) = tokio::task::spawn_blocking(move || {
            let source = source_bundle(&tarball, &spec, limit).map_err(StartFailure::from_source)?;
            let bytes = &source.bundle.bytes;
            let stored = (|| {
                let mut incoming =
                    artifacts.begin("source-bundle.tar.gz", bytes.len() as u64, &source.bundle.sha256, limit)?;
                incoming.write(bytes)?;
                artifacts.finish(incoming)
            })()
            .map_err(|e| StartFailure::internal(format!("failed to store the source bundle: {e}")))?;
            Ok::<_, StartFailure>((source, stored))
        })
        .await
        .map_err(|e| StartFailure::internal(format!("the bundle task stopped: {e}")))??;
        let recorded = self.shared.store.record_artifact(&digest, size, now_ms() as i64).await;
        recorded.map_err(|e| StartFailure::internal(format!("failed to record the source bundle: {e}")))?;
        let path = &source.spec_path;
        let spec = PhaseSpec::parse(&source.spec_toml, path).map_err(|e| StartFailure::file(path, e.message))?;
        if spec.experiment != experiment.name {
            let error = format!(
                "declares experiment `{}`, but the [[experiment]] is named `{}`; the names must match",
                spec.experiment, experiment.name
            );
            return Err(StartFailure::file(path, error));
        }
        let trigger = Trigger { pr: Some(pr.0), sha: sha.to_string(), branch, repo: repo.to_string() };
        self.shared.submit_as(&source.spec_toml, path, digest, trigger, Some(Priority::Pr), false).await.map_err(|s| {
            match s.code() {
                tonic::Code::InvalidArgument => StartFailure::file(path, s.message()),
                _ => StartFailure::internal(format!("failed to submit the run: {}", s.message())),
            }
        })
    }

    /// Accepts the phase of the newest run of the merged PR that has a verdict.
    ///
    /// Failures are the operator's (log and counter): a push to the default branch has no PR
    /// head to show them on.
    /// The PR's latest run with a verdict has it overridden (see [`Shared::override_verdict`]).
    async fn override_by_label(
        &self,
        experiment: &ExperimentConfig,
        repo: &RepoName,
        pr: PrNumber,
        by: &str,
        reason: &str,
    ) -> Result<RunId, String> {
        let run = self
            .shared
            .store
            .latest_verdict_run(&repo.to_string(), pr.0, &experiment.name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("pull request #{pr} has no run of `{}` with a verdict", experiment.name))?;
        self.shared.override_verdict(run, by, reason).await.map_err(|s| s.message().to_owned())?;
        Ok(run)
    }

    async fn accept_merged(
        &self,
        experiment: &ExperimentConfig,
        repo: &RepoName,
        pr: Option<PrNumber>,
    ) -> Result<(RunId, String), String> {
        let pr = pr.ok_or("the pushed commit names no merged pull request (\"Merge pull request #N\" or \"(#N)\")")?;
        let store = &self.shared.store;
        let run = store
            .latest_verdict_run(&repo.to_string(), pr.0, &experiment.name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("pull request #{pr} has no run of `{}` with a verdict", experiment.name))?;
        let phase = store
            .phase_of_run(run)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("run {run} stored no phase"))?
            .phase;
        store.accept_phase(&phase.experiment, &phase.label).await.map_err(|e| e.to_string())?;
        tracing::info!(run = %run, phase = %phase.label, pr = %pr, "merged pull request: phase accepted");
        Ok((run, phase.label))
    }
}

/// The first 7 characters of a commit sha, as GitHub abbreviates it.
fn short(sha: &CommitSha) -> &str {
    sha.as_str().get(..7).unwrap_or(sha.as_str())
}
