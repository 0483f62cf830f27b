//! The engine against a snapshot built in memory; responses parsed by hickory.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

use super::*;
use crate::health::{Health, HealthCell};
use crate::model::NameService;
use crate::policy::Topology;
use crate::snapshot::ServiceMap;
use crate::zone::ZoneSet;

const ZONE: &str = r#"$ORIGIN t.example.
$TTL 3600
@       SOA ns1 hostmaster 1 7200 3600 1209600 300
        NS  ns1
        NS  ns2
        TXT "apex text"
ns1     A    192.0.2.53
        AAAA 2001:db8::53
ns2     A    192.0.2.54
www 300 A    192.0.2.80
alias   CNAME www
toapp   CNAME app
loop1   CNAME loop2
loop2   CNAME loop1
out     CNAME www.elsewhere.test.
dangling CNAME missing
a.b.c   TXT "deep"
*.wild  A 192.0.2.99
sub     NS ns.sub
ns.sub  A 192.0.2.153
"#;

static N: AtomicU32 = AtomicU32::new(0);

fn zones() -> ZoneSet {
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "gslb-engine-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = ZONE.to_string();
    for i in 0..40 {
        text.push_str(&format!("big TXT \"record {i:02} {}\"\n", "x".repeat(40)));
    }
    std::fs::write(dir.join("t.example.zone"), text).unwrap();
    let zs = ZoneSet::load_dir(&dir).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    zs
}

fn service(json: serde_json::Value, health: Health) -> (Arc<str>, Option<Arc<ServiceEntry>>) {
    let spec = NameService::from_json(json).unwrap();
    let name: Arc<str> = spec.name.clone().into();
    let entry = ServiceEntry::compile(Arc::new(spec), None, None, |_| {
        Arc::new(HealthCell::new(health))
    });
    (name, Some(Arc::new(entry)))
}

fn snapshot() -> Snapshot {
    let services = ServiceMap::default().with_changes([
        service(
            serde_json::json!({
                "name": "app.t.example", "ttl": 42, "policy": "RoundRobin",
                "targets": [
                    {"name": "a", "address": "192.0.2.1"},
                    {"name": "b", "address": "192.0.2.2"},
                    {"name": "c", "address": "192.0.2.3"},
                    {"name": "d", "address": "2001:db8::1"}
                ]
            }),
            Health::Healthy,
        ),
        service(
            serde_json::json!({
                "name": "t.example", "policy": "RoundRobin",
                "targets": [{"name": "a", "address": "192.0.2.7"}]
            }),
            Health::Healthy,
        ),
        service(
            serde_json::json!({
                "name": "down.t.example", "policy": "RoundRobin", "allDown": "NoData",
                "healthCheck": {"port": 80},
                "targets": [{"name": "a", "address": "192.0.2.9"}]
            }),
            Health::Unhealthy,
        ),
    ]);
    Snapshot {
        zones: Arc::new(zones()),
        services,
        topology: Arc::new(Topology::default()),
        unloaded: false,
    }
}

fn query(name: &str, rtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::query();
    m.metadata.id = 4242;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m
}

struct T {
    snap: Snapshot,
    settings: Settings,
    now_ms: u64,
    rng: fastrand::Rng,
    scratch: Scratch,
    out: Vec<u8>,
}

impl T {
    fn new() -> Self {
        Self {
            snap: snapshot(),
            settings: Settings::default(),
            now_ms: 1_700_000_000_000,
            rng: fastrand::Rng::with_seed(7),
            scratch: Scratch::new(),
            out: Vec::new(),
        }
    }

    fn raw(&mut self, bytes: &[u8], tr: Transport) -> Option<(Outcome, Vec<u8>)> {
        let req = Request {
            bytes,
            src: IpAddr::V4(Ipv4Addr::LOCALHOST),
            transport: tr,
            now_ms: self.now_ms,
        };
        answer(
            &self.snap,
            &self.settings,
            &req,
            &mut self.rng,
            &mut self.scratch,
            &mut self.out,
        )
        .map(|o| (o, self.out.clone()))
    }

    fn ask_with(&mut self, m: &Message, tr: Transport) -> (Outcome, Message) {
        let (o, bytes) = self.raw(&m.to_vec().unwrap(), tr).expect("an answer");
        let r = Message::from_vec(&bytes).expect("response parses");
        assert_eq!(r.metadata.id, m.metadata.id);
        assert_eq!(r.metadata.message_type, MessageType::Response);
        assert!(!r.metadata.recursion_available);
        (o, r)
    }

    fn ask(&mut self, name: &str, rtype: RecordType) -> Message {
        self.ask_with(&query(name, rtype, Some(1232)), Transport::Udp)
            .1
    }
}

fn types(rs: &[hickory_proto::rr::Record]) -> Vec<RecordType> {
    rs.iter().map(|r| r.record_type()).collect()
}

fn addrs(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

#[test]
fn apex_soa_and_ns_with_glue() {
    let mut t = T::new();
    let r = t.ask("t.example.", RecordType::SOA);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative);
    assert_eq!(types(&r.answers), vec![RecordType::SOA]);
    assert_eq!(r.answers[0].ttl, 3600);

    let r = t.ask("t.example.", RecordType::NS);
    assert!(r.metadata.authoritative);
    assert_eq!(types(&r.answers), vec![RecordType::NS; 2]);
    let glue: Vec<(String, RecordType)> = r
        .additionals
        .iter()
        .map(|g| (g.name.to_ascii(), g.record_type()))
        .collect();
    assert_eq!(
        glue,
        vec![
            ("ns1.t.example.".into(), RecordType::A),
            ("ns1.t.example.".into(), RecordType::AAAA),
            ("ns2.t.example.".into(), RecordType::A),
        ]
    );
    assert_eq!(r.edns.as_ref().unwrap().max_payload(), 1232);
}

#[test]
fn nxdomain_and_nodata_carry_soa() {
    let mut t = T::new();
    let r = t.ask("nope.t.example.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(r.metadata.authoritative);
    assert!(r.answers.is_empty());
    assert_eq!(types(&r.authorities), vec![RecordType::SOA]);
    assert_eq!(r.authorities[0].ttl, 300, "min(SOA TTL, MINIMUM)");
    assert_eq!(r.authorities[0].name.to_ascii(), "t.example.");

    let r = t.ask("www.t.example.", RecordType::TXT);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative && r.answers.is_empty());
    assert_eq!(types(&r.authorities), vec![RecordType::SOA]);

    // Empty non-terminal: NODATA, not NXDOMAIN.
    let r = t.ask("b.c.t.example.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(types(&r.authorities), vec![RecordType::SOA]);
}

#[test]
fn refused_outside_zones_and_for_transfers_and_classes() {
    let mut t = T::new();
    for (name, rtype) in [
        ("example.com.", RecordType::A),
        ("example.", RecordType::SOA),
        (".", RecordType::NS),
        ("t.example.", RecordType::AXFR),
        ("t.example.", RecordType::IXFR),
    ] {
        let r = t.ask(name, rtype);
        assert_eq!(
            r.metadata.response_code,
            ResponseCode::Refused,
            "{name} {rtype}"
        );
        assert!(!r.metadata.authoritative);
        assert!(r.answers.is_empty() && r.authorities.is_empty());
    }
    let mut q = query("www.t.example.", RecordType::TXT, None);
    q.queries[0].query_class = DNSClass::CH;
    assert_eq!(
        t.ask_with(&q, Transport::Udp).1.metadata.response_code,
        ResponseCode::Refused
    );
    q.queries[0].query_class = DNSClass::ANY;
    q.queries[0].query_type = RecordType::A;
    let r = t.ask_with(&q, Transport::Udp).1;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addrs(&r), vec![IpAddr::from_str("192.0.2.80").unwrap()]);
}

#[test]
fn referral_below_delegation() {
    let mut t = T::new();
    for name in ["sub.t.example.", "x.y.sub.t.example.", "ns.sub.t.example."] {
        let r = t.ask(name, RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(!r.metadata.authoritative, "{name}");
        assert!(r.answers.is_empty());
        assert_eq!(types(&r.authorities), vec![RecordType::NS]);
        assert_eq!(r.authorities[0].name.to_ascii(), "sub.t.example.");
        assert_eq!(types(&r.additionals), vec![RecordType::A]);
        assert_eq!(r.additionals[0].name.to_ascii(), "ns.sub.t.example.");
    }
    // DS is the parent's: authoritative NODATA.
    let r = t.ask("sub.t.example.", RecordType::DS);
    assert!(r.metadata.authoritative);
    assert_eq!(types(&r.authorities), vec![RecordType::SOA]);
}

#[test]
fn cname_chasing() {
    let mut t = T::new();
    let r = t.ask("alias.t.example.", RecordType::A);
    assert!(r.metadata.authoritative);
    assert_eq!(types(&r.answers), vec![RecordType::CNAME, RecordType::A]);
    assert_eq!(r.answers[1].name.to_ascii(), "www.t.example.");
    // Asking for the CNAME itself does not chase.
    let r = t.ask("alias.t.example.", RecordType::CNAME);
    assert_eq!(types(&r.answers), vec![RecordType::CNAME]);
    // Chase into a NameService.
    let r = t.ask("toapp.t.example.", RecordType::A);
    assert_eq!(types(&r.answers)[0], RecordType::CNAME);
    assert_eq!(addrs(&r).len(), 3);
    assert_eq!(r.answers[1].name.to_ascii(), "app.t.example.");
    assert_eq!(r.answers[1].ttl, 42);
    // Out of zone: just the CNAME.
    let r = t.ask("out.t.example.", RecordType::A);
    assert_eq!(types(&r.answers), vec![RecordType::CNAME]);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    // Dangling: NXDOMAIN for the target (RFC 6604), CNAME kept.
    let r = t.ask("dangling.t.example.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(types(&r.answers), vec![RecordType::CNAME]);
    assert_eq!(types(&r.authorities), vec![RecordType::SOA]);
    // Loop: stops.
    let r = t.ask("loop1.t.example.", RecordType::A);
    assert_eq!(types(&r.answers), vec![RecordType::CNAME; 2]);
    // NODATA after a chase carries the SOA.
    let r = t.ask("alias.t.example.", RecordType::TXT);
    assert_eq!(types(&r.answers), vec![RecordType::CNAME]);
    assert_eq!(types(&r.authorities), vec![RecordType::SOA]);
}

#[test]
fn wildcard_synthesis() {
    let mut t = T::new();
    let r = t.ask("Anything.deeper.wild.t.example.", RecordType::A);
    assert!(r.metadata.authoritative);
    assert_eq!(addrs(&r), vec![IpAddr::from_str("192.0.2.99").unwrap()]);
    assert_eq!(
        r.answers[0].name.to_ascii(),
        "Anything.deeper.wild.t.example."
    );
    let r = t.ask("x.wild.t.example.", RecordType::TXT);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(types(&r.authorities), vec![RecordType::SOA]);
}

#[test]
fn edns_payload_and_badvers() {
    let mut t = T::new();
    for (ask, _) in [(4096u16, ()), (512, ()), (100, ())] {
        let (_, r) = t.ask_with(
            &query("www.t.example.", RecordType::A, Some(ask)),
            Transport::Udp,
        );
        assert_eq!(r.edns.as_ref().unwrap().max_payload(), 1232, "asked {ask}");
    }
    let (_, r) = t.ask_with(
        &query("www.t.example.", RecordType::A, None),
        Transport::Udp,
    );
    assert!(r.edns.is_none());

    let mut q = query("www.t.example.", RecordType::A, Some(1232));
    q.edns.as_mut().unwrap().set_version(1);
    let (o, r) = t.ask_with(&q, Transport::Udp);
    assert_eq!(o.rcode, rcode::BADVERS);
    // 16 is BADVERS in an OPT context (hickory names it BADSIG).
    assert_eq!(u16::from(r.metadata.response_code), 16);
    let e = r.edns.as_ref().expect("OPT in BADVERS");
    assert_eq!((e.version(), e.rcode_high()), (0, 1));
    assert!(r.answers.is_empty());
}

#[test]
fn truncation_over_udp_complete_over_tcp() {
    let mut t = T::new();
    let (o, r) = t.ask_with(
        &query("big.t.example.", RecordType::TXT, None),
        Transport::Udp,
    );
    assert!(o.truncated && r.metadata.truncation);
    assert!(r.answers.is_empty() && r.authorities.is_empty() && r.additionals.is_empty());
    assert_eq!(r.queries.len(), 1);
    let (o, r) = t.ask_with(
        &query("big.t.example.", RecordType::TXT, Some(4096)),
        Transport::Udp,
    );
    assert!(o.truncated);
    assert!(r.edns.is_some(), "OPT kept when truncated");
    assert!(t.out.len() <= 1232);
    let (o, r) = t.ask_with(
        &query("big.t.example.", RecordType::TXT, None),
        Transport::Tcp,
    );
    assert!(!o.truncated && !r.metadata.truncation);
    assert_eq!(r.answers.len(), 40);
    // Small answers are not truncated without EDNS.
    let (o, _) = t.ask_with(&query("t.example.", RecordType::NS, None), Transport::Udp);
    assert!(!o.truncated);
}

#[test]
fn question_case_echoed() {
    let mut t = T::new();
    let r = t.ask("ApP.T.eXaMpLe.", RecordType::A);
    assert_eq!(r.queries[0].name().to_ascii(), "ApP.T.eXaMpLe.");
    assert_eq!(addrs(&r).len(), 3);
    let r = t.ask("WwW.t.example.", RecordType::A);
    assert_eq!(r.queries[0].name().to_ascii(), "WwW.t.example.");
}

#[test]
fn opcodes_formerr_and_drops() {
    let mut t = T::new();
    for op in [OpCode::Notify, OpCode::Update, OpCode::Status] {
        let mut q = query("t.example.", RecordType::SOA, None);
        q.metadata.op_code = op;
        q.metadata.checking_disabled = true;
        let (o, r) = t.ask_with(&q, Transport::Udp);
        assert_eq!(r.metadata.response_code, ResponseCode::NotImp, "{op:?}");
        assert_eq!(r.metadata.op_code, op);
        assert_eq!(o.rcode, rcode::NOTIMP);
        // CD belongs to QUERY (RFC 6840 §5.9; CONTRACT §5): not echoed here.
        assert!(!r.metadata.checking_disabled, "{op:?} echoed CD");
    }
    // A QUERY echoes it.
    let mut q = query("t.example.", RecordType::SOA, None);
    q.metadata.checking_disabled = true;
    assert!(t.ask_with(&q, Transport::Udp).1.metadata.checking_disabled);
    let good = query("www.t.example.", RecordType::A, None)
        .to_vec()
        .unwrap();
    // Garbage after the question.
    let mut bad = good.clone();
    bad.extend_from_slice(b"garbage");
    let (o, b) = t.raw(&bad, Transport::Udp).unwrap();
    assert_eq!(o.rcode, rcode::FORMERR);
    assert_eq!(&b[..2], &good[..2]);
    assert_eq!(b[3] & 0x0f, 1);
    // qdcount 2 and 0.
    let mut two = query("www.t.example.", RecordType::A, None);
    two.add_query(Query::query(
        Name::from_ascii("t.example.").unwrap(),
        RecordType::A,
    ));
    assert_eq!(
        t.ask_with(&two, Transport::Udp).1.metadata.response_code,
        ResponseCode::FormErr
    );
    let mut zero = good[..12].to_vec();
    zero[5] = 0;
    assert_eq!(
        t.raw(&zero, Transport::Udp).unwrap().0.rcode,
        rcode::FORMERR
    );
    // A header only claiming a question.
    assert_eq!(
        t.raw(&good[..12], Transport::Udp).unwrap().0.rcode,
        rcode::FORMERR
    );
    // Shorter than a header, and responses: dropped.
    assert!(t.raw(&good[..11], Transport::Udp).is_none());
    assert!(t.raw(&[], Transport::Udp).is_none());
    let mut resp = good.clone();
    resp[2] |= 0x80;
    assert!(t.raw(&resp, Transport::Udp).is_none());
    // OPT as a query type.
    let (o, _) = t
        .raw(
            &query("t.example.", RecordType::OPT, None).to_vec().unwrap(),
            Transport::Udp,
        )
        .unwrap();
    assert_eq!(o.rcode, rcode::FORMERR);
}

#[test]
fn nameservice_answers() {
    let mut t = T::new();
    let r = t.ask("app.t.example.", RecordType::A);
    assert!(r.metadata.authoritative);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    let first = addrs(&r);
    assert_eq!(first.len(), 3);
    assert!(r.answers.iter().all(|a| a.ttl == 42));
    let second = addrs(&t.ask("app.t.example.", RecordType::A));
    let mut rotated = first.clone();
    rotated.rotate_left(1);
    assert_eq!(second, rotated, "rotated by one per query");
    let r = t.ask("app.t.example.", RecordType::AAAA);
    assert_eq!(addrs(&r), vec![IpAddr::from_str("2001:db8::1").unwrap()]);
    // Other types: NODATA with the SOA; the name exists.
    for rtype in [RecordType::TXT, RecordType::MX, RecordType::CNAME] {
        let r = t.ask("app.t.example.", rtype);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
        assert_eq!(types(&r.authorities), vec![RecordType::SOA]);
    }
    // Apex NameService: A from the policy, SOA/NS/TXT static.
    let r = t.ask("t.example.", RecordType::A);
    assert_eq!(addrs(&r), vec![IpAddr::from_str("192.0.2.7").unwrap()]);
    assert_eq!(
        types(&t.ask("t.example.", RecordType::SOA).answers),
        vec![RecordType::SOA]
    );
    let r = t.ask("t.example.", RecordType::NS);
    assert_eq!(r.answers.len(), 2);
    assert_eq!(r.additionals.len(), 3, "glue (the OPT is apart)");
    assert_eq!(
        types(&t.ask("t.example.", RecordType::TXT).answers),
        vec![RecordType::TXT]
    );
    let r = t.ask("t.example.", RecordType::AAAA);
    assert!(r.answers.is_empty());
    assert_eq!(types(&r.authorities), vec![RecordType::SOA]);
    // Empty selection (allDown NoData): NODATA.
    let r = t.ask("down.t.example.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    assert_eq!(types(&r.authorities), vec![RecordType::SOA]);
}

fn with_ecs(name: &str, data: &[u8]) -> Message {
    let mut q = query(name, RecordType::A, Some(1232));
    q.edns
        .as_mut()
        .unwrap()
        .options_mut()
        .insert(EdnsOption::Unknown(8, data.to_vec()));
    q
}

fn ecs_of(r: &Message) -> Option<ClientSubnet> {
    match r.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(s) => Some(*s),
        _ => None,
    }
}

#[test]
fn client_subnet() {
    let mut t = T::new();
    // Valid ECS is echoed with scope 0 for RoundRobin and static answers.
    for name in ["app.t.example.", "www.t.example.", "nope.t.example."] {
        let (_, r) = t.ask_with(
            &with_ecs(name, &[0, 1, 24, 0, 198, 51, 100]),
            Transport::Udp,
        );
        let e = ecs_of(&r).expect("ECS echoed");
        assert_eq!(e.addr(), IpAddr::from_str("198.51.100.0").unwrap());
        assert_eq!((e.source_prefix(), e.scope_prefix()), (24, 0));
    }
    // Source prefix 0 (privacy) and IPv6.
    let (_, r) = t.ask_with(&with_ecs("app.t.example.", &[0, 1, 0, 0]), Transport::Udp);
    assert_eq!(ecs_of(&r).unwrap().source_prefix(), 0);
    let (_, r) = t.ask_with(
        &with_ecs(
            "app.t.example.",
            &[0, 2, 48, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 1],
        ),
        Transport::Udp,
    );
    assert_eq!(ecs_of(&r).unwrap().source_prefix(), 48);
    // No ECS in, none out.
    assert!(ecs_of(&t.ask("app.t.example.", RecordType::A)).is_none());
    // Malformed: FORMERR, OPT without ECS.
    for bad in [
        &[0, 3, 24, 0, 1, 2, 3][..],
        &[0, 1, 33, 0, 1, 2, 3, 4, 5],
        &[0, 1, 24, 0, 1, 2, 3, 4],
        &[0, 1, 20, 0, 10, 1, 0xff],
        &[0, 1],
    ] {
        let (o, r) = t.ask_with(&with_ecs("app.t.example.", bad), Transport::Udp);
        assert_eq!(o.rcode, rcode::FORMERR, "{bad:?}");
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
        assert!(r.edns.is_some() && ecs_of(&r).is_none());
    }
}

#[test]
fn never_panics_on_noise() {
    let mut t = T::new();
    let mut rng = fastrand::Rng::with_seed(99);
    let seeds: Vec<Vec<u8>> = [
        query("app.t.example.", RecordType::A, Some(1232)),
        query("alias.t.example.", RecordType::A, None),
        with_ecs("app.t.example.", &[0, 1, 24, 0, 1, 2, 3]),
    ]
    .iter()
    .map(|m| m.to_vec().unwrap())
    .collect();
    for i in 0..20_000 {
        let mut m = seeds[i % seeds.len()].clone();
        match rng.u8(0..4) {
            0 => {
                for _ in 0..rng.usize(1..4) {
                    let j = rng.usize(..m.len());
                    m[j] = rng.u8(..);
                }
            }
            1 => m.truncate(rng.usize(..m.len())),
            2 => m.extend((0..rng.usize(1..20)).map(|_| rng.u8(..))),
            _ => m = (0..rng.usize(0..300)).map(|_| rng.u8(..)).collect(),
        }
        for tr in [Transport::Udp, Transport::Tcp] {
            if let Some((o, bytes)) = t.raw(&m, tr) {
                assert!(bytes.len() >= 12);
                if tr == Transport::Udp {
                    assert!(bytes.len() <= 1232 || o.truncated);
                }
            }
        }
    }
}

#[test]
fn names_above_nameservices_exist() {
    let mut t = T::new();
    let svc = |name: &str| {
        service(
            serde_json::json!({
                "name": name, "policy": "RoundRobin",
                "targets": [{"name": "a", "address": "192.0.2.11"}]
            }),
            Health::Healthy,
        )
    };
    t.snap.services = t
        .snap
        .services
        .with_changes([svc("a.ent.t.example"), svc("svc.wild.t.example")]);
    // ent.t.example only exists because a.ent.t.example is a NameService: NODATA.
    for rtype in [
        RecordType::A,
        RecordType::AAAA,
        RecordType::TXT,
        RecordType::ANY,
    ] {
        let r = t.ask("Ent.t.example.", rtype);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{rtype}");
        assert!(r.metadata.authoritative && r.answers.is_empty());
        assert_eq!(types(&r.authorities), vec![RecordType::SOA]);
    }
    // Below a NameService, and beside it: nothing.
    for name in ["x.a.ent.t.example.", "b.ent.t.example.", "x.ent.t.example."] {
        let r = t.ask(name, RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert_eq!(types(&r.authorities), vec![RecordType::SOA]);
    }
    // RFC 4592: the NameService svc.wild.t.example is the closest encloser of
    // y.svc.wild.t.example, which has no `*` child: no synthesis from *.wild.
    let r = t.ask("y.svc.wild.t.example.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(r.answers.is_empty());
    let r = t.ask("y.other.wild.t.example.", RecordType::A);
    assert_eq!(addrs(&r), vec![IpAddr::from_str("192.0.2.99").unwrap()]);
    // Deleting the NameService takes its empty non-terminal along.
    t.snap.services = t
        .snap
        .services
        .with_changes([("a.ent.t.example".into(), None)]);
    let r = t.ask("ent.t.example.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
}

/// A query for `name` A with EDNS and a COOKIE option of `cookie` bytes.
fn with_cookie(name: &str, cookie: &[u8]) -> Message {
    let mut m = query(name, RecordType::A, Some(1232));
    m.edns
        .as_mut()
        .unwrap()
        .options_mut()
        .insert(EdnsOption::Unknown(10, cookie.to_vec()));
    m
}

fn cookie_of(r: &Message) -> Option<Vec<u8>> {
    r.edns
        .as_ref()?
        .options()
        .as_ref()
        .iter()
        .find_map(|(_, o)| match o {
            EdnsOption::Unknown(10, d) => Some(d.clone()),
            _ => None,
        })
}

#[test]
fn rate_limiting_slips_drops_and_spares_cookies_and_tcp() {
    let mut t = T::new();
    t.settings.rrl = Some(crate::dns::rrl::Rrl::new(&crate::dns::rrl::Settings {
        responses_per_second: 3,
        slip: 2,
        window_seconds: 5,
        ipv4_prefix: 24,
        ipv6_prefix: 56,
        exempt: vec![],
        table_size: 1024,
    }));
    let q = query("www.t.example.", RecordType::A, Some(1232));
    let mut verdicts = Vec::new();
    for _ in 0..7 {
        let (o, r) = t.ask_with(&q, Transport::Udp);
        verdicts.push(o.rrl);
        if o.rrl == rrl::Verdict::Slip {
            // A slip: TC=1, the question and the OPT, no records.
            assert!(r.metadata.truncation && r.answers.is_empty());
            assert_eq!(r.queries.len(), 1);
            assert!(r.edns.is_some());
            assert!(!o.truncated, "a slip is not counted as a size truncation");
        } else {
            assert!(!r.metadata.truncation);
        }
    }
    use rrl::Verdict::{Drop, Pass, Slip};
    assert_eq!(verdicts, [Pass, Pass, Pass, Drop, Slip, Drop, Slip]);
    // TCP is never limited.
    assert_eq!(t.ask_with(&q, Transport::Tcp).0.rrl, Pass);
    // A valid server cookie is never limited; a client-only cookie is.
    let (o, r) = t.ask_with(&with_cookie("www.t.example.", &[1; 8]), Transport::Udp);
    assert_eq!(o.rrl, Drop);
    let cookie = cookie_of(&r).expect("a server cookie even when limited");
    assert_eq!(cookie.len(), 24);
    for _ in 0..5 {
        let (o, r) = t.ask_with(&with_cookie("www.t.example.", &cookie), Transport::Udp);
        assert_eq!(o.rrl, Pass);
        assert_eq!(cookie_of(&r).unwrap(), cookie, "a fresh cookie is echoed");
    }
    // NXDOMAIN of any name shares one bucket per zone.
    let mut nx = Vec::new();
    for i in 0..6 {
        let q = query(&format!("nx{i}.t.example."), RecordType::A, Some(1232));
        nx.push(t.ask_with(&q, Transport::Udp).0.rrl);
    }
    assert_eq!(nx, [Pass, Pass, Pass, Drop, Slip, Drop]);
    // The next second credits the rate again (the debt of www is 4, capped at 15).
    t.now_ms += 2000;
    assert_eq!(t.ask_with(&q, Transport::Udp).0.rrl, Pass);
}

#[test]
fn nodata_at_a_nameservice_keeps_the_soa_ttl_within_the_service_ttl() {
    let mut t = T::new();
    // down.t.example: TTL 30 (default), all down with NoData; the SOA says 300.
    let r = t.ask("down.t.example.", RecordType::A);
    assert!(r.answers.is_empty());
    assert_eq!(types(&r.authorities), vec![RecordType::SOA]);
    assert_eq!(r.authorities[0].ttl, 30);
    // app.t.example (TTL 42): other types are NODATA with at most 42.
    let r = t.ask("app.t.example.", RecordType::TXT);
    assert_eq!(r.authorities[0].ttl, 42);
    // Elsewhere the zone's negative TTL (min(SOA TTL, MINIMUM) = 300).
    let r = t.ask("www.t.example.", RecordType::TXT);
    assert_eq!(r.authorities[0].ttl, 300);
}

#[test]
fn nsid_and_chaos_identity() {
    let mut t = T::new();
    let mut q = query("www.t.example.", RecordType::A, Some(1232));
    q.edns
        .as_mut()
        .unwrap()
        .options_mut()
        .insert(EdnsOption::Unknown(3, vec![]));
    let chaos = |name: &str| {
        let mut m = query(name, RecordType::TXT, None);
        m.queries[0].query_class = DNSClass::CH;
        m
    };
    // Not configured: no NSID, CHAOS identity refused.
    let (_, r) = t.ask_with(&q, Transport::Udp);
    assert!(r.edns.as_ref().unwrap().options().as_ref().is_empty());
    let (_, r) = t.ask_with(&chaos("id.server."), Transport::Udp);
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    // Configured.
    t.settings.nsid = Some(b"dc1-a".as_slice().into());
    let (_, r) = t.ask_with(&q, Transport::Udp);
    let opts = r.edns.as_ref().unwrap().options().as_ref().to_vec();
    assert_eq!(opts.len(), 1);
    assert!(
        matches!(&opts[0].1, EdnsOption::NSID(p) if p.as_ref() == b"dc1-a"),
        "{opts:?}"
    );
    // Not asked for: not sent.
    let (_, r) = t.ask_with(
        &query("www.t.example.", RecordType::A, Some(1232)),
        Transport::Udp,
    );
    assert!(r.edns.as_ref().unwrap().options().as_ref().is_empty());
    for name in ["id.server.", "HOSTNAME.bind."] {
        let (_, r) = t.ask_with(&chaos(name), Transport::Udp);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(r.metadata.authoritative);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].dns_class, DNSClass::CH);
        assert_eq!(r.answers[0].name.to_ascii(), name);
        match &r.answers[0].data {
            RData::TXT(txt) => assert_eq!(txt.txt_data[0].as_ref(), b"dc1-a"),
            other => panic!("{other:?}"),
        }
    }
    let (_, r) = t.ask_with(&chaos("version.bind."), Transport::Udp);
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn any_is_minimal_over_udp_and_complete_over_tcp() {
    let mut t = T::new();
    let q = query("t.example.", RecordType::ANY, Some(4096));
    let (_, udp) = t.ask_with(&q, Transport::Udp);
    // The apex is a NameService (t.example -> 192.0.2.7): its A answers alone.
    assert_eq!(types(&udp.answers), vec![RecordType::A]);
    let (_, tcp) = t.ask_with(&q, Transport::Tcp);
    let mut all = types(&tcp.answers);
    all.dedup();
    assert_eq!(
        all,
        vec![
            RecordType::A,
            RecordType::SOA,
            RecordType::NS,
            RecordType::TXT
        ]
    );
    // A static name: one RRset, the lowest type; a CNAME is the answer itself.
    let (_, r) = t.ask_with(
        &query("ns1.t.example.", RecordType::ANY, None),
        Transport::Udp,
    );
    assert_eq!(types(&r.answers), vec![RecordType::A]);
    let (_, r) = t.ask_with(
        &query("alias.t.example.", RecordType::ANY, None),
        Transport::Udp,
    );
    assert_eq!(types(&r.answers), vec![RecordType::CNAME]);
    let (_, r) = t.ask_with(
        &query("alias.t.example.", RecordType::ANY, None),
        Transport::Tcp,
    );
    assert_eq!(types(&r.answers), vec![RecordType::CNAME]);
}
