//! Health-check metrics: lock-free counters and histograms bumped by the prober,
//! exported by [`super::HealthCollector`]. Names are listed in
//! docs/health-checks.md.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::DescriptorEncoder;

use super::Health;
use super::probe::RESULT_LABELS;

pub const PROBES: &str = "gslb_health_probes_total";
pub const PROBE_DURATION: &str = "gslb_health_probe_duration_seconds";
pub const PROBE_LATENESS: &str = "gslb_health_probe_lateness_seconds";
pub const TRANSITIONS: &str = "gslb_health_transitions_total";
pub const ENDPOINT_HEALTHY: &str = "gslb_health_endpoint_healthy";
pub const ENDPOINTS: &str = "gslb_health_endpoints";
pub const PROBE_STREAMS: &str = "gslb_health_probe_streams";
pub const DAMPED: &str = "gslb_health_endpoints_damped";
pub const IN_FLIGHT: &str = "gslb_health_probes_in_flight";
pub const STORE_WRITES: &str = "gslb_health_store_writes_total";
pub const OBSERVATIONS: &str = "gslb_health_observations";
pub const OBSERVERS_DISAGREE: &str = "gslb_health_observers_disagree";
pub const CUT_OFF: &str = "gslb_health_cut_off";

/// Bucket bounds (seconds) of the probe duration histogram.
pub const DURATION_BOUNDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Bucket bounds (seconds) of the probe start lateness histogram: how long after its
/// scheduled instant a probe actually started (timer slack, a saturated runtime, the
/// in-flight cap). Fine at the low end, where a healthy prober lives.
pub const LATENESS_BOUNDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The `q` quantile of a histogram with `bounds` and per-bucket `counts` (one more
/// than the bounds: +Inf), estimated like PromQL's `histogram_quantile`: linear
/// interpolation inside the bucket that holds it. `None` with no observations; the
/// last finite bound when it falls in the +Inf bucket.
pub fn quantile(bounds: &[f64], counts: &[u64], q: f64) -> Option<f64> {
    let n = bounds.len();
    let total: u64 = counts.iter().sum();
    if total == 0 || n == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        if c > 0 && (below + c) as f64 >= rank {
            if i >= n {
                return Some(bounds[n - 1]);
            }
            let lo = if i == 0 { 0.0 } else { bounds[i - 1] };
            let hi = bounds[i];
            return Some(lo + (hi - lo) * ((rank - below as f64) / c as f64));
        }
        below += c;
    }
    Some(bounds[n - 1])
}

const STATES: [Health; 3] = [Health::Pending, Health::Healthy, Health::Unhealthy];

fn state_index(h: Health) -> usize {
    match h {
        Health::Pending => 0,
        Health::Healthy => 1,
        // Unchecked never comes out of the state machine; count it with Unhealthy
        // rather than panic.
        Health::Unhealthy | Health::Unchecked => 2,
    }
}

/// A Prometheus histogram with fixed bounds; observations in nanoseconds.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    bounds: &'static [f64; N],
    /// Per-bucket (non-cumulative) counts; the last is +Inf.
    counts: Vec<AtomicU64>,
    sum_ns: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    pub fn new(bounds: &'static [f64; N]) -> Self {
        Self {
            bounds,
            counts: (0..=N).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = self.bounds.iter().position(|b| s <= *b).unwrap_or(N);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Per-bucket (non-cumulative) counts, the last one being +Inf: subtract two of
    /// these to get the histogram of a time window.
    pub fn counts(&self) -> Vec<u64> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    /// The `q` quantile of everything observed so far; see [`quantile`].
    pub fn quantile(&self, q: f64) -> Option<f64> {
        quantile(self.bounds, &self.counts(), q)
    }

    /// Encodes the histogram as the family `name`.
    fn encode(
        &self,
        enc: &mut DescriptorEncoder,
        name: &str,
        help: &str,
    ) -> Result<(), std::fmt::Error> {
        let counts = self.counts();
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .zip(counts.iter().copied())
            .collect();
        crate::metrics::histogram(
            enc,
            name,
            help,
            self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            counts.iter().sum(),
            &buckets,
        )
    }
}

/// Everything the prober counts.
#[derive(Debug)]
pub struct Stats {
    pub probes: [AtomicU64; RESULT_LABELS.len()],
    pub duration: Histogram<{ DURATION_BOUNDS.len() }>,
    pub lateness: Histogram<{ LATENESS_BOUNDS.len() }>,
    /// [from][to] over Pending, Healthy, Unhealthy.
    transitions: [[AtomicU64; 3]; 3],
    pub in_flight: AtomicU64,
    pub store_writes_ok: AtomicU64,
    pub store_writes_failed: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            probes: Default::default(),
            duration: Histogram::new(&DURATION_BOUNDS),
            lateness: Histogram::new(&LATENESS_BOUNDS),
            transitions: Default::default(),
            in_flight: AtomicU64::new(0),
            store_writes_ok: AtomicU64::new(0),
            store_writes_failed: AtomicU64::new(0),
        }
    }
}

impl Stats {
    pub fn transition(&self, from: Health, to: Health) {
        self.transitions[state_index(from)][state_index(to)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn probes_total(&self) -> u64 {
        self.probes.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Encodes the counters and histograms (the per-endpoint gauges are encoded by
    /// the hub, which owns the table).
    pub fn encode(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use crate::metrics::{counter_family, gauge};
        counter_family(
            enc,
            PROBES,
            "TCP health probes finished, by result",
            RESULT_LABELS
                .iter()
                .zip(&self.probes)
                .map(|(label, c)| ([("result", *label)], c.load(Ordering::Relaxed))),
        )?;
        self.duration.encode(
            enc,
            PROBE_DURATION,
            "Time from the start of a TCP probe to its result",
        )?;
        self.lateness.encode(
            enc,
            PROBE_LATENESS,
            "How long after its scheduled instant a probe started",
        )?;
        counter_family(
            enc,
            TRANSITIONS,
            "Health verdict changes, by old and new verdict",
            STATES.iter().enumerate().flat_map(|(fi, from)| {
                STATES
                    .iter()
                    .enumerate()
                    .filter(move |(ti, _)| *ti != fi)
                    .map(move |(ti, to)| {
                        (
                            [("from", from.as_str()), ("to", to.as_str())],
                            self.transitions[fi][ti].load(Ordering::Relaxed),
                        )
                    })
            }),
        )?;
        gauge(
            enc,
            IN_FLIGHT,
            "TCP probes in flight right now",
            self.in_flight.load(Ordering::Relaxed),
        )?;
        counter_family(
            enc,
            STORE_WRITES,
            "Coalesced writes of health state to the store, by result",
            [
                (
                    [("result", "ok")],
                    self.store_writes_ok.load(Ordering::Relaxed),
                ),
                (
                    [("result", "error")],
                    self.store_writes_failed.load(Ordering::Relaxed),
                ),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct HistogramOnly(Histogram<3>);

    impl prometheus_client::collector::Collector for HistogramOnly {
        fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            self.0.encode(&mut enc, "x", "test")
        }
    }

    #[derive(Debug)]
    struct StatsOnly(Stats);

    impl prometheus_client::collector::Collector for StatsOnly {
        fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            self.0.encode(&mut enc)
        }
    }

    #[test]
    fn histogram_buckets_and_quantiles() {
        static B: [f64; 3] = [0.001, 0.01, 0.1];
        let h = Histogram::new(&B);
        assert_eq!(h.quantile(0.5), None);
        for _ in 0..50 {
            h.observe(Duration::from_micros(500));
        }
        for _ in 0..50 {
            h.observe(Duration::from_millis(5));
        }
        assert_eq!(h.count(), 100);
        // Median at the top of the first bucket, p99 interpolated in the second.
        assert!((h.quantile(0.5).unwrap() - 0.001).abs() < 1e-9);
        let p99 = h.quantile(0.99).unwrap();
        assert!(p99 > 0.009 && p99 <= 0.01, "{p99}");
        h.observe(Duration::from_secs(3));
        assert_eq!(h.quantile(1.0), Some(0.1));
        let s = crate::metrics::render_one(HistogramOnly(h));
        assert!(s.contains("x_bucket{le=\"0.001\"} 50\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"0.01\"} 100\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"+Inf\"} 101\n"), "{s}");
        assert!(s.contains("x_count 101\n"), "{s}");
    }

    #[test]
    fn renders_counters() {
        let st = Stats::default();
        st.probes[0].fetch_add(2, Ordering::Relaxed);
        st.transition(Health::Pending, Health::Healthy);
        let s = crate::metrics::render_one(StatsOnly(st));
        assert!(
            s.contains("gslb_health_probes_total{result=\"success\"} 2\n"),
            "{s}"
        );
        assert!(
            s.contains("gslb_health_probes_total{result=\"timeout\"} 0\n"),
            "{s}"
        );
        assert!(
            s.contains("gslb_health_transitions_total{from=\"Pending\",to=\"Healthy\"} 1\n"),
            "{s}"
        );
        assert!(s.contains("# TYPE gslb_health_probe_duration_seconds histogram\n"));
    }
}
