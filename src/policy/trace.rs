//! What the selection code tells a trace sink, and where its randomness comes from.
//!
//! [`select_with`](super::select_with) is generic over both: the DNS path passes a
//! `fastrand::Rng` and [`NoTrace`] (whose `ENABLED` is false, so every trace call and
//! the arguments built for it compile away); explain passes a recorder and a scripted
//! chance that walks every branch. One selection code, two uses.

use crate::model::Locality;
use crate::snapshot::ServiceEntry;

/// Where the selection's random choices come from.
pub trait Chance {
    /// An element of `set` (a bitmask over indices) drawn with probability
    /// weight(i) / (sum of the weights in `set`); `None` when that sum is 0.
    fn draw(&mut self, set: u64, weight: impl Fn(usize) -> u64) -> Option<usize>;
    /// True with probability `num / den` (`0 < num < den`: callers decide the sure
    /// cases themselves, so they are no choice).
    fn coin(&mut self, num: u64, den: u64) -> bool;
    /// How far to rotate this answer (RoundRobin and Locality).
    fn rotation(&mut self, entry: &ServiceEntry) -> usize;
}

impl Chance for fastrand::Rng {
    #[inline]
    fn draw(&mut self, set: u64, weight: impl Fn(usize) -> u64) -> Option<usize> {
        let sum: u64 = super::Bits(set).map(&weight).sum();
        if sum == 0 {
            return None;
        }
        let mut r = self.u64(..sum);
        for i in super::Bits(set) {
            let w = weight(i);
            if r < w {
                return Some(i);
            }
            r -= w;
        }
        unreachable!("r < sum of the weights")
    }

    #[inline]
    fn coin(&mut self, num: u64, den: u64) -> bool {
        self.u64(..den) < num
    }

    #[inline]
    fn rotation(&mut self, entry: &ServiceEntry) -> usize {
        entry.next_rotation()
    }
}

/// How the candidates were chosen from the targets of the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum Mode {
    /// The eligible targets.
    #[default]
    Normal,
    /// Fewer than `panicThresholdPercent` of the enabled targets are eligible: every
    /// enabled target is a candidate.
    Panic,
    /// No enabled target is eligible and `allDown` is `AnswerAll`: every enabled
    /// target is a candidate.
    FailOpen,
    /// No enabled target is eligible and `allDown` is `NoData` (or nothing is
    /// enabled at all): the answer is NODATA.
    NoData,
}

/// Why a target is, or is not, eligible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Reason {
    /// `enabled: false`: never answered.
    Disabled,
    /// A Drain override: never answered while it lasts.
    Drained,
    /// Ratio 0 under the Ratio policy: never gets Ratio traffic.
    RatioZero,
    Healthy,
    /// The service has no healthCheck.
    Unchecked,
    /// A ForceHealthy override.
    ForcedHealthy,
    /// No verdict yet.
    Pending,
    Unhealthy,
    /// A ForceUnhealthy override.
    ForcedUnhealthy,
}

impl Reason {
    /// Enabled for this policy (a candidate when failing open or in panic).
    pub fn enabled(self) -> bool {
        !matches!(self, Reason::Disabled | Reason::Drained | Reason::RatioZero)
    }

    /// Eligible: answered without failing open.
    pub fn eligible(self) -> bool {
        matches!(
            self,
            Reason::Healthy | Reason::Unchecked | Reason::ForcedHealthy
        )
    }
}

/// The step that chose the answer among the candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    RoundRobin,
    /// One target drawn by ratio.
    Ratio,
    /// One target picked by the rendezvous hash of the client's subnet.
    Sticky {
        prefix: u8,
    },
    /// `distribute[rule]` matched the client and drew its pattern `to[pattern]`.
    Distribute {
        rule: usize,
        pattern: usize,
    },
    /// The candidates sharing `depth` leading locality parts with the client
    /// (3 subzone, 2 zone, 1 region).
    Nearest {
        depth: u8,
    },
    /// `failover[rule]` (from the client's region) had candidates.
    Failover {
        rule: usize,
    },
    /// Every candidate: the client has no topology match (`no_topology`), or no
    /// candidate is nearer than any other.
    All {
        no_topology: bool,
    },
    /// Nothing to answer.
    NoData,
}

/// Receives the decisions of one selection. Every method has an empty default; the
/// DNS path's [`NoTrace`] sets `ENABLED = false` and the calls vanish.
pub trait Trace {
    const ENABLED: bool;
    /// Target `i` of the family: why it is (not) eligible.
    fn target(&mut self, _i: usize, _reason: Reason) {}
    /// The candidates chosen: `eligible` of `enabled` targets (for the policy).
    fn mode(&mut self, _mode: Mode, _eligible: u32, _enabled: u32) {}
    /// Target `i` is within its slow-start ramp: `factor` of [`super::FULL`].
    fn ramp(&mut self, _i: usize, _factor: u32) {}
    /// The client's topology entry: locality and prefix length (Locality only).
    fn locality(&mut self, _m: Option<(&Locality, u8)>) {}
    /// A slow-start draw left target `i` out of this answer.
    fn left_out(&mut self, _i: usize) {}
    /// The step that decided.
    fn step(&mut self, _step: Step) {}
}

/// The DNS path's trace: records nothing, costs nothing.
pub struct NoTrace;

impl Trace for NoTrace {
    const ENABLED: bool = false;
}
