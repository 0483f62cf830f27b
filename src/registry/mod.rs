//! The source of truth for NameServices: validate -> store -> rebuild snapshot -> publish.
//!
//! **Architecture Invariant:** every change goes through the committer thread
//! ([`commit`]): the store has flushed the change before the new snapshot is
//! published, and the snapshot is published before the caller is told it succeeded,
//! so a 2xx is both durable and visible to the very next DNS query. Concurrent
//! writes share one flush and one snapshot (group commit). Startup is the same
//! path: the stored resources are applied to an empty registry.

mod commit;
mod status;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use arc_swap::ArcSwap;
use tokio::sync::oneshot;

pub use status::{Condition, Status, TargetStatus};

use crate::health::{HealthChange, HealthHub};
use crate::model::NameService;
use crate::policy::Topology;
use crate::snapshot::{ServiceEntry, ServiceMap, Snapshot};
use crate::store::{Store, StoreError};
use crate::zone::{Collision, ZoneSet};

#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    #[error("no NameService named {0:?}")]
    NotFound(String),
    #[error("{name:?} is not inside any served zone (served: {zones})")]
    OutsideZones { name: String, zones: String },
    #[error("{name:?} collides with {what} in zone {zone:?}")]
    Collision {
        name: String,
        zone: String,
        what: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the registry's committer is not running: {0}")]
    Committer(String),
}

impl RegistryError {
    fn committer_gone() -> Self {
        Self::Committer("it has stopped".into())
    }
}

/// Checks that `name` may hold a NameService in `zones`.
fn placement(zones: &ZoneSet, name: &str) -> Result<(), RegistryError> {
    let Some(zone) = zones.zone_of(name) else {
        return Err(RegistryError::OutsideZones {
            name: name.to_string(),
            zones: zones.origins().join(", "),
        });
    };
    match zones.collision(name) {
        None => Ok(()),
        Some(c) => Err(RegistryError::Collision {
            name: name.to_string(),
            zone: zone.to_string(),
            what: match c {
                Collision::Cname => "a static CNAME".to_string(),
                Collision::Delegation(at) => format!("the delegation at {at:?}"),
            },
        }),
    }
}

/// A NameService together with its current status, as the API returns it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct View {
    #[serde(flatten)]
    pub spec: Arc<NameService>,
    pub status: Status,
}

/// Outcome of a PUT.
#[derive(Debug)]
pub struct PutOutcome {
    pub created: bool,
    pub view: View,
}

/// One instance serving the registry, as `GET /api/v1/instances` shows it.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceInfo {
    pub name: String,
    /// The registry revision this instance has applied.
    pub revision: u64,
    /// When this instance was last known to be alive (RFC 3339).
    pub last_seen: String,
    #[serde(rename = "self")]
    pub is_self: bool,
}

pub struct Registry {
    /// This instance's name.
    instance: Arc<str>,
    /// The registry revision of what is published: bumped by one per change the
    /// committer writes, stored with the changes.
    revision: Arc<AtomicU64>,
    store: Arc<dyn Store>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    health: Arc<HealthHub>,
    /// Hands changes to the committer thread (see [`commit`]); `None` once dropping.
    commits: Option<mpsc::Sender<commit::Request>>,
    committer: Option<std::thread::JoinHandle<()>>,
    /// Ready condition per NameService: (status, reason, lastTransitionTime).
    conditions: Arc<Mutex<HashMap<Arc<str>, status::ReadyMemo>>>,
}

impl Registry {
    /// Builds the registry from the store: every stored NameService is applied to an
    /// empty registry (the same path as an API write, minus the store write).
    pub fn open(
        instance: &str,
        store: Arc<dyn Store>,
        zones: Arc<ZoneSet>,
        topology: Arc<Topology>,
        health: Arc<HealthHub>,
    ) -> Result<Self, RegistryError> {
        let now = crate::timefmt::now_unix();
        let revision = Arc::new(AtomicU64::new(store.revision()?));
        let mut conditions = HashMap::new();
        let mut entries = Vec::new();
        store.load_each(&mut |ns| {
            // Stored names that no zone serves any more stay stored (the zone may come
            // back) but are neither served nor probed; say so once.
            if zones.zone_of(&ns.name).is_none() {
                tracing::warn!(nameservice = %ns.name, "stored NameService is outside every served zone; not served");
                return;
            }
            let cells = health.acquire_service(&ns);
            let spec = Arc::new(ns);
            let name: Arc<str> = spec.name.as_str().into();
            // Health may be restored from the store: so is the Ready condition.
            conditions.insert(
                name.clone(),
                status::ReadyMemo::restored(&spec, &health, now),
            );
            let entry = Arc::new(ServiceEntry::compile(spec, None, None, |ep| cells[ep].clone()));
            entries.push((name, Some(entry)));
        })?;
        let snapshot = Snapshot {
            services: ServiceMap::default().with_changes(entries),
            zones,
            topology,
        };
        let snapshot = Arc::new(ArcSwap::from_pointee(snapshot));
        let conditions = Arc::new(Mutex::new(conditions));
        let (tx, rx) = mpsc::channel();
        let committer = commit::Committer {
            revision: revision.clone(),
            store: store.clone(),
            snapshot: snapshot.clone(),
            health: health.clone(),
            conditions: conditions.clone(),
            retired: Vec::new(),
        };
        let committer = std::thread::Builder::new()
            .name("gslb-commit".into())
            .spawn(move || committer.run(rx))
            .map_err(|e| RegistryError::Committer(e.to_string()))?;
        Ok(Self {
            instance: instance.into(),
            revision,
            store,
            snapshot,
            health,
            commits: Some(tx),
            committer: Some(committer),
            conditions,
        })
    }

    /// Records Ready transitions as health changes happen (rather than when someone
    /// happens to read the status), so `lastTransitionTime` is the time of the change.
    pub fn watch_health(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        self.health.set_change_hook(move |c| {
            if let Some(r) = me.upgrade() {
                r.health_changed(c);
            }
        });
    }

    fn health_changed(&self, change: &HealthChange) {
        let snap = self.snapshot.load();
        let mut memos = self.lock_conditions();
        for name in &change.nameservices {
            if let (Some(entry), Some(memo)) = (snap.service(name), memos.get_mut(&**name)) {
                status::compute(&entry.spec, &self.health, None, memo, change.at);
            }
        }
    }

    /// The handle DNS workers load snapshots from.
    pub fn snapshot_handle(&self) -> Arc<ArcSwap<Snapshot>> {
        self.snapshot.clone()
    }

    pub fn health(&self) -> &Arc<HealthHub> {
        &self.health
    }

    /// Checks that `name` may hold a NameService in the current zones.
    pub fn check_placement(&self, name: &str) -> Result<(), RegistryError> {
        placement(&self.snapshot.load().zones, name)
    }

    /// Creates or replaces a NameService. Durable and visible when it returns `Ok`.
    /// Blocking (waits for the flush): call from a blocking context; async code
    /// calls [`Registry::put_async`].
    pub fn put(&self, ns: NameService) -> Result<PutOutcome, RegistryError> {
        let spec = Arc::new(ns);
        if let Some(done) = self.unchanged(&spec) {
            return Ok(done);
        }
        let applied = self
            .submit(commit::Op::Put(spec.clone()))?
            .blocking_recv()
            .map_err(|_| RegistryError::committer_gone())??;
        Ok(self.put_outcome(applied, &spec))
    }

    /// [`Registry::put`] for async callers: waits for the group commit without
    /// holding a thread.
    pub async fn put_async(&self, ns: NameService) -> Result<PutOutcome, RegistryError> {
        let spec = Arc::new(ns);
        if let Some(done) = self.unchanged(&spec) {
            return Ok(done);
        }
        let applied = self
            .submit(commit::Op::Put(spec.clone()))?
            .await
            .map_err(|_| RegistryError::committer_gone())??;
        Ok(self.put_outcome(applied, &spec))
    }

    /// Deletes a NameService. Durable and visible when it returns `Ok`. Blocking;
    /// async code calls [`Registry::delete_async`].
    pub fn delete(&self, name: &str) -> Result<(), RegistryError> {
        self.submit(commit::Op::Delete(name.to_string()))?
            .blocking_recv()
            .map_err(|_| RegistryError::committer_gone())??;
        Ok(())
    }

    /// [`Registry::delete`] for async callers.
    pub async fn delete_async(&self, name: &str) -> Result<(), RegistryError> {
        self.submit(commit::Op::Delete(name.to_string()))?
            .await
            .map_err(|_| RegistryError::committer_gone())??;
        Ok(())
    }

    /// A PUT of exactly what is published answers 200 at once: nothing to write, and
    /// what it returns is already durable and visible.
    fn unchanged(&self, spec: &Arc<NameService>) -> Option<PutOutcome> {
        let snap = self.snapshot.load();
        let existing = snap.service(&spec.name)?;
        (*existing.spec == **spec).then(|| PutOutcome {
            created: false,
            view: self.view(&existing.spec),
        })
    }

    fn put_outcome(&self, applied: commit::Applied, spec: &Arc<NameService>) -> PutOutcome {
        PutOutcome {
            created: applied == commit::Applied::Put { created: true },
            view: self.view(spec),
        }
    }

    /// Queues `op` for the committer; the receiver gets its outcome once decided (and,
    /// for an accepted change, flushed and published).
    fn submit(&self, op: commit::Op) -> Result<oneshot::Receiver<commit::Outcome>, RegistryError> {
        let (reply, rx) = oneshot::channel();
        self.commits
            .as_ref()
            .and_then(|tx| tx.send(commit::Request { op, reply }).ok())
            .ok_or_else(RegistryError::committer_gone)?;
        Ok(rx)
    }

    fn lock_conditions(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, status::ReadyMemo>> {
        self.conditions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This instance's name.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The registry revision of what is published.
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    /// The instances serving this registry, sorted by name. With the embedded store
    /// that is this one alone.
    pub fn instances(&self) -> Vec<InstanceInfo> {
        vec![InstanceInfo {
            name: self.instance.to_string(),
            revision: self.revision(),
            last_seen: crate::timefmt::rfc3339(crate::timefmt::now_unix()),
            is_self: true,
        }]
    }

    /// One NameService with its status.
    pub fn get(&self, name: &str) -> Option<View> {
        let snap = self.snapshot.load();
        snap.service(name).map(|e| self.view(&e.spec))
    }

    /// Every NameService, sorted by name.
    pub fn list(&self) -> Vec<View> {
        let snap = self.snapshot.load();
        let mut specs: Vec<_> = snap.services.iter().map(|(_, e)| e.spec.clone()).collect();
        specs.sort_by(|a, b| a.name.cmp(&b.name));
        specs.iter().map(|s| self.view(s)).collect()
    }

    /// How many NameServices are served.
    pub fn len(&self) -> usize {
        self.snapshot.load().services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn view(&self, spec: &Arc<NameService>) -> View {
        let mut memos = self.lock_conditions();
        let memo = match memos.get_mut(spec.name.as_str()) {
            Some(m) => m,
            None => memos
                .entry(spec.name.as_str().into())
                .or_insert_with(|| status::ReadyMemo::initial(crate::timefmt::now_unix())),
        };
        // The published entry's answer counts (the spec's own, or its successor's
        // when a write raced this read: counts carry over by target name).
        let answers = self
            .snapshot
            .load()
            .service(&spec.name)
            .map(|e| e.answers.clone());
        View {
            spec: spec.clone(),
            status: status::compute(
                spec,
                &self.health,
                answers.as_deref(),
                memo,
                crate::timefmt::now_unix(),
            ),
        }
    }

    /// Flushes the store (shutdown).
    pub fn flush(&self) -> Result<(), RegistryError> {
        Ok(self.store.flush()?)
    }
}

impl Drop for Registry {
    /// Stops the committer once it has answered everything queued, so the store is
    /// released when the registry is.
    fn drop(&mut self) {
        self.commits = None;
        if let Some(t) = self.committer.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests;
