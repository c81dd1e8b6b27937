//! Validated domain types shared by the coordinator, the agent and the CLI, and their conversion
//! from the wire types. Every `TryFrom` names the offending field in its error.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crate::pb;

pub use crate::lease_token::{LEASE_TOKEN_BYTES, LeaseToken};

/// A wire message that could not become a domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid field `{field}`: {reason}")]
pub struct WireError {
    pub field: &'static str,
    pub reason: String,
}

impl WireError {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self { field, reason: reason.into() }
    }
}

macro_rules! id_type {
    ($name:ident, $prefix:literal) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl $name {
            /// Converts a wire id, rejecting 0 (the proto3 default, i.e. "not set").
            pub fn from_wire(field: &'static str, raw: u64) -> Result<Self, WireError> {
                if raw == 0 {
                    return Err(WireError::new(field, concat!($prefix, " id must be set")));
                }
                Ok(Self(raw))
            }
        }
    };
}

id_type!(RunId, "run");
id_type!(JobId, "job");

/// The fencing token of a lease: it grows every time a job is leased.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An agent's identity: stable across restarts so it can re-attach.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgentName(String);

impl AgentName {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, WireError> {
        let ok =
            !raw.is_empty() && raw.len() <= 64 && raw.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !ok {
            return Err(WireError::new(
                field,
                format!("{} must be 1-64 characters of letters, digits, '.', '_' or '-'", crate::redact::shown(raw)),
            ));
        }
        // A pasted token would be shown in every agent list and log line.
        if crate::redact::looks_secret(raw) {
            return Err(WireError::new(
                field,
                format!("{} is not an agent name (a token in the wrong place?)", crate::redact::shown(raw)),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Scheduling priority; `Pr` runs before `Nightly` before `Manual`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Pr,
    Nightly,
    Manual,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pr => "pr",
            Self::Nightly => "nightly",
            Self::Manual => "manual",
        }
    }
}

impl FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pr" => Ok(Self::Pr),
            "nightly" => Ok(Self::Nightly),
            "manual" => Ok(Self::Manual),
            other => Err(format!("unknown priority {other:?} (expected pr, nightly or manual)")),
        }
    }
}

/// A stage of a run. Stages form a small DAG: each depends on the ones before it in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    Lint,
    Finetune,
    Eval,
    Score,
    Gate,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lint => "lint",
            Self::Finetune => "finetune",
            Self::Eval => "eval",
            Self::Score => "score",
            Self::Gate => "gate",
        }
    }

    /// Stages executed by the coordinator itself rather than leased to an agent.
    pub fn runs_on_coordinator(self) -> bool {
        matches!(self, Self::Gate)
    }
}

impl FromStr for Stage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lint" => Ok(Self::Lint),
            "finetune" => Ok(Self::Finetune),
            "eval" => Ok(Self::Eval),
            "score" => Ok(Self::Score),
            "gate" => Ok(Self::Gate),
            other => Err(format!("unknown stage {other:?}")),
        }
    }
}

macro_rules! state_enum {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(format!(concat!("unknown ", stringify!($name), " {:?}"), other)),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

state_enum!(JobState {
    Queued => "queued",
    Leased => "leased",
    Running => "running",
    Succeeded => "succeeded",
    Failed => "failed",
    Cancelled => "cancelled",
});

impl JobState {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    /// A job holding a lease (and therefore an epoch an agent may report with).
    pub fn is_leased(self) -> bool {
        matches!(self, Self::Leased | Self::Running)
    }
}

state_enum!(RunState {
    Queued => "queued",
    Running => "running",
    Succeeded => "succeeded",
    Failed => "failed",
    Cancelled => "cancelled",
});

impl RunState {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// What a job needs from the agent that runs it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    #[serde(default)]
    pub gpu: bool,
    #[serde(default)]
    pub vram_mib: u64,
    #[serde(default)]
    pub labels: BTreeSet<String>,
}

impl From<&Requirements> for pb::Requirements {
    fn from(r: &Requirements) -> Self {
        Self { gpu: r.gpu, vram_mib: r.vram_mib, labels: r.labels.iter().cloned().collect() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    pub index: u32,
    pub name: String,
    pub total_vram_mib: u64,
    pub free_vram_mib: u64,
}

/// An agent's capabilities as the scheduler sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCaps {
    pub gpus: Vec<GpuInfo>,
    pub labels: BTreeSet<String>,
    pub max_jobs: u32,
}

impl TryFrom<&pb::Capabilities> for AgentCaps {
    type Error = WireError;

    fn try_from(c: &pb::Capabilities) -> Result<Self, WireError> {
        let mut gpus = Vec::with_capacity(c.gpus.len());
        for g in &c.gpus {
            if g.free_vram_mib > g.total_vram_mib {
                return Err(WireError::new(
                    "capabilities.gpus.free_vram_mib",
                    format!("gpu {} reports {} MiB free of {} MiB", g.index, g.free_vram_mib, g.total_vram_mib),
                ));
            }
            gpus.push(GpuInfo {
                index: g.index,
                name: g.name.clone(),
                total_vram_mib: g.total_vram_mib,
                free_vram_mib: g.free_vram_mib,
            });
        }
        for l in &c.labels {
            if l.is_empty() || l.len() > 64 {
                return Err(WireError::new("capabilities.labels", format!("label {l:?} must be 1-64 characters")));
            }
        }
        if c.max_jobs == 0 {
            return Err(WireError::new("capabilities.max_jobs", "must be at least 1"));
        }
        Ok(Self { gpus, labels: c.labels.iter().cloned().collect(), max_jobs: c.max_jobs })
    }
}

/// A job lease as reported by an agent: which lease (job, epoch) and the proof of holding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub job: JobId,
    pub epoch: Epoch,
    pub token: LeaseToken,
}

impl TryFrom<Option<&pb::JobLease>> for Lease {
    type Error = WireError;

    fn try_from(l: Option<&pb::JobLease>) -> Result<Self, WireError> {
        let l = l.ok_or_else(|| WireError::new("lease", "is required"))?;
        Ok(Self {
            job: JobId::from_wire("lease.job_id", l.job_id)?,
            epoch: Epoch(l.epoch),
            token: LeaseToken::parse("lease.token", &l.token)?,
        })
    }
}

impl From<Lease> for pb::JobLease {
    fn from(l: Lease) -> Self {
        Self { job_id: l.job.0, epoch: l.epoch.0, token: l.token.to_hex() }
    }
}

impl Lease {
    /// The lease an assignment hands out.
    pub fn of_assignment(a: &pb::Assignment) -> Result<Self, WireError> {
        Ok(Self {
            job: JobId::from_wire("assignment.job_id", a.job_id)?,
            epoch: Epoch(a.epoch),
            token: LeaseToken::parse("assignment.lease_token", &a.lease_token)?,
        })
    }
}

/// Parses a list of wire leases.
pub fn leases_from_wire(list: &[pb::JobLease]) -> Result<Vec<Lease>, WireError> {
    list.iter().map(|l| Lease::try_from(Some(l))).collect()
}

/// Where a run came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trigger {
    pub pr: Option<u64>,
    pub sha: String,
    pub branch: String,
    pub repo: String,
}

impl TryFrom<Option<&pb::Trigger>> for Trigger {
    type Error = WireError;

    fn try_from(t: Option<&pb::Trigger>) -> Result<Self, WireError> {
        let Some(t) = t else {
            return Ok(Self::default());
        };
        let sha_ok = (7..=64).contains(&t.sha.len()) && t.sha.chars().all(|c| c.is_ascii_hexdigit());
        if !t.sha.is_empty() && !sha_ok {
            return Err(WireError::new("trigger.sha", format!("{:?} is not a hexadecimal commit sha", t.sha)));
        }
        if !t.repo.is_empty() && t.repo.split('/').filter(|p| !p.is_empty()).count() != 2 {
            return Err(WireError::new("trigger.repo", format!("{:?} is not of the form owner/name", t.repo)));
        }
        if t.pr == Some(0) {
            return Err(WireError::new("trigger.pr", "pull request number must be positive"));
        }
        Ok(Self { pr: t.pr, sha: t.sha.clone(), branch: t.branch.clone(), repo: t.repo.clone() })
    }
}

impl From<&Trigger> for pb::Trigger {
    fn from(t: &Trigger) -> Self {
        Self { pr: t.pr, sha: t.sha.clone(), branch: t.branch.clone(), repo: t.repo.clone() }
    }
}

/// Checks a sha256 digest given in hex.
pub fn parse_sha256(field: &'static str, raw: &str) -> Result<String, WireError> {
    if raw.len() == 64 && raw.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()) {
        Ok(raw.to_owned())
    } else {
        Err(WireError::new(field, format!("{raw:?} is not a lowercase hex sha256 digest")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_orders_pr_first() {
        let mut v = vec![Priority::Manual, Priority::Pr, Priority::Nightly];
        v.sort();
        assert_eq!(v, [Priority::Pr, Priority::Nightly, Priority::Manual]);
    }

    #[test]
    fn agent_name_rejects_spaces_and_empty() {
        assert!(AgentName::parse("agent_name", "gpu-box_1.lab").is_ok());
        let err = AgentName::parse("agent_name", "a b").unwrap_err();
        assert_eq!(err.field, "agent_name");
        assert!(AgentName::parse("agent_name", "").is_err());
    }

    #[test]
    fn a_token_pasted_as_an_agent_name_is_refused_without_being_shown() {
        let token = "0123456789abcdef".repeat(4);
        let err = AgentName::parse("agent_name", &token).unwrap_err().to_string();
        assert!(err.contains("not an agent name"), "{err}");
        assert!(!err.contains("0123456789ab"), "{err}");
        let err = AgentName::parse("agent_name", &format!("{token} x")).unwrap_err().to_string();
        assert!(!err.contains("0123456789ab"), "{err}");
    }

    #[test]
    fn lease_requires_job_id() {
        let err = Lease::try_from(Some(&pb::JobLease { job_id: 0, epoch: 3, ..Default::default() })).unwrap_err();
        assert_eq!(err.field, "lease.job_id");
        let err = Lease::try_from(Some(&pb::JobLease { job_id: 1, epoch: 3, token: String::new() })).unwrap_err();
        assert_eq!(err.field, "lease.token");
        assert_eq!(Lease::try_from(None).unwrap_err().field, "lease");
    }

    #[test]
    fn capabilities_reject_more_free_than_total() {
        let caps = pb::Capabilities {
            max_jobs: 1,
            gpus: vec![pb::Gpu { index: 0, total_vram_mib: 4096, free_vram_mib: 5000, ..Default::default() }],
            ..Default::default()
        };
        assert_eq!(AgentCaps::try_from(&caps).unwrap_err().field, "capabilities.gpus.free_vram_mib");
    }

    #[test]
    fn trigger_validates_sha_and_repo() {
        let t = pb::Trigger { sha: "xyz".into(), ..Default::default() };
        assert_eq!(Trigger::try_from(Some(&t)).unwrap_err().field, "trigger.sha");
        let t = pb::Trigger { repo: "just-a-name".into(), ..Default::default() };
        assert_eq!(Trigger::try_from(Some(&t)).unwrap_err().field, "trigger.repo");
        let t = pb::Trigger { pr: Some(4), sha: "abcdef1".into(), branch: "b".into(), repo: "o/r".into() };
        assert_eq!(Trigger::try_from(Some(&t)).unwrap().pr, Some(4));
    }
}
