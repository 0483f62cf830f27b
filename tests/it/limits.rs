//! Integration tests: the API listener's limits (CONTRACT §8): header timeout, idle
//! timeout, connection cap, and DNS over TCP unaffected by a flood of API
//! connections opened before any token check.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::harness::{Server, ServerOpts, http_get};

fn server(config: &str) -> Server {
    Server::start_with(ServerOpts {
        config: Some(config.into()),
        token: Some("limits-0123456789".into()),
        ..ServerOpts::default()
    })
}

/// Reads until the peer closes; returns what came and how long it took.
fn until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, start.elapsed()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (got, start.elapsed());
            }
            Err(e) => panic!("not closed within {limit:?}: {e}"),
        }
    }
}

#[test]
fn header_and_idle_timeouts_close_connections() {
    let s = server("api_header_timeout_seconds = 1\napi_idle_timeout_seconds = 2\n");
    // Headers that never end: closed after the header timeout.
    let mut c = TcpStream::connect(s.api).unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let (_, took) = until_closed(&mut c, Duration::from_secs(10));
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(4),
        "{took:?}"
    );

    // Dribbling one header byte at a time does not extend it.
    let mut c = TcpStream::connect(s.api).unwrap();
    let start = Instant::now();
    c.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    let mut closed = false;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(100));
        if c.write_all(b"a").is_err() {
            closed = true;
            break;
        }
    }
    if !closed {
        let (_, _) = until_closed(&mut c, Duration::from_secs(10));
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );

    // A connection that sends nothing: closed after the idle timeout, not before.
    let mut c = TcpStream::connect(s.api).unwrap();
    let (got, took) = until_closed(&mut c, Duration::from_secs(10));
    assert!(got.is_empty());
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(5),
        "{took:?}"
    );

    // Keep-alive: a request answered, then idle: closed after the idle timeout.
    let mut c = TcpStream::connect(s.api).unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (got, took) = until_closed(&mut c, Duration::from_secs(10));
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
        "{got:?}"
    );
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(5),
        "{took:?}"
    );

    // A body that stops coming (with the token, so the request reaches the
    // handler): closed after the idle timeout, and nothing is written.
    let mut c = TcpStream::connect(s.api).unwrap();
    c.write_all(
        b"PUT /api/v1/nameservices/stall.gslb.example HTTP/1.1\r\nHost: x\r\n\
          Authorization: Bearer limits-0123456789\r\nContent-Type: application/json\r\n\
          Content-Length: 200\r\n\r\n{\"name\": \"stall.gslb.example\",",
    )
    .unwrap();
    let (got, took) = until_closed(&mut c, Duration::from_secs(10));
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(5),
        "{took:?} {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(!String::from_utf8_lossy(&got).starts_with("HTTP/1.1 2"));
    assert_eq!(s.get("/api/v1/nameservices/stall.gslb.example").status, 404);

    // A slow but steady client is served: headers within the timeout.
    let r = http_get(s.api, "/healthz", None).unwrap();
    assert_eq!(r.status, 200);
    let m = http_get(s.api, "/metrics", None).unwrap().body;
    assert!(
        m.contains("gslb_api_connection_timeouts_total{timeout=\"header\"} 2"),
        "{m}"
    );
    assert!(m.contains("gslb_api_max_connections 256"), "{m}");
}

#[test]
fn a_flood_of_api_connections_leaves_dns_and_descriptors_alone() {
    let s = server(
        "api_max_connections = 16\napi_header_timeout_seconds = 30\napi_idle_timeout_seconds = 60\n",
    );
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", s.pid()))
            .unwrap()
            .count()
    };
    let before = fds();
    // Hundreds of connections that never send a byte (so never reach a token check).
    let mut held = Vec::new();
    for _ in 0..400 {
        match TcpStream::connect_timeout(&s.api, Duration::from_secs(2)) {
            Ok(c) => held.push(c),
            Err(_) => break, // the kernel's backlog is full: fine
        }
    }
    assert!(held.len() >= 100, "only {} connections", held.len());
    std::thread::sleep(Duration::from_millis(300));
    // The server holds at most its cap of them.
    let during = fds();
    assert!(
        during <= before + 16 + 4,
        "{before} -> {during} descriptors"
    );
    // DNS over TCP (and UDP) still answers.
    for _ in 0..5 {
        let m = s.tcp("www.gslb.example.", RecordType::A);
        assert!(!m.answers.is_empty());
        let m = s.udp("www.gslb.example.", RecordType::A);
        assert!(!m.answers.is_empty());
    }
    // Once the flood goes, the API serves again at once.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if http_get(s.api, "/healthz", None).is_ok_and(|r| r.status == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "the API did not recover");
        std::thread::sleep(Duration::from_millis(100));
    }
}
