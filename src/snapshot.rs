//! The immutable data set the DNS workers answer from.
//!
//! **Architecture Invariant:** a `Snapshot` is never mutated once published. The
//! control plane builds a new one (sharing unchanged parts through `Arc`) and swaps
//! it in with `arc-swap`; a worker loads it once per query (or batch) and uses it to
//! the end. The only interior mutability reachable from here is the per-endpoint
//! [`HealthCell`] and the per-service rotation counter, both lock-free atomics.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::health::{Health, HealthCell};
use crate::model::{AllDown, Locality, LocalityPattern, NameService, Policy};
use crate::policy::Topology;
use crate::zone::ZoneSet;

/// Everything a DNS worker needs to answer, swapped atomically as a whole.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub zones: Arc<ZoneSet>,
    pub services: ServiceMap,
    pub topology: Arc<Topology>,
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
    /// Index of this target in `NameService::targets` (for status reporting).
    pub index: usize,
    pub address: IpAddr,
    pub locality: Option<Locality>,
    pub ratio: u32,
    pub enabled: bool,
    /// `None` when the service has no healthCheck (the target is `Unchecked`).
    pub health: Option<Arc<HealthCell>>,
}

impl TargetEntry {
    #[inline]
    pub fn health(&self) -> Health {
        self.health.as_ref().map_or(Health::Unchecked, |c| c.get())
    }
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
    pub policy: Policy,
    pub all_down: AllDown,
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
}

impl ServiceEntry {
    /// Compiles a validated resource. `cell` hands out the shared health cell of an
    /// endpoint (the health module owns them).
    pub fn compile(
        spec: Arc<NameService>,
        mut cell: impl FnMut(&crate::model::Endpoint) -> Arc<HealthCell>,
    ) -> Self {
        // Sized exactly: 100,000 of these live in memory.
        let n4 = spec.targets.iter().filter(|t| t.address.is_ipv4()).count();
        let mut v4 = Vec::with_capacity(n4);
        let mut v6 = Vec::with_capacity(spec.targets.len() - n4);
        for (i, t) in spec.targets.iter().enumerate() {
            let entry = TargetEntry {
                index: i,
                address: t.address,
                locality: t.locality.as_deref().and_then(|l| Locality::parse(l).ok()),
                ratio: t.ratio,
                enabled: t.enabled,
                health: spec.endpoint(i).map(|ep| cell(&ep)),
            };
            if t.address.is_ipv4() {
                v4.push(entry)
            } else {
                v6.push(entry)
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
        Self {
            ttl: spec.ttl,
            policy: spec.policy,
            all_down: spec.all_down,
            v4,
            v6,
            failover,
            failover_targets,
            distribute,
            rotation: AtomicUsize::new(0),
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

/// NameServices by name, split into shards so that a write copies one shard (a few
/// hundred entries at 100,000 names) instead of the whole map.
#[derive(Debug, Clone)]
pub struct ServiceMap {
    #[allow(clippy::type_complexity)]
    shards: Arc<[Arc<HashMap<Arc<str>, Arc<ServiceEntry>>>]>,
    len: usize,
}

impl Default for ServiceMap {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Arc::new(HashMap::new())).collect(),
            len: 0,
        }
    }
}

/// FNV-1a over the name: cheap, and shard placement needs no DoS resistance (the
/// per-shard `HashMap` keeps its randomized hasher).
#[inline]
fn shard_of(name: &str) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h as usize % SHARDS
}

impl ServiceMap {
    #[inline]
    pub fn get(&self, name: &str) -> Option<&Arc<ServiceEntry>> {
        self.shards[shard_of(name)].get(name)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Iterates over every entry (in no particular order).
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<ServiceEntry>)> {
        self.shards.iter().flat_map(|s| s.iter())
    }

    /// A new map with `changes` applied: `Some(entry)` inserts or replaces, `None` removes.
    /// Only the touched shards are copied.
    pub fn with_changes(
        &self,
        changes: impl IntoIterator<Item = (Arc<str>, Option<Arc<ServiceEntry>>)>,
    ) -> Self {
        let mut shards: Vec<Arc<HashMap<Arc<str>, Arc<ServiceEntry>>>> = self.shards.to_vec();
        let mut len = self.len;
        for (name, entry) in changes {
            let shard = Arc::make_mut(&mut shards[shard_of(&name)]);
            match entry {
                Some(e) => {
                    if shard.insert(name, e).is_none() {
                        len += 1;
                    }
                }
                None => {
                    if shard.remove(&name).is_some() {
                        len -= 1;
                    }
                }
            }
        }
        Self {
            shards: shards.into(),
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
        Arc::new(ServiceEntry::compile(Arc::new(spec), |_| {
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
    }

    #[test]
    fn compile_splits_families() {
        let e = entry("x.example");
        assert_eq!((e.v4.len(), e.v6.len()), (1, 1));
        assert_eq!(e.family(true)[0].health(), Health::Unchecked);
        assert_eq!((e.next_rotation(), e.next_rotation()), (0, 1));
    }
}
