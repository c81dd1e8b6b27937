//! Serving the HTTP side port with bounds: the port is unauthenticated (the webhook checks its
//! signature only once the body is in), so nothing a client does may hold the coordinator's
//! memory, descriptors or tasks for long.
//!
//! - At most [`HttpLimits::max_connections`] connections are served at once; further ones wait in
//!   the listen backlog (they hold no descriptor of ours) until one closes.
//! - A connection that does not send a whole request head within [`HttpLimits::header_timeout`]
//!   is closed. hyper starts that timer whenever it waits for a request head, so the same timeout
//!   closes idle keep-alive connections.
//! - Request bodies are read only by the webhook, within its own byte limit and
//!   [`HttpLimits::body_timeout`] ([`crate::github`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// Connections the HTTP side port serves at once by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 128;
/// Default time a client has to send a request head (and the longest a keep-alive connection idles).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a client has to send a webhook body.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest webhook body read by default. GitHub allows 25 MB, but the events phasegate handles
/// (pull requests, pushes, pings) are a few hundred KB at most.
pub const DEFAULT_MAX_WEBHOOK_BYTES: usize = 1 << 20;
/// Webhook bodies read at the same time by default; more are answered 503 at once, so the bodies
/// in memory stay under this times the byte limit.
pub const DEFAULT_WEBHOOK_IN_FLIGHT: usize = 16;

/// Bounds of the HTTP side port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_webhook_bytes: usize,
    pub webhook_in_flight: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_webhook_bytes: DEFAULT_MAX_WEBHOOK_BYTES,
            webhook_in_flight: DEFAULT_WEBHOOK_IN_FLIGHT,
        }
    }
}

/// Serves `router` on `listener` within `limits` until `stop` turns true; open connections then
/// finish their current request.
pub(crate) async fn serve(listener: TcpListener, router: Router, limits: HttpLimits, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return,
            },
            _ = stopped(&mut stop) => return,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, most likely: wait rather than spin.
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => return,
        };
        tokio::spawn(serve_connection(stream, router.clone(), limits, slot, stop.clone()));
    }
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    limits: HttpLimits,
    _slot: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
) {
    let service = TowerToHyperService::new(router);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "http connection closed");
            }
        }
        _ = stopped(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(limits.header_timeout, connection).await;
        }
    }
}

/// Resolves once `stop` is true (or its sender is gone); holds no guard across the wait.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
