//! Query-string parameters: every parameter known, each at most once, numbers in
//! range; a violation is 400 naming the parameter.

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::StatusCode;

use super::ApiError;

/// The parameters of one request, checked against the names a route accepts.
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses the query string; a parameter not in `known`, or given twice, is 400.
    pub fn parse(
        q: Result<Query<Vec<(String, String)>>, QueryRejection>,
        known: &[&str],
    ) -> Result<Self, ApiError> {
        let Query(pairs) = q.map_err(|e| {
            bad(
                "",
                format!("the query string is not valid: {}", e.body_text()),
            )
        })?;
        for (i, (k, _)) in pairs.iter().enumerate() {
            if !known.contains(&k.as_str()) {
                return Err(bad(
                    k,
                    format!(
                        "unknown query parameter {k:?}; this call takes {}",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
            if pairs[..i].iter().any(|(p, _)| p == k) {
                return Err(bad(k, format!("query parameter {k:?} is given twice")));
            }
        }
        Ok(Self(pairs))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// An integer parameter in `range`, if given.
    pub fn number(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<usize>,
    ) -> Result<Option<usize>, ApiError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        v.parse::<usize>()
            .ok()
            .filter(|n| range.contains(n))
            .map(Some)
            .ok_or_else(|| {
                bad(
                    name,
                    format!(
                        "query parameter {name}={v:?} must be an integer {}..={}",
                        range.start(),
                        range.end()
                    ),
                )
            })
    }
}

fn bad(field: &str, message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message).with_field(field)
}
