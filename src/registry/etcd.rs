//! The registry's etcd side: replicating etcd into this instance, writing through
//! etcd, and this instance's presence (its lease).
//!
//! **Replication** (list-then-watch, like client-go's reflector): list every
//! NameService key at one revision, hand the listing to the committer as the
//! complete state at that revision (names it does not hold are deleted), then
//! watch from the next revision and hand each batch of events over. On
//! "compacted" it lists again; on any other error it retries (backoff up to
//! [`MAX_BACKOFF`]) with a watch from the last applied revision. Each value is
//! validated as an API write would be; one that is not a valid NameService is
//! skipped (logged once, counted) and its name is treated as absent, on every
//! instance alike (so a hand-written bad value takes the name out of the answers,
//! everywhere, until a valid value is written).
//!
//! **Writes** are etcd transactions (conditions included). A committed write is
//! applied here at once, through the committer, with its revision: the per-name
//! revision guard there (and tombstones for deletions) keeps the watcher, which
//! delivers the same change later, from taking the name back. So the 2xx is given
//! once etcd committed the write *and* this instance serves it.
//!
//! **Presence**: a lease of `lease_ttl_seconds`, kept alive every third of it, holds
//! `<prefix>instances/<instance>` = `{"revision", "lastSeen"}`, which
//! `GET /api/v1/instances` lists.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use super::commit::{Incoming, Request};
use super::{InstanceInfo, Precondition, RegistryError, Tags};
use crate::model::NameService;
use crate::store::etcd::{Etcd, EtcdError, Event, Expect, Kv, Lease, Written};
use crate::store::{Origin, Store};

/// The longest wait between two attempts to reach etcd: with a list taking at most
/// a request timeout, an instance catches up within 5 s of etcd coming back.
pub const MAX_BACKOFF: Duration = Duration::from_millis(1_000);
/// Seconds a client is told to wait before retrying a write refused for want of etcd.
pub const RETRY_AFTER: u32 = 5;
/// How soon a change applied to the local copy is on disk (see [`apply`]).
pub const LOCAL_COPY_FLUSH: Duration = Duration::from_millis(50);

/// What the etcd side knows, shared with the API and /metrics.
#[derive(Debug, Default)]
pub struct EtcdState {
    /// The watch is open (or the last request succeeded).
    pub connected: AtomicBool,
    /// The last revision etcd was seen at.
    pub seen_revision: AtomicU64,
    /// Values under the prefix that were skipped as invalid.
    pub skipped: AtomicU64,
    /// Full listings (start, compaction, cluster change).
    pub relists: AtomicU64,
    /// A registry was loaded (from the local copy or etcd): /healthz can say 200.
    pub loaded: AtomicBool,
    /// Unix ms of the last lease renewal that etcd acknowledged (0: never).
    pub lease_renewed_ms: AtomicU64,
    /// Why replication is stopped, when it is (a local copy of another cluster).
    pub halted: Mutex<Option<String>>,
}

/// The etcd side of a registry.
pub struct EtcdSide {
    pub etcd: Etcd,
    pub state: Arc<EtcdState>,
    pub instance: String,
    pub lease_ttl: u32,
    pub prefix: String,
    /// This instance's current lease (set by the presence task).
    pub lease: watch::Sender<Option<Lease>>,
}

impl EtcdSide {
    /// The etcd side of instance `instance` on `etcd`.
    pub fn new(etcd: Etcd, instance: &str, lease_ttl: u32, prefix: &str) -> Self {
        Self {
            etcd,
            state: Default::default(),
            instance: instance.to_string(),
            lease_ttl,
            prefix: prefix.to_string(),
            lease: watch::channel(None).0,
        }
    }
}

fn unavailable(e: &EtcdError) -> RegistryError {
    match e {
        EtcdError::Refused(m) => RegistryError::Unavailable {
            retry_after: RETRY_AFTER,
            message: format!("etcd refused the write: {m}; nothing was changed"),
        },
        _ => RegistryError::Unavailable {
            retry_after: RETRY_AFTER,
            message: format!("etcd is unavailable ({e}); nothing was changed: retry later"),
        },
    }
}

impl EtcdSide {
    /// Refuses a write at once when etcd is known to be out of reach, so a client
    /// is not held for a request timeout (and never sends a write that a frozen etcd
    /// might carry out after its client was told 503).
    fn check_reachable(&self) -> Result<(), RegistryError> {
        if let Some(why) = self
            .state
            .halted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            return Err(RegistryError::Unavailable {
                retry_after: RETRY_AFTER,
                message: format!("etcd registry not in use: {why}; nothing was changed"),
            });
        }
        if !self.state.connected.load(Ordering::Acquire) {
            return Err(RegistryError::Unavailable {
                retry_after: RETRY_AFTER,
                message: "etcd is unreachable or has no quorum; nothing was changed: retry later"
                    .into(),
            });
        }
        Ok(())
    }

    /// What etcd must find for `cond` to hold, reading the key when the condition
    /// names several revisions. `Err(412)` when it already cannot hold.
    async fn expect(&self, name: &str, cond: &Precondition) -> Result<Expect, RegistryError> {
        let simple = match (&cond.if_match, &cond.if_none_match) {
            (None, None) => Some(Expect::Any),
            (Some(Tags::Any), None) => Some(Expect::Exists),
            (Some(Tags::Revisions(r)), None) if r.len() == 1 => Some(Expect::Revision(r[0])),
            (None, Some(Tags::Any)) => Some(Expect::Absent),
            _ => None,
        };
        if let Some(e) = simple {
            return Ok(e);
        }
        let current = self
            .etcd
            .mod_revision(name)
            .await
            .map_err(|e| unavailable(&e))?;
        cond.check(current)?;
        Ok(current.map_or(Expect::Absent, Expect::Revision))
    }

    /// Writes `spec` through etcd; on success returns (created, changed, revision),
    /// once `apply` has applied it here.
    pub(super) async fn put(
        &self,
        spec: &Arc<NameService>,
        cond: &Precondition,
        apply: impl AsyncFnOnce(Incoming) -> Result<(), RegistryError>,
    ) -> Result<(bool, bool, u64), RegistryError> {
        self.check_reachable()?;
        let name = spec.name.as_str();
        let expect = self.expect(name, cond).await?;
        // Exactly the resource as PUT stores it, without status.
        let value = serde_json::to_vec(&**spec).expect("a NameService serializes");
        let written = self
            .etcd
            .put(name, value, expect)
            .await
            .map_err(|e| unavailable(&e))?;
        let (created, changed, revision) = match written {
            Written::Done { revision, existed } => (!existed, true, revision),
            Written::Unchanged { mod_revision } => (false, false, mod_revision),
            Written::Failed { current } => {
                return Err(cond.check(current).err().unwrap_or_else(|| {
                    RegistryError::PreconditionFailed(
                        "the NameService changed while the write was decided".into(),
                    )
                }));
            }
        };
        apply(Incoming {
            name: name.into(),
            spec: Some(spec.clone()),
            revision,
        })
        .await?;
        Ok((created, changed, revision))
    }

    /// Deletes `name` through etcd, then applies the deletion here.
    pub(super) async fn delete(
        &self,
        name: &str,
        cond: &Precondition,
        apply: impl AsyncFnOnce(Incoming) -> Result<(), RegistryError>,
    ) -> Result<(), RegistryError> {
        self.check_reachable()?;
        let expect = match self.expect(name, cond).await? {
            Expect::Any => Expect::Exists,
            e => e,
        };
        match self
            .etcd
            .delete(name, expect)
            .await
            .map_err(|e| unavailable(&e))?
        {
            Written::Done {
                revision,
                existed: true,
            } => {
                apply(Incoming {
                    name: name.into(),
                    spec: None,
                    revision,
                })
                .await
            }
            Written::Failed { current: None } | Written::Done { existed: false, .. } => {
                if cond.if_match.is_some() {
                    Err(RegistryError::PreconditionFailed(
                        "If-Match: the NameService does not exist".into(),
                    ))
                } else {
                    Err(RegistryError::NotFound(name.to_string()))
                }
            }
            Written::Failed { current } => Err(cond.check(current).err().unwrap_or_else(|| {
                RegistryError::PreconditionFailed(
                    "the NameService changed while the delete was decided".into(),
                )
            })),
            Written::Unchanged { .. } => Err(RegistryError::Committer(
                "etcd answered a delete as unchanged".into(),
            )),
        }
    }

    /// Writes the override of (`name`, `target`) through etcd, under a lease that
    /// outlives it by a second (the answer path stops applying it at its expiry;
    /// the lease only cleans up, for the whole fleet). Returns the revision.
    pub(super) async fn put_override(
        &self,
        name: &str,
        target: &str,
        ovr: &crate::model::Override,
    ) -> Result<u64, RegistryError> {
        self.check_reachable()?;
        let value = serde_json::to_vec(ovr).expect("an override serializes");
        let left = ovr
            .expires_at_ms
            .saturating_sub(crate::timefmt::now_unix_ms())
            .div_ceil(1000);
        let ttl = u32::try_from(left).unwrap_or(u32::MAX).saturating_add(1);
        self.etcd
            .put_override(name, target, value, ttl)
            .await
            .map_err(|e| unavailable(&e))
    }

    /// Deletes the override of (`name`, `target`) through etcd: the revision of the
    /// deletion, or `None` when there was none.
    pub(super) async fn delete_override(
        &self,
        name: &str,
        target: &str,
    ) -> Result<Option<u64>, RegistryError> {
        self.check_reachable()?;
        match self
            .etcd
            .delete_override(name, target)
            .await
            .map_err(|e| unavailable(&e))?
        {
            Written::Done {
                revision,
                existed: true,
            } => Ok(Some(revision)),
            _ => Ok(None),
        }
    }

    /// The live instances, from their leased keys.
    pub async fn instances(&self) -> Result<Vec<InstanceInfo>, RegistryError> {
        let keys =
            self.etcd
                .list_under("instances/")
                .await
                .map_err(|e| RegistryError::Unavailable {
                    retry_after: RETRY_AFTER,
                    message: format!("etcd is unavailable ({e}): cannot list the instances"),
                })?;
        let mut out: Vec<InstanceInfo> = keys
            .into_iter()
            .filter_map(|(name, value)| {
                let v: serde_json::Value = serde_json::from_slice(&value).ok()?;
                Some(InstanceInfo {
                    is_self: name == self.instance,
                    revision: v["revision"].as_u64()?,
                    last_seen: v["lastSeen"].as_str()?.to_string(),
                    name,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// Validates a value read from etcd as an API write would validate it.
pub fn decode(kv: &Kv) -> Result<NameService, String> {
    let value: serde_json::Value =
        serde_json::from_slice(&kv.value).map_err(|e| format!("not JSON: {e}"))?;
    let ns = NameService::from_json(value).map_err(|e| e.to_string())?;
    if ns.name != kv.name {
        return Err(format!(
            "holds the NameService {:?}, not {:?}",
            ns.name, kv.name
        ));
    }
    Ok(ns)
}

/// Submits requests to the committer (shared with the registry, which takes the
/// sender away when it is dropped, so the committer can stop).
pub(super) type Commits = Arc<Mutex<Option<std::sync::mpsc::Sender<Request>>>>;

/// Hands `changes` to the committer and waits until they are applied.
pub(super) async fn apply(
    commits: &Commits,
    changes: Vec<Incoming>,
    revision: u64,
    reset: bool,
) -> Result<(), RegistryError> {
    apply_to(commits, changes, revision, reset, true).await
}

/// [`apply`], and `store: false` publishes without writing the local copy (see
/// [`Request::Persist`]).
async fn apply_to(
    commits: &Commits,
    changes: Vec<Incoming>,
    revision: u64,
    reset: bool,
    store: bool,
) -> Result<(), RegistryError> {
    // A write of this instance's API (revision 0 here: the committer takes the
    // change's own) is durable in the local copy before its 2xx, like a
    // standalone write: restarted at once, even with etcd gone at the same
    // moment, this instance serves what it acknowledged. So is a full listing
    // (it replaces the copy). What the watch brings from other instances etcd
    // already holds durably (committed by a quorum): it is stored now and made
    // durable by [`flush_local_copy`] within [`LOCAL_COPY_FLUSH`] (and at
    // shutdown) instead of an fdatasync per batch. A crash loses at most that
    // much of the copy, never a change: the next start lists etcd again, and
    // restarted while etcd is away it serves a copy as consistent as a flushed
    // one, a moment older.
    ask(commits, |reply| Request::Apply {
        changes,
        revision,
        store,
        durable: store && (reset || revision == 0),
        watched: revision > 0,
        reset,
        reply: Some(reply),
    })
    .await
}

/// Sends the request `make` builds around a reply channel; waits for the reply.
async fn ask(
    commits: &Commits,
    make: impl FnOnce(oneshot::Sender<Result<(), RegistryError>>) -> Request,
) -> Result<(), RegistryError> {
    let (reply, rx) = oneshot::channel();
    commits
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|tx| tx.send(make(reply)).ok())
        .ok_or_else(RegistryError::committer_gone)?;
    rx.await.map_err(|_| RegistryError::committer_gone())?
}

/// The replication loop: runs until `stop` turns true.
pub(super) async fn replicate(
    side: Arc<EtcdSide>,
    commits: Commits,
    store: Arc<dyn Store>,
    mut stop: watch::Receiver<bool>,
) {
    let mut logged_bad: HashSet<(String, u64)> = HashSet::new();
    let mut backoff = Duration::from_millis(100);
    // The revision applied so far (0: list first).
    let mut applied: u64 = 0;
    let state = side.state.clone();
    loop {
        if *stop.borrow() {
            return;
        }
        let step = async {
            if applied == 0 {
                applied = relist(&side, &commits, &store, &mut logged_bad).await?;
            }
            let mut w = side.etcd.watch(applied + 1).await?;
            if !state.connected.swap(true, Ordering::AcqRel) {
                tracing::info!(revision = applied, "watching etcd");
            }
            loop {
                let batch = w.next().await?;
                state.connected.store(true, Ordering::Release);
                state
                    .seen_revision
                    .fetch_max(batch.revision, Ordering::Relaxed);
                let changes = batch
                    .events
                    .iter()
                    .map(|e| incoming(e, &state, &mut logged_bad))
                    .collect();
                let rev = batch.revision.max(applied);
                apply(&commits, changes, rev, false)
                    .await
                    .map_err(|e| EtcdError::Unavailable(format!("applying a watch batch: {e}")))?;
                applied = rev;
            }
            #[allow(unreachable_code)]
            Ok::<(), EtcdError>(())
        };
        let outcome = tokio::select! {
            r = step => r,
            _ = stop.changed() => return,
        };
        if let Err(e) = outcome {
            match e {
                EtcdError::Compacted(at) => {
                    tracing::warn!(
                        compacted = at,
                        applied,
                        "etcd compacted revisions this instance has not seen; listing again"
                    );
                    applied = 0;
                    backoff = Duration::from_millis(100);
                    continue;
                }
                e => {
                    if state.connected.swap(false, Ordering::AcqRel) {
                        tracing::warn!(error = %e, "lost etcd; serving the last registry, retrying");
                    } else {
                        tracing::debug!(error = %e, "etcd still unavailable");
                    }
                }
            }
        } else {
            backoff = Duration::from_millis(100);
        }
        let jitter = Duration::from_millis(fastrand::u64(0..=backoff.as_millis() as u64 / 4));
        tokio::select! {
            _ = tokio::time::sleep(backoff + jitter) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The change a watch event makes, validated like a write.
fn incoming(e: &Event, state: &EtcdState, logged: &mut HashSet<(String, u64)>) -> Incoming {
    match e {
        Event::Put(kv) => Incoming {
            name: kv.name.as_str().into(),
            spec: checked(kv, state, logged).map(Arc::new),
            revision: kv.mod_revision,
        },
        Event::Delete { name, revision } => Incoming {
            name: name.as_str().into(),
            spec: None,
            revision: *revision,
        },
    }
}

/// `kv` as a NameService, or `None` (skipped, logged once, counted) when invalid.
fn checked(kv: &Kv, state: &EtcdState, logged: &mut HashSet<(String, u64)>) -> Option<NameService> {
    match decode(kv) {
        Ok(ns) => Some(ns),
        Err(why) => {
            if logged.insert((kv.name.clone(), kv.mod_revision)) {
                state.skipped.fetch_add(1, Ordering::Relaxed);
                tracing::error!(key = %kv.name, revision = kv.mod_revision, reason = %why, "invalid NameService value in etcd skipped; the name is not served");
            }
            None
        }
    }
}

/// Lists everything and applies it as the complete state; returns its revision.
async fn relist(
    side: &EtcdSide,
    commits: &Commits,
    store: &Arc<dyn Store>,
    logged: &mut HashSet<(String, u64)>,
) -> Result<u64, EtcdError> {
    let state = &side.state;
    let listing = side.etcd.list().await?;
    state.connected.store(true, Ordering::Release);
    state
        .seen_revision
        .fetch_max(listing.revision, Ordering::Relaxed);
    // The local copy must come from this cluster and prefix: a new, empty etcd (or
    // another one) would otherwise delete every name this instance serves.
    match store.origin() {
        Origin::Etcd { cluster_id, .. } if cluster_id != listing.cluster_id => {
            let why = format!(
                "the local copy in the data dir came from etcd cluster {cluster_id:016x}, but the endpoints serve cluster {:016x}; serving the local copy unchanged (docs/fleet.md, \"A different etcd cluster\")",
                listing.cluster_id
            );
            let mut h = state.halted.lock().unwrap_or_else(|e| e.into_inner());
            if h.is_none() {
                tracing::error!("{why}");
            }
            *h = Some(why);
            state.connected.store(false, Ordering::Release);
            return Err(EtcdError::Refused("cluster mismatch".into()));
        }
        _ => {}
    }
    let changes = listing
        .items
        .iter()
        .map(|kv| Incoming {
            name: kv.name.as_str().into(),
            spec: checked(kv, state, logged).map(Arc::new),
            revision: kv.mod_revision,
        })
        .collect();
    let n = listing.items.len();
    let first = !state.loaded.load(Ordering::Acquire);
    let failed = |e: RegistryError| EtcdError::Unavailable(format!("applying the listing: {e}"));
    let empty =
        !matches!(store.origin(), Origin::Etcd { .. }) && store.count().is_ok_and(|n| n == 0);
    if !empty {
        apply(commits, changes, listing.revision, true)
            .await
            .map_err(failed)?;
    } else {
        // A local copy that holds nothing yet (a new data dir): the listing is
        // served first and written after, so start-to-serving does not wait for
        // the store to take every name (in a new store, most of the time of a
        // first start). Until it is written the copy has no origin, so a crash
        // meanwhile leaves an instance that lists again; a write of this
        // instance's API in between is stored by its own batch. The origin is
        // recorded in the batch that writes the names.
        apply_to(commits, changes.clone(), listing.revision, true, false)
            .await
            .map_err(failed)?;
        // Served: /healthz may say so while the copy is written.
        state.loaded.store(true, Ordering::Release);
        let origin = Origin::Etcd {
            cluster_id: listing.cluster_id,
            prefix: side.prefix.clone(),
        };
        ask(commits, |reply| Request::Persist {
            changes,
            origin,
            reply,
        })
        .await
        .map_err(failed)?;
    }
    if !matches!(store.origin(), Origin::Etcd { .. }) {
        let origin = Origin::Etcd {
            cluster_id: listing.cluster_id,
            prefix: side.prefix.clone(),
        };
        if let Err(e) = store.set_origin(origin) {
            tracing::error!(error = %e, "cannot record the local copy's origin");
        }
    }
    state.relists.fetch_add(1, Ordering::Release);
    state.loaded.store(true, Ordering::Release);
    if first {
        tracing::info!(
            nameservices = n,
            revision = listing.revision,
            "registry loaded from etcd"
        );
    } else {
        tracing::info!(
            nameservices = n,
            revision = listing.revision,
            "registry listed again from etcd"
        );
    }
    Ok(listing.revision)
}

/// Makes the local copy durable every [`LOCAL_COPY_FLUSH`] while changes come in,
/// until `stop` turns true (the shutdown flushes the rest).
pub(super) async fn flush_local_copy(store: Arc<dyn Store>, mut stop: watch::Receiver<bool>) {
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(LOCAL_COPY_FLUSH) => {}
            _ = stop.changed() => return,
        }
        let store = store.clone();
        let flushed = tokio::task::spawn_blocking(move || store.flush()).await;
        match flushed {
            Ok(Ok(())) if failing => {
                failing = false;
                tracing::info!("the local copy is flushed again");
            }
            Ok(Ok(())) => {}
            Ok(Err(e)) if !failing => {
                failing = true;
                tracing::error!(error = %e, "cannot flush the local copy; it lags behind what is served until this passes");
            }
            Ok(Err(_)) => {}
            Err(e) => tracing::error!(error = %e, "the local copy's flush task failed"),
        }
    }
}

/// Keeps this instance's lease and key alive until `stop`; revokes the lease then.
pub(super) async fn presence(
    side: Arc<EtcdSide>,
    revision: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    let every = Duration::from_millis(u64::from(side.lease_ttl) * 1000 / 3);
    let key = format!("instances/{}", side.instance);
    let value = |rev: u64| {
        serde_json::to_vec(&serde_json::json!({
            "revision": rev,
            "lastSeen": crate::timefmt::rfc3339(crate::timefmt::now_unix()),
        }))
        .expect("JSON")
    };
    let mut lease = None;
    loop {
        // A lease not renewed for longer than its time to live is gone (or about to
        // be): take a new one at once instead of asking about the old one.
        let renewed = side.state.lease_renewed_ms.load(Ordering::Acquire);
        if crate::timefmt::now_unix_ms().saturating_sub(renewed) > u64::from(side.lease_ttl) * 1000
        {
            lease = None;
        }
        let step = async {
            let l = match lease {
                Some(l) if side.etcd.keep_alive(l).await? => l,
                _ => {
                    let l = side.etcd.grant(side.lease_ttl).await?;
                    lease = Some(l);
                    side.lease.send_replace(Some(l));
                    l
                }
            };
            side.etcd
                .put_leased(&key, value(revision.load(Ordering::Acquire)), l)
                .await?;
            side.state
                .lease_renewed_ms
                .store(crate::timefmt::now_unix_ms(), Ordering::Release);
            Ok::<(), EtcdError>(())
        };
        if let Err(e) = step.await {
            tracing::debug!(error = %e, "cannot renew this instance's lease");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => break,
        }
    }
    if let Some(l) = lease {
        let _ = tokio::time::timeout(Duration::from_secs(2), side.etcd.revoke(l)).await;
    }
}

/// Metric names of the registry (docs/operations.md lists them).
pub const METRIC_REVISION: &str = "gslb_registry_revision";
pub const METRIC_CONNECTED: &str = "gslb_registry_etcd_connected";
pub const METRIC_ETCD_REVISION: &str = "gslb_registry_etcd_revision";
pub const METRIC_LAG: &str = "gslb_registry_apply_lag_revisions";
pub const METRIC_SKIPPED: &str = "gslb_registry_skipped_values_total";
pub const METRIC_RELISTS: &str = "gslb_registry_relists_total";
pub const METRIC_LEASE_AGE: &str = "gslb_registry_lease_renewed_age_seconds";

/// The registry's metrics, read at scrape time.
#[derive(Debug)]
pub struct RegistryCollector {
    pub revision: Arc<AtomicU64>,
    pub etcd: Option<Arc<EtcdState>>,
}

impl prometheus_client::collector::Collector for RegistryCollector {
    fn encode(
        &self,
        mut enc: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use crate::metrics::{counter, gauge};
        let applied = self.revision.load(Ordering::Acquire);
        gauge(
            &mut enc,
            METRIC_REVISION,
            "The registry revision this instance has applied",
            applied as i64,
        )?;
        let Some(s) = &self.etcd else {
            return Ok(());
        };
        gauge(
            &mut enc,
            METRIC_CONNECTED,
            "1 while this instance is connected to etcd (watching), else 0",
            i64::from(s.connected.load(Ordering::Acquire)),
        )?;
        let seen = s.seen_revision.load(Ordering::Relaxed);
        gauge(
            &mut enc,
            METRIC_ETCD_REVISION,
            "The latest etcd revision this instance has seen",
            seen as i64,
        )?;
        gauge(
            &mut enc,
            METRIC_LAG,
            "Revisions etcd is known to have that this instance has not applied yet",
            seen.saturating_sub(applied) as i64,
        )?;
        counter(
            &mut enc,
            METRIC_SKIPPED,
            "Values under the NameService prefix in etcd skipped as invalid (each key and revision once)",
            s.skipped.load(Ordering::Relaxed),
        )?;
        counter(
            &mut enc,
            METRIC_RELISTS,
            "Full listings of the registry from etcd (start, compaction, reconnection after one)",
            s.relists.load(Ordering::Relaxed),
        )?;
        let renewed = s.lease_renewed_ms.load(Ordering::Acquire);
        let age = if renewed == 0 {
            -1.0
        } else {
            crate::timefmt::now_unix_ms().saturating_sub(renewed) as f64 / 1000.0
        };
        gauge(
            &mut enc,
            METRIC_LEASE_AGE,
            "Seconds since etcd last acknowledged this instance's lease (-1: never)",
            age,
        )
    }
}
