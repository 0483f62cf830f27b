//! Integration tests: what operators see (events, list paging) and the token roles
//! (CONTRACT §10).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Server, ServerOpts, http};

fn minimal(name: &str) -> Value {
    json!({"name": name, "policy": "RoundRobin",
           "targets": [{"name": "dc1", "address": "192.0.2.10"}]})
}

const TOKENS: &str = r#"
[[api_tokens]]
name = "ci"
token = "ci-0123456789"
role = "write"

[[api_tokens]]
name = "dashboard"
token = "ro-0123456789"
role = "read"
"#;

fn call(s: &Server, method: &str, path: &str, body: Option<&Value>, token: &str) -> (u16, Value) {
    let bytes = body.map(|b| b.to_string());
    let r = http(
        s.api,
        method,
        path,
        bytes.as_deref().map(str::as_bytes),
        Some(token),
        body.map(|_| "application/json"),
    )
    .unwrap();
    let v = if r.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&r.body).unwrap_or(Value::Null)
    };
    (r.status, v)
}

#[test]
fn roles_and_events_name_the_token() {
    let s = Server::start_with(ServerOpts {
        config: Some(format!("api_token = \"legacy-0123456789\"\n{TOKENS}")),
        extra_args: vec!["--instance".into(), "it-instance".into()],
        ..ServerOpts::default()
    });
    let ns = "/api/v1/nameservices/app.gslb.example";
    // The read token reads, and cannot write.
    let (st, _) = call(&s, "GET", "/api/v1/nameservices", None, "ro-0123456789");
    assert_eq!(st, 200);
    let (st, err) = call(
        &s,
        "PUT",
        ns,
        Some(&minimal("app.gslb.example")),
        "ro-0123456789",
    );
    assert_eq!(st, 403, "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("dashboard"),
        "{err}"
    );
    let (st, _) = call(&s, "GET", ns, None, "ro-0123456789");
    assert_eq!(st, 404, "the refused PUT changed nothing");

    // Writes by two tokens, and an unchanged PUT that records nothing.
    let (st, _) = call(
        &s,
        "PUT",
        ns,
        Some(&minimal("app.gslb.example")),
        "ci-0123456789",
    );
    assert_eq!(st, 201);
    let (st, _) = call(
        &s,
        "PUT",
        ns,
        Some(&minimal("app.gslb.example")),
        "ci-0123456789",
    );
    assert_eq!(st, 200);
    let mut changed = minimal("app.gslb.example");
    changed["ttl"] = json!(10);
    let (st, _) = call(&s, "PUT", ns, Some(&changed), "legacy-0123456789");
    assert_eq!(st, 200);
    let (st, _) = call(&s, "DELETE", ns, None, "ci-0123456789");
    assert_eq!(st, 204);

    let (st, ev) = call(&s, "GET", "/api/v1/events", None, "ro-0123456789");
    assert_eq!(st, 200);
    let got: Vec<(String, String, String)> = ev["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["nameservice"] == "app.gslb.example")
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["token"].as_str().unwrap_or("-").to_string(),
                e["instance"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let inst = "it-instance".to_string();
    assert_eq!(
        got,
        [
            ("Deleted".into(), "ci".into(), inst.clone()),
            ("Replaced".into(), "api_token".into(), inst.clone()),
            ("Created".into(), "ci".into(), inst),
        ],
        "{ev}"
    );
    // Newest first, ids falling.
    let ids: Vec<u64> = ev["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    // No secret anywhere in the events or the log.
    assert!(!ev.to_string().contains("0123456789"));
    assert!(!s.log_text().contains("0123456789"), "{}", s.log_text());
}

/// Pages read while writers create and delete other names: every name that exists
/// for the whole listing shows up exactly once, in order.
#[test]
fn paging_is_stable_under_concurrent_writes() {
    let s = Arc::new(Server::start());
    let stable: Vec<String> = (0..60).map(|i| format!("s{i:02}.gslb.example")).collect();
    for n in &stable {
        s.put_ns(&minimal(n));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                // Names that sort before, between and after the stable ones.
                for prefix in ["a", "s15x", "s40x", "z"] {
                    let n = format!("{prefix}{i}.gslb.example");
                    s.put_ns(&minimal(&n));
                    if i.is_multiple_of(2) {
                        s.delete(&format!("/api/v1/nameservices/{n}"));
                    }
                }
                i += 1;
            }
        })
    };
    for _round in 0..3 {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let path = match &cursor {
                None => "/api/v1/nameservices?limit=7".to_string(),
                Some(c) => format!("/api/v1/nameservices?limit=7&continue={c}"),
            };
            let r = s.get(&path);
            assert_eq!(r.status, 200, "{}", r.body);
            let v = r.json();
            let items = v["items"].as_array().unwrap();
            assert!(items.len() <= 7);
            seen.extend(
                items
                    .iter()
                    .map(|i| i["name"].as_str().unwrap().to_string()),
            );
            pages += 1;
            match v.get("continue").and_then(Value::as_str) {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(pages >= 9, "{pages} pages");
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted, "pages come in name order");
        let unique: BTreeSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "a name was listed twice");
        for n in &stable {
            assert!(unique.contains(n), "{n} missing");
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}

const ZONE: &str = "$ORIGIN ops.example.\n$TTL 300\n@ IN SOA ns1 hostmaster 7 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 192.0.2.53\n";

/// A server serving the zone `ops.example`, and the zones dir kept alive with it.
pub fn ops_server(opts: ServerOpts) -> (Server, crate::harness::TempDir) {
    let zones = crate::harness::TempDir::new("ops-zones");
    std::fs::write(zones.path().join("ops.example.zone"), ZONE).unwrap();
    let s = Server::start_with(ServerOpts {
        zones_dir: zones.path().to_path_buf(),
        ..opts
    });
    (s, zones)
}

/// A NameService on two loopback VIPs probed every second.
pub fn checked(name: &str, vip1: std::net::SocketAddr, vip2: std::net::SocketAddr) -> Value {
    json!({"name": name, "policy": "RoundRobin",
           "healthCheck": {"port": vip1.port(), "periodSeconds": 1, "timeoutSeconds": 1,
                           "failureThreshold": 1, "successThreshold": 1},
           "targets": [{"name": "dc1", "address": vip1.ip().to_string(), "port": vip1.port()},
                       {"name": "dc2", "address": vip2.ip().to_string(), "port": vip2.port()}]})
}

#[test]
fn health_changes_are_events_per_target() {
    let (s, _z) = ops_server(ServerOpts::default());
    let vip1 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let vip2 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (a1, a2) = (vip1.local_addr().unwrap(), vip2.local_addr().unwrap());
    s.put_ns(&checked("hc.ops.example", a1, a2));
    let health = |t: usize| -> String {
        s.get("/api/v1/nameservices/hc.ops.example").json()["status"]["targets"][t]["health"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(crate::harness::wait_until(Duration::from_secs(5), || {
        health(0) == "Healthy" && health(1) == "Healthy"
    }));
    drop(vip1);
    assert!(crate::harness::wait_until(
        Duration::from_secs(5),
        || health(0) == "Unhealthy"
    ));
    let events = |q: &str| -> Vec<Value> {
        s.get(&format!("/api/v1/events?{q}")).json()["items"]
            .as_array()
            .unwrap()
            .clone()
    };
    let hc = events("kind=HealthChanged&nameservice=hc.ops.example");
    let got: Vec<(String, String)> = hc
        .iter()
        .map(|e| {
            let m = e["message"].as_str().unwrap();
            (
                e["target"].as_str().unwrap().to_string(),
                m.split(':').next().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        got.contains(&("dc1".into(), "Healthy -> Unhealthy".into())),
        "{got:?}"
    );
    assert!(
        got.contains(&("dc1".into(), "Pending -> Healthy".into())),
        "{got:?}"
    );
    assert!(
        got.contains(&("dc2".into(), "Pending -> Healthy".into())),
        "{got:?}"
    );
    assert_eq!(
        got[0],
        ("dc1".into(), "Healthy -> Unhealthy".into()),
        "newest first"
    );
    let down = &hc[0];
    assert!(
        down["message"].as_str().unwrap().contains(&a1.to_string()),
        "{down}"
    );
    assert!(down["token"].is_null());
    // The write that created it is there too, older.
    let created = events("kind=Created");
    assert_eq!(created.len(), 1);
    assert!(created[0]["id"].as_u64() < down["id"].as_u64());
    drop(vip2);
}
