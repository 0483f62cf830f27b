//! Integration tests: health checks (CONTRACT §4, §5 eligibility, the status block).
//!
//! Fake gateway VIPs are TCP listeners on 127.0.0.x that the test opens and closes.
//! Health checks use periodSeconds 1 to keep the tests short; deadlines are generous
//! except the failover bound, which is the contract's (period x failureThreshold + 1 s).

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

use crate::harness::{Server, ServerOpts, TempDir, addrs, wait_until};

const ZONE: &str = "$ORIGIN hc.example.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 192.0.2.53\n";

/// A server serving the zone `hc.example` (kept alive as long as the server).
struct Hc {
    srv: Server,
    _zones: TempDir,
}

impl std::ops::Deref for Hc {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.srv
    }
}

impl std::ops::DerefMut for Hc {
    fn deref_mut(&mut self) -> &mut Server {
        &mut self.srv
    }
}

fn hc_zones() -> TempDir {
    let zones = TempDir::new("hc-zones");
    std::fs::write(zones.path().join("hc.example.zone"), ZONE).unwrap();
    zones
}

/// Options serving the zone in `zones`.
fn hc_opts_in(zones: &TempDir) -> ServerOpts {
    ServerOpts {
        zones_dir: zones.path().to_path_buf(),
        ..ServerOpts::default()
    }
}

fn server() -> Hc {
    let zones = hc_zones();
    let srv = Server::start_with(hc_opts_in(&zones));
    Hc { srv, _zones: zones }
}

/// A fake gateway VIP: accepts (and counts) connections until closed.
struct Vip {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Vip {
    fn open(ip: &str) -> Vip {
        Self::open_at(format!("{ip}:0").parse().unwrap())
    }

    fn open_at(addr: SocketAddr) -> Vip {
        let l = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (accepted.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok(_) => {
                        a.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Vip {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    fn ip(&self) -> String {
        self.addr.ip().to_string()
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn count(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Stops accepting: the port refuses connections from now on.
    fn close(mut self) -> SocketAddr {
        self.shut();
        self.addr
    }

    fn shut(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Vip {
    fn drop(&mut self) {
        self.shut();
    }
}

/// A port on `ip` with nothing listening (refuses at once).
fn closed_port(ip: &str) -> u16 {
    let l = TcpListener::bind(format!("{ip}:0")).unwrap();
    l.local_addr().unwrap().port()
}

fn hc(period: u32, failure: u32, success: u32) -> Value {
    json!({"port": 9, "periodSeconds": period, "timeoutSeconds": 1,
           "failureThreshold": failure, "successThreshold": success})
}

fn target(name: &str, address: &str, port: u16) -> Value {
    json!({"name": name, "address": address, "port": port})
}

fn a_answers(s: &Server, name: &str) -> Vec<String> {
    let mut v: Vec<String> = addrs(&s.udp(name, RecordType::A))
        .iter()
        .map(IpAddr::to_string)
        .collect();
    v.sort();
    v
}

fn status(s: &Server, name: &str) -> Value {
    let r = s.get(&format!("/api/v1/nameservices/{name}"));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["status"].clone()
}

fn target_status(s: &Server, name: &str, target: &str) -> Value {
    status(s, name)["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == target)
        .unwrap_or_else(|| panic!("no target {target}"))
        .clone()
}

fn health_of(s: &Server, name: &str, target: &str) -> String {
    target_status(s, name, target)["health"]
        .as_str()
        .unwrap()
        .to_string()
}

fn ready(s: &Server, name: &str) -> Value {
    status(s, name)["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone()
}

fn metrics(s: &Server) -> String {
    let r = s.get("/metrics");
    assert_eq!(r.status, 200);
    r.body
}

/// The value of the first sample line starting with `prefix` (name and labels).
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn wait_health(s: &Server, name: &str, target: &str, want: &str, within: Duration) {
    assert!(
        wait_until(within, || health_of(s, name, target) == want),
        "{name}/{target} not {want} within {within:?}: {}",
        status(s, name)
    );
}

#[test]
fn failover_within_period_times_failure_threshold_and_recovery() {
    let s = server();
    let a = Vip::open("127.0.0.21");
    let b = Vip::open("127.0.0.22");
    s.put_ns(&json!({
        "name": "fo.hc.example", "policy": "RoundRobin", "ttl": 5,
        "healthCheck": hc(1, 2, 1),
        "targets": [target("dc1", &a.ip(), a.port()), target("dc2", &b.ip(), b.port())]
    }));
    assert!(wait_until(Duration::from_secs(5), || a_answers(
        &s,
        "fo.hc.example"
    ) == [
        "127.0.0.21",
        "127.0.0.22"
    ]));
    wait_health(
        &s,
        "fo.hc.example",
        "dc1",
        "Healthy",
        Duration::from_secs(3),
    );
    wait_health(
        &s,
        "fo.hc.example",
        "dc2",
        "Healthy",
        Duration::from_secs(3),
    );
    let before = ready(&s, "fo.hc.example");
    assert_eq!(before["reason"], "AllTargetsHealthy");

    // dc1's VIP stops accepting: it leaves the answers within 1 s x 2 + 1 s.
    let a_addr = a.close();
    let down = Instant::now();
    while a_answers(&s, "fo.hc.example") != ["127.0.0.22"] {
        assert!(
            down.elapsed() < Duration::from_secs(3),
            "dc1 still answered after {:?}: {}",
            down.elapsed(),
            status(&s, "fo.hc.example")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = target_status(&s, "fo.hc.example", "dc1");
    assert_eq!(t["health"], "Unhealthy");
    assert_eq!(t["lastError"], "connection refused");
    assert!(t["consecutiveFailures"].as_u64().unwrap() >= 2, "{t}");
    assert_eq!(t["consecutiveSuccesses"], 0);
    let after = ready(&s, "fo.hc.example");
    assert_eq!(
        (after["status"].as_str(), after["reason"].as_str()),
        (Some("True"), Some("SomeTargetsUnhealthy"))
    );
    assert!(after["lastTransitionTime"].as_str() >= before["lastTransitionTime"].as_str());

    // It accepts again: back within a period or two.
    let a = Vip::open_at(a_addr);
    assert!(wait_until(Duration::from_secs(4), || a_answers(
        &s,
        "fo.hc.example"
    ) == [
        "127.0.0.21",
        "127.0.0.22"
    ]));
    assert!(a.count() >= 1);
    let t = target_status(&s, "fo.hc.example", "dc1");
    assert_eq!(t["health"], "Healthy");
    assert_eq!(t["lastError"], Value::Null);
    assert_eq!(ready(&s, "fo.hc.example")["reason"], "AllTargetsHealthy");
    // One log line per change, naming the target and the transition.
    let log = s.log_text();
    assert!(
        log.lines().any(|l| l.contains("fo.hc.example/dc1")
            && l.contains("Healthy -> Unhealthy")
            && l.contains("127.0.0.21")
            && l.contains("connection refused")),
        "{log}"
    );
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("fo.hc.example/dc1") && l.contains("Healthy -> Unhealthy"))
            .count(),
        1,
        "{log}"
    );
}

/// A gateway VIP that can be black-holed: a listener with a backlog of 0 whose
/// accept thread accepts while it is up. Black-holing stops the thread and fills the
/// accept queue with connections nobody accepts, so the kernel drops every further
/// SYN: connects neither succeed nor fail, they time out (CONTRACT §8).
struct BlackHoleVip {
    addr: SocketAddr,
    _sock: Arc<socket2::Socket>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    _fill: Vec<std::net::TcpStream>,
}

impl BlackHoleVip {
    fn open(ip: &str) -> Self {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.bind(&format!("{ip}:0").parse::<SocketAddr>().unwrap().into())
            .unwrap();
        sock.listen(0).unwrap();
        sock.set_nonblocking(true).unwrap();
        let addr = sock.local_addr().unwrap().as_socket().unwrap();
        let sock = Arc::new(sock);
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (sock.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                if l.accept().is_err() {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        });
        Self {
            addr,
            _sock: sock,
            stop,
            thread: Some(thread),
            _fill: Vec::new(),
        }
    }

    /// From the returned instant on, SYNs to the VIP go unanswered (the accept
    /// queue is full: a probe may have filled it just before, with a success).
    fn black_hole(&mut self) -> Instant {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        for _ in 0..16 {
            let attempt = Instant::now();
            match std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)) {
                Ok(c) => self._fill.push(c),
                Err(e) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
                    return attempt;
                }
            }
        }
        panic!("the accept queue of {} never filled", self.addr);
    }
}

#[test]
fn black_holed_vip_fails_over_within_period_times_failure_threshold_plus_one() {
    let s = server();
    let mut a = BlackHoleVip::open("127.0.0.23");
    let b = Vip::open("127.0.0.24");
    // Timeout = period: every probe of the black-holed VIP runs into its timeout
    // right at the next slot, the worst case for the schedule.
    s.put_ns(&json!({
        "name": "bh.hc.example", "policy": "RoundRobin", "ttl": 5,
        "healthCheck": hc(1, 3, 1),
        "targets": [target("dc1", "127.0.0.23", a.addr.port()), target("dc2", &b.ip(), b.port())]
    }));
    wait_health(
        &s,
        "bh.hc.example",
        "dc1",
        "Healthy",
        Duration::from_secs(3),
    );
    wait_health(
        &s,
        "bh.hc.example",
        "dc2",
        "Healthy",
        Duration::from_secs(3),
    );

    // The bound is tight when the timeout equals the period: a probe that succeeded
    // just before the black hole is followed by three that time out, the last one
    // ending 1 s x 3 + 1 s after it. Allow the timer's and the poll's granularity.
    let down = a.black_hole();
    while a_answers(&s, "bh.hc.example") != ["127.0.0.24"] {
        assert!(
            down.elapsed() < Duration::from_millis(4150),
            "dc1 still answered after {:?} (bound: 1 s x 3 + 1 s): {}",
            down.elapsed(),
            status(&s, "bh.hc.example")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = target_status(&s, "bh.hc.example", "dc1");
    assert_eq!(t["health"], "Unhealthy");
    assert_eq!(t["lastError"], "no connection within the 1s timeout");
    assert!(t["consecutiveFailures"].as_u64().unwrap() >= 3, "{t}");
    let m = metrics(&s);
    assert!(metric(&m, "gslb_health_probes_total{result=\"timeout\"}").unwrap() >= 3.0);
}

#[test]
fn a_new_target_is_pending_until_proven() {
    let s = server();
    let old = Vip::open("127.0.0.31");
    let new = Vip::open("127.0.0.32");
    let mut ns = json!({
        "name": "pend.hc.example", "policy": "RoundRobin",
        "healthCheck": hc(1, 3, 3),
        "targets": [target("old", &old.ip(), old.port())]
    });
    let v = s.put_ns(&ns);
    assert_eq!(v["status"]["targets"][0]["health"], "Pending");
    assert_eq!(v["status"]["conditions"][0]["reason"], "Pending");
    assert_eq!(v["status"]["conditions"][0]["status"], "False");
    wait_health(
        &s,
        "pend.hc.example",
        "old",
        "Healthy",
        Duration::from_secs(6),
    );

    // A new data center joins: it gets no traffic until 3 probes in a row succeeded,
    // a period apart (the first goes out within a second, the second a full period
    // after it), so not before 2 periods after the PUT.
    ns["targets"]
        .as_array_mut()
        .unwrap()
        .push(target("new", &new.ip(), new.port()));
    let put_at = Instant::now();
    let v = s.put_ns(&ns);
    let health: Vec<&str> = v["status"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["health"].as_str().unwrap())
        .collect();
    assert_eq!(health, ["Healthy", "Pending"]);
    assert_eq!(
        v["status"]["conditions"][0]["reason"],
        "SomeTargetsUnhealthy"
    );
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        // Read the probe count before the answer: a probe recorded after the count
        // was read can only make the answer "earlier" than the count says.
        let probes = new.count();
        let answers = a_answers(&s, "pend.hc.example");
        if answers == ["127.0.0.31", "127.0.0.32"] {
            // Answered: three probes must have reached the VIP (give its accept
            // thread a moment to count the last one).
            // Only the count can lag (the kernel completes a probe's handshake
            // before the VIP's thread accepts it), so waiting longer weakens nothing.
            assert!(
                wait_until(Duration::from_secs(3), || new.count() >= 3),
                "answered after {probes} probes"
            );
            // Probes are late under load, never early: a lower bound holds.
            let took = put_at.elapsed();
            assert!(
                took >= Duration::from_millis(1950),
                "proven after {took:?}: 3 successes cannot span less than 2 periods"
            );
            break;
        }
        assert_eq!(answers, ["127.0.0.31"], "after {probes} probes");
        assert!(Instant::now() < deadline, "never answered");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(new.count() >= 3);
    let t = target_status(&s, "pend.hc.example", "new");
    assert!(t["consecutiveSuccesses"].as_u64().unwrap() >= 3, "{t}");
    assert!(t["lastProbeTime"].as_str().unwrap().ends_with('Z'), "{t}");
    drop(old);
}

#[test]
fn fail_open_nodata_and_drained_targets() {
    let s = server();
    let dead1 = closed_port("127.0.0.41");
    let dead2 = closed_port("127.0.0.42");
    let live = Vip::open("127.0.0.43");
    // Every enabled target down, AnswerAll: every enabled target is answered, the
    // drained one (although its VIP is healthy) never.
    s.put_ns(&json!({
        "name": "open.hc.example", "policy": "RoundRobin",
        "healthCheck": hc(1, 1, 1),
        "targets": [target("a", "127.0.0.41", dead1), target("b", "127.0.0.42", dead2),
                    {"name": "drained", "address": "127.0.0.43", "port": live.port(), "enabled": false}]
    }));
    s.put_ns(&json!({
        "name": "nodata.hc.example", "policy": "RoundRobin", "allDown": "NoData",
        "healthCheck": hc(1, 1, 1),
        "targets": [target("a", "127.0.0.41", dead1)]
    }));
    wait_health(
        &s,
        "open.hc.example",
        "a",
        "Unhealthy",
        Duration::from_secs(4),
    );
    wait_health(
        &s,
        "open.hc.example",
        "b",
        "Unhealthy",
        Duration::from_secs(4),
    );
    wait_health(
        &s,
        "open.hc.example",
        "drained",
        "Healthy",
        Duration::from_secs(4),
    );
    wait_health(
        &s,
        "nodata.hc.example",
        "a",
        "Unhealthy",
        Duration::from_secs(4),
    );
    let failed_open_before =
        metric(&metrics(&s), "gslb_dns_failed_open_answers_total ").expect("fail-open counter");
    for _ in 0..4 {
        assert_eq!(
            a_answers(&s, "open.hc.example"),
            ["127.0.0.41", "127.0.0.42"]
        );
    }
    let failed_open = metric(&metrics(&s), "gslb_dns_failed_open_answers_total ").unwrap();
    assert!(failed_open >= failed_open_before + 4.0, "{failed_open}");
    let r = ready(&s, "open.hc.example");
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("False"), Some("NoHealthyTargets"))
    );

    let m = s.udp("nodata.hc.example", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty(), "{m:?}");
    assert_eq!(ready(&s, "nodata.hc.example")["reason"], "NoHealthyTargets");

    // One enabled target comes back: only it is answered (no more failing open), and
    // the drained one still not.
    let _back = Vip::open_at(format!("127.0.0.42:{dead2}").parse().unwrap());
    assert!(wait_until(Duration::from_secs(4), || a_answers(
        &s,
        "open.hc.example"
    ) == ["127.0.0.42"]));
    assert_eq!(
        ready(&s, "open.hc.example")["reason"],
        "SomeTargetsUnhealthy"
    );
}

#[test]
fn one_probe_per_shared_endpoint_and_none_after_delete() {
    let s = server();
    let vip = Vip::open("127.0.0.51");
    // Three NameServices (one with other thresholds, one with two targets on the
    // same VIP) share one probe endpoint.
    for (name, f) in [("s1", 3), ("s2", 3), ("s3", 2)] {
        let mut targets = vec![target("dc1", &vip.ip(), vip.port())];
        if name == "s2" {
            targets.push(json!({"name": "dc1b", "address": "192.0.2.7",
                                "probeAddress": vip.ip(), "port": vip.port()}));
        }
        s.put_ns(&json!({
            "name": format!("{name}.hc.example"), "policy": "RoundRobin",
            "healthCheck": hc(1, f, 1), "targets": targets
        }));
    }
    wait_health(
        &s,
        "s3.hc.example",
        "dc1",
        "Healthy",
        Duration::from_secs(3),
    );
    let c0 = vip.count();
    std::thread::sleep(Duration::from_millis(4000));
    let n = vip.count() - c0;
    // One per second: 4 (3 to 5 with the accept thread's lag); per target it would be 16.
    assert!((3..=5).contains(&n), "{n} probes in 4 s");
    assert_eq!(
        metric(&metrics(&s), "gslb_health_probe_streams "),
        Some(1.0)
    );

    // Deleting all three stops the probes at once.
    for name in ["s1", "s2", "s3"] {
        assert_eq!(
            s.delete(&format!("/api/v1/nameservices/{name}.hc.example"))
                .status,
            204
        );
    }
    std::thread::sleep(Duration::from_millis(100));
    let c1 = vip.count();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(vip.count(), c1, "probes continued after the delete");
    assert_eq!(
        metric(&metrics(&s), "gslb_health_probe_streams "),
        Some(0.0)
    );
}

#[test]
fn probe_address_is_probed_instead_of_address() {
    let s = server();
    let health_vip = Vip::open("127.0.0.61");
    s.put_ns(&json!({
        "name": "nat.hc.example", "policy": "RoundRobin",
        "healthCheck": {"port": health_vip.port(), "periodSeconds": 1, "timeoutSeconds": 1,
                        "failureThreshold": 1, "successThreshold": 1},
        "targets": [{"name": "dc1", "address": "192.0.2.10", "probeAddress": "127.0.0.61"},
                    target("dc2", "127.0.0.62", closed_port("127.0.0.62"))]
    }));
    wait_health(
        &s,
        "nat.hc.example",
        "dc1",
        "Healthy",
        Duration::from_secs(3),
    );
    assert!(health_vip.count() >= 1);
    assert_eq!(a_answers(&s, "nat.hc.example"), ["192.0.2.10"]);
    health_vip.close();
    wait_health(
        &s,
        "nat.hc.example",
        "dc1",
        "Unhealthy",
        Duration::from_secs(3),
    );
}

#[test]
fn health_survives_kill9_and_sigterm_and_put_keeps_history() {
    let mut s = server();
    let up = Vip::open("127.0.0.71");
    let down = closed_port("127.0.0.72");
    // A long period: after a restart nothing is probed for a while, so what the
    // status shows is what was restored.
    let mut ns = json!({
        "name": "keep.hc.example", "policy": "RoundRobin",
        "healthCheck": {"port": 9, "periodSeconds": 60, "timeoutSeconds": 1,
                        "failureThreshold": 1, "successThreshold": 1},
        "targets": [target("up", "127.0.0.71", up.port()), target("down", "127.0.0.72", down)]
    });
    s.put_ns(&ns);
    wait_health(
        &s,
        "keep.hc.example",
        "up",
        "Healthy",
        Duration::from_secs(3),
    );
    wait_health(
        &s,
        "keep.hc.example",
        "down",
        "Unhealthy",
        Duration::from_secs(3),
    );
    let probe_time = target_status(&s, "keep.hc.example", "up")["lastProbeTime"].clone();
    let transition = ready(&s, "keep.hc.example")["lastTransitionTime"].clone();
    // Health is written within about a second of a change.
    std::thread::sleep(Duration::from_millis(2000));

    for how in ["kill -9", "SIGTERM"] {
        let stopped_at = gslb::timefmt::rfc3339(gslb::timefmt::now_unix());
        if how == "kill -9" {
            s.kill9_and_restart();
        } else {
            assert_eq!(s.terminate(), Some(0));
            s.restart_same_data();
        }
        let up_st = target_status(&s, "keep.hc.example", "up");
        assert_eq!(up_st["health"], "Healthy", "{how}: {up_st}");
        // The probe history came back too (a new probe may have happened since).
        assert!(
            up_st["lastProbeTime"].as_str() >= probe_time.as_str(),
            "{how}: {up_st}"
        );
        assert!(
            up_st["consecutiveSuccesses"].as_u64().unwrap() >= 1,
            "{how}: {up_st}"
        );
        let down_st = target_status(&s, "keep.hc.example", "down");
        assert_eq!(down_st["health"], "Unhealthy", "{how}: {down_st}");
        assert_eq!(down_st["lastError"], "connection refused", "{how}");
        assert!(
            down_st["consecutiveFailures"].as_u64().unwrap() >= 1,
            "{how}: {down_st}"
        );
        // Neither revived nor failed open: only the healthy target is answered.
        assert_eq!(a_answers(&s, "keep.hc.example"), ["127.0.0.71"], "{how}");
        // The condition is dated from the stored health changes, not the restart.
        let r = ready(&s, "keep.hc.example");
        assert_eq!(r["reason"], "SomeTargetsUnhealthy", "{how}");
        let t = r["lastTransitionTime"].as_str().unwrap();
        assert!(
            t >= transition.as_str().unwrap() && t < stopped_at.as_str(),
            "{how}: {r}"
        );
    }

    // A PUT that keeps the endpoints keeps their verdicts (no trip through Pending).
    ns["ttl"] = json!(7);
    let v = s.put_ns(&ns);
    assert_eq!(v["status"]["targets"][0]["health"], "Healthy");
    assert_eq!(v["status"]["targets"][1]["health"], "Unhealthy");
    assert_eq!(a_answers(&s, "keep.hc.example"), ["127.0.0.71"]);
    // Delete and re-create: a new resource starts from Pending.
    assert_eq!(s.delete("/api/v1/nameservices/keep.hc.example").status, 204);
    let v = s.put_ns(&ns);
    assert_eq!(v["status"]["targets"][0]["health"], "Pending");
}

#[test]
fn status_and_metrics_fields() {
    let s = server();
    let vip = Vip::open("127.0.0.81");
    let v = s.put_ns(&json!({
        "name": "st.hc.example", "policy": "RoundRobin",
        "healthCheck": hc(1, 1, 1),
        "targets": [target("dc1", "127.0.0.81", vip.port())]
    }));
    let written = Instant::now();
    let t0 = &v["status"]["targets"][0];
    assert_eq!(t0["name"], "dc1");
    assert_eq!(t0["address"], "127.0.0.81");
    assert_eq!(t0["health"], "Pending");
    assert_eq!(t0["consecutiveFailures"], 0);
    assert_eq!(t0["consecutiveSuccesses"], 0);
    assert_eq!(t0["lastProbeTime"], Value::Null);
    assert_eq!(t0["lastError"], Value::Null);
    // The first probe goes out within a second of the write.
    while vip.count() == 0 {
        assert!(
            written.elapsed() < Duration::from_millis(1200),
            "no probe within {:?} of the write",
            written.elapsed()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    wait_health(
        &s,
        "st.hc.example",
        "dc1",
        "Healthy",
        Duration::from_secs(3),
    );
    let r1 = ready(&s, "st.hc.example");
    assert_eq!(
        (r1["status"].as_str(), r1["reason"].as_str()),
        (Some("True"), Some("AllTargetsHealthy"))
    );
    assert_eq!(r1["message"], "1 of 1 targets healthy");
    // Reading again does not move the transition time.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        ready(&s, "st.hc.example")["lastTransitionTime"],
        r1["lastTransitionTime"]
    );

    vip.close();
    let closed_at = gslb::timefmt::rfc3339(gslb::timefmt::now_unix());
    wait_health(
        &s,
        "st.hc.example",
        "dc1",
        "Unhealthy",
        Duration::from_secs(3),
    );
    let r2 = ready(&s, "st.hc.example");
    assert_eq!(
        (r2["status"].as_str(), r2["reason"].as_str()),
        (Some("False"), Some("NoHealthyTargets"))
    );
    // The transition is dated when the health changed (not before the VIP closed).
    assert!(r2["lastTransitionTime"].as_str().unwrap() >= closed_at.as_str());

    let m = metrics(&s);
    for family in [
        "gslb_health_probes_total",
        "gslb_health_probe_duration_seconds",
        "gslb_health_probe_lateness_seconds",
        "gslb_health_transitions_total",
        "gslb_health_endpoint_healthy",
        "gslb_health_endpoints",
        "gslb_health_probe_streams",
        "gslb_health_probes_in_flight",
        "gslb_dns_failed_open_answers_total",
    ] {
        assert!(
            m.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{m}"
        );
    }
    assert!(metric(&m, "gslb_health_probes_total{result=\"success\"}").unwrap() >= 1.0);
    assert!(metric(&m, "gslb_health_probes_total{result=\"refused\"}").unwrap() >= 1.0);
    assert_eq!(
        metric(
            &m,
            "gslb_health_transitions_total{from=\"Pending\",to=\"Healthy\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "gslb_health_transitions_total{from=\"Healthy\",to=\"Unhealthy\"}"
        ),
        Some(1.0)
    );
    assert!(metric(&m, "gslb_health_probe_duration_seconds_count").unwrap() >= 2.0);
    assert_eq!(
        metric(
            &m,
            &format!(
                "gslb_health_endpoint_healthy{{endpoint=\"tcp-127.0.0.81-{0}-p1-t1-f1-s1\",probe=\"tcp\",address=\"127.0.0.81\",port=\"{0}\"",
                vip_port_of(&s)
            )
        ),
        Some(0.0)
    );
}

fn vip_port_of(s: &Server) -> u16 {
    let r = s.get("/api/v1/nameservices/st.hc.example");
    r.json()["targets"][0]["port"].as_u64().unwrap() as u16
}

// ---- HTTP(S) probes (CONTRACT §9) ----------------------------------------------

use crate::httpvip::{HttpVip, Reply};

fn http_hc(port: u16, extra: Value) -> Value {
    let mut hc = json!({"httpGet": {"path": "/healthz", "port": port},
                        "periodSeconds": 1, "timeoutSeconds": 1,
                        "failureThreshold": 1, "successThreshold": 1});
    for (k, v) in extra.as_object().unwrap() {
        if k == "httpGet" {
            for (hk, hv) in v.as_object().unwrap() {
                hc["httpGet"][hk] = hv.clone();
            }
        } else {
            hc[k] = v.clone();
        }
    }
    hc
}

#[test]
fn http_probes_succeed_on_200_to_399_and_fail_otherwise() {
    let s = server();
    let ok = HttpVip::http("127.0.0.91", |_| Reply::Status(200, None));
    let busy = HttpVip::http("127.0.0.92", |_| Reply::Status(503, None));
    // A redirect counts as success and is not followed (the location would 404).
    let moved = HttpVip::http("127.0.0.93", |r| {
        if r.target == "/healthz" {
            Reply::Status(302, Some("/elsewhere".into()))
        } else {
            Reply::Status(404, None)
        }
    });
    let hung = HttpVip::http("127.0.0.94", |_| Reply::Hang);
    let refused = closed_port("127.0.0.95");
    for (name, vip_ip, port) in [
        ("ok", "127.0.0.91", ok.port()),
        ("busy", "127.0.0.92", busy.port()),
        ("moved", "127.0.0.93", moved.port()),
        ("hung", "127.0.0.94", hung.port()),
        ("refused", "127.0.0.95", refused),
    ] {
        s.put_ns(&json!({
            "name": format!("{name}.hc.example"), "policy": "RoundRobin",
            "healthCheck": http_hc(port, json!({})),
            "targets": [{"name": "dc1", "address": vip_ip}]
        }));
    }
    let within = Duration::from_secs(4);
    wait_health(&s, "ok.hc.example", "dc1", "Healthy", within);
    wait_health(&s, "moved.hc.example", "dc1", "Healthy", within);
    wait_health(&s, "busy.hc.example", "dc1", "Unhealthy", within);
    wait_health(&s, "hung.hc.example", "dc1", "Unhealthy", within);
    wait_health(&s, "refused.hc.example", "dc1", "Unhealthy", within);
    assert_eq!(
        target_status(&s, "busy.hc.example", "dc1")["lastError"],
        "HTTP status 503"
    );
    assert_eq!(
        target_status(&s, "hung.hc.example", "dc1")["lastError"],
        "no HTTP response within the 1s timeout"
    );
    assert_eq!(
        target_status(&s, "refused.hc.example", "dc1")["lastError"],
        "connection refused"
    );
    assert_eq!(moved.count_of("/elsewhere"), 0, "the redirect was followed");
    assert!(moved.count_of("/healthz") >= 1);
    assert_eq!(a_answers(&s, "ok.hc.example"), ["127.0.0.91"]);
    let m = metrics(&s);
    assert!(metric(&m, "gslb_health_probes_total{result=\"http_status\"}").unwrap() >= 1.0);
    // The status flips with the answer: the 503 gateway recovers.
    busy.set(|_| Reply::Status(204, None));
    wait_health(&s, "busy.hc.example", "dc1", "Healthy", within);
}

#[test]
fn http_probes_send_host_user_agent_and_headers_on_fresh_connections() {
    let zones = hc_zones();
    let s = Hc {
        srv: Server::start_with(ServerOpts {
            extra_args: vec!["--instance".into(), "probe-dc7".into()],
            ..hc_opts_in(&zones)
        }),
        _zones: zones,
    };
    let plain = HttpVip::http("127.0.0.96", |_| Reply::Status(200, None));
    let named = HttpVip::http("127.0.0.97", |_| Reply::Status(200, None));
    s.put_ns(&json!({
        "name": "hdr.hc.example", "policy": "RoundRobin",
        "healthCheck": http_hc(plain.port(), json!({"httpGet": {"path": "/ready?deep=1",
            "httpHeaders": [{"name": "X-Probe", "value": "gslb"}, {"name": "Accept", "value": "*/*"}]}})),
        "targets": [{"name": "dc1", "address": "127.0.0.96"}]
    }));
    s.put_ns(&json!({
        "name": "host.hc.example", "policy": "RoundRobin",
        "healthCheck": http_hc(named.port(), json!({"httpGet": {"host": "App.Gslb.Example"}})),
        "targets": [{"name": "dc1", "address": "127.0.0.97"}]
    }));
    wait_health(
        &s,
        "hdr.hc.example",
        "dc1",
        "Healthy",
        Duration::from_secs(3),
    );
    wait_health(
        &s,
        "host.hc.example",
        "dc1",
        "Healthy",
        Duration::from_secs(3),
    );
    assert!(wait_until(Duration::from_secs(3), || plain.count() >= 2));
    let reqs = plain.requests();
    let r = &reqs[0];
    assert_eq!(
        (r.method.as_str(), r.target.as_str()),
        ("GET", "/ready?deep=1")
    );
    let ua = format!("gslb/{} (probe-dc7)", env!("CARGO_PKG_VERSION"));
    assert_eq!(r.header("User-Agent"), Some(ua.as_str()));
    assert_eq!(
        r.header("Host"),
        Some(format!("127.0.0.96:{}", plain.port()).as_str())
    );
    assert_eq!(r.header("X-Probe"), Some("gslb"));
    assert_eq!(r.header("Accept"), Some("*/*"));
    // Every probe on a connection of its own.
    assert!(
        reqs.windows(2).all(|w| w[0].connection != w[1].connection),
        "{reqs:?}"
    );
    // `host` names the Host header; the connection still goes to the probe address.
    let r = &named.requests()[0];
    let host = r.header("Host").unwrap().to_ascii_lowercase();
    assert_eq!(host, format!("app.gslb.example:{}", named.port()));
    assert_eq!(r.header("User-Agent"), Some(ua.as_str()));
}

#[test]
fn https_probes_accept_a_self_signed_certificate_and_send_the_server_name() {
    let s = server();
    let tls = HttpVip::https("127.0.0.98", &["gw.example"], |_| Reply::Status(200, None));
    let named = HttpVip::https("127.0.0.99", &["other.example"], |_| {
        Reply::Status(200, None)
    });
    // Plain HTTP to a TLS port fails (the handshake never becomes HTTP).
    let mismatch = HttpVip::https("127.0.0.100", &["x.example"], |_| Reply::Status(200, None));
    for (name, ip, port, extra) in [
        (
            "tls",
            "127.0.0.98",
            tls.port(),
            json!({"httpGet": {"scheme": "HTTPS"}}),
        ),
        (
            "sni",
            "127.0.0.99",
            named.port(),
            json!({"httpGet": {"scheme": "HTTPS", "host": "svc.gslb.example"}}),
        ),
        ("plain", "127.0.0.100", mismatch.port(), json!({})),
    ] {
        s.put_ns(&json!({
            "name": format!("{name}.hc.example"), "policy": "RoundRobin",
            "healthCheck": http_hc(port, extra),
            "targets": [{"name": "dc1", "address": ip}]
        }));
    }
    wait_health(
        &s,
        "tls.hc.example",
        "dc1",
        "Healthy",
        Duration::from_secs(4),
    );
    wait_health(
        &s,
        "sni.hc.example",
        "dc1",
        "Healthy",
        Duration::from_secs(4),
    );
    wait_health(
        &s,
        "plain.hc.example",
        "dc1",
        "Unhealthy",
        Duration::from_secs(4),
    );
    let r = &tls.requests()[0];
    assert_eq!(r.target, "/healthz");
    // No server name for an IP literal; the host's name when `host` is set.
    assert_eq!(r.sni, None);
    let r = &named.requests()[0];
    assert_eq!(r.sni.as_deref(), Some("svc.gslb.example"));
    assert_eq!(
        r.header("Host"),
        Some(format!("svc.gslb.example:{}", named.port()).as_str())
    );
    assert_eq!(mismatch.count(), 0);
}

#[test]
fn http_probes_are_shared_by_identical_checks_and_wait_for_the_initial_delay() {
    let s = server();
    let vip = HttpVip::http("127.0.0.101", |_| Reply::Status(200, None));
    // Three NameServices with the same probe: one request per period.
    for n in ["d1", "d2", "d3"] {
        s.put_ns(&json!({
            "name": format!("{n}.hc.example"), "policy": "RoundRobin",
            "healthCheck": http_hc(vip.port(), json!({})),
            "targets": [{"name": "dc1", "address": "127.0.0.101"}]
        }));
    }
    // Another path is another probe; an initial delay holds it back for 2 s.
    let put_at = Instant::now();
    s.put_ns(&json!({
        "name": "d4.hc.example", "policy": "RoundRobin",
        "healthCheck": http_hc(vip.port(), json!({"httpGet": {"path": "/other"}, "initialDelaySeconds": 2})),
        "targets": [{"name": "dc1", "address": "127.0.0.101"}]
    }));
    wait_health(
        &s,
        "d1.hc.example",
        "dc1",
        "Healthy",
        Duration::from_secs(3),
    );
    assert_eq!(health_of(&s, "d4.hc.example", "dc1"), "Pending");
    assert!(wait_until(Duration::from_secs(4), || vip
        .count_of("/other")
        >= 1));
    let first = vip
        .requests()
        .iter()
        .find(|r| r.target == "/other")
        .unwrap()
        .at;
    let waited = first.duration_since(put_at);
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_millis(3500),
        "first /other probe after {waited:?}"
    );
    let c0 = vip.count_of("/healthz");
    std::thread::sleep(Duration::from_millis(4000));
    let n = vip.count_of("/healthz") - c0;
    assert!((3..=5).contains(&n), "{n} /healthz probes in 4 s");
    assert_eq!(
        metric(&metrics(&s), "gslb_health_probe_streams "),
        Some(2.0)
    );
}

// ---- flap damping (CONTRACT §10) -------------------------------------------------

fn damping_of(s: &Server, name: &str, target: &str) -> Value {
    target_status(s, name, target)["damping"].clone()
}

/// What explain says of `target` for a client on loopback: its reason, its detail,
/// and the step that names it.
fn explained(s: &Server, name: &str, target: &str) -> (Value, Value, Option<String>) {
    let r = s.get(&format!(
        "/api/v1/nameservices/{name}/explain?client=127.0.0.1"
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let e = r.json();
    let t = e["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == target)
        .unwrap_or_else(|| panic!("no target {target}: {e}"))
        .clone();
    let step = e["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|l| l.starts_with(&format!("{target} not eligible")))
        .map(str::to_string);
    (t["reason"].clone(), t["detail"].clone(), step)
}

#[test]
fn flap_damping_holds_out_a_target_down_every_other_probe() {
    let s = server();
    // Down every other probe while `flapping`; 200 otherwise.
    let flapping = Arc::new(AtomicBool::new(true));
    let n = Arc::new(AtomicUsize::new(0));
    let (f, c) = (flapping.clone(), n.clone());
    let flappy = HttpVip::http("127.0.0.102", move |_| {
        let i = c.fetch_add(1, Ordering::SeqCst);
        if f.load(Ordering::SeqCst) && i % 2 == 1 {
            Reply::Status(503, None)
        } else {
            Reply::Status(200, None)
        }
    });
    let steady = HttpVip::http("127.0.0.103", |_| Reply::Status(200, None));
    // The same probe with and without damping: one probe stream, two verdicts.
    for (name, damping) in [("damped", true), ("plain", false)] {
        s.put_ns(&json!({
            "name": format!("{name}.hc.example"), "policy": "RoundRobin",
            "healthCheck": {"httpGet": {"path": "/healthz", "port": flappy.port()},
                            "periodSeconds": 1, "timeoutSeconds": 1,
                            "failureThreshold": 3, "successThreshold": 1,
                            "flapDamping": damping},
            "targets": [{"name": "flappy", "address": "127.0.0.102"},
                        {"name": "steady", "address": "127.0.0.103", "port": steady.port()}]
        }));
    }
    wait_health(
        &s,
        "damped.hc.example",
        "flappy",
        "Healthy",
        Duration::from_secs(3),
    );
    // failureThreshold 3 never fails three in a row; but 6 of the last 12 probes
    // failed once 12 are known: Unhealthy, damping says why.
    wait_health(
        &s,
        "damped.hc.example",
        "flappy",
        "Unhealthy",
        Duration::from_secs(20),
    );
    let d = damping_of(&s, "damped.hc.example", "flappy");
    assert_eq!(d["reason"], "FailureRate", "{d}");
    assert_eq!(
        d["message"], "flap damping: 6 of the last 12 probes failed",
        "{d}"
    );
    assert_eq!(a_answers(&s, "damped.hc.example"), ["127.0.0.103"]);
    // explain names damping as the detail of the Unhealthy reason.
    let (reason, detail, step) = explained(&s, "damped.hc.example", "flappy");
    assert_eq!(reason, "Unhealthy");
    assert_eq!(detail, "flap damping: 6 of the last 12 probes failed");
    assert_eq!(
        step.as_deref(),
        Some("flappy not eligible: Unhealthy (flap damping: 6 of the last 12 probes failed)")
    );
    // Without damping the same probes keep it in.
    assert_eq!(health_of(&s, "plain.hc.example", "flappy"), "Healthy");
    assert_eq!(damping_of(&s, "plain.hc.example", "flappy"), Value::Null);
    let (reason, detail, _) = explained(&s, "plain.hc.example", "flappy");
    assert_eq!((reason, detail), (json!("Healthy"), Value::Null));
    assert_eq!(
        a_answers(&s, "plain.hc.example"),
        ["127.0.0.102", "127.0.0.103"]
    );
    // Held while it goes on flapping.
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(1000));
        assert_eq!(a_answers(&s, "damped.hc.example"), ["127.0.0.103"]);
    }
    // One probe stream for both (and one for the steady VIP); one verdict damped.
    let m = metrics(&s);
    assert_eq!(metric(&m, "gslb_health_probe_streams "), Some(2.0));
    assert_eq!(metric(&m, "gslb_health_endpoints_damped "), Some(1.0));
    // The change is an event that names damping.
    let ev = s.get("/api/v1/events").json();
    assert!(
        ev["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["nameservice"] == "damped.hc.example"
                && e["message"].as_str().unwrap().contains("flap damping")),
        "{ev}"
    );
    // Stable again: back within a few probes (fewer than half of the window fail).
    flapping.store(false, Ordering::SeqCst);
    wait_health(
        &s,
        "damped.hc.example",
        "flappy",
        "Healthy",
        Duration::from_secs(5),
    );
    assert_eq!(damping_of(&s, "damped.hc.example", "flappy"), Value::Null);
    assert_eq!(
        a_answers(&s, "damped.hc.example"),
        ["127.0.0.102", "127.0.0.103"]
    );
    let (reason, detail, step) = explained(&s, "damped.hc.example", "flappy");
    assert_eq!(
        (reason, detail, step),
        (json!("Healthy"), Value::Null, None)
    );
}

#[test]
fn flap_damping_holds_a_flapping_target_until_it_passed_every_probe_for_120_s() {
    let s = server();
    // Up for its first three probes (Healthy), then down 1.5 s of every 3 until
    // `stable_from`, then up.
    let start = Arc::new(Mutex::new(None::<Instant>));
    let stable_from = Arc::new(Mutex::new(None::<Instant>));
    let seen = Arc::new(AtomicUsize::new(0));
    let (st, sf, n) = (start.clone(), stable_from.clone(), seen.clone());
    let flappy = HttpVip::http("127.0.0.104", move |r| {
        if n.fetch_add(1, Ordering::SeqCst) < 3 {
            return Reply::Status(200, None);
        }
        // Probes come once a second: keep them 250 ms away from the edges of the
        // down time (at 0.75, 1.75, 2.75 s of each 3 s: down, up, up).
        let t0 = *st
            .lock()
            .unwrap()
            .get_or_insert(r.at - Duration::from_millis(750));
        let stable = sf.lock().unwrap().is_some_and(|at: Instant| r.at >= at);
        let phase = r.at.duration_since(t0).as_millis() % 3000;
        if !stable && phase < 1500 {
            Reply::Status(503, None)
        } else {
            Reply::Status(200, None)
        }
    });
    let steady = HttpVip::http("127.0.0.105", |_| Reply::Status(200, None));
    s.put_ns(&json!({
        "name": "flap.hc.example", "policy": "RoundRobin",
        "healthCheck": {"httpGet": {"path": "/healthz", "port": flappy.port()},
                        "periodSeconds": 1, "timeoutSeconds": 1,
                        "failureThreshold": 1, "successThreshold": 1, "flapDamping": true},
        "targets": [{"name": "flappy", "address": "127.0.0.104"},
                    {"name": "steady", "address": "127.0.0.105", "port": steady.port()}]
    }));
    assert!(wait_until(Duration::from_secs(6), || start
        .lock()
        .unwrap()
        .is_some()));
    let t0 = start.lock().unwrap().unwrap();
    // Thresholds of 1 follow every probe, so without damping the answers would
    // change every 1.5 s. Damping holds it out within a few probes (its verdict
    // changes 4 times within 120 s), and while it flaps the answers stay put.
    while t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    while t0.elapsed() < Duration::from_secs(14) {
        assert_eq!(
            a_answers(&s, "flap.hc.example"),
            ["127.0.0.105"],
            "{}",
            status(&s, "flap.hc.example")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Stable from now: out until every probe has passed for 120 s, counted from the
    // first probe of the run of passes (at most 1.5 s before now).
    let stable = Instant::now();
    *stable_from.lock().unwrap() = Some(stable);
    std::thread::sleep(Duration::from_secs(10));
    let d = damping_of(&s, "flap.hc.example", "flappy");
    assert_eq!(d["reason"], "Flapping", "{d}");
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .contains("4 times within 120 s"),
        "{d}"
    );
    let (reason, detail, step) = explained(&s, "flap.hc.example", "flappy");
    assert_eq!(reason, "Unhealthy");
    assert_eq!(detail, d["message"]);
    assert!(
        step.as_deref()
            .is_some_and(|l| l.contains("4 times within 120 s")),
        "{step:?}"
    );
    let until = d["until"].as_str().unwrap().to_string();
    let in_100s = gslb::timefmt::rfc3339(gslb::timefmt::now_unix() + 100);
    let in_113s = gslb::timefmt::rfc3339(gslb::timefmt::now_unix() + 113);
    assert!(until >= in_100s && until <= in_113s, "{d}");
    while stable.elapsed() < Duration::from_secs(100) {
        assert_eq!(
            a_answers(&s, "flap.hc.example"),
            ["127.0.0.105"],
            "back after {:?} of passing probes",
            stable.elapsed()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    wait_health(
        &s,
        "flap.hc.example",
        "flappy",
        "Healthy",
        Duration::from_secs(27),
    );
    assert!(
        stable.elapsed() >= Duration::from_secs(117),
        "{:?}",
        stable.elapsed()
    );
    assert_eq!(damping_of(&s, "flap.hc.example", "flappy"), Value::Null);
    assert_eq!(
        a_answers(&s, "flap.hc.example"),
        ["127.0.0.104", "127.0.0.105"]
    );
}
