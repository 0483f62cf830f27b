//! Integration tests: the command line (CONTRACT §1).

use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Command, Output};

use crate::harness::{BIN, REPO, Server, ServerOpts, TempDir, free_port, http_get};

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("GSLB_API_TOKEN")
        .output()
        .expect("run gslb")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const GOOD_ZONE: &str = "$ORIGIN t.example.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 192.0.2.53\n";

fn zones_with(extra: &[(&str, &str)]) -> TempDir {
    let d = TempDir::new("zones");
    std::fs::write(d.path().join("t.example.zone"), GOOD_ZONE).unwrap();
    for (name, text) in extra {
        std::fs::write(d.path().join(name), text).unwrap();
    }
    d
}

/// Starts `gslb serve` expecting it to fail; returns (exit code, stderr).
fn serve_fails(args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve").args(args).env_remove("GSLB_API_TOKEN");
    let out = cmd.output().unwrap();
    (out.status.code(), stderr(&out))
}

fn base_args(zones: &Path, data: &Path) -> Vec<String> {
    vec![
        "--zones-dir".into(),
        zones.display().to_string(),
        "--data-dir".into(),
        data.display().to_string(),
        "--dns-listen".into(),
        format!("127.0.0.1:{}", free_port()),
        "--api-listen".into(),
        format!("127.0.0.1:{}", free_port()),
    ]
}

#[test]
fn check_accepts_the_example_zones() {
    let zones = Path::new(REPO).join("zones");
    let o = run(&["check", "--zones-dir", zones.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn check_names_file_and_line_of_a_bad_zone() {
    let d = zones_with(&[(
        "bad.example.zone",
        "$ORIGIN bad.example.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 192.0.2.999\n",
    )]);
    let o = run(&["check", "--zones-dir", d.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("bad.example.zone:5"), "{e}");
}

#[test]
fn check_rejects_a_zone_without_ns() {
    let d = zones_with(&[(
        "nons.example.zone",
        "$ORIGIN nons.example.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 3600 600 86400 60\n",
    )]);
    let o = run(&["check", "--zones-dir", d.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nons.example.zone"), "{}", stderr(&o));
}

#[test]
fn check_names_file_and_line_of_a_bad_config() {
    let d = zones_with(&[]);
    let cfg = d.path().join("gslb.toml");
    std::fs::write(&cfg, "api_listen = \"127.0.0.1:8080\"\n\n[[topology]]\ncidr = \"10.0.0.0/8\"\nlocality = \"bad locality\"\n").unwrap();
    let o = run(&[
        "check",
        "--config",
        cfg.to_str().unwrap(),
        "--zones-dir",
        d.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("gslb.toml:5"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "one clear line: {e}");
}

#[test]
fn serve_fails_fast_on_a_bad_zone() {
    let d = zones_with(&[(
        "x.example.zone",
        "$ORIGIN x.example.\n@ IN SOA ns1 hostmaster 1 3600 600 86400 60\n@ IN NS\n",
    )]);
    let data = TempDir::new("data");
    let args = base_args(d.path(), &data.path().join("d"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, e) = serve_fails(&args);
    assert_ne!(code, Some(0));
    assert!(e.contains("x.example.zone:3"), "{e}");
}

#[test]
fn serve_fails_fast_when_a_port_is_in_use() {
    let d = zones_with(&[]);
    let data = TempDir::new("data");
    let busy = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let _busy_tcp = TcpListener::bind(("127.0.0.1", port)).ok();
    let mut args = base_args(d.path(), &data.path().join("d"));
    args[5] = format!("127.0.0.1:{port}");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, e) = serve_fails(&args);
    assert_ne!(code, Some(0));
    assert!(e.contains(&port.to_string()), "{e}");

    let api_busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut args = base_args(d.path(), &data.path().join("d2"));
    args[7] = api_busy.local_addr().unwrap().to_string();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, e) = serve_fails(&args);
    assert_ne!(code, Some(0));
    assert!(
        e.contains(&api_busy.local_addr().unwrap().port().to_string()),
        "{e}"
    );
}

#[test]
fn serve_fails_fast_on_an_unusable_data_dir() {
    let d = zones_with(&[]);
    let f = TempDir::new("file");
    let file = f.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let args = base_args(d.path(), &file.join("data"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, e) = serve_fails(&args);
    assert_ne!(code, Some(0));
    assert!(e.contains("not-a-dir"), "{e}");
}

#[test]
fn serve_fails_fast_on_a_store_it_cannot_open() {
    let d = zones_with(&[]);
    let data = TempDir::new("data");
    // A sled directory whose files are garbage.
    std::fs::create_dir_all(data.path().join("d")).unwrap();
    std::fs::write(data.path().join("d").join("conf"), b"\x00garbage\xff").unwrap();
    std::fs::write(data.path().join("d").join("db"), vec![0xffu8; 4096]).unwrap();
    let args = base_args(d.path(), &data.path().join("d"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, e) = serve_fails(&args);
    assert_ne!(code, Some(0), "{e}");
    assert!(e.contains("store"), "{e}");
}

#[test]
fn serve_fails_fast_on_a_bad_config() {
    let d = zones_with(&[]);
    let cfg = d.path().join("bad.toml");
    std::fs::write(&cfg, "dns_listen = [\"nope\"]\n").unwrap();
    let (code, e) = serve_fails(&["--config", cfg.to_str().unwrap()]);
    assert_ne!(code, Some(0));
    assert!(e.contains("bad.toml:1"), "{e}");
}

#[test]
fn flags_override_the_config_file() {
    let d = zones_with(&[]);
    let unused = free_port();
    let mut srv = Server::start_with(ServerOpts {
        zones_dir: d.path().to_path_buf(),
        config: Some(format!(
            "api_listen = \"127.0.0.1:{unused}\"\ndns_listen = [\"127.0.0.1:{unused}\"]\n"
        )),
        ..Default::default()
    });
    // The harness passes --api-listen/--dns-listen, which win over the file.
    assert_eq!(http_get(srv.api, "/healthz", None).unwrap().status, 200);
    assert!(
        http_get(
            format!("127.0.0.1:{unused}").parse().unwrap(),
            "/healthz",
            None
        )
        .is_err()
    );
    assert_eq!(srv.terminate(), Some(0));
}

#[test]
fn sigterm_and_sigint_exit_zero() {
    let mut srv = Server::start();
    assert_eq!(srv.terminate(), Some(0));
    let log = srv.log_text();
    assert!(log.contains("SIGTERM"), "{log}");

    let mut srv = Server::start();
    let mut child = srv.child.take().unwrap();
    crate::harness::unsafe_kill(child.id(), 2);
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(0));
}

#[test]
fn help_lists_the_contract_flags() {
    let o = run(&["serve", "--help"]);
    let out = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--config",
        "--dns-listen",
        "--api-listen",
        "--data-dir",
        "--zones-dir",
        "--api-token",
    ] {
        assert!(out.contains(flag), "{flag} missing from:\n{out}");
    }
}

#[test]
fn check_reports_every_problem_in_one_run() {
    let d = zones_with(&[
        (
            "bad1.example.zone",
            "$ORIGIN bad1.example.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 192.0.2.999\n",
        ),
        (
            "bad2.example.zone",
            "$ORIGIN bad2.example.\n$TTL 2147483648\n@ IN SOA ns1 hostmaster 1 3600 600 86400 60\n",
        ),
        (
            "bad3.example.zone",
            "$ORIGIN bad3.example.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 3600 600 86400 60\n@ IN NS ns1\nns1 4294967295 IN A 192.0.2.1\n",
        ),
    ]);
    let cfg = d.path().join("gslb.toml");
    std::fs::write(&cfg, "api_listen = \"0.0.0.0:8080\"\n").unwrap();
    let o = run(&[
        "check",
        "--config",
        cfg.to_str().unwrap(),
        "--zones-dir",
        d.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    for needle in [
        "bad1.example.zone:5",
        "bad2.example.zone:2",
        "bad3.example.zone:5",
        "RFC 2181",
        "without a token",
        "4 problems found",
    ] {
        assert!(e.contains(needle), "{needle:?} missing in:\n{e}");
    }
    // The good zone is checked too, and a broken config does not stop the zones
    // from being checked.
    std::fs::write(&cfg, "bogus = 1\n").unwrap();
    let o = run(&[
        "check",
        "--config",
        cfg.to_str().unwrap(),
        "--zones-dir",
        d.path().to_str().unwrap(),
    ]);
    let e = stderr(&o);
    assert!(
        e.contains("gslb.toml:1") && e.contains("bad3.example.zone:5"),
        "{e}"
    );
    // serve refuses the same TTL.
    let data = TempDir::new("data");
    let only = zones_with(&[(
        "bad3.example.zone",
        "$ORIGIN bad3.example.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 3600 600 86400 60\n@ IN NS ns1\nns1 4294967295 IN A 192.0.2.1\n",
    )]);
    let args = base_args(only.path(), data.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, err) = serve_fails(&args);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("bad3.example.zone:5") && err.contains("RFC 2181"),
        "{err}"
    );
}

#[test]
fn check_warns_about_in_zone_ns_without_glue_and_accepts_the_largest_ttl() {
    let d = zones_with(&[(
        "glue.example.zone",
        "$ORIGIN glue.example.\n$TTL 2147483647\n@ IN SOA ns1 hostmaster 1 3600 600 86400 60\n@ IN NS ns1\n@ IN NS ns2\n@ IN NS ns.elsewhere.example.\nns1 IN A 192.0.2.53\nsub IN NS ns.sub\n",
    )]);
    let o = run(&["check", "--zones-dir", d.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("warning")
            && e.contains("glue.example.zone:5")
            && e.contains("ns2.glue.example"),
        "{e}"
    );
    assert!(
        e.contains("glue.example.zone:8") && e.contains("ns.sub.glue.example"),
        "{e}"
    );
    assert!(!e.contains("ns.elsewhere"), "{e}");
    assert!(!e.contains(":4:"), "ns1 has glue: {e}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("glue.example (serial 1)"));
}
