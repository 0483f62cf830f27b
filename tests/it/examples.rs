//! Every example file shipped in zones/, api/examples/ and deploy/ is parsed here,
//! so the docs cannot rot.

use std::path::Path;

use gslb::config::{Config, Overrides};
use gslb::model::NameService;
use gslb::zone::ZoneSet;

use crate::harness::REPO;

fn files(dir: &str, ext: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(Path::new(REPO).join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

#[test]
fn example_zones_load() {
    let zones = ZoneSet::load_dir(&Path::new(REPO).join("zones")).unwrap();
    assert!(zones.origins().contains(&"gslb.example".to_string()));
}

#[test]
fn api_examples_are_valid_nameservices() {
    let examples = files("api/examples", "json");
    assert!(!examples.is_empty());
    for p in examples {
        let text = std::fs::read_to_string(&p).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        NameService::from_json(v).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
}

#[test]
fn deploy_configs_load() {
    let configs = files("deploy", "toml");
    assert!(!configs.is_empty());
    for p in configs {
        let c = Config::load(Some(&p), Overrides::default()).unwrap_or_else(|e| panic!("{e}"));
        // The commented example's uncommented lines are the defaults.
        if p.file_name().unwrap() == "gslb.toml" {
            let d = Config::load(None, Overrides::default()).unwrap();
            assert_eq!(c.dns_listen, d.dns_listen);
            assert_eq!(c.api_listen, d.api_listen);
            assert_eq!(c.data_dir, d.data_dir);
            assert_eq!(c.zones_dir, d.zones_dir);
            assert!(c.api_token.is_none());
            assert_eq!(c.instance, d.instance);
            assert_eq!(format!("{:?}", c.registry), format!("{:?}", d.registry));
            assert_eq!(c.health, d.health);
            assert_eq!(c.resolver, d.resolver);
            assert_eq!(c.rrl, d.rrl);
            assert_eq!(
                (
                    c.tcp_idle_timeout_seconds,
                    c.tcp_max_clients,
                    c.tcp_max_per_source
                ),
                (
                    d.tcp_idle_timeout_seconds,
                    d.tcp_max_clients,
                    d.tcp_max_per_source
                )
            );
            assert!(c.nsid.is_none() && c.cookie_secret.is_none());
            assert_eq!(c.api_limits, d.api_limits);
            assert!(c.api_tokens.is_empty());
        }
    }
}

#[test]
fn deploy_parent_zone_delegates_to_gslb() {
    let dir = Path::new(REPO).join("deploy/parent-zone");
    let zones = ZoneSet::load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(zones.origins(), vec!["example".to_string()]);
    assert!(matches!(
        zones.collision("app.gslb.example"),
        Some(gslb::zone::Collision::Delegation(_))
    ));
}

#[test]
fn deploy_manifests_are_well_formed() {
    for p in files("deploy/kubernetes", "yaml") {
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.contains("apiVersion:") && text.contains("kind:"),
            "{}",
            p.display()
        );
        assert!(!text.contains('\t'), "{}: tabs in YAML", p.display());
    }
    let unit = std::fs::read_to_string(Path::new(REPO).join("deploy/gslb.service")).unwrap();
    assert!(unit.contains("ExecStart=") && unit.contains("gslb serve"));
    let cf = std::fs::read_to_string(Path::new(REPO).join("deploy/Containerfile")).unwrap();
    assert!(cf.contains("ENTRYPOINT") || cf.contains("CMD"));
}

/// The README's quick start, as written: the demo config, one NameService per
/// policy applied with the client, and dig (also with +subnet for Locality).
#[test]
fn readme_quick_start_works_with_the_demo_config() {
    use crate::harness::{BIN, Server, ServerOpts};
    let demo = std::fs::read_to_string(Path::new(REPO).join("deploy/demo.toml")).unwrap();
    let s = Server::start_with(ServerOpts {
        config: Some(demo),
        ..ServerOpts::default()
    });
    for f in ["app.json", "ratio.json", "locality.json"] {
        let o = std::process::Command::new(BIN)
            .args(["apply", "-f"])
            .arg(Path::new(REPO).join("api/examples").join(f))
            .arg("--server")
            .arg(format!("http://{}", s.api))
            .env_remove("GSLB_API_TOKEN")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(String::from_utf8_lossy(&o.stdout).ends_with(" created\n"));
    }
    let dig = |args: &[&str]| -> Vec<String> {
        let o = std::process::Command::new("dig")
            .arg(format!("@{}", s.dns.ip()))
            .args([
                "-p",
                &s.dns.port().to_string(),
                "+short",
                "+tries=1",
                "+time=2",
            ])
            .args(args)
            .output()
            .expect("dig (dnsutils) is installed: .ci/run installs it");
        let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    // RoundRobin: every address of the family.
    assert_eq!(
        dig(&["app.gslb.example", "A"]),
        ["192.0.2.10", "198.51.100.10"]
    );
    assert_eq!(dig(&["app.gslb.example", "AAAA"]), ["2001:db8::10"]);
    // Ratio: one address, the 0-ratio target never.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..50 {
        let a = dig(&["canary.gslb.example", "A"]);
        assert_eq!(a.len(), 1);
        seen.insert(a[0].clone());
    }
    assert!(
        seen.contains("192.0.2.20") && !seen.contains("198.51.100.21"),
        "{seen:?}"
    );
    // Locality: the demo topology decides (docs/policies.md, "The shipped examples").
    for _ in 0..10 {
        let a = dig(&["local.gslb.example", "A", "+subnet=10.1.2.0/24"]);
        assert!(a == ["192.0.2.30"] || a == ["198.51.100.30"], "{a:?}");
    }
    assert_eq!(
        dig(&["local.gslb.example", "A", "+subnet=2001:db8:1:2::/56"]),
        ["198.51.100.30"]
    );
    assert_eq!(
        dig(&["local.gslb.example", "AAAA", "+subnet=2001:db8:1:2::/56"]),
        ["2001:db8:b::30"]
    );
    assert_eq!(
        dig(&["local.gslb.example", "A", "+subnet=10.3.0.0/24"]),
        ["198.51.100.40"]
    );
    assert_eq!(
        dig(&["local.gslb.example", "A", "+subnet=172.16.0.0/24"]).len(),
        4
    );
}

/// deploy/kubernetes: hardened as docs/operations.md says.
#[test]
fn kubernetes_manifests_are_hardened() {
    use serde::Deserialize;
    let text =
        std::fs::read_to_string(Path::new(REPO).join("deploy/kubernetes/gslb.yaml")).unwrap();
    let docs: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde_json::Value::deserialize(d).unwrap())
        .collect();
    let kind = |k: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == k && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {k} {name}"))
            .clone()
    };
    let dep = kind("Deployment", "gslb");
    let pod = &dep["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["fsGroup"], 10001);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = &pod["containers"][0];
    let image = c["image"].as_str().unwrap();
    assert_eq!(
        image,
        format!("gslb:{}", env!("CARGO_PKG_VERSION")),
        "pinned to this version"
    );
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    for k in ["requests", "limits"] {
        assert!(c["resources"][k]["cpu"].is_string() && c["resources"][k]["memory"].is_string());
    }
    let dns = kind("Service", "gslb-dns");
    assert_eq!(dns["spec"]["externalTrafficPolicy"], "Local");
    // The image's user is the uid the manifest runs as.
    let containerfile =
        std::fs::read_to_string(Path::new(REPO).join("deploy/Containerfile")).unwrap();
    assert!(containerfile.contains("--uid 10001") && containerfile.contains("USER 10001:10001"));
    // The config in the ConfigMap loads, and its API (not loopback) needs the token
    // the Deployment passes.
    let cfg = kind("ConfigMap", "gslb-config")["data"]["gslb.toml"]
        .as_str()
        .unwrap()
        .to_string();
    let p = std::env::temp_dir().join(format!("gslb-k8s-{}.toml", std::process::id()));
    std::fs::write(&p, cfg).unwrap();
    let loaded = Config::load(Some(&p), Overrides::default());
    std::fs::remove_file(&p).unwrap();
    let loaded = loaded.unwrap();
    assert!(loaded.check_api_exposure().is_err(), "needs GSLB_API_TOKEN");
    assert!(
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "GSLB_API_TOKEN")
    );
}

/// deploy/gslb.service: sandboxed to an exposure of at most 2.0 by
/// `systemd-analyze security`, and the user comes from deploy/gslb.sysusers.
#[test]
fn systemd_unit_is_hardened() {
    let unit = Path::new(REPO).join("deploy/gslb.service");
    let o = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze (systemd) is installed");
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("{out}\n{}", String::from_utf8_lossy(&o.stderr)));
    let level: f64 = line
        .split(':')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(level <= 2.0, "{line}");
    let sysusers = std::fs::read_to_string(Path::new(REPO).join("deploy/gslb.sysusers")).unwrap();
    assert!(
        sysusers.lines().any(|l| l.starts_with("u gslb ")),
        "{sysusers}"
    );
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(text.contains("User=gslb") && text.contains("ExecReload="));
}

/// docs/policies.md's Locality example, as written, against the demo config the
/// README starts: every `dig ... +subnet=` shown there gets the documented answer
/// and ECS scope. The example's healthCheck is left out: its addresses are
/// documentation addresses, never probed from here (unchecked targets are
/// eligible, as a passing check would make them).
#[test]
fn docs_locality_example_answers_as_written_with_the_demo_config() {
    use crate::harness::{Server, ServerOpts, http};
    let doc = std::fs::read_to_string(Path::new(REPO).join("docs/policies.md")).unwrap();
    let start = doc
        .find("\"policy\": \"Locality\"")
        .expect("the Locality example");
    let section = &doc[doc[..start].rfind("-d '").unwrap() + 4..];
    let section = &section[..section.find("**When targets fail**").unwrap()];
    let mut body: serde_json::Value =
        serde_json::from_str(&section[..section.find("}'").unwrap() + 1]).unwrap();
    body.as_object_mut().unwrap().remove("healthCheck");
    let name = body["name"].as_str().unwrap().to_string();

    let demo = std::fs::read_to_string(Path::new(REPO).join("deploy/demo.toml")).unwrap();
    let s = Server::start_with(ServerOpts {
        config: Some(demo),
        ..ServerOpts::default()
    });
    let r = http(
        s.api,
        "PUT",
        &format!("/api/v1/nameservices/{name}"),
        Some(body.to_string().as_bytes()),
        None,
        Some("application/json"),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);

    // Each "$ dig @127.0.0.1 -p 1053 NAME A +subnet=X" block: the CLIENT-SUBNET line
    // and the answer lines that follow it, up to the end of the block.
    let mut checked = 0;
    for block in section.split("$ dig @127.0.0.1 -p 1053 ").skip(1) {
        let block = &block[..block.find("```").unwrap()];
        let mut lines = block.lines();
        let args: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        let want_scope = lines
            .clone()
            .find_map(|l| l.strip_prefix("; CLIENT-SUBNET: "))
            .expect("the block shows the ECS option")
            .to_string();
        let mut want: Vec<String> = lines
            .filter(|l| l.starts_with(&format!("{name}.")))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        want.sort();
        let o = std::process::Command::new("dig")
            .arg(format!("@{}", s.dns.ip()))
            .args(["-p", &s.dns.port().to_string(), "+tries=1", "+time=2"])
            .args(&args)
            .output()
            .expect("dig (dnsutils) is installed: .ci/run installs it");
        let out = String::from_utf8_lossy(&o.stdout);
        let scope = out
            .lines()
            .find_map(|l| l.strip_prefix("; CLIENT-SUBNET: "))
            .unwrap_or_else(|| panic!("{args:?}: no ECS in the answer:\n{out}"));
        assert_eq!(scope, want_scope, "{args:?}:\n{out}");
        let answer = out
            .split(";; ANSWER SECTION:\n")
            .nth(1)
            .unwrap_or_else(|| panic!("{args:?}: no answer:\n{out}"));
        let mut got: Vec<String> = answer
            .lines()
            .take_while(|l| !l.is_empty())
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        got.sort();
        assert_eq!(got, want, "{args:?}:\n{out}");
        checked += 1;
    }
    assert_eq!(checked, 5, "every dig of the example");
}
