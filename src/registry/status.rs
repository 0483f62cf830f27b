//! The `status` block of a NameService: per-target health and the Ready condition.

use serde::Serialize;

use crate::health::{Health, HealthHub};
use crate::model::NameService;
use crate::snapshot::AnswerCounts;
use crate::timefmt::rfc3339;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
    pub last_transition_time: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    pub name: String,
    pub address: String,
    pub health: Health,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub last_probe_time: Option<String>,
    pub last_error: Option<String>,
    /// Answers that included this target since this instance started (counted on
    /// the DNS path; carried over when the resource is replaced and the target keeps
    /// its name).
    pub answers: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Status {
    pub conditions: Vec<Condition>,
    pub targets: Vec<TargetStatus>,
}

/// The last Ready verdict seen for a NameService and when it last changed.
#[derive(Debug, Clone)]
pub(crate) struct ReadyMemo {
    reason: &'static str,
    since: u64,
}

impl ReadyMemo {
    pub(crate) fn initial(now: u64) -> Self {
        Self {
            reason: "",
            since: now,
        }
    }

    /// The memo of a NameService loaded at startup, whose targets' verdicts may have
    /// been restored from the store: the condition is dated by the latest verdict
    /// change among its enabled targets (the change that set the current reason, as
    /// far as can be known without storing conditions), else now.
    pub(crate) fn restored(spec: &NameService, health: &HealthHub, now: u64) -> Self {
        let since = spec
            .targets
            .iter()
            .enumerate()
            .filter(|(_, t)| t.enabled)
            .filter_map(|(i, _)| health.status(&spec.endpoint(i)?)?.last_change_time)
            .max()
            .map_or(now, |t| t.min(now));
        let mut memo = Self { reason: "", since };
        compute(spec, health, None, &mut memo, now);
        memo
    }
}

/// The status of `spec` now, with the `answers` counted for its published entry;
/// records in `memo` a change of the Ready reason as happening at `now` (the time of
/// the health change when called from the change hook).
pub(crate) fn compute(
    spec: &NameService,
    health: &HealthHub,
    answers: Option<&AnswerCounts>,
    memo: &mut ReadyMemo,
    now: u64,
) -> Status {
    let mut targets: Vec<TargetStatus> = spec
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let st = spec.endpoint(i).and_then(|ep| health.status(&ep));
            match st {
                None if spec.health_check.is_none() => TargetStatus {
                    name: t.name.clone(),
                    address: t.address.to_string(),
                    health: Health::Unchecked,
                    consecutive_failures: 0,
                    consecutive_successes: 0,
                    last_probe_time: None,
                    last_error: None,
                    answers: 0,
                },
                None => TargetStatus {
                    name: t.name.clone(),
                    address: t.address.to_string(),
                    health: Health::Pending,
                    consecutive_failures: 0,
                    consecutive_successes: 0,
                    last_probe_time: None,
                    last_error: None,
                    answers: 0,
                },
                Some(s) => TargetStatus {
                    name: t.name.clone(),
                    address: t.address.to_string(),
                    health: s.health,
                    consecutive_failures: s.consecutive_failures,
                    consecutive_successes: s.consecutive_successes,
                    last_probe_time: s.last_probe_time.map(rfc3339),
                    last_error: s.last_error,
                    answers: 0,
                },
            }
        })
        .collect();
    if let Some(a) = answers {
        for t in &mut targets {
            t.answers = a.get_by_name(&t.name).unwrap_or(0);
        }
    }

    // Drained targets do not count towards readiness.
    let enabled: Vec<&TargetStatus> = targets
        .iter()
        .zip(&spec.targets)
        .filter(|(_, t)| t.enabled)
        .map(|(s, _)| s)
        .collect();
    let total = enabled.len();
    let up = enabled.iter().filter(|s| s.health.is_up()).count();
    let pending = enabled
        .iter()
        .filter(|s| s.health == Health::Pending)
        .count();
    let (status, reason) = if total > 0 && up == total {
        ("True", "AllTargetsHealthy")
    } else if up > 0 {
        ("True", "SomeTargetsUnhealthy")
    } else if pending > 0 {
        ("False", "Pending")
    } else {
        ("False", "NoHealthyTargets")
    };
    if memo.reason != reason {
        if !memo.reason.is_empty() {
            memo.since = now;
        }
        memo.reason = reason;
    }
    let message = if pending > 0 && up == 0 {
        format!("{pending} of {total} enabled targets awaiting their first health verdict")
    } else {
        format!("{up} of {total} targets healthy")
    };
    Status {
        conditions: vec![Condition {
            kind: "Ready",
            status,
            reason,
            message,
            last_transition_time: rfc3339(memo.since),
        }],
        targets,
    }
}
