//! The DNS server: UDP and TCP listeners and the answer engine.
//!
//! - [`engine`]: the pure answer function (snapshot + query bytes -> response bytes).
//! - [`wire`]: reading queries and writing responses on the hot path.
//! - [`cookie`]: server cookies (RFC 7873, RFC 9018).
//! - [`rrl`]: response rate limiting of UDP answers.
//! - `udp`: one blocking worker thread per core and address, each with its own
//!   `SO_REUSEPORT` socket, moving datagrams in batches (`recvmmsg`/`sendmmsg`)
//!   and loading the snapshot once per batch.
//! - `tcp`: tokio tasks, many pipelined queries per connection (RFC 7766).

pub mod cookie;
pub mod engine;
#[doc(hidden)]
pub mod fuzzing;
pub mod rrl;
mod tcp;
mod udp;
pub mod wire;

pub use engine::Settings;
pub use tcp::Limits as TcpLimits;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

/// Bound but not yet serving DNS listeners (UDP and TCP on each address).
pub struct DnsServer {
    listeners: Vec<Bound>,
}

/// The sockets of one listen address.
struct Bound {
    addr: SocketAddr,
    tcp: std::net::TcpListener,
    udp: Vec<std::net::UdpSocket>,
}

/// Running listeners; [`Running::join`] waits for them after shutdown was signalled.
pub struct Running {
    udp: Vec<std::thread::JoinHandle<()>>,
    tcp: Vec<tokio::task::JoinHandle<()>>,
}

impl DnsServer {
    /// Binds UDP and TCP on every address; fails with the address on any error.
    /// Each address gets one UDP socket per available core (`SO_REUSEPORT`).
    pub fn bind(addrs: &[SocketAddr]) -> anyhow::Result<Self> {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::bind_with_workers(addrs, workers)
    }

    /// [`DnsServer::bind`] with an explicit number of UDP workers per address.
    pub fn bind_with_workers(addrs: &[SocketAddr], workers: usize) -> anyhow::Result<Self> {
        let mut listeners = Vec::with_capacity(addrs.len());
        for &addr in addrs {
            // TCP first and without SO_REUSEPORT: a second server on the same port
            // fails here even if its UDP sockets could share the port.
            let tcp =
                bind_tcp(addr).with_context(|| format!("dns_listen {addr}: cannot bind TCP"))?;
            // Port 0: every socket takes the port the kernel gave the first one.
            let addr = SocketAddr::new(addr.ip(), tcp.local_addr()?.port());
            let udp = (0..workers.max(1))
                .map(|_| bind_udp(addr))
                .collect::<std::io::Result<Vec<_>>>()
                .with_context(|| format!("dns_listen {addr}: cannot bind UDP"))?;
            listeners.push(Bound { addr, tcp, udp });
        }
        Ok(Self { listeners })
    }

    /// The bound addresses (with the real port when 0 was asked for).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.addr).collect()
    }

    /// Starts answering from the snapshots in `snapshots` until `stop` turns true.
    /// Must be called inside a tokio runtime (TCP runs as tasks).
    pub fn start(
        self,
        snapshots: Arc<ArcSwap<Snapshot>>,
        settings: Arc<Settings>,
        tcp_limits: TcpLimits,
        metrics: Arc<Metrics>,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<Running> {
        // The UDP threads poll a flag; a task turns the watch channel into it.
        let stopping = Arc::new(AtomicBool::new(false));
        {
            let stopping = stopping.clone();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                let _ = stop.wait_for(|s| *s).await;
                stopping.store(true, Ordering::SeqCst);
            });
        }
        let mut running = Running {
            udp: Vec::new(),
            tcp: Vec::new(),
        };
        for l in self.listeners {
            let workers = l.udp.len();
            for (i, sock) in l.udp.into_iter().enumerate() {
                let worker = udp::Worker::new(
                    sock,
                    snapshots.clone(),
                    settings.clone(),
                    metrics.clone(),
                    stopping.clone(),
                )
                .with_context(|| format!("dns_listen {}: UDP socket setup", l.addr))?;
                let handle = std::thread::Builder::new()
                    .name(format!("gslb-udp-{i}"))
                    .spawn(move || worker.run())
                    .context("cannot start a UDP worker thread")?;
                running.udp.push(handle);
            }
            l.tcp
                .set_nonblocking(true)
                .with_context(|| format!("dns_listen {}: TCP socket setup", l.addr))?;
            let listener = tokio::net::TcpListener::from_std(l.tcp)
                .with_context(|| format!("dns_listen {}: TCP socket setup", l.addr))?;
            running.tcp.push(tokio::spawn(tcp::serve(
                listener,
                snapshots.clone(),
                settings.clone(),
                metrics.clone(),
                stop.clone(),
                tcp_limits,
            )));
            tracing::info!(address = %l.addr, udp_workers = workers, "DNS listening on UDP and TCP");
        }
        Ok(running)
    }
}

impl Running {
    /// Waits until every listener stopped and in-flight answers were sent.
    pub async fn join(self) {
        for t in self.tcp {
            let _ = t.await;
        }
        let udp = self.udp;
        let _ = tokio::task::spawn_blocking(move || {
            for h in udp {
                let _ = h.join();
            }
        })
        .await;
    }
}

fn bind_tcp(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// Receive buffer asked for on each UDP socket.
const UDP_RECV_BUFFER: usize = 1 << 20;

fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_port(true)?;
    // Room for bursts (the kernel caps it at net.core.rmem_max): a full queue drops.
    let _ = s.set_recv_buffer_size(UDP_RECV_BUFFER);
    s.bind(&addr.into())?;
    Ok(s.into())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpStream, UdpSocket};
    use std::time::Duration;

    use super::*;
    use crate::zone::ZoneSet;

    fn snapshots() -> Arc<ArcSwap<Snapshot>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("zones");
        Arc::new(ArcSwap::from_pointee(Snapshot {
            zones: Arc::new(ZoneSet::load_dir(&dir).unwrap()),
            ..Default::default()
        }))
    }

    /// A query for www.gslb.example A with id 0x4242.
    const QUERY: &[u8] = b"\x42\x42\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x04gslb\x07example\x00\x00\x01\x00\x01";

    fn udp_ask(addr: SocketAddr) -> Option<Vec<u8>> {
        let bind = if addr.is_ipv6() {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        };
        let s = UdpSocket::bind(bind).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.send_to(QUERY, addr).unwrap();
        let mut buf = [0u8; 1500];
        s.recv_from(&mut buf).ok().map(|(n, _)| buf[..n].to_vec())
    }

    fn tcp_ask(s: &mut TcpStream) -> Vec<u8> {
        let mut m = (QUERY.len() as u16).to_be_bytes().to_vec();
        m.extend_from_slice(QUERY);
        s.write_all(&m).unwrap();
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).unwrap();
        buf
    }

    #[test]
    fn serves_v4_and_v6_then_stops() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mut want: Vec<SocketAddr> = vec!["127.0.0.1:0".parse().unwrap()];
        if UdpSocket::bind("[::1]:0").is_ok() {
            want.push("[::1]:0".parse().unwrap());
        }
        let server = DnsServer::bind_with_workers(&want, 2).unwrap();
        let addrs = server.local_addrs();
        assert!(addrs.iter().all(|a| a.port() != 0));
        // The same address again: an error naming it.
        let err = DnsServer::bind(&addrs[..1]).err().unwrap();
        assert!(
            format!("{err:#}").contains(&addrs[0].to_string()),
            "{err:#}"
        );

        let metrics = Arc::new(Metrics::new());
        let (stop_tx, stop_rx) = watch::channel(false);
        let running = rt
            .block_on(async {
                server.start(
                    snapshots(),
                    Arc::new(Settings::default()),
                    TcpLimits::default(),
                    metrics.clone(),
                    stop_rx,
                )
            })
            .unwrap();
        let mut idle = Vec::new();
        for &a in &addrs {
            let r = udp_ask(a).expect("UDP answer");
            assert_eq!(&r[..2], b"\x42\x42");
            assert_eq!(r[3] & 0x0f, 0);
            assert!(r.ends_with(&[192, 0, 2, 80]), "{r:?}");
            let mut s = TcpStream::connect(a).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            for _ in 0..3 {
                assert!(tcp_ask(&mut s).ends_with(&[192, 0, 2, 80]));
            }
            idle.push(s);
        }
        assert_eq!(metrics.dns_count(1, 0), 4 * addrs.len() as u64);

        // Stop: open idle connections are closed and join returns.
        stop_tx.send(true).unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), running.join())
                .await
                .expect("join after stop");
        });
        for mut s in idle {
            let mut b = [0u8; 1];
            assert_eq!(s.read(&mut b).unwrap_or(0), 0, "connection closed at stop");
        }
        for &a in &addrs {
            assert!(TcpStream::connect(a).is_err(), "no more TCP on {a}");
        }
    }
}
