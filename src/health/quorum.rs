//! The majority rule (CONTRACT §7): a target's verdict decided by the fleet.
//!
//! In etcd mode every instance publishes its own thresholded verdict of each
//! endpoint it probes (its *observation*, never Pending) under its lease, and
//! mirrors everybody's. With `[health] quorum = "majority"` the verdict the answers
//! use is, over the *live observers* of the endpoint (instances whose lease is alive
//! and that published a verdict for it — an observation lives under its
//! publisher's lease, so it is gone once that lease ran out):
//!
//! - Healthy when more than half of them say Healthy,
//! - Unhealthy when more than half say Unhealthy,
//! - otherwise what it was (Pending at first).
//!
//! One live observer decides alone. The rule reads nothing but the observations and
//! the previous verdict, so every instance holding the same observations computes
//! the same verdict.
//!
//! The transport (etcd keys, leases, the watch) is the registry's fleet layer; the
//! app wires the two together: this instance's [`super::HealthEvent::Local`] goes
//! out as its observation, and every observation seen comes in through
//! [`super::HealthHub::observe`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::Health;

/// One instance's thresholded verdict of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// Healthy or Unhealthy (Pending is never published).
    pub health: Health,
    /// Unix seconds of the probe that decided it.
    pub last_probe_time: Option<u64>,
}

/// What the live observers of one endpoint say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub healthy: u32,
    pub unhealthy: u32,
    /// Live observers (also those whose published verdict is neither, which there
    /// should be none of).
    pub observers: u32,
}

impl Tally {
    pub fn of<'a>(observations: impl IntoIterator<Item = &'a Observation>) -> Self {
        let mut t = Tally::default();
        for o in observations {
            t.observers += 1;
            match o.health {
                Health::Healthy => t.healthy += 1,
                Health::Unhealthy => t.unhealthy += 1,
                _ => {}
            }
        }
        t
    }

    /// The majority rule: the verdict after `previous`.
    pub fn verdict(self, previous: Health) -> Health {
        if 2 * self.healthy > self.observers {
            Health::Healthy
        } else if 2 * self.unhealthy > self.observers {
            Health::Unhealthy
        } else {
            previous
        }
    }

    /// The observers do not all say the same.
    pub fn disagree(self) -> bool {
        self.healthy != self.observers && self.unhealthy != self.observers
    }
}

/// Every observation known, by endpoint id, then instance.
pub type View = HashMap<Arc<str>, BTreeMap<Arc<str>, Observation>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(h: u32, u: u32) -> Tally {
        let obs: Vec<Observation> = std::iter::repeat_n(Health::Healthy, h as usize)
            .chain(std::iter::repeat_n(Health::Unhealthy, u as usize))
            .map(|health| Observation {
                health,
                last_probe_time: Some(1),
            })
            .collect();
        Tally::of(&obs)
    }

    #[test]
    fn more_than_half_decides() {
        use Health::*;
        // (healthy, unhealthy, previous, expected)
        for (h, u, prev, want) in [
            (3, 0, Pending, Healthy),
            (2, 1, Unhealthy, Healthy),
            (1, 2, Healthy, Unhealthy),
            (0, 3, Healthy, Unhealthy),
            // A tie keeps what was.
            (1, 1, Healthy, Healthy),
            (1, 1, Unhealthy, Unhealthy),
            (1, 1, Pending, Pending),
            (2, 2, Healthy, Healthy),
            // One live observer decides alone.
            (1, 0, Pending, Healthy),
            (0, 1, Healthy, Unhealthy),
            // Nobody observes: nothing changes.
            (0, 0, Healthy, Healthy),
            (0, 0, Pending, Pending),
            // Five observers: three are a majority, two are not.
            (3, 2, Unhealthy, Healthy),
            (2, 3, Healthy, Unhealthy),
        ] {
            assert_eq!(
                tally(h, u).verdict(prev),
                want,
                "{h} healthy, {u} unhealthy after {prev:?}"
            );
        }
    }

    #[test]
    fn disagreement() {
        assert!(!tally(3, 0).disagree());
        assert!(!tally(0, 2).disagree());
        assert!(tally(2, 1).disagree());
        assert!(!tally(0, 0).disagree());
    }
}
