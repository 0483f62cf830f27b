//! Operations endpoints (/healthz, /metrics) and the JSON 404/405 answers.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};

/// `GET /healthz`: 200 once every listener is bound and a registry is loaded (with
/// etcd: the local copy or etcd itself; an instance that never loaded one says 503).
pub async fn healthz(State(state): State<AppState>) -> Response {
    if state.ready.load(Ordering::SeqCst) && state.registry.is_loaded() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// `GET /metrics`: every family the app registered in the exporter.
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.exporter.render(),
    )
        .into_response()
}

/// Any path no route serves.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no such path: {}", uri.path()))
}

/// A served path asked with a method it does not serve (axum adds the `Allow` header).
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}
