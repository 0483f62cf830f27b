//! `GET /api/v1/nameservices/{name}/explain?client=IP[&ecs=CIDR][&type=A|AAAA]`: the
//! decision the DNS path makes for that client, computed by the same code
//! ([`crate::policy::explain`]).

use std::collections::HashMap;
use std::net::IpAddr;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;

use super::{ApiError, AppState};
use crate::model::normalize_name;
use crate::policy::explain::{Explanation, Question, explain as run};
use crate::registry::RegistryError;

fn bad(param: &str, message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message).with_field(param)
}

/// `ecs=ADDRESS/PREFIX` (a bare address is a full-length prefix); host bits past
/// the prefix are cleared, as a resolver sends them.
fn parse_ecs(s: &str) -> Result<(IpAddr, u8), ApiError> {
    let (a, p) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = a.parse().map_err(|_| {
        bad(
            "ecs",
            format!("ecs must be ADDRESS/PREFIX-LENGTH, got {s:?}"),
        )
    })?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match p {
        None => max,
        Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
            bad(
                "ecs",
                format!("ecs prefix length must be 0 to {max}, got {p:?}"),
            )
        })?,
    };
    let masked = match addr {
        IpAddr::V4(v) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(v) & m).into())
        }
        IpAddr::V6(v) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(v) & m).into())
        }
    };
    Ok((masked, prefix))
}

pub async fn explain(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Explanation>, ApiError> {
    let Query(params) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let raw = path
        .map(|Path(n)| n)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    for k in params.keys() {
        if !matches!(k.as_str(), "client" | "ecs" | "type") {
            return Err(bad(
                k,
                format!("unknown query parameter {k:?}: use client, ecs and type"),
            ));
        }
    }
    let client: IpAddr = match params.get("client") {
        None => {
            return Err(bad(
                "client",
                "client=IP is required: the address the query comes from".into(),
            ));
        }
        Some(c) => c.parse().map_err(|_| {
            bad(
                "client",
                format!("client must be an IPv4 or IPv6 address, got {c:?}"),
            )
        })?,
    };
    let ecs = params.get("ecs").map(|e| parse_ecs(e)).transpose()?;
    let v6 = match params
        .get("type")
        .map(|t| t.to_ascii_uppercase())
        .as_deref()
    {
        None | Some("A") => false,
        Some("AAAA") => true,
        Some(other) => {
            return Err(bad(
                "type",
                format!("type must be A or AAAA, got {other:?}"),
            ));
        }
    };
    let name = normalize_name(&raw).map_err(|_| RegistryError::NotFound(raw.clone()))?;
    let snap = state.registry.snapshot_handle().load_full();
    let entry = snap
        .service(&name)
        .ok_or_else(|| RegistryError::NotFound(raw.clone()))?;
    let q = Question {
        client,
        ecs,
        v6,
        now_ms: crate::timefmt::now_unix_ms(),
    };
    // An Unhealthy verdict that flap damping holds out says so (the detail of the
    // address's reason); the health module keeps the hold with the verdict.
    let health = state.registry.health();
    let damping = |i: usize, address: IpAddr| {
        let ep = entry.spec.endpoint_at(i, address)?;
        health.status(&ep)?.damping.map(|h| h.to_string())
    };
    Ok(Json(run(
        entry,
        &snap.topology,
        &q,
        entry.overrides.as_deref(),
        damping,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecs_parameter() {
        let ok = [
            ("10.1.2.3/24", ("10.1.2.0", 24)),
            ("10.1.2.3", ("10.1.2.3", 32)),
            ("2001:db8::1/56", ("2001:db8::", 56)),
            ("0.0.0.0/0", ("0.0.0.0", 0)),
        ];
        for (s, (a, p)) in ok {
            assert_eq!(parse_ecs(s).unwrap(), (a.parse().unwrap(), p), "{s}");
        }
        for s in ["10.1.2.3/33", "x/24", "10.1.2.3/", "2001:db8::/129"] {
            let e = parse_ecs(s).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.field.as_deref()),
                (400, Some("ecs")),
                "{s}"
            );
        }
    }
}
