//! Runs and agents as JSON (the `--json` contract) and as text.

use std::fmt::Write as _;

use serde_json::{Value, json};

use phasegate_proto::pb;

fn metrics_json(m: Option<&pb::JobMetrics>) -> Value {
    let Some(m) = m else { return Value::Null };
    let curve = |c: &[pb::LossPoint]| -> Vec<Value> {
        c.iter().map(|p| json!({"step": p.step, "epoch": p.epoch, "loss": p.loss})).collect()
    };
    json!({
        "final_loss": m.final_loss,
        "vram_peak_mib": m.vram_peak_mib,
        "loss_curve": curve(&m.loss_curve),
        "eval_loss_curve": curve(&m.eval_loss_curve),
        "duration_s": m.duration_s,
        "summary": serde_json::from_str::<Value>(&m.summary_json).unwrap_or(Value::Null),
    })
}

pub fn run_json(run: &pb::Run) -> Value {
    let trigger = run.trigger.clone().unwrap_or_default();
    json!({
        "id": run.id,
        "experiment": run.experiment,
        "phase": run.phase,
        "description": run.description,
        "state": run.state,
        "priority": run.priority,
        "created_ms": run.created_ms,
        "error": run.error,
        "trigger": {"pr": trigger.pr, "sha": trigger.sha, "branch": trigger.branch, "repo": trigger.repo},
        "jobs": run.jobs.iter().map(|j| json!({
            "id": j.id,
            "stage": j.stage,
            "state": j.state,
            "attempts": j.attempts,
            "agent": j.agent,
            "error": j.error,
            "metrics": metrics_json(j.metrics.as_ref()),
            "history": j.history.iter().map(|h| json!({"attempt": h.attempt, "agent": h.agent, "outcome": h.outcome, "released": h.released})).collect::<Vec<_>>(),
            "artifacts": j.artifacts.iter().map(|a| json!({"name": a.name, "sha256": a.sha256, "size": a.size})).collect::<Vec<_>>(),
            "progress": j.progress.map(|p| json!({"step": p.step, "loss": p.loss})),
            "cached": j.cached_from.is_some(),
            "cached_from": j.cached_from.map(|job| json!({"job": job, "run": j.cached_from_run})),
        })).collect::<Vec<_>>(),
        "verdict": if run.verdict.is_empty() { Value::Null } else { Value::String(run.verdict.clone()) },
        "report": if run.report.is_empty() { Value::Null } else { Value::String(run.report.clone()) },
        "override": run.r#override.as_ref().map(|o| json!({"by": o.by, "reason": o.reason, "at_ms": o.at_ms})),
        "pruned_ms": (run.pruned_ms > 0).then_some(run.pruned_ms),
        "github_delivery": run.github_delivery.as_ref().map(|d| json!({
            "status": d.status,
            "stage": d.stage,
            "error": if d.error.is_empty() { Value::Null } else { Value::String(d.error.clone()) },
            "attempts": d.attempts,
        })),
    })
}

pub fn run_text(run: &pb::Run) -> String {
    let mut out =
        format!("run {}  {} phase {}  {}  ({})\n", run.id, run.experiment, run.phase, run.state, run.priority);
    if !run.description.is_empty() {
        let _ = writeln!(out, "  {}", run.description);
    }
    if !run.error.is_empty() {
        let _ = writeln!(out, "  error: {}", run.error.replace('\n', "\n    "));
    }
    for j in &run.jobs {
        let state = if j.cached_from.is_some() { "cached" } else { j.state.as_str() };
        let _ = write!(out, "  job {} {:<9} {:<10} attempts {}", j.id, j.stage, state, j.attempts);
        if let (Some(job), Some(run)) = (j.cached_from, j.cached_from_run) {
            let _ = write!(out, "  inputs unchanged: results of job {job} (run {run})");
        }
        if !j.agent.is_empty() {
            let _ = write!(out, "  agent {}", j.agent);
        }
        if let Some(m) = &j.metrics {
            if let Some(l) = m.final_loss {
                let _ = write!(out, "  final loss {l:.4}");
            }
            if let Some(v) = m.vram_peak_mib {
                let _ = write!(out, "  vram peak {v} MiB");
            }
        }
        out.push('\n');
        if !j.error.is_empty() {
            let _ = writeln!(out, "    error: {}", j.error);
        }
    }
    if !run.verdict.is_empty() {
        let _ = writeln!(out, "  verdict: {}", run.verdict);
    }
    if let Some(o) = &run.r#override {
        let _ = writeln!(out, "  overridden by {} at {}: {}", o.by, date_time(o.at_ms), o.reason);
    }
    if let Some(note) = pruned_note(run) {
        let _ = writeln!(out, "  {note}");
    }
    if let Some(d) = &run.github_delivery {
        let _ = write!(out, "  github: {} ({}, {} attempts)", d.status.replace('_', " "), d.stage, d.attempts);
        if !d.error.is_empty() {
            let _ = write!(out, ": {}", d.error);
        }
        out.push('\n');
    }
    out
}

/// A date and time in UTC, to the second, from milliseconds since the Unix epoch.
pub fn date_time(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// What `show` and `logs` say of a run whose logs and artifacts gc removed; `None` for others.
pub fn pruned_note(run: &pb::Run) -> Option<String> {
    (run.pruned_ms > 0).then(|| {
        format!(
            "logs, metric points and artifacts of run {} were removed by gc on {} (its jobs, verdict and report are kept)",
            run.id,
            date_time(run.pruned_ms)
        )
    })
}

pub fn agent_json(a: &pb::Agent) -> Value {
    let c = a.capabilities.clone().unwrap_or_default();
    json!({
        "name": a.name,
        "online": a.online,
        "last_seen_ms": a.last_seen_ms,
        "running_jobs": a.running_jobs,
        "draining": a.draining,
        "drain": drain_source(a),
        "drained_ms": if a.drained_ms > 0 { Value::from(a.drained_ms) } else { Value::Null },
        "hostname": c.hostname,
        "cpus": c.cpus,
        "ram_mib": c.ram_mib,
        "labels": c.labels,
        "max_jobs": c.max_jobs,
        "driver_version": c.driver_version,
        "cuda_version": c.cuda_version,
        "gpus": c.gpus.iter().map(|g| json!({"index": g.index, "name": g.name, "total_vram_mib": g.total_vram_mib, "free_vram_mib": g.free_vram_mib})).collect::<Vec<_>>(),
        "environment": c.environment.iter().map(|kv| (kv.key.clone(), Value::String(kv.value.clone()))).collect::<serde_json::Map<_, _>>(),
    })
}

/// Who drains the agent: `"operator"` (`agents drain`), `"agent"` (it is stopping), or null.
fn drain_source(a: &pb::Agent) -> Value {
    match (a.drained_ms > 0, a.agent_draining) {
        (true, _) => Value::from("operator"),
        (false, true) => Value::from("agent"),
        (false, false) if a.draining => Value::from("operator"),
        _ => Value::Null,
    }
}

pub fn agent_text(a: &pb::Agent) -> String {
    let c = a.capabilities.clone().unwrap_or_default();
    let gpus = if c.gpus.is_empty() {
        "no GPU".to_owned()
    } else {
        c.gpus
            .iter()
            .map(|g| format!("{} {}/{} MiB free", g.name, g.free_vram_mib, g.total_vram_mib))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Draining agents say so after their state; other lines are as they always were.
    let state = match (a.online, a.draining) {
        (true, false) => "online".to_owned(),
        (false, false) => "offline".to_owned(),
        (online, true) => format!("{} draining", if online { "online" } else { "offline" }),
    };
    format!(
        "{:<20} {:<8} {} cpus, {} MiB ram, {gpus}; labels [{}]; running {:?}",
        a.name,
        state,
        c.cpus,
        c.ram_mib,
        c.labels.join(", "),
        a.running_jobs
    )
}
