//! One judge server and how it is asked: the HTTP client, the per-request timeout and the retry
//! rule. Retried: a connection that could not be made, 429 and 5xx answers (the server is busy or
//! failing, a later attempt may work). Not retried: any other answer (the request is wrong and will
//! stay wrong) and a timeout (a server that took `score.judge_timeout` once will likely again).

use std::fmt;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use phasegate_proto::spec::JudgeServer;

use super::key::ApiKey;
use super::wire::{ReplyError, excerpt, reply_content, request_body};
use crate::judge::JudgeCall;

/// Wait before the first retry; each further retry waits twice as long as the one before.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// No wait between retries is longer than this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A judge server that did not give a reply. Every message names the endpoint, never the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HttpJudgeError {
    #[error("failed to reach the judge server {endpoint} after {attempts} attempt(s): {detail}")]
    Unreachable { endpoint: String, attempts: u32, detail: String },
    #[error("the judge server {endpoint} answered {status} after {attempts} attempt(s): {excerpt}")]
    Status { endpoint: String, status: u16, attempts: u32, excerpt: String },
    #[error("the judge server {endpoint} did not answer within `score.judge_timeout` ({timeout})")]
    Timeout { endpoint: String, timeout: String },
    #[error("the judge server {endpoint} answered with something that is not JSON: {excerpt}")]
    NotJson { endpoint: String, excerpt: String },
    #[error("the judge server {endpoint} answered JSON without choices[0].message.content: {excerpt}")]
    NoContent { endpoint: String, excerpt: String },
    #[error("failed to set up the client for the judge server {endpoint}: {detail}")]
    Setup { endpoint: String, detail: String },
    #[error("the judge stopped: {0}")]
    Stopped(String),
}

/// What one attempt came to.
enum Attempt {
    Reply(String),
    Retryable(HttpJudgeError),
    Final(HttpJudgeError),
}

/// A judge server as the spec gives it, with its key read.
pub(crate) struct HttpJudge {
    endpoint: String,
    url: http::Uri,
    model: String,
    key: Option<ApiKey>,
    timeout: Duration,
    retries: u32,
    first_backoff: Duration,
    pub(crate) concurrency: usize,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl fmt::Debug for HttpJudge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpJudge")
            .field("endpoint", &self.endpoint)
            .field("model", &self.model)
            .field("key", &self.key)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl HttpJudge {
    /// `model` is the name sent to the server (`score.judge_model`).
    pub(crate) fn new(server: &JudgeServer, model: &str, key: Option<ApiKey>) -> Result<Self, HttpJudgeError> {
        let setup = |detail: String| HttpJudgeError::Setup { endpoint: server.endpoint.clone(), detail };
        let url: http::Uri =
            format!("{}/chat/completions", server.endpoint).parse().map_err(|e| setup(format!("bad URL: {e}")))?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| setup(format!("no TLS root certificates: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            endpoint: server.endpoint.clone(),
            url,
            model: model.to_owned(),
            key,
            timeout: Duration::from_secs(server.timeout_s),
            retries: server.retries,
            first_backoff: FIRST_BACKOFF,
            concurrency: usize::try_from(server.concurrency).unwrap_or(1).max(1),
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// Shorter waits for tests.
    #[cfg(test)]
    pub(crate) fn with_timing(mut self, timeout: Duration, first_backoff: Duration) -> Self {
        self.timeout = timeout;
        self.first_backoff = first_backoff;
        self
    }

    /// The judge's reply to one call, after up to `retries` further attempts.
    pub(crate) async fn complete(
        &self,
        call: &JudgeCall,
        seed: u64,
        max_tokens: usize,
    ) -> Result<String, HttpJudgeError> {
        let body = Bytes::from(request_body(&self.model, call, seed, max_tokens).to_string());
        let mut backoff = self.first_backoff;
        for attempt in 1.. {
            match self.attempt(body.clone(), attempt).await {
                Attempt::Reply(text) => return Ok(text),
                Attempt::Retryable(_) if attempt <= self.retries => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Attempt::Retryable(e) | Attempt::Final(e) => return Err(e),
            }
        }
        unreachable!("the attempt loop only ends by returning")
    }

    async fn attempt(&self, body: Bytes, attempt: u32) -> Attempt {
        let mut request = http::Request::post(&self.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json");
        if let Some(key) = &self.key {
            request = request.header(http::header::AUTHORIZATION, key.header());
        }
        let request = match request.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => return Attempt::Final(self.unreachable(attempt, e.to_string())),
        };
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Attempt::Final(HttpJudgeError::Timeout {
                endpoint: self.endpoint.clone(),
                timeout: humantime::format_duration(self.timeout).to_string(),
            }),
            Ok(Err(e)) => self.failed_exchange(attempt, e.as_ref()),
            Ok(Ok((status, body))) => self.answered(attempt, status, &body),
        }
    }

    /// No answer: retried when the connection could not be made at all.
    fn failed_exchange(&self, attempt: u32, e: &(dyn std::error::Error + 'static)) -> Attempt {
        let connect = e.downcast_ref::<hyper_util::client::legacy::Error>().is_some_and(|e| e.is_connect());
        let error = self.unreachable(attempt, error_chain(e));
        if connect { Attempt::Retryable(error) } else { Attempt::Final(error) }
    }

    fn answered(&self, attempt: u32, status: http::StatusCode, body: &[u8]) -> Attempt {
        let quoted = || self.quote(body);
        if !status.is_success() {
            let error = HttpJudgeError::Status {
                endpoint: self.endpoint.clone(),
                status: status.as_u16(),
                attempts: attempt,
                excerpt: quoted(),
            };
            let retry = status == http::StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
            return if retry { Attempt::Retryable(error) } else { Attempt::Final(error) };
        }
        match reply_content(body) {
            Ok(text) => Attempt::Reply(text),
            Err(ReplyError::NotJson) => {
                Attempt::Final(HttpJudgeError::NotJson { endpoint: self.endpoint.clone(), excerpt: quoted() })
            }
            Err(ReplyError::NoContent) => {
                Attempt::Final(HttpJudgeError::NoContent { endpoint: self.endpoint.clone(), excerpt: quoted() })
            }
        }
    }

    fn unreachable(&self, attempts: u32, detail: String) -> HttpJudgeError {
        HttpJudgeError::Unreachable { endpoint: self.endpoint.clone(), attempts, detail }
    }

    /// An excerpt of the server's answer with the key blanked out, should the server echo it.
    fn quote(&self, body: &[u8]) -> String {
        let text = excerpt(body);
        match &self.key {
            Some(key) => key.redact(&text),
            None => text,
        }
    }
}

/// The error and its sources on one line: hyper's top-level messages alone ("client error
/// (Connect)") do not say what went wrong.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}
