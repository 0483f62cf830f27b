//! The UDP loop with both kinds of I/O: bursts queued before the worker starts, so
//! that the batches are full (nothing here depends on timing).

use std::net::{IpAddr, UdpSocket};
use std::sync::Mutex;
use std::thread;

use super::*;
use crate::zone::ZoneSet;

fn ios() -> Vec<Io> {
    #[cfg(target_os = "linux")]
    return vec![Io::Mmsg, Io::Single];
    #[cfg(not(target_os = "linux"))]
    return vec![Io::Single];
}

/// Loopback addresses to test on: 127.0.0.1, and ::1 when the host has IPv6.
fn loopbacks() -> Vec<IpAddr> {
    let mut v = vec![IpAddr::from([127, 0, 0, 1])];
    if UdpSocket::bind("[::1]:0").is_ok() {
        v.push("::1".parse().unwrap());
    }
    v
}

/// A server socket set up as `DnsServer::bind` does, with room for the bursts.
fn server_socket(ip: IpAddr) -> UdpSocket {
    let s = super::super::bind_udp(SocketAddr::new(ip, 0)).unwrap();
    s.set_read_timeout(Some(POLL)).unwrap();
    s
}

fn client(ip: IpAddr) -> UdpSocket {
    let c = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c
}

/// A query with `id` for `name` (dotted, no trailing dot), type A, optionally with EDNS.
fn query(id: u16, name: &str, edns: bool) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    if edns {
        q.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
    }
    q
}

/// The raw loop: every datagram comes back to its sender with its own bytes, in
/// full batches of 64 when the socket has that many queued.
#[test]
fn serve_echoes_bursts_in_full_batches() {
    for ip in loopbacks() {
        for io in ios() {
            let sock = server_socket(ip);
            let server = sock.local_addr().unwrap();
            let clients: Vec<UdpSocket> = (0..4).map(|_| client(ip)).collect();
            // 4 x 50 datagrams queued before the worker runs.
            for (c, s) in clients.iter().enumerate() {
                for k in 0..50u16 {
                    let msg = format!("client {c} datagram {k}");
                    s.send_to(msg.as_bytes(), server).unwrap();
                }
            }
            let stop = Arc::new(AtomicBool::new(false));
            let sizes = Arc::new(Mutex::new(Vec::new()));
            let worker = {
                let (stop, sizes) = (stop.clone(), sizes.clone());
                thread::spawn(move || {
                    serve(&sock, &stop, io, |batch| {
                        sizes.lock().unwrap().push(batch.len);
                        batch.answer_each(|q, _peer, cut, out| {
                            assert!(!cut);
                            out.clear();
                            out.extend_from_slice(q);
                            true
                        });
                    })
                })
            };
            for (c, s) in clients.iter().enumerate() {
                for k in 0..50 {
                    let mut buf = [0u8; 512];
                    let (n, from) = s.recv_from(&mut buf).expect("echo");
                    assert_eq!(from, server);
                    assert_eq!(&buf[..n], format!("client {c} datagram {k}").as_bytes());
                }
            }
            stop.store(true, Ordering::Relaxed);
            worker.join().unwrap();
            let sizes = sizes.lock().unwrap();
            assert_eq!(sizes.iter().sum::<usize>(), 200, "{io:?} {ip}");
            let want = if io == Io::Single { 1 } else { BATCH };
            assert_eq!(sizes[..3], [want; 3], "{io:?} {ip}: {sizes:?}");
        }
    }
}

fn snapshots() -> Arc<ArcSwap<Snapshot>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("zones");
    Arc::new(ArcSwap::from_pointee(Snapshot {
        zones: Arc::new(ZoneSet::load_dir(&dir).unwrap()),
        ..Default::default()
    }))
}

/// The worker answers a burst from several clients, each answer to its query, and
/// counts them all.
#[test]
fn worker_answers_every_query_of_a_burst() {
    let names = [
        ("www.gslb.example", 0u8, Some([192, 0, 2, 80])),
        ("WWW.Gslb.Example", 0, Some([192, 0, 2, 80])),
        ("mail.gslb.example", 0, Some([192, 0, 2, 25])),
        ("nope.gslb.example", 3, None),
        ("example.com", 5, None),
    ];
    for ip in loopbacks() {
        for io in ios() {
            let sock = server_socket(ip);
            let server = sock.local_addr().unwrap();
            let clients: Vec<UdpSocket> = (0..4).map(|_| client(ip)).collect();
            // A datagram that is not a query, first in the queue: dropped and counted
            // before any answer goes out.
            clients[0].send_to(b"\x00\x01\x80", server).unwrap();
            let mut sent = 0u64;
            for (c, s) in clients.iter().enumerate() {
                for k in 0..50u16 {
                    let (name, _, _) = names[usize::from(k) % names.len()];
                    let id = (c as u16) << 8 | k;
                    s.send_to(&query(id, name, k % 2 == 0), server).unwrap();
                    sent += 1;
                }
            }
            let metrics = Arc::new(Metrics::new());
            let stop = Arc::new(AtomicBool::new(false));
            let worker = Worker::new(
                sock,
                snapshots(),
                Arc::new(Settings::default()),
                metrics.clone(),
                stop.clone(),
            )
            .unwrap();
            let handle = thread::spawn(move || worker.run_with(io));
            for (c, s) in clients.iter().enumerate() {
                for k in 0..50u16 {
                    let mut buf = [0u8; 1500];
                    let (n, from) = s.recv_from(&mut buf).expect("answer");
                    assert_eq!(from, server);
                    let r = &buf[..n];
                    let (name, rcode, addr) = names[usize::from(k) % names.len()];
                    let id = (c as u16) << 8 | k;
                    assert_eq!(r[..2], id.to_be_bytes(), "answers in order, {io:?} {ip}");
                    assert_eq!(r[3] & 0x0f, rcode, "{name}");
                    // The question is echoed as sent.
                    let q = query(id, name, false);
                    assert_eq!(r[12..q.len()], q[12..], "{name}");
                    if let Some(a) = addr {
                        let at = if k % 2 == 0 { n - 11 - 4 } else { n - 4 };
                        assert_eq!(r[at..at + 4], a, "{name}");
                    }
                    // EDNS echoed when asked for.
                    assert_eq!(r[11], u8::from(k % 2 == 0), "{name}");
                }
            }
            stop.store(true, Ordering::Relaxed);
            handle.join().unwrap();
            let m = crate::metrics::render_one(metrics.clone());
            let count = |line: &str| -> u64 {
                m.lines()
                    .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
                    .unwrap_or(0)
            };
            let total: u64 = ["NOERROR", "NXDOMAIN", "REFUSED"]
                .iter()
                .map(|rc| {
                    count(&format!(
                        "gslb_dns_queries_total{{qtype=\"A\",rcode=\"{rc}\"}}"
                    ))
                })
                .sum();
            assert_eq!(total, sent, "{m}");
            assert_eq!(count("gslb_dns_dropped_total"), 1, "{m}");
        }
    }
}

/// A datagram longer than a slot: FORMERR without a question when the kernel says
/// it was cut (recvmmsg); `recv_from` cannot tell, and the cut query is malformed.
#[test]
fn oversized_datagrams_get_formerr() {
    for io in ios() {
        let ip = IpAddr::from([127, 0, 0, 1]);
        let sock = server_socket(ip);
        let server = sock.local_addr().unwrap();
        let c = client(ip);
        let mut q = query(7, "www.gslb.example", false);
        q[11] = 1; // ARCOUNT 1: an OPT record with a 5000-byte option follows.
        q.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0]);
        q.extend_from_slice(&5004u16.to_be_bytes());
        q.extend_from_slice(&[0xff, 0x00]);
        q.extend_from_slice(&5000u16.to_be_bytes());
        q.resize(q.len() + 5000, 0);
        c.send_to(&q, server).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let worker = Worker::new(
            sock,
            snapshots(),
            Arc::new(Settings::default()),
            Arc::new(Metrics::new()),
            stop.clone(),
        )
        .unwrap();
        let handle = thread::spawn(move || worker.run_with(io));
        let mut buf = [0u8; 1500];
        let (n, _) = c.recv_from(&mut buf).expect("answer");
        assert_eq!(buf[..2], [0, 7]);
        assert_eq!(buf[3] & 0x0f, 1, "FORMERR, {io:?}");
        #[cfg(target_os = "linux")]
        if io == Io::Mmsg {
            assert_eq!(n, 12, "header only");
        }
        let _ = n;
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap();
    }
}
