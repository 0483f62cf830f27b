//! Integration tests: FQDN targets (CONTRACT §9). A second gslb serves the zone
//! `up.example` on loopback and is the resolver the first one asks
//! (`[resolver] servers`): its NameService `backend.up.example` (TTL 1) is what the
//! first one's fqdn target resolves to, changed through its API, and stopped to
//! make resolution fail.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

use crate::harness::{Server, ServerOpts, TempDir, addrs, wait_until};

const UP_ZONE: &str = "\
$ORIGIN up.example.
$TTL 1
@     IN SOA ns1.up.example. hostmaster.up.example. 1 3600 600 86400 1
@     IN NS  ns1.up.example.
ns1   IN A   127.0.0.1
meta  IN A   169.254.169.254
meta  IN A   127.0.0.45
";

/// The upstream gslb serving `up.example`, with `backend.up.example` answering
/// `targets` (RoundRobin, TTL 1).
pub(crate) fn upstream(targets: &[&str]) -> (Server, TempDir) {
    let zones = TempDir::new("fqdn-up");
    std::fs::write(zones.path().join("up.example.zone"), UP_ZONE).unwrap();
    let s = Server::start_with(ServerOpts {
        zones_dir: zones.path().to_path_buf(),
        ..Default::default()
    });
    set_backend(&s, targets);
    (s, zones)
}

fn set_backend(up: &Server, targets: &[&str]) {
    let t: Vec<Value> = targets
        .iter()
        .enumerate()
        .map(|(i, a)| json!({"name": format!("t{i}"), "address": a}))
        .collect();
    up.put_ns(
        &json!({"name": "backend.up.example", "ttl": 1, "policy": "RoundRobin", "targets": t}),
    );
}

/// The gslb under test (the repository's zones: gslb.example), resolving through `up`.
fn start(up: &Server, stale_seconds: u32) -> Server {
    Server::start_with(ServerOpts {
        config: Some(format!(
            "[resolver]\nservers = [\"{}\"]\nstale_seconds = {stale_seconds}\n",
            up.dns
        )),
        ..Default::default()
    })
}

fn answers(s: &Server, name: &str, rtype: RecordType) -> BTreeSet<String> {
    addrs(&s.udp(name, rtype))
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn target_status(s: &Server, name: &str, target: &str) -> Value {
    let v = s.get(&format!("/api/v1/nameservices/{name}")).json();
    v["status"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == target)
        .cloned()
        .unwrap_or_else(|| panic!("no target {target}: {v}"))
}

#[test]
fn fqdn_targets_resolve_follow_changes_and_keep_stale_addresses() {
    let (mut up, _z) = upstream(&["127.0.0.41", "127.0.0.42", "::1"]);
    let s = start(&up, 3600);
    let v = s.put_ns(&json!({
        "name": "app.gslb.example", "ttl": 5, "policy": "RoundRobin",
        "targets": [
            {"name": "be", "fqdn": "Backend.Up.Example."},
            {"name": "fixed", "address": "127.0.0.50"}
        ]
    }));
    // Stored as written, lowercase and without the dot; no probeAddress.
    assert_eq!(v["targets"][0]["fqdn"], "backend.up.example");
    assert!(v["targets"][0].get("address").is_none());
    assert!(v["targets"][0].get("probeAddress").is_none());

    // Resolved within a second or two: both families answered as the target's.
    let want4 = set(&["127.0.0.41", "127.0.0.42", "127.0.0.50"]);
    assert!(
        wait_until(Duration::from_secs(5), || answers(
            &s,
            "app.gslb.example.",
            RecordType::A
        ) == want4),
        "{:?}",
        answers(&s, "app.gslb.example.", RecordType::A)
    );
    assert_eq!(
        answers(&s, "app.gslb.example.", RecordType::AAAA),
        set(&["::1"])
    );
    let t = target_status(&s, "app.gslb.example", "be");
    assert_eq!(t["fqdn"], "backend.up.example");
    assert_eq!(t["address"], Value::Null);
    assert_eq!(t["resolveError"], Value::Null);
    assert_eq!(t["health"], "Unchecked");
    let listed: BTreeSet<String> = t["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert_eq!(a["health"], "Unchecked");
            a["address"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(listed, set(&["127.0.0.41", "127.0.0.42", "::1"]));
    let fixed = target_status(&s, "app.gslb.example", "fixed");
    assert_eq!(
        fixed["addresses"],
        json!([{"address": "127.0.0.50", "health": "Unchecked"}])
    );
    assert_eq!(fixed["resolveError"], Value::Null);

    // GET output PUTs back unchanged.
    let mut held = s.get("/api/v1/nameservices/app.gslb.example").json();
    held.as_object_mut().unwrap().remove("status");
    let again = s.put_ns(&held);
    assert_eq!(again["targets"], held["targets"]);

    // The upstream's records change: picked up after their TTL (refreshed at least
    // every 5 s).
    set_backend(&up, &["127.0.0.43"]);
    let want = set(&["127.0.0.43", "127.0.0.50"]);
    assert!(
        wait_until(Duration::from_secs(12), || answers(
            &s,
            "app.gslb.example.",
            RecordType::A
        ) == want),
        "{:?}",
        answers(&s, "app.gslb.example.", RecordType::A)
    );

    // The upstream goes away: resolution fails, the error shows, and the last
    // addresses are still answered (stale_seconds is an hour).
    assert_eq!(up.terminate(), Some(0));
    assert!(
        wait_until(Duration::from_secs(20), || {
            target_status(&s, "app.gslb.example", "be")["resolveError"].is_string()
        }),
        "{}",
        target_status(&s, "app.gslb.example", "be")
    );
    assert_eq!(answers(&s, "app.gslb.example.", RecordType::A), want);
    let t = target_status(&s, "app.gslb.example", "be");
    assert_eq!(
        t["addresses"],
        json!([{"address": "127.0.0.43", "health": "Unchecked"}])
    );
}

#[test]
fn stale_addresses_go_and_never_resolved_targets_are_not_answered() {
    let (mut up, _z) = upstream(&["127.0.0.44"]);
    let s = start(&up, 1);
    s.put_ns(&json!({
        "name": "stale.gslb.example", "ttl": 5, "policy": "RoundRobin", "allDown": "AnswerAll",
        "targets": [
            {"name": "be", "fqdn": "backend.up.example"},
            {"name": "missing", "fqdn": "missing.up.example"},
            {"name": "meta", "fqdn": "meta.up.example"}
        ]
    }));
    // The name that does not exist is never answered; the link-local address a
    // name resolves to is not used (the address rules apply to resolved addresses).
    let want = set(&["127.0.0.44", "127.0.0.45"]);
    assert!(
        wait_until(Duration::from_secs(5), || answers(
            &s,
            "stale.gslb.example.",
            RecordType::A
        ) == want),
        "{:?}",
        answers(&s, "stale.gslb.example.", RecordType::A)
    );
    let missing = target_status(&s, "stale.gslb.example", "missing");
    assert_eq!(missing["addresses"], json!([]));
    assert_eq!(missing["health"], "Unhealthy");
    assert!(
        missing["resolveError"]
            .as_str()
            .is_some_and(|e| e.contains("NXDOMAIN")),
        "{missing}"
    );
    let meta = target_status(&s, "stale.gslb.example", "meta");
    assert_eq!(
        meta["addresses"],
        json!([{"address": "127.0.0.45", "health": "Unchecked"}])
    );
    // With stale_seconds = 1, a failing resolution drops the addresses: nothing is
    // left to answer, not even when failing open.
    assert_eq!(up.terminate(), Some(0));
    assert!(
        wait_until(Duration::from_secs(20), || answers(
            &s,
            "stale.gslb.example.",
            RecordType::A
        )
        .is_empty()),
        "{:?}",
        answers(&s, "stale.gslb.example.", RecordType::A)
    );
    let be = target_status(&s, "stale.gslb.example", "be");
    assert_eq!(be["addresses"], json!([]));
    assert!(be["resolveError"].is_string(), "{be}");
}

/// A gateway: accepts (and closes) connections until dropped.
pub(crate) struct Gateway {
    pub(crate) addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Gateway {
    pub(crate) fn open(addr: SocketAddr) -> std::io::Result<Self> {
        let l = TcpListener::bind(addr)?;
        let addr = l.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in l.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                drop(conn);
            }
        });
        Ok(Self {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn resolved_addresses_are_probed_and_ratio_picks_a_target() {
    // Only 127.0.0.46 listens on the port; 127.0.0.47 refuses.
    let gw = Gateway::open("127.0.0.46:0".parse().unwrap()).unwrap();
    let port = gw.addr.port();
    let (up, _z) = upstream(&["127.0.0.46", "127.0.0.47"]);
    let s = start(&up, 3600);
    s.put_ns(&json!({
        "name": "probed.gslb.example", "ttl": 5, "policy": "RoundRobin",
        "healthCheck": {"port": port, "periodSeconds": 1, "timeoutSeconds": 1,
                        "failureThreshold": 1, "successThreshold": 1},
        "targets": [{"name": "be", "fqdn": "backend.up.example"}]
    }));
    let settled = json!([{"address": "127.0.0.46", "health": "Healthy"},
                         {"address": "127.0.0.47", "health": "Unhealthy"}]);
    assert!(
        wait_until(Duration::from_secs(8), || {
            target_status(&s, "probed.gslb.example", "be")["addresses"] == settled
        }),
        "{}",
        target_status(&s, "probed.gslb.example", "be")
    );
    assert_eq!(
        target_status(&s, "probed.gslb.example", "be")["health"],
        "Healthy"
    );
    for _ in 0..10 {
        assert_eq!(
            answers(&s, "probed.gslb.example.", RecordType::A),
            set(&["127.0.0.46"])
        );
    }

    // Ratio: a target is drawn, then its eligible addresses are the answer.
    set_backend(&up, &["127.0.0.48", "127.0.0.49"]);
    s.put_ns(&json!({
        "name": "ratio.gslb.example", "ttl": 5, "policy": "Ratio",
        "targets": [
            {"name": "be", "fqdn": "backend.up.example", "ratio": 1},
            {"name": "one", "address": "127.0.0.51", "ratio": 1}
        ]
    }));
    let both = set(&["127.0.0.48", "127.0.0.49"]);
    assert!(wait_until(Duration::from_secs(12), || {
        (0..20).any(|_| answers(&s, "ratio.gslb.example.", RecordType::A) == both)
    }));
    let (mut be, mut one) = (0, 0);
    for _ in 0..400 {
        let a = answers(&s, "ratio.gslb.example.", RecordType::A);
        if a == both {
            be += 1;
        } else {
            assert_eq!(a, set(&["127.0.0.51"]));
            one += 1;
        }
    }
    // Each target half the time (binomial, 400 draws: sd 10).
    assert!((140..=260).contains(&be) && be + one == 400, "{be} {one}");
    // Counted once per answer, per target.
    let t = target_status(&s, "ratio.gslb.example", "be");
    assert!(t["answers"].as_u64().unwrap() >= be, "{t}");
}
