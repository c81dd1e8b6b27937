//! One file per command group; each returns the exit code or an expected failure.

mod agent;
mod bench;
mod calibrate;
mod chaos;
mod demo;
mod dictionary;
mod gate;
mod gc;
mod lint;
mod lint_bench;
mod models;
mod query;
mod report;
mod score;
mod serve;
mod submit;
mod token;

use crate::cli::{AgentsArgs, AgentsCommand, BenchCommand, Cli, Command, JsonArg, ModelsCommand, TokenCommand};
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
        Command::Agents(AgentsArgs { action: None, json }) => query::agents(JsonArg { json }, &endpoint).await,
        Command::Agents(AgentsArgs { action: Some(AgentsCommand::Drain(a)), .. }) => {
            query::set_draining(&a.name, true, &endpoint).await
        }
        Command::Agents(AgentsArgs { action: Some(AgentsCommand::Undrain(a)), .. }) => {
            query::set_draining(&a.name, false, &endpoint).await
        }
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
        Command::Override(args) => query::override_verdict(args, &endpoint).await,
        Command::Report(args) => report::report(args).await,
        Command::Score(args) => score::score(&args),
        Command::Rescore(args) => gate::rescore(args, &endpoint).await,
        Command::Calibrate(args) => calibrate::calibrate(&args),
        Command::Lint(args) => lint::lint(&args),
        Command::Bench(BenchCommand::Scheduler(args)) => bench::scheduler(args).await,
        Command::Bench(BenchCommand::Gate(args)) => Ok(gate::bench(&args)),
        Command::Bench(BenchCommand::Eval(args)) => models::bench_eval(args).await,
        Command::Bench(BenchCommand::Chaos(args)) => chaos::chaos(args).await,
        Command::Bench(BenchCommand::Lint(args)) => lint_bench::bench(&args),
        Command::Models(ModelsCommand::Pull(args)) => models::pull(args).await,
        Command::Models(ModelsCommand::List(args)) => models::list(&args),
    }
}

/// Each SIGINT or SIGTERM, as a stream (the agent drains on the first, stops on the next). The
/// stream never ends: an ended stream would ask the agent to stop.
pub fn stop_signals() -> impl futures::Stream<Item = ()> + Send + Unpin {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    async fn recv(s: &mut Option<Signal>) -> Option<()> {
        match s {
            Some(s) => s.recv().await,
            None => std::future::pending().await,
        }
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (mut term, mut int) = (signal(SignalKind::terminate()).ok(), signal(SignalKind::interrupt()).ok());
        if term.is_none() && int.is_none() {
            while tokio::signal::ctrl_c().await.is_ok() && tx.send(()).is_ok() {}
        } else {
            loop {
                tokio::select! {
                    Some(()) = recv(&mut term) => {}
                    Some(()) = recv(&mut int) => {}
                    else => break,
                }
                if tx.send(()).is_err() {
                    return;
                }
            }
        }
        // Keep the sender: the stream must not end.
        std::future::pending::<()>().await;
        drop(tx);
    });
    tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
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
