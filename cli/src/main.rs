//! `phasegate`: the coordinator, the agent and the client in one binary.
//!
//! Exit codes (documented in the README): 0 success or pass, 1 regression blocked, 2 usage or
//! invalid input, 3 infrastructure failure, 4 inconclusive or insufficient baseline.

mod out;

mod cli;
mod commands;
mod connect;
mod exit;
mod render;

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PHASEGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(args.default_log_filter())),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return exit::Failure::infra(e.to_string()).code();
        }
    };
    let outcome = runtime.block_on(commands::dispatch(args));
    // Output that could not be written (not a closed pipe: that stops quietly) fails the command.
    let outcome = match out::take_failure() {
        Some(e) => Err(exit::Failure::infra(format!("failed to write to stdout: {e}"))),
        None => outcome,
    };
    match outcome {
        Ok(code) => code.into(),
        Err(failure) => {
            failure.print();
            failure.code()
        }
    }
}
