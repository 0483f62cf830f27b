//! DNS facing the internet (CONTRACT §8, issue 11): response rate limiting counted from
//! the outside (full, truncated and dropped answers; per name; NXDOMAIN per zone;
//! TCP and valid cookies exempt), and the TCP limits (idle timeout, per-source and
//! global caps with a legitimate client still served; a client that never reads
//! cannot grow memory).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::EdnsOption;

use crate::harness::{Server, ServerOpts, query, tcp_recv, tcp_send};

/// What came back for a burst of identical queries.
#[derive(Debug, Default, PartialEq, Eq)]
struct Burst {
    full: usize,
    truncated: usize,
    dropped: usize,
}

/// Sends `n` copies of `q` (fresh IDs) from one socket as fast as it can, then
/// collects the answers for up to 3 s.
fn burst(server: SocketAddr, make: impl Fn(u16) -> Message, n: usize) -> Burst {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    for i in 0..n {
        sock.send_to(&make(i as u16).to_vec().unwrap(), server)
            .unwrap();
    }
    let mut seen: HashMap<u16, Message> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && seen.len() < n {
        if let Ok((len, _)) = sock.recv_from(&mut buf) {
            let m = Message::from_vec(&buf[..len]).expect("answer parses");
            seen.insert(m.metadata.id, m);
        }
    }
    let mut b = Burst::default();
    for m in seen.values() {
        if m.metadata.truncation {
            assert!(m.answers.is_empty() && m.authorities.is_empty());
            b.truncated += 1;
        } else {
            b.full += 1;
        }
    }
    b.dropped = n - seen.len();
    b
}

fn ask(name: &str, rtype: RecordType) -> impl Fn(u16) -> Message {
    let name = name.to_string();
    move |id| {
        let mut q = query(&name, rtype, Some(1232));
        q.metadata.id = id;
        q
    }
}

/// The value of a counter in /metrics (`name` with its labels, if any; 0 when
/// the sample is absent, as labelled counters are until counted).
fn metric(s: &Server, name: &str) -> u64 {
    let text = s.get("/metrics").body;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .map_or(0, |v| v.trim().parse().unwrap())
}

const A_NOERROR: &str = "gslb_dns_queries_total{qtype=\"A\",rcode=\"NOERROR\"}";

fn limited_server(rate: u32) -> Server {
    Server::start_with(ServerOpts {
        config: Some(format!(
            "[rrl]\nexempt = []\nresponses_per_second = {rate}\nslip = 2\nwindow_seconds = 2\n"
        )),
        ..Default::default()
    })
}

/// Waits until the start of a new second, so that a burst sent right away falls
/// inside one second of the limiter (whose buckets are credited per second).
fn at_second_start() {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_millis();
    std::thread::sleep(Duration::from_millis(u64::from(1000 - ms) + 20));
}

#[test]
fn rrl_limits_identical_answers_with_slip_and_counts_them() {
    let s = limited_server(10);
    at_second_start();
    let b = burst(s.dns, ask("www.gslb.example.", RecordType::A), 40);
    // What the server did (a loaded machine may also lose datagrams on the way, so
    // the client's view is checked against it, not for equality).
    let answered = metric(&s, A_NOERROR);
    let slipped = metric(&s, "gslb_dns_rrl_slipped_total");
    let dropped = metric(&s, "gslb_dns_rrl_dropped_total");
    assert_eq!(answered, 40, "every query reached the engine");
    let full = answered - slipped - dropped;
    // 10 within the rate; of the 30 over it, every 2nd slips (TC=1), the rest are
    // dropped. A burst straddling a second boundary gets up to 10 more full ones.
    assert!((10..=20).contains(&full), "{full} full, {b:?}");
    assert!(
        slipped >= 10 && slipped.abs_diff(dropped) <= 1,
        "slip 2 alternates: {slipped}/{dropped}"
    );
    assert!(
        b.full as u64 <= full && b.truncated as u64 <= slipped,
        "{b:?}"
    );
    assert!(b.truncated >= 5 && b.dropped as u64 >= dropped, "{b:?}");
    // Another name (and another type) has its own bucket.
    let other = burst(s.dns, ask("ns1.gslb.example.", RecordType::A), 5);
    assert_eq!(
        other,
        Burst {
            full: 5,
            truncated: 0,
            dropped: 0
        }
    );
    let other = burst(s.dns, ask("www.gslb.example.", RecordType::AAAA), 5);
    assert_eq!(other.full, 5, "{other:?}");
    // TCP is never limited.
    let mut c = TcpStream::connect(s.dns).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for id in 0..30u16 {
        let mut q = query("www.gslb.example.", RecordType::A, Some(1232));
        q.metadata.id = id;
        tcp_send(&mut c, &q.to_vec().unwrap());
        let r = Message::from_vec(&tcp_recv(&mut c).expect("TCP answer")).unwrap();
        assert!(!r.metadata.truncation && r.answers.len() == 1);
    }
    // The window: a bucket in debt recovers within window_seconds (2) of quiet.
    std::thread::sleep(Duration::from_millis(2500));
    let b = burst(s.dns, ask("www.gslb.example.", RecordType::A), 5);
    assert_eq!(b.full, 5, "{b:?}");
}

#[test]
fn rrl_counts_nxdomain_per_zone_and_spares_valid_cookies() {
    let s = limited_server(10);
    at_second_start();
    // Random subdomains: every name is new, the bucket is the zone's.
    let b = burst(
        s.dns,
        |id| {
            let mut q = query(
                &format!("r{id}x{}.gslb.example.", fastrand::u32(..)),
                RecordType::A,
                Some(1232),
            );
            q.metadata.id = id;
            q
        },
        40,
    );
    let nx = metric(&s, "gslb_dns_queries_total{qtype=\"A\",rcode=\"NXDOMAIN\"}");
    let slipped = metric(&s, "gslb_dns_rrl_slipped_total");
    let dropped = metric(&s, "gslb_dns_rrl_dropped_total");
    assert_eq!(nx, 40);
    assert!(
        (10..=20).contains(&(nx - slipped - dropped)),
        "{slipped}/{dropped}, {b:?}"
    );
    assert!(slipped >= 10 && dropped >= 10, "{slipped}/{dropped}, {b:?}");
    assert!(b.truncated >= 5, "{b:?}");
    // Answers that exist are not in the NXDOMAIN bucket.
    let ok = burst(s.dns, ask("www.gslb.example.", RecordType::A), 5);
    assert_eq!(ok.truncated, 0, "{ok:?}");
    assert_eq!(metric(&s, "gslb_dns_rrl_dropped_total"), dropped);

    // A client-only cookie proves nothing: limited like no cookie. A valid server
    // cookie (learnt in an answer) is never limited.
    let with_cookie = |cookie: Vec<u8>| {
        move |id: u16| {
            let mut q = query("mail.gslb.example.", RecordType::MX, Some(1232));
            q.metadata.id = id;
            q.edns
                .as_mut()
                .unwrap()
                .options_mut()
                .insert(EdnsOption::Unknown(10, cookie.clone()));
            q
        }
    };
    let r = crate::harness::dns_udp(s.dns, &with_cookie(vec![7; 8])(1));
    let cookie = r
        .edns
        .as_ref()
        .unwrap()
        .options()
        .as_ref()
        .iter()
        .find_map(|(_, o)| match o {
            EdnsOption::Unknown(10, d) => Some(d.clone()),
            _ => None,
        })
        .expect("a server cookie");
    assert_eq!(cookie.len(), 24);
    at_second_start();
    let before = metric(&s, "gslb_dns_rrl_dropped_total");
    let b = burst(s.dns, with_cookie(vec![7; 8]), 30);
    let limited = metric(&s, "gslb_dns_rrl_dropped_total") - before;
    assert!(limited >= 5, "client-only cookies are limited: {b:?}");
    let before = (
        metric(&s, "gslb_dns_rrl_dropped_total"),
        metric(&s, "gslb_dns_rrl_slipped_total"),
    );
    let b = burst(s.dns, with_cookie(cookie), 30);
    assert_eq!(b.truncated, 0, "{b:?}");
    assert!(b.full >= 25, "{b:?}");
    let after = (
        metric(&s, "gslb_dns_rrl_dropped_total"),
        metric(&s, "gslb_dns_rrl_slipped_total"),
    );
    assert_eq!(before, after, "valid cookies are never limited");
}

#[test]
fn rrl_default_exempts_loopback() {
    // The defaults: on, 200/s, loopback exempt. 400 identical queries from
    // 127.0.0.1 in a burst are all answered.
    let s = Server::start();
    let b = burst(s.dns, ask("www.gslb.example.", RecordType::A), 400);
    assert_eq!(b.truncated, 0, "{b:?}");
    // Far more than the rate were answered, none limited (a loaded machine may lose
    // a few datagrams on the way: counted by the server, not the client).
    assert!(metric(&s, A_NOERROR) > 300, "{b:?}");
    assert_eq!(metric(&s, "gslb_dns_rrl_dropped_total"), 0);
    assert_eq!(metric(&s, "gslb_dns_rrl_slipped_total"), 0);
}

// ---------------------------------------------------------------- TCP

fn tcp_server(extra: &str) -> Server {
    Server::start_with(ServerOpts {
        config: Some(extra.to_string()),
        ..Default::default()
    })
}

/// A TCP connection from `src` (a 127/8 address).
fn connect_from(src: &str, server: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let src: IpAddr = src.parse().unwrap();
    sock.bind(&SocketAddr::new(src, 0).into()).unwrap();
    sock.connect(&server.into()).unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// One query on `c`; the answer's rcode, or None when the connection is closed.
fn ask_tcp(c: &mut TcpStream) -> Option<ResponseCode> {
    let q = query("www.gslb.example.", RecordType::A, Some(1232));
    let mut framed = (q.to_vec().unwrap().len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q.to_vec().unwrap());
    c.write_all(&framed).ok()?;
    let r = tcp_recv(c)?;
    Some(Message::from_vec(&r).unwrap().metadata.response_code)
}

/// True when the server closed `c` (EOF or reset) within 5 s.
fn closed(c: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(c.read(&mut b), Ok(0) | Err(_))
}

#[test]
fn tcp_idle_connections_are_closed() {
    let s = tcp_server("tcp_idle_timeout_seconds = 1\n");
    let mut c = connect_from("127.0.0.1", s.dns);
    assert_eq!(ask_tcp(&mut c), Some(ResponseCode::NoError));
    let t = Instant::now();
    assert!(closed(&mut c));
    let idle = t.elapsed();
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(4),
        "closed after {idle:?}"
    );
}

#[test]
fn tcp_per_source_cap_closes_that_sources_longest_idle() {
    let s = tcp_server("tcp_max_clients = 16\ntcp_max_per_source = 4\n");
    let mut held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut c = connect_from("127.0.0.2", s.dns);
            assert_eq!(ask_tcp(&mut c), Some(ResponseCode::NoError));
            std::thread::sleep(Duration::from_millis(20));
            c
        })
        .collect();
    // The fifth from the same address: the longest idle of its four (the first)
    // is closed; the newcomer is served.
    let mut fifth = connect_from("127.0.0.2", s.dns);
    assert_eq!(ask_tcp(&mut fifth), Some(ResponseCode::NoError));
    assert!(closed(&mut held[0]), "the longest idle was closed");
    for c in &mut held[1..] {
        assert_eq!(ask_tcp(c), Some(ResponseCode::NoError), "the others stay");
    }
    // One address holding connections never locks out another.
    for _ in 0..10 {
        held.push(connect_from("127.0.0.2", s.dns));
    }
    let mut legit = connect_from("127.0.0.3", s.dns);
    assert_eq!(ask_tcp(&mut legit), Some(ResponseCode::NoError));
    assert!(
        crate::harness::http_get(s.api, "/metrics", None)
            .unwrap()
            .body
            .lines()
            .any(|l| l.starts_with("gslb_dns_tcp_evicted_total ") && !l.ends_with(" 0"))
    );
}

#[test]
fn tcp_global_cap_keeps_a_legitimate_client_served() {
    // Eight slots, held idle by eight addresses (two each from four addresses)...
    let s = tcp_server("tcp_max_clients = 8\ntcp_max_per_source = 2\n");
    let mut held = Vec::new();
    for a in 10..14 {
        for _ in 0..2 {
            let mut c = connect_from(&format!("127.0.0.{a}"), s.dns);
            assert_eq!(ask_tcp(&mut c), Some(ResponseCode::NoError));
            held.push(c);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // ... legitimate clients still connect and are answered, one after another
    // (each keeping its connection); each time the longest idle one makes room.
    let mut legit = Vec::new();
    for round in 0..5 {
        let mut c = connect_from(&format!("127.0.0.{}", 20 + round), s.dns);
        assert_eq!(
            ask_tcp(&mut c),
            Some(ResponseCode::NoError),
            "round {round}"
        );
        legit.push(c);
        std::thread::sleep(Duration::from_millis(20));
    }
    // The five longest idle were the ones closed; the other three still answer.
    for c in &mut held[..5] {
        assert!(closed(c));
    }
    for c in &mut held[5..] {
        assert_eq!(ask_tcp(c), Some(ResponseCode::NoError));
    }
}

/// The server side of the TCP connection `server` <- `client` in the kernel's
/// table (/proc/net/tcp): its state (1 = ESTABLISHED), or None once it is gone.
fn server_side_state(server: SocketAddr, client: SocketAddr) -> Option<u8> {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(a) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(a.ip().octets()),
            a.port()
        ),
        SocketAddr::V6(_) => unreachable!("IPv4 only"),
    };
    let (local, remote) = (hex(server), hex(client));
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[1] == local && f[2] == remote).then(|| u8::from_str_radix(f[3], 16).unwrap())
        })
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Clients that pipeline tens of thousands of queries with ~1 KiB answers (a
/// 64-target name) and never read a byte: gslb's memory stays flat (each such
/// connection costs one answer buffer; the rest waits in kernel buffers), the
/// connections are closed once their answers stall for the timeout, and other
/// clients are served meanwhile.
#[test]
fn tcp_client_that_never_reads_cannot_grow_memory() {
    let s = tcp_server("tcp_idle_timeout_seconds = 2\n");
    let targets: Vec<serde_json::Value> = (1..=64)
        .map(|i| serde_json::json!({"name": format!("t{i}"), "address": format!("192.0.2.{i}")}))
        .collect();
    s.put_ns(&serde_json::json!({
        "name": "big.gslb.example", "ttl": 30, "policy": "RoundRobin", "targets": targets
    }));
    let q = query("big.gslb.example.", RecordType::A, Some(1232))
        .to_vec()
        .unwrap();
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    // The answer is big, and complete over TCP.
    let r = crate::harness::dns_tcp(
        s.dns,
        &query("big.gslb.example.", RecordType::A, Some(1232)),
    );
    assert_eq!(r.answers.len(), 64);
    let answer_len = r.to_vec().unwrap().len();
    assert!(answer_len > 1000, "{answer_len}");
    // Warm up the server's TCP path, then take its resident size.
    for _ in 0..3 {
        let mut c = connect_from("127.0.0.1", s.dns);
        for _ in 0..200 {
            c.write_all(&framed).unwrap();
            tcp_recv(&mut c).unwrap();
        }
    }
    let before = rss_kib(s.pid());

    // Three connections that write up to 60,000 queries each (until the kernel
    // stops taking them) and never read. Their answers, 60 MiB and more, cannot
    // all fit in the kernel's buffers (a send buffer is at most
    // net.ipv4.tcp_wmem's 4 MiB, the client's receive buffer is kept small): gslb
    // has to stop reading, or hold them itself.
    const QUERIES: usize = 60_000;
    let mut stuck = Vec::new();
    for _ in 0..3 {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(16 * 1024).unwrap();
        sock.bind(&SocketAddr::new("127.0.0.2".parse().unwrap(), 0).into())
            .unwrap();
        sock.connect(&s.dns.into()).unwrap();
        let mut c: TcpStream = sock.into();
        // Blocked this long: gslb has stopped reading (a loaded machine may pause
        // a reader for a moment; the answers sent must be far more than memory).
        c.set_write_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        let mut sent = 0;
        while sent < QUERIES && c.write_all(&framed).is_ok() {
            sent += 1;
        }
        let local = c.local_addr().unwrap();
        stuck.push((c, local, sent));
    }
    let blocked = Instant::now();
    // Meanwhile other clients are served, over TCP and UDP.
    let mut legit = connect_from("127.0.0.3", s.dns);
    assert_eq!(ask_tcp(&mut legit), Some(ResponseCode::NoError));
    // (The kernel's table shows an open connection as such.)
    assert_eq!(
        server_side_state(s.dns, legit.local_addr().unwrap()),
        Some(1)
    );
    assert_eq!(s.udp("www.gslb.example.", RecordType::A).answers.len(), 1);
    let grown = rss_kib(s.pid()).saturating_sub(before);
    let sent: usize = stuck.iter().map(|(_, _, n)| n).sum();
    // Unbounded buffering would hold `sent` answers (tens of MiB).
    let unbounded_kib = (sent * answer_len / 1024) as u64;
    assert!(
        unbounded_kib > 8 * 1024 && grown < 4 * 1024,
        "RSS grew by {grown} KiB for {sent} unread answers ({unbounded_kib} KiB)"
    );
    // Each stalled connection is closed by the write timeout (2 s here).
    for (_, local, _) in &stuck {
        assert!(
            crate::harness::wait_until(Duration::from_secs(10), || {
                server_side_state(s.dns, *local) != Some(1)
            }),
            "a connection whose answers stall stays open ({:?})",
            blocked.elapsed()
        );
    }
    // Another client is served afterwards as well.
    let mut c = connect_from("127.0.0.3", s.dns);
    assert_eq!(ask_tcp(&mut c), Some(ResponseCode::NoError));
    drop(stuck);
}
