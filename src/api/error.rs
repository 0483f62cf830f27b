//! The one error type of the API: every failure becomes a status code and a JSON
//! body `{"error": "<one sentence>", "field": "<path>"}` here and nowhere else.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::model::ValidationError;
use crate::registry::RegistryError;

/// A rejected request: nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// One human sentence saying what is wrong (and with which value).
    pub message: String,
    /// JSON path of the single field at fault, if there is one.
    pub field: Option<String>,
    /// Seconds for a `Retry-After` header (503).
    pub retry_after: Option<u32>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// Attaches the field at fault (an empty path means the whole body: no field).
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        let field = field.into();
        self.field = (!field.is_empty()).then_some(field);
        self
    }

    /// 400: the body is not syntactically valid JSON.
    pub fn malformed_json(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            format!("the request body is not valid JSON: {detail}"),
        )
    }

    /// 401, answered with `WWW-Authenticate: Bearer`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 403: the token is valid but its role does not allow this call.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 413: the body is larger than `limit` bytes.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// 415: the request did not declare a JSON body.
    pub fn unsupported_media_type(got: Option<&str>) -> Self {
        let message = match got {
            None => "the request has no Content-Type: send application/json".to_string(),
            Some(ct) => format!("Content-Type {ct:?} is not supported: send application/json"),
        };
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, message)
    }

    /// 422 on one field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message).with_field(field)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)?;
        if let Some(field) = &self.field {
            write!(f, " (field {field})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self::invalid(e.field, e.message)
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match &e {
            RegistryError::NotFound(_)
            | RegistryError::NoSuchTarget { .. }
            | RegistryError::NoOverride { .. } => Self::not_found(e.to_string()),
            RegistryError::UnsafeDrain(_) => Self::new(StatusCode::CONFLICT, e.to_string()),
            RegistryError::OutsideZones { .. } => Self::invalid("name", e.to_string()),
            RegistryError::Collision { .. } => {
                Self::new(StatusCode::CONFLICT, e.to_string()).with_field("name")
            }
            RegistryError::ReloadConflict(_) => Self::new(StatusCode::CONFLICT, e.to_string()),
            RegistryError::Unavailable { retry_after, .. } => {
                let mut err = Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
                err.retry_after = Some(*retry_after);
                err
            }
            RegistryError::PreconditionFailed(_) => {
                Self::new(StatusCode::PRECONDITION_FAILED, e.to_string())
            }
            RegistryError::Invalid(v) => Self::invalid(v.field.clone(), v.message.clone()),
            RegistryError::Store(inner) if inner.is_full() => {
                tracing::error!(error = %inner, "store write failed: disk full; change not applied");
                let detail = match inner {
                    crate::store::StoreError::Full => String::new(),
                    other => format!(" ({other})"),
                };
                Self::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    format!(
                        "the disk holding the store is full: nothing was changed; free space on the data dir's file system{detail}"
                    ),
                )
            }
            RegistryError::Store(inner) => {
                // Logged once, here, where it is handled; the registry published nothing.
                tracing::error!(error = %inner, "store write failed; change not applied");
                Self::internal(format!("the store failed, nothing was changed: {inner}"))
            }
            RegistryError::Committer(_) => {
                tracing::error!(error = %e, "registry write not applied");
                Self::internal("the write failed inside the server; nothing was changed")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&Body {
            error: &self.message,
            field: self.field.as_deref(),
        })
        .unwrap_or_else(|_| br#"{"error":"internal error"}"#.to_vec());
        let mut resp = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_field_means_whole_body() {
        let e: ApiError = ValidationError::new("", "the body must be a JSON object").into();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.field, None);
        let e: ApiError = ValidationError::new("targets[0].address", "bad").into();
        assert_eq!(e.field.as_deref(), Some("targets[0].address"));
    }

    #[test]
    fn registry_errors_map_to_statuses() {
        let cases = [
            (RegistryError::NotFound("a.example".into()), 404, None),
            (
                RegistryError::OutsideZones {
                    name: "a.other".into(),
                    zones: "gslb.example".into(),
                },
                422,
                Some("name"),
            ),
            (
                RegistryError::Collision {
                    name: "alias.gslb.example".into(),
                    zone: "gslb.example".into(),
                    what: "a static CNAME".into(),
                },
                409,
                Some("name"),
            ),
        ];
        for (err, status, field) in cases {
            let e = ApiError::from(err);
            assert_eq!(e.status.as_u16(), status, "{e}");
            assert_eq!(e.field.as_deref(), field, "{e}");
        }
    }

    #[test]
    fn unauthorized_carries_www_authenticate() {
        let r = ApiError::unauthorized("no token").into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    }
}
