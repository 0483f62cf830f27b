//! Client networks -> locality, looked up by longest prefix.
//!
//! The table is flattened at build time into a sorted list of disjoint address
//! ranges, each labelled with the most specific entry covering it (or none). A lookup
//! is one binary search over that list: O(log n) with no hashing, no allocation and
//! no dependence on how many distinct prefix lengths the config uses, so 100,000
//! prefixes cost about 17 comparisons. IPv4 and IPv6 have separate tables; an
//! IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack socket reports for an
//! IPv4 client) is looked up in the IPv4 table.

use std::net::IpAddr;

use crate::model::Locality;

/// One `[[topology]]` entry of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyEntry {
    pub addr: IpAddr,
    pub prefix: u8,
    pub locality: Locality,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("cidr {0:?} is not an address/prefix-length")]
    BadCidr(String),
    #[error("cidr {0:?} has host bits set")]
    HostBits(String),
    #[error("cidr {0:?} is listed twice")]
    Duplicate(String),
}

/// Label of a range that no entry covers.
const NONE: u32 = u32::MAX;

/// Disjoint ranges of one address family: range `i` is `starts[i] ..= starts[i+1]-1`
/// (the last one runs to the end of the address space) and belongs to entry
/// `labels[i]`, or to none. `starts[0]` is always 0.
#[derive(Debug, Clone)]
struct RangeTable<K> {
    starts: Vec<K>,
    labels: Vec<u32>,
}

impl<K> Default for RangeTable<K> {
    fn default() -> Self {
        Self {
            starts: Vec::new(),
            labels: Vec::new(),
        }
    }
}

/// An unsigned integer wide enough to hold an address of one family.
trait Key: Copy + Ord + std::fmt::Debug {
    const ZERO: Self;
    const MAX: Self;
    fn add_one(self) -> Self;
    fn sub_one(self) -> Self;
    /// The last address of the prefix `self/len` (host bits all ones).
    fn last_of(self, len: u8) -> Self;
    /// The first address of the prefix `self/len` (host bits all zeros).
    fn first_of(self, len: u8) -> Self;
}

macro_rules! key {
    ($t:ty) => {
        impl Key for $t {
            const ZERO: Self = 0;
            const MAX: Self = <$t>::MAX;
            #[inline]
            fn add_one(self) -> Self {
                self + 1
            }
            #[inline]
            fn sub_one(self) -> Self {
                self - 1
            }
            #[inline]
            fn last_of(self, len: u8) -> Self {
                self | <$t>::MAX.checked_shr(u32::from(len)).unwrap_or(0)
            }
            #[inline]
            fn first_of(self, len: u8) -> Self {
                self & !<$t>::MAX.checked_shr(u32::from(len)).unwrap_or(0)
            }
        }
    };
}
key!(u32);
key!(u128);

impl<K: Key> RangeTable<K> {
    /// Builds the table from `(first address, prefix length, entry index)`; host bits
    /// of the first address must be zero. For a prefix listed twice the first wins.
    fn build(mut prefixes: Vec<(K, u8, u32)>) -> Self {
        // Enclosing prefixes sort before the prefixes they contain; a stable sort keeps
        // duplicates in input order so that `dedup` keeps the first.
        prefixes.sort_by_key(|&(start, len, _)| (start, len));
        prefixes.dedup_by_key(|&mut (start, len, _)| (start, len));

        let mut t = Self {
            starts: vec![K::ZERO],
            labels: vec![NONE],
        };
        // Open prefixes, innermost last: (last address, entry). Prefixes either nest or
        // are disjoint, so the stack is ordered by containment.
        let mut open: Vec<(K, u32)> = Vec::new();
        for (start, len, label) in prefixes {
            while let Some(&(last, _)) = open.last() {
                if last >= start {
                    break;
                }
                open.pop();
                let outer = open.last().map_or(NONE, |&(_, l)| l);
                t.push(last.add_one(), outer);
            }
            open.push((start.last_of(len), label));
            t.push(start, label);
        }
        while let Some((last, _)) = open.pop() {
            if last == K::MAX {
                break;
            }
            let outer = open.last().map_or(NONE, |&(_, l)| l);
            t.push(last.add_one(), outer);
        }
        t.starts.shrink_to_fit();
        t.labels.shrink_to_fit();
        t
    }

    /// Starts a new range at `start` labelled `label` (replacing a range that would be
    /// empty, merging with an equally labelled predecessor).
    fn push(&mut self, start: K, label: u32) {
        let n = self.starts.len();
        if self.starts[n - 1] == start {
            self.labels[n - 1] = label;
            if n >= 2 && self.labels[n - 2] == label {
                self.starts.pop();
                self.labels.pop();
            }
        } else if self.labels[n - 1] != label {
            self.starts.push(start);
            self.labels.push(label);
        }
    }

    #[inline]
    fn lookup(&self, key: K) -> u32 {
        // Index of the last range starting at or before `key`.
        let i = self.starts.partition_point(|&s| s <= key);
        if i == 0 { NONE } else { self.labels[i - 1] }
    }

    /// [`RangeTable::lookup`], plus the shortest prefix length `L` (of a `bits`-bit
    /// family) such that the whole block `key/L` lies in the range of `key`, so that
    /// every address of the block gets the same entry (or none). Ranges with equal
    /// labels are merged at build time, so "inside one range" is exactly "one entry".
    #[inline]
    fn lookup_scoped(&self, key: K, bits: u8) -> (u32, u8) {
        let i = self.starts.partition_point(|&s| s <= key);
        if i == 0 {
            // Only an empty table (never built) has no range at 0.
            return (NONE, 0);
        }
        let first = self.starts[i - 1];
        // The range ends where the next one starts, or at the end of the space.
        let last = self.starts.get(i).map_or(K::MAX, |&s| s.sub_one());
        // The block key/L shrinks as L grows: the smallest L whose block fits is
        // found by bisection (at L = bits the block is `key` alone, which fits).
        let (mut lo, mut hi) = (0u8, bits);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if key.first_of(mid) >= first && key.last_of(mid) <= last {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        (self.labels[i - 1], lo)
    }
}

/// The topology table. Lookups return the locality and the prefix length of the entry
/// that decided.
#[derive(Debug, Default, Clone)]
pub struct Topology {
    /// Per entry (the range tables' label): (index into `localities`, canonical
    /// prefix length). Compact on purpose: 10,000-prefix topologies are common, and
    /// a few dozen distinct localities are shared by all of them.
    labels: Vec<(u32, u8)>,
    localities: Vec<Locality>,
    v4: RangeTable<u32>,
    v6: RangeTable<u128>,
}

/// `addr/prefix` in canonical form: an IPv4-mapped IPv6 prefix of length 96 or more
/// (`::ffff:10.0.0.0/104`) is the IPv4 prefix it covers (`10.0.0.0/8`), because
/// lookups treat IPv4-mapped addresses as IPv4.
pub fn canonical(addr: IpAddr, prefix: u8) -> (IpAddr, u8) {
    match addr {
        IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
            Some(v4) => (IpAddr::V4(v4), prefix - 96),
            None => (addr, prefix),
        },
        _ => (addr, prefix),
    }
}

impl Topology {
    /// Builds the table. Entries are expected to be valid CIDRs (host bits zero, as
    /// `config::parse_cidr` ensures); stray host bits are ignored. For a network listed
    /// twice the first entry wins.
    pub fn new(entries: Vec<TopologyEntry>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut labels = Vec::with_capacity(entries.len());
        let mut localities = Vec::new();
        let mut interned: std::collections::HashMap<Locality, u32> =
            std::collections::HashMap::new();
        for (i, e) in entries.into_iter().enumerate() {
            let label = u32::try_from(i).expect("fewer than 2^32 topology entries");
            let canon = canonical(e.addr, e.prefix);
            let loc = *interned.entry(e.locality).or_insert_with_key(|l| {
                localities.push(l.clone());
                (localities.len() - 1) as u32
            });
            labels.push((loc, canon.1));
            match canon {
                (IpAddr::V4(a), p) => {
                    let n = ipnet::Ipv4Net::new_assert(a, p.min(32));
                    v4.push((u32::from(n.network()), n.prefix_len(), label));
                }
                (IpAddr::V6(a), p) => {
                    let n = ipnet::Ipv6Net::new_assert(a, p.min(128));
                    v6.push((u128::from(n.network()), n.prefix_len(), label));
                }
            }
        }
        localities.shrink_to_fit();
        Self {
            v4: RangeTable::build(v4),
            v6: RangeTable::build(v6),
            labels,
            localities,
        }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Longest-prefix match of `addr`: the locality and the prefix length of the entry
    /// that decided, as a prefix of `addr` (what an ECS scope for `addr` must say). An
    /// IPv4-mapped IPv6 address is matched against the IPv4 entries, and the length
    /// returned for it is then 96 + the IPv4 entry's length.
    #[inline]
    pub fn lookup(&self, addr: IpAddr) -> Option<(&Locality, u8)> {
        let (label, offset) = match addr {
            IpAddr::V4(a) => (self.v4.lookup(u32::from(a)), 0),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => (self.v4.lookup(u32::from(v4)), 96),
                None => (self.v6.lookup(u128::from(a)), 0),
            },
        };
        if label == NONE {
            return None;
        }
        let (loc, prefix) = self.labels[label as usize];
        Some((&self.localities[loc as usize], prefix + offset))
    }

    /// [`Topology::lookup`], plus the ECS SCOPE PREFIX-LENGTH of an answer decided
    /// for `addr` (CONTRACT §5, RFC 7871 §7.2.1): the shortest length `L` such that
    /// every address of the block `addr/L` gets the same topology entry, or none.
    /// It is never shorter than the deciding entry's length, longer when a more
    /// specific entry lies inside it, and it may be longer than the query's source
    /// prefix (a more specific entry inside the block asked about). For an
    /// IPv4-mapped IPv6 address it is 96 + the IPv4 length: the mapped block is
    /// never widened into the IPv6 table.
    #[inline]
    pub fn lookup_scoped(&self, addr: IpAddr) -> (Option<(&Locality, u8)>, u8) {
        let (label, offset, scope) = match addr {
            IpAddr::V4(a) => {
                let (l, s) = self.v4.lookup_scoped(u32::from(a), 32);
                (l, 0, s)
            }
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => {
                    let (l, s) = self.v4.lookup_scoped(u32::from(v4), 32);
                    (l, 96, s + 96)
                }
                None => {
                    let (l, s) = self.v6.lookup_scoped(u128::from(a), 128);
                    (l, 0, s)
                }
            },
        };
        if label == NONE {
            return (None, scope);
        }
        let (loc, prefix) = self.labels[label as usize];
        (
            Some((&self.localities[loc as usize], prefix + offset)),
            scope,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(list: &[(&str, &str)]) -> Topology {
        Topology::new(
            list.iter()
                .map(|(cidr, loc)| {
                    let (a, p) = cidr.split_once('/').unwrap();
                    TopologyEntry {
                        addr: a.parse().unwrap(),
                        prefix: p.parse().unwrap(),
                        locality: Locality::parse(loc).unwrap(),
                    }
                })
                .collect(),
        )
    }

    fn look(t: &Topology, addr: &str) -> Option<(String, u8)> {
        t.lookup(addr.parse().unwrap())
            .map(|(l, p)| (l.to_string(), p))
    }

    #[test]
    fn longest_prefix_wins() {
        let t = topo(&[
            ("10.0.0.0/8", "r/ten"),
            ("10.1.0.0/16", "r/ten-one"),
            ("10.1.2.0/24", "r/ten-one-two"),
            ("10.1.2.3/32", "r/host"),
            ("10.255.0.0/16", "r/ten-top"),
            ("192.168.0.0/16", "lan"),
            ("2001:db8::/32", "v6/doc"),
            ("2001:db8:1::/48", "v6/doc/one"),
            ("::/0", "v6-default"),
            ("::ffff:172.16.0.0/108", "mapped/written-as-v6"),
        ]);
        let cases: &[(&str, Option<(&str, u8)>)] = &[
            ("10.0.0.1", Some(("r/ten", 8))),
            ("10.1.0.1", Some(("r/ten-one", 16))),
            ("10.1.2.4", Some(("r/ten-one-two", 24))),
            ("10.1.2.3", Some(("r/host", 32))),
            ("10.1.3.0", Some(("r/ten-one", 16))),
            ("10.2.0.0", Some(("r/ten", 8))),
            ("10.255.255.255", Some(("r/ten-top", 16))),
            ("11.0.0.0", None),
            ("9.255.255.255", None),
            ("0.0.0.0", None),
            ("255.255.255.255", None),
            ("192.168.77.1", Some(("lan", 16))),
            ("172.16.5.5", Some(("mapped/written-as-v6", 12))),
            ("172.32.0.0", None),
            // IPv4-mapped IPv6 sources match IPv4 entries, never the IPv6 default.
            ("::ffff:10.1.2.9", Some(("r/ten-one-two", 120))),
            ("::ffff:11.0.0.1", None),
            ("2001:db8::1", Some(("v6/doc", 32))),
            ("2001:db8:1:ffff::1", Some(("v6/doc/one", 48))),
            ("2001:db9::1", Some(("v6-default", 0))),
            ("::", Some(("v6-default", 0))),
            (
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                Some(("v6-default", 0)),
            ),
        ];
        for (addr, want) in cases {
            let want = want.map(|(l, p)| (l.to_string(), p));
            assert_eq!(look(&t, addr), want, "{addr}");
        }
    }

    #[test]
    fn edges_of_the_address_space() {
        let t = topo(&[
            ("0.0.0.0/0", "all"),
            ("255.255.255.255/32", "top"),
            ("0.0.0.0/32", "bottom"),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", "v6top"),
            ("::/128", "v6bottom"),
        ]);
        assert_eq!(look(&t, "255.255.255.255"), Some(("top".into(), 32)));
        assert_eq!(look(&t, "255.255.255.254"), Some(("all".into(), 0)));
        assert_eq!(look(&t, "0.0.0.0"), Some(("bottom".into(), 32)));
        assert_eq!(look(&t, "0.0.0.1"), Some(("all".into(), 0)));
        assert_eq!(
            look(&t, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some(("v6top".into(), 128))
        );
        assert_eq!(look(&t, "::"), Some(("v6bottom".into(), 128)));
        assert_eq!(look(&t, "::1"), None);
        assert!(
            Topology::default()
                .lookup("10.0.0.1".parse().unwrap())
                .is_none()
        );
    }

    #[test]
    fn first_of_duplicates_wins() {
        let t = topo(&[("10.0.0.0/8", "first"), ("10.0.0.0/8", "second")]);
        assert_eq!(look(&t, "10.9.9.9"), Some(("first".into(), 8)));
    }

    /// Brute force: the longest of all matching entries (first one on ties).
    fn reference(entries: &[(u32, u8)], key: u32) -> Option<usize> {
        let mut best: Option<(usize, u8)> = None;
        for (i, &(a, p)) in entries.iter().enumerate() {
            let mask = u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0);
            if key & mask == a && best.is_none_or(|(_, bp)| p > bp) {
                best = Some((i, p));
            }
        }
        best.map(|(i, _)| i)
    }

    #[test]
    fn matches_brute_force_on_random_data() {
        let mut rng = fastrand::Rng::with_seed(7);
        for round in 0..20 {
            // Few distinct high bits so that prefixes nest and collide often.
            let n = rng.usize(1..300);
            let entries: Vec<(u32, u8)> = (0..n)
                .map(|_| {
                    let p = rng.u8(0..=32);
                    let a = (rng.u32(..) & 0xC3C3_C3C3)
                        & u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0);
                    (a, p)
                })
                .collect();
            let t = Topology::new(
                entries
                    .iter()
                    .enumerate()
                    .map(|(i, &(a, p))| TopologyEntry {
                        addr: IpAddr::V4(a.into()),
                        prefix: p,
                        locality: Locality::parse(&format!("e{i}")).unwrap(),
                    })
                    .collect(),
            );
            for _ in 0..2000 {
                let key = if rng.bool() {
                    rng.u32(..) & 0xC3C3_C3C3
                } else {
                    // Right at the edges of some entry.
                    let (a, p) = entries[rng.usize(..n)];
                    let last = a | u32::MAX.checked_shr(u32::from(p)).unwrap_or(0);
                    match rng.u8(0..4) {
                        0 => a,
                        1 => a.wrapping_sub(1),
                        2 => last,
                        _ => last.wrapping_add(1),
                    }
                };
                let got = t
                    .lookup(IpAddr::V4(key.into()))
                    .map(|(l, p)| (l.to_string(), p));
                let want = reference(&entries, key).map(|i| (format!("e{i}"), entries[i].1));
                assert_eq!(got, want, "round {round}, key {key:#x}");
            }
        }
    }

    #[test]
    fn ipv6_matches_brute_force_on_random_data() {
        let mut rng = fastrand::Rng::with_seed(11);
        let n = 500;
        let entries: Vec<(u128, u8)> = (0..n)
            .map(|_| {
                let p = rng.u8(0..=128);
                let mask = u128::MAX.checked_shl(128 - u32::from(p)).unwrap_or(0);
                (
                    (rng.u128(..) & 0xF00F_0000_0000_0000_0000_0000_0000_00FF) & mask,
                    p,
                )
            })
            .collect();
        let t = Topology::new(
            entries
                .iter()
                .enumerate()
                .map(|(i, &(a, p))| TopologyEntry {
                    addr: IpAddr::V6(a.into()),
                    prefix: p,
                    locality: Locality::parse(&format!("e{i}")).unwrap(),
                })
                .collect(),
        );
        for _ in 0..20_000 {
            let key = rng.u128(..) & 0xF00F_0000_0000_0000_0000_0000_0000_00FF;
            let mut best: Option<(usize, u8)> = None;
            for (i, &(a, p)) in entries.iter().enumerate() {
                let mask = u128::MAX.checked_shl(128 - u32::from(p)).unwrap_or(0);
                if key & mask == a && best.is_none_or(|(_, bp)| p > bp) {
                    best = Some((i, p));
                }
            }
            let want = best.map(|(i, p)| (format!("e{i}"), p));
            let addr = std::net::Ipv6Addr::from(key);
            if addr.to_ipv4_mapped().is_some() {
                continue;
            }
            let got = t.lookup(IpAddr::V6(addr)).map(|(l, p)| (l.to_string(), p));
            assert_eq!(got, want, "key {addr}");
        }
    }

    fn scope(t: &Topology, addr: &str) -> (Option<String>, u8) {
        let (m, s) = t.lookup_scoped(addr.parse().unwrap());
        (m.map(|(l, _)| l.to_string()), s)
    }

    #[test]
    fn ecs_scope_of_nested_entries() {
        // The case a resolver exposed (issue 10): an east /16 with a west /24 inside.
        let t = topo(&[
            ("10.2.0.0/16", "us-east"),
            ("10.2.3.0/24", "us-west"),
            ("10.9.9.128/25", "eu"),
            ("2001:db8::/32", "v6/outer"),
            ("2001:db8:0:100::/56", "v6/inner"),
        ]);
        let east = Some("us-east".to_string());
        // 10.2.9.0 is east, but the /16 holds the west /24: the widest block
        // around it that is all east is 10.2.8.0/21.
        assert_eq!(scope(&t, "10.2.9.0"), (east.clone(), 21));
        // Right next to the west /24: only its own /24 is all east; further down,
        // 10.2.0.0/23 is.
        assert_eq!(scope(&t, "10.2.2.0"), (east.clone(), 24));
        assert_eq!(scope(&t, "10.2.0.0"), (east.clone(), 23));
        assert_eq!(scope(&t, "10.2.4.0"), (east.clone(), 22));
        assert_eq!(scope(&t, "10.2.128.0"), (east.clone(), 17));
        // Inside the west /24: exactly the entry.
        assert_eq!(scope(&t, "10.2.3.0"), (Some("us-west".into()), 24));
        // No entry, but an entry inside the client's /24: scope 25, longer than
        // the source prefix.
        assert_eq!(scope(&t, "10.9.9.0"), (None, 25));
        // No entry anywhere near: as wide as the blocks without entries go
        // (0.0.0.0/5 ends at 7.255.255.255; 0.0.0.0/4 would hold 10.2.0.0/16).
        assert_eq!(scope(&t, "1.2.3.0"), (None, 5));
        assert_eq!(scope(&t, "192.0.2.0"), (None, 1));
        // IPv6: outer /32 with an inner /56.
        let outer = Some("v6/outer".to_string());
        assert_eq!(scope(&t, "2001:db8:0:200::"), (outer.clone(), 55));
        assert_eq!(scope(&t, "2001:db8:1::"), (outer.clone(), 48));
        assert_eq!(scope(&t, "2001:db8:0:ff::"), (outer, 56));
        assert_eq!(scope(&t, "2001:db8:0:100::"), (Some("v6/inner".into()), 56));
        // IPv4-mapped: the IPv4 scope, offset by 96.
        assert_eq!(scope(&t, "::ffff:10.2.9.0"), (east, 96 + 21));
        // Empty topology: nothing decides anything.
        assert_eq!(scope(&Topology::default(), "10.0.0.1"), (None, 0));
        assert_eq!(scope(&topo(&[]), "2001:db8::1"), (None, 0));
    }

    /// Brute force over the topology: is every address of `first..=last` decided by
    /// the same entry (or none)? The longest-prefix match only changes where an
    /// entry starts or ends, so checking the block's first address and every entry
    /// boundary inside the block is checking every address.
    fn uniform(entries: &[(u32, u8)], first: u32, last: u32) -> bool {
        let at = reference(entries, first);
        entries.iter().all(|&(a, p)| {
            let end = a | u32::MAX.checked_shr(u32::from(p)).unwrap_or(0);
            let mut edges = vec![a];
            if let Some(after) = end.checked_add(1) {
                edges.push(after);
            }
            edges
                .into_iter()
                .filter(|&x| x > first && x <= last)
                .all(|x| reference(entries, x) == at)
        })
    }

    /// The scope rule by brute force: the shortest L whose block is uniform.
    fn reference_scope(entries: &[(u32, u8)], key: u32) -> u8 {
        (0..=32u8)
            .find(|&l| {
                let mask = u32::MAX.checked_shl(32 - u32::from(l)).unwrap_or(0);
                uniform(entries, key & mask, key | !mask)
            })
            .unwrap()
    }

    #[test]
    fn ecs_scope_matches_brute_force() {
        let mut rng = fastrand::Rng::with_seed(99);
        for round in 0..40 {
            // Few distinct bits so that entries nest, touch and repeat often.
            let n = rng.usize(0..60);
            let entries: Vec<(u32, u8)> = (0..n)
                .map(|_| {
                    let p = rng.u8(0..=32);
                    let a = (rng.u32(..) & 0xF0F0_0F0F)
                        & u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0);
                    (a, p)
                })
                .collect();
            // Dedup as the config does (a CIDR listed twice is refused there).
            let mut entries_unique: Vec<(u32, u8)> = Vec::new();
            for e in entries {
                if !entries_unique.contains(&e) {
                    entries_unique.push(e);
                }
            }
            let entries = entries_unique;
            let n = entries.len();
            let t = Topology::new(
                entries
                    .iter()
                    .enumerate()
                    .map(|(i, &(a, p))| TopologyEntry {
                        addr: IpAddr::V4(a.into()),
                        prefix: p,
                        locality: Locality::parse(&format!("e{i}")).unwrap(),
                    })
                    .collect(),
            );
            for _ in 0..300 {
                // A client block: an address with a source prefix, host bits zero,
                // as ECS sends it; sources shorter and longer than the entries.
                let source = rng.u8(0..=32);
                let raw = if n > 0 && rng.bool() {
                    let (a, p) = entries[rng.usize(..n)];
                    let last = a | u32::MAX.checked_shr(u32::from(p)).unwrap_or(0);
                    [a, last, a.wrapping_sub(1), last.wrapping_add(1)][rng.usize(..4)]
                } else {
                    rng.u32(..) & 0xF0F0_0F0F
                };
                let key = raw & u32::MAX.checked_shl(32 - u32::from(source)).unwrap_or(0);
                let (got, got_scope) = t.lookup_scoped(IpAddr::V4(key.into()));
                let want = reference(&entries, key);
                assert_eq!(
                    got.map(|(l, p)| (l.to_string(), p)),
                    want.map(|i| (format!("e{i}"), entries[i].1)),
                    "round {round}, key {key:#x}"
                );
                let want_scope = reference_scope(&entries, key);
                assert_eq!(
                    got_scope, want_scope,
                    "round {round}, key {key:#x}, {entries:?}"
                );
                // Never wider than the entry that decided.
                if let Some(i) = want {
                    assert!(got_scope >= entries[i].1);
                }
            }
        }
    }

    #[test]
    fn ecs_scope_ipv6_matches_brute_force() {
        // The IPv6 table is the same code over u128; check it on entries that only
        // differ in a few bits, against the same brute force lifted to 128 bits.
        let mut rng = fastrand::Rng::with_seed(5);
        let bits_mask: u128 = 0xF000_0000_0000_0000_0F00_0000_0000_00F0;
        for _ in 0..20 {
            let n = rng.usize(1..30);
            let mut entries: Vec<(u128, u8)> = Vec::new();
            for _ in 0..n {
                let p = rng.u8(0..=128);
                let mask = u128::MAX.checked_shl(128 - u32::from(p)).unwrap_or(0);
                let e = ((rng.u128(..) & bits_mask) & mask, p);
                if !entries.contains(&e) {
                    entries.push(e);
                }
            }
            let t = Topology::new(
                entries
                    .iter()
                    .enumerate()
                    .map(|(i, &(a, p))| TopologyEntry {
                        addr: IpAddr::V6(a.into()),
                        prefix: p,
                        locality: Locality::parse(&format!("e{i}")).unwrap(),
                    })
                    .collect(),
            );
            let lpm = |key: u128| -> Option<usize> {
                let mut best: Option<(usize, u8)> = None;
                for (i, &(a, p)) in entries.iter().enumerate() {
                    let mask = u128::MAX.checked_shl(128 - u32::from(p)).unwrap_or(0);
                    if key & mask == a && best.is_none_or(|(_, bp)| p > bp) {
                        best = Some((i, p));
                    }
                }
                best.map(|(i, _)| i)
            };
            for _ in 0..100 {
                let key = rng.u128(..) & bits_mask;
                let addr = std::net::Ipv6Addr::from(key);
                if addr.to_ipv4_mapped().is_some() {
                    continue;
                }
                let want_scope = (0..=128u8)
                    .find(|&l| {
                        let mask = u128::MAX.checked_shl(128 - u32::from(l)).unwrap_or(0);
                        let (first, last) = (key & mask, key | !mask);
                        let at = lpm(first);
                        entries.iter().all(|&(a, p)| {
                            let end = a | u128::MAX.checked_shr(u32::from(p)).unwrap_or(0);
                            [Some(a), end.checked_add(1)]
                                .into_iter()
                                .flatten()
                                .filter(|&x| x > first && x <= last)
                                .all(|x| lpm(x) == at)
                        })
                    })
                    .unwrap();
                let (got, got_scope) = t.lookup_scoped(IpAddr::V6(addr));
                assert_eq!(
                    got.map(|(l, _)| l.to_string()),
                    lpm(key).map(|i| format!("e{i}"))
                );
                assert_eq!(got_scope, want_scope, "{addr} in {entries:?}");
            }
        }
    }

    #[test]
    fn hundred_thousand_prefixes() {
        let mut rng = fastrand::Rng::with_seed(3);
        let loc = Locality::parse("r/z").unwrap();
        let entries: Vec<TopologyEntry> = (0..100_000u32)
            .map(|i| {
                let p = rng.u8(8..=28);
                let a = (i.rotate_left(13) ^ rng.u32(..)) & u32::MAX << (32 - p);
                TopologyEntry {
                    addr: IpAddr::V4(a.into()),
                    prefix: p,
                    locality: loc.clone(),
                }
            })
            .collect();
        let first = (entries[0].addr, entries[0].prefix);
        let t = Topology::new(entries);
        // Each entry adds at most two boundaries.
        assert!(t.v4.starts.len() <= 2 * 100_000 + 1);
        assert!(t.lookup(first.0).is_some_and(|(_, p)| p >= first.1));
    }
}
