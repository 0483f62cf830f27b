//! Integration tests: the target address rules (CONTRACT §8, "Targets") and the
//! all-zero Ratio refusal, through the API of a running server.

use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

use crate::harness::{Server, addrs};

fn ns(targets: Value, policy: &str) -> Value {
    json!({"name": "t.gslb.example", "policy": policy, "targets": targets})
}

/// PUTs `body`, expects 422 on `field` with `needle` in the message, and that
/// nothing was stored.
fn refused(s: &Server, body: &Value, field: &str, needle: &str) {
    let r = s.put_json("/api/v1/nameservices/t.gslb.example", body);
    assert_eq!(r.status, 422, "{body}: {}", r.body);
    let e = r.json();
    assert_eq!(e["field"], field, "{body}: {e}");
    let msg = e["error"].as_str().unwrap();
    assert!(msg.contains(needle), "{body}: {msg}");
    assert_eq!(s.get("/api/v1/nameservices/t.gslb.example").status, 404);
}

#[test]
fn forbidden_addresses_are_refused_naming_the_field() {
    let s = Server::start();
    for (addr, needle) in [
        ("0.0.0.0", "0.0.0.0 is unspecified"),
        ("::", ":: is unspecified"),
        ("255.255.255.255", "broadcast"),
        ("224.0.0.251", "multicast"),
        ("ff02::fb", "multicast"),
        (
            "169.254.169.254",
            "169.254.169.254 is link-local (169.254.0.0/16",
        ),
        ("::ffff:169.254.169.254", "link-local"),
        ("fe80::1", "link-local (fe80::/10)"),
    ] {
        let t = json!([{"name": "ok", "address": "127.0.0.1"}, {"name": "bad", "address": addr}]);
        refused(&s, &ns(t, "RoundRobin"), "targets[1].address", needle);
        let t = json!([{"name": "a", "address": "127.0.0.1", "probeAddress": addr}]);
        refused(&s, &ns(t, "RoundRobin"), "targets[0].probeAddress", needle);
    }
    // Loopback and ordinary unicast addresses are fine.
    let t = json!([{"name": "a", "address": "127.0.0.1", "probeAddress": "::1"},
                   {"name": "b", "address": "192.0.2.1"}]);
    s.put_ns(&ns(t, "RoundRobin"));
}

#[test]
fn a_ratio_service_needs_an_enabled_target_with_a_ratio() {
    let s = Server::start();
    let t = json!([{"name": "a", "address": "192.0.2.1", "ratio": 0},
                   {"name": "b", "address": "192.0.2.2", "ratio": 0},
                   {"name": "c", "address": "192.0.2.3", "ratio": 5, "enabled": false}]);
    refused(
        &s,
        &ns(t.clone(), "Ratio"),
        "targets",
        "every enabled target has ratio 0",
    );
    // The same targets are fine for RoundRobin, and for Ratio once c is enabled.
    s.put_ns(&ns(t.clone(), "RoundRobin"));
    let mut t2 = t.clone();
    t2[2]["enabled"] = json!(true);
    s.put_ns(&ns(t2, "Ratio"));
    // Turning it back into an all-zero Ratio service is refused and changes nothing.
    let r = s.put_json("/api/v1/nameservices/t.gslb.example", &ns(t, "Ratio"));
    assert_eq!(r.status, 422, "{}", r.body);
    let held = s.get("/api/v1/nameservices/t.gslb.example").json();
    assert_eq!(held["targets"][2]["enabled"], true);
}

#[test]
fn health_deny_refuses_writes_and_parks_stored_names() {
    let mut s = Server::start();
    // Before the deny list: a target in 10.0.0.0/8 is fine.
    let inside = json!({"name": "inside.gslb.example", "policy": "RoundRobin",
                        "targets": [{"name": "a", "address": "10.1.2.3"}]});
    let outside = json!({"name": "outside.gslb.example", "policy": "RoundRobin",
                         "targets": [{"name": "a", "address": "192.0.2.1"}]});
    s.put_ns(&inside);
    s.put_ns(&outside);
    // Restarted with `[health] deny`: the stored name breaking it is not served
    // (and says why in the log), the other one is.
    assert_eq!(s.terminate(), Some(0));
    s.opts.config = Some("[health]\ndeny = [\"10.0.0.0/8\", \"2001:db8:dead::/48\"]\n".into());
    s.restart_same_data();
    assert_eq!(
        s.get("/api/v1/nameservices/inside.gslb.example").status,
        404
    );
    assert_eq!(
        s.get("/api/v1/nameservices/outside.gslb.example").status,
        200
    );
    let m = s.udp("inside.gslb.example.", RecordType::A);
    assert!(addrs(&m).is_empty());
    let log = s.log_text();
    assert!(
        log.contains(
            "targets[0].address 10.1.2.3 is inside 10.0.0.0/8, which [health] deny refuses"
        ),
        "{log}"
    );
    // Writes breaking it are refused naming the field.
    for (targets, field, needle) in [
        (
            json!([{"name": "a", "address": "10.9.9.9"}]),
            "targets[0].address",
            "10.9.9.9 is inside 10.0.0.0/8",
        ),
        (
            json!([{"name": "a", "address": "::ffff:10.0.0.1"}]),
            "targets[0].address",
            "inside 10.0.0.0/8",
        ),
        (
            json!([{"name": "a", "address": "192.0.2.7", "probeAddress": "10.0.0.7"}]),
            "targets[0].probeAddress",
            "10.0.0.7 is inside 10.0.0.0/8",
        ),
        (
            json!([{"name": "a", "address": "2001:db8::1"}, {"name": "b", "address": "2001:db8:dead::1"}]),
            "targets[1].address",
            "inside 2001:db8:dead::/48",
        ),
    ] {
        refused(&s, &ns(targets, "RoundRobin"), field, needle);
    }
    // A write that fixes the parked name serves it again.
    let fixed = json!({"name": "inside.gslb.example", "policy": "RoundRobin",
                       "targets": [{"name": "a", "address": "192.0.2.9"}]});
    s.put_ns(&fixed);
    assert_eq!(
        addrs(&s.udp("inside.gslb.example.", RecordType::A)),
        ["192.0.2.9".parse::<std::net::IpAddr>().unwrap()]
    );
}
