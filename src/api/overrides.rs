//! `PUT|DELETE /api/v1/nameservices/{name}/targets/{target}/override[?force=true]`:
//! an operator's Drain, ForceHealthy or ForceUnhealthy of one target, with a reason
//! and an expiry.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::auth::Caller;
use super::{ApiError, AppState, body};
use crate::events::{EventKind, NewEvent};
use crate::model::{Override, normalize_name};
use crate::registry::RegistryError;
use crate::timefmt::rfc3339;

/// An override as the API shows it (also in `status.targets[].override`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OverrideView {
    pub nameservice: String,
    pub target: String,
    pub state: &'static str,
    pub reason: String,
    pub ttl_seconds: u32,
    pub created_at: String,
    pub expires_at: String,
    pub by: Option<String>,
}

impl OverrideView {
    pub fn new(nameservice: &str, target: &str, o: &Override) -> Self {
        Self {
            nameservice: nameservice.to_string(),
            target: target.to_string(),
            state: o.state.as_str(),
            reason: o.reason.clone(),
            ttl_seconds: o.ttl_seconds,
            created_at: rfc3339(o.created_at_ms / 1000),
            expires_at: rfc3339(o.expires_at_ms / 1000),
            by: o.by.clone(),
        }
    }
}

fn path_parts(
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(String, String, String), ApiError> {
    let Path((raw, target)) =
        path.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    // A name that is not valid cannot have been stored: it is simply not there.
    let name = normalize_name(&raw).map_err(|_| RegistryError::NotFound(raw.clone()))?;
    Ok((raw, name, target))
}

/// `?force=true|false` (default false), and nothing else.
fn force(q: Result<Query<Vec<(String, String)>>, QueryRejection>) -> Result<bool, ApiError> {
    let Query(params) = q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let mut force = false;
    for (k, v) in params {
        match (k.as_str(), v.as_str()) {
            ("force", "true" | "") => force = true,
            ("force", "false") => force = false,
            ("force", other) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("force must be true or false, got {other:?}"),
                )
                .with_field("force"));
            }
            (other, _) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("unknown query parameter {other:?}: only force is accepted"),
                )
                .with_field(other));
            }
        }
    }
    Ok(force)
}

/// `PUT`: 201 with the override when the target had none, 200 when it replaced one.
pub async fn put(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<(String, String)>, PathRejection>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (_, name, target) = path_parts(path)?;
    let force = force(q)?;
    let value = body::read_json(&headers, body).await?;
    let token = caller.token_name();
    let ovr = Override::from_json(
        value,
        crate::timefmt::now_unix_ms(),
        token.map(str::to_string),
    )?;
    let replaced = state
        .registry
        .put_override(&name, &target, ovr.clone(), force)
        .await?;
    let view = OverrideView::new(&name, &target, &ovr);
    tracing::info!(
        nameservice = %name, target = %target, state = ovr.state.as_str(),
        reason = %ovr.reason, expires_at = %view.expires_at, force, token,
        "override set"
    );
    state.events.record(
        NewEvent::new(
            EventKind::OverrideSet,
            format!(
                "{} until {}{}: {}",
                ovr.state.as_str(),
                view.expires_at,
                if force { " (forced)" } else { "" },
                ovr.reason
            ),
        )
        .nameservice(&name)
        .target(&target)
        .token(token),
    );
    let status = if replaced.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(view)).into_response())
}

/// `DELETE`: 204; 404 when the target has no override.
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<(String, String)>, PathRejection>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let (_, name, target) = path_parts(path)?;
    // `?force` means nothing here but is accepted (a client may send it on both).
    force(q)?;
    let old = state.registry.delete_override(&name, &target).await?;
    let token = caller.token_name();
    tracing::info!(nameservice = %name, target = %target, state = old.state.as_str(), token, "override removed");
    state.events.record(
        NewEvent::new(
            EventKind::OverrideRemoved,
            format!("{} removed (was: {})", old.state.as_str(), old.reason),
        )
        .nameservice(&name)
        .target(&target)
        .token(token),
    );
    Ok(StatusCode::NO_CONTENT)
}
