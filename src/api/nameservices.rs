//! `/api/v1/nameservices`: create or replace, read, list, delete.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::auth::Caller;
use super::query::Params;
use super::{ApiError, AppState, ROUTE_NAMESERVICES, body};
use crate::events::{EventKind, NewEvent};
use crate::model::{NameService, normalize_name};
use crate::registry::{Precondition, RegistryError, Tags, View};

#[derive(serde::Serialize)]
pub struct List {
    pub items: Vec<View>,
    /// Present when a `limit` left names out: pass it back as `continue`.
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Largest page of `GET /api/v1/nameservices?limit=N`.
pub const MAX_PAGE: usize = 10_000;

/// The `{name}` of the path, as sent (percent-decoded).
fn raw_name(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(n)| n)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))
}

/// The `ETag` of a resource at `revision`.
fn etag(revision: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{revision}\"")).expect("digits and quotes")
}

/// The entity tags of every `header` line (RFC 9110 section 8.8.3): `*`, or a list
/// of `"<revision>"`. Weak tags (`W/"..."`) never match `If-Match`, which compares
/// strongly, and match `If-None-Match` like strong ones. A tag that is not one of
/// ours matches nothing.
fn tags(headers: &HeaderMap, header: header::HeaderName) -> Result<Option<Tags>, ApiError> {
    let mut values = headers.get_all(&header).iter().peekable();
    if values.peek().is_none() {
        return Ok(None);
    }
    let weak_matches = header == header::IF_NONE_MATCH;
    let mut list = Vec::new();
    for v in values {
        let bad = || {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("{header}: {v:?} is not * or a list of entity tags such as \"42\""),
            )
        };
        let text = v.to_str().map_err(|_| bad())?;
        for item in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if item == "*" {
                return Ok(Some(Tags::Any));
            }
            let (weak, tag) = match item.strip_prefix("W/") {
                Some(t) => (true, t),
                None => (false, item),
            };
            let opaque = tag
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .filter(|t| !t.contains('"'))
                .ok_or_else(bad)?;
            if let Ok(rev) = opaque.parse::<u64>()
                && (!weak || weak_matches)
            {
                list.push(rev);
            }
        }
    }
    Ok(Some(Tags::Revisions(list)))
}

/// The conditions of a write.
fn precondition(headers: &HeaderMap) -> Result<Precondition, ApiError> {
    Ok(Precondition {
        if_match: tags(headers, header::IF_MATCH)?,
        if_none_match: tags(headers, header::IF_NONE_MATCH)?,
    })
}

/// `PUT /api/v1/nameservices/{name}`: 201 created, 200 replaced.
pub async fn put(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let raw = raw_name(path)?;
    let cond = precondition(&headers)?;
    let mut value = body::read_json(&headers, body).await?;
    let name = normalize_name(&raw).map_err(|e| {
        ApiError::invalid(
            "name",
            format!("the name in the path {raw:?} is not a valid DNS name: {e}"),
        )
    })?;
    // A body without a name takes the path's.
    if let Some(obj) = value.as_object_mut()
        && obj.get("name").is_none_or(Value::is_null)
    {
        obj.insert("name".into(), Value::String(name.clone()));
    }
    let ns = NameService::from_json(value)?;
    if ns.name != name {
        return Err(ApiError::invalid(
            "name",
            format!(
                "the name in the body {:?} does not match the name in the path {name:?}",
                ns.name
            ),
        ));
    }
    let targets = ns.targets.len();
    let policy = ns.policy;
    let outcome = state.registry.put_async(ns, cond).await?;
    let (action, kind) = match (outcome.created, outcome.changed) {
        (true, _) => ("created", Some(EventKind::Created)),
        (false, true) => ("replaced", Some(EventKind::Replaced)),
        (false, false) => ("unchanged", None),
    };
    let token = caller.token_name();
    tracing::info!(nameservice = %name, action, ?policy, targets, token, "NameService {action}");
    if let Some(kind) = kind {
        state.events.record(
            NewEvent::new(
                kind,
                format!(
                    "NameService {action}: policy {policy:?}, {targets} target{}",
                    if targets == 1 { "" } else { "s" }
                ),
            )
            .nameservice(&name)
            .token(token),
        );
    }
    let revision = outcome.view.revision;
    let mut resp = Json(outcome.view).into_response();
    resp.headers_mut().insert(header::ETAG, etag(revision));
    if outcome.created {
        *resp.status_mut() = StatusCode::CREATED;
        if let Ok(loc) = HeaderValue::from_str(&format!("{ROUTE_NAMESERVICES}/{name}")) {
            resp.headers_mut().insert(header::LOCATION, loc);
        }
    }
    Ok(resp)
}

/// `GET /api/v1/nameservices/{name}`.
pub async fn get(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let raw = raw_name(path)?;
    // A name that is not valid cannot have been stored: it is simply not there.
    let view = normalize_name(&raw)
        .ok()
        .and_then(|n| state.registry.get(&n))
        .ok_or_else(|| ApiError::from(RegistryError::NotFound(raw)))?;
    let revision = view.revision;
    let mut resp = Json(view).into_response();
    resp.headers_mut().insert(header::ETAG, etag(revision));
    Ok(resp)
}

/// `GET /api/v1/nameservices`: every NameService, sorted by name; with
/// `?limit=N` one page of them, and `continue` to pass back for the next one.
pub async fn list(
    State(state): State<AppState>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<List>, ApiError> {
    let p = Params::parse(q, &["limit", "continue"])?;
    let limit = p.number("limit", 1..=MAX_PAGE)?;
    let after = p.get("continue").filter(|c| !c.is_empty());
    if limit.is_none() && after.is_none() {
        return Ok(Json(List {
            items: state.registry.list(),
            next: None,
        }));
    }
    let (items, next) = state.registry.list_page(after, limit.unwrap_or(usize::MAX));
    Ok(Json(List { items, next }))
}

/// `DELETE /api/v1/nameservices/{name}`: 204.
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let raw = raw_name(path)?;
    let cond = precondition(&headers)?;
    let name =
        normalize_name(&raw).map_err(|_| ApiError::from(RegistryError::NotFound(raw.clone())))?;
    state.registry.delete_async(&name, cond).await?;
    let token = caller.token_name();
    tracing::info!(nameservice = %name, action = "deleted", token, "NameService deleted");
    state.events.record(
        NewEvent::new(EventKind::Deleted, "NameService deleted")
            .nameservice(&name)
            .token(token),
    );
    Ok(StatusCode::NO_CONTENT)
}
