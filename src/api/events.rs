//! `GET /api/v1/events`: recent events of this instance, newest first.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};

use super::query::Params;
use super::{ApiError, AppState};
use crate::events::{Event, EventKind};

/// Default page size of the events list.
pub const DEFAULT_LIMIT: usize = 100;

#[derive(serde::Serialize)]
pub struct List {
    pub items: Vec<Event>,
}

/// `?limit=N` (1..=capacity, default 100), `?nameservice=NAME`,
/// `?kind=K1,K2`, `?after=ID` (only events newer than that id).
pub async fn list(
    State(state): State<AppState>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<List>, ApiError> {
    let p = Params::parse(q, &["limit", "nameservice", "kind", "after"])?;
    let capacity = state.events.capacity();
    let limit = p.number("limit", 1..=capacity)?.unwrap_or(DEFAULT_LIMIT);
    let after = p.number("after", 0..=usize::MAX)?.map(|a| a as u64);
    let mut kinds = Vec::new();
    if let Some(list) = p.get("kind") {
        for k in list.split(',') {
            kinds.push(EventKind::parse(k).ok_or_else(|| {
                ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    format!(
                        "unknown event kind {k:?}; kinds are {}",
                        EventKind::ALL.map(EventKind::as_str).join(", ")
                    ),
                )
                .with_field("kind")
            })?);
        }
    }
    let nameservice = p
        .get("nameservice")
        .map(|n| crate::model::normalize_name(n).unwrap_or_else(|_| n.to_string()));
    Ok(Json(List {
        items: state.events.recent(&crate::events::Query {
            limit: Some(limit),
            nameservice,
            kinds,
            after,
        }),
    }))
}
