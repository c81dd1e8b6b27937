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
    /// List agents.
    Agents(JsonArg),
    /// Cancel a run.
    Cancel(RunArg),
    /// Print a run's job logs.
    Logs(LogsArgs),
    /// Benchmarks that print figures.
    #[command(subcommand)]
    Bench(BenchCommand),
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
    /// Largest source bundle, in MiB, before packing fails.
    #[arg(long, default_value_t = 256)]
    pub bundle_limit_mib: u64,
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

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// A real coordinator on loopback and N simulated agents leasing and completing zero-work jobs.
    Scheduler(BenchSchedulerArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchSchedulerArgs {
    #[arg(long, default_value_t = 1000)]
    pub agents: u32,
    #[arg(long, default_value_t = 20000)]
    pub jobs: u32,
}
