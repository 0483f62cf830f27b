//! UDP: one blocking worker thread per `SO_REUSEPORT` socket.
//!
//! Most of the CPU time of a UDP DNS server is spent in the kernel, per system
//! call. A worker therefore moves datagrams in batches: on Linux one `recvmmsg`
//! waits for the first datagram and takes whatever else is queued (up to
//! [`BATCH`]), the whole batch is answered from one snapshot load, and one
//! `sendmmsg` sends the answers. Elsewhere (or if the kernel lacks the calls) the
//! same loop runs with one `recv_from`/`send_to` per datagram.
//!
//! The I/O ([`serve`]) knows nothing about DNS: it hands each batch to a closure,
//! which answers it through [`Batch::answer_each`].

use std::io::{self, ErrorKind};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::engine::{self, Request, Scratch, Settings, Transport};
use super::rrl;
use crate::metrics::{DnsTally, Metrics};
use crate::snapshot::Snapshot;

/// How often a worker blocked on an idle socket looks at the stop flag.
const POLL: Duration = Duration::from_millis(200);
/// Most datagrams received (and answers sent) by one system call.
const BATCH: usize = 64;
/// Bytes kept of each received datagram. DNS queries are far smaller; a longer
/// datagram is cut by the kernel and answered FORMERR (see [`engine::answer_cut`]).
const SLOT: usize = 4096;

/// One UDP worker: its socket, the snapshots to answer from, the shared metrics.
pub(super) struct Worker {
    sock: UdpSocket,
    snapshots: Arc<ArcSwap<Snapshot>>,
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
}

impl Worker {
    pub(super) fn new(
        sock: UdpSocket,
        snapshots: Arc<ArcSwap<Snapshot>>,
        settings: Arc<Settings>,
        metrics: Arc<Metrics>,
        stop: Arc<AtomicBool>,
    ) -> io::Result<Self> {
        sock.set_nonblocking(false)?;
        sock.set_read_timeout(Some(POLL))?;
        Ok(Self {
            sock,
            snapshots,
            settings,
            metrics,
            stop,
        })
    }

    /// Answers datagrams until the stop flag is set.
    pub(super) fn run(self) {
        self.run_with(Io::best());
    }

    fn run_with(self, io: Io) {
        let mut rng = fastrand::Rng::new();
        let mut scratch = Scratch::new();
        let mut tally = DnsTally::default();
        let Self {
            sock,
            snapshots,
            settings,
            metrics,
            stop,
        } = self;
        serve(&sock, &stop, io, |batch| {
            // One snapshot for the whole batch, loaded after its datagrams arrived:
            // a query sent after a write's 2xx still sees that write. One clock read
            // too (a batch is answered within microseconds).
            let snapshot = snapshots.load();
            let now_ms = crate::timefmt::now_unix_ms();
            batch.answer_each(|query, peer, cut, response| {
                let outcome = if cut {
                    engine::answer_cut(query, response)
                } else {
                    let req = Request {
                        bytes: query,
                        src: peer.ip(),
                        transport: Transport::Udp,
                        now_ms,
                    };
                    engine::answer(&snapshot, &settings, &req, &mut rng, &mut scratch, response)
                };
                match outcome {
                    Some(o) => {
                        tally.query(o.qtype, o.rcode);
                        if o.truncated {
                            tally.truncated();
                        }
                        if o.failed_open {
                            tally.failed_open();
                        }
                        match o.rrl {
                            rrl::Verdict::Pass => true,
                            rrl::Verdict::Slip => {
                                tally.rrl_slipped();
                                true
                            }
                            rrl::Verdict::Drop => {
                                tally.rrl_dropped();
                                false
                            }
                        }
                    }
                    None => {
                        tally.dropped();
                        false
                    }
                }
            });
            // Counted before the answers leave: whoever reads /metrics after getting
            // an answer sees it counted.
            metrics.add_dns(&mut tally);
        });
    }
}

/// How datagrams are moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Io {
    /// `recvmmsg`/`sendmmsg`, [`BATCH`] datagrams per call.
    #[cfg(target_os = "linux")]
    Mmsg,
    /// `recv_from`/`send_to`, one datagram per call.
    Single,
}

impl Io {
    fn best() -> Self {
        #[cfg(target_os = "linux")]
        return Io::Mmsg;
        #[cfg(not(target_os = "linux"))]
        return Io::Single;
    }
}

/// Received datagrams and the answers to them, reused from batch to batch.
struct Batch {
    /// [`BATCH`] slots of [`SLOT`] bytes.
    queries: Box<[u8]>,
    lens: [usize; BATCH],
    /// The datagram was longer than [`SLOT`].
    cut: [bool; BATCH],
    peers: [SocketAddr; BATCH],
    responses: Vec<Vec<u8>>,
    /// Whether `responses[i]` is to be sent.
    reply: [bool; BATCH],
    len: usize,
}

impl Batch {
    fn new() -> Self {
        Self {
            queries: vec![0u8; BATCH * SLOT].into_boxed_slice(),
            lens: [0; BATCH],
            cut: [false; BATCH],
            peers: [SocketAddr::from(([0, 0, 0, 0], 0)); BATCH],
            responses: (0..BATCH).map(|_| Vec::with_capacity(1232)).collect(),
            reply: [false; BATCH],
            len: 0,
        }
    }

    /// Calls `f(query, peer, cut, response)` for each datagram in order; `f` writes
    /// the answer into `response` and returns whether to send it. `cut`: the
    /// datagram was longer than [`SLOT`] and `query` is its beginning.
    fn answer_each(&mut self, mut f: impl FnMut(&[u8], SocketAddr, bool, &mut Vec<u8>) -> bool) {
        for i in 0..self.len {
            let query = &self.queries[i * SLOT..i * SLOT + self.lens[i]];
            self.reply[i] = f(query, self.peers[i], self.cut[i], &mut self.responses[i]);
        }
    }
}

/// Receives batches on `sock` until `stop` is set, calls `answer` on each, and sends
/// the answers it produced. `sock` must be blocking with a read timeout (the stop
/// flag is looked at when it expires).
fn serve(sock: &UdpSocket, stop: &AtomicBool, mut io: Io, mut answer: impl FnMut(&mut Batch)) {
    let mut batch = Batch::new();
    #[cfg(target_os = "linux")]
    let mut mmsg = mmsg::Mmsg::new();
    while !stop.load(Ordering::Relaxed) {
        let received = match io {
            #[cfg(target_os = "linux")]
            Io::Mmsg => mmsg.recv(sock, &mut batch),
            Io::Single => recv_one(sock, &mut batch),
        };
        match received {
            Ok(0) => continue,
            Ok(_) => {}
            #[cfg(target_os = "linux")]
            Err(e) if io == Io::Mmsg && e.raw_os_error() == Some(libc::ENOSYS) => {
                tracing::info!("recvmmsg is not available: one system call per datagram");
                io = Io::Single;
            }
            Err(e) => {
                receive_failed(&e);
                continue;
            }
        }
        answer(&mut batch);
        match io {
            #[cfg(target_os = "linux")]
            Io::Mmsg => mmsg.send(sock, &batch),
            Io::Single => send_each(sock, &batch),
        }
    }
}

/// What to do about a failed receive: nothing for a timeout (the caller looks at
/// the stop flag) or leftovers of earlier sends; log and pause on anything else.
fn receive_failed(e: &io::Error) {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted => {}
        // ICMP errors of earlier sends surface here on some systems.
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset => {}
        _ => {
            tracing::warn!(error = %e, "UDP receive failed");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// One datagram with `recv_from`.
fn recv_one(sock: &UdpSocket, batch: &mut Batch) -> io::Result<usize> {
    batch.len = 0;
    let (n, peer) = sock.recv_from(&mut batch.queries[..SLOT])?;
    // `recv_from` cannot tell a cut datagram from one that fills the slot exactly:
    // both are read as SLOT bytes; the engine finds a cut one malformed.
    batch.lens[0] = n;
    batch.cut[0] = false;
    batch.peers[0] = peer;
    batch.len = 1;
    Ok(1)
}

/// Sends each answer with `send_to`; a failed send loses that answer only.
fn send_each(sock: &UdpSocket, batch: &Batch) {
    for i in 0..batch.len {
        if batch.reply[i] {
            let _ = sock.send_to(&batch.responses[i], batch.peers[i]);
        }
    }
}

#[cfg(target_os = "linux")]
mod mmsg {
    //! `recvmmsg`/`sendmmsg` with preallocated headers, addresses and I/O vectors.

    use std::io;
    use std::mem::{size_of, zeroed};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
    use std::os::fd::AsRawFd;

    use super::{BATCH, Batch, SLOT};

    /// The system call arguments, reused for every batch. Everything lives in
    /// boxes, so the pointers between them stay valid when this struct moves.
    pub(super) struct Mmsg {
        names: Box<[libc::sockaddr_storage; BATCH]>,
        recv_iov: Box<[libc::iovec; BATCH]>,
        recv_hdrs: Box<[libc::mmsghdr; BATCH]>,
        send_iov: Box<[libc::iovec; BATCH]>,
        send_hdrs: Box<[libc::mmsghdr; BATCH]>,
        /// Length of each received address.
        name_len: [libc::socklen_t; BATCH],
        /// The receive buffer the receive headers point into (null: not set up).
        base: *mut u8,
        /// Receive headers filled by the last call: their address lengths need
        /// resetting, the others are as set up.
        dirty: usize,
    }

    impl Mmsg {
        pub(super) fn new() -> Self {
            // SAFETY: all-zero is a valid value of these plain C structs.
            unsafe {
                Self {
                    names: Box::new(zeroed()),
                    recv_iov: Box::new(zeroed()),
                    recv_hdrs: Box::new(zeroed()),
                    send_iov: Box::new(zeroed()),
                    send_hdrs: Box::new(zeroed()),
                    name_len: [0; BATCH],
                    base: std::ptr::null_mut(),
                    dirty: 0,
                }
            }
        }

        /// Waits for a datagram (up to the socket's read timeout) and takes up to
        /// [`BATCH`] queued ones. Returns how many.
        pub(super) fn recv(&mut self, sock: &UdpSocket, batch: &mut Batch) -> io::Result<usize> {
            batch.len = 0;
            let base = batch.queries.as_mut_ptr();
            if base != self.base {
                // First call (or another batch): point every header at its slot.
                for i in 0..BATCH {
                    self.recv_iov[i] = libc::iovec {
                        // SAFETY: slot i lies inside `queries` (BATCH * SLOT bytes).
                        iov_base: unsafe { base.add(i * SLOT) }.cast(),
                        iov_len: SLOT,
                    };
                    self.recv_hdrs[i] = header(&mut self.names[i], NAME_MAX, &mut self.recv_iov[i]);
                }
                self.base = base;
            } else {
                // The kernel wrote the address length of the headers it filled.
                for h in &mut self.recv_hdrs[..self.dirty] {
                    h.msg_hdr.msg_namelen = NAME_MAX;
                }
            }
            self.dirty = 0;
            // SAFETY: every header points at live buffers of the sizes given, owned by
            // `self` and `batch` and not touched until the call returns.
            let n = unsafe {
                libc::recvmmsg(
                    sock.as_raw_fd(),
                    self.recv_hdrs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = n as usize;
            self.dirty = n;
            for i in 0..n {
                let h = &self.recv_hdrs[i];
                self.name_len[i] = h.msg_hdr.msg_namelen;
                batch.lens[i] = (h.msg_len as usize).min(SLOT);
                batch.cut[i] = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
                // Not a family we know (cannot happen on an IP socket): the answer
                // goes back to the address as received, the policies see 0.0.0.0.
                batch.peers[i] = socket_addr(&self.names[i], self.name_len[i])
                    .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
            }
            batch.len = n;
            Ok(n)
        }

        /// Sends the answers of `batch` with as few `sendmmsg` calls as the kernel
        /// allows. A datagram the kernel refuses is skipped (its client retries).
        pub(super) fn send(&mut self, sock: &UdpSocket, batch: &Batch) {
            let mut count = 0;
            for i in 0..batch.len {
                if !batch.reply[i] {
                    continue;
                }
                let r = &batch.responses[i];
                self.send_iov[count] = libc::iovec {
                    iov_base: r.as_ptr() as *mut libc::c_void,
                    iov_len: r.len(),
                };
                // The peer's address, where it was received.
                let name: *mut libc::sockaddr_storage = &mut self.names[i];
                self.send_hdrs[count] = header(name, self.name_len[i], &mut self.send_iov[count]);
                count += 1;
            }
            let mut at = 0;
            let mut retried = false;
            while at < count {
                // SAFETY: headers at..count point at the batch's responses and the
                // addresses in `names`, alive and unchanged during the call.
                let n = unsafe {
                    libc::sendmmsg(
                        sock.as_raw_fd(),
                        self.send_hdrs[at..].as_mut_ptr(),
                        (count - at) as libc::c_uint,
                        0,
                    )
                };
                if n > 0 {
                    at += n as usize;
                    retried = false;
                    continue;
                }
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    // Out of buffer space: wait once for room, then give up on this one.
                    Some(libc::EAGAIN | libc::ENOBUFS) if !retried => {
                        retried = true;
                        wait_writable(sock);
                    }
                    // The datagram at `at` cannot be sent (peer unreachable, bad
                    // address...): skip it, send the rest.
                    _ => {
                        at += 1;
                        retried = false;
                    }
                }
            }
        }
    }

    const NAME_MAX: libc::socklen_t = size_of::<libc::sockaddr_storage>() as libc::socklen_t;

    /// A message header for one datagram: address, its length, one I/O vector.
    fn header(
        name: *mut libc::sockaddr_storage,
        name_len: libc::socklen_t,
        iov: *mut libc::iovec,
    ) -> libc::mmsghdr {
        // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths).
        let mut h: libc::mmsghdr = unsafe { zeroed() };
        h.msg_hdr.msg_name = name.cast();
        h.msg_hdr.msg_namelen = name_len;
        h.msg_hdr.msg_iov = iov;
        h.msg_hdr.msg_iovlen = 1;
        h
    }

    /// Blocks until `sock` can send, for at most 10 ms.
    fn wait_writable(sock: &UdpSocket) {
        let mut p = libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe {
            libc::poll(&mut p, 1, 10);
        }
    }

    /// The socket address in `ss`, for the families we serve.
    fn socket_addr(ss: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
        let len = len as usize;
        match libc::c_int::from(ss.ss_family) {
            libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let a =
                    unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let a =
                    unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
