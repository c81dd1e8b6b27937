//! Store records to wire messages.

use phasegate_proto::pb;

use crate::history::{RescoreLine, RescoreOutcome};
use crate::scheduler::AgentStatus;
use crate::store::{JobRecord, RunRecord};

/// An agent as listed: its stored capabilities and what the scheduler knows of it (nothing for an
/// agent the scheduler could not restore).
pub(crate) fn agent_to_pb(name: String, caps: Option<pb::Capabilities>, status: Option<&AgentStatus>) -> pb::Agent {
    let Some(s) = status else {
        return pb::Agent { name, capabilities: caps, ..Default::default() };
    };
    pb::Agent {
        name,
        capabilities: caps,
        online: s.online,
        last_seen_ms: s.last_seen_ms as i64,
        running_jobs: s.running.iter().map(|j| j.0).collect(),
        draining: s.drained_ms.is_some() || s.self_draining,
        drained_ms: s.drained_ms.map_or(0, |ms| ms as i64),
        agent_draining: s.self_draining,
    }
}

/// What `rescore` did to one phase, with its instruments as displayed.
pub(crate) fn rescore_line_to_pb(line: &RescoreLine) -> pb::RescoreLine {
    use pb::rescore_line::{Current, Outcome, Rescored};
    let outcome = match &line.outcome {
        RescoreOutcome::Rescored { after } => Outcome::Rescored(Rescored { after: *after }),
        RescoreOutcome::Current => Outcome::Current(Current {}),
        RescoreOutcome::Skipped(why) => Outcome::Skipped(why.clone()),
    };
    pb::RescoreLine {
        label: line.label.clone(),
        from: line.from.to_string(),
        before: line.before,
        outcome: Some(outcome),
    }
}

pub(crate) fn run_to_pb(run: RunRecord, progress: &[(i64, pb::Progress)]) -> pb::Run {
    pb::Run {
        id: run.id as u64,
        experiment: run.experiment,
        phase: run.phase,
        description: run.description,
        state: run.state,
        priority: run.priority,
        created_ms: run.created_ms,
        trigger: Some(pb::Trigger::from(&run.trigger)),
        error: run.error,
        jobs: run
            .jobs
            .into_iter()
            .map(|j| {
                let p = progress.iter().find(|(id, _)| *id == j.id).map(|(_, p)| *p);
                job_to_pb(j, p)
            })
            .collect(),
        verdict: run.verdict,
        report: run.report,
        evaluation_json: run.evaluation_json,
        github_delivery: None,
        pruned_ms: run.pruned_ms.unwrap_or(0),
        r#override: run.overridden.map(|o| pb::Override { by: o.by, reason: o.reason, at_ms: o.at_ms }),
    }
}

fn job_to_pb(job: JobRecord, progress: Option<pb::Progress>) -> pb::Job {
    pb::Job {
        id: job.id as u64,
        stage: job.stage,
        state: job.state,
        attempts: job.attempt as u32,
        agent: job.agent.unwrap_or_default(),
        error: job.error,
        metrics: job.metrics,
        history: job
            .history
            .into_iter()
            .map(|h| pb::AttemptRecord { attempt: h.attempt, agent: h.agent, outcome: h.outcome, released: h.released })
            .collect(),
        progress,
        artifacts: job.artifacts,
        result_json: job.result_json,
        cached_from: job.cached_from.map(|(job, _)| job as u64),
        cached_from_run: job.cached_from.map(|(_, run)| run as u64),
    }
}

/// Progress of a job from its latest metric point: the step and the `loss` value when present.
pub(crate) fn progress_of(point: &pb::MetricPoint) -> pb::Progress {
    pb::Progress { step: point.step, loss: point.values.iter().find(|v| v.key == "loss").map(|v| v.value) }
}
