//! Integration tests: several instances on one etcd registry (CONTRACT §6), with a
//! real three-member etcd on loopback (tests/it/etcd.rs) and real faults.

use std::path::Path;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

use crate::etcd::{Etcd, Pki};
use crate::harness::{Resp, Server, ServerOpts, addrs, http_get, http_with, wait_until};

const NS: &str = "/api/v1/nameservices";

fn ns(name: &str, ip: &str) -> Value {
    json!({"name": name, "policy": "RoundRobin",
           "targets": [{"name": "dc1", "address": ip}]})
}

fn put(s: &Server, body: &Value, headers: &[&str]) -> Resp {
    let name = body["name"].as_str().unwrap();
    http_with(
        s.api,
        "PUT",
        &format!("{NS}/{name}"),
        Some(body.to_string().as_bytes()),
        None,
        headers,
    )
    .unwrap()
}

fn a(s: &Server, name: &str) -> Vec<String> {
    let mut v: Vec<String> = addrs(&s.udp(name, RecordType::A))
        .iter()
        .map(|a| a.to_string())
        .collect();
    v.sort();
    v
}

fn rcode(s: &Server, name: &str) -> ResponseCode {
    s.udp(name, RecordType::A).metadata.response_code
}

/// Waits until every server answers `name` with `want` (empty: NXDOMAIN); returns
/// the time it took.
/// The names `GET /api/v1/instances` on `s` lists.
fn instance_names(s: &Server) -> Vec<String> {
    s.get("/api/v1/instances").json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect()
}

/// PUTs app.gslb.example (192.0.2.10) on `a` (201) and waits until `a` and `b`
/// both answer it, within 1 s.
fn first_write_served_by_both(a: &Server, b: &Server) {
    let r = put(a, &ns("app.gslb.example", "192.0.2.10"), &[]);
    assert_eq!(r.status, 201, "{}", r.body);
    served_everywhere(
        &[a, b],
        "app.gslb.example",
        &["192.0.2.10"],
        Duration::from_secs(1),
    );
}

fn served_everywhere(servers: &[&Server], name: &str, want: &[&str], within: Duration) -> Duration {
    let start = Instant::now();
    let ok = wait_until_fast(within, || {
        servers.iter().all(|s| {
            if want.is_empty() {
                rcode(s, name) == ResponseCode::NXDomain
            } else {
                a(s, name) == want
            }
        })
    });
    assert!(ok, "{name} not {want:?} everywhere within {within:?}");
    start.elapsed()
}

/// Like `wait_until`, polling every 20 ms.
fn wait_until_fast(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
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

fn metric(s: &Server, name: &str) -> f64 {
    let body = http_get(s.api, "/metrics", None).unwrap().body;
    body.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

fn fleet(etcd: &Etcd, names: &[&str]) -> Vec<Server> {
    names
        .iter()
        .map(|n| Server::start_with(etcd.server_opts(n)))
        .collect()
}

fn expect_503(r: &Resp) {
    assert_eq!(r.status, 503, "{}", r.body);
    let retry: u32 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    let err = r.json()["error"].as_str().unwrap().to_string();
    assert!(err.contains("etcd"), "{err}");
}

#[test]
fn writes_on_one_instance_are_served_by_every_instance() {
    let etcd = Etcd::start(3);
    let servers = fleet(&etcd, &["dc1-a", "dc2-a", "dc3-a"]);
    let all: Vec<&Server> = servers.iter().collect();
    let (a1, b1) = (&servers[0], &servers[1]);

    // PUT on one: read-your-writes there, everywhere else within 1 s.
    let r = put(a1, &ns("app.gslb.example", "192.0.2.10"), &[]);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(a(a1, "app.gslb.example"), ["192.0.2.10"]);
    served_everywhere(
        &all,
        "app.gslb.example",
        &["192.0.2.10"],
        Duration::from_secs(1),
    );
    let etag = r.header("etag").unwrap().to_string();
    // Each instance says which revision it has applied and how far behind etcd it is.
    let rev: f64 = etag.trim_matches('"').parse().unwrap();
    for s in &servers {
        eventually(|| {
            metric(s, "gslb_registry_revision") >= rev
                && metric(s, "gslb_registry_etcd_revision") >= rev
                && metric(s, "gslb_registry_apply_lag_revisions") == 0.0
        });
        assert_eq!(metric(s, "gslb_registry_etcd_connected"), 1.0);
        assert_eq!(metric(s, "gslb_registry_skipped_values_total"), 0.0);
    }
    // The same resource and revision everywhere.
    for s in &servers {
        let g = s.get(&format!("{NS}/app.gslb.example"));
        assert_eq!(g.status, 200);
        assert_eq!(g.header("etag").unwrap(), etag);
    }
    // The key holds the resource exactly as PUT stores it, without status.
    let stored: Value = serde_json::from_str(
        etcd.ctl(&[
            "get",
            "--print-value-only",
            "/gslb/nameservices/app.gslb.example",
        ])
        .trim(),
    )
    .unwrap();
    let mut spec = r.json();
    spec.as_object_mut().unwrap().remove("status");
    assert_eq!(stored, spec);

    // A replacement made on another instance.
    let r = put(b1, &ns("app.gslb.example", "192.0.2.11"), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    served_everywhere(
        &all,
        "app.gslb.example",
        &["192.0.2.11"],
        Duration::from_secs(1),
    );

    // DELETE on a third.
    let r = servers[2].delete(&format!("{NS}/app.gslb.example"));
    assert_eq!(r.status, 204, "{}", r.body);
    served_everywhere(&all, "app.gslb.example", &[], Duration::from_secs(1));
    assert_eq!(
        servers[2].delete(&format!("{NS}/app.gslb.example")).status,
        404
    );

    // Validation and placement are checked before anything reaches etcd.
    let r = put(a1, &ns("app.other.example", "192.0.2.1"), &[]);
    assert_eq!(r.status, 422, "{}", r.body);
    let r = put(a1, &ns("alias.gslb.example", "192.0.2.1"), &[]);
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        etcd.ctl(&["get", "--prefix", "--keys-only", "/gslb/nameservices/"])
            .trim()
            .is_empty()
    );

    // Racing writers with the same If-Match: one 200, one 412, on two instances.
    let r = put(a1, &ns("race.gslb.example", "192.0.2.20"), &[]);
    assert_eq!(r.status, 201);
    let tag = r.header("etag").unwrap().to_string();
    served_everywhere(
        &all,
        "race.gslb.example",
        &["192.0.2.20"],
        Duration::from_secs(1),
    );
    let if_match = format!("If-Match: {tag}");
    let (ra, rb) = std::thread::scope(|sc| {
        let ta = sc.spawn(|| put(a1, &ns("race.gslb.example", "192.0.2.21"), &[&if_match]));
        let tb = sc.spawn(|| put(b1, &ns("race.gslb.example", "192.0.2.22"), &[&if_match]));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    let mut statuses = [ra.status, rb.status];
    statuses.sort();
    assert_eq!(statuses, [200, 412], "{} / {}", ra.body, rb.body);
    let winner = if ra.status == 200 {
        "192.0.2.21"
    } else {
        "192.0.2.22"
    };
    served_everywhere(&all, "race.gslb.example", &[winner], Duration::from_secs(1));
    // If-None-Match: * on an existing name.
    let r = put(
        b1,
        &ns("race.gslb.example", "192.0.2.23"),
        &["If-None-Match: *"],
    );
    assert_eq!(r.status, 412, "{}", r.body);
    // DELETE with a stale ETag.
    let r = http_with(
        b1.api,
        "DELETE",
        &format!("{NS}/race.gslb.example"),
        None,
        None,
        &[&if_match],
    )
    .unwrap();
    assert_eq!(r.status, 412, "{}", r.body);

    // Every instance is listed, from its lease.
    let items = a1.get("/api/v1/instances").json()["items"]
        .as_array()
        .unwrap()
        .clone();
    let names: Vec<&str> = items.iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["dc1-a", "dc2-a", "dc3-a"]);
    assert_eq!(items.iter().filter(|i| i["self"] == true).count(), 1);
    assert_eq!(items[0]["self"], true);

    // A value written by hand that is not a valid NameService: skipped, logged,
    // counted; it hides no other name and stops nothing.
    etcd.ctl(&["put", "/gslb/nameservices/bad.gslb.example", "{not json"]);
    etcd.ctl(&[
        "put",
        "/gslb/nameservices/race.gslb.example",
        r#"{"name": "race.gslb.example", "policy": "Nope", "targets": []}"#,
    ]);
    eventually(|| metric(a1, "gslb_registry_skipped_values_total") >= 2.0);
    // A valid name overwritten with an invalid value is not served (anywhere alike).
    served_everywhere(&all, "race.gslb.example", &[], Duration::from_secs(1));
    let r = put(a1, &ns("good.gslb.example", "192.0.2.30"), &[]);
    assert_eq!(r.status, 201);
    served_everywhere(
        &all,
        "good.gslb.example",
        &["192.0.2.30"],
        Duration::from_secs(1),
    );
    // Logged once per key and revision, however many batches come after it.
    let logged = |key: &str| {
        a1.log_text()
            .lines()
            .filter(|l| l.contains("invalid NameService value in etcd skipped") && l.contains(key))
            .count()
    };
    assert_eq!(logged("bad.gslb.example"), 1);
    assert_eq!(logged("race.gslb.example"), 1);
    // A restarted instance lists the bad keys again without stopping.
    let mut servers = servers;
    servers[2].kill9_and_restart();
    assert_eq!(a(&servers[2], "good.gslb.example"), ["192.0.2.30"]);
    assert_eq!(
        rcode(&servers[2], "race.gslb.example"),
        ResponseCode::NXDomain
    );
}

fn eventually(f: impl FnMut() -> bool) {
    assert!(wait_until(Duration::from_secs(5), f));
}

/// Queries `name` at `dns` every 50 ms on a thread of its own until stopped;
/// returns how many answers came and every one that was not `want` (a timeout, an
/// error, other addresses).
struct Watcher {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(usize, Vec<String>)>,
}

impl Watcher {
    fn start(dns: std::net::SocketAddr, name: &str, want: &str) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (name, want, flag) = (name.to_string(), want.to_string(), stop.clone());
        let thread = std::thread::spawn(move || {
            let (mut answered, mut wrong) = (0, Vec::new());
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let q = crate::harness::query(&name, RecordType::A, None);
                let got = crate::harness::dns_udp_raw(dns, &q.to_vec().unwrap())
                    .and_then(|raw| hickory_proto::op::Message::from_vec(&raw).ok());
                match got {
                    Some(m) if m.metadata.response_code == ResponseCode::NoError => {
                        let got: Vec<String> = addrs(&m).iter().map(|a| a.to_string()).collect();
                        if got == [want.clone()] {
                            answered += 1;
                        } else {
                            wrong.push(format!("{got:?}"));
                        }
                    }
                    Some(m) => wrong.push(format!("{:?}", m.metadata.response_code)),
                    None => wrong.push("no answer within 2 s".into()),
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (answered, wrong)
        });
        Self { stop, thread }
    }

    /// Stops and asserts that every query was answered with `want`.
    fn check(self, what: &str) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (answered, wrong) = self.thread.join().unwrap();
        assert!(
            wrong.is_empty(),
            "{what}: {} bad answers: {wrong:?}",
            wrong.len()
        );
        assert!(answered >= 10, "{what}: only {answered} answers");
    }
}

#[test]
fn an_etcd_outage_keeps_dns_answering_and_refuses_writes() {
    let mut etcd = Etcd::start(3);
    let mut servers = fleet(&etcd, &["a", "b"]);
    assert_eq!(
        put(&servers[0], &ns("app.gslb.example", "192.0.2.10"), &[]).status,
        201
    );
    served_everywhere(
        &[&servers[0], &servers[1]],
        "app.gslb.example",
        &["192.0.2.10"],
        Duration::from_secs(1),
    );

    let mut served = "192.0.2.10";
    for outage in ["black hole", "crash"] {
        // DNS answers throughout the outage, on an instance that stays up.
        let watcher = Watcher::start(servers[0].dns, "app.gslb.example", served);
        match outage {
            "black hole" => etcd.freeze_all(),
            _ => etcd.crash_all(),
        }
        // Each instance notices within seconds...
        for s in &servers {
            assert!(
                wait_until(Duration::from_secs(10), || metric(
                    s,
                    "gslb_registry_etcd_connected"
                ) == 0.0),
                "{outage}: still connected"
            );
        }
        // ... DNS answers from the last registry throughout ...
        for s in &servers {
            assert_eq!(a(s, "app.gslb.example"), [served], "{outage}");
        }
        // ... and writes are refused within 10 s, changing nothing.
        let t = Instant::now();
        expect_503(&put(
            &servers[0],
            &ns("new.gslb.example", "192.0.2.99"),
            &[],
        ));
        expect_503(&servers[1].delete(&format!("{NS}/app.gslb.example")));
        assert!(t.elapsed() < Duration::from_secs(10));
        assert_eq!(servers[1].get("/healthz").status, 200);

        // An instance restarted during the outage serves its local copy.
        servers[1].kill9_and_restart();
        assert_eq!(a(&servers[1], "app.gslb.example"), [served], "{outage}");
        assert_eq!(
            rcode(&servers[1], "new.gslb.example"),
            ResponseCode::NXDomain
        );

        match outage {
            "black hole" => etcd.thaw_all(),
            _ => etcd.restart_all(),
        }
        etcd.wait_healthy(Duration::from_secs(30));
        watcher.check(outage);
        // Back within 5 s: writes work and reach every instance.
        for s in &servers {
            assert!(
                wait_until(Duration::from_secs(5), || metric(
                    s,
                    "gslb_registry_etcd_connected"
                ) == 1.0),
                "{outage}: not back within 5 s"
            );
        }
        let ip = if outage == "crash" {
            "192.0.2.12"
        } else {
            "192.0.2.11"
        };
        assert!(
            wait_until(Duration::from_secs(5), || {
                put(&servers[1], &ns("app.gslb.example", ip), &[]).status == 200
            }),
            "{outage}: writes not back"
        );
        served_everywhere(
            &[&servers[0], &servers[1]],
            "app.gslb.example",
            &[ip],
            Duration::from_secs(1),
        );
        served = ip;
        // Nothing refused during the outage was written.
        assert_eq!(
            rcode(&servers[0], "new.gslb.example"),
            ResponseCode::NXDomain
        );
    }
}

#[test]
fn an_instance_catches_up_after_etcd_compacted_what_it_missed() {
    let mut etcd = Etcd::start(3);
    // b talks to member 2 only, a to the others: freezing member 2 cuts b off while
    // the cluster keeps its quorum.
    let a1 = Server::start_with(etcd.server_opts_on("a", &[0, 1]));
    let b1 = Server::start_with(etcd.server_opts_on("b", &[2]));
    let (a1, b1) = (&a1, &b1);
    for i in 0..5 {
        assert_eq!(
            put(a1, &ns(&format!("n{i}.gslb.example"), "192.0.2.1"), &[]).status,
            201
        );
    }
    served_everywhere(
        &[a1, b1],
        "n4.gslb.example",
        &["192.0.2.1"],
        Duration::from_secs(1),
    );
    let relists = metric(b1, "gslb_registry_relists_total");

    // b misses changes, etcd compacts them away, b comes back. b is frozen too
    // while its member catches up, so that it asks for history already compacted.
    etcd.freeze(2);
    assert!(wait_until(Duration::from_secs(10), || metric(
        b1,
        "gslb_registry_etcd_connected"
    ) == 0.0));
    crate::harness::unsafe_kill(b1.pid(), 19);
    for i in 0..5 {
        put(a1, &ns(&format!("n{i}.gslb.example"), "192.0.2.2"), &[]);
    }
    assert_eq!(a1.delete(&format!("{NS}/n0.gslb.example")).status, 204);
    assert_eq!(
        put(a1, &ns("late.gslb.example", "192.0.2.3"), &[]).status,
        201
    );
    let compacted = etcd.compact();
    etcd.thaw(2);
    etcd.wait_compacted_on(2, compacted);
    crate::harness::unsafe_kill(b1.pid(), 18);

    served_everywhere(
        &[b1],
        "late.gslb.example",
        &["192.0.2.3"],
        Duration::from_secs(5),
    );
    served_everywhere(&[b1], "n0.gslb.example", &[], Duration::from_secs(1));
    for i in 1..5 {
        assert_eq!(a(b1, &format!("n{i}.gslb.example")), ["192.0.2.2"]);
    }
    assert!(metric(b1, "gslb_registry_relists_total") > relists);
}

#[test]
fn one_member_of_three_down_changes_nothing() {
    let mut etcd = Etcd::start(3);
    let servers = fleet(&etcd, &["a", "b"]);
    etcd.crash(0);
    // A new leader may take an election; then writes go on as before.
    assert!(wait_until(Duration::from_secs(10), || {
        put(&servers[0], &ns("app.gslb.example", "192.0.2.10"), &[]).status == 201
    }));
    served_everywhere(
        &[&servers[0], &servers[1]],
        "app.gslb.example",
        &["192.0.2.10"],
        Duration::from_secs(1),
    );
    for i in 0..5 {
        let r = put(
            &servers[1],
            &ns("app.gslb.example", &format!("192.0.2.{}", 20 + i)),
            &[],
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    served_everywhere(
        &[&servers[0], &servers[1]],
        "app.gslb.example",
        &["192.0.2.24"],
        Duration::from_secs(1),
    );
    etcd.restart(0);
    etcd.wait_healthy(Duration::from_secs(30));
}

#[test]
fn an_instance_that_never_loaded_a_registry_answers_servfail() {
    let mut etcd = Etcd::start(3);
    let first = Server::start_with(etcd.server_opts("a"));
    assert_eq!(
        put(&first, &ns("app.gslb.example", "192.0.2.10"), &[]).status,
        201
    );
    etcd.freeze_all();

    let mut fresh = Server::start_unready(etcd.server_opts("fresh"));
    // Not ready, and it says so for as long as etcd is away.
    std::thread::sleep(Duration::from_secs(2));
    assert!(wait_until(Duration::from_secs(10), || {
        http_get(fresh.api, "/healthz", None).is_ok_and(|r| r.status == 503)
    }));
    // Static records are served; every other name of its zones is SERVFAIL.
    assert_eq!(a(&fresh, "www.gslb.example"), ["192.0.2.80"]);
    assert_eq!(rcode(&fresh, "app.gslb.example"), ResponseCode::ServFail);
    assert_eq!(
        rcode(&fresh, "nothing-here.gslb.example"),
        ResponseCode::ServFail
    );
    assert_eq!(rcode(&fresh, "example.org"), ResponseCode::Refused);

    etcd.thaw_all();
    fresh.wait_ready();
    assert_eq!(a(&fresh, "app.gslb.example"), ["192.0.2.10"]);
    assert_eq!(
        rcode(&fresh, "nothing-here.gslb.example"),
        ResponseCode::NXDomain
    );
    // From now on it has a local copy: restarted with etcd away, it serves it.
    etcd.freeze_all();
    fresh.kill9();
    fresh.restart_same_data();
    assert_eq!(a(&fresh, "app.gslb.example"), ["192.0.2.10"]);
    etcd.thaw_all();
}

#[test]
fn a_standalone_store_is_not_opened_as_an_etcd_local_copy() {
    let etcd = Etcd::start(1);
    let mut standalone = Server::start();
    standalone.put_ns(&ns("app.gslb.example", "192.0.2.10"));
    assert_eq!(standalone.terminate(), Some(0));
    // The same data dir with the etcd backend: refused, pointing to the procedure.
    let out = std::process::Command::new(crate::harness::BIN)
        .args([
            "serve",
            "--etcd-endpoint",
            &etcd.endpoints[0],
            "--zones-dir",
        ])
        .arg(&standalone.opts.zones_dir)
        .arg("--data-dir")
        .arg(&standalone.data)
        .args(["--dns-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("standalone (sled) registry of 1 NameServices")
            && err.contains("docs/fleet.md"),
        "{err}"
    );
}

/// `PATH` with the directory of the gslb under test first.
fn path_with_gslb() -> std::ffi::OsString {
    let bin = std::path::Path::new(crate::harness::BIN).parent().unwrap();
    let mut paths = vec![bin.to_path_buf()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap()
}

/// The procedure docs/fleet.md gives to move a standalone instance's NameServices
/// into etcd, run as written.
#[test]
fn the_documented_move_into_etcd_works() {
    let etcd = Etcd::start(1);
    let standalone = Server::start();
    for (n, ip) in [
        ("app", "192.0.2.10"),
        ("api", "192.0.2.11"),
        ("web", "2001:db8::1"),
    ] {
        standalone.put_ns(&ns(&format!("{n}.gslb.example"), ip));
    }
    let target = Server::start_with(etcd.server_opts("dc1-a"));
    let doc =
        std::fs::read_to_string(std::path::Path::new(crate::harness::REPO).join("docs/fleet.md"))
            .unwrap();
    let script = doc
        .split("<!-- move-into-etcd -->")
        .nth(1)
        .and_then(|s| s.split("```sh\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("docs/fleet.md has the procedure in a sh block after <!-- move-into-etcd -->");
    let out = std::process::Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(script)
        .env("OLD", format!("http://{}", standalone.api))
        .env("NEW", format!("http://{}", target.api))
        .env("PATH", path_with_gslb())
        .env_remove("GSLB_API_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    for n in ["app", "api", "web"] {
        assert!(
            printed.contains(&format!("nameservice/{n}.gslb.example created")),
            "{printed}"
        );
    }
    let old = standalone.get(NS).json()["items"].clone();
    let new = target.get(NS).json()["items"].clone();
    let strip = |v: &Value| -> Vec<Value> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|i| {
                let mut i = i.clone();
                i.as_object_mut().unwrap().remove("status");
                i
            })
            .collect()
    };
    assert_eq!(strip(&old), strip(&new));
    assert_eq!(strip(&new).len(), 3);
    assert_eq!(a(&target, "app.gslb.example"), ["192.0.2.10"]);
}

/// A full disk under an instance's local copy refuses writes made on it (507)
/// before etcd has them: nothing changes anywhere.
#[test]
fn a_full_disk_refuses_writes_before_etcd_has_them() {
    let etcd = Etcd::start(1);
    let disk = crate::registry::Tmpfs::mount("24m");
    let mut s = Server::start_on(etcd.server_opts("a"), disk.dir.path().join("data"));
    assert_eq!(
        put(&s, &ns("app.gslb.example", "192.0.2.10"), &[]).status,
        201
    );
    let filler = crate::registry::fill(disk.dir.path());
    let r = put(&s, &ns("new.gslb.example", "192.0.2.11"), &[]);
    assert_eq!(r.status, 507, "{}", r.body);
    assert_eq!(s.delete(&format!("{NS}/app.gslb.example")).status, 507);
    assert!(
        etcd.ctl(&["get", "--keys-only", "/gslb/nameservices/new.gslb.example"])
            .trim()
            .is_empty()
    );
    assert_eq!(a(&s, "app.gslb.example"), ["192.0.2.10"]);
    // A watch event that changes no NameService here (a value written by hand
    // that is skipped) only moves the revision: the instance keeps following
    // etcd instead of dropping its watch over the local copy's revision.
    etcd.ctl(&["put", "/gslb/nameservices/junk.gslb.example", "not json"]);
    assert!(wait_until(Duration::from_secs(5), || {
        metric(&s, "gslb_registry_skipped_values_total") >= 1.0
    }));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!s.log_text().contains("lost etcd"), "{}", s.log_text());
    std::fs::remove_file(filler).unwrap();
    assert_eq!(
        put(&s, &ns("new.gslb.example", "192.0.2.11"), &[]).status,
        201
    );
    assert_eq!(a(&s, "new.gslb.example"), ["192.0.2.11"]);
    s.kill9();
}

/// The fleet layer HEALTH builds the quorum on: observations published under a
/// lease, seen by every instance, withdrawn when the lease runs out; live
/// instances; the cut-off flag.
#[test]
fn observations_travel_through_etcd_and_die_with_their_lease() {
    use gslb::health::{Health, HealthHub};
    use gslb::registry::fleet::{Fleet, Observation};
    use gslb::registry::{Registry, etcd::EtcdSide};
    use std::sync::Arc;

    let mut etcd = Etcd::start(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tmp = crate::harness::TempDir::new("fleet-lib");
    let zones = Arc::new(
        gslb::zone::ZoneSet::load_dir(&std::path::Path::new(crate::harness::REPO).join("zones"))
            .unwrap(),
    );
    let mut config = gslb::config::Config::load(None, Default::default()).unwrap();
    config.registry.endpoints = etcd.endpoints.clone();
    config.registry.lease_ttl_seconds = 2;
    let open = |name: &str| {
        let store = Arc::new(gslb::store::SledStore::open(&tmp.path().join(name)).unwrap());
        let conn = rt
            .block_on(gslb::store::etcd::Etcd::connect(&config.registry))
            .unwrap();
        let side = Arc::new(EtcdSide::new(conn, name, 2, "/gslb/"));
        Registry::open_with(
            name,
            store,
            zones.clone(),
            Arc::new(Default::default()),
            Arc::new(HealthHub::new()),
            Default::default(),
            Some(side),
        )
        .unwrap()
    };
    let (a, b) = (open("a"), open("b"));
    let (stop_a, rx_a) = tokio::sync::watch::channel(false);
    let (_stop_b, rx_b) = tokio::sync::watch::channel(false);
    let tasks_a = rt.block_on(async { a.start_etcd(&rx_a) });
    let _tasks_b = rt.block_on(async { b.start_etcd(&rx_b) });
    let (fa, fb): (Arc<Fleet>, Arc<Fleet>) = (a.fleet().unwrap(), b.fleet().unwrap());
    assert_eq!(fa.instance(), "a");

    let (now, mut events) = fb.subscribe();
    assert!(now.is_empty());
    let healthy = Observation {
        health: Health::Healthy,
        last_probe_time: Some(1_800_000_000),
    };
    let next = |events: &mut tokio::sync::broadcast::Receiver<_>| {
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), events.recv())
                .await
                .expect("an event within 10 s")
                .unwrap()
        })
    };
    // Published on a, seen on b.
    fa.publish_observation("tcp|192.0.2.1|443", Some(healthy));
    let e: gslb::registry::fleet::ObservationEvent = next(&mut events);
    assert_eq!((&*e.endpoint, &*e.instance), ("tcp|192.0.2.1|443", "a"));
    assert_eq!(e.observation, Some(healthy));
    // Coalesced: only the last of a burst needs to arrive, and it does.
    for h in [Health::Unhealthy, Health::Healthy, Health::Unhealthy] {
        fa.publish_observation(
            "tcp|192.0.2.1|443",
            Some(Observation {
                health: h,
                last_probe_time: None,
            }),
        );
    }
    assert!(wait_until(Duration::from_secs(5), || {
        let (now, _) = fb.subscribe();
        now.iter()
            .any(|e| e.observation.is_some_and(|o| o.health == Health::Unhealthy))
    }));
    // Withdrawn.
    while events.try_recv().is_ok() {}
    fa.publish_observation("tcp|192.0.2.1|443", None);
    assert_eq!(next(&mut events).observation, None);
    assert!(wait_until(Duration::from_secs(5), || fb.live_instances() == ["a", "b"]));

    // a dies without a word (its tasks stop, the lease is not revoked in time):
    // its observations go with its lease.
    fa.publish_observation("tcp|192.0.2.2|443", Some(healthy));
    assert_eq!(next(&mut events).observation, Some(healthy));
    for t in &tasks_a {
        t.abort();
    }
    drop(stop_a);
    let gone = next(&mut events);
    assert_eq!((&*gone.instance, gone.observation), ("a", None));
    assert!(wait_until(Duration::from_secs(10), || fb.live_instances() == ["b"]));

    // Cut off: b's lease cannot be renewed while etcd is away.
    let cut = fb.cut_off();
    assert!(!*cut.borrow());
    etcd.freeze_all();
    assert!(wait_until(Duration::from_secs(10), || *cut.borrow()));
    etcd.thaw_all();
    assert!(wait_until(Duration::from_secs(20), || !*cut.borrow()));
    drop(rt);
}

/// etcd with authentication on and a prefix of the fleet's own, as docs/fleet.md
/// ("TLS and authentication") sets them up: the user may only touch its prefix.
#[test]
fn a_fleet_under_etcd_authentication_and_its_own_prefix() {
    let etcd = Etcd::start(3);
    let root = ["--user", "root:rootpw"];
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["role", "add", "root"],
        &["user", "grant-role", "root", "root"],
        &["user", "add", "gslb:s3cret-pw"],
        &["role", "add", "gslb"],
        &[
            "role",
            "grant-permission",
            "gslb",
            "--prefix=true",
            "readwrite",
            "/fleet-a/",
        ],
        &["user", "grant-role", "gslb", "gslb"],
        &["auth", "enable"],
    ] {
        etcd.ctl(args);
    }
    let secrets = crate::harness::TempDir::new("etcd-auth");
    let opts = |instance: &str, password: &str| {
        let file = secrets.path().join(format!("{instance}.pw"));
        std::fs::write(&file, format!("{password}\n")).unwrap();
        let mut o = etcd.server_opts(instance);
        o.config = Some(format!(
            "[registry]\nlease_ttl_seconds = 3\nprefix = \"/fleet-a/\"\nusername = \"gslb\"\npassword_file = \"{}\"\n",
            file.display()
        ));
        o
    };
    let a1 = Server::start_with(opts("a", "s3cret-pw"));
    let b1 = Server::start_with(opts("b", "s3cret-pw"));
    first_write_served_by_both(&a1, &b1);
    let keys = |prefix: &str| {
        etcd.ctl(&[root[0], root[1], "get", "--prefix", "--keys-only", prefix])
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys("/fleet-a/nameservices/"),
        ["/fleet-a/nameservices/app.gslb.example"]
    );
    assert!(keys("/gslb/").is_empty());
    // Leases work under authentication: both instances are listed.
    assert_eq!(instance_names(&b1), ["a", "b"]);
    // The password is never logged.
    assert!(!a1.log_text().contains("s3cret-pw"));

    // Restarted while etcd is away (authentication needs etcd to connect): it
    // serves its local copy, and connects once etcd is back.
    let (mut a1, mut etcd) = (a1, etcd);
    a1.kill9();
    etcd.freeze_all();
    a1.restart_same_data();
    assert_eq!(a(&a1, "app.gslb.example"), ["192.0.2.10"]);
    expect_503(&put(&a1, &ns("new.gslb.example", "192.0.2.11"), &[]));
    etcd.thaw_all();
    etcd.wait_healthy(Duration::from_secs(30));
    assert!(
        wait_until(Duration::from_secs(10), || {
            put(&a1, &ns("new.gslb.example", "192.0.2.11"), &[]).status == 201
        }),
        "writes not back after etcd returned"
    );
    served_everywhere(
        &[&a1, &b1],
        "new.gslb.example",
        &["192.0.2.11"],
        Duration::from_secs(1),
    );
}

/// Concurrent PUTs on one instance leave as one etcd transaction (etcd is frozen
/// for a moment so that they queue behind the first): each keeps its own
/// condition and outcome, a name written twice goes in order, and what was
/// committed together carries one revision.
#[test]
fn concurrent_writes_share_a_transaction_each_with_its_own_outcome() {
    let mut etcd = Etcd::start(1);
    let s = Server::start_with(etcd.server_opts("a"));
    for (n, ip) in [
        ("old", "192.0.2.1"),
        ("same", "192.0.2.2"),
        ("taken", "192.0.2.3"),
    ] {
        assert_eq!(
            put(&s, &ns(&format!("{n}.gslb.example"), ip), &[]).status,
            201
        );
    }
    let old_tag = put(&s, &ns("old.gslb.example", "192.0.2.1"), &[])
        .header("etag")
        .unwrap()
        .to_string();
    let stale = format!(
        "If-Match: \"{}\"",
        old_tag.trim_matches('"').parse::<u64>().unwrap() - 1
    );
    etcd.freeze(0);
    let s = &s;
    let results = std::thread::scope(|sc| {
        // The first waits in flight on the frozen etcd; the rest queue behind it.
        let first = sc.spawn(|| put(s, &ns("first.gslb.example", "192.0.2.9"), &[]));
        std::thread::sleep(Duration::from_millis(200));
        let mut queued = Vec::new();
        for i in 0..8 {
            queued.push(sc.spawn(move || {
                put(
                    s,
                    &ns(
                        &format!("new{i}.gslb.example"),
                        &format!("192.0.2.{}", 20 + i),
                    ),
                    &["If-None-Match: *"],
                )
            }));
        }
        let stale = &stale;
        let refused = sc.spawn(move || put(s, &ns("old.gslb.example", "192.0.2.5"), &[stale]));
        let unchanged = sc.spawn(|| put(s, &ns("same.gslb.example", "192.0.2.2"), &[]));
        let exists = sc.spawn(|| {
            put(
                s,
                &ns("taken.gslb.example", "192.0.2.6"),
                &["If-None-Match: *"],
            )
        });
        // The same name again, after the first write of it is queued.
        std::thread::sleep(Duration::from_millis(150));
        let again = sc.spawn(|| put(s, &ns("new0.gslb.example", "192.0.2.99"), &[]));
        std::thread::sleep(Duration::from_millis(250));
        etcd.thaw(0);
        let queued: Vec<Resp> = queued.into_iter().map(|t| t.join().unwrap()).collect();
        (
            first.join().unwrap(),
            queued,
            refused.join().unwrap(),
            unchanged.join().unwrap(),
            exists.join().unwrap(),
            again.join().unwrap(),
        )
    });
    let (first, queued, refused, unchanged, exists, again) = results;
    assert_eq!(first.status, 201, "{}", first.body);
    let mut tags = std::collections::BTreeSet::new();
    for r in &queued {
        assert_eq!(r.status, 201, "{}", r.body);
        tags.insert(r.header("etag").unwrap().to_string());
    }
    // Created together, at one revision, after the first.
    assert_eq!(tags.len(), 1, "{tags:?}");
    assert_ne!(first.header("etag"), queued[0].header("etag"));
    assert_eq!(refused.status, 412, "{}", refused.body);
    assert_eq!(unchanged.status, 200, "{}", unchanged.body);
    assert_eq!(exists.status, 412, "{}", exists.body);
    assert_eq!(again.status, 200, "{}", again.body);
    for i in 1..8 {
        assert_eq!(
            a(s, &format!("new{i}.gslb.example")),
            [format!("192.0.2.{}", 20 + i)]
        );
    }
    assert_eq!(a(s, "new0.gslb.example"), ["192.0.2.99"]);
    assert_eq!(a(s, "old.gslb.example"), ["192.0.2.1"]);
    assert_eq!(a(s, "taken.gslb.example"), ["192.0.2.3"]);
    assert!(
        etcd.ctl(&["get", "/gslb/nameservices/new0.gslb.example"])
            .contains("192.0.2.99")
    );
}

/// What the watch brings from other instances (which etcd already holds durably)
/// reaches the local copy's disk within moments, not per batch: an instance
/// restarted a moment later, with etcd away, serves it.
#[test]
fn watched_changes_reach_the_local_copy_on_disk_within_moments() {
    let mut etcd = Etcd::start(1);
    let mut servers = fleet(&etcd, &["a", "b"]);
    for i in 0..20 {
        let r = put(
            &servers[0],
            &ns(
                &format!("n{i}.gslb.example"),
                &format!("192.0.2.{}", 10 + i),
            ),
            &[],
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let b = &mut servers[1];
    eventually(|| a(b, "n19.gslb.example") == ["192.0.2.29"]);
    // Past gslb's flush interval (50 ms) but short of sled's own (500 ms), then a
    // crash with etcd gone too.
    std::thread::sleep(Duration::from_millis(200));
    etcd.freeze_all();
    b.kill9();
    b.restart_same_data();
    for i in 0..20 {
        assert_eq!(
            a(b, &format!("n{i}.gslb.example")),
            [format!("192.0.2.{}", 10 + i)]
        );
    }
    etcd.thaw_all();
}

/// A new instance serves its first listing before writing it to its empty local
/// copy; stopped or killed at any moment of that, it starts again (a copy never
/// holds names without the etcd cluster they came from, which would make it look
/// like a standalone store) and serves everything.
#[test]
fn an_instance_stopped_while_writing_its_first_listing_starts_again() {
    let etcd = Etcd::start(1);
    let a1 = Server::start_with(etcd.server_opts("a"));
    for i in 0..400 {
        let r = put(
            &a1,
            &ns(
                &format!("n{i}.gslb.example"),
                &format!("192.0.2.{}", i % 200),
            ),
            &[],
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    for stop in ["SIGTERM", "kill -9"] {
        let mut b = Server::start_with(etcd.server_opts("b"));
        // Ready as soon as the listing is served; stopped at once.
        match stop {
            "SIGTERM" => assert_eq!(b.terminate(), Some(0)),
            _ => b.kill9(),
        }
        b.restart_same_data();
        for i in [0, 199, 399] {
            assert_eq!(
                a(&b, &format!("n{i}.gslb.example")),
                [format!("192.0.2.{}", i % 200)],
                "{stop}"
            );
        }
        b.kill9();
    }
}

/// `ServerOpts` for an instance configured as docs/fleet.md tells an operator: the
/// whole `[registry]` in the config file, `https://` endpoints, the CA and (with
/// etcd's `--client-cert-auth`) the client certificate and key, all PEM files.
fn tls_opts(
    etcd: &Etcd,
    instance: &str,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> ServerOpts {
    let endpoints = etcd
        .endpoints
        .iter()
        .map(|e| format!("{e:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut config = format!(
        "[registry]\nbackend = \"etcd\"\nendpoints = [{endpoints}]\ninstance = \"{instance}\"\nlease_ttl_seconds = 3\nca_file = \"{}\"\n",
        ca.display()
    );
    if let Some((cert, key)) = identity {
        config += &format!(
            "cert_file = \"{}\"\nkey_file = \"{}\"\n",
            cert.display(),
            key.display()
        );
    }
    ServerOpts {
        config: Some(config),
        ..ServerOpts::default()
    }
}

#[test]
fn a_fleet_on_etcd_over_tls_with_client_certificates() {
    let mut etcd = Etcd::start_tls(3);
    let pki = etcd.pki.clone().unwrap();
    assert!(etcd.endpoints.iter().all(|e| e.starts_with("https://")));
    let id = Some((pki.client_cert.as_path(), pki.client_key.as_path()));
    let mut a1 = Server::start_with(tls_opts(&etcd, "a", &pki.ca, id));
    let b1 = Server::start_with(tls_opts(&etcd, "b", &pki.ca, id));
    first_write_served_by_both(&a1, &b1);
    let stored: Value = serde_json::from_str(&etcd.ctl(&[
        "get",
        "--print-value-only",
        "/gslb/nameservices/app.gslb.example",
    ]))
    .unwrap();
    assert_eq!(stored["targets"][0]["address"], "192.0.2.10");
    // Leases and the watch run over TLS too.
    assert_eq!(instance_names(&b1), ["a", "b"]);
    for s in [&a1, &b1] {
        assert_eq!(metric(s, "gslb_registry_etcd_connected"), 1.0);
    }

    // Restarted while etcd is black-holed, TLS cannot be checked: the instance
    // serves its local copy, as without TLS.
    a1.kill9();
    etcd.freeze_all();
    a1.restart_same_data();
    assert_eq!(a(&a1, "app.gslb.example"), ["192.0.2.10"]);
    etcd.thaw_all();
    etcd.wait_healthy(Duration::from_secs(30));

    // A misconfigured instance does not start: it exits at once, naming the
    // endpoint, the TLS error and the keys to fix.
    let other = crate::harness::TempDir::new("other-pki");
    let stranger = Pki::generate(other.path());
    let stranger_id = Some((
        stranger.client_cert.as_path(),
        stranger.client_key.as_path(),
    ));
    for (opts, want) in [
        // No client certificate for etcd's --client-cert-auth.
        (
            tls_opts(&etcd, "c", &pki.ca, None),
            "received fatal alert: BadCertificate (etcd refused this client",
        ),
        // A client certificate of a CA etcd does not trust.
        (
            tls_opts(&etcd, "d", &pki.ca, stranger_id),
            "received fatal alert: BadCertificate (etcd refused this client",
        ),
        // A CA that did not sign etcd's server certificate.
        (
            tls_opts(&etcd, "e", &stranger.ca, id),
            "invalid peer certificate: UnknownIssuer (etcd's server certificate is not trusted; registry.ca_file",
        ),
    ] {
        let mut s = Server::start_unready(opts);
        let exited = wait_until(Duration::from_secs(15), || {
            s.child.as_mut().unwrap().try_wait().unwrap().is_some()
        });
        let log = s.log_text();
        assert!(exited, "a misconfigured instance kept running:\n{log}");
        let status = s.child.as_mut().unwrap().wait().unwrap();
        assert_eq!(status.code(), Some(1), "{log}");
        assert!(
            log.contains("gslb: error: etcd at https://127.0.0.1:")
                && log.contains("TLS with etcd failed: https://127.0.0.1:")
                && log.contains(want),
            "{want:?} not in:\n{log}"
        );
        assert!(!log.contains("gslb serving"), "{log}");
    }
    // The cluster itself is unharmed.
    assert_eq!(a(&b1, "app.gslb.example"), ["192.0.2.10"]);
}
