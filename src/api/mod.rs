//! The REST API (axum): NameServices, /healthz and /metrics.
//!
//! The only module that imports axum. Handlers stay thin: they check the request
//! (token, media type, size, JSON syntax), hand the body to
//! [`NameService::from_json`](crate::model::NameService::from_json) for the rules and to
//! the [`Registry`] for placement and storage, and turn every failure into one
//! [`ApiError`].
//!
//! **Architecture Invariant:** a rejected request changes nothing: every check runs
//! before the registry is asked to write, and the registry publishes only what the
//! store has flushed.

pub mod auth;
mod body;
mod error;
mod events;
mod explain;
mod instances;
pub mod limits;
mod nameservices;
mod ops;
pub mod overrides;
mod query;
mod reload;
mod ui;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use tokio::sync::watch;

pub use error::ApiError;

use crate::events::EventLog;
use crate::metrics::{Exporter, Metrics};
use crate::registry::Registry;

/// Route templates, as served and as counted in `gslb_api_requests_total`.
pub const ROUTE_NAMESERVICES: &str = "/api/v1/nameservices";
pub const ROUTE_NAMESERVICE: &str = "/api/v1/nameservices/{name}";
pub const ROUTE_EXPLAIN: &str = "/api/v1/nameservices/{name}/explain";
pub const ROUTE_OVERRIDE: &str = "/api/v1/nameservices/{name}/targets/{target}/override";
pub const ROUTE_INSTANCES: &str = "/api/v1/instances";
pub const ROUTE_RELOAD: &str = "/api/v1/reload";
pub const ROUTE_EVENTS: &str = "/api/v1/events";
pub const ROUTE_UI_ROOT: &str = "/ui";
pub const ROUTE_UI: &str = "/ui/";
pub const ROUTE_UI_ASSET: &str = "/ui/{asset}";
pub const ROUTE_HEALTHZ: &str = "/healthz";
pub const ROUTE_METRICS: &str = "/metrics";
/// Every route template the API serves (docs and tests check api/openapi.yaml against it).
pub const ROUTES: [&str; 12] = [
    ROUTE_NAMESERVICES,
    ROUTE_NAMESERVICE,
    ROUTE_EXPLAIN,
    ROUTE_OVERRIDE,
    ROUTE_INSTANCES,
    ROUTE_RELOAD,
    ROUTE_EVENTS,
    ROUTE_HEALTHZ,
    ROUTE_METRICS,
    ROUTE_UI_ROOT,
    ROUTE_UI,
    ROUTE_UI_ASSET,
];

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    /// Everything `/metrics` shows (built once at startup).
    pub exporter: Arc<Exporter>,
    /// The accepted bearer tokens and their roles (empty: no token needed).
    pub tokens: Arc<auth::Tokens>,
    /// Recent events (`GET /api/v1/events`); handlers record writes into it.
    pub events: Arc<EventLog>,
    /// True once every listener is bound and the store is loaded (/healthz).
    pub ready: Arc<AtomicBool>,
    /// `POST /api/v1/reload` (None: not offered, in tests without files).
    pub reload: Option<Arc<crate::reload::Reloader>>,
}

/// Serves the API on `listener` until `stop` turns true, then stops accepting and
/// finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    limits: limits::Limits,
    stats: Arc<limits::ConnStats>,
    state: AppState,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut graceful = stop.clone();
    let listener = limits::LimitedListener::new(listener, limits, stats);
    let server = axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            // A dropped sender also means "stop".
            let _ = graceful.wait_for(|s| *s).await;
        })
        .into_future();
    tokio::pin!(server);
    let mut stop = stop;
    tokio::select! {
        r = &mut server => return r,
        _ = stop.wait_for(|s| *s) => {}
    }
    // Stopped accepting; a client that never finishes its request must not hold
    // the shutdown (and the final store flush) hostage.
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!(
                grace_seconds = SHUTDOWN_GRACE.as_secs(),
                "API requests still in flight at shutdown; abandoning them"
            );
            Ok(())
        }
    }
}

/// How long in-flight API requests may take to finish once shutdown started.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// The whole HTTP surface. Public so that tests can drive it without a socket.
pub fn router(state: AppState) -> Router {
    let metrics = state.metrics.clone();
    let tokens = state.tokens.clone();
    Router::new()
        .route(ROUTE_NAMESERVICES, get(nameservices::list))
        .route(
            ROUTE_NAMESERVICE,
            get(nameservices::get)
                .put(nameservices::put)
                .delete(nameservices::delete),
        )
        .route(ROUTE_EXPLAIN, get(explain::explain))
        .route(
            ROUTE_OVERRIDE,
            axum::routing::put(overrides::put).delete(overrides::delete),
        )
        .route(ROUTE_INSTANCES, get(instances::list))
        .route(ROUTE_RELOAD, axum::routing::post(reload::reload))
        .route(ROUTE_EVENTS, get(events::list))
        .route(ROUTE_UI_ROOT, get(ui::redirect))
        .route(ROUTE_UI, get(ui::index))
        .route(ROUTE_UI_ASSET, get(ui::file))
        .route(ROUTE_HEALTHZ, get(ops::healthz))
        .route(ROUTE_METRICS, get(ops::metrics))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        // Layers wrap what is above them; the last one added runs first. Counting
        // runs outermost so rejected (401) requests are counted too.
        .layer(middleware::from_fn_with_state(tokens, auth::require_token))
        .layer(middleware::from_fn_with_state(metrics, count_request))
        .with_state(state)
}

/// Counts every request by route template, method and status.
async fn count_request(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let method = method_label(req.method());
    let resp = next.run(req).await;
    metrics.api_request(
        route.as_deref().unwrap_or("unmatched"),
        method,
        resp.status().as_u16(),
    );
    resp
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests;
