//! `runs`, `show`, `agents`, `cancel`, `logs`.

use futures::StreamExt as _;

use phasegate_proto::pb;

use crate::cli::{JsonArg, LogsArgs, OverrideArgs, RunArg, RunsArgs, ShowArgs};
use crate::connect::Endpoint;
use crate::exit::{Code, Failure, Result};
use crate::out::{out, outln};
use crate::render::{agent_json, agent_text, pruned_note, run_json, run_text};

fn print_json(v: &serde_json::Value) {
    outln!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub async fn runs(args: RunsArgs, endpoint: &Endpoint) -> Result<Code> {
    let mut client = endpoint.control()?;
    let req = pb::ListRunsRequest { limit: args.limit, experiment: args.experiment.unwrap_or_default() };
    let runs =
        client.list_runs(req).await.map_err(|s| Failure::from_status("failed to list runs", &s))?.into_inner().runs;
    if args.json {
        print_json(&serde_json::Value::Array(runs.iter().map(run_json).collect()));
    } else if runs.is_empty() {
        outln!("no runs");
    } else {
        for r in &runs {
            let verdict = if r.verdict.is_empty() { String::new() } else { format!("  verdict {}", r.verdict) };
            outln!("{:>6}  {:<20} phase {:<8} {:<10} {}{verdict}", r.id, r.experiment, r.phase, r.state, r.priority);
        }
    }
    Ok(Code::Success)
}

pub async fn show(args: ShowArgs, endpoint: &Endpoint) -> Result<Code> {
    let mut client = endpoint.control()?;
    let run = client
        .get_run(pb::GetRunRequest { run_id: args.run })
        .await
        .map_err(|s| Failure::from_status(&format!("failed to show run {}", args.run), &s))?
        .into_inner();
    if args.json {
        print_json(&run_json(&run));
    } else {
        out!("{}", run_text(&run));
    }
    Ok(Code::Success)
}

pub async fn agents(args: JsonArg, endpoint: &Endpoint) -> Result<Code> {
    let mut client = endpoint.control()?;
    let agents = client
        .list_agents(pb::ListAgentsRequest {})
        .await
        .map_err(|s| Failure::from_status("failed to list agents", &s))?
        .into_inner()
        .agents;
    if args.json {
        print_json(&serde_json::Value::Array(agents.iter().map(agent_json).collect()));
    } else if agents.is_empty() {
        outln!("no agents registered");
    } else {
        for a in &agents {
            outln!("{}", agent_text(a));
        }
    }
    Ok(Code::Success)
}

/// `agents drain NAME` / `agents undrain NAME`.
pub async fn set_draining(name: &str, draining: bool, endpoint: &Endpoint) -> Result<Code> {
    let mut client = endpoint.control()?;
    let verb = if draining { "drain" } else { "undrain" };
    let agent = client
        .set_agent_draining(pb::SetAgentDrainingRequest { agent_name: name.to_owned(), draining })
        .await
        .map_err(|s| Failure::from_status(&format!("failed to {verb} agent {name}"), &s))?
        .into_inner()
        .agent
        .unwrap_or_default();
    if draining {
        outln!(
            "agent {name} is draining: it is leased nothing new; running jobs {:?} finish normally",
            agent.running_jobs
        );
    } else if agent.agent_draining {
        outln!("agent {name} is undrained, but the agent itself is draining (it is stopping)");
    } else {
        outln!("agent {name} is leased jobs again");
    }
    Ok(Code::Success)
}

pub async fn cancel(args: RunArg, endpoint: &Endpoint) -> Result<Code> {
    let mut client = endpoint.control()?;
    let resp = client
        .cancel_run(pb::CancelRunRequest { run_id: args.run })
        .await
        .map_err(|s| Failure::from_status(&format!("failed to cancel run {}", args.run), &s))?
        .into_inner();
    if resp.cancelled {
        outln!("run {} cancelled", args.run);
    } else {
        outln!("run {} had already ended", args.run);
    }
    Ok(Code::Success)
}

pub async fn override_verdict(args: OverrideArgs, endpoint: &Endpoint) -> Result<Code> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let by = args.by.clone().or_else(|| env("GITHUB_ACTOR")).or_else(|| env("USER")).ok_or_else(|| {
        Failure::usage("--by: no name to record (GITHUB_ACTOR and USER are unset)").with_hint("pass --by NAME")
    })?;
    let mut client = endpoint.control()?;
    let resp = client
        .override_verdict(pb::OverrideVerdictRequest { run_id: args.run, reason: args.reason.clone(), by })
        .await
        .map_err(|s| Failure::from_status(&format!("failed to override the verdict of run {}", args.run), &s))?
        .into_inner();
    let o = resp.r#override.unwrap_or_default();
    outln!("run {}: verdict overridden by {} ({})", args.run, o.by, o.reason);
    Ok(Code::Success)
}

pub async fn logs(args: LogsArgs, endpoint: &Endpoint) -> Result<Code> {
    let mut client = endpoint.control()?;
    let what = format!("failed to fetch logs of run {}", args.run);
    let run =
        client.get_run(pb::GetRunRequest { run_id: args.run }).await.map_err(|s| Failure::from_status(&what, &s))?;
    if let Some(note) = pruned_note(run.get_ref()) {
        outln!("{note}");
        return Ok(Code::Success);
    }
    let mut stream = client
        .fetch_logs(pb::FetchLogsRequest { run_id: args.run, follow: args.follow })
        .await
        .map_err(|s| Failure::from_status(&what, &s))?
        .into_inner();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|s| Failure::from_status(&what, &s))?;
        for line in chunk.lines {
            let tag = if line.stream == "stdout" { String::new() } else { format!("[{}] ", line.stream) };
            outln!("{}#{} {tag}{}", chunk.stage, chunk.job_id, line.text);
        }
        if crate::out::closed() {
            // Nobody reads any more (`logs --follow | head`): stop following.
            break;
        }
    }
    Ok(Code::Success)
}
