//! A real recursive resolver in the loop (issue 10): Debian's unbound, with its
//! ECS cache (`subnetcache`), resolving through a delegation from a parent zone to
//! gslb, all on loopback.
//!
//! ```text
//!   client (127.200.x.y) --> unbound 127.A.B.3:P --> parent gslb 127.A.B.1:53 (zone test.)
//!                                               \-> gslb 127.A.B.2:53 (zone gslb.test., delegated)
//! ```
//!
//! The parent is a second gslb serving `test.` with `gslb.test. NS ns1.gslb.test.`
//! and its glue; unbound knows only the parent (a stub zone for `test.`) and
//! follows the referral like any resolver. A delegation's name server is asked on
//! port 53, so both gslb instances listen on port 53 of their own 127.A.B.x
//! address: the test needs root (CI runs as root) and skips, loudly, without it
//! outside CI.

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use serde_json::json;

use crate::harness::{Server, ServerOpts, TempDir, addrs, free_port, query};

/// Three loopback addresses 127.A.B.1-3 whose port 53 is free (UDP and TCP).
fn free_block() -> [IpAddr; 3] {
    for _ in 0..200 {
        let (a, b) = (fastrand::u8(60..250), fastrand::u8(1..250));
        let ips = [1, 2, 3].map(|h| IpAddr::from([127, a, b, h]));
        let free = ips[..2]
            .iter()
            .all(|&ip| UdpSocket::bind((ip, 53)).is_ok() && TcpListener::bind((ip, 53)).is_ok());
        if free {
            return ips;
        }
    }
    panic!("no free 127.A.B.0/24 block with port 53 free");
}

/// Whether this process may bind port 53; without it (not root, outside CI) the
/// resolver tests are skipped with a message. In CI they always run.
fn can_bind_53() -> bool {
    let ok = UdpSocket::bind(("127.0.0.1", 0)).is_ok()
        && TcpListener::bind((IpAddr::from([127, 53, 53, 53]), 53)).is_ok();
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "the resolver tests need to bind port 53 (run as root)"
        );
        eprintln!("SKIPPED: the resolver tests need to bind port 53 (run as root)");
    }
    ok
}

/// unbound, killed on drop (its log printed if the test failed).
struct Unbound {
    child: Option<Child>,
    addr: SocketAddr,
    log: std::path::PathBuf,
    _dir: TempDir,
}

impl Unbound {
    /// Starts unbound on `ip` (a free port) resolving `test.` from the parent at
    /// `parent`, sending ECS (the client's /`v4_source`, and /56) to `child`.
    fn start(ip: IpAddr, parent: IpAddr, child: IpAddr, v4_source: u8) -> Self {
        let dir = TempDir::new("unbound");
        let port = loop {
            let p = free_port();
            if UdpSocket::bind((ip, p)).is_ok() && TcpListener::bind((ip, p)).is_ok() {
                break p;
            }
        };
        let log = dir.path().join("unbound.log");
        let conf = dir.path().join("unbound.conf");
        std::fs::write(
            &conf,
            format!(
                r#"server:
    interface: {ip}
    port: {port}
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{dir}"
    pidfile: ""
    use-syslog: no
    logfile: "{log}"
    verbosity: 1
    access-control: 127.0.0.0/8 allow
    # test. is a special-use name (RFC 6761) unbound answers itself by default.
    local-zone: "test." nodefault
    do-not-query-localhost: no
    do-ip6: no
    qname-minimisation: no
    module-config: "subnetcache iterator"
    send-client-subnet: {child}
    max-client-subnet-ipv4: {v4_source}
    max-client-subnet-ipv6: 56
    num-threads: 1
    so-reuseport: no
    minimal-responses: no
    prefetch: no
    serve-expired: no
    cache-min-ttl: 0
    outgoing-range: 64
    num-queries-per-thread: 32
stub-zone:
    name: "test."
    stub-addr: {parent}@53
"#,
                dir = dir.path().display(),
                log = log.display(),
            ),
        )
        .unwrap();
        let child = Command::new("unbound")
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("unbound is installed (.ci/run installs it)");
        let u = Self {
            child: Some(child),
            addr: SocketAddr::new(ip, port),
            log,
            _dir: dir,
        };
        // Ready when it answers (REFUSED or anything: it is listening).
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let q = query("test.", RecordType::SOA, Some(1232));
            if exchange(u.addr, "127.0.0.1".parse().unwrap(), &q).is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "unbound did not start:\n{}",
                u.log_text()
            );
        }
        u
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Asks unbound for `name`/`rtype` from the client address `from`.
    fn ask(&self, from: &str, name: &str, rtype: RecordType) -> Message {
        let mut q = query(name, rtype, Some(1232));
        q.metadata.recursion_desired = true;
        exchange(self.addr, from.parse().unwrap(), &q)
            .unwrap_or_else(|| panic!("no answer from unbound for {name} from {from}"))
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- unbound log ----\n{}", self.log_text());
        }
    }
}

/// One query over UDP from `src` (any 127/8 address), retried once; the answer.
fn exchange(server: SocketAddr, src: IpAddr, q: &Message) -> Option<Message> {
    let sock = UdpSocket::bind((src, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let bytes = q.to_vec().unwrap();
    for _ in 0..2 {
        sock.send_to(&bytes, server).unwrap();
        let mut buf = [0u8; 4096];
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            return Message::from_vec(&buf[..n]).ok();
        }
    }
    None
}

/// The parent (zone `test.`, delegating `gslb.test.`) and the child gslb.
struct Fleet {
    parent: Server,
    child: Server,
    unbound: Unbound,
    /// The parent's, the child's and unbound's addresses.
    ips: [IpAddr; 3],
    _zones: (TempDir, TempDir),
}

fn fleet(child_config: &str) -> Option<Fleet> {
    if !can_bind_53() {
        return None;
    }
    let [p, c, u] = free_block();
    let parent_zones = TempDir::new("parent-zones");
    std::fs::write(
        parent_zones.path().join("test.zone"),
        format!(
            "$ORIGIN test.\n$TTL 300\n\
             @ SOA ns hostmaster 1 3600 600 86400 60\n\
             @ NS ns\nns A {p}\n\
             gslb NS ns1.gslb\nns1.gslb A {c}\n"
        ),
    )
    .unwrap();
    let child_zones = TempDir::new("child-zones");
    std::fs::write(
        child_zones.path().join("gslb.test.zone"),
        format!(
            "$ORIGIN gslb.test.\n$TTL 300\n\
             @ SOA ns1 hostmaster 1 3600 600 86400 60\n\
             @ NS ns1\nns1 A {c}\n"
        ),
    )
    .unwrap();
    let parent = Server::start_with(ServerOpts {
        zones_dir: parent_zones.path().to_path_buf(),
        extra_args: vec!["--dns-listen".into(), format!("{p}:53")],
        ..Default::default()
    });
    let child = Server::start_with(ServerOpts {
        zones_dir: child_zones.path().to_path_buf(),
        config: Some(child_config.to_string()),
        extra_args: vec!["--dns-listen".into(), format!("{c}:53")],
        ..Default::default()
    });
    let unbound = Unbound::start(u, p, c, 24);
    Some(Fleet {
        parent,
        child,
        unbound,
        ips: [p, c, u],
        _zones: (parent_zones, child_zones),
    })
}

fn sorted(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = addrs(m).iter().map(|a| a.to_string()).collect();
    v.sort();
    v
}

/// Nested topology: an east /16 with a west /24 inside, and a west /25 inside an
/// otherwise unknown /24. Whatever order the clients come in, unbound's ECS cache
/// hands each its own locality's answer (with the v1 scope rule, the first east
/// answer was cached for the whole /16 and served to the west /24). unbound
/// sends /24 sources, as resolvers do by default; the /25 can only be told apart
/// by a resolver that sends longer ones, so a second unbound sends /32: the
/// no-match answer of the /24's other half must not be cached for the /25 (the
/// scope is 25, longer than the /24 the v1 rule would have said, or 0).
#[test]
fn nested_topology_clients_each_get_their_own_answer_through_unbound() {
    let topology = r#"
nsid = "child-1"
[[topology]]
cidr = "127.200.0.0/16"
locality = "us-east/a"
[[topology]]
cidr = "127.200.3.0/24"
locality = "us-west/a"
[[topology]]
cidr = "127.201.5.128/25"
locality = "us-west/a"
"#;
    let Some(f) = fleet(topology) else { return };
    let east = "192.0.2.1".to_string();
    let west = "192.0.2.2".to_string();
    let clients = [
        ("127.200.9.1", &east),
        ("127.200.3.7", &west),
        ("127.200.2.9", &east),
        ("127.200.3.200", &west),
        ("127.200.250.1", &east),
    ];
    // Three orders, each on a fresh name (so each starts from an empty cache).
    let orders: [&[usize]; 3] = [&[0, 1, 2, 3, 4], &[1, 0, 3, 2, 4], &[4, 2, 0, 3, 1]];
    for (k, order) in orders.iter().enumerate() {
        let name = format!("loc{k}.gslb.test");
        f.child.put_ns(&json!({
            "name": name, "ttl": 300, "policy": "Locality",
            "targets": [
                {"name": "east", "address": "192.0.2.1", "locality": "us-east/a"},
                {"name": "west", "address": "192.0.2.2", "locality": "us-west/a"}
            ]
        }));
        // Twice through: the second round is answered from unbound's cache.
        for round in 0..2 {
            for &i in order.iter() {
                let (client, want) = clients[i];
                let r = f.unbound.ask(client, &format!("{name}."), RecordType::A);
                assert_eq!(r.metadata.response_code, ResponseCode::NoError);
                assert_eq!(
                    sorted(&r),
                    vec![want.clone()],
                    "order {order:?} round {round}: {client} for {name}"
                );
            }
        }
    }
    // The /25: a resolver sending /32 sources, the no-match half and the /25.
    let [p, c, u] = f.ips;
    let fine = Unbound::start(u, p, c, 32);
    let both = "192.0.2.1 192.0.2.2".to_string();
    let clients = [
        ("127.201.5.7", &both),
        ("127.201.5.200", &west),
        ("127.201.5.100", &both),
        ("127.201.5.129", &west),
        ("127.200.3.9", &west),
        ("127.200.2.1", &east),
    ];
    let orders: [&[usize]; 2] = [&[0, 1, 2, 3, 4, 5], &[1, 0, 5, 4, 3, 2]];
    for (k, order) in orders.iter().enumerate() {
        let name = format!("half{k}.gslb.test");
        f.child.put_ns(&json!({
            "name": name, "ttl": 300, "policy": "Locality",
            "targets": [
                {"name": "east", "address": "192.0.2.1", "locality": "us-east/a"},
                {"name": "west", "address": "192.0.2.2", "locality": "us-west/a"}
            ]
        }));
        for round in 0..2 {
            for &i in order.iter() {
                let (client, want) = clients[i];
                let r = fine.ask(client, &format!("{name}."), RecordType::A);
                assert_eq!(r.metadata.response_code, ResponseCode::NoError);
                assert_eq!(
                    sorted(&r).join(" "),
                    *want,
                    "/32 sources, order {order:?} round {round}: {client} for {name}"
                );
            }
        }
    }
    drop(f.parent);
}

/// An all-down service (allDown: NoData) whose target comes back is answered
/// again through the resolver within the service TTL plus the detection time,
/// although the zone's negative TTL is 60 s: the NODATA's SOA carries the
/// service TTL (5 s).
#[test]
fn recovered_all_down_service_is_answered_again_within_its_ttl() {
    let Some(f) = fleet("") else { return };
    let vip_ip: IpAddr = "127.0.0.1".parse().unwrap();
    // A port that refuses now and accepts once we listen on it.
    let port = free_port();
    let name = "down.gslb.test";
    f.child.put_ns(&json!({
        "name": name, "ttl": 5, "policy": "RoundRobin", "allDown": "NoData",
        "healthCheck": {"port": port, "periodSeconds": 1, "timeoutSeconds": 1,
                        "failureThreshold": 1, "successThreshold": 1},
        "targets": [{"name": "a", "address": vip_ip.to_string()}]
    }));
    let r = f.unbound.ask("127.0.0.1", "down.gslb.test.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(addrs(&r).is_empty(), "NODATA while down: {r:?}");
    let soa_ttl = r.authorities.first().map(|a| a.ttl).unwrap_or(0);
    assert!(soa_ttl <= 5, "the resolver got a negative TTL of {soa_ttl}");
    // Ask once more so the NODATA is surely in unbound's cache, then recover.
    f.unbound.ask("127.0.0.1", "down.gslb.test.", RecordType::A);
    let _vip = TcpListener::bind((vip_ip, port)).unwrap();
    let up = Instant::now();
    // Bound: TTL (5) + detection (one period, 1 s, and the first probe of the
    // next period) + 2 s of slack for a loaded machine.
    let bound = Duration::from_secs(5 + 2 + 2);
    loop {
        let r = f.unbound.ask("127.0.0.1", "down.gslb.test.", RecordType::A);
        if addrs(&r) == vec![vip_ip] {
            break;
        }
        assert!(
            up.elapsed() < bound,
            "still {:?} through unbound {:?} after the target came back",
            addrs(&r),
            up.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A failing target leaves the resolver's answers within TTL + detection time.
#[test]
fn failover_through_the_resolver_within_ttl_plus_detection() {
    let Some(f) = fleet("") else { return };
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.2:0").unwrap();
    let (pa, pb) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    f.child.put_ns(&json!({
        "name": "fo.gslb.test", "ttl": 3, "policy": "RoundRobin",
        "healthCheck": {"port": 1, "periodSeconds": 1, "timeoutSeconds": 1,
                        "failureThreshold": 2, "successThreshold": 1},
        "targets": [
            {"name": "a", "address": pa.ip().to_string(), "port": pa.port()},
            {"name": "b", "address": pb.ip().to_string(), "port": pb.port()}
        ]
    }));
    let both = vec!["127.0.0.1".to_string(), "127.0.0.2".to_string()];
    assert!(
        crate::harness::wait_until(Duration::from_secs(10), || {
            sorted(&f.unbound.ask("127.0.0.1", "fo.gslb.test.", RecordType::A)) == both
        }),
        "both targets healthy through unbound"
    );
    drop(a);
    let down = Instant::now();
    // TTL 3 + period x failureThreshold + 2 s (CONTRACT §4/§7) + 2 s of slack.
    let bound = Duration::from_secs(3 + 2 + 2 + 2);
    loop {
        let got = sorted(&f.unbound.ask("127.0.0.1", "fo.gslb.test.", RecordType::A));
        if got == vec!["127.0.0.2".to_string()] {
            break;
        }
        assert!(down.elapsed() < bound, "{got:?} after {:?}", down.elapsed());
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(b);
}

/// kdig, a real client, sees NSID and a server cookie that the next query's
/// cookie keeps; a second instance with the same secret accepts it.
#[test]
fn kdig_sees_nsid_and_server_cookies() {
    let secret = "e5e973e5a6b2a43f48e7dc849e37bfcf";
    let config = format!("nsid = \"gslb-child-1\"\ncookie_secret = \"{secret}\"\n");
    let srv = Server::start_with(ServerOpts {
        config: Some(config.clone()),
        ..Default::default()
    });
    let twin = Server::start_with(ServerOpts {
        config: Some(config.replace("gslb-child-1", "gslb-child-2")),
        ..Default::default()
    });
    let kdig = |s: &Server, extra: &[&str]| -> String {
        let out = Command::new("kdig")
            .arg(format!("@{}", s.dns.ip()))
            .arg("-p")
            .arg(s.dns.port().to_string())
            .args(extra)
            .args(["www.gslb.example", "A", "+retry=2", "+timeout=3"])
            .output()
            .expect("kdig is installed (.ci/run installs knot-dnsutils)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = kdig(&srv, &["+nsid", "+cookie"]);
    assert!(
        out.contains("NSID: ") && out.contains("\"gslb-child-1\""),
        "{out}"
    );
    // ";; COOKIE: <client><server>" in hex: the server cookie is 16 bytes (32 hex
    // digits) and starts with version 1.
    let cookie_of = |out: &str| -> String {
        out.lines()
            .find_map(|l| l.split("COOKIE: ").nth(1))
            .unwrap_or_else(|| panic!("no cookie in\n{out}"))
            .split_whitespace()
            .next()
            .unwrap()
            .to_ascii_lowercase()
    };
    let cookie = cookie_of(&out);
    assert_eq!(cookie.len(), 48, "{out}");
    let (client, server) = cookie.split_at(16);
    assert!(server.starts_with("01000000"), "{out}");
    // Sent back: echoed as it is (fresh and valid), by this instance and its twin.
    for s in [&srv, &twin] {
        let out = kdig(s, &[&format!("+cookie={client}{server}")]);
        assert_eq!(cookie_of(&out), cookie, "{out}");
        assert!(out.contains("status: NOERROR"), "{out}");
    }
    // A forged one is replaced by a good one.
    let forged = format!("{}{}", &server[..24], "00000000");
    let out = kdig(&srv, &[&format!("+cookie={client}{forged}")]);
    assert!(out.contains("status: NOERROR"), "{out}");
    let renewed = cookie_of(&out);
    assert!(
        renewed.starts_with(client) && !renewed.ends_with(&forged[16..]),
        "{out}"
    );
    // Without NSID configured, none; CHAOS id.server names the instance.
    let out = Command::new("kdig")
        .arg(format!("@{}", twin.dns.ip()))
        .arg("-p")
        .arg(twin.dns.port().to_string())
        .args(["id.server", "TXT", "CH", "+short"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "\"gslb-child-2\""
    );
}
