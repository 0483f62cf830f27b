//! Integration tests: health decided by a quorum of instances (CONTRACT §7), with a
//! real three-member etcd on loopback and three gslb instances that see different
//! things: the target is an HTTP gateway that answers 503 to the probes of chosen
//! instances (their User-Agent names the instance).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

use crate::etcd::Etcd;
use crate::harness::{Server, ServerOpts, addrs, http_get, http_with};
use crate::httpvip::{HttpVip, Reply};

/// Probe period (s) and failure threshold of the tests' health check.
const PERIOD: u64 = 1;
const FAILURES: u64 = 2;
/// CONTRACT §7: failover within period x failureThreshold + 2 seconds.
const BOUND: Duration = Duration::from_secs(PERIOD * FAILURES + 2);

fn opts(etcd: &Etcd, instance: &str, members: &[usize]) -> ServerOpts {
    let mut o = etcd.server_opts_on(instance, members);
    let c = o.config.take().unwrap_or_default();
    o.config = Some(format!("{c}[health]\nquorum = \"majority\"\n"));
    o
}

/// A gateway answering 503 to the instances in its `down` set, 200 to the others.
struct Gateway {
    vip: HttpVip,
    down: Arc<Mutex<HashSet<String>>>,
}

impl Gateway {
    fn start(ip: &str) -> Self {
        let down: Arc<Mutex<HashSet<String>>> = Arc::default();
        let d = down.clone();
        let vip = HttpVip::http(ip, move |r| {
            let ua = r.header("user-agent").unwrap_or_default();
            let seen_down = d
                .lock()
                .unwrap()
                .iter()
                .any(|i| ua.ends_with(&format!("({i})")));
            Reply::Status(if seen_down { 503 } else { 200 }, None)
        });
        Self { vip, down }
    }

    /// The instances that see it down from now on.
    fn down_for(&self, instances: &[&str]) {
        *self.down.lock().unwrap() = instances.iter().map(|s| s.to_string()).collect();
    }

    fn service(&self, name: &str) -> Value {
        json!({"name": name, "policy": "RoundRobin", "allDown": "NoData",
               "healthCheck": {"httpGet": {"path": "/healthz", "port": self.vip.port()},
                               "periodSeconds": PERIOD, "timeoutSeconds": 1,
                               "failureThreshold": FAILURES, "successThreshold": 1},
               "targets": [{"name": "dc1", "address": self.vip.ip()}]})
    }
}

fn a(s: &Server, name: &str) -> Vec<String> {
    addrs(&s.udp(name, RecordType::A))
        .iter()
        .map(|a| a.to_string())
        .collect()
}

fn put(s: &Server, body: &Value) {
    let name = body["name"].as_str().unwrap();
    let r = http_with(
        s.api,
        "PUT",
        &format!("/api/v1/nameservices/{name}"),
        Some(body.to_string().as_bytes()),
        None,
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
}

/// `status.targets[0]` of `name` on `s`.
fn target(s: &Server, name: &str) -> Value {
    let r = http_get(s.api, &format!("/api/v1/nameservices/{name}"), None).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["status"]["targets"][0].clone()
}

/// The observations `s` shows for the target: (instance, health), sorted.
fn observations(s: &Server, name: &str) -> Vec<(String, String)> {
    let t = target(s, name);
    let mut v: Vec<(String, String)> = t["observations"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|o| {
                    (
                        o["instance"].as_str().unwrap().to_string(),
                        o["health"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn obs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(i, h)| (i.to_string(), h.to_string()))
        .collect()
}

fn wait_fast(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until every server answers `want` for `name` (empty: the target dropped);
/// returns how long it took.
fn answered(servers: &[&Server], name: &str, want: &[&str], within: Duration) -> Duration {
    let start = Instant::now();
    let ok = wait_fast(within, || servers.iter().all(|s| a(s, name) == want));
    assert!(
        ok,
        "{name}: not {want:?} everywhere within {within:?}: {:?}",
        servers.iter().map(|s| a(s, name)).collect::<Vec<_>>()
    );
    start.elapsed()
}

/// Every server keeps answering `want` for `name` throughout `during`.
fn keeps_answering(servers: &[&Server], name: &str, want: &[&str], during: Duration) {
    let end = Instant::now() + during;
    while Instant::now() < end {
        for s in servers {
            assert_eq!(a(s, name), want, "{name}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until every server shows `want` as the target's observations.
fn observed(servers: &[&Server], name: &str, want: &[(&str, &str)], within: Duration) {
    let want = obs(want);
    let ok = wait_fast(within, || {
        servers.iter().all(|s| observations(s, name) == want)
    });
    assert!(
        ok,
        "{name}: observations not {want:?} within {within:?}: {:?}",
        servers
            .iter()
            .map(|s| observations(s, name))
            .collect::<Vec<_>>()
    );
}

fn metric_line(s: &Server, prefix: &str) -> Option<String> {
    let body = http_get(s.api, "/metrics", None).unwrap().body;
    body.lines()
        .find(|l| l.starts_with(prefix))
        .map(str::to_string)
}

/// One of three sees the target down: it stays answered everywhere. Two of three:
/// every instance drops it within period x failureThreshold + 2 s.
#[test]
fn one_of_three_down_stays_answered_two_of_three_down_is_dropped_everywhere() {
    let etcd = Etcd::start(3);
    let gw = Gateway::start("127.0.110.1");
    let ip = gw.vip.ip();
    let servers: Vec<Server> = ["a", "b", "c"]
        .iter()
        .map(|i| Server::start_with(opts(&etcd, i, &[0, 1, 2])))
        .collect();
    let all: Vec<&Server> = servers.iter().collect();
    let name = "q1.gslb.example";
    put(&servers[0], &gw.service(name));
    answered(&all, name, &[&ip], Duration::from_secs(15));
    observed(
        &all,
        name,
        &[("a", "Healthy"), ("b", "Healthy"), ("c", "Healthy")],
        Duration::from_secs(10),
    );

    // One of three.
    gw.down_for(&["a"]);
    observed(
        &all,
        name,
        &[("a", "Unhealthy"), ("b", "Healthy"), ("c", "Healthy")],
        Duration::from_secs(10),
    );
    keeps_answering(&all, name, &[&ip], BOUND);
    for s in &all {
        let t = target(s, name);
        assert_eq!(t["health"], "Healthy", "{t}");
        let lpt = t["observations"][0]["lastProbeTime"].as_str().unwrap();
        assert!(lpt.ends_with('Z'), "{lpt}");
    }
    // /metrics shows who observes what, and that they disagree.
    let ep = metric_line(&servers[1], "gslb_health_observers_disagree{")
        .expect("gslb_health_observers_disagree in /metrics");
    assert!(ep.ends_with(" 1"), "{ep}");
    let unhealthy = http_get(servers[1].api, "/metrics", None)
        .unwrap()
        .body
        .lines()
        .find(|l| l.starts_with("gslb_health_observations{") && l.contains("health=\"Unhealthy\""))
        .expect("an Unhealthy count in /metrics")
        .to_string();
    assert!(unhealthy.ends_with(" 1"), "{unhealthy}");

    // Two of three: dropped everywhere within the bound.
    gw.down_for(&["a", "b"]);
    let took = answered(&all, name, &[], BOUND);
    eprintln!("two of three down: dropped everywhere after {took:?}");
    for s in &all {
        assert_eq!(target(s, name)["health"], "Unhealthy");
    }
    // And back: two of three see it up again.
    gw.down_for(&["a"]);
    answered(&all, name, &[&ip], Duration::from_secs(10));
}

/// An observer killed with -9 stops counting once its lease ran out; two live
/// observers split 1-1 keep the verdict they had, whichever it was.
#[test]
fn a_dead_observer_stops_counting_and_a_tie_keeps_the_verdict() {
    let etcd = Etcd::start(3);
    let gw = Gateway::start("127.0.110.2");
    let ip = gw.vip.ip();
    let mut servers: Vec<Server> = ["a", "b", "c"]
        .iter()
        .map(|i| Server::start_with(opts(&etcd, i, &[0, 1, 2])))
        .collect();
    let name = "q2.gslb.example";
    put(&servers[0], &gw.service(name));
    {
        let all: Vec<&Server> = servers.iter().collect();
        answered(&all, name, &[&ip], Duration::from_secs(15));
        gw.down_for(&["a"]);
        observed(
            &all,
            name,
            &[("a", "Unhealthy"), ("b", "Healthy"), ("c", "Healthy")],
            Duration::from_secs(10),
        );
    }
    servers[2].kill9();
    let live: Vec<&Server> = servers[..2].iter().collect();
    // c's observation goes with its lease (3 s).
    observed(
        &live,
        name,
        &[("a", "Unhealthy"), ("b", "Healthy")],
        Duration::from_secs(15),
    );
    // 1-1: still Healthy.
    keeps_answering(&live, name, &[&ip], BOUND);
    // 2 of 2: dropped.
    gw.down_for(&["a", "b"]);
    answered(&live, name, &[], BOUND);
    // 1-1 again, from the other side: still dropped.
    gw.down_for(&["a"]);
    observed(
        &live,
        name,
        &[("a", "Unhealthy"), ("b", "Healthy")],
        Duration::from_secs(10),
    );
    keeps_answering(&live, name, &[], BOUND);
    for s in &live {
        assert_eq!(target(s, name)["health"], "Unhealthy");
    }
    // 2 of 2 up.
    gw.down_for(&[]);
    answered(&live, name, &[&ip], Duration::from_secs(10));
}

/// An instance cut off from etcd for longer than its lease decides with its own
/// probes; the others stop counting it; back, it follows the majority again.
#[test]
fn an_instance_cut_off_from_etcd_uses_its_own_verdicts_and_rejoins() {
    let mut etcd = Etcd::start(3);
    let gw = Gateway::start("127.0.110.3");
    let ip = gw.vip.ip();
    // a and b reach members 0 and 1; c only member 2.
    let servers: Vec<Server> = [("a", &[0, 1][..]), ("b", &[0, 1]), ("c", &[2])]
        .iter()
        .map(|(i, m)| Server::start_with(opts(&etcd, i, m)))
        .collect();
    let all: Vec<&Server> = servers.iter().collect();
    let name = "q3.gslb.example";
    put(&servers[0], &gw.service(name));
    answered(&all, name, &[&ip], Duration::from_secs(15));
    // c alone sees it down: outvoted, it answers it like the others.
    gw.down_for(&["c"]);
    observed(
        &all,
        name,
        &[("a", "Healthy"), ("b", "Healthy"), ("c", "Unhealthy")],
        Duration::from_secs(10),
    );
    keeps_answering(&all, name, &[&ip], BOUND);

    // c's member stops (SIGSTOP): the cluster keeps its quorum without it.
    etcd.freeze(2);
    // After its lease (3 s) c decides alone and drops the target ...
    answered(&[&servers[2]], name, &[], Duration::from_secs(15));
    let cut = metric_line(&servers[2], "gslb_health_cut_off ").unwrap();
    assert!(cut.ends_with(" 1"), "{cut}");
    // ... while a and b stop counting c and keep answering it.
    observed(
        &[&servers[0], &servers[1]],
        name,
        &[("a", "Healthy"), ("b", "Healthy")],
        Duration::from_secs(15),
    );
    keeps_answering(
        &[&servers[0], &servers[1]],
        name,
        &[&ip],
        Duration::from_secs(1),
    );

    // Back: c follows the majority again.
    etcd.thaw(2);
    answered(&[&servers[2]], name, &[&ip], Duration::from_secs(20));
    observed(
        &all,
        name,
        &[("a", "Healthy"), ("b", "Healthy"), ("c", "Unhealthy")],
        Duration::from_secs(20),
    );
    keeps_answering(&all, name, &[&ip], Duration::from_secs(2));
    let cut = metric_line(&servers[2], "gslb_health_cut_off ").unwrap();
    assert!(cut.ends_with(" 0"), "{cut}");
}
