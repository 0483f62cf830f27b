//! The source of truth for NameServices: validate -> place -> store -> compile ->
//! publish.
//!
//! **Architecture Invariant:** every change goes through the committer thread
//! ([`commit`]) and its one apply path: the store has the change before the new
//! snapshot is published, and the snapshot is published before the caller is told
//! it succeeded, so a 2xx is both durable and visible to the very next DNS query.
//! Concurrent writes share one flush and one snapshot (group commit). Startup is
//! the same path: the stored resources are applied to an empty registry, with the
//! same placement checks as an API write.
//!
//! **Architecture Invariant:** every resource carries the revision of the change
//! that wrote it (its ETag), and the registry the revision of the last change it
//! applied; both only grow.

mod commit;
pub mod etcd;
pub mod fleet;
mod overrides;
mod status;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use arc_swap::ArcSwap;
use ipnet::IpNet;
use tokio::sync::oneshot;

pub use status::{Condition, Status, TargetStatus};

use crate::health::{HealthEvent, HealthHub};
use crate::model::{NameService, Override, TargetOverrides, ValidationError};
use crate::policy::Topology;
use crate::resolver::Resolvers;
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
    /// An `If-Match` / `If-None-Match` condition did not hold.
    #[error("{0}")]
    PreconditionFailed(String),
    /// A rule that depends on the configuration (the `[health] deny` ranges).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the registry's committer is not running: {0}")]
    Committer(String),
    /// A reload would leave these served names (each with the reason) outside
    /// every zone, colliding with static data, or breaking the address rules.
    #[error("the reload would leave NameServices that cannot be served: {}", .0.join("; "))]
    ReloadConflict(Vec<String>),
    #[error("NameService {name:?} has no target named {target:?}")]
    NoSuchTarget { name: String, target: String },
    #[error("target {target:?} of NameService {name:?} has no override")]
    NoOverride { name: String, target: String },
    /// A Drain refused by the `minEligibleTargets` rule (409).
    #[error("{0}")]
    UnsafeDrain(String),
    /// The shared registry (etcd) cannot take writes now; nothing was changed.
    #[error("{message}")]
    Unavailable { retry_after: u32, message: String },
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

/// Checks that `spec` may be served: placed in `zones`, and no target address in
/// the always-refused ranges or in `deny` (`[health] deny`). The model checked the
/// fixed address rules already for a write; a resource decided elsewhere (the local
/// copy, etcd) may predate them, or the configuration.
fn admissible(zones: &ZoneSet, deny: &[IpNet], spec: &NameService) -> Result<(), RegistryError> {
    placement(zones, &spec.name)?;
    spec.check_addresses(deny)?;
    Ok(())
}

/// Entity tags a condition lists (`If-Match`, `If-None-Match`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tags {
    /// `*`: any current version.
    Any,
    /// Strong tags `"<revision>"`; an empty list matches nothing.
    Revisions(Vec<u64>),
}

impl Tags {
    fn matches(&self, revision: u64) -> bool {
        match self {
            Tags::Any => true,
            Tags::Revisions(list) => list.contains(&revision),
        }
    }
}

/// The conditions of a write (RFC 9110 section 13.1), checked against the current
/// revision of the resource when the write is decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Precondition {
    pub if_match: Option<Tags>,
    pub if_none_match: Option<Tags>,
}

impl Precondition {
    pub fn is_empty(&self) -> bool {
        self.if_match.is_none() && self.if_none_match.is_none()
    }

    /// Checks the conditions against the resource's current revision (`None`:
    /// absent).
    pub fn check(&self, current: Option<u64>) -> Result<(), RegistryError> {
        if let Some(tags) = &self.if_match
            && !current.is_some_and(|r| tags.matches(r))
        {
            return Err(RegistryError::PreconditionFailed(match current {
                None => "If-Match: the NameService does not exist".into(),
                Some(r) => format!(
                    "If-Match: the NameService is at revision \"{r}\", which the request does not name"
                ),
            }));
        }
        if let Some(tags) = &self.if_none_match
            && let Some(r) = current.filter(|r| tags.matches(*r))
        {
            return Err(RegistryError::PreconditionFailed(match tags {
                Tags::Any => format!("If-None-Match: *: the NameService exists (revision \"{r}\")"),
                Tags::Revisions(_) => {
                    format!("If-None-Match: the NameService is at revision \"{r}\"")
                }
            }));
        }
        Ok(())
    }
}

/// A NameService together with its current status, as the API returns it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct View {
    #[serde(flatten)]
    pub spec: Arc<NameService>,
    pub status: Status,
    /// The revision of the change that wrote it: its ETag.
    #[serde(skip)]
    pub revision: u64,
}

/// Outcome of a PUT.
#[derive(Debug)]
pub struct PutOutcome {
    pub created: bool,
    /// False when the PUT held exactly what was published (nothing was written).
    /// (Two identical PUTs decided in one group commit both say true.)
    pub changed: bool,
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
    commits: etcd::Commits,
    /// The etcd side, with the etcd backend.
    etcd: Option<Arc<etcd::EtcdSide>>,
    /// The fleet layer, with the etcd backend.
    fleet: Option<Arc<fleet::Fleet>>,
    /// `[health] deny` (also the committer's), for writes checked before etcd.
    deny: Arc<[IpNet]>,
    committer: Option<std::thread::JoinHandle<()>>,
    /// Ready condition per NameService: (status, reason, lastTransitionTime).
    status: Arc<status::Book>,
    /// Resolution of fqdn targets; `None`: they are never resolved (tests).
    resolvers: Option<Resolvers>,
}

/// What the registry checks and resolves besides the resource itself.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `[health] deny`: no target address (nor resolved address) may be in these.
    pub deny: Vec<IpNet>,
    /// Resolves fqdn targets; `None`: they have no addresses.
    pub resolvers: Option<Resolvers>,
}

impl Registry {
    /// Builds the registry from the store: every stored NameService is applied to an
    /// empty registry through the committer's one apply path (placement checks
    /// included: a stored name that no served zone can hold now is parked, not
    /// served).
    pub fn open(
        instance: &str,
        store: Arc<dyn Store>,
        zones: Arc<ZoneSet>,
        topology: Arc<Topology>,
        health: Arc<HealthHub>,
        options: Options,
    ) -> Result<Self, RegistryError> {
        Self::open_with(instance, store, zones, topology, health, options, None)
    }

    /// [`Registry::open`] with the etcd backend: the store is this instance's local
    /// copy, served until etcd is reached ([`Registry::start_etcd`]). A store that
    /// never held a copy leaves the registry unloaded: names of its zones without
    /// static records answer SERVFAIL until etcd was listed once.
    pub fn open_with(
        instance: &str,
        store: Arc<dyn Store>,
        zones: Arc<ZoneSet>,
        topology: Arc<Topology>,
        health: Arc<HealthHub>,
        options: Options,
        etcd: Option<Arc<etcd::EtcdSide>>,
    ) -> Result<Self, RegistryError> {
        let Options { deny, resolvers } = options;
        let has_copy = matches!(store.origin(), crate::store::Origin::Etcd { .. });
        let unloaded = etcd.is_some() && !has_copy;
        if let Some(side) = &etcd {
            side.state.loaded.store(has_copy, Ordering::Release);
        }
        let stored_revision = store.revision()?;
        // Overrides first, so the NameServices compile with them.
        let mut overrides: HashMap<Arc<str>, TargetOverrides> = HashMap::new();
        for o in store.load_overrides()? {
            overrides
                .entry(o.nameservice.as_str().into())
                .or_default()
                .insert(o.target, o.ovr);
        }
        let mut changes = Vec::new();
        store.load_each(&mut |ns, rev| {
            changes.push(commit::Incoming {
                name: ns.name.as_str().into(),
                spec: Some(Arc::new(ns)),
                revision: rev,
            });
        })?;
        let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot {
            services: ServiceMap::default(),
            zones,
            topology,
            unloaded,
        }));
        let revision = Arc::new(AtomicU64::new(0));
        let book = Arc::new(status::Book::default());
        let mut committer = commit::Committer {
            revision: revision.clone(),
            store: store.clone(),
            snapshot: snapshot.clone(),
            health: health.clone(),
            status: book.clone(),
            parked: HashMap::new(),
            tombstones: HashMap::new(),
            retired: Vec::new(),
            overrides: overrides
                .into_iter()
                .map(|(n, o)| (n, Arc::new(o)))
                .collect(),
            override_revisions: HashMap::new(),
            deny: deny.clone().into(),
            resolvers: resolvers.clone(),
            fqdn_index: HashMap::new(),
        };
        let (done, mut loaded) = oneshot::channel();
        committer.commit(vec![commit::Request::Apply {
            changes,
            revision: stored_revision,
            store: false,
            durable: false,
            watched: false,
            reset: false,
            reply: Some(done),
        }]);
        loaded
            .try_recv()
            .map_err(|_| RegistryError::committer_gone())??;
        let (tx, rx) = mpsc::channel();
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
            commits: Arc::new(Mutex::new(Some(tx))),
            fleet: etcd.as_ref().map(|s| fleet::Fleet::new(s.clone())),
            etcd,
            deny: deny.into(),
            committer: Some(committer),
            status: book,
            resolvers,
        })
    }

    /// Follows the resolution of fqdn targets from now on: a name whose addresses
    /// (or error) changed recompiles the NameServices holding it, through the
    /// committer (published, not stored). Call inside the runtime; the task ends
    /// with the registry.
    pub fn follow_resolutions(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let resolvers = self.resolvers.clone()?;
        let me = Arc::downgrade(self);
        Some(tokio::spawn(async move {
            loop {
                let names = resolvers.changed().await;
                let Some(r) = me.upgrade() else { return };
                let sent = r
                    .commits
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .is_some_and(|tx| tx.send(commit::Request::Resolved(names)).is_ok());
                if !sent {
                    return;
                }
            }
        }))
    }

    /// What the status of an fqdn target needs from the published `entry`.
    fn resolved<'a>(&'a self, entry: Option<&'a ServiceEntry>) -> status::Resolved<'a> {
        status::Resolved {
            entry,
            resolvers: self.resolvers.as_ref(),
        }
    }

    /// Follows the health events from now on: every verdict change refreshes the
    /// Ready condition of the NameServices holding it, dated by the change (rather
    /// than by whoever reads the status next). Call inside the runtime, before the
    /// prober starts; the task ends with the registry.
    pub fn follow_health(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let mut events = self.health.subscribe();
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                let event = events.recv().await;
                let Some(r) = me.upgrade() else { return };
                match event {
                    Ok(e) => {
                        if let HealthEvent::Verdict(c) = &*e {
                            let snap = r.snapshot.load();
                            for name in c.nameservices() {
                                if let Some(entry) = snap.service(name) {
                                    let rs = r.resolved(Some(entry));
                                    r.status.refresh(&entry.spec, &r.health, rs, c.at());
                                }
                            }
                        }
                    }
                    // Events were lost: bring every condition up to date, now.
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(
                            lost = n,
                            "health events lost; refreshing every Ready condition"
                        );
                        let now = crate::timefmt::now_unix();
                        for (_, entry) in r.snapshot.load().services.iter() {
                            let rs = r.resolved(Some(entry));
                            r.status.refresh(&entry.spec, &r.health, rs, now);
                        }
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        })
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
        self.put_if(ns, Precondition::default())
    }

    /// [`Registry::put`] under `cond`.
    pub fn put_if(&self, ns: NameService, cond: Precondition) -> Result<PutOutcome, RegistryError> {
        let spec = Arc::new(ns);
        if cond.is_empty()
            && let Some(done) = self.unchanged(&spec)
        {
            return Ok(done);
        }
        let applied = self
            .submit(commit::Op::Put(spec.clone(), cond))?
            .blocking_recv()
            .map_err(|_| RegistryError::committer_gone())??;
        Ok(self.put_outcome(applied, &spec))
    }

    /// [`Registry::put_if`] for async callers: waits for the group commit without
    /// holding a thread.
    pub async fn put_async(
        &self,
        ns: NameService,
        cond: Precondition,
    ) -> Result<PutOutcome, RegistryError> {
        let spec = Arc::new(ns);
        if let Some(side) = &self.etcd {
            // Placement and address rules first: a write this instance could not
            // serve is refused before it reaches the shared registry.
            admissible(&self.snapshot.load().zones, &self.deny, &spec)?;
            // A disk too full for the local copy refuses the write before etcd has it.
            self.store.ensure_room(0).map_err(RegistryError::Store)?;
            let (created, changed, revision) = side
                .put(&spec, &cond, async |inc| {
                    etcd::apply(&self.commits, vec![inc], 0, false).await
                })
                .await?;
            return Ok(PutOutcome {
                created,
                changed,
                view: self.view(&spec, revision),
            });
        }
        if cond.is_empty()
            && let Some(done) = self.unchanged(&spec)
        {
            return Ok(done);
        }
        let applied = self
            .submit(commit::Op::Put(spec.clone(), cond))?
            .await
            .map_err(|_| RegistryError::committer_gone())??;
        Ok(self.put_outcome(applied, &spec))
    }

    /// Deletes a NameService. Durable and visible when it returns `Ok`. Blocking;
    /// async code calls [`Registry::delete_async`].
    pub fn delete(&self, name: &str) -> Result<(), RegistryError> {
        self.submit(commit::Op::Delete(
            name.to_string(),
            Precondition::default(),
        ))?
        .blocking_recv()
        .map_err(|_| RegistryError::committer_gone())??;
        Ok(())
    }

    /// [`Registry::delete`] for async callers, under `cond`.
    pub async fn delete_async(&self, name: &str, cond: Precondition) -> Result<(), RegistryError> {
        if let Some(side) = &self.etcd {
            self.store.ensure_room(0).map_err(RegistryError::Store)?;
            return side
                .delete(name, &cond, async |inc| {
                    etcd::apply(&self.commits, vec![inc], 0, false).await
                })
                .await;
        }
        self.submit(commit::Op::Delete(name.to_string(), cond))?
            .await
            .map_err(|_| RegistryError::committer_gone())??;
        Ok(())
    }

    /// Sets the override of `target` of NameService `name`, durable and in the
    /// answers when it returns `Ok` (with the override it replaced, if any). A Drain
    /// that would leave fewer than `minEligibleTargets` eligible targets of the
    /// target's address family is refused ([`RegistryError::UnsafeDrain`]) unless
    /// `force`.
    pub async fn put_override(
        &self,
        name: &str,
        target: &str,
        ovr: Override,
        force: bool,
    ) -> Result<Option<Override>, RegistryError> {
        if let Some(side) = &self.etcd {
            // Decided here against what this instance serves, then written through
            // etcd (which every instance watches) and applied here at once.
            let replaced = self.check_override(name, target, &ovr, force)?;
            self.store.ensure_room(0).map_err(RegistryError::Store)?;
            let revision = side.put_override(name, target, &ovr).await?;
            overrides::apply(
                &self.commits,
                vec![overrides::IncomingOverride {
                    name: name.into(),
                    target: target.to_string(),
                    ovr: Some(ovr),
                    revision,
                }],
                None,
                0,
            )
            .await?;
            return Ok(replaced);
        }
        let op = commit::OverrideOp::Put {
            name: name.into(),
            target: target.to_string(),
            ovr,
            force,
        };
        match self.submit_override(op).await? {
            commit::OverrideApplied::Set { replaced, .. } => Ok(replaced),
            other => unreachable!("a put answered {other:?}"),
        }
    }

    /// Removes the override of `target` of NameService `name`; returns it.
    pub async fn delete_override(
        &self,
        name: &str,
        target: &str,
    ) -> Result<Override, RegistryError> {
        if let Some(side) = &self.etcd {
            let now = crate::timefmt::now_unix_ms();
            let old = self
                .overrides(name)
                .and_then(|o| o.get(target).cloned())
                .filter(|o| o.active(now));
            let served = self.snapshot.load().service(name).is_some();
            self.store.ensure_room(0).map_err(RegistryError::Store)?;
            let Some(revision) = side.delete_override(name, target).await? else {
                return Err(if served {
                    RegistryError::NoOverride {
                        name: name.to_string(),
                        target: target.to_string(),
                    }
                } else {
                    RegistryError::NotFound(name.to_string())
                });
            };
            overrides::apply(
                &self.commits,
                vec![overrides::IncomingOverride {
                    name: name.into(),
                    target: target.to_string(),
                    ovr: None,
                    revision,
                }],
                None,
                0,
            )
            .await?;
            // etcd held one; this instance may not have applied it yet, and then
            // knows nothing of it but that it is gone now.
            return old.ok_or_else(|| RegistryError::NoOverride {
                name: name.to_string(),
                target: target.to_string(),
            });
        }
        let op = commit::OverrideOp::Delete {
            name: name.into(),
            target: target.to_string(),
        };
        match self.submit_override(op).await? {
            commit::OverrideApplied::Removed(o) => Ok(o),
            other => unreachable!("a delete answered {other:?}"),
        }
    }

    /// Removes every override expired at `now_ms` (the answer path ignores them
    /// from their expiry on already); returns them, sorted.
    pub async fn expire_overrides(
        &self,
        now_ms: u64,
    ) -> Result<Vec<(Arc<str>, String, Override)>, RegistryError> {
        match self
            .submit_override(commit::OverrideOp::Expire { now_ms })
            .await?
        {
            commit::OverrideApplied::Expired(list) => Ok(list),
            other => unreachable!("an expiry answered {other:?}"),
        }
    }

    /// Decides an override write against what this instance serves (the etcd path,
    /// where the committer cannot decide it before etcd has it): 404 for an unknown
    /// name or target, the `minEligibleTargets` rule for a Drain. Returns the
    /// override it replaces.
    fn check_override(
        &self,
        name: &str,
        target: &str,
        ovr: &Override,
        force: bool,
    ) -> Result<Option<Override>, RegistryError> {
        let snap = self.snapshot.load();
        let entry = snap
            .service(name)
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))?;
        let Some(index) = entry.spec.targets.iter().position(|t| t.name == target) else {
            return Err(RegistryError::NoSuchTarget {
                name: name.to_string(),
                target: target.to_string(),
            });
        };
        let mine = entry.overrides.as_deref().cloned().unwrap_or_default();
        if ovr.state == crate::model::OverrideState::Drain && !force {
            commit::check_drain(entry, index, &mine, ovr)?;
        }
        let now = crate::timefmt::now_unix_ms();
        Ok(mine.get(target).filter(|o| o.active(now)).cloned())
    }

    /// The overrides of NameService `name` as published (expired ones included
    /// until they are removed).
    pub fn overrides(&self, name: &str) -> Option<Arc<TargetOverrides>> {
        self.snapshot.load().service(name)?.overrides.clone()
    }

    async fn submit_override(
        &self,
        op: commit::OverrideOp,
    ) -> Result<commit::OverrideApplied, RegistryError> {
        let (reply, rx) = oneshot::channel();
        self.commits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|tx| tx.send(commit::Request::Override { op, reply }).ok())
            .ok_or_else(RegistryError::committer_gone)?;
        rx.await.map_err(|_| RegistryError::committer_gone())?
    }

    /// A PUT of exactly what is published answers 200 at once: nothing to write, and
    /// what it returns is already durable and visible.
    fn unchanged(&self, spec: &Arc<NameService>) -> Option<PutOutcome> {
        let snap = self.snapshot.load();
        let existing = snap.service(&spec.name)?;
        (*existing.spec == **spec).then(|| PutOutcome {
            created: false,
            changed: false,
            view: self.view(&existing.spec, existing.revision),
        })
    }

    fn put_outcome(&self, applied: commit::Applied, spec: &Arc<NameService>) -> PutOutcome {
        match applied {
            commit::Applied::Put { created, revision } => PutOutcome {
                created,
                changed: true,
                view: self.view(spec, revision),
            },
            commit::Applied::Deleted { .. } => unreachable!("a PUT is never a deletion"),
        }
    }

    /// Queues `op` for the committer; the receiver gets its outcome once decided (and,
    /// for an accepted change, flushed and published).
    fn submit(&self, op: commit::Op) -> Result<oneshot::Receiver<commit::Outcome>, RegistryError> {
        let (reply, rx) = oneshot::channel();
        self.commits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|tx| tx.send(commit::Request::Write { op, reply }).ok())
            .ok_or_else(RegistryError::committer_gone)?;
        Ok(rx)
    }

    /// This instance's name.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The registry revision of what is published.
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    /// The instances serving this registry, sorted by name: with etcd, those whose
    /// lease is alive; with the embedded store, this one alone.
    pub async fn instances(&self) -> Result<Vec<InstanceInfo>, RegistryError> {
        if let Some(side) = &self.etcd {
            return side.instances().await;
        }
        Ok(vec![InstanceInfo {
            name: self.instance.to_string(),
            revision: self.revision(),
            last_seen: crate::timefmt::rfc3339(crate::timefmt::now_unix()),
            is_self: true,
        }])
    }

    /// Whether a registry is loaded (always, with the embedded store; with etcd,
    /// once the local copy or etcd was).
    pub fn is_loaded(&self) -> bool {
        self.etcd
            .as_ref()
            .is_none_or(|s| s.state.loaded.load(Ordering::Acquire))
    }

    /// Whether etcd answered (with the etcd backend; `false` without it).
    pub fn etcd_connected(&self) -> bool {
        self.etcd
            .as_ref()
            .is_some_and(|s| s.state.connected.load(Ordering::Acquire))
    }

    /// The registry's metrics.
    pub fn collector(&self) -> etcd::RegistryCollector {
        etcd::RegistryCollector {
            revision: self.revision.clone(),
            etcd: self.etcd.as_ref().map(|s| s.state.clone()),
        }
    }

    /// Waits (with the etcd backend) until etcd was listed once, etcd turned out to
    /// be another cluster, or `timeout` passed; returns whether it was listed.
    pub async fn wait_listed(&self, timeout: std::time::Duration) -> bool {
        let Some(side) = &self.etcd else {
            return true;
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if side.state.relists.load(Ordering::Acquire) > 0 {
                return true;
            }
            let halted = side
                .state
                .halted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some();
            if halted || tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Starts replicating etcd into this instance and keeping its lease, until
    /// `stop` turns true. Without the etcd backend, does nothing.
    pub fn start_etcd(
        &self,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let Some(side) = &self.etcd else {
            return Vec::new();
        };
        let mut tasks = self.fleet.as_ref().map_or_else(Vec::new, |f| f.start(stop));
        tasks.extend([
            tokio::spawn(etcd::replicate(
                side.clone(),
                self.commits.clone(),
                self.store.clone(),
                stop.clone(),
            )),
            tokio::spawn(overrides::replicate(
                side.clone(),
                self.commits.clone(),
                stop.clone(),
            )),
            tokio::spawn(etcd::flush_local_copy(self.store.clone(), stop.clone())),
            tokio::spawn(etcd::presence(
                side.clone(),
                self.revision.clone(),
                stop.clone(),
            )),
        ]);
        tasks
    }

    /// Swaps in new zones and topology through the committer: all or nothing (see
    /// `commit::Request::Reload`). Returns how many stored names that could not be
    /// served before are served now.
    pub async fn reload(
        &self,
        zones: Arc<ZoneSet>,
        topology: Arc<Topology>,
    ) -> Result<usize, RegistryError> {
        let (reply, rx) = oneshot::channel();
        self.commits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|tx| {
                tx.send(commit::Request::Reload {
                    zones,
                    topology,
                    reply,
                })
                .ok()
            })
            .ok_or_else(RegistryError::committer_gone)?;
        rx.await.map_err(|_| RegistryError::committer_gone())?
    }

    /// The fleet layer (observations shared through etcd), with the etcd backend;
    /// `None` with the embedded store (the instance alone).
    pub fn fleet(&self) -> Option<Arc<fleet::Fleet>> {
        self.fleet.clone()
    }

    /// Waits until a registry is loaded or `timeout` passes; returns whether it is.
    pub async fn wait_loaded(&self, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.is_loaded() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        true
    }

    /// One NameService with its status.
    pub fn get(&self, name: &str) -> Option<View> {
        let snap = self.snapshot.load();
        snap.service(name).map(|e| self.view(&e.spec, e.revision))
    }

    /// Every NameService, sorted by name.
    pub fn list(&self) -> Vec<View> {
        let snap = self.snapshot.load();
        let mut specs: Vec<_> = snap
            .services
            .iter()
            .map(|(_, e)| (e.spec.clone(), e.revision))
            .collect();
        specs.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        specs.iter().map(|(s, r)| self.view(s, *r)).collect()
    }

    /// One page of the NameServices sorted by name: at most `limit` of those whose
    /// name sorts after `after`, and the name to continue after when more remain.
    /// A name-based cursor: a page never repeats or skips a name that exists for
    /// the whole listing, however many writes happen between pages.
    pub fn list_page(&self, after: Option<&str>, limit: usize) -> (Vec<View>, Option<String>) {
        let snap = self.snapshot.load();
        let mut entries: Vec<&Arc<crate::snapshot::ServiceEntry>> = snap
            .services
            .iter()
            .filter(|(name, _)| after.is_none_or(|a| *name > a))
            .map(|(_, e)| e)
            .collect();
        let more = entries.len() > limit;
        if more {
            // Only the first `limit` by name are needed: partition, then sort those.
            entries.select_nth_unstable_by(limit, |a, b| a.spec.name.cmp(&b.spec.name));
            entries.truncate(limit);
        }
        entries.sort_unstable_by(|a, b| a.spec.name.cmp(&b.spec.name));
        let next = more
            .then(|| entries.last().map(|e| e.spec.name.clone()))
            .flatten();
        let views = entries
            .iter()
            .map(|e| self.view(&e.spec, e.revision))
            .collect();
        (views, next)
    }

    /// How many NameServices are served.
    pub fn len(&self) -> usize {
        self.snapshot.load().services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn view(&self, spec: &Arc<NameService>, revision: u64) -> View {
        // The published entry's answer counts and overrides (the spec's own, or its
        // successor's when a write raced this read: both are kept by target name).
        let snap = self.snapshot.load();
        let entry = snap.service(&spec.name);
        let answers = entry.map(|e| &*e.answers);
        let overrides = entry.and_then(|e| e.overrides.as_deref());
        View {
            spec: spec.clone(),
            status: self.status.view(
                spec,
                &self.health,
                self.resolved(entry.map(|e| &**e)),
                answers,
                overrides,
            ),
            revision,
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
        *self.commits.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let Some(t) = self.committer.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests;
