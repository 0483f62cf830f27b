//! `GET /api/v1/instances`: the instances serving the registry and the revision each
//! has applied.

use axum::Json;
use axum::extract::State;

use super::{ApiError, AppState};
use crate::registry::InstanceInfo;

#[derive(serde::Serialize)]
pub struct List {
    pub items: Vec<InstanceInfo>,
}

/// Every live instance, sorted by name (with the embedded store: this one; with
/// etcd: 503 while etcd is out of reach).
pub async fn list(State(state): State<AppState>) -> Result<Json<List>, ApiError> {
    Ok(Json(List {
        items: state.registry.instances().await?,
    }))
}
