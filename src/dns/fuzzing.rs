//! A sample data set for the fuzz targets in `fuzz/` (not an API): a zone with
//! every kind of record the engine treats differently, NameServices of each policy
//! (healthy, failing open, all down), a nested topology, and settings with NSID,
//! a fixed cookie secret and rate limiting on.

use std::sync::Arc;

use super::engine::Settings;
use crate::health::{Health, HealthCell};
use crate::model::{Locality, NameService};
use crate::policy::{Topology, TopologyEntry};
use crate::snapshot::{ServiceEntry, ServiceMap, Snapshot};
use crate::zone::ZoneSet;

const ZONE: &str = r#"$ORIGIN f.example.
$TTL 3600
@       SOA ns1 hostmaster 1 7200 3600 1209600 300
        NS  ns1
        NS  ns.elsewhere.test.
        MX  10 mail
        TXT "apex"
ns1     A    192.0.2.53
        AAAA 2001:db8::53
mail    A    192.0.2.25
www     A    192.0.2.80
alias   CNAME www
toapp   CNAME app
loop1   CNAME loop2
loop2   CNAME loop1
*.wild  A 192.0.2.99
sub     NS ns.sub
ns.sub  A 192.0.2.153
_sip._udp SRV 10 20 5060 www
caa     CAA 0 issue "ca.example.net"
"#;

/// The sample snapshot and settings; zone files are written to a temporary
/// directory once and removed.
pub fn sample() -> (Snapshot, Settings) {
    let dir = std::env::temp_dir().join(format!("gslb-fuzz-sample-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut text = ZONE.to_string();
    for i in 0..30 {
        text.push_str(&format!("big TXT \"record {i:02} {}\"\n", "x".repeat(40)));
    }
    std::fs::write(dir.join("f.example.zone"), text).expect("zone file");
    let zones = ZoneSet::load_dir(&dir).expect("sample zone loads");
    let _ = std::fs::remove_dir_all(&dir);
    let svc = |json: serde_json::Value, health: Health| {
        let spec = NameService::from_json(json).expect("valid sample");
        let name: Arc<str> = spec.name.clone().into();
        let entry = ServiceEntry::compile(Arc::new(spec), None, None, |_| {
            Arc::new(HealthCell::new(health))
        });
        (name, Some(Arc::new(entry)))
    };
    use serde_json::json;
    let services = ServiceMap::default().with_changes([
        svc(
            json!({"name": "app.f.example", "ttl": 20, "policy": "RoundRobin", "targets": [
                {"name": "a", "address": "192.0.2.1"}, {"name": "b", "address": "192.0.2.2"},
                {"name": "c", "address": "2001:db8::1"}]}),
            Health::Healthy,
        ),
        svc(
            json!({"name": "ratio.f.example", "policy": "Ratio", "targets": [
                {"name": "a", "address": "192.0.2.11", "ratio": 3},
                {"name": "b", "address": "192.0.2.12", "ratio": 1}]}),
            Health::Healthy,
        ),
        svc(
            json!({"name": "loc.f.example", "policy": "Locality", "targets": [
                {"name": "w", "address": "10.1.0.1", "locality": "us-west/a"},
                {"name": "e", "address": "10.2.0.1", "locality": "us-east/b"},
                {"name": "w6", "address": "2001:db8:1::1", "locality": "us-west/a"}],
                "failover": [{"from": "eu", "to": "us-east"}],
                "distribute": [{"from": "ap/*", "to": {"us-west": 1, "us-east": 3}}]}),
            Health::Healthy,
        ),
        svc(
            json!({"name": "down.f.example", "ttl": 5, "policy": "RoundRobin",
                "allDown": "NoData", "healthCheck": {"port": 80},
                "targets": [{"name": "a", "address": "192.0.2.9"}]}),
            Health::Unhealthy,
        ),
        svc(
            json!({"name": "open.f.example", "policy": "RoundRobin",
                "healthCheck": {"port": 80},
                "targets": [{"name": "a", "address": "192.0.2.31"}]}),
            Health::Unhealthy,
        ),
        svc(
            json!({"name": "f.example", "policy": "RoundRobin",
                "targets": [{"name": "a", "address": "192.0.2.7"}]}),
            Health::Healthy,
        ),
    ]);
    let entry = |cidr: &str, loc: &str| {
        let net: ipnet::IpNet = cidr.parse().expect("sample cidr");
        TopologyEntry {
            addr: net.addr(),
            prefix: net.prefix_len(),
            locality: Locality::parse(loc).expect("sample locality"),
        }
    };
    let topology = Topology::new(vec![
        entry("10.0.0.0/8", "us-east/b"),
        entry("10.1.0.0/16", "us-west/a"),
        entry("10.1.2.0/24", "eu/x"),
        entry("100.64.0.0/10", "ap/y"),
        entry("2001:db8::/32", "us-west/a"),
        entry("2001:db8:ff::/48", "eu/x"),
    ]);
    let snapshot = Snapshot {
        zones: Arc::new(zones),
        services,
        topology: Arc::new(topology),
        unloaded: false,
    };
    let settings = Settings {
        nsid: Some(b"fuzz-1".as_slice().into()),
        cookie_secret: super::cookie::Secret::from_hex("000102030405060708090a0b0c0d0e0f")
            .expect("hex"),
        rrl: Some(super::rrl::Rrl::new(&super::rrl::Settings {
            responses_per_second: 50,
            slip: 2,
            window_seconds: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            exempt: vec![],
            table_size: 256,
        })),
    };
    (snapshot, settings)
}
