//! Client-side connection helpers shared by the agent and the CLI.

use std::fmt;
use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

use crate::MAX_MESSAGE_BYTES;
use crate::pb::agent_service_client::AgentServiceClient;
use crate::pb::control_service_client::ControlServiceClient;

/// Adds `authorization: Bearer <token>` (and, for an agent, `phasegate-agent: NAME`) to every
/// request. Never prints the token.
#[derive(Clone)]
pub struct BearerToken(MetadataValue<tonic::metadata::Ascii>, Option<MetadataValue<tonic::metadata::Ascii>>);

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl BearerToken {
    pub fn new(token: &str) -> Result<Self, ConnectError> {
        let value = format!("Bearer {}", token.trim()).parse().map_err(|_| ConnectError::BadToken)?;
        Ok(Self(value, None))
    }

    /// Also names the agent in the `phasegate-agent` header.
    pub fn for_agent(token: &str, agent: &str) -> Result<Self, ConnectError> {
        let name = agent.parse().map_err(|_| ConnectError::BadAgentName { name: agent.to_owned() })?;
        Ok(Self(Self::new(token)?.0, Some(name)))
    }
}

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        if let Some(agent) = &self.1 {
            request.metadata_mut().insert(AGENT_HEADER, agent.clone());
        }
        Ok(request)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid coordinator address {address:?}: {message}")]
    Address { address: String, message: String },
    #[error("the token contains characters that cannot be sent in a header")]
    BadToken,
    #[error("agent name {name:?} cannot be sent in a header")]
    BadAgentName { name: String },
    #[error("failed to read the CA certificate {path}: {source}")]
    Ca { path: String, source: std::io::Error },
}

/// The header in which an agent names itself on every call.
pub const AGENT_HEADER: &str = "phasegate-agent";

pub type AgentClient = AgentServiceClient<InterceptedService<Channel, BearerToken>>;
pub type ControlClient = ControlServiceClient<InterceptedService<Channel, BearerToken>>;

/// A lazily connected channel: it (re)connects on use, so clients survive a coordinator restart.
pub fn channel(address: &str, ca_pem: Option<&std::path::Path>) -> Result<Channel, ConnectError> {
    let bad = |message: String| ConnectError::Address { address: address.to_owned(), message };
    let mut endpoint = Endpoint::from_shared(address.to_owned())
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    if address.starts_with("https://") {
        let mut tls = ClientTlsConfig::new().with_enabled_roots();
        if let Some(path) = ca_pem {
            let pem =
                std::fs::read(path).map_err(|source| ConnectError::Ca { path: path.display().to_string(), source })?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        endpoint = endpoint.tls_config(tls).map_err(|e| bad(e.to_string()))?;
    }
    Ok(endpoint.connect_lazy())
}

pub fn agent_client(channel: Channel, token: &str) -> Result<AgentClient, ConnectError> {
    Ok(AgentServiceClient::with_interceptor(channel, BearerToken::new(token)?)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// An agent client that names its agent on every call, as `phasegate agent` does.
pub fn agent_client_as(channel: Channel, token: &str, agent: &str) -> Result<AgentClient, ConnectError> {
    Ok(AgentServiceClient::with_interceptor(channel, BearerToken::for_agent(token, agent)?)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

pub fn control_client(channel: Channel, token: &str) -> Result<ControlClient, ConnectError> {
    Ok(ControlServiceClient::with_interceptor(channel, BearerToken::new(token)?)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}
