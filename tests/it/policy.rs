//! Integration tests: policy. Ratio shares, `distribute`, `failover` driven by real
//! health checks, and clients told apart by ECS and by source address, all against
//! the running binary.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use serde_json::json;

use crate::harness::{Server, ServerOpts, TempDir, addrs, dns_udp_raw_from, query, wait_until};

pub(crate) const ZONE: &str = "\
$ORIGIN gslb.example.
$TTL 300
@    IN SOA ns1.gslb.example. hostmaster.gslb.example. 1 3600 600 86400 60
@    IN NS  ns1.gslb.example.
ns1  IN A   127.0.0.1
";

/// A server serving `gslb.example` with `config` (TOML, e.g. `[[topology]]` tables).
pub(crate) fn start(config: &str) -> (Server, TempDir) {
    let zones = TempDir::new("policy-zones");
    std::fs::write(zones.path().join("gslb.example.zone"), ZONE).unwrap();
    let s = Server::start_with(ServerOpts {
        zones_dir: zones.path().to_path_buf(),
        config: Some(config.to_string()),
        ..Default::default()
    });
    (s, zones)
}

/// An A (or AAAA) query with EDNS and, if given, an ECS option `addr/source`.
pub(crate) fn ecs_query(name: &str, rtype: RecordType, subnet: Option<(&str, u8)>) -> Message {
    let mut q = query(name, rtype, Some(1232));
    if let Some((addr, source)) = subnet {
        let cs = ClientSubnet::new(addr.parse().unwrap(), source, 0);
        q.edns
            .as_mut()
            .unwrap()
            .options_mut()
            .insert(EdnsOption::Subnet(cs));
    }
    q
}

/// Sends `q` from the loopback address `src` and parses the answer.
pub(crate) fn ask_from(s: &Server, src: &str, q: &Message) -> Message {
    let raw = dns_udp_raw_from(src.parse().unwrap(), s.dns, &q.to_vec().unwrap())
        .unwrap_or_else(|| panic!("no answer from {} to {src}", s.dns));
    Message::from_vec(&raw).unwrap()
}

/// The ECS option of a response: (source prefix, scope prefix).
pub(crate) fn ecs_of(m: &Message) -> Option<(u8, u8)> {
    match m.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(cs) => Some((cs.source_prefix(), cs.scope_prefix())),
        _ => None,
    }
}

pub(crate) fn set(m: &Message) -> BTreeSet<String> {
    addrs(m).iter().map(IpAddr::to_string).collect()
}

pub(crate) fn strs(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Sends `n` identical queries one after another on one socket and counts the
/// answers (each answer's address set, joined with `,`).
fn tally(server: SocketAddr, q: &Message, n: usize) -> HashMap<String, usize> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut q = q.clone();
    let mut buf = vec![0u8; 4096];
    let mut counts = HashMap::new();
    for i in 0..n {
        q.metadata.id = i as u16;
        sock.send_to(&q.to_vec().unwrap(), server).unwrap();
        let m = loop {
            let (len, _) = sock.recv_from(&mut buf).expect("answer within 2 s");
            let m = Message::from_vec(&buf[..len]).unwrap();
            // A late answer to an earlier query would carry an older id.
            if m.metadata.id == i as u16 {
                break m;
            }
        };
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        let mut a: Vec<String> = addrs(&m).iter().map(IpAddr::to_string).collect();
        a.sort();
        *counts.entry(a.join(",")).or_default() += 1;
    }
    counts
}

fn share(counts: &HashMap<String, usize>, key: &str, n: usize) -> f64 {
    100.0 * counts.get(key).copied().unwrap_or(0) as f64 / n as f64
}

#[test]
fn ratio_shares_over_10000_queries() {
    let (s, _z) = start("");
    s.put_ns(&json!({
        "name": "ratio.gslb.example", "ttl": 5, "policy": "Ratio",
        "targets": [
            {"name": "a", "address": "192.0.2.1", "ratio": 3},
            {"name": "b", "address": "192.0.2.2", "ratio": 1},
            {"name": "c", "address": "192.0.2.3", "ratio": 6},
            {"name": "z", "address": "192.0.2.4", "ratio": 0},
            {"name": "v", "address": "2001:db8::1", "ratio": 5}
        ]
    }));
    let n = 10_000;
    let q = ecs_query("ratio.gslb.example.", RecordType::A, None);
    let counts = tally(s.dns, &q, n);
    // Exactly one address per answer, never the ratio-0 target, and every share
    // within 2 points of ratio / sum.
    let keys: BTreeSet<&str> = counts.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["192.0.2.1", "192.0.2.2", "192.0.2.3"]),
        "{counts:?}"
    );
    for (addr, want) in [
        ("192.0.2.1", 30.0),
        ("192.0.2.2", 10.0),
        ("192.0.2.3", 60.0),
    ] {
        let got = share(&counts, addr, n);
        assert!((got - want).abs() <= 2.0, "{addr}: {got}% (want {want}%)");
    }

    // Ratio answers carry ECS scope 0.
    let m = ask_from(
        &s,
        "127.0.0.1",
        &ecs_query("ratio.gslb.example.", RecordType::A, Some(("10.1.2.0", 24))),
    );
    assert_eq!(addrs(&m).len(), 1);
    assert_eq!(ecs_of(&m), Some((24, 0)));
    // Per address family.
    let m = ask_from(
        &s,
        "127.0.0.1",
        &ecs_query("ratio.gslb.example.", RecordType::AAAA, None),
    );
    assert_eq!(set(&m), strs(&["2001:db8::1"]));
}

#[test]
fn distribute_99_to_1() {
    let (s, _z) = start(
        "[[topology]]\ncidr = \"127.0.0.0/8\"\nlocality = \"region3/zone3\"\n\
         [[topology]]\ncidr = \"10.0.0.0/8\"\nlocality = \"region3/zone3\"\n",
    );
    s.put_ns(&json!({
        "name": "dist.gslb.example", "ttl": 5, "policy": "Locality",
        "targets": [
            {"name": "r1a", "address": "192.0.2.1", "locality": "region1/zone1/a"},
            {"name": "r1b", "address": "192.0.2.2", "locality": "region1/zone1/b"},
            {"name": "r2", "address": "192.0.2.3", "locality": "region2/zone2/a"},
            {"name": "r3", "address": "192.0.2.4", "locality": "region3/zone3/a"}
        ],
        "distribute": [{"from": "*/*", "to": {"region1/zone1/*": 99, "region2/zone2/*": 1}}]
    }));
    let n = 10_000;
    let q = ecs_query("dist.gslb.example.", RecordType::A, None);
    let counts = tally(s.dns, &q, n);
    let r1 = share(&counts, "192.0.2.1,192.0.2.2", n);
    let r2 = share(&counts, "192.0.2.3", n);
    // 99 / 1 has a standard deviation of 0.1 point over 10,000 draws.
    assert!((97.0..=100.0).contains(&r1), "{counts:?}");
    assert!(r2 > 0.0 && r1 + r2 == 100.0, "{counts:?}");

    // With ECS the scope is the prefix length of the topology entry that decided
    // (no other entry lies inside 10.0.0.0/8).
    let m = ask_from(
        &s,
        "127.0.0.1",
        &ecs_query("dist.gslb.example.", RecordType::A, Some(("10.9.8.0", 24))),
    );
    assert_eq!(ecs_of(&m), Some((24, 8)));
}

/// A fake gateway VIP: a TCP listener on `ip` that can be closed and reopened on the
/// same port.
pub(crate) struct Vip {
    pub(crate) addr: SocketAddr,
    listener: Option<TcpListener>,
}

impl Vip {
    pub(crate) fn open(ip: &str) -> Self {
        let l = TcpListener::bind((ip, 0)).unwrap();
        Self {
            addr: l.local_addr().unwrap(),
            listener: Some(l),
        }
    }

    pub(crate) fn close(&mut self) {
        self.listener = None;
    }

    pub(crate) fn reopen(&mut self) {
        self.listener = Some(TcpListener::bind(self.addr).unwrap());
    }
}

#[test]
fn failover_follows_health_checks() {
    let (s, _z) = start("[[topology]]\ncidr = \"127.0.0.0/8\"\nlocality = \"region1/zone9\"\n");
    let mut r1 = Vip::open("127.0.0.11");
    let r2 = Vip::open("127.0.0.12");
    let r3 = Vip::open("127.0.0.13");
    let name = "fo.gslb.example";
    s.put_ns(&json!({
        "name": name, "ttl": 1, "policy": "Locality",
        "healthCheck": {"port": 9, "periodSeconds": 1, "timeoutSeconds": 1,
                        "failureThreshold": 1, "successThreshold": 1},
        "targets": [
            {"name": "r1", "address": "127.0.0.11", "locality": "region1/zone1", "port": r1.addr.port()},
            {"name": "r3", "address": "127.0.0.13", "locality": "region3/zone1", "port": r3.addr.port()},
            {"name": "r2", "address": "127.0.0.12", "locality": "region2/zone1", "port": r2.addr.port()}
        ],
        "failover": [{"from": "region1", "to": "region2"}]
    }));
    let all_healthy = || {
        let v = s.get(&format!("/api/v1/nameservices/{name}")).json();
        v["status"]["targets"]
            .as_array()
            .is_some_and(|t| t.iter().all(|t| t["health"] == "Healthy"))
    };
    let answer = || set(&s.udp(&format!("{name}."), RecordType::A));
    let deadline = Duration::from_secs(15);

    assert!(
        wait_until(deadline, all_healthy),
        "targets never became Healthy"
    );
    assert_eq!(answer(), strs(&["127.0.0.11"]), "same region first");

    r1.close();
    assert!(
        wait_until(deadline, || answer() == strs(&["127.0.0.12"])),
        "no failover to region2: {:?}",
        answer()
    );
    // Stays on region2 (not region3, not failing open) while region1 is down.
    for _ in 0..5 {
        assert_eq!(answer(), strs(&["127.0.0.12"]));
    }

    r1.reopen();
    assert!(
        wait_until(deadline, || answer() == strs(&["127.0.0.11"])),
        "no return to region1 after recovery: {:?}",
        answer()
    );
    drop((r2, r3));
}

const ECS_TOPOLOGY: &str = r#"
[[topology]]
cidr = "10.1.0.0/16"
locality = "region1/zone1"

[[topology]]
cidr = "10.2.0.0/16"
locality = "region2/zone1"

[[topology]]
cidr = "10.2.3.0/24"
locality = "region1/zone1"

[[topology]]
cidr = "127.0.0.2/32"
locality = "region1/zone1"

[[topology]]
cidr = "127.0.0.3/32"
locality = "region2/zone1"

[[topology]]
cidr = "2001:db8:1::/48"
locality = "region2/zone1"
"#;

#[test]
fn clients_told_apart_by_ecs_and_source_address() {
    let (s, _z) = start(ECS_TOPOLOGY);
    let name = "loc.gslb.example";
    s.put_ns(&json!({
        "name": name, "ttl": 5, "policy": "Locality",
        "targets": [
            {"name": "a", "address": "192.0.2.1", "locality": "region1/zone1"},
            {"name": "b", "address": "192.0.2.2", "locality": "region2/zone1"},
            {"name": "c", "address": "2001:db8::a", "locality": "region1/zone1"},
            {"name": "d", "address": "2001:db8::b", "locality": "region2/zone1"}
        ]
    }));
    struct Case {
        src: &'static str,
        rtype: RecordType,
        ecs: Option<(&'static str, u8)>,
        want: &'static [&'static str],
        /// The ECS option of the response: (source, scope), or None.
        want_ecs: Option<(u8, u8)>,
    }
    let a = RecordType::A;
    let cases = [
        Case {
            src: "127.0.0.1",
            rtype: a,
            ecs: Some(("10.1.2.0", 24)),
            want: &["192.0.2.1"],
            want_ecs: Some((24, 16)),
        },
        Case {
            src: "127.0.0.1",
            rtype: a,
            ecs: Some(("10.2.9.0", 24)),
            want: &["192.0.2.2"],
            // Not 16: 10.2.0.0/16 holds the region1 /24; 10.2.8.0/21 is all region2.
            want_ecs: Some((24, 21)),
        },
        // The longer prefix decides, and the scope says so.
        Case {
            src: "127.0.0.1",
            rtype: a,
            ecs: Some(("10.2.3.0", 24)),
            want: &["192.0.2.1"],
            want_ecs: Some((24, 24)),
        },
        Case {
            src: "127.0.0.1",
            rtype: a,
            ecs: Some(("2001:db8:1:2::", 56)),
            want: &["192.0.2.2"],
            want_ecs: Some((56, 48)),
        },
        Case {
            src: "127.0.0.1",
            rtype: RecordType::AAAA,
            ecs: Some(("10.1.0.0", 16)),
            want: &["2001:db8::a"],
            want_ecs: Some((16, 16)),
        },
        // No topology match: every target; scope 1, as 128.0.0.0/1 holds no entry.
        Case {
            src: "127.0.0.1",
            rtype: a,
            ecs: Some(("172.16.0.0", 20)),
            want: &["192.0.2.1", "192.0.2.2"],
            want_ecs: Some((20, 1)),
        },
        // Without ECS the source address decides.
        Case {
            src: "127.0.0.2",
            rtype: a,
            ecs: None,
            want: &["192.0.2.1"],
            want_ecs: None,
        },
        Case {
            src: "127.0.0.3",
            rtype: a,
            ecs: None,
            want: &["192.0.2.2"],
            want_ecs: None,
        },
        Case {
            src: "127.0.0.3",
            rtype: RecordType::AAAA,
            ecs: None,
            want: &["2001:db8::b"],
            want_ecs: None,
        },
        Case {
            src: "127.0.0.4",
            rtype: a,
            ecs: None,
            want: &["192.0.2.1", "192.0.2.2"],
            want_ecs: None,
        },
        // ECS wins over the source address.
        Case {
            src: "127.0.0.2",
            rtype: a,
            ecs: Some(("10.2.9.0", 24)),
            want: &["192.0.2.2"],
            // Not 16: 10.2.0.0/16 holds the region1 /24; 10.2.8.0/21 is all region2.
            want_ecs: Some((24, 21)),
        },
        Case {
            src: "127.0.0.3",
            rtype: a,
            ecs: Some(("10.1.0.0", 24)),
            want: &["192.0.2.1"],
            want_ecs: Some((24, 16)),
        },
    ];
    for c in cases {
        let m = ask_from(&s, c.src, &ecs_query(&format!("{name}."), c.rtype, c.ecs));
        let what = format!("from {} {:?} ecs {:?}", c.src, c.rtype, c.ecs);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{what}");
        assert_eq!(set(&m), strs(c.want), "{what}");
        assert_eq!(ecs_of(&m), c.want_ecs, "{what}");
    }
}

/// `gslb check` and `gslb serve` read the `[[topology]]` entries: a good IPv4 + IPv6
/// table is accepted, a bad entry is reported with the file and line.
#[test]
fn check_validates_topology_entries() {
    let zones = TempDir::new("policy-check");
    std::fs::write(zones.path().join("gslb.example.zone"), ZONE).unwrap();
    let cfg = zones.path().join("gslb.toml");
    let run = |args: &[&str]| {
        std::process::Command::new(crate::harness::BIN)
            .args(args)
            .env_remove("GSLB_API_TOKEN")
            .output()
            .unwrap()
    };
    let (cfg_s, zones_s) = (cfg.to_str().unwrap(), zones.path().to_str().unwrap());

    std::fs::write(&cfg, ECS_TOPOLOGY).unwrap();
    let o = run(&["check", "--config", cfg_s, "--zones-dir", zones_s]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("6 topology entries"), "{out}");

    let bad = [
        ("cidr = \"2001:db8:1::1/48\"", "host bits"),
        ("cidr = \"2001:db8:1::/129\"", "prefix length"),
        ("cidr = \"::ffff:10.1.0.0/112\"", "twice"),
        ("cidr = \"10.1.0.0\"", "ADDRESS/PREFIX"),
    ];
    for (line, needle) in bad {
        // The bad entry is on line 5, after a valid one.
        let text = format!(
            "[[topology]]\ncidr = \"10.1.0.0/16\"\nlocality = \"r1\"\n[[topology]]\n{line}\nlocality = \"r2\"\n"
        );
        std::fs::write(&cfg, &text).unwrap();
        for cmd in ["check", "serve"] {
            let mut args = vec![cmd, "--config", cfg_s, "--zones-dir", zones_s];
            let data = zones.path().join("data");
            if cmd == "serve" {
                args.extend(["--dns-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"]);
                args.extend(["--data-dir", data.to_str().unwrap()]);
            }
            let o = run(&args);
            let e = String::from_utf8_lossy(&o.stderr);
            assert_ne!(o.status.code(), Some(0), "{cmd} accepted {line}");
            assert!(
                e.contains("gslb.toml:5") && e.contains(needle),
                "{cmd} {line}: {e}"
            );
        }
    }
}
