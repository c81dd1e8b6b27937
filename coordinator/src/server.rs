//! Serving: the caller hands in bound listeners and a shutdown signal (tests bind `127.0.0.1:0`).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use phasegate_proto::MAX_MESSAGE_BYTES;
use phasegate_proto::pb::agent_service_server::AgentServiceServer;
use phasegate_proto::pb::control_service_server::ControlServiceServer;

use crate::artifacts::ArtifactStore;
use crate::auth::{AccessFile, AgentAuth, RequireToken};
use crate::data_dir::DataDirLock;
use crate::grpc::{AgentApi, ControlApi};
use crate::shell::{Shared, ShellConfig};
use crate::store::SqliteStore;

/// Everything `phasegate serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub shell: ShellConfig,
    /// PEM certificate and key; TLS is on when both are set.
    pub tls: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    DataDir(#[from] crate::data_dir::DataDirError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Access(#[from] crate::auth::AccessError),
    #[error(transparent)]
    Artifacts(#[from] crate::artifacts::ArtifactError),
    #[error("failed to read TLS file {path}: {source}")]
    Tls { path: PathBuf, source: std::io::Error },
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("failed to read the listener address: {0}")]
    Addr(std::io::Error),
    #[error(transparent)]
    Github(#[from] phasegate_github::SinkError),
}

/// Locks the data dir, opens it (database, artifacts, access file) and serves gRPC on `grpc` and
/// HTTP on `http` until `shutdown` resolves.
pub async fn run(
    config: ServeConfig,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let lock = DataDirLock::acquire(&config.data_dir)?;
    run_locked(lock, config, grpc, http, shutdown).await
}

/// [`run`] with the data dir's lock already taken (by a caller that must know it holds the dir
/// before it reads anything in it); the lock is held until serving ends.
pub async fn run_locked(
    lock: DataDirLock,
    config: ServeConfig,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let _lock = lock;
    let (shared, access) = open(&config, &grpc).await?;
    let grpc_addr = grpc.local_addr().map_err(ServeError::Addr)?;
    tracing::info!(grpc = %grpc_addr, data_dir = %config.data_dir.display(), "coordinator listening");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    let ticker = tokio::spawn(tick_loop(shared.clone(), stop_rx.clone()));
    let gates = tokio::spawn(coordinator_job_loop(shared.clone(), stop_rx.clone()));
    let retention =
        config.shell.retention.map(|policy| tokio::spawn(retention_loop(shared.clone(), policy, stop_rx.clone())));
    let github = match &config.shell.github {
        Some(setup) => {
            let sink = phasegate_github::OctocrabSink::from_config(&setup.config)?;
            let names: Vec<&str> = setup.config.experiments.iter().map(|e| e.name.as_str()).collect();
            let webhook = setup.config.webhook_secret.is_some();
            tracing::info!(api_url = %setup.config.api_url, experiments = ?names, webhook, "github reporting on");
            Some(crate::github::GithubService::new(shared.clone(), sink, setup))
        }
        None => None,
    };
    let deliveries = github.clone().map(|g| tokio::spawn(g.run(stop_rx.clone())));
    let limits = config.shell.http;
    let http_router = crate::http::with_github(crate::http::router(shared.clone()), github.as_ref(), &limits);
    let http_task = tokio::spawn(crate::http_serve::serve(http, http_router, limits, stop_rx.clone()));

    let agent = AgentServiceServer::new(AgentApi { shared: shared.clone() })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let control = ControlServiceServer::new(ControlApi { shared: shared.clone() })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let shared_token = config.shell.shared_agent_token.then_some(access.agent_token.as_str());
    let agent = tonic::service::interceptor::InterceptedService::new(
        agent,
        AgentAuth::new(shared_token, shared.credentials.clone()),
    );
    let control = tonic::service::interceptor::InterceptedService::new(
        control,
        RequireToken::new(&access.client_token, "client"),
    );

    let mut builder = Server::builder().http2_keepalive_interval(Some(Duration::from_secs(20)));
    if let Some((cert, key)) = &config.tls {
        let read = |p: &PathBuf| std::fs::read(p).map_err(|source| ServeError::Tls { path: p.clone(), source });
        builder = builder.tls_config(ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?)))?;
    }
    let mut grpc_stop = stop_rx;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc);
    builder
        .add_service(agent)
        .add_service(control)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = grpc_stop.wait_for(|s| *s).await;
        })
        .await?;
    ticker.abort();
    gates.abort();
    if let Some(r) = retention {
        r.abort();
    }
    if let Some(d) = deliveries {
        d.abort();
    }
    let _ = http_task.await;
    Ok(())
}

async fn open(config: &ServeConfig, grpc: &TcpListener) -> Result<(Arc<Shared<SqliteStore>>, AccessFile), ServeError> {
    let dir = &config.data_dir;
    let addr = grpc.local_addr().map_err(ServeError::Addr)?;
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    let access = AccessFile::load_or_create(&dir.join("access.toml"), &format!("{scheme}://{addr}"))?;
    let store = SqliteStore::open(&dir.join("phasegate.db")).await?;
    let artifacts = ArtifactStore::open(dir.join("artifacts"))?;
    let shared = Shared::restore(store, artifacts, config.shell.clone()).await?;
    Ok((shared, access))
}

async fn tick_loop<S: crate::store::Store>(shared: Arc<Shared<S>>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(Duration::from_millis(500));
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = interval.tick() => {
                if let Err(e) = shared.tick().await {
                    tracing::warn!(error = %e, "lease expiry pass failed");
                }
                ticks += 1;
                // "Last used" of credentials is informational: written every ten seconds.
                if ticks.is_multiple_of(20) && let Err(e) = shared.flush_credential_use().await {
                    tracing::warn!(error = %e, "recording agent credential use failed");
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// Runs the coordinator's own jobs (the gate) as they become ready; the first pass picks up jobs
/// restored after a restart.
async fn coordinator_job_loop<S: crate::store::Store>(
    shared: Arc<Shared<S>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        shared.run_coordinator_jobs().await;
        tokio::select! {
            _ = shared.coordinator_work.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

/// How often the coordinator applies its retention policy by itself.
const RETENTION_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);
/// The first pass waits this long, so a restart does not start with a gc.
const RETENTION_FIRST_DELAY: Duration = Duration::from_secs(10 * 60);

/// Applies `policy` once a day (`serve --retention`); a failed pass is logged and retried the next day.
async fn retention_loop<S: crate::store::Store>(
    shared: Arc<Shared<S>>,
    policy: crate::RetentionPolicy,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let start = tokio::time::Instant::now() + RETENTION_FIRST_DELAY;
    let mut interval = tokio::time::interval_at(start, RETENTION_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                let now = crate::shell::now_ms() as i64;
                if let Err(e) = shared.collect_garbage(policy, false, now).await {
                    tracing::warn!(error = %e.message(), "daily retention pass failed");
                }
            }
            _ = stop.changed() => return,
        }
    }
}
