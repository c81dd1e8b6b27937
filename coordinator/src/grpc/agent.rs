//! The agent-facing gRPC service.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use tonic::{Request, Response, Status, Streaming};

use phasegate_proto::domain::{AgentName, Lease, WireError, leases_from_wire};
use phasegate_proto::pb;
use phasegate_proto::pb::agent_service_server::AgentService;

use super::upload::{self, ChunkStream};
use crate::auth::AgentCredential;
use crate::shell::Shared;
use crate::store::Store;

use phasegate_proto::client::AGENT_HEADER;

/// The longest a lease request may wait before answering "nothing".
const MAX_LEASE_WAIT: Duration = Duration::from_secs(30);
/// The longest reason a release may give (it is kept in the job's history).
const MAX_RELEASE_REASON_BYTES: usize = 1024;

#[derive(Debug)]
pub(crate) struct AgentApi<S> {
    pub shared: Arc<Shared<S>>,
}

fn invalid(e: impl ToString) -> Status {
    Status::invalid_argument(e.to_string())
}

/// A wire lease; a missing or malformed token is a permission failure (the caller cannot prove it
/// holds the lease), anything else a bad argument.
fn lease_of(l: Option<&pb::JobLease>) -> Result<Lease, Status> {
    Lease::try_from(l).map_err(|e: WireError| {
        if e.field == "lease.token" { Status::permission_denied(e.to_string()) } else { invalid(e) }
    })
}

/// Who the request is from: the agent its credential belongs to, else the name it sent in the
/// `phasegate-agent` header, else nobody in particular (the shared token, no name: then only the
/// lease token proves who holds a lease).
fn caller<T>(req: &Request<T>) -> Result<Option<AgentName>, Status> {
    let claimed = match req.metadata().get(AGENT_HEADER) {
        Some(v) => {
            let raw = v.to_str().map_err(|_| invalid(format!("{AGENT_HEADER}: is not valid text")))?;
            Some(AgentName::parse(AGENT_HEADER, raw).map_err(invalid)?)
        }
        None => None,
    };
    match (req.extensions().get::<AgentCredential>(), claimed) {
        (Some(AgentCredential::Own { id, agent }), Some(claimed)) if *agent != claimed => {
            Err(Status::permission_denied(format!("agent credential {id} belongs to agent {agent}, not {claimed}")))
        }
        (Some(AgentCredential::Own { agent, .. }), _) => Ok(Some(agent.clone())),
        (_, claimed) => Ok(claimed),
    }
}

/// Checks that a request naming agent `name` in its body comes from that agent.
fn caller_is<T>(req: &Request<T>, name: &AgentName) -> Result<(), Status> {
    match caller(req)? {
        Some(c) if c != *name => Err(match req.extensions().get::<AgentCredential>() {
            Some(AgentCredential::Own { id, .. }) => {
                Status::permission_denied(format!("agent credential {id} belongs to agent {c}, not {name}"))
            }
            _ => Status::permission_denied(format!("agent_name: {name} differs from the {AGENT_HEADER} header {c}")),
        }),
        _ => Ok(()),
    }
}

fn own_credential<T>(req: &Request<T>, name: &AgentName) -> bool {
    matches!(req.extensions().get::<AgentCredential>(), Some(AgentCredential::Own { agent, .. }) if agent == name)
}

#[tonic::async_trait]
impl<S: Store> AgentService for AgentApi<S> {
    async fn register(&self, req: Request<pb::RegisterRequest>) -> Result<Response<pb::RegisterResponse>, Status> {
        phasegate_proto::protocol::check("agent", req.get_ref().protocol_version, "coordinator")
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let name = AgentName::parse("agent_name", &req.get_ref().agent_name).map_err(invalid)?;
        caller_is(&req, &name)?;
        let own = own_credential(&req, &name);
        let req = req.into_inner();
        let caps = req.capabilities.ok_or_else(|| invalid("capabilities: is required"))?;
        let running = leases_from_wire(&req.running).map_err(invalid)?;
        let stop = self.shared.register(name.clone(), caps.clone(), &running, &req.instance, own).await?;
        tracing::info!(agent = %name, gpus = caps.gpus.len(), running = running.len(), "agent registered");
        Ok(Response::new(pb::RegisterResponse {
            stop_jobs: stop.into_iter().map(|j| j.0).collect(),
            heartbeat_interval_ms: self.shared.config.heartbeat_interval.as_millis() as u64,
            lease_ttl_ms: self.shared.config.core.lease_ttl.as_millis() as u64,
            protocol_version: phasegate_proto::PROTOCOL_VERSION,
        }))
    }

    async fn heartbeat(&self, req: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let name = AgentName::parse("agent_name", &req.get_ref().agent_name).map_err(invalid)?;
        caller_is(&req, &name)?;
        let req = req.into_inner();
        let running = leases_from_wire(&req.running).map_err(invalid)?;
        let free: Vec<(u32, u64)> = req.gpus.iter().map(|g| (g.index, g.free_vram_mib)).collect();
        let outcome = self.shared.heartbeat(&name, &free, &running, req.draining, req.leaving).await;
        Ok(Response::new(pb::HeartbeatResponse {
            stop_jobs: outcome.stop.into_iter().map(|j| j.0).collect(),
            reregister: outcome.reregister,
        }))
    }

    async fn lease_job(&self, req: Request<pb::LeaseJobRequest>) -> Result<Response<pb::LeaseJobResponse>, Status> {
        let name = AgentName::parse("agent_name", &req.get_ref().agent_name).map_err(invalid)?;
        caller_is(&req, &name)?;
        let req = req.into_inner();
        let wait = Duration::from_millis(u64::from(req.wait_ms)).min(MAX_LEASE_WAIT);
        let assignment = self.shared.lease(&name, wait).await?;
        Ok(Response::new(pb::LeaseJobResponse { assignment }))
    }

    async fn start_job(&self, req: Request<pb::StartJobRequest>) -> Result<Response<pb::StartJobResponse>, Status> {
        let lease = lease_of(req.get_ref().lease.as_ref())?;
        self.shared.start(lease, caller(&req)?.as_ref()).await?;
        Ok(Response::new(pb::StartJobResponse {}))
    }

    type StreamEventsStream = Pin<Box<dyn Stream<Item = Result<pb::EventAck, Status>> + Send>>;

    async fn stream_events(
        &self,
        req: Request<Streaming<pb::EventBatch>>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let who = caller(&req)?;
        let mut inbound = req.into_inner();
        let shared = self.shared.clone();
        // One batch at a time: the next is read only after this one is durable and acknowledged,
        // so a slow store pushes back on the agent through HTTP/2 flow control.
        let out = async_stream_acks(move |tx| async move {
            while let Some(batch) = inbound.next().await {
                let batch = batch?;
                let lease = lease_of(batch.lease.as_ref())?;
                shared.events(lease, who.as_ref(), &batch).await?;
                if tx.send(Ok(pb::EventAck { job_id: lease.job.0, batch_seq: batch.batch_seq })).await.is_err() {
                    break;
                }
            }
            Ok(())
        });
        Ok(Response::new(out))
    }

    async fn upload_artifact(
        &self,
        req: Request<Streaming<pb::ArtifactChunk>>,
    ) -> Result<Response<pb::UploadArtifactResponse>, Status> {
        let shared = self.shared.clone();
        let limit = shared.config.artifact_limit_bytes;
        let who = caller(&req)?;
        let artifact = upload::receive(&self.shared, req.into_inner(), limit, |h| async move {
            let wire = pb::JobLease { job_id: h.job_id, epoch: h.epoch, token: h.lease_token.clone() };
            let lease = lease_of(Some(&wire))?;
            shared.check(lease, who.as_ref()).await?;
            Ok(h)
        })
        .await?;
        Ok(Response::new(pb::UploadArtifactResponse { artifact: Some(artifact) }))
    }

    type DownloadArtifactStream = ChunkStream;

    async fn download_artifact(
        &self,
        req: Request<pb::DownloadArtifactRequest>,
    ) -> Result<Response<Self::DownloadArtifactStream>, Status> {
        Ok(Response::new(upload::send(&self.shared.artifacts, &req.get_ref().sha256)?))
    }

    async fn complete_job(
        &self,
        req: Request<pb::CompleteJobRequest>,
    ) -> Result<Response<pb::CompleteJobResponse>, Status> {
        let who = caller(&req)?;
        let req = req.into_inner();
        let lease = lease_of(req.lease.as_ref())?;
        let success = req.success;
        self.shared.complete(lease, who.as_ref(), req).await?;
        tracing::info!(job = %lease.job, success, "job completed");
        Ok(Response::new(pb::CompleteJobResponse {}))
    }

    async fn release_job(
        &self,
        req: Request<pb::ReleaseJobRequest>,
    ) -> Result<Response<pb::ReleaseJobResponse>, Status> {
        let lease = lease_of(req.get_ref().lease.as_ref())?;
        let who = caller(&req)?;
        let reason = req.get_ref().reason.trim();
        if reason.len() > MAX_RELEASE_REASON_BYTES {
            return Err(invalid(format!(
                "reason: {} bytes exceeds the limit of {MAX_RELEASE_REASON_BYTES}",
                reason.len()
            )));
        }
        let reason = if reason.is_empty() { "given back by its agent" } else { reason };
        self.shared.release(lease, who.as_ref(), reason).await?;
        tracing::info!(job = %lease.job, reason, "job released; queued again");
        Ok(Response::new(pb::ReleaseJobResponse {}))
    }
}

/// Runs `body` with a sender and returns the receiving side as a response stream; an error returned
/// by `body` ends the stream with that status.
pub(crate) fn async_stream_acks<T, F, Fut>(body: F) -> Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: std::future::Future<Output = Result<(), Status>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let fut = body(tx.clone());
    tokio::spawn(async move {
        if let Err(status) = fut.await {
            let _ = tx.send(Err(status)).await;
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
