//! One probe: a TCP connect within the timeout, closed at once; or an HTTP(S) GET
//! ([`super::http`]).

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpSocket;

/// How a probe ended. Everything but [`ProbeResult::Success`] and
/// [`ProbeResult::LocalError`] is a failure of the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    Success,
    /// ECONNREFUSED: nothing listens (or a firewall rejects with RST).
    Refused,
    /// ECONNRESET during the handshake.
    Reset,
    /// EHOSTUNREACH / ENETUNREACH (ICMP unreachable, no route).
    Unreachable,
    /// No answer within `timeoutSeconds` (a SYN never answered, a full backlog, an
    /// HTTP server that never answers).
    Timeout,
    /// An HTTP probe got a status outside 200-399.
    HttpStatus(u16),
    /// Any other connect error; counts as a failure.
    Error(String),
    /// This host could not even try (out of file descriptors or ephemeral ports):
    /// says nothing about the target, so it does not move its verdict.
    LocalError(String),
}

/// Labels of [`ProbeResult`] in `gslb_health_probes_total{result=...}`, by index.
pub const RESULT_LABELS: [&str; 8] = [
    "success",
    "refused",
    "reset",
    "unreachable",
    "timeout",
    "error",
    "local_error",
    "http_status",
];

impl ProbeResult {
    /// `Some(true)` success, `Some(false)` failure, `None` inconclusive.
    pub fn verdict(&self) -> Option<bool> {
        match self {
            ProbeResult::Success => Some(true),
            ProbeResult::LocalError(_) => None,
            _ => Some(false),
        }
    }

    /// Index into [`RESULT_LABELS`].
    pub fn index(&self) -> usize {
        match self {
            ProbeResult::Success => 0,
            ProbeResult::Refused => 1,
            ProbeResult::Reset => 2,
            ProbeResult::Unreachable => 3,
            ProbeResult::Timeout => 4,
            ProbeResult::Error(_) => 5,
            ProbeResult::LocalError(_) => 6,
            ProbeResult::HttpStatus(_) => 7,
        }
    }

    /// The `lastError` text of a failed probe (of an HTTP probe with `http`); `None`
    /// on success.
    pub fn error_text(&self, timeout: Duration, http: bool) -> Option<String> {
        match self {
            ProbeResult::Success => None,
            ProbeResult::Refused => Some("connection refused".into()),
            ProbeResult::Reset => Some("connection reset".into()),
            ProbeResult::Unreachable => Some("host or network unreachable".into()),
            ProbeResult::Timeout => Some(format!(
                "no {} within the {}s timeout",
                if http { "HTTP response" } else { "connection" },
                timeout.as_secs()
            )),
            ProbeResult::HttpStatus(s) => Some(format!("HTTP status {s}")),
            ProbeResult::Error(e) | ProbeResult::LocalError(e) => Some(e.clone()),
        }
    }

    pub(crate) fn from_io(e: &io::Error) -> ProbeResult {
        match e.raw_os_error() {
            Some(libc::ECONNREFUSED) => ProbeResult::Refused,
            Some(libc::ECONNRESET) => ProbeResult::Reset,
            Some(libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EHOSTDOWN | libc::ENETDOWN) => {
                ProbeResult::Unreachable
            }
            Some(libc::ETIMEDOUT) => ProbeResult::Timeout,
            Some(
                libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::EADDRNOTAVAIL
                | libc::EAGAIN,
            ) => ProbeResult::LocalError(format!("cannot probe from this host: {e}")),
            _ => ProbeResult::Error(e.to_string()),
        }
    }
}

/// The probe of one probe stream, set up once and run every period.
#[derive(Debug)]
pub enum Probe {
    Tcp(SocketAddr),
    Http(Box<super::http::HttpProbe>),
}

impl Probe {
    /// Runs one probe, bounded by `timeout`; returns its result and duration.
    pub async fn run(&self, timeout: Duration) -> (ProbeResult, Duration) {
        match self {
            Probe::Tcp(addr) => probe(*addr, timeout).await,
            Probe::Http(h) => {
                let start = Instant::now();
                let r = h.probe(timeout).await;
                (r, start.elapsed())
            }
        }
    }
}

/// Connects to `addr` within `timeout` and closes the connection at once with a RST
/// (zero linger), so that thousands of probes leave no TIME_WAIT sockets behind.
/// Dropping the returned future (a cancelled probe) closes the socket too.
pub async fn probe(addr: SocketAddr, timeout: Duration) -> (ProbeResult, Duration) {
    let start = Instant::now();
    let result = connect(addr, timeout).await;
    (result, start.elapsed())
}

async fn connect(addr: SocketAddr, timeout: Duration) -> ProbeResult {
    let socket = match if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    } {
        Ok(s) => s,
        Err(e) => return ProbeResult::from_io(&e),
    };
    // Best effort: without it the close is a FIN instead of a RST.
    let _ = socket.set_zero_linger();
    match tokio::time::timeout(timeout, socket.connect(addr)).await {
        Ok(Ok(stream)) => {
            drop(stream);
            ProbeResult::Success
        }
        Ok(Err(e)) => ProbeResult::from_io(&e),
        Err(_) => ProbeResult::Timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listener_succeeds_and_closed_port_is_refused() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (r, _) = probe(addr, Duration::from_secs(2)).await;
        assert_eq!(r, ProbeResult::Success);
        // The probe connection was accepted by the kernel and then closed by us.
        let (mut conn, _) = l.accept().unwrap();
        use std::io::Read;
        let mut buf = [0u8; 1];
        let n = conn.read(&mut buf);
        assert!(
            matches!(n, Ok(0) | Err(_)),
            "probe left the connection open: {n:?}"
        );
        drop(l);
        let (r, _) = probe(addr, Duration::from_secs(2)).await;
        assert_eq!(r, ProbeResult::Refused);
        assert_eq!(r.verdict(), Some(false));
        assert_eq!(
            r.error_text(Duration::from_secs(2), false).as_deref(),
            Some("connection refused")
        );
    }

    #[tokio::test]
    async fn probes_ipv6() {
        // Skipped where the host has no IPv6 loopback.
        let Ok(l) = std::net::TcpListener::bind("[::1]:0") else {
            return;
        };
        let addr = l.local_addr().unwrap();
        assert_eq!(
            probe(addr, Duration::from_secs(2)).await.0,
            ProbeResult::Success
        );
        drop(l);
        assert_eq!(
            probe(addr, Duration::from_secs(2)).await.0,
            ProbeResult::Refused
        );
    }

    #[tokio::test]
    async fn a_full_backlog_times_out() {
        // A listener that never accepts, with a backlog of 0: once the accept queue is
        // full the kernel drops further SYNs, exactly like a black-holed VIP.
        let sock = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .unwrap();
        sock.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        sock.listen(0).unwrap();
        let addr = sock.local_addr().unwrap().as_socket().unwrap();
        // Fill the queue with connections nobody accepts.
        let mut fillers = Vec::new();
        let mut timed_out = false;
        for _ in 0..8 {
            let (r, took) = probe(addr, Duration::from_millis(300)).await;
            if r == ProbeResult::Timeout {
                assert!(took >= Duration::from_millis(300), "{took:?}");
                assert!(took < Duration::from_secs(2), "{took:?}");
                timed_out = true;
                break;
            }
            assert_eq!(r, ProbeResult::Success);
            // Keep a kernel-level connection in the queue.
            fillers.push(std::net::TcpStream::connect_timeout(
                &addr,
                Duration::from_millis(300),
            ));
        }
        assert!(timed_out, "the SYN was answered every time");
    }

    #[test]
    fn classifies_errors() {
        let e = |code| io::Error::from_raw_os_error(code);
        assert_eq!(
            ProbeResult::from_io(&e(libc::ECONNRESET)),
            ProbeResult::Reset
        );
        assert_eq!(
            ProbeResult::from_io(&e(libc::EHOSTUNREACH)),
            ProbeResult::Unreachable
        );
        assert_eq!(
            ProbeResult::from_io(&e(libc::ENETUNREACH)),
            ProbeResult::Unreachable
        );
        let local = ProbeResult::from_io(&e(libc::EMFILE));
        assert!(matches!(local, ProbeResult::LocalError(_)));
        assert_eq!(local.verdict(), None);
        assert!(matches!(
            ProbeResult::from_io(&e(libc::EACCES)),
            ProbeResult::Error(_)
        ));
        for (i, r) in [
            ProbeResult::Success,
            ProbeResult::Refused,
            ProbeResult::Reset,
            ProbeResult::Unreachable,
            ProbeResult::Timeout,
            ProbeResult::Error(String::new()),
            ProbeResult::LocalError(String::new()),
        ]
        .iter()
        .enumerate()
        {
            assert_eq!(r.index(), i);
        }
    }
}
