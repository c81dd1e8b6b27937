//! Resource fit: which agent and GPU can take a job.
//!
//! Free VRAM is the agent's last reported free memory minus what phasegate already promised to the
//! jobs it placed on that GPU. A job that has already allocated its memory is then counted twice;
//! that is deliberate: placement may under-use a GPU but never overcommits one.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use phasegate_proto::domain::{AgentCaps, AgentName, Requirements};

/// The GPU a job would get on an agent, `Some(None)` for a CPU-only job, `None` when it does not fit now.
pub(crate) fn fit_now(req: &Requirements, caps: &AgentCaps, promised: &[u64]) -> Option<Option<u32>> {
    if !req.labels.is_subset(&caps.labels) {
        return None;
    }
    if !req.gpu {
        return Some(None);
    }
    caps.gpus
        .iter()
        .enumerate()
        .filter(|(i, g)| g.free_vram_mib.saturating_sub(promised.get(*i).copied().unwrap_or(0)) >= req.vram_mib)
        // Best fit: the GPU with the least room that still fits, so big GPUs stay free for big jobs.
        .min_by_key(|(i, g)| g.free_vram_mib.saturating_sub(promised.get(*i).copied().unwrap_or(0)))
        .map(|(_, g)| Some(g.index))
}

/// Whether the job could ever run on this agent (labels and total VRAM).
pub(crate) fn could_ever_fit(req: &Requirements, caps: &AgentCaps) -> bool {
    req.labels.is_subset(&caps.labels) && (!req.gpu || caps.gpus.iter().any(|g| g.total_vram_mib >= req.vram_mib))
}

/// When no registered agent could ever run a job with these requirements, the message that says so,
/// listing every agent and its capacity.
pub(crate) fn unplaceable<'a>(
    req: &Requirements,
    agents: impl Iterator<Item = (&'a AgentName, &'a AgentCaps)>,
) -> Option<String> {
    let agents: Vec<_> = agents.collect();
    if agents.iter().any(|(_, caps)| could_ever_fit(req, caps)) {
        return None;
    }
    let mut msg = format!("no registered agent can ever run a job needing {}", describe(req));
    if agents.is_empty() {
        msg.push_str("; no agent is registered");
    }
    for (name, caps) in agents {
        let _ = write!(msg, "\n  agent {name}: {}", capacity(caps));
    }
    Some(msg)
}

fn describe(req: &Requirements) -> String {
    let mut s = if req.gpu { format!("a GPU with {} MiB of VRAM", req.vram_mib) } else { "no GPU".to_owned() };
    if !req.labels.is_empty() {
        let _ = write!(s, " and labels [{}]", join(&req.labels));
    }
    s
}

fn capacity(caps: &AgentCaps) -> String {
    let gpus = if caps.gpus.is_empty() {
        "no GPU".to_owned()
    } else {
        caps.gpus
            .iter()
            .map(|g| format!("GPU {} {} ({} MiB total)", g.index, g.name, g.total_vram_mib))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("{gpus}; labels [{}]", join(&caps.labels))
}

fn join(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use phasegate_proto::domain::GpuInfo;

    use super::*;

    fn caps(total: u64, free: u64, labels: &[&str]) -> AgentCaps {
        AgentCaps {
            gpus: vec![GpuInfo { index: 0, name: "RTX 3050".into(), total_vram_mib: total, free_vram_mib: free }],
            labels: labels.iter().map(|s| s.to_string()).collect(),
            max_jobs: 1,
        }
    }

    fn req(gpu: bool, vram: u64, labels: &[&str]) -> Requirements {
        Requirements { gpu, vram_mib: vram, labels: labels.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn fit_counts_promised_vram() {
        let c = caps(4096, 4000, &[]);
        assert_eq!(fit_now(&req(true, 2500, &[]), &c, &[0]), Some(Some(0)));
        assert_eq!(fit_now(&req(true, 2500, &[]), &c, &[2000]), None);
    }

    #[test]
    fn labels_must_be_advertised() {
        let c = caps(4096, 4096, &["cuda"]);
        assert!(fit_now(&req(false, 0, &["cuda"]), &c, &[]).is_some());
        assert!(fit_now(&req(false, 0, &["tpu"]), &c, &[]).is_none());
    }

    #[test]
    fn unplaceable_lists_every_agent() {
        let a = AgentName::parse("f", "small").unwrap();
        let b = AgentName::parse("f", "cpu").unwrap();
        let ca = caps(4096, 4096, &[]);
        let cb = AgentCaps { gpus: vec![], labels: BTreeSet::new(), max_jobs: 2 };
        let msg = unplaceable(&req(true, 8000, &[]), [(&a, &ca), (&b, &cb)].into_iter()).unwrap();
        assert!(msg.contains("8000 MiB"), "{msg}");
        assert!(msg.contains("agent small: GPU 0 RTX 3050 (4096 MiB total)"), "{msg}");
        assert!(msg.contains("agent cpu: no GPU"), "{msg}");
        assert!(unplaceable(&req(true, 4000, &[]), [(&a, &ca)].into_iter()).is_none());
    }
}
