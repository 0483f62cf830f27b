//! `--apply`: the imported NameServices written through the REST API.
//!
//! Each one is read first (`GET`): when the server already holds exactly it, it is
//! `unchanged` and not written; otherwise it is `PUT` (`created` on 201,
//! `configured` on 200), as `kubectl apply` reports. A refused write is reported
//! with the server's error and the others still go ahead.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};

use crate::model::NameService;

/// How one NameService was applied.
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

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: {status}: {message}")]
    Refused {
        url: String,
        status: StatusCode,
        message: String,
    },
    #[error("--server {0:?} is not an http:// URL")]
    BadServer(String),
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
    pub fn new(server: &str, token: Option<String>) -> Result<Self, ApplyError> {
        let base = server.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            return Err(ApplyError::BadServer(server.to_string()));
        }
        crate::tls::install();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|source| ApplyError::Http {
                url: base.clone(),
                source,
            })?;
        Ok(Self {
            http,
            base,
            token: token.filter(|t| !t.is_empty()),
        })
    }

    fn url(&self, name: &str) -> String {
        format!("{}/api/v1/nameservices/{name}", self.base)
    }

    fn auth(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => rb.header(AUTHORIZATION, format!("Bearer {t}")),
            None => rb,
        }
    }

    /// Creates or replaces `ns` unless the server holds exactly it.
    pub async fn apply(&self, ns: &NameService) -> Result<Applied, ApplyError> {
        let url = self.url(&ns.name);
        let http = |source| ApplyError::Http {
            url: url.clone(),
            source,
        };
        let current = self.auth(self.http.get(&url)).send().await.map_err(http)?;
        match current.status() {
            StatusCode::OK => {
                let body = current.bytes().await.map_err(http)?;
                let held = serde_json::from_slice(&body)
                    .ok()
                    .and_then(|v| NameService::from_json(v).ok());
                if held.as_ref() == Some(ns) {
                    return Ok(Applied::Unchanged);
                }
            }
            StatusCode::NOT_FOUND => {}
            status => return Err(refused(&url, status, current).await),
        }
        let body = serde_json::to_vec(ns).expect("a NameService serializes");
        let resp = self
            .auth(self.http.put(&url))
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(http)?;
        match resp.status() {
            StatusCode::CREATED => Ok(Applied::Created),
            StatusCode::OK => Ok(Applied::Configured),
            status => Err(refused(&url, status, resp).await),
        }
    }
}

/// The error of a refused request, from the API's JSON error body.
async fn refused(url: &str, status: StatusCode, resp: reqwest::Response) -> ApplyError {
    let text = resp.text().await.unwrap_or_default();
    let message = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => match (v["error"].as_str(), v["field"].as_str()) {
            (Some(e), Some(f)) => format!("{e} (field {f})"),
            (Some(e), None) => e.to_string(),
            _ => text,
        },
        Err(_) => text,
    };
    ApplyError::Refused {
        url: url.to_string(),
        status,
        message,
    }
}
