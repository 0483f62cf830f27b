//! A client of the REST API (reqwest): what `gslb get|apply|delete|explain|drain|
//! undrain` call. Every refusal keeps the API's own message and field.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::model::NameService;

/// Page size of the list calls (`GET /api/v1/nameservices?limit=`).
pub const PAGE: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached, or the connection broke.
    #[error("{url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error.
    #[error("{}", api_message(.status, .message, .field.as_deref()))]
    Api {
        status: StatusCode,
        message: String,
        field: Option<String>,
    },
    #[error(
        "--server {0:?} is not an http:// URL (this build speaks plain HTTP to the API; keep the API on a private network or loopback)"
    )]
    BadServer(String),
    /// The server answered something that is not what the API promises.
    #[error("{url}: unexpected answer: {message}")]
    Protocol { url: String, message: String },
}

fn api_message(status: &StatusCode, message: &str, field: Option<&str>) -> String {
    match field {
        Some(f) => format!("{status}: {message} (field {f})"),
        None => format!("{status}: {message}"),
    }
}

impl ClientError {
    /// The HTTP status of an API refusal.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// How `apply` left one NameService (kubectl's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Created,
    Configured,
    Unchanged,
}

impl Applied {
    pub fn as_str(self) -> &'static str {
        match self {
            Applied::Created => "created",
            Applied::Configured => "configured",
            Applied::Unchanged => "unchanged",
        }
    }
}

/// A client of one gslb API.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// `server` is the API's base URL (`http://127.0.0.1:8080`); `token` the bearer
    /// token, if the API wants one.
    pub fn new(server: &str, token: Option<String>) -> Result<Self, ClientError> {
        let base = server.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            return Err(ClientError::BadServer(server.to_string()));
        }
        crate::tls::install();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("gslb-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| ClientError::Unreachable {
                url: base.clone(),
                source,
            })?;
        Ok(Self {
            http,
            base,
            token: token.filter(|t| !t.is_empty()),
        })
    }

    fn nameservice_url(&self, name: &str) -> String {
        format!("{}/api/v1/nameservices/{}", self.base, escape(name))
    }

    /// One request; a JSON answer (`Null` for an empty body) or the API's error.
    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), ClientError> {
        let unreachable = |source| ClientError::Unreachable {
            url: url.to_string(),
            source,
        };
        let mut rb = self.http.request(method, url);
        if let Some(t) = &self.token {
            rb = rb.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(b) = body {
            rb = rb
                .header(CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(b).expect("a JSON value serializes"));
        }
        let resp = rb.send().await.map_err(unreachable)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(unreachable)?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(v) => v,
                Err(_) if !status.is_success() => {
                    return Err(ClientError::Api {
                        status,
                        message: String::from_utf8_lossy(&bytes).trim().to_string(),
                        field: None,
                    });
                }
                Err(e) => {
                    return Err(ClientError::Protocol {
                        url: url.to_string(),
                        message: format!("the body is not JSON: {e}"),
                    });
                }
            }
        };
        if !status.is_success() {
            return Err(ClientError::Api {
                status,
                message: value["error"]
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_string),
                field: value["field"].as_str().map(str::to_string),
            });
        }
        Ok((status, value))
    }

    /// `GET /api/v1/nameservices/{name}`.
    pub async fn get(&self, name: &str) -> Result<Value, ClientError> {
        Ok(self
            .call(Method::GET, &self.nameservice_url(name), None)
            .await?
            .1)
    }

    /// Every NameService, sorted by name, read page by page.
    pub async fn list(&self) -> Result<Vec<Value>, ClientError> {
        let mut items = Vec::new();
        let mut cont: Option<String> = None;
        loop {
            let mut url = format!("{}/api/v1/nameservices?limit={PAGE}", self.base);
            if let Some(c) = &cont {
                url.push_str("&continue=");
                url.push_str(&escape(c));
            }
            let (_, v) = self.call(Method::GET, &url, None).await?;
            let Some(page) = v["items"].as_array() else {
                return Err(ClientError::Protocol {
                    url,
                    message: "no items in the list".into(),
                });
            };
            items.extend(page.iter().cloned());
            match v["continue"].as_str() {
                Some(c) if !page.is_empty() => cont = Some(c.to_string()),
                _ => return Ok(items),
            }
        }
    }

    /// Creates or replaces `resource` unless the server holds exactly it (compared
    /// with every default filled in, `status` aside).
    pub async fn apply(&self, name: &str, resource: &Value) -> Result<Applied, ClientError> {
        let url = self.nameservice_url(name);
        match self.call(Method::GET, &url, None).await {
            Ok((_, held)) => {
                let same = match (
                    NameService::from_json(held),
                    NameService::from_json(resource.clone()),
                ) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => false,
                };
                if same {
                    return Ok(Applied::Unchanged);
                }
            }
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {}
            Err(e) => return Err(e),
        }
        let (status, _) = self.call(Method::PUT, &url, Some(resource)).await?;
        Ok(if status == StatusCode::CREATED {
            Applied::Created
        } else {
            Applied::Configured
        })
    }

    /// `DELETE /api/v1/nameservices/{name}`.
    pub async fn delete(&self, name: &str) -> Result<(), ClientError> {
        self.call(Method::DELETE, &self.nameservice_url(name), None)
            .await
            .map(drop)
    }

    /// `GET /api/v1/nameservices/{name}/explain?client=IP[&ecs=CIDR][&type=T]`.
    pub async fn explain(
        &self,
        name: &str,
        client: &str,
        ecs: Option<&str>,
        qtype: Option<&str>,
    ) -> Result<Value, ClientError> {
        let mut url = format!(
            "{}/explain?client={}",
            self.nameservice_url(name),
            escape(client)
        );
        if let Some(e) = ecs {
            url.push_str("&ecs=");
            url.push_str(&escape(e));
        }
        if let Some(t) = qtype {
            url.push_str("&type=");
            url.push_str(&escape(t));
        }
        Ok(self.call(Method::GET, &url, None).await?.1)
    }

    fn override_url(&self, name: &str, target: &str, force: bool) -> String {
        format!(
            "{}/targets/{}/override{}",
            self.nameservice_url(name),
            escape(target),
            if force { "?force=true" } else { "" }
        )
    }

    /// `PUT .../targets/{target}/override` with `{"state", "reason", "ttlSeconds"}`.
    pub async fn set_override(
        &self,
        name: &str,
        target: &str,
        body: &Value,
        force: bool,
    ) -> Result<Value, ClientError> {
        Ok(self
            .call(
                Method::PUT,
                &self.override_url(name, target, force),
                Some(body),
            )
            .await?
            .1)
    }

    /// `DELETE .../targets/{target}/override`.
    pub async fn delete_override(&self, name: &str, target: &str) -> Result<(), ClientError> {
        self.call(
            Method::DELETE,
            &self.override_url(name, target, false),
            None,
        )
        .await
        .map(drop)
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986 §2.3), for a
/// path segment or a query value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_is_not_unreserved() {
        assert_eq!(escape("app.gslb.example"), "app.gslb.example");
        assert_eq!(escape("10.0.0.0/8"), "10.0.0.0%2F8");
        assert_eq!(escape("2001:db8::1"), "2001%3Adb8%3A%3A1");
        assert_eq!(escape("a b&c"), "a%20b%26c");
    }

    #[test]
    fn api_errors_show_message_and_field() {
        let e = ClientError::Api {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: "ttl 90000 is above 86400".into(),
            field: Some("ttl".into()),
        };
        assert_eq!(
            e.to_string(),
            "422 Unprocessable Entity: ttl 90000 is above 86400 (field ttl)"
        );
        assert!(
            ClientError::BadServer("ftp://x".into())
                .to_string()
                .contains("ftp://x")
        );
        assert!(Client::new("127.0.0.1:8080", None).is_err());
        assert!(Client::new("http://127.0.0.1:8080/", None).is_ok());
    }
}
