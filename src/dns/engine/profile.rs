//! A driver for profiling the engine, not a test: it answers the benchmark's query
//! mix (bench/lib/gen.py: 1,000 NameServices with 3 IPv4 targets, 90% A, 5% AAAA
//! NODATA, 5% NXDOMAIN, EDNS; ECS from a 10,000-prefix topology for Locality) in a
//! loop, so that callgrind or perf see nothing but the engine. Run with
//!
//! ```text
//! GSLB_PROFILE_POLICY=Ratio GSLB_PROFILE_QUERIES=200000 \
//!   valgrind --tool=callgrind <test binary> --ignored --exact dns::engine::profile::engine_loop
//! ```
//!
//! `GSLB_PROFILE_ECS=1` gives every query an ECS /24 (Locality always has one);
//! `GSLB_PROFILE_STEER=1` turns on stickiness (Ratio) and a slow start that every
//! target is within; comparing the instruction counts of the two is what the
//! steering costs per query.

use std::net::IpAddr;
use std::sync::Arc;

use super::*;
use crate::health::{Health, HealthCell};
use crate::model::{Locality, NameService};
use crate::policy::{Topology, TopologyEntry};
use crate::snapshot::ServiceMap;
use crate::zone::ZoneSet;

const REGIONS: [&str; 3] = ["us-west/zone-a", "us-east/zone-b", "eu-west/zone-c"];

/// The time the queries are answered at (Unix ms).
const NOW_MS: u64 = 1_700_000_000_000;

fn snapshot(policy: &str, steer: bool) -> Snapshot {
    let dir = std::env::temp_dir().join(format!("gslb-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("gslb.example.zone"),
        "$ORIGIN gslb.example.\n$TTL 3600\n\
         @ IN SOA ns1.gslb.example. hostmaster.gslb.example. 1 3600 600 86400 30\n\
         @ IN NS ns1.gslb.example.\n@ IN NS ns2.gslb.example.\n\
         ns1 IN A 127.0.0.53\nns2 IN A 127.0.0.54\n",
    )
    .unwrap();
    let zones = ZoneSet::load_dir(&dir).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    // 300 shared probe endpoints, all Healthy (with steering: a minute ago, so
    // within an hour-long slow start).
    let since = if steer { NOW_MS - 60_000 } else { 0 };
    let cells: Vec<Arc<HealthCell>> = (0..300)
        .map(|_| Arc::new(HealthCell::with_healthy_since(Health::Healthy, since)))
        .collect();
    let services = ServiceMap::default().with_changes((0..1000).map(|i| {
        let targets: Vec<serde_json::Value> = (0..3)
            .map(|j| {
                let k = (3 * i + j) % 300;
                let ratio = [50, 30, 20][j];
                serde_json::json!({
                    "name": format!("dc{}", j + 1),
                    "address": format!("127.1.{}.{}", k / 250, k % 250 + 1),
                    "locality": REGIONS[j],
                    "ratio": ratio,
                })
            })
            .collect();
        let mut spec = serde_json::json!({
            "name": format!("app{i}.gslb.example"), "ttl": 30, "policy": policy,
            "healthCheck": {"port": 8443},
            "targets": targets, "allDown": "AnswerAll",
        });
        if steer {
            spec["slowStartSeconds"] = 3600.into();
            if policy == "Ratio" {
                spec["stickiness"] = "ClientSubnet".into();
            }
        }
        let spec = NameService::from_json(spec).unwrap();
        let name: Arc<str> = spec.name.clone().into();
        let entry = ServiceEntry::compile(Arc::new(spec), None, None, |ep| {
            let IpAddr::V4(a) = ep.address else {
                unreachable!()
            };
            let o = a.octets();
            cells[usize::from(o[2]) * 250 + usize::from(o[3]) - 1].clone()
        });
        (name, Some(Arc::new(entry)))
    }));
    let mut topo = Vec::new();
    for s in 0..40u8 {
        topo.push((IpAddr::from([10, s, 0, 0]), 16, usize::from(s) % 3));
    }
    for k in 0..(10_000 - 40) {
        let (s, t) = (k / 249, k % 249);
        topo.push((
            IpAddr::from([10, s as u8, (t + 1) as u8, 0]),
            24,
            (s + t + 1) % 3,
        ));
    }
    let topology = Topology::new(
        topo.into_iter()
            .map(|(addr, prefix, r)| TopologyEntry {
                addr,
                prefix,
                locality: Locality::parse(REGIONS[r]).unwrap(),
            })
            .collect(),
    );
    Snapshot {
        zones: Arc::new(zones),
        services,
        topology: Arc::new(topology),
        unloaded: false,
    }
}

/// The query of gen.py's `query_wire`: RD=0, EDNS 1232, optional ECS /24.
fn query(name: &str, qtype: u16, ecs: Option<[u8; 3]>) -> Vec<u8> {
    let mut q = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1, 0, 0, 41, 4, 0xd0, 0, 0, 0, 0]);
    match ecs {
        Some(a) => q.extend_from_slice(&[0, 11, 0, 8, 0, 7, 0, 1, 24, 0, a[0], a[1], a[2]]),
        None => q.extend_from_slice(&[0, 0]),
    }
    q
}

#[test]
#[ignore = "a profiling driver; see the module documentation"]
fn engine_loop() {
    let policy = std::env::var("GSLB_PROFILE_POLICY").unwrap_or_else(|_| "RoundRobin".into());
    let n: usize = std::env::var("GSLB_PROFILE_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let flag = |v: &str| std::env::var(v).is_ok_and(|v| v == "1");
    let snap = snapshot(&policy, flag("GSLB_PROFILE_STEER"));
    let ecs = policy == "Locality" || flag("GSLB_PROFILE_ECS");
    let mut rng = fastrand::Rng::with_seed(1);
    let queries: Vec<Vec<u8>> = (0..4096)
        .map(|_| {
            let r = rng.f64();
            let (name, qtype) = if r < 0.90 {
                (format!("app{}.gslb.example", rng.usize(..1000)), 1)
            } else if r < 0.95 {
                (format!("app{}.gslb.example", rng.usize(..1000)), 28)
            } else {
                (format!("nx{}.gslb.example", rng.usize(..1000)), 1)
            };
            let e = ecs.then(|| [10, rng.u8(..40), rng.u8(1..250)]);
            query(&name, qtype, e)
        })
        .collect();
    let mut scratch = Scratch::new();
    let settings = Settings::default();
    let mut out = Vec::with_capacity(1232);
    let src = IpAddr::from([127, 0, 0, 1]);
    let mut answered = 0usize;
    for i in 0..n {
        let q = &queries[i % queries.len()];
        let req = Request {
            bytes: q,
            src,
            transport: Transport::Udp,
            now_ms: NOW_MS,
        };
        let o = answer(&snap, &settings, &req, &mut rng, &mut scratch, &mut out);
        answered += usize::from(o.is_some_and(|o| o.rcode != rcode::FORMERR));
    }
    assert_eq!(answered, n);
}
