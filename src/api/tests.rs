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
        Vec::new(),
    )
    .unwrap();
    let registry = Arc::new(registry);
    let metrics = Arc::new(Metrics::new());
    Fixture {
        state: AppState {
            exporter: Arc::new(crate::app::exporter(&metrics, &registry)),
            registry,
            metrics,
            token: token.map(str::to_string),
            ready: Arc::new(AtomicBool::new(true)),
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

#[test]
fn bearer_parsing() {
    assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
    assert_eq!(bearer_token(b"BEARER  abc "), Some(&b"abc"[..]));
    assert_eq!(bearer_token(b"Bearer "), None);
    assert_eq!(bearer_token(b"Bearer"), None);
    assert_eq!(bearer_token(b"Basic abc"), None);
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
