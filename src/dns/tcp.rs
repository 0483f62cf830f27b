//! TCP (RFC 7766): length-prefixed messages, many per connection, answered in
//! order as they arrive (a client may send several before reading), an idle
//! timeout, and a cap on concurrent connections.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::timeout;

use super::engine::{self, Scratch, Transport};
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

/// Timeouts and caps of the TCP listener.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// A connection with no new query for this long is closed.
    pub idle: Duration,
    /// Time allowed to receive the rest of a started message, or to send an answer.
    pub io: Duration,
    /// Concurrent connections; more are closed at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(10),
            io: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
}

/// Accepts connections until `stop` turns true, then waits for the open ones to
/// finish their in-flight answer.
pub(super) async fn serve(
    listener: TcpListener,
    snapshots: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
    limits: Limits,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut conns = JoinSet::new();
    loop {
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _peer)) => {
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        tracing::debug!("TCP connection limit reached; closing a new connection");
                        continue;
                    };
                    let (snapshots, metrics, stop) = (snapshots.clone(), metrics.clone(), stop.clone());
                    conns.spawn(async move {
                        connection(stream, snapshots, metrics, stop, limits).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off a little.
                    tracing::warn!(error = %e, "TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            r = stop.changed() => if r.is_err() {
                break; // the server is gone: stop as well
            },
        }
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// Answers the queries of one connection in order until the client closes it, it
/// stays idle too long, or the server stops.
async fn connection(
    stream: TcpStream,
    snapshots: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
    limits: Limits,
) {
    let peer = match stream.peer_addr() {
        Ok(p) => p.ip(),
        Err(_) => return,
    };
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(4096, rd);
    let mut rng = fastrand::Rng::new();
    let mut scratch = Scratch::new();
    let mut query = Vec::with_capacity(512);
    let mut response = Vec::with_capacity(4096);
    let mut framed = Vec::with_capacity(4096);
    loop {
        if *stop.borrow() {
            return;
        }
        let mut len = [0u8; 2];
        tokio::select! {
            r = timeout(limits.idle, rd.read_exact(&mut len)) => match r {
                Ok(Ok(_)) => {}
                _ => return, // closed, error or idle
            },
            _ = stop.changed() => return,
        }
        query.resize(usize::from(u16::from_be_bytes(len)), 0);
        match timeout(limits.io, rd.read_exact(&mut query)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let outcome = {
            let snapshot = snapshots.load();
            engine::answer(
                &snapshot,
                &query,
                peer,
                Transport::Tcp,
                crate::timefmt::now_unix_ms(),
                &mut rng,
                &mut scratch,
                &mut response,
            )
        };
        let Some(o) = outcome else {
            metrics.dns_dropped();
            continue;
        };
        metrics.dns_query(o.qtype, o.rcode);
        if o.truncated {
            metrics.dns_truncated();
        }
        if o.failed_open {
            metrics.dns_failed_open();
        }
        framed.clear();
        framed.extend_from_slice(&(response.len() as u16).to_be_bytes());
        framed.extend_from_slice(&response);
        match timeout(limits.io, wr.write_all(&framed)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}
