//! `phasegate agent`.

use std::sync::Arc;
use std::time::Duration;

use phasegate_agent::caps::NvmlProbe;

use super::shutdown_signal;
use crate::cli::AgentArgs;
use crate::connect::{Endpoint, Role};
use crate::exit::{Code, Failure, Result};

pub async fn agent(args: AgentArgs, endpoint: &Endpoint) -> Result<Code> {
    let (coordinator, token) = endpoint.resolve(Role::Agent)?;
    let name = match args.name {
        Some(n) => n,
        None => hostname(),
    };
    let config = phasegate_agent::AgentConfig {
        coordinator,
        token,
        ca_pem: endpoint.ca_cert.clone(),
        name,
        labels: args.labels,
        work_dir: args.work_dir,
        max_jobs: args.max_jobs,
        python_packages: args.python_packages,
        grace: args.grace,
        lease_wait: Duration::from_secs(20),
        model_cache: args.models.dir(),
        keep_job_dirs: args.keep_job_dirs,
    };
    phasegate_agent::run(config, Arc::new(NvmlProbe::new()), shutdown_signal())
        .await
        .map_err(|e| Failure::infra(e.to_string()))?;
    Ok(Code::Success)
}

fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "agent".into());
    let name: String = raw.trim().chars().filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c)).collect();
    if name.is_empty() { "agent".into() } else { name }
}
