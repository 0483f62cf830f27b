//! The router driven in-process (no socket): request checks, error shapes, counting.
//! The end-to-end behaviour (DNS, durability, signals) is in tests/it/api.rs.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::Service;

use super::*;
use crate::health::HealthHub;
use crate::model::NameService;
use crate::policy::Topology;
use crate::store::{Change, SledStore, Store, StoreError, StoredHealth};
use crate::zone::ZoneSet;

struct Fixture {
    state: AppState,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "gslb-api-unit-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A registry serving no zone at all.
fn fixture(token: Option<&str>) -> Fixture {
    let dir = temp_dir();
    let store = Arc::new(SledStore::open(&dir.join("data")).unwrap());
    fixture_with(token, store, ZoneSet::default(), dir)
}

/// A registry serving the example zones of the repository.
fn fixture_zoned(store: Arc<dyn Store>, dir: std::path::PathBuf) -> Fixture {
    let zones =
        ZoneSet::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("zones")).unwrap();
    fixture_with(None, store, zones, dir)
}

fn fixture_with(
    token: Option<&str>,
    store: Arc<dyn Store>,
    zones: ZoneSet,
    dir: std::path::PathBuf,
) -> Fixture {
    let registry = Registry::open(
        "test-instance",
        store,
        Arc::new(zones),
        Arc::new(Topology::default()),
        Arc::new(HealthHub::new()),
        Default::default(),
    )
    .unwrap();
    let registry = Arc::new(registry);
    let metrics = Arc::new(Metrics::new());
    Fixture {
        state: AppState {
            exporter: Arc::new(crate::app::exporter(&metrics, &registry)),
            registry,
            metrics,
            tokens: Arc::new(auth::Tokens::single(token)),
            events: Arc::new(crate::events::EventLog::new("test", 100)),
            ready: Arc::new(AtomicBool::new(true)),
            reload: None,
        },
        _dir: TempDir(dir),
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

async fn call(state: &AppState, req: Request<Body>) -> Reply {
    let mut app = router(state.clone());
    let resp = app.call(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

fn req(method: &str, path: &str) -> axum::http::request::Builder {
    Request::builder().method(method).uri(path)
}

fn put_json(path: &str, body: &Value) -> Request<Body> {
    req("PUT", path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn minimal(name: &str) -> Value {
    json!({"name": name, "policy": "RoundRobin",
           "targets": [{"name": "dc1", "address": "192.0.2.10"}]})
}

/// Asserts the JSON error shape and returns (error, field).
fn error_of(r: &Reply, status: u16) -> (String, Option<String>) {
    assert_eq!(
        r.status.as_u16(),
        status,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/json");
    let v = r.json();
    let obj = v.as_object().unwrap();
    assert!(
        obj.keys().all(|k| k == "error" || k == "field"),
        "unexpected keys: {v}"
    );
    let error = v["error"].as_str().expect("error is a string").to_string();
    assert!(!error.is_empty());
    (error, v["field"].as_str().map(str::to_string))
}

#[tokio::test]
async fn token_required_on_api_only() {
    let f = fixture(Some("s3cret"));
    let path = "/api/v1/nameservices";
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic czNjcmV0"),
        Some("Bearer "),
    ] {
        let mut b = req("GET", path);
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        let r = call(&f.state, b.body(Body::empty()).unwrap()).await;
        error_of(&r, 401);
        assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Bearer", "{auth:?}");
    }
    // Unknown /api/ paths need the token too (no probing for routes).
    let r = call(
        &f.state,
        req("GET", "/api/v2/x").body(Body::empty()).unwrap(),
    )
    .await;
    error_of(&r, 401);
    for auth in ["Bearer s3cret", "bearer s3cret"] {
        let r = call(
            &f.state,
            req("GET", path)
                .header(header::AUTHORIZATION, auth)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{auth}");
        assert_eq!(r.json(), json!({"items": []}));
    }
    for open in ["/healthz", "/metrics"] {
        let r = call(&f.state, req("GET", open).body(Body::empty()).unwrap()).await;
        assert_eq!(r.status, StatusCode::OK, "{open}");
    }
}

#[tokio::test]
async fn request_checks_in_order() {
    let f = fixture(None);
    let path = "/api/v1/nameservices/app.gslb.example";
    // 415: no or wrong media type.
    let r = call(
        &f.state,
        req("PUT", path)
            .body(Body::from(minimal("app.gslb.example").to_string()))
            .unwrap(),
    )
    .await;
    error_of(&r, 415);
    let r = call(
        &f.state,
        req("PUT", path)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from(minimal("app.gslb.example").to_string()))
            .unwrap(),
    )
    .await;
    error_of(&r, 415);
    // 400: not JSON.
    let r = call(
        &f.state,
        req("PUT", path)
            .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
            .body(Body::from("{\"name\": "))
            .unwrap(),
    )
    .await;
    let (msg, field) = error_of(&r, 400);
    assert!(msg.contains("not valid JSON"), "{msg}");
    assert_eq!(field, None);
    // 413: over 1 MiB, with and without a Content-Length.
    let big = format!("{{\"x\": \"{}\"}}", "a".repeat(body::MAX_BODY));
    let r = call(
        &f.state,
        req("PUT", path)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, big.len())
            .body(Body::from(big.clone()))
            .unwrap(),
    )
    .await;
    error_of(&r, 413);
    let r = call(
        &f.state,
        req("PUT", path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(big))
            .unwrap(),
    )
    .await;
    error_of(&r, 413);
    // 422: a rule, naming the field.
    let mut bad = minimal("app.gslb.example");
    bad["ttl"] = json!(86_401);
    let (_, field) = error_of(&call(&f.state, put_json(path, &bad)).await, 422);
    assert_eq!(field.as_deref(), Some("ttl"));
    let mut bad = minimal("app.gslb.example");
    bad["targets"][0]["address"] = json!("not-an-ip");
    let (_, field) = error_of(&call(&f.state, put_json(path, &bad)).await, 422);
    assert_eq!(field.as_deref(), Some("targets[0].address"));
    // 422: not an object at all: no single field.
    let (_, field) = error_of(&call(&f.state, put_json(path, &json!([1, 2]))).await, 422);
    assert_eq!(field, None);
    // 422: body name differs from the path.
    let (msg, field) = error_of(
        &call(&f.state, put_json(path, &minimal("other.gslb.example"))).await,
        422,
    );
    assert_eq!(field.as_deref(), Some("name"));
    assert!(msg.contains("does not match"), "{msg}");
    // 422: an invalid name in the path.
    let (_, field) = error_of(
        &call(
            &f.state,
            put_json("/api/v1/nameservices/bad..name", &json!({})),
        )
        .await,
        422,
    );
    assert_eq!(field.as_deref(), Some("name"));
    // Nothing was stored by any of these.
    assert_eq!(f.state.registry.len(), 0);
}

#[tokio::test]
async fn outside_every_zone_is_422_on_name() {
    // This fixture serves no zone at all.
    let f = fixture(None);
    let r = call(
        &f.state,
        put_json(
            "/api/v1/nameservices/App.Gslb.Example.",
            &json!({"policy": "RoundRobin", "targets": [{"name": "dc1", "address": "192.0.2.10"}]}),
        ),
    )
    .await;
    let (msg, field) = error_of(&r, 422);
    assert_eq!(field.as_deref(), Some("name"));
    assert!(msg.contains("app.gslb.example"), "{msg}");
    assert_eq!(f.state.registry.len(), 0);
}

#[tokio::test]
async fn not_found_and_wrong_method_are_json() {
    let f = fixture(None);
    for (m, p) in [
        ("GET", "/api/v1/nameservices/absent.gslb.example"),
        ("DELETE", "/api/v1/nameservices/absent.gslb.example"),
        ("GET", "/api/v1/nameservices/not..valid"),
        ("GET", "/api/v1/other"),
        ("GET", "/nope"),
    ] {
        let r = call(&f.state, req(m, p).body(Body::empty()).unwrap()).await;
        error_of(&r, 404);
    }
    let r = call(
        &f.state,
        req("POST", "/api/v1/nameservices")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    error_of(&r, 405);
    assert_eq!(r.headers[header::ALLOW], "GET,HEAD");
    let r = call(
        &f.state,
        req("PATCH", "/api/v1/nameservices/a.gslb.example")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    error_of(&r, 405);
    let allow = r.headers[header::ALLOW].to_str().unwrap();
    for m in ["GET", "PUT", "DELETE"] {
        assert!(allow.contains(m), "{allow}");
    }
}

#[tokio::test]
async fn healthz_follows_ready() {
    let f = fixture(Some("t"));
    let r = call(
        &f.state,
        req("GET", "/healthz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    f.state
        .ready
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let r = call(
        &f.state,
        req("GET", "/healthz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let f = fixture(None);
    call(
        &f.state,
        req("GET", "/api/v1/nameservices/x.gslb.example")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    call(
        &f.state,
        req("GET", "/nowhere").body(Body::empty()).unwrap(),
    )
    .await;
    call(
        &f.state,
        req("PATCH", "/api/v1/nameservices")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let r = call(
        &f.state,
        req("GET", "/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers[header::CONTENT_TYPE],
        crate::metrics::CONTENT_TYPE
    );
    let text = String::from_utf8(r.body).unwrap();
    for line in [
        "gslb_api_requests_total{route=\"/api/v1/nameservices/{name}\",method=\"GET\",status=\"404\"} 1\n",
        "gslb_api_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1\n",
        "gslb_api_requests_total{route=\"/api/v1/nameservices\",method=\"PATCH\",status=\"405\"} 1\n",
        "gslb_nameservices 0\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

/// A store whose writes can be made to fail, to see that a failed write publishes
/// nothing and says so.
struct FlakyStore {
    inner: SledStore,
    fail: AtomicBool,
}

impl Store for FlakyStore {
    fn load_each(&self, f: &mut dyn FnMut(NameService, u64)) -> Result<(), StoreError> {
        self.inner.load_each(f)
    }
    fn revision(&self) -> Result<u64, StoreError> {
        self.inner.revision()
    }
    fn apply(&self, changes: &[Change], revision: u64, durable: bool) -> Result<(), StoreError> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Decode {
                key: "test".into(),
                reason: "injected failure".into(),
            });
        }
        self.inner.apply(changes, revision, durable)
    }
    fn load_health(&self) -> Result<Vec<StoredHealth>, StoreError> {
        self.inner.load_health()
    }
    fn save_health(
        &self,
        upsert: &[StoredHealth],
        removed: &[StoredHealth],
    ) -> Result<(), StoreError> {
        self.inner.save_health(upsert, removed)
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }
}

#[tokio::test]
async fn a_store_failure_is_500_and_publishes_nothing() {
    let dir = temp_dir();
    let store = Arc::new(FlakyStore {
        inner: SledStore::open(&dir.join("data")).unwrap(),
        fail: AtomicBool::new(false),
    });
    let f = fixture_zoned(store.clone(), dir);
    let path = "/api/v1/nameservices/app.gslb.example";
    let r = call(&f.state, put_json(path, &minimal("app.gslb.example"))).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let before = f.state.registry.get("app.gslb.example").unwrap().spec;

    store.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut changed = minimal("app.gslb.example");
    changed["ttl"] = json!(5);
    let (msg, field) = error_of(&call(&f.state, put_json(path, &changed)).await, 500);
    assert!(msg.contains("store failed"), "{msg}");
    assert_eq!(field, None);
    let (msg, _) = error_of(
        &call(
            &f.state,
            put_json(
                "/api/v1/nameservices/new.gslb.example",
                &minimal("new.gslb.example"),
            ),
        )
        .await,
        500,
    );
    assert!(msg.contains("store failed"), "{msg}");
    let r = call(&f.state, req("DELETE", path).body(Body::empty()).unwrap()).await;
    error_of(&r, 500);

    // Nothing of it reached the snapshot the DNS workers read.
    let snap = f.state.registry.snapshot_handle().load_full();
    assert_eq!(snap.services.len(), 1);
    assert_eq!(*snap.service("app.gslb.example").unwrap().spec, *before);
    assert_eq!(before.ttl, 30);
}

#[tokio::test]
async fn put_then_get_list_delete_in_process() {
    let dir = temp_dir();
    let store = Arc::new(SledStore::open(&dir.join("data")).unwrap());
    let f = fixture_zoned(store, dir);
    let path = "/api/v1/nameservices/app.gslb.example";
    let r = call(&f.state, put_json(path, &minimal("App.Gslb.Example."))).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.headers[header::LOCATION], path);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/json");
    let created = r.json();
    assert_eq!(created["name"], "app.gslb.example");
    assert_eq!(created["ttl"], 30);
    assert_eq!(created["status"]["targets"][0]["health"], "Unchecked");
    let r = call(&f.state, put_json(path, &minimal("app.gslb.example"))).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(&f.state, req("GET", path).body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["name"], "app.gslb.example");
    let r = call(
        &f.state,
        req("GET", "/api/v1/nameservices")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 1);
    let r = call(&f.state, req("DELETE", path).body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());
    assert!(f.state.registry.is_empty());
}

fn fixture_tokens(tokens: &[(&str, &str, crate::config::Role)]) -> Fixture {
    let mut f = fixture(None);
    let tokens: Vec<crate::config::ApiToken> = tokens
        .iter()
        .map(|(name, token, role)| crate::config::ApiToken {
            name: (*name).into(),
            token: (*token).into(),
            role: *role,
        })
        .collect();
    f.state.tokens = Arc::new(auth::Tokens::new(&tokens));
    f
}

fn with_token(mut r: Request<Body>, token: &str) -> Request<Body> {
    r.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    r
}

#[tokio::test]
async fn read_tokens_may_only_get_and_writes_name_their_token() {
    use crate::config::Role;
    let f = fixture_tokens(&[
        ("ci", "w-secret", Role::Write),
        ("viewer", "r-secret", Role::Read),
    ]);
    // Reads work with either token.
    for t in ["w-secret", "r-secret"] {
        let r = call(
            &f.state,
            with_token(
                req("GET", "/api/v1/nameservices")
                    .body(Body::empty())
                    .unwrap(),
                t,
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{t}");
    }
    // A read token cannot write, whatever the body: 403, nothing changed, no event.
    for (method, path) in [
        ("PUT", "/api/v1/nameservices/a.example"),
        ("DELETE", "/api/v1/nameservices/a.example"),
        ("POST", "/api/v1/nameservices"),
    ] {
        let r = call(
            &f.state,
            with_token(
                req(method, path)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(minimal("a.example").to_string()))
                    .unwrap(),
                "r-secret",
            ),
        )
        .await;
        let (msg, _) = error_of(&r, 403);
        assert!(msg.contains("viewer") && msg.contains("read"), "{msg}");
        assert!(!msg.contains("r-secret"), "{msg}");
    }
    assert!(f.state.events.is_empty());
    // A wrong token is still 401.
    let r = call(
        &f.state,
        with_token(
            req("GET", "/api/v1/events").body(Body::empty()).unwrap(),
            "nope",
        ),
    )
    .await;
    error_of(&r, 401);
    // The fixture serves no zone, so a write is refused (422) by the registry
    // after the token check: no event either.
    let r = call(
        &f.state,
        with_token(
            put_json("/api/v1/nameservices/a.example", &minimal("a.example")),
            "w-secret",
        ),
    )
    .await;
    error_of(&r, 422);
    assert!(f.state.events.is_empty());
}

#[tokio::test]
async fn events_list_filters_and_rejects_bad_parameters() {
    use crate::events::{EventKind, NewEvent};
    let f = fixture(None);
    for i in 0..5 {
        f.state.events.record(
            NewEvent::new(
                if i % 2 == 0 {
                    EventKind::Created
                } else {
                    EventKind::HealthChanged
                },
                format!("#{i}"),
            )
            .nameservice(if i < 3 { "a.example" } else { "b.example" }),
        );
    }
    let get = |path: &'static str| {
        let state = f.state.clone();
        async move { call(&state, req("GET", path).body(Body::empty()).unwrap()).await }
    };
    let msgs = |r: &Reply| -> Vec<String> {
        r.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["message"].as_str().unwrap().to_string())
            .collect()
    };
    let r = get("/api/v1/events").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(msgs(&r), ["#4", "#3", "#2", "#1", "#0"]);
    let first = &r.json()["items"][0];
    for key in [
        "id",
        "time",
        "kind",
        "nameservice",
        "target",
        "message",
        "token",
        "instance",
    ] {
        assert!(first.get(key).is_some(), "{key} missing in {first}");
    }
    assert_eq!(first["instance"], "test");
    assert_eq!(msgs(&get("/api/v1/events?limit=2").await), ["#4", "#3"]);
    assert_eq!(
        msgs(&get("/api/v1/events?nameservice=A.example.").await),
        ["#2", "#1", "#0"]
    );
    assert_eq!(
        msgs(&get("/api/v1/events?kind=HealthChanged").await),
        ["#3", "#1"]
    );
    assert_eq!(msgs(&get("/api/v1/events?after=4").await), ["#4"]);
    for (bad, field) in [
        ("/api/v1/events?limit=0", "limit"),
        ("/api/v1/events?limit=101", "limit"),
        ("/api/v1/events?limit=x", "limit"),
        ("/api/v1/events?kind=Nope", "kind"),
        ("/api/v1/events?kind=", "kind"),
        ("/api/v1/events?kind=Created,", "kind"),
        ("/api/v1/events?bogus=1", "bogus"),
        ("/api/v1/events?limit=1&limit=2", "limit"),
    ] {
        let r = get(bad).await;
        let (_, f) = error_of(&r, 400);
        assert_eq!(f.as_deref(), Some(field), "{bad}");
    }
}

#[tokio::test]
async fn list_pages_with_a_name_cursor() {
    let dir = temp_dir();
    let store = Arc::new(SledStore::open(&dir.join("data")).unwrap());
    let f = fixture_zoned(store, dir);
    let names: Vec<String> = (0..7).map(|i| format!("n{i}.gslb.example")).collect();
    for n in &names {
        let r = call(
            &f.state,
            put_json(&format!("/api/v1/nameservices/{n}"), &minimal(n)),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let page = |q: String| {
        let state = f.state.clone();
        async move {
            let r = call(
                &state,
                req("GET", &format!("/api/v1/nameservices?{q}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
            assert_eq!(
                r.status,
                StatusCode::OK,
                "{}",
                String::from_utf8_lossy(&r.body)
            );
            let v = r.json();
            let items: Vec<String> = v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["name"].as_str().unwrap().to_string())
                .collect();
            (
                items,
                v.get("continue")
                    .and_then(|c| c.as_str())
                    .map(str::to_string),
            )
        }
    };
    let (p1, c1) = page("limit=3".into()).await;
    assert_eq!(p1, names[..3]);
    let c1 = c1.expect("a continue token");
    // A write between pages: a name before the cursor appears nowhere, one after
    // it appears in a later page; nothing repeats or goes missing.
    let r = call(
        &f.state,
        put_json(
            "/api/v1/nameservices/a0.gslb.example",
            &minimal("a0.gslb.example"),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = call(
        &f.state,
        put_json(
            "/api/v1/nameservices/n5a.gslb.example",
            &minimal("n5a.gslb.example"),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let (p2, c2) = page(format!("limit=3&continue={c1}")).await;
    assert_eq!(
        p2,
        ["n3.gslb.example", "n4.gslb.example", "n5.gslb.example"]
    );
    let (p3, c3) = page(format!("limit=3&continue={}", c2.unwrap())).await;
    assert_eq!(p3, ["n5a.gslb.example", "n6.gslb.example"]);
    assert_eq!(c3, None);
    // Exactly a page left: no continue.
    let (p, c) = page("limit=9".into()).await;
    assert_eq!((p.len(), c), (9, None));
    // No limit: the whole list, no continue key at all.
    let r = call(
        &f.state,
        req("GET", "/api/v1/nameservices")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(r.json().get("continue").is_none());
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 9);
    for bad in ["limit=0", "limit=10001", "limit=-1", "limt=3"] {
        let r = call(
            &f.state,
            req("GET", &format!("/api/v1/nameservices?{bad}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        error_of(&r, 400);
    }
}
