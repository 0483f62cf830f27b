//! How health leaves this module: events on a broadcast channel.
//!
//! Every change of a verdict the answers use is a [`HealthEvent::Verdict`], emitted
//! by [`Bus::verdict`] — the one place that counts it in the metrics, logs it once
//! and hands it to every subscriber (the registry's Ready conditions, the
//! persistence task, the event log, ...). Its [`Source`] says what decided it: this
//! instance's own probes, or the quorum of the fleet's observations; both are the
//! same kind of event, so a subscriber never needs to know which mode runs.
//!
//! Subscribers get a `tokio::sync::broadcast` receiver. A subscriber that falls more
//! than [`CAPACITY`] events behind gets `Lagged` instead of the lost events and must
//! resynchronise from the current state (the health table is always readable):
//! events say *that* something changed and when, the table says what *is*.

use std::fmt;
use std::sync::Arc;

use tokio::sync::broadcast;

use super::machine::{Hold, Streak};
use super::{Health, Holder, ProbeKey, Tally};
use crate::model::Endpoint;

/// Events buffered per subscriber before a slow one lags (and resynchronises).
pub const CAPACITY: usize = 16_384;

/// What decided a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// This instance's own probes (`[health] quorum = "local"`, or cut off from the
    /// fleet).
    Local,
    /// The majority of the fleet's observations (`quorum = "majority"`).
    Quorum,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Local => "local",
            Source::Quorum => "quorum",
        }
    }
}

/// Why a verdict changed, in words an operator can act on (see its `Display`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The probes' run reached a threshold: `successThreshold` successes or
    /// `failureThreshold` failures in a row.
    Probes {
        streak: Streak,
        last_error: Option<String>,
    },
    /// Flap damping holds the target out (`healthCheck.flapDamping`).
    Damped(Hold),
    /// The majority of the live observers' published verdicts
    /// (`[health] quorum = "majority"`).
    Quorum(Tally),
    /// This instance is cut off from etcd for longer than its lease: its own verdict
    /// decides until it is back.
    Alone,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Probes { streak, last_error } => {
                let plural = |n: u32| if n == 1 { "" } else { "s" };
                if streak.successes > 0 {
                    write!(
                        f,
                        "{} consecutive successful probe{}",
                        streak.successes,
                        plural(streak.successes)
                    )
                } else {
                    write!(
                        f,
                        "{} consecutive failed probe{}, last: {}",
                        streak.failures,
                        plural(streak.failures),
                        last_error.as_deref().unwrap_or_default()
                    )
                }
            }
            Reason::Damped(h) => h.fmt(f),
            Reason::Quorum(t) => {
                let say = |n: u32| if n == 1 { "says" } else { "say" };
                if 2 * t.healthy > t.observers {
                    write!(
                        f,
                        "{} of {} live observers {} Healthy",
                        t.healthy,
                        t.observers,
                        say(t.healthy)
                    )
                } else if 2 * t.unhealthy > t.observers {
                    write!(
                        f,
                        "{} of {} live observers {} Unhealthy",
                        t.unhealthy,
                        t.observers,
                        say(t.unhealthy)
                    )
                } else {
                    write!(
                        f,
                        "no majority among {} live observers ({} Healthy, {} Unhealthy): verdict kept",
                        t.observers, t.healthy, t.unhealthy
                    )
                }
            }
            Reason::Alone => f.write_str(
                "cut off from etcd for longer than the lease: this instance's own verdict",
            ),
        }
    }
}

/// A change of the verdict the answers use.
#[derive(Debug, Clone)]
pub struct VerdictChange {
    pub endpoint: Endpoint,
    pub old: Health,
    pub new: Health,
    /// Unix milliseconds.
    pub at_ms: u64,
    pub reason: Reason,
    pub source: Source,
    /// Every target holding the verdict, sorted (a PUT in progress may hold it
    /// twice: listed once).
    pub holders: Arc<[Holder]>,
}

impl VerdictChange {
    /// Unix seconds (the resolution of the status block).
    pub fn at(&self) -> u64 {
        self.at_ms / 1000
    }

    /// The NameServices holding the verdict, sorted, without duplicates.
    pub fn nameservices(&self) -> impl Iterator<Item = &Arc<str>> {
        let mut last: Option<&Arc<str>> = None;
        self.holders.iter().filter_map(move |h| {
            if last == Some(&h.nameservice) {
                return None;
            }
            last = Some(&h.nameservice);
            last
        })
    }
}

/// What leaves the health module.
#[derive(Debug, Clone)]
pub enum HealthEvent {
    /// A verdict the answers use changed (its cell already holds the new value).
    Verdict(VerdictChange),
    /// This instance's own thresholded verdict of an endpoint changed: what it
    /// publishes to the fleet as its observation. In `quorum = "local"` mode a
    /// [`HealthEvent::Verdict`] with the same values follows.
    Local {
        endpoint: Endpoint,
        health: Health,
        /// Unix seconds of the probe that decided it.
        last_probe_time: Option<u64>,
    },
    /// What a probe stream has to remember changed without a verdict changing (its
    /// outcome flipped, or a verdict was created on it): worth persisting.
    Stream { key: ProbeKey },
    /// No target holds this verdict any more: forget it.
    Released { endpoint: Endpoint },
}

/// The sending side, owned by the health hub.
#[derive(Debug)]
pub struct Bus {
    tx: broadcast::Sender<Arc<HealthEvent>>,
}

impl Default for Bus {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl Bus {
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<HealthEvent>> {
        self.tx.subscribe()
    }

    /// Sends `event` to every subscriber; nobody listening is fine.
    pub fn send(&self, event: HealthEvent) {
        let _ = self.tx.send(Arc::new(event));
    }

    /// Logs a verdict change once and sends it. Callers hold the lock of the probe
    /// stream the verdict lives on, so the changes of one verdict leave in order.
    pub fn verdict(&self, change: VerdictChange) {
        tracing::info!(
            targets = %holder_summary(&change.holders),
            address = %change.endpoint.address,
            port = change.endpoint.port,
            old = %change.old.as_str(),
            new = %change.new.as_str(),
            source = change.source.as_str(),
            reason = %change.reason,
            "target health {} -> {}",
            change.old.as_str(),
            change.new.as_str(),
        );
        self.send(HealthEvent::Verdict(change));
    }
}

/// `ns/target` of the first few holders, and how many more.
pub fn holder_summary(holders: &[Holder]) -> String {
    use std::fmt::Write as _;
    const SHOWN: usize = 5;
    let mut s = String::new();
    for (i, h) in holders.iter().take(SHOWN).enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{}/{}", h.nameservice, h.target);
    }
    if holders.len() > SHOWN {
        let _ = write!(s, " (+{} more)", holders.len() - SHOWN);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_summary_is_bounded() {
        let holders: Vec<Holder> = (0..8)
            .map(|i| Holder::new(&format!("n{i}.example"), "dc1"))
            .collect();
        assert_eq!(
            holder_summary(&holders),
            "n0.example/dc1, n1.example/dc1, n2.example/dc1, n3.example/dc1, n4.example/dc1 (+3 more)"
        );
    }

    #[test]
    fn reasons_read_well() {
        let ok = Reason::Probes {
            streak: Streak {
                successes: 1,
                failures: 0,
            },
            last_error: None,
        };
        assert_eq!(ok.to_string(), "1 consecutive successful probe");
        let down = Reason::Probes {
            streak: Streak {
                successes: 0,
                failures: 3,
            },
            last_error: Some("connection refused".into()),
        };
        assert_eq!(
            down.to_string(),
            "3 consecutive failed probes, last: connection refused"
        );
    }

    #[test]
    fn nameservices_are_listed_once() {
        let c = VerdictChange {
            endpoint: Endpoint {
                address: "127.0.0.1".parse().unwrap(),
                port: 1,
                check: crate::model::Check::Tcp,
                period_seconds: 1,
                timeout_seconds: 1,
                failure_threshold: 1,
                success_threshold: 1,
                flap_damping: false,
            },
            old: Health::Pending,
            new: Health::Healthy,
            at_ms: 1_500,
            reason: Reason::Probes {
                streak: Streak::default(),
                last_error: None,
            },
            source: Source::Local,
            holders: vec![
                Holder::new("a.example", "dc1"),
                Holder::new("a.example", "dc2"),
                Holder::new("b.example", "dc1"),
            ]
            .into(),
        };
        let names: Vec<&str> = c.nameservices().map(|n| &**n).collect();
        assert_eq!(names, ["a.example", "b.example"]);
        assert_eq!(c.at(), 1);
    }
}
