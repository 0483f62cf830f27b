//! Integration tests: the REST API of the real binary (CONTRACT §3), end to end:
//! status codes and bodies, every rejection, token, durability, signals, /metrics.

use std::process::{Command, Stdio};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

use crate::harness::{
    BIN, REPO, Resp, Server, ServerOpts, TempDir, addrs, free_port, http, wait_until,
};

const NS: &str = "/api/v1/nameservices";

fn path(name: &str) -> String {
    format!("{NS}/{name}")
}

fn minimal(name: &str) -> Value {
    json!({"name": name, "policy": "RoundRobin",
           "targets": [{"name": "dc1", "address": "192.0.2.10"},
                       {"name": "dc2", "address": "198.51.100.10"}]})
}

/// Sends `body` as-is with a content type, using the server's token.
fn put_raw(s: &Server, p: &str, body: &[u8], content_type: Option<&str>) -> Resp {
    http(
        s.api,
        "PUT",
        p,
        Some(body),
        s.opts.token.as_deref(),
        content_type,
    )
    .unwrap()
}

/// Asserts a JSON error of `status` and returns (error, field).
fn expect_error(r: &Resp, status: u16) -> (String, Option<String>) {
    assert_eq!(r.status, status, "body: {}", r.body);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        r.headers
    );
    let v = r.json();
    let obj = v.as_object().expect("error body is an object");
    assert!(
        obj.keys().all(|k| k == "error" || k == "field"),
        "unexpected keys in {v}"
    );
    let error = v["error"].as_str().expect("error is a string");
    assert!(!error.is_empty() && !error.contains('\n'), "{error:?}");
    (error.to_string(), v["field"].as_str().map(str::to_string))
}

/// The resource as PUT returns it, without what changes with time and traffic (the
/// Ready condition's transition time, the targets' answer counts).
fn without_transition_time(mut v: Value) -> Value {
    for c in v["status"]["conditions"].as_array_mut().unwrap() {
        assert!(c["lastTransitionTime"].as_str().unwrap().ends_with('Z'));
        c.as_object_mut().unwrap().remove("lastTransitionTime");
    }
    for t in v["status"]["targets"].as_array_mut().unwrap() {
        assert!(t["answers"].is_u64(), "{t}");
        t.as_object_mut().unwrap().remove("answers");
    }
    v
}

fn a_records(s: &Server, name: &str) -> Vec<String> {
    let mut v: Vec<String> = addrs(&s.udp(name, RecordType::A))
        .iter()
        .map(|a| a.to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn put_get_list_delete() {
    let s = Server::start();
    let body = minimal("app.gslb.example");

    let r = s.put_json(&path("app.gslb.example"), &body);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.header("location"),
        Some("/api/v1/nameservices/app.gslb.example")
    );
    let created = r.json();
    let target_status = |name: &str, address: &str| {
        json!({"name": name, "address": address, "health": "Unchecked",
               "addresses": [{"address": address, "health": "Unchecked"}],
               "resolveError": null,
               "consecutiveFailures": 0, "consecutiveSuccesses": 0,
               "lastProbeTime": null, "lastError": null, "override": null})
    };
    assert_eq!(
        without_transition_time(created.clone()),
        json!({
            "name": "app.gslb.example",
            "ttl": 30,
            "policy": "RoundRobin",
            "targets": [
                {"name": "dc1", "address": "192.0.2.10", "ratio": 1,
                 "probeAddress": "192.0.2.10", "enabled": true},
                {"name": "dc2", "address": "198.51.100.10", "ratio": 1,
                 "probeAddress": "198.51.100.10", "enabled": true}
            ],
            "allDown": "AnswerAll",
            "failover": [],
            "distribute": [],
            "panicThresholdPercent": 0,
            "slowStartSeconds": 0,
            "degradedTtl": 30,
            "stickiness": "None",
            "minEligibleTargets": 1,
            "status": {
                "conditions": [{"type": "Ready", "status": "True",
                                "reason": "AllTargetsHealthy",
                                "message": "2 of 2 targets healthy"}],
                "targets": [target_status("dc1", "192.0.2.10"),
                            target_status("dc2", "198.51.100.10")]
            }
        })
    );
    // The very next DNS query sees it.
    assert_eq!(
        a_records(&s, "app.gslb.example"),
        vec!["192.0.2.10", "198.51.100.10"]
    );

    // GET returns the same resource.
    let r = s.get(&path("app.gslb.example"));
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(
        without_transition_time(r.json()),
        without_transition_time(created.clone())
    );

    // Replacing: 200, with the new content.
    let mut changed = body.clone();
    changed["ttl"] = json!(60);
    changed["targets"] = json!([{"name": "dc3", "address": "192.0.2.30", "ratio": 5}]);
    let r = s.put_json(&path("app.gslb.example"), &changed);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("location"), None);
    let replaced = r.json();
    assert_eq!(replaced["ttl"], 60);
    assert_eq!(replaced["targets"][0]["ratio"], 5);
    assert_eq!(replaced["status"]["targets"].as_array().unwrap().len(), 1);
    assert_eq!(a_records(&s, "app.gslb.example"), vec!["192.0.2.30"]);
    // The same body again is still a replacement.
    assert_eq!(s.put_json(&path("app.gslb.example"), &changed).status, 200);

    // List: sorted by name whatever the order of creation.
    for n in ["zeta.gslb.example", "beta.gslb.example", "gslb.example"] {
        assert_eq!(s.put_json(&path(n), &minimal(n)).status, 201);
    }
    let r = s.get(NS);
    assert_eq!(r.status, 200);
    let list = r.json();
    assert_eq!(list.as_object().unwrap().len(), 1, "{list}");
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "app.gslb.example",
            "beta.gslb.example",
            "gslb.example",
            "zeta.gslb.example"
        ]
    );
    assert!(list["items"][0]["status"]["conditions"].is_array());

    // Delete: 204 with no body, then 404 on GET and DELETE, NXDOMAIN in DNS.
    let r = s.delete(&path("app.gslb.example"));
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    expect_error(&s.get(&path("app.gslb.example")), 404);
    expect_error(&s.delete(&path("app.gslb.example")), 404);
    let m = s.udp("app.gslb.example", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(s.get(NS).json()["items"].as_array().unwrap().len(), 3);
}

#[test]
fn names_are_normalized_and_must_match_the_path() {
    let s = Server::start();
    // No name in the body: the path's, normalized.
    let mut body = minimal("x");
    body.as_object_mut().unwrap().remove("name");
    let r = s.put_json(&path("App.GSLB.example."), &body);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["name"], "app.gslb.example");
    // Same name in another spelling: the same resource.
    let r = s.put_json(&path("app.gslb.example"), &minimal("APP.gslb.Example."));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        s.get(&path("APP.GSLB.EXAMPLE")).json()["name"],
        "app.gslb.example"
    );
    assert_eq!(s.get(&path("app.gslb.example.")).status, 200);
    // A different name in the body.
    let (msg, field) = expect_error(
        &s.put_json(&path("app.gslb.example"), &minimal("other.gslb.example")),
        422,
    );
    assert_eq!(field.as_deref(), Some("name"));
    assert!(msg.contains("other.gslb.example"), "{msg}");
    expect_error(&s.get(&path("other.gslb.example")), 404);
    // A path that is no DNS name.
    let (_, field) = expect_error(&s.put_json(&path("a..b.gslb.example"), &body), 422);
    assert_eq!(field.as_deref(), Some("name"));
}

#[test]
fn malformed_unsupported_and_too_large() {
    let s = Server::start();
    let p = path("app.gslb.example");
    let good = minimal("app.gslb.example").to_string();

    let (msg, field) = expect_error(
        &put_raw(
            &s,
            &p,
            b"{\"name\": \"app.gslb.example\",",
            Some("application/json"),
        ),
        400,
    );
    assert!(msg.contains("JSON"), "{msg}");
    assert_eq!(field, None);
    expect_error(&put_raw(&s, &p, b"", Some("application/json")), 400);
    expect_error(
        &put_raw(&s, &p, &[0xff, 0xfe], Some("application/json")),
        400,
    );

    expect_error(&put_raw(&s, &p, good.as_bytes(), None), 415);
    expect_error(&put_raw(&s, &p, good.as_bytes(), Some("text/plain")), 415);
    expect_error(
        &put_raw(
            &s,
            &p,
            good.as_bytes(),
            Some("application/x-www-form-urlencoded"),
        ),
        415,
    );
    // charset=utf-8 is JSON too.
    let r = put_raw(
        &s,
        &p,
        good.as_bytes(),
        Some("application/json; charset=utf-8"),
    );
    assert_eq!(r.status, 201, "{}", r.body);

    // Over 1 MiB: valid JSON, but too large. The answer still arrives intact.
    let mut big = minimal("app.gslb.example");
    big["targets"][0]["locality"] = json!("x".repeat(1 << 20));
    let big = big.to_string();
    assert!(big.len() > 1 << 20);
    let (msg, _) = expect_error(
        &put_raw(&s, &p, big.as_bytes(), Some("application/json")),
        413,
    );
    assert!(msg.contains("1048576"), "{msg}");
    // The stored resource is untouched by all this.
    assert_eq!(s.get(&p).json()["targets"][0].get("locality"), None);
}

#[test]
fn unknown_paths_and_methods_are_json() {
    let s = Server::start();
    for p in [
        "/api/v1/nope",
        "/api/v2/nameservices",
        "/",
        "/api/v1/nameservices/a/b",
    ] {
        expect_error(&s.get(p), 404);
    }
    let r = http(
        s.api,
        "POST",
        NS,
        Some(b"{}"),
        None,
        Some("application/json"),
    )
    .unwrap();
    expect_error(&r, 405);
    assert!(r.header("allow").unwrap().contains("GET"));
    let r = http(s.api, "PATCH", &path("app.gslb.example"), None, None, None).unwrap();
    expect_error(&r, 405);
    let allow = r.header("allow").unwrap();
    assert!(
        ["GET", "PUT", "DELETE"].iter().all(|m| allow.contains(m)),
        "{allow}"
    );
    let r = http(s.api, "DELETE", "/healthz", None, None, None).unwrap();
    expect_error(&r, 405);
}

#[test]
fn collisions_with_static_data_are_409() {
    let s = Server::start();
    // zones/gslb.example.zone: alias is a CNAME, sub is delegated.
    for (name, what) in [
        ("alias.gslb.example", "CNAME"),
        ("sub.gslb.example", "delegation"),
        ("deep.below.sub.gslb.example", "delegation"),
    ] {
        let (msg, field) = expect_error(&s.put_json(&path(name), &minimal(name)), 409);
        assert_eq!(field.as_deref(), Some("name"));
        assert!(msg.contains(what), "{msg}");
        expect_error(&s.get(&path(name)), 404);
    }
    // The static data is untouched.
    let m = s.udp("alias.gslb.example", RecordType::A);
    assert!(
        m.answers
            .iter()
            .any(|r| r.record_type() == RecordType::CNAME)
    );
}

/// Every family of rules of the resource table, each naming its field.
/// A named edit of a valid body that breaks one rule.
type Breakage = (&'static str, Box<dyn Fn(&mut Value)>);

#[test]
fn validation_rules_are_422_with_the_field() {
    let s = Server::start();
    let name = "app.gslb.example";
    let base = minimal(name);
    let cases: Vec<Breakage> = vec![
        ("ttl", Box::new(|v| v["ttl"] = json!(86_401))),
        ("ttl", Box::new(|v| v["ttl"] = json!(-1))),
        ("ttl", Box::new(|v| v["ttl"] = json!("30"))),
        (
            "policy",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("policy");
            }),
        ),
        ("policy", Box::new(|v| v["policy"] = json!("Random"))),
        (
            "healthCheck.port",
            Box::new(|v| v["healthCheck"] = json!({"periodSeconds": 5})),
        ),
        (
            "healthCheck.port",
            Box::new(|v| v["healthCheck"] = json!({"port": 0})),
        ),
        (
            "healthCheck.port",
            Box::new(|v| v["healthCheck"] = json!({"port": 65_536})),
        ),
        (
            "healthCheck.periodSeconds",
            Box::new(|v| v["healthCheck"] = json!({"port": 443, "periodSeconds": 3601})),
        ),
        (
            "healthCheck.timeoutSeconds",
            Box::new(|v| {
                v["healthCheck"] = json!({"port": 443, "periodSeconds": 3, "timeoutSeconds": 4})
            }),
        ),
        (
            "healthCheck.failureThreshold",
            Box::new(|v| v["healthCheck"] = json!({"port": 443, "failureThreshold": 11})),
        ),
        (
            "healthCheck.successThreshold",
            Box::new(|v| v["healthCheck"] = json!({"port": 443, "successThreshold": 0})),
        ),
        (
            "targets",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("targets");
            }),
        ),
        ("targets", Box::new(|v| v["targets"] = json!([]))),
        (
            "targets",
            Box::new(|v| {
                v["targets"] = Value::Array(
                    (0..65)
                        .map(|i| json!({"name": format!("t{i}"), "address": "192.0.2.1"}))
                        .collect(),
                )
            }),
        ),
        (
            "targets[0].name",
            Box::new(|v| v["targets"][0]["name"] = json!("DC1")),
        ),
        (
            "targets[0].name",
            Box::new(|v| v["targets"][0]["name"] = json!("-dc")),
        ),
        (
            "targets[1].name",
            Box::new(|v| v["targets"][1]["name"] = json!("dc1")),
        ),
        (
            "targets[1].address",
            Box::new(|v| v["targets"][1]["address"] = json!("10.0.0")),
        ),
        (
            "targets[0].address",
            Box::new(|v| {
                v["targets"][0].as_object_mut().unwrap().remove("address");
            }),
        ),
        (
            "targets[0].locality",
            Box::new(|v| v["targets"][0]["locality"] = json!("a/b/c/d")),
        ),
        (
            "targets[0].locality",
            Box::new(|v| v["targets"][0]["locality"] = json!("us west")),
        ),
        (
            "targets[0].ratio",
            Box::new(|v| v["targets"][0]["ratio"] = json!(10_001)),
        ),
        (
            "targets[0].port",
            Box::new(|v| v["targets"][0]["port"] = json!(70_000)),
        ),
        (
            "targets[0].probeAddress",
            Box::new(|v| v["targets"][0]["probeAddress"] = json!("gateway.local")),
        ),
        ("allDown", Box::new(|v| v["allDown"] = json!("Fail"))),
        (
            "failover",
            Box::new(|v| v["failover"] = json!([{"from": "a", "to": "b"}])),
        ),
        (
            "distribute",
            Box::new(|v| v["distribute"] = json!([{"from": "a", "to": {"b": 1}}])),
        ),
        (
            "failover[0].to",
            Box::new(|v| {
                v["policy"] = json!("Locality");
                v["failover"] = json!([{"from": "us-west", "to": "us-east/zone-a"}]);
            }),
        ),
        (
            "distribute[0].from",
            Box::new(|v| {
                v["policy"] = json!("Locality");
                v["distribute"] = json!([{"from": "a/b/c/d", "to": {"b": 1}}]);
            }),
        ),
        (
            "distribute[0].to",
            Box::new(|v| {
                v["policy"] = json!("Locality");
                v["distribute"] = json!([{"from": "a", "to": {"b": 0, "c": 0}}]);
            }),
        ),
        (
            "distribute[0].to.b",
            Box::new(|v| {
                v["policy"] = json!("Locality");
                v["distribute"] = json!([{"from": "a", "to": {"b": 10_001}}]);
            }),
        ),
        (
            "name",
            Box::new(|v| v["name"] = json!("bad name.gslb.example")),
        ),
    ];
    for (field, mutate) in &cases {
        let mut body = base.clone();
        mutate(&mut body);
        let r = s.put_json(&path(name), &body);
        let (msg, got) = expect_error(&r, 422);
        assert_eq!(got.as_deref(), Some(*field), "{body}: {msg}");
    }
    // An unknown field is a broken rule too (a typo must not be silently dropped).
    let mut body = base.clone();
    body["tll"] = json!(30);
    let (msg, _) = expect_error(&s.put_json(&path(name), &body), 422);
    assert!(msg.contains("tll"), "{msg}");
    // A body that is JSON but not an object.
    expect_error(
        &put_raw(&s, &path(name), b"[1, 2]", Some("application/json")),
        422,
    );
    // A name outside every served zone.
    let (msg, field) = expect_error(
        &s.put_json(&path("app.example.net"), &minimal("app.example.net")),
        422,
    );
    assert_eq!(field.as_deref(), Some("name"));
    assert!(msg.contains("app.example.net"), "{msg}");
    // None of this created anything.
    assert_eq!(s.get(NS).json(), json!({"items": []}));
}

#[test]
fn a_rejected_request_changes_nothing() {
    let s = Server::start();
    let p = path("app.gslb.example");
    let before = s.put_ns(&minimal("app.gslb.example"));
    let dns_before = a_records(&s, "app.gslb.example");
    assert_eq!(dns_before, ["192.0.2.10", "198.51.100.10"]);

    let mut invalid = minimal("app.gslb.example");
    invalid["targets"][0]["address"] = json!("192.0.2.99");
    invalid["targets"][1]["ratio"] = json!(-5);
    expect_error(&s.put_json(&p, &invalid), 422);
    let mut mismatch = minimal("app2.gslb.example");
    mismatch["targets"][0]["address"] = json!("192.0.2.99");
    expect_error(&s.put_json(&p, &mismatch), 422);
    expect_error(
        &put_raw(&s, &p, b"{\"policy\": \"Ratio\"", Some("application/json")),
        400,
    );
    let mut changed = minimal("app.gslb.example");
    changed["targets"][0]["address"] = json!("192.0.2.99");
    expect_error(
        &put_raw(&s, &p, changed.to_string().as_bytes(), Some("text/json")),
        415,
    );

    let after = s.get(&p).json();
    assert_eq!(
        without_transition_time(after),
        without_transition_time(before)
    );
    assert_eq!(a_records(&s, "app.gslb.example"), dns_before);
    assert_eq!(s.get(NS).json()["items"].as_array().unwrap().len(), 1);
}

#[test]
fn token_guards_every_api_call() {
    let token = "s3cret-token";
    let s = Server::start_with(ServerOpts {
        token: Some(token.to_string()),
        ..ServerOpts::default()
    });
    let body = minimal("app.gslb.example").to_string();
    let calls: [(&str, String, Option<&[u8]>); 5] = [
        ("GET", NS.to_string(), None),
        ("GET", path("app.gslb.example"), None),
        ("PUT", path("app.gslb.example"), Some(body.as_bytes())),
        ("DELETE", path("app.gslb.example"), None),
        ("GET", "/api/v1/unknown".to_string(), None),
    ];
    for (method, p, b) in &calls {
        for bad in [
            None,
            Some("wrong"),
            Some("s3cret-toke"),
            Some("s3cret-token2"),
        ] {
            let r = http(s.api, method, p, *b, bad, Some("application/json")).unwrap();
            let (msg, _) = expect_error(&r, 401);
            assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{method} {p}");
            assert!(!msg.contains(token), "{msg}");
        }
    }
    // Nothing got through.
    let r = http(s.api, "GET", NS, None, Some(token), None).unwrap();
    assert_eq!(r.json(), json!({"items": []}));
    // With the token, everything works.
    let r = http(
        s.api,
        "PUT",
        &path("app.gslb.example"),
        Some(body.as_bytes()),
        Some(token),
        Some("application/json"),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(s.get(&path("app.gslb.example")).status, 200);
    // /healthz and /metrics never need it.
    for open in ["/healthz", "/metrics"] {
        assert_eq!(
            http(s.api, "GET", open, None, None, None).unwrap().status,
            200
        );
    }
    // The token never reaches the log.
    assert!(!s.log_text().contains(token));
}

#[test]
fn token_from_the_environment() {
    let token = "from-env-token";
    let s = Server::start_with(ServerOpts {
        env: vec![("GSLB_API_TOKEN".to_string(), token.to_string())],
        ..ServerOpts::default()
    });
    expect_error(&http(s.api, "GET", NS, None, None, None).unwrap(), 401);
    let r = http(s.api, "GET", NS, None, Some(token), None).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn refuses_a_non_loopback_api_without_a_token() {
    let tmp = TempDir::new("exposed");
    let out = Command::new(BIN)
        .arg("serve")
        .arg("--api-listen")
        .arg(format!("0.0.0.0:{}", free_port()))
        .arg("--dns-listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .arg("--zones-dir")
        .arg(std::path::Path::new(REPO).join("zones"))
        .env_remove("GSLB_API_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("0.0.0.0") && lines[0].contains("token"),
        "{stderr}"
    );
}

#[test]
fn writes_survive_kill_9() {
    let mut s = Server::start();
    s.put_ns(&minimal("app.gslb.example"));
    s.put_ns(&minimal("gone.gslb.example"));
    let mut replaced = minimal("app.gslb.example");
    replaced["targets"] = json!([{"name": "dc9", "address": "192.0.2.99"},
                                 {"name": "dc9-v6", "address": "2001:db8::99"}]);
    assert_eq!(s.put_json(&path("app.gslb.example"), &replaced).status, 200);
    assert_eq!(s.delete(&path("gone.gslb.example")).status, 204);
    // Right after the last 2xx: no graceful anything.
    s.kill9_and_restart();

    let r = s.get(&path("app.gslb.example"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["targets"][0]["name"], "dc9");
    expect_error(&s.get(&path("gone.gslb.example")), 404);
    assert_eq!(a_records(&s, "app.gslb.example"), ["192.0.2.99"]);
    let aaaa = addrs(&s.udp("app.gslb.example", RecordType::AAAA));
    assert_eq!(aaaa.len(), 1);
    assert_eq!(aaaa[0].to_string(), "2001:db8::99");
    assert_eq!(
        s.udp("gone.gslb.example", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
}

#[test]
fn sigterm_exits_0_and_keeps_the_data() {
    let mut s = Server::start();
    s.put_ns(&minimal("app.gslb.example"));
    assert_eq!(s.terminate(), Some(0));
    s.restart_same_data();
    assert_eq!(s.get(&path("app.gslb.example")).status, 200);
    assert_eq!(s.terminate(), Some(0));
}

#[test]
fn metrics_count_api_requests_and_nameservices() {
    let s = Server::start();
    s.put_ns(&minimal("app.gslb.example"));
    s.put_ns(&minimal("b.gslb.example"));
    s.get(&path("app.gslb.example"));
    s.get(&path("absent.gslb.example"));
    s.get("/no/such/path");
    let r = s.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.body;
    for line in [
        "# TYPE gslb_api_requests_total counter",
        "gslb_api_requests_total{route=\"/api/v1/nameservices/{name}\",method=\"PUT\",status=\"201\"} 2",
        "gslb_api_requests_total{route=\"/api/v1/nameservices/{name}\",method=\"GET\",status=\"200\"} 1",
        "gslb_api_requests_total{route=\"/api/v1/nameservices/{name}\",method=\"GET\",status=\"404\"} 1",
        "gslb_api_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1",
        "# TYPE gslb_nameservices gauge",
        "gslb_nameservices 2",
        &format!(
            "gslb_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
        "# TYPE process_cpu_seconds_total counter",
        "# TYPE process_resident_memory_bytes gauge",
        "# TYPE process_open_fds gauge",
        "# TYPE process_max_fds gauge",
        "# TYPE process_start_time_seconds gauge",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    // /healthz is counted too; every sample line is `name{labels} value`.
    assert!(wait_until(Duration::from_secs(5), || {
        s.get("/metrics").body.contains("route=\"/metrics\"")
    }));
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = l.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{l}");
    }
    // The process metrics describe the server process, not this test.
    let sample = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
            .parse()
            .unwrap()
    };
    let fds = std::fs::read_dir(format!("/proc/{}/fd", s.pid()))
        .unwrap()
        .count() as f64;
    assert!(
        (sample("process_open_fds") - fds).abs() <= 8.0,
        "{fds} vs\n{text}"
    );
    let started = std::fs::metadata(format!("/proc/{}", s.pid()))
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((sample("process_start_time_seconds") - started).abs() < 5.0);
    assert!(sample("process_resident_memory_bytes") > 1e6);
}

#[test]
fn startup_log_names_version_config_zones_and_registry_size() {
    let mut s = Server::start_with(ServerOpts {
        config: Some("# empty\n".into()),
        ..ServerOpts::default()
    });
    s.put_ns(&minimal("app.gslb.example"));
    assert_eq!(s.terminate(), Some(0));
    s.restart_same_data();
    let log = s.log_text();
    let last_start = &log[log.rfind("starting").expect("a start line")..];
    assert!(
        log.contains(&format!("gslb {} starting", env!("CARGO_PKG_VERSION"))),
        "{log}"
    );
    assert!(log.contains("config=") && log.contains(".toml"), "{log}");
    assert!(
        last_start.contains("zone=gslb.example serial=2026010101"),
        "{log}"
    );
    assert!(last_start.contains("nameservices=1"), "{log}");
}

#[test]
fn the_readme_example_answers_in_dns_and_every_example_is_accepted() {
    let s = Server::start();
    let dir = std::path::Path::new(REPO).join("api/examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    for f in &files {
        let text = std::fs::read(f).unwrap();
        let v: Value = serde_json::from_slice(&text).unwrap();
        let name = v["name"].as_str().unwrap();
        let parsed = gslb::model::NameService::from_json(v.clone())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let r = put_raw(&s, &path(name), &text, Some("application/json"));
        assert_eq!(r.status, 201, "{}: {}", f.display(), r.body);
        // The server stores exactly what the model makes of the file.
        let mut stored = r.json();
        stored.as_object_mut().unwrap().remove("status");
        assert_eq!(
            stored,
            serde_json::to_value(&parsed).unwrap(),
            "{}",
            f.display()
        );
    }
    // README: PUT app.json, then `dig app.gslb.example A` shows addresses.
    let v4 = a_records(&s, "app.gslb.example");
    assert!(!v4.is_empty());
    let app: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("app.json")).unwrap()).unwrap();
    assert!(
        app.get("healthCheck").is_none(),
        "app.json must answer at once"
    );
    for a in &v4 {
        assert!(
            app["targets"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["address"] == a.as_str()),
            "{a}"
        );
    }
}

/// api/openapi.yaml describes exactly the routes the code serves, with every status.
#[test]
fn openapi_lists_every_route() {
    let text =
        std::fs::read_to_string(std::path::Path::new(REPO).join("api/openapi.yaml")).unwrap();
    assert!(text.starts_with("openapi: 3."), "not an OpenAPI 3 document");
    assert!(!text.contains('\t'), "tabs in YAML");
    // A light structural check: the keys directly under `paths:`.
    let mut in_paths = false;
    let mut documented = Vec::new();
    let mut methods: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_paths = line == "paths:";
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(p) = line.strip_prefix("  ").filter(|l| !l.starts_with(' ')) {
            documented.push(p.trim_end_matches(':').to_string());
        } else if let Some(m) = line.strip_prefix("    ").filter(|l| !l.starts_with(' ')) {
            let m = m.trim_end_matches(':');
            if m != "parameters" {
                methods.push((documented.last().unwrap().clone(), m.to_string()));
            }
        }
    }
    let mut served: Vec<String> = gslb::api::ROUTES.iter().map(|r| r.to_string()).collect();
    served.sort();
    documented.sort();
    assert_eq!(documented, served);
    methods.sort();
    let expected = [
        ("/api/v1/events", "get"),
        ("/api/v1/instances", "get"),
        ("/api/v1/nameservices", "get"),
        ("/api/v1/nameservices/{name}", "delete"),
        ("/api/v1/nameservices/{name}", "get"),
        ("/api/v1/nameservices/{name}", "put"),
        ("/api/v1/nameservices/{name}/explain", "get"),
        (
            "/api/v1/nameservices/{name}/targets/{target}/override",
            "delete",
        ),
        (
            "/api/v1/nameservices/{name}/targets/{target}/override",
            "put",
        ),
        ("/api/v1/reload", "post"),
        ("/healthz", "get"),
        ("/metrics", "get"),
        ("/ui", "get"),
        ("/ui/", "get"),
        ("/ui/{asset}", "get"),
    ];
    assert_eq!(
        methods,
        expected
            .iter()
            .map(|(p, m)| (p.to_string(), m.to_string()))
            .collect::<Vec<_>>()
    );
    for status in [
        "200", "201", "204", "308", "400", "401", "403", "404", "405", "409", "412", "413", "415",
        "422", "500", "503", "507",
    ] {
        assert!(
            text.contains(&format!("\"{status}\":")),
            "status {status} undocumented"
        );
    }
    for needle in [
        "bearerAuth",
        "WWW-Authenticate",
        "security: []",
        "NameServiceInput",
        "ETag",
        "If-Match",
        "If-None-Match",
        "Status",
        "Error",
    ] {
        assert!(text.contains(needle), "{needle} missing");
    }
}
