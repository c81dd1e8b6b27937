//! The agent-facing gRPC service.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use tonic::{Request, Response, Status, Streaming};

use phasegate_proto::domain::{AgentName, Lease, leases_from_wire};
use phasegate_proto::pb;
use phasegate_proto::pb::agent_service_server::AgentService;

use super::upload::{self, ChunkStream};
use crate::shell::Shared;
use crate::store::Store;

/// The longest a lease request may wait before answering "nothing".
const MAX_LEASE_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub(crate) struct AgentApi<S> {
    pub shared: Arc<Shared<S>>,
}

fn invalid(e: impl ToString) -> Status {
    Status::invalid_argument(e.to_string())
}

#[tonic::async_trait]
impl<S: Store> AgentService for AgentApi<S> {
    async fn register(&self, req: Request<pb::RegisterRequest>) -> Result<Response<pb::RegisterResponse>, Status> {
        let req = req.into_inner();
        let name = AgentName::parse("agent_name", &req.agent_name).map_err(invalid)?;
        let caps = req.capabilities.ok_or_else(|| invalid("capabilities: is required"))?;
        let running = leases_from_wire(&req.running).map_err(invalid)?;
        tracing::info!(agent = %name, gpus = caps.gpus.len(), running = running.len(), "agent registered");
        let stop = self.shared.register(name, caps, &running).await?;
        Ok(Response::new(pb::RegisterResponse {
            stop_jobs: stop.into_iter().map(|j| j.0).collect(),
            heartbeat_interval_ms: self.shared.config.heartbeat_interval.as_millis() as u64,
            lease_ttl_ms: self.shared.config.core.lease_ttl.as_millis() as u64,
        }))
    }

    async fn heartbeat(&self, req: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let req = req.into_inner();
        let name = AgentName::parse("agent_name", &req.agent_name).map_err(invalid)?;
        let running = leases_from_wire(&req.running).map_err(invalid)?;
        let free: Vec<(u32, u64)> = req.gpus.iter().map(|g| (g.index, g.free_vram_mib)).collect();
        let outcome = self.shared.heartbeat(&name, &free, &running).await;
        Ok(Response::new(pb::HeartbeatResponse {
            stop_jobs: outcome.stop.into_iter().map(|j| j.0).collect(),
            reregister: outcome.reregister,
        }))
    }

    async fn lease_job(&self, req: Request<pb::LeaseJobRequest>) -> Result<Response<pb::LeaseJobResponse>, Status> {
        let req = req.into_inner();
        let name = AgentName::parse("agent_name", &req.agent_name).map_err(invalid)?;
        let wait = Duration::from_millis(u64::from(req.wait_ms)).min(MAX_LEASE_WAIT);
        let assignment = self.shared.lease(&name, wait).await?;
        Ok(Response::new(pb::LeaseJobResponse { assignment }))
    }

    async fn start_job(&self, req: Request<pb::StartJobRequest>) -> Result<Response<pb::StartJobResponse>, Status> {
        let lease = Lease::try_from(req.get_ref().lease.as_ref()).map_err(invalid)?;
        self.shared.start(lease).await?;
        Ok(Response::new(pb::StartJobResponse {}))
    }

    type StreamEventsStream = Pin<Box<dyn Stream<Item = Result<pb::EventAck, Status>> + Send>>;

    async fn stream_events(
        &self,
        req: Request<Streaming<pb::EventBatch>>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let mut inbound = req.into_inner();
        let shared = self.shared.clone();
        // One batch at a time: the next is read only after this one is durable and acknowledged,
        // so a slow store pushes back on the agent through HTTP/2 flow control.
        let out = async_stream_acks(move |tx| async move {
            while let Some(batch) = inbound.next().await {
                let batch = batch?;
                let lease = Lease::try_from(batch.lease.as_ref()).map_err(invalid)?;
                shared.events(lease, &batch).await?;
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
        let artifact = upload::receive(&self.shared, req.into_inner(), limit, |h| async move {
            let lease = Lease::try_from(Some(&pb::JobLease { job_id: h.job_id, epoch: h.epoch })).map_err(invalid)?;
            shared.check(lease).await?;
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
        let req = req.into_inner();
        let lease = Lease::try_from(req.lease.as_ref()).map_err(invalid)?;
        tracing::info!(job = %lease.job, success = req.success, "job completed");
        self.shared.complete(lease, req).await?;
        Ok(Response::new(pb::CompleteJobResponse {}))
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
