//! Integration tests: what operators steer (CONTRACT §10), through real DNS against
//! the running binary, with real health checks against listeners the test opens and
//! closes: panic threshold, slow start, degraded TTL, sticky Ratio, answer counts.
//! Fake VIPs live on 127.0.100.0/24, apart from the other modules' addresses: a VIP
//! closed by one test must not have its port reopened by another.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use serde_json::{Value, json};

use crate::harness::{Server, addrs, wait_until};
use crate::policy::{Vip, ecs_of, start};

/// A UDP client that sends one query at a time and matches answers by id.
struct Dig {
    sock: UdpSocket,
    server: SocketAddr,
    id: u16,
}

impl Dig {
    fn new(s: &Server) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        Self {
            sock,
            server: s.dns,
            id: 0,
        }
    }

    /// Asks `name` `rtype`, with an ECS option `addr/source` if given.
    fn ask(&mut self, name: &str, rtype: RecordType, ecs: Option<(IpAddr, u8)>) -> Message {
        let mut q = crate::harness::query(name, rtype, Some(1232));
        if let Some((a, source)) = ecs {
            q.edns
                .as_mut()
                .unwrap()
                .options_mut()
                .insert(EdnsOption::Subnet(ClientSubnet::new(a, source, 0)));
        }
        self.id = self.id.wrapping_add(1);
        q.metadata.id = self.id;
        self.sock
            .send_to(&q.to_vec().unwrap(), self.server)
            .unwrap();
        let mut buf = [0u8; 4096];
        loop {
            let (n, _) = self.sock.recv_from(&mut buf).expect("an answer within 2 s");
            let m = Message::from_vec(&buf[..n]).unwrap();
            if m.metadata.id == self.id {
                assert_eq!(m.metadata.response_code, ResponseCode::NoError);
                return m;
            }
        }
    }

    fn a(&mut self, name: &str) -> Message {
        self.ask(name, RecordType::A, None)
    }
}

fn set(m: &Message) -> BTreeSet<String> {
    addrs(m).iter().map(IpAddr::to_string).collect()
}

fn ttl(m: &Message) -> Option<u32> {
    m.answers.first().map(|r| r.ttl)
}

fn health_check() -> Value {
    json!({"port": 9, "periodSeconds": 1, "timeoutSeconds": 1,
           "failureThreshold": 1, "successThreshold": 1})
}

/// The `health` of target `target` in the status of `name`.
fn health_of(s: &Server, name: &str, target: &str) -> String {
    let v = s.get(&format!("/api/v1/nameservices/{name}")).json();
    v["status"]["targets"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == target))
        .map(|t| t["health"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

fn wait_health(s: &Server, name: &str, target: &str, want: &str) {
    assert!(
        wait_until(Duration::from_secs(15), || health_of(s, name, target)
            == want),
        "{name}/{target} never {want}: {}",
        health_of(s, name, target)
    );
}

const DEADLINE: Duration = Duration::from_secs(15);

#[test]
fn panic_mode_answers_every_enabled_target_below_the_threshold() {
    let (s, _z) = start("");
    let mut vips: Vec<Vip> = (1..=4)
        .map(|i| Vip::open(&format!("127.0.100.{}", 20 + i)))
        .collect();
    let name = "panic.gslb.example";
    let targets: Vec<Value> = vips
        .iter()
        .enumerate()
        .map(|(i, v)| {
            json!({"name": format!("t{i}"), "address": v.addr.ip().to_string(), "port": v.addr.port()})
        })
        .chain([json!({"name": "off", "address": "127.0.100.29", "enabled": false})])
        .collect();
    s.put_ns(&json!({"name": name, "ttl": 30, "policy": "RoundRobin",
        "panicThresholdPercent": 50, "healthCheck": health_check(), "targets": targets}));
    for i in 0..4 {
        wait_health(&s, name, &format!("t{i}"), "Healthy");
    }
    let mut dig = Dig::new(&s);
    let all: BTreeSet<String> = (21..=24).map(|i| format!("127.0.100.{i}")).collect();
    assert_eq!(set(&dig.a(name)), all);

    // 2 of 4 eligible: not below 50%, only the eligible ones.
    vips[0].close();
    vips[1].close();
    wait_health(&s, name, "t0", "Unhealthy");
    wait_health(&s, name, "t1", "Unhealthy");
    let two: BTreeSet<String> = ["127.0.100.23", "127.0.100.24"].map(String::from).into();
    assert_eq!(set(&dig.a(name)), two);

    // 1 of 4: panic, every enabled target (never the disabled one).
    vips[2].close();
    wait_health(&s, name, "t2", "Unhealthy");
    for _ in 0..5 {
        assert_eq!(set(&dig.a(name)), all);
    }
    let e = s
        .get(&format!(
            "/api/v1/nameservices/{name}/explain?client=127.0.0.1"
        ))
        .json();
    assert_eq!(e["mode"], "Panic", "{e}");

    // Back above the threshold: the eligible ones only.
    vips[0].reopen();
    vips[1].reopen();
    assert!(
        wait_until(DEADLINE, || set(&dig.a(name)).len() == 3),
        "{:?}",
        set(&dig.a(name))
    );
    assert_eq!(
        set(&dig.a(name)),
        ["127.0.100.21", "127.0.100.22", "127.0.100.24"]
            .map(String::from)
            .into()
    );
}

#[test]
fn degraded_ttl_while_a_target_is_down_and_the_normal_ttl_after() {
    let (s, _z) = start("");
    let a = Vip::open("127.0.100.31");
    let mut b = Vip::open("127.0.100.32");
    let name = "ttl.gslb.example";
    s.put_ns(&json!({"name": name, "ttl": 30, "degradedTtl": 3, "policy": "Ratio",
        "healthCheck": health_check(), "targets": [
            {"name": "a", "address": "127.0.100.31", "port": a.addr.port()},
            {"name": "b", "address": "127.0.100.32", "port": b.addr.port()},
            {"name": "v6", "address": "::1", "port": a.addr.port(), "probeAddress": "127.0.100.31"}]}));
    wait_health(&s, name, "a", "Healthy");
    wait_health(&s, name, "b", "Healthy");
    let mut dig = Dig::new(&s);
    for _ in 0..10 {
        assert_eq!(ttl(&dig.a(name)), Some(30));
    }
    b.close();
    wait_health(&s, name, "b", "Unhealthy");
    for _ in 0..10 {
        let m = dig.a(name);
        assert_eq!(
            (set(&m), ttl(&m)),
            (["127.0.100.31".to_string()].into(), Some(3))
        );
    }
    // The other family's answers are not degraded by this one.
    let m = dig.ask(name, RecordType::AAAA, None);
    assert_eq!(ttl(&m), Some(30));
    b.reopen();
    wait_health(&s, name, "b", "Healthy");
    for _ in 0..10 {
        assert_eq!(ttl(&dig.a(name)), Some(30));
    }
    drop(a);
}

/// The share of answers holding `addr` over `n` queries, and the mid instant.
fn presence(dig: &mut Dig, name: &str, addr: &str, n: usize) -> (f64, Instant) {
    let t0 = Instant::now();
    let hits = (0..n).filter(|_| set(&dig.a(name)).contains(addr)).count();
    let mid = t0 + (Instant::now() - t0) / 2;
    (hits as f64 / n as f64, mid)
}

/// Polls `target`'s health until it is `want`: the moment it changed lies between
/// the returned instants (the last poll that did not see it, the first that did).
fn bracket_change(s: &Server, name: &str, target: &str, want: &str) -> (Instant, Instant) {
    let start = Instant::now();
    let mut before = start;
    loop {
        let h = health_of(s, name, target);
        let now = Instant::now();
        if h == want {
            return (before, now);
        }
        assert!(now - start < DEADLINE, "{target} never {want}: {h}");
        before = now;
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn slow_start_share_follows_the_ramp() {
    let (s, _z) = start("");
    let warm = Vip::open("127.0.100.41");
    let mut cold = Vip::open("127.0.100.42");
    cold.close();
    let slow_s: u32 = 12;
    let slow = f64::from(slow_s);
    let targets = json!([
        {"name": "warm", "address": "127.0.100.41", "port": warm.addr.port()},
        {"name": "cold", "address": "127.0.100.42", "port": cold.addr.port()}]);
    // Two services on the same endpoints: RoundRobin includes the ramping target in
    // its share of answers, Ratio weighs it by its share.
    for (name, policy) in [
        ("rr.gslb.example", "RoundRobin"),
        ("ratio.gslb.example", "Ratio"),
    ] {
        s.put_ns(
            &json!({"name": name, "ttl": 5, "policy": policy, "slowStartSeconds": slow_s,
            "healthCheck": health_check(), "targets": targets}),
        );
    }
    // A target's first Healthy verdict starts its ramp too (a new data center):
    // let warm's ramp finish first.
    let (_, warm_seen) = bracket_change(&s, "rr.gslb.example", "warm", "Healthy");
    wait_health(&s, "rr.gslb.example", "cold", "Unhealthy");
    let mut dig = Dig::new(&s);
    assert_eq!(
        presence(&mut dig, "rr.gslb.example", "127.0.100.42", 50).0,
        0.0
    );
    std::thread::sleep(
        (warm_seen + Duration::from_secs(slow_s.into())).saturating_duration_since(Instant::now()),
    );

    cold.reopen();
    let (before, seen) = bracket_change(&s, "rr.gslb.example", "cold", "Healthy");
    let turned = before + (seen - before) / 2;
    let slack = (seen - before).as_secs_f64() / 2.0 / slow * 0.9;
    let ramp = |at: Instant| 0.1 + 0.9 * ((at - turned).as_secs_f64() / slow).min(1.0);

    for after in [1.5, 5.5, 9.5] {
        let at = turned + Duration::from_secs_f64(after);
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        let (rr, at) = presence(&mut dig, "rr.gslb.example", "127.0.100.42", 1500);
        let want = ramp(at);
        assert!(
            (rr - want).abs() <= 0.05 + slack,
            "RoundRobin at {:.1} s: cold in {:.1}% of answers, ramp {:.1}%",
            (at - turned).as_secs_f64(),
            rr * 100.0,
            want * 100.0
        );
        let (ratio, at) = presence(&mut dig, "ratio.gslb.example", "127.0.100.42", 1500);
        let f = ramp(at);
        let want = f / (1.0 + f);
        assert!(
            (ratio - want).abs() <= 0.05 + slack,
            "Ratio at {:.1} s: cold {:.1}%, want {:.1}%",
            (at - turned).as_secs_f64(),
            ratio * 100.0,
            want * 100.0
        );
        // explain says the same factor.
        let e = s
            .get("/api/v1/nameservices/rr.gslb.example/explain?client=127.0.0.1")
            .json();
        let now = Instant::now();
        let factor = e["targets"][1]["slowStart"]["factor"]
            .as_f64()
            .unwrap_or(-1.0);
        assert!(
            (factor - ramp(now)).abs() < 0.03 + slack,
            "{factor} vs {}: {e}",
            ramp(now)
        );
    }
    drop(warm);
}

/// The answer for each /24 of `subnets` (ECS `10.x.y.h/32`).
fn sticky_answers(dig: &mut Dig, name: &str, subnets: u32, host: u8) -> Vec<String> {
    (0..subnets)
        .map(|i| {
            let a = IpAddr::from([10, (i >> 8) as u8, i as u8, host]);
            let m = dig.ask(name, RecordType::A, Some((a, 32)));
            assert_eq!(ecs_of(&m), Some((32, 24)), "sticky scope is the /24");
            let got = addrs(&m);
            assert_eq!(got.len(), 1);
            got[0].to_string()
        })
        .collect()
}

#[test]
fn sticky_answers_stay_per_subnet_and_only_a_removed_targets_subnets_move() {
    let (s, _z) = start("");
    let vips: Vec<Vip> = (1..=3)
        .map(|i| Vip::open(&format!("127.0.100.5{i}")))
        .collect();
    let mut vips = vips;
    let name = "sticky.gslb.example";
    let targets: Vec<Value> = vips
        .iter()
        .enumerate()
        .map(|(i, v)| {
            json!({"name": format!("t{i}"), "address": v.addr.ip().to_string(),
                   "port": v.addr.port(), "ratio": i + 1})
        })
        .collect();
    s.put_ns(
        &json!({"name": name, "ttl": 5, "policy": "Ratio", "stickiness": "ClientSubnet",
        "healthCheck": health_check(), "targets": targets}),
    );
    for i in 0..3 {
        wait_health(&s, name, &format!("t{i}"), "Healthy");
    }
    let mut dig = Dig::new(&s);
    let n = 600;
    let first = sticky_answers(&mut dig, name, n, 1);
    // Stable per subnet, whatever the host and however often asked.
    assert_eq!(sticky_answers(&mut dig, name, n, 200), first);
    assert_eq!(sticky_answers(&mut dig, name, n, 1), first);
    // Every target gets subnets, roughly by ratio (1:2:3 of 600: 100, 200, 300).
    for (i, want) in [(1, 100.0), (2, 200.0), (3, 300.0)] {
        let got = first
            .iter()
            .filter(|a| **a == format!("127.0.100.5{i}"))
            .count() as f64;
        assert!((got - want).abs() < 60.0, "t{}: {got} subnets", i - 1);
    }

    vips[1].close();
    wait_health(&s, name, "t1", "Unhealthy");
    let after = sticky_answers(&mut dig, name, n, 1);
    let mut moved = 0;
    for (b, a) in first.iter().zip(&after) {
        if b == "127.0.100.52" {
            assert_ne!(a, b);
            moved += 1;
        } else {
            assert_eq!(a, b, "a subnet of a target that stayed up moved");
        }
    }
    assert!(moved > 100, "{moved}");

    vips[1].reopen();
    wait_health(&s, name, "t1", "Healthy");
    assert_eq!(sticky_answers(&mut dig, name, n, 3), first);
}

#[test]
fn status_counts_the_answers_of_each_target() {
    let (s, _z) = start("");
    let name = "count.gslb.example";
    s.put_ns(
        &json!({"name": name, "ttl": 5, "policy": "RoundRobin", "targets": [
        {"name": "a", "address": "192.0.2.1"},
        {"name": "b", "address": "192.0.2.2"},
        {"name": "c", "address": "2001:db8::1"}]}),
    );
    let mut dig = Dig::new(&s);
    for _ in 0..25 {
        dig.a(name);
    }
    for _ in 0..4 {
        dig.ask(name, RecordType::AAAA, None);
    }
    // Over TCP too.
    crate::harness::dns_tcp(s.dns, &crate::harness::query(name, RecordType::A, None));
    let answers = |s: &Server| -> Vec<u64> {
        let v = s.get(&format!("/api/v1/nameservices/{name}")).json();
        v["status"]["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["answers"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(answers(&s), [26, 26, 4]);
    // A PUT that keeps the target names keeps the counts; a new target starts at 0.
    s.put_ns(
        &json!({"name": name, "ttl": 9, "policy": "RoundRobin", "targets": [
        {"name": "a", "address": "192.0.2.1"},
        {"name": "b", "address": "192.0.2.2"},
        {"name": "c", "address": "2001:db8::1"}]}),
    );
    dig.a(name);
    assert_eq!(answers(&s), [27, 27, 4]);
    s.put_ns(
        &json!({"name": name, "ttl": 9, "policy": "RoundRobin", "targets": [
        {"name": "b", "address": "192.0.2.2"},
        {"name": "d", "address": "192.0.2.4"}]}),
    );
    dig.a(name);
    assert_eq!(answers(&s), [28, 1]);
}

/// The `outcomes` of an explanation as (sorted addresses, probability).
fn explain_outcomes(e: &Value) -> Vec<(BTreeSet<String>, f64)> {
    e["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let a: BTreeSet<String> = o["addresses"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_string())
                .collect();
            (a, o["probability"].as_f64().unwrap())
        })
        .collect()
}

#[test]
fn explain_agrees_with_dns_over_many_clients() {
    let (s, _z) = start(
        r#"
[[topology]]
cidr = "10.1.0.0/16"
locality = "r1/z1"
[[topology]]
cidr = "10.2.0.0/16"
locality = "r2/z1"
[[topology]]
cidr = "10.2.3.0/24"
locality = "r1/z2"
[[topology]]
cidr = "10.3.0.0/16"
locality = "r3"
"#,
    );
    let name = "why.gslb.example";
    s.put_ns(
        &json!({"name": name, "ttl": 20, "degradedTtl": 4, "policy": "Locality",
        "targets": [
            {"name": "a", "address": "192.0.2.1", "locality": "r1/z1"},
            {"name": "b", "address": "192.0.2.2", "locality": "r1/z2"},
            {"name": "c", "address": "192.0.2.3", "locality": "r2/z1"},
            {"name": "d", "address": "192.0.2.4", "locality": "r3"},
            {"name": "v", "address": "2001:db8::1", "locality": "r1/z1"}],
        "failover": [{"from": "r1", "to": "r3"}],
        "distribute": [{"from": "r2", "to": {"r2": 3, "r1": 1}}]}),
    );
    // Take one target out by hand, so failover and the degraded TTL show too.
    let r = s.put_json(
        &format!("/api/v1/nameservices/{name}/targets/b/override"),
        &json!({"state": "ForceUnhealthy", "reason": "test"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let mut dig = Dig::new(&s);
    let mut rng = fastrand::Rng::with_seed(5);
    let mut random_clients = 0;
    for i in 0..60 {
        // Clients all over the topology and outside it, with and without ECS.
        let (net, src) = match i % 5 {
            0 => (IpAddr::from([10, 1, rng.u8(..), 0]), 24),
            1 => (IpAddr::from([10, 2, rng.u8(..), 0]), 24),
            2 => (IpAddr::from([10, 2, 3, 0]), 24),
            3 => (IpAddr::from([10, 3, rng.u8(..), 0]), 24),
            _ => (IpAddr::from([172, 16, rng.u8(..), 0]), 24),
        };
        let ecs = format!("{net}/{src}");
        let e = s
            .get(&format!(
                "/api/v1/nameservices/{name}/explain?client=127.0.0.1&ecs={ecs}"
            ))
            .json();
        let outcomes = explain_outcomes(&e);
        let total: f64 = outcomes.iter().map(|(_, p)| p).sum();
        assert!((total - 1.0).abs() < 1e-3, "{e}");
        // DNS gives only what explain lists, with its TTL and ECS scope ...
        let mut seen: std::collections::HashMap<BTreeSet<String>, usize> = Default::default();
        let n = if outcomes.len() > 1 { 400 } else { 5 };
        for _ in 0..n {
            let m = dig.ask(name, RecordType::A, Some((net, src)));
            let got = set(&m);
            assert!(
                outcomes.iter().any(|(a, p)| *a == got && *p > 0.0),
                "{ecs}: DNS answered {got:?}, explain lists {outcomes:?}"
            );
            assert_eq!(
                ttl(&m),
                e["answer"]["ttl"].as_u64().map(|t| t as u32),
                "{ecs}"
            );
            assert_eq!(
                ecs_of(&m).map(|(_, scope)| u64::from(scope)),
                e["answer"]["ecsScope"].as_u64(),
                "{ecs}"
            );
            *seen.entry(got).or_default() += 1;
        }
        // ... each about as often as explain says.
        if outcomes.len() > 1 {
            random_clients += 1;
            for (a, p) in &outcomes {
                let share = *seen.get(a).unwrap_or(&0) as f64 / n as f64;
                assert!((share - p).abs() < 0.1, "{ecs}: {a:?} {share} vs {p}");
            }
        }
    }
    assert!(random_clients > 0, "no client drew among several answers");
}
