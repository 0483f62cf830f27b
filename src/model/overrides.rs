//! Overrides: an operator's hand on one target of one NameService, with a reason
//! and an expiry. Stored apart from the NameService (the resource an automation
//! PUTs must not wipe an operator's drain), compiled into its snapshot entry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ValidationError;

/// What an override does to its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OverrideState {
    /// Never answered, not even when failing open (a temporary `enabled: false`).
    Drain,
    /// Eligible whatever its health checks say.
    ForceHealthy,
    /// Not eligible whatever its health checks say (it may still be answered when
    /// failing open or in panic, like any unhealthy target).
    ForceUnhealthy,
}

impl OverrideState {
    pub fn as_str(self) -> &'static str {
        match self {
            OverrideState::Drain => "Drain",
            OverrideState::ForceHealthy => "ForceHealthy",
            OverrideState::ForceUnhealthy => "ForceUnhealthy",
        }
    }
}

pub const DEFAULT_OVERRIDE_TTL_SECONDS: u32 = 3600;
pub const MAX_OVERRIDE_TTL_SECONDS: u32 = 604_800;
/// Longest `reason`, in bytes: it is shown in status, events and the page.
pub const MAX_REASON_LEN: usize = 1024;

/// A stored override: what was asked, when and by whom, and when it ends.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Override {
    pub state: OverrideState,
    pub reason: String,
    pub ttl_seconds: u32,
    /// Unix milliseconds.
    pub created_at_ms: u64,
    /// Unix milliseconds: `created_at_ms + ttl_seconds * 1000`. From then on the
    /// override is gone, on the answer path at once, from the store soon after.
    pub expires_at_ms: u64,
    /// The API token's name that set it (`None` when no token names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

impl Override {
    /// True while it acts, at `now_ms`.
    #[inline]
    pub fn active(&self, now_ms: u64) -> bool {
        now_ms < self.expires_at_ms
    }
}

/// The overrides of one NameService, by target name.
pub type TargetOverrides = BTreeMap<String, Override>;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OverrideInput {
    state: Option<OverrideState>,
    reason: Option<String>,
    ttl_seconds: Option<u32>,
}

impl Override {
    /// Validates a request body (`{"state", "reason", "ttlSeconds"}`) made at
    /// `now_ms` by `by`.
    pub fn from_json(
        value: serde_json::Value,
        now_ms: u64,
        by: Option<String>,
    ) -> Result<Self, ValidationError> {
        fn err(f: impl Into<String>, m: impl Into<String>) -> ValidationError {
            ValidationError::new(f, m)
        }
        if !value.is_object() {
            return Err(err("", "the body must be a JSON object"));
        }
        let input: OverrideInput = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let message = e.into_inner().to_string();
            let field = match message
                .strip_prefix("unknown field `")
                .and_then(|rest| rest.split('`').next())
            {
                Some(unknown) => unknown.to_string(),
                None if path == "." => String::new(),
                None => path,
            };
            err(field, message)
        })?;
        let state = input.state.ok_or_else(|| {
            err(
                "state",
                "state is required: one of Drain, ForceHealthy, ForceUnhealthy",
            )
        })?;
        let reason = input
            .reason
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .ok_or_else(|| {
                err(
                    "reason",
                    "reason is required: say why, for the next operator",
                )
            })?;
        if reason.len() > MAX_REASON_LEN {
            return Err(err(
                "reason",
                format!(
                    "reason must be at most {MAX_REASON_LEN} bytes, got {}",
                    reason.len()
                ),
            ));
        }
        let ttl_seconds = input.ttl_seconds.unwrap_or(DEFAULT_OVERRIDE_TTL_SECONDS);
        if !(1..=MAX_OVERRIDE_TTL_SECONDS).contains(&ttl_seconds) {
            return Err(err(
                "ttlSeconds",
                format!(
                    "ttlSeconds must be between 1 and {MAX_OVERRIDE_TTL_SECONDS}, got {ttl_seconds}"
                ),
            ));
        }
        Ok(Self {
            state,
            reason,
            ttl_seconds,
            created_at_ms: now_ms,
            expires_at_ms: now_ms + u64::from(ttl_seconds) * 1000,
            by,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fills_defaults_and_dates() {
        let o = Override::from_json(
            json!({"state": "Drain", "reason": " maintenance "}),
            1_000,
            Some("ops".into()),
        )
        .unwrap();
        assert_eq!(o.state, OverrideState::Drain);
        assert_eq!(o.reason, "maintenance");
        assert_eq!(o.ttl_seconds, 3600);
        assert_eq!((o.created_at_ms, o.expires_at_ms), (1_000, 3_601_000));
        assert!(o.active(3_600_999) && !o.active(3_601_000));
        let back: Override = serde_json::from_value(serde_json::to_value(&o).unwrap()).unwrap();
        assert_eq!(back, o);
    }

    #[test]
    fn rejects_each_broken_rule_naming_the_field() {
        let long = "x".repeat(MAX_REASON_LEN + 1);
        let cases = [
            ("state", json!({"reason": "r"})),
            ("state", json!({"state": "Off", "reason": "r"})),
            ("reason", json!({"state": "Drain"})),
            ("reason", json!({"state": "Drain", "reason": "  "})),
            ("reason", json!({"state": "Drain", "reason": 5})),
            ("reason", json!({"state": "Drain", "reason": long})),
            (
                "ttlSeconds",
                json!({"state": "Drain", "reason": "r", "ttlSeconds": 604801}),
            ),
            (
                "ttlSeconds",
                json!({"state": "Drain", "reason": "r", "ttlSeconds": 0}),
            ),
            (
                "ttlSeconds",
                json!({"state": "Drain", "reason": "r", "ttlSeconds": -1}),
            ),
            (
                "expiresAt",
                json!({"state": "Drain", "reason": "r", "expiresAt": 1}),
            ),
            ("", json!(["Drain"])),
        ];
        for (field, body) in cases {
            let e = Override::from_json(body.clone(), 0, None).expect_err(&body.to_string());
            assert_eq!(e.field, field, "{body}: {e}");
        }
        Override::from_json(
            json!({"state": "ForceUnhealthy", "reason": "r", "ttlSeconds": 604800}),
            0,
            None,
        )
        .unwrap();
    }
}
