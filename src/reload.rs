//! Reload (SIGHUP, `POST /api/v1/reload`): every zone file and the config file's
//! `[[topology]]` read again and swapped in without dropping a query, all or
//! nothing (CONTRACT §8).
//!
//! The files are read and checked away from the DNS workers; the registry's
//! committer then checks that every served NameService can stay (placed in the new
//! zones, colliding with no static CNAME or delegation) and publishes one new
//! snapshot with the new zones and topology, or changes nothing. DNS workers pick
//! up the snapshot at their next batch, like any write. Other settings need a
//! restart; a reload that sees them changed says which.

use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::config::Config;
use crate::events::{EventKind, EventLog, NewEvent};
use crate::registry::{Registry, RegistryError};
use crate::zone::ZoneSet;

/// One zone after a reload.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ZoneSerial {
    pub name: String,
    pub serial: u32,
}

/// What a reload did (`POST /api/v1/reload` answers it).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reloaded {
    pub zones: Vec<ZoneSerial>,
    pub topology_entries: usize,
    /// Settings changed in the config file that a reload does not apply.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restart_required: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// A zone file or the config file is invalid (the message names file and line).
    #[error("{0}")]
    Invalid(String),
    /// The registry refused the new zones (409: names that could not stay).
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Reloads one running instance.
pub struct Reloader {
    /// The configuration in force: the one at start, with the topology of the
    /// last reload.
    config: Mutex<Config>,
    registry: Arc<Registry>,
    events: Arc<EventLog>,
    /// One reload at a time.
    one: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub fn new(config: Config, registry: Arc<Registry>, events: Arc<EventLog>) -> Self {
        Self {
            config: Mutex::new(config),
            registry,
            events,
            one: tokio::sync::Mutex::new(()),
        }
    }

    /// Reads the zones and the config file again and swaps in the zones and the
    /// topology, or changes nothing. `trigger` says what asked ("SIGHUP", "API");
    /// `token` names the API token that did, for the event.
    pub async fn reload(
        &self,
        trigger: &str,
        token: Option<&str>,
    ) -> Result<Reloaded, ReloadError> {
        let _one = self.one.lock().await;
        let running = self
            .config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let dir = running.zones_dir.clone();
        let read = tokio::task::spawn_blocking(move || -> Result<_, ReloadError> {
            let fresh = Config::load(running.file.as_deref(), running.overrides.clone())
                .map_err(|e| ReloadError::Invalid(e.to_string()))?;
            // The zones dir in force is the running one (a new one needs a restart).
            let zones = ZoneSet::load_dir(&dir).map_err(|e| ReloadError::Invalid(e.to_string()))?;
            if zones.origins().is_empty() {
                return Err(ReloadError::Invalid(format!(
                    "{}: no *.zone files found",
                    dir.display()
                )));
            }
            Ok((running, fresh, zones))
        })
        .await
        .map_err(|e| ReloadError::Invalid(format!("the reload task failed: {e}")))?;
        let (running, fresh, zones) = match read {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(trigger, error = %e, "reload refused: nothing changed");
                return Err(e);
            }
        };
        let serials: Vec<ZoneSerial> = zones
            .serials()
            .into_iter()
            .map(|(name, serial)| ZoneSerial { name, serial })
            .collect();
        let restart_required: Vec<String> = running
            .restart_settings_changed(&fresh)
            .into_iter()
            .map(str::to_string)
            .collect();
        let topology = fresh.topology.clone();
        let unparked = match self
            .registry
            .reload(Arc::new(zones), topology.clone())
            .await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(trigger, error = %e, "reload refused: nothing changed");
                return Err(e.into());
            }
        };
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .topology = topology.clone();
        let zones_text = serials
            .iter()
            .map(|z| format!("{} serial {}", z.name, z.serial))
            .collect::<Vec<_>>()
            .join(", ");
        tracing::info!(
            trigger,
            zones = %zones_text,
            topology_entries = topology.len(),
            served_again = unparked,
            "reloaded zones and topology"
        );
        if !restart_required.is_empty() {
            tracing::warn!(settings = ?restart_required, "changed settings need a restart; the reload did not apply them");
        }
        self.events.record(
            NewEvent::new(
                EventKind::Reloaded,
                format!(
                    "reloaded ({trigger}): {zones_text}; {} topology entries",
                    topology.len()
                ),
            )
            .token(token),
        );
        Ok(Reloaded {
            zones: serials,
            topology_entries: topology.len(),
            restart_required,
        })
    }
}
