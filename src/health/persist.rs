//! Persistence of health state: a subscriber of the health events, in a task of its
//! own, that writes what changed to the store.
//!
//! Writes are coalesced: the first change is written at once, further changes at
//! most once per [`FLUSH_INTERVAL`], in one batch. A steady state writes nothing. At
//! shutdown every verdict is written with its current counters. After `kill -9` at
//! most the last second of changes is lost. A subscriber that lagged (an event
//! burst beyond the channel's capacity) writes everything at its next write.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use super::{HealthEvent, HealthHub, ProbeKey};
use crate::store::{Store, StoreError, StoredHealth};

/// Changed verdicts are written at most this often (and at shutdown).
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// What the next write holds.
#[derive(Default)]
struct Pending {
    /// Streams whose records changed.
    dirty: HashSet<ProbeKey>,
    /// Every stream (after a lag, or for the final write).
    all: bool,
    /// Verdicts nobody holds any more: their records are deleted.
    removed: Vec<StoredHealth>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.dirty.is_empty() && !self.all && self.removed.is_empty()
    }

    fn note(&mut self, event: &HealthEvent) {
        match event {
            HealthEvent::Verdict(c) => {
                self.dirty.insert(ProbeKey::of(&c.endpoint));
            }
            HealthEvent::Local { endpoint, .. } => {
                self.dirty.insert(ProbeKey::of(endpoint));
            }
            HealthEvent::Stream { key } => {
                self.dirty.insert(key.clone());
            }
            HealthEvent::Released { endpoint } => {
                let key = ProbeKey::of(endpoint);
                self.removed.push(super::table::stored(
                    &key,
                    super::Thresholds::of(endpoint),
                    &Default::default(),
                    None,
                ));
                // The stream's other verdicts, if any, are rewritten as they are.
                self.dirty.insert(key);
            }
        }
    }

    /// Takes in every event already queued; false once the bus is closed.
    fn drain(&mut self, rx: &mut broadcast::Receiver<Arc<HealthEvent>>) -> bool {
        loop {
            match rx.try_recv() {
                Ok(e) => self.note(&e),
                Err(broadcast::error::TryRecvError::Empty) => return true,
                Err(broadcast::error::TryRecvError::Lagged(_)) => self.all = true,
                Err(broadcast::error::TryRecvError::Closed) => return false,
            }
        }
    }
}

/// The running persistence task.
pub(crate) struct Persister {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Pending>,
}

impl Persister {
    /// Starts writing `hub`'s changes to `store`; `stale` records (restored, but
    /// no NameService uses their endpoints) are deleted at the first write.
    /// Subscribe before any probe runs so that nothing is missed.
    pub fn start(hub: Arc<HealthHub>, store: Arc<dyn Store>, stale: Vec<StoredHealth>) -> Self {
        let rx = hub.subscribe();
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(hub, store, rx, stop_rx, stale));
        Self { stop, task }
    }

    /// Stops the task and writes the full state of every verdict (consecutive
    /// counts and last probe times included), with whatever was still pending.
    pub async fn shutdown(
        self,
        hub: &HealthHub,
        store: &Arc<dyn Store>,
    ) -> Result<usize, StoreError> {
        let _ = self.stop.send(true);
        let mut pending = self.task.await.unwrap_or_default();
        pending.all = true;
        write(hub, store, &mut pending).await
    }
}

async fn run(
    hub: Arc<HealthHub>,
    store: Arc<dyn Store>,
    mut rx: broadcast::Receiver<Arc<HealthEvent>>,
    mut stop: watch::Receiver<bool>,
    stale: Vec<StoredHealth>,
) -> Pending {
    let mut pending = Pending {
        removed: stale,
        ..Pending::default()
    };
    let mut failing = false;
    let mut open = true;
    loop {
        // Wait for something to write (unless the last write failed or left work).
        if pending.is_empty() && open {
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(e) => pending.note(&e),
                    Err(broadcast::error::RecvError::Lagged(_)) => pending.all = true,
                    Err(broadcast::error::RecvError::Closed) => open = false,
                },
                _ = stop.changed() => return pending,
            }
        }
        open = open && pending.drain(&mut rx);
        match write(&hub, &store, &mut pending).await {
            Ok(_) => {
                if failing {
                    tracing::info!("health state written to the store again");
                }
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot write health state to the store; will retry");
                }
                failing = true;
            }
        }
        // Coalesce: at most one write per interval.
        tokio::select! {
            _ = tokio::time::sleep(FLUSH_INTERVAL) => {}
            _ = stop.changed() => return pending,
        }
    }
}

/// Writes `pending` to `store`; on failure it stays pending (for a retry).
async fn write(
    hub: &HealthHub,
    store: &Arc<dyn Store>,
    pending: &mut Pending,
) -> Result<usize, StoreError> {
    if pending.is_empty() {
        return Ok(0);
    }
    let keys: Vec<ProbeKey> = pending.dirty.iter().cloned().collect();
    let upsert = hub.records((!pending.all).then_some(&keys[..]));
    // A record rewritten in this batch is not deleted by it (a verdict released
    // and acquired again within the interval).
    let removed: Vec<StoredHealth> = pending
        .removed
        .iter()
        .filter(|r| !upsert.iter().any(|u| same_verdict(u, r)))
        .cloned()
        .collect();
    let n = upsert.len() + removed.len();
    let store2 = store.clone();
    let joined = tokio::task::spawn_blocking(move || store2.save_health(&upsert, &removed)).await;
    let result = match joined {
        Ok(r) => r,
        Err(join) => Err(StoreError::Decode {
            key: "health".into(),
            reason: format!("health write task failed: {join}"),
        }),
    };
    match result {
        Ok(()) => {
            hub.stats.store_writes_ok.fetch_add(1, Ordering::Relaxed);
            *pending = Pending::default();
            Ok(n)
        }
        Err(e) => {
            hub.stats
                .store_writes_failed
                .fetch_add(1, Ordering::Relaxed);
            Err(e)
        }
    }
}

fn same_verdict(a: &StoredHealth, b: &StoredHealth) -> bool {
    a.key() == b.key()
}
