//! Health of probe endpoints: the verdict cells the DNS workers read, the status the
//! API reports, and (later) the prober that decides them.

mod cell;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use cell::{Health, HealthCell};

use crate::model::Endpoint;

/// What the API reports about one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointStatus {
    pub health: Health,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    /// Unix seconds of the last finished probe.
    pub last_probe_time: Option<u64>,
    pub last_error: Option<String>,
}

#[derive(Debug)]
struct EndpointState {
    cell: Arc<HealthCell>,
    status: EndpointStatus,
}

/// The health table, keyed by probe endpoint. Only this module writes verdicts.
#[derive(Debug, Default)]
pub struct HealthHub {
    endpoints: Mutex<HashMap<Endpoint, EndpointState>>,
}

impl HealthHub {
    pub fn new() -> Self {
        Self::default()
    }

    /// The shared verdict cell of `ep`, created `Pending` if the endpoint is new.
    pub fn cell(&self, ep: &Endpoint) -> Arc<HealthCell> {
        let mut map = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(*ep)
            .or_insert_with(|| EndpointState {
                cell: Arc::new(HealthCell::new(Health::Pending)),
                status: EndpointStatus {
                    health: Health::Pending,
                    consecutive_failures: 0,
                    consecutive_successes: 0,
                    last_probe_time: None,
                    last_error: None,
                },
            })
            .cell
            .clone()
    }

    /// Status of `ep`, or `None` if it is not tracked.
    pub fn status(&self, ep: &Endpoint) -> Option<EndpointStatus> {
        let map = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        map.get(ep).map(|s| EndpointStatus {
            health: s.cell.get(),
            ..s.status.clone()
        })
    }
}

impl HealthHub {
    /// Called by the registry after every published change: endpoints that no
    /// NameService references any more are forgotten (and, once probing exists,
    /// their probes cancelled).
    pub fn endpoints_changed(&self) {
        let mut map = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        // The hub holds one reference; any other is a compiled target in a snapshot.
        map.retain(|_, s| Arc::strong_count(&s.cell) > 1);
    }
}
