//! The prober: one task per probe stream, each sleeping until its next slot, probing
//! and feeding the result to the hub.
//!
//! Schedule: a stream's probes fall on a grid `epoch + phase + k * period` where
//! `phase` is drawn uniformly from the period when the stream is created, so streams
//! created together (a restart, a bulk load) still spread evenly over the period. A
//! new stream's first probe goes out within a second (a uniformly random instant in
//! `[0, min(1 s, period))`), the next at the first grid point after it, and from then
//! on one per grid point: two probes of a stream are never more than a period apart,
//! which is what bounds failover. Only the first two may be closer, except when the
//! stream is new and every verdict it feeds needs two or more successes: then the
//! second waits for the first grid point a full period after the first, so a new
//! target is proven by `successThreshold` probes spread over at least
//! `successThreshold - 1` periods (it is not answered meanwhile, so no failover
//! bound is at stake). A stream restored from the store with a recent probe
//! simply waits for its slot.
//!
//! Every stream has its own task, and a probe is bounded by the stream's timeout, so
//! a probe that hangs delays nobody else — not even its own stream's next probe,
//! which goes out at its slot while the previous one may still be in flight (a
//! timeout equal to the period ends right at the next slot). A global semaphore caps the probes in flight
//! below the file-descriptor limit (raised to its hard limit at start) so that a mass
//! outage of black-holed VIPs cannot exhaust descriptors; a probe waiting for it shows
//! up in `gslb_health_probe_lateness_seconds`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::http::HttpProbe;
use super::persist::Persister;
use super::probe::{Probe, ProbeResult};
use super::table::Stream;
use super::{HealthHub, ProbeKey};
use crate::model::Check;
use crate::store::{Store, StoreError};

/// Descriptors kept free for everything else (DNS over TCP, the API, the store).
const FD_RESERVE: u64 = 2048;
/// At most this many probes in flight, whatever the descriptor limit.
const MAX_IN_FLIGHT: u64 = 65_536;

/// How probes present themselves.
#[derive(Debug, Clone)]
pub struct Options {
    /// The User-Agent of HTTP probes: `gslb/<version> (<instance>)`.
    pub user_agent: String,
}

impl Options {
    pub fn for_instance(instance: &str) -> Self {
        Self {
            user_agent: format!("gslb/{} ({instance})", env!("CARGO_PKG_VERSION")),
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Self::for_instance("gslb")
    }
}

/// What a stream task needs besides its stream; set once by [`HealthHub::start`].
pub(crate) struct Runtime {
    handle: Handle,
    sem: Arc<Semaphore>,
    epoch: Instant,
    hub: Weak<HealthHub>,
    options: Options,
    tls: rustls::ClientConfig,
}

/// The first instant of the grid `base + k * period` (k >= 0) at or after `t`.
fn grid_at_or_after(base: Instant, period: Duration, t: Instant) -> Instant {
    if t <= base {
        return base;
    }
    let p = period.as_nanos().max(1);
    let since = (t - base).as_nanos();
    let k = since.div_ceil(p);
    base + Duration::from_nanos(u64::try_from(k * p).unwrap_or(u64::MAX))
}

impl Runtime {
    /// Starts the probe task of `stream`. Called with the table locked, so a release
    /// cannot slip between the spawn and the abort handle being stored.
    pub(crate) fn spawn(&self, stream: &Arc<Stream>) {
        let Some(hub) = self.hub.upgrade() else {
            return;
        };
        let now = Instant::now();
        let period = stream.key.period();
        let base = self.epoch + stream.phase;
        // A recent restored probe means the verdict is current: wait for the slot. A
        // stream never probed waits for its initial delay. Anything else is probed
        // within a second.
        let last = stream.lock().last_probe_time;
        let recent =
            last.is_some_and(|t| crate::timefmt::now_unix().saturating_sub(t) <= period.as_secs());
        let fresh = last.is_none();
        let first = if recent {
            grid_at_or_after(base, period, now)
        } else {
            let delay = if last.is_none() {
                stream.initial_delay
            } else {
                Duration::ZERO
            };
            now + delay + period.min(Duration::from_secs(1)).mul_f64(fastrand::f64())
        };
        let probe = self.probe_for(&stream.key);
        let task = self.handle.spawn(run(
            hub,
            stream.clone(),
            probe,
            self.sem.clone(),
            base,
            first,
            fresh,
        ));
        stream.set_task(task.abort_handle());
    }
}

impl Runtime {
    /// The probe of `key`, set up once for its stream: an HTTP probe's client is
    /// built here. `Err` is a local problem (logged; the stream's verdicts stay).
    fn probe_for(&self, key: &ProbeKey) -> Result<Arc<Probe>, String> {
        let addr = key.socket_addr();
        Ok(Arc::new(match &key.check {
            Check::Tcp => Probe::Tcp(addr),
            Check::Http(h) => Probe::Http(Box::new(HttpProbe::new(
                h,
                addr,
                &self.options.user_agent,
                &self.tls,
            )?)),
        }))
    }
}

/// Decrements the in-flight gauge even when the probe is cancelled.
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    fn new(g: &'a AtomicU64) -> Self {
        g.fetch_add(1, Ordering::Relaxed);
        Self(g)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// At most this many probes of one stream are outstanding (in flight or waiting for
/// the in-flight cap). A probe that started on time ends by the next slot (the
/// timeout is at most the period), so two only overlap by scheduling jitter; a
/// third means the cap has held probes back for a whole period, and the slot is
/// skipped rather than queueing probes without bound.
const MAX_OUTSTANDING: usize = 2;

/// One probe of `stream` scheduled at `at`: waits for the in-flight cap, probes.
async fn probe_at(
    hub: Arc<HealthHub>,
    sem: Arc<Semaphore>,
    probe: Arc<Probe>,
    timeout: Duration,
    at: Instant,
) -> Option<(ProbeResult, Duration)> {
    let permit = sem.acquire_owned().await.ok()?;
    hub.stats
        .lateness
        .observe(Instant::now().saturating_duration_since(at));
    let r = {
        let _g = InFlight::new(&hub.stats.in_flight);
        probe.run(timeout).await
    };
    drop(permit);
    Some(r)
}

/// The task of one probe stream: starts a probe at every slot of its grid, whether
/// or not the previous one has finished, and records results in the order the
/// probes started, each the moment it is known. So a probe that runs into its
/// timeout counts at once and never pushes the next one back: a black-holed VIP
/// fails `failureThreshold` probes in `failureThreshold` periods, like a refusing
/// one (CONTRACT §8).
async fn run(
    hub: Arc<HealthHub>,
    stream: Arc<Stream>,
    probe: Result<Arc<Probe>, String>,
    sem: Arc<Semaphore>,
    base: Instant,
    first: Instant,
    fresh: bool,
) {
    let (period, timeout) = (stream.key.period(), stream.key.timeout());
    let mut outstanding = FuturesOrdered::new();
    let mut at = first;
    // A stream never probed before proves a new target: its first two probes must
    // be a period apart, or `successThreshold` successes could come within about
    // `successThreshold - 2` periods (the off-grid first probe and the next grid
    // point may be milliseconds apart).
    let mut proving = fresh;
    loop {
        tokio::select! {
            // Results first: a probe that ended exactly at the next slot counts
            // before that slot's probe goes out.
            biased;
            Some(done) = outstanding.next(), if !outstanding.is_empty() => {
                match done {
                    Some((result, took)) => hub.record(&stream, &result, took),
                    None => return, // the semaphore is closed: shutting down
                }
            }
            () = tokio::time::sleep_until(at) => {
                match &probe {
                    Ok(probe) if outstanding.len() < MAX_OUTSTANDING => outstanding.push_back(
                        probe_at(hub.clone(), sem.clone(), probe.clone(), timeout, at),
                    ),
                    Ok(_) => {}
                    Err(e) => hub.record(&stream, &ProbeResult::LocalError(e.clone()), Duration::ZERO),
                }
                // The next slot of the grid (at most a period away, also after the
                // off-grid first probe); after a stall (a suspended process, a
                // saturated runtime) the next one from now rather than a burst.
                at = if std::mem::take(&mut proving) && proves_slowly(&stream) {
                    grid_at_or_after(base, period, at + period)
                } else {
                    grid_at_or_after(base, period, at + Duration::from_nanos(1))
                };
                let now = Instant::now();
                if at < now {
                    at = grid_at_or_after(base, period, now);
                }
            }
        }
    }
}

/// Whether every verdict the stream feeds needs two or more successes to turn
/// Healthy. Only then may its second probe wait a full period: with a
/// `successThreshold` of 1 the first success already answers the target, and the
/// failover bound needs the next probe at the next grid point.
fn proves_slowly(stream: &Stream) -> bool {
    let st = stream.lock();
    !st.verdicts.is_empty() && st.verdicts.iter().all(|v| v.thresholds.success >= 2)
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the resulting soft limit.
fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    // rlim_t is u64 on Linux but not everywhere.
    #[allow(clippy::unnecessary_cast)]
    let soft = lim.rlim_cur as u64;
    soft
}

/// How many probes may be in flight with `nofile` descriptors.
fn in_flight_cap(nofile: u64) -> usize {
    let cap = if nofile > 2 * FD_RESERVE {
        nofile - FD_RESERVE
    } else {
        nofile / 2
    };
    cap.clamp(16, MAX_IN_FLIGHT) as usize
}

/// The running prober; [`Prober::shutdown`] stops it and writes the final state.
pub struct Prober {
    hub: Arc<HealthHub>,
    store: Option<Arc<dyn Store>>,
    persister: Option<Persister>,
}

impl HealthHub {
    /// Starts probing every stream (and every stream created from now on) on the
    /// current tokio runtime — the control plane's, never the DNS workers'. With a
    /// `store`, the persistence task writes changed verdicts to it, and deletes the
    /// restored records no NameService claimed. Call once, after
    /// [`HealthHub::restore`] and the registry's opening.
    pub fn start(self: &Arc<Self>, store: Option<Arc<dyn Store>>) -> Prober {
        self.start_with(store, Options::default())
    }

    /// [`HealthHub::start`] with `options` (the instance's name for HTTP probes).
    pub fn start_with(self: &Arc<Self>, store: Option<Arc<dyn Store>>, options: Options) -> Prober {
        let nofile = raise_nofile_limit();
        let cap = in_flight_cap(nofile);
        let stale = self.table.take_unclaimed();
        if !stale.is_empty() {
            tracing::info!(
                records = stale.len(),
                "forgetting stored health of endpoints no NameService uses"
            );
        }
        // Subscribed before the first probe, so no change goes unwritten.
        let persister = store
            .clone()
            .map(|store| Persister::start(self.clone(), store, stale));
        let rt = Runtime {
            handle: Handle::current(),
            sem: Arc::new(Semaphore::new(cap)),
            epoch: Instant::now(),
            hub: Arc::downgrade(self),
            options,
            tls: super::http::tls_config(),
        };
        // With the table locked: a stream created concurrently is either here or
        // created after the runtime is set (and spawned by its acquire), never both.
        let streams = self.table.with_streams(|streams| {
            if self.prober.set(rt).is_err() {
                panic!("HealthHub::start called twice");
            }
            let rt = self.prober.get().expect("just set");
            streams.map(|s| rt.spawn(s)).count()
        });
        tracing::info!(
            streams,
            max_in_flight = cap,
            nofile,
            "health prober started"
        );
        Prober {
            hub: self.clone(),
            store,
            persister,
        }
    }
}

impl Prober {
    /// Stops every probe, then writes the full state of every verdict (consecutive
    /// counts and last probe times included) to the store.
    pub async fn shutdown(mut self) -> Result<(), StoreError> {
        self.hub.stopped.store(true, Ordering::Release);
        for s in self.hub.table.streams() {
            s.abort();
        }
        if let (Some(p), Some(store)) = (self.persister.take(), &self.store) {
            let n = p.shutdown(&self.hub, store).await?;
            tracing::debug!(records = n, "health state written at shutdown");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_points() {
        let base = Instant::now();
        let p = Duration::from_secs(5);
        assert_eq!(
            grid_at_or_after(base, p, base - Duration::from_secs(1)),
            base
        );
        assert_eq!(grid_at_or_after(base, p, base), base);
        assert_eq!(
            grid_at_or_after(base, p, base + Duration::from_millis(1)),
            base + p
        );
        assert_eq!(grid_at_or_after(base, p, base + p), base + p);
        assert_eq!(
            grid_at_or_after(base, p, base + 2 * p + Duration::from_nanos(1)),
            base + 3 * p
        );
    }

    #[test]
    fn in_flight_cap_leaves_descriptors() {
        assert_eq!(in_flight_cap(20_000), 20_000 - 2048);
        assert_eq!(in_flight_cap(1024), 512);
        assert_eq!(in_flight_cap(10), 16);
        assert_eq!(in_flight_cap(u64::MAX), 65_536);
    }
}
