//! `phasegate agent`: SIGTERM or SIGINT drains it (see `--drain-timeout`); a second one stops its
//! jobs at once and gives them back.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use phasegate_agent::StopRequest;
use phasegate_agent::caps::NvmlProbe;

use super::stop_signals;
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
        drain_timeout: args.drain_timeout,
    };
    // The first signal drains, a later one stops the jobs now (and gives them back).
    let mut asked = 0u32;
    let requests = stop_signals().map(move |()| {
        asked += 1;
        if asked == 1 { StopRequest::Drain } else { StopRequest::Now }
    });
    phasegate_agent::run_until(config, Arc::new(NvmlProbe::new()), requests)
        .await
        .map_err(|e| Failure::infra(e.to_string()))?;
    Ok(Code::Success)
}

fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "agent".into());
    let name: String = raw.trim().chars().filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c)).collect();
    if name.is_empty() { "agent".into() } else { name }
}
