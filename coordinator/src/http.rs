//! The HTTP side port: `/healthz`, `/metrics` and, with a webhook secret configured,
//! `POST /github/webhook`. It is served within [`crate::HttpLimits`] (see `http_serve`).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;

use crate::metrics::Gauges;
use crate::shell::Shared;
use crate::store::Store;

pub(crate) fn router<S: Store>(shared: Arc<Shared<S>>) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/metrics", get(metrics::<S>)).with_state(shared)
}

/// Adds the GitHub webhook route when the service has a webhook secret.
pub(crate) fn with_github<S: Store, G: phasegate_github::GithubSink + 'static>(
    router: Router,
    github: Option<&Arc<crate::github::GithubService<S, G>>>,
    limits: &crate::HttpLimits,
) -> Router {
    match github.and_then(|g| crate::github::router(g.clone(), limits)) {
        Some(webhook) => router.merge(webhook),
        None => router,
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics<S: Store>(State(shared): State<Arc<Shared<S>>>) -> String {
    let gauges = {
        let core = shared.core.lock().await;
        Gauges {
            queued: core.queued_jobs(),
            leased: core.leased_jobs(),
            agents_online: core.online_agents(),
            agents_known: core.agents().count(),
        }
    };
    shared.stats.render(&gauges)
}
