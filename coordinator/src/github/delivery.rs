//! Delivering a run's state to GitHub: the pure rules of what to attempt and how the persisted state
//! changes after an attempt, and the executor that reads the run, calls the reporter and stores the
//! outcome.
//!
//! Per run, one row: the in-progress check run first (stage `submitted`, PR runs only), then once
//! the gate stored a verdict the completed check run and the PR comment, or the nightly issue
//! (stage `verdict`); a PR run that ended without a verdict (failed, cancelled, superseded) gets its
//! check run completed instead (stage `ended`). The `Delivery` the reporter returns, also from an
//! error, is stored and passed back on the next attempt, so a retry completes the same check run
//! and updates the same comment.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gate_rules::{Phase, Verdict};
use phasegate_github::{
    CommitSha, Delivery, DeliveryError, EndedRun, ExperimentConfig, GithubConfig, GithubSink, OctocrabSink, Override,
    Policy, PrNumber, Reporter, RunEnd, SinkError, Target, VerdictReport,
};
use phasegate_proto::domain::{Priority, RunId};

use crate::scheduler::superseded_by;
use crate::shell::now_ms;
use crate::store::{GithubDeliveryRecord, PhaseRecord, RunRecord, SqliteStore, Store, StoreError};

pub(crate) const PENDING: &str = "pending";
pub(crate) const DELIVERED: &str = "delivered";
pub(crate) const GIVEN_UP: &str = "given_up";

/// How patiently a delivery is retried once the sink's own quick retries gave up (GitHub down, rate
/// limited for long).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// The wait after the first failed attempt; each further failure doubles it.
    pub initial_delay: Duration,
    pub max_delay: Duration,
    /// Attempts per stage before the delivery is given up.
    pub max_attempts: u32,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        use phasegate_github::config::{
            DEFAULT_DELIVERY_ATTEMPTS, DEFAULT_DELIVERY_INITIAL_DELAY_MS, DEFAULT_DELIVERY_MAX_DELAY_MS,
        };
        DeliveryPolicy {
            initial_delay: Duration::from_millis(DEFAULT_DELIVERY_INITIAL_DELAY_MS),
            max_delay: Duration::from_millis(DEFAULT_DELIVERY_MAX_DELAY_MS),
            max_attempts: DEFAULT_DELIVERY_ATTEMPTS,
        }
    }
}

/// `delivery_attempts`, `delivery_initial_delay_ms` and `delivery_max_delay_ms` of `[github]`.
impl From<&GithubConfig> for DeliveryPolicy {
    fn from(config: &GithubConfig) -> Self {
        DeliveryPolicy {
            initial_delay: config.delivery_initial_delay,
            max_delay: config.delivery_max_delay,
            max_attempts: config.delivery_attempts,
        }
    }
}

impl DeliveryPolicy {
    /// The wait after the `attempts`-th failed attempt (1-based).
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(31);
        self.initial_delay.saturating_mul(1u32 << doublings).min(self.max_delay)
    }
}

/// What a run is to GitHub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A run for a pull request head: check run and PR comment.
    Pr,
    /// A scheduled run: the experiment's regression issue.
    Nightly,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Pr => "pr",
            Kind::Nightly => "nightly",
        }
    }
}

/// What one attempt delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// The in-progress check run.
    Submitted,
    /// The verdict: completed check run and comment, or the nightly issue.
    Verdict,
    /// A PR run ended without a verdict: the completed check run says why.
    Ended,
}

impl Step {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Step::Submitted => "submitted",
            Step::Verdict => "verdict",
            Step::Ended => "ended",
        }
    }
}

/// The run's kind and configured experiment; `None` when the run is not reported: its experiment
/// is not configured for its trigger's repository, or it is neither nightly nor for a PR head.
pub(crate) fn classify<'a>(run: &RunRecord, config: &'a GithubConfig) -> Option<(Kind, &'a ExperimentConfig)> {
    let experiment = config.experiment(&run.experiment).filter(|e| e.repo.to_string() == run.trigger.repo)?;
    if run.priority == Priority::Nightly.as_str() {
        return Some((Kind::Nightly, experiment));
    }
    (run.trigger.pr.is_some() && !run.trigger.sha.is_empty()).then_some((Kind::Pr, experiment))
}

/// The attempt to make now, if any. A verdict supersedes a pending in-progress check run (the
/// verdict step creates the check run itself when none exists), and so does the end of a PR run
/// without a verdict; a verdict stored after that end (the gate finished as the run was cancelled)
/// is still delivered. `force` re-delivers a verdict or an end already delivered or given up.
pub(crate) fn next_step(
    kind: Kind,
    has_verdict: bool,
    active: bool,
    existing: Option<&GithubDeliveryRecord>,
    now_ms: i64,
    force: bool,
) -> Option<Step> {
    let due = |r: &GithubDeliveryRecord| r.status == PENDING && r.next_attempt_ms.is_none_or(|t| t <= now_ms);
    // The step that reports the run's end, and the stages it takes over from.
    let (step, earlier): (Step, &[Step]) = match (has_verdict, kind, active) {
        (true, _, _) => (Step::Verdict, &[Step::Submitted, Step::Ended]),
        (false, Kind::Nightly, _) => return None,
        (false, Kind::Pr, false) => (Step::Ended, &[Step::Submitted]),
        (false, Kind::Pr, true) => {
            return match existing {
                None => Some(Step::Submitted),
                Some(r) if r.stage == Step::Submitted.as_str() && due(r) => Some(Step::Submitted),
                Some(_) => None,
            };
        }
    };
    match existing {
        None => Some(step),
        Some(r) if earlier.iter().any(|e| r.stage == e.as_str()) => Some(step),
        Some(r) if r.stage == step.as_str() && (force || due(r)) => Some(step),
        Some(_) => None,
    }
}

/// The stored state after attempt number `attempts` of `step`: delivered; pending with the next
/// attempt after the backoff (transient failure, attempts left); or given up with its error.
pub(crate) fn after_attempt(
    run: RunId,
    kind: Kind,
    step: Step,
    attempts: u32,
    result: &Result<Delivery, DeliveryError>,
    policy: &DeliveryPolicy,
    now_ms: i64,
) -> GithubDeliveryRecord {
    let outcome = attempt_outcome(attempts, result, policy, now_ms);
    GithubDeliveryRecord {
        run_id: run,
        kind: kind.as_str().to_owned(),
        stage: step.as_str().to_owned(),
        status: outcome.status.to_owned(),
        delivery_json: serde_json::to_string(&outcome.delivery).unwrap_or_default(),
        last_error: outcome.last_error,
        attempts,
        next_attempt_ms: outcome.next_attempt_ms,
        updated_ms: now_ms,
    }
}

/// The stored state after attempt number `attempts` of anything delivered with retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AttemptOutcome {
    pub status: &'static str,
    pub delivery: Delivery,
    pub last_error: String,
    pub next_attempt_ms: Option<i64>,
}

/// Delivered; pending until the backoff passed (a transient failure with attempts left); or given
/// up with its error (a permanent failure, or the last attempt).
pub(crate) fn attempt_outcome(
    attempts: u32,
    result: &Result<Delivery, DeliveryError>,
    policy: &DeliveryPolicy,
    now_ms: i64,
) -> AttemptOutcome {
    let (status, delivery, last_error, next_attempt_ms) = match result {
        Ok(d) => (DELIVERED, *d, String::new(), None),
        Err(e) if e.source.is_transient() && attempts < policy.max_attempts => {
            let wait = i64::try_from(policy.backoff(attempts).as_millis()).unwrap_or(i64::MAX);
            (PENDING, e.delivery, e.source.to_string(), Some(now_ms.saturating_add(wait)))
        }
        Err(e) => (GIVEN_UP, e.delivery, e.source.to_string(), None),
    };
    AttemptOutcome { status, delivery, last_error, next_attempt_ms }
}

/// Why a PR run that is no longer active ended without a verdict: the failed stage and its error
/// (or the run's own error when no stage failed: it could not be scheduled), who cancelled it, or
/// that it succeeded without a gate.
pub(crate) fn run_end(run: &RunRecord, experiment: &ExperimentConfig) -> RunEnd {
    match run.state.as_str() {
        "failed" => match run.jobs.iter().find(|j| j.state == "failed") {
            Some(job) => RunEnd::Failed { stage: Some(job.stage.clone()), error: job.error.clone() },
            None => RunEnd::Failed { stage: None, error: run.error.clone() },
        },
        "cancelled" => match superseded_by(&run.error) {
            Some(by) => RunEnd::Superseded { by: by.0, details_url: details_url(experiment, by) },
            None => RunEnd::Cancelled { reason: run.error.clone() },
        },
        _ => RunEnd::NoGate,
    }
}

pub(crate) fn parse_verdict(text: &str) -> Option<Verdict> {
    [Verdict::Pass, Verdict::Warn, Verdict::Fail, Verdict::Inconclusive, Verdict::InsufficientBaseline]
        .into_iter()
        .find(|v| v.as_str() == text)
}

/// Scores for the title: the latest accepted phase before the candidate, then the candidate.
pub(crate) fn trend(history: &[PhaseRecord], candidate: Option<&Phase>) -> Vec<Option<f64>> {
    let Some(candidate) = candidate else { return Vec::new() };
    let baseline = history
        .iter()
        .map(|r| &r.phase)
        .filter(|p| p.accepted && p.label != candidate.label && p.ordinal <= candidate.ordinal)
        .max_by_key(|p| p.ordinal);
    baseline.map(Phase::score).into_iter().chain([candidate.score()]).collect()
}

/// The experiment's `dashboard_url` with `{run}` replaced by the run id.
pub(crate) fn details_url(experiment: &ExperimentConfig, run: RunId) -> Option<String> {
    experiment.dashboard_url.as_ref().map(|u| u.replace("{run}", &run.to_string()))
}

/// What an attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SyncOutcome {
    /// The run is not reported to GitHub (and never will be: its fields do not change).
    NotReported,
    /// Nothing to attempt now.
    Idle,
    /// An attempt was made; its stored outcome.
    Attempted(GithubDeliveryRecord),
}

/// Reads a run, asks [`next_step`], calls the reporter and stores the outcome.
#[derive(Debug)]
pub(crate) struct Deliverer<G> {
    reporter: Reporter<G>,
    config: GithubConfig,
    policy: DeliveryPolicy,
}

impl<G: GithubSink> Deliverer<G> {
    pub(crate) fn new(sink: G, config: GithubConfig, policy: DeliveryPolicy) -> Self {
        Deliverer { reporter: Reporter::new(sink, Policy::from(&config)), config, policy }
    }

    pub(crate) fn config(&self) -> &GithubConfig {
        &self.config
    }

    pub(crate) fn sink(&self) -> &G {
        self.reporter.sink()
    }

    pub(crate) fn reporter(&self) -> &Reporter<G> {
        &self.reporter
    }

    pub(crate) fn policy(&self) -> &DeliveryPolicy {
        &self.policy
    }

    /// Brings `run`'s state on GitHub up to date with one attempt when one is due; the outcome is
    /// stored before this returns.
    pub(crate) async fn sync<S: Store>(
        &self,
        store: &S,
        run: RunId,
        now_ms: i64,
        force: bool,
    ) -> Result<SyncOutcome, StoreError> {
        let Some(record) = store.run(run).await? else { return Ok(SyncOutcome::NotReported) };
        let Some((kind, experiment)) = classify(&record, &self.config) else { return Ok(SyncOutcome::NotReported) };
        let existing = store.github_delivery(run).await?;
        let active = is_active(&record);
        let has_verdict = !record.verdict.is_empty();
        let Some(step) = next_step(kind, has_verdict, active, existing.as_ref(), now_ms, force) else {
            return Ok(SyncOutcome::Idle);
        };
        let attempts = match &existing {
            Some(e) if e.stage == step.as_str() && !force => e.attempts.saturating_add(1),
            _ => 1,
        };
        let previous = existing.as_ref().map(stored_delivery).unwrap_or_default();
        let result = self.attempt(store, &record, kind, experiment, step, previous).await?;
        match &result {
            Ok(_) => tracing::info!(run = %run, step = step.as_str(), "delivered to github"),
            Err(e) => {
                tracing::warn!(run = %run, step = step.as_str(), attempts, error = %e.source, "github delivery failed")
            }
        }
        let next = after_attempt(run, kind, step, attempts, &result, &self.policy, now_ms);
        store.put_github_delivery(&next).await?;
        Ok(SyncOutcome::Attempted(next))
    }

    async fn attempt<S: Store>(
        &self,
        store: &S,
        run: &RunRecord,
        kind: Kind,
        experiment: &ExperimentConfig,
        step: Step,
        previous: Delivery,
    ) -> Result<Result<Delivery, DeliveryError>, StoreError> {
        let id = RunId(run.id as u64);
        let details = details_url(experiment, id);
        if kind == Kind::Nightly {
            let report = match verdict_report(store, run, experiment, details).await? {
                Ok(report) => report,
                Err(source) => return Ok(Err(DeliveryError { delivery: previous, source })),
            };
            return Ok(self.reporter.on_nightly_verdict(&experiment.repo, &report).await);
        }
        let target = match target(run, experiment) {
            Ok(target) => target,
            Err(source) => return Ok(Err(DeliveryError { delivery: previous, source })),
        };
        if step == Step::Submitted {
            return Ok(self.reporter.on_run_submitted(&target, &experiment.name, details.as_deref(), previous).await);
        }
        if step == Step::Ended {
            let ended = EndedRun {
                experiment: experiment.name.clone(),
                phase: run.phase.clone(),
                end: run_end(run, experiment),
                details_url: details,
            };
            return Ok(self.reporter.on_run_ended(&target, &ended, previous).await);
        }
        match verdict_report(store, run, experiment, details).await? {
            Ok(report) => Ok(self.reporter.on_verdict(&target, &report, previous).await),
            Err(source) => Ok(Err(DeliveryError { delivery: previous, source })),
        }
    }
}

fn is_active(run: &RunRecord) -> bool {
    matches!(run.state.as_str(), "queued" | "running")
}

fn stored_delivery(record: &GithubDeliveryRecord) -> Delivery {
    serde_json::from_str(&record.delivery_json).unwrap_or_else(|e| {
        tracing::warn!(run = %record.run_id, error = %e, "unreadable stored github delivery; starting afresh");
        Delivery::default()
    })
}

fn unusable(run: &RunRecord, message: String) -> SinkError {
    SinkError::Response { operation: "deliver the run", repo: run.trigger.repo.clone(), message }
}

fn target(run: &RunRecord, experiment: &ExperimentConfig) -> Result<Target, SinkError> {
    let sha = CommitSha::try_from(run.trigger.sha.as_str()).map_err(|e| unusable(run, e.to_string()))?;
    Ok(Target { repo: experiment.repo.clone(), sha, pr: run.trigger.pr.map(PrNumber) })
}

async fn verdict_report<S: Store>(
    store: &S,
    run: &RunRecord,
    experiment: &ExperimentConfig,
    details_url: Option<String>,
) -> Result<Result<VerdictReport, SinkError>, StoreError> {
    let Some(verdict) = parse_verdict(&run.verdict) else {
        return Ok(Err(unusable(run, format!("run {} has the unknown verdict {:?}", run.id, run.verdict))));
    };
    let history = store.phases(&run.experiment).await?;
    let candidate = store.phase_of_run(RunId(run.id as u64)).await?.map(|r| r.phase);
    Ok(Ok(VerdictReport {
        experiment: experiment.name.clone(),
        phase: run.phase.clone(),
        verdict,
        scores: trend(&history, candidate.as_ref()),
        markdown: run.report.clone(),
        details_url,
        overridden: run.overridden.as_ref().map(|o| Override { by: o.by.clone(), reason: o.reason.clone() }),
    }))
}

/// Why `phasegate report RUN --github` could not re-deliver.
#[derive(Debug, thiserror::Error)]
pub enum RedeliverError {
    #[error("no phasegate database at {}", path.display())]
    NoDatabase { path: PathBuf },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no run {0}")]
    NoRun(u64),
    #[error("run {0} has no verdict yet")]
    NoVerdict(u64),
    #[error(
        "run {run} is not reported to GitHub: experiment `{experiment}` with repository `{repo}` matches no \
         [[experiment]], or the run is neither for a pull request nor nightly"
    )]
    NotReported { run: u64, experiment: String, repo: String },
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// The stored state after a re-delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedeliveryOutcome {
    /// `delivered`, `pending` (a transient failure: a running coordinator retries it) or `given_up`.
    pub status: String,
    pub error: String,
}

/// `phasegate report RUN --github`: delivers the stored verdict of `run` in the data dir's database
/// again (check run, comment or nightly issue), or for a PR run that ended without a verdict its
/// completed check run, and stores the outcome.
pub async fn redeliver(data_dir: &Path, config: &GithubConfig, run: u64) -> Result<RedeliveryOutcome, RedeliverError> {
    let path = data_dir.join(crate::history::DB_FILE);
    if !path.is_file() {
        return Err(RedeliverError::NoDatabase { path });
    }
    let store = SqliteStore::open(&path).await?;
    let deliverer = Deliverer::new(OctocrabSink::from_config(config)?, config.clone(), DeliveryPolicy::from(config));
    redeliver_with(&store, &deliverer, run).await
}

pub(crate) async fn redeliver_with<S: Store, G: GithubSink>(
    store: &S,
    deliverer: &Deliverer<G>,
    run: u64,
) -> Result<RedeliveryOutcome, RedeliverError> {
    let id = RunId(run);
    let record = store.run(id).await?.ok_or(RedeliverError::NoRun(run))?;
    // Without a verdict only the end of a PR run has something to deliver.
    if record.verdict.is_empty() && (is_active(&record) || record.priority == Priority::Nightly.as_str()) {
        return Err(RedeliverError::NoVerdict(run));
    }
    let not_reported = || RedeliverError::NotReported {
        run,
        experiment: record.experiment.clone(),
        repo: record.trigger.repo.clone(),
    };
    match deliverer.sync(store, id, now_ms() as i64, true).await? {
        SyncOutcome::Attempted(r) => Ok(RedeliveryOutcome { status: r.status, error: r.last_error }),
        SyncOutcome::NotReported | SyncOutcome::Idle => Err(not_reported()),
    }
}
