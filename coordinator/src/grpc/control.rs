//! The client-facing gRPC service (CLI, CI, operators).

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status, Streaming};

use phasegate_proto::domain::{AgentName, JobId, Priority, RunId, Trigger, parse_sha256};
use phasegate_proto::pb;
use phasegate_proto::pb::control_service_server::ControlService;

use super::agent::async_stream_acks;
use super::convert::{agent_to_pb, progress_of, run_to_pb};
use super::{rescore, upload};
use crate::retention::RetentionPolicy;
use crate::shell::{Shared, now_ms, store_status};
use crate::store::Store;

#[derive(Debug)]
pub(crate) struct ControlApi<S> {
    pub shared: Arc<Shared<S>>,
}

fn invalid(e: impl ToString) -> Status {
    Status::invalid_argument(e.to_string())
}

fn run_id(raw: u64) -> Result<RunId, Status> {
    RunId::from_wire("run_id", raw).map_err(invalid)
}

/// Largest spec text accepted.
const MAX_SPEC_BYTES: usize = 256 * 1024;

impl<S: Store> ControlApi<S> {
    async fn load_run(&self, id: RunId) -> Result<pb::Run, Status> {
        let run = self.shared.store.run(id).await.map_err(store_status)?;
        let run = run.ok_or_else(|| Status::not_found(format!("no run {id}")))?;
        let mut progress = Vec::new();
        for job in run.jobs.iter().filter(|j| j.state == "running") {
            if let Some(p) = self.shared.store.last_metric(JobId(job.id as u64)).await.map_err(store_status)? {
                progress.push((job.id, progress_of(&p)));
            }
        }
        let mut run = run_to_pb(run, &progress);
        run.github_delivery = self.shared.store.github_delivery(id).await.map_err(store_status)?.map(|d| {
            pb::GithubDelivery { status: d.status, stage: d.stage, error: d.last_error, attempts: d.attempts }
        });
        Ok(run)
    }
}

#[tonic::async_trait]
impl<S: Store> ControlService for ControlApi<S> {
    async fn upload_bundle(
        &self,
        req: Request<Streaming<pb::ArtifactChunk>>,
    ) -> Result<Response<pb::UploadArtifactResponse>, Status> {
        let limit = self.shared.config.bundle_limit_bytes;
        let artifact = upload::receive(&self.shared, req.into_inner(), limit, |h| async move {
            if h.job_id != 0 {
                return Err(invalid("header.job_id: must be 0 for a source bundle"));
            }
            Ok(h)
        })
        .await?;
        Ok(Response::new(pb::UploadArtifactResponse { artifact: Some(artifact) }))
    }

    async fn submit_run(&self, req: Request<pb::SubmitRunRequest>) -> Result<Response<pb::SubmitRunResponse>, Status> {
        let req = req.into_inner();
        if req.spec_toml.len() > MAX_SPEC_BYTES {
            return Err(invalid(format!(
                "spec_toml: {} bytes exceeds the limit of {MAX_SPEC_BYTES}",
                req.spec_toml.len()
            )));
        }
        let bundle = if req.bundle_sha256.is_empty() {
            String::new()
        } else {
            parse_sha256("bundle_sha256", &req.bundle_sha256).map_err(invalid)?
        };
        let trigger = Trigger::try_from(req.trigger.as_ref()).map_err(invalid)?;
        let path = if req.spec_path.is_empty() { "<spec>" } else { req.spec_path.as_str() };
        let priority = match req.priority.as_str() {
            "" => None,
            p => Some(p.parse::<Priority>().map_err(|e| invalid(format!("priority: {e}")))?),
        };
        let (run, superseded) =
            self.shared.submit_as(&req.spec_toml, path, bundle, trigger, priority, req.no_cache).await?;
        tracing::info!(run = %run, superseded = superseded.len(), "run submitted");
        Ok(Response::new(pb::SubmitRunResponse {
            run_id: run.0,
            superseded: superseded.into_iter().map(|r| r.0).collect(),
        }))
    }

    async fn get_run(&self, req: Request<pb::GetRunRequest>) -> Result<Response<pb::Run>, Status> {
        Ok(Response::new(self.load_run(run_id(req.get_ref().run_id)?).await?))
    }

    type WatchRunStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::Run, Status>> + Send>>;

    async fn watch_run(&self, req: Request<pb::WatchRunRequest>) -> Result<Response<Self::WatchRunStream>, Status> {
        let id = run_id(req.get_ref().run_id)?;
        let mut changes = self.shared.runs_changed.subscribe();
        let first = self.load_run(id).await?;
        let api = ControlApi { shared: self.shared.clone() };
        let out = async_stream_acks(move |tx| async move {
            let mut last = first;
            if tx.send(Ok(last.clone())).await.is_err() {
                return Ok(());
            }
            while !matches!(last.state.as_str(), "succeeded" | "failed" | "cancelled") {
                // Wake on a change of this run, or every few seconds in case a notification was missed.
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    loop {
                        match changes.recv().await {
                            Ok(r) if r == id => return,
                            Ok(_) => continue,
                            Err(_) => return,
                        }
                    }
                })
                .await;
                let now = api.load_run(id).await?;
                if now != last {
                    if tx.send(Ok(now.clone())).await.is_err() {
                        return Ok(());
                    }
                    last = now;
                }
            }
            Ok(())
        });
        Ok(Response::new(out))
    }

    async fn list_runs(&self, req: Request<pb::ListRunsRequest>) -> Result<Response<pb::ListRunsResponse>, Status> {
        let req = req.into_inner();
        let limit = if req.limit == 0 { 50 } else { req.limit.min(1000) };
        let runs = self.shared.store.runs(limit, &req.experiment).await.map_err(store_status)?;
        Ok(Response::new(pb::ListRunsResponse { runs: runs.into_iter().map(|r| run_to_pb(r, &[])).collect() }))
    }

    async fn list_agents(
        &self,
        _req: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let records = self.shared.store.agents().await.map_err(store_status)?;
        let core = self.shared.core.lock().await;
        let agents = records
            .into_iter()
            .map(|r| {
                let status = AgentName::parse("name", &r.name).ok().and_then(|n| core.agent_status(&n));
                agent_to_pb(r.name, Some(r.capabilities), status.as_ref())
            })
            .collect();
        Ok(Response::new(pb::ListAgentsResponse { agents }))
    }

    async fn set_agent_draining(
        &self,
        req: Request<pb::SetAgentDrainingRequest>,
    ) -> Result<Response<pb::SetAgentDrainingResponse>, Status> {
        let req = req.into_inner();
        let name = AgentName::parse("agent_name", &req.agent_name).map_err(invalid)?;
        let status = self.shared.set_draining(&name, req.draining).await?;
        tracing::info!(agent = %name, draining = req.draining, "agent drain set by an operator");
        let record =
            self.shared.store.agents().await.map_err(store_status)?.into_iter().find(|r| r.name == req.agent_name);
        let agent = agent_to_pb(req.agent_name, record.map(|r| r.capabilities), Some(&status));
        Ok(Response::new(pb::SetAgentDrainingResponse { agent: Some(agent) }))
    }

    async fn create_agent_token(
        &self,
        req: Request<pb::CreateAgentTokenRequest>,
    ) -> Result<Response<pb::CreateAgentTokenResponse>, Status> {
        let name = AgentName::parse("agent_name", &req.get_ref().agent_name).map_err(invalid)?;
        let (token, secret) = self.shared.create_agent_token(&name).await?;
        Ok(Response::new(pb::CreateAgentTokenResponse { token: Some(token), secret }))
    }

    async fn list_agent_tokens(
        &self,
        _req: Request<pb::ListAgentTokensRequest>,
    ) -> Result<Response<pb::ListAgentTokensResponse>, Status> {
        Ok(Response::new(pb::ListAgentTokensResponse { tokens: self.shared.agent_tokens().await? }))
    }

    async fn revoke_agent_token(
        &self,
        req: Request<pb::RevokeAgentTokenRequest>,
    ) -> Result<Response<pb::RevokeAgentTokenResponse>, Status> {
        let target = req.get_ref().name_or_id.trim();
        if target.is_empty() {
            return Err(invalid("name_or_id: is required (a credential id or an agent name)"));
        }
        Ok(Response::new(pb::RevokeAgentTokenResponse { revoked: self.shared.revoke_agent_token(target).await? }))
    }

    async fn cancel_run(&self, req: Request<pb::CancelRunRequest>) -> Result<Response<pb::CancelRunResponse>, Status> {
        let id = run_id(req.get_ref().run_id)?;
        if self.shared.store.run(id).await.map_err(store_status)?.is_none() {
            return Err(Status::not_found(format!("no run {id}")));
        }
        let cancelled = self.shared.cancel(id).await?;
        Ok(Response::new(pb::CancelRunResponse { cancelled }))
    }

    async fn import_phase(
        &self,
        req: Request<pb::ImportPhaseRequest>,
    ) -> Result<Response<pb::ImportPhaseResponse>, Status> {
        let req = req.into_inner();
        let mut phase: gate_rules::Phase =
            serde_json::from_str(&req.phase_json).map_err(|e| invalid(format!("phase_json: {e}")))?;
        if phase.experiment.is_empty() || phase.label.is_empty() {
            return Err(invalid("phase_json: the phase needs an experiment and a label"));
        }
        phase.accepted = req.accept;
        self.shared.store.upsert_phase(&phase, None, now_ms() as i64).await.map_err(store_status)?;
        tracing::info!(experiment = %phase.experiment, phase = %phase.label, accepted = req.accept, "phase imported");
        Ok(Response::new(pb::ImportPhaseResponse { experiment: phase.experiment, label: phase.label }))
    }

    async fn accept_phase(
        &self,
        req: Request<pb::AcceptPhaseRequest>,
    ) -> Result<Response<pb::AcceptPhaseResponse>, Status> {
        let req = req.into_inner();
        let (experiment, label) = if req.run_id != 0 {
            let record = self.shared.store.phase_of_run(run_id(req.run_id)?).await.map_err(store_status)?;
            let record =
                record.ok_or_else(|| Status::not_found(format!("run {} stored no gated phase", req.run_id)))?;
            (record.phase.experiment, record.phase.label)
        } else if !req.experiment.is_empty() && !req.label.is_empty() {
            (req.experiment, req.label)
        } else {
            return Err(invalid("run_id, or experiment and label, must be set"));
        };
        if !self.shared.store.accept_phase(&experiment, &label).await.map_err(store_status)? {
            return Err(Status::not_found(format!("no phase {label} in experiment {experiment}")));
        }
        Ok(Response::new(pb::AcceptPhaseResponse { experiment, label }))
    }

    async fn rescore_phases(
        &self,
        req: Request<pb::RescorePhasesRequest>,
    ) -> Result<Response<pb::RescorePhasesResponse>, Status> {
        let cache = self.shared.config.model_cache.clone().unwrap_or_else(phasegate_eval::models::default_cache_dir);
        let resp = rescore::rescore_phases(&self.shared.store, cache, req.into_inner()).await?;
        Ok(Response::new(resp))
    }

    async fn override_verdict(
        &self,
        req: Request<pb::OverrideVerdictRequest>,
    ) -> Result<Response<pb::OverrideVerdictResponse>, Status> {
        let req = req.into_inner();
        let entry = self.shared.override_verdict(run_id(req.run_id)?, &req.by, &req.reason).await?;
        Ok(Response::new(pb::OverrideVerdictResponse {
            r#override: Some(pb::Override { by: entry.by, reason: entry.reason, at_ms: entry.at_ms }),
        }))
    }

    type FetchLogsStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::LogChunk, Status>> + Send>>;

    async fn fetch_logs(&self, req: Request<pb::FetchLogsRequest>) -> Result<Response<Self::FetchLogsStream>, Status> {
        let req = req.into_inner();
        let id = run_id(req.run_id)?;
        if self.shared.store.run(id).await.map_err(store_status)?.is_none() {
            return Err(Status::not_found(format!("no run {id}")));
        }
        let shared = self.shared.clone();
        let mut changes = shared.runs_changed.subscribe();
        let out = async_stream_acks(move |tx| async move {
            let mut after = (0i64, 0i64);
            let mut last_pass = false;
            loop {
                let batch = shared.store.logs(id, after, 1000).await.map_err(store_status)?;
                let full = batch.len() == 1000;
                for rec in batch {
                    after = (rec.job_id, rec.line.seq as i64);
                    let chunk = pb::LogChunk { job_id: rec.job_id as u64, stage: rec.stage, lines: vec![rec.line] };
                    if tx.send(Ok(chunk)).await.is_err() {
                        return Ok(());
                    }
                }
                if full {
                    continue;
                }
                if last_pass || !req.follow {
                    return Ok(());
                }
                let run = shared.store.run(id).await.map_err(store_status)?;
                // After the run ended, read once more: lines committed just before the end are not missed.
                last_pass = run.is_none_or(|r| matches!(r.state.as_str(), "succeeded" | "failed" | "cancelled"));
                if !last_pass {
                    let _ = tokio::time::timeout(Duration::from_secs(2), changes.recv()).await;
                }
            }
        });
        Ok(Response::new(out))
    }

    async fn collect_garbage(
        &self,
        req: Request<pb::CollectGarbageRequest>,
    ) -> Result<Response<pb::CollectGarbageResponse>, Status> {
        let req = req.into_inner();
        let defaults = RetentionPolicy::default();
        let policy = RetentionPolicy {
            keep_runs: req.keep_runs.unwrap_or(defaults.keep_runs),
            older_than_ms: req.older_than_ms.unwrap_or(defaults.older_than_ms),
        };
        let report = self.shared.collect_garbage(policy, req.dry_run, now_ms() as i64).await?;
        Ok(Response::new(pb::CollectGarbageResponse {
            dry_run: report.dry_run,
            run_ids: report.runs.iter().map(|r| r.0).collect(),
            log_lines: report.log_lines,
            metric_points: report.metric_points,
            blobs: report.blobs,
            bytes_freed: report.bytes_freed,
            keep_runs: report.policy.keep_runs,
            older_than_ms: report.policy.older_than_ms,
        }))
    }
}
