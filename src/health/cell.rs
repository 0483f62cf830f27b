//! The per-endpoint health verdict that DNS workers read: one atomic byte.

use std::sync::atomic::{AtomicU8, Ordering};

use serde::{Deserialize, Serialize};

/// Health of a target as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Health {
    /// No verdict yet: gets no traffic (except when failing open).
    Pending,
    Healthy,
    Unhealthy,
    /// The NameService has no healthCheck: the target counts as healthy.
    Unchecked,
}

impl Health {
    fn to_u8(self) -> u8 {
        match self {
            Health::Pending => 0,
            Health::Healthy => 1,
            Health::Unhealthy => 2,
            Health::Unchecked => 3,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => Health::Healthy,
            2 => Health::Unhealthy,
            3 => Health::Unchecked,
            _ => Health::Pending,
        }
    }

    /// Healthy or Unchecked: may be answered without failing open.
    pub fn is_up(self) -> bool {
        matches!(self, Health::Healthy | Health::Unchecked)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Health::Pending => "Pending",
            Health::Healthy => "Healthy",
            Health::Unhealthy => "Unhealthy",
            Health::Unchecked => "Unchecked",
        }
    }
}

/// The verdict for one probe endpoint, shared (through `Arc`) by every target of every
/// NameService that probes that endpoint. Written only by the health module; read by
/// DNS workers with one relaxed load, so a health change reaches the answers at once
/// and a worker never waits on the prober.
#[derive(Debug)]
pub struct HealthCell(AtomicU8);

impl HealthCell {
    pub fn new(h: Health) -> Self {
        Self(AtomicU8::new(h.to_u8()))
    }

    #[inline]
    pub fn get(&self) -> Health {
        Health::from_u8(self.0.load(Ordering::Relaxed))
    }

    pub fn set(&self, h: Health) {
        self.0.store(h.to_u8(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let c = HealthCell::new(Health::Pending);
        for h in [
            Health::Healthy,
            Health::Unhealthy,
            Health::Unchecked,
            Health::Pending,
        ] {
            c.set(h);
            assert_eq!(c.get(), h);
        }
        assert!(Health::Healthy.is_up() && Health::Unchecked.is_up());
        assert!(!Health::Pending.is_up() && !Health::Unhealthy.is_up());
    }
}
