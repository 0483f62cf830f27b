//! Integration tests: the status page at /ui/ in a real browser (headless chromium
//! over the DevTools protocol), against a running gslb with a few NameServices.

use std::net::TcpListener;
use std::time::Duration;

use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

use crate::browser::Browser;
use crate::harness::{Server, ServerOpts, http};

const READ_TOKEN: &str = "ui-read-0123456789";

fn vip() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

#[test]
fn assets_need_no_token_and_are_locked_down() {
    let s = Server::start_with(ServerOpts {
        token: Some("t0k3n-0123456789".into()),
        ..ServerOpts::default()
    });
    for (path, ct) in [
        ("/ui/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let r = http(s.api, "GET", path, None, None, None).unwrap();
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-type").unwrap().starts_with(ct), "{path}");
        let csp = r.header("content-security-policy").unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
            "{csp}"
        );
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        // Everything comes from gslb itself: no external URL in any asset.
        assert!(
            !r.body.contains("http://") && !r.body.contains("https://"),
            "{path}"
        );
    }
    let r = http(s.api, "GET", "/ui", None, None, None).unwrap();
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("/ui/"));
    let r = http(s.api, "GET", "/ui/nope.js", None, None, None).unwrap();
    assert_eq!(r.status, 404);
    // The data still needs the token.
    let r = http(s.api, "GET", "/api/v1/nameservices", None, None, None).unwrap();
    assert_eq!(r.status, 401);
}

#[test]
fn status_page_shows_names_health_shares_and_follows_a_health_change() {
    if crate::browser::chromium().is_none() {
        panic!("chromium is not installed: .ci/run installs it (apt-get install chromium)");
    }
    let s = Server::start_with(ServerOpts {
        config: Some(format!(
            "[[api_tokens]]\nname = \"admin\"\ntoken = \"ui-write-0123456789\"\nrole = \"write\"\n\
             [[api_tokens]]\nname = \"wall\"\ntoken = \"{READ_TOKEN}\"\nrole = \"read\"\n"
        )),
        ..ServerOpts::default()
    });
    let put = |v: Value| {
        let name = v["name"].as_str().unwrap().to_string();
        let r = http(
            s.api,
            "PUT",
            &format!("/api/v1/nameservices/{name}"),
            Some(v.to_string().as_bytes()),
            Some("ui-write-0123456789"),
            Some("application/json"),
        )
        .unwrap();
        assert!(r.status == 200 || r.status == 201, "{}", r.body);
    };
    let (v1, v2) = (vip(), vip());
    let (a1, a2) = (v1.local_addr().unwrap(), v2.local_addr().unwrap());
    put(json!({"name": "web.gslb.example", "policy": "RoundRobin",
        "healthCheck": {"port": a1.port(), "periodSeconds": 1, "timeoutSeconds": 1,
                        "failureThreshold": 1, "successThreshold": 1},
        "targets": [{"name": "dc1", "address": "127.0.0.1", "port": a1.port(), "locality": "eu-west/a"},
                    {"name": "dc2", "address": "127.0.0.1", "port": a2.port(), "locality": "us-east/b"}]}));
    put(
        json!({"name": "ratio.gslb.example", "policy": "Ratio", "ttl": 10,
        "targets": [{"name": "big", "address": "192.0.2.10", "ratio": 3},
                    {"name": "small", "address": "198.51.100.10", "ratio": 1}]}),
    );
    put(json!({"name": "geo.gslb.example", "policy": "Locality",
        "targets": [{"name": "west", "address": "192.0.2.20", "locality": "us-west"},
                    {"name": "east", "address": "198.51.100.20", "locality": "us-east"}],
        "failover": [{"from": "us-west", "to": "us-east"}]}));
    let health = |t: usize| -> String {
        let r = http(
            s.api,
            "GET",
            "/api/v1/nameservices/web.gslb.example",
            None,
            Some(READ_TOKEN),
            None,
        )
        .unwrap();
        r.json()["status"]["targets"][t]["health"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(crate::harness::wait_until(Duration::from_secs(5), || {
        health(0) == "Healthy" && health(1) == "Healthy"
    }));

    let url = format!("http://{}/ui/?refresh=1", s.api);
    let mut b = Browser::open(&url, 1280, 900);
    // No token yet: the page asks for one.
    assert!(
        b.wait_for(
            "!document.getElementById('login').hidden",
            Duration::from_secs(15)
        ),
        "the page did not ask for a token"
    );
    b.eval(&format!(
        "document.getElementById('token').value = '{READ_TOKEN}'; \
         document.getElementById('login').requestSubmit(); true"
    ));
    assert!(
        b.wait_for(
            "document.querySelectorAll('[data-service]').length === 3",
            Duration::from_secs(15)
        ),
        "the NameServices did not appear"
    );
    let names = b.eval(
        "Array.from(document.querySelectorAll('[data-service]')).map(e => e.dataset.service)",
    );
    assert_eq!(
        names,
        json!(["geo.gslb.example", "ratio.gslb.example", "web.gslb.example"])
    );
    let cell = |svc: &str, target: &str, attr: &str| -> String {
        format!(
            "(document.querySelector('[data-service=\"{svc}\"] [data-target=\"{target}\"] [{attr}]') || {{}}).getAttribute?.('{attr}')"
        )
    };
    assert_eq!(
        b.eval(&cell("web.gslb.example", "dc1", "data-health")),
        "Healthy"
    );
    assert_eq!(
        b.eval(&cell("web.gslb.example", "dc2", "data-health")),
        "Healthy"
    );
    assert_eq!(
        b.eval(&cell("ratio.gslb.example", "big", "data-health")),
        "Unchecked"
    );
    let text = b
        .eval("document.body.innerText")
        .as_str()
        .unwrap()
        .to_string();
    for needle in [
        "eu-west/a",
        "ratio 3",
        "Created",
        "by admin",
        "AllTargetsHealthy",
        "3 NameServices",
    ] {
        assert!(text.contains(needle), "{needle:?} not on the page:\n{text}");
    }

    // Answer shares over the last minute, sampled from status.targets[].answers.
    let counted = http(
        s.api,
        "GET",
        "/api/v1/nameservices/ratio.gslb.example",
        None,
        Some(READ_TOKEN),
        None,
    )
    .unwrap()
    .json()["status"]["targets"][0]
        .get("answers")
        .is_some();
    if counted {
        let refreshes = b
            .eval("Number(document.body.dataset.refreshes)")
            .as_u64()
            .unwrap();
        for _ in 0..400 {
            s.udp("ratio.gslb.example.", RecordType::A);
        }
        assert!(b.wait_for(
            &format!(
                "Number(document.body.dataset.refreshes) > {} && {} !== null && {} !== ''",
                refreshes + 1,
                cell("ratio.gslb.example", "big", "data-share"),
                cell("ratio.gslb.example", "big", "data-share")
            ),
            Duration::from_secs(10)
        ));
        let big: f64 = b
            .eval(&cell("ratio.gslb.example", "big", "data-share"))
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let small: f64 = b
            .eval(&cell("ratio.gslb.example", "small", "data-share"))
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (big - 75.0).abs() <= 10.0 && (big + small - 100.0).abs() <= 1.0,
            "{big} / {small}"
        );
    } else {
        // The server does not count answers: the page says so instead of a number.
        let t = b.eval("document.querySelector('[data-service=\"ratio.gslb.example\"]').innerText");
        assert!(t.as_str().unwrap().contains("not counted"), "{t}");
    }

    // A VIP goes down: the page shows it after its next refresh, without a reload.
    let refreshes = b
        .eval("Number(document.body.dataset.refreshes)")
        .as_u64()
        .unwrap();
    drop(v1);
    assert!(crate::harness::wait_until(
        Duration::from_secs(5),
        || health(0) == "Unhealthy"
    ));
    assert!(
        b.wait_for(
            &format!(
                "{} === 'Unhealthy'",
                cell("web.gslb.example", "dc1", "data-health")
            ),
            Duration::from_secs(10)
        ),
        "the health change did not show up"
    );
    assert!(
        b.eval("Number(document.body.dataset.refreshes)")
            .as_u64()
            .unwrap()
            > refreshes
    );
    assert_eq!(
        b.eval("document.getElementById('unhealthy-count').textContent"),
        "1"
    );
    assert!(b.wait_for(
        "Array.from(document.querySelectorAll('#events [data-kind=\"HealthChanged\"]')).some(e => e.innerText.includes('Healthy -> Unhealthy'))",
        Duration::from_secs(10)
    ));

    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let png = b.screenshot();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
    std::fs::write(dir.join("status-page.png"), &png).unwrap();

    // On a phone: nothing wider than the screen, the same data.
    b.viewport(390, 844, true);
    assert!(b.wait_for(
        "document.documentElement.scrollWidth <= window.innerWidth + 1",
        Duration::from_secs(5)
    ));
    assert_eq!(
        b.eval(&cell("web.gslb.example", "dc1", "data-health")),
        "Unhealthy"
    );
    std::fs::write(dir.join("status-page-phone.png"), b.screenshot()).unwrap();
    drop(v2);
}

/// An fqdn target shows what its name resolved to, each address with its health;
/// an override shows its state, reason, token and end; in a fleet, each instance's
/// observation shows as a badge. The observations are the fleet's
/// (`status.targets[].observations`, CONTRACT §7) and damping needs a flapping
/// target: this single, steady instance has neither, so the page's fetch is wrapped
/// to add them to the API's answer, which exercises the page's rendering of those
/// fields.
#[test]
fn status_page_shows_fqdn_addresses_overrides_and_observations() {
    if crate::browser::chromium().is_none() {
        panic!("chromium is not installed: .ci/run installs it (apt-get install chromium)");
    }
    // Only 127.0.0.52 listens on the port; 127.0.0.53 refuses.
    let gw = crate::fqdn::Gateway::open("127.0.0.52:0".parse().unwrap()).unwrap();
    let port = gw.addr.port();
    let (mut up, _zones) = crate::fqdn::upstream(&["127.0.0.52", "127.0.0.53"]);
    const WRITE: &str = "ui-admin-0123456789";
    let s = Server::start_with(ServerOpts {
        config: Some(format!(
            "[resolver]\nservers = [\"{}\"]\nstale_seconds = 1\n\
             [[api_tokens]]\nname = \"oncall\"\ntoken = \"{WRITE}\"\nrole = \"write\"\n\
             [[api_tokens]]\nname = \"wall\"\ntoken = \"{READ_TOKEN}\"\nrole = \"read\"\n",
            up.dns
        )),
        ..ServerOpts::default()
    });
    let call = |method: &str, path: &str, v: Value| {
        let r = http(
            s.api,
            method,
            path,
            Some(v.to_string().as_bytes()),
            Some(WRITE),
            Some("application/json"),
        )
        .unwrap();
        assert!(r.status == 200 || r.status == 201, "{path}: {}", r.body);
    };
    call(
        "PUT",
        "/api/v1/nameservices/pool.gslb.example",
        json!({"name": "pool.gslb.example", "policy": "RoundRobin", "ttl": 5,
            "healthCheck": {"port": port, "periodSeconds": 1, "timeoutSeconds": 1,
                            "failureThreshold": 1, "successThreshold": 1},
            "targets": [{"name": "be", "fqdn": "backend.up.example"},
                        {"name": "dc2", "address": "127.0.0.52"}]}),
    );
    let status = |t: usize| -> Value {
        http(
            s.api,
            "GET",
            "/api/v1/nameservices/pool.gslb.example",
            None,
            Some(READ_TOKEN),
            None,
        )
        .unwrap()
        .json()["status"]["targets"][t]
            .clone()
    };
    let settled = json!([{"address": "127.0.0.52", "health": "Healthy"},
                         {"address": "127.0.0.53", "health": "Unhealthy"}]);
    assert!(
        crate::harness::wait_until(Duration::from_secs(10), || {
            status(0)["addresses"] == settled && status(1)["health"] == "Healthy"
        }),
        "{} {}",
        status(0),
        status(1)
    );
    call(
        "PUT",
        "/api/v1/nameservices/pool.gslb.example/targets/dc2/override",
        json!({"state": "Drain", "reason": "kernel upgrade", "ttlSeconds": 3600}),
    );

    let url = format!("http://{}/ui/?refresh=1", s.api);
    let mut b = Browser::open(&url, 1280, 900);
    assert!(
        b.wait_for(
            "!document.getElementById('login').hidden",
            Duration::from_secs(15)
        ),
        "the page did not ask for a token"
    );
    // Two instances' observations on every target, as a fleet's status carries them.
    b.eval(
        "const realFetch = window.fetch; \
         window.fetch = async (...args) => { \
           const r = await realFetch(...args); \
           if (!String(args[0]).startsWith('/api/v1/nameservices')) return r; \
           const body = await r.clone().json(); \
           for (const svc of body.items || [body]) \
             for (const t of (svc.status && svc.status.targets) || []) { \
               t.observations = t.observations || [ \
                 {instance: 'dc-a', health: t.health, lastProbeTime: t.lastProbeTime}, \
                 {instance: 'dc-b', health: 'Unhealthy', lastProbeTime: null}]; \
               if (t.name === 'dc2' && !t.damping) t.damping = {reason: 'Flapping', \
                 message: 'changed 4 times within 120 s', until: null}; } \
           return new Response(JSON.stringify(body), {status: r.status, headers: r.headers}); \
         }; true",
    );
    b.eval(&format!(
        "document.getElementById('token').value = '{READ_TOKEN}'; \
         document.getElementById('login').requestSubmit(); true"
    ));
    let row = "document.querySelector('[data-service=\"pool.gslb.example\"] [data-target=\"be\"]')";
    assert!(
        b.wait_for(&format!("{row} !== null"), Duration::from_secs(15)),
        "the NameService did not appear"
    );
    // The fqdn target: its name, and each resolved address with its own health.
    assert_eq!(
        b.eval(&format!(
            "{row}.querySelector('[data-addresses]').dataset.addresses"
        )),
        "2"
    );
    let addr_health = |a: &str| {
        format!(
            "{row}.querySelector('[data-address=\"{a}\"] [data-address-health]').dataset.addressHealth"
        )
    };
    assert_eq!(b.eval(&addr_health("127.0.0.52")), "Healthy");
    assert_eq!(b.eval(&addr_health("127.0.0.53")), "Unhealthy");
    assert_eq!(
        b.eval(&format!(
            "{row}.querySelector('[data-health]').dataset.health"
        )),
        "Healthy"
    );
    let text = b.eval(&format!("{row}.innerText"));
    assert!(
        text.as_str().unwrap().contains("backend.up.example"),
        "{text}"
    );
    // Each instance's observation.
    let obs = b.eval(&format!(
        "Array.from({row}.querySelectorAll('[data-instance]')).map(e => e.dataset.instance + '=' + e.textContent)"
    ));
    assert_eq!(obs, json!(["dc-a=dc-a: Healthy", "dc-b=dc-b: Unhealthy"]));
    // Flap damping (as the fleet's status says it): shown with its reason.
    let damp = "document.querySelector('[data-service=\"pool.gslb.example\"] [data-target=\"dc2\"] [data-damping]')";
    assert_eq!(b.eval(&format!("{damp}.dataset.damping")), "Flapping");
    let t = b.eval(&format!("{damp}.innerText"));
    assert!(t.as_str().unwrap().contains("changed 4 times"), "{t}");
    // The drained target: the override, who set it and until when; and the event.
    let dc2 =
        "document.querySelector('[data-service=\"pool.gslb.example\"] [data-target=\"dc2\"]')";
    assert_eq!(
        b.eval(&format!(
            "{dc2}.querySelector('[data-override]').dataset.override"
        )),
        "Drain"
    );
    let ov = b.eval(&format!("{dc2}.querySelector('[data-override]').innerText"));
    let ov = ov.as_str().unwrap();
    assert!(
        ov.contains("kernel upgrade") && ov.contains("by oncall") && ov.contains("until"),
        "{ov}"
    );
    assert!(b.wait_for(
        "Array.from(document.querySelectorAll('#events [data-kind=\"OverrideSet\"]')).some(e => e.innerText.includes('by oncall'))",
        Duration::from_secs(10)
    ));
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::write(dir.join("status-page-fqdn.png"), b.screenshot()).unwrap();

    // The name stops resolving: the page says why, after its next refresh.
    assert_eq!(up.terminate(), Some(0));
    assert!(
        b.wait_for(
            &format!("{row}.querySelector('[data-resolve-error]') !== null"),
            Duration::from_secs(25)
        ),
        "the resolution error did not show up: {}",
        status(0)
    );
    drop(gw);
}

/// In a fleet, the page shows each instance's own observation of a target
/// (`status.targets[].observations`, CONTRACT §7), read from a real two-instance
/// fleet on etcd; and when one instance's VIP view differs (its observation
/// changes), the badge follows after the next refresh.
#[test]
fn status_page_shows_each_instances_observation_in_a_fleet() {
    if crate::browser::chromium().is_none() {
        panic!("chromium is not installed: .ci/run installs it (apt-get install chromium)");
    }
    let etcd = crate::etcd::Etcd::start(1);
    let a = Server::start_with(etcd.server_opts("dc-a"));
    let b = Server::start_with(etcd.server_opts("dc-b"));
    let gw = vip();
    let port = gw.local_addr().unwrap().port();
    a.put_ns(
        &json!({"name": "fleet.gslb.example", "policy": "RoundRobin",
        "healthCheck": {"port": port, "periodSeconds": 1, "timeoutSeconds": 1,
                        "failureThreshold": 1, "successThreshold": 1},
        "targets": [{"name": "dc1", "address": "127.0.0.1"}]}),
    );
    let observations = |s: &Server| -> Value {
        s.get("/api/v1/nameservices/fleet.gslb.example").json()["status"]["targets"][0]
            ["observations"]
            .clone()
    };
    let seen = |s: &Server, want: &str| {
        let o = observations(s);
        o.as_array().is_some_and(|l| {
            l.len() == 2
                && l[0]["instance"] == "dc-a"
                && l[1]["instance"] == "dc-b"
                && l.iter().all(|x| x["health"] == want)
        })
    };
    assert!(
        crate::harness::wait_until(Duration::from_secs(15), || seen(&a, "Healthy")
            && seen(&b, "Healthy")),
        "{} {}",
        observations(&a),
        observations(&b)
    );

    let url = format!("http://{}/ui/?refresh=1", a.api);
    let mut br = Browser::open(&url, 1280, 900);
    let badges = "Array.from(document.querySelectorAll('[data-service=\"fleet.gslb.example\"] [data-target=\"dc1\"] [data-instance]')).map(e => e.textContent).join(',')";
    assert!(
        br.wait_for(
            &format!("{badges} === 'dc-a: Healthy,dc-b: Healthy'"),
            Duration::from_secs(15)
        ),
        "{}",
        br.eval(badges)
    );
    // The VIP goes away: both instances see it, and the page follows.
    drop(gw);
    assert!(
        br.wait_for(
            &format!("{badges} === 'dc-a: Unhealthy,dc-b: Unhealthy'"),
            Duration::from_secs(15)
        ),
        "{} {}",
        br.eval(badges),
        observations(&a)
    );
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::write(dir.join("status-page-fleet.png"), br.screenshot()).unwrap();
    drop(b);
}
