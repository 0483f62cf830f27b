//! The per-endpoint health verdict that DNS workers read: one atomic word holding
//! the verdict and the time it last turned Healthy.
//!
//! Slow start (`slowStartSeconds`) ramps a target's share up from the moment it
//! turned Healthy. Keeping that moment next to the verdict, in the same word, gives
//! the answer path both with one relaxed load: no timer per target, no second read
//! that could disagree with the first.

use std::sync::atomic::{AtomicU64, Ordering};

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
    fn to_bits(self) -> u64 {
        match self {
            Health::Pending => 0,
            Health::Healthy => 1,
            Health::Unhealthy => 2,
            Health::Unchecked => 3,
        }
    }

    fn from_bits(v: u64) -> Self {
        match v & VERDICT_MASK {
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

/// Layout of the word: the verdict in the low byte, the Unix milliseconds at which
/// the verdict last turned Healthy in the 56 bits above it (enough until the year
/// 2^56 ms ≈ 2.2 million AD). 0 means "never seen turning Healthy": a verdict that
/// was Healthy before this process knew it (restored without a date, seeded from a
/// probe stream that was already healthy) is treated as healthy for long.
const VERDICT_BITS: u32 = 8;
const VERDICT_MASK: u64 = (1 << VERDICT_BITS) - 1;
const MAX_MS: u64 = u64::MAX >> VERDICT_BITS;

/// What one load of a [`HealthCell`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellState {
    pub health: Health,
    /// Unix milliseconds at which the verdict last turned Healthy (it may have
    /// turned away since); 0 when unknown (long ago).
    pub healthy_since_ms: u64,
}

impl CellState {
    fn pack(self) -> u64 {
        (self.healthy_since_ms.min(MAX_MS) << VERDICT_BITS) | self.health.to_bits()
    }

    fn unpack(w: u64) -> Self {
        Self {
            health: Health::from_bits(w),
            healthy_since_ms: w >> VERDICT_BITS,
        }
    }
}

/// The verdict for one probe endpoint, shared (through `Arc`) by every target of every
/// NameService that probes that endpoint. Written only by the health module; read by
/// DNS workers with one relaxed load, so a health change reaches the answers at once
/// and a worker never waits on the prober.
#[derive(Debug)]
pub struct HealthCell(AtomicU64);

impl HealthCell {
    /// A cell holding `h`; if `h` is Healthy, healthy since long ago (no slow start).
    pub fn new(h: Health) -> Self {
        Self::with_healthy_since(h, 0)
    }

    /// A cell holding `h` that last turned Healthy at `healthy_since_ms` (Unix
    /// milliseconds; 0 = unknown, long ago): a restored verdict keeps its ramp.
    pub fn with_healthy_since(h: Health, healthy_since_ms: u64) -> Self {
        Self(AtomicU64::new(
            CellState {
                health: h,
                healthy_since_ms,
            }
            .pack(),
        ))
    }

    #[inline]
    pub fn get(&self) -> Health {
        Health::from_bits(self.0.load(Ordering::Relaxed))
    }

    /// The verdict and when it last turned Healthy, from one load.
    #[inline]
    pub fn load(&self) -> CellState {
        CellState::unpack(self.0.load(Ordering::Relaxed))
    }

    /// Stores verdict `h`; turning Healthy (from anything else) records the time now.
    pub fn set(&self, h: Health) {
        self.set_at(h, crate::timefmt::now_unix_ms());
    }

    /// As [`HealthCell::set`], with the time given (Unix milliseconds).
    pub fn set_at(&self, h: Health, now_ms: u64) {
        // One writer per cell at a time in practice (the prober holds the stream's
        // lock), but an update loop keeps the word consistent whoever writes it.
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                let old = CellState::unpack(w);
                let healthy_since_ms = if h == Health::Healthy && old.health != Health::Healthy {
                    now_ms
                } else {
                    old.healthy_since_ms
                };
                Some(
                    CellState {
                        health: h,
                        healthy_since_ms,
                    }
                    .pack(),
                )
            });
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
            assert_eq!(c.load().health, h);
        }
        assert!(Health::Healthy.is_up() && Health::Unchecked.is_up());
        assert!(!Health::Pending.is_up() && !Health::Unhealthy.is_up());
    }

    #[test]
    fn records_when_it_last_turned_healthy() {
        let c = HealthCell::new(Health::Pending);
        assert_eq!(c.load().healthy_since_ms, 0);
        // (verdict written, at, healthy_since_ms afterwards)
        let steps = [
            (Health::Pending, 500, 0),
            (Health::Healthy, 1_000, 1_000),
            // Staying Healthy does not restart the ramp.
            (Health::Healthy, 2_000, 1_000),
            // Turning away keeps the last time it turned Healthy ...
            (Health::Unhealthy, 3_000, 1_000),
            (Health::Pending, 3_500, 1_000),
            // ... and turning Healthy again records the new time.
            (Health::Healthy, 4_000, 4_000),
            (Health::Unchecked, 5_000, 4_000),
            (Health::Healthy, 6_000, 6_000),
        ];
        for (h, at, want) in steps {
            c.set_at(h, at);
            assert_eq!(
                c.load(),
                CellState {
                    health: h,
                    healthy_since_ms: want
                },
                "after {h:?} at {at}"
            );
        }
        // Today's clock fits, and so does the largest representable time.
        let now = crate::timefmt::now_unix_ms();
        let c = HealthCell::with_healthy_since(Health::Healthy, now);
        assert_eq!(c.load().healthy_since_ms, now);
        let c = HealthCell::with_healthy_since(Health::Unhealthy, u64::MAX);
        assert_eq!(c.load().healthy_since_ms, MAX_MS);
        assert_eq!(c.get(), Health::Unhealthy);
        // `set` reads the clock.
        let c = HealthCell::new(Health::Unhealthy);
        c.set(Health::Healthy);
        assert!(c.load().healthy_since_ms >= now);
    }
}
