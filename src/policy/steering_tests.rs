//! Table-driven tests of what operators steer: panic threshold, degraded TTL, slow
//! start, stickiness, overrides and answer counting. Seeded randomness for shares.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::health::{Health, HealthCell};
use crate::model::{NameService, Override, OverrideState, TargetOverrides};

/// The time the selections are made at (Unix milliseconds).
const NOW: u64 = 1_800_000_000_000;

/// A compiled service whose targets each have a health cell (by address).
struct Svc {
    entry: ServiceEntry,
    cells: HashMap<IpAddr, Arc<HealthCell>>,
}

impl Svc {
    fn new(spec: Value) -> Self {
        Self::with_overrides(spec, &[])
    }

    /// `overrides`: (target name, state, expires at).
    fn with_overrides(mut spec: Value, overrides: &[(&str, OverrideState, u64)]) -> Self {
        spec["healthCheck"] = json!({"port": 80});
        let ns = NameService::from_json(spec).expect("valid spec");
        let ovr: TargetOverrides = overrides
            .iter()
            .map(|(t, state, expires)| {
                (
                    t.to_string(),
                    Override {
                        state: *state,
                        reason: "test".into(),
                        ttl_seconds: 60,
                        created_at_ms: 0,
                        expires_at_ms: *expires,
                        by: None,
                    },
                )
            })
            .collect();
        let mut cells = HashMap::new();
        let entry = ServiceEntry::compile(Arc::new(ns), Some(&Arc::new(ovr)), None, |ep| {
            cells
                .entry(ep.address)
                .or_insert_with(|| Arc::new(HealthCell::new(Health::Healthy)))
                .clone()
        });
        Self { entry, cells }
    }

    fn cell(&self, addr: &str) -> &HealthCell {
        &self.cells[&addr.parse::<IpAddr>().unwrap()]
    }

    /// Marks `addrs` Unhealthy (the others stay as they are).
    fn down(&self, addrs: &[&str]) {
        for a in addrs {
            self.cell(a).set_at(Health::Unhealthy, NOW - 1);
        }
    }

    /// Marks `addr` as having turned Healthy `ago_ms` before [`NOW`].
    fn healthy_since(&self, addr: &str, ago_ms: u64) {
        let c = self.cell(addr);
        c.set_at(Health::Unhealthy, 0);
        c.set_at(Health::Healthy, NOW - ago_ms);
    }

    fn pick(
        &self,
        v6: bool,
        c: &ClientInfo,
        topo: &Topology,
        rng: &mut fastrand::Rng,
    ) -> (Vec<IpAddr>, Selection) {
        let mut out = Vec::new();
        let sel = select(&self.entry, v6, c, topo, NOW, rng, &mut out);
        (out, sel)
    }

    /// How often each address is in the answer over `n` queries from `c`.
    fn presence(
        &self,
        c: &ClientInfo,
        topo: &Topology,
        n: usize,
        seed: u64,
    ) -> BTreeMap<String, f64> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..n {
            for a in self.pick(false, c, topo, &mut rng).0 {
                *counts.entry(a.to_string()).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .map(|(a, k)| (a, 100.0 * k as f64 / n as f64))
            .collect()
    }
}

fn client(addr: &str) -> ClientInfo {
    ClientInfo {
        addr: addr.parse().unwrap(),
        ecs_source_prefix: None,
    }
}

fn set(addrs: &[IpAddr]) -> BTreeSet<String> {
    addrs.iter().map(IpAddr::to_string).collect()
}

fn strs(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn four(policy: &str, extra: Value) -> Value {
    let mut v = json!({"name": "s.example", "ttl": 30, "degradedTtl": 5, "policy": policy,
        "targets": [
            {"name": "a", "address": "192.0.2.1", "ratio": 1},
            {"name": "b", "address": "192.0.2.2", "ratio": 1},
            {"name": "c", "address": "192.0.2.3", "ratio": 1},
            {"name": "d", "address": "192.0.2.4", "ratio": 1},
            {"name": "x", "address": "192.0.2.9", "enabled": false},
            {"name": "v", "address": "2001:db8::1"}]});
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    v
}

const ALL4: &[&str] = &["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"];

#[test]
fn panic_threshold_and_degraded_ttl() {
    struct Case {
        pct: u32,
        all_down: &'static str,
        down: &'static [&'static str],
        mode: Mode,
        want: &'static [&'static str],
        ttl: u32,
    }
    let cases = [
        // Off: the eligible ones, with the degraded TTL while one is down.
        Case {
            pct: 0,
            all_down: "AnswerAll",
            down: &[],
            mode: Mode::Normal,
            want: ALL4,
            ttl: 30,
        },
        Case {
            pct: 0,
            all_down: "AnswerAll",
            down: &["192.0.2.1", "192.0.2.2", "192.0.2.3"],
            mode: Mode::Normal,
            want: &["192.0.2.4"],
            ttl: 5,
        },
        // 50%: 2 of 4 eligible is not below it; 1 of 4 is.
        Case {
            pct: 50,
            all_down: "AnswerAll",
            down: &["192.0.2.1"],
            mode: Mode::Normal,
            want: &["192.0.2.2", "192.0.2.3", "192.0.2.4"],
            ttl: 5,
        },
        Case {
            pct: 50,
            all_down: "AnswerAll",
            down: &["192.0.2.1", "192.0.2.2"],
            mode: Mode::Normal,
            want: &["192.0.2.3", "192.0.2.4"],
            ttl: 5,
        },
        Case {
            pct: 50,
            all_down: "AnswerAll",
            down: &["192.0.2.1", "192.0.2.2", "192.0.2.3"],
            mode: Mode::Panic,
            want: ALL4,
            ttl: 5,
        },
        // Panic answers every enabled target even with allDown NoData ...
        Case {
            pct: 50,
            all_down: "NoData",
            down: &["192.0.2.1", "192.0.2.2", "192.0.2.3"],
            mode: Mode::Panic,
            want: ALL4,
            ttl: 5,
        },
        // ... but with nothing eligible, allDown decides.
        Case {
            pct: 50,
            all_down: "NoData",
            down: ALL4,
            mode: Mode::NoData,
            want: &[],
            ttl: 5,
        },
        Case {
            pct: 50,
            all_down: "AnswerAll",
            down: ALL4,
            mode: Mode::FailOpen,
            want: ALL4,
            ttl: 5,
        },
        // 100%: any target down is panic.
        Case {
            pct: 100,
            all_down: "AnswerAll",
            down: &["192.0.2.4"],
            mode: Mode::Panic,
            want: ALL4,
            ttl: 5,
        },
        Case {
            pct: 100,
            all_down: "AnswerAll",
            down: &[],
            mode: Mode::Normal,
            want: ALL4,
            ttl: 30,
        },
        // 26%: 1 of 4 (25%) is below.
        Case {
            pct: 26,
            all_down: "AnswerAll",
            down: &["192.0.2.1", "192.0.2.2", "192.0.2.3"],
            mode: Mode::Panic,
            want: ALL4,
            ttl: 5,
        },
        Case {
            pct: 25,
            all_down: "AnswerAll",
            down: &["192.0.2.1", "192.0.2.2", "192.0.2.3"],
            mode: Mode::Normal,
            want: &["192.0.2.4"],
            ttl: 5,
        },
    ];
    let topo = Topology::default();
    let mut rng = fastrand::Rng::with_seed(3);
    for c in cases {
        let s = Svc::new(four(
            "RoundRobin",
            json!({"panicThresholdPercent": c.pct, "allDown": c.all_down}),
        ));
        s.down(c.down);
        let (out, sel) = s.pick(false, &client("127.0.0.1"), &topo, &mut rng);
        let what = format!("{}% down {:?} {}", c.pct, c.down, c.all_down);
        assert_eq!(set(&out), strs(c.want), "{what}");
        assert_eq!(sel.mode, c.mode, "{what}");
        assert_eq!(sel.ttl, c.ttl, "{what}");
        assert_eq!(sel.failed_open, c.mode == Mode::FailOpen, "{what}");
        // The other family is not touched by this one's health.
        let (out, sel) = s.pick(true, &client("127.0.0.1"), &topo, &mut rng);
        assert_eq!(
            (set(&out), sel.ttl, sel.mode),
            (strs(&["2001:db8::1"]), 30, Mode::Normal),
            "{what}"
        );
    }
}

#[test]
fn panic_counts_enabled_targets_only() {
    // Ratio: ratio-0 and disabled targets are not "enabled" for the threshold, and
    // panic answers one of the enabled ones by ratio.
    let s = Svc::new(
        json!({"name": "s.example", "policy": "Ratio", "panicThresholdPercent": 60,
        "targets": [
            {"name": "a", "address": "192.0.2.1", "ratio": 1},
            {"name": "b", "address": "192.0.2.2", "ratio": 1},
            {"name": "z", "address": "192.0.2.3", "ratio": 0},
            {"name": "x", "address": "192.0.2.4", "enabled": false}]}),
    );
    let topo = Topology::default();
    // 1 of 2 (a, b) eligible: 50% < 60%.
    s.down(&["192.0.2.2"]);
    let shares = s.presence(&client("127.0.0.1"), &topo, 10_000, 1);
    assert_eq!(
        shares.keys().collect::<Vec<_>>(),
        ["192.0.2.1", "192.0.2.2"],
        "{shares:?}"
    );
    assert!((shares["192.0.2.2"] - 50.0).abs() < 2.0, "{shares:?}");
    let mut rng = fastrand::Rng::with_seed(1);
    let (_, sel) = s.pick(false, &client("127.0.0.1"), &topo, &mut rng);
    assert_eq!((sel.mode, sel.ttl), (Mode::Panic, 30));
}

#[test]
fn degraded_ttl_follows_health_not_operators() {
    let topo = Topology::default();
    let mut rng = fastrand::Rng::with_seed(5);
    let c = client("127.0.0.1");
    // (overrides, down, ttl)
    type Ovr = &'static [(&'static str, OverrideState, u64)];
    let cases: [(Ovr, &[&str], u32); 6] = [
        // A disabled target (x) never counts: 30.
        (&[], &[], 30),
        // A drained one neither.
        (&[("a", OverrideState::Drain, NOW + 1)], &[], 30),
        // A forced-unhealthy one is a health verdict: 5.
        (&[("a", OverrideState::ForceUnhealthy, NOW + 1)], &[], 5),
        // Forced healthy while down: eligible, 30.
        (
            &[("a", OverrideState::ForceHealthy, NOW + 1)],
            &["192.0.2.1"],
            30,
        ),
        // Expired overrides are ignored: a is down, 5.
        (
            &[("a", OverrideState::ForceHealthy, NOW)],
            &["192.0.2.1"],
            5,
        ),
        // A drained target that is down does not degrade the others' answers.
        (&[("a", OverrideState::Drain, NOW + 1)], &["192.0.2.1"], 30),
    ];
    for (ovr, down, ttl) in cases {
        let s = Svc::with_overrides(four("RoundRobin", json!({})), ovr);
        s.down(down);
        let (_, sel) = s.pick(false, &c, &topo, &mut rng);
        assert_eq!(sel.ttl, ttl, "{ovr:?} down {down:?}");
    }
}

#[test]
fn overrides_steer_eligibility() {
    let topo = Topology::default();
    let mut rng = fastrand::Rng::with_seed(5);
    let c = client("127.0.0.1");
    type Ovr = &'static [(&'static str, OverrideState, u64)];
    // (overrides, down, answer)
    let cases: [(Ovr, &[&str], &[&str]); 6] = [
        (
            &[("a", OverrideState::Drain, NOW + 1)],
            &[],
            &["192.0.2.2", "192.0.2.3", "192.0.2.4"],
        ),
        // A drained target is not answered even when failing open.
        (
            &[("a", OverrideState::Drain, NOW + 1)],
            ALL4,
            &["192.0.2.2", "192.0.2.3", "192.0.2.4"],
        ),
        // An expired drain is gone.
        (&[("a", OverrideState::Drain, NOW)], &[], ALL4),
        (
            &[("b", OverrideState::ForceHealthy, NOW + 1)],
            ALL4,
            &["192.0.2.2"],
        ),
        (
            &[("b", OverrideState::ForceUnhealthy, NOW + 1)],
            &[],
            &["192.0.2.1", "192.0.2.3", "192.0.2.4"],
        ),
        // A forced-unhealthy target is still answered when failing open.
        (
            &[("b", OverrideState::ForceUnhealthy, NOW + 1)],
            &["192.0.2.1", "192.0.2.3", "192.0.2.4"],
            ALL4,
        ),
    ];
    for (ovr, down, want) in cases {
        let s = Svc::with_overrides(four("RoundRobin", json!({})), ovr);
        s.down(down);
        let (out, _) = s.pick(false, &c, &topo, &mut rng);
        assert_eq!(set(&out), strs(want), "{ovr:?} down {down:?}");
    }
}

#[test]
fn neg_log2_matches_the_library_log() {
    let mut rng = fastrand::Rng::with_seed(3);
    let mut xs: Vec<u64> = (0..200_000).map(|_| rng.u64(1..)).collect();
    xs.extend([1, 2, 3, 255, 256, 1 << 32, (1 << 63) - 1, 1 << 63, u64::MAX]);
    for x in xs {
        let got = neg_log2(x) as f64 / 4_294_967_296.0;
        let want = 64.0 - (x as f64).log2();
        assert!((got - want).abs() < 4e-6, "{x}: {got} vs {want}");
    }
    assert_eq!((LOG2_TABLE[0], LOG2_TABLE[256]), (0, 1 << 32));
}

#[test]
fn slow_start_factor_follows_the_exact_ramp() {
    for seconds in [1, 7, 60, 3600] {
        let s = SlowStart::new(seconds);
        let ms = u64::from(seconds) * 1000;
        let mut e = 0;
        while e <= ms + 10 {
            let exact = ramp_factor(NOW - e, NOW, ms);
            let fast = s.factor(NOW - e, NOW);
            assert!(
                exact.abs_diff(fast) <= 1,
                "{seconds} s at {e} ms: {fast} vs {exact}"
            );
            e += 1 + ms / 5000;
        }
        assert_eq!(s.factor(NOW + 5, NOW), FULL / 10);
    }
}

#[test]
fn ramp_factor_is_linear_from_10_to_100_percent() {
    let t = 60_000;
    let cases = [
        (0, FULL / 10),
        (t / 2, FULL * 55 / 100),
        (t / 4, (u64::from(FULL) * 325 / 1000) as u32),
        (t, FULL),
        (t * 10, FULL),
    ];
    for (elapsed, want) in cases {
        let got = ramp_factor(NOW - elapsed, NOW, t);
        assert!(got.abs_diff(want) <= 1, "{elapsed}: {got} vs {want}");
    }
    // Turned healthy "in the future" (the clock stepped back): the start of the ramp.
    assert_eq!(ramp_factor(NOW + 5_000, NOW, t), FULL / 10);
    assert_eq!(ramp_factor(NOW, NOW, 0), FULL);
}

/// The expected presence (percent) of a target at slow-start factor `f` (0.1..1).
fn f_at(elapsed_ms: u64, t_ms: u64) -> f64 {
    0.1 + 0.9 * (elapsed_ms.min(t_ms) as f64 / t_ms as f64)
}

#[test]
fn slow_start_ramps_ratio_weights() {
    let topo = Topology::default();
    let t = 100_000;
    for (elapsed, seed) in [(0, 1), (25_000, 2), (50_000, 3), (90_000, 4), (200_000, 5)] {
        let s = Svc::new(
            json!({"name": "s.example", "policy": "Ratio", "slowStartSeconds": 100,
            "targets": [
                {"name": "a", "address": "192.0.2.1", "ratio": 1},
                {"name": "b", "address": "192.0.2.2", "ratio": 3}]}),
        );
        s.healthy_since("192.0.2.2", elapsed);
        let f = f_at(elapsed, t);
        let want = 100.0 * 3.0 * f / (1.0 + 3.0 * f);
        let got = s.presence(&client("127.0.0.1"), &topo, 20_000, seed);
        let b = got.get("192.0.2.2").copied().unwrap_or(0.0);
        assert!((b - want).abs() < 1.5, "{elapsed} ms: {b}% vs {want}%");
    }
}

#[test]
fn slow_start_includes_round_robin_targets_in_their_share_of_answers() {
    let topo = Topology::default();
    let s = Svc::new(four("RoundRobin", json!({"slowStartSeconds": 10})));
    s.healthy_since("192.0.2.2", 0); // 10%
    s.healthy_since("192.0.2.3", 5_000); // 55%
    s.healthy_since("192.0.2.4", 20_000); // done
    let got = s.presence(&client("127.0.0.1"), &topo, 20_000, 7);
    for (a, want) in [
        ("192.0.2.1", 100.0),
        ("192.0.2.2", 10.0),
        ("192.0.2.3", 55.0),
        ("192.0.2.4", 100.0),
    ] {
        assert!((got[a] - want).abs() < 1.5, "{a}: {got:?}");
    }
    // The ramp is relative to the warmest candidate: with only ramping targets
    // left, the warmest is always answered and never NODATA.
    s.down(&["192.0.2.1", "192.0.2.4"]);
    let got = s.presence(&client("127.0.0.1"), &topo, 20_000, 8);
    assert_eq!(got["192.0.2.3"], 100.0, "{got:?}");
    let want = 100.0 * 0.1 / 0.55;
    assert!((got["192.0.2.2"] - want).abs() < 1.5, "{got:?}");
    // Slow start stays out of fail-open and panic, and off when not configured.
    s.down(&["192.0.2.2", "192.0.2.3"]);
    let got = s.presence(&client("127.0.0.1"), &topo, 1_000, 9);
    assert!(
        got.values().all(|p| *p == 100.0) && got.len() == 4,
        "{got:?}"
    );
    let s = Svc::new(four("RoundRobin", json!({})));
    s.healthy_since("192.0.2.2", 0);
    let got = s.presence(&client("127.0.0.1"), &topo, 1_000, 9);
    assert_eq!(got["192.0.2.2"], 100.0);
    // A target healthy since before this process knew (0) does not ramp.
    let s = Svc::new(four("RoundRobin", json!({"slowStartSeconds": 10})));
    assert_eq!(s.cell("192.0.2.2").load().healthy_since_ms, 0);
    let got = s.presence(&client("127.0.0.1"), &topo, 1_000, 9);
    assert_eq!(got["192.0.2.2"], 100.0);
}

fn loc_topo() -> Topology {
    Topology::new(vec![TopologyEntry {
        addr: "10.1.0.0".parse().unwrap(),
        prefix: 16,
        locality: crate::model::Locality::parse("r1/z1").unwrap(),
    }])
}

#[test]
fn slow_start_sends_the_rest_to_the_next_nearest() {
    let s = Svc::new(
        json!({"name": "s.example", "policy": "Locality", "slowStartSeconds": 100,
        "targets": [
            {"name": "near", "address": "192.0.2.1", "locality": "r1/z1"},
            {"name": "zone", "address": "192.0.2.2", "locality": "r1/z2"},
            {"name": "far", "address": "192.0.2.3", "locality": "r2/z1"}],
        "failover": [{"from": "r1", "to": "r2"}]}),
    );
    let topo = loc_topo();
    let c = client("10.1.2.3");
    // near ramps at 30%: 30% of its clients get it, the others the same region.
    s.healthy_since("192.0.2.1", 22_222);
    let got = s.presence(&c, &topo, 20_000, 1);
    assert!((got["192.0.2.1"] - 30.0).abs() < 1.5, "{got:?}");
    assert!((got["192.0.2.2"] - 70.0).abs() < 1.5, "{got:?}");
    assert!(!got.contains_key("192.0.2.3"), "{got:?}");
    // Both r1 targets ramping (near 30%, zone 10%) and far warm: each r1 target is
    // kept by its own factor, the nearest kept one answers, and failover to far
    // takes what is left.
    s.healthy_since("192.0.2.2", 0);
    let got = s.presence(&c, &topo, 20_000, 2);
    let p_near = 0.3;
    let p_zone = (1.0 - p_near) * 0.1;
    for (a, want) in [
        ("192.0.2.1", p_near),
        ("192.0.2.2", p_zone),
        ("192.0.2.3", 1.0 - p_near - p_zone),
    ] {
        let got = got.get(a).copied().unwrap_or(0.0);
        assert!(
            (got - 100.0 * want).abs() < 1.5,
            "{a}: {got} vs {}",
            100.0 * want
        );
    }
}

#[test]
fn slow_start_scales_distribute_weights() {
    let s = Svc::new(
        json!({"name": "s.example", "policy": "Locality", "slowStartSeconds": 100,
        "targets": [
            {"name": "west", "address": "192.0.2.1", "locality": "r1/z1"},
            {"name": "east", "address": "192.0.2.2", "locality": "r2/z1"}],
        "distribute": [{"from": "r1", "to": {"r1/z1": 80, "r2": 20}}]}),
    );
    let topo = loc_topo();
    let c = client("10.1.2.3");
    for (elapsed, seed) in [(0, 1), (50_000, 2), (100_000, 3)] {
        s.healthy_since("192.0.2.1", elapsed);
        let f = f_at(elapsed, 100_000);
        let want = 100.0 * 80.0 * f / (80.0 * f + 20.0);
        let got = s.presence(&c, &topo, 20_000, seed);
        assert!(
            (got["192.0.2.1"] - want).abs() < 1.5,
            "{elapsed}: {got:?} vs {want}"
        );
    }
}

fn sticky(policy_extra: Value) -> Svc {
    let mut v = json!({"name": "s.example", "policy": "Ratio", "stickiness": "ClientSubnet",
        "targets": [
            {"name": "a", "address": "192.0.2.1", "ratio": 1},
            {"name": "b", "address": "192.0.2.2", "ratio": 2},
            {"name": "c", "address": "192.0.2.3", "ratio": 1},
            {"name": "z", "address": "192.0.2.4", "ratio": 0},
            {"name": "v", "address": "2001:db8::1", "ratio": 1},
            {"name": "w", "address": "2001:db8::2", "ratio": 1}]});
    for (k, val) in policy_extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    Svc::new(v)
}

/// The answer for each of `n` /24 subnets (10.x.y.0/24), by subnet index.
fn sticky_map(s: &Svc, n: u32, host: u8) -> Vec<String> {
    let topo = Topology::default();
    let mut rng = fastrand::Rng::with_seed(1);
    (0..n)
        .map(|i| {
            let a = format!("10.{}.{}.{host}", i >> 8, i & 0xff);
            let (out, sel) = s.pick(false, &client(&a), &topo, &mut rng);
            assert_eq!((out.len(), sel.ecs_scope), (1, 24));
            out[0].to_string()
        })
        .collect()
}

#[test]
fn sticky_subnets_keep_their_target_and_share_by_ratio() {
    let s = sticky(json!({}));
    let n = 20_000;
    let first = sticky_map(&s, n, 1);
    // Every host of a subnet gets its subnet's answer, every time.
    assert_eq!(sticky_map(&s, n, 200), first);
    assert_eq!(sticky_map(&s, n, 1), first);
    // Shares over subnets follow the ratios: 25 / 50 / 25, never the ratio-0 one.
    let mut counts: HashMap<&str, u32> = HashMap::new();
    for a in &first {
        *counts.entry(a.as_str()).or_default() += 1;
    }
    for (a, want) in [
        ("192.0.2.1", 25.0),
        ("192.0.2.2", 50.0),
        ("192.0.2.3", 25.0),
    ] {
        let got = 100.0 * f64::from(counts[a]) / f64::from(n);
        assert!((got - want).abs() < 2.0, "{a}: {got}%");
    }
    assert!(!counts.contains_key("192.0.2.4"));
}

#[test]
fn sticky_removal_moves_only_the_removed_targets_subnets() {
    let s = sticky(json!({}));
    let n = 10_000;
    let before = sticky_map(&s, n, 7);
    s.down(&["192.0.2.2"]);
    let after = sticky_map(&s, n, 7);
    let mut moved = 0;
    for (b, a) in before.iter().zip(&after) {
        if b == "192.0.2.2" {
            assert_ne!(a, "192.0.2.2");
            moved += 1;
        } else {
            assert_eq!(a, b, "a subnet of a target still up moved");
        }
    }
    assert!(moved > 4_000 && moved < 6_000, "{moved}");
    // Back up: every subnet returns to where it was.
    s.cell("192.0.2.2").set_at(Health::Healthy, 0);
    assert_eq!(sticky_map(&s, n, 9), before);
}

#[test]
fn sticky_keys_and_scopes() {
    let s = sticky(json!({}));
    let topo = Topology::default();
    let mut rng = fastrand::Rng::with_seed(1);
    let mut answer = |a: &str, v6: bool| {
        let (out, sel) = s.pick(v6, &client(a), &topo, &mut rng);
        (out[0].to_string(), sel.ecs_scope)
    };
    // IPv6 clients by /56; an IPv4-mapped client is its IPv4 /24, scope in v6 bits.
    let (a1, s1) = answer("2001:db8:aa:bb00::1", true);
    let (a2, s2) = answer("2001:db8:aa:bbff:ffff::9", true);
    assert_eq!((s1, s2, &a1), (56, 56, &a2));
    let (m, sm) = answer("::ffff:10.9.8.7", false);
    let (v4, s4) = answer("10.9.8.200", false);
    assert_eq!((m, sm, s4), (v4, 120, 24));
    // Golden values, computed by an independent implementation of the documented
    // hash (docs/policies.md): every instance and every release must map a subnet
    // to the same target, or a fleet would disagree. Changing them breaks that.
    assert_eq!(crate::snapshot::name_hash("dc1"), 0x46c0_a8da_e801_be89);
    assert_eq!(
        subnet_key("192.0.2.77".parse().unwrap()),
        (0x8873_e6a5_ded8_3b9e, 24)
    );
    assert_eq!(
        subnet_key("2001:db8:aa:bb00::1".parse().unwrap()),
        (0x94cd_c6ce_ab74_dc41, 56)
    );
    let picks: Vec<String> = (0..16)
        .map(|i| answer(&format!("10.0.{i}.1"), false).0)
        .collect();
    let (a, b, c) = ("192.0.2.1", "192.0.2.2", "192.0.2.3");
    assert_eq!(picks, [b, b, c, c, c, b, b, c, c, b, b, b, a, c, b, b]);
}

#[test]
fn sticky_with_slow_start_moves_subnets_gradually() {
    let s = sticky(json!({"slowStartSeconds": 100}));
    let n = 10_000;
    s.healthy_since("192.0.2.2", 0);
    let early = sticky_map(&s, n, 1);
    s.healthy_since("192.0.2.2", 50_000);
    let mid = sticky_map(&s, n, 1);
    s.healthy_since("192.0.2.2", 100_000);
    let done = sticky_map(&s, n, 1);
    let share =
        |m: &[String]| 100.0 * m.iter().filter(|a| *a == "192.0.2.2").count() as f64 / n as f64;
    // weights 1, 2f, 1
    for (m, f) in [(&early, 0.1), (&mid, 0.55), (&done, 1.0)] {
        let want = 100.0 * 2.0 * f / (2.0 + 2.0 * f);
        assert!((share(m) - want).abs() < 2.0, "{} vs {want}", share(m));
    }
    // A rising weight only ever takes subnets: none leaves the ramping target.
    for (e, m) in early.iter().zip(&mid) {
        if e == "192.0.2.2" {
            assert_eq!(m, e);
        }
    }
}

#[test]
fn answers_are_counted_per_target_on_the_dns_path_only() {
    let s = Svc::new(four("RoundRobin", json!({})));
    let topo = Topology::default();
    let mut rng = fastrand::Rng::with_seed(1);
    s.down(&["192.0.2.4"]);
    for _ in 0..10 {
        s.pick(false, &client("127.0.0.1"), &topo, &mut rng);
    }
    s.pick(true, &client("127.0.0.1"), &topo, &mut rng);
    let counts: Vec<u64> = (0..6).map(|i| s.entry.answers.get(i)).collect();
    assert_eq!(counts, [10, 10, 10, 0, 0, 1]);
    // select_with (explain) counts nothing.
    let mut out = Vec::new();
    select_with(
        &s.entry,
        false,
        &client("127.0.0.1"),
        &topo,
        NOW,
        &mut rng,
        &mut NoTrace,
        &mut out,
    );
    assert_eq!(s.entry.answers.get(0), 10);
    // Carried over a recompile with the same target names; by name otherwise.
    let spec = s.entry.spec.clone();
    let again = ServiceEntry::compile(spec.clone(), None, Some(&s.entry), |_| {
        Arc::new(HealthCell::new(Health::Healthy))
    });
    assert!(Arc::ptr_eq(&again.answers, &s.entry.answers));
    let mut v = serde_json::to_value(&*spec).unwrap();
    v["targets"].as_array_mut().unwrap().remove(0);
    let fewer = ServiceEntry::compile(
        Arc::new(NameService::from_json(v).unwrap()),
        None,
        Some(&again),
        |_| Arc::new(HealthCell::new(Health::Healthy)),
    );
    assert_eq!(fewer.answers.get_by_name("b"), Some(10));
    assert_eq!(fewer.answers.get_by_name("a"), None);
    assert_eq!(fewer.answers.get(0), 10);
}
