//! Differential test: the hand-written engine against an independent, slow
//! reference built with hickory-proto's `Message` API.
//!
//! The reference reads the same zone files with hickory's own zone file parser (not
//! our loader), looks NameServices up by their dotted names, and builds each
//! response as a hickory `Message` from the rules of docs/dns.md. Both see the same
//! policy choices: the reference runs first with a copy of the rng, then the
//! rotation counters are put back, so `policy::select` draws the same for both.
//!
//! For every query of a large corpus (all query types, letter case, classes, EDNS
//! sizes and flags, ECS variants, UDP and TCP, odd headers) the engine's bytes are
//! decoded by hickory and compared with the reference field by field: header flags,
//! rcode (extended included), question, every record of every section (RRsets
//! normalised to name and type order, records inside an RRset in order), TTLs and
//! OPT/ECS. The question bytes must be echoed exactly as sent. Byte-for-byte
//! equality of whole messages is not required (compression choices legitimately
//! differ: the engine compresses case-insensitively and points negative SOAs at the
//! apex), but it is counted and asserted for the answers that must be identical:
//! NameService addresses for a lowercase question.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_proto::serialize::txt::Parser;

use super::*;
use crate::health::{Health, HealthCell};
use crate::model::{Locality, NameService};
use crate::policy::{Topology, TopologyEntry};
use crate::snapshot::ServiceMap;
use crate::zone::ZoneSet;

// ---------------------------------------------------------------------------
// Data

const T_ZONE: &str = r#"$ORIGIN t.example.
$TTL 3600
@       SOA ns1 hostmaster 1 7200 3600 1209600 300
        NS  ns1
        NS  ns2
        NS  ns.other.test.
        MX  10 mail
        TXT "apex text"
ns1     A    192.0.2.53
        AAAA 2001:db8::53
ns2     A    192.0.2.54
mail    A    192.0.2.25
www 300 A    192.0.2.80
www 300 A    192.0.2.81
www 300 AAAA 2001:db8::80
alias   CNAME www
alias2  CNAME alias
toapp   CNAME app
toent   CNAME ent
toloc   CNAME loc
out     CNAME www.elsewhere.test.
dangling CNAME missing
loop1   CNAME loop2
loop2   CNAME loop1
c1      CNAME c2
c2      CNAME c3
c3      CNAME c4
c4      CNAME c5
c5      CNAME c6
c6      CNAME c7
c7      CNAME c8
c8      CNAME c9
c9      CNAME c10
c10     CNAME www
tosub   CNAME x.sub
tochild CNAME www.child
a.b.c   TXT "deep"
*.wild  A 192.0.2.99
*.wild  TXT "wild text"
*.cw    CNAME www
x.*.ew  TXT "below a wildcard"
sub     NS ns.sub
sub     NS ns1
ns.sub  A 192.0.2.153
_sip._udp SRV 10 20 5060 sip
sip     A 192.0.2.60
caa     CAA 0 issue "ca.example.net"
ptr     PTR www
hinfo   HINFO "cpu" "os"
svcstatic TXT "static next to a NameService"
svcstatic MX 5 mail
"#;

const CHILD_ZONE: &str = r#"$ORIGIN child.t.example.
$TTL 600
@       SOA ns1.t.example. hostmaster.t.example. 7 7200 3600 1209600 60
        NS  ns1.t.example.
www     A   192.0.2.200
"#;

const OTHER_ZONE: &str = r#"$ORIGIN other.test.
$TTL 120
@       SOA ns.other.test. admin.other.test. 3 7200 3600 1209600 30
        NS  ns
ns      A   198.51.100.53
info    TXT "other zone"
"#;

fn t_zone() -> String {
    let mut text = T_ZONE.to_string();
    // Too big for any UDP answer; too big for 512 bytes but not for 1232.
    for i in 0..40 {
        text.push_str(&format!("big TXT \"record {i:02} {}\"\n", "x".repeat(40)));
    }
    for i in 0..12 {
        text.push_str(&format!("mid TXT \"record {i:02} {}\"\n", "y".repeat(40)));
    }
    // Answers a few bytes apart around 512 (sNN) and 1232 (lNN) bytes.
    for k in 0..12 {
        for r in 0..2 {
            text.push_str(&format!("s{k:02} TXT \"{r}{}\"\n", "s".repeat(199 + 3 * k)));
        }
    }
    for k in 0..14 {
        for r in 0..5 {
            text.push_str(&format!("l{k:02} TXT \"{r}{}\"\n", "l".repeat(199 + 3 * k)));
        }
    }
    text
}

fn zone_files() -> Vec<(&'static str, String)> {
    vec![
        ("t.example.zone", t_zone()),
        ("child.t.example.zone", CHILD_ZONE.to_string()),
        ("other.test.zone", OTHER_ZONE.to_string()),
    ]
}

fn nameservices() -> Vec<(serde_json::Value, Health)> {
    use serde_json::json;
    let rr = |name: &str, addrs: &[&str]| {
        json!({
            "name": name, "ttl": 42, "policy": "RoundRobin",
            "targets": addrs.iter().enumerate()
                .map(|(i, a)| json!({"name": format!("t{i}"), "address": a}))
                .collect::<Vec<_>>()
        })
    };
    vec![
        (
            rr(
                "app.t.example",
                &["192.0.2.1", "192.0.2.2", "192.0.2.3", "2001:db8::1"],
            ),
            Health::Healthy,
        ),
        (rr("t.example", &["192.0.2.7"]), Health::Healthy),
        (rr("a.ent.t.example", &["192.0.2.11"]), Health::Healthy),
        (rr("svcstatic.t.example", &["192.0.2.12"]), Health::Healthy),
        (
            rr("deep.x.wild.t.example", &["192.0.2.13"]),
            Health::Healthy,
        ),
        (
            rr("v6only.t.example", &["2001:db8::6", "2001:db8::7"]),
            Health::Healthy,
        ),
        (rr("www2.child.t.example", &["192.0.2.14"]), Health::Healthy),
        (
            json!({
                "name": "ratio.t.example", "ttl": 5, "policy": "Ratio",
                "targets": [
                    {"name": "a", "address": "10.0.0.1", "ratio": 50},
                    {"name": "b", "address": "10.0.0.2", "ratio": 30},
                    {"name": "c", "address": "10.0.0.3", "ratio": 20},
                    {"name": "d", "address": "2001:db8::a", "ratio": 1}
                ]
            }),
            Health::Healthy,
        ),
        (
            json!({
                "name": "loc.t.example", "ttl": 20, "policy": "Locality",
                "targets": [
                    {"name": "w1", "address": "10.1.0.1", "locality": "us-west/a"},
                    {"name": "w2", "address": "10.1.0.2", "locality": "us-west/b"},
                    {"name": "e1", "address": "10.2.0.1", "locality": "us-east/a"},
                    {"name": "u1", "address": "10.3.0.1", "locality": "eu-west/a"},
                    {"name": "w6", "address": "2001:db8:1::1", "locality": "us-west/a"},
                    {"name": "u6", "address": "2001:db8:3::1", "locality": "eu-west/a"}
                ],
                "failover": [{"from": "ap-south", "to": "eu-west"}],
                "distribute": [{"from": "us-central", "to": {"us-west": 1, "us-east": 1}}]
            }),
            Health::Healthy,
        ),
        (
            json!({
                "name": "down.t.example", "policy": "RoundRobin", "allDown": "NoData",
                "healthCheck": {"port": 80},
                "targets": [{"name": "a", "address": "192.0.2.9"}]
            }),
            Health::Unhealthy,
        ),
        (
            json!({
                "name": "open.t.example", "policy": "RoundRobin", "allDown": "AnswerAll",
                "healthCheck": {"port": 80},
                "targets": [{"name": "a", "address": "192.0.2.31"}, {"name": "b", "address": "192.0.2.32"}]
            }),
            Health::Unhealthy,
        ),
    ]
}

fn topology() -> Topology {
    let e = |cidr: &str, loc: &str| {
        let (a, p) = cidr.split_once('/').unwrap();
        TopologyEntry {
            addr: a.parse().unwrap(),
            prefix: p.parse().unwrap(),
            locality: Locality::parse(loc).unwrap(),
        }
    };
    Topology::new(vec![
        e("198.51.100.0/24", "us-west/a"),
        e("198.51.0.0/16", "us-east/b"),
        e("203.0.113.0/24", "eu-west/c"),
        e("100.64.0.0/10", "ap-south/x"),
        e("100.127.0.0/16", "us-central/x"),
        e("2001:db8:aa::/48", "us-west/b"),
        e("2001:db8::/32", "eu-west/z"),
    ])
}

fn snapshot() -> Snapshot {
    let dir = std::env::temp_dir().join(format!("gslb-differential-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (file, text) in zone_files() {
        std::fs::write(dir.join(file), text).unwrap();
    }
    let zones = ZoneSet::load_dir(&dir).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let services =
        ServiceMap::default().with_changes(nameservices().into_iter().map(|(json, health)| {
            let spec = NameService::from_json(json).unwrap();
            let name: Arc<str> = spec.name.clone().into();
            let entry = ServiceEntry::compile(Arc::new(spec), None, None, |_| {
                Arc::new(HealthCell::new(health))
            });
            (name, Some(Arc::new(entry)))
        }));
    Snapshot {
        zones: Arc::new(zones),
        services,
        topology: Arc::new(topology()),
        unloaded: false,
    }
}

// ---------------------------------------------------------------------------
// The reference

/// One zone as hickory's zone file parser reads it.
struct RefZone {
    apex: Name,
    rrsets: BTreeMap<RrKey, RecordSet>,
    /// Every owner name and every name between an owner and the apex, lowercase.
    existing: BTreeSet<Name>,
}

impl RefZone {
    fn parse(text: &str) -> Self {
        let (apex, rrsets) = Parser::new(text, None, None)
            .parse()
            .expect("hickory parses the zone");
        let apex = apex.to_lowercase();
        let mut existing = BTreeSet::new();
        for key in rrsets.keys() {
            let mut n = Name::from(&key.name).to_lowercase();
            while n.num_labels() >= apex.num_labels() {
                existing.insert(n.clone());
                n = n.base_name();
            }
        }
        Self {
            apex,
            rrsets,
            existing,
        }
    }

    fn rrset(&self, name: &Name, rtype: RecordType) -> Option<&RecordSet> {
        self.rrsets
            .get(&RrKey::new(LowerName::from(name), rtype))
            .filter(|rs| !rs.is_empty())
    }

    /// Every RRset at `name`, in type order.
    fn rrsets_at(&self, name: &Name) -> Vec<&RecordSet> {
        let lower = name.to_lowercase();
        self.rrsets
            .iter()
            .filter(|(k, rs)| Name::from(&k.name) == lower && !rs.is_empty())
            .map(|(_, rs)| rs)
            .collect()
    }

    fn contains(&self, name: &Name) -> bool {
        self.apex.zone_of(name)
    }

    /// The highest delegation point (NS below the apex) at or above `name`.
    fn cut_above(&self, name: &Name) -> Option<Name> {
        let mut found = None;
        let mut n = name.to_lowercase();
        while n.num_labels() > self.apex.num_labels() {
            if self.rrset(&n, RecordType::NS).is_some() {
                found = Some(n.clone());
            }
            n = n.base_name();
        }
        found
    }

    /// The SOA for negative answers: TTL min(SOA TTL, MINIMUM) (RFC 2308 §5).
    fn negative_soa(&self) -> Record {
        let soa = self
            .rrset(&self.apex, RecordType::SOA)
            .and_then(|rs| rs.records_without_rrsigs().next())
            .expect("zone has an SOA")
            .clone();
        let minimum = match &soa.data {
            RData::SOA(s) => s.minimum,
            _ => unreachable!(),
        };
        let mut r = soa;
        r.ttl = r.ttl.min(minimum);
        r
    }
}

/// Records of an RRset with `owner` as their name (wildcards, case) and the
/// RRset's TTL (its first record's).
fn records_of(rs: &RecordSet, owner: &Name) -> Vec<Record> {
    let mut out: Vec<Record> = rs.records_without_rrsigs().cloned().collect();
    let ttl = out.first().map_or(0, |r| r.ttl);
    for r in &mut out {
        r.name = owner.clone();
        r.ttl = ttl;
        r.dns_class = DNSClass::IN;
    }
    out
}

struct Reference {
    zones: Vec<RefZone>,
}

/// Sections and flags being built for one query.
#[derive(Default)]
struct Sections {
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
    aa: bool,
    scope: u8,
    failed_open: bool,
}

/// What the reference needs to know about a query beyond its `Message`.
struct Input<'a> {
    query: &'a Message,
    /// The EDNS payload size as sent (hickory cannot build one below 512).
    payload: Option<u16>,
    /// The ECS option data as sent, if any.
    ecs: Option<&'a [u8]>,
    /// The data of each COOKIE option as sent.
    cookies: &'a [Vec<u8>],
    /// An NSID option was sent.
    nsid: bool,
    src: IpAddr,
    transport: Transport,
}

/// The server secret and NSID the engine runs with in this test.
const SECRET_HEX: &str = "0123456789abcdef0011223344556677";
const NSID: &[u8] = b"gslb-diff-1";
/// The time both sides answer at (Unix milliseconds).
const NOW_MS: u64 = 1_750_000_000_123;

fn settings() -> Settings {
    Settings {
        nsid: Some(NSID.into()),
        cookie_secret: crate::dns::cookie::Secret::from_hex(SECRET_HEX).unwrap(),
        rrl: None,
    }
}

/// RFC 9018 server cookie, written apart from `dns::cookie`: version 1, reserved
/// zero, timestamp, SipHash-2-4 of client cookie | those 8 bytes | client address.
fn ref_server_cookie(client: &[u8], src: IpAddr, ts: u32, head: Option<[u8; 8]>) -> Vec<u8> {
    use std::hash::Hasher;
    let key: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&SECRET_HEX[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let head = head.unwrap_or_else(|| {
        let mut h = [1, 0, 0, 0, 0, 0, 0, 0];
        h[4..].copy_from_slice(&ts.to_be_bytes());
        h
    });
    let mut msg = client.to_vec();
    msg.extend_from_slice(&head);
    match src {
        IpAddr::V4(a) => msg.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => msg.extend_from_slice(&v4.octets()),
            None => msg.extend_from_slice(&a.octets()),
        },
    }
    let mut h = siphasher::sip::SipHasher24::new_with_key(&key.try_into().unwrap());
    h.write(&msg);
    let mut out = head.to_vec();
    out.extend_from_slice(&h.finish().to_le_bytes());
    out
}

/// The COOKIE option the reference answers with for one well-formed option.
fn ref_cookie_reply(data: &[u8], src: IpAddr) -> Vec<u8> {
    let now = (NOW_MS / 1000) as u32;
    let (client, server) = data.split_at(8);
    let fresh = server.len() == 16 && server[0] == 1 && {
        let ts = u32::from_be_bytes(server[4..8].try_into().unwrap());
        let age = i64::from(now.wrapping_sub(ts) as i32);
        let head: [u8; 8] = server[..8].try_into().unwrap();
        (-300..1800).contains(&age) && ref_server_cookie(client, src, ts, Some(head)) == server
    };
    let mut out = client.to_vec();
    if fresh {
        out.extend_from_slice(server);
    } else {
        out.extend_from_slice(&ref_server_cookie(client, src, now, None));
    }
    out
}

/// RFC 7871 validation, written apart from the engine's: (family, source, scope,
/// address bytes).
fn ref_ecs(data: &[u8]) -> Option<(u16, u8, u8, Vec<u8>)> {
    let (head, addr) = data.split_at_checked(4)?;
    let family = u16::from_be_bytes([head[0], head[1]]);
    let (source, scope) = (head[2], head[3]);
    let bits = match family {
        1 => 32,
        2 => 128,
        _ => return None,
    };
    if source > bits || addr.len() != usize::from(source).div_ceil(8) {
        return None;
    }
    let spare = addr.len() * 8 - usize::from(source);
    if spare > 0 && addr.last().is_some_and(|b| b & ((1u8 << spare) - 1) != 0) {
        return None;
    }
    Some((family, source, scope, addr.to_vec()))
}

fn ecs_addr(family: u16, bytes: &[u8]) -> IpAddr {
    if family == 1 {
        let mut a = [0u8; 4];
        a[..bytes.len()].copy_from_slice(bytes);
        IpAddr::from(a)
    } else {
        let mut a = [0u8; 16];
        a[..bytes.len()].copy_from_slice(bytes);
        IpAddr::from(a)
    }
}

impl Reference {
    fn new() -> Self {
        Self {
            zones: zone_files()
                .iter()
                .map(|(_, t)| RefZone::parse(t))
                .collect(),
        }
    }

    /// The most specific zone holding `name`.
    fn zone(&self, name: &Name) -> Option<&RefZone> {
        self.zones
            .iter()
            .filter(|z| z.contains(name))
            .max_by_key(|z| z.apex.num_labels())
    }

    /// The response to a query and whether an answer failed open, or `None` when
    /// the query is dropped.
    fn answer(
        &self,
        snap: &Snapshot,
        input: &Input<'_>,
        rng: &mut fastrand::Rng,
    ) -> Option<(Message, bool)> {
        let q = input.query;
        if q.metadata.message_type == MessageType::Response {
            return None;
        }
        let mut r = Message::new(q.metadata.id, MessageType::Response, q.metadata.op_code);
        r.metadata.recursion_desired = q.metadata.recursion_desired;
        r.metadata.checking_disabled = q.metadata.checking_disabled;
        let one = q.queries.len() == 1;
        if one {
            r.queries = q.queries.clone();
        }
        let ecs = input.ecs.map(ref_ecs);
        // One COOKIE option of 8 or 16..=40 bytes; anything else is FORMERR.
        let cookie_ok = match input.cookies {
            [] => None,
            [c] if c.len() == 8 || (16..=40).contains(&c.len()) => Some(true),
            _ => Some(false),
        };
        let mut s = Sections::default();
        let mut ecs_out = None;
        let rcode = if q.metadata.op_code != OpCode::Query {
            // CD belongs to QUERY.
            r.metadata.checking_disabled = false;
            ResponseCode::NotImp
        } else if !one {
            ResponseCode::FormErr
        } else if q.edns.as_ref().is_some_and(|e| e.version() > 0) {
            ResponseCode::BADVERS
        } else if matches!(ecs, Some(None)) || cookie_ok == Some(false) {
            ResponseCode::FormErr
        } else {
            let ecs = ecs.flatten();
            let client = match &ecs {
                Some((family, source, _, bytes)) if *source > 0 => crate::policy::ClientInfo {
                    addr: ecs_addr(*family, bytes),
                    ecs_source_prefix: Some(*source),
                },
                _ => crate::policy::ClientInfo {
                    addr: input.src,
                    ecs_source_prefix: None,
                },
            };
            let udp = input.transport == Transport::Udp;
            let rcode = self.resolve(snap, &q.queries[0], &client, udp, rng, &mut s);
            ecs_out = ecs.map(|(family, source, _, bytes)| {
                let bits = if family == 1 { 32 } else { 128 };
                let scope = if source == 0 { 0 } else { s.scope.min(bits) };
                ClientSubnet::new(ecs_addr(family, &bytes), source, scope)
            });
            rcode
        };
        r.metadata.authoritative = s.aa;
        r.metadata.response_code = rcode;
        r.answers = s.answers;
        r.authorities = s.authorities;
        r.additionals = s.additionals;
        if let Some(e) = &q.edns {
            let mut out = Edns::new();
            out.set_max_payload(1232);
            out.set_version(0);
            out.set_dnssec_ok(e.flags().dnssec_ok);
            if input.nsid {
                out.options_mut().insert(EdnsOption::Unknown(
                    u16::from(EdnsCode::NSID),
                    NSID.to_vec(),
                ));
            }
            if let Some(c) = ecs_out {
                out.options_mut().insert(EdnsOption::Subnet(c));
            }
            if cookie_ok == Some(true) {
                let reply = ref_cookie_reply(&input.cookies[0], input.src);
                out.options_mut().insert(EdnsOption::Unknown(10, reply));
            }
            r.set_edns(out);
        }
        let limit = match (input.transport, input.payload) {
            (Transport::Tcp, _) => 65535,
            (Transport::Udp, Some(p)) => usize::from(p.clamp(512, 1232)),
            (Transport::Udp, None) => 512,
        };
        if r.to_vec().expect("reference encodes").len() > limit {
            r.answers.clear();
            r.authorities.clear();
            r.additionals.clear();
            r.metadata.truncation = true;
        }
        Some((r, s.failed_open))
    }

    fn resolve(
        &self,
        snap: &Snapshot,
        q: &Query,
        client: &crate::policy::ClientInfo,
        udp: bool,
        rng: &mut fastrand::Rng,
        s: &mut Sections,
    ) -> ResponseCode {
        let qtype = q.query_type;
        if q.query_class == DNSClass::CH {
            // id.server and hostname.bind TXT: the NSID; the rest of CHAOS refused.
            let lower = q.name.to_lowercase().to_ascii();
            let id = lower == "id.server." || lower == "hostname.bind.";
            if !(id && matches!(qtype, RecordType::TXT | RecordType::ANY)) {
                return ResponseCode::Refused;
            }
            s.aa = true;
            let txt = hickory_proto::rr::rdata::TXT::from_bytes(vec![NSID]);
            let mut rec = Record::from_rdata(q.name.clone(), 0, RData::TXT(txt));
            rec.dns_class = DNSClass::CH;
            s.answers.push(rec);
            return ResponseCode::NoError;
        }
        if q.query_class != DNSClass::IN && q.query_class != DNSClass::ANY {
            return ResponseCode::Refused;
        }
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            return ResponseCode::Refused;
        }
        if qtype == RecordType::OPT {
            return ResponseCode::FormErr;
        }
        let Some(zone) = self.zone(&q.name) else {
            return ResponseCode::Refused;
        };
        s.aa = true;
        let mut name = q.name.clone();
        let mut seen: Vec<Name> = Vec::new();
        for depth in 0..=8 {
            seen.push(name.to_lowercase());
            // At or below a zone cut: a referral (DS at the cut is the parent's).
            let cut = zone.cut_above(&name);
            if let Some(cut) = cut.filter(|c| !(*c == name && qtype == RecordType::DS)) {
                if depth == 0 {
                    s.aa = false;
                    let ns = zone.rrset(&cut, RecordType::NS).unwrap();
                    s.authorities.extend(records_of(ns, &cut));
                    self.glue(zone, ns, s);
                }
                return ResponseCode::NoError;
            }
            if let Some(svc) = service(snap, &name) {
                self.service_answer(snap, zone, &name, svc, qtype, client, udp, rng, s);
                return ResponseCode::NoError;
            }
            // The records at `name`, possibly synthesized from a wildcard.
            let lower = name.to_lowercase();
            let source = if zone.existing.contains(&lower) {
                lower.clone()
            } else if services_below(snap, &lower) {
                s.authorities.push(zone.negative_soa());
                return ResponseCode::NoError;
            } else {
                // RFC 4592: the closest encloser is the longest existing ancestor;
                // NameServices and the names above them exist too.
                let mut ce = lower.base_name();
                while !(zone.existing.contains(&ce)
                    || service(snap, &ce).is_some()
                    || services_below(snap, &ce))
                {
                    ce = ce.base_name();
                }
                let wild = ce.prepend_label("*").unwrap();
                if !zone.existing.contains(&wild) {
                    s.authorities.push(zone.negative_soa());
                    return ResponseCode::NXDomain;
                }
                wild
            };
            let at = zone.rrsets_at(&source);
            // A CNAME: into the answer, and on to its target while that stays in
            // the zone, is new, and the chain is short enough.
            // ANY matches a CNAME: it is the answer, not followed (RFC 1034 §4.3.2).
            let cname = zone.rrset(&source, RecordType::CNAME);
            if let Some(cname) =
                cname.filter(|_| !matches!(qtype, RecordType::CNAME | RecordType::ANY))
            {
                s.answers.extend(records_of(cname, &name));
                let target = match &cname.records_without_rrsigs().next().unwrap().data {
                    RData::CNAME(c) => c.0.clone(),
                    _ => unreachable!(),
                };
                if depth == 8 || !zone.contains(&target) || seen.contains(&target.to_lowercase()) {
                    return ResponseCode::NoError;
                }
                name = target;
                continue;
            }
            if qtype == RecordType::ANY {
                if at.is_empty() {
                    s.authorities.push(zone.negative_soa());
                }
                // Over UDP one RRset (RFC 8482): the lowest type number.
                let take = if udp { 1 } else { usize::MAX };
                for rs in at.into_iter().take(take) {
                    s.answers.extend(records_of(rs, &name));
                }
                return ResponseCode::NoError;
            }
            match zone.rrset(&source, qtype) {
                Some(rs) => {
                    s.answers.extend(records_of(rs, &name));
                    self.glue(zone, rs, s);
                }
                None => s.authorities.push(zone.negative_soa()),
            }
            return ResponseCode::NoError;
        }
        ResponseCode::NoError
    }

    /// In-zone A and AAAA of the targets of an NS RRset, in the additional section.
    fn glue(&self, zone: &RefZone, rs: &RecordSet, s: &mut Sections) {
        if rs.record_type() != RecordType::NS {
            return;
        }
        let mut done: Vec<Name> = Vec::new();
        for r in rs.records_without_rrsigs() {
            let RData::NS(ns) = &r.data else { continue };
            let target = ns.0.to_lowercase();
            if !zone.contains(&target) || done.contains(&target) {
                continue;
            }
            done.push(target.clone());
            for t in [RecordType::A, RecordType::AAAA] {
                if let Some(a) = zone.rrset(&target, t) {
                    s.additionals.extend(records_of(a, &target));
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn service_answer(
        &self,
        snap: &Snapshot,
        zone: &RefZone,
        name: &Name,
        svc: &ServiceEntry,
        qtype: RecordType,
        client: &crate::policy::ClientInfo,
        udp: bool,
        rng: &mut fastrand::Rng,
        s: &mut Sections,
    ) {
        let before = s.answers.len();
        // The NODATA SOA's TTL cap: the service's TTL, or a policy's (degraded) TTL.
        let mut neg_ttl = svc.ttl;
        let mut addresses = |v6: bool, s: &mut Sections| {
            let mut out = Vec::new();
            let sel = crate::policy::select(svc, v6, client, &snap.topology, NOW_MS, rng, &mut out);
            neg_ttl = neg_ttl.min(sel.ttl);
            s.scope = s.scope.max(sel.ecs_scope);
            s.failed_open |= sel.failed_open;
            for a in out {
                let data = match a {
                    IpAddr::V4(a) => RData::A(a.into()),
                    IpAddr::V6(a) => RData::AAAA(a.into()),
                };
                s.answers
                    .push(Record::from_rdata(name.clone(), sel.ttl, data));
            }
        };
        match qtype {
            RecordType::A => addresses(false, s),
            RecordType::AAAA => addresses(true, s),
            RecordType::ANY => {
                // Over UDP one RRset: A, else AAAA, else the lowest static type.
                addresses(false, s);
                if !(udp && s.answers.len() > before) {
                    addresses(true, s);
                }
                for rs in zone.rrsets_at(name) {
                    if udp && s.answers.len() > before {
                        break;
                    }
                    if !matches!(rs.record_type(), RecordType::A | RecordType::AAAA) {
                        s.answers.extend(records_of(rs, name));
                    }
                }
            }
            _ => {
                if let Some(rs) = zone.rrset(&name.to_lowercase(), qtype) {
                    s.answers.extend(records_of(rs, name));
                    self.glue(zone, rs, s);
                }
            }
        }
        if s.answers.len() == before {
            // CONTRACT §5: the SOA's TTL at most the service's.
            let mut soa = zone.negative_soa();
            soa.ttl = soa.ttl.min(neg_ttl);
            s.authorities.push(soa);
        }
    }
}

/// The NameService at `name`, looked up by its dotted name.
fn service<'s>(snap: &'s Snapshot, name: &Name) -> Option<&'s Arc<ServiceEntry>> {
    snap.service(name.to_lowercase().to_ascii().trim_end_matches('.'))
}

/// True when some NameService lies strictly below `name` (found by walking all).
fn services_below(snap: &Snapshot, name: &Name) -> bool {
    snap.services.iter().any(|(n, _)| {
        let n = Name::from_ascii(format!("{n}.")).unwrap();
        n != *name && name.zone_of(&n)
    })
}

// ---------------------------------------------------------------------------
// The corpus

struct Case {
    desc: String,
    query: Message,
    bytes: Vec<u8>,
    payload: Option<u16>,
    ecs: Option<Vec<u8>>,
    cookies: Vec<Vec<u8>>,
    nsid: bool,
    src: IpAddr,
    transport: Transport,
}

/// EDNS options of a corpus query besides ECS.
#[derive(Default, Clone)]
struct Extra {
    /// Data of each COOKIE option, in order.
    cookies: Vec<Vec<u8>>,
    nsid: bool,
}

/// COOKIE option data for `src`: client only, with a fresh server cookie, one to
/// renew, expired, forged, of another length, and malformed ones.
fn cookie_variant(k: usize, src: IpAddr) -> Vec<Vec<u8>> {
    let client = [0xc1, 2, 3, 4, 5, 6, 7, 0xc8];
    let now = (NOW_MS / 1000) as u32;
    let with = |server: Vec<u8>| [client.to_vec(), server].concat();
    match k {
        0 => vec![client.to_vec()],
        1 => vec![with(ref_server_cookie(&client, src, now - 100, None))],
        2 => vec![with(ref_server_cookie(&client, src, now - 2000, None))],
        3 => vec![with(ref_server_cookie(&client, src, now - 4000, None))],
        4 => vec![with(ref_server_cookie(&client, src, now + 200, None))],
        5 => {
            let mut c = ref_server_cookie(&client, src, now - 10, None);
            c[15] ^= 1;
            vec![with(c)]
        }
        // Another server's 8-byte and 32-byte cookies: well-formed, not ours.
        6 => vec![with(vec![9; 8])],
        7 => vec![with(vec![9; 32])],
        // Malformed: FORMERR.
        8 => vec![client[..5].to_vec()],
        9 => vec![with(vec![9; 4])],
        10 => vec![with(vec![9; 33])],
        11 => vec![],
        _ => vec![client.to_vec(), client.to_vec()],
    }
}

const NAMES: &[&str] = &[
    "t.example.",
    "ns1.t.example.",
    "ns2.t.example.",
    "mail.t.example.",
    "www.t.example.",
    "alias.t.example.",
    "alias2.t.example.",
    "toapp.t.example.",
    "toent.t.example.",
    "toloc.t.example.",
    "out.t.example.",
    "dangling.t.example.",
    "loop1.t.example.",
    "c1.t.example.",
    "c3.t.example.",
    "tosub.t.example.",
    "tochild.t.example.",
    "a.b.c.t.example.",
    "b.c.t.example.",
    "c.t.example.",
    "x.a.b.c.t.example.",
    "x.wild.t.example.",
    "Anything.deeper.wild.t.example.",
    "wild.t.example.",
    "*.wild.t.example.",
    "x.cw.t.example.",
    "z.ew.t.example.",
    "x.*.ew.t.example.",
    "*.ew.t.example.",
    "y.x.wild.t.example.",
    "deep.x.wild.t.example.",
    "sub.t.example.",
    "ns.sub.t.example.",
    "x.y.sub.t.example.",
    "_sip._udp.t.example.",
    "_udp.t.example.",
    "caa.t.example.",
    "ptr.t.example.",
    "hinfo.t.example.",
    "big.t.example.",
    "mid.t.example.",
    "app.t.example.",
    "x.app.t.example.",
    "ratio.t.example.",
    "loc.t.example.",
    "down.t.example.",
    "open.t.example.",
    "ent.t.example.",
    "a.ent.t.example.",
    "b.ent.t.example.",
    "svcstatic.t.example.",
    "v6only.t.example.",
    "nope.t.example.",
    "child.t.example.",
    "www.child.t.example.",
    "www2.child.t.example.",
    "nx.child.t.example.",
    "other.test.",
    "info.other.test.",
    "nx.other.test.",
    "example.com.",
    "example.",
    ".",
    "t.example.com.",
];

const TYPES: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::NS,
    RecordType::SOA,
    RecordType::CNAME,
    RecordType::MX,
    RecordType::TXT,
    RecordType::SRV,
    RecordType::PTR,
    RecordType::CAA,
    RecordType::HINFO,
    RecordType::ANY,
    RecordType::DS,
    RecordType::HTTPS,
    RecordType::Unknown(999),
    RecordType::AXFR,
    RecordType::IXFR,
    RecordType::OPT,
];

/// `name` with its letters' case changed: 0 as is, 1 upper, 2 mixed.
fn recase(name: &str, how: u8, rng: &mut fastrand::Rng) -> String {
    match how {
        0 => name.to_string(),
        1 => name.to_ascii_uppercase(),
        _ => name
            .chars()
            .map(|c| {
                if rng.bool() {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect(),
    }
}

/// ECS option data: valid ones and each kind of malformed one.
const ECS: &[&[u8]] = &[
    &[0, 1, 24, 0, 198, 51, 100],
    &[0, 1, 24, 0, 203, 0, 113],
    &[0, 1, 16, 0, 198, 51],
    &[0, 1, 10, 0, 100, 64],
    &[0, 1, 16, 0, 100, 127],
    &[0, 1, 32, 0, 198, 51, 100, 7],
    &[0, 1, 0, 0],
    &[0, 1, 24, 9, 192, 0, 2],
    &[0, 2, 48, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 0xaa],
    &[0, 2, 56, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 0xaa, 0x01],
    &[0, 2, 0, 0],
    &[0, 3, 24, 0, 1, 2, 3],
    &[0, 1, 33, 0, 1, 2, 3, 4, 5],
    &[0, 1, 24, 0, 1, 2, 3, 4],
    &[0, 1, 20, 0, 10, 1, 0xff],
    &[0, 1],
];

const SOURCES: &[&str] = &[
    "127.0.0.1",
    "198.51.100.9",
    "203.0.113.200",
    "100.64.1.1",
    "2001:db8:aa::5",
    "::1",
];

/// Length of a name in uncompressed wire form.
fn wire_len(name: &Name) -> usize {
    name.iter().map(|l| l.len() + 1).sum::<usize>() + 1
}

fn case(
    desc: String,
    mut query: Message,
    edns: Option<(u16, bool, u8)>,
    ecs: Option<&[u8]>,
    extra: Extra,
    src: IpAddr,
    transport: Transport,
) -> Case {
    let mut payload = None;
    if let Some((size, dnssec_ok, version)) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size.max(512));
        e.set_dnssec_ok(dnssec_ok);
        e.set_version(version);
        if let Some(data) = ecs {
            e.options_mut().insert(EdnsOption::Unknown(
                u16::from(EdnsCode::Subnet),
                data.to_vec(),
            ));
        }
        if extra.nsid {
            e.options_mut()
                .insert(EdnsOption::Unknown(u16::from(EdnsCode::NSID), Vec::new()));
        }
        for c in &extra.cookies {
            e.options_mut().insert(EdnsOption::Unknown(10, c.clone()));
        }
        query.set_edns(e);
        payload = Some(size);
    }
    let mut bytes = query.to_vec().unwrap();
    if let Some(size) = payload {
        // hickory raises a payload below 512 to 512; put the real one in the OPT
        // (right after the question: a query has no other records).
        let qlen: usize = query.queries.iter().map(|q| wire_len(&q.name) + 4).sum();
        let opt = 12 + qlen;
        assert_eq!(
            &bytes[opt..opt + 3],
            &[0, 0, 41],
            "{desc}: OPT where expected"
        );
        bytes[opt + 3..opt + 5].copy_from_slice(&size.to_be_bytes());
    }
    Case {
        desc,
        query,
        bytes,
        payload,
        ecs: edns.and(ecs).map(|d| d.to_vec()),
        cookies: if edns.is_some() {
            extra.cookies
        } else {
            Vec::new()
        },
        nsid: edns.is_some() && extra.nsid,
        src,
        transport,
    }
}

fn corpus() -> Vec<Case> {
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut out = Vec::new();
    let mut id = 0u16;
    let mut next_id = || {
        id = id.wrapping_add(1);
        id
    };
    let base = |name: &str, rtype: RecordType, id: u16| {
        let mut m = Message::query();
        m.metadata.id = id;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
        m
    };
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let services: Vec<String> = nameservices()
        .iter()
        .map(|(j, _)| j["name"].as_str().unwrap().to_string())
        .collect();
    let services: Vec<&str> = services.iter().map(|s| s.as_str()).collect();
    let sized: Vec<String> = (0..12)
        .map(|k| format!("s{k:02}.t.example."))
        .chain((0..14).map(|k| format!("l{k:02}.t.example.")))
        .collect();
    let names = NAMES.iter().map(|&n| (n, false));
    for (name, sized) in names.chain(sized.iter().map(|s| (s.as_str(), true))) {
        let types = if sized {
            &[RecordType::TXT, RecordType::ANY][..]
        } else {
            TYPES
        };
        for &rtype in types {
            // The plain query, then variants drawn at random (more where the size
            // limits matter).
            let variants = if name.starts_with("big") || name.starts_with("mid") || sized {
                30
            } else if services.contains(&name.trim_end_matches('.')) {
                20
            } else {
                7
            };
            for variant in 0..variants {
                let how = if variant == 0 { 0 } else { rng.u8(0..3) };
                let qname = recase(name, how, &mut rng);
                let mut m = base(&qname, rtype, next_id());
                m.metadata.recursion_desired = rng.bool();
                m.metadata.checking_disabled = rng.u8(0..8) == 0;
                if variant > 0 && rng.u8(0..10) == 0 {
                    m.queries[0].query_class = [DNSClass::ANY, DNSClass::CH][rng.usize(0..2)];
                }
                let edns = match if variant == 0 { 1 } else { rng.u8(0..7) } {
                    0 => None,
                    1 => Some((1232, false, 0)),
                    2 => Some((512, false, 0)),
                    3 => Some((4096, rng.bool(), 0)),
                    4 => Some((300, false, 0)),
                    5 => Some((1232, true, 0)),
                    _ => Some((1400, false, 0)),
                };
                let ecs = (variant > 0 && rng.u8(0..3) == 0).then(|| ECS[rng.usize(0..ECS.len())]);
                let src = ip(SOURCES[if variant == 0 {
                    0
                } else {
                    rng.usize(0..SOURCES.len())
                }]);
                let extra = Extra {
                    cookies: if rng.u8(0..4) == 0 {
                        cookie_variant(rng.usize(0..13), src)
                    } else {
                        Vec::new()
                    },
                    nsid: rng.u8(0..5) == 0,
                };
                let transport = if variant > 0 && rng.u8(0..4) == 0 {
                    Transport::Tcp
                } else {
                    Transport::Udp
                };
                let desc = format!(
                    "{qname} {rtype} class {} edns {edns:?} ecs {ecs:?} cookies {:02x?} nsid {} from {src} over {transport:?}",
                    m.queries[0].query_class, extra.cookies, extra.nsid
                );
                out.push(case(desc, m, edns, ecs, extra, src, transport));
            }
        }
    }
    // CHAOS: id.server and hostname.bind answer the NSID, the rest is refused.
    for name in [
        "id.server.",
        "ID.Server.",
        "hostname.bind.",
        "version.bind.",
        "id.server.example.",
    ] {
        for rtype in [RecordType::TXT, RecordType::ANY, RecordType::A] {
            for transport in [Transport::Udp, Transport::Tcp] {
                let mut m = base(name, rtype, next_id());
                m.queries[0].query_class = DNSClass::CH;
                let src = ip("198.51.100.9");
                out.push(case(
                    format!("{name} CH {rtype} over {transport:?}"),
                    m,
                    Some((1232, false, 0)),
                    None,
                    Extra {
                        cookies: vec![],
                        nsid: rtype == RecordType::A,
                    },
                    src,
                    transport,
                ));
            }
        }
    }
    // Every cookie variant, from IPv4 and IPv6 sources, with and without NSID.
    for k in 0..13 {
        for src in ["198.51.100.9", "2001:db8:aa::5", "::ffff:203.0.113.200"] {
            let src = ip(src);
            let m = base("www.t.example.", RecordType::A, next_id());
            out.push(case(
                format!("cookie variant {k} from {src}"),
                m,
                Some((1232, false, 0)),
                None,
                Extra {
                    cookies: cookie_variant(k, src),
                    nsid: k % 2 == 0,
                },
                src,
                Transport::Udp,
            ));
        }
    }
    // Odd headers.
    for (i, &name) in [
        "app.t.example.",
        "www.t.example.",
        "nope.t.example.",
        "example.com.",
    ]
    .iter()
    .enumerate()
    {
        let src = ip("127.0.0.1");
        for op in [OpCode::Notify, OpCode::Update, OpCode::Status] {
            let mut m = base(name, RecordType::A, next_id());
            m.metadata.op_code = op;
            // CD belongs to QUERY: the NOTIMP answer must not echo it.
            m.metadata.checking_disabled = true;
            let edns = (i % 2 == 0).then_some((1232, false, 0));
            out.push(case(
                format!("{name} opcode {op:?}"),
                m,
                edns,
                None,
                Extra::default(),
                src,
                Transport::Udp,
            ));
        }
        let mut m = base(name, RecordType::A, next_id());
        m.metadata.message_type = MessageType::Response;
        out.push(case(
            format!("{name} QR=1"),
            m,
            None,
            None,
            Extra::default(),
            src,
            Transport::Udp,
        ));
        let mut m = Message::query();
        m.metadata.id = next_id();
        out.push(case(
            "no question".into(),
            m,
            Some((1232, false, 0)),
            None,
            Extra::default(),
            src,
            Transport::Udp,
        ));
        let mut m = base(name, RecordType::A, next_id());
        m.add_query(Query::query(
            Name::from_ascii("www.t.example.").unwrap(),
            RecordType::A,
        ));
        out.push(case(
            format!("{name} two questions"),
            m,
            None,
            None,
            Extra::default(),
            src,
            Transport::Udp,
        ));
        for version in [1, 2] {
            let m = base(name, RecordType::A, next_id());
            let ecs = Some(ECS[0]);
            out.push(case(
                format!("{name} EDNS version {version}"),
                m,
                Some((1232, false, version)),
                ecs,
                Extra {
                    cookies: vec![vec![7; 8]],
                    nsid: true,
                },
                src,
                Transport::Udp,
            ));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Comparing

/// Records sorted by (name, type), keeping the order inside an RRset.
fn normalised(records: &[Record]) -> Vec<Record> {
    let mut v = records.to_vec();
    v.sort_by_key(|r| (r.name.to_lowercase().to_ascii(), u16::from(r.record_type())));
    v
}

/// Differences between two messages, one line each.
fn differences(got: &Message, want: &Message) -> Vec<String> {
    let mut d = Vec::new();
    let (g, w) = (&got.metadata, &want.metadata);
    macro_rules! field {
        ($($f:ident),*) => {$(
            if g.$f != w.$f {
                d.push(format!("{}: got {:?}, want {:?}", stringify!($f), g.$f, w.$f));
            }
        )*};
    }
    field!(
        id,
        message_type,
        op_code,
        authoritative,
        truncation,
        recursion_desired,
        recursion_available,
        authentic_data,
        checking_disabled,
        response_code
    );
    if got.queries != want.queries {
        d.push(format!(
            "question: got {:?}, want {:?}",
            got.queries, want.queries
        ));
    }
    for (section, g, w) in [
        ("answer", &got.answers, &want.answers),
        ("authority", &got.authorities, &want.authorities),
        ("additional", &got.additionals, &want.additionals),
    ] {
        let (g, w) = (normalised(g), normalised(w));
        if g != w || g.iter().zip(&w).any(|(a, b)| a.ttl != b.ttl) {
            let show = |v: &[Record]| v.iter().map(|r| format!("\n    {r}")).collect::<String>();
            d.push(format!("{section}: got{}\n  want{}", show(&g), show(&w)));
        }
    }
    match (&got.edns, &want.edns) {
        (None, None) => {}
        (Some(g), Some(w)) => {
            let view = |e: &Edns| {
                (
                    e.max_payload(),
                    e.version(),
                    e.flags().dnssec_ok,
                    e.rcode_high(),
                    e.options().as_ref().to_vec(),
                )
            };
            if view(g) != view(w) {
                d.push(format!("OPT: got {:?}, want {:?}", view(g), view(w)));
            }
        }
        (g, w) => d.push(format!("OPT: got {g:?}, want {w:?}")),
    }
    d
}

#[test]
fn engine_matches_the_hickory_reference() {
    let snap = snapshot();
    let settings = settings();
    let reference = Reference::new();
    let cases = corpus();
    assert!(cases.len() > 10_000, "{} cases", cases.len());
    let mut rng = fastrand::Rng::with_seed(42);
    let mut scratch = Scratch::new();
    let mut out = Vec::new();
    let mut failures = Vec::new();
    let (mut identical, mut must_be_identical, mut answered, mut truncated) = (0, 0, 0, 0);
    for c in &cases {
        // The reference first, on a copy of the rng; then the rotations go back.
        let rotations: Vec<(Arc<ServiceEntry>, usize)> = snap
            .services
            .iter()
            .map(|(_, e)| {
                (
                    e.clone(),
                    e.rotation.load(std::sync::atomic::Ordering::Relaxed),
                )
            })
            .collect();
        let mut ref_rng = rng.clone();
        let input = Input {
            query: &c.query,
            payload: c.payload,
            ecs: c.ecs.as_deref(),
            cookies: &c.cookies,
            nsid: c.nsid,
            src: c.src,
            transport: c.transport,
        };
        let want = reference.answer(&snap, &input, &mut ref_rng);
        for (e, r) in &rotations {
            e.rotation.store(*r, std::sync::atomic::Ordering::Relaxed);
        }
        let req = Request {
            bytes: &c.bytes,
            src: c.src,
            transport: c.transport,
            now_ms: NOW_MS,
        };
        let outcome = answer(&snap, &settings, &req, &mut rng, &mut scratch, &mut out);
        let (outcome, want, failed_open) = match (outcome, want) {
            (None, None) => continue,
            // Through hickory's encoder and decoder, as the engine's bytes go
            // through the decoder: the extended rcode lands where decoding puts it.
            (Some(o), Some((w, failed_open))) => (
                o,
                Message::from_vec(&w.to_vec().unwrap()).unwrap(),
                failed_open,
            ),
            (got, want) => {
                failures.push(format!(
                    "{}: answered {:?}, reference {:?}",
                    c.desc,
                    got,
                    want.is_some()
                ));
                continue;
            }
        };
        answered += 1;
        let got = match Message::from_vec(&out) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{}: response does not parse: {e}", c.desc));
                continue;
            }
        };
        let mut diffs = differences(&got, &want);
        // The question as sent, byte for byte.
        if c.query.queries.len() == 1 && c.query.metadata.message_type == MessageType::Query {
            let qlen = wire_len(&c.query.queries[0].name) + 4;
            if out.get(12..12 + qlen) != c.bytes.get(12..12 + qlen) {
                diffs.push("question bytes differ from the query's".into());
            }
        }
        // The outcome reported for the metrics.
        let rcode = u16::from(want.metadata.response_code);
        if outcome.rcode != rcode
            || outcome.truncated != want.metadata.truncation
            || outcome.failed_open != failed_open
        {
            diffs.push(format!(
                "outcome {outcome:?}, want rcode {rcode}, failed open {failed_open}"
            ));
        }
        truncated += usize::from(want.metadata.truncation);
        let bytes_equal = want.to_vec().unwrap() == out;
        identical += usize::from(bytes_equal);
        // NameService addresses for a lowercase question: no compression choice to
        // make, the bytes must be the same.
        let lowercase = c.query.queries.first().is_some_and(|q| {
            let n = q.name.to_ascii();
            n == n.to_ascii_lowercase()
        });
        let addresses_only = !want.answers.is_empty()
            && want.authorities.is_empty()
            && want.additionals.is_empty()
            && want.answers.iter().all(|r| {
                matches!(r.record_type(), RecordType::A | RecordType::AAAA)
                    && r.name == c.query.queries[0].name
            })
            && service(&snap, &c.query.queries[0].name).is_some();
        if lowercase && addresses_only {
            must_be_identical += 1;
            if !bytes_equal {
                diffs.push(format!(
                    "bytes differ:\n  got  {:02x?}\n  want {:02x?}",
                    out,
                    want.to_vec().unwrap()
                ));
            }
        }
        if !diffs.is_empty() {
            failures.push(format!("{}:\n  {}", c.desc, diffs.join("\n  ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ; the first ones:\n{}",
        failures.len(),
        cases.len(),
        failures
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The corpus reaches what it means to reach.
    assert!(
        answered > 10_000 && truncated > 30,
        "{answered} answered, {truncated} truncated"
    );
    assert!(
        must_be_identical > 100,
        "{must_be_identical} address answers"
    );
    eprintln!(
        "{} cases, {answered} answered, {truncated} truncated, {identical} byte-identical to \
         hickory's encoding ({must_be_identical} required)",
        cases.len()
    );
}

/// Writes seed corpora for the fuzz targets (fuzz/seeds/) from this corpus: a
/// sample of the queries for `query`, the OPT option data of the queries that
/// carry options for `edns_options`, and the zone files for `zone_file`. Run with
/// `cargo test --lib write_fuzz_seeds -- --ignored` after changing the corpus.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for t in ["query", "edns_options", "zone_file"] {
        let _ = std::fs::remove_dir_all(root.join(t));
        std::fs::create_dir_all(root.join(t)).unwrap();
    }
    let cases = corpus();
    let mut opts_seen = BTreeSet::new();
    for (i, c) in cases.iter().enumerate() {
        if i % 40 == 0 || c.desc.contains("cookie variant") || c.desc.contains(" CH ") {
            let ctl = u8::from(c.transport == Transport::Tcp) | ((i % 6) as u8) << 1;
            let mut seed = vec![ctl];
            seed.extend_from_slice(&c.bytes);
            std::fs::write(root.join(format!("query/{i:05}")), seed).unwrap();
        }
        // The OPT RDATA: after the question, OPT's fixed 11 bytes.
        if c.query.queries.len() == 1 && c.payload.is_some() {
            let start = 12 + wire_len(&c.query.queries[0].name) + 4 + 11;
            if let Some(opts) = c.bytes.get(start..).filter(|o| !o.is_empty())
                && opts_seen.insert(opts.to_vec())
            {
                let mut seed = vec![(i % 32) as u8];
                seed.extend_from_slice(opts);
                let n = opts_seen.len();
                std::fs::write(root.join(format!("edns_options/{n:04}")), seed).unwrap();
            }
        }
    }
    for (file, text) in zone_files() {
        std::fs::write(root.join("zone_file").join(file), text).unwrap();
    }
    let zones = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("zones");
    for e in std::fs::read_dir(zones).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, root.join("zone_file").join(p.file_name().unwrap())).unwrap();
    }
}
