//! Prometheus metrics: lock-free counters on the hot path, rendered in the text
//! exposition format on `/metrics`. Every name is a constant here and listed in
//! docs/operations.md.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

pub const DNS_QUERIES: &str = "gslb_dns_queries_total";
pub const DNS_TRUNCATED: &str = "gslb_dns_truncated_total";
pub const DNS_DROPPED: &str = "gslb_dns_dropped_total";
pub const DNS_FAILED_OPEN: &str = "gslb_dns_failed_open_answers_total";
pub const DNS_RRL_DROPPED: &str = "gslb_dns_rrl_dropped_total";
pub const DNS_RRL_SLIPPED: &str = "gslb_dns_rrl_slipped_total";
pub const DNS_TCP_EVICTED: &str = "gslb_dns_tcp_evicted_total";
pub const API_REQUESTS: &str = "gslb_api_requests_total";
pub const NAMESERVICES: &str = "gslb_nameservices";

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

#[derive(Debug, Default)]
pub struct Metrics {
    dns: [[AtomicU64; RCODES.len()]; QTYPES.len()],
    truncated: AtomicU64,
    dropped: AtomicU64,
    failed_open: AtomicU64,
    rrl_dropped: AtomicU64,
    rrl_slipped: AtomicU64,
    tcp_evicted: AtomicU64,
    api: Mutex<BTreeMap<(String, &'static str, u16), u64>>,
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
    pub fn api_request(&self, route: &str, method: &'static str, status: u16) {
        let mut m = self.api.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((route.to_string(), method, status)).or_default() += 1;
    }

    /// Renders the metrics owned here; `nameservices` is the current registry size.
    pub fn render(&self, out: &mut String, nameservices: usize) {
        header(
            out,
            DNS_QUERIES,
            "counter",
            "DNS queries answered, by query type and response code.",
        );
        for (qi, row) in self.dns.iter().enumerate() {
            for (ri, c) in row.iter().enumerate() {
                let v = c.load(Ordering::Relaxed);
                if v > 0 {
                    let _ = writeln!(
                        out,
                        "{DNS_QUERIES}{{qtype=\"{}\",rcode=\"{}\"}} {v}",
                        QTYPES[qi], RCODES[ri]
                    );
                }
            }
        }
        scalar(
            out,
            DNS_TRUNCATED,
            "counter",
            "UDP answers sent with TC=1.",
            self.truncated.load(Ordering::Relaxed),
        );
        scalar(
            out,
            DNS_DROPPED,
            "counter",
            "DNS messages dropped without an answer.",
            self.dropped.load(Ordering::Relaxed),
        );
        scalar(
            out,
            DNS_FAILED_OPEN,
            "counter",
            "NameService answers that failed open to every enabled target because none was healthy.",
            self.failed_open.load(Ordering::Relaxed),
        );
        scalar(
            out,
            DNS_RRL_DROPPED,
            "counter",
            "UDP responses not sent because the client's bucket was over the rate limit.",
            self.rrl_dropped.load(Ordering::Relaxed),
        );
        scalar(
            out,
            DNS_RRL_SLIPPED,
            "counter",
            "Rate-limited UDP responses sent truncated (TC=1) instead of dropped (slip).",
            self.rrl_slipped.load(Ordering::Relaxed),
        );
        scalar(
            out,
            DNS_TCP_EVICTED,
            "counter",
            "TCP connections closed to make room for a new one (tcp_max_clients or tcp_max_per_source reached).",
            self.tcp_evicted.load(Ordering::Relaxed),
        );
        header(
            out,
            API_REQUESTS,
            "counter",
            "REST API requests, by route, method and status.",
        );
        for ((route, method, status), v) in
            self.api.lock().unwrap_or_else(|e| e.into_inner()).iter()
        {
            let _ = writeln!(
                out,
                "{API_REQUESTS}{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {v}",
                escape(route)
            );
        }
        header(out, NAMESERVICES, "gauge", "NameServices registered.");
        let _ = writeln!(out, "{NAMESERVICES} {nameservices}");
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

/// Writes the `# HELP` and `# TYPE` lines of a metric family.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Writes a metric family of one unlabelled sample.
pub fn scalar(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Escapes a label value (backslash, double quote, newline).
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_text_format() {
        let m = Metrics::new();
        m.dns_query(1, 0);
        m.dns_query(1, 0);
        m.dns_query(99, 16);
        m.api_request("/api/v1/nameservices/{name}", "PUT", 201);
        m.dns_failed_open();
        let mut s = String::new();
        m.render(&mut s, 3);
        assert!(
            s.contains("gslb_dns_queries_total{qtype=\"A\",rcode=\"NOERROR\"} 2\n"),
            "{s}"
        );
        assert!(s.contains("gslb_dns_queries_total{qtype=\"OTHER\",rcode=\"BADVERS\"} 1\n"));
        assert!(s.contains("gslb_api_requests_total{route=\"/api/v1/nameservices/{name}\",method=\"PUT\",status=\"201\"} 1\n"));
        assert!(s.contains("# TYPE gslb_nameservices gauge\ngslb_nameservices 3\n"));
        assert!(
            s.contains("\ngslb_dns_failed_open_answers_total 1\n"),
            "{s}"
        );
    }

    #[test]
    fn tallies_add_up_like_single_counts() {
        let (bulk, single) = (Metrics::new(), Metrics::new());
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
        let (mut a, mut b) = (String::new(), String::new());
        bulk.render(&mut a, 0);
        single.render(&mut b, 0);
        assert_eq!(a, b);
        assert!(a.contains("gslb_dns_queries_total{qtype=\"A\",rcode=\"NOERROR\"} 3\n"));
    }
}
