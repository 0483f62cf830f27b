//! Durable storage of NameServices (and persisted health state) behind the [`Store`]
//! trait. Only this module imports sled.
//!
//! **Architecture Invariant:** a write method returns only after the data is flushed
//! to disk, so a 2xx built on it survives `kill -9`.

mod codec;
mod sled_store;

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use sled_store::SledStore;

use crate::model::NameService;

/// The format version in front of every stored value: JSON. Health records are
/// written in it; NameServices were, and are still read in it.
pub const FORMAT_VERSION: u8 = 1;
/// The format version of NameServices as written now: a compact binary form
/// (`codec.rs`), a fifth of the JSON, so startup with 100,000 names reads less.
pub const FORMAT_NAMESERVICE: u8 = 2;

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
    #[error("stored value for key {key:?} cannot be decoded: {reason}")]
    Decode { key: String, reason: String },
    #[error(
        "stored value for key {key:?} has format version {found}, this gslb reads versions {FORMAT_VERSION} and {FORMAT_NAMESERVICE}"
    )]
    Version { key: String, found: u8 },
}

/// Persisted health of one probe endpoint, so a restart neither revives a dead
/// target nor sends a healthy one back to Pending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredHealth {
    pub address: IpAddr,
    pub port: u16,
    pub period_seconds: u32,
    pub timeout_seconds: u32,
    /// The verdict is kept per (probe, thresholds): see `model::Endpoint`.
    #[serde(default)]
    pub failure_threshold: u32,
    #[serde(default)]
    pub success_threshold: u32,
    /// "Pending", "Healthy" or "Unhealthy".
    pub health: String,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub last_probe_time: Option<u64>,
    pub last_error: Option<String>,
    pub last_change_time: Option<u64>,
}

/// One change in a batch written atomically by [`Store::apply`].
#[derive(Debug, Clone)]
pub enum Change {
    Put(Arc<NameService>),
    Delete(String),
}

pub trait Store: Send + Sync + 'static {
    /// Every stored NameService, sorted by name. Fails on any undecodable value:
    /// serving an empty or partial registry by mistake is worse than not starting.
    fn load_all(&self) -> Result<Vec<NameService>, StoreError>;

    /// Hands every stored NameService to `f`, sorted by name, without holding them all
    /// at once (startup with 100,000 names). Fails like [`Store::load_all`].
    fn load_each(&self, f: &mut dyn FnMut(NameService)) -> Result<(), StoreError> {
        self.load_all()?.into_iter().for_each(f);
        Ok(())
    }

    /// The registry revision the stored NameServices reflect (0 for a new store).
    fn revision(&self) -> Result<u64, StoreError>;

    /// Applies `changes` in order, records `revision` as the one the store now
    /// reflects (in the same atomic batch), and flushes before returning.
    fn apply(&self, changes: &[Change], revision: u64) -> Result<(), StoreError>;

    /// Every persisted endpoint health record.
    fn load_health(&self) -> Result<Vec<StoredHealth>, StoreError>;

    /// Replaces the persisted health records of the given endpoints and removes those
    /// in `removed`; flushed before returning.
    fn save_health(
        &self,
        upsert: &[StoredHealth],
        removed: &[StoredHealth],
    ) -> Result<(), StoreError>;

    /// Flushes everything (shutdown).
    fn flush(&self) -> Result<(), StoreError>;
}
