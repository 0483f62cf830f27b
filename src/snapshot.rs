//! The immutable data set the DNS workers answer from.
//!
//! **Architecture Invariant:** a `Snapshot` is never mutated once published. The
//! control plane builds a new one (sharing unchanged parts through `Arc`) and swaps
//! it in with `arc-swap`; a worker loads it once per query (or batch) and uses it to
//! the end. The only interior mutability reachable from here is the per-endpoint
//! [`HealthCell`] and the per-service rotation counter, both lock-free atomics.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::health::{CellState, Health, HealthCell};
use crate::model::{
    AllDown, Locality, LocalityPattern, NameService, OverrideState, Policy, Stickiness,
    TargetOverrides,
};
use crate::policy::Topology;
use crate::zone::ZoneSet;
use crate::zone::wire::{NameHash, NameMap};

/// Everything a DNS worker needs to answer, swapped atomically as a whole.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub zones: Arc<ZoneSet>,
    pub services: ServiceMap,
    pub topology: Arc<Topology>,
    /// This instance has never loaded a registry (etcd backend, no local copy, etcd
    /// out of reach): names of its zones without static records answer SERVFAIL.
    pub unloaded: bool,
}

impl Snapshot {
    /// The NameService at `name` (lowercase, no trailing dot), if any.
    #[inline]
    pub fn service(&self, name: &str) -> Option<&Arc<ServiceEntry>> {
        self.services.get(name)
    }
}

/// One target of a compiled NameService, as the policies see it.
#[derive(Debug)]
pub struct TargetEntry {
    /// Index of this target in `NameService::targets` (for status reporting). An
    /// fqdn target has one entry per address it resolved to, all with its index.
    pub index: usize,
    pub address: IpAddr,
    /// The entries of the family that belong to the same target (bit `k` =
    /// `family[k]`, this one included): Ratio picks a target, then answers its
    /// eligible addresses.
    pub group: u64,
    pub locality: Option<Locality>,
    pub ratio: u32,
    pub enabled: bool,
    /// `None` when the service has no healthCheck (the target is `Unchecked`).
    pub health: Option<Arc<HealthCell>>,
    /// Hash of the target's name: its identity in the rendezvous hash of sticky
    /// Ratio, the same on every instance and across restarts.
    pub name_hash: u64,
    /// The target's override and when it expires (Unix ms): the answer path
    /// ignores it from then on, before the control plane removes it.
    pub ovr: Option<(OverrideState, u64)>,
}

impl TargetEntry {
    #[inline]
    pub fn health(&self) -> Health {
        self.health.as_ref().map_or(Health::Unchecked, |c| c.get())
    }

    /// The verdict and when it last turned Healthy, from one load.
    #[inline]
    pub fn health_state(&self) -> CellState {
        self.health.as_ref().map_or(
            CellState {
                health: Health::Unchecked,
                healthy_since_ms: 0,
            },
            |c| c.load(),
        )
    }
}

/// Answers that included each target of a NameService since start
/// (`status.targets[].answers`), by index in `NameService::targets`. Shared by the
/// successive compilations of a service as long as its target names stay the same,
/// so a PUT that changes a ratio loses no count.
#[derive(Debug)]
pub struct AnswerCounts {
    names: Box<[Box<str>]>,
    counts: Box<[AtomicU64]>,
}

impl AnswerCounts {
    fn new(spec: &NameService, previous: Option<&AnswerCounts>) -> Self {
        let names: Box<[Box<str>]> = spec
            .targets
            .iter()
            .map(|t| t.name.as_str().into())
            .collect();
        let counts = names
            .iter()
            .map(|n| {
                let before = previous.and_then(|p| p.get_by_name(n)).unwrap_or(0);
                AtomicU64::new(before)
            })
            .collect();
        Self { names, counts }
    }

    /// Counts one answer that included target `index` (of `NameService::targets`).
    #[inline]
    pub fn bump(&self, index: usize) {
        if let Some(c) = self.counts.get(index) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Answers that included target `index`.
    pub fn get(&self, index: usize) -> u64 {
        self.counts
            .get(index)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Answers that included the target named `name`.
    pub fn get_by_name(&self, name: &str) -> Option<u64> {
        let i = self.names.iter().position(|n| &**n == name)?;
        Some(self.get(i))
    }

    fn same_targets(&self, spec: &NameService) -> bool {
        self.names.len() == spec.targets.len()
            && self
                .names
                .iter()
                .zip(&spec.targets)
                .all(|(n, t)| **n == *t.name)
    }
}

/// The rendezvous-hash identity of a target name: FNV-1a, then a 64-bit finalizer.
/// Spelled out (not `std::hash`) so every instance and every release agrees.
pub fn name_hash(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

/// The splitmix64 finalizer: every input bit changes about half the output bits.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A `distribute` rule, parsed.
#[derive(Debug)]
pub struct DistributeEntry {
    pub from: LocalityPattern,
    /// (pattern, weight), in the resource's (sorted) order.
    pub to: Vec<(LocalityPattern, u32)>,
    /// For each `to` pattern, which targets it matches: bit `i` of `[v4, v6]` is
    /// `v4[i]` / `v6[i]`. Health changes all the time, localities only with the
    /// resource, so the policy intersects these with the eligible set per query.
    pub to_targets: Vec<[u64; 2]>,
}

/// A NameService compiled for answering: targets split by address family, patterns
/// parsed. Built by the registry whenever the resource changes, never per query.
#[derive(Debug)]
pub struct ServiceEntry {
    pub spec: Arc<NameService>,
    pub ttl: u32,
    /// TTL of answers that health changed (see `NameService::degraded_ttl`).
    pub degraded_ttl: u32,
    pub policy: Policy,
    pub all_down: AllDown,
    pub panic_threshold_percent: u32,
    pub slow_start: crate::policy::SlowStart,
    pub stickiness: Stickiness,
    pub v4: Vec<TargetEntry>,
    pub v6: Vec<TargetEntry>,
    /// `failover` as (from region, to region) in order.
    pub failover: Vec<(String, String)>,
    /// For each `failover` rule, the targets in its `to` region, as bitmasks `[v4, v6]`
    /// (see [`DistributeEntry::to_targets`]).
    pub failover_targets: Vec<[u64; 2]>,
    pub distribute: Vec<DistributeEntry>,
    /// Rotation for RoundRobin and Locality answers: advanced by one per query.
    pub rotation: AtomicUsize,
    /// Answers per target, carried over from the previous compilation.
    pub answers: Arc<AnswerCounts>,
    /// The overrides compiled into the targets, as stored (reason, expiry, author),
    /// for status and explain. Expired ones stay until the control plane removes
    /// them; the answer path ignores them from their expiry on.
    pub overrides: Option<Arc<TargetOverrides>>,
    /// The registry revision of the change that wrote this resource (its ETag); set
    /// by the registry after compiling.
    pub revision: u64,
    /// Some target has several entries in a family (an fqdn target that resolved to
    /// several addresses): Ratio draws among targets, not entries.
    pub grouped: bool,
}

/// At most this many entries per address family: the policies work on 64-bit sets.
/// An fqdn target's addresses beyond it are not answered (the first ones, in
/// address order, are).
pub const MAX_FAMILY_ENTRIES: usize = 64;

impl ServiceEntry {
    /// Compiles a validated resource with its targets' `overrides`. `previous` is
    /// the entry it replaces (its answer counts carry over); `cell` hands out the
    /// shared health cell of an endpoint (the health module owns them). Its fqdn
    /// targets have no addresses: see [`ServiceEntry::compile_resolved`].
    pub fn compile(
        spec: Arc<NameService>,
        overrides: Option<&Arc<TargetOverrides>>,
        previous: Option<&ServiceEntry>,
        cell: impl FnMut(&crate::model::Endpoint) -> Arc<HealthCell>,
    ) -> Self {
        Self::compile_resolved(spec, overrides, previous, cell, &|_| Arc::from([]))
    }

    /// [`ServiceEntry::compile`] with `resolved(i)`, the addresses fqdn target `i`
    /// stands for now (already checked against the address rules): one entry per
    /// address, each with the health cell of its own endpoint.
    pub fn compile_resolved(
        spec: Arc<NameService>,
        overrides: Option<&Arc<TargetOverrides>>,
        previous: Option<&ServiceEntry>,
        mut cell: impl FnMut(&crate::model::Endpoint) -> Arc<HealthCell>,
        resolved: &dyn Fn(usize) -> Arc<[IpAddr]>,
    ) -> Self {
        // Every (target, address), in target order.
        let mut expanded: Vec<(usize, IpAddr)> = Vec::with_capacity(spec.targets.len());
        for (i, t) in spec.targets.iter().enumerate() {
            match t.address {
                Some(a) => expanded.push((i, a)),
                None => expanded.extend(resolved(i).iter().map(|a| (i, *a))),
            }
        }
        // Sized exactly: 100,000 of these live in memory.
        let n4 = expanded.iter().filter(|(_, a)| a.is_ipv4()).count();
        let mut v4 = Vec::with_capacity(n4.min(MAX_FAMILY_ENTRIES));
        let mut v6 = Vec::with_capacity((expanded.len() - n4).min(MAX_FAMILY_ENTRIES));
        for (i, address) in expanded {
            let t = &spec.targets[i];
            let list = if address.is_ipv4() { &mut v4 } else { &mut v6 };
            if list.len() == MAX_FAMILY_ENTRIES {
                continue;
            }
            let ep = match t.address {
                Some(_) => spec.endpoint(i),
                None => spec.endpoint_at(i, address),
            };
            list.push(TargetEntry {
                index: i,
                address,
                group: 0,
                locality: t.locality.as_deref().and_then(|l| Locality::parse(l).ok()),
                ratio: t.ratio,
                enabled: t.enabled,
                health: ep.map(|ep| cell(&ep)),
                name_hash: name_hash(&t.name),
                ovr: overrides
                    .and_then(|o| o.get(&t.name))
                    .map(|o| (o.state, o.expires_at_ms)),
            });
        }
        let mut grouped = false;
        for list in [&mut v4, &mut v6] {
            for k in 0..list.len() {
                let index = list[k].index;
                let group = list
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.index == index)
                    .fold(0u64, |m, (j, _)| m | 1 << j);
                grouped |= group.count_ones() > 1;
                list[k].group = group;
            }
        }
        // Bit i set when target i of the family has a locality and it passes `f`.
        let masks = |f: &dyn Fn(&Locality) -> bool| -> [u64; 2] {
            let of = |list: &[TargetEntry]| {
                list.iter()
                    .take(64)
                    .enumerate()
                    .filter(|(_, t)| t.locality.as_ref().is_some_and(f))
                    .fold(0u64, |m, (i, _)| m | 1 << i)
            };
            [of(&v4), of(&v6)]
        };
        let failover: Vec<(String, String)> = spec
            .failover
            .iter()
            .map(|r| (r.from.clone(), r.to.clone()))
            .collect();
        let failover_targets = failover
            .iter()
            .map(|(_, to)| masks(&|l| l.region() == to))
            .collect();
        let distribute = spec
            .distribute
            .iter()
            .filter_map(|r| {
                let to: Vec<(LocalityPattern, u32)> =
                    r.to.iter()
                        .filter_map(|(p, w)| Some((LocalityPattern::parse(p).ok()?, *w)))
                        .collect();
                let to_targets = to.iter().map(|(p, _)| masks(&|l| p.matches(l))).collect();
                Some(DistributeEntry {
                    from: LocalityPattern::parse(&r.from).ok()?,
                    to,
                    to_targets,
                })
            })
            .collect();
        let answers = match previous.map(|p| &p.answers) {
            Some(a) if a.same_targets(&spec) => a.clone(),
            prev => Arc::new(AnswerCounts::new(&spec, prev.map(|a| &**a))),
        };
        Self {
            ttl: spec.ttl,
            degraded_ttl: spec.degraded_ttl,
            policy: spec.policy,
            all_down: spec.all_down,
            panic_threshold_percent: spec.panic_threshold_percent,
            slow_start: crate::policy::SlowStart::new(spec.slow_start_seconds),
            stickiness: spec.stickiness,
            v4,
            v6,
            failover,
            failover_targets,
            distribute,
            rotation: AtomicUsize::new(0),
            answers,
            overrides: overrides.filter(|o| !o.is_empty()).cloned(),
            revision: 0,
            grouped,
            spec,
        }
    }

    /// Targets of one address family.
    #[inline]
    pub fn family(&self, v6: bool) -> &[TargetEntry] {
        if v6 { &self.v6 } else { &self.v4 }
    }

    /// Advances the rotation and returns the offset to rotate this answer by.
    #[inline]
    pub fn next_rotation(&self) -> usize {
        self.rotation.fetch_add(1, Ordering::Relaxed)
    }
}

const SHARDS: usize = 256;

/// Names in lowercase DNS wire form (length-prefixed labels, the root label last):
/// the form the query path has in hand, so a lookup hashes the query's bytes as
/// they are.
type Shard<V> = Arc<NameMap<Box<[u8]>, V>>;

/// NameServices by name, split into shards so that a write copies one shard (a few
/// hundred entries at 100,000 names) instead of the whole map.
///
/// Besides the entries it counts, for every proper ancestor of a NameService name,
/// how many NameServices lie below it (`a.b.gslb.example` counts for
/// `b.gslb.example`, `gslb.example` and `example`): such a name exists in the DNS
/// tree (an empty non-terminal unless the zone has records there), so a query for
/// it is NODATA rather than NXDOMAIN. The counts are sharded and copied on write
/// the same way.
#[derive(Debug, Clone)]
pub struct ServiceMap {
    shards: Arc<[Shard<Arc<ServiceEntry>>]>,
    ancestors: Arc<[Shard<u32>]>,
    len: usize,
}

impl Default for ServiceMap {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Arc::default()).collect(),
            ancestors: (0..SHARDS).map(|_| Arc::default()).collect(),
            len: 0,
        }
    }
}

/// The shard of a wire-form name: bits of the name hash that neither the bucket
/// index (low bits) nor the tag (top 7 bits) of the per-shard map uses, so entries
/// of one shard still spread over its buckets and tags.
#[inline]
fn shard_of(wire: &[u8]) -> usize {
    (NameHash::default().hash_one(wire) >> 32) as usize % SHARDS
}

/// Lowercase wire form of a dotted name; `None` for names no NameService can have.
fn to_wire(name: &str) -> Option<Vec<u8>> {
    crate::zone::wire::from_dotted(name.strip_suffix('.').unwrap_or(name))
}

/// Proper ancestors of a wire-form name, nearest first, the root excluded.
fn ancestors_of(wire: &[u8]) -> impl Iterator<Item = &[u8]> {
    crate::zone::wire::suffixes(wire)
        .skip(1)
        .map(move |o| &wire[o..])
        .filter(|a| a.len() > 1)
}

impl ServiceMap {
    /// The NameService at `name` (dotted, case-insensitive, trailing dot optional).
    pub fn get(&self, name: &str) -> Option<&Arc<ServiceEntry>> {
        self.get_wire(&to_wire(name)?)
    }

    /// The NameService at `name`, in lowercase wire form (the query path).
    #[inline]
    pub fn get_wire(&self, name: &[u8]) -> Option<&Arc<ServiceEntry>> {
        self.shards[shard_of(name)].get(name)
    }

    /// True when some NameService lies strictly below `name` (lowercase wire form).
    #[inline]
    pub fn has_descendants(&self, name: &[u8]) -> bool {
        self.ancestors[shard_of(name)].contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Iterates over every entry (in no particular order), with its name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<ServiceEntry>)> {
        self.shards
            .iter()
            .flat_map(|s| s.values())
            .map(|e| (e.spec.name.as_str(), e))
    }

    /// A new map with `changes` applied: `Some(entry)` inserts or replaces, `None`
    /// removes. Names are dotted, as in [`ServiceMap::get`]. Only the touched
    /// shards are copied.
    pub fn with_changes(
        &self,
        changes: impl IntoIterator<Item = (Arc<str>, Option<Arc<ServiceEntry>>)>,
    ) -> Self {
        let mut shards: Vec<Shard<Arc<ServiceEntry>>> = self.shards.to_vec();
        let mut ancestors: Vec<Shard<u32>> = self.ancestors.to_vec();
        let mut len = self.len;
        for (name, entry) in changes {
            let Some(wire) = to_wire(&name) else {
                // Not a DNS name: it cannot be in the map, nor be added (the model
                // validates names long before they get here).
                debug_assert!(entry.is_none(), "invalid NameService name {name:?}");
                continue;
            };
            let slot = &mut shards[shard_of(&wire)];
            match entry {
                Some(e) => {
                    if Arc::make_mut(slot).insert(wire.clone().into(), e).is_none() {
                        len += 1;
                        for a in ancestors_of(&wire) {
                            let counts = Arc::make_mut(&mut ancestors[shard_of(a)]);
                            *counts.entry(a.into()).or_insert(0) += 1;
                        }
                    }
                }
                None => {
                    // Removing an absent name copies nothing.
                    if slot.contains_key(&wire[..])
                        && Arc::make_mut(slot).remove(&wire[..]).is_some()
                    {
                        len -= 1;
                        for a in ancestors_of(&wire) {
                            let counts = Arc::make_mut(&mut ancestors[shard_of(a)]);
                            if let Some(n) = counts.get_mut(a) {
                                *n -= 1;
                                if *n == 0 {
                                    counts.remove(a);
                                }
                            }
                        }
                    }
                }
            }
        }
        Self {
            shards: shards.into(),
            ancestors: ancestors.into(),
            len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NameService;

    fn entry(name: &str) -> Arc<ServiceEntry> {
        let spec = NameService::from_json(serde_json::json!({
            "name": name, "policy": "RoundRobin",
            "targets": [{"name": "a", "address": "192.0.2.1"}, {"name": "b", "address": "2001:db8::1"}]
        }))
        .unwrap();
        Arc::new(ServiceEntry::compile(Arc::new(spec), None, None, |_| {
            unreachable!("no healthCheck")
        }))
    }

    #[test]
    fn map_changes_copy_on_write() {
        let m0 = ServiceMap::default();
        let m1 = m0.with_changes((0..1000).map(|i| {
            let n: Arc<str> = format!("n{i}.example").into();
            let e = entry(&n);
            (n, Some(e))
        }));
        assert_eq!((m0.len(), m1.len()), (0, 1000));
        let m2 = m1.with_changes([("n1.example".into(), None), ("zz.example".into(), None)]);
        assert_eq!(m2.len(), 999);
        assert!(m2.get("n1.example").is_none() && m1.get("n1.example").is_some());
        assert_eq!(m2.iter().count(), 999);
        // The untouched shards are shared, not copied.
        let shared = (0..SHARDS)
            .filter(|&i| Arc::ptr_eq(&m1.shards[i], &m2.shards[i]))
            .count();
        assert_eq!(shared, SHARDS - 1);
    }

    #[test]
    fn ancestors_are_counted_and_released() {
        let put = |m: &ServiceMap, n: &str| m.with_changes([(n.into(), Some(entry(n)))]);
        let m = put(&ServiceMap::default(), "a.b.gslb.example");
        let m = put(&m, "c.b.gslb.example");
        let m = put(&m, "c.b.gslb.example"); // a replacement counts once
        let below = |m: &ServiceMap, n: &str| m.has_descendants(&to_wire(n).unwrap());
        for (name, want) in [
            ("b.gslb.example", true),
            ("gslb.example", true),
            ("example", true),
            ("", false),
            ("a.b.gslb.example", false),
            ("x.b.gslb.example", false),
            ("gslb", false),
        ] {
            assert_eq!(below(&m, name), want, "{name}");
        }
        assert!(
            m.get("A.b.gslb.example.").is_some(),
            "any case, trailing dot"
        );
        assert!(m.get_wire(b"\x01a\x01b\x04gslb\x07example\x00").is_some());
        let mut names: Vec<&str> = m.iter().map(|(n, _)| n).collect();
        names.sort();
        assert_eq!(names, ["a.b.gslb.example", "c.b.gslb.example"]);
        let m = m.with_changes([("a.b.gslb.example".into(), None)]);
        assert!(below(&m, "b.gslb.example"));
        let m = m.with_changes([
            ("c.b.gslb.example".into(), None),
            ("nope.example".into(), None),
        ]);
        assert!(!below(&m, "b.gslb.example") && !below(&m, "example"));
        assert!(m.ancestors.iter().all(|s| s.is_empty()));
        assert!(m.is_empty());
    }

    #[test]
    fn compile_splits_families() {
        let e = entry("x.example");
        assert_eq!((e.v4.len(), e.v6.len()), (1, 1));
        assert_eq!(e.family(true)[0].health(), Health::Unchecked);
        assert_eq!((e.next_rotation(), e.next_rotation()), (0, 1));
    }
}
