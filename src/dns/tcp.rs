//! TCP (RFC 7766): length-prefixed messages, many per connection, answered in
//! order as they arrive (a client may send several before reading), with limits
//! that keep one client from holding the listener (CONTRACT §8):
//!
//! - a connection with no query for `idle` is closed, and so is one that stalls
//!   for `io` (the same, from the config) inside a message or while its answer is
//!   written (a client that never reads blocks its own connection, whose one
//!   answer buffer is all it costs: the next query is read only once the previous
//!   answer is written);
//! - at most `max_connections` open connections and `max_per_source` from one
//!   address; a new connection beyond either cap closes the *longest idle* one (of
//!   that address, or of all), so a client holding idle slots cannot lock out
//!   others, while the newest connection always gets its chance to be answered.
//!
//! The answer path of a connection touches only its own atomics; the table of
//! connections is locked only when one opens or closes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::timeout;

use super::engine::{self, Request, Scratch, Settings, Transport};
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

/// Timeouts and caps of the TCP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A connection with no new query for this long is closed.
    pub idle: Duration,
    /// Time allowed to receive the rest of a started message, or to send an answer.
    pub io: Duration,
    /// Concurrent connections; a new one beyond closes the longest idle.
    pub max_connections: usize,
    /// Concurrent connections from one address; a new one beyond closes that
    /// address's longest idle one.
    pub max_per_source: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(10),
            io: Duration::from_secs(10),
            max_connections: 1024,
            max_per_source: 64,
        }
    }
}

/// One open connection, as the table sees it.
struct Conn {
    peer: IpAddr,
    /// Milliseconds since the listener started at which the connection last became
    /// idle (opened, or finished writing an answer); `BUSY` while a query is read
    /// or answered.
    idle_since: AtomicU64,
    /// Told to close (evicted to make room).
    close: Notify,
}

const BUSY: u64 = u64::MAX;

/// The open connections, for the caps.
struct Table {
    start: Instant,
    next_id: u64,
    conns: HashMap<u64, Arc<Conn>>,
    per_source: HashMap<IpAddr, usize>,
}

impl Table {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Registers a connection from `peer`, first closing the longest idle one of
    /// that address (when it is at `max_per_source`) or of all (at
    /// `max_connections`). Returns its id and handle.
    fn open(&mut self, peer: IpAddr, limits: &Limits) -> (u64, Arc<Conn>) {
        if self.per_source.get(&peer).copied().unwrap_or(0) >= limits.max_per_source {
            self.evict(Some(peer));
        }
        if self.conns.len() >= limits.max_connections {
            self.evict(None);
        }
        let id = self.next_id;
        self.next_id += 1;
        let conn = Arc::new(Conn {
            peer,
            idle_since: AtomicU64::new(self.now_ms()),
            close: Notify::new(),
        });
        self.conns.insert(id, conn.clone());
        *self.per_source.entry(peer).or_default() += 1;
        (id, conn)
    }

    /// Closes the longest idle connection (of `peer` only, when given); a
    /// connection busy with a query is taken only when every candidate is busy.
    fn evict(&mut self, peer: Option<IpAddr>) {
        let victim = self
            .conns
            .iter()
            .filter(|(_, c)| peer.is_none_or(|p| c.peer == p))
            .min_by_key(|(id, c)| (c.idle_since.load(Ordering::Relaxed), **id))
            .map(|(id, _)| *id);
        if let Some(c) = victim.and_then(|id| self.remove(id)) {
            c.close.notify_one();
        }
    }

    fn remove(&mut self, id: u64) -> Option<Arc<Conn>> {
        let c = self.conns.remove(&id)?;
        if let Some(n) = self.per_source.get_mut(&c.peer) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&c.peer);
            }
        }
        Some(c)
    }
}

/// Accepts connections until `stop` turns true, then waits for the open ones to
/// finish their in-flight answer.
pub(super) async fn serve(
    listener: TcpListener,
    snapshots: Arc<ArcSwap<Snapshot>>,
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
    limits: Limits,
) {
    let table = Arc::new(Mutex::new(Table {
        start: Instant::now(),
        next_id: 0,
        conns: HashMap::new(),
        per_source: HashMap::new(),
    }));
    let mut conns = JoinSet::new();
    loop {
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let peer = peer.ip();
                    let (id, conn) = {
                        let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
                        let before = t.conns.len();
                        let opened = t.open(peer, &limits);
                        if t.conns.len() <= before {
                            metrics.dns_tcp_evicted();
                        }
                        opened
                    };
                    let (snapshots, settings, metrics, stop, table) =
                        (snapshots.clone(), settings.clone(), metrics.clone(), stop.clone(), table.clone());
                    conns.spawn(async move {
                        let start = table.lock().unwrap_or_else(|e| e.into_inner()).start;
                        connection(stream, peer, &conn, start, snapshots, settings, &metrics, stop, limits).await;
                        table.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
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
/// stays idle too long, it is evicted, or the server stops.
#[allow(clippy::too_many_arguments)]
async fn connection(
    stream: TcpStream,
    peer: IpAddr,
    conn: &Conn,
    start: Instant,
    snapshots: Arc<ArcSwap<Snapshot>>,
    settings: Arc<Settings>,
    metrics: &Metrics,
    mut stop: watch::Receiver<bool>,
    limits: Limits,
) {
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
            _ = conn.close.notified() => return,
            _ = stop.changed() => return,
        }
        conn.idle_since.store(BUSY, Ordering::Relaxed);
        query.resize(usize::from(u16::from_be_bytes(len)), 0);
        tokio::select! {
            r = timeout(limits.io, rd.read_exact(&mut query)) => match r {
                Ok(Ok(_)) => {}
                _ => return,
            },
            _ = conn.close.notified() => return,
        }
        let outcome = {
            let snapshot = snapshots.load();
            let req = Request {
                bytes: &query,
                src: peer,
                transport: Transport::Tcp,
                now_ms: crate::timefmt::now_unix_ms(),
            };
            engine::answer(
                &snapshot,
                &settings,
                &req,
                &mut rng,
                &mut scratch,
                &mut response,
            )
        };
        let Some(o) = outcome else {
            metrics.dns_dropped();
            conn.idle_since
                .store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
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
        // An evicted connection still finishes the answer it is writing (bounded
        // by `io`): the query was taken, the client should get its answer.
        match timeout(limits.io, wr.write_all(&framed)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
        conn.idle_since
            .store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per: usize) -> Limits {
        Limits {
            max_connections: max,
            max_per_source: per,
            ..Limits::default()
        }
    }

    fn table() -> Table {
        Table {
            start: Instant::now(),
            next_id: 0,
            conns: HashMap::new(),
            per_source: HashMap::new(),
        }
    }

    #[test]
    fn caps_close_the_longest_idle_first() {
        let l = limits(4, 2);
        let mut t = table();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        let (a0, ca0) = t.open(a, &l);
        let (a1, ca1) = t.open(a, &l);
        ca0.idle_since.store(50, Ordering::Relaxed);
        ca1.idle_since.store(10, Ordering::Relaxed);
        // A third from `a`: a's longest idle (a1, idle since 10) goes.
        let (a2, ca2) = t.open(a, &l);
        assert!(!t.conns.contains_key(&a1) && t.conns.contains_key(&a0));
        assert_eq!(t.per_source[&a], 2);
        ca2.idle_since.store(60, Ordering::Relaxed);
        // b takes the last two slots.
        let (b0, cb0) = t.open(b, &l);
        let (_b1, cb1) = t.open(b, &l);
        cb0.idle_since.store(5, Ordering::Relaxed);
        cb1.idle_since.store(70, Ordering::Relaxed);
        assert_eq!(t.conns.len(), 4);
        // Full: a newcomer from c closes the longest idle of all (b0).
        t.open(c, &l);
        assert_eq!(t.conns.len(), 4);
        assert!(!t.conns.contains_key(&b0));
        // A busy connection is only taken when every candidate is busy.
        for id in [a0, a2] {
            t.conns[&id].idle_since.store(BUSY, Ordering::Relaxed);
        }
        t.open(a, &l);
        assert_eq!(t.per_source[&a], 2);
        assert!(t.conns.contains_key(&a2) != t.conns.contains_key(&a0));
        // Removing keeps the per-source counts right.
        let ids: Vec<u64> = t.conns.keys().copied().collect();
        for id in ids {
            t.remove(id);
        }
        assert!(t.per_source.is_empty());
    }
}
