//! The gate from the command line: `import`, `history`, `gate`, `accept`, `rescore` open the data
//! dir's database directly (no server needed; one may be running); `import`, `accept` and `rescore`
//! go through the coordinator instead when one is named (`--access-file`, `--coordinator`), for
//! remote coordinators. `bench gate` times `evaluate`.
//!
//! Imported phases are added to the accepted history only with `--accept`: importing the past is
//! usually "these were the phases we shipped", but a file imported by mistake must not silently
//! become a baseline. Replaying a bundled history is `import --accept` per phase, then
//! `gate --candidate` on the next phase's files.

use std::fmt::Display;
use std::path::Path;
use std::time::Instant;

use gate_rules::import::ImportOptions;
use gate_rules::report::GITHUB_COMMENT_LIMIT;
use gate_rules::{GateConfig, Phase, Verdict};
use phasegate_coordinator::history::{History, HistoryEntry, HistoryError, RescoreOutcome};
use phasegate_coordinator::rescore::Rescorer;
use phasegate_proto::pb;

use crate::cli::{
    AcceptArgs, BenchGateArgs, GateArgs, HistoryArgs, ImportArgs, ReportFormat, RescoreArgs, ScorerArg, ScoringArgs,
};
use crate::connect::Endpoint;
use crate::exit::{Code, Failure, Result};
use crate::out::{out, outln};

/// Imports one phase: through the coordinator when one is named (`--access-file`, `--coordinator`),
/// else into the data dir directly. The files are parsed here either way, so errors name them.
pub async fn import(args: ImportArgs, endpoint: &Endpoint) -> Result<Code> {
    let stored = if endpoint.is_given() || args.scoring.suite.is_some() {
        None
    } else {
        stored_rubric(&args.data.data_dir, &args.experiment).await?
    };
    let options = import_options(&args.scoring, args.phase.as_deref(), stored)?;
    let phase = load_candidate(&args.files, &args.experiment, &options)?;
    let (label, score) = (phase.label.clone(), phase.score());
    if endpoint.is_given() {
        let phase_json = serde_json::to_string(&phase)
            .map_err(|e| Failure::infra(format!("failed to encode phase {label}: {e}")))?;
        let mut client = endpoint.control()?;
        client
            .import_phase(pb::ImportPhaseRequest { phase_json, accept: args.accept })
            .await
            .map_err(|s| Failure::from_status("failed to import the phase", &s))?;
    } else {
        let history = History::create(&args.data.data_dir).await.map_err(store_failure)?;
        history.import_phase(phase, args.accept).await.map_err(store_failure)?;
    }
    let state = if args.accept { "accepted" } else { "not accepted" };
    eprintln!(
        "imported {} phase {label} from {} file(s): score {}, {state}",
        args.experiment,
        args.files.len(),
        score.map_or_else(|| "none".to_owned(), |s| format!("{s:.3}")),
    );
    Ok(Code::Success)
}

pub async fn history(args: HistoryArgs) -> Result<Code> {
    let history = open(&args.data.data_dir).await?;
    let entries = history.history(&args.experiment).await.map_err(store_failure)?;
    if args.json {
        let rows: Vec<_> = entries.iter().map(entry_json).collect();
        outln!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
    } else if entries.is_empty() {
        eprintln!("no phases in experiment {}", args.experiment);
    } else {
        out!("{}", history_table(&entries));
    }
    Ok(Code::Success)
}

pub async fn gate(args: GateArgs) -> Result<Code> {
    let config = load_config(args.config.as_deref())?;
    let history = open(&args.data.data_dir).await?;
    let stored = history.rubric(&args.experiment).await.map_err(store_failure)?;
    let candidate = match args.run {
        Some(run) => run_candidate(&history, run, &args.experiment).await?,
        None => {
            let options = import_options(&args.scoring, args.phase.as_deref(), stored)?;
            load_candidate(&args.candidate, &args.experiment, &options)?
        }
    };
    let rescorer = match &args.scoring.suite {
        Some(path) => Some(rules_scorer(path, &args.models.dir())?),
        None => None,
    };
    let outcome =
        history.gate(&candidate, &config, GITHUB_COMMENT_LIMIT, rescorer.as_ref()).await.map_err(store_failure)?;
    match args.format {
        ReportFormat::Markdown => out!("{}", outcome.markdown),
        ReportFormat::Json => outln!("{}", outcome.json),
    }
    Ok(verdict_code(outcome.verdict()))
}

/// Re-scores an experiment's stored phases with the suite's rules scorer and prints one line per
/// phase: through the coordinator when one is named (the suite's text is sent, the coordinator
/// reads the dictionary from its own model cache and re-scores its store), else on the data dir
/// (see [`History::rescore`]). Both run the same re-scoring and print the same lines.
pub async fn rescore(args: RescoreArgs, endpoint: &Endpoint) -> Result<Code> {
    if endpoint.is_given() {
        return rescore_through(&args, endpoint).await;
    }
    let rescorer = rules_scorer(&args.suite, &args.models.dir())?;
    let history = open(&args.data.data_dir).await?;
    let lines = history.rescore(&args.experiment, &rescorer).await.map_err(store_failure)?;
    if lines.is_empty() {
        return Err(no_phases(&args.experiment));
    }
    for l in &lines {
        outln!("{}", rescore_text(&l.label, &l.from, l.before, &l.outcome, rescorer.instrument()));
    }
    Ok(Code::Success)
}

/// `rescore` through the coordinator (`RescorePhases`): the suite file is read here and sent as
/// text; the coordinator's errors are reported as the offline command reports the same problem.
async fn rescore_through(args: &RescoreArgs, endpoint: &Endpoint) -> Result<Code> {
    use pb::rescore_line::Outcome;
    let suite_toml = std::fs::read_to_string(&args.suite)
        .map_err(|source| suite_failure(phasegate_score::SuiteError::Read { path: args.suite.clone(), source }))?;
    let req = pb::RescorePhasesRequest {
        experiment: args.experiment.clone(),
        suite_toml,
        suite_path: args.suite.display().to_string(),
    };
    let mut client = endpoint.control()?;
    let resp = client.rescore_phases(req).await.map_err(|s| rescore_status_failure(&args.experiment, &s))?.into_inner();
    if resp.lines.is_empty() {
        return Err(no_phases(&args.experiment));
    }
    let mut lines = Vec::with_capacity(resp.lines.len());
    for l in resp.lines {
        let outcome = match l.outcome {
            Some(Outcome::Rescored(r)) => RescoreOutcome::Rescored { after: r.after },
            Some(Outcome::Current(_)) => RescoreOutcome::Current,
            Some(Outcome::Skipped(why)) => RescoreOutcome::Skipped(why),
            None => {
                return Err(Failure::infra(format!(
                    "failed to re-score the phases: the coordinator's line for phase {} has no outcome",
                    l.label
                )));
            }
        };
        lines.push((l.label, l.from, l.before, outcome));
    }
    for (label, from, before, outcome) in &lines {
        outln!("{}", rescore_text(label, from, *before, outcome, &resp.instrument));
    }
    Ok(Code::Success)
}

/// One line of `rescore`'s output: what re-scoring with the instrument `to` did to phase `label`,
/// scored by `from` before.
fn rescore_text(
    label: &str,
    from: &impl Display,
    before: Option<f64>,
    outcome: &RescoreOutcome,
    to: &impl Display,
) -> String {
    match outcome {
        RescoreOutcome::Rescored { after } => {
            format!("phase {label}: {} → {} ({from} → {to})", fmt_opt(before), fmt_opt(*after))
        }
        RescoreOutcome::Current => format!("phase {label}: already scored by {to}"),
        RescoreOutcome::Skipped(why) => format!("phase {label}: kept as scored by {from}: {why}"),
    }
}

/// `rescore` on an experiment without stored phases.
fn no_phases(experiment: &str) -> Failure {
    Failure::usage(format!("no phases in experiment {experiment}"))
        .with_hint("list the experiment's phases with `phasegate history EXPERIMENT`")
}

/// A `RescorePhases` error as the offline `rescore` reports the same problem: no phases and a bad
/// suite are usage errors, a missing dictionary (on the coordinator's machine) is infrastructure.
fn rescore_status_failure(experiment: &str, s: &tonic::Status) -> Failure {
    match s.code() {
        tonic::Code::NotFound => no_phases(experiment),
        tonic::Code::InvalidArgument if !s.message().starts_with("experiment:") => {
            Failure::usage(s.message()).with_hint(SUITE_HINT)
        }
        tonic::Code::FailedPrecondition => match s.message().split_once("\nhint: ") {
            Some((message, hint)) => Failure::infra(message).with_hint(format!("on the coordinator's machine: {hint}")),
            None => Failure::infra(format!("failed to re-score the phases: {}", s.message())),
        },
        _ => Failure::from_status("failed to re-score the phases", s),
    }
}

pub async fn accept(args: AcceptArgs, endpoint: &Endpoint) -> Result<Code> {
    let (experiment, label) = if endpoint.is_given() {
        let req = match (args.run, args.experiment, args.phase) {
            (Some(run), _, _) => pb::AcceptPhaseRequest { run_id: run, ..Default::default() },
            (None, Some(experiment), Some(label)) => pb::AcceptPhaseRequest { run_id: 0, experiment, label },
            _ => return Err(Failure::usage("accept needs RUN or --experiment NAME --phase LABEL")),
        };
        let mut client = endpoint.control()?;
        let resp = client
            .accept_phase(req)
            .await
            .map_err(|s| Failure::from_status("failed to accept the phase", &s))?
            .into_inner();
        (resp.experiment, resp.label)
    } else {
        let history = open(&args.data.data_dir).await?;
        match (args.run, args.experiment, args.phase) {
            (Some(run), _, _) => {
                let phase = history.accept_run(run).await.map_err(store_failure)?;
                (phase.experiment, phase.label)
            }
            (None, Some(experiment), Some(label)) => {
                history.accept(&experiment, &label).await.map_err(store_failure)?;
                (experiment, label)
            }
            _ => return Err(Failure::usage("accept needs RUN or --experiment NAME --phase LABEL")),
        }
    };
    eprintln!("accepted {experiment} phase {label}");
    Ok(Code::Success)
}

/// Times one verdict per round on a synthetic history and prints min/median/max.
pub fn bench(args: &BenchGateArgs) -> Code {
    let (history, candidate) = gate_rules::bench::synthetic_history(args.phases, args.questions, args.k, 1);
    let config = GateConfig { resamples: args.resamples, ..GateConfig::default() };
    let mut times: Vec<f64> = (0..args.rounds.max(1))
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(gate_rules::evaluate(&history, &candidate, &config));
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    outln!(
        "bench gate: {} phases, {} questions, K = {}, {} resamples, {} rounds: ms per verdict min {:.1} median {:.1} max {:.1}",
        args.phases,
        args.questions,
        args.k,
        args.resamples,
        times.len(),
        times[0],
        times[times.len() / 2],
        times[times.len() - 1],
    );
    Code::Success
}

/// The documented exit code of a verdict: pass/warn 0, fail 1, inconclusive/insufficient 4.
pub fn verdict_code(verdict: Verdict) -> Code {
    match verdict.exit_code() {
        0 => Code::Success,
        1 => Code::Regression,
        _ => Code::Inconclusive,
    }
}

/// The import's options: `--phase`, `--scorer`, and the rubric of `--suite`, else `stored`.
pub(crate) fn import_options(
    scoring: &ScoringArgs,
    phase: Option<&str>,
    stored: Option<gate_rules::Rubric>,
) -> Result<ImportOptions> {
    let rubric = match &scoring.suite {
        Some(path) => Some(load_suite(path)?.rubric),
        None => stored,
    };
    Ok(ImportOptions { phase: phase.map(str::to_owned), rubric, scorer: scoring.scorer.map(ScorerArg::kind) })
}

/// The hint of a suite that does not load.
const SUITE_HINT: &str = "pass the experiment's eval suite TOML with --suite";

/// An eval suite named on the command line; a bad one is a usage error naming the file.
pub(crate) fn load_suite(path: &Path) -> Result<phasegate_score::Suite> {
    phasegate_score::Suite::load(path).map_err(suite_failure)
}

fn suite_failure(e: phasegate_score::SuiteError) -> Failure {
    Failure::usage(e.to_string()).with_hint(SUITE_HINT)
}

/// The rules scorer on a suite named on the command line, with its language's dictionary.
pub(crate) fn rules_scorer(suite: &Path, model_cache: &Path) -> Result<Rescorer> {
    let suite = load_suite(suite)?;
    let lexicon = phasegate_score::Lexicon::load(model_cache, &suite).map_err(super::calibrate::lexicon_failure)?;
    Ok(Rescorer::new(suite, lexicon))
}

/// The rubric stored with the accepted history, when the data dir has one.
async fn stored_rubric(data_dir: &Path, experiment: &str) -> Result<Option<gate_rules::Rubric>> {
    if !data_dir.join(phasegate_coordinator::history::DB_FILE).is_file() {
        return Ok(None);
    }
    open(data_dir).await?.rubric(experiment).await.map_err(store_failure)
}

pub(crate) fn load_candidate(files: &[std::path::PathBuf], experiment: &str, options: &ImportOptions) -> Result<Phase> {
    gate_rules::import::load_files_with(files, experiment, options).map_err(|e| {
        let failure = with_embedded_hint(&e.to_string());
        match failure.hint {
            Some(_) => failure,
            None => failure.with_hint("nothing was imported; fix the file named above and run the command again"),
        }
    })
}

fn load_config(path: Option<&Path>) -> Result<GateConfig> {
    let Some(path) = path else { return Ok(GateConfig::default()) };
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::usage(format!("failed to read gate config {}: {e}", path.display()))
            .with_hint("pass the path of a gate.toml with --config, or leave it out for the defaults")
    })?;
    GateConfig::from_toml_str(&text, path).map_err(|e| with_embedded_hint(&e.to_string()))
}

async fn open(data_dir: &Path) -> Result<History> {
    History::open(data_dir).await.map_err(store_failure)
}

async fn run_candidate(history: &History, run: u64, experiment: &str) -> Result<Phase> {
    let phase = history.run_phase(run).await.map_err(store_failure)?;
    if phase.experiment != experiment {
        return Err(Failure::usage(format!("run {run} belongs to experiment {}, not {experiment}", phase.experiment)));
    }
    Ok(phase)
}

/// Splits a library message that carries its own `\nhint: ...` line.
fn with_embedded_hint(message: &str) -> Failure {
    match message.split_once("\nhint: ") {
        Some((msg, hint)) => Failure::usage(msg).with_hint(hint),
        None => Failure::usage(message),
    }
}

pub(crate) fn store_failure(e: HistoryError) -> Failure {
    match &e {
        HistoryError::NoDatabase { .. } => Failure::usage(e.to_string())
            .with_hint("pass the coordinator's --data-dir, or import phases first with `phasegate import`"),
        HistoryError::NoPhase { .. } => {
            Failure::usage(e.to_string()).with_hint("list the phases with `phasegate history EXPERIMENT`")
        }
        HistoryError::NoRunPhase { .. } => Failure::usage(e.to_string())
            .with_hint("only runs whose spec has a [gate] section store a phase; see `phasegate show RUN`"),
        HistoryError::DataDir { .. } | HistoryError::Store(_) => Failure::infra(e.to_string()),
    }
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{x:.3}"))
}

fn history_table(entries: &[HistoryEntry]) -> String {
    let mut out =
        format!("{:<12} {:<9} {:>7} {:>10} {:>6} {}\n", "PHASE", "ACCEPTED", "SCORE", "FINAL LOSS", "RUN", "VERDICT");
    for e in entries {
        let run = e.run.map_or_else(|| "-".to_owned(), |r| r.to_string());
        let verdict = match (&e.overridden, e.verdict.as_str()) {
            (_, "") => "-".to_owned(),
            (Some((by, reason)), v) => format!("{v} (overridden by {by}: {reason})"),
            (None, v) => v.to_owned(),
        };
        out.push_str(&format!(
            "{:<12} {:<9} {:>7} {:>10} {:>6} {verdict}\n",
            e.phase.label,
            if e.phase.accepted { "yes" } else { "no" },
            fmt_opt(e.phase.score()),
            fmt_opt(e.phase.training.final_loss),
            run,
        ));
    }
    out
}

fn entry_json(e: &HistoryEntry) -> serde_json::Value {
    serde_json::json!({
        "label": e.phase.label,
        "ordinal": e.phase.ordinal,
        "accepted": e.phase.accepted,
        "score": e.phase.score(),
        "final_loss": e.phase.training.final_loss,
        "vram_peak_mib": e.phase.training.vram_peak_mib,
        "questions": e.phase.eval.len(),
        "run": e.run,
        "verdict": if e.verdict.is_empty() { None } else { Some(&e.verdict) },
        "override": e.overridden.as_ref().map(|(by, reason)| serde_json::json!({"by": by, "reason": reason})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_codes_follow_the_documented_table() {
        assert_eq!(verdict_code(Verdict::Pass), Code::Success);
        assert_eq!(verdict_code(Verdict::Warn), Code::Success);
        assert_eq!(verdict_code(Verdict::Fail), Code::Regression);
        assert_eq!(verdict_code(Verdict::Inconclusive), Code::Inconclusive);
        assert_eq!(verdict_code(Verdict::InsufficientBaseline), Code::Inconclusive);
    }

    #[test]
    fn embedded_hint_becomes_the_hint_line() {
        let f = with_embedded_hint("failed to import a.json: no phase label\nhint: pass --phase LABEL");
        assert_eq!(f.message, "failed to import a.json: no phase label");
        assert_eq!(f.hint.as_deref(), Some("pass --phase LABEL"));
        assert_eq!(f.code, Code::Usage);
    }

    #[test]
    fn history_table_shows_three_decimals_unrounded_before() {
        let mut phase = Phase::new("e", "phase9", 9);
        phase.eval = vec![gate_rules::QuestionEval {
            id: "Q1".into(),
            question: String::new(),
            max_points: 80.0,
            min_points: 0.0,
            samples: vec![gate_rules::Sample {
                seed: None,
                points: 25.0,
                dimensions: Vec::new(),
                response: None,
                truncated: false,
                auto_zero: Vec::new(),
            }],
        }];
        let table = history_table(&[HistoryEntry { phase, run: None, verdict: String::new(), overridden: None }]);
        assert!(table.contains("3.125"), "{table}");
    }
}
