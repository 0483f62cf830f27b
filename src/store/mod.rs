//! Durable storage of NameServices (and persisted health state) behind the [`Store`]
//! trait, and the shared etcd registry ([`etcd`]). Only this module imports sled and
//! etcd-client.
//!
//! **Architecture Invariant:** a write method returns only after the data is flushed
//! to disk, so a 2xx built on it survives `kill -9`.

mod ack;
mod codec;
pub mod etcd;
mod sled_store;

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use sled_store::SledStore;

/// Entry points for the `stored_value` fuzz target (fuzz/fuzz_targets/): the
/// decoders of stored NameService values, which are otherwise private to the
/// store. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    use crate::model::NameService;

    /// Decodes a binary body: format 3's (with the extension section) when `v3`,
    /// else format 2's.
    pub fn decode_body(body: &[u8], v3: bool) -> Result<NameService, String> {
        let layout = if v3 {
            super::codec::Layout::V3
        } else {
            super::codec::Layout::V2
        };
        super::codec::decode(body, layout)
    }

    /// The format 3 body of `ns`.
    pub fn encode_body(ns: &NameService) -> Vec<u8> {
        let mut out = Vec::new();
        super::codec::encode(ns, &mut out);
        out
    }

    /// Decodes a whole stored value under `key` (any format), as startup does:
    /// the NameService and the revision that wrote it.
    pub fn decode_value(key: &[u8], value: &[u8]) -> Result<(NameService, u64), String> {
        super::sled_store::decode_nameservice(key, value).map_err(|e| e.to_string())
    }

    /// The stored value of `ns` at `revision`, as the store writes it.
    pub fn encode_value(ns: &NameService, revision: u64) -> Vec<u8> {
        super::sled_store::encode_nameservice(ns, revision)
    }

    /// A format 3 value under `key` around any `body`, with a valid checksum.
    pub fn seal(key: &[u8], revision: u64, body: &[u8]) -> Vec<u8> {
        super::sled_store::seal_nameservice_body(key, revision, body)
    }
}

use crate::model::{HttpCheck, NameService, Override};

/// The format version in front of every stored value: JSON. Health records are
/// written in it; NameServices were, and are still read in it.
pub const FORMAT_VERSION: u8 = 1;
/// NameServices in the compact binary form (`codec.rs`) without a checksum: written
/// by earlier gslb versions, still read.
pub const FORMAT_NAMESERVICE: u8 = 2;
/// NameServices as written now: a checksum over the key and the rest of the value,
/// the revision of the change that wrote it, and the binary form with its extension
/// section (`sled_store.rs` has the layout).
pub const FORMAT_CHECKED: u8 = 3;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: sled::Error,
    },
    #[error("store I/O error: {0}")]
    Io(#[from] sled::Error),
    #[error("store at {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },
    #[error("stored value for key {key:?} cannot be decoded: {reason}")]
    Decode { key: String, reason: String },
    #[error(
        "stored value for key {key:?} has format version {found}, this gslb reads versions {FORMAT_VERSION} to {FORMAT_CHECKED}"
    )]
    Version { key: String, found: u8 },
    /// The store does not hold what its own record says it holds, or lost the record.
    #[error(
        "store at {path} is damaged: {detail}; gslb does not start on a partial registry (docs/operations.md, \"A damaged store\")"
    )]
    Damaged { path: String, detail: String },
    /// The disk is full: nothing was written.
    #[error("the disk holding the store is full: nothing was written")]
    Full,
}

impl StoreError {
    /// Whether this is the disk running out of space (answered 507).
    pub fn is_full(&self) -> bool {
        match self {
            Self::Full => true,
            // sled hands back a copy of the first I/O error it met (kind kept, OS
            // code not), so the kind is what tells.
            Self::Io(sled::Error::Io(e)) => is_enospc(e),
            Self::File { source, .. } => is_enospc(source),
            _ => false,
        }
    }
}

fn is_enospc(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC) || e.kind() == std::io::ErrorKind::StorageFull
}

/// What a store holds NameServices for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The registry itself: the embedded backend, this instance alone.
    Sled,
    /// This instance's local copy of an etcd registry: the cluster it came from and
    /// the key prefix.
    Etcd { cluster_id: u64, prefix: String },
}

/// Persisted health of one probe endpoint, so a restart neither revives a dead
/// target nor sends a healthy one back to Pending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredHealth {
    pub address: IpAddr,
    pub port: u16,
    /// The parameters of an HTTP(S) probe; absent for a TCP probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    pub period_seconds: u32,
    pub timeout_seconds: u32,
    /// The verdict is kept per (probe, thresholds): see `model::Endpoint`.
    #[serde(default)]
    pub failure_threshold: u32,
    #[serde(default)]
    pub success_threshold: u32,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub flap_damping: bool,
    /// "Pending", "Healthy" or "Unhealthy": the verdict the answers used.
    pub health: String,
    /// This instance's own verdict from its probes, when it differs in kind from
    /// `health` (with `[health] quorum = "majority"` the fleet decides `health`);
    /// absent in records written before quorums existed: then it is `health`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_health: Option<String>,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub last_probe_time: Option<u64>,
    pub last_error: Option<String>,
    pub last_change_time: Option<u64>,
    /// What flap damping remembers (recent results, verdict changes, a hold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damping: Option<crate::health::machine::Damping>,
}

impl StoredHealth {
    /// The key of the record: the verdict it describes (probe and thresholds).
    /// TCP probes keep the key they had before HTTP probes existed.
    pub fn key(&self) -> String {
        let mut k = format!(
            "{}|{}|{}|{}|{}|{}",
            self.address,
            self.port,
            self.period_seconds,
            self.timeout_seconds,
            self.failure_threshold,
            self.success_threshold
        );
        if self.flap_damping {
            k.push_str("|d");
        }
        if let Some(h) = &self.http {
            k.push_str(&format!("|h{:016x}", h.fingerprint()));
        }
        k
    }
}

/// One change in a batch written atomically by [`Store::apply`].
#[derive(Debug, Clone)]
pub enum Change {
    /// Create or replace, with the revision of the change (its ETag).
    Put(Arc<NameService>, u64),
    Delete(String),
    /// Create or replace the override of (NameService, target), with the revision
    /// of the change.
    PutOverride(String, String, Override, u64),
    /// Remove the override of (NameService, target).
    DeleteOverride(String, String),
}

/// A stored override: the NameService and target it is for, itself, and the
/// revision of the change that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOverride {
    pub nameservice: String,
    pub target: String,
    pub ovr: Override,
    pub revision: u64,
}

pub trait Store: Send + Sync + 'static {
    /// Every stored NameService with the revision that wrote it, sorted by name.
    /// Fails like [`Store::load_each`].
    fn load_all(&self) -> Result<Vec<(NameService, u64)>, StoreError> {
        let mut out = Vec::new();
        self.load_each(&mut |ns, rev| out.push((ns, rev)))?;
        Ok(out)
    }

    /// Hands every stored NameService and its revision to `f`, sorted by name,
    /// without holding them all at once (startup with 100,000 names). Fails on any
    /// undecodable value, a checksum that does not match, or contents that differ
    /// from the store's own record of them: serving an empty or partial registry by
    /// mistake is worse than not starting. `f` may have been called for some values
    /// when it fails: the caller discards what it built.
    fn load_each(&self, f: &mut dyn FnMut(NameService, u64)) -> Result<(), StoreError>;

    /// Every stored override, sorted by (NameService, target). Checked like
    /// [`Store::load_each`]: a damaged value stops the load.
    fn load_overrides(&self) -> Result<Vec<StoredOverride>, StoreError> {
        Ok(Vec::new())
    }

    /// The registry revision the stored NameServices reflect (0 for a new store).
    fn revision(&self) -> Result<u64, StoreError>;

    /// How many NameServices the store holds (by its own record).
    fn count(&self) -> Result<u64, StoreError> {
        Ok(self.load_all()?.len() as u64)
    }

    /// What the store holds NameServices for.
    fn origin(&self) -> Origin {
        Origin::Sled
    }

    /// Records what the store holds NameServices for (flushed before returning).
    fn set_origin(&self, _origin: Origin) -> Result<(), StoreError> {
        Ok(())
    }

    /// Applies `changes` in order and records `revision` as the one the store now
    /// reflects, in one atomic batch. With `durable`, flushes before returning;
    /// without, the batch reaches the disk with the next flush (sled's own, every
    /// half second) and a crash may lose it, but never half of it.
    fn apply(&self, changes: &[Change], revision: u64, durable: bool) -> Result<(), StoreError>;

    /// [`Store::apply`], durable, recording `origin` in the same atomic batch: a
    /// copy that holds the NameServices of a listing is never without the
    /// cluster they came from (a crash between the two would leave a copy that
    /// looks standalone).
    fn apply_from(
        &self,
        changes: &[Change],
        revision: u64,
        origin: Origin,
    ) -> Result<(), StoreError> {
        self.apply(changes, revision, true)?;
        self.set_origin(origin)
    }

    /// `Err(StoreError::Full)` when the disk holding the store has no room for a
    /// batch of about `bytes` (checked by [`Store::apply`] too; the etcd backend
    /// asks before it writes to etcd, so that a full disk refuses a write before it
    /// reaches the shared registry).
    fn ensure_room(&self, _bytes: u64) -> Result<(), StoreError> {
        Ok(())
    }

    /// Every persisted endpoint health record.
    fn load_health(&self) -> Result<Vec<StoredHealth>, StoreError>;

    /// Replaces the persisted health records of the given endpoints and removes those
    /// in `removed`; flushed before returning.
    fn save_health(
        &self,
        upsert: &[StoredHealth],
        removed: &[StoredHealth],
    ) -> Result<(), StoreError>;

    /// Makes everything applied durable (at shutdown, and every [`crate::registry::etcd::LOCAL_COPY_FLUSH`]
    /// for an etcd local copy); does nothing when it already is.
    fn flush(&self) -> Result<(), StoreError>;
}
