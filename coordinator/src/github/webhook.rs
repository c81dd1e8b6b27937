//! `POST /github/webhook` on the HTTP side port.
//!
//! The signature is verified on the raw body before anything parses it; a bad or missing signature
//! is answered 401 and nothing of the body is logged. A verified event is acknowledged at once (202)
//! and handled in a spawned task: GitHub expects an answer within seconds, while listing files,
//! downloading the tarball and submitting take longer.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

use phasegate_github::GithubSink;
use phasegate_github::webhook::{EVENT_HEADER, Event, MAX_BODY_BYTES, SIGNATURE_HEADER, parse_event, verify_signature};

use super::GithubService;
use crate::store::Store;

/// The webhook's path.
pub(crate) const PATH: &str = "/github/webhook";

/// The webhook route, or `None` when no webhook secret is configured (the endpoint stays off).
pub(crate) fn router<S: Store, G: GithubSink + 'static>(service: Arc<GithubService<S, G>>) -> Option<Router> {
    service.config().webhook_secret.as_ref()?;
    Some(
        Router::new()
            .route(PATH, post(receive::<S, G>))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(service),
    )
}

async fn receive<S: Store, G: GithubSink + 'static>(
    State(service): State<Arc<GithubService<S, G>>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let Some(secret) = service.config().webhook_secret.as_ref() else {
        return (StatusCode::NOT_FOUND, "webhook disabled\n");
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
    tokio::spawn(async move {
        service.on_event(&event).await;
    });
    (StatusCode::ACCEPTED, "accepted\n")
}
