//! Health of probe endpoints: the verdicts the DNS workers read, the prober that
//! decides them, and the events that tell the rest of gslb about them.
//!
//! Health flows one way. Probes ([`prober`], [`probe`]) feed results to the
//! [`HealthHub`], which takes them through the state machine ([`machine`]) for each
//! verdict kept on the probe stream ([`table`]), stores a changed verdict in its
//! [`HealthCell`] (what DNS workers read) and sends a [`HealthEvent`] on the bus
//! ([`events`]). Everything downstream subscribes: the registry's Ready conditions,
//! persistence ([`persist`], its own task), the event log. Nothing calls back in.
//!
//! **Architecture Invariant:** only this module writes verdicts, and only through
//! [`machine::step`]/[`machine::seed`] (this instance's own) and
//! [`quorum::Tally::verdict`] (the fleet's majority, `[health] quorum =
//! "majority"`), both stored by one function (`set_verdict`). DNS workers read the cells with one relaxed
//! atomic load and never wait on the prober; the prober runs on the control-plane
//! runtime.
//!
//! **Architecture Invariant:** a probe stream exists exactly while some target of some
//! published NameService holds one of its verdicts (the registry acquires the new
//! resource's endpoints before publishing it and releases the old ones after), and
//! its probe task is aborted the moment the last verdict goes.

mod cell;
pub mod events;
mod http;
pub mod machine;
mod persist;
pub mod probe;
mod prober;
pub mod quorum;
pub mod stats;
mod table;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub use cell::{CellState, Health, HealthCell};
pub use events::{HealthEvent, Reason, Source, VerdictChange};
pub use machine::{Streak, Thresholds};
pub use probe::ProbeResult;
pub use prober::{Options as ProberOptions, Prober};
pub use quorum::{Observation, Tally};

use crate::model::{Check, Endpoint, NameService};
use crate::store::StoredHealth;

/// What is probed: one probe per period per distinct key (address, port, what the
/// probe checks — TCP, or HTTP(S) with its parameters — period and timeout).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProbeKey {
    pub address: IpAddr,
    pub port: u16,
    pub check: Check,
    pub period_seconds: u32,
    pub timeout_seconds: u32,
}

impl ProbeKey {
    pub fn of(ep: &Endpoint) -> Self {
        Self {
            address: ep.address,
            port: ep.port,
            check: ep.check.clone(),
            period_seconds: ep.period_seconds,
            timeout_seconds: ep.timeout_seconds,
        }
    }

    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }

    pub fn period(&self) -> Duration {
        Duration::from_secs(u64::from(self.period_seconds.max(1)))
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.timeout_seconds.max(1)))
    }

    pub fn is_http(&self) -> bool {
        matches!(self.check, Check::Http(_))
    }

    pub fn endpoint(&self, th: Thresholds) -> Endpoint {
        Endpoint {
            address: self.address,
            port: self.port,
            check: self.check.clone(),
            period_seconds: self.period_seconds,
            timeout_seconds: self.timeout_seconds,
            failure_threshold: th.failure,
            success_threshold: th.success,
            flap_damping: th.damping,
        }
    }
}

/// Who holds a verdict: one target of one NameService.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Holder {
    pub nameservice: Arc<str>,
    pub target: Arc<str>,
}

impl Holder {
    pub fn new(nameservice: &str, target: &str) -> Self {
        Self {
            nameservice: nameservice.into(),
            target: target.into(),
        }
    }
}

/// What the API reports about one verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointStatus {
    pub health: Health,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    /// Unix seconds of the last finished probe.
    pub last_probe_time: Option<u64>,
    /// Why the last probe failed; `None` when it succeeded (or none finished yet).
    pub last_error: Option<String>,
    /// Unix seconds of the last verdict change.
    pub last_change_time: Option<u64>,
    /// Set while flap damping holds the target out (what the thresholds alone
    /// would let in).
    pub damping: Option<machine::Hold>,
    /// In a fleet (etcd backend): every live instance's published verdict of the
    /// endpoint, by instance name; `None` for an instance alone.
    pub observations: Option<Vec<(Arc<str>, Observation)>>,
}

/// The health table and the bus its changes leave on. Only this module writes
/// verdicts.
#[derive(Default)]
pub struct HealthHub {
    table: table::Table,
    bus: events::Bus,
    stats: stats::Stats,
    prober: OnceLock<prober::Runtime>,
    stopped: AtomicBool,
    local_errors_logged: AtomicU64,
    /// Part of a fleet: observations are shown (and published by the app).
    in_fleet: AtomicBool,
    /// `quorum = "majority"`: the fleet's observations decide the verdicts ...
    majority: AtomicBool,
    /// ... unless this instance is cut off from etcd: then its own verdicts do.
    cut_off: AtomicBool,
    /// Every observation of the fleet (this instance's own included, as etcd has
    /// it). Lock order: this, then the table, then a stream.
    view: Mutex<quorum::View>,
}

impl std::fmt::Debug for HealthHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthHub")
            .field("streams", &self.table.len())
            .finish_non_exhaustive()
    }
}

impl HealthHub {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes this hub part of a fleet (etcd backend); with `majority`, the fleet's
    /// observations decide its verdicts from now on. Call before the registry opens,
    /// so that no verdict is created under the other rule.
    pub fn join_fleet(&self, majority: bool) {
        self.in_fleet.store(true, Ordering::Release);
        self.majority.store(majority, Ordering::Release);
    }

    /// The quorum decides the verdicts (majority, and not cut off).
    fn by_quorum(&self) -> bool {
        self.majority.load(Ordering::Acquire) && !self.cut_off.load(Ordering::Acquire)
    }

    fn view(&self) -> std::sync::MutexGuard<'_, quorum::View> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One instance's observation of one endpoint changed (`None`: withdrawn, or
    /// its lease ran out). With the majority rule, the verdict of that endpoint is
    /// decided again.
    pub fn observe(&self, endpoint: &str, instance: &str, observation: Option<Observation>) {
        let mut view = self.view();
        match observation {
            Some(o) => {
                view.entry(endpoint.into())
                    .or_default()
                    .insert(instance.into(), o);
            }
            None => {
                if let Some(m) = view.get_mut(endpoint) {
                    m.remove(instance);
                    if m.is_empty() {
                        view.remove(endpoint);
                    }
                }
            }
        }
        if let Some(stream) = self.table.stream_of(endpoint) {
            self.decide_stream(&view, &stream, Some(endpoint));
        }
    }

    /// Replaces every observation with `all` (a fresh listing of the fleet's), and
    /// decides every verdict again.
    pub fn observe_all(&self, all: impl IntoIterator<Item = (Arc<str>, Arc<str>, Observation)>) {
        let mut view = self.view();
        view.clear();
        for (endpoint, instance, o) in all {
            view.entry(endpoint).or_default().insert(instance, o);
        }
        for stream in self.table.streams() {
            self.decide_stream(&view, &stream, None);
        }
    }

    /// This instance is cut off from etcd for longer than its lease (`true`) or back
    /// (`false`): with the majority rule, its own verdicts decide meanwhile, and the
    /// quorum again once it is back.
    pub fn set_cut_off(&self, cut: bool) {
        let view = self.view();
        if self.cut_off.swap(cut, Ordering::AcqRel) == cut {
            return;
        }
        for stream in self.table.streams() {
            self.decide_stream(&view, &stream, None);
        }
    }

    /// This instance's own verdict of every endpoint it holds (`None`: Pending, not
    /// published): what it publishes as its observations after (re)joining.
    pub fn local_observations(&self) -> Vec<(Arc<str>, Option<Observation>)> {
        let mut out = Vec::new();
        for stream in self.table.streams() {
            let st = stream.lock();
            for v in &st.verdicts {
                out.push((v.id.clone(), observation_of(v.local, st.last_probe_time)));
            }
        }
        out
    }

    /// Decides the verdicts of `stream` (those of endpoint `only`, or all) again
    /// under the rule in force; a no-op with `quorum = "local"`.
    fn decide_stream(&self, view: &quorum::View, stream: &table::Stream, only: Option<&str>) {
        if !self.majority.load(Ordering::Acquire) {
            return;
        }
        let alone = self.cut_off.load(Ordering::Acquire);
        let now_ms = crate::timefmt::now_unix_ms();
        let mut st = stream.lock();
        for v in &mut st.verdicts {
            if only.is_some_and(|id| *id != *v.id) {
                continue;
            }
            if alone {
                let local = v.local;
                self.set_verdict(&stream.key, v, local, now_ms, Reason::Alone, Source::Local);
            } else {
                let tally = Tally::of(view.get(&v.id).into_iter().flat_map(|m| m.values()));
                let new = tally.verdict(v.cell.get());
                self.set_verdict(
                    &stream.key,
                    v,
                    new,
                    now_ms,
                    Reason::Quorum(tally),
                    Source::Quorum,
                );
            }
        }
    }

    /// Every health event from now on (see [`events`] for what to do on `Lagged`).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<HealthEvent>> {
        self.bus.subscribe()
    }

    /// Loads persisted verdicts; call before the registry opens so that the first
    /// acquisitions pick them up (a restart neither revives a dead target nor sends a
    /// healthy one back to Pending).
    pub fn restore(&self, records: Vec<StoredHealth>) {
        self.table.restore(records);
    }

    /// Holds the verdict of `ep` for `holder` and returns its cell, creating the
    /// verdict (and its probe stream, probed within a second) if it is new.
    pub fn acquire(&self, ep: &Endpoint, holder: Holder) -> Arc<HealthCell> {
        self.acquire_delayed(ep, holder, Duration::ZERO)
    }

    /// [`HealthHub::acquire`]; a probe stream it creates waits `initial_delay`
    /// before its first probe.
    pub fn acquire_delayed(
        &self,
        ep: &Endpoint,
        holder: Holder,
        initial_delay: Duration,
    ) -> Arc<HealthCell> {
        let by_quorum = self.by_quorum();
        let acquired = self
            .table
            .acquire(ep, holder, initial_delay, by_quorum, |s| {
                if let Some(rt) = self.prober.get()
                    && !self.stopped.load(Ordering::Acquire)
                {
                    rt.spawn(s);
                }
            });
        if let Some((local, last_probe_time)) = acquired.created {
            if local != Health::Pending {
                // A verdict born with a history: this instance's observation of it.
                self.bus.send(HealthEvent::Local {
                    endpoint: ep.clone(),
                    health: local,
                    last_probe_time,
                });
            }
            // What the fleet already says about it decides it at once.
            if self.majority.load(Ordering::Acquire) {
                let view = self.view();
                if let Some(stream) = self.table.stream(&ProbeKey::of(ep)) {
                    let id = ep.id();
                    self.decide_stream(&view, &stream, Some(&id));
                }
            }
        }
        if acquired.seeded {
            self.bus.send(HealthEvent::Stream {
                key: ProbeKey::of(ep),
            });
        }
        acquired.cell
    }

    /// Gives back what [`HealthHub::acquire`] took. The last holder of a verdict
    /// removes it (and its stored record); the last verdict of a stream stops its
    /// probes at once.
    pub fn release(&self, ep: &Endpoint, holder: &Holder) {
        let Some(r) = self.table.release(ep, holder) else {
            return;
        };
        if let Some(stream) = r.stream {
            stream.abort();
            tracing::debug!(address = %ep.address, port = ep.port, "probe stream stopped: no NameService uses it any more");
        }
        self.bus.send(HealthEvent::Released {
            endpoint: r.endpoint,
        });
    }

    /// Acquires the verdict of every probed target of `ns`; the cells by endpoint, for
    /// [`crate::snapshot::ServiceEntry::compile`].
    pub fn acquire_service(&self, ns: &NameService) -> HashMap<Endpoint, Arc<HealthCell>> {
        let mut cells = HashMap::new();
        let delay = ns.health_check.as_ref().map_or(Duration::ZERO, |hc| {
            Duration::from_secs(u64::from(hc.initial_delay_seconds))
        });
        for (i, t) in ns.targets.iter().enumerate() {
            if let Some(ep) = ns.endpoint(i) {
                let cell = self.acquire_delayed(&ep, Holder::new(&ns.name, &t.name), delay);
                cells.insert(ep, cell);
            }
        }
        cells
    }

    /// Releases what [`HealthHub::acquire_service`] took for `ns`.
    pub fn release_service(&self, ns: &NameService) {
        for (i, t) in ns.targets.iter().enumerate() {
            if let Some(ep) = ns.endpoint(i) {
                self.release(&ep, &Holder::new(&ns.name, &t.name));
            }
        }
    }

    /// The status of the verdict of `ep`, or `None` if nobody holds it.
    pub fn status(&self, ep: &Endpoint) -> Option<EndpointStatus> {
        // The view before the stream: the lock order.
        let observations = self.in_fleet.load(Ordering::Acquire).then(|| {
            self.view()
                .get(ep.id().as_str())
                .map(|m| m.iter().map(|(i, o)| (i.clone(), *o)).collect())
                .unwrap_or_default()
        });
        let stream = self.table.stream(&ProbeKey::of(ep))?;
        let th = Thresholds::of(ep);
        let st = stream.lock();
        let v = st.verdicts.iter().find(|v| v.thresholds == th)?;
        Some(EndpointStatus {
            observations,
            health: v.cell.get(),
            consecutive_failures: st.streak.failures,
            consecutive_successes: st.streak.successes,
            last_probe_time: st.last_probe_time,
            last_error: st.last_error.clone(),
            last_change_time: v.last_change_time,
            damping: v.hold,
        })
    }

    /// How many distinct probe streams exist (each probed once per period).
    pub fn probe_streams(&self) -> usize {
        self.table.len()
    }

    /// The prober's counters and histograms.
    pub fn stats(&self) -> &stats::Stats {
        &self.stats
    }

    /// The persisted form of every verdict of the streams `keys` (all with `None`).
    pub(crate) fn records(&self, keys: Option<&[ProbeKey]>) -> Vec<StoredHealth> {
        let streams = match keys {
            None => self.table.streams(),
            Some(keys) => keys.iter().filter_map(|k| self.table.stream(k)).collect(),
        };
        streams.iter().flat_map(|s| s.records()).collect()
    }

    /// Feeds one probe result for `ep`'s stream as if the prober had produced it
    /// (tests elsewhere in the crate drive verdicts without sockets).
    #[cfg(test)]
    pub(crate) fn feed(&self, ep: &Endpoint, result: ProbeResult) {
        if let Some(s) = self.table.stream(&ProbeKey::of(ep)) {
            self.record(&s, &result, Duration::ZERO);
        }
    }

    /// Takes one probe result of `stream` through the state machine of each of its
    /// verdicts; a changed verdict is stored in its cell and leaves as an event.
    pub(crate) fn record(&self, stream: &table::Stream, result: &ProbeResult, took: Duration) {
        self.stats.probes[result.index()].fetch_add(1, Ordering::Relaxed);
        self.stats.duration.observe(took);
        let key = &stream.key;
        tracing::trace!(address = %key.address, port = key.port, ?result, ?took, "probe result");
        let Some(ok) = result.verdict() else {
            // Says nothing about the target: keep its verdict, complain (rarely).
            let n = self.local_errors_logged.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() || n == 0 {
                tracing::warn!(
                    address = %key.address, port = key.port,
                    error = %result.error_text(key.timeout(), key.is_http()).unwrap_or_default(),
                    occurrences = n + 1,
                    "health probe could not be sent; verdict unchanged"
                );
            }
            return;
        };
        let now_ms = crate::timefmt::now_unix_ms();
        let now = now_ms / 1000;
        let error = result.error_text(key.timeout(), key.is_http());
        // The stream stays locked while its changes are stored and sent, so the
        // events of one verdict leave in the order they happened.
        let mut st = stream.lock();
        if st.verdicts.is_empty() {
            return; // released while the probe was in flight
        }
        st.streak = st.streak.after(ok);
        st.last_probe_time = Some(now);
        let flipped = st.last_ok != Some(ok) || st.last_error != error;
        st.last_ok = Some(ok);
        st.last_error = error.clone();
        let streak = st.streak;
        let mut changed = false;
        // Read with the stream locked: a switch of rule decides every stream again
        // after it, under this lock.
        let decides_locally = !self.by_quorum();
        for v in &mut st.verdicts {
            let (local, hold) =
                machine::step(v.local, streak, ok, v.thresholds, &mut v.damping, now_ms);
            let held = hold.is_some() != v.hold.is_some();
            v.hold = hold;
            if local == v.local {
                // A hold beginning or ending without a verdict change is worth
                // keeping (and showing) all the same.
                changed |= held;
                continue;
            }
            changed = true;
            v.local = local;
            self.bus.send(HealthEvent::Local {
                endpoint: v.endpoint(key),
                health: local,
                last_probe_time: Some(now),
            });
            let reason = match hold {
                Some(h) => Reason::Damped(h),
                None => Reason::Probes {
                    streak,
                    last_error: error.clone(),
                },
            };
            if decides_locally {
                self.set_verdict(key, v, local, now_ms, reason, Source::Local);
            }
        }
        drop(st);
        if flipped || changed {
            self.bus.send(HealthEvent::Stream { key: key.clone() });
        }
    }

    /// Stores `new` as the verdict the answers use, and tells everyone once.
    fn set_verdict(
        &self,
        key: &ProbeKey,
        v: &mut table::Verdict,
        new: Health,
        at_ms: u64,
        reason: Reason,
        source: Source,
    ) {
        let old = v.cell.get();
        if old == new {
            return;
        }
        v.cell.set_at(new, at_ms);
        v.last_change_time = Some(at_ms / 1000);
        self.stats.transition(old, new);
        self.bus.verdict(VerdictChange {
            endpoint: v.endpoint(key),
            old,
            new,
            at_ms,
            reason,
            source,
            holders: v.holder_list(),
        });
    }

    /// The exporter of the health metrics (registered in `/metrics` by the app).
    pub fn collector(self: &Arc<Self>) -> HealthCollector {
        HealthCollector(self.clone())
    }

    /// Encodes the health metrics: the prober's counters, then the table's gauges.
    fn encode_metrics(
        &self,
        enc: &mut prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use crate::metrics::{gauge, gauge_family};
        self.stats.encode(enc)?;
        let mut rows = Vec::new();
        let mut counts = [0usize; 3];
        let mut damped = 0usize;
        let streams = self.table.streams();
        for s in &streams {
            let st = s.lock();
            for v in &st.verdicts {
                damped += usize::from(v.hold.is_some());
                let h = v.cell.get();
                counts[match h {
                    Health::Pending => 0,
                    Health::Healthy => 1,
                    _ => 2,
                }] += 1;
                rows.push((s.key.clone(), v.thresholds, h));
            }
        }
        rows.sort_unstable_by(|a, b| {
            (&a.0, a.1.failure, a.1.success).cmp(&(&b.0, b.1.failure, b.1.success))
        });
        gauge(
            enc,
            stats::PROBE_STREAMS,
            "Distinct probe endpoints (address, port, period, timeout), each probed once per period",
            streams.len(),
        )?;
        gauge_family(
            enc,
            stats::ENDPOINTS,
            "Health verdicts (probe endpoint and thresholds), by verdict",
            ["Pending", "Healthy", "Unhealthy"]
                .iter()
                .zip(counts)
                .map(|(name, n)| ([("health", *name)], n)),
        )?;
        gauge(
            enc,
            stats::DAMPED,
            "Verdicts flap damping holds Unhealthy that their thresholds alone would let in",
            damped,
        )?;
        if self.in_fleet.load(Ordering::Acquire) {
            self.encode_fleet(enc)?;
        }
        gauge_family(
            enc,
            stats::ENDPOINT_HEALTHY,
            "1 if the endpoint's verdict is Healthy, 0 if Pending or Unhealthy",
            rows.into_iter().map(|(k, th, h)| {
                let ep = k.endpoint(th);
                (
                    [
                        ("endpoint", ep.id()),
                        ("probe", ep.kind().to_string()),
                        ("address", k.address.to_string()),
                        ("port", k.port.to_string()),
                        ("period_seconds", k.period_seconds.to_string()),
                        ("timeout_seconds", k.timeout_seconds.to_string()),
                        ("failure_threshold", th.failure.to_string()),
                        ("success_threshold", th.success.to_string()),
                    ],
                    u64::from(h == Health::Healthy),
                )
            }),
        )
    }
}

/// An observation to publish for the own verdict `health` (`None` for Pending).
fn observation_of(health: Health, last_probe_time: Option<u64>) -> Option<Observation> {
    matches!(health, Health::Healthy | Health::Unhealthy).then_some(Observation {
        health,
        last_probe_time,
    })
}

impl HealthHub {
    /// The fleet's observations by endpoint (etcd backend only).
    fn encode_fleet(
        &self,
        enc: &mut prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use crate::metrics::{gauge, gauge_family};
        let mut tallies: Vec<(Arc<str>, Tally)> = self
            .view()
            .iter()
            .map(|(id, m)| (id.clone(), Tally::of(m.values())))
            .collect();
        tallies.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        gauge_family(
            enc,
            stats::OBSERVATIONS,
            "Live instances whose published verdict of the endpoint is Healthy or Unhealthy",
            tallies.iter().flat_map(|(id, t)| {
                [("Healthy", t.healthy), ("Unhealthy", t.unhealthy)]
                    .map(|(h, n)| ([("endpoint", id.to_string()), ("health", h.to_string())], n))
            }),
        )?;
        gauge_family(
            enc,
            stats::OBSERVERS_DISAGREE,
            "1 while the live observers of the endpoint do not all publish the same verdict",
            tallies
                .iter()
                .map(|(id, t)| ([("endpoint", id.to_string())], u32::from(t.disagree()))),
        )?;
        gauge(
            enc,
            stats::CUT_OFF,
            "1 while this instance is cut off from etcd for longer than its lease (its own verdicts decide)",
            u32::from(self.cut_off.load(Ordering::Acquire)),
        )
    }
}

/// Exports the health metrics on `/metrics` (a `prometheus-client` collector).
pub struct HealthCollector(Arc<HealthHub>);

impl std::fmt::Debug for HealthCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HealthCollector")
    }
}

impl prometheus_client::collector::Collector for HealthCollector {
    fn encode(
        &self,
        mut enc: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        self.0.encode_metrics(&mut enc)
    }
}

#[cfg(test)]
mod tests;
