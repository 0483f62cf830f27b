//! Prometheus metrics, exposed on `/metrics` through the `prometheus-client` crate.
//!
//! Two kinds of numbers live here:
//!
//! - **Hot-path counters** (DNS queries by type and rcode, truncations, drops,
//!   fail-open answers) are plain atomics in [`Metrics`], bumped with one relaxed
//!   `fetch_add` (or added in bulk from a worker's [`DnsTally`]) and read only at
//!   scrape time by a [`Collector`]: no label lookup, hashing or lock per query.
//! - **Control-plane metrics** (API requests, the registry size, process and build
//!   information) use the crate's own metric types or small collectors.
//!
//! Every module that owns numbers exports them the same way: it implements
//! [`Collector`] for a type that reads its atomics, and [`app`](crate::app)
//! registers it in the one [`Exporter`] built at startup. The helpers
//! [`counter`], [`gauge`], [`counter_family`] and [`gauge_family`] keep such
//! collectors short. Every name is a constant with the `gslb_` prefix (process
//! metrics use the names every Prometheus client library uses) and is listed in
//! docs/operations.md.
//!
//! **Architecture Invariant:** nothing on the DNS answer path takes a lock, hashes a
//! label set or allocates for a metric.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric, MetricEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

pub const DNS_QUERIES: &str = "gslb_dns_queries_total";
pub const DNS_TRUNCATED: &str = "gslb_dns_truncated_total";
pub const DNS_DROPPED: &str = "gslb_dns_dropped_total";
pub const DNS_FAILED_OPEN: &str = "gslb_dns_failed_open_answers_total";
pub const DNS_RRL_DROPPED: &str = "gslb_dns_rrl_dropped_total";
pub const DNS_RRL_SLIPPED: &str = "gslb_dns_rrl_slipped_total";
pub const DNS_TCP_EVICTED: &str = "gslb_dns_tcp_evicted_total";
pub const API_REQUESTS: &str = "gslb_api_requests_total";
pub const NAMESERVICES: &str = "gslb_nameservices";
pub const API_CONNECTIONS: &str = "gslb_api_connections";
pub const API_MAX_CONNECTIONS: &str = "gslb_api_max_connections";
pub const API_TIMEOUTS: &str = "gslb_api_connection_timeouts_total";
pub const API_ACCEPT_ERRORS: &str = "gslb_api_accept_errors_total";
/// `gslb_build_info{version="..."} 1`.
pub const BUILD_INFO: &str = "gslb_build_info";

/// Process metrics, named as every Prometheus client library names them.
pub const PROCESS_CPU: &str = "process_cpu_seconds_total";
pub const PROCESS_RSS: &str = "process_resident_memory_bytes";
pub const PROCESS_VSIZE: &str = "process_virtual_memory_bytes";
pub const PROCESS_OPEN_FDS: &str = "process_open_fds";
pub const PROCESS_MAX_FDS: &str = "process_max_fds";
pub const PROCESS_START_TIME: &str = "process_start_time_seconds";

/// Content type of the Prometheus text exposition format (version 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Query types counted separately; everything else is `OTHER`.
pub const QTYPES: [&str; 15] = [
    "A", "AAAA", "NS", "SOA", "CNAME", "MX", "TXT", "SRV", "PTR", "CAA", "ANY", "AXFR", "IXFR",
    "HTTPS", "OTHER",
];
/// Response codes counted separately; everything else is `OTHER`.
pub const RCODES: [&str; 8] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "OTHER",
];

/// Index into [`QTYPES`] for a numeric query type.
pub fn qtype_index(qtype: u16) -> usize {
    match qtype {
        1 => 0,
        28 => 1,
        2 => 2,
        6 => 3,
        5 => 4,
        15 => 5,
        16 => 6,
        33 => 7,
        12 => 8,
        257 => 9,
        255 => 10,
        252 => 11,
        251 => 12,
        65 => 13,
        _ => 14,
    }
}

/// Index into [`RCODES`] for a (possibly extended) response code.
pub fn rcode_index(rcode: u16) -> usize {
    match rcode {
        0..=5 => rcode as usize,
        16 => 6,
        _ => 7,
    }
}

/// Labels of `gslb_api_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ApiLabels {
    pub route: String,
    pub method: &'static str,
    pub status: u16,
}

/// The server's own counters: DNS (hot path, plain atomics) and API requests.
#[derive(Debug, Default)]
pub struct Metrics {
    dns: [[AtomicU64; RCODES.len()]; QTYPES.len()],
    truncated: AtomicU64,
    dropped: AtomicU64,
    failed_open: AtomicU64,
    rrl_dropped: AtomicU64,
    rrl_slipped: AtomicU64,
    tcp_evicted: AtomicU64,
    api: Family<ApiLabels, Counter>,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// One answered DNS query.
    #[inline]
    pub fn dns_query(&self, qtype: u16, rcode: u16) {
        self.dns[qtype_index(qtype)][rcode_index(rcode)].fetch_add(1, Ordering::Relaxed);
    }

    /// One UDP answer sent truncated (TC=1).
    #[inline]
    pub fn dns_truncated(&self) {
        self.truncated.fetch_add(1, Ordering::Relaxed);
    }

    /// One datagram dropped without an answer (unparseable header, a response...).
    #[inline]
    pub fn dns_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// One NameService answer that failed open: no enabled target of the family was
    /// eligible, so every enabled one was answered (`allDown: AnswerAll`; the DNS side
    /// calls this when `policy::Selection::failed_open` is set).
    #[inline]
    pub fn dns_failed_open(&self) {
        self.failed_open.fetch_add(1, Ordering::Relaxed);
    }

    /// One TCP connection closed to make room for a new one (a cap was reached).
    #[inline]
    pub fn dns_tcp_evicted(&self) {
        self.tcp_evicted.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds a worker's counts (see [`DnsTally`]) and clears them.
    pub fn add_dns(&self, tally: &mut DnsTally) {
        let mut cells = tally.touched;
        while cells != 0 {
            let c = cells.trailing_zeros() as usize;
            cells &= cells - 1;
            let (qi, ri) = (c / RCODES.len(), c % RCODES.len());
            self.dns[qi][ri].fetch_add(tally.dns[qi][ri], Ordering::Relaxed);
            tally.dns[qi][ri] = 0;
        }
        tally.touched = 0;
        if tally.truncated > 0 {
            self.truncated.fetch_add(tally.truncated, Ordering::Relaxed);
            tally.truncated = 0;
        }
        if tally.dropped > 0 {
            self.dropped.fetch_add(tally.dropped, Ordering::Relaxed);
            tally.dropped = 0;
        }
        if tally.failed_open > 0 {
            self.failed_open
                .fetch_add(tally.failed_open, Ordering::Relaxed);
            tally.failed_open = 0;
        }
        if tally.rrl_dropped > 0 {
            self.rrl_dropped
                .fetch_add(tally.rrl_dropped, Ordering::Relaxed);
            tally.rrl_dropped = 0;
        }
        if tally.rrl_slipped > 0 {
            self.rrl_slipped
                .fetch_add(tally.rrl_slipped, Ordering::Relaxed);
            tally.rrl_slipped = 0;
        }
    }

    /// One API request, by route template (e.g. `/api/v1/nameservices/{name}`).
    /// Off the DNS path: the label set is hashed here.
    pub fn api_request(&self, route: &str, method: &'static str, status: u16) {
        self.api
            .get_or_create(&ApiLabels {
                route: route.to_owned(),
                method,
                status,
            })
            .inc();
    }

    /// How many DNS queries of `qtype` were answered with `rcode` (tests, benches).
    pub fn dns_count(&self, qtype: u16, rcode: u16) -> u64 {
        self.dns[qtype_index(qtype)][rcode_index(rcode)].load(Ordering::Relaxed)
    }
}

impl Collector for Metrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        counter_family(
            &mut enc,
            DNS_QUERIES,
            "DNS queries answered, by query type and response code",
            self.dns.iter().enumerate().flat_map(|(qi, row)| {
                row.iter().enumerate().filter_map(move |(ri, c)| {
                    let v = c.load(Ordering::Relaxed);
                    (v > 0).then_some(([("qtype", QTYPES[qi]), ("rcode", RCODES[ri])], v))
                })
            }),
        )?;
        counter(
            &mut enc,
            DNS_TRUNCATED,
            "UDP answers sent with TC=1",
            self.truncated.load(Ordering::Relaxed),
        )?;
        counter(
            &mut enc,
            DNS_DROPPED,
            "DNS messages dropped without an answer",
            self.dropped.load(Ordering::Relaxed),
        )?;
        counter(
            &mut enc,
            DNS_FAILED_OPEN,
            "NameService answers that failed open to every enabled target because none was healthy",
            self.failed_open.load(Ordering::Relaxed),
        )?;
        counter(
            &mut enc,
            DNS_RRL_DROPPED,
            "UDP responses not sent because their bucket was over the rate limit",
            self.rrl_dropped.load(Ordering::Relaxed),
        )?;
        counter(
            &mut enc,
            DNS_RRL_SLIPPED,
            "Rate-limited UDP responses sent truncated (TC=1) instead of dropped (slip)",
            self.rrl_slipped.load(Ordering::Relaxed),
        )?;
        counter(
            &mut enc,
            DNS_TCP_EVICTED,
            "TCP connections closed to make room for a new one (tcp_max_clients or tcp_max_per_source reached)",
            self.tcp_evicted.load(Ordering::Relaxed),
        )?;
        let m = enc.encode_descriptor(
            counter_base(API_REQUESTS),
            "REST API requests, by route, method and status",
            None,
            MetricType::Counter,
        )?;
        self.api.encode(m)
    }
}

/// DNS counts kept by one worker without atomics and added to [`Metrics`] in bulk
/// ([`Metrics::add_dns`]), e.g. once per batch of datagrams: the shared counters
/// are then touched a few times per batch instead of once per query.
#[derive(Debug, Default)]
pub struct DnsTally {
    dns: [[u64; RCODES.len()]; QTYPES.len()],
    /// Bit `qtype_index * RCODES.len() + rcode_index` set for each non-zero cell.
    touched: u128,
    truncated: u64,
    dropped: u64,
    failed_open: u64,
    rrl_dropped: u64,
    rrl_slipped: u64,
}

const _: () = assert!(QTYPES.len() * RCODES.len() <= 128);

impl DnsTally {
    /// One answered query (see [`Metrics::dns_query`]).
    #[inline]
    pub fn query(&mut self, qtype: u16, rcode: u16) {
        let (qi, ri) = (qtype_index(qtype), rcode_index(rcode));
        self.dns[qi][ri] += 1;
        self.touched |= 1 << (qi * RCODES.len() + ri);
    }

    /// One answer sent truncated.
    #[inline]
    pub fn truncated(&mut self) {
        self.truncated += 1;
    }

    /// One message dropped.
    #[inline]
    pub fn dropped(&mut self) {
        self.dropped += 1;
    }

    /// One NameService answer that failed open (see [`Metrics::dns_failed_open`]).
    #[inline]
    pub fn failed_open(&mut self) {
        self.failed_open += 1;
    }

    /// One response dropped by the rate limiter.
    #[inline]
    pub fn rrl_dropped(&mut self) {
        self.rrl_dropped += 1;
    }

    /// One rate-limited response sent truncated (slip).
    #[inline]
    pub fn rrl_slipped(&mut self) {
        self.rrl_slipped += 1;
    }
}

// ---- The exporter: one registry, built at startup, encoded on every scrape ----

/// Every metric family the server exposes. Built once at startup (components
/// register their collectors), then only read: a scrape encodes it.
#[derive(Debug, Default)]
pub struct Exporter {
    registry: Registry,
}

impl Exporter {
    /// An exporter with `gslb_build_info` and the process metrics.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        registry.register(
            BUILD_INFO.strip_suffix("_info").unwrap_or(BUILD_INFO),
            "Build information of the running gslb (always 1)",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register_collector(Box::new(ProcessCollector::new()));
        Self { registry }
    }

    /// Adds a collector; its families are encoded in registration order.
    pub fn register(&mut self, collector: impl Collector) {
        self.registry.register_collector(Box::new(collector));
    }

    /// Adds a gauge whose value `read` computes at scrape time (e.g. a map's size).
    pub fn gauge_fn<V: EncodeGaugeValue + 'static>(
        &mut self,
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> V + Send + Sync + 'static,
    ) {
        self.register(GaugeFn {
            name,
            help,
            read: Box::new(read),
        });
    }

    /// The text exposition format (version 0.0.4) of every family.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail; a collector that fails leaves a
        // truncated body, which a scraper reports.
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::warn!(error = %e, "encoding /metrics failed");
        }
        out
    }
}

/// A gauge computed at scrape time.
struct GaugeFn<V> {
    name: &'static str,
    help: &'static str,
    read: Box<dyn Fn() -> V + Send + Sync>,
}

impl<V> std::fmt::Debug for GaugeFn<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GaugeFn").field("name", &self.name).finish()
    }
}

impl<V: EncodeGaugeValue + 'static> Collector for GaugeFn<V> {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        gauge(&mut enc, self.name, self.help, (self.read)())
    }
}

// ---- Helpers for collectors ----

/// The name to give the encoder for a counter: it appends `_total` itself.
fn counter_base(name: &str) -> &str {
    name.strip_suffix("_total").unwrap_or(name)
}

/// One unlabelled counter sample. `name` is the exposed name, ending in `_total`.
pub fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let m = enc.encode_descriptor(counter_base(name), help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(m)
}

/// One unlabelled gauge sample.
pub fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl EncodeGaugeValue,
) -> Result<(), std::fmt::Error> {
    let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(m)
}

/// A counter family: one sample per label set. `name` ends in `_total`.
pub fn counter_family<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(counter_base(name), help, None, MetricType::Counter)?;
    for (labels, v) in samples {
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A gauge family: one sample per label set.
pub fn gauge_family<L: EncodeLabelSet, V: EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, V)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in samples {
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A histogram sample: `buckets` are (upper bound, count in that bucket, not
/// cumulative); the encoder adds `+Inf` from `count`.
pub fn histogram(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    sum: f64,
    count: u64,
    buckets: &[(f64, u64)],
) -> Result<(), std::fmt::Error> {
    let mut m: MetricEncoder = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, buckets, None)
}

// ---- Process metrics ----

/// `process_*` metrics as the Go and Python clients expose them, read from the
/// kernel at scrape time (Linux: /proc/self; elsewhere only CPU time and the
/// descriptor limit, from getrusage/getrlimit).
#[derive(Debug)]
pub struct ProcessCollector {
    /// Unix seconds at which the process started.
    start_time: f64,
}

impl ProcessCollector {
    pub fn new() -> Self {
        Self {
            start_time: process_start_time().unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0)
            }),
        }
    }
}

impl Default for ProcessCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = enc.encode_descriptor(
            counter_base(PROCESS_CPU),
            "Total user and system CPU time spent in seconds",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(cpu_seconds()).encode(m)?;
        if let Some(mem) = memory() {
            gauge(
                &mut enc,
                PROCESS_RSS,
                "Resident memory size in bytes",
                mem.resident,
            )?;
            gauge(
                &mut enc,
                PROCESS_VSIZE,
                "Virtual memory size in bytes",
                mem.virtual_size,
            )?;
        }
        if let Some(n) = open_fds() {
            gauge(
                &mut enc,
                PROCESS_OPEN_FDS,
                "Number of open file descriptors",
                n,
            )?;
        }
        if let Some(n) = max_fds() {
            gauge(
                &mut enc,
                PROCESS_MAX_FDS,
                "Maximum number of open file descriptors",
                n,
            )?;
        }
        gauge(
            &mut enc,
            PROCESS_START_TIME,
            "Start time of the process since unix epoch in seconds",
            self.start_time,
        )
    }
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn max_fds() -> Option<u64> {
    // SAFETY: getrlimit only writes the struct it is given.
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return None;
    }
    Some(rl.rlim_cur as u64)
}

fn open_fds() -> Option<u64> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    // The directory handle itself is one of the entries; do not count it.
    Some((dir.count() as u64).saturating_sub(1))
}

struct Memory {
    resident: u64,
    virtual_size: u64,
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as u64 } else { 4096 }
}

/// `/proc/self/statm`: size and resident, in pages.
fn memory() -> Option<Memory> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let mut f = statm
        .split_ascii_whitespace()
        .map(|v| v.parse::<u64>().ok());
    let (size, resident) = (f.next()??, f.next()??);
    let page = page_size();
    Some(Memory {
        resident: resident * page,
        virtual_size: size * page,
    })
}

/// Unix seconds at which this process started: boot time (`btime` of /proc/stat)
/// plus the process's start in clock ticks after boot (field 22 of /proc/self/stat).
fn process_start_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    start_time_from(&stat, &boot, if ticks > 0 { ticks as f64 } else { 100.0 })
}

fn start_time_from(stat: &str, boot: &str, ticks_per_second: f64) -> Option<f64> {
    // The command name (field 2) is in parentheses and may hold spaces: count the
    // fields after its closing parenthesis. Field 3 is the first after it; field
    // 22 (starttime) is the 20th.
    let after = &stat[stat.rfind(')')? + 1..];
    let start_ticks: f64 = after.split_ascii_whitespace().nth(19)?.parse().ok()?;
    let btime: f64 = boot
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(btime + start_ticks / ticks_per_second)
}

/// The text format of one collector alone (tests of a module's collector).
pub fn render_one(collector: impl Collector) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector));
    let mut out = String::new();
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn renders_text_format() {
        let m = Arc::new(Metrics::new());
        m.dns_query(1, 0);
        m.dns_query(1, 0);
        m.dns_query(99, 16);
        m.api_request("/api/v1/nameservices/{name}", "PUT", 201);
        m.dns_failed_open();
        let mut e = Exporter::new();
        e.register(m.clone());
        e.gauge_fn(NAMESERVICES, "NameServices registered", || 3u64);
        let s = e.render();
        assert!(
            s.contains("gslb_dns_queries_total{qtype=\"A\",rcode=\"NOERROR\"} 2\n"),
            "{s}"
        );
        assert!(s.contains("gslb_dns_queries_total{qtype=\"OTHER\",rcode=\"BADVERS\"} 1\n"));
        assert!(s.contains("# TYPE gslb_dns_queries_total counter\n"), "{s}");
        assert!(s.contains("gslb_api_requests_total{route=\"/api/v1/nameservices/{name}\",method=\"PUT\",status=\"201\"} 1\n"), "{s}");
        assert!(s.contains("# TYPE gslb_nameservices gauge\ngslb_nameservices 3\n"));
        assert!(
            s.contains("\ngslb_dns_failed_open_answers_total 1\n"),
            "{s}"
        );
        assert!(
            s.contains(&format!(
                "gslb_build_info{{version=\"{}\"}} 1\n",
                env!("CARGO_PKG_VERSION")
            )),
            "{s}"
        );
        // No family is named twice (`_total_total`), every sample is `name value`.
        assert!(!s.contains("_total_total"), "{s}");
        for l in s.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = l.rsplit_once(' ').unwrap();
            assert!(v.parse::<f64>().is_ok(), "{l}");
        }
    }

    #[test]
    fn process_metrics_are_plausible() {
        let s = render_one(ProcessCollector::new());
        let value = |name: &str| -> f64 {
            s.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing in {s}"))
                .parse()
                .unwrap()
        };
        assert!(
            s.contains("# TYPE process_cpu_seconds_total counter\n"),
            "{s}"
        );
        assert!(value(PROCESS_CPU) >= 0.0);
        // This test process holds at least stdin/stdout/stderr and some MiB.
        assert!(value(PROCESS_OPEN_FDS) >= 3.0, "{s}");
        assert!(value(PROCESS_MAX_FDS) >= value(PROCESS_OPEN_FDS), "{s}");
        assert!(value(PROCESS_RSS) > 1_000_000.0, "{s}");
        assert!(value(PROCESS_VSIZE) >= value(PROCESS_RSS), "{s}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = value(PROCESS_START_TIME);
        assert!(
            start <= now + 1.0 && start > now - 3600.0,
            "{start} vs {now}"
        );
    }

    #[test]
    fn start_time_parses_a_command_name_with_spaces_and_parentheses() {
        let stat = "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 4 0 12345 1000000 300";
        let boot = "cpu  1 2 3\nbtime 1700000000\nprocesses 10\n";
        assert_eq!(
            start_time_from(stat, boot, 100.0),
            Some(1_700_000_000.0 + 123.45)
        );
        assert_eq!(start_time_from("garbage", boot, 100.0), None);
    }

    #[test]
    fn tallies_add_up_like_single_counts() {
        let (bulk, single) = (Arc::new(Metrics::new()), Arc::new(Metrics::new()));
        let mut t = DnsTally::default();
        for (qtype, rcode) in [(1, 0), (1, 0), (28, 3), (65535, 16), (255, 99)] {
            t.query(qtype, rcode);
            single.dns_query(qtype, rcode);
        }
        t.truncated();
        single.dns_truncated();
        t.failed_open();
        single.dns_failed_open();
        bulk.add_dns(&mut t);
        t.query(1, 0);
        t.dropped();
        single.dns_query(1, 0);
        single.dns_dropped();
        bulk.add_dns(&mut t);
        bulk.add_dns(&mut t); // cleared: adds nothing
        assert_eq!(render_one(bulk.clone()), render_one(single));
        assert_eq!(bulk.dns_count(1, 0), 3);
    }
}
