//! The phasegate coordinator: scheduling core, store, artifact store and gRPC/HTTP services.
//!
//! It owns the durable state of runs, jobs, agents, logs and artifacts, and decides which agent runs
//! what. It does not run jobs (agents do) and does not judge results (`gate-rules` does): its
//! gate stage and [`history`] read the phase history, call `gate-rules`, then store the verdict.

mod artifacts;
mod auth;
mod credentials;
mod data_dir;
mod gate_stage;
pub mod github;
mod grpc;
pub mod history;
mod http;
mod http_serve;
mod metrics;
pub mod rescore;
mod retention;
mod scheduler;
mod server;
mod shell;
mod stage_cache;
mod store;
mod writer;

pub use auth::{AccessError, AccessFile};
pub use data_dir::{DataDirError, DataDirLock, LOCK_FILE as DATA_DIR_LOCK_FILE, create_private_dir};
pub use http_serve::HttpLimits;
pub use retention::{DEFAULT_KEEP_RUNS, DEFAULT_OLDER_THAN_MS, RetentionPolicy};
pub use server::{ServeConfig, ServeError, run, run_locked};
pub use shell::{CoreConfigPublic, ShellConfig};
