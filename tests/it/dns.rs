//! Integration tests: what the DNS answers (CONTRACT §2 and §5), over real UDP and
//! TCP against the real binary.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RecordType};

use crate::harness::{
    REPO, Server, ServerOpts, TempDir, addrs, dns_tcp, dns_udp, dns_udp_raw, free_port, query,
    tcp_recv, tcp_send,
};

fn types(rs: &[hickory_proto::rr::Record]) -> Vec<RecordType> {
    rs.iter().map(|r| r.record_type()).collect()
}

fn ip(s: &str) -> IpAddr {
    IpAddr::from_str(s).unwrap()
}

/// The repository's zones plus a test zone with an RRset too big for UDP.
fn zones_with_big_rrset() -> TempDir {
    let d = TempDir::new("dnszones");
    std::fs::copy(
        Path::new(REPO).join("zones/gslb.example.zone"),
        d.path().join("gslb.example.zone"),
    )
    .unwrap();
    let mut big = String::from(
        "$ORIGIN big.test.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 192.0.2.1\n",
    );
    for i in 0..40 {
        big.push_str(&format!("txt TXT \"{i:02} {}\"\n", "y".repeat(60)));
    }
    std::fs::write(d.path().join("big.test.zone"), big).unwrap();
    d
}

/// Flags byte 2 and 3 of a raw response.
fn rcode_of(raw: &[u8]) -> u8 {
    raw[3] & 0x0f
}

#[test]
fn apex_and_static_records_with_aa_and_glue() {
    let srv = Server::start();
    let r = srv.udp("gslb.example.", RecordType::SOA);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative);
    assert!(!r.metadata.recursion_available);
    assert_eq!(types(&r.answers), vec![RecordType::SOA]);

    let r = srv.udp("gslb.example.", RecordType::NS);
    assert!(r.metadata.authoritative);
    assert_eq!(types(&r.answers), vec![RecordType::NS, RecordType::NS]);
    let mut glue: Vec<(String, IpAddr)> = r
        .additionals
        .iter()
        .filter_map(|g| {
            let a = match &g.data {
                hickory_proto::rr::RData::A(a) => IpAddr::V4(a.0),
                hickory_proto::rr::RData::AAAA(a) => IpAddr::V6(a.0),
                _ => return None,
            };
            Some((g.name.to_ascii(), a))
        })
        .collect();
    glue.sort();
    assert_eq!(
        glue,
        vec![
            ("ns1.gslb.example.".to_string(), ip("192.0.2.53")),
            ("ns1.gslb.example.".to_string(), ip("2001:db8::53")),
            ("ns2.gslb.example.".to_string(), ip("198.51.100.53")),
            ("ns2.gslb.example.".to_string(), ip("2001:db8:1::53")),
        ]
    );

    let r = srv.udp("www.gslb.example.", RecordType::A);
    assert!(r.metadata.authoritative);
    assert_eq!(addrs(&r), vec![ip("192.0.2.80")]);
    assert_eq!(r.answers[0].ttl, 300);
    let r = srv.tcp("www.gslb.example.", RecordType::AAAA);
    assert_eq!(addrs(&r), vec![ip("2001:db8::80")]);
    let r = srv.udp("gslb.example.", RecordType::MX);
    assert_eq!(types(&r.answers), vec![RecordType::MX]);
}

#[test]
fn negative_answers_carry_the_soa() {
    let srv = Server::start();
    let r = srv.udp("nope.gslb.example.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(r.metadata.authoritative && r.answers.is_empty());
    assert_eq!(types(&r.authorities), vec![RecordType::SOA]);
    assert_eq!(r.authorities[0].name.to_ascii(), "gslb.example.");
    // RFC 2308: min(SOA TTL 3600, MINIMUM 300).
    assert_eq!(r.authorities[0].ttl, 300);

    let r = srv.udp("www.gslb.example.", RecordType::TXT);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative && r.answers.is_empty());
    assert_eq!(types(&r.authorities), vec![RecordType::SOA]);
    // The free apex has no address records: NODATA.
    let r = srv.udp("gslb.example.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(types(&r.authorities), vec![RecordType::SOA]);
}

#[test]
fn refused_outside_the_zones_without_recursion() {
    let srv = Server::start();
    for name in ["example.com.", "example.", "."] {
        let mut q = query(name, RecordType::A, Some(1232));
        q.metadata.recursion_desired = true;
        let r = dns_udp(srv.dns, &q);
        assert_eq!(r.metadata.response_code, ResponseCode::Refused, "{name}");
        assert!(!r.metadata.recursion_available && !r.metadata.authoritative);
        assert!(r.metadata.recursion_desired, "RD copied");
        assert!(r.answers.is_empty());
    }
}

#[test]
fn referral_for_the_delegation() {
    let srv = Server::start();
    for name in ["sub.gslb.example.", "host.sub.gslb.example."] {
        let r = srv.udp(name, RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(
            !r.metadata.authoritative,
            "{name}: referral is not authoritative"
        );
        assert!(r.answers.is_empty());
        assert_eq!(types(&r.authorities), vec![RecordType::NS]);
        assert_eq!(r.authorities[0].name.to_ascii(), "sub.gslb.example.");
        let mut glue = Message::query();
        glue.answers = r.additionals.clone();
        assert_eq!(addrs(&glue), vec![ip("192.0.2.153")]);
    }
}

#[test]
fn cname_is_followed_inside_the_zone() {
    let srv = Server::start();
    let r = srv.udp("alias.gslb.example.", RecordType::A);
    assert!(r.metadata.authoritative);
    assert_eq!(types(&r.answers), vec![RecordType::CNAME, RecordType::A]);
    assert_eq!(r.answers[1].name.to_ascii(), "www.gslb.example.");
    assert_eq!(addrs(&r), vec![ip("192.0.2.80")]);
    let r = srv.udp("alias.gslb.example.", RecordType::CNAME);
    assert_eq!(types(&r.answers), vec![RecordType::CNAME]);
}

#[test]
fn edns_is_echoed_with_at_most_1232_and_badvers() {
    let srv = Server::start();
    for size in [512u16, 1232, 4096, 65535] {
        let r = dns_udp(
            srv.dns,
            &query("www.gslb.example.", RecordType::A, Some(size)),
        );
        let e = r.edns.as_ref().expect("OPT echoed");
        assert_eq!(e.max_payload(), 1232, "client advertised {size}");
        assert_eq!(e.version(), 0);
    }
    let r = dns_udp(srv.dns, &query("www.gslb.example.", RecordType::A, None));
    assert!(r.edns.is_none(), "no OPT without EDNS in the query");

    let mut q = query("www.gslb.example.", RecordType::A, Some(1232));
    q.edns.as_mut().unwrap().set_version(1);
    let r = dns_udp(srv.dns, &q);
    assert_eq!(u16::from(r.metadata.response_code), 16, "BADVERS");
    let e = r.edns.as_ref().expect("OPT in a BADVERS answer");
    assert_eq!((e.rcode_high(), e.version()), (1, 0));
    assert!(r.answers.is_empty());
}

#[test]
fn big_answers_truncate_over_udp_and_complete_over_tcp() {
    let zones = zones_with_big_rrset();
    let srv = Server::start_with(ServerOpts {
        zones_dir: zones.path().to_path_buf(),
        ..Default::default()
    });
    for edns in [None, Some(1232), Some(4096)] {
        let raw = dns_udp_raw(
            srv.dns,
            &query("txt.big.test.", RecordType::TXT, edns)
                .to_vec()
                .unwrap(),
        )
        .unwrap();
        assert!(raw.len() <= 1232);
        let r = Message::from_vec(&raw).unwrap();
        assert!(r.metadata.truncation, "TC=1 with EDNS {edns:?}");
        assert_eq!(r.queries.len(), 1);
        assert!(r.answers.is_empty() && r.authorities.is_empty() && r.additionals.is_empty());
        assert_eq!(r.edns.is_some(), edns.is_some());
    }
    let r = dns_tcp(srv.dns, &query("txt.big.test.", RecordType::TXT, None));
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 40);
    // The example zone's answers fit in 512 bytes.
    let r = dns_udp(srv.dns, &query("gslb.example.", RecordType::NS, None));
    assert!(!r.metadata.truncation);
    assert_eq!(r.additionals.len(), 4);
}

#[test]
fn tcp_pipelines_many_queries_on_one_connection() {
    let srv = Server::start();
    let mut s = TcpStream::connect(srv.dns).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let names = [
        "www.gslb.example.",
        "gslb.example.",
        "nope.gslb.example.",
        "alias.gslb.example.",
        "example.com.",
    ];
    let mut ids = Vec::new();
    // All sent before reading any answer.
    let mut burst = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let mut q = query(n, RecordType::A, None);
        q.metadata.id = 1000 + i as u16;
        ids.push(q.metadata.id);
        let b = q.to_vec().unwrap();
        burst.extend_from_slice(&(b.len() as u16).to_be_bytes());
        burst.extend_from_slice(&b);
    }
    std::io::Write::write_all(&mut s, &burst).unwrap();
    let mut codes = Vec::new();
    for id in &ids {
        let r = Message::from_vec(&tcp_recv(&mut s).expect("answer")).unwrap();
        assert_eq!(r.metadata.id, *id);
        codes.push(r.metadata.response_code);
    }
    assert_eq!(
        codes,
        vec![
            ResponseCode::NoError,
            ResponseCode::NoError,
            ResponseCode::NXDomain,
            ResponseCode::NoError,
            ResponseCode::Refused
        ]
    );
    // And more on the same connection afterwards.
    for _ in 0..3 {
        tcp_send(
            &mut s,
            &query("www.gslb.example.", RecordType::A, None)
                .to_vec()
                .unwrap(),
        );
        let r = Message::from_vec(&tcp_recv(&mut s).unwrap()).unwrap();
        assert_eq!(addrs(&r), vec![ip("192.0.2.80")]);
    }
}

#[test]
fn idle_tcp_connections_are_closed() {
    let srv = Server::start();
    let mut s = TcpStream::connect(srv.dns).unwrap();
    tcp_send(
        &mut s,
        &query("www.gslb.example.", RecordType::A, None)
            .to_vec()
            .unwrap(),
    );
    assert!(tcp_recv(&mut s).is_some());
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the server closes an idle connection");
    assert!(start.elapsed() < Duration::from_secs(60));
}

#[test]
fn question_case_is_echoed() {
    let srv = Server::start();
    for name in [
        "WwW.GsLb.ExAmPlE.",
        "ApP.GsLb.ExAmPlE.",
        "NOPE.gslb.EXAMPLE.",
    ] {
        let r = srv.udp(name, RecordType::A);
        assert_eq!(r.queries[0].name().to_ascii(), name);
        let r = srv.tcp(name, RecordType::A);
        assert_eq!(r.queries[0].name().to_ascii(), name);
    }
    let r = srv.udp("WwW.GsLb.ExAmPlE.", RecordType::A);
    assert_eq!(addrs(&r), vec![ip("192.0.2.80")]);
}

#[test]
fn other_opcodes_get_notimp() {
    let srv = Server::start();
    for op in [OpCode::Notify, OpCode::Update, OpCode::Status] {
        let mut q = query("gslb.example.", RecordType::SOA, None);
        q.metadata.op_code = op;
        let r = dns_udp(srv.dns, &q);
        assert_eq!(r.metadata.response_code, ResponseCode::NotImp, "{op:?}");
        assert_eq!(r.metadata.message_type, MessageType::Response);
        assert_eq!(r.metadata.op_code, op);
    }
}

#[test]
fn malformed_queries_get_formerr_or_are_dropped() {
    let srv = Server::start();
    let good = query("www.gslb.example.", RecordType::A, None)
        .to_vec()
        .unwrap();
    // Garbage after a valid header.
    let mut bad = good[..12].to_vec();
    bad.extend_from_slice(&[0x3f, 0xff, 0x01]);
    let raw = dns_udp_raw(srv.dns, &bad).expect("FORMERR answer");
    assert_eq!(&raw[..2], &good[..2], "same id");
    assert!(raw[2] & 0x80 != 0, "QR");
    assert_eq!(rcode_of(&raw), 1);
    // Garbage after a whole question.
    let mut bad = good.clone();
    bad.extend_from_slice(b"\x01\x02\x03");
    assert_eq!(rcode_of(&dns_udp_raw(srv.dns, &bad).unwrap()), 1);
    // Two questions.
    let mut two = query("www.gslb.example.", RecordType::A, None);
    two.add_query(Query::query(
        Name::from_ascii("gslb.example.").unwrap(),
        RecordType::SOA,
    ));
    let raw = dns_udp_raw(srv.dns, &two.to_vec().unwrap()).unwrap();
    assert_eq!(rcode_of(&raw), 1);
    // Shorter than a header: silence.
    assert!(dns_udp_raw(srv.dns, &good[..11]).is_none());
    // A response is never answered.
    let mut resp = good.clone();
    resp[2] |= 0x80;
    assert!(dns_udp_raw(srv.dns, &resp).is_none());
    // The server still answers afterwards.
    assert_eq!(
        addrs(&srv.udp("www.gslb.example.", RecordType::A)),
        vec![ip("192.0.2.80")]
    );
}

#[test]
fn zone_transfers_are_refused() {
    let srv = Server::start();
    for t in [RecordType::AXFR, RecordType::IXFR] {
        let r = dns_tcp(srv.dns, &query("gslb.example.", t, None));
        assert_eq!(r.metadata.response_code, ResponseCode::Refused, "{t}");
        assert!(r.answers.is_empty());
        let r = dns_udp(srv.dns, &query("gslb.example.", t, None));
        assert_eq!(
            r.metadata.response_code,
            ResponseCode::Refused,
            "{t} over UDP"
        );
    }
}

fn app(ttl: u32) -> serde_json::Value {
    serde_json::json!({
        "name": "app.gslb.example",
        "ttl": ttl,
        "policy": "RoundRobin",
        "targets": [
            {"name": "dc1", "address": "192.0.2.10"},
            {"name": "dc2", "address": "198.51.100.10"},
            {"name": "dc3", "address": "203.0.113.10"},
            {"name": "dc6", "address": "2001:db8::10"}
        ]
    })
}

#[test]
fn nameservice_is_answered_at_once_and_gone_after_delete() {
    let srv = Server::start();
    assert_eq!(
        srv.udp("app.gslb.example.", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
    srv.put_ns(&app(17));
    let r = srv.udp("app.gslb.example.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative);
    assert!(r.answers.iter().all(|a| a.ttl == 17), "service TTL");
    let first = addrs(&r);
    let mut sorted = first.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![ip("192.0.2.10"), ip("198.51.100.10"), ip("203.0.113.10")]
    );
    // RoundRobin: rotated by one on each query.
    let mut expect = first.clone();
    for _ in 0..4 {
        expect.rotate_left(1);
        assert_eq!(addrs(&srv.udp("app.gslb.example.", RecordType::A)), expect);
    }
    // By family.
    let r = srv.tcp("app.gslb.example.", RecordType::AAAA);
    assert_eq!(addrs(&r), vec![ip("2001:db8::10")]);
    assert_eq!(r.answers[0].ttl, 17);
    // Other types: NODATA with the SOA.
    let r = srv.udp("app.gslb.example.", RecordType::TXT);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    assert_eq!(types(&r.authorities), vec![RecordType::SOA]);
    // Replaced: the new TTL at once.
    srv.put_ns(&app(5));
    assert!(
        srv.udp("app.gslb.example.", RecordType::A)
            .answers
            .iter()
            .all(|a| a.ttl == 5)
    );
    // Deleted: NXDOMAIN at once.
    let d = srv.delete("/api/v1/nameservices/app.gslb.example");
    assert_eq!(d.status, 204, "{}", d.body);
    let r = srv.udp("app.gslb.example.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(types(&r.authorities), vec![RecordType::SOA]);
}

#[test]
fn names_above_a_nameservice_are_nodata_not_nxdomain() {
    let srv = Server::start();
    let mut ns = app(30);
    ns["name"] = "app.eu.gslb.example".into();
    srv.put_ns(&ns);
    // eu.gslb.example has no records but a NameService below it: it exists.
    for rtype in [RecordType::A, RecordType::TXT] {
        let r = srv.udp("EU.gslb.example.", rtype);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{rtype}");
        assert!(r.metadata.authoritative && r.answers.is_empty());
        assert_eq!(types(&r.authorities), vec![RecordType::SOA]);
    }
    let r = srv.udp("x.eu.gslb.example.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        addrs(&srv.udp("app.eu.gslb.example.", RecordType::A)).len(),
        3
    );
    // Gone with the NameService.
    let d = srv.delete("/api/v1/nameservices/app.eu.gslb.example");
    assert_eq!(d.status, 204, "{}", d.body);
    let r = srv.udp("eu.gslb.example.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
}

fn ecs_query(name: &str, option: EdnsOption) -> Message {
    let mut q = query(name, RecordType::A, Some(1232));
    q.edns.as_mut().unwrap().options_mut().insert(option);
    q
}

fn ecs_of(r: &Message) -> Option<ClientSubnet> {
    match r.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(s) => Some(*s),
        _ => None,
    }
}

#[test]
fn client_subnet_is_echoed_and_validated() {
    let srv = Server::start();
    srv.put_ns(&app(30));
    let subnet = ClientSubnet::new(ip("198.51.100.0"), 24, 0);
    for name in ["app.gslb.example.", "www.gslb.example."] {
        let r = dns_udp(srv.dns, &ecs_query(name, EdnsOption::Subnet(subnet)));
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        let e = ecs_of(&r).expect("ECS echoed");
        assert_eq!(e.addr(), ip("198.51.100.0"));
        assert_eq!((e.source_prefix(), e.scope_prefix()), (24, 0), "{name}");
    }
    let r = dns_udp(
        srv.dns,
        &ecs_query(
            "app.gslb.example.",
            EdnsOption::Subnet(ClientSubnet::new(ip("2001:db8:77::"), 48, 0)),
        ),
    );
    let e = ecs_of(&r).unwrap();
    assert_eq!(
        (e.addr(), e.source_prefix(), e.scope_prefix()),
        (ip("2001:db8:77::"), 48, 0)
    );
    assert_eq!(addrs(&r).len(), 3);
    // No ECS in the query, none in the answer.
    assert!(ecs_of(&srv.udp("app.gslb.example.", RecordType::A)).is_none());
    // The same option written by hand is accepted...
    let r = dns_udp(
        srv.dns,
        &ecs_query(
            "app.gslb.example.",
            EdnsOption::Unknown(8, vec![0, 1, 24, 0, 198, 51, 100]),
        ),
    );
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    // ...and malformed ones get FORMERR.
    for bad in [
        vec![0, 3, 24, 0, 198, 51, 100],    // unknown family
        vec![0, 1, 40, 0, 1, 2, 3, 4, 5],   // prefix longer than IPv4
        vec![0, 1, 24, 0, 198, 51, 100, 7], // more address bytes than the prefix needs
        vec![0, 1, 24, 0, 198, 51],         // fewer
        vec![0, 1, 20, 0, 198, 51, 0x7f],   // bits set beyond the prefix
        vec![0, 1],                         // too short
    ] {
        let r = dns_udp(
            srv.dns,
            &ecs_query("app.gslb.example.", EdnsOption::Unknown(8, bad.clone())),
        );
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr, "{bad:?}");
        assert!(r.answers.is_empty());
    }
}

/// A burst of queries from several sockets, sent before reading anything: the
/// server takes them in batches; every one is answered, correctly, to its sender.
#[test]
fn a_burst_of_queries_is_answered_in_full() {
    let srv = Server::start();
    srv.put_ns(&app(30));
    let kinds: [(&str, RecordType); 5] = [
        ("app.gslb.example.", RecordType::A),
        ("www.gslb.example.", RecordType::A),
        ("nope.gslb.example.", RecordType::A),
        ("APP.gslb.example.", RecordType::AAAA),
        ("gslb.example.", RecordType::NS),
    ];
    let clients: Vec<UdpSocket> = (0..4)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        })
        .collect();
    let per_client = 50u16;
    for (c, s) in clients.iter().enumerate() {
        for k in 0..per_client {
            let (name, rtype) = kinds[usize::from(k) % kinds.len()];
            let mut q = query(name, rtype, (!k.is_multiple_of(3)).then_some(1232));
            q.metadata.id = (c as u16) << 8 | k;
            s.send_to(&q.to_vec().unwrap(), srv.dns).unwrap();
        }
    }
    for (c, s) in clients.iter().enumerate() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..per_client {
            let mut buf = [0u8; 1500];
            let (n, from) = s.recv_from(&mut buf).expect("every query answered");
            assert_eq!(from, srv.dns);
            let r = Message::from_vec(&buf[..n]).unwrap();
            let id = r.metadata.id;
            assert_eq!(usize::from(id >> 8), c, "answer to this socket's query");
            let k = id & 0xff;
            assert!(k < per_client && seen.insert(k), "id {id} once");
            let (name, rtype) = kinds[usize::from(k) % kinds.len()];
            assert_eq!(
                r.queries[0].name.to_ascii(),
                name,
                "question echoed as sent"
            );
            assert_eq!(r.queries[0].query_type, rtype);
            assert_eq!(
                r.edns.is_some(),
                !k.is_multiple_of(3),
                "{name}: EDNS echoed when asked"
            );
            let mut got = addrs(&r);
            got.sort();
            match k % 5 {
                0 => assert_eq!(
                    got,
                    vec![ip("192.0.2.10"), ip("198.51.100.10"), ip("203.0.113.10")]
                ),
                1 => assert_eq!(got, vec![ip("192.0.2.80")]),
                2 => assert_eq!(r.metadata.response_code, ResponseCode::NXDomain),
                3 => assert_eq!(got, vec![ip("2001:db8::10")]),
                _ => assert_eq!(types(&r.answers), vec![RecordType::NS; 2]),
            }
        }
    }
}

#[test]
fn queries_are_counted_in_metrics() {
    let srv = Server::start();
    srv.udp("www.gslb.example.", RecordType::A);
    srv.udp("nope.gslb.example.", RecordType::AAAA);
    assert!(dns_udp_raw(srv.dns, &[0u8; 5]).is_none());
    let m = srv.get("/metrics");
    assert_eq!(m.status, 200);
    assert!(
        m.body
            .contains("gslb_dns_queries_total{qtype=\"A\",rcode=\"NOERROR\"} 1"),
        "{}",
        m.body
    );
    assert!(
        m.body
            .contains("gslb_dns_queries_total{qtype=\"AAAA\",rcode=\"NXDOMAIN\"} 1")
    );
    assert!(m.body.contains("gslb_dns_dropped_total 1"), "{}", m.body);
}

#[test]
fn ipv6_listen_address_serves_udp_and_tcp() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    }
    let port = free_port();
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let srv = Server::start_with(ServerOpts {
        extra_args: vec!["--dns-listen".into(), v6.to_string()],
        ..Default::default()
    });
    let r = dns_udp_v6(v6, &query("www.gslb.example.", RecordType::A, None));
    assert_eq!(addrs(&r), vec![ip("192.0.2.80")]);
    let r = dns_tcp(v6, &query("www.gslb.example.", RecordType::AAAA, None));
    assert_eq!(addrs(&r), vec![ip("2001:db8::80")]);
    // The IPv4 listener still works next to it.
    assert_eq!(
        addrs(&srv.udp("www.gslb.example.", RecordType::A)),
        vec![ip("192.0.2.80")]
    );
}

fn dns_udp_v6(server: SocketAddr, q: &Message) -> Message {
    let sock = UdpSocket::bind("[::1]:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.send_to(&q.to_vec().unwrap(), server).unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = sock.recv_from(&mut buf).expect("UDP answer over IPv6");
    Message::from_vec(&buf[..n]).unwrap()
}
