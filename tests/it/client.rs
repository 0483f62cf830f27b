//! Integration tests: the command line as a client of the API (CONTRACT §10): the
//! real binary against a real server.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::harness::{BIN, Server, ServerOpts, TempDir, free_port};

/// Runs `gslb ARGS --server <api>` with `token` in GSLB_API_TOKEN and `stdin`.
fn gslb(s: &Server, args: &[&str], token: Option<&str>, stdin: Option<&str>) -> Output {
    gslb_at(&format!("http://{}", s.api), args, token, stdin)
}

fn gslb_at(server: &str, args: &[&str], token: Option<&str>, stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).arg("--server").arg(server);
    cmd.env_remove("GSLB_API_TOKEN");
    if let Some(t) = token {
        cmd.env("GSLB_API_TOKEN", t);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

const TWO: &str = "\
name: app.gslb.example
policy: RoundRobin
targets:
  - name: dc1
    address: 192.0.2.10
  - name: dc2
    address: 198.51.100.10
---
name: ratio.gslb.example
policy: Ratio
ttl: 20
targets:
  - {name: dc1, address: 192.0.2.11, ratio: 3}
  - {name: dc2, address: 198.51.100.11, ratio: 1}
";

#[test]
fn apply_get_delete_like_kubectl() {
    let s = Server::start();
    let dir = TempDir::new("cli");
    let file = dir.path().join("two.yaml");
    std::fs::write(&file, TWO).unwrap();
    let f = file.to_str().unwrap();

    let o = gslb(&s, &["apply", "-f", f], None, None);
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(
        out(&o),
        "nameservice/app.gslb.example created\nnameservice/ratio.gslb.example created\n"
    );
    // The same again: nothing to do (defaults filled in by the server compare equal).
    let o = gslb(&s, &["apply", "-f", f], None, None);
    assert_eq!(
        out(&o),
        "nameservice/app.gslb.example unchanged\nnameservice/ratio.gslb.example unchanged\n",
        "{}",
        err(&o)
    );
    // One changed, through stdin as JSON.
    let o = gslb(
        &s,
        &["apply", "-f", "-"],
        None,
        Some(
            r#"{"name": "ratio.gslb.example", "policy": "Ratio", "ttl": 5,
               "targets": [{"name": "dc1", "address": "192.0.2.11", "ratio": 3}]}"#,
        ),
    );
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(out(&o), "nameservice/ratio.gslb.example configured\n");
    assert_eq!(
        s.get("/api/v1/nameservices/ratio.gslb.example").json()["ttl"],
        5
    );

    // get: a table, and the resources as JSON and YAML.
    let o = gslb(&s, &["get"], None, None);
    assert_eq!(code(&o), 0, "{}", err(&o));
    let table = out(&o);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("READY"),
        "{table}"
    );
    assert!(lines[1].starts_with("app.gslb.example "), "{table}");
    assert!(
        lines[1].contains("2/2") && lines[1].contains("AllTargetsHealthy"),
        "{table}"
    );
    assert!(lines[2].starts_with("ratio.gslb.example "), "{table}");
    let o = gslb(&s, &["get", "app.gslb.example", "-o", "json"], None, None);
    let v: Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["name"], "app.gslb.example");
    assert_eq!(v["status"]["targets"][1]["health"], "Unchecked");
    let o = gslb(&s, &["get", "-o", "yaml"], None, None);
    let y: Value = serde_yaml_ng::from_str(&out(&o)).unwrap();
    assert_eq!(y["items"].as_array().unwrap().len(), 2);
    // What get -o yaml prints can be applied back as it is: unchanged.
    let back = dir.path().join("back.yaml");
    std::fs::write(&back, out(&o)).unwrap();
    let o = gslb(&s, &["apply", "-f", back.to_str().unwrap()], None, None);
    assert_eq!(
        out(&o),
        "nameservice/app.gslb.example unchanged\nnameservice/ratio.gslb.example unchanged\n",
        "{}",
        err(&o)
    );

    // delete, then get: the API's 404 message, exit 1.
    let o = gslb(&s, &["delete", "app.gslb.example"], None, None);
    assert_eq!(
        (code(&o), out(&o)),
        (0, "nameservice/app.gslb.example deleted\n".into())
    );
    let o = gslb(&s, &["get", "app.gslb.example"], None, None);
    assert_eq!(code(&o), 1);
    assert!(
        err(&o).contains("404") && err(&o).contains("app.gslb.example"),
        "{}",
        err(&o)
    );
    let o = gslb(&s, &["delete", "app.gslb.example"], None, None);
    assert_eq!(code(&o), 1, "{}", err(&o));
}

#[test]
fn refusals_show_the_api_message_and_field_and_the_rest_goes_on() {
    let s = Server::start();
    let doc = "\
name: bad.gslb.example
policy: RoundRobin
ttl: 90000
targets: [{name: dc1, address: 192.0.2.10}]
---
name: good.gslb.example
policy: RoundRobin
targets: [{name: dc1, address: 192.0.2.10}]
";
    let o = gslb(&s, &["apply", "-f", "-"], None, Some(doc));
    assert_eq!(code(&o), 1);
    let e = err(&o);
    assert!(
        e.contains("nameservice/bad.gslb.example") && e.contains("422"),
        "{e}"
    );
    assert!(e.contains("(field ttl)"), "{e}");
    assert_eq!(out(&o), "nameservice/good.gslb.example created\n");
    assert_eq!(s.get("/api/v1/nameservices/bad.gslb.example").status, 404);
}

#[test]
fn tokens_roles_and_exit_codes() {
    let s = Server::start_with(ServerOpts {
        config: Some(
            "[[api_tokens]]\nname = \"ci\"\ntoken = \"w-secret-1\"\nrole = \"write\"\n\
             [[api_tokens]]\nname = \"ro\"\ntoken = \"r-secret-1\"\nrole = \"read\"\n"
                .into(),
        ),
        ..ServerOpts::default()
    });
    let one = r#"{"name": "t.gslb.example", "policy": "RoundRobin", "targets": [{"name": "dc1", "address": "192.0.2.10"}]}"#;
    // No token: 401 from the API, exit 1.
    let o = gslb(&s, &["get"], None, None);
    assert_eq!(code(&o), 1);
    assert!(err(&o).contains("401"), "{}", err(&o));
    // A read token reads, and cannot write: 403 naming the role.
    let o = gslb(&s, &["get"], Some("r-secret-1"), None);
    assert_eq!(code(&o), 0, "{}", err(&o));
    let o = gslb(&s, &["apply", "-f", "-"], Some("r-secret-1"), Some(one));
    assert_eq!(code(&o), 1);
    assert!(
        err(&o).contains("403") && err(&o).contains("read role"),
        "{}",
        err(&o)
    );
    // The write token writes; the event names it.
    let o = gslb(&s, &["apply", "-f", "-"], Some("w-secret-1"), Some(one));
    assert_eq!(
        (code(&o), out(&o)),
        (0, "nameservice/t.gslb.example created\n".into())
    );
    let ev = crate::harness::http(
        s.api,
        "GET",
        "/api/v1/events?kind=Created",
        None,
        Some("r-secret-1"),
        None,
    )
    .unwrap()
    .json();
    assert_eq!(ev["items"][0]["token"], "ci");

    // Exit 2: bad input or usage; exit 3: nobody listening.
    let o = gslb(
        &s,
        &["apply", "-f", "/nonexistent/x.yaml"],
        Some("w-secret-1"),
        None,
    );
    assert_eq!(code(&o), 2, "{}", err(&o));
    let o = gslb(
        &s,
        &["apply", "-f", "-"],
        Some("w-secret-1"),
        Some("name: [oops"),
    );
    assert_eq!(code(&o), 2, "{}", err(&o));
    let o = gslb(
        &s,
        &[
            "drain",
            "t.gslb.example",
            "dc1",
            "--reason",
            "x",
            "--for",
            "soon",
        ],
        Some("w-secret-1"),
        None,
    );
    assert_eq!(code(&o), 2, "{}", err(&o));
    let o = gslb(&s, &["get"], None, None);
    assert_ne!(code(&o), 2);
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let o = gslb_at(&nobody, &["get"], None, None);
    assert_eq!(code(&o), 3, "{}", err(&o));
    let o = gslb_at("ftp://x", &["get"], None, None);
    assert_eq!(code(&o), 2, "{}", err(&o));
}

#[test]
fn explain_prints_the_decision_as_yaml_or_json() {
    let s = Server::start();
    let one = r#"{"name": "x.gslb.example", "policy": "Ratio", "targets": [{"name": "dc1", "address": "192.0.2.10", "ratio": 3}, {"name": "dc2", "address": "198.51.100.10", "ratio": 1}]}"#;
    let o = gslb(&s, &["apply", "-f", "-"], None, Some(one));
    assert_eq!(code(&o), 0, "{}", err(&o));
    let o = gslb(
        &s,
        &[
            "explain",
            "x.gslb.example",
            "--client",
            "10.1.2.3",
            "-o",
            "json",
        ],
        None,
        None,
    );
    assert_eq!(code(&o), 0, "{}", err(&o));
    let v: Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["name"], "x.gslb.example");
    assert_eq!(v["targets"].as_array().unwrap().len(), 2);
    // The default output is YAML of the same document.
    let o = gslb(
        &s,
        &["explain", "x.gslb.example", "--client", "10.1.2.3"],
        None,
        None,
    );
    let y: Value = serde_yaml_ng::from_str(&out(&o)).unwrap();
    assert_eq!(y["name"], "x.gslb.example");
    assert_eq!(y["policy"], v["policy"]);
    // A bad client address: the API's message and field, exit 1.
    let o = gslb(
        &s,
        &["explain", "x.gslb.example", "--client", "nope"],
        None,
        None,
    );
    assert_eq!(code(&o), 1);
    assert!(
        err(&o).contains("400") && err(&o).contains("(field client)"),
        "{}",
        err(&o)
    );
}

/// `gslb drain` / `gslb undrain`: the target leaves and rejoins the answers, the
/// output says until when, the API's 409 (the last eligible target) and 404 come
/// through with their message, and `--force` drains anyway.
#[test]
fn drain_and_undrain_steer_the_answers() {
    use hickory_proto::rr::RecordType;
    let s = Server::start_with(ServerOpts {
        config: Some(
            "[[api_tokens]]\nname = \"oncall\"\ntoken = \"w-secret-2\"\nrole = \"write\"\n".into(),
        ),
        ..ServerOpts::default()
    });
    let tok = Some("w-secret-2");
    let one = r#"{"name": "d.gslb.example", "policy": "RoundRobin", "targets": [{"name": "dc1", "address": "192.0.2.10"}, {"name": "dc2", "address": "198.51.100.10"}]}"#;
    let o = gslb(&s, &["apply", "-f", "-"], tok, Some(one));
    assert_eq!(code(&o), 0, "{}", err(&o));
    let answers = || {
        let mut a: Vec<String> = crate::harness::addrs(&s.udp("d.gslb.example.", RecordType::A))
            .iter()
            .map(ToString::to_string)
            .collect();
        a.sort();
        a
    };
    assert_eq!(answers(), ["192.0.2.10", "198.51.100.10"]);

    let o = gslb(
        &s,
        &[
            "drain",
            "d.gslb.example",
            "dc1",
            "--reason",
            "kernel upgrade",
            "--for",
            "30m",
        ],
        tok,
        None,
    );
    assert_eq!(code(&o), 0, "{}", err(&o));
    let line = out(&o);
    assert!(
        line.starts_with("nameservice/d.gslb.example target dc1 drained until 20"),
        "{line}"
    );
    assert_eq!(answers(), ["198.51.100.10"]);
    let status = crate::harness::http(
        s.api,
        "GET",
        "/api/v1/nameservices/d.gslb.example",
        None,
        tok,
        None,
    )
    .unwrap()
    .json();
    let ov = &status["status"]["targets"][0]["override"];
    assert_eq!(
        (&ov["state"], &ov["reason"], &ov["by"]),
        (&"Drain".into(), &"kernel upgrade".into(), &"oncall".into()),
        "{ov}"
    );
    // The line's end is the override's end, 30 minutes from now.
    assert!(
        line.trim_end().ends_with(ov["expiresAt"].as_str().unwrap()),
        "{line}"
    );

    // The last eligible target: the API refuses (409) unless forced.
    let o = gslb(
        &s,
        &["drain", "d.gslb.example", "dc2", "--reason", "x"],
        tok,
        None,
    );
    assert_eq!(code(&o), 1, "{}", out(&o));
    assert!(err(&o).contains("409"), "{}", err(&o));
    assert_eq!(answers(), ["198.51.100.10"]);
    let o = gslb(
        &s,
        &["drain", "d.gslb.example", "dc2", "--reason", "x", "--force"],
        tok,
        None,
    );
    assert_eq!(code(&o), 0, "{}", err(&o));
    let o = gslb(&s, &["undrain", "d.gslb.example", "dc2"], tok, None);
    assert_eq!(code(&o), 0, "{}", err(&o));

    let o = gslb(&s, &["undrain", "d.gslb.example", "dc1"], tok, None);
    assert_eq!(
        (code(&o), out(&o)),
        (
            0,
            "nameservice/d.gslb.example target dc1 undrained\n".into()
        ),
        "{}",
        err(&o)
    );
    assert_eq!(answers(), ["192.0.2.10", "198.51.100.10"]);
    // Nothing left to undrain, and no such target: the API's 404 and message.
    let o = gslb(&s, &["undrain", "d.gslb.example", "dc1"], tok, None);
    assert_eq!(code(&o), 1);
    assert!(err(&o).contains("404"), "{}", err(&o));
    let o = gslb(
        &s,
        &["drain", "d.gslb.example", "dc9", "--reason", "x"],
        tok,
        None,
    );
    assert_eq!(code(&o), 1);
    assert!(
        err(&o).contains("404") && err(&o).contains("dc9"),
        "{}",
        err(&o)
    );
}
