//! The `status` block of a NameService: per-target health and the Ready condition.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use crate::health::{EndpointStatus, Health, HealthHub};
use crate::model::{NameService, TargetOverrides};
use crate::resolver::Resolvers;
use crate::snapshot::{AnswerCounts, ServiceEntry};
use crate::timefmt::rfc3339;

/// What the status of an fqdn target needs besides the resource: its published
/// entry (the addresses it was compiled with) and the resolvers (the last error).
#[derive(Clone, Copy, Default)]
pub(crate) struct Resolved<'a> {
    pub entry: Option<&'a ServiceEntry>,
    pub resolvers: Option<&'a Resolvers>,
}

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
    /// `null` for an fqdn target.
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
    /// The addresses the target answers and the health of each: its address, or
    /// what its fqdn resolved to (empty before the first resolution).
    pub addresses: Vec<AddressStatus>,
    /// Why the last resolution of the fqdn failed; `null` when it succeeded (and
    /// for an address target).
    pub resolve_error: Option<String>,
    pub health: Health,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub last_probe_time: Option<String>,
    pub last_error: Option<String>,
    /// Answers that included this target since this instance started (counted on
    /// the DNS path; carried over when the resource is replaced and the target keeps
    /// its name).
    pub answers: u64,
    /// Present while flap damping holds the target out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damping: Option<DampingStatus>,
    /// The operator's override of this target while it lasts.
    #[serde(rename = "override")]
    pub override_: Option<OverrideStatus>,
    /// In a fleet (etcd backend): what each live instance published as its own
    /// verdict of the target's endpoint, sorted by instance; absent for an instance
    /// alone and for a target without a health check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observations: Option<Vec<ObservationStatus>>,
}

/// One instance's published verdict of a target (CONTRACT §7).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ObservationStatus {
    pub instance: String,
    pub health: Health,
    /// RFC 3339: the probe that decided it.
    pub last_probe_time: Option<String>,
}

/// Why flap damping holds a target out (`healthCheck.flapDamping`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DampingStatus {
    /// `FailureRate` (at least half of the recent probes failed) or `Flapping` (the
    /// verdict changed 4 times within 120 s).
    pub reason: &'static str,
    pub message: String,
    /// Flapping: when the hold ends if every probe passes until then (RFC 3339);
    /// `null` while probes still fail, and for FailureRate.
    pub until: Option<String>,
}

impl DampingStatus {
    fn of(h: crate::health::machine::Hold) -> Self {
        use crate::health::machine::Hold;
        let (reason, until) = match h {
            Hold::FailureRate { .. } => ("FailureRate", None),
            Hold::Flapping { until_ms, .. } => {
                ("Flapping", until_ms.map(|ms| rfc3339(ms.div_ceil(1000))))
            }
        };
        Self {
            reason,
            message: h.to_string(),
            until,
        }
    }
}

/// An override as `status.targets[].override` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OverrideStatus {
    pub state: &'static str,
    pub reason: String,
    pub created_at: String,
    pub expires_at: String,
    pub by: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AddressStatus {
    pub address: String,
    pub health: Health,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Status {
    pub conditions: Vec<Condition>,
    pub targets: Vec<TargetStatus>,
}

/// The last Ready reason computed for a NameService and when it last changed.
#[derive(Debug, Clone)]
struct ReadyMemo {
    reason: &'static str,
    since: u64,
}

/// The Ready conditions of every NameService.
///
/// **Architecture Invariant:** a condition is computed in one place,
/// [`Book::refresh`], when something it depends on changes — the committer calls it
/// for every NameService it publishes, the health follower
/// ([`super::Registry::follow_health`]) for every NameService a verdict change
/// names — so `lastTransitionTime` is the time of the change. Reading the status
/// (GET, list) never writes.
#[derive(Debug, Default)]
pub(crate) struct Book {
    memos: Mutex<HashMap<Arc<str>, ReadyMemo>>,
}

/// One target's status and when its verdict last changed.
struct Row {
    status: TargetStatus,
    enabled: bool,
    last_change_time: Option<u64>,
}

impl Book {
    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, ReadyMemo>> {
        self.memos.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the Ready condition of `spec` now: a change of its reason is dated
    /// `at` (the time of the health change or of the write that caused it).
    pub fn refresh(&self, spec: &NameService, health: &HealthHub, r: Resolved<'_>, at: u64) {
        let rows = rows(spec, health, r);
        let (_, reason, _) = ready(&rows);
        let mut memos = self.lock();
        match memos.get_mut(spec.name.as_str()) {
            Some(m) if m.reason == reason => {}
            Some(m) => {
                m.reason = reason;
                m.since = at;
            }
            None => {
                memos.insert(spec.name.as_str().into(), ReadyMemo { reason, since: at });
            }
        }
    }

    /// The condition of a NameService loaded at startup, whose targets' verdicts may
    /// have been restored from the store: dated by the latest verdict change among
    /// its enabled targets (the change that set the current reason, as far as can be
    /// known without storing conditions), else `now`.
    pub fn restore(&self, spec: &NameService, health: &HealthHub, r: Resolved<'_>, now: u64) {
        let rows = rows(spec, health, r);
        let since = latest_change(&rows).map_or(now, |t| t.min(now));
        self.lock().remove(spec.name.as_str());
        self.refresh(spec, health, r, since);
    }

    /// Forgets a deleted NameService.
    pub fn forget(&self, name: &str) {
        self.lock().remove(name);
    }

    /// The status of `spec` now, with the `answers` counted for its published entry.
    /// Read-only: a health change whose event is still on its way to the follower
    /// shows its reason already, dated by the verdict change (what the follower is
    /// about to record).
    pub fn view(
        &self,
        spec: &NameService,
        health: &HealthHub,
        r: Resolved<'_>,
        answers: Option<&AnswerCounts>,
        overrides: Option<&TargetOverrides>,
    ) -> Status {
        let now_ms = crate::timefmt::now_unix_ms();
        let rows = rows(spec, health, r);
        let (status, reason, message) = ready(&rows);
        let memo = self.lock().get(spec.name.as_str()).cloned();
        let since = match memo {
            Some(m) if m.reason == reason => m.since,
            _ => latest_change(&rows).unwrap_or_else(crate::timefmt::now_unix),
        };
        Status {
            conditions: vec![Condition {
                kind: "Ready",
                status,
                reason,
                message,
                last_transition_time: rfc3339(since),
            }],
            targets: rows
                .into_iter()
                .map(|r| TargetStatus {
                    answers: answers
                        .and_then(|a| a.get_by_name(&r.status.name))
                        .unwrap_or(0),
                    override_: overrides
                        .and_then(|o| o.get(&r.status.name))
                        .filter(|o| o.active(now_ms))
                        .map(|o| OverrideStatus {
                            state: o.state.as_str(),
                            reason: o.reason.clone(),
                            created_at: rfc3339(o.created_at_ms / 1000),
                            expires_at: rfc3339(o.expires_at_ms / 1000),
                            by: o.by.clone(),
                        }),
                    ..r.status
                })
                .collect(),
        }
    }
}

/// The latest verdict change among the enabled targets.
fn latest_change(rows: &[Row]) -> Option<u64> {
    rows.iter()
        .filter(|r| r.enabled)
        .filter_map(|r| r.last_change_time)
        .max()
}

fn rows(spec: &NameService, health: &HealthHub, r: Resolved<'_>) -> Vec<Row> {
    spec.targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            // (address, its endpoint's status) for every address the target answers.
            let addresses: Vec<(std::net::IpAddr, Option<EndpointStatus>)> = match t.address {
                Some(a) => vec![(a, spec.endpoint(i).and_then(|ep| health.status(&ep)))],
                None => r
                    .entry
                    .map(|e| {
                        e.v4.iter()
                            .chain(&e.v6)
                            .filter(|x| x.index == i)
                            .map(|x| {
                                let st = spec
                                    .endpoint_at(i, x.address)
                                    .and_then(|ep| health.status(&ep));
                                (x.address, st)
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            let resolve_error = t.fqdn.as_deref().and_then(|n| r.resolvers?.get(n)?.error);
            let of = |st: &Option<EndpointStatus>| match st {
                Some(s) => s.health,
                None if spec.health_check.is_none() => Health::Unchecked,
                None => Health::Pending,
            };
            // The target's verdict: its address's; for an fqdn target the best of its
            // addresses' (Healthy, then Unchecked, then Pending), and with no address
            // Pending while the first resolution is under way, Unhealthy once it
            // failed.
            let rank = |h: Health| match h {
                Health::Healthy => 0,
                Health::Unchecked => 1,
                Health::Pending => 2,
                Health::Unhealthy => 3,
            };
            let best = addresses.iter().min_by_key(|(_, st)| rank(of(st)));
            let health = match best {
                Some((_, st)) => of(st),
                None if resolve_error.is_some() => Health::Unhealthy,
                None => Health::Pending,
            };
            let decider = best.and_then(|(_, st)| st.clone());
            let status = TargetStatus {
                name: t.name.clone(),
                address: t.address.map(|a| a.to_string()),
                fqdn: t.fqdn.clone(),
                addresses: addresses
                    .iter()
                    .map(|(a, st)| AddressStatus {
                        address: a.to_string(),
                        health: of(st),
                    })
                    .collect(),
                resolve_error,
                health,
                consecutive_failures: decider.as_ref().map_or(0, |s| s.consecutive_failures),
                consecutive_successes: decider.as_ref().map_or(0, |s| s.consecutive_successes),
                last_probe_time: decider
                    .as_ref()
                    .and_then(|s| s.last_probe_time)
                    .map(rfc3339),
                last_error: decider.as_ref().and_then(|s| s.last_error.clone()),
                answers: 0,
                damping: decider
                    .as_ref()
                    .and_then(|s| s.damping)
                    .map(DampingStatus::of),
                override_: None,
                observations: decider.as_ref().and_then(|s| {
                    s.observations.as_ref().map(|obs| {
                        obs.iter()
                            .map(|(instance, o)| ObservationStatus {
                                instance: instance.to_string(),
                                health: o.health,
                                last_probe_time: o.last_probe_time.map(rfc3339),
                            })
                            .collect()
                    })
                }),
            };
            Row {
                status,
                enabled: t.enabled,
                last_change_time: decider.and_then(|s| s.last_change_time),
            }
        })
        .collect()
}

/// The Ready condition's status, reason and message, over the enabled targets
/// (drained targets do not count towards readiness).
fn ready(rows: &[Row]) -> (&'static str, &'static str, String) {
    let enabled: Vec<&TargetStatus> = rows
        .iter()
        .filter(|r| r.enabled)
        .map(|r| &r.status)
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
    let message = if pending > 0 && up == 0 {
        format!("{pending} of {total} enabled targets awaiting their first health verdict")
    } else {
        format!("{up} of {total} targets healthy")
    };
    (status, reason, message)
}
