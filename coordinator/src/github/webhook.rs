//! `POST /github/webhook` on the HTTP side port.
//!
//! The body is read as a stream within [`HttpLimits`]: a `Content-Length` over the byte limit is
//! answered 413 before anything is read, a body that grows past it is dropped at the limit (413),
//! one that is not in within the body timeout is answered 408, and when too many bodies are being
//! read at once a delivery is answered 503 (GitHub redelivers). So no client can make the
//! coordinator buffer more than `webhook_in_flight × max_webhook_bytes`.
//!
//! The signature is verified on the raw body before anything parses it; a bad or missing signature
//! is answered 401 and nothing of the body is logged. A verified event is acknowledged at once (202)
//! and handled in a spawned task: GitHub expects an answer within seconds, while listing files,
//! downloading the tarball and submitting take longer.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use http_body_util::{BodyExt as _, Limited};
use tokio::sync::Semaphore;

use phasegate_github::GithubSink;
use phasegate_github::webhook::{EVENT_HEADER, Event, SIGNATURE_HEADER, parse_event, verify_signature};

use super::GithubService;
use crate::HttpLimits;
use crate::store::Store;

/// The webhook's path.
pub(crate) const PATH: &str = "/github/webhook";

type Answer = (StatusCode, &'static str);

/// The route's state: the service and the bounds its bodies are read within.
struct Webhook<S: Store, G: GithubSink + 'static> {
    service: Arc<GithubService<S, G>>,
    limits: HttpLimits,
    reading: Semaphore,
}

/// The webhook route, or `None` when no webhook secret is configured (the endpoint stays off).
pub(crate) fn router<S: Store, G: GithubSink + 'static>(
    service: Arc<GithubService<S, G>>,
    limits: &HttpLimits,
) -> Option<Router> {
    service.config().webhook_secret.as_ref()?;
    let state =
        Arc::new(Webhook { service, limits: *limits, reading: Semaphore::new(limits.webhook_in_flight.max(1)) });
    Some(Router::new().route(PATH, post(receive::<S, G>)).with_state(state))
}

async fn receive<S: Store, G: GithubSink + 'static>(
    State(hook): State<Arc<Webhook<S, G>>>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let service = &hook.service;
    let Some(secret) = service.config().webhook_secret.as_ref() else {
        return (StatusCode::NOT_FOUND, "webhook disabled\n");
    };
    let body = match read_body(&hook, &headers, body).await {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(e) = verify_signature(secret, header(SIGNATURE_HEADER), &body) {
        tracing::warn!(reason = %e, bytes = body.len(), "webhook delivery rejected");
        return (StatusCode::UNAUTHORIZED, "invalid signature\n");
    }
    let name = header(EVENT_HEADER).unwrap_or_default().to_owned();
    let event = match parse_event(&name, &body) {
        Ok(event) => event,
        Err(e) => {
            tracing::warn!(event = %name, error = %e, "webhook payload rejected");
            return (StatusCode::BAD_REQUEST, "unreadable payload\n");
        }
    };
    if let Event::Ignored { event, action } = &event {
        tracing::debug!(%event, ?action, "webhook event ignored");
        return (StatusCode::OK, "ignored\n");
    }
    let service = service.clone();
    tokio::spawn(async move {
        service.on_event(&event).await;
    });
    (StatusCode::ACCEPTED, "accepted\n")
}

/// The whole body within the limits, or the answer that refuses it.
async fn read_body<S: Store, G: GithubSink + 'static>(
    hook: &Webhook<S, G>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, Answer> {
    let limits = &hook.limits;
    let too_large = (StatusCode::PAYLOAD_TOO_LARGE, "payload too large\n");
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_webhook_bytes as u64) {
        tracing::warn!(bytes = declared, limit = limits.max_webhook_bytes, "webhook body over the limit");
        return Err(too_large);
    }
    let Ok(_reading) = hook.reading.try_acquire() else {
        tracing::warn!(in_flight = limits.webhook_in_flight, "too many webhook bodies being read");
        return Err((StatusCode::SERVICE_UNAVAILABLE, "busy, deliver again later\n"));
    };
    let collect = Limited::new(body, limits.max_webhook_bytes).collect();
    match tokio::time::timeout(limits.body_timeout, collect).await {
        Ok(Ok(body)) => Ok(body.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            tracing::warn!(limit = limits.max_webhook_bytes, "webhook body over the limit");
            Err(too_large)
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "webhook body not read");
            Err((StatusCode::BAD_REQUEST, "unreadable body\n"))
        }
        Err(_) => Err((StatusCode::REQUEST_TIMEOUT, "body not sent in time\n")),
    }
}
