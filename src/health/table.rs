//! The health table: probe streams, the verdicts kept on them and who holds them.
//!
//! A *probe stream* ([`ProbeKey`]) is one probe per period, however many targets
//! point at it. A *verdict* (an [`Endpoint`]: a probe stream plus thresholds) is what
//! those probes mean to the targets that read them with those thresholds; each owns
//! the [`HealthCell`] that compiled snapshot targets share, counted by holder.
//!
//! **Architecture Invariant:** a probe stream exists exactly while some target of
//! some published NameService holds one of its verdicts; the caller of
//! [`Table::release`] stops its probe task the moment the last verdict goes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::machine::{self, Damping, Hold, Streak, Thresholds};
use super::{Health, HealthCell, Holder, ProbeKey};
use crate::model::{Check, Endpoint};
use crate::store::StoredHealth;

/// One verdict kept on a probe stream.
#[derive(Debug)]
pub(crate) struct Verdict {
    pub thresholds: Thresholds,
    /// The endpoint id (`Endpoint::id`): what the fleet's observations name.
    pub id: Arc<str>,
    /// This instance's own thresholded verdict (what it publishes to the fleet).
    pub local: Health,
    /// The verdict the answers use: `local`, or the quorum's.
    pub cell: Arc<HealthCell>,
    /// Unix seconds of the last change of the cell's verdict.
    pub last_change_time: Option<u64>,
    /// Flap damping's memory (unused without `flapDamping`) and its current hold.
    pub damping: Damping,
    pub hold: Option<Hold>,
    /// Holders with the number of times each holds it (a PUT briefly holds both the
    /// old and the new resource).
    pub holders: BTreeMap<Holder, u32>,
}

impl Verdict {
    pub fn endpoint(&self, key: &ProbeKey) -> Endpoint {
        key.endpoint(self.thresholds)
    }

    pub fn holder_list(&self) -> Arc<[Holder]> {
        self.holders.keys().cloned().collect()
    }
}

/// What a probe stream remembers.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    pub streak: Streak,
    /// Unix seconds of the last finished probe.
    pub last_probe_time: Option<u64>,
    pub last_error: Option<String>,
    pub last_ok: Option<bool>,
    pub verdicts: Vec<Verdict>,
}

/// One probe stream.
#[derive(Debug)]
pub(crate) struct Stream {
    pub key: ProbeKey,
    /// Offset of this stream's probes inside the period: spreads the streams evenly
    /// over it instead of bursting them together.
    pub phase: Duration,
    /// How long a stream never probed waits before its first probe
    /// (`initialDelaySeconds` of the service that created it).
    pub initial_delay: Duration,
    state: Mutex<StreamState>,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Stream {
    pub fn lock(&self) -> MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_task(&self, task: tokio::task::AbortHandle) {
        *self.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    }

    /// Stops the probe task, a probe in flight included.
    pub fn abort(&self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.abort();
        }
    }

    /// The persisted form of every verdict of this stream.
    pub fn records(&self) -> Vec<StoredHealth> {
        let st = self.lock();
        st.verdicts
            .iter()
            .map(|v| stored(&self.key, v.thresholds, &st, Some(v)))
            .collect()
    }
}

/// The persisted form of verdict `v` of stream `key` (a tombstone when `None`).
pub(crate) fn stored(
    key: &ProbeKey,
    th: Thresholds,
    st: &StreamState,
    v: Option<&Verdict>,
) -> StoredHealth {
    StoredHealth {
        address: key.address,
        port: key.port,
        http: match &key.check {
            Check::Tcp => None,
            Check::Http(h) => Some((**h).clone()),
        },
        period_seconds: key.period_seconds,
        timeout_seconds: key.timeout_seconds,
        failure_threshold: th.failure,
        success_threshold: th.success,
        flap_damping: th.damping,
        health: v
            .map_or(Health::Pending, |v| v.cell.get())
            .as_str()
            .to_string(),
        local_health: v.map(|v| v.local.as_str().to_string()),
        consecutive_failures: st.streak.failures,
        consecutive_successes: st.streak.successes,
        last_probe_time: st.last_probe_time,
        last_error: st.last_error.clone(),
        last_change_time: v.and_then(|v| v.last_change_time),
        damping: v
            .filter(|v| th.damping && v.damping != Damping::default())
            .map(|v| v.damping.clone()),
    }
}

fn parse_health(s: &str) -> Health {
    match s {
        "Healthy" => Health::Healthy,
        "Unhealthy" => Health::Unhealthy,
        _ => Health::Pending,
    }
}

/// What [`Table::acquire`] did.
pub(crate) struct Acquired {
    pub cell: Arc<HealthCell>,
    /// A verdict was created with a history (restored or seeded): worth persisting.
    pub seeded: bool,
    /// The verdict was created by this acquisition: its own verdict and the time of
    /// the stream's last probe (what this instance publishes as its observation).
    pub created: Option<(Health, Option<u64>)>,
}

/// What [`Table::release`] did.
pub(crate) struct Released {
    /// The last holder let go of this verdict.
    pub endpoint: Endpoint,
    /// ... and it was the stream's last verdict: the stream is gone (its task must
    /// be stopped).
    pub stream: Option<Arc<Stream>>,
}

#[derive(Debug, Default)]
struct Inner {
    streams: HashMap<ProbeKey, Arc<Stream>>,
    /// Records loaded from the store at startup, by probe stream, waiting to be
    /// claimed by the registry's first acquisitions; whatever is left when probing
    /// starts is stale.
    restored: HashMap<ProbeKey, Vec<StoredHealth>>,
    /// The stream of every verdict, by endpoint id.
    ids: HashMap<Arc<str>, ProbeKey>,
}

#[derive(Debug, Default)]
pub(crate) struct Table {
    inner: Mutex<Inner>,
}

impl Table {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps persisted records until the verdicts they describe are acquired.
    pub fn restore(&self, records: Vec<StoredHealth>) {
        let mut t = self.lock();
        for r in records {
            let key = ProbeKey {
                address: r.address,
                port: r.port,
                check: match &r.http {
                    None => Check::Tcp,
                    Some(h) => Check::Http(Arc::new(h.clone())),
                },
                period_seconds: r.period_seconds,
                timeout_seconds: r.timeout_seconds,
            };
            t.restored.entry(key).or_default().push(r);
        }
    }

    /// The restored records nobody claimed (endpoints no NameService uses any more).
    pub fn take_unclaimed(&self) -> Vec<StoredHealth> {
        self.lock()
            .restored
            .drain()
            .flat_map(|(_, rs)| rs)
            .collect()
    }

    /// Holds the verdict of `ep` for `holder`, creating it (and its stream) if new.
    /// `on_new_stream` runs with the table locked, so a release cannot slip between
    /// a stream's creation and its task being registered. With `by_quorum`, a new
    /// verdict not restored from the store starts Pending whatever this instance's
    /// own history says: the quorum decides it.
    pub fn acquire(
        &self,
        ep: &Endpoint,
        holder: Holder,
        initial_delay: Duration,
        by_quorum: bool,
        on_new_stream: impl FnOnce(&Arc<Stream>),
    ) -> Acquired {
        let key = ProbeKey::of(ep);
        let th = Thresholds::of(ep);
        let mut t = self.lock();
        let stream = match t.streams.get(&key) {
            Some(s) => s.clone(),
            None => {
                let s = Arc::new(Self::new_stream(&t, key.clone(), initial_delay));
                t.streams.insert(key.clone(), s.clone());
                on_new_stream(&s);
                s
            }
        };
        let mut st = stream.lock();
        if let Some(v) = st.verdicts.iter_mut().find(|v| v.thresholds == th) {
            *v.holders.entry(holder).or_default() += 1;
            return Acquired {
                cell: v.cell.clone(),
                seeded: false,
                created: None,
            };
        }
        let now = crate::timefmt::now_unix();
        // A verdict restored Healthy keeps its slow-start ramp: it turned Healthy at
        // its last change. One seeded from the stream's history has been healthy for
        // as long as the stream (0: long ago).
        let mut damping = Damping::default();
        let (local, health, last_change_time, healthy_since_ms) =
            match Self::claim_restored(&mut t, &key, th) {
                Some(r) => {
                    let h = parse_health(&r.health);
                    let local = r.local_health.as_deref().map_or(h, parse_health);
                    let since = match (h, r.last_change_time) {
                        (Health::Healthy, Some(at)) => at.saturating_mul(1000),
                        _ => 0,
                    };
                    damping = r.damping.unwrap_or_default();
                    (local, h, r.last_change_time, since)
                }
                None => {
                    let sibling = st
                        .verdicts
                        .iter()
                        .max_by_key(|v| v.last_change_time)
                        .map(|v| v.local);
                    let h = machine::seed(st.streak, th, sibling);
                    let cell = if by_quorum { Health::Pending } else { h };
                    (h, cell, (cell != Health::Pending).then_some(now), 0)
                }
            };
        let cell = Arc::new(HealthCell::with_healthy_since(health, healthy_since_ms));
        // A restored hold goes on holding.
        let hold = damping.hold(th);
        let id: Arc<str> = ep.id().into();
        t.ids.insert(id.clone(), key.clone());
        st.verdicts.push(Verdict {
            thresholds: th,
            id,
            local,
            cell: cell.clone(),
            last_change_time,
            damping,
            hold,
            holders: BTreeMap::from([(holder, 1)]),
        });
        Acquired {
            cell,
            seeded: health != Health::Pending || local != Health::Pending,
            created: Some((local, st.last_probe_time)),
        }
    }

    /// Takes the restored record of the verdict (`key`, `th`), if there is one.
    fn claim_restored(t: &mut Inner, key: &ProbeKey, th: Thresholds) -> Option<StoredHealth> {
        let records = t.restored.get_mut(key)?;
        let i = records.iter().position(|r| {
            r.failure_threshold == th.failure
                && r.success_threshold == th.success
                && r.flap_damping == th.damping
        })?;
        let r = records.swap_remove(i);
        if records.is_empty() {
            t.restored.remove(key);
        }
        Some(r)
    }

    fn new_stream(t: &Inner, key: ProbeKey, initial_delay: Duration) -> Stream {
        // The freshest restored record of this stream gives its streak.
        let seed = t
            .restored
            .get(&key)
            .and_then(|rs| rs.iter().max_by_key(|r| r.last_probe_time));
        let mut state = StreamState::default();
        if let Some(r) = seed {
            state.streak = Streak {
                successes: r.consecutive_successes,
                failures: r.consecutive_failures,
            };
            state.last_probe_time = r.last_probe_time;
            state.last_error = r.last_error.clone();
            state.last_ok = r.last_probe_time.map(|_| r.last_error.is_none());
        }
        Stream {
            phase: key.period().mul_f64(fastrand::f64()),
            initial_delay,
            key,
            state: Mutex::new(state),
            task: Mutex::new(None),
        }
    }

    /// Gives back what [`Table::acquire`] took. `Some` when that was the verdict's
    /// last holder.
    pub fn release(&self, ep: &Endpoint, holder: &Holder) -> Option<Released> {
        let key = ProbeKey::of(ep);
        let th = Thresholds::of(ep);
        let mut t = self.lock();
        let stream = t.streams.get(&key).cloned()?;
        let mut st = stream.lock();
        let i = st.verdicts.iter().position(|v| v.thresholds == th)?;
        let v = &mut st.verdicts[i];
        if let Some(n) = v.holders.get_mut(holder) {
            *n -= 1;
            if *n == 0 {
                v.holders.remove(holder);
            }
        }
        if !v.holders.is_empty() {
            return None;
        }
        let gone = st.verdicts.swap_remove(i);
        t.ids.remove(&gone.id);
        let empty = st.verdicts.is_empty();
        drop(st);
        if empty {
            t.streams.remove(&key);
        }
        Some(Released {
            endpoint: ep.clone(),
            stream: empty.then_some(stream),
        })
    }

    /// The stream of the verdict whose endpoint id is `id`.
    pub fn stream_of(&self, id: &str) -> Option<Arc<Stream>> {
        let t = self.lock();
        let key = t.ids.get(id)?;
        t.streams.get(key).cloned()
    }

    pub fn stream(&self, key: &ProbeKey) -> Option<Arc<Stream>> {
        self.lock().streams.get(key).cloned()
    }

    /// Runs `f` over every stream with the table locked: no stream is created or
    /// removed meanwhile (starting the prober spawns each exactly once this way).
    pub fn with_streams<R>(
        &self,
        f: impl FnOnce(&mut dyn Iterator<Item = &Arc<Stream>>) -> R,
    ) -> R {
        let t = self.lock();
        f(&mut t.streams.values())
    }

    /// Every stream now (the table is not locked while the caller uses them).
    pub fn streams(&self) -> Vec<Arc<Stream>> {
        self.lock().streams.values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.lock().streams.len()
    }
}
