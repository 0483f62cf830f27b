//! `POST /api/v1/reload`: read every zone file and the config's `[[topology]]`
//! again and swap them in, all or nothing (see `crate::reload`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::reload::ReloadError;

/// 200 `{"zones": [{"name", "serial"}], "topologyEntries": N}` (and
/// `"restartRequired": [...]` when settings that need a restart changed); 422 naming
/// the file and line of an invalid zone or config file; 409 naming the NameServices
/// the new zones could not hold. Nothing changes unless it is 200.
pub async fn reload(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let Some(reloader) = &state.reload else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "this server was started without files to reload",
        ));
    };
    match reloader.reload("API", caller.token_name()).await {
        Ok(done) => Ok(Json(done).into_response()),
        Err(ReloadError::Invalid(m)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("reload refused, nothing changed: {m}"),
        )),
        Err(ReloadError::Registry(e)) => Err(e.into()),
    }
}
