//! Explain against the DNS path: the outcomes it lists are the answers `select`
//! gives, with the probabilities `select` gives them.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::{Value, json};

use super::explain::{Explanation, Question, StepView, explain};
use super::*;
use crate::health::{Health, HealthCell};
use crate::model::NameService;

const NOW: u64 = 1_800_000_000_000;

struct Svc {
    entry: ServiceEntry,
    cells: HashMap<IpAddr, Arc<HealthCell>>,
}

impl Svc {
    fn new(mut spec: Value) -> Self {
        spec["healthCheck"] = json!({"port": 80});
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

    fn set(&self, addr: &str, h: Health, at: u64) {
        let c = &self.cells[&addr.parse::<IpAddr>().unwrap()];
        c.set_at(Health::Unhealthy, 0);
        c.set_at(h, at);
    }

    fn explain(&self, topo: &Topology, client: &str, ecs: Option<(&str, u8)>) -> Explanation {
        explain(
            &self.entry,
            topo,
            &Question {
                client: client.parse().unwrap(),
                ecs: ecs.map(|(a, s)| (a.parse().unwrap(), s)),
                v6: false,
                now_ms: NOW,
            },
            None,
            |_, _| None,
        )
    }

    /// Frequencies of each answer (sorted address list) over `n` DNS-path selections.
    fn dns(
        &self,
        topo: &Topology,
        client: &str,
        ecs: Option<(&str, u8)>,
        n: usize,
    ) -> BTreeMap<Vec<String>, f64> {
        let c = match ecs {
            Some((a, s)) => ClientInfo {
                addr: a.parse().unwrap(),
                ecs_source_prefix: Some(s),
            },
            None => ClientInfo {
                addr: client.parse().unwrap(),
                ecs_source_prefix: None,
            },
        };
        let mut rng = fastrand::Rng::with_seed(42);
        let mut out = Vec::new();
        let mut counts: BTreeMap<Vec<String>, f64> = BTreeMap::new();
        for _ in 0..n {
            select(&self.entry, false, &c, topo, NOW, &mut rng, &mut out);
            let mut a: Vec<String> = out.iter().map(IpAddr::to_string).collect();
            a.sort();
            *counts.entry(a).or_default() += 1.0 / n as f64;
        }
        counts
    }
}

/// explain's outcomes as (sorted addresses -> probability).
fn outcomes(e: &Explanation) -> BTreeMap<Vec<String>, f64> {
    let mut m: BTreeMap<Vec<String>, f64> = BTreeMap::new();
    for o in &e.outcomes {
        let mut a = o.addresses.clone();
        a.sort();
        *m.entry(a).or_default() += o.probability;
    }
    m
}

fn agree(e: &Explanation, dns: &BTreeMap<Vec<String>, f64>, tolerance: f64) {
    let ex = outcomes(e);
    for (answer, p) in dns {
        let q = ex.get(answer).copied().unwrap_or(-1.0);
        assert!(
            (p - q).abs() <= tolerance,
            "answer {answer:?}: DNS {p:.4}, explain {q:.4}\n{:#?}",
            e.outcomes
        );
    }
    for (answer, q) in &ex {
        if *q > tolerance {
            assert!(
                dns.contains_key(answer),
                "explain lists {answer:?} ({q}) that DNS never gave"
            );
        }
    }
    let total: f64 = e.outcomes.iter().map(|o| o.probability).sum();
    assert!((total - 1.0).abs() < 1e-3, "{total}");
}

fn topo() -> Topology {
    let e = |cidr: &str, loc: &str| {
        let net = crate::config::parse_cidr(cidr).unwrap();
        TopologyEntry {
            addr: net.addr(),
            prefix: net.prefix_len(),
            locality: crate::model::Locality::parse(loc).unwrap(),
        }
    };
    Topology::new(vec![
        e("10.1.0.0/16", "r1/z1"),
        e("10.2.0.0/16", "r2/z1"),
        e("10.3.0.0/16", "r3"),
    ])
}

#[test]
fn ratio_probabilities_are_exact() {
    let s = Svc::new(
        json!({"name": "s.example", "policy": "Ratio", "ttl": 30, "degradedTtl": 7,
        "targets": [
            {"name": "a", "address": "192.0.2.1", "ratio": 1},
            {"name": "b", "address": "192.0.2.2", "ratio": 3},
            {"name": "z", "address": "192.0.2.3", "ratio": 0},
            {"name": "d", "address": "192.0.2.4", "ratio": 4}]}),
    );
    s.set("192.0.2.4", Health::Unhealthy, 0);
    let e = s.explain(&topo(), "10.1.2.3", None);
    let p: Vec<(String, f64, Reason)> = e
        .targets
        .iter()
        .map(|t| (t.name.clone(), t.probability, t.reason))
        .collect();
    assert_eq!(
        p,
        [
            ("a".into(), 0.25, Reason::Healthy),
            ("b".into(), 0.75, Reason::Healthy),
            ("z".into(), 0.0, Reason::RatioZero),
            ("d".into(), 0.0, Reason::Unhealthy)
        ]
    );
    assert_eq!(
        (e.mode, e.eligible_targets, e.enabled_targets, e.degraded),
        (Mode::Normal, 2, 3, true)
    );
    assert_eq!(e.answer.ttl, 7);
    assert_eq!(e.answer.addresses.len(), 1);
    assert_eq!(e.outcomes[0].step, StepView::Ratio);
    assert_eq!(e.client.locality.as_deref(), Some("r1/z1"));
    assert_eq!(e.client.topology_entry.as_deref(), Some("10.1.0.0/16"));
    agree(&e, &s.dns(&topo(), "10.1.2.3", None, 20_000), 0.015);
}

#[test]
fn explain_agrees_with_dns_over_many_clients_and_health_states() {
    let spec = json!({"name": "s.example", "policy": "Locality", "slowStartSeconds": 100,
        "panicThresholdPercent": 30,
        "targets": [
            {"name": "a", "address": "192.0.2.1", "locality": "r1/z1"},
            {"name": "b", "address": "192.0.2.2", "locality": "r1/z2"},
            {"name": "c", "address": "192.0.2.3", "locality": "r2/z1"},
            {"name": "d", "address": "192.0.2.4", "locality": "r3/z1"},
            {"name": "e", "address": "192.0.2.5"}],
        "failover": [{"from": "r1", "to": "r3"}],
        "distribute": [{"from": "r2", "to": {"r2": 60, "r1/z1": 30, "r3": 10}}]});
    let s = Svc::new(spec);
    let addrs = [
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.3",
        "192.0.2.4",
        "192.0.2.5",
    ];
    let mut rng = fastrand::Rng::with_seed(11);
    let topo = topo();
    for round in 0..12 {
        // A random health state: down, ramping (somewhere on the ramp) or warm.
        for a in addrs {
            match rng.u8(..4) {
                0 => s.set(a, Health::Unhealthy, 0),
                1 => s.set(a, Health::Healthy, NOW - rng.u64(..100_000)),
                _ => s.set(a, Health::Healthy, 1),
            }
        }
        for (client, ecs) in [
            ("10.1.9.9", None),
            ("127.0.0.1", Some(("10.2.3.0", 24))),
            ("10.3.0.1", None),
            ("172.16.0.1", None),
        ] {
            let e = s.explain(&topo, client, ecs);
            assert!(!e.estimated);
            let dns = s.dns(&topo, client, ecs, 6_000);
            agree(&e, &dns, 0.03);
            // The target probabilities are the outcome sums.
            for t in &e.targets {
                let sum: f64 = e
                    .outcomes
                    .iter()
                    .filter(|o| o.targets.contains(&t.name))
                    .map(|o| o.probability)
                    .sum();
                assert!(
                    (sum - t.probability).abs() < 1e-3,
                    "round {round} {client}: {t:?}"
                );
            }
        }
    }
}

#[test]
fn explain_names_panic_slow_start_and_stickiness() {
    let s = Svc::new(
        json!({"name": "s.example", "policy": "Ratio", "stickiness": "ClientSubnet",
        "slowStartSeconds": 100, "panicThresholdPercent": 50,
        "targets": [
            {"name": "a", "address": "192.0.2.1"},
            {"name": "b", "address": "192.0.2.2"},
            {"name": "c", "address": "192.0.2.3"}]}),
    );
    s.set("192.0.2.2", Health::Healthy, NOW - 50_000);
    let e = s.explain(&topo(), "127.0.0.1", Some(("10.9.8.0", 24)));
    let text = e.steps.join("\n");
    assert!(
        text.contains("slow start: b at 55% of its weight"),
        "{text}"
    );
    assert!(text.contains("stickiness ClientSubnet"), "{text}");
    assert_eq!(e.outcomes.len(), 1, "sticky: one answer for this subnet");
    assert_eq!(
        e.outcomes[0].step,
        StepView::Sticky {
            subnet: "10.9.8.0/24".into()
        }
    );
    assert_eq!(e.answer.ecs_scope, Some(24));
    let ramp = e.targets[1].slow_start.as_ref().unwrap();
    assert_eq!((ramp.factor, ramp.remaining_seconds), (0.55, 50.0));
    s.set("192.0.2.1", Health::Unhealthy, 0);
    s.set("192.0.2.3", Health::Unhealthy, 0);
    let e = s.explain(&topo(), "127.0.0.1", None);
    assert_eq!(e.mode, Mode::Panic);
    assert!(
        e.steps
            .join("\n")
            .contains("panic: 1 of 3 eligible is below panicThresholdPercent 50%")
    );
    // No slow start while panicking.
    assert!(e.targets.iter().all(|t| t.slow_start.is_none()));
    assert!(e.degraded);
}

#[test]
fn the_detail_hook_says_more_about_an_address() {
    let s = Svc::new(
        json!({"name": "d.example", "policy": "RoundRobin", "targets": [
        {"name": "a", "address": "192.0.2.1"},
        {"name": "b", "address": "192.0.2.2"}]}),
    );
    s.set("192.0.2.2", Health::Unhealthy, 0);
    let held: IpAddr = "192.0.2.2".parse().unwrap();
    let e = explain(
        &s.entry,
        &topo(),
        &Question {
            client: "127.0.0.1".parse().unwrap(),
            ecs: None,
            v6: false,
            now_ms: NOW,
        },
        None,
        |i, addr| (i == 1 && addr == held).then(|| "flap damping: held".to_string()),
    );
    assert_eq!(e.targets[0].detail, None);
    assert_eq!(e.targets[1].detail.as_deref(), Some("flap damping: held"));
    assert!(
        e.steps
            .contains(&"b not eligible: Unhealthy (flap damping: held)".to_string()),
        "{:?}",
        e.steps
    );
}

#[test]
fn distribute_and_failover_steps_are_named() {
    let s = Svc::new(json!({"name": "s.example", "policy": "Locality",
        "targets": [
            {"name": "a", "address": "192.0.2.1", "locality": "r1/z1"},
            {"name": "c", "address": "192.0.2.3", "locality": "r2/z1"},
            {"name": "d", "address": "192.0.2.4", "locality": "r3/z1"}],
        "failover": [{"from": "r1", "to": "r3"}],
        "distribute": [{"from": "r2", "to": {"r2": 75, "r3": 25}}]}));
    let e = s.explain(&topo(), "10.2.0.9", None);
    let steps: Vec<(StepView, f64)> = e
        .outcomes
        .iter()
        .map(|o| (o.step.clone(), o.probability))
        .collect();
    assert_eq!(
        steps,
        [
            (
                StepView::Distribute {
                    rule: 0,
                    from: "r2".into(),
                    pattern: "r2".into(),
                    weight: 75
                },
                0.75
            ),
            (
                StepView::Distribute {
                    rule: 0,
                    from: "r2".into(),
                    pattern: "r3".into(),
                    weight: 25
                },
                0.25
            )
        ]
    );
    s.set("192.0.2.1", Health::Unhealthy, 0);
    let e = s.explain(&topo(), "10.1.0.9", Some(("10.1.0.0", 24)));
    assert_eq!(
        e.outcomes[0].step,
        StepView::Failover {
            rule: 0,
            from: "r1".into(),
            to: "r3".into()
        }
    );
    assert_eq!(e.answer.addresses, ["192.0.2.4"]);
    assert!(
        e.steps.iter().any(|l| l == "a not eligible: Unhealthy"),
        "{:?}",
        e.steps
    );
    let e = s.explain(&topo(), "172.16.0.1", None);
    assert_eq!(
        e.outcomes[0].step,
        StepView::All {
            why: "no topology match"
        }
    );
}

#[test]
fn too_many_branches_are_sampled() {
    let targets: Vec<Value> = (0..16)
        .map(|i| json!({"name": format!("t{i}"), "address": format!("192.0.2.{}", i + 1)}))
        .collect();
    let s = Svc::new(
        json!({"name": "s.example", "policy": "RoundRobin", "slowStartSeconds": 100, "targets": targets}),
    );
    for i in 0..16 {
        s.set(
            &format!("192.0.2.{}", i + 1),
            Health::Healthy,
            NOW - 1_000 * i,
        );
    }
    let e = s.explain(&topo(), "127.0.0.1", None);
    assert!(e.estimated);
    // t15 is the warmest: always in; t0 at 10 / 23.5 of it.
    let warm = 0.1 + 0.9 * 0.15;
    assert_eq!(e.targets[15].probability, 1.0);
    assert!(
        (e.targets[0].probability - 0.1 / warm).abs() < 0.02,
        "{}",
        e.targets[0].probability
    );
}

#[test]
fn an_fqdn_target_is_listed_per_address_and_drawn_once() {
    let mut spec = json!({"name": "f.example", "policy": "Ratio", "targets": [
        {"name": "a", "address": "192.0.2.1", "ratio": 1},
        {"name": "web", "fqdn": "web.example.net", "ratio": 1}]});
    spec["healthCheck"] = json!({"port": 80});
    let ns = Arc::new(NameService::from_json(spec).expect("valid spec"));
    let mut cells: HashMap<IpAddr, Arc<HealthCell>> = HashMap::new();
    let resolved: Arc<[IpAddr]> = Arc::from(vec![
        "198.51.100.1".parse::<IpAddr>().unwrap(),
        "198.51.100.2".parse().unwrap(),
    ]);
    let entry = ServiceEntry::compile_resolved(
        ns,
        None,
        None,
        |ep| {
            cells
                .entry(ep.address)
                .or_insert_with(|| Arc::new(HealthCell::new(Health::Healthy)))
                .clone()
        },
        &|_| resolved.clone(),
    );
    let q = Question {
        client: "127.0.0.1".parse().unwrap(),
        ecs: None,
        v6: false,
        now_ms: NOW,
    };
    // Listed per address, under the target's name and fqdn.
    let e = explain(&entry, &topo(), &q, None, |_, _| None);
    let rows: Vec<(&str, Option<&str>, &str)> = e
        .targets
        .iter()
        .map(|t| (t.name.as_str(), t.fqdn.as_deref(), t.address.as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            ("a", None, "192.0.2.1"),
            ("web", Some("web.example.net"), "198.51.100.1"),
            ("web", Some("web.example.net"), "198.51.100.2")
        ]
    );
    assert_eq!((e.eligible_targets, e.enabled_targets), (3, 3));
    assert!(
        e.steps
            .contains(&"3 of 3 enabled A addresses (an fqdn target's each) eligible (Ratio: targets with ratio 0 do not count)".to_string()),
        "{:?}",
        e.steps
    );
    // Ratio draws the target once (by its ratio), and answers its addresses; the
    // outcome names it once.
    let got: Vec<(f64, Vec<String>, Vec<String>)> = e
        .outcomes
        .iter()
        .map(|o| (o.probability, o.targets.clone(), o.addresses.clone()))
        .collect();
    let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(
        got.contains(&(0.5, strs(&["a"]), strs(&["192.0.2.1"]))),
        "{got:?}"
    );
    assert!(
        got.contains(&(0.5, strs(&["web"]), strs(&["198.51.100.1", "198.51.100.2"]))),
        "{got:?}"
    );
    // One address down: it alone is not eligible; the target keeps its share.
    cells[&"198.51.100.2".parse::<IpAddr>().unwrap()].set(Health::Unhealthy);
    let e = explain(&entry, &topo(), &q, None, |_, _| None);
    let elig: Vec<(&str, bool)> = e
        .targets
        .iter()
        .map(|t| (t.address.as_str(), t.eligible))
        .collect();
    assert_eq!(
        elig,
        [
            ("192.0.2.1", true),
            ("198.51.100.1", true),
            ("198.51.100.2", false)
        ]
    );
    let got: Vec<(f64, Vec<String>, Vec<String>)> = e
        .outcomes
        .iter()
        .map(|o| (o.probability, o.targets.clone(), o.addresses.clone()))
        .collect();
    assert!(
        got.contains(&(0.5, strs(&["web"]), strs(&["198.51.100.1"]))),
        "{got:?}"
    );
}
