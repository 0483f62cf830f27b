//! Overrides shared by a fleet through etcd: written as `<prefix>overrides/<name>/
//! <target>` (the override as JSON, under a lease of its ttl, so etcd removes an
//! expired one for everyone), replicated into every instance list-then-watch, and
//! applied through the committer like every other change.
//!
//! The committer keeps the revision of the last change it applied per override key
//! (deletions included), so a write applied here at once and the watch event that
//! brings the same change later agree, and an older event never undoes a newer
//! change; those revisions are forgotten once the watch has delivered everything up
//! to them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use super::RegistryError;
use super::commit::{OverrideApplied, OverrideOp, Request};
use super::etcd::{Commits, EtcdSide, MAX_BACKOFF};
use crate::model::Override;
use crate::store::etcd::{EtcdError, Event, Kv};

/// The keys replicated here, under the registry prefix.
pub(super) const SUB: &str = "overrides/";

/// The state of one override key decided elsewhere (etcd): `ovr` at `revision`,
/// or deleted at `revision` (`ovr: None`).
#[derive(Debug, Clone)]
pub(super) struct IncomingOverride {
    pub name: Arc<str>,
    pub target: String,
    pub ovr: Option<Override>,
    pub revision: u64,
}

/// Splits `<name>/<target>`: neither a DNS name nor a target name holds a `/`.
fn split_key(key: &str) -> Option<(&str, &str)> {
    let (name, target) = key.rsplit_once('/')?;
    (!name.is_empty() && !target.is_empty() && !name.contains('/')).then_some((name, target))
}

/// `kv` as an incoming override; a value that is not an override is logged and
/// taken as absent (the key does not act), like an invalid NameService value.
fn from_kv(kv: &Kv) -> Option<IncomingOverride> {
    let Some((name, target)) = split_key(&kv.name) else {
        tracing::error!(key = %kv.name, "etcd key under overrides/ is not <name>/<target>; skipped");
        return None;
    };
    let ovr = match serde_json::from_slice::<Override>(&kv.value) {
        Ok(o) => Some(o),
        Err(e) => {
            tracing::error!(key = %kv.name, revision = kv.mod_revision, error = %e, "invalid override value in etcd skipped; the target has no override");
            None
        }
    };
    Some(IncomingOverride {
        name: name.into(),
        target: target.to_string(),
        ovr,
        revision: kv.mod_revision,
    })
}

/// Hands incoming overrides to the committer and waits until they are applied.
/// `listing`: they are every override at that revision (a key they leave out is
/// removed, unless it changed later); `watched`: every change up to it has now
/// been delivered.
pub(super) async fn apply(
    commits: &Commits,
    changes: Vec<IncomingOverride>,
    listing: Option<u64>,
    watched: u64,
) -> Result<(), RegistryError> {
    let (reply, rx) = oneshot::channel();
    let req = Request::Override {
        op: OverrideOp::Apply {
            changes,
            listing,
            watched,
        },
        reply,
    };
    commits
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|tx| tx.send(req).ok())
        .ok_or_else(RegistryError::committer_gone)?;
    match rx.await.map_err(|_| RegistryError::committer_gone())?? {
        OverrideApplied::Applied => Ok(()),
        other => unreachable!("an apply answered {other:?}"),
    }
}

/// The override replication loop: list, then watch from there; list again after a
/// compaction or a broken watch. Runs until `stop` turns true.
pub(super) async fn replicate(
    side: Arc<EtcdSide>,
    commits: Commits,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return;
        }
        let step = async {
            let listing = side.etcd.list_under_at(SUB).await?;
            let changes = listing.items.iter().filter_map(from_kv).collect();
            apply(&commits, changes, Some(listing.revision), listing.revision)
                .await
                .map_err(|e| EtcdError::Unavailable(format!("applying the overrides: {e}")))?;
            let mut w = side.etcd.watch_under(SUB, listing.revision + 1).await?;
            loop {
                let batch = w.next().await?;
                let changes: Vec<IncomingOverride> = batch
                    .events
                    .iter()
                    .filter_map(|e| match e {
                        Event::Put(kv) => from_kv(kv),
                        Event::Delete { name, revision } => {
                            let (n, t) = split_key(name)?;
                            Some(IncomingOverride {
                                name: n.into(),
                                target: t.to_string(),
                                ovr: None,
                                revision: *revision,
                            })
                        }
                    })
                    .collect();
                if !changes.is_empty() {
                    apply(&commits, changes, None, batch.revision)
                        .await
                        .map_err(|e| EtcdError::Unavailable(format!("applying overrides: {e}")))?;
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), EtcdError>(())
        };
        let outcome = tokio::select! {
            r = step => r,
            _ = stop.changed() => return,
        };
        match outcome {
            Err(EtcdError::Compacted(_)) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::debug!(error = %e, "override replication interrupted; listing again")
            }
            Ok(()) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_into_name_and_target() {
        assert_eq!(
            split_key("app.gslb.example/dc1"),
            Some(("app.gslb.example", "dc1"))
        );
        for bad in ["app.gslb.example", "/dc1", "app/", "a/b/c", ""] {
            assert_eq!(split_key(bad), None, "{bad}");
        }
    }
}
