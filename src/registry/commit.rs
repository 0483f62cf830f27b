//! The committer: the one thread that changes the registry, and the one apply path.
//!
//! Every change reaches the published snapshot here, whatever its source:
//!
//! - **writes** of this instance's API (the embedded backend): decided here against
//!   the state the writes before them leave (preconditions, placement, 404), then
//!   stored;
//! - **applied changes** decided elsewhere: the local copy at startup, and (with
//!   etcd) committed transactions and watch events. Each name is taken only when
//!   its revision is newer than the one known for it, so sources may overlap and
//!   arrive out of order without a name ever going back.
//!
//! Both go through the same steps: **validate** (the model did, on parsing) ->
//! **place** (zone membership, static CNAME, delegation) -> **store** -> **compile**
//! -> **publish**. A name that cannot be placed is refused when it is a write and
//! *parked* when it was decided elsewhere: kept (stored, listed nowhere, not
//! served, logged once) until a write or a change of zones places it.
//!
//! Group commit: the committer takes everything pending, writes all accepted
//! changes with one store batch and **one** flush, publishes **one** snapshot, and
//! only then replies to every writer with its own outcome. The invariants hold per
//! write:
//!
//! - stored before published, published before the reply: a success is durable and
//!   visible to the very next DNS query;
//! - a failed store write fails every write of the batch and publishes nothing;
//! - a rejected write changes nothing, and an outcome that depends on an earlier
//!   write of the same batch (a 404 after a delete, a 412 after a put, an unchanged
//!   PUT after a PUT) is only given once that write is durable.
//!
//! The committer also owns the old snapshots: it keeps each replaced snapshot until
//! no reader holds it any more and drops it itself, so the last reference to a big
//! map never ends up in a DNS worker's hands (freeing it there would stall queries).

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::oneshot;

use super::{Precondition, RegistryError, admissible, status};
use crate::health::{HealthCell, HealthHub, Holder};
use crate::model::{Endpoint, NameService, Override, OverrideState, TargetOverrides};
use crate::resolver::Resolvers;
use crate::snapshot::{ServiceEntry, Snapshot};
use crate::store::{Change, Store};

/// At most this many requests go into one batch, so one batch's flush and snapshot
/// stay small when a flood of writers arrives at once.
pub(super) const MAX_BATCH: usize = 1024;

/// How often an idle committer looks again at old snapshots a reader still held.
const REAP_INTERVAL: Duration = Duration::from_millis(50);

/// A change a writer of this instance's API asks for.
#[derive(Debug)]
pub(super) enum Op {
    /// Create or replace (validated by the model already).
    Put(Arc<NameService>, Precondition),
    /// Delete by normalized name.
    Delete(String, Precondition),
}

/// What happened to one accepted write, with the revision the name has after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Applied {
    Put { created: bool, revision: u64 },
    Deleted { revision: u64 },
}

pub(super) type Outcome = Result<Applied, RegistryError>;

/// The state of one name decided elsewhere: `spec` at `revision`, or deleted at
/// `revision` (`spec: None`).
#[derive(Debug, Clone)]
pub(super) struct Incoming {
    pub name: Arc<str>,
    pub spec: Option<Arc<NameService>>,
    pub revision: u64,
}

/// A change to the overrides, decided here (after the NameService changes of the
/// same batch, so it sees them).
#[derive(Debug)]
pub(super) enum OverrideOp {
    /// Set the override of (name, target); a Drain is refused when it would leave
    /// fewer than `minEligibleTargets` eligible targets of the target's family,
    /// unless `force`.
    Put {
        name: Arc<str>,
        target: String,
        ovr: Override,
        force: bool,
    },
    /// Remove the override of (name, target).
    Delete { name: Arc<str>, target: String },
    /// Remove every override expired at `now_ms`.
    Expire { now_ms: u64 },
    /// Overrides decided elsewhere (etcd), applied as they are, newer revisions
    /// winning. `listing`: `changes` are every override at that revision (a known
    /// one they leave out goes, unless it changed later). `watched`: every change
    /// up to it has been delivered (older ones cannot come any more).
    Apply {
        changes: Vec<super::overrides::IncomingOverride>,
        listing: Option<u64>,
        watched: u64,
    },
}

/// What an accepted override change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum OverrideApplied {
    /// Set; `replaced` is the override it replaced.
    Set {
        replaced: Option<Override>,
        revision: u64,
    },
    /// Removed (the override that was there).
    Removed(Override),
    /// Expired and removed: (name, target, override).
    Expired(Vec<(Arc<str>, String, Override)>),
    /// Changes decided elsewhere were applied.
    Applied,
}

pub(super) type OverrideOutcome = Result<OverrideApplied, RegistryError>;

pub(super) enum Request {
    /// A write of this instance's API, decided here.
    Write {
        op: Op,
        reply: oneshot::Sender<Outcome>,
    },
    /// A change to the overrides.
    Override {
        op: OverrideOp,
        reply: oneshot::Sender<OverrideOutcome>,
    },
    /// Changes decided elsewhere, applied as they are (newer revisions win). The
    /// registry revision becomes `revision` (when higher); `store` writes them to the
    /// store (the local copy), `durable` flushes it first. `watched`: every change
    /// up to `revision` has now been delivered (a watch or a listing), so no older
    /// change can come any more. `reset`: `changes` are the complete registry at
    /// `revision` (a listing): a known name they leave out is deleted, unless it
    /// changed after `revision`.
    Apply {
        changes: Vec<Incoming>,
        revision: u64,
        store: bool,
        durable: bool,
        watched: bool,
        reset: bool,
        reply: Option<oneshot::Sender<Result<(), RegistryError>>>,
    },
    /// Stores what an `Apply` with `store: false` of a full listing brought into a
    /// local copy that holds nothing yet (an instance's first listing from etcd
    /// is served before it is written): every listed NameService that is still
    /// what this instance knows, at the listed revision (a change applied since
    /// was stored by its own batch). Durable.
    Persist {
        changes: Vec<Incoming>,
        /// Recorded in the same batch (see [`crate::store::Store::apply_from`]).
        origin: crate::store::Origin,
        reply: oneshot::Sender<Result<(), RegistryError>>,
    },
    /// These fqdns resolved to other addresses (or failed): the services holding
    /// them are compiled again and published; nothing is stored.
    Resolved(Vec<Arc<str>>),
    /// New zones and topology (a reload): all or nothing. Refused when a served
    /// name could not stay (outside every zone, on a static CNAME, under a
    /// delegation, or breaking the address rules); parked names that fit now are
    /// served.
    Reload {
        zones: Arc<crate::zone::ZoneSet>,
        topology: Arc<crate::policy::Topology>,
        reply: oneshot::Sender<Result<usize, RegistryError>>,
    },
}

/// A resource as the committer knows it: served, or parked (stored but not
/// placeable in the current zones).
#[derive(Debug, Clone)]
struct Known {
    spec: Arc<NameService>,
    revision: u64,
    /// The published entry; `None` while parked.
    entry: Option<Arc<ServiceEntry>>,
}

/// Everything the committer writes to.
pub(super) struct Committer {
    /// The registry revision of what is published (see `Registry::revision`).
    pub revision: Arc<AtomicU64>,
    pub store: Arc<dyn Store>,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub health: Arc<HealthHub>,
    pub status: Arc<status::Book>,
    /// Stored names that no served zone can hold now: not served, kept until a write
    /// or a change of zones places them (or they are deleted).
    pub parked: HashMap<Arc<str>, (Arc<NameService>, u64)>,
    /// Names deleted by an applied change, with the revision of the deletion, so an
    /// older put arriving later (from another source) cannot bring them back.
    pub tombstones: HashMap<Arc<str>, u64>,
    /// Replaced snapshots that some reader may still hold; dropped here once we hold
    /// the last reference.
    pub retired: Vec<Arc<Snapshot>>,
    /// The overrides, by NameService name (also of names not served now: they act
    /// again if the name comes back before they expire). Compiled into the entries.
    pub overrides: HashMap<Arc<str>, Arc<TargetOverrides>>,
    /// The revision of the last change applied per override key decided elsewhere
    /// (deletions included), until the watch has delivered everything up to it.
    pub override_revisions: HashMap<(Arc<str>, String), u64>,
    /// `[health] deny`: no target address may be in these ranges.
    pub deny: Arc<[ipnet::IpNet]>,
    /// Resolves the fqdn targets of what is published; `None`: never resolved.
    pub resolvers: Option<Resolvers>,
    /// The served NameServices holding each fqdn, with how many versions of each
    /// hold it (a replacement briefly holds both).
    pub fqdn_index: HashMap<Arc<str>, HashMap<Arc<str>, u32>>,
}

/// One name touched by a batch.
struct Slot {
    /// What is known before the batch.
    before: Option<Known>,
    /// The resource after the changes of this batch seen so far, with its revision.
    after: Option<(Arc<NameService>, u64)>,
    /// The revision of the deletion when the batch deleted the name.
    deleted_at: Option<u64>,
    /// Some accepted change of this batch touched the name: outcomes decided
    /// against `after` depend on the batch being committed.
    dirty: bool,
}

impl Slot {
    /// Whether the batch leaves the name different from what is known.
    fn changed(&self) -> bool {
        match (&self.before, &self.after) {
            (None, None) => false,
            (Some(b), Some((a, rev))) => b.revision != *rev || !Arc::ptr_eq(&b.spec, a),
            _ => true,
        }
    }

    fn current_revision(&self) -> Option<u64> {
        self.after.as_ref().map(|(_, r)| *r)
    }
}

impl Committer {
    /// Serves requests until every sender is gone.
    pub fn run(mut self, rx: Receiver<Request>) {
        loop {
            let first = if self.retired.is_empty() {
                match rx.recv() {
                    Ok(r) => r,
                    Err(_) => break,
                }
            } else {
                match rx.recv_timeout(REAP_INTERVAL) {
                    Ok(r) => r,
                    Err(RecvTimeoutError::Timeout) => {
                        self.reap();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            self.commit(batch);
            self.reap();
        }
        // Readers may still hold old snapshots; they are freed wherever the last
        // reference goes, which no longer matters once the registry is gone.
        self.retired.clear();
    }

    /// What is known about `name` now: served or parked.
    fn known(&self, current: &Snapshot, name: &str) -> Option<Known> {
        if let Some(e) = current.service(name) {
            return Some(Known {
                spec: e.spec.clone(),
                revision: e.revision,
                entry: Some(e.clone()),
            });
        }
        self.parked.get(name).map(|(spec, revision)| Known {
            spec: spec.clone(),
            revision: *revision,
            entry: None,
        })
    }

    /// Decides, stores, publishes and answers one batch (persists and reloads
    /// after the rest).
    pub fn commit(&mut self, batch: Vec<Request>) {
        let (later, batch): (Vec<Request>, Vec<Request>) = batch
            .into_iter()
            .partition(|r| matches!(r, Request::Reload { .. } | Request::Persist { .. }));
        if !batch.is_empty() {
            self.commit_changes(batch);
        }
        for r in later {
            match r {
                Request::Persist {
                    changes,
                    origin,
                    reply,
                } => {
                    let _ = reply.send(self.persist(changes, origin));
                }
                Request::Reload {
                    zones,
                    topology,
                    reply,
                } => {
                    let _ = reply.send(self.reload(zones, topology));
                }
                _ => unreachable!("only persists and reloads come later"),
            }
        }
    }

    /// See [`Request::Persist`].
    fn persist(
        &mut self,
        changes: Vec<Incoming>,
        origin: crate::store::Origin,
    ) -> Result<(), RegistryError> {
        let current = self.snapshot.load_full();
        let writes: Vec<Change> = changes
            .into_iter()
            .filter_map(|c| {
                c.spec.as_ref()?;
                let known = self.known(&current, &c.name)?;
                (known.revision == c.revision).then_some(Change::Put(known.spec, c.revision))
            })
            .collect();
        let revision = self.revision.load(Ordering::Acquire);
        self.store.apply_from(&writes, revision, origin).map_err(|e| {
            tracing::error!(error = %e, writes = writes.len(), "cannot write the listing to the local copy");
            RegistryError::Store(e)
        })
    }

    /// Swaps in new zones and topology, or changes nothing (see [`Request::Reload`]).
    /// Returns how many parked names are served from now on.
    fn reload(
        &mut self,
        zones: Arc<crate::zone::ZoneSet>,
        topology: Arc<crate::policy::Topology>,
    ) -> Result<usize, RegistryError> {
        let current = self.snapshot.load_full();
        let mut refused: Vec<String> = current
            .services
            .iter()
            .filter_map(|(name, e)| {
                admissible(&zones, &self.deny, &e.spec)
                    .err()
                    .map(|why| format!("{name} ({why})"))
            })
            .collect();
        if !refused.is_empty() {
            refused.sort();
            return Err(RegistryError::ReloadConflict(refused));
        }
        let next = Arc::new(Snapshot {
            zones,
            topology,
            services: current.services.clone(),
            unloaded: current.unloaded,
        });
        self.snapshot.store(next.clone());
        self.retired.push(current);
        // Parked names that the new zones can hold: served, through the apply path.
        let fit: Vec<(Arc<str>, Slot)> = self
            .parked
            .iter()
            .filter(|(_, (spec, _))| admissible(&next.zones, &self.deny, spec).is_ok())
            .map(|(name, (spec, rev))| {
                (
                    name.clone(),
                    Slot {
                        before: Some(Known {
                            spec: spec.clone(),
                            revision: *rev,
                            entry: None,
                        }),
                        after: Some((spec.clone(), *rev)),
                        deleted_at: None,
                        dirty: true,
                    },
                )
            })
            .collect();
        let n = fit.len();
        if n > 0 {
            self.publish(next, fit);
        }
        Ok(n)
    }

    fn commit_changes(&mut self, batch: Vec<Request>) {
        let current = self.snapshot.load_full();
        let mut slots: HashMap<Arc<str>, Slot> = HashMap::with_capacity(batch.len());
        // Replies that wait for the batch to be durable.
        let mut waiting: Vec<(oneshot::Sender<Outcome>, Outcome)> = Vec::with_capacity(batch.len());
        let mut applied_replies = Vec::new();
        let start_revision = self.revision.load(Ordering::Acquire);
        let mut revision = start_revision;
        let (mut store, mut durable) = (false, false);
        let mut resolved: BTreeSet<Arc<str>> = BTreeSet::new();
        let mut override_ops = Vec::new();
        // Tombstones at or below this revision can go once the batch is applied.
        let mut watched_to = 0;
        let mut loaded = false;

        for request in batch {
            match request {
                Request::Resolved(names) => resolved.extend(names),
                Request::Override { op, reply } => override_ops.push((op, reply)),
                Request::Write { op, reply } => {
                    store = true;
                    durable = true;
                    let name = match &op {
                        Op::Put(spec, _) => spec.name.as_str(),
                        Op::Delete(name, _) => name.as_str(),
                    };
                    if let Op::Put(spec, _) = &op
                        && let Err(e) = admissible(&current.zones, &self.deny, spec)
                    {
                        let _ = reply.send(Err(e));
                        continue;
                    }
                    let slot = self.slot(&mut slots, &current, name);
                    let depends = slot.dirty;
                    let outcome = decide(slot, op, &mut revision);
                    match outcome {
                        Decided::Wait(o) => waiting.push((reply, o)),
                        Decided::Now(o) if depends => waiting.push((reply, o)),
                        Decided::Now(o) => {
                            let _ = reply.send(o);
                        }
                    }
                }
                Request::Reload { .. } | Request::Persist { .. } => {
                    unreachable!("reloads and persists are taken apart")
                }
                Request::Apply {
                    changes,
                    revision: at,
                    store: s,
                    durable: d,
                    watched,
                    reset,
                    reply,
                } => {
                    store |= s;
                    durable |= d;
                    revision = revision.max(at);
                    if watched {
                        watched_to = watched_to.max(at);
                    }
                    if reset {
                        loaded = true;
                        // Every known name the listing leaves out goes, at its revision.
                        let listed: std::collections::HashSet<Arc<str>> =
                            changes.iter().map(|c| c.name.clone()).collect();
                        let known: Vec<Arc<str>> = current
                            .services
                            .iter()
                            .map(|(n, _)| Arc::from(n))
                            .chain(self.parked.keys().cloned())
                            .filter(|n| !listed.contains(n))
                            .collect();
                        for name in known {
                            let slot = self.slot(&mut slots, &current, &name);
                            if slot.current_revision().is_some_and(|r| r <= at) {
                                slot.after = None;
                                slot.deleted_at = Some(at);
                                slot.dirty = true;
                            }
                        }
                    }
                    for c in changes {
                        let tomb = self.tombstones.get(&c.name).copied();
                        let slot = self.slot(&mut slots, &current, &c.name);
                        let known = slot
                            .current_revision()
                            .into_iter()
                            .chain(slot.deleted_at)
                            .chain(tomb)
                            .max();
                        if known.is_some_and(|k| k >= c.revision) {
                            continue;
                        }
                        match c.spec {
                            Some(spec) => {
                                slot.after = Some((spec, c.revision));
                                slot.deleted_at = None;
                            }
                            None => {
                                slot.after = None;
                                slot.deleted_at = Some(c.revision);
                            }
                        }
                        slot.dirty = true;
                    }
                    if let Some(r) = reply {
                        applied_replies.push(r);
                    }
                }
            }
        }

        let changed: Vec<(Arc<str>, Slot)> =
            slots.into_iter().filter(|(_, s)| s.changed()).collect();
        // A deleted NameService takes its overrides with it.
        let orphaned: Vec<Arc<str>> = changed
            .iter()
            .filter(|(name, s)| s.after.is_none() && self.overrides.contains_key(name))
            .map(|(name, _)| name.clone())
            .collect();
        // Whether what this batch stored is on disk.
        let mut synced = false;
        let mut failure = None;
        if store && (!changed.is_empty() || revision != start_revision) {
            let mut writes: Vec<Change> = changed
                .iter()
                .map(|(name, s)| match &s.after {
                    Some((spec, rev)) => Change::Put(spec.clone(), *rev),
                    None => Change::Delete(name.to_string()),
                })
                .collect();
            for name in &orphaned {
                for target in self.overrides[name].keys() {
                    writes.push(Change::DeleteOverride(name.to_string(), target.clone()));
                }
            }
            // A batch that only moves the revision (a watch that caught up) needs no
            // flush: losing it loses no change.
            let flush = durable && !writes.is_empty();
            match self.store.apply(&writes, revision, flush) {
                // Only the revision moved (a watch event for no NameService, such
                // as another instance's lease record): the local copy keeps
                // reflecting the older revision it records, which is still a
                // consistent state (every restart lists etcd again), so a full
                // disk must not stop this instance from following etcd.
                Err(e) if writes.is_empty() => {
                    tracing::debug!(error = %e, revision, "local copy keeps its older revision");
                }
                Err(e) => {
                    tracing::error!(error = %e, writes = writes.len(), "store write failed; batch not applied");
                    failure = Some(e);
                }
                Ok(()) => synced = flush,
            }
        }
        // A durable request whose change an earlier batch stored without a flush
        // (with etcd, the watch's echo of this instance's own write may come
        // before it): that batch must be on disk before the reply. Does nothing
        // when everything is.
        if failure.is_none()
            && store
            && durable
            && !synced
            && let Err(e) = self.store.flush()
        {
            tracing::error!(error = %e, "store flush failed; change not acknowledged");
            failure = Some(e);
        }
        if let Some(e) = failure {
            let e = RegistryError::Store(e);
            for (reply, _) in waiting {
                let _ = reply.send(Err(e.clone()));
            }
            for reply in applied_replies {
                let _ = reply.send(Err(e.clone()));
            }
            return;
        }
        for name in &orphaned {
            self.overrides.remove(name);
        }
        if !changed.is_empty() || (loaded && current.unloaded) {
            self.publish(current, changed);
        }
        if !resolved.is_empty() {
            self.recompile(&resolved);
        }
        if watched_to > 0 {
            self.tombstones.retain(|_, r| *r > watched_to);
        }
        self.revision.store(revision, Ordering::Release);
        for (reply, outcome) in waiting {
            let _ = reply.send(outcome);
        }
        for reply in applied_replies {
            let _ = reply.send(Ok(()));
        }
        if !override_ops.is_empty() {
            self.commit_overrides(override_ops);
        }
    }

    /// Decides, stores, publishes and answers the override changes of one batch:
    /// one store batch, one flush, one snapshot in which the touched NameServices
    /// are compiled anew with their overrides.
    fn commit_overrides(&mut self, ops: Vec<(OverrideOp, oneshot::Sender<OverrideOutcome>)>) {
        let current = self.snapshot.load_full();
        let start = self.revision.load(Ordering::Acquire);
        let mut revision = start;
        // The overrides of the names this batch touches, as the changes so far leave them.
        let mut work: HashMap<Arc<str>, TargetOverrides> = HashMap::new();
        let mut writes = Vec::new();
        let mut replies = Vec::with_capacity(ops.len());
        for (op, reply) in ops {
            let outcome = match op {
                OverrideOp::Put {
                    name,
                    target,
                    ovr,
                    force,
                } => (|| {
                    let entry = current
                        .service(&name)
                        .ok_or_else(|| RegistryError::NotFound(name.to_string()))?;
                    let Some(index) = entry.spec.targets.iter().position(|t| t.name == target)
                    else {
                        return Err(RegistryError::NoSuchTarget {
                            name: name.to_string(),
                            target,
                        });
                    };
                    let mine = work
                        .entry(name.clone())
                        .or_insert_with(|| overrides_of(&self.overrides, &name));
                    if ovr.state == OverrideState::Drain && !force {
                        check_drain(entry, index, mine, &ovr)?;
                    }
                    revision += 1;
                    writes.push(Change::PutOverride(
                        name.to_string(),
                        target.clone(),
                        ovr.clone(),
                        revision,
                    ));
                    let replaced = mine.insert(target, ovr);
                    Ok(OverrideApplied::Set { replaced, revision })
                })(),
                OverrideOp::Delete { name, target } => {
                    let mine = work
                        .entry(name.clone())
                        .or_insert_with(|| overrides_of(&self.overrides, &name));
                    match mine.remove(&target) {
                        Some(old) => {
                            revision += 1;
                            writes.push(Change::DeleteOverride(name.to_string(), target));
                            Ok(OverrideApplied::Removed(old))
                        }
                        None if current.service(&name).is_none() => {
                            Err(RegistryError::NotFound(name.to_string()))
                        }
                        None => Err(RegistryError::NoOverride {
                            name: name.to_string(),
                            target,
                        }),
                    }
                }
                OverrideOp::Expire { now_ms } => {
                    let names: Vec<Arc<str>> = self
                        .overrides
                        .keys()
                        .chain(work.keys())
                        .cloned()
                        .collect::<std::collections::HashSet<_>>()
                        .into_iter()
                        .collect();
                    let mut expired = Vec::new();
                    for name in names {
                        let mine = work
                            .entry(name.clone())
                            .or_insert_with(|| overrides_of(&self.overrides, &name));
                        let gone: Vec<String> = mine
                            .iter()
                            .filter(|(_, o)| !o.active(now_ms))
                            .map(|(t, _)| t.clone())
                            .collect();
                        for target in gone {
                            if let Some(o) = mine.remove(&target) {
                                writes
                                    .push(Change::DeleteOverride(name.to_string(), target.clone()));
                                expired.push((name.clone(), target, o));
                            }
                        }
                    }
                    if !expired.is_empty() {
                        revision += 1;
                    }
                    expired.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
                    Ok(OverrideApplied::Expired(expired))
                }
                OverrideOp::Apply {
                    changes,
                    listing,
                    watched,
                } => {
                    let now = crate::timefmt::now_unix_ms();
                    if let Some(at) = listing {
                        let listed: std::collections::HashSet<(&str, &str)> = changes
                            .iter()
                            .map(|c| (&*c.name, c.target.as_str()))
                            .collect();
                        let known: Vec<(Arc<str>, String)> = self
                            .overrides
                            .iter()
                            .flat_map(|(n, o)| o.keys().map(|t| (n.clone(), t.clone())))
                            .chain(
                                work.iter()
                                    .flat_map(|(n, o)| o.keys().map(|t| (n.clone(), t.clone()))),
                            )
                            .filter(|(n, t)| !listed.contains(&(&**n, t.as_str())))
                            .collect();
                        for (name, target) in known {
                            let key = (name.clone(), target.clone());
                            if self.override_revisions.get(&key).is_some_and(|r| *r > at) {
                                continue;
                            }
                            let mine = work
                                .entry(name.clone())
                                .or_insert_with(|| overrides_of(&self.overrides, &name));
                            if mine.remove(&target).is_some() {
                                writes.push(Change::DeleteOverride(name.to_string(), target));
                            }
                            self.override_revisions.insert(key, at);
                        }
                    }
                    for c in changes {
                        let key = (c.name.clone(), c.target.clone());
                        if self
                            .override_revisions
                            .get(&key)
                            .is_some_and(|r| *r >= c.revision)
                        {
                            continue;
                        }
                        self.override_revisions.insert(key, c.revision);
                        let mine = work
                            .entry(c.name.clone())
                            .or_insert_with(|| overrides_of(&self.overrides, &c.name));
                        // One that expired already (etcd's lease not yet run out)
                        // acts nowhere: taken as deleted.
                        match c.ovr.filter(|o| o.active(now)) {
                            Some(o) => {
                                writes.push(Change::PutOverride(
                                    c.name.to_string(),
                                    c.target.clone(),
                                    o.clone(),
                                    c.revision,
                                ));
                                mine.insert(c.target, o);
                            }
                            None => {
                                if mine.remove(&c.target).is_some() {
                                    writes
                                        .push(Change::DeleteOverride(c.name.to_string(), c.target));
                                }
                            }
                        }
                    }
                    if watched > 0 {
                        self.override_revisions.retain(|_, r| *r > watched);
                    }
                    Ok(OverrideApplied::Applied)
                }
            };
            replies.push((reply, outcome));
        }
        if !writes.is_empty()
            && let Err(e) = self.store.apply(&writes, revision, true)
        {
            tracing::error!(error = %e, writes = writes.len(), "store write failed; overrides not applied");
            let e = RegistryError::Store(e);
            for (reply, outcome) in replies {
                let _ = reply.send(outcome.and(Err(e.clone())));
            }
            return;
        }
        // Publish the touched names whose overrides changed.
        let mut entries = Vec::new();
        for (name, ovr) in work {
            let before = overrides_of(&self.overrides, &name);
            if before == ovr {
                continue;
            }
            let ovr = Arc::new(ovr);
            if ovr.is_empty() {
                self.overrides.remove(&name);
            } else {
                self.overrides.insert(name.clone(), ovr.clone());
            }
            if let Some(old) = current.service(&name) {
                // Compiled with the overrides just recorded (and the addresses its
                // fqdn targets resolved to).
                let e = self.compile(&old.spec, old.revision, Some(old));
                entries.push((name, Some(Arc::new(e)), old.clone()));
            }
        }
        if !entries.is_empty() {
            let released: Vec<Arc<ServiceEntry>> =
                entries.iter().map(|(_, _, old)| old.clone()).collect();
            let next = Snapshot {
                zones: current.zones.clone(),
                services: current
                    .services
                    .with_changes(entries.into_iter().map(|(n, e, _)| (n, e))),
                topology: current.topology.clone(),
                unloaded: current.unloaded,
            };
            self.snapshot.store(Arc::new(next));
            self.retired.push(current);
            for old in released {
                self.release(&old);
            }
        }
        self.revision.store(revision, Ordering::Release);
        for (reply, outcome) in replies {
            let _ = reply.send(outcome);
        }
    }

    fn slot<'a>(
        &self,
        slots: &'a mut HashMap<Arc<str>, Slot>,
        current: &Snapshot,
        name: &str,
    ) -> &'a mut Slot {
        match slots.entry(Arc::from(name)) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                let before = self.known(current, v.key());
                let after = before.as_ref().map(|k| (k.spec.clone(), k.revision));
                v.insert(Slot {
                    before,
                    after,
                    deleted_at: None,
                    dirty: false,
                })
            }
        }
    }

    /// Swaps in `current` with `changed` applied; keeps `current` to drop it here.
    fn publish(&mut self, current: Arc<Snapshot>, changed: Vec<(Arc<str>, Slot)>) {
        let health = self.health.clone();
        // Hold the new endpoints before publishing and release the old ones after, so
        // an endpoint both keep keeps its verdict (and its probe stream).
        let mut entries = Vec::with_capacity(changed.len());
        for (name, s) in &changed {
            match &s.deleted_at {
                Some(rev) => {
                    self.tombstones.insert(name.clone(), *rev);
                }
                None => {
                    self.tombstones.remove(name);
                }
            }
            let entry = match &s.after {
                None => {
                    self.parked.remove(name);
                    None
                }
                // Placed in the current zones (and its addresses allowed): served.
                // Otherwise parked (a write was checked already; this is a change
                // decided elsewhere).
                Some((spec, rev)) => match admissible(&current.zones, &self.deny, spec) {
                    Ok(()) => {
                        self.parked.remove(name);
                        self.hold_fqdns(spec);
                        // The entry it replaces hands over its answer counts.
                        let previous = current.services.get(name);
                        let e = self.compile(spec, *rev, previous.map(|p| &**p));
                        Some(Arc::new(e))
                    }
                    Err(why) => {
                        tracing::warn!(nameservice = %name, revision = rev, reason = %why, "NameService not served: {why}");
                        self.parked.insert(name.clone(), (spec.clone(), *rev));
                        None
                    }
                },
            };
            entries.push((name.clone(), entry));
        }
        let served: Vec<bool> = entries.iter().map(|(_, e)| e.is_some()).collect();
        let next = Snapshot {
            zones: current.zones.clone(),
            services: current.services.with_changes(entries),
            topology: current.topology.clone(),
            // Any change published here comes from a loaded registry (the local
            // copy, a write, etcd); only an instance that never loaded one is not.
            unloaded: false,
        };
        self.snapshot.store(Arc::new(next));
        self.retired.push(current);
        for (_, s) in &changed {
            if let Some(Known {
                spec,
                entry: Some(old),
                ..
            }) = &s.before
            {
                self.release(old);
                self.drop_fqdns(spec);
            }
        }
        let now = crate::timefmt::now_unix();
        let published = self.snapshot.load();
        for ((name, s), served) in changed.iter().zip(served) {
            let r = status::Resolved {
                entry: published.service(name).map(|e| &**e),
                resolvers: self.resolvers.as_ref(),
            };
            match (&s.after, served) {
                // Loaded with health restored from the store: the condition is
                // dated by the verdicts' own changes.
                (Some((spec, _)), true) if s.before.is_none() => {
                    self.status.restore(spec, &health, r, now)
                }
                // A new set of targets may change the reason right now.
                (Some((spec, _)), true) => self.status.refresh(spec, &health, r, now),
                _ => self.status.forget(name),
            }
        }
    }

    /// Compiles `spec` (written at `rev`) for answering: acquires the health cells
    /// of its address targets and of every address its fqdn targets resolved to
    /// (those the address rules allow), which [`Committer::release`] gives back.
    fn compile(
        &self,
        spec: &Arc<NameService>,
        rev: u64,
        previous: Option<&ServiceEntry>,
    ) -> ServiceEntry {
        let mut cells: HashMap<Endpoint, Arc<HealthCell>> = self.health.acquire_service(spec);
        // A resolved address is a probe endpoint like an address target's: a new one
        // waits the service's initialDelaySeconds before its first probe.
        let initial_delay = spec.health_check.as_ref().map_or(Duration::ZERO, |hc| {
            Duration::from_secs(u64::from(hc.initial_delay_seconds))
        });
        let mut addresses: Vec<Arc<[IpAddr]>> = vec![Arc::from([]); spec.targets.len()];
        for (i, t) in spec.targets.iter().enumerate() {
            let Some(fqdn) = &t.fqdn else { continue };
            let Some(res) = self.resolvers.as_ref().and_then(|r| r.get(fqdn)) else {
                continue;
            };
            let allowed: Vec<IpAddr> = res
                .addresses
                .iter()
                .copied()
                .filter(|a| match crate::model::address::refused(*a, &self.deny) {
                    None => true,
                    Some(why) => {
                        tracing::debug!(nameservice = %spec.name, target = %t.name, fqdn = %fqdn, "resolved address not used: {why}");
                        false
                    }
                })
                .collect();
            for a in &allowed {
                if let Some(ep) = spec.endpoint_at(i, *a) {
                    let cell = self.health.acquire_delayed(
                        &ep,
                        Holder::new(&spec.name, &t.name),
                        initial_delay,
                    );
                    cells.insert(ep, cell);
                }
            }
            addresses[i] = allowed.into();
        }
        let mut e = ServiceEntry::compile_resolved(
            spec.clone(),
            self.overrides.get(spec.name.as_str()),
            previous,
            |ep| cells[ep].clone(),
            &|i| addresses[i].clone(),
        );
        e.revision = rev;
        e
    }

    /// Gives back the health cells [`Committer::compile`] acquired for `entry`.
    fn release(&self, entry: &ServiceEntry) {
        let spec = &entry.spec;
        self.health.release_service(spec);
        for x in entry.v4.iter().chain(&entry.v6) {
            let t = &spec.targets[x.index];
            if t.fqdn.is_some()
                && let Some(ep) = spec.endpoint_at(x.index, x.address)
            {
                self.health.release(&ep, &Holder::new(&spec.name, &t.name));
            }
        }
    }

    /// Holds the fqdns of a NameService about to be served (and indexes them).
    fn hold_fqdns(&mut self, spec: &NameService) {
        for fqdn in fqdns(spec) {
            if let Some(r) = &self.resolvers {
                r.acquire(fqdn);
            }
            *self
                .fqdn_index
                .entry(fqdn.into())
                .or_default()
                .entry(spec.name.as_str().into())
                .or_default() += 1;
        }
    }

    /// Gives back what [`Committer::hold_fqdns`] took for a NameService no longer
    /// served in that version.
    fn drop_fqdns(&mut self, spec: &NameService) {
        for fqdn in fqdns(spec) {
            if let Some(r) = &self.resolvers {
                r.release(fqdn);
            }
            if let Some(names) = self.fqdn_index.get_mut(fqdn) {
                if let Some(n) = names.get_mut(spec.name.as_str()) {
                    *n -= 1;
                    if *n == 0 {
                        names.remove(spec.name.as_str());
                    }
                }
                if names.is_empty() {
                    self.fqdn_index.remove(fqdn);
                }
            }
        }
    }

    /// Compiles again, with the addresses resolved now, every served NameService
    /// holding one of `fqdns`, and publishes them (nothing is stored: the resource
    /// did not change).
    fn recompile(&mut self, fqdns: &BTreeSet<Arc<str>>) {
        let current = self.snapshot.load_full();
        let names: BTreeSet<Arc<str>> = fqdns
            .iter()
            .filter_map(|f| self.fqdn_index.get(f))
            .flat_map(|names| names.keys())
            .cloned()
            .collect();
        let mut old = Vec::with_capacity(names.len());
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            let Some(e) = current.service(&name) else {
                continue;
            };
            let fresh = self.compile(&e.spec, e.revision, Some(e));
            old.push(e.clone());
            entries.push((name, Some(Arc::new(fresh))));
        }
        if entries.is_empty() {
            return;
        }
        let next = Snapshot {
            zones: current.zones.clone(),
            services: current.services.with_changes(entries),
            topology: current.topology.clone(),
            unloaded: current.unloaded,
        };
        self.snapshot.store(Arc::new(next));
        self.retired.push(current);
        let now = crate::timefmt::now_unix();
        let published = self.snapshot.load();
        for e in &old {
            self.release(e);
            let r = status::Resolved {
                entry: published.service(&e.spec.name).map(|e| &**e),
                resolvers: self.resolvers.as_ref(),
            };
            self.status.refresh(&e.spec, &self.health, r, now);
        }
    }

    /// Drops the old snapshots no reader holds any more (here, not on a DNS worker).
    fn reap(&mut self) {
        self.retired.retain(|s| Arc::strong_count(s) > 1);
    }
}

/// The distinct fqdns of `spec`'s targets.
fn fqdns(spec: &NameService) -> BTreeSet<&str> {
    spec.targets
        .iter()
        .filter_map(|t| t.fqdn.as_deref())
        .collect()
}

/// A write's outcome: now, or once the batch is durable.
enum Decided {
    Now(Outcome),
    Wait(Outcome),
}

/// The overrides known for `name` (a copy to change).
fn overrides_of(all: &HashMap<Arc<str>, Arc<TargetOverrides>>, name: &str) -> TargetOverrides {
    all.get(name).map(|o| (**o).clone()).unwrap_or_default()
}

/// The `minEligibleTargets` rule: refuses `drain` of `entry`'s target `index` (in
/// `NameService::targets`) when, with the overrides `mine` and the drain in place,
/// fewer than `minEligibleTargets` targets of its address family would be eligible.
pub(super) fn check_drain(
    entry: &ServiceEntry,
    index: usize,
    mine: &TargetOverrides,
    drain: &Override,
) -> Result<(), RegistryError> {
    let spec = &entry.spec;
    let min = spec.min_eligible_targets;
    if min == 0 {
        return Ok(());
    }
    let now = crate::timefmt::now_unix_ms();
    let target = spec.targets[index].name.as_str();
    // The families the target answers in: its address's, or those its fqdn
    // resolved to.
    let families: Vec<bool> = match spec.targets[index].address {
        Some(a) => vec![a.is_ipv6()],
        None => [false, true]
            .into_iter()
            .filter(|v6| entry.family(*v6).iter().any(|t| t.index == index))
            .collect(),
    };
    for v6 in families {
        let left = crate::policy::eligible_count(entry, v6, now, |t| {
            let name = spec.targets[t.index].name.as_str();
            let o = if name == target {
                Some(drain)
            } else {
                mine.get(name)
            };
            o.filter(|o| o.active(now)).map(|o| o.state)
        });
        if left < min {
            let family = if v6 { "IPv6" } else { "IPv4" };
            return Err(RegistryError::UnsafeDrain(format!(
                "draining {target:?} would leave {left} eligible {family} target{} of {:?}, fewer than its minEligibleTargets {min}; add ?force=true to drain it anyway",
                if left == 1 { "" } else { "s" },
                spec.name
            )));
        }
    }
    Ok(())
}

/// Decides one write against the state of its slot; accepted changes take the next
/// revision.
fn decide(slot: &mut Slot, op: Op, revision: &mut u64) -> Decided {
    // A parked name is invisible to reads (GET answers 404), so a write sees it as
    // absent too; a DELETE still removes it from the store.
    let parked = !slot.dirty && slot.before.as_ref().is_some_and(|k| k.entry.is_none());
    let visible = if parked {
        None
    } else {
        slot.current_revision()
    };
    match op {
        Op::Put(spec, cond) => {
            if let Err(e) = cond.check(visible) {
                return Decided::Now(Err(e));
            }
            match &slot.after {
                Some((s, rev)) if !parked && **s == *spec => Decided::Now(Ok(Applied::Put {
                    created: false,
                    revision: *rev,
                })),
                _ => {
                    *revision += 1;
                    slot.after = Some((spec, *revision));
                    slot.deleted_at = None;
                    slot.dirty = true;
                    Decided::Wait(Ok(Applied::Put {
                        created: visible.is_none(),
                        revision: *revision,
                    }))
                }
            }
        }
        Op::Delete(name, cond) => {
            if slot.after.is_none() {
                return Decided::Now(Err(RegistryError::NotFound(name)));
            }
            if let Err(e) = cond.check(visible) {
                return Decided::Now(Err(e));
            }
            *revision += 1;
            // No tombstone: writes decided here are the only source of changes
            // (the embedded backend), so no older change can arrive after this one.
            slot.after = None;
            slot.dirty = true;
            Decided::Wait(Ok(Applied::Deleted {
                revision: *revision,
            }))
        }
    }
}

#[cfg(test)]
mod tests;
