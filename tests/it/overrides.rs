//! Integration tests: overrides (CONTRACT §10) against the running binary: set and
//! removed through the API, seen in DNS answers, status, explain and events,
//! expiring by themselves, refused when unsafe, kept across restarts.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

use crate::harness::{Server, addrs, wait_until};
use crate::policy::start;

const NAME: &str = "ovr.gslb.example";

fn path(target: &str) -> String {
    format!("/api/v1/nameservices/{NAME}/targets/{target}/override")
}

fn answer(s: &Server) -> BTreeSet<String> {
    addrs(&s.udp(&format!("{NAME}."), RecordType::A))
        .iter()
        .map(IpAddr::to_string)
        .collect()
}

fn set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn service(s: &Server) {
    s.put_ns(
        &json!({"name": NAME, "ttl": 5, "policy": "RoundRobin", "targets": [
        {"name": "a", "address": "192.0.2.1"},
        {"name": "b", "address": "192.0.2.2"},
        {"name": "v6", "address": "2001:db8::1"}]}),
    );
}

/// `status.targets[]` entry of target `t`.
fn status_of(s: &Server, t: &str) -> Value {
    let v = s.get(&format!("/api/v1/nameservices/{NAME}")).json();
    v["status"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == t)
        .cloned()
        .unwrap()
}

/// The events of kind `kind` (newest first).
fn events(s: &Server, kind: &str) -> Vec<Value> {
    let v = s.get(&format!("/api/v1/events?kind={kind}")).json();
    v["items"].as_array().cloned().unwrap_or_default()
}

#[test]
fn an_expiring_drain_comes_back_by_itself() {
    let (s, _z) = start("");
    service(&s);
    assert_eq!(answer(&s), set(&["192.0.2.1", "192.0.2.2"]));

    let r = s.put_json(
        &path("a"),
        &json!({"state": "Drain", "reason": "kernel upgrade", "ttlSeconds": 2}),
    );
    let set_at = Instant::now();
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    assert_eq!(
        (&v["state"], &v["reason"], &v["ttlSeconds"], &v["target"]),
        (
            &json!("Drain"),
            &json!("kernel upgrade"),
            &json!(2),
            &json!("a")
        )
    );
    assert!(v["expiresAt"].as_str().unwrap().ends_with('Z'), "{v}");
    // The very next query: a is gone; the other family untouched.
    assert_eq!(answer(&s), set(&["192.0.2.2"]));
    let st = status_of(&s, "a");
    assert_eq!(st["override"]["state"], "Drain", "{st}");
    assert_eq!(st["override"]["reason"], "kernel upgrade");
    let e = s
        .get(&format!(
            "/api/v1/nameservices/{NAME}/explain?client=127.0.0.1"
        ))
        .json();
    assert_eq!(e["targets"][0]["reason"], "Drained", "{e}");
    assert_eq!(e["targets"][0]["override"]["reason"], "kernel upgrade");
    let ev = events(&s, "OverrideSet");
    assert_eq!(
        (&ev[0]["nameservice"], &ev[0]["target"]),
        (&json!(NAME), &json!("a")),
        "{ev:?}"
    );

    // It comes back by itself once its two seconds are up, and is gone from the
    // status and the store (the event says so).
    assert!(
        wait_until(Duration::from_secs(6), || answer(&s).contains("192.0.2.1")),
        "the drain never expired"
    );
    assert!(
        set_at.elapsed() >= Duration::from_millis(1900),
        "expired early"
    );
    assert_eq!(answer(&s), set(&["192.0.2.1", "192.0.2.2"]));
    assert!(wait_until(Duration::from_secs(3), || {
        status_of(&s, "a")["override"].is_null() && !events(&s, "OverrideExpired").is_empty()
    }));
    assert_eq!(events(&s, "OverrideExpired")[0]["target"], "a");
    // Nothing left to delete.
    assert_eq!(s.delete(&path("a")).status, 404);
}

#[test]
fn an_unsafe_drain_is_refused_unless_forced() {
    let (s, _z) = start("");
    service(&s);
    // minEligibleTargets defaults to 1: the first IPv4 target may go ...
    let r = s.put_json(&path("a"), &json!({"state": "Drain", "reason": "r"}));
    assert_eq!(r.status, 201, "{}", r.body);
    // ... not the last one, nor the only IPv6 one.
    for t in ["b", "v6"] {
        let r = s.put_json(&path(t), &json!({"state": "Drain", "reason": "r"}));
        assert_eq!(r.status, 409, "{t}: {}", r.body);
        let err = r.json()["error"].as_str().unwrap().to_string();
        assert!(
            err.contains("minEligibleTargets 1") && err.contains("force=true"),
            "{err}"
        );
    }
    // Refused means unchanged.
    assert_eq!(answer(&s), set(&["192.0.2.2"]));
    assert!(status_of(&s, "b")["override"].is_null());
    // Forced, it is done: nothing is eligible, and drained targets are not even
    // answered failing open.
    let r = s.put_json(
        &format!("{}?force=true", path("b")),
        &json!({"state": "Drain", "reason": "r"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(answer(&s), set(&[]));
    assert!(
        events(&s, "OverrideSet")[0]["message"]
            .as_str()
            .unwrap()
            .contains("forced")
    );
    // Undrained, both are back.
    assert_eq!(s.delete(&path("a")).status, 204);
    assert_eq!(s.delete(&path("b")).status, 204);
    assert_eq!(answer(&s), set(&["192.0.2.1", "192.0.2.2"]));
    assert_eq!(events(&s, "OverrideRemoved").len(), 2);

    // Validation: 422 naming the field; unknown name or target: 404.
    for (body, field) in [
        (json!({"state": "Drain"}), "reason"),
        (json!({"state": "Off", "reason": "r"}), "state"),
        (
            json!({"state": "Drain", "reason": "r", "ttlSeconds": 604801}),
            "ttlSeconds",
        ),
        (
            json!({"state": "Drain", "reason": "r", "until": 3}),
            "until",
        ),
    ] {
        let r = s.put_json(&path("a"), &body);
        assert_eq!(
            (r.status, r.json()["field"].clone()),
            (422, json!(field)),
            "{body}"
        );
    }
    let r = s.put_json(
        "/api/v1/nameservices/nope.gslb.example/targets/a/override",
        &json!({"state": "Drain", "reason": "r"}),
    );
    assert_eq!(r.status, 404);
    let r = s.put_json(&path("zz"), &json!({"state": "Drain", "reason": "r"}));
    assert_eq!(r.status, 404);
    assert!(r.body.contains("no target named"), "{}", r.body);
}

#[test]
fn overrides_survive_a_restart_and_force_health() {
    let (mut s, _z) = start("");
    service(&s);
    let r = s.put_json(
        &path("a"),
        &json!({"state": "ForceUnhealthy", "reason": "bad deploy", "ttlSeconds": 600}),
    );
    assert_eq!(r.status, 201);
    // Replacing answers 200.
    let r = s.put_json(
        &path("a"),
        &json!({"state": "ForceUnhealthy", "reason": "bad deploy, still", "ttlSeconds": 600}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(answer(&s), set(&["192.0.2.2"]));
    s.kill9_and_restart();
    assert_eq!(answer(&s), set(&["192.0.2.2"]));
    assert_eq!(
        status_of(&s, "a")["override"]["reason"],
        "bad deploy, still"
    );
    // A PUT of the NameService keeps the override.
    service(&s);
    assert_eq!(answer(&s), set(&["192.0.2.2"]));
    // Deleting the NameService deletes its overrides.
    assert_eq!(
        s.delete(&format!("/api/v1/nameservices/{NAME}")).status,
        204
    );
    service(&s);
    assert_eq!(answer(&s), set(&["192.0.2.1", "192.0.2.2"]));
    assert!(status_of(&s, "a")["override"].is_null());
}

/// The addresses `s` answers for `name`.
fn answer_of(s: &Server, name: &str) -> BTreeSet<String> {
    addrs(&s.udp(&format!("{name}."), RecordType::A))
        .iter()
        .map(IpAddr::to_string)
        .collect()
}

#[test]
fn a_fleet_shares_its_overrides_through_etcd() {
    let etcd = crate::etcd::Etcd::start(3);
    let a = Server::start_with(etcd.server_opts("dc1-a"));
    let b = Server::start_with(etcd.server_opts("dc2-a"));
    let name = "fleet.gslb.example";
    a.put_ns(&json!({"name": name, "policy": "RoundRobin", "targets": [
        {"name": "x", "address": "192.0.2.1"},
        {"name": "y", "address": "192.0.2.2"}]}));
    let both = set(&["192.0.2.1", "192.0.2.2"]);
    assert!(wait_until(Duration::from_secs(2), || answer_of(&b, name) == both));
    let ovr = |t: &str| format!("/api/v1/nameservices/{name}/targets/{t}/override");

    // A drain on one instance: there at once, on the other within a second; the
    // other instance refuses an unsafe drain from what it sees.
    let r = a.put_json(
        &ovr("x"),
        &json!({"state": "Drain", "reason": "dc1 maintenance", "ttlSeconds": 4}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(answer_of(&a, name), set(&["192.0.2.2"]));
    assert!(
        wait_until(Duration::from_secs(1), || answer_of(&b, name)
            == set(&["192.0.2.2"])),
        "the drain did not reach the second instance"
    );
    let st = b.get(&format!("/api/v1/nameservices/{name}")).json();
    assert_eq!(
        st["status"]["targets"][0]["override"]["reason"], "dc1 maintenance",
        "{st}"
    );
    let r = b.put_json(&ovr("y"), &json!({"state": "Drain", "reason": "r"}));
    assert_eq!(r.status, 409, "{}", r.body);

    // Removed on the second instance: gone on both.
    assert_eq!(b.delete(&ovr("x")).status, 204);
    assert_eq!(answer_of(&b, name), both);
    assert!(wait_until(Duration::from_secs(1), || answer_of(&a, name) == both));
    assert_eq!(b.delete(&ovr("x")).status, 404);

    // One that expires goes by itself everywhere (the answer path at its expiry,
    // etcd's lease after it).
    let r = b.put_json(
        &ovr("y"),
        &json!({"state": "ForceUnhealthy", "reason": "bad build", "ttlSeconds": 2}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(wait_until(Duration::from_secs(1), || answer_of(&a, name)
        == set(&["192.0.2.1"])));
    assert!(wait_until(Duration::from_secs(5), || answer_of(&a, name)
        == both
        && answer_of(&b, name) == both));
    // And etcd no longer holds it once its lease ran out.
    assert!(wait_until(Duration::from_secs(6), || etcd
        .ctl(&["get", "--prefix", "/gslb/overrides/", "--keys-only"])
        .trim()
        .is_empty()));

    // A drain set before an instance starts is loaded with the registry; deleting
    // the NameService deletes its overrides in etcd too.
    let r = a.put_json(
        &ovr("x"),
        &json!({"state": "Drain", "reason": "r", "ttlSeconds": 600}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let c = Server::start_with(etcd.server_opts("dc3-a"));
    assert!(wait_until(Duration::from_secs(2), || answer_of(&c, name)
        == set(&["192.0.2.2"])));
    assert_eq!(
        a.delete(&format!("/api/v1/nameservices/{name}")).status,
        204
    );
    assert!(
        etcd.ctl(&["get", "--prefix", "/gslb/overrides/", "--keys-only"])
            .trim()
            .is_empty()
    );
}
