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
