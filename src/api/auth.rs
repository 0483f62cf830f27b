//! Bearer tokens and their roles.
//!
//! When any token is configured (`api_token`, `[[api_tokens]]`), every `/api/`
//! call must carry `Authorization: Bearer <token>` (401 otherwise, with
//! `WWW-Authenticate: Bearer`). A `read` token may only GET (or HEAD): any other
//! method gets 403 before the handler runs, so it changes nothing. The handler
//! learns who called through the [`Caller`] request extension (events name the
//! token that made each write). `/healthz`, `/metrics` and the status page's
//! assets (`/ui/`) never need a token.
//!
//! The presented token is compared with every configured one in constant time,
//! and all of them are compared, so the time taken does not tell which one (or
//! how much of one) matched.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use super::{ApiError, body};
use crate::config::{ApiToken, Role};

/// Who made a request: the name of the token it presented (`None` when the API
/// has no token), and its role.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: Option<Arc<str>>,
    pub role: Role,
}

impl Caller {
    /// The token's name, for events.
    pub fn token_name(&self) -> Option<&str> {
        self.token.as_deref()
    }
}

/// The configured tokens.
#[derive(Debug, Default)]
pub struct Tokens {
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    name: Arc<str>,
    secret: Box<[u8]>,
    role: Role,
}

impl Tokens {
    pub fn new(tokens: &[ApiToken]) -> Self {
        Self {
            entries: tokens
                .iter()
                .map(|t| Entry {
                    name: t.name.as_str().into(),
                    secret: t.token.as_bytes().into(),
                    role: t.role,
                })
                .collect(),
        }
    }

    /// One write token named `api_token` (tests, and the legacy setting).
    pub fn single(token: Option<&str>) -> Self {
        let tokens: Vec<ApiToken> = token
            .map(|t| ApiToken {
                name: crate::config::LEGACY_TOKEN_NAME.into(),
                token: t.into(),
                role: Role::Write,
            })
            .into_iter()
            .collect();
        Self::new(&tokens)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry whose secret equals `presented`, comparing with every entry.
    fn find(&self, presented: &[u8]) -> Option<&Entry> {
        let mut found = 0u32;
        let mut any = Choice::from(0);
        for (i, e) in self.entries.iter().enumerate() {
            let eq = e.secret.ct_eq(presented);
            found.conditional_assign(&(i as u32), eq);
            any |= eq;
        }
        bool::from(any).then(|| &self.entries[found as usize])
    }
}

/// Checks the bearer token and the role of every `/api/` call; records the
/// [`Caller`] for the handlers.
pub async fn require_token(
    State(tokens): State<Arc<Tokens>>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    let is_api = path == "/api" || path.starts_with("/api/");
    if tokens.is_empty() || !is_api {
        req.extensions_mut().insert(Caller {
            token: None,
            role: Role::Write,
        });
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| bearer_token(v.as_bytes()));
    let err = match presented {
        None => ApiError::unauthorized("this call needs an Authorization: Bearer <token> header"),
        Some(None) => {
            ApiError::unauthorized("the Authorization header must be of the form Bearer <token>")
        }
        Some(Some(t)) => match tokens.find(t) {
            None => ApiError::unauthorized("the bearer token is not valid"),
            Some(e) if e.role == Role::Read && !is_read(req.method()) => {
                ApiError::forbidden(format!(
                    "the token {:?} has the read role: it may only GET; {} needs a token with the write role",
                    &*e.name,
                    req.method()
                ))
            }
            Some(e) => {
                let caller = Caller {
                    token: Some(e.name.clone()),
                    role: e.role,
                };
                req.extensions_mut().insert(caller);
                return next.run(req).await;
            }
        },
    };
    body::discard(req.into_body()).await;
    err.into_response()
}

fn is_read(m: &Method) -> bool {
    *m == Method::GET || *m == Method::HEAD
}

/// The credentials of an `Authorization: Bearer <token>` header value.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(name: &str, token: &str, role: Role) -> ApiToken {
        ApiToken {
            name: name.into(),
            token: token.into(),
            role,
        }
    }

    #[test]
    fn finds_the_matching_entry() {
        let t = Tokens::new(&[
            tok("a", "alpha", Role::Write),
            tok("b", "beta", Role::Read),
            tok("c", "gamma", Role::Write),
        ]);
        assert_eq!(&*t.find(b"beta").unwrap().name, "b");
        assert_eq!(&*t.find(b"gamma").unwrap().name, "c");
        assert_eq!(&*t.find(b"alpha").unwrap().name, "a");
        assert!(t.find(b"alph").is_none());
        assert!(t.find(b"").is_none());
        assert!(Tokens::default().find(b"x").is_none());
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"BEARER abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Bearer"), None);
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bear"), None);
    }
}
