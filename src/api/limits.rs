//! Connection limits of the API listener: a cap on open connections, a header
//! timeout and an idle timeout (CONTRACT §8).
//!
//! - **Cap.** At most `api_max_connections` connections are open at once. At the
//!   cap the listener stops accepting: further connections wait in the kernel's
//!   backlog and hold no descriptor of ours, so however many clients connect, the
//!   API never takes the descriptors that DNS over TCP, the store and the prober
//!   need. An `accept` that fails anyway (EMFILE, ENFILE) is logged and retried
//!   after a pause; it never stops the server.
//! - **Header timeout.** Once the first byte of a request has arrived, its headers
//!   (up to the blank line) must be complete within `api_header_timeout_seconds`,
//!   or the connection is closed: a client dribbling headers (slowloris) cannot
//!   hold a slot.
//! - **Idle timeout.** A connection on which nothing arrives for
//!   `api_idle_timeout_seconds` while the server waits for a request (a new one,
//!   or the next one on a keep-alive connection) or for the rest of a body is
//!   closed, and so is one whose peer does not read the answer for that long.
//!
//! The timeouts are enforced by [`TimedIo`], a wrapper of the socket that watches
//! the bytes go by: no HTTP parsing beyond finding the end of the headers.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// The API listener's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Counters of the listener (exported as `gslb_api_connections` and
/// `gslb_api_connections_closed_total{reason}`).
#[derive(Debug, Default)]
pub struct ConnStats {
    pub open: AtomicU64,
    pub header_timeouts: AtomicU64,
    pub idle_timeouts: AtomicU64,
    pub accept_errors: AtomicU64,
}

/// A TCP listener that enforces [`Limits`].
pub struct LimitedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    limits: Limits,
    stats: Arc<ConnStats>,
    last_error_log: Option<Instant>,
}

impl LimitedListener {
    pub fn new(inner: TcpListener, limits: Limits, stats: Arc<ConnStats>) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            limits,
            stats,
            last_error_log: None,
        }
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = TimedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TimedIo, SocketAddr) {
        // Wait for a free slot before accepting: at the cap, connections queue in
        // the kernel, not in our descriptor table.
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    self.stats.open.fetch_add(1, Ordering::Relaxed);
                    return (
                        TimedIo::new(stream, permit, self.limits, self.stats.clone()),
                        addr,
                    );
                }
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    // EMFILE/ENFILE and the like: the process is out of something.
                    // Log at most every 10 s, pause, and try again.
                    self.stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                    let now = Instant::now();
                    if self
                        .last_error_log
                        .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
                    {
                        self.last_error_log = Some(now);
                        tracing::error!(error = %e, "API: cannot accept a connection; retrying");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Where a connection is in its request cycle, as seen from the bytes.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request (a new connection, or after an answer was written).
    Idle { since: Instant },
    /// The first bytes of a request arrived; the end of its headers has not.
    /// `tail` holds the last bytes seen, to find `\r\n\r\n` across reads.
    Headers { start: Instant, tail: [u8; 3] },
    /// Headers complete: a body may follow, then the answer.
    Body { last_read: Instant },
}

/// A socket with the header and idle timeouts, holding its slot of the cap.
pub struct TimedIo {
    io: TcpStream,
    _permit: OwnedSemaphorePermit,
    limits: Limits,
    stats: Arc<ConnStats>,
    phase: Phase,
    timer: Pin<Box<Sleep>>,
    /// When a write started waiting for the peer to read.
    write_stalled_since: Option<Instant>,
}

impl TimedIo {
    fn new(
        io: TcpStream,
        permit: OwnedSemaphorePermit,
        limits: Limits,
        stats: Arc<ConnStats>,
    ) -> Self {
        let now = Instant::now();
        Self {
            io,
            _permit: permit,
            limits,
            stats,
            phase: Phase::Idle { since: now },
            timer: Box::pin(tokio::time::sleep_until(now + limits.idle_timeout)),
            write_stalled_since: None,
        }
    }

    fn read_deadline(&self) -> Instant {
        match self.phase {
            Phase::Idle { since } => since + self.limits.idle_timeout,
            Phase::Headers { start, .. } => start + self.limits.header_timeout,
            Phase::Body { last_read } => last_read + self.limits.idle_timeout,
        }
    }

    /// True when `deadline` has passed; otherwise arms the timer to wake the task.
    fn expired(&mut self, deadline: Instant, cx: &mut Context<'_>) -> bool {
        if Instant::now() >= deadline {
            return true;
        }
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        self.timer.as_mut().poll(cx).is_ready()
    }

    fn saw(&mut self, bytes: &[u8]) {
        let now = Instant::now();
        let (start, mut tail) = match self.phase {
            Phase::Idle { .. } => (now, [0u8; 3]),
            Phase::Headers { start, tail } => (start, tail),
            Phase::Body { .. } => {
                self.phase = Phase::Body { last_read: now };
                return;
            }
        };
        // Find the blank line that ends the headers, across read boundaries.
        let mut window = [tail[0], tail[1], tail[2], 0];
        for &b in bytes {
            window = [window[1], window[2], window[3], b];
            if &window == b"\r\n\r\n" {
                self.phase = Phase::Body { last_read: now };
                return;
            }
        }
        tail = [window[1], window[2], window[3]];
        self.phase = Phase::Headers { start, tail };
    }
}

impl Drop for TimedIo {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut me.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let got = buf.filled().len() - before;
                if got > 0 {
                    let bytes = buf.filled()[before..].to_vec();
                    me.saw(&bytes);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let deadline = me.read_deadline();
                if me.expired(deadline, cx) {
                    match me.phase {
                        Phase::Headers { .. } => {
                            me.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            me.stats.idle_timeouts.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    // End of stream: the server closes the connection.
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        match Pin::new(&mut me.io).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                me.write_stalled_since = None;
                if n > 0 {
                    me.phase = Phase::Idle {
                        since: Instant::now(),
                    };
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let since = *me.write_stalled_since.get_or_insert_with(Instant::now);
                if me.expired(since + me.limits.idle_timeout, cx) {
                    me.stats.idle_timeouts.fetch_add(1, Ordering::Relaxed);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client did not read the answer",
                    )));
                }
                Poll::Pending
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        match Pin::new(&mut me.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                me.write_stalled_since = None;
                if n > 0 {
                    me.phase = Phase::Idle {
                        since: Instant::now(),
                    };
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let since = *me.write_stalled_since.get_or_insert_with(Instant::now);
                if me.expired(since + me.limits.idle_timeout, cx) {
                    me.stats.idle_timeouts.fetch_add(1, Ordering::Relaxed);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client did not read the answer",
                    )));
                }
                Poll::Pending
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Exports [`ConnStats`] on `/metrics`.
#[derive(Debug)]
pub struct ConnCollector(pub Arc<ConnStats>, pub usize);

impl prometheus_client::collector::Collector for ConnCollector {
    fn encode(
        &self,
        mut enc: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use crate::metrics::{counter, counter_family, gauge};
        gauge(
            &mut enc,
            crate::metrics::API_CONNECTIONS,
            "API connections open now",
            self.0.open.load(Ordering::Relaxed),
        )?;
        gauge(
            &mut enc,
            crate::metrics::API_MAX_CONNECTIONS,
            "API connections allowed at once (api_max_connections)",
            self.1,
        )?;
        counter_family(
            &mut enc,
            crate::metrics::API_TIMEOUTS,
            "API connections closed by a timeout, by which one",
            [
                (
                    [("timeout", "header")],
                    self.0.header_timeouts.load(Ordering::Relaxed),
                ),
                (
                    [("timeout", "idle")],
                    self.0.idle_timeouts.load(Ordering::Relaxed),
                ),
            ],
        )?;
        counter(
            &mut enc,
            crate::metrics::API_ACCEPT_ERRORS,
            "Failed accepts on the API listener (e.g. out of descriptors), retried",
            self.0.accept_errors.load(Ordering::Relaxed),
        )
    }
}
