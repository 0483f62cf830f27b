//! Response rate limiting (RRL), with the semantics of BIND's and Knot's: a
//! spoofed-source flood must not turn gslb into an amplifier, and legitimate
//! resolvers must still get through.
//!
//! Every UDP response is accounted to a bucket: identical responses (the client's
//! network, the query name and type) share one; NXDOMAIN answers share one per zone,
//! and so do error answers, so a random-subdomain flood is limited as one stream.
//! A bucket is credited `responses_per_second` each second, never above that, and
//! debited one per response; a response that finds it below zero is *limited*:
//! every `slip`-th limited response of the bucket goes out truncated (TC=1, which a
//! real resolver retries over TCP, where nothing is limited) and the others are
//! dropped. The debt is capped at `window_seconds` worth of responses, so a client
//! that stops flooding is served again within that window.
//!
//! Exempt: TCP, queries carrying a valid server cookie (both prove the source
//! address), and the `exempt` networks (loopback by default).
//!
//! The table is a fixed array of atomic words allocated at start, 4 per hash set;
//! a new bucket replaces the stalest of its set. Checking a response is a keyed hash
//! of the key and a compare-and-swap: no lock, no allocation, bounded memory
//! however many sources and names a flood uses.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// Settings of the limiter (the `[rrl]` table of the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub responses_per_second: u32,
    pub slip: u8,
    pub window_seconds: u32,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    pub exempt: Vec<ipnet::IpNet>,
    /// Buckets in the table (rounded up to a power of two, at least 4).
    pub table_size: usize,
}

/// What becomes of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the rate (or exempt): sent as it is.
    Pass,
    /// Limited, and this one slips through truncated (TC=1).
    Slip,
    /// Limited: not sent.
    Drop,
}

/// Which responses share a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// An answer, NODATA or referral: per (network, name, type).
    Response = 0,
    /// NXDOMAIN: one bucket per (network, zone).
    NxDomain = 1,
    /// FORMERR, SERVFAIL, REFUSED, NOTIMP, BADVERS...: one per (network, zone).
    Error = 2,
}

/// The limiter: settings and the bucket table, shared by every worker.
pub struct Rrl {
    rate: i64,
    slip: u64,
    /// Lowest balance (the capped debt), negative.
    floor: i64,
    v4_mask: u32,
    v6_mask: u128,
    /// Exempt networks as (network, mask) over IPv6 space (IPv4 as `::ffff:a.b.c.d`).
    exempt: Vec<(u128, u128)>,
    table: Box<[AtomicU64]>,
    /// Number of sets minus one (sets are 4 buckets).
    set_mask: usize,
    /// Keyed per start: the key of a bucket comes from the network, so its slot
    /// must not be predictable.
    keys: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for Rrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rrl")
            .field("rate", &self.rate)
            .field("slip", &self.slip)
            .field("buckets", &self.table.len())
            .finish()
    }
}

const WAYS: usize = 4;

// A bucket is one u64: tag (12 bits) | stamp (16) | slip counter (4) | balance (i32).
// All zeros is an empty bucket (tags are never 0).
const TAG_SHIFT: u32 = 52;
const STAMP_SHIFT: u32 = 36;
const SLIP_SHIFT: u32 = 32;

#[inline]
fn pack(tag: u64, stamp: u16, slip: u64, balance: i64) -> u64 {
    (tag << TAG_SHIFT)
        | (u64::from(stamp) << STAMP_SHIFT)
        | ((slip & 0xf) << SLIP_SHIFT)
        | u64::from(balance as i32 as u32)
}

#[inline]
fn tag_of(w: u64) -> u64 {
    w >> TAG_SHIFT
}

#[inline]
fn stamp_of(w: u64) -> u16 {
    (w >> STAMP_SHIFT) as u16
}

#[inline]
fn slip_of(w: u64) -> u64 {
    (w >> SLIP_SHIFT) & 0xf
}

#[inline]
fn balance_of(w: u64) -> i64 {
    i64::from(w as u32 as i32)
}

fn v6_of(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

/// `n` zero buckets straight from the allocator (`calloc`): pages that no bucket
/// has used yet cost no RSS.
fn zeroed_table(n: usize) -> Box<[AtomicU64]> {
    const _: () = assert!(
        std::mem::size_of::<AtomicU64>() == std::mem::size_of::<u64>()
            && std::mem::align_of::<AtomicU64>() == std::mem::align_of::<u64>()
    );
    let raw = Box::into_raw(vec![0u64; n].into_boxed_slice()) as *mut [AtomicU64];
    // SAFETY: AtomicU64 has the size, alignment (asserted above) and bit validity
    // of u64, and the box is handed over whole.
    unsafe { Box::from_raw(raw) }
}

impl Rrl {
    pub fn new(s: &Settings) -> Self {
        let rate = i64::from(s.responses_per_second.max(1));
        let floor = (-rate * i64::from(s.window_seconds.max(1))).max(i64::from(i32::MIN) + 1);
        let sets = (s.table_size.max(WAYS) / WAYS).next_power_of_two();
        let exempt = s
            .exempt
            .iter()
            .map(|n| {
                let (addr, len) = match n {
                    ipnet::IpNet::V4(n) => (IpAddr::V4(n.network()), 96 + n.prefix_len()),
                    ipnet::IpNet::V6(n) => (IpAddr::V6(n.network()), n.prefix_len()),
                };
                let mask = mask128(len);
                (v6_of(addr) & mask, mask)
            })
            .collect();
        Self {
            rate,
            slip: u64::from(s.slip),
            floor,
            v4_mask: u32::MAX
                .checked_shl(32 - u32::from(s.ipv4_prefix.min(32)))
                .unwrap_or(0),
            v6_mask: mask128(s.ipv6_prefix.min(128)),
            exempt,
            table: zeroed_table(sets * WAYS),
            set_mask: sets - 1,
            keys: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Buckets in the table.
    pub fn capacity(&self) -> usize {
        self.table.len()
    }

    /// True when responses to `src` are never limited.
    #[inline]
    pub fn is_exempt(&self, src: IpAddr) -> bool {
        if self.exempt.is_empty() {
            return false;
        }
        let a = v6_of(src);
        self.exempt.iter().any(|&(net, mask)| a & mask == net)
    }

    /// Accounts one UDP response of `class` to `src` for `name` (lowercase wire form:
    /// the query name, or for NXDOMAIN and errors the zone apex, empty outside every
    /// zone) and `qtype`, at `now_s` (Unix seconds).
    pub fn check(&self, src: IpAddr, class: Class, name: &[u8], qtype: u16, now_s: u64) -> Verdict {
        if self.is_exempt(src) {
            return Verdict::Pass;
        }
        let mut h = self.keys.build_hasher();
        match src {
            IpAddr::V6(a) if a.to_ipv4_mapped().is_none() => {
                h.write_u128(u128::from(a) & self.v6_mask);
            }
            _ => {
                let v4 = match src {
                    IpAddr::V4(a) => a,
                    IpAddr::V6(a) => a
                        .to_ipv4_mapped()
                        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
                };
                h.write_u32(u32::from(v4) & self.v4_mask);
            }
        }
        h.write_u8(class as u8);
        h.write(name);
        if class == Class::Response {
            h.write_u16(qtype);
        }
        self.account(h.finish(), now_s)
    }

    /// Debits the bucket of hash `h`.
    fn account(&self, h: u64, now_s: u64) -> Verdict {
        let tag = ((h >> TAG_SHIFT) & 0xfff).max(1);
        let base = ((h as usize) & self.set_mask) * WAYS;
        let set = &self.table[base..base + WAYS];
        let now = now_s as u16;
        // A few tries against concurrent updates of the same set; past them the
        // response is let through rather than spin (another worker just accounted
        // for this bucket, so the count is off by one at most).
        for _ in 0..4 {
            let mut slot = None;
            let mut victim = (0usize, 0u64, i32::MIN);
            for (i, b) in set.iter().enumerate() {
                let w = b.load(Ordering::Relaxed);
                if w != 0 && tag_of(w) == tag {
                    slot = Some((i, w));
                    break;
                }
                let score = self.eviction_score(w, now);
                if score > victim.2 {
                    victim = (i, w, score);
                }
            }
            let (i, old, balance, slips) = match slot {
                Some((i, w)) => {
                    let elapsed = i64::from(now.wrapping_sub(stamp_of(w)));
                    let credited = (balance_of(w) + elapsed * self.rate).min(self.rate);
                    (i, w, credited, slip_of(w))
                }
                None => (victim.0, victim.1, self.rate, 0),
            };
            let balance = balance - 1;
            let (verdict, slips) = if balance >= 0 {
                (Verdict::Pass, slips)
            } else {
                let n = (slips + 1) % self.slip.max(1);
                if self.slip > 0 && n == 0 {
                    (Verdict::Slip, n)
                } else {
                    (Verdict::Drop, n)
                }
            };
            let new = pack(tag, now, slips, balance.max(self.floor));
            if set[i]
                .compare_exchange(old, new, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                return verdict;
            }
        }
        Verdict::Pass
    }

    /// How willing we are to give up bucket word `w` for a new key: empty buckets
    /// first, then those idle long enough to have recovered, then the ones in good
    /// standing, the longest idle first; a bucket in debt (a limited flood) last,
    /// so that churning keys does not wipe out its debt.
    fn eviction_score(&self, w: u64, now: u16) -> i32 {
        if w == 0 {
            return i32::MAX;
        }
        let idle = i32::from(now.wrapping_sub(stamp_of(w)));
        let recovered = balance_of(w) + i64::from(idle) * self.rate >= self.rate;
        match (recovered, balance_of(w) >= 0) {
            (true, _) => 1 << 20 | idle,
            (false, true) => 1 << 18 | idle,
            (false, false) => idle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rrl(rate: u32, slip: u8, window: u32, exempt: &[&str], table: usize) -> Rrl {
        Rrl::new(&Settings {
            responses_per_second: rate,
            slip,
            window_seconds: window,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            exempt: exempt.iter().map(|e| e.parse().unwrap()).collect(),
            table_size: table,
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const NAME: &[u8] = b"\x03www\x07example\x00";

    fn run(r: &Rrl, src: &str, n: usize, now: u64) -> (usize, usize, usize) {
        let mut v = (0, 0, 0);
        for _ in 0..n {
            match r.check(ip(src), Class::Response, NAME, 1, now) {
                Verdict::Pass => v.0 += 1,
                Verdict::Slip => v.1 += 1,
                Verdict::Drop => v.2 += 1,
            }
        }
        v
    }

    #[test]
    fn rate_slip_and_recovery() {
        let r = rrl(10, 2, 3, &[], 1024);
        // 10 a second pass; of the next 20, every 2nd slips, the rest drop.
        assert_eq!(run(&r, "192.0.2.1", 30, 100), (10, 10, 10));
        // The same /24 shares the bucket.
        assert_eq!(run(&r, "192.0.2.200", 2, 100), (0, 1, 1));
        // Another /24, another name, another type, another class: own buckets.
        assert_eq!(run(&r, "192.0.3.1", 10, 100), (10, 0, 0));
        assert_eq!(
            r.check(ip("192.0.2.1"), Class::Response, b"\x01x\x00", 1, 100),
            Verdict::Pass
        );
        assert_eq!(
            r.check(ip("192.0.2.1"), Class::Response, NAME, 28, 100),
            Verdict::Pass
        );
        assert_eq!(
            r.check(ip("192.0.2.1"), Class::NxDomain, NAME, 1, 100),
            Verdict::Pass
        );
        // Debt: 22 responses over the rate, capped at window x rate = 30. One
        // second later 10 are credited: still in debt.
        assert_eq!(run(&r, "192.0.2.1", 1, 101).0, 0);
        // After the window has paid the debt back, the rate is available again.
        assert_eq!(run(&r, "192.0.2.1", 10, 105).0, 10);
        assert_eq!(run(&r, "192.0.2.1", 1, 105).0, 0);
    }

    #[test]
    fn slip_settings() {
        let never = rrl(1, 0, 1, &[], 64);
        assert_eq!(run(&never, "192.0.2.1", 11, 5), (1, 0, 10));
        let always = rrl(1, 1, 1, &[], 64);
        assert_eq!(run(&always, "192.0.2.1", 11, 5), (1, 10, 0));
        let third = rrl(1, 3, 1, &[], 64);
        assert_eq!(run(&third, "192.0.2.1", 10, 5), (1, 3, 6));
    }

    #[test]
    fn nxdomain_and_errors_share_a_bucket_per_zone() {
        let r = rrl(5, 2, 1, &[], 1024);
        let zone = b"\x07example\x00";
        let mut limited = 0;
        for i in 0..20u16 {
            // Random subdomains: the key is the zone, whatever the name and type.
            if r.check(ip("198.51.100.7"), Class::NxDomain, zone, i, 50) != Verdict::Pass {
                limited += 1;
            }
        }
        assert_eq!(limited, 15);
        assert_eq!(
            r.check(ip("198.51.100.7"), Class::Error, zone, 1, 50),
            Verdict::Pass
        );
        assert_eq!(
            r.check(ip("198.51.100.7"), Class::NxDomain, b"\x05other\x00", 1, 50),
            Verdict::Pass
        );
    }

    #[test]
    fn exempt_networks_and_prefixes() {
        let r = rrl(
            1,
            2,
            1,
            &["127.0.0.0/8", "::1/128", "2001:db8:ff::/48"],
            1024,
        );
        for src in [
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "::ffff:127.0.0.1",
            "2001:db8:ff:1::9",
        ] {
            assert!(r.is_exempt(ip(src)), "{src}");
            assert_eq!(run(&r, src, 5, 1), (5, 0, 0), "{src}");
        }
        assert!(!r.is_exempt(ip("128.0.0.1")));
        // IPv6 clients are grouped by /56; IPv4-mapped ones by /24 as IPv4.
        assert_eq!(run(&r, "2001:db8:1:100::1", 1, 1).0, 1);
        assert_eq!(run(&r, "2001:db8:1:1ff::2", 1, 1).0, 0);
        assert_eq!(run(&r, "2001:db8:1:200::1", 1, 1).0, 1);
        assert_eq!(run(&r, "192.0.2.1", 1, 1).0, 1);
        assert_eq!(run(&r, "::ffff:192.0.2.9", 1, 1).0, 0);
    }

    #[test]
    fn table_is_bounded_and_keeps_limited_buckets() {
        // 64 buckets; one flooding client in debt, then 100,000 other keys churn
        // through the table: its memory never grows, and the flooder's debt in
        // its set survives the churn (new keys evict buckets in good standing).
        let r = rrl(2, 0, 10, &[], 64);
        assert_eq!(r.capacity(), 64);
        assert_eq!(run(&r, "192.0.2.1", 50, 1000), (2, 0, 48));
        for i in 0..100_000u32 {
            let src = IpAddr::from((0x0a00_0000u32 + (i << 8)).to_be_bytes());
            r.check(src, Class::Response, NAME, 1, 1000);
        }
        assert_eq!(run(&r, "192.0.2.1", 1, 1000), (0, 0, 1));
    }

    #[test]
    fn concurrent_workers_count_every_response() {
        let r = std::sync::Arc::new(rrl(1000, 2, 1, &[], 1024));
        let passed: usize = (0..4)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || run(&r, "192.0.2.1", 1000, 7).0)
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        // 4,000 responses against a rate of 1,000: about 1,000 pass (a handful
        // more when the compare-and-swap gives up under contention).
        assert!((1000..1100).contains(&passed), "{passed}");
    }
}
