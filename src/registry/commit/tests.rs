//! Group commit: batching, per-writer outcomes, all-or-nothing batches, and old
//! snapshots freed by the committer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::policy::Topology;
use crate::registry::{PutOutcome, Registry};
use crate::store::{StoreError, StoredHealth};
use crate::zone::ZoneSet;

/// An in-memory store that counts its flushes, records what each one wrote, can
/// hold a flush until the test opens its gate, and can be told to fail.
#[derive(Default)]
struct MemStore {
    data: Mutex<BTreeMap<String, (Arc<NameService>, u64)>>,
    overrides: Mutex<BTreeMap<(String, String), (Override, u64)>>,
    /// One entry per successful flush: what it wrote, sorted.
    flushed: Mutex<Vec<Vec<String>>>,
    applies: AtomicUsize,
    fail: AtomicBool,
    /// (closed, a flush is waiting at the gate)
    gate: Mutex<(bool, bool)>,
    gate_cv: Condvar,
    /// Time each flush takes (lets writers pile up in the concurrent test).
    delay: Option<Duration>,
}

impl MemStore {
    fn close_gate(&self) {
        self.gate.lock().unwrap().0 = true;
    }

    /// Waits until a flush is held at the closed gate.
    fn wait_held(&self) {
        let mut g = self.gate.lock().unwrap();
        while !g.1 {
            g = self.gate_cv.wait(g).unwrap();
        }
    }

    fn open_gate(&self) {
        *self.gate.lock().unwrap() = (false, false);
        self.gate_cv.notify_all();
    }

    fn flushes(&self) -> Vec<Vec<String>> {
        self.flushed.lock().unwrap().clone()
    }
}

impl Store for MemStore {
    fn load_each(&self, f: &mut dyn FnMut(NameService, u64)) -> Result<(), StoreError> {
        for (ns, rev) in self.data.lock().unwrap().values() {
            f((**ns).clone(), *rev);
        }
        Ok(())
    }

    fn revision(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    fn load_overrides(&self) -> Result<Vec<crate::store::StoredOverride>, StoreError> {
        Ok(self
            .overrides
            .lock()
            .unwrap()
            .iter()
            .map(|((n, t), (o, rev))| crate::store::StoredOverride {
                nameservice: n.clone(),
                target: t.clone(),
                ovr: o.clone(),
                revision: *rev,
            })
            .collect())
    }

    fn apply(&self, changes: &[Change], _revision: u64, _durable: bool) -> Result<(), StoreError> {
        self.applies.fetch_add(1, Ordering::SeqCst);
        let fail = self.fail.load(Ordering::SeqCst);
        {
            let mut g = self.gate.lock().unwrap();
            if g.0 {
                g.1 = true;
                self.gate_cv.notify_all();
                while g.0 {
                    g = self.gate_cv.wait(g).unwrap();
                }
            }
        }
        if let Some(d) = self.delay {
            std::thread::sleep(d);
        }
        if fail {
            return Err(StoreError::Decode {
                key: "-".into(),
                reason: "injected flush failure".into(),
            });
        }
        let mut data = self.data.lock().unwrap();
        let mut wrote = Vec::new();
        for c in changes {
            match c {
                Change::Put(ns, rev) => {
                    wrote.push(format!("put {} ttl {}", ns.name, ns.ttl));
                    data.insert(ns.name.clone(), (ns.clone(), *rev));
                }
                Change::Delete(name) => {
                    wrote.push(format!("delete {name}"));
                    data.remove(name);
                }
                Change::PutOverride(name, target, o, rev) => {
                    wrote.push(format!("override {name}/{target} {}", o.state.as_str()));
                    self.overrides
                        .lock()
                        .unwrap()
                        .insert((name.clone(), target.clone()), (o.clone(), *rev));
                }
                Change::DeleteOverride(name, target) => {
                    wrote.push(format!("unoverride {name}/{target}"));
                    self.overrides
                        .lock()
                        .unwrap()
                        .remove(&(name.clone(), target.clone()));
                }
            }
        }
        wrote.sort();
        self.flushed.lock().unwrap().push(wrote);
        Ok(())
    }

    fn load_health(&self) -> Result<Vec<StoredHealth>, StoreError> {
        Ok(Vec::new())
    }

    fn save_health(&self, _: &[StoredHealth], _: &[StoredHealth]) -> Result<(), StoreError> {
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

fn registry(store: Arc<MemStore>) -> Registry {
    let zones =
        ZoneSet::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("zones")).unwrap();
    Registry::open(
        "test",
        store,
        Arc::new(zones),
        Arc::new(Topology::default()),
        Arc::new(HealthHub::new()),
        Default::default(),
    )
    .unwrap()
}

fn ns(name: &str, ttl: u32) -> NameService {
    NameService::from_json(json!({
        "name": name, "ttl": ttl, "policy": "RoundRobin",
        "targets": [{"name": "a", "address": "192.0.2.1"}]
    }))
    .unwrap()
}

fn put(name: &str, ttl: u32) -> Op {
    Op::Put(Arc::new(ns(name, ttl)), Precondition::default())
}

fn delete(name: &str) -> Op {
    Op::Delete(name.to_string(), Precondition::default())
}

fn if_match(rev: u64) -> Precondition {
    Precondition {
        if_match: Some(super::super::Tags::Revisions(vec![rev])),
        if_none_match: None,
    }
}

fn if_none_match() -> Precondition {
    Precondition {
        if_match: None,
        if_none_match: Some(super::super::Tags::Any),
    }
}

/// What a writer was told, in a comparable form.
fn told(o: Outcome) -> String {
    match o {
        Ok(Applied::Put {
            created: true,
            revision,
        }) => format!("created@{revision}"),
        Ok(Applied::Put {
            created: false,
            revision,
        }) => format!("replaced@{revision}"),
        Ok(Applied::Deleted { revision }) => format!("deleted@{revision}"),
        Err(RegistryError::NotFound(_)) => "404".into(),
        Err(RegistryError::PreconditionFailed(_)) => "412".into(),
        Err(RegistryError::OutsideZones { .. }) => "422".into(),
        Err(RegistryError::Collision { .. }) => "409".into(),
        Err(RegistryError::Store(_)) => "500".into(),
        Err(e) => format!("unexpected {e}"),
    }
}

/// Holds the committer inside the flush of `first`, queues `ops` behind it, then
/// lets everything through; returns what each of `ops` was told.
fn behind_one_flush(r: &Registry, store: &MemStore, first: Op, ops: Vec<Op>) -> Vec<String> {
    store.close_gate();
    let first = r.submit(first).unwrap();
    store.wait_held();
    let mut pending: Vec<_> = ops.into_iter().map(|op| r.submit(op).unwrap()).collect();
    // The committer is inside a flush: nothing queued is decided, let alone visible.
    for rx in &mut pending {
        assert!(rx.try_recv().is_err());
    }
    store.open_gate();
    let _ = first.blocking_recv().unwrap();
    pending
        .into_iter()
        .map(|rx| told(rx.blocking_recv().unwrap()))
        .collect()
}

#[test]
fn queued_writers_share_one_flush_and_each_gets_its_own_outcome() {
    let store = Arc::new(MemStore::default());
    let r = registry(store.clone());
    r.put(ns("seed.gslb.example", 30)).unwrap();
    r.put(ns("keep.gslb.example", 30)).unwrap();
    let keep_entry = r
        .snapshot
        .load()
        .service("keep.gslb.example")
        .unwrap()
        .clone();

    let outcomes = behind_one_flush(
        &r,
        &store,
        put("a.gslb.example", 30),
        vec![
            put("b.gslb.example", 30),     // new
            put("b.gslb.example", 30),     // unchanged after the one before
            put("a.gslb.example", 60),     // replaces what the held flush wrote
            put("c.gslb.example", 30),     // new ...
            delete("c.gslb.example"),      // ... and gone again: never written
            delete("c.gslb.example"),      // 404 only because of the delete before
            delete("nope.gslb.example"),   // 404
            put("a.other.example", 30),    // outside every zone
            put("alias.gslb.example", 30), // static CNAME
            delete("seed.gslb.example"),   // deleted ...
            put("seed.gslb.example", 30),  // ... and put back as it was: a new version
            // Conditions see the state the writes before them leave.
            Op::Put(Arc::new(ns("a.gslb.example", 61)), if_match(5)), // a is at 5
            Op::Put(Arc::new(ns("a.gslb.example", 62)), if_match(5)), // now at 10: 412
            Op::Put(Arc::new(ns("b.gslb.example", 31)), if_none_match()), // exists: 412
            Op::Put(Arc::new(ns("d.gslb.example", 30)), if_none_match()), // absent: created
            Op::Delete("b.gslb.example".into(), if_match(3)),         // b is at 4: 412
            Op::Delete("b.gslb.example".into(), if_match(4)),         // deleted
            Op::Put(Arc::new(ns("keep.gslb.example", 30)), if_match(2)), // unchanged, matches
        ],
    );
    assert_eq!(
        outcomes,
        [
            "created@4",
            "replaced@4",
            "replaced@5",
            "created@6",
            "deleted@7",
            "404",
            "404",
            "422",
            "409",
            "deleted@8",
            "created@9",
            "replaced@10",
            "412",
            "412",
            "created@11",
            "412",
            "deleted@12",
            "replaced@2",
        ]
    );

    // 20 writes, 4 flushes: seed, keep, the held one, and everything queued behind it.
    assert_eq!(
        store.flushes(),
        [
            vec!["put seed.gslb.example ttl 30"],
            vec!["put keep.gslb.example ttl 30"],
            vec!["put a.gslb.example ttl 30"],
            // b was created and deleted again inside the batch: never written.
            vec![
                "put a.gslb.example ttl 61",
                "put d.gslb.example ttl 30",
                "put seed.gslb.example ttl 30"
            ],
        ]
    );
    let snap = r.snapshot.load();
    assert_eq!(snap.service("a.gslb.example").unwrap().ttl, 61);
    assert_eq!(snap.service("a.gslb.example").unwrap().revision, 10);
    assert!(snap.service("b.gslb.example").is_none());
    assert!(snap.service("c.gslb.example").is_none());
    assert_eq!(snap.service("seed.gslb.example").unwrap().revision, 9);
    // A name the batch left as it was keeps its compiled entry (and its rotation).
    assert!(Arc::ptr_eq(
        snap.service("keep.gslb.example").unwrap(),
        &keep_entry
    ));
    assert_eq!(snap.services.len(), 4);
    assert_eq!(r.revision(), 12);
}

#[test]
fn a_failed_flush_fails_the_whole_batch_and_publishes_nothing() {
    let store = Arc::new(MemStore::default());
    let r = registry(store.clone());
    r.put(ns("keep.gslb.example", 30)).unwrap();
    r.put(ns("other.gslb.example", 30)).unwrap();
    let before = r.snapshot.load_full();
    store.fail.store(true, Ordering::SeqCst);

    let outcomes = behind_one_flush(
        &r,
        &store,
        put("a.gslb.example", 30),
        vec![
            put("b.gslb.example", 30),
            put("b.gslb.example", 30), // would be 200 after the one before: 500
            delete("keep.gslb.example"),
            delete("keep.gslb.example"), // would be 404 after the one before: 500
            delete("nope.gslb.example"), // 404 whatever the batch does
            put("a.other.example", 30),  // 422 whatever the batch does
            put("other.gslb.example", 30), // unchanged from what is published: 200
        ],
    );
    assert_eq!(
        outcomes,
        ["500", "500", "500", "500", "404", "422", "replaced@2"]
    );
    assert_eq!(r.revision(), 2);
    assert!(Arc::ptr_eq(&before, &r.snapshot.load_full()));
    assert_eq!(store.flushes().len(), 2);
    assert!(r.get("keep.gslb.example").is_some());
    assert!(r.get("b.gslb.example").is_none());

    // The store is back: the next write goes through as if nothing happened.
    store.fail.store(false, Ordering::SeqCst);
    assert!(r.put(ns("b.gslb.example", 30)).unwrap().created);
    assert_eq!(r.len(), 3);
}

#[test]
fn an_unchanged_put_writes_nothing() {
    let store = Arc::new(MemStore::default());
    let r = registry(store.clone());
    assert!(r.put(ns("a.gslb.example", 30)).unwrap().created);
    let applies = store.applies.load(Ordering::SeqCst);
    let PutOutcome { created, view, .. } = r.put(ns("a.gslb.example", 30)).unwrap();
    assert!(!created);
    assert_eq!(view.spec.ttl, 30);
    assert_eq!(store.applies.load(Ordering::SeqCst), applies);
}

#[test]
fn many_concurrent_writers_each_get_the_right_outcome() {
    const WRITERS: usize = 32;
    let store = Arc::new(MemStore {
        delay: Some(Duration::from_millis(1)),
        ..MemStore::default()
    });
    let r = Arc::new(registry(store.clone()));
    let shared_created = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..WRITERS)
        .map(|i| {
            let (r, shared_created) = (r.clone(), shared_created.clone());
            std::thread::spawn(move || {
                let name = format!("w{i}.gslb.example");
                assert!(r.put(ns(&name, 30)).unwrap().created);
                assert!(!r.put(ns(&name, 31)).unwrap().created);
                assert!(!r.put(ns(&name, 31)).unwrap().created);
                r.delete(&name).unwrap();
                assert!(matches!(r.delete(&name), Err(RegistryError::NotFound(_))));
                assert!(r.put(ns(&name, 32)).unwrap().created);
                // Everybody writes the same name: exactly one of them creates it.
                if r.put(ns("shared.gslb.example", 100 + i as u32))
                    .unwrap()
                    .created
                {
                    shared_created.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(shared_created.load(Ordering::SeqCst), 1);
    // 7 writes each, of which the unchanged PUT and the 404 write nothing.
    let flushes = store.flushes().len();
    assert!(flushes <= WRITERS * 5, "{flushes} flushes");

    // What is published is exactly what is stored.
    let snap = r.snapshot.load();
    let stored = store.data.lock().unwrap().clone();
    assert_eq!(snap.services.len(), WRITERS + 1);
    assert_eq!(stored.len(), WRITERS + 1);
    for (name, ns) in &stored {
        assert_eq!(*snap.service(name).unwrap().spec, *ns.0);
        assert_eq!(snap.service(name).unwrap().revision, ns.1);
    }
    for i in 0..WRITERS {
        assert_eq!(stored[&format!("w{i}.gslb.example")].0.ttl, 32);
    }
}

#[test]
fn the_committer_frees_replaced_snapshots() {
    let store = Arc::new(MemStore::default());
    let r = registry(store.clone());
    // A reader holding the current snapshot across a write...
    let old = r.snapshot.load_full();
    r.put(ns("a.gslb.example", 30)).unwrap();
    // ... is not its last holder: the committer keeps it ...
    assert_eq!(Arc::strong_count(&old), 2);
    let weak = Arc::downgrade(&old);
    drop(old);
    // ... and drops it itself once the reader is done.
    let deadline = Instant::now() + Duration::from_secs(10);
    while weak.upgrade().is_some() {
        assert!(Instant::now() < deadline, "old snapshot never freed");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn dropping_the_registry_stops_the_committer_and_releases_the_store() {
    let store = Arc::new(MemStore::default());
    let r = registry(store.clone());
    r.put(ns("a.gslb.example", 30)).unwrap();
    drop(r);
    assert_eq!(Arc::strong_count(&store), 1);
}

// ---------------------------------------------------------------- overrides

fn two_targets(name: &str, min: u32) -> NameService {
    NameService::from_json(json!({
        "name": name, "policy": "RoundRobin", "minEligibleTargets": min,
        "targets": [
            {"name": "a", "address": "192.0.2.1"},
            {"name": "b", "address": "192.0.2.2"},
            {"name": "c", "address": "2001:db8::1"}]
    }))
    .unwrap()
}

fn ovr(state: OverrideState, ttl: u32) -> Override {
    Override::from_json(
        json!({"state": state.as_str(), "reason": "test", "ttlSeconds": ttl}),
        crate::timefmt::now_unix_ms(),
        Some("ops".into()),
    )
    .unwrap()
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

/// What the compiled entry of `name` says about its targets' overrides.
fn compiled(r: &Registry, name: &str) -> Vec<Option<OverrideState>> {
    let snap = r.snapshot_handle().load_full();
    let e = snap.service(name).unwrap();
    e.v4.iter()
        .chain(&e.v6)
        .map(|t| t.ovr.map(|(s, _)| s))
        .collect()
}

#[test]
fn overrides_are_decided_stored_compiled_and_survive_a_reopen() {
    let store = Arc::new(MemStore::default());
    let r = registry(store.clone());
    r.put(two_targets("o.gslb.example", 1)).unwrap();
    let drain = ovr(OverrideState::Drain, 60);
    // Unknown name or target: 404; a first drain of the family is fine.
    /// (name, target, what the put answers: the replaced override, or a status)
    type Case<'a> = (&'a str, &'a str, Result<Option<Override>, &'a str>);
    let cases: Vec<Case> = vec![
        ("x.gslb.example", "a", Err("404")),
        ("o.gslb.example", "zz", Err("404")),
        ("o.gslb.example", "a", Ok(None)),
        // b is the last eligible IPv4 target: refused (409) ...
        ("o.gslb.example", "b", Err("409")),
        // ... and so is c, the only IPv6 one.
        ("o.gslb.example", "c", Err("409")),
        // Setting a again replaces.
        ("o.gslb.example", "a", Ok(Some(drain.clone()))),
    ];
    for (name, target, want) in cases {
        let got = block(r.put_override(name, target, drain.clone(), false));
        match (want, got) {
            (Ok(w), Ok(g)) => assert_eq!(g, w, "{name}/{target}"),
            (Err("404"), Err(RegistryError::NotFound(_) | RegistryError::NoSuchTarget { .. })) => {}
            (Err("409"), Err(RegistryError::UnsafeDrain(m))) => {
                assert!(
                    m.contains("minEligibleTargets 1") && m.contains("force=true"),
                    "{m}"
                )
            }
            (w, g) => panic!("{name}/{target}: want {w:?}, got {g:?}"),
        }
    }
    // Forced, it goes through; ForceUnhealthy is not held by the rule.
    block(r.put_override("o.gslb.example", "b", drain.clone(), true)).unwrap();
    block(r.put_override(
        "o.gslb.example",
        "c",
        ovr(OverrideState::ForceUnhealthy, 60),
        false,
    ))
    .unwrap();
    use OverrideState::*;
    assert_eq!(
        compiled(&r, "o.gslb.example"),
        [Some(Drain), Some(Drain), Some(ForceUnhealthy)]
    );
    // A PUT of the NameService keeps them.
    let mut again = two_targets("o.gslb.example", 1);
    again.ttl = 5;
    r.put(again).unwrap();
    assert_eq!(
        compiled(&r, "o.gslb.example"),
        [Some(Drain), Some(Drain), Some(ForceUnhealthy)]
    );
    let removed = block(r.delete_override("o.gslb.example", "b")).unwrap();
    assert_eq!(removed.state, Drain);
    assert!(matches!(
        block(r.delete_override("o.gslb.example", "b")),
        Err(RegistryError::NoOverride { .. })
    ));
    drop(r);
    // Reopened from the store: the overrides are back in the answers.
    let r = registry(store.clone());
    assert_eq!(
        compiled(&r, "o.gslb.example"),
        [Some(Drain), None, Some(ForceUnhealthy)]
    );
    assert_eq!(r.overrides("o.gslb.example").unwrap().len(), 2);
    // Deleting the NameService deletes its overrides.
    r.delete("o.gslb.example").unwrap();
    assert!(store.overrides.lock().unwrap().is_empty());
    r.put(two_targets("o.gslb.example", 1)).unwrap();
    assert_eq!(compiled(&r, "o.gslb.example"), [None, None, None]);
}

#[test]
fn expired_overrides_are_removed_and_reported() {
    let store = Arc::new(MemStore::default());
    let r = registry(store.clone());
    r.put(two_targets("e.gslb.example", 0)).unwrap();
    let short = ovr(OverrideState::Drain, 1);
    let expires = short.expires_at_ms;
    block(r.put_override("e.gslb.example", "a", short, false)).unwrap();
    block(r.put_override(
        "e.gslb.example",
        "b",
        ovr(OverrideState::ForceHealthy, 600),
        false,
    ))
    .unwrap();
    // minEligibleTargets 0: even the last one may be drained without force.
    block(r.put_override("e.gslb.example", "c", ovr(OverrideState::Drain, 600), false)).unwrap();
    assert!(block(r.expire_overrides(expires - 1)).unwrap().is_empty());
    let gone = block(r.expire_overrides(expires)).unwrap();
    assert_eq!(gone.len(), 1);
    assert_eq!((&*gone[0].0, gone[0].1.as_str()), ("e.gslb.example", "a"));
    assert_eq!(store.overrides.lock().unwrap().len(), 2);
    use OverrideState::*;
    assert_eq!(
        compiled(&r, "e.gslb.example"),
        [None, Some(ForceHealthy), Some(Drain)]
    );
    assert!(block(r.expire_overrides(expires)).unwrap().is_empty());
}
