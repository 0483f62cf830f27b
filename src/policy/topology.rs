//! Client networks -> locality, looked up by longest prefix.

use std::net::IpAddr;

use crate::model::Locality;

/// One `[[topology]]` entry of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyEntry {
    pub addr: IpAddr,
    pub prefix: u8,
    pub locality: Locality,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("cidr {0:?} is not an address/prefix-length")]
    BadCidr(String),
    #[error("cidr {0:?} has host bits set")]
    HostBits(String),
    #[error("cidr {0:?} is listed twice")]
    Duplicate(String),
}

/// The topology table. Lookups return the locality and the prefix length of the entry
/// that decided.
#[derive(Debug, Default, Clone)]
pub struct Topology {
    entries: Vec<TopologyEntry>,
}

impl Topology {
    pub fn new(entries: Vec<TopologyEntry>) -> Self {
        Self { entries }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Longest-prefix match of `addr`.
    pub fn lookup(&self, addr: IpAddr) -> Option<(&Locality, u8)> {
        let _ = addr;
        None
    }
}
