//! The source of truth for NameServices: validate -> store -> rebuild snapshot -> publish.
//!
//! **Architecture Invariant:** every change goes through [`Registry::apply`]: the
//! store has flushed the change before the new snapshot is published, and the
//! snapshot is published before the caller is told it succeeded, so a 2xx is both
//! durable and visible to the very next DNS query. Startup is the same path: the
//! stored resources are applied to an empty registry.

mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

pub use status::{Condition, Status, TargetStatus};

use crate::health::{HealthChange, HealthHub};
use crate::model::NameService;
use crate::policy::Topology;
use crate::snapshot::{ServiceEntry, ServiceMap, Snapshot};
use crate::store::{Change, Store, StoreError};
use crate::zone::{Collision, ZoneSet};

#[derive(Debug, thiserror::Error)]
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

pub struct Registry {
    store: Arc<dyn Store>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    health: Arc<HealthHub>,
    /// Serializes writers; held only across synchronous code (never across `.await`).
    write: Mutex<()>,
    /// Ready condition per NameService: (status, reason, lastTransitionTime).
    conditions: Mutex<HashMap<String, status::ReadyMemo>>,
}

impl Registry {
    /// Builds the registry from the store: every stored NameService is applied to an
    /// empty registry (the same path as an API write, minus the store write).
    pub fn open(
        store: Arc<dyn Store>,
        zones: Arc<ZoneSet>,
        topology: Arc<Topology>,
        health: Arc<HealthHub>,
    ) -> Result<Self, RegistryError> {
        let stored = store.load_all()?;
        let now = crate::timefmt::now_unix();
        let mut conditions = HashMap::new();
        // Stored names that no zone serves any more stay stored (the zone may come
        // back) but are neither served nor probed; say so once.
        let changes: Vec<_> = stored
            .into_iter()
            .filter(|ns| {
                let served = zones.zone_of(&ns.name).is_some();
                if !served {
                    tracing::warn!(nameservice = %ns.name, "stored NameService is outside every served zone; not served");
                }
                served
            })
            .map(|ns| {
                let cells = health.acquire_service(&ns);
                let spec = Arc::new(ns);
                // Health may be restored from the store: so is the Ready condition.
                conditions.insert(
                    spec.name.clone(),
                    status::ReadyMemo::restored(&spec, &health, now),
                );
                let name: Arc<str> = spec.name.as_str().into();
                let entry = Arc::new(ServiceEntry::compile(spec, |ep| cells[ep].clone()));
                (name, Some(entry))
            })
            .collect();
        let snapshot = Snapshot {
            services: ServiceMap::default().with_changes(changes),
            zones,
            topology,
        };
        Ok(Self {
            store,
            snapshot: Arc::new(ArcSwap::from_pointee(snapshot)),
            health,
            write: Mutex::new(()),
            conditions: Mutex::new(conditions),
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
                status::compute(&entry.spec, &self.health, memo, change.at);
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
        let snap = self.snapshot.load();
        let Some(zone) = snap.zones.zone_of(name) else {
            return Err(RegistryError::OutsideZones {
                name: name.to_string(),
                zones: snap.zones.origins().join(", "),
            });
        };
        match snap.zones.collision(name) {
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

    /// Creates or replaces a NameService. Durable and visible when it returns `Ok`.
    /// Blocking (flushes to disk): call from a blocking context.
    pub fn put(&self, ns: NameService) -> Result<PutOutcome, RegistryError> {
        self.check_placement(&ns.name)?;
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.snapshot.load_full();
        let existing = current.service(&ns.name).cloned();
        let created = existing.is_none();
        let spec = Arc::new(ns);
        if existing.as_ref().is_some_and(|e| *e.spec == *spec) {
            // Nothing changes: keep the entry (and its rotation) as it is.
            drop(_w);
            return Ok(PutOutcome {
                created,
                view: self.view(&spec),
            });
        }
        self.store.apply(&[Change::Put((*spec).clone())])?;
        // Hold the new endpoints before publishing and release the old ones after, so
        // an endpoint both keep keeps its verdict (and its probe stream).
        let cells = self.health.acquire_service(&spec);
        let entry = Arc::new(ServiceEntry::compile(spec.clone(), |ep| cells[ep].clone()));
        let name: Arc<str> = spec.name.as_str().into();
        self.publish(current, [(name, Some(entry))]);
        if let Some(old) = existing {
            self.health.release_service(&old.spec);
        }
        {
            let now = crate::timefmt::now_unix();
            let mut memos = self.lock_conditions();
            let memo = memos
                .entry(spec.name.clone())
                .or_insert_with(|| status::ReadyMemo::initial(now));
            // A new set of targets may change the reason right now.
            status::compute(&spec, &self.health, memo, now);
        }
        drop(_w);
        Ok(PutOutcome {
            created,
            view: self.view(&spec),
        })
    }

    /// Deletes a NameService. Durable and visible when it returns `Ok`. Blocking.
    pub fn delete(&self, name: &str) -> Result<(), RegistryError> {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.snapshot.load_full();
        let Some(old) = current.service(name).cloned() else {
            return Err(RegistryError::NotFound(name.to_string()));
        };
        self.store.apply(&[Change::Delete(name.to_string())])?;
        self.publish(current, [(name.into(), None)]);
        self.health.release_service(&old.spec);
        self.lock_conditions().remove(name);
        Ok(())
    }

    /// Swaps in `current` with `changes` applied.
    fn publish(
        &self,
        current: Arc<Snapshot>,
        changes: impl IntoIterator<Item = (Arc<str>, Option<Arc<ServiceEntry>>)>,
    ) {
        let next = Snapshot {
            zones: current.zones.clone(),
            services: current.services.with_changes(changes),
            topology: current.topology.clone(),
        };
        self.snapshot.store(Arc::new(next));
    }

    fn lock_conditions(&self) -> std::sync::MutexGuard<'_, HashMap<String, status::ReadyMemo>> {
        self.conditions.lock().unwrap_or_else(|e| e.into_inner())
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
        let mut memo = self.lock_conditions();
        let memo = memo
            .entry(spec.name.clone())
            .or_insert_with(|| status::ReadyMemo::initial(crate::timefmt::now_unix()));
        View {
            spec: spec.clone(),
            status: status::compute(spec, &self.health, memo, crate::timefmt::now_unix()),
        }
    }

    /// Flushes the store (shutdown).
    pub fn flush(&self) -> Result<(), RegistryError> {
        Ok(self.store.flush()?)
    }
}

#[cfg(test)]
mod tests;
