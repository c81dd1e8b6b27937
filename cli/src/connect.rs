//! Finding the coordinator: `--access-file`, or `--coordinator` + `--token-file`, or the env vars
//! `PHASEGATE_COORDINATOR` and `PHASEGATE_TOKEN`.

use std::path::{Path, PathBuf};

use phasegate_coordinator::AccessFile;
use phasegate_proto::client::{ControlClient, channel, control_client};

use crate::exit::{Failure, Result};

#[derive(Debug, Clone, clap::Args)]
pub struct Endpoint {
    /// The coordinator's access file (written by `phasegate serve` in its data dir).
    #[arg(long, global = true, env = "PHASEGATE_ACCESS_FILE")]
    pub access_file: Option<PathBuf>,
    /// The coordinator's gRPC address, e.g. http://10.0.0.5:7070.
    #[arg(long, global = true, env = "PHASEGATE_COORDINATOR")]
    pub coordinator: Option<String>,
    /// A file holding the token (client token for the CLI, agent token for agents).
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// PEM CA certificate to trust when the coordinator uses TLS.
    #[arg(long, global = true)]
    pub ca_cert: Option<PathBuf>,
}

/// Which token of the access file to use.
#[derive(Debug, Clone, Copy)]
pub enum Role {
    Client,
    Agent,
}

impl Endpoint {
    /// The address and token, from the first source that is given.
    pub fn resolve(&self, role: Role) -> Result<(String, String)> {
        if let Some(path) = &self.access_file {
            let access = AccessFile::load(path).map_err(|e| Failure::usage(e.to_string()))?;
            let token = match role {
                Role::Client => access.client_token,
                Role::Agent => access.agent_token,
            };
            return Ok((self.coordinator.clone().unwrap_or(access.address), token));
        }
        let address = self.coordinator.clone().ok_or_else(|| {
            Failure::usage("no coordinator given")
                .with_hint("pass --access-file DATA_DIR/access.toml, or --coordinator URL with --token-file FILE")
        })?;
        let token = match &self.token_file {
            Some(path) => read_token(path)?,
            None => std::env::var("PHASEGATE_TOKEN").map_err(|_| {
                Failure::usage("no token given").with_hint("pass --token-file FILE or set PHASEGATE_TOKEN")
            })?,
        };
        Ok((address, token))
    }

    /// Whether a coordinator was named (flags or environment): commands that also work offline on a
    /// data dir then go through the coordinator instead.
    pub fn is_given(&self) -> bool {
        self.access_file.is_some() || self.coordinator.is_some()
    }

    pub fn control(&self) -> Result<ControlClient> {
        let (address, token) = self.resolve(Role::Client)?;
        let ch = channel(&address, self.ca_cert.as_deref()).map_err(|e| Failure::usage(e.to_string()))?;
        control_client(ch, &token).map_err(|e| Failure::usage(e.to_string()))
    }
}

pub fn read_token(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("failed to read token file {}: {e}", path.display())))?;
    let token = text.trim().to_owned();
    if token.is_empty() {
        return Err(Failure::usage(format!("token file {} is empty", path.display())));
    }
    Ok(token)
}
