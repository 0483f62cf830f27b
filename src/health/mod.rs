//! Health of probe endpoints: the table of verdicts the DNS workers read, the status
//! the API reports, the prober that decides them and their persistence.
//!
//! The table is keyed twice. A *probe stream* ([`ProbeKey`]: address, port, period,
//! timeout) is one TCP probe per period, however many NameServices and targets point
//! at it. A *verdict* ([`Endpoint`]: a probe stream plus the failure/success thresholds)
//! is what those probes mean to the services that read them with those thresholds;
//! every verdict owns one [`HealthCell`] that the compiled snapshot targets share.
//!
//! **Architecture Invariant:** only this module writes verdicts, and only through
//! [`machine::next`]/[`machine::seed`]. DNS workers read the cells with one relaxed
//! atomic load and never wait on the prober; the prober runs on the control-plane
//! runtime.
//!
//! **Architecture Invariant:** a probe stream exists exactly while some target of some
//! published NameService holds one of its verdicts (the registry acquires the new
//! resource's endpoints before publishing it and releases the old ones after), and
//! its probe task is aborted the moment the last verdict goes.

mod cell;
pub mod machine;
pub mod probe;
mod prober;
pub mod stats;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

pub use cell::{CellState, Health, HealthCell};
pub use machine::{Streak, Thresholds};
pub use probe::ProbeResult;
pub use prober::Prober;

use crate::model::{Endpoint, NameService};
use crate::store::StoredHealth;

/// What is probed: one TCP probe per period per distinct key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProbeKey {
    pub address: IpAddr,
    pub port: u16,
    pub period_seconds: u32,
    pub timeout_seconds: u32,
}

impl ProbeKey {
    pub fn of(ep: &Endpoint) -> Self {
        Self {
            address: ep.address,
            port: ep.port,
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

    fn endpoint(&self, th: Thresholds) -> Endpoint {
        Endpoint {
            address: self.address,
            port: self.port,
            period_seconds: self.period_seconds,
            timeout_seconds: self.timeout_seconds,
            failure_threshold: th.failure,
            success_threshold: th.success,
        }
    }
}

fn thresholds(ep: &Endpoint) -> Thresholds {
    Thresholds {
        failure: ep.failure_threshold,
        success: ep.success_threshold,
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
}

/// A verdict change, handed to the change hook (the registry records Ready
/// transitions with it).
#[derive(Debug, Clone)]
pub struct HealthChange {
    pub endpoint: Endpoint,
    pub old: Health,
    pub new: Health,
    /// Unix seconds.
    pub at: u64,
    /// Every NameService holding the verdict, sorted, without duplicates.
    pub nameservices: Vec<Arc<str>>,
}

#[derive(Debug)]
struct Verdict {
    thresholds: Thresholds,
    cell: Arc<HealthCell>,
    last_change_time: Option<u64>,
    /// Holders with the number of times each holds it (a PUT briefly holds both the
    /// old and the new resource).
    holders: BTreeMap<Holder, u32>,
}

#[derive(Debug, Default)]
struct StreamState {
    streak: Streak,
    last_probe_time: Option<u64>,
    last_error: Option<String>,
    last_ok: Option<bool>,
    verdicts: Vec<Verdict>,
}

/// One probe stream.
#[derive(Debug)]
pub(crate) struct Stream {
    key: ProbeKey,
    /// Offset of this stream's probes inside the period: spreads the streams evenly
    /// over it instead of bursting them together.
    phase: Duration,
    state: Mutex<StreamState>,
    /// Changed since the last write to the store.
    dirty: AtomicBool,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Stream {
    fn lock(&self) -> MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn abort(&self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.abort();
        }
    }
}

#[derive(Debug, Default)]
struct Table {
    streams: HashMap<ProbeKey, Arc<Stream>>,
    /// Records loaded from the store at startup, by probe stream, waiting to be
    /// claimed by the registry's first acquisitions; whatever is left when probing
    /// starts is stale.
    restored: HashMap<ProbeKey, Vec<StoredHealth>>,
    /// Verdicts to delete from the store at the next write.
    removed: Vec<StoredHealth>,
}

type Hook = Box<dyn Fn(&HealthChange) + Send + Sync>;

/// The health table. Only this module writes verdicts.
#[derive(Default)]
pub struct HealthHub {
    table: Mutex<Table>,
    stats: stats::Stats,
    prober: OnceLock<prober::Runtime>,
    stopped: AtomicBool,
    hook: OnceLock<Hook>,
    flush: tokio::sync::Notify,
    local_errors_logged: AtomicU64,
}

impl std::fmt::Debug for HealthHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthHub")
            .field("streams", &self.lock().streams.len())
            .finish_non_exhaustive()
    }
}

fn parse_health(s: &str) -> Health {
    match s {
        "Healthy" => Health::Healthy,
        "Unhealthy" => Health::Unhealthy,
        _ => Health::Pending,
    }
}

impl HealthHub {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Loads persisted verdicts; call before the registry opens so that the first
    /// acquisitions pick them up (a restart neither revives a dead target nor sends a
    /// healthy one back to Pending).
    pub fn restore(&self, records: Vec<StoredHealth>) {
        let mut t = self.lock();
        for r in records {
            let key = ProbeKey {
                address: r.address,
                port: r.port,
                period_seconds: r.period_seconds,
                timeout_seconds: r.timeout_seconds,
            };
            t.restored.entry(key).or_default().push(r);
        }
    }

    /// Installs the function told about every verdict change (once; later calls are
    /// ignored). It runs on the prober with no health lock held.
    pub fn set_change_hook(&self, f: impl Fn(&HealthChange) + Send + Sync + 'static) {
        let _ = self.hook.set(Box::new(f));
    }

    /// Holds the verdict of `ep` for `holder` and returns its cell, creating the
    /// verdict (and its probe stream, probed within a second) if it is new.
    pub fn acquire(&self, ep: &Endpoint, holder: Holder) -> Arc<HealthCell> {
        let key = ProbeKey::of(ep);
        let th = thresholds(ep);
        let mut t = self.lock();
        let stream = match t.streams.get(&key) {
            Some(s) => s.clone(),
            None => {
                let s = self.new_stream(&mut t, key);
                t.streams.insert(key, s.clone());
                if let Some(rt) = self.prober.get()
                    && !self.stopped.load(Ordering::Acquire)
                {
                    rt.spawn(&s);
                }
                s
            }
        };
        let mut st = stream.lock();
        if let Some(v) = st.verdicts.iter_mut().find(|v| v.thresholds == th) {
            *v.holders.entry(holder).or_default() += 1;
            return v.cell.clone();
        }
        // A verdict restored Healthy keeps its slow-start ramp: it turned Healthy at
        // its last change. One seeded from the stream's history has been healthy for
        // as long as the stream (0: long ago).
        let (health, last_change_time, healthy_since_ms) =
            match Self::claim_restored(&mut t, key, th) {
                Some(r) => {
                    let h = parse_health(&r.health);
                    let since = match (h, r.last_change_time) {
                        (Health::Healthy, Some(at)) => at.saturating_mul(1000),
                        _ => 0,
                    };
                    (h, r.last_change_time, since)
                }
                None => {
                    let sibling = st
                        .verdicts
                        .iter()
                        .max_by_key(|v| v.last_change_time)
                        .map(|v| v.cell.get());
                    let h = machine::seed(st.streak, th, sibling);
                    if h != Health::Pending {
                        stream.dirty.store(true, Ordering::Relaxed);
                        self.flush.notify_one();
                    }
                    (h, (h != Health::Pending).then(crate::timefmt::now_unix), 0)
                }
            };
        let cell = Arc::new(HealthCell::with_healthy_since(health, healthy_since_ms));
        st.verdicts.push(Verdict {
            thresholds: th,
            cell: cell.clone(),
            last_change_time,
            holders: BTreeMap::from([(holder, 1)]),
        });
        cell
    }

    /// Takes the restored record of the verdict (`key`, `th`), if there is one.
    fn claim_restored(t: &mut Table, key: ProbeKey, th: Thresholds) -> Option<StoredHealth> {
        let records = t.restored.get_mut(&key)?;
        let i = records
            .iter()
            .position(|r| r.failure_threshold == th.failure && r.success_threshold == th.success)?;
        let r = records.swap_remove(i);
        if records.is_empty() {
            t.restored.remove(&key);
        }
        Some(r)
    }

    fn new_stream(&self, t: &mut Table, key: ProbeKey) -> Arc<Stream> {
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
        let period = key.period();
        Arc::new(Stream {
            key,
            phase: period.mul_f64(fastrand::f64()),
            state: Mutex::new(state),
            dirty: AtomicBool::new(false),
            task: Mutex::new(None),
        })
    }

    /// Gives back what [`HealthHub::acquire`] took. The last holder of a verdict
    /// removes it (and its stored record); the last verdict of a stream stops its
    /// probes at once.
    pub fn release(&self, ep: &Endpoint, holder: &Holder) {
        let key = ProbeKey::of(ep);
        let th = thresholds(ep);
        let mut t = self.lock();
        let Some(stream) = t.streams.get(&key).cloned() else {
            return;
        };
        let mut st = stream.lock();
        let Some(i) = st.verdicts.iter().position(|v| v.thresholds == th) else {
            return;
        };
        let v = &mut st.verdicts[i];
        if let Some(n) = v.holders.get_mut(holder) {
            *n -= 1;
            if *n == 0 {
                v.holders.remove(holder);
            }
        }
        if !v.holders.is_empty() {
            return;
        }
        st.verdicts.swap_remove(i);
        let empty = st.verdicts.is_empty();
        drop(st);
        t.removed.push(Self::stored(
            &key,
            th,
            Health::Pending,
            &StreamState::default(),
            None,
        ));
        if empty {
            t.streams.remove(&key);
            stream.abort();
            tracing::debug!(address = %key.address, port = key.port, "probe stream stopped: no NameService uses it any more");
        }
    }

    /// Acquires the verdict of every probed target of `ns`; the cells by endpoint, for
    /// [`crate::snapshot::ServiceEntry::compile`].
    pub fn acquire_service(&self, ns: &NameService) -> HashMap<Endpoint, Arc<HealthCell>> {
        let mut cells = HashMap::new();
        for (i, t) in ns.targets.iter().enumerate() {
            if let Some(ep) = ns.endpoint(i) {
                let cell = self.acquire(&ep, Holder::new(&ns.name, &t.name));
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
        let stream = self.lock().streams.get(&ProbeKey::of(ep)).cloned()?;
        let th = thresholds(ep);
        let st = stream.lock();
        let v = st.verdicts.iter().find(|v| v.thresholds == th)?;
        Some(EndpointStatus {
            health: v.cell.get(),
            consecutive_failures: st.streak.failures,
            consecutive_successes: st.streak.successes,
            last_probe_time: st.last_probe_time,
            last_error: st.last_error.clone(),
            last_change_time: v.last_change_time,
        })
    }

    /// How many distinct probe streams exist (each probed once per period).
    pub fn probe_streams(&self) -> usize {
        self.lock().streams.len()
    }

    /// The prober's counters and histograms.
    pub fn stats(&self) -> &stats::Stats {
        &self.stats
    }

    /// Feeds one probe result for `ep`'s stream as if the prober had produced it
    /// (tests elsewhere in the crate drive verdicts without sockets).
    #[cfg(test)]
    pub(crate) fn feed(&self, ep: &Endpoint, result: ProbeResult) {
        let stream = self.lock().streams.get(&ProbeKey::of(ep)).cloned();
        if let Some(s) = stream {
            self.record(&s, &result, Duration::ZERO);
        }
    }

    /// Takes one probe result of `stream` through the state machine of each of its
    /// verdicts, then logs and reports every change (with no lock held).
    pub(crate) fn record(&self, stream: &Stream, result: &ProbeResult, took: Duration) {
        self.stats.probes[result.index()].fetch_add(1, Ordering::Relaxed);
        self.stats.duration.observe(took);
        let key = stream.key;
        tracing::trace!(address = %key.address, port = key.port, ?result, ?took, "probe result");
        let Some(ok) = result.verdict() else {
            // Says nothing about the target: keep its verdict, complain (rarely).
            let n = self.local_errors_logged.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() || n == 0 {
                tracing::warn!(
                    address = %key.address, port = key.port,
                    error = %result.error_text(key.timeout()).unwrap_or_default(),
                    occurrences = n + 1,
                    "health probe could not be sent; verdict unchanged"
                );
            }
            return;
        };
        let now = crate::timefmt::now_unix();
        let error = result.error_text(key.timeout());
        let mut changes = Vec::new();
        let dirty;
        let streak;
        {
            let mut st = stream.lock();
            if st.verdicts.is_empty() {
                return; // released while the probe was in flight
            }
            st.streak = st.streak.after(ok);
            st.last_probe_time = Some(now);
            let flipped = st.last_ok != Some(ok) || st.last_error != error;
            st.last_ok = Some(ok);
            st.last_error = error.clone();
            streak = st.streak;
            for v in &mut st.verdicts {
                let old = v.cell.get();
                let new = machine::next(old, streak, v.thresholds);
                if new != old {
                    v.cell.set(new);
                    v.last_change_time = Some(now);
                    let mut names: Vec<Arc<str>> =
                        v.holders.keys().map(|h| h.nameservice.clone()).collect();
                    names.dedup();
                    changes.push((
                        HealthChange {
                            endpoint: key.endpoint(v.thresholds),
                            old,
                            new,
                            at: now,
                            nameservices: names,
                        },
                        holder_summary(&v.holders),
                    ));
                }
            }
            dirty = flipped || !changes.is_empty();
        }
        if dirty {
            stream.dirty.store(true, Ordering::Relaxed);
            self.flush.notify_one();
        }
        for (c, targets) in changes {
            self.stats.transition(c.old, c.new);
            let reason = match c.new {
                Health::Healthy => format!(
                    "{} consecutive successful probe{}",
                    streak.successes,
                    if streak.successes == 1 { "" } else { "s" }
                ),
                _ => format!(
                    "{} consecutive failed probe{}, last: {}",
                    streak.failures,
                    if streak.failures == 1 { "" } else { "s" },
                    error.as_deref().unwrap_or_default()
                ),
            };
            tracing::info!(
                targets = %targets,
                address = %key.address,
                port = key.port,
                old = %c.old.as_str(),
                new = %c.new.as_str(),
                reason = %reason,
                "target health {} -> {}",
                c.old.as_str(),
                c.new.as_str(),
            );
            if let Some(h) = self.hook.get() {
                h(&c);
            }
        }
    }

    fn stored(
        key: &ProbeKey,
        th: Thresholds,
        health: Health,
        st: &StreamState,
        last_change_time: Option<u64>,
    ) -> StoredHealth {
        StoredHealth {
            address: key.address,
            port: key.port,
            period_seconds: key.period_seconds,
            timeout_seconds: key.timeout_seconds,
            failure_threshold: th.failure,
            success_threshold: th.success,
            health: health.as_str().to_string(),
            consecutive_failures: st.streak.failures,
            consecutive_successes: st.streak.successes,
            last_probe_time: st.last_probe_time,
            last_error: st.last_error.clone(),
            last_change_time,
        }
    }

    /// What the next store write holds: the verdicts of streams changed since the last
    /// write (every verdict when `all`), and the verdicts removed since.
    pub(crate) fn take_dirty(&self, all: bool) -> (Vec<StoredHealth>, Vec<StoredHealth>) {
        let mut t = self.lock();
        let removed = std::mem::take(&mut t.removed);
        let mut upsert = Vec::new();
        for s in t.streams.values() {
            if s.dirty.swap(false, Ordering::Relaxed) || all {
                let st = s.lock();
                upsert.extend(st.verdicts.iter().map(|v| {
                    Self::stored(&s.key, v.thresholds, v.cell.get(), &st, v.last_change_time)
                }));
            }
        }
        (upsert, removed)
    }

    /// Puts back what a failed store write did not write.
    fn requeue(&self, removed: Vec<StoredHealth>) {
        let mut t = self.lock();
        t.removed.extend(removed);
        for s in t.streams.values() {
            s.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// The exporter of the health metrics (registered in `/metrics` by the app).
    pub fn collector(self: &Arc<Self>) -> HealthCollector {
        HealthCollector(self.clone())
    }

    /// Encodes the health metrics.
    fn encode_metrics(
        &self,
        enc: &mut prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use crate::metrics::{gauge, gauge_family};
        self.stats.encode(enc)?;
        let mut rows = Vec::new();
        let mut counts = [0usize; 3];
        let streams;
        {
            let t = self.lock();
            streams = t.streams.len();
            for s in t.streams.values() {
                let st = s.lock();
                for v in &st.verdicts {
                    let h = v.cell.get();
                    counts[match h {
                        Health::Pending => 0,
                        Health::Healthy => 1,
                        _ => 2,
                    }] += 1;
                    rows.push((s.key, v.thresholds.failure, v.thresholds.success, h));
                }
            }
        }
        rows.sort_unstable_by_key(|r| (r.0, r.1, r.2));
        gauge(
            enc,
            stats::PROBE_STREAMS,
            "Distinct probe endpoints (address, port, period, timeout), each probed once per period",
            streams,
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
        gauge_family(
            enc,
            stats::ENDPOINT_HEALTHY,
            "1 if the endpoint's verdict is Healthy, 0 if Pending or Unhealthy",
            rows.into_iter().map(|(k, f, s, h)| {
                (
                    [
                        ("address", k.address.to_string()),
                        ("port", k.port.to_string()),
                        ("period_seconds", k.period_seconds.to_string()),
                        ("timeout_seconds", k.timeout_seconds.to_string()),
                        ("failure_threshold", f.to_string()),
                        ("success_threshold", s.to_string()),
                    ],
                    u64::from(h == Health::Healthy),
                )
            }),
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

/// `ns/target` of the first few holders, and how many more.
fn holder_summary(holders: &BTreeMap<Holder, u32>) -> String {
    const SHOWN: usize = 5;
    let mut s = String::new();
    for (i, h) in holders.keys().take(SHOWN).enumerate() {
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
mod tests;
