//! The fleet layer (PLAN decision 3, issue 9): what the instances sharing an etcd
//! registry tell each other about health.
//!
//! - Each instance publishes its own thresholded verdict per probe endpoint under
//!   `<prefix>health/<endpoint-id>/<instance>` = `{"health", "lastProbeTime"}`,
//!   attached to its lease: an instance that dies takes its observations with it
//!   once the lease runs out. Publishing never blocks the caller; changes queue per
//!   endpoint and only the latest is written (coalesced), and everything this
//!   instance published is written again under a new lease.
//! - Every instance mirrors all observations (list, then watch; list again after a
//!   compaction) and hands each change to its subscribers, and mirrors the live
//!   instances (`<prefix>instances/`).
//! - `cut_off` turns true when this instance's lease was not renewed for longer
//!   than `lease_ttl_seconds`: the others have stopped counting its observations,
//!   and it should stop counting theirs.
//!
//! The majority rule itself is the health module's; this is the transport.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast, watch};

use super::etcd::{EtcdSide, MAX_BACKOFF};
use crate::health::Health;
use crate::store::etcd::{EtcdError, Event, Lease};

/// One instance's verdict on one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    pub health: Health,
    /// Unix seconds of the probe that decided it, if any.
    pub last_probe_time: Option<u64>,
}

/// A change of one instance's observation of one endpoint; `None`: withdrawn (the
/// instance's lease ran out, or it stopped probing the endpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservationEvent {
    pub endpoint: Arc<str>,
    pub instance: Arc<str>,
    pub observation: Option<Observation>,
}

type Key = (Arc<str>, Arc<str>);

/// The fleet handle; one per instance (etcd backend only).
pub struct Fleet {
    side: Arc<EtcdSide>,
    /// Observations to write, latest per endpoint (`None`: withdraw).
    pending: Mutex<HashMap<Arc<str>, Option<Observation>>>,
    wake: Notify,
    /// This instance's current observations, written again under a new lease.
    mine: Mutex<HashMap<Arc<str>, Observation>>,
    /// Every observation known, by (endpoint, instance).
    all: Mutex<BTreeMap<Key, Observation>>,
    events: broadcast::Sender<ObservationEvent>,
    live: Mutex<Vec<String>>,
    cut_off: watch::Sender<bool>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("instance", &self.side.instance)
            .finish()
    }
}

/// How many events a slow subscriber may fall behind before it misses some (it is
/// told: `RecvError::Lagged`, and can take a fresh [`Fleet::subscribe`]).
const EVENT_BUFFER: usize = 4096;

impl Fleet {
    pub(super) fn new(side: Arc<EtcdSide>) -> Arc<Self> {
        Arc::new(Self {
            side,
            pending: Mutex::default(),
            wake: Notify::new(),
            mine: Mutex::default(),
            all: Mutex::default(),
            events: broadcast::channel(EVENT_BUFFER).0,
            live: Mutex::default(),
            cut_off: watch::channel(false).0,
        })
    }

    /// This instance's name.
    pub fn instance(&self) -> &str {
        &self.side.instance
    }

    /// Publishes this instance's verdict on `endpoint` (`None`: withdraws it, e.g.
    /// when no NameService probes it any more). Never blocks: the write happens in
    /// the background, and a later call for the same endpoint replaces an unwritten
    /// one.
    pub fn publish_observation(&self, endpoint: &str, observation: Option<Observation>) {
        let endpoint: Arc<str> = endpoint.into();
        {
            let mut mine = lock(&self.mine);
            match observation {
                Some(o) => mine.insert(endpoint.clone(), o),
                None => mine.remove(&endpoint),
            };
        }
        lock(&self.pending).insert(endpoint, observation);
        self.wake.notify_one();
    }

    /// Every observation known now, and a receiver of every change from then on.
    pub fn subscribe(&self) -> (Vec<ObservationEvent>, broadcast::Receiver<ObservationEvent>) {
        // Under the map's lock, so that no change falls between the two.
        let all = lock(&self.all);
        let rx = self.events.subscribe();
        let now = all
            .iter()
            .map(|((e, i), o)| ObservationEvent {
                endpoint: e.clone(),
                instance: i.clone(),
                observation: Some(*o),
            })
            .collect();
        (now, rx)
    }

    /// The instances whose lease is alive, sorted.
    pub fn live_instances(&self) -> Vec<String> {
        lock(&self.live).clone()
    }

    /// True while this instance has been cut off from etcd for longer than its
    /// lease: the others no longer count it, and it should decide alone.
    pub fn cut_off(&self) -> watch::Receiver<bool> {
        self.cut_off.subscribe()
    }

    fn key(&self, endpoint: &str) -> String {
        format!("health/{endpoint}/{}", self.side.instance)
    }

    /// Applies a change seen in etcd and tells the subscribers.
    fn observed(&self, key: &str, value: Option<&[u8]>) {
        let Some((endpoint, instance)) = key.rsplit_once('/') else {
            return;
        };
        let obs = value.and_then(|v| match serde_json::from_slice::<Observation>(v) {
            Ok(o) => Some(o),
            Err(e) => {
                tracing::warn!(key, error = %e, "invalid observation in etcd ignored");
                None
            }
        });
        let k: Key = (endpoint.into(), instance.into());
        let mut all = lock(&self.all);
        let before = match obs {
            Some(o) => all.insert(k.clone(), o),
            None => all.remove(&k),
        };
        if before != obs {
            let _ = self.events.send(ObservationEvent {
                endpoint: k.0,
                instance: k.1,
                observation: obs,
            });
        }
    }

    /// Starts the background tasks (publisher, mirrors, cut-off clock) until `stop`.
    pub(super) fn start(
        self: &Arc<Self>,
        stop: &watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let me = self.clone();
        let health = mirror(
            self.side.clone(),
            "health/",
            stop.clone(),
            Box::new(move |changes: Vec<(String, Option<Vec<u8>>)>| {
                for (k, v) in changes {
                    me.observed(&k, v.as_deref());
                }
            }),
        );
        let me = self.clone();
        let live = Arc::new(Mutex::new(BTreeMap::<String, ()>::new()));
        let instances = mirror(
            self.side.clone(),
            "instances/",
            stop.clone(),
            Box::new(move |changes: Vec<(String, Option<Vec<u8>>)>| {
                let mut set = lock(&live);
                for (k, v) in changes {
                    match v {
                        Some(_) => set.insert(k, ()),
                        None => set.remove(&k),
                    };
                }
                *lock(&me.live) = set.keys().cloned().collect();
            }),
        );
        vec![
            tokio::spawn(self.clone().publisher(stop.clone())),
            tokio::spawn(health),
            tokio::spawn(instances),
            tokio::spawn(self.clone().clock(stop.clone())),
        ]
    }

    /// Writes pending observations under the current lease; writes everything this
    /// instance published again when the lease changes.
    async fn publisher(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut lease_rx = self.side.lease.subscribe();
        let mut written_under: Option<Lease> = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            let lease = *lease_rx.borrow_and_update();
            if let Some(l) = lease
                && written_under != Some(l)
            {
                // A new lease: the old one's keys are gone (or going).
                let mine: Vec<(Arc<str>, Observation)> = lock(&self.mine)
                    .iter()
                    .map(|(e, o)| (e.clone(), *o))
                    .collect();
                let mut pending = lock(&self.pending);
                for (e, o) in mine {
                    pending.entry(e).or_insert(Some(o));
                }
                written_under = Some(l);
            }
            let batch: Vec<(Arc<str>, Option<Observation>)> = match lease {
                Some(_) => lock(&self.pending).drain().collect(),
                None => Vec::new(),
            };
            let mut failed = Vec::new();
            for (endpoint, obs) in batch {
                let r = match (obs, lease) {
                    (Some(o), Some(l)) => {
                        let value = serde_json::to_vec(&o).expect("JSON");
                        self.side
                            .etcd
                            .put_leased(&self.key(&endpoint), value, l)
                            .await
                    }
                    (None, _) => self.side.etcd.delete_key(&self.key(&endpoint)).await,
                    (Some(_), None) => Err(EtcdError::Unavailable("no lease".into())),
                };
                if let Err(e) = r {
                    tracing::debug!(endpoint = %endpoint, error = %e, "cannot publish an observation; retrying");
                    failed.push((endpoint, obs));
                }
            }
            let retry = !failed.is_empty();
            if retry {
                let mut pending = lock(&self.pending);
                for (e, o) in failed {
                    // A newer value queued meanwhile wins.
                    pending.entry(e).or_insert(o);
                }
            }
            tokio::select! {
                _ = self.wake.notified(), if !retry => {}
                _ = tokio::time::sleep(backoff), if retry => {
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
                _ = lease_rx.changed() => {}
                _ = stop.changed() => return,
            }
            backoff = Duration::from_millis(100);
        }
    }

    /// Keeps `cut_off` true while the lease has gone unrenewed for longer than its
    /// time to live.
    async fn clock(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let ttl_ms = u64::from(self.side.lease_ttl) * 1000;
        let started = crate::timefmt::now_unix_ms();
        loop {
            let renewed = self.side.state.lease_renewed_ms.load(Ordering::Acquire);
            let since = if renewed == 0 { started } else { renewed };
            let cut = crate::timefmt::now_unix_ms().saturating_sub(since) > ttl_ms;
            self.cut_off.send_if_modified(|c| {
                if *c != cut {
                    if cut {
                        tracing::warn!(
                            lease_ttl_seconds = self.side.lease_ttl,
                            "cut off from etcd for longer than the lease: deciding health alone"
                        );
                    } else {
                        tracing::info!(
                            "back in the fleet: counting the other instances' observations again"
                        );
                    }
                    *c = cut;
                    true
                } else {
                    false
                }
            });
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

type Sink = Box<dyn Fn(Vec<(String, Option<Vec<u8>>)>) + Send + Sync>;

/// Mirrors the keys under `<prefix><sub>`: list, hand over the differences, watch
/// from there; list again after a compaction or a broken watch.
async fn mirror(
    side: Arc<EtcdSide>,
    sub: &'static str,
    mut stop: watch::Receiver<bool>,
    sink: Sink,
) {
    let mut known: HashMap<String, Vec<u8>> = HashMap::new();
    let mut backoff = Duration::from_millis(100);
    loop {
        let step = async {
            let listing = side.etcd.list_under_at(sub).await?;
            let mut fresh: HashMap<String, Vec<u8>> = listing
                .items
                .into_iter()
                .map(|kv| (kv.name, kv.value))
                .collect();
            let mut changes: Vec<(String, Option<Vec<u8>>)> = known
                .keys()
                .filter(|k| !fresh.contains_key(*k))
                .map(|k| (k.clone(), None))
                .collect();
            for (k, v) in &fresh {
                if known.get(k) != Some(v) {
                    changes.push((k.clone(), Some(v.clone())));
                }
            }
            std::mem::swap(&mut known, &mut fresh);
            sink(changes);
            let mut w = side.etcd.watch_under(sub, listing.revision + 1).await?;
            loop {
                let batch = w.next().await?;
                let changes: Vec<(String, Option<Vec<u8>>)> = batch
                    .events
                    .into_iter()
                    .map(|e| match e {
                        Event::Put(kv) => {
                            known.insert(kv.name.clone(), kv.value.clone());
                            (kv.name, Some(kv.value))
                        }
                        Event::Delete { name, .. } => {
                            known.remove(&name);
                            (name, None)
                        }
                    })
                    .collect();
                if !changes.is_empty() {
                    sink(changes);
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), EtcdError>(())
        };
        let r = tokio::select! {
            r = step => r,
            _ = stop.changed() => return,
        };
        if let Err(e) = r {
            tracing::debug!(prefix = sub, error = %e, "fleet mirror interrupted; listing again");
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
