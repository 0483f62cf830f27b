//! Integration tests: reload by SIGHUP and `POST /api/v1/reload` (CONTRACT §8):
//! zones and topology swapped in without dropping a query, all or nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::json;

use crate::harness::{REPO, Server, ServerOpts, TempDir, addrs, dns_udp, http, query, wait_until};

const ZONE: &str = "gslb.example.zone";

struct Fixture {
    server: Server,
    zones: TempDir,
}

impl Fixture {
    fn zone_path(&self) -> std::path::PathBuf {
        self.zones.path().join(ZONE)
    }

    fn config_path(&self) -> std::path::PathBuf {
        self.server.log.with_extension("toml")
    }

    /// The shipped zone with `extra` appended and its serial set to `serial`.
    fn write_zone(&self, serial: u32, extra: &str) {
        let text = std::fs::read_to_string(std::path::Path::new(REPO).join("zones").join(ZONE))
            .unwrap()
            .replace("2026010101 ; serial", &format!("{serial} ; serial"));
        std::fs::write(self.zone_path(), format!("{text}\n{extra}\n")).unwrap();
    }

    fn post_reload(&self) -> crate::harness::Resp {
        http(self.server.api, "POST", "/api/v1/reload", None, None, None).unwrap()
    }
}

fn start(config: &str) -> Fixture {
    let zones = TempDir::new("reload-zones");
    std::fs::copy(
        std::path::Path::new(REPO).join("zones").join(ZONE),
        zones.path().join(ZONE),
    )
    .unwrap();
    let server = Server::start_with(ServerOpts {
        zones_dir: zones.path().to_path_buf(),
        config: Some(config.to_string()),
        ..ServerOpts::default()
    });
    Fixture { server, zones }
}

const TOPOLOGY_1: &str = "[[topology]]\ncidr = \"10.1.0.0/16\"\nlocality = \"us-west\"\n";

fn a(s: &Server, name: &str) -> Vec<String> {
    addrs(&s.udp(name, RecordType::A))
        .iter()
        .map(|a| a.to_string())
        .collect()
}

/// Queries `www` (static) and `app` (a NameService) in a loop until stopped;
/// counts answers that are missing or wrong.
fn query_loop(
    s: &Server,
    stop: Arc<AtomicBool>,
    bad: Arc<AtomicUsize>,
    done: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<()> {
    let dns = s.dns;
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            for (name, want) in [
                ("www.gslb.example", "192.0.2.80"),
                ("app.gslb.example", "192.0.2.10"),
            ] {
                let raw = crate::harness::dns_udp_raw(
                    dns,
                    &query(name, RecordType::A, Some(1232)).to_vec().unwrap(),
                );
                let ok = raw
                    .and_then(|r| hickory_proto::op::Message::from_vec(&r).ok())
                    .is_some_and(|m| addrs(&m).iter().any(|a| a.to_string() == want));
                if !ok {
                    bad.fetch_add(1, Ordering::SeqCst);
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        }
    })
}

#[test]
fn sighup_and_post_reload_swap_zones_and_topology_without_dropping_a_query() {
    let f = start(TOPOLOGY_1);
    let s = &f.server;
    s.put_ns(&json!({"name": "app.gslb.example", "policy": "RoundRobin",
                     "targets": [{"name": "dc1", "address": "192.0.2.10"}]}));
    let (stop, bad, done) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let looper = query_loop(s, stop.clone(), bad.clone(), done.clone());

    // SIGHUP: a new static record appears.
    assert_eq!(
        s.udp("new.gslb.example", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
    f.write_zone(2026010102, "new 300 IN A 192.0.2.200");
    crate::harness::unsafe_kill(s.pid(), 1);
    assert!(wait_until(Duration::from_secs(5), || a(
        s,
        "new.gslb.example"
    ) == ["192.0.2.200"]));
    assert!(s.log_text().contains("SIGHUP received"));

    // POST: zones and topology.
    f.write_zone(
        2026010103,
        "new 300 IN A 192.0.2.201\nnewer 300 IN A 192.0.2.202",
    );
    std::fs::write(
        f.config_path(),
        format!("{TOPOLOGY_1}[[topology]]\ncidr = \"10.2.0.0/16\"\nlocality = \"us-east\"\n"),
    )
    .unwrap();
    let r = f.post_reload();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({"zones": [{"name": "gslb.example", "serial": 2026010103}], "topologyEntries": 2})
    );
    // Visible to the very next query.
    assert_eq!(a(s, "newer.gslb.example"), ["192.0.2.202"]);
    assert_eq!(a(s, "new.gslb.example"), ["192.0.2.201"]);
    let soa = s.udp("gslb.example", RecordType::SOA);
    assert!(format!("{:?}", soa.answers).contains("2026010103"));

    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    looper.join().unwrap();
    assert!(done.load(Ordering::SeqCst) > 20);
    assert_eq!(
        bad.load(Ordering::SeqCst),
        0,
        "queries dropped or wrong during the reloads"
    );
    // The reloads are events.
    let ev = s.get("/api/v1/events?kind=Reloaded").json();
    assert_eq!(ev["items"].as_array().unwrap().len(), 2, "{ev}");
}

#[test]
fn an_invalid_file_changes_nothing_and_is_named_with_its_line() {
    let f = start(TOPOLOGY_1);
    let s = &f.server;
    // A zone file with a bad record.
    f.write_zone(
        2026010102,
        "new 300 IN A 192.0.2.200\nbroken 300 IN A not-an-address",
    );
    let written = std::fs::read_to_string(f.zone_path()).unwrap();
    let line = written
        .lines()
        .position(|l| l.starts_with("broken"))
        .unwrap()
        + 1;
    let r = f.post_reload();
    assert_eq!(r.status, 422, "{}", r.body);
    let err = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        err.contains(ZONE) && err.contains(&format!(":{line}")),
        "{err} (line {line})"
    );
    // Nothing changed: the valid part of the file is not served either.
    assert_eq!(
        s.udp("new.gslb.example", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
    // By SIGHUP: logged, nothing changes, the server goes on.
    crate::harness::unsafe_kill(s.pid(), 1);
    assert!(wait_until(Duration::from_secs(5), || s
        .log_text()
        .contains("reload refused")));
    assert_eq!(a(s, "www.gslb.example"), ["192.0.2.80"]);
    assert_eq!(s.get("/healthz").status, 200);

    // A bad config file: 422 naming it and its line.
    f.write_zone(2026010102, "");
    std::fs::write(
        f.config_path(),
        "[[topology]]\ncidr = \"10.1.0.0/33\"\nlocality = \"a\"\n",
    )
    .unwrap();
    let r = f.post_reload();
    assert_eq!(r.status, 422, "{}", r.body);
    let err = r.json()["error"].as_str().unwrap().to_string();
    assert!(err.contains(".toml:2"), "{err}");
}

#[test]
fn a_reload_that_would_orphan_or_collide_a_nameservice_is_409() {
    let f = start("");
    let s = &f.server;
    for n in ["app", "api"] {
        s.put_ns(
            &json!({"name": format!("{n}.gslb.example"), "policy": "RoundRobin",
                         "targets": [{"name": "dc1", "address": "192.0.2.10"}]}),
        );
    }
    // A static CNAME at app, a delegation above api.
    f.write_zone(
        2026010102,
        "app 300 IN CNAME www\napi 300 IN NS ns.elsewhere.example.\nnew 300 IN A 192.0.2.200",
    );
    let r = f.post_reload();
    assert_eq!(r.status, 409, "{}", r.body);
    let err = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        err.contains("app.gslb.example") && err.contains("api.gslb.example"),
        "{err}"
    );
    // Nothing changed.
    assert_eq!(a(s, "app.gslb.example"), ["192.0.2.10"]);
    assert_eq!(
        s.udp("new.gslb.example", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
    // A zone file set without the zone: the names would be orphaned.
    std::fs::remove_file(f.zone_path()).unwrap();
    std::fs::write(f.zones.path().join("other.example.zone"), "$ORIGIN other.example.\n@ 300 IN SOA ns1 h 1 3600 600 86400 60\n@ 300 IN NS ns1\nns1 300 IN A 192.0.2.1\n").unwrap();
    let r = f.post_reload();
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("not inside any served zone")
    );
    assert_eq!(a(s, "app.gslb.example"), ["192.0.2.10"]);
}

#[test]
fn a_reload_says_which_changed_settings_need_a_restart() {
    let f = start(TOPOLOGY_1);
    std::fs::write(
        f.config_path(),
        format!("nsid = \"gslb-1\"\ntcp_max_clients = 99\n{TOPOLOGY_1}"),
    )
    .unwrap();
    let r = f.post_reload();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["restartRequired"],
        json!(["nsid", "tcp_max_clients"])
    );
    assert!(f.server.log_text().contains("need a restart"));
    let _ = dns_udp;
}
