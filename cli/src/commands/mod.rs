//! One file per command group; each returns the exit code or an expected failure.

mod agent;
mod bench;
mod calibrate;
mod demo;
mod dictionary;
mod gate;
mod gc;
mod models;
mod query;
mod report;
mod score;
mod serve;
mod submit;
mod token;

use crate::cli::{BenchCommand, Cli, Command, ModelsCommand, TokenCommand};
use crate::exit::{Code, Result};

pub async fn dispatch(cli: Cli) -> Result<Code> {
    let endpoint = cli.endpoint;
    match cli.command {
        Command::Serve(args) => serve::serve(args).await,
        Command::Agent(args) => agent::agent(args, &endpoint).await,
        Command::Up(args) => serve::up(args).await,
        Command::Submit(args) => submit::submit(args, &endpoint).await,
        Command::Runs(args) => query::runs(args, &endpoint).await,
        Command::Show(args) => query::show(args, &endpoint).await,
        Command::Agents(args) => query::agents(args, &endpoint).await,
        Command::Token(TokenCommand::Create(args)) => token::create(args, &endpoint).await,
        Command::Token(TokenCommand::List(args)) => token::list(args, &endpoint).await,
        Command::Token(TokenCommand::Revoke(args)) => token::revoke(args, &endpoint).await,
        Command::Cancel(args) => query::cancel(args, &endpoint).await,
        Command::Logs(args) => query::logs(args, &endpoint).await,
        Command::Gc(args) => gc::gc(args, &endpoint).await,
        Command::Demo(args) => demo::demo(args).await,
        Command::Import(args) => gate::import(args, &endpoint).await,
        Command::History(args) => gate::history(args).await,
        Command::Gate(args) => gate::gate(args).await,
        Command::Accept(args) => gate::accept(args, &endpoint).await,
        Command::Report(args) => report::report(args).await,
        Command::Score(args) => score::score(&args),
        Command::Rescore(args) => gate::rescore(args).await,
        Command::Calibrate(args) => calibrate::calibrate(&args),
        Command::Bench(BenchCommand::Scheduler(args)) => bench::scheduler(args).await,
        Command::Bench(BenchCommand::Gate(args)) => Ok(gate::bench(&args)),
        Command::Bench(BenchCommand::Eval(args)) => models::bench_eval(args).await,
        Command::Models(ModelsCommand::Pull(args)) => models::pull(args).await,
        Command::Models(ModelsCommand::List(args)) => models::list(&args),
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
