//! Integration tests: the registry in its embedded (sled) form — the instance's
//! name, the revision it has applied, `GET /api/v1/instances`.

use serde_json::{Value, json};

use crate::harness::{Server, ServerOpts};

fn minimal(name: &str) -> Value {
    json!({"name": name, "policy": "RoundRobin",
           "targets": [{"name": "dc1", "address": "192.0.2.10"}]})
}

fn instances(s: &Server) -> Vec<Value> {
    let r = s.get("/api/v1/instances");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["items"].as_array().unwrap().clone()
}

#[test]
fn instances_lists_this_instance_and_its_revision() {
    let mut s = Server::start_with(ServerOpts {
        extra_args: vec!["--instance".into(), "dc1-a".into()],
        ..ServerOpts::default()
    });
    let items = instances(&s);
    assert_eq!(items.len(), 1, "{items:?}");
    let me = &items[0];
    assert_eq!(me["name"], "dc1-a");
    assert_eq!(me["self"], true);
    assert_eq!(me["revision"], 0);
    assert!(me["lastSeen"].as_str().unwrap().ends_with('Z'));
    let keys: Vec<&String> = me.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4, "{me}");

    // Every accepted change moves the revision; a refused or unchanged one does not.
    s.put_ns(&minimal("a.gslb.example"));
    s.put_ns(&minimal("b.gslb.example"));
    s.put_ns(&minimal("b.gslb.example"));
    assert_eq!(
        s.delete("/api/v1/nameservices/nope.gslb.example").status,
        404
    );
    assert_eq!(instances(&s)[0]["revision"], 2);
    assert_eq!(s.delete("/api/v1/nameservices/a.gslb.example").status, 204);
    assert_eq!(instances(&s)[0]["revision"], 3);

    // The revision is stored with the changes: it survives kill -9.
    s.kill9_and_restart();
    assert_eq!(instances(&s)[0]["revision"], 3);
}

#[test]
fn the_instance_name_comes_from_the_config_file_and_is_checked() {
    let s = Server::start_with(ServerOpts {
        config: Some("[registry]\ninstance = \"edge-7\"\n".into()),
        ..ServerOpts::default()
    });
    assert_eq!(instances(&s)[0]["name"], "edge-7");
    drop(s);

    let out = std::process::Command::new(crate::harness::BIN)
        .args([
            "serve",
            "--instance",
            "no spaces",
            "--data-dir",
            "/nonexistent",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--instance") && err.contains("no spaces"),
        "{err}"
    );
}

fn etag(r: &crate::harness::Resp) -> String {
    r.header("etag")
        .unwrap_or_else(|| panic!("no ETag: {:?}", r.headers))
        .to_string()
}

#[test]
fn etags_and_conditional_writes() {
    use crate::harness::http_with;
    let s = Server::start();
    let p = "/api/v1/nameservices/app.gslb.example";
    let body = minimal("app.gslb.example").to_string();
    let req = |method: &str, body: Option<&str>, headers: &[&str]| {
        http_with(s.api, method, p, body.map(str::as_bytes), None, headers).unwrap()
    };

    // If-Match on a name that does not exist: 412, nothing created.
    let r = req("PUT", Some(&body), &["If-Match: \"1\""]);
    assert_eq!(r.status, 412, "{}", r.body);
    assert!(r.json()["error"].as_str().unwrap().contains("If-Match"));
    assert_eq!(s.get(p).status, 404);

    // If-None-Match: * creates once, then 412.
    let r = req("PUT", Some(&body), &["If-None-Match: *"]);
    assert_eq!(r.status, 201, "{}", r.body);
    let first = etag(&r);
    assert_eq!(first, "\"1\"");
    let r = req("PUT", Some(&body), &["If-None-Match: *"]);
    assert_eq!(r.status, 412, "{}", r.body);

    // GET carries the same ETag; an unchanged PUT keeps it.
    assert_eq!(etag(&s.get(p)), first);
    assert_eq!(etag(&req("PUT", Some(&body), &[])), first);

    // Two writers that read the same version: one wins, the other gets 412.
    let mut v2 = minimal("app.gslb.example");
    v2["ttl"] = json!(60);
    let mut v3 = minimal("app.gslb.example");
    v3["ttl"] = json!(90);
    let if_first = format!("If-Match: {first}");
    let r = req("PUT", Some(&v2.to_string()), &[&if_first]);
    assert_eq!(r.status, 200, "{}", r.body);
    let second = etag(&r);
    assert_ne!(second, first);
    let r = req("PUT", Some(&v3.to_string()), &[&if_first]);
    assert_eq!(r.status, 412, "{}", r.body);
    assert_eq!(s.get(p).json()["ttl"], 60);

    // A list, a weak tag (never matches If-Match), garbage.
    let r = req(
        "PUT",
        Some(&v3.to_string()),
        &[&format!("If-Match: W/{second}")],
    );
    assert_eq!(r.status, 412);
    let r = req(
        "PUT",
        Some(&v3.to_string()),
        &[&format!("If-Match: \"999\", {second}")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let third = etag(&r);
    let r = req("PUT", Some(&v3.to_string()), &["If-Match: nope"]);
    assert_eq!(r.status, 400, "{}", r.body);

    // DELETE under If-Match.
    let r = req("DELETE", None, &[&format!("If-Match: {second}")]);
    assert_eq!(r.status, 412);
    assert_eq!(s.get(p).status, 200);
    let r = req("DELETE", None, &[&format!("If-Match: {third}")]);
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(s.get(p).status, 404);
    // Deleted and created again: a new version, never an old ETag.
    let r = req("PUT", Some(&body), &[]);
    assert_eq!(r.status, 201);
    let fourth = etag(&r);
    assert!(![&first, &second, &third].contains(&&fourth), "{fourth}");
}
