//! UDP: one blocking worker per socket. The receive/answer/send loop is kept small
//! on purpose so that it can be swapped for batched `recvmmsg`/`sendmmsg` later.

use std::io::ErrorKind;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::engine::{self, Scratch, Transport};
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

/// How often a worker blocked on an idle socket looks at the stop flag.
const POLL: Duration = Duration::from_millis(200);
/// Largest datagram accepted (anything longer arrives cut and gets FORMERR).
const MAX_DATAGRAM: usize = 65535;

/// One UDP worker: its socket, its buffers and its rng.
pub(super) struct Worker {
    sock: UdpSocket,
    snapshots: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
}

impl Worker {
    pub(super) fn new(
        sock: UdpSocket,
        snapshots: Arc<ArcSwap<Snapshot>>,
        metrics: Arc<Metrics>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<Self> {
        sock.set_nonblocking(false)?;
        sock.set_read_timeout(Some(POLL))?;
        Ok(Self {
            sock,
            snapshots,
            metrics,
            stop,
        })
    }

    /// Answers datagrams until the stop flag is set.
    pub(super) fn run(self) {
        let mut rng = fastrand::Rng::new();
        let mut scratch = Scratch::new();
        let mut query = vec![0u8; MAX_DATAGRAM];
        let mut response = Vec::with_capacity(4096);
        while !self.stop.load(Ordering::Relaxed) {
            let (n, peer) = match self.sock.recv_from(&mut query) {
                Ok(r) => r,
                Err(e) => {
                    match e.kind() {
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted => {}
                        // ICMP errors of earlier sends surface here on Linux.
                        ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset => {}
                        _ => {
                            tracing::warn!(error = %e, "UDP receive failed");
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                    continue;
                }
            };
            let snapshot = self.snapshots.load();
            match engine::answer(
                &snapshot,
                &query[..n],
                peer.ip(),
                Transport::Udp,
                &mut rng,
                &mut scratch,
                &mut response,
            ) {
                Some(o) => {
                    self.metrics.dns_query(o.qtype, o.rcode);
                    if o.truncated {
                        self.metrics.dns_truncated();
                    }
                    if o.failed_open {
                        self.metrics.dns_failed_open();
                    }
                    // A failed send (peer gone, port 0) loses this answer only.
                    let _ = self.sock.send_to(&response, peer);
                }
                None => self.metrics.dns_dropped(),
            }
        }
    }
}
