//! Pure answer selection: which addresses a query gets.
//!
//! **Architecture Invariant:** everything here is a pure function of (entry, health
//! cells, client, topology, time, randomness): no I/O, no locks, no allocation beyond
//! the caller's output buffer. DNS workers call [`select`] on their snapshot;
//! explain calls [`select_with`], the same code, with a recording trace and a
//! scripted chance (see `trace.rs`).

pub mod explain;
mod topology;
mod trace;

use std::net::IpAddr;

pub use topology::{Topology, TopologyEntry, TopologyError, canonical};
pub use trace::{Chance, Mode, NoTrace, Reason, Step, Trace};

use crate::health::Health;
use crate::model::{AllDown, Locality, OverrideState, Policy, Stickiness};
use crate::snapshot::{ServiceEntry, TargetEntry, mix64};

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
    /// TTL of the answer's records: the service's `ttl`, or its `degradedTtl` when
    /// health changed the answer (a target of the family not eligible, fail-open,
    /// panic). Also the cap of a NODATA answer's SOA TTL.
    pub ttl: u32,
    /// How the candidates were chosen.
    pub mode: Mode,
    /// The targets answered: bit i = `entry.family(v6)[i]`.
    pub chosen: u64,
}

/// A target's full weight in slow-start arithmetic: a ramping target weighs
/// `FULL / 10` when it turns Healthy and `FULL` once `slowStartSeconds` have passed.
pub const FULL: u32 = 1 << 16;

// Candidate sets are `u64` bitmasks over a family's targets (bit i = `targets[i]`):
// a query reads every health cell once, and the rest of the decision works on that
// one consistent view without allocating.
const _: () = assert!(crate::model::MAX_TARGETS <= 64);

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
/// UDP batch or TCP query: a coarse clock is enough), and counts the answer for
/// each target in it. An empty `out` means NODATA. This is the DNS path.
pub fn select(
    entry: &ServiceEntry,
    v6: bool,
    client: &ClientInfo,
    topology: &Topology,
    now_ms: u64,
    rng: &mut fastrand::Rng,
    out: &mut Vec<IpAddr>,
) -> Selection {
    let sel = select_with(entry, v6, client, topology, now_ms, rng, &mut NoTrace, out);
    // (The feature exists for bench/dns.sh alone: it measures what counting costs.)
    if !cfg!(feature = "bench-no-answer-counts") {
        let targets = entry.family(v6);
        // An fqdn target answered with several addresses counts once.
        let chosen = if entry.grouped {
            group_heads(targets, sel.chosen)
        } else {
            sel.chosen
        };
        for i in Bits(chosen) {
            entry.answers.bump(targets[i].index);
        }
    }
    sel
}

/// The target's override in force at `now_ms`.
#[inline]
fn override_at(t: &TargetEntry, now_ms: u64) -> Option<OverrideState> {
    match t.ovr {
        Some((state, expires)) if now_ms < expires => Some(state),
        _ => None,
    }
}

/// The target's eligibility at `now_ms` under override `ovr`: the reason, and
/// whether it is within its slow-start ramp. The health cell is read once, here.
#[inline]
fn judge(
    t: &TargetEntry,
    ovr: Option<OverrideState>,
    ratio_only: bool,
    now_ms: u64,
    slow_ms: u64,
) -> (Reason, bool) {
    if !t.enabled {
        return (Reason::Disabled, false);
    }
    match ovr {
        Some(OverrideState::Drain) => (Reason::Drained, false),
        _ if ratio_only && t.ratio == 0 => (Reason::RatioZero, false),
        Some(OverrideState::ForceHealthy) => (Reason::ForcedHealthy, false),
        Some(OverrideState::ForceUnhealthy) => (Reason::ForcedUnhealthy, false),
        None => {
            let st = t.health_state();
            match st.health {
                Health::Healthy => {
                    let ramping = slow_ms > 0
                        && st.healthy_since_ms > 0
                        && now_ms < st.healthy_since_ms.saturating_add(slow_ms);
                    (Reason::Healthy, ramping)
                }
                Health::Unchecked => (Reason::Unchecked, false),
                Health::Pending => (Reason::Pending, false),
                Health::Unhealthy => (Reason::Unhealthy, false),
            }
        }
    }
}

/// How many targets of one family of `entry` are eligible at `now_ms` (as
/// [`select`] judges them) when each target's override is `ovr(t)` (not the
/// compiled one): what the `minEligibleTargets` rule of a Drain checks, with the
/// drain in place.
pub fn eligible_count(
    entry: &ServiceEntry,
    v6: bool,
    now_ms: u64,
    ovr: impl Fn(&TargetEntry) -> Option<OverrideState>,
) -> u32 {
    let ratio_only = entry.policy == Policy::Ratio;
    entry
        .family(v6)
        .iter()
        .filter(|t| judge(t, ovr(t), ratio_only, now_ms, 0).0.eligible())
        .count() as u32
}

/// The slow-start weight of a target that turned Healthy at `since_ms`: `FULL / 10`
/// then, rising linearly to `FULL` over `slow_ms`. Exact; the answer path uses
/// [`SlowStart::factor`], the same line in fixed point without a division.
pub fn ramp_factor(since_ms: u64, now_ms: u64, slow_ms: u64) -> u32 {
    if slow_ms == 0 {
        return FULL;
    }
    let e = now_ms.saturating_sub(since_ms).min(slow_ms);
    (u64::from(FULL) * (slow_ms + 9 * e) / (10 * slow_ms)) as u32
}

/// A service's slow start, compiled: its length and the ramp's slope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SlowStart {
    /// `slowStartSeconds` in milliseconds; 0 = off.
    pub ms: u64,
    /// The weight gained per millisecond, in `FULL / 2^32` units.
    slope: u64,
}

impl SlowStart {
    pub fn new(seconds: u32) -> Self {
        let ms = u64::from(seconds) * 1000;
        Self {
            ms,
            // 90% of FULL over `ms`: at most 58,982 << 32 / 1000 < 2^48, and times
            // `ms` (at most 3.6 million) it stays below 2^64.
            slope: if ms == 0 {
                0
            } else {
                ((9 * u64::from(FULL)) << 32) / (10 * ms)
            },
        }
    }

    /// The weight (of `FULL`) of a target that turned Healthy at `since_ms`, at
    /// `now_ms`: [`ramp_factor`] within one unit, with a multiply instead of a
    /// divide.
    #[inline]
    pub fn factor(&self, since_ms: u64, now_ms: u64) -> u32 {
        let e = now_ms.saturating_sub(since_ms);
        if e >= self.ms {
            return FULL;
        }
        FULL / 10 + ((e * self.slope) >> 32) as u32
    }
}

/// `log2(1 + k/256)` for k in 0..=256, in 2^-32 units: the table of [`neg_log2`],
/// computed by the compiler (its float arithmetic is exact IEEE on every host), so
/// every build of gslb holds the same numbers.
const LOG2_TABLE: [u64; 257] = {
    let mut t = [0u64; 257];
    let mut k = 0;
    while k <= 256 {
        // ln(1 + x) = 2 atanh(x / (2 + x)), the series summed until it stops moving.
        let x = k as f64 / 256.0;
        let s = x / (2.0 + x);
        let s2 = s * s;
        let (mut term, mut sum, mut n) = (s, 0.0, 1.0);
        while term > 1e-20 {
            sum += term / n;
            term *= s2;
            n += 2.0;
        }
        t[k] = (2.0 * sum * std::f64::consts::LOG2_E * 4_294_967_296.0 + 0.5) as u64;
        k += 1;
    }
    t
};

/// `-log2(u)` in 2^-32 units for `u = x / 2^64` (`x` > 0, a uniform 64-bit hash):
/// the leading zeros give the integer part, a table with linear interpolation the
/// fraction (within 3e-6). Integer arithmetic only, so every instance on every
/// platform agrees to the last bit — sticky answers must agree across a fleet.
#[inline]
fn neg_log2(x: u64) -> u64 {
    let lz = u64::from(x.leading_zeros());
    // The mantissa after the leading one: 8 bits of table index, 24 of remainder.
    let m = (x << lz) << 1;
    let k = (m >> 56) as usize;
    let r = (m >> 32) & 0xff_ffff;
    let (a, b) = (LOG2_TABLE[k], LOG2_TABLE[k + 1]);
    let frac = a + (((b - a) * r) >> 24);
    ((lz + 1) << 32) - frac
}

/// The slow-start weights of one selection's targets.
#[derive(Clone, Copy)]
struct Ramp<'a> {
    targets: &'a [TargetEntry],
    now_ms: u64,
    slow: SlowStart,
    /// Candidates within their slow-start ramp (none in panic or fail-open).
    ramping: u64,
}

impl Ramp<'_> {
    /// The slow-start weight of target `i` (`FULL` unless it is ramping). Reads the
    /// time it turned Healthy again: that time changes only when the target turns
    /// Healthy anew, which takes a probe period, so both reads agree.
    #[inline]
    fn factor(&self, i: usize) -> u32 {
        if self.ramping & (1 << i) == 0 {
            return FULL;
        }
        let since = self.targets[i].health_state().healthy_since_ms;
        self.slow.factor(since, self.now_ms)
    }

    /// The largest slow-start weight in `set`.
    #[inline]
    fn warmest(&self, set: u64) -> u32 {
        if set & !self.ramping != 0 {
            return FULL;
        }
        Bits(set).map(|i| self.factor(i)).max().unwrap_or(FULL)
    }
}

/// One selection in progress.
struct Ctx<'a, C, T> {
    entry: &'a ServiceEntry,
    targets: &'a [TargetEntry],
    ramp: Ramp<'a>,
    chance: &'a mut C,
    trace: &'a mut T,
}

impl<C: Chance, T: Trace> Ctx<'_, C, T> {
    /// `set` with each ramping target kept with probability factor / warmest (so
    /// the warmest target of the set always stays): the slow start of the policies
    /// that answer sets (RoundRobin, Locality).
    #[inline]
    fn thin(&mut self, set: u64) -> u64 {
        let ramping = set & self.ramp.ramping;
        if ramping == 0 {
            return set;
        }
        let top = u64::from(self.ramp.warmest(set));
        let mut kept = set;
        for i in Bits(ramping) {
            let f = u64::from(self.ramp.factor(i));
            if f < top && !self.chance.coin(f, top) {
                kept &= !(1 << i);
                if T::ENABLED {
                    self.trace.left_out(i);
                }
            }
        }
        kept
    }
}

/// [`select`] without the answer counting, generic over the source of randomness
/// and the trace sink: the DNS path and explain run this same code.
#[allow(clippy::too_many_arguments)]
pub fn select_with<C: Chance, T: Trace>(
    entry: &ServiceEntry,
    v6: bool,
    client: &ClientInfo,
    topology: &Topology,
    now_ms: u64,
    chance: &mut C,
    trace: &mut T,
    out: &mut Vec<IpAddr>,
) -> Selection {
    out.clear();
    let targets = entry.family(v6);
    let ratio_only = entry.policy == Policy::Ratio;
    let (mut eligible, mut enabled, mut ramping) = (0u64, 0u64, 0u64);
    for (i, t) in targets.iter().take(64).enumerate() {
        let (reason, ramps) = judge(
            t,
            override_at(t, now_ms),
            ratio_only,
            now_ms,
            entry.slow_start.ms,
        );
        if T::ENABLED {
            trace.target(i, reason);
        }
        if reason.enabled() {
            enabled |= 1 << i;
            if reason.eligible() {
                eligible |= 1 << i;
                if ramps {
                    ramping |= 1 << i;
                }
            }
        }
    }
    let (n_eligible, n_enabled) = (eligible.count_ones(), enabled.count_ones());
    let (mode, candidates) = if eligible == 0 {
        match entry.all_down {
            AllDown::AnswerAll if enabled != 0 => (Mode::FailOpen, enabled),
            _ => (Mode::NoData, 0),
        }
    } else if n_eligible * 100 < entry.panic_threshold_percent * n_enabled {
        (Mode::Panic, enabled)
    } else {
        (Mode::Normal, eligible)
    };
    let degraded = eligible != enabled || matches!(mode, Mode::Panic | Mode::FailOpen);
    let mut sel = Selection {
        ecs_scope: 0,
        failed_open: mode == Mode::FailOpen,
        ttl: if degraded {
            entry.degraded_ttl
        } else {
            entry.ttl
        },
        mode,
        chosen: 0,
    };
    if T::ENABLED {
        trace.mode(mode, n_eligible, n_enabled);
    }
    if mode == Mode::NoData {
        if T::ENABLED {
            trace.step(Step::NoData);
        }
        return sel;
    }
    // Slow start shifts traffic between healthy targets; in panic or fail-open the
    // candidates are answered as they are.
    if mode != Mode::Normal {
        ramping = 0;
    }
    let mut cx = Ctx {
        entry,
        targets,
        ramp: Ramp {
            targets,
            now_ms,
            slow: entry.slow_start,
            ramping,
        },
        chance,
        trace,
    };
    if T::ENABLED {
        for i in Bits(ramping) {
            let f = cx.ramp.factor(i);
            cx.trace.ramp(i, f);
        }
    }
    match entry.policy {
        Policy::RoundRobin => {
            let set = cx.thin(candidates);
            if T::ENABLED {
                cx.trace.step(Step::RoundRobin);
            }
            let by = cx.chance.rotation(entry);
            push_rotated(targets, set, by, out);
            sel.chosen = set;
        }
        Policy::Ratio => {
            // One draw per target: an fqdn target with several addresses takes part
            // once (by its first candidate entry), then answers all its candidates.
            let heads = if entry.grouped {
                group_heads(targets, candidates)
            } else {
                candidates
            };
            let (pick, step) = ratio(&mut cx, heads, client);
            if let Some(i) = pick {
                let set = candidates & targets[i].group;
                if set == 1 << i {
                    out.push(targets[i].address);
                } else {
                    let by = cx.chance.rotation(entry);
                    push_rotated(targets, set, by, out);
                }
                sel.chosen = set;
            }
            if let Step::Sticky { prefix } = step {
                sel.ecs_scope = prefix;
            }
            if T::ENABLED {
                cx.trace.step(step);
            }
        }
        Policy::Locality => {
            let (set, scope) = locality(&mut cx, usize::from(v6), candidates, client, topology);
            sel.ecs_scope = scope;
            let by = cx.chance.rotation(entry);
            push_rotated(targets, set, by, out);
            sel.chosen = set;
        }
    }
    sel
}

/// The lowest candidate of each target's entries in `set` (see
/// [`crate::snapshot::TargetEntry::group`]).
#[inline]
fn group_heads(targets: &[TargetEntry], set: u64) -> u64 {
    let mut heads = 0u64;
    for i in Bits(set) {
        let below = (1u64 << i) - 1;
        if set & targets[i].group & below == 0 {
            heads |= 1 << i;
        }
    }
    heads
}

/// The Ratio policy: one candidate, drawn by ratio (times its slow-start weight), or
/// with stickiness picked by the rendezvous hash of the client's subnet.
fn ratio<C: Chance, T: Trace>(
    cx: &mut Ctx<'_, C, T>,
    set: u64,
    client: &ClientInfo,
) -> (Option<usize>, Step) {
    let targets = cx.targets;
    let ramp = cx.ramp;
    let scaled = set & ramp.ramping != 0;
    let weight = |i: usize| {
        let r = u64::from(targets[i].ratio);
        if scaled {
            r * u64::from(ramp.factor(i))
        } else {
            r
        }
    };
    match cx.entry.stickiness {
        Stickiness::Off => (cx.chance.draw(set, weight), Step::Ratio),
        Stickiness::ClientSubnet => {
            let (key, prefix) = subnet_key(client.addr);
            (
                rendezvous(targets, set, key, weight),
                Step::Sticky { prefix },
            )
        }
    }
}

/// The key of the client's /24 (IPv4, also IPv4-mapped IPv6) or /56 (IPv6) for
/// sticky Ratio, and that prefix length as the ECS scope (in IPv6 bits for an
/// IPv4-mapped address, as the topology counts it).
#[inline]
pub fn subnet_key(addr: IpAddr) -> (u64, u8) {
    let v4 = |a: std::net::Ipv4Addr| mix64(u64::from(u32::from(a) & 0xffff_ff00) | 4 << 56);
    match addr {
        IpAddr::V4(a) => (v4(a), 24),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(m) => (v4(m), 120),
            None => (mix64((u128::from(a) >> 72) as u64 | 6 << 56), 56),
        },
    }
}

/// Weighted rendezvous (highest random weight) hashing: each candidate scores
/// -log2(u) / weight with u uniform in (0, 1) from the hash of (subnet, target name);
/// the lowest score wins. A subnet's winner changes only if it leaves the set or
/// another target's weight rises, so removing a target moves only its own subnets,
/// and each target wins its weight's share of subnets. Scores are compared
/// cross-multiplied (`L_i * w_best < L_best * w_i`), in integers: no division, no
/// float.
fn rendezvous(
    targets: &[TargetEntry],
    set: u64,
    key: u64,
    weight: impl Fn(usize) -> u64,
) -> Option<usize> {
    let mut best = None;
    let (mut best_l, mut best_w) = (0u128, 0u128);
    for i in Bits(set) {
        let w = u128::from(weight(i));
        if w == 0 {
            continue;
        }
        let l = u128::from(neg_log2(mix64(key ^ targets[i].name_hash) | 1));
        if best.is_none() || l * best_w < best_l * w {
            (best, best_l, best_w) = (Some(i), l, w);
        }
    }
    best
}

/// The Locality policy over `candidates` (the eligible targets, or every enabled one
/// in panic or when failing open): the chosen subset, and the ECS scope prefix length.
fn locality<C: Chance, T: Trace>(
    cx: &mut Ctx<'_, C, T>,
    family: usize,
    candidates: u64,
    client: &ClientInfo,
    topology: &Topology,
) -> (u64, u8) {
    // The ECS scope (CONTRACT §5): the widest block around the client that the
    // topology decides as one, whatever the entry; only worked out for ECS queries.
    let (found, scope) = if client.ecs_source_prefix.is_some() {
        topology.lookup_scoped(client.addr)
    } else {
        (topology.lookup(client.addr), 0)
    };
    if T::ENABLED {
        cx.trace.locality(found);
    }
    match found {
        // Nothing is known about the client: everyone.
        None => {
            if T::ENABLED {
                cx.trace.step(Step::All { no_topology: true });
            }
            (cx.thin(candidates), scope)
        }
        Some((loc, _)) => (nearest(cx, family, candidates, loc), scope),
    }
}

/// Steps 1 and 2 of CONTRACT §5 "Locality" for a client at `loc`.
fn nearest<C: Chance, T: Trace>(
    cx: &mut Ctx<'_, C, T>,
    family: usize,
    candidates: u64,
    loc: &Locality,
) -> u64 {
    let entry = cx.entry;
    let targets = cx.targets;
    // 1. The first distribute rule that matches the client, if one of its patterns
    //    has a candidate. Only the first matching rule is ever consulted; when none of
    //    its patterns has a candidate, the client is served as if it had no rule.
    //    Slow start: a pattern weighs its weight times the slow-start weight of its
    //    warmest candidate, and within it the others are thinned relative to that one.
    if let Some((r, rule)) = entry
        .distribute
        .iter()
        .enumerate()
        .find(|(_, r)| r.from.matches(loc))
    {
        let mut live = 0u64;
        for (k, m) in rule.to_targets.iter().enumerate().take(64) {
            if m[family] & candidates != 0 {
                live |= 1 << k;
            }
        }
        let ramp = cx.ramp;
        let pick = if candidates & ramp.ramping == 0 {
            cx.chance.draw(live, |k| u64::from(rule.to[k].1))
        } else {
            cx.chance.draw(live, |k| {
                let warmest = ramp.warmest(rule.to_targets[k][family] & candidates);
                u64::from(rule.to[k].1) * u64::from(warmest)
            })
        };
        if let Some(k) = pick {
            if T::ENABLED {
                cx.trace.step(Step::Distribute {
                    rule: r,
                    pattern: k,
                });
            }
            return cx.thin(rule.to_targets[k][family] & candidates);
        }
    }
    // 2. Slow start first leaves some ramping candidates out of this answer, so
    //    that their clients go to the next nearest ones. Then the candidates sharing
    //    the most leading parts with the client (region, then zone, then subzone) ...
    let candidates = cx.thin(candidates);
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
        if T::ENABLED {
            cx.trace.step(Step::Nearest {
                depth: best_depth as u8,
            });
        }
        return best;
    }
    // ... else the failover regions of the client's region, in order ...
    for (r, ((from, _), m)) in entry
        .failover
        .iter()
        .zip(&entry.failover_targets)
        .enumerate()
    {
        if from == loc.region() && m[family] & candidates != 0 {
            if T::ENABLED {
                cx.trace.step(Step::Failover { rule: r });
            }
            return m[family] & candidates;
        }
    }
    // ... else everyone.
    if T::ENABLED {
        cx.trace.step(Step::All { no_topology: false });
    }
    candidates
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod steering_tests;

#[cfg(test)]
mod explain_tests;
