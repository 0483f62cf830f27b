//! Integration tests: `gslb import istio`. The seed examples (api/examples/istio/,
//! with loopback gateways and a one-second probe) are applied to a real server,
//! whose DNS answers then route as the Istio objects say: 99/1 by `distribute`,
//! and to the `failover` region when the local gateway dies.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use hickory_proto::rr::RecordType;

use crate::fqdn::Gateway;
use crate::harness::{BIN, REPO, Server, ServerOpts, TempDir, addrs, wait_until};

const ZONE: &str = "\
$ORIGIN foo.com.
$TTL 300
@    IN SOA ns1.foo.com. hostmaster.foo.com. 1 3600 600 86400 60
@    IN NS  ns1.foo.com.
ns1  IN A   127.0.0.1
";

/// Runs `gslb import istio ARGS` with `env`, feeding `stdin`.
fn import(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("import")
        .arg("istio")
        .args(args)
        .env_remove("GSLB_API_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run gslb import");
    let input = stdin.unwrap_or_default().to_string();
    let mut pipe = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        let _ = pipe.write_all(input.as_bytes());
    });
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn seed(name: &str) -> String {
    std::fs::read_to_string(Path::new(REPO).join("api/examples/istio").join(name)).unwrap()
}

/// Gateways on each of `ips`, all on one port (the WorkloadGroup probes one port).
fn gateways(ips: &[&str]) -> (u16, Vec<Gateway>) {
    'retry: loop {
        let first = TcpListener::bind(format!("{}:0", ips[0])).unwrap();
        let port = first.local_addr().unwrap().port();
        drop(first);
        let mut gws = Vec::new();
        for ip in ips {
            match Gateway::open(format!("{ip}:{port}").parse().unwrap()) {
                Ok(g) => gws.push(g),
                Err(_) => continue 'retry,
            }
        }
        return (port, gws);
    }
}

/// The seed objects, with loopback gateways instead of the documentation addresses
/// and a one-second probe on `port` instead of four seconds on port 80.
fn seed_distribute(port: u16) -> String {
    seed("foo-distribute.yaml")
        .replace("address: 192.0.2.10", "address: 127.0.0.11")
        .replace("address: 198.51.100.10", "address: 127.0.0.12")
        .replace(
            "    tcpSocket:\n      port: 80",
            &format!("    tcpSocket:\n      port: {port}"),
        )
        .replace("timeoutSeconds: 3", "timeoutSeconds: 1")
        .replace("periodSeconds: 4", "periodSeconds: 1")
        .replace("failureThreshold: 3", "failureThreshold: 2")
}

/// A third data center, in region3: `failover` must not send region1's clients there.
const CLUSTER3: &str = "---
apiVersion: networking.istio.io/v1beta1
kind: WorkloadEntry
metadata:
  name: foo-cluster3
spec:
  address: 127.0.0.13
  labels:
    run: foo
  locality: region3/zone3
";

fn start(client_locality: &str, token: Option<&str>) -> (Server, TempDir) {
    let zones = TempDir::new("istio-zones");
    std::fs::write(zones.path().join("foo.com.zone"), ZONE).unwrap();
    let s = Server::start_with(ServerOpts {
        zones_dir: zones.path().to_path_buf(),
        config: Some(format!(
            "[[topology]]\ncidr = \"127.0.0.0/8\"\nlocality = \"{client_locality}\"\n"
        )),
        token: token.map(str::to_string),
        ..Default::default()
    });
    (s, zones)
}

/// Writes `yaml` to files in `dir` and applies them to `s` with `gslb import istio --apply`.
fn apply(s: &Server, dir: &TempDir, files: &[(&str, &str)]) -> Output {
    let mut args = vec![
        "--apply".to_string(),
        "--server".into(),
        format!("http://{}", s.api),
    ];
    for (name, yaml) in files {
        let p = dir.path().join(name);
        std::fs::write(&p, yaml).unwrap();
        args.push(p.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env: Vec<(&str, &str)> = s
        .opts
        .token
        .as_deref()
        .map(|t| vec![("GSLB_API_TOKEN", t)])
        .unwrap_or_default();
    import(&args, &env, None)
}

fn wait_healthy(s: &Server, name: &str, n: usize) {
    let ok = wait_until(Duration::from_secs(15), || {
        let st = s.get(&format!("/api/v1/nameservices/{name}")).json();
        st["status"]["targets"]
            .as_array()
            .is_some_and(|t| t.iter().filter(|t| t["health"] == "Healthy").count() == n)
    });
    assert!(
        ok,
        "{name}: {} targets not Healthy: {}",
        n,
        s.get(&format!("/api/v1/nameservices/{name}")).body
    );
}

fn answers(s: &Server) -> Vec<String> {
    let mut a: Vec<String> = addrs(&s.udp("foo.com.", RecordType::A))
        .iter()
        .map(ToString::to_string)
        .collect();
    a.sort();
    a
}

#[test]
fn seed_distribute_routes_99_to_1() {
    let (port, _gws) = gateways(&["127.0.0.11", "127.0.0.12"]);
    // A client in a third locality: the rule's `from: "*/*"` matches it.
    let (s, _z) = start("region9/zone9", None);
    let dir = TempDir::new("istio-yaml");
    let out = apply(&s, &dir, &[("foo.yaml", &seed_distribute(port))]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "nameservice/foo.com created\n");
    // The fields without equivalent are named, and the apply is summed up.
    let err = text(&out.stderr);
    assert!(
        err.contains("spec.trafficPolicy.outlierDetection: not mapped"),
        "{err}"
    );
    assert!(err.contains("1 NameService(s) applied"), "{err}");

    // What is stored is what the import prints.
    let printed = import(&[dir.path().join("foo.yaml").to_str().unwrap()], &[], None);
    assert_eq!(printed.status.code(), Some(0));
    let mut stored = s.get("/api/v1/nameservices/foo.com").json();
    stored.as_object_mut().unwrap().remove("status");
    let printed: serde_json::Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert_eq!(printed, stored);
    assert_eq!(stored["policy"], "Locality");

    wait_healthy(&s, "foo.com", 2);
    let n = 4000;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..n {
        let a = answers(&s);
        assert_eq!(a.len(), 1, "one locality's target per answer: {a:?}");
        *counts.entry(a[0].clone()).or_default() += 1;
    }
    let local = counts.get("127.0.0.11").copied().unwrap_or(0);
    let remote = counts.get("127.0.0.12").copied().unwrap_or(0);
    assert_eq!(local + remote, n, "{counts:?}");
    // 1% of 4,000 is 40 (standard deviation 6.3).
    assert!((15..=70).contains(&remote), "{counts:?}");

    // Applying again changes nothing.
    let out = apply(&s, &dir, &[("foo.yaml", &seed_distribute(port))]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "nameservice/foo.com unchanged\n");
}

#[test]
fn seed_failover_goes_to_the_named_region() {
    let (port, mut gws) = gateways(&["127.0.0.11", "127.0.0.12", "127.0.0.13"]);
    let (s, _z) = start("region1/zone1", None);
    let dir = TempDir::new("istio-yaml");
    let objects = format!("{}{CLUSTER3}", seed_distribute(port));
    let out = apply(
        &s,
        &dir,
        &[
            ("foo.yaml", &objects),
            ("failover.yaml", &seed("foo-failover.yaml")),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let ns = s.get("/api/v1/nameservices/foo.com").json();
    assert_eq!(
        ns["failover"],
        serde_json::json!([{"from": "region1", "to": "region2"}])
    );
    assert_eq!(ns["distribute"], serde_json::json!([]));
    wait_healthy(&s, "foo.com", 3);
    // The client's own zone first.
    assert_eq!(answers(&s), ["127.0.0.11"]);
    // Its gateway dies: region2, as `failover` says, not region3.
    drop(gws.remove(0));
    let moved = wait_until(Duration::from_secs(15), || answers(&s) == ["127.0.0.12"]);
    assert!(moved, "answers stayed {:?}", answers(&s));
    for _ in 0..20 {
        assert_eq!(answers(&s), ["127.0.0.12"]);
    }
}

#[test]
fn apply_uses_the_token_and_reports_refusals() {
    let (s, _z) = start("region1", Some("s3cret-token"));
    let dir = TempDir::new("istio-yaml");
    let yaml = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\nspec:\n  hosts: [foo.com, outside.example]\n  endpoints: [{address: 127.0.0.21}]\n";
    std::fs::write(dir.path().join("a.yaml"), yaml).unwrap();
    let file = dir.path().join("a.yaml").display().to_string();
    let server = format!("http://{}", s.api);
    // No token: the server refuses, the status says so.
    let out = import(&["--apply", "--server", &server, &file], &[], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("nameservice/foo.com: ") && err.contains("401"),
        "{err}"
    );
    // With the token: foo.com is written; outside.example is outside every zone
    // (422, the server's sentence) and does not stop foo.com.
    let out = import(
        &["--apply", "--server", &server, &file],
        &[("GSLB_API_TOKEN", "s3cret-token")],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "nameservice/foo.com created\n");
    let err = text(&out.stderr);
    assert!(
        err.contains("nameservice/outside.example: ")
            && err.contains("422")
            && err.contains("not inside any served zone"),
        "{err}"
    );
    assert!(err.contains("1 of 2 NameService(s) not applied"), "{err}");
    assert_eq!(s.get("/api/v1/nameservices/foo.com").status, 200);
    // Standard input works as a file.
    let out = import(
        &["--apply", "--server", &server, "-"],
        &[("GSLB_API_TOKEN", "s3cret-token")],
        Some(&yaml.replace(", outside.example", "")),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "nameservice/foo.com unchanged\n");
}

#[test]
fn fields_it_cannot_map_and_exit_status() {
    // The first seed article's DestinationRule, as published: `locailityLbSetting`
    // misspelt and `tls` one level too high. Named on stderr; imported (exit 0).
    let yaml = format!(
        "{}---\n{}",
        seed("foo-distribute.yaml")
            .split("---\napiVersion: networking.istio.io/v1beta1\nkind: DestinationRule")
            .next()
            .unwrap(),
        "apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: foo
spec:
  host: foo.com
  trafficPolicy:
    loadBalancer:
      locailityLbSetting:
        enabled: true
        failover:
        - from: region1/zone1
          to: region2/zone2
  tls:
    mode: ISTION_MUTUAL
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: foo
spec:
  hosts: [foo.com]
"
    );
    let out = import(&["-"], &[], Some(&yaml));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    for needle in [
        "gslb: import: warning: -: document 5 (DestinationRule default/foo): spec.trafficPolicy.loadBalancer.locailityLbSetting: not mapped: unknown field",
        "gslb: import: warning: -: document 5 (DestinationRule default/foo): spec.tls: not mapped: unknown field",
        "gslb: import: warning: -: document 6 (VirtualService default/foo): VirtualService has no NameService equivalent",
    ] {
        assert!(err.contains(needle), "{needle}\n{err}");
    }
    let ns: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        ns["policy"], "RoundRobin",
        "the misspelt setting is not used"
    );

    // --strict: the same input imports nothing, exit 3.
    let out = import(&["--strict", "-"], &[], Some(&yaml));
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr).contains(
        "gslb: import: error: -: document 5 (DestinationRule default/foo): spec.tls: not mapped"
    ));

    // An invalid object: exit 1, nothing printed, every problem named.
    let bad = yaml
        .replace("locality: region1/zone1", "locality: region1/zone1/a/b")
        .replace("address: 198.51.100.10", "address: unix:///run/foo.sock");
    let out = import(&["-"], &[], Some(&bad));
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    assert!(err.contains("(WorkloadEntry default/foo): spec.locality: locality \"region1/zone1/a/b\" has more than 3 parts"), "{err}");
    assert!(err.contains("(WorkloadEntry default/foo-cluster2): spec.address: address \"unix:///run/foo.sock\" is a Unix socket"), "{err}");
    assert!(err.contains("error(s); nothing imported"), "{err}");

    // Unreadable file, nothing to import, bad usage.
    let out = import(&["/nonexistent/foo.yaml"], &[], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/nonexistent/foo.yaml: cannot read"));
    let out = import(
        &["-"],
        &[],
        Some("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no ServiceEntry host to import"));
    let out = import(&[], &[], None);
    assert_eq!(out.status.code(), Some(2));
}

/// Two data centers whose gateways answer HTTPS (self-signed) on one port, and a
/// WorkloadGroup probing them with `httpGet` as a Kubernetes readiness probe does.
fn http_probe_objects(port: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: gw-east}}
spec: {{address: 127.0.12.1, labels: {{run: web}}, locality: region1/zone1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: gw-west}}
spec: {{address: 127.0.12.2, labels: {{run: web}}, locality: region2/zone2}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {{name: web}}
spec:
  metadata:
    labels: {{run: web}}
  probe:
    initialDelaySeconds: 1
    periodSeconds: 1
    timeoutSeconds: 1
    failureThreshold: 1
    httpGet:
      path: /healthz/ready
      port: {port}
      scheme: HTTPS
      httpHeaders:
      - name: Host
        value: foo.com
      - name: X-Probe
        value: gslb
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web}}
spec:
  hosts: [foo.com]
  resolution: STATIC
  workloadSelector: {{labels: {{run: web}}}}
"
    )
}

#[test]
fn workload_group_http_probe_is_imported_and_routes_around_a_503() {
    use crate::httpvip::{HttpVip, Reply};
    // Both gateways on one port: the WorkloadGroup's probe names one.
    let (port, east, west) = loop {
        let port = TcpListener::bind("127.0.12.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let ok = |_: &crate::httpvip::Request| Reply::Status(200, None);
        let east = HttpVip::https_at(
            format!("127.0.12.1:{port}").parse().unwrap(),
            &["foo.com"],
            ok,
        );
        let west = HttpVip::https_at(
            format!("127.0.12.2:{port}").parse().unwrap(),
            &["foo.com"],
            ok,
        );
        if let (Ok(e), Ok(w)) = (east, west) {
            break (port, e, w);
        }
    };
    let (s, _z) = start("region9/zone9", None);
    let dir = TempDir::new("istio-yaml");
    let out = apply(&s, &dir, &[("web.yaml", &http_probe_objects(port))]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "nameservice/foo.com created\n");
    let ns = s.get("/api/v1/nameservices/foo.com").json();
    assert_eq!(
        ns["healthCheck"],
        serde_json::json!({"httpGet": {"path": "/healthz/ready", "port": port, "scheme": "HTTPS",
                                       "host": "foo.com", "httpHeaders": [{"name": "X-Probe", "value": "gslb"}]},
                           "initialDelaySeconds": 1, "flapDamping": false, "periodSeconds": 1,
                           "timeoutSeconds": 1, "failureThreshold": 1, "successThreshold": 1})
    );
    // Equal weights and no DestinationRule: every healthy gateway in each answer.
    wait_healthy(&s, "foo.com", 2);
    assert_eq!(answers(&s), ["127.0.12.1", "127.0.12.2"]);
    // Each gateway saw the probe as the WorkloadGroup describes it.
    let ua = format!("gslb/{} (", env!("CARGO_PKG_VERSION"));
    for gw in [&east, &west] {
        let r = &gw.requests()[0];
        assert_eq!(
            (r.method.as_str(), r.target.as_str()),
            ("GET", "/healthz/ready")
        );
        assert_eq!(r.header("Host"), Some(format!("foo.com:{port}").as_str()));
        assert_eq!(r.sni.as_deref(), Some("foo.com"));
        assert_eq!(r.header("X-Probe"), Some("gslb"));
        assert!(
            r.header("User-Agent").is_some_and(|u| u.starts_with(&ua)),
            "{r:?}"
        );
    }
    // The west gateway answers 503: out of the answers, as Istio's readiness would take it out.
    west.set(|_| Reply::Status(503, None));
    let out_of_answers = wait_until(Duration::from_secs(10), || answers(&s) == ["127.0.12.1"]);
    assert!(out_of_answers, "answers stayed {:?}", answers(&s));
    west.set(|_| Reply::Status(200, None));
    let back = wait_until(Duration::from_secs(10), || answers(&s).len() == 2);
    assert!(back, "answers stayed {:?}", answers(&s));
}

/// A WorkloadEntry whose address is a host name (the seed's `foo.bar.svc.cluster2`
/// pattern) becomes an fqdn target: gslb resolves it (through a second gslb serving
/// the name on loopback), probes every resolved address with the WorkloadGroup's
/// HTTPS probe, and answers the addresses that pass.
#[test]
fn host_name_workload_is_resolved_and_each_address_probed() {
    use crate::httpvip::{HttpVip, Reply};
    let (port, a, b) = loop {
        let port = TcpListener::bind("127.0.12.3:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let ok = |_: &crate::httpvip::Request| Reply::Status(200, None);
        let a = HttpVip::https_at(format!("127.0.12.3:{port}").parse().unwrap(), &["x"], ok);
        let b = HttpVip::https_at(format!("127.0.12.4:{port}").parse().unwrap(), &["x"], ok);
        if let (Ok(a), Ok(b)) = (a, b) {
            break (port, a, b);
        }
    };
    let (up, _up_zones) = crate::fqdn::upstream(&["127.0.12.3", "127.0.12.4"]);
    let zones = TempDir::new("istio-zones");
    std::fs::write(zones.path().join("foo.com.zone"), ZONE).unwrap();
    let s = Server::start_with(ServerOpts {
        zones_dir: zones.path().to_path_buf(),
        config: Some(format!("[resolver]\nservers = [\"{}\"]\n", up.dns)),
        ..Default::default()
    });
    let yaml = http_probe_objects(port)
        .replace("address: 127.0.12.1", "address: backend.up.example")
        .replace(
            "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: gw-west}\nspec: {address: 127.0.12.2, labels: {run: web}, locality: region2/zone2}\n",
            "",
        );
    let dir = TempDir::new("istio-yaml");
    let t_apply = std::time::Instant::now();
    let out = apply(&s, &dir, &[("web.yaml", &yaml)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let ns = s.get("/api/v1/nameservices/foo.com").json();
    assert_eq!(ns["targets"][0]["fqdn"], "backend.up.example", "{ns}");
    // Pending addresses are answered too (allDown AnswerAll): wait for the verdicts.
    let healthy = wait_until(Duration::from_secs(15), || {
        let st = s.get("/api/v1/nameservices/foo.com").json();
        st["status"]["targets"][0]["addresses"]
            .as_array()
            .is_some_and(|a| a.len() == 2 && a.iter().all(|a| a["health"] == "Healthy"))
    });
    assert!(healthy, "{}", s.get("/api/v1/nameservices/foo.com").body);
    // Each resolved address waited the probe's initialDelaySeconds (1 s).
    for gw in [&a, &b] {
        let first = gw.requests()[0].at.duration_since(t_apply);
        assert!(
            first >= Duration::from_secs(1),
            "first probe {first:?} after the apply"
        );
    }
    assert_eq!(answers(&s), ["127.0.12.3", "127.0.12.4"]);
    assert!(a.count_of("/healthz/ready") >= 1 && b.count_of("/healthz/ready") >= 1);
    // One resolved address fails its probe: only the other is answered.
    b.set(|_| Reply::Status(503, None));
    let one = wait_until(Duration::from_secs(10), || answers(&s) == ["127.0.12.3"]);
    assert!(one, "answers stayed {:?}", answers(&s));
}
