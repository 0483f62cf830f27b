//! Pure answer selection: which addresses a query gets.
//!
//! **Architecture Invariant:** everything here is a pure function of (entry, health
//! cells, client, topology, rng): no I/O, no locks, no allocation beyond the caller's
//! output buffer. DNS workers call [`select`] on their snapshot.

mod topology;

use std::net::IpAddr;

pub use topology::{Topology, TopologyEntry, TopologyError};

use crate::model::{AllDown, Policy};
use crate::snapshot::{ServiceEntry, TargetEntry};

/// Who is asking, as far as the policies care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientInfo {
    /// The EDNS Client Subnet address when the query carried one with a non-zero
    /// source prefix, else the source address of the query.
    pub addr: IpAddr,
    /// `Some(source prefix length)` when `addr` came from ECS.
    pub ecs_source_prefix: Option<u8>,
}

/// What [`select`] decided, besides the addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Selection {
    /// ECS SCOPE PREFIX-LENGTH for the response (meaningful only when the query had ECS).
    pub ecs_scope: u8,
    /// No eligible target: the answer fell open to every enabled target.
    pub failed_open: bool,
}

/// Eligible = enabled and Healthy or Unchecked.
#[inline]
fn eligible(t: &TargetEntry) -> bool {
    t.enabled && t.health().is_up()
}

/// Fills `out` with the addresses of `entry`'s targets of one family (`v6`) that the
/// service's policy picks for `client`. An empty `out` means NODATA.
pub fn select(
    entry: &ServiceEntry,
    v6: bool,
    client: &ClientInfo,
    topology: &Topology,
    rng: &mut fastrand::Rng,
    out: &mut Vec<IpAddr>,
) -> Selection {
    out.clear();
    let targets = entry.family(v6);
    let mut sel = Selection::default();
    let any_eligible = targets.iter().any(eligible);
    let pick: fn(&TargetEntry) -> bool = if any_eligible {
        eligible
    } else {
        match entry.all_down {
            AllDown::NoData => return sel,
            AllDown::AnswerAll => {
                sel.failed_open = targets.iter().any(|t| t.enabled);
                |t: &TargetEntry| t.enabled
            }
        }
    };
    match entry.policy {
        Policy::RoundRobin => {
            out.extend(targets.iter().filter(|t| pick(t)).map(|t| t.address));
            rotate(out, entry.next_rotation());
        }
        Policy::Ratio => ratio(targets, pick, rng, out),
        Policy::Locality => {
            sel.ecs_scope = locality(entry, targets, pick, client, topology, rng, out);
            rotate(out, entry.next_rotation());
        }
    }
    sel
}

#[inline]
fn rotate(out: &mut [IpAddr], by: usize) {
    if out.len() > 1 {
        out.rotate_left(by % out.len());
    }
}

/// One address drawn with probability ratio / sum of the candidates' ratios.
fn ratio(
    targets: &[TargetEntry],
    pick: fn(&TargetEntry) -> bool,
    rng: &mut fastrand::Rng,
    out: &mut Vec<IpAddr>,
) {
    let _ = (targets, pick, rng, out);
    // Implemented by the Ratio policy issue.
}

/// The Locality policy; returns the ECS scope prefix length.
fn locality(
    entry: &ServiceEntry,
    targets: &[TargetEntry],
    pick: fn(&TargetEntry) -> bool,
    client: &ClientInfo,
    topology: &Topology,
    rng: &mut fastrand::Rng,
    out: &mut Vec<IpAddr>,
) -> u8 {
    let _ = (entry, client, topology, rng);
    // Implemented by the Locality policy issue: until then every candidate.
    out.extend(targets.iter().filter(|t| pick(t)).map(|t| t.address));
    0
}
