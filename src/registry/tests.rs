//! The registry's side of health: holding endpoints across writes, and Ready
//! transitions recorded when health changes.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::health::{Health, ProbeResult};
use crate::model::Endpoint;
use crate::store::SledStore;

struct Fixture {
    registry: Arc<Registry>,
    hub: Arc<HealthHub>,
    dir: std::path::PathBuf,
    /// Runs the health follower (the tests themselves block, as API handlers do
    /// on their own threads).
    _rt: tokio::runtime::Runtime,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fixture(tag: &str) -> Fixture {
    let dir = std::env::temp_dir().join(format!("gslb-registry-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("zones")).unwrap();
    std::fs::write(
        dir.join("zones/hc.example.zone"),
        "$ORIGIN hc.example.\n@ 300 IN SOA ns1 hostmaster 1 3600 600 86400 60\n@ 300 IN NS ns1\nns1 300 IN A 192.0.2.53\n",
    )
    .unwrap();
    let zones = Arc::new(ZoneSet::load_dir(&dir.join("zones")).unwrap());
    let store = Arc::new(SledStore::open(&dir.join("data")).unwrap());
    let hub = Arc::new(HealthHub::new());
    let registry = Arc::new(
        Registry::open(
            "test",
            store,
            zones,
            Arc::new(Topology::default()),
            hub.clone(),
            Default::default(),
        )
        .unwrap(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    {
        let _in = rt.enter();
        registry.follow_health();
    }
    Fixture {
        registry,
        hub,
        dir,
        _rt: rt,
    }
}

fn ns(name: &str, port: u16, failure: u32) -> NameService {
    NameService::from_json(json!({
        "name": name, "policy": "RoundRobin",
        "healthCheck": {"port": port, "periodSeconds": 5, "failureThreshold": failure},
        "targets": [{"name": "dc1", "address": "127.0.0.1"}, {"name": "dc2", "address": "127.0.0.2"}]
    }))
    .unwrap()
}

fn cell_of(r: &Registry, name: &str, i: usize) -> Arc<crate::health::HealthCell> {
    r.snapshot_handle().load().service(name).unwrap().v4[i]
        .health
        .clone()
        .unwrap()
}

fn ready_of(r: &Registry, name: &str) -> Condition {
    r.get(name).unwrap().status.conditions[0].clone()
}

#[test]
fn a_put_that_keeps_an_endpoint_keeps_its_verdict_and_stream() {
    let f = fixture("keep");
    let r = &f.registry;
    let a = ns("a.hc.example", 443, 3);
    r.put(a.clone()).unwrap();
    let ep0 = a.endpoint(0).unwrap();
    f.hub.feed(&ep0, ProbeResult::Success);
    assert_eq!(cell_of(r, "a.hc.example", 0).get(), Health::Healthy);
    assert_eq!(f.hub.probe_streams(), 2);

    // Same endpoints, another TTL: the very same cells, still Healthy.
    let mut a2 = a.clone();
    a2.ttl = 7;
    let before = cell_of(r, "a.hc.example", 0);
    r.put(a2).unwrap();
    assert!(Arc::ptr_eq(&before, &cell_of(r, "a.hc.example", 0)));
    assert_eq!(f.hub.probe_streams(), 2);

    // Other thresholds on the same probe: a new verdict seeded from the stream.
    r.put(ns("a.hc.example", 443, 2)).unwrap();
    assert_eq!(cell_of(r, "a.hc.example", 0).get(), Health::Healthy);
    assert_eq!(f.hub.probe_streams(), 2);
    assert!(f.hub.status(&ep0).is_none(), "old verdict still held");

    // Another port: new streams, the old ones stop.
    r.put(ns("a.hc.example", 8443, 2)).unwrap();
    assert_eq!(f.hub.probe_streams(), 2);
    assert_eq!(cell_of(r, "a.hc.example", 0).get(), Health::Pending);

    // A second service on the same endpoints shares streams; deleting both stops them.
    r.put(ns("b.hc.example", 8443, 2)).unwrap();
    assert_eq!(f.hub.probe_streams(), 2);
    r.delete("a.hc.example").unwrap();
    assert_eq!(f.hub.probe_streams(), 2);
    r.delete("b.hc.example").unwrap();
    assert_eq!(f.hub.probe_streams(), 0);
}

#[test]
fn ready_transitions_are_dated_by_the_health_change() {
    let f = fixture("ready");
    let r = &f.registry;
    let a = ns("a.hc.example", 443, 1);
    let eps: Vec<Endpoint> = (0..2).map(|i| a.endpoint(i).unwrap()).collect();
    r.put(a).unwrap();
    assert_eq!(ready_of(r, "a.hc.example").reason, "Pending");
    f.hub.feed(&eps[0], ProbeResult::Success);
    f.hub.feed(&eps[1], ProbeResult::Success);
    let healthy = ready_of(r, "a.hc.example");
    assert_eq!(healthy.reason, "AllTargetsHealthy");
    let changed_at = crate::timefmt::rfc3339(crate::timefmt::now_unix());

    // Time passes; reading does not move the transition time.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(ready_of(r, "a.hc.example"), healthy);

    // A failure is recorded when it happens, even if nobody reads the status.
    let now = || crate::timefmt::rfc3339(crate::timefmt::now_unix());
    let t0 = now();
    f.hub.feed(&eps[1], ProbeResult::Refused);
    let t1 = now();
    std::thread::sleep(Duration::from_millis(1100));
    let some = ready_of(r, "a.hc.example");
    assert_eq!(some.reason, "SomeTargetsUnhealthy");
    assert!(t0 <= some.last_transition_time && some.last_transition_time <= t1);
    assert!(some.last_transition_time > changed_at);
}

#[test]
fn reopening_restores_verdicts_and_the_ready_date() {
    let f = fixture("reopen");
    let a = ns("a.hc.example", 443, 1);
    let eps: Vec<Endpoint> = (0..2).map(|i| a.endpoint(i).unwrap()).collect();
    f.registry.put(a).unwrap();
    // The last change is the one that set the reason (Pending -> SomeTargetsUnhealthy).
    f.hub.feed(&eps[1], ProbeResult::Refused);
    f.hub.feed(&eps[0], ProbeResult::Success);
    let before = ready_of(&f.registry, "a.hc.example");
    assert_eq!(before.reason, "SomeTargetsUnhealthy");
    let records = f.hub.records(None);
    assert_eq!(records.len(), 2);

    std::thread::sleep(Duration::from_millis(1100));
    let hub = Arc::new(HealthHub::new());
    hub.restore(records);
    let store = Arc::new(SledStore::open(&f.dir.join("data2")).unwrap());
    store
        .apply(
            &[crate::store::Change::Put(
                ns("a.hc.example", 443, 1).into(),
                1,
            )],
            1,
            true,
        )
        .unwrap();
    let zones = Arc::new(ZoneSet::load_dir(&f.dir.join("zones")).unwrap());
    let r = Registry::open(
        "test",
        store,
        zones,
        Arc::new(Topology::default()),
        hub,
        Default::default(),
    )
    .unwrap();
    assert_eq!(cell_of(&r, "a.hc.example", 0).get(), Health::Healthy);
    assert_eq!(cell_of(&r, "a.hc.example", 1).get(), Health::Unhealthy);
    let after = ready_of(&r, "a.hc.example");
    assert_eq!(after.reason, "SomeTargetsUnhealthy");
    assert_eq!(after.last_transition_time, before.last_transition_time);
}

#[test]
fn startup_applies_the_same_placement_checks_as_a_write() {
    let f = fixture("placement");
    let store = Arc::new(SledStore::open(&f.dir.join("data2")).unwrap());
    store
        .apply(
            &[
                crate::store::Change::Put(ns("ok.hc.example", 443, 1).into(), 1),
                crate::store::Change::Put(ns("app.sub.hc.example", 443, 1).into(), 2),
                crate::store::Change::Put(ns("www.hc.example", 443, 1).into(), 3),
            ],
            3,
            true,
        )
        .unwrap();
    // The zone now delegates sub.hc.example and holds a static CNAME at www: a write
    // of those names would be refused (409), so startup does not serve them either.
    std::fs::write(
        f.dir.join("zones/hc.example.zone"),
        "$ORIGIN hc.example.\n@ 300 IN SOA ns1 hostmaster 1 3600 600 86400 60\n@ 300 IN NS ns1\nns1 300 IN A 192.0.2.53\n\
         sub 300 IN NS ns.other.example.\nwww 300 IN CNAME ok\n",
    )
    .unwrap();
    let zones = Arc::new(ZoneSet::load_dir(&f.dir.join("zones")).unwrap());
    let hub = Arc::new(HealthHub::new());
    let r = Registry::open(
        "test",
        store.clone(),
        zones,
        Arc::new(Topology::default()),
        hub.clone(),
        Default::default(),
    )
    .unwrap();
    assert!(r.get("ok.hc.example").is_some());
    assert!(r.get("app.sub.hc.example").is_none());
    assert!(r.get("www.hc.example").is_none());
    assert_eq!(r.len(), 1);
    assert_eq!(r.revision(), 3);
    // Parked names are not probed.
    assert_eq!(hub.probe_streams(), 2);
    // They stay stored (the zone may change back) until deleted.
    assert_eq!(store.load_all().unwrap().len(), 3);
    assert!(matches!(
        r.put(ns("www.hc.example", 443, 1)),
        Err(RegistryError::Collision { .. })
    ));
    r.delete("www.hc.example").unwrap();
    assert!(matches!(
        r.delete("www.hc.example"),
        Err(RegistryError::NotFound(_))
    ));
    assert_eq!(store.load_all().unwrap().len(), 2);
    assert_eq!(r.revision(), 4);
}

#[test]
fn the_follower_dates_a_reason_by_the_change_that_set_it() {
    let f = fixture("follow");
    let r = &f.registry;
    let mut a = ns("a.hc.example", 443, 1);
    a.targets.push(a.targets[1].clone());
    a.targets[2].name = "dc3".into();
    a.targets[2].address = Some("127.0.0.3".parse().unwrap());
    a.targets[2].probe_address = a.targets[2].address;
    let eps: Vec<Endpoint> = (0..3).map(|i| a.endpoint(i).unwrap()).collect();
    r.put(a).unwrap();
    for e in &eps {
        f.hub.feed(e, ProbeResult::Success);
    }
    let now = || crate::timefmt::rfc3339(crate::timefmt::now_unix());
    std::thread::sleep(Duration::from_millis(1100));
    // dc3 goes down: SomeTargetsUnhealthy from now, recorded by the follower
    // without anyone reading the status.
    let t0 = now();
    f.hub.feed(&eps[2], ProbeResult::Refused);
    let t1 = now();
    std::thread::sleep(Duration::from_millis(1100));
    // dc2 goes down too: the reason stays, and so does its date.
    f.hub.feed(&eps[1], ProbeResult::Refused);
    std::thread::sleep(Duration::from_millis(200));
    let some = ready_of(r, "a.hc.example");
    assert_eq!(some.reason, "SomeTargetsUnhealthy");
    assert!(
        t0 <= some.last_transition_time && some.last_transition_time <= t1,
        "{some:?} not in [{t0}, {t1}]"
    );
}
