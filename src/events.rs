//! A bounded, in-memory log of recent events: health transitions, overrides,
//! writes, reloads. `GET /api/v1/events` serves it newest first; the status page
//! shows it.
//!
//! Whoever sees an event records it here, once: the API handlers record writes
//! and overrides (they know the name of the token that made them), a subscriber
//! of the health module's changes records health transitions, the registry
//! records reloads. Recording is a short critical section on the control plane
//! (never on the DNS path) and never fails: when the log is full the oldest
//! event goes.
//!
//! The log is per instance and lives in memory: in a fleet each instance shows
//! what it saw (every event names its instance), and a restart starts it empty.
//! Logs (`tracing`) stay the durable record; this is the operator's recent view.
//!
//! ```
//! use gslb::events::{EventKind, EventLog, NewEvent, Query};
//! let log = EventLog::new("dc1-a", 100);
//! log.record(
//!     NewEvent::new(EventKind::HealthChanged, "Healthy -> Unhealthy: 3 consecutive failed probes")
//!         .nameservice("app.gslb.example")
//!         .target("dc1"),
//! );
//! let recent = log.recent(&Query::default());
//! assert_eq!(recent[0].target.as_deref(), Some("dc1"));
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// How many events the server keeps by default.
pub const DEFAULT_CAPACITY: usize = 1000;

/// What happened. Serialized as the variant name (`"HealthChanged"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// A NameService was created through the API.
    Created,
    /// A NameService was replaced through the API (a PUT that changed nothing
    /// records nothing).
    Replaced,
    /// A NameService was deleted through the API.
    Deleted,
    /// A target's health verdict changed (old -> new and why, in the message).
    HealthChanged,
    /// An override (Drain, ForceHealthy, ForceUnhealthy) was set on a target.
    OverrideSet,
    /// An override was removed through the API.
    OverrideRemoved,
    /// An override ran out (its ttlSeconds passed).
    OverrideExpired,
    /// Zones and topology were reloaded (SIGHUP or `POST /api/v1/reload`).
    Reloaded,
}

impl EventKind {
    pub const ALL: [EventKind; 8] = [
        Self::Created,
        Self::Replaced,
        Self::Deleted,
        Self::HealthChanged,
        Self::OverrideSet,
        Self::OverrideRemoved,
        Self::OverrideExpired,
        Self::Reloaded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "Created",
            Self::Replaced => "Replaced",
            Self::Deleted => "Deleted",
            Self::HealthChanged => "HealthChanged",
            Self::OverrideSet => "OverrideSet",
            Self::OverrideRemoved => "OverrideRemoved",
            Self::OverrideExpired => "OverrideExpired",
            Self::Reloaded => "Reloaded",
        }
    }

    /// The kind named `s` (as serialized), if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// An event as recorded and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Increases by one with every event this instance records (since start).
    pub id: u64,
    /// When it was recorded, RFC 3339 UTC with milliseconds.
    pub time: String,
    pub kind: EventKind,
    /// The NameService concerned, if one is.
    pub nameservice: Option<String>,
    /// The target (of that NameService) concerned, if one is.
    pub target: Option<String>,
    /// One human sentence: what changed and why.
    pub message: String,
    /// The name of the API token that made the change (writes and overrides);
    /// `None` for what the server did by itself, or when the API has no token.
    pub token: Option<String>,
    /// The instance that recorded it.
    pub instance: String,
}

/// An event to record; the log adds id, time and instance.
#[derive(Debug, Clone)]
pub struct NewEvent {
    kind: EventKind,
    message: String,
    nameservice: Option<String>,
    target: Option<String>,
    token: Option<String>,
}

impl NewEvent {
    pub fn new(kind: EventKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            nameservice: None,
            target: None,
            token: None,
        }
    }

    pub fn nameservice(mut self, name: impl Into<String>) -> Self {
        self.nameservice = Some(name.into());
        self
    }

    pub fn target(mut self, name: impl Into<String>) -> Self {
        self.target = Some(name.into());
        self
    }

    /// The name of the token that made the change (`None`: no token in use).
    pub fn token(mut self, name: Option<&str>) -> Self {
        self.token = name.map(str::to_owned);
        self
    }
}

/// What to read back: newest first, filtered.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// At most this many (default: all kept).
    pub limit: Option<usize>,
    /// Only events about this NameService.
    pub nameservice: Option<String>,
    /// Only events of these kinds (empty: every kind).
    pub kinds: Vec<EventKind>,
    /// Only events with an id greater than this (what is new since a last read).
    pub after: Option<u64>,
}

/// The log. Cheap to share (`Arc`), safe to record into from any thread.
#[derive(Debug)]
pub struct EventLog {
    instance: Arc<str>,
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    events: VecDeque<Event>,
}

impl EventLog {
    /// A log keeping the last `capacity` events (at least one) of `instance`.
    pub fn new(instance: impl Into<Arc<str>>, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            instance: instance.into(),
            capacity,
            inner: Mutex::new(Inner {
                next_id: 1,
                events: VecDeque::with_capacity(capacity.min(1024)),
            }),
        }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records `e` now; the oldest event goes when the log is full. Returns its id.
    pub fn record(&self, e: NewEvent) -> u64 {
        let time = crate::timefmt::rfc3339_ms(crate::timefmt::now_unix_ms());
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let id = inner.next_id;
        inner.next_id += 1;
        if inner.events.len() == self.capacity {
            inner.events.pop_front();
        }
        inner.events.push_back(Event {
            id,
            time,
            kind: e.kind,
            nameservice: e.nameservice,
            target: e.target,
            message: e.message,
            token: e.token,
            instance: self.instance.to_string(),
        });
        id
    }

    /// The matching events, newest first.
    pub fn recent(&self, q: &Query) -> Vec<Event> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .events
            .iter()
            .rev()
            .take_while(|e| q.after.is_none_or(|a| e.id > a))
            .filter(|e| {
                q.nameservice
                    .as_deref()
                    .is_none_or(|n| e.nameservice.as_deref() == Some(n))
            })
            .filter(|e| q.kinds.is_empty() || q.kinds.contains(&e.kind))
            .take(q.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    /// How many events are kept now.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .events
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Above this many holders, a health change is one summary event instead of one
/// per target (a VIP shared by thousands of names must not flush the log).
pub const MAX_HOLDER_EVENTS: usize = 20;

/// Records every verdict change of the health module as `HealthChanged` events,
/// one per target holding the verdict (or one summary when many hold it), until
/// the channel closes. Spawn it on the control-plane runtime before the prober
/// starts.
pub async fn follow_health(
    log: Arc<EventLog>,
    mut rx: tokio::sync::broadcast::Receiver<Arc<crate::health::HealthEvent>>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match rx.recv().await {
            Ok(e) => {
                if let crate::health::HealthEvent::Verdict(c) = &*e {
                    record_verdict(&log, c);
                }
            }
            Err(RecvError::Lagged(n)) => {
                log.record(NewEvent::new(
                    EventKind::HealthChanged,
                    format!(
                        "{n} health changes came faster than they could be recorded and are missing here; the status of each NameService is current"
                    ),
                ));
            }
            Err(RecvError::Closed) => return,
        }
    }
}

fn record_verdict(log: &EventLog, c: &crate::health::VerdictChange) {
    let what = format!(
        "{} -> {}: {} ({}:{}, decided by {})",
        c.old.as_str(),
        c.new.as_str(),
        c.reason,
        c.endpoint.address,
        c.endpoint.port,
        match c.source {
            crate::health::Source::Local => "this instance's probes",
            crate::health::Source::Quorum => "the fleet's majority",
        }
    );
    if c.holders.len() <= MAX_HOLDER_EVENTS {
        for h in c.holders.iter() {
            log.record(
                NewEvent::new(EventKind::HealthChanged, what.clone())
                    .nameservice(&*h.nameservice)
                    .target(&*h.target),
            );
        }
        return;
    }
    let names = c.nameservices().count();
    let shown: Vec<String> = c
        .holders
        .iter()
        .take(5)
        .map(|h| format!("{}/{}", h.nameservice, h.target))
        .collect();
    log.record(NewEvent::new(
        EventKind::HealthChanged,
        format!(
            "{what}; held by {} targets of {names} NameServices: {} (+{} more)",
            c.holders.len(),
            shown.join(", "),
            c.holders.len() - shown.len()
        ),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, ns: &str, msg: &str) -> NewEvent {
        NewEvent::new(kind, msg).nameservice(ns)
    }

    #[test]
    fn newest_first_with_ids_time_and_instance() {
        let log = EventLog::new("dc1-a", 10);
        assert!(log.is_empty());
        let a = log.record(ev(EventKind::Created, "a.example", "created").token(Some("ci")));
        let b = log
            .record(ev(EventKind::HealthChanged, "a.example", "Pending -> Healthy").target("dc1"));
        assert_eq!((a, b), (1, 2));
        let all = log.recent(&Query::default());
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].id, 2);
        assert_eq!(all[0].kind, EventKind::HealthChanged);
        assert_eq!(all[0].target.as_deref(), Some("dc1"));
        assert_eq!(all[0].token, None);
        assert_eq!(all[1].token.as_deref(), Some("ci"));
        assert_eq!(all[1].instance, "dc1-a");
        // RFC 3339 with milliseconds, UTC.
        let t = &all[0].time;
        assert_eq!(t.len(), "2026-11-21T10:00:00.000Z".len(), "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }

    #[test]
    fn bounded_oldest_goes_first() {
        let log = EventLog::new("i", 3);
        for i in 0..5 {
            log.record(ev(EventKind::Replaced, "a.example", &format!("#{i}")));
        }
        let all = log.recent(&Query::default());
        let msgs: Vec<&str> = all.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(msgs, ["#4", "#3", "#2"]);
        assert_eq!(all[0].id, 5);
        assert_eq!(log.len(), 3);
    }

    #[test]
    fn filters_and_limit() {
        let log = EventLog::new("i", 100);
        log.record(ev(EventKind::Created, "a.example", "1"));
        log.record(ev(EventKind::Created, "b.example", "2"));
        log.record(ev(EventKind::HealthChanged, "a.example", "3"));
        log.record(ev(EventKind::Deleted, "a.example", "4"));
        let msgs =
            |q: Query| -> Vec<String> { log.recent(&q).into_iter().map(|e| e.message).collect() };
        assert_eq!(
            msgs(Query {
                nameservice: Some("a.example".into()),
                ..Query::default()
            }),
            ["4", "3", "1"]
        );
        assert_eq!(
            msgs(Query {
                kinds: vec![EventKind::Created, EventKind::Deleted],
                limit: Some(2),
                ..Query::default()
            }),
            ["4", "2"]
        );
        assert_eq!(
            msgs(Query {
                after: Some(2),
                ..Query::default()
            }),
            ["4", "3"]
        );
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
        }
        assert_eq!(EventKind::parse("created"), None);
    }

    #[test]
    fn concurrent_records_get_distinct_ids() {
        let log = Arc::new(EventLog::new("i", 10_000));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        log.record(ev(EventKind::Replaced, "a.example", &format!("{t}/{i}")));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let all = log.recent(&Query::default());
        assert_eq!(all.len(), 2000);
        assert!(all.windows(2).all(|w| w[0].id == w[1].id + 1));
    }
}
