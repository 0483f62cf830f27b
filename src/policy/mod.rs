//! Pure answer selection: which addresses a query gets.
//!
//! **Architecture Invariant:** everything here is a pure function of (entry, health
//! cells, client, topology, rng): no I/O, no locks, no allocation beyond the caller's
//! output buffer. DNS workers call [`select`] on their snapshot.

mod topology;

use std::net::IpAddr;

pub use topology::{Topology, TopologyEntry, TopologyError, canonical};

use crate::model::{AllDown, Locality, Policy};
use crate::snapshot::{ServiceEntry, TargetEntry};

/// Who is asking, as far as the policies care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientInfo {
    /// The EDNS Client Subnet address when the query carried one with a non-zero
    /// source prefix, else the source address of the query.
    pub addr: IpAddr,
    /// `Some(source prefix length)` when `addr` came from ECS.
    pub ecs_source_prefix: Option<u8>,
}

/// What [`select`] decided, besides the addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Selection {
    /// ECS SCOPE PREFIX-LENGTH for the response (meaningful only when the query had ECS).
    pub ecs_scope: u8,
    /// No eligible target: the answer fell open to every enabled target.
    pub failed_open: bool,
}

// Candidate sets are `u64` bitmasks over a family's targets (bit i = `targets[i]`):
// a query reads every health cell exactly once, and the rest of the decision works on
// that one consistent view without allocating.
const _: () = assert!(crate::model::MAX_TARGETS <= 64);

/// The targets of the family `select` may answer, read once per query:
/// `(eligible, enabled)`. Eligible = enabled and Healthy or Unchecked. With `ratio_only`
/// (the Ratio policy) a target with ratio 0 is in neither set: it never gets Ratio
/// traffic, not even when failing open.
#[inline]
fn candidate_masks(targets: &[TargetEntry], ratio_only: bool) -> (u64, u64) {
    let mut eligible = 0u64;
    let mut enabled = 0u64;
    for (i, t) in targets.iter().take(64).enumerate() {
        if !t.enabled || (ratio_only && t.ratio == 0) {
            continue;
        }
        enabled |= 1 << i;
        if t.health().is_up() {
            eligible |= 1 << i;
        }
    }
    (eligible, enabled)
}

/// Iterates over the set bits of a mask, lowest first.
#[derive(Clone, Copy)]
struct Bits(u64);

impl Iterator for Bits {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let i = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(i)
    }
}

/// The addresses of `set` rotated left by `by` (modulo their number): what
/// collecting them in order and rotating the list gives, without moving them twice.
#[inline]
fn push_rotated(targets: &[TargetEntry], set: u64, by: usize, out: &mut Vec<IpAddr>) {
    let n = set.count_ones() as usize;
    let k = if n > 1 { by % n } else { 0 };
    out.extend(Bits(set).skip(k).map(|i| targets[i].address));
    out.extend(Bits(set).take(k).map(|i| targets[i].address));
}

/// Fills `out` with the addresses of `entry`'s targets of one family (`v6`) that the
/// service's policy picks for `client` at `now_ms` (Unix milliseconds, read once per
/// UDP batch or TCP query: a coarse clock is enough). An empty `out` means NODATA.
pub fn select(
    entry: &ServiceEntry,
    v6: bool,
    client: &ClientInfo,
    topology: &Topology,
    now_ms: u64,
    rng: &mut fastrand::Rng,
    out: &mut Vec<IpAddr>,
) -> Selection {
    let _ = now_ms; // slow start and override expiry read it
    out.clear();
    let targets = entry.family(v6);
    let mut sel = Selection::default();
    let (eligible, enabled) = candidate_masks(targets, entry.policy == Policy::Ratio);
    let candidates = if eligible != 0 {
        eligible
    } else {
        match entry.all_down {
            AllDown::NoData => return sel,
            AllDown::AnswerAll => {
                sel.failed_open = enabled != 0;
                enabled
            }
        }
    };
    match entry.policy {
        Policy::RoundRobin => push_rotated(targets, candidates, entry.next_rotation(), out),
        Policy::Ratio => ratio(targets, candidates, rng, out),
        Policy::Locality => {
            let (set, scope) = locality(entry, v6, candidates, client, topology, rng);
            sel.ecs_scope = scope;
            push_rotated(targets, set, entry.next_rotation(), out);
        }
    }
    sel
}

/// Index into `set` drawn with probability weight / (sum of the weights in `set`), or
/// `None` when that sum is 0.
#[inline]
fn draw(set: u64, weight: impl Fn(usize) -> u32, rng: &mut fastrand::Rng) -> Option<usize> {
    let sum: u64 = Bits(set).map(|i| u64::from(weight(i))).sum();
    if sum == 0 {
        return None;
    }
    let mut r = rng.u64(..sum);
    for i in Bits(set) {
        let w = u64::from(weight(i));
        if r < w {
            return Some(i);
        }
        r -= w;
    }
    unreachable!("r < sum of the weights")
}

/// One address drawn with probability ratio / sum of the candidates' ratios (the
/// candidates all have a ratio above 0, see [`candidate_masks`]).
fn ratio(targets: &[TargetEntry], set: u64, rng: &mut fastrand::Rng, out: &mut Vec<IpAddr>) {
    if let Some(i) = draw(set, |i| targets[i].ratio, rng) {
        out.push(targets[i].address);
    }
}

/// The Locality policy over `candidates` (the eligible targets, or every enabled one
/// when failing open): the chosen subset, and the ECS scope prefix length.
fn locality(
    entry: &ServiceEntry,
    v6: bool,
    candidates: u64,
    client: &ClientInfo,
    topology: &Topology,
    rng: &mut fastrand::Rng,
) -> (u64, u8) {
    // The ECS scope (CONTRACT §5): the widest block around the client that the
    // topology decides as one, whatever the entry; only worked out for ECS queries.
    let (found, scope) = if client.ecs_source_prefix.is_some() {
        topology.lookup_scoped(client.addr)
    } else {
        (topology.lookup(client.addr), 0)
    };
    match found {
        // Nothing is known about the client: everyone.
        None => (candidates, scope),
        Some((loc, _)) => (nearest(entry, usize::from(v6), candidates, loc, rng), scope),
    }
}

/// Steps 1 and 2 of CONTRACT §5 "Locality" for a client at `loc`.
fn nearest(
    entry: &ServiceEntry,
    family: usize,
    candidates: u64,
    loc: &Locality,
    rng: &mut fastrand::Rng,
) -> u64 {
    let targets = entry.family(family == 1);
    // 1. The first distribute rule that matches the client, if one of its patterns
    //    has a candidate. Only the first matching rule is ever consulted; when none of
    //    its patterns has a candidate, the client is served as if it had no rule.
    if let Some(rule) = entry.distribute.iter().find(|r| r.from.matches(loc)) {
        let mut live = 0u64;
        for (k, m) in rule.to_targets.iter().enumerate().take(64) {
            if m[family] & candidates != 0 {
                live |= 1 << k;
            }
        }
        if let Some(k) = draw(live, |k| rule.to[k].1, rng) {
            return rule.to_targets[k][family] & candidates;
        }
    }
    // 2. The candidates sharing the most leading parts with the client (region, then
    //    zone, then subzone) ...
    let mut best_depth = 0;
    let mut best = 0u64;
    for i in Bits(candidates) {
        let Some(tl) = &targets[i].locality else {
            continue;
        };
        let d = loc.shared_depth(tl);
        if d > best_depth {
            best_depth = d;
            best = 0;
        }
        if d == best_depth && d > 0 {
            best |= 1 << i;
        }
    }
    if best != 0 {
        return best;
    }
    // ... else the failover regions of the client's region, in order ...
    for ((from, _), m) in entry.failover.iter().zip(&entry.failover_targets) {
        if from == loc.region() && m[family] & candidates != 0 {
            return m[family] & candidates;
        }
    }
    // ... else everyone.
    candidates
}

#[cfg(test)]
mod tests;
