//! Table-driven tests of the policies (CoreDNS `test.Case` style), with seeded
//! randomness for the distributions.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::health::{Health, HealthCell};
use crate::model::NameService;

/// A compiled service whose every target has its own health cell (probe address =
/// address), so a test can fail targets one by one.
struct Fixture {
    entry: ServiceEntry,
    cells: HashMap<IpAddr, Arc<HealthCell>>,
}

impl Fixture {
    fn new(mut spec: Value, checked: bool) -> Self {
        if checked {
            spec["healthCheck"] = json!({"port": 80});
        }
        let ns = NameService::from_json(spec).expect("valid spec");
        let mut cells = HashMap::new();
        let entry = ServiceEntry::compile(Arc::new(ns), None, None, |ep| {
            cells
                .entry(ep.address)
                .or_insert_with(|| Arc::new(HealthCell::new(Health::Healthy)))
                .clone()
        });
        Self { entry, cells }
    }

    /// Every target Healthy except `down` (Unhealthy) and `pending` (Pending).
    fn health(&self, down: &[&str], pending: &[&str]) {
        for (a, c) in &self.cells {
            c.set(Health::Healthy);
            let a = a.to_string();
            if down.contains(&a.as_str()) {
                c.set(Health::Unhealthy);
            }
            if pending.contains(&a.as_str()) {
                c.set(Health::Pending);
            }
        }
    }

    fn select(
        &self,
        v6: bool,
        client: ClientInfo,
        topo: &Topology,
        rng: &mut fastrand::Rng,
    ) -> (Vec<IpAddr>, Selection) {
        let mut out = Vec::with_capacity(8);
        let sel = select(&self.entry, v6, &client, topo, NOW_MS, rng, &mut out);
        (out, sel)
    }
}

/// The time the selections are made at (Unix milliseconds).
const NOW_MS: u64 = 1_800_000_000_000;

fn client(addr: &str, ecs: Option<u8>) -> ClientInfo {
    ClientInfo {
        addr: addr.parse().unwrap(),
        ecs_source_prefix: ecs,
    }
}

fn topology(list: &[(&str, &str)]) -> Topology {
    Topology::new(
        list.iter()
            .map(|(cidr, loc)| {
                let net = crate::config::parse_cidr(cidr).unwrap();
                let (a, p) = (net.addr(), net.prefix_len());
                TopologyEntry {
                    addr: a,
                    prefix: p,
                    locality: Locality::parse(loc).unwrap(),
                }
            })
            .collect(),
    )
}

fn set(addrs: &[IpAddr]) -> BTreeSet<String> {
    addrs.iter().map(IpAddr::to_string).collect()
}

fn strs(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Counts how often each address is answered over `n` selections.
fn shares(
    f: &Fixture,
    v6: bool,
    c: ClientInfo,
    topo: &Topology,
    n: usize,
    seed: u64,
) -> HashMap<String, usize> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::new();
    let mut counts = HashMap::new();
    for _ in 0..n {
        select(&f.entry, v6, &c, topo, NOW_MS, &mut rng, &mut out);
        assert_eq!(out.len(), 1, "one address per answer");
        *counts.entry(out[0].to_string()).or_default() += 1;
    }
    counts
}

// ---------------------------------------------------------------- RoundRobin

#[test]
fn round_robin_rotates_eligible() {
    let f = Fixture::new(
        json!({"name": "rr.example", "policy": "RoundRobin", "targets": [
            {"name": "a", "address": "192.0.2.1"},
            {"name": "b", "address": "192.0.2.2"},
            {"name": "c", "address": "192.0.2.3"},
            {"name": "d", "address": "192.0.2.4", "enabled": false},
            {"name": "e", "address": "2001:db8::1"}]}),
        true,
    );
    let topo = Topology::default();
    let mut rng = fastrand::Rng::with_seed(1);
    let c = client("127.0.0.1", None);
    f.health(&["192.0.2.2"], &[]);
    let mut firsts = Vec::new();
    for _ in 0..4 {
        let (out, sel) = f.select(false, c, &topo, &mut rng);
        assert_eq!(set(&out), strs(&["192.0.2.1", "192.0.2.3"]));
        assert_eq!(
            sel,
            Selection {
                // b is down: health changed the answer.
                ttl: 30,
                chosen: 0b101,
                ..Selection::default()
            }
        );
        firsts.push(out[0].to_string());
    }
    assert_eq!(firsts, ["192.0.2.1", "192.0.2.3", "192.0.2.1", "192.0.2.3"]);
    let (out, _) = f.select(true, c, &topo, &mut rng);
    assert_eq!(set(&out), strs(&["2001:db8::1"]));
}

// ---------------------------------------------------------------- Ratio

fn ratio_fixture(all_down: &str) -> Fixture {
    Fixture::new(
        json!({"name": "ratio.example", "policy": "Ratio", "allDown": all_down, "targets": [
            {"name": "a", "address": "192.0.2.1", "ratio": 3},
            {"name": "b", "address": "192.0.2.2", "ratio": 1},
            {"name": "c", "address": "192.0.2.3", "ratio": 0},
            {"name": "d", "address": "192.0.2.4", "ratio": 6},
            {"name": "x", "address": "192.0.2.5", "ratio": 100, "enabled": false},
            {"name": "e", "address": "2001:db8::1", "ratio": 1},
            {"name": "f", "address": "2001:db8::2", "ratio": 4}]}),
        true,
    )
}

#[test]
fn ratio_cases() {
    struct Case {
        name: &'static str,
        all_down: &'static str,
        v6: bool,
        down: &'static [&'static str],
        pending: &'static [&'static str],
        /// Expected share (percent) of each address answered.
        want: &'static [(&'static str, f64)],
        failed_open: bool,
    }
    let cases = [
        Case {
            name: "all healthy: ratio / sum, ratio 0 and disabled never",
            all_down: "AnswerAll",
            v6: false,
            down: &[],
            pending: &[],
            want: &[
                ("192.0.2.1", 30.0),
                ("192.0.2.2", 10.0),
                ("192.0.2.4", 60.0),
            ],
            failed_open: false,
        },
        Case {
            name: "unhealthy target drops out of the sum",
            all_down: "AnswerAll",
            v6: false,
            down: &["192.0.2.4"],
            pending: &[],
            want: &[("192.0.2.1", 75.0), ("192.0.2.2", 25.0)],
            failed_open: false,
        },
        Case {
            name: "pending target drops out of the sum",
            all_down: "AnswerAll",
            v6: false,
            down: &[],
            pending: &["192.0.2.1"],
            want: &[("192.0.2.2", 100.0 / 7.0), ("192.0.2.4", 600.0 / 7.0)],
            failed_open: false,
        },
        Case {
            name: "per address family",
            all_down: "AnswerAll",
            v6: true,
            down: &[],
            pending: &[],
            want: &[("2001:db8::1", 20.0), ("2001:db8::2", 80.0)],
            failed_open: false,
        },
        Case {
            name: "only ratio 0 eligible: fail open among ratio > 0 by ratio",
            all_down: "AnswerAll",
            v6: false,
            down: &["192.0.2.1", "192.0.2.2", "192.0.2.4"],
            pending: &[],
            want: &[
                ("192.0.2.1", 30.0),
                ("192.0.2.2", 10.0),
                ("192.0.2.4", 60.0),
            ],
            failed_open: true,
        },
        Case {
            name: "all down: fail open by ratio",
            all_down: "AnswerAll",
            v6: false,
            down: &["192.0.2.1", "192.0.2.2", "192.0.2.3"],
            pending: &["192.0.2.4"],
            want: &[
                ("192.0.2.1", 30.0),
                ("192.0.2.2", 10.0),
                ("192.0.2.4", 60.0),
            ],
            failed_open: true,
        },
        Case {
            name: "all down with NoData",
            all_down: "NoData",
            v6: false,
            down: &["192.0.2.1", "192.0.2.2", "192.0.2.4"],
            pending: &[],
            want: &[],
            failed_open: false,
        },
        Case {
            name: "NoData does not affect the other family",
            all_down: "NoData",
            v6: true,
            down: &["192.0.2.1", "192.0.2.2", "192.0.2.4"],
            pending: &[],
            want: &[("2001:db8::1", 20.0), ("2001:db8::2", 80.0)],
            failed_open: false,
        },
    ];
    let topo = Topology::default();
    for (k, case) in cases.iter().enumerate() {
        let f = ratio_fixture(case.all_down);
        f.health(case.down, case.pending);
        let c = client("127.0.0.1", Some(24));
        let mut rng = fastrand::Rng::with_seed(k as u64);
        let (out, sel) = f.select(case.v6, c, &topo, &mut rng);
        assert_eq!(sel.failed_open, case.failed_open, "{}", case.name);
        assert_eq!(sel.ecs_scope, 0, "{}: Ratio answers say scope 0", case.name);
        if case.want.is_empty() {
            assert!(out.is_empty(), "{}: {out:?}", case.name);
            continue;
        }
        let n = 100_000;
        let counts = shares(&f, case.v6, c, &topo, n, 1000 + k as u64);
        let got: BTreeSet<&String> = counts.keys().collect();
        let want: BTreeSet<String> = case.want.iter().map(|(a, _)| a.to_string()).collect();
        assert_eq!(got, want.iter().collect(), "{}", case.name);
        for (addr, pct) in case.want {
            let share = 100.0 * counts[*addr] as f64 / n as f64;
            // 100,000 draws: the standard deviation is at most 0.16 points.
            assert!(
                (share - pct).abs() < 0.8,
                "{}: {addr} got {share:.2}%, want {pct:.2}%",
                case.name
            );
        }
    }
}

#[test]
fn ratio_all_zero_is_nodata() {
    // (A service whose enabled targets all have ratio 0 is refused; one family can
    // still have only ratio-0 targets.)
    let f = Fixture::new(
        json!({"name": "z.example", "policy": "Ratio", "targets": [
            {"name": "a", "address": "192.0.2.1", "ratio": 0},
            {"name": "b", "address": "192.0.2.2", "ratio": 0},
            {"name": "c", "address": "2001:db8::1", "ratio": 1}]}),
        false,
    );
    let mut rng = fastrand::Rng::with_seed(5);
    let (out, sel) = f.select(
        false,
        client("127.0.0.1", None),
        &Topology::default(),
        &mut rng,
    );
    assert!(out.is_empty());
    assert!(!sel.failed_open);
}

#[test]
fn ratio_over_10000_queries_is_within_2_points_for_many_seeds() {
    // The contract's promise, checked on many independent runs of 10,000 queries.
    let f = ratio_fixture("AnswerAll");
    f.health(&[], &[]);
    let c = client("127.0.0.1", None);
    for seed in 0..50 {
        let counts = shares(&f, false, c, &Topology::default(), 10_000, seed);
        for (addr, pct) in [
            ("192.0.2.1", 30.0),
            ("192.0.2.2", 10.0),
            ("192.0.2.4", 60.0),
        ] {
            let share = counts.get(addr).copied().unwrap_or(0) as f64 / 100.0;
            assert!((share - pct).abs() < 2.0, "seed {seed}: {addr} {share}%");
        }
    }
}

#[test]
fn draw_is_exact_on_the_boundaries() {
    // weights 2, 0, 3 over bits 0, 1, 3: r in 0..2 -> 0, r in 2..5 -> 3.
    let w = [2u32, 0, 9, 3];
    let set = 0b1011;
    let mut seen = [0usize; 4];
    let mut rng = fastrand::Rng::with_seed(9);
    for _ in 0..10_000 {
        seen[rng.draw(set, |i| u64::from(w[i])).unwrap()] += 1;
    }
    assert_eq!(seen[1] + seen[2], 0);
    assert!(seen[0] > 3_500 && seen[3] > 5_500, "{seen:?}");
    assert_eq!(rng.draw(0b0010, |i| u64::from(w[i])), None);
    assert_eq!(rng.draw(0, |i| u64::from(w[i])), None);
}

// ---------------------------------------------------------------- Locality

fn locality_fixture(all_down: &str) -> Fixture {
    Fixture::new(
        json!({"name": "loc.example", "policy": "Locality", "allDown": all_down,
            "targets": [
                {"name": "a1", "address": "10.0.0.1", "locality": "region1/zone1/sub1"},
                {"name": "a2", "address": "10.0.0.2", "locality": "region1/zone1/sub2"},
                {"name": "b1", "address": "10.0.0.3", "locality": "region1/zone2"},
                {"name": "c1", "address": "10.0.0.4", "locality": "region2/zone1"},
                {"name": "d1", "address": "10.0.0.5", "locality": "region3"},
                {"name": "n1", "address": "10.0.0.6"},
                {"name": "x1", "address": "10.0.0.7", "locality": "region1/zone1/sub1", "enabled": false},
                {"name": "v1", "address": "2001:db8::1", "locality": "region1/zone1/sub1"},
                {"name": "v2", "address": "2001:db8::2", "locality": "region2/zone1"}],
            "failover": [
                {"from": "region1", "to": "region9"},
                {"from": "region1", "to": "region3"},
                {"from": "region1", "to": "region2"},
                {"from": "region4", "to": "region2"}]}),
        true,
    )
}

fn locality_topology() -> Topology {
    topology(&[
        ("192.0.2.0/24", "region1/zone1/sub1"),
        ("192.0.2.128/25", "region1/zone1/sub3"),
        ("198.51.100.0/24", "region1/zone3"),
        ("203.0.113.0/24", "region4/zone1"),
        ("203.0.114.0/24", "region5"),
        ("203.0.115.0/24", "region1"),
        ("2001:db8:1::/48", "region2/zone1"),
        ("2001:db8:2::/48", "region1"),
    ])
}

const ALL_UP_V4: &[&str] = &[
    "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6",
];

#[test]
fn locality_cases() {
    struct Case {
        name: &'static str,
        all_down: &'static str,
        client: &'static str,
        ecs: Option<u8>,
        v6: bool,
        down: &'static [&'static str],
        want: &'static [&'static str],
        scope: u8,
        failed_open: bool,
    }
    let c = |name, client, ecs, down, want, scope| Case {
        name,
        all_down: "AnswerAll",
        client,
        ecs,
        v6: false,
        down,
        want,
        scope,
        failed_open: false,
    };
    let cases = [
        c(
            "same region/zone/subzone",
            "192.0.2.1",
            Some(24),
            &[],
            &["10.0.0.1"],
            25,
        ),
        c(
            "same subzone, source address (no ECS)",
            "192.0.2.1",
            None,
            &[],
            &["10.0.0.1"],
            0,
        ),
        c(
            "subzone down (its other target is disabled): same region/zone",
            "192.0.2.1",
            Some(24),
            &["10.0.0.1"],
            &["10.0.0.2"],
            25,
        ),
        c(
            "longest prefix decides, scope is its length",
            "192.0.2.200",
            Some(32),
            &[],
            &["10.0.0.1", "10.0.0.2"],
            25,
        ),
        c(
            "same region/zone when no target in the subzone",
            "192.0.2.130",
            Some(24),
            &[],
            &["10.0.0.1", "10.0.0.2"],
            25,
        ),
        c(
            "same region when no target in the zone",
            "198.51.100.7",
            Some(24),
            &[],
            &["10.0.0.1", "10.0.0.2", "10.0.0.3"],
            24,
        ),
        c(
            "zone down: rest of the region",
            "192.0.2.1",
            Some(24),
            &["10.0.0.1", "10.0.0.2"],
            &["10.0.0.3"],
            25,
        ),
        c(
            "client with only a region: whole region",
            "203.0.115.1",
            Some(24),
            &[],
            &["10.0.0.1", "10.0.0.2", "10.0.0.3"],
            24,
        ),
        c(
            "region down: first failover region that has a target",
            "192.0.2.1",
            Some(24),
            &["10.0.0.1", "10.0.0.2", "10.0.0.3"],
            &["10.0.0.5"],
            25,
        ),
        c(
            "next failover region in order",
            "192.0.2.1",
            Some(24),
            &["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.5"],
            &["10.0.0.4"],
            25,
        ),
        c(
            "failover regions exhausted: everyone eligible",
            "192.0.2.1",
            Some(24),
            &["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"],
            &["10.0.0.6"],
            25,
        ),
        c(
            "no target in the client's region: failover",
            "203.0.113.9",
            Some(24),
            &[],
            &["10.0.0.4"],
            24,
        ),
        c(
            "failover is not transitive",
            "203.0.113.9",
            Some(24),
            &["10.0.0.4"],
            &["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.5", "10.0.0.6"],
            24,
        ),
        c(
            "unknown region, no failover: everyone",
            "203.0.114.1",
            Some(24),
            &[],
            ALL_UP_V4,
            24,
        ),
        c(
            "no topology match: everyone, scope as wide as no entry reaches",
            "100.64.0.1",
            Some(22),
            &[],
            ALL_UP_V4,
            1,
        ),
        c(
            "no topology match without ECS",
            "100.64.0.1",
            None,
            &[],
            ALL_UP_V4,
            0,
        ),
        c(
            "IPv4-mapped source matches IPv4 entries",
            "::ffff:192.0.2.1",
            Some(120),
            &[],
            &["10.0.0.1"],
            121,
        ),
        c(
            "IPv6 client, IPv4 answer",
            "2001:db8:1::1",
            Some(56),
            &[],
            &["10.0.0.4"],
            48,
        ),
        Case {
            v6: true,
            ..c(
                "AAAA: nearest among IPv6 targets",
                "192.0.2.1",
                Some(24),
                &[],
                &["2001:db8::1"],
                25,
            )
        },
        Case {
            v6: true,
            ..c(
                "AAAA: per family, no v6 target in region: failover",
                "2001:db8:2::1",
                Some(48),
                &["2001:db8::1"],
                &["2001:db8::2"],
                48,
            )
        },
        Case {
            failed_open: true,
            ..c(
                "all down: fail open with the same locality logic, disabled still out",
                "192.0.2.1",
                Some(24),
                &[
                    "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6",
                ],
                &["10.0.0.1"],
                25,
            )
        },
        Case {
            failed_open: true,
            ..c(
                "fail open, region-level client",
                "198.51.100.1",
                Some(24),
                &[
                    "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6",
                ],
                &["10.0.0.1", "10.0.0.2", "10.0.0.3"],
                24,
            )
        },
        Case {
            all_down: "NoData",
            ..c(
                "all down with NoData",
                "192.0.2.1",
                Some(24),
                &[
                    "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6",
                ],
                &[],
                0,
            )
        },
    ];
    let topo = locality_topology();
    for (k, case) in cases.iter().enumerate() {
        let f = locality_fixture(case.all_down);
        f.health(case.down, &[]);
        let mut rng = fastrand::Rng::with_seed(k as u64);
        let (out, sel) = f.select(case.v6, client(case.client, case.ecs), &topo, &mut rng);
        assert_eq!(set(&out), strs(case.want), "{}", case.name);
        assert_eq!(out.len(), case.want.len(), "{}: duplicates", case.name);
        assert_eq!(sel.ecs_scope, case.scope, "{}: scope", case.name);
        assert_eq!(
            sel.failed_open, case.failed_open,
            "{}: failed_open",
            case.name
        );
    }
}

#[test]
fn locality_rotates_like_round_robin() {
    let f = locality_fixture("AnswerAll");
    let topo = locality_topology();
    let mut rng = fastrand::Rng::with_seed(3);
    let c = client("198.51.100.7", None);
    let firsts: Vec<String> = (0..6)
        .map(|_| f.select(false, c, &topo, &mut rng).0[0].to_string())
        .collect();
    assert_eq!(
        firsts,
        [
            "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.1", "10.0.0.2", "10.0.0.3"
        ]
    );
}

fn distribute_fixture() -> Fixture {
    Fixture::new(
        json!({"name": "dist.example", "policy": "Locality", "targets": [
                {"name": "a1", "address": "10.0.0.1", "locality": "region1/zone1/sub1"},
                {"name": "a2", "address": "10.0.0.2", "locality": "region1/zone1/sub2"},
                {"name": "b1", "address": "10.0.0.3", "locality": "region2/zone2/sub1"},
                {"name": "c1", "address": "10.0.0.4", "locality": "region3/zone1"},
                {"name": "v1", "address": "2001:db8::1", "locality": "region2/zone2/sub9"}],
            "distribute": [
                {"from": "region3/*", "to": {"region3": 1}},
                {"from": "*/*", "to": {"region1/zone1/*": 99, "region2/zone2/*": 1, "region9": 50}},
                {"from": "region1", "to": {"region3": 1}}],
            "failover": [{"from": "region3", "to": "region2"}]}),
        true,
    )
}

fn distribute_topology() -> Topology {
    topology(&[
        ("192.0.2.0/24", "region1/zone1/sub1"),
        ("198.51.100.0/24", "region3/zone7"),
        ("203.0.113.0/24", "region1"),
        ("2001:db8:1::/48", "region5/zone5"),
    ])
}

#[test]
fn distribute_cases() {
    struct Case {
        name: &'static str,
        client: &'static str,
        v6: bool,
        down: &'static [&'static str],
        /// The possible answers (each a set) and their expected share in percent.
        want: &'static [(&'static [&'static str], f64)],
        scope: u8,
    }
    let cases = [
        Case {
            name: "99/1 by weight, pattern without targets never picked",
            client: "192.0.2.1",
            v6: false,
            down: &[],
            want: &[(&["10.0.0.1", "10.0.0.2"], 99.0), (&["10.0.0.3"], 1.0)],
            scope: 24,
        },
        Case {
            name: "a pattern whose targets are all down is not drawn",
            client: "192.0.2.1",
            v6: false,
            down: &["10.0.0.1", "10.0.0.2"],
            want: &[(&["10.0.0.3"], 100.0)],
            scope: 24,
        },
        Case {
            name: "only the eligible targets of the drawn pattern",
            client: "192.0.2.1",
            v6: false,
            down: &["10.0.0.1"],
            want: &[(&["10.0.0.2"], 99.0), (&["10.0.0.3"], 1.0)],
            scope: 24,
        },
        Case {
            name: "first matching rule wins",
            client: "198.51.100.1",
            v6: false,
            down: &[],
            want: &[(&["10.0.0.4"], 100.0)],
            scope: 24,
        },
        Case {
            name: "first matching rule has nothing eligible: nearest, then failover (not the next rule)",
            client: "198.51.100.1",
            v6: false,
            down: &["10.0.0.4"],
            want: &[(&["10.0.0.3"], 100.0)],
            scope: 24,
        },
        Case {
            name: "`*/*` does not match a region-only client; the later rule does",
            client: "203.0.113.1",
            v6: false,
            down: &[],
            want: &[(&["10.0.0.4"], 100.0)],
            scope: 24,
        },
        Case {
            name: "no pattern has an eligible target: nearest",
            client: "192.0.2.1",
            v6: false,
            down: &["10.0.0.1", "10.0.0.3"],
            want: &[(&["10.0.0.2"], 100.0)],
            scope: 24,
        },
        Case {
            name: "per family: only the pattern with an IPv6 target",
            client: "192.0.2.1",
            v6: true,
            down: &[],
            want: &[(&["2001:db8::1"], 100.0)],
            scope: 24,
        },
        Case {
            name: "IPv6 client matched by a rule",
            client: "2001:db8:1::5",
            v6: false,
            down: &[],
            want: &[(&["10.0.0.1", "10.0.0.2"], 99.0), (&["10.0.0.3"], 1.0)],
            scope: 48,
        },
    ];
    let topo = distribute_topology();
    // 20,000 draws: the standard deviation of a 99/1 share is 0.07 points.
    let n = 20_000;
    for (k, case) in cases.iter().enumerate() {
        let f = distribute_fixture();
        f.health(case.down, &[]);
        let mut rng = fastrand::Rng::with_seed(77 + k as u64);
        let c = client(case.client, Some(24));
        let mut counts: HashMap<BTreeSet<String>, usize> = HashMap::new();
        for _ in 0..n {
            let (out, sel) = f.select(case.v6, c, &topo, &mut rng);
            assert_eq!(sel.ecs_scope, case.scope, "{}", case.name);
            assert!(!sel.failed_open, "{}", case.name);
            *counts.entry(set(&out)).or_default() += 1;
        }
        let wanted: Vec<BTreeSet<String>> = case.want.iter().map(|(s, _)| strs(s)).collect();
        for got in counts.keys() {
            assert!(
                wanted.contains(got),
                "{}: unexpected answer {got:?}",
                case.name
            );
        }
        for (answer, pct) in case.want {
            let share = 100.0 * counts.get(&strs(answer)).copied().unwrap_or(0) as f64 / n as f64;
            assert!(
                (share - pct).abs() < 0.5,
                "{}: {answer:?} got {share:.2}%, want {pct}%",
                case.name
            );
        }
    }
}

#[test]
fn weight_zero_pattern_is_never_drawn() {
    let f = Fixture::new(
        json!({"name": "w.example", "policy": "Locality", "targets": [
                {"name": "a", "address": "10.0.0.1", "locality": "r1"},
                {"name": "b", "address": "10.0.0.2", "locality": "r2"}],
            "distribute": [{"from": "*", "to": {"r1": 0, "r2": 5}}]}),
        true,
    );
    let topo = topology(&[("0.0.0.0/0", "r1/z")]);
    let mut rng = fastrand::Rng::with_seed(1);
    let c = client("192.0.2.1", None);
    for _ in 0..1000 {
        assert_eq!(
            set(&f.select(false, c, &topo, &mut rng).0),
            strs(&["10.0.0.2"])
        );
    }
    // Only the weight-0 pattern has an eligible target: as if no rule matched.
    f.health(&["10.0.0.2"], &[]);
    assert_eq!(
        set(&f.select(false, c, &topo, &mut rng).0),
        strs(&["10.0.0.1"])
    );
}

#[test]
fn select_does_not_grow_a_sized_buffer() {
    // The hot path allocates nothing beyond `out`: with enough capacity, `out` keeps
    // its buffer.
    let f = locality_fixture("AnswerAll");
    let topo = locality_topology();
    let mut rng = fastrand::Rng::with_seed(1);
    let mut out = Vec::with_capacity(64);
    let ptr = out.as_ptr();
    for addr in ["192.0.2.1", "100.64.0.1", "203.0.113.1"] {
        select(
            &f.entry,
            false,
            &client(addr, None),
            &topo,
            NOW_MS,
            &mut rng,
            &mut out,
        );
        assert!(!out.is_empty());
        assert_eq!(out.as_ptr(), ptr);
    }
}

// ---------------------------------------------------------------- docs/policies.md

/// The Locality walk-through of docs/policies.md is checked against the code: its
/// PUT body, its topology, every `dig +subnet` answer with its ECS scope, and every
/// row of its "When targets fail" table.
#[test]
fn docs_locality_example_holds() {
    let doc = include_str!("../../docs/policies.md");
    let section = |from: &str, to: &str| {
        let start = doc
            .find(from)
            .unwrap_or_else(|| panic!("{from:?} in the doc"));
        let end = start + doc[start..].find(to).unwrap_or_else(|| panic!("{to:?}"));
        &doc[start..end]
    };
    let block_after = |text: &'static str, fence: &str| -> &'static str {
        let start = text.find(fence).unwrap() + fence.len();
        &text[start..start + text[start..].find("```").unwrap()]
    };

    // The topology of "The client's locality".
    let toml = block_after(
        section("### The client's locality", "### The answer"),
        "```toml",
    );
    let mut entries = Vec::new();
    let mut cidr = None;
    for line in toml.lines() {
        let value = || line.split('"').nth(1).unwrap().to_string();
        if line.starts_with("cidr") {
            cidr = Some(value());
        } else if line.starts_with("locality") {
            let net = crate::config::parse_cidr(&cidr.take().unwrap()).unwrap();
            let (addr, prefix) = (net.addr(), net.prefix_len());
            entries.push(TopologyEntry {
                addr,
                prefix,
                locality: Locality::parse(&value()).unwrap(),
            });
        }
    }
    assert_eq!(entries.len(), 4);
    let topo = Topology::new(entries);

    let example = section("### Example", "### distribute");
    let body_text = &example[example.find("-d '").unwrap() + 4..];
    let body_text = &body_text[..body_text.find("'\n").unwrap()];
    let body: Value = serde_json::from_str(body_text).unwrap();
    let names: HashMap<String, String> = body["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["address"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let f = Fixture::new(body, false);
    f.health(&[], &[]);
    let mut rng = fastrand::Rng::with_seed(1);

    // Every dig block: +subnet=A/S, "; CLIENT-SUBNET: A/S/scope", the A records.
    let mut digs = 0;
    for block in example.split("```").filter(|b| b.contains("$ dig")) {
        let subnet = block.split("+subnet=").nth(1).unwrap();
        let subnet = subnet.split_whitespace().next().unwrap();
        let (addr, source) = subnet.rsplit_once('/').unwrap();
        let scope: u8 = block
            .split("CLIENT-SUBNET: ")
            .nth(1)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let want: BTreeSet<String> = block
            .lines()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.len() == 5 && w[3] == "A").then(|| w[4].to_string())
            })
            .collect();
        let c = client(addr, Some(source.parse().unwrap()));
        let (out, sel) = f.select(false, c, &topo, &mut rng);
        assert_eq!(set(&out), want, "dig +subnet={subnet}");
        assert_eq!(sel.ecs_scope, scope, "dig +subnet={subnet}");
        digs += 1;
    }
    assert_eq!(digs, 5);

    // The failure table, for the 10.1.2.0/24 client.
    let mut checked: Value = serde_json::from_str(body_text).unwrap();
    checked.as_object_mut().unwrap().remove("healthCheck");
    let f = Fixture::new(checked, true);
    let ticks = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    };
    let table = section("**When targets fail**", "As soon as");
    let mut rows = 0;
    for row in table
        .lines()
        .filter(|l| l.starts_with("| `") || l.starts_with("| nothing"))
    {
        let cols: Vec<&str> = row.split('|').map(str::trim).collect();
        let down: Vec<String> = ticks(cols[1]).iter().map(|n| names[n].clone()).collect();
        let down: Vec<&str> = down.iter().map(String::as_str).collect();
        f.health(&down, &[]);
        let (out, _) = f.select(false, client("10.1.2.0", Some(24)), &topo, &mut rng);
        assert_eq!(set(&out), ticks(cols[2]).into_iter().collect(), "row {row}");
        rows += 1;
    }
    assert_eq!(rows, 5);
}

/// Every PUT body of docs/policies.md is a valid NameService, and so is its
/// `distribute` snippet set into the Locality example.
#[test]
fn docs_bodies_are_valid() {
    let doc = include_str!("../../docs/policies.md");
    let bodies: Vec<Value> = doc
        .split("-d '")
        .skip(1)
        .map(|b| serde_json::from_str(&b[..b.find("}'").unwrap() + 1]).unwrap())
        .collect();
    // Override bodies (`{"state": ..}`) are checked by the API tests; every
    // other body is a NameService.
    let (overrides, services): (Vec<Value>, Vec<Value>) =
        bodies.into_iter().partition(|b| b.get("state").is_some());
    assert!(!overrides.is_empty());
    assert_eq!(services.len(), 4);
    let mut locality = None;
    for b in services {
        let ns = NameService::from_json(b.clone()).unwrap_or_else(|e| panic!("{b}: {e}"));
        if ns.policy == Policy::Locality {
            locality = Some(b);
        }
    }
    let snippet = doc.split("```json\n").nth(1).unwrap();
    let snippet: Value =
        serde_json::from_str(&format!("{{{}}}", &snippet[..snippet.find("```").unwrap()])).unwrap();
    let mut b = locality.unwrap();
    b["distribute"] = snippet["distribute"].clone();
    NameService::from_json(b).unwrap();
}
