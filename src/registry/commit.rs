//! Group commit: the one thread that writes NameServices.
//!
//! API writers hand their change to the committer through a channel and wait for its
//! reply. The committer takes everything pending, decides each change in arrival
//! order against the state left by the ones before it, writes all accepted changes
//! with one store batch and **one** flush, publishes **one** snapshot holding all of
//! them, and only then replies to every writer with its own outcome. So a burst of
//! writers pays for one fsync instead of one each, and the invariants of the
//! registry hold per write:
//!
//! - flushed before published, published before the reply: a success is durable and
//!   visible to the very next DNS query;
//! - a failed flush fails every write of the batch and publishes nothing;
//! - a rejected write changes nothing, and an outcome that depends on an earlier
//!   write of the same batch (a 404 after a delete, an unchanged PUT after a PUT) is
//!   only given once that write is durable.
//!
//! The committer also owns the old snapshots: it keeps each replaced snapshot until
//! no reader holds it any more and drops it itself, so the last reference to a big
//! map never ends up in a DNS worker's hands (freeing it there would stall queries).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::oneshot;

use super::{RegistryError, placement, status};
use crate::health::HealthHub;
use crate::model::NameService;
use crate::snapshot::{ServiceEntry, Snapshot};
use crate::store::{Change, Store};

/// At most this many changes go into one batch, so one batch's flush and snapshot
/// stay small when a flood of writers arrives at once.
pub(super) const MAX_BATCH: usize = 1024;

/// How often an idle committer looks again at old snapshots a reader still held.
const REAP_INTERVAL: Duration = Duration::from_millis(50);

/// A change a writer asks for.
#[derive(Debug)]
pub(super) enum Op {
    /// Create or replace (validated by the model already).
    Put(Arc<NameService>),
    /// Delete by normalized name.
    Delete(String),
}

/// What happened to one accepted change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Applied {
    Put { created: bool },
    Deleted,
}

pub(super) type Outcome = Result<Applied, RegistryError>;

pub(super) struct Request {
    pub op: Op,
    pub reply: oneshot::Sender<Outcome>,
}

/// Everything the committer writes to.
pub(super) struct Committer {
    /// The registry revision of what is published (see `Registry::revision`).
    pub revision: Arc<AtomicU64>,
    pub store: Arc<dyn Store>,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub health: Arc<HealthHub>,
    pub conditions: Arc<Mutex<HashMap<Arc<str>, status::ReadyMemo>>>,
    /// Replaced snapshots that some reader may still hold; dropped here once we hold
    /// the last reference.
    pub retired: Vec<Arc<Snapshot>>,
}

/// One name touched by a batch.
struct Slot {
    /// The published entry, if any.
    before: Option<Arc<ServiceEntry>>,
    /// The resource after the changes of this batch seen so far.
    after: Option<Arc<NameService>>,
    /// Some accepted change of this batch touched the name: outcomes decided
    /// against `after` depend on the batch being committed.
    dirty: bool,
}

impl Slot {
    /// Whether the batch leaves the name different from what is published.
    fn changed(&self) -> bool {
        match (&self.before, &self.after) {
            (None, None) => false,
            (Some(b), Some(a)) => !Arc::ptr_eq(&b.spec, a) && *b.spec != **a,
            _ => true,
        }
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

    /// Decides, writes, publishes and answers one batch.
    pub fn commit(&mut self, batch: Vec<Request>) {
        let current = self.snapshot.load_full();
        let mut slots: HashMap<Arc<str>, Slot> = HashMap::with_capacity(batch.len());
        // Replies that wait for the batch to be durable.
        let mut waiting: Vec<(oneshot::Sender<Outcome>, Outcome)> = Vec::with_capacity(batch.len());

        for Request { op, reply } in batch {
            let name = match &op {
                Op::Put(spec) => spec.name.as_str(),
                Op::Delete(name) => name.as_str(),
            };
            if let Op::Put(_) = op
                && let Err(e) = placement(&current.zones, name)
            {
                let _ = reply.send(Err(e));
                continue;
            }
            let slot = match slots.entry(Arc::from(name)) {
                Entry::Occupied(o) => o.into_mut(),
                Entry::Vacant(v) => {
                    let before = current.service(v.key()).cloned();
                    let after = before.as_ref().map(|e| e.spec.clone());
                    v.insert(Slot {
                        before,
                        after,
                        dirty: false,
                    })
                }
            };
            let depends = slot.dirty;
            let outcome = match op {
                Op::Put(spec) => {
                    let created = slot.after.is_none();
                    if slot.after.as_deref() != Some(&*spec) {
                        slot.after = Some(spec);
                        slot.dirty = true;
                        waiting.push((reply, Ok(Applied::Put { created })));
                        continue;
                    }
                    // Unchanged: nothing to write.
                    Ok(Applied::Put { created: false })
                }
                Op::Delete(name) => {
                    if slot.after.is_some() {
                        slot.after = None;
                        slot.dirty = true;
                        waiting.push((reply, Ok(Applied::Deleted)));
                        continue;
                    }
                    Err(RegistryError::NotFound(name))
                }
            };
            if depends {
                waiting.push((reply, outcome));
            } else {
                let _ = reply.send(outcome);
            }
        }

        let changed: Vec<(Arc<str>, Slot)> =
            slots.into_iter().filter(|(_, s)| s.changed()).collect();
        if !changed.is_empty() {
            let writes: Vec<Change> = changed
                .iter()
                .map(|(name, s)| match &s.after {
                    Some(spec) => Change::Put(spec.clone()),
                    None => Change::Delete(name.to_string()),
                })
                .collect();
            let revision = self.revision.load(Ordering::Acquire) + writes.len() as u64;
            if let Err(e) = self.store.apply(&writes, revision) {
                tracing::error!(error = %e, writes = writes.len(), "store write failed; batch not applied");
                for (reply, _) in waiting {
                    let _ = reply.send(Err(RegistryError::Store(e.clone())));
                }
                return;
            }
            self.publish(current, &changed);
            self.revision.store(revision, Ordering::Release);
        }
        for (reply, outcome) in waiting {
            let _ = reply.send(outcome);
        }
    }

    /// Swaps in `current` with `changed` applied; keeps `current` to drop it here.
    fn publish(&mut self, current: Arc<Snapshot>, changed: &[(Arc<str>, Slot)]) {
        let health = &self.health;
        // Hold the new endpoints before publishing and release the old ones after, so
        // an endpoint both keep keeps its verdict (and its probe stream).
        let next = Snapshot {
            zones: current.zones.clone(),
            services: current
                .services
                .with_changes(changed.iter().map(|(name, s)| {
                    let entry = s.after.as_ref().map(|spec| {
                        let cells = health.acquire_service(spec);
                        let previous = current.services.get(name);
                        Arc::new(ServiceEntry::compile(
                            spec.clone(),
                            None,
                            previous.map(|p| &**p),
                            |ep| cells[ep].clone(),
                        ))
                    });
                    (name.clone(), entry)
                })),
            topology: current.topology.clone(),
        };
        self.snapshot.store(Arc::new(next));
        self.retired.push(current);
        for (_, s) in changed {
            if let Some(old) = &s.before {
                self.health.release_service(&old.spec);
            }
        }
        let now = crate::timefmt::now_unix();
        let mut memos = self.conditions.lock().unwrap_or_else(|e| e.into_inner());
        for (name, s) in changed {
            match &s.after {
                Some(spec) => {
                    let memo = memos
                        .entry(name.clone())
                        .or_insert_with(|| status::ReadyMemo::initial(now));
                    // A new set of targets may change the reason right now.
                    status::compute(spec, health, None, memo, now);
                }
                None => {
                    memos.remove(&**name);
                }
            }
        }
    }

    /// Drops the old snapshots no reader holds any more (here, not on a DNS worker).
    fn reap(&mut self) {
        self.retired.retain(|s| Arc::strong_count(s) > 1);
    }
}

#[cfg(test)]
mod tests;
