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

/// Starts `gslb serve` on `data` and returns `Ok(server)` once ready, or `Err(log)`
/// if it exits first.
fn try_start(data: &std::path::Path) -> Result<Server, String> {
    let dns = format!("127.0.0.1:{}", crate::harness::free_port());
    let api: std::net::SocketAddr = format!("127.0.0.1:{}", crate::harness::free_port())
        .parse()
        .unwrap();
    let mut child = std::process::Command::new(crate::harness::BIN)
        .args([
            "serve",
            "--dns-listen",
            &dns,
            "--api-listen",
            &api.to_string(),
        ])
        .arg("--data-dir")
        .arg(data)
        .arg("--zones-dir")
        .arg(std::path::Path::new(crate::harness::REPO).join("zones"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        if crate::harness::http_get(api, "/healthz", None).is_ok_and(|r| r.status == 200) {
            let _ = child.stderr.take();
            return Ok(Server {
                child: Some(child),
                dns: dns.parse().unwrap(),
                api,
                data: data.to_path_buf(),
                log: data.join("unused.log"),
                opts: ServerOpts::default(),
                _tmp: None,
            });
        }
        assert!(
            std::time::Instant::now() < deadline,
            "neither ready nor exited"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A damaged store never starts as a partial registry: each damaged copy either
/// refuses to start, naming the data dir, or serves every name.
#[test]
fn a_flipped_byte_or_a_truncated_store_is_refused_at_startup() {
    const NAMES: usize = 300;
    let mut s = Server::start();
    for i in 0..NAMES {
        s.put_ns(&minimal(&format!("n{i}.gslb.example")));
    }
    assert_eq!(s.terminate(), Some(0));
    let tmp = crate::harness::TempDir::new("damage");
    let db_len = std::fs::metadata(s.data.join("db")).unwrap().len();
    let mut refused = 0;
    // Bytes spread over the whole file, and truncations.
    let damages: Vec<(&str, u64)> = (1..16)
        .map(|k| ("flip", db_len * k / 16))
        .chain([
            ("truncate", db_len / 2),
            ("truncate", db_len / 8),
            ("truncate", 0),
        ])
        .collect();
    for (n, (how, at)) in damages.iter().enumerate() {
        let copy = tmp.path().join(format!("d{n}"));
        copy_dir(&s.data, &copy);
        let db = copy.join("db");
        let mut bytes = std::fs::read(&db).unwrap();
        match *how {
            "flip" => bytes[*at as usize] ^= 0x5a,
            _ => bytes.truncate(*at as usize),
        }
        std::fs::write(&db, bytes).unwrap();
        match try_start(&copy) {
            Err(log) => {
                refused += 1;
                assert!(
                    log.contains(&copy.display().to_string()),
                    "{how} at {at}: the message must name the store: {log}"
                );
            }
            Ok(server) => {
                let items = server.get("/api/v1/nameservices").json()["items"]
                    .as_array()
                    .unwrap()
                    .len();
                assert_eq!(
                    items, NAMES,
                    "{how} at {at} of {db_len}: a partial registry"
                );
            }
        }
    }
    // Truncating to nothing can never be served as complete.
    assert!(refused >= 1, "nothing refused");
}

/// A small tmpfs mounted for one test (the machine's root may mount; tests run as
/// root in CI), unmounted on drop.
pub struct Tmpfs {
    pub dir: crate::harness::TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Self {
        let dir = crate::harness::TempDir::new("tmpfs");
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(
            st.success(),
            "mounting a tmpfs needs root (the full-disk test makes a small disk)"
        );
        Self { dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system holding `dir` to the last byte; returns the filler file.
pub fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    for chunk in [1 << 20, 4096, 1] {
        let buf = vec![0x55u8; chunk];
        while f.write_all(&buf).is_ok() {}
    }
    let _ = f.sync_all();
    path
}

/// CONTRACT §8: a full disk answers 507 and changes nothing; what was acknowledged
/// before stays, and writes work again once there is room.
#[test]
fn a_full_disk_answers_507_and_loses_nothing() {
    let disk = Tmpfs::mount("24m");
    let data = disk.dir.path().join("data");
    let mut s = Server::start_on(ServerOpts::default(), data.clone());
    for i in 0..20 {
        s.put_ns(&minimal(&format!("n{i}.gslb.example")));
    }
    let filler = fill(disk.dir.path());
    let mut refused = 0;
    for i in 0..5 {
        let name = format!("full{i}.gslb.example");
        let r = s.put_json(&format!("/api/v1/nameservices/{name}"), &minimal(&name));
        assert_eq!(r.status, 507, "a write on a full disk: {}", r.body);
        assert!(
            r.json()["error"].as_str().unwrap().contains("full"),
            "{}",
            r.body
        );
        assert_eq!(s.get(&format!("/api/v1/nameservices/{name}")).status, 404);
        refused += 1;
    }
    let r = s.delete("/api/v1/nameservices/n0.gslb.example");
    assert_eq!(r.status, 507, "{}", r.body);
    assert!(refused > 0, "nothing refused on a full disk");
    // DNS and reads go on.
    assert_eq!(s.get("/api/v1/nameservices/n3.gslb.example").status, 200);
    assert_eq!(
        crate::harness::addrs(&s.udp("n3.gslb.example", hickory_proto::rr::RecordType::A)).len(),
        1
    );

    // Room again: writes work again, without a restart.
    std::fs::remove_file(&filler).unwrap();
    assert!(
        crate::harness::wait_until(std::time::Duration::from_secs(10), || {
            s.put_json(
                "/api/v1/nameservices/after.gslb.example",
                &minimal("after.gslb.example"),
            )
            .status
                == 201
        }),
        "writes do not come back once the disk has room"
    );
    let acknowledged: Vec<String> = s.get("/api/v1/nameservices").json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(s.terminate(), Some(0));
    s.restart_same_data();
    let after: Vec<String> = s.get("/api/v1/nameservices").json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(after, acknowledged);
    assert!(after.contains(&"after.gslb.example".to_string()));
    // The server is gone before the disk is unmounted.
    drop(s);
}
