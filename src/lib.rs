//! gslb: an authoritative DNS server that does global server load balancing.
//!
//! The crate is split into a fast read path (`dns`, `policy`) that only ever reads an
//! immutable [`snapshot::Snapshot`], and a control plane (`api`, `registry`, `store`,
//! `health`) that builds new snapshots and swaps them in atomically. See
//! `docs/ARCHITECTURE.md` for the module map and the invariants.

pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod dns;
pub mod events;
pub mod health;
pub mod istio;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod registry;
pub mod reload;
pub mod resolver;
pub mod snapshot;
pub mod store;
pub mod timefmt;
pub mod tls;
pub mod zone;
