//! `phasegate serve` and `phasegate up`.

use std::sync::Arc;

use tokio::net::TcpListener;

use phasegate_coordinator::{AccessFile, CoreConfigPublic, DataDirLock, RetentionPolicy, ServeConfig, ShellConfig};

use super::shutdown_signal;
use crate::cli::{ServeArgs, UpArgs};
use crate::exit::{Code, Failure, Result};

fn serve_config(args: &ServeArgs) -> ServeConfig {
    ServeConfig {
        data_dir: args.data_dir.clone(),
        shell: ShellConfig {
            core: CoreConfigPublic { lease_ttl: args.lease_ttl, max_attempts: args.max_attempts },
            heartbeat_interval: args.heartbeat,
            shared_agent_token: !args.no_shared_agent_token,
            retention: retention(args),
            ..ShellConfig::default()
        },
        tls: args.tls_cert.clone().zip(args.tls_key.clone()),
    }
}

/// The daily retention policy: on with `--retention` or either of its settings.
fn retention(args: &ServeArgs) -> Option<RetentionPolicy> {
    let on = args.retention || args.retention_keep_runs.is_some() || args.retention_older_than.is_some();
    let defaults = RetentionPolicy::default();
    on.then(|| RetentionPolicy {
        keep_runs: args.retention_keep_runs.unwrap_or(defaults.keep_runs),
        older_than_ms: args.retention_older_than.map_or(defaults.older_than_ms, |d| d.as_millis() as u64),
    })
}

/// [`serve_config`] with the `[github]` section of `--config`, when one is given.
fn configured(args: &ServeArgs) -> Result<ServeConfig> {
    let mut config = serve_config(args);
    if let Some(path) = &args.config {
        let github = phasegate_coordinator::github::load_config(path).map_err(|e| Failure::usage(e.to_string()))?;
        config.shell.github = github.map(phasegate_coordinator::github::GithubSetup::new);
    }
    Ok(config)
}

async fn bind(args: &ServeArgs) -> Result<(TcpListener, TcpListener)> {
    let grpc = TcpListener::bind(args.listen)
        .await
        .map_err(|e| Failure::infra(format!("failed to listen on {}: {e}", args.listen)))?;
    let http = TcpListener::bind(args.http)
        .await
        .map_err(|e| Failure::infra(format!("failed to listen on {}: {e}", args.http)))?;
    Ok((grpc, http))
}

/// Takes the data dir's lock: a second coordinator on the same dir is refused before it touches
/// anything there.
pub fn lock_data_dir(dir: &std::path::Path) -> Result<DataDirLock> {
    DataDirLock::acquire(dir).map_err(|e| {
        let in_use = matches!(e, phasegate_coordinator::DataDirError::InUse { .. });
        let failure = Failure::infra(e.to_string());
        if in_use { failure.with_hint("stop that coordinator first, or pass another --data-dir") } else { failure }
    })
}

pub async fn serve(args: ServeArgs) -> Result<Code> {
    let config = configured(&args)?;
    let lock = lock_data_dir(&config.data_dir)?;
    let (grpc, http) = bind(&args).await?;
    phasegate_coordinator::run_locked(lock, config, grpc, http, shutdown_signal())
        .await
        .map_err(|e| Failure::infra(e.to_string()))?;
    Ok(Code::Success)
}

/// A coordinator and one agent running in this process.
pub struct LocalCluster {
    pub access: AccessFile,
    pub access_path: std::path::PathBuf,
    stop: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::result::Result<(), phasegate_coordinator::ServeError>>,
    agent: tokio::task::JoinHandle<std::result::Result<(), phasegate_agent::AgentError>>,
}

impl std::fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCluster").field("access_path", &self.access_path).finish_non_exhaustive()
    }
}

/// Starts a coordinator on the given listeners, holding `lock` on its data dir, and one agent
/// connected to it.
#[expect(clippy::too_many_arguments, reason = "the settings of two components started together")]
pub async fn start_local(
    lock: DataDirLock,
    config: ServeConfig,
    grpc: TcpListener,
    http: TcpListener,
    agent_name: String,
    labels: Vec<String>,
    max_jobs: u32,
    model_cache: std::path::PathBuf,
) -> Result<LocalCluster> {
    let data_dir = config.data_dir.clone();
    let mut config = config;
    // The gate re-scores baselines with the dictionary the local agent scores with.
    config.shell.model_cache.get_or_insert_with(|| model_cache.clone());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut server_stop = stop_rx.clone();
    let listening =
        grpc.local_addr().map_err(|e| Failure::infra(format!("failed to read the listener address: {e}")))?;
    let server = tokio::spawn(phasegate_coordinator::run_locked(lock, config, grpc, http, async move {
        let _ = server_stop.wait_for(|s| *s).await;
    }));
    // The coordinator writes the access file before it serves; wait for it (a file left by an
    // earlier coordinator on this dir names another address).
    let access_path = data_dir.join("access.toml");
    let access = loop {
        if let Ok(a) = AccessFile::load(&access_path)
            && a.address.ends_with(&format!("://{listening}"))
        {
            break a;
        }
        if server.is_finished() {
            let err = server.await.map_err(|e| Failure::infra(e.to_string()))?.err();
            return Err(Failure::infra(err.map(|e| e.to_string()).unwrap_or_else(|| "coordinator stopped".into())));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let agent = phasegate_agent::AgentConfig {
        coordinator: access.address.clone(),
        token: access.agent_token.clone(),
        ca_pem: None,
        name: agent_name,
        labels,
        work_dir: data_dir.join("agent"),
        max_jobs,
        python_packages: None,
        grace: std::time::Duration::from_secs(10),
        lease_wait: std::time::Duration::from_secs(20),
        model_cache,
        keep_job_dirs: phasegate_agent::DEFAULT_KEEP_JOB_DIRS,
        drain_timeout: phasegate_agent::DEFAULT_DRAIN_TIMEOUT,
    };
    let probe = Arc::new(phasegate_agent::caps::NvmlProbe::new());
    let mut agent_stop = stop_rx;
    let agent = tokio::spawn(phasegate_agent::run(agent, probe, async move {
        let _ = agent_stop.wait_for(|s| *s).await;
    }));
    let cluster = LocalCluster { access, access_path, stop, server, agent };
    cluster.wait_for_agent().await?;
    Ok(cluster)
}

impl LocalCluster {
    /// Waits until the local agent is registered, so a run submitted next can be placed.
    async fn wait_for_agent(&self) -> Result<()> {
        let ch =
            phasegate_proto::client::channel(&self.access.address, None).map_err(|e| Failure::infra(e.to_string()))?;
        let mut client = phasegate_proto::client::control_client(ch, &self.access.client_token)
            .map_err(|e| Failure::infra(e.to_string()))?;
        for _ in 0..200 {
            let req = phasegate_proto::pb::ListAgentsRequest {};
            if let Ok(resp) = client.list_agents(req).await
                && resp.into_inner().agents.iter().any(|a| a.online)
            {
                return Ok(());
            }
            if self.agent.is_finished() {
                return Err(Failure::infra("the local agent stopped before registering"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Err(Failure::infra("the local agent did not register within 10 s"))
    }

    /// Stops the agent (and its jobs) and the coordinator.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.stop.send(true);
        let _ = self.agent.await;
        self.server.await.map_err(|e| Failure::infra(e.to_string()))?.map_err(|e| Failure::infra(e.to_string()))
    }
}

/// A coordinator and one local agent in one process.
pub async fn up(args: UpArgs) -> Result<Code> {
    let config = configured(&args.serve)?;
    let lock = lock_data_dir(&config.data_dir)?;
    let (grpc, http) = bind(&args.serve).await?;
    let data_dir = config.data_dir.clone();
    let cluster =
        start_local(lock, config, grpc, http, args.agent_name, args.labels, args.max_jobs, args.models.dir()).await?;
    eprintln!("phasegate up: coordinator at {} (data dir {})", cluster.access.address, data_dir.display());
    eprintln!("phasegate up: clients use --access-file {}", cluster.access_path.display());
    shutdown_signal().await;
    cluster.shutdown().await?;
    Ok(Code::Success)
}
