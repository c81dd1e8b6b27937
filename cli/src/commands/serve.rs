//! `phasegate serve` and `phasegate up`.

use std::sync::Arc;

use tokio::net::TcpListener;

use phasegate_coordinator::{AccessFile, CoreConfigPublic, ServeConfig, ShellConfig};

use super::shutdown_signal;
use crate::cli::{ServeArgs, UpArgs};
use crate::exit::{Code, Failure, Result};

fn serve_config(args: &ServeArgs) -> ServeConfig {
    ServeConfig {
        data_dir: args.data_dir.clone(),
        shell: ShellConfig {
            core: CoreConfigPublic { lease_ttl: args.lease_ttl, max_attempts: args.max_attempts },
            heartbeat_interval: args.heartbeat,
            ..ShellConfig::default()
        },
        tls: args.tls_cert.clone().zip(args.tls_key.clone()),
    }
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

pub async fn serve(args: ServeArgs) -> Result<Code> {
    let (grpc, http) = bind(&args).await?;
    phasegate_coordinator::run(serve_config(&args), grpc, http, shutdown_signal())
        .await
        .map_err(|e| Failure::infra(e.to_string()))?;
    Ok(Code::Success)
}

/// A coordinator and one local agent in one process.
pub async fn up(args: UpArgs) -> Result<Code> {
    let (grpc, http) = bind(&args.serve).await?;
    let config = serve_config(&args.serve);
    let data_dir = config.data_dir.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(phasegate_coordinator::run(config, grpc, http, async move {
        let _ = server_stop.wait_for(|s| *s).await;
    }));
    // The coordinator writes the access file before it serves; wait for it.
    let access_path = data_dir.join("access.toml");
    let access = loop {
        if let Ok(a) = AccessFile::load(&access_path) {
            break a;
        }
        if server.is_finished() {
            let err = server.await.map_err(|e| Failure::infra(e.to_string()))?.err();
            return Err(Failure::infra(err.map(|e| e.to_string()).unwrap_or_else(|| "coordinator stopped".into())));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    eprintln!("phasegate up: coordinator at {} (data dir {})", access.address, data_dir.display());
    eprintln!("phasegate up: clients use --access-file {}", access_path.display());
    let agent = phasegate_agent::AgentConfig {
        coordinator: access.address.clone(),
        token: access.agent_token.clone(),
        ca_pem: None,
        name: args.agent_name,
        labels: args.labels,
        work_dir: data_dir.join("agent"),
        max_jobs: args.max_jobs,
        python_packages: None,
        grace: std::time::Duration::from_secs(10),
        lease_wait: std::time::Duration::from_secs(20),
    };
    let probe = Arc::new(phasegate_agent::caps::NvmlProbe::new());
    let mut agent_stop = stop_rx;
    let agent_task = tokio::spawn(phasegate_agent::run(agent, probe, async move {
        let _ = agent_stop.wait_for(|s| *s).await;
    }));
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    let _ = agent_task.await;
    server.await.map_err(|e| Failure::infra(e.to_string()))?.map_err(|e| Failure::infra(e.to_string()))?;
    Ok(Code::Success)
}
