//! The hub and the prober driven in-process against listeners on 127.0.0.1.
//! Deadlines are generous: these check behaviour, not speed (that is bench/probe).

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::store::{Change, Store, StoreError};

fn ep(addr: SocketAddr, failure: u32, success: u32) -> Endpoint {
    Endpoint {
        address: addr.ip(),
        port: addr.port(),
        check: crate::model::Check::Tcp,
        period_seconds: 1,
        timeout_seconds: 1,
        failure_threshold: failure,
        success_threshold: success,
        flap_damping: false,
    }
}

/// A fake gateway VIP: a listener that accepts (and counts) connections until dropped.
struct Vip {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Vip {
    fn bind(addr: &str) -> Vip {
        let l = TcpListener::bind(addr).unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (a, s) = (accepted.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok(_) => {
                        a.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Vip {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Stops accepting: the port refuses from now on.
    fn close(mut self) -> SocketAddr {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        self.addr
    }
}

impl Drop for Vip {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

#[derive(Default)]
struct MemStore {
    health: Mutex<Vec<StoredHealth>>,
    writes: AtomicUsize,
}

impl Store for MemStore {
    fn load_each(&self, _: &mut dyn FnMut(NameService, u64)) -> Result<(), StoreError> {
        Ok(())
    }
    fn revision(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
    fn apply(&self, _: &[Change], _: u64, _: bool) -> Result<(), StoreError> {
        Ok(())
    }
    fn load_health(&self) -> Result<Vec<StoredHealth>, StoreError> {
        Ok(self.health.lock().unwrap().clone())
    }
    fn save_health(
        &self,
        upsert: &[StoredHealth],
        removed: &[StoredHealth],
    ) -> Result<(), StoreError> {
        let same = |a: &StoredHealth, b: &StoredHealth| {
            (
                a.address,
                a.port,
                a.period_seconds,
                a.timeout_seconds,
                a.failure_threshold,
                a.success_threshold,
            ) == (
                b.address,
                b.port,
                b.period_seconds,
                b.timeout_seconds,
                b.failure_threshold,
                b.success_threshold,
            )
        };
        let mut h = self.health.lock().unwrap();
        h.retain(|x| !removed.iter().any(|r| same(x, r)));
        for u in upsert {
            h.retain(|x| !same(x, u));
            h.push(u.clone());
        }
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_until_proven_then_fails_over_and_recovers() {
    let vip = Vip::bind("127.0.0.1:0");
    let e = ep(vip.addr, 2, 2);
    let hub = Arc::new(HealthHub::new());
    let mut events = hub.subscribe();
    let cell = hub.acquire(&e, Holder::new("app.example", "dc1"));
    assert_eq!(cell.get(), Health::Pending);
    let prober = hub.start(None);

    // The first probe goes out within a second; two successes are needed.
    assert!(eventually(Duration::from_millis(1500), || vip.count() >= 1).await);
    assert!(eventually(Duration::from_secs(5), || cell.get() == Health::Healthy).await);
    // (The accept thread may lag the kernel's handshake by a few ms.)
    assert!(
        eventually(Duration::from_millis(500), || vip.count() >= 2).await,
        "Healthy after {} probes",
        vip.count()
    );
    let st = hub.status(&e).unwrap();
    assert!(st.consecutive_successes >= 2 && st.consecutive_failures == 0);
    assert!(st.last_probe_time.is_some() && st.last_error.is_none());

    // The VIP stops accepting: Unhealthy after two failed probes (period 1 s).
    let addr = vip.close();
    let down = Instant::now();
    assert!(eventually(Duration::from_secs(5), || cell.get() == Health::Unhealthy).await);
    assert!(
        down.elapsed() < Duration::from_millis(3500),
        "{:?}",
        down.elapsed()
    );
    let st = hub.status(&e).unwrap();
    assert_eq!(st.last_error.as_deref(), Some("connection refused"));
    assert!(st.consecutive_failures >= 2 && st.consecutive_successes == 0);

    // It comes back on the same address: Healthy after two successes.
    let vip = Vip::bind(&addr.to_string());
    assert!(eventually(Duration::from_secs(5), || cell.get() == Health::Healthy).await);
    assert!(eventually(Duration::from_millis(500), || vip.count() >= 2).await);
    // Each change left once, in order, as a verdict event naming its holders (and,
    // in local mode, as this instance's own verdict first).
    let mut got = Vec::new();
    let mut local = Vec::new();
    while let Ok(ev) = events.try_recv() {
        match &*ev {
            HealthEvent::Verdict(c) => {
                assert_eq!(c.source, Source::Local);
                assert_eq!(c.endpoint, e);
                let names: Vec<&str> = c.nameservices().map(|n| &**n).collect();
                got.push((c.old, c.new, names.join(",")));
            }
            HealthEvent::Local { health, .. } => local.push(*health),
            _ => {}
        }
    }
    let app = "app.example".to_string();
    assert_eq!(
        got,
        vec![
            (Health::Pending, Health::Healthy, app.clone()),
            (Health::Healthy, Health::Unhealthy, app.clone()),
            (Health::Unhealthy, Health::Healthy, app),
        ]
    );
    assert_eq!(local, [Health::Healthy, Health::Unhealthy, Health::Healthy]);
    let m = crate::metrics::render_one(hub.collector());
    assert!(
        m.contains("gslb_health_transitions_total{from=\"Healthy\",to=\"Unhealthy\"} 1\n"),
        "{m}"
    );
    assert!(
        m.contains("gslb_health_probes_total{result=\"refused\"} "),
        "{m}"
    );
    assert!(m.contains(&format!(
        "gslb_health_endpoint_healthy{{endpoint=\"tcp-127.0.0.1-{0}-p1-t1-f2-s2\",probe=\"tcp\",address=\"127.0.0.1\",port=\"{0}\",period_seconds=\"1\",timeout_seconds=\"1\",failure_threshold=\"2\",success_threshold=\"2\"}} 1\n",
        addr.port()
    )), "{m}");
    assert!(
        m.contains("gslb_health_endpoints{health=\"Healthy\"} 1\n"),
        "{m}"
    );
    prober.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_probe_per_shared_endpoint_and_cancel_on_release() {
    let vip = Vip::bind("127.0.0.1:0");
    let hub = Arc::new(HealthHub::new());
    let prober = hub.start(None);
    // Three NameServices (two targets each on the same VIP) and a fourth with other
    // thresholds: one probe stream.
    let e = ep(vip.addr, 3, 1);
    let other = ep(vip.addr, 1, 2);
    let mut holders = Vec::new();
    for ns in ["a.example", "b.example", "c.example"] {
        for t in ["dc1", "dc2"] {
            let h = Holder::new(ns, t);
            hub.acquire(&e, h.clone());
            holders.push(h);
        }
    }
    let d = Holder::new("d.example", "dc1");
    let cell_d = hub.acquire(&other, d.clone());
    assert_eq!(hub.probe_streams(), 1);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_millis(4200)).await;
    let n = vip.count();
    // First probe in [0, 1) s, then one at each grid point after it (the first may
    // follow within the same second): 4 to 6 in 4.2 s. Per holder it would be seven
    // times that.
    assert!((3..=6).contains(&n), "{n} probes in {:?}", start.elapsed());
    assert_eq!(cell_d.get(), Health::Healthy);

    // Releasing all but one holder keeps the stream; releasing the last stops it.
    for h in &holders {
        hub.release(&e, h);
    }
    assert_eq!(hub.probe_streams(), 1);
    assert!(hub.status(&e).is_none());
    hub.release(&other, &d);
    assert_eq!(hub.probe_streams(), 0);
    let n = vip.count();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(vip.count(), n, "probes went on after the last release");
    prober.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_probe_delays_nobody() {
    // A VIP whose SYNs are never answered: a listener with a full accept queue.
    let (black, _sock, fill) = black_hole();
    let vip = Vip::bind("127.0.0.1:0");
    let hub = Arc::new(HealthHub::new());
    let prober = hub.start(None);
    // Ten hanging streams (different periods make them distinct) and one healthy one.
    let mut hanging = Vec::new();
    for p in 1..=10u32 {
        let e = Endpoint {
            period_seconds: p,
            timeout_seconds: 1,
            ..ep(black, 1, 1)
        };
        let cell = hub.acquire(&e, Holder::new("x.example", "a"));
        hanging.push((e, cell));
    }
    let good = ep(vip.addr, 1, 1);
    let cell = hub.acquire(&good, Holder::new("y.example", "a"));
    assert!(
        eventually(Duration::from_millis(1500), || cell.get()
            == Health::Healthy)
        .await
    );
    assert!(
        eventually(Duration::from_secs(5), || hanging
            .iter()
            .all(|(_, c)| c.get() == Health::Unhealthy))
        .await
    );
    let st = hub.status(&hanging[0].0).unwrap();
    assert_eq!(
        st.last_error.as_deref(),
        Some("no connection within the 1s timeout")
    );
    assert!(hub.stats().probes[4].load(Ordering::Relaxed) >= 10);
    prober.shutdown().await.unwrap();
    drop(fill);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_persist_coalesced_and_restore() {
    let vip = Vip::bind("127.0.0.1:0");
    let store = Arc::new(MemStore::default());
    let e = ep(vip.addr, 3, 1);
    let gone = ep("127.0.0.1:1".parse().unwrap(), 3, 1);
    {
        let hub = Arc::new(HealthHub::new());
        let cell = hub.acquire(&e, Holder::new("app.example", "dc1"));
        let prober = hub.start(Some(store.clone()));
        assert!(eventually(Duration::from_secs(3), || cell.get() == Health::Healthy).await);
        // Written shortly after the change, without waiting for shutdown.
        assert!(
            eventually(Duration::from_secs(3), || store
                .load_health()
                .unwrap()
                .iter()
                .any(|r| r.port == e.port && r.health == "Healthy"))
            .await
        );
        // Steady success writes nothing more.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let writes = store.writes.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(store.writes.load(Ordering::SeqCst), writes);
        prober.shutdown().await.unwrap();
    }
    // A stale record of an endpoint nobody uses any more.
    let mut rec = store.load_health().unwrap()[0].clone();
    rec.port = gone.port;
    store.save_health(&[rec], &[]).unwrap();
    let saved = store.load_health().unwrap();
    let healthy = saved.iter().find(|r| r.port == e.port).unwrap().clone();
    assert!(healthy.consecutive_successes >= 2, "{healthy:?}");

    // Restart with the VIP gone: the verdict is restored (not Pending), then the
    // probes take it down as usual.
    let addr = vip.close();
    let hub = Arc::new(HealthHub::new());
    hub.restore(store.load_health().unwrap());
    let cell = hub.acquire(&e, Holder::new("app.example", "dc1"));
    assert_eq!(cell.get(), Health::Healthy);
    let st = hub.status(&e).unwrap();
    assert_eq!(st.consecutive_successes, healthy.consecutive_successes);
    assert_eq!(st.last_probe_time, healthy.last_probe_time);
    let prober = hub.start(Some(store.clone()));
    assert!(
        eventually(Duration::from_secs(2), || !store
            .load_health()
            .unwrap()
            .iter()
            .any(|r| r.port == gone.port))
        .await,
        "stale record not removed"
    );
    assert!(eventually(Duration::from_secs(6), || cell.get() == Health::Unhealthy).await);
    prober.shutdown().await.unwrap();
    let r = store.load_health().unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].port, r[0].health.as_str()),
        (addr.port(), "Unhealthy")
    );
    assert!(r[0].consecutive_failures >= 3 && r[0].last_error.is_some());
    assert!(r[0].last_change_time.is_some());
}

#[test]
fn new_thresholds_on_a_known_stream_are_seeded() {
    let hub = HealthHub::new();
    let mut events = hub.subscribe();
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let e31 = ep(addr, 3, 1);
    let c31 = hub.acquire(&e31, Holder::new("a.example", "dc1"));
    // Drive the stream by hand: three successes.
    let stream = hub.table.streams()[0].clone();
    for _ in 0..3 {
        hub.record(&stream, &ProbeResult::Success, Duration::ZERO);
    }
    assert_eq!(c31.get(), Health::Healthy);
    // A PUT that only changes thresholds keeps the target in service.
    let e22 = ep(addr, 2, 2);
    let c22 = hub.acquire(&e22, Holder::new("a.example", "dc1"));
    assert_eq!(c22.get(), Health::Healthy);
    hub.release(&e31, &Holder::new("a.example", "dc1"));
    assert_eq!(hub.probe_streams(), 1);
    // One failure: not enough for either; two: enough for f=2.
    hub.record(&stream, &ProbeResult::Refused, Duration::ZERO);
    assert_eq!(c22.get(), Health::Healthy);
    hub.record(&stream, &ProbeResult::Timeout, Duration::ZERO);
    assert_eq!(c22.get(), Health::Unhealthy);
    // A local error says nothing about the target.
    hub.record(
        &stream,
        &ProbeResult::LocalError("EMFILE".into()),
        Duration::ZERO,
    );
    assert_eq!(hub.status(&e22).unwrap().consecutive_failures, 2);
    // A brand-new stream is Pending, whatever the thresholds.
    let fresh = ep("127.0.0.2:9".parse().unwrap(), 1, 1);
    assert_eq!(
        hub.acquire(&fresh, Holder::new("b.example", "x")).get(),
        Health::Pending
    );
    // The same holder twice (old and new resource during a PUT) needs two releases.
    let h = Holder::new("b.example", "x");
    hub.acquire(&fresh, h.clone());
    hub.release(&fresh, &h);
    assert!(hub.status(&fresh).is_some());
    hub.release(&fresh, &h);
    assert!(hub.status(&fresh).is_none());
    assert_eq!(hub.probe_streams(), 1);
    // Each verdict nobody holds any more leaves as a release (persistence deletes
    // its record).
    let mut released = Vec::new();
    while let Ok(ev) = events.try_recv() {
        if let HealthEvent::Released { endpoint } = &*ev {
            released.push(endpoint.clone());
        }
    }
    assert_eq!(released, [e31, fresh]);
}

/// A listener whose accept queue is full: its SYNs are never answered (a black hole).
fn black_hole() -> (
    SocketAddr,
    socket2::Socket,
    Vec<std::io::Result<std::net::TcpStream>>,
) {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    sock.listen(0).unwrap();
    let addr: SocketAddr = sock.local_addr().unwrap().as_socket().unwrap();
    let mut fill = Vec::new();
    for _ in 0..4 {
        fill.push(std::net::TcpStream::connect_timeout(
            &addr,
            Duration::from_millis(200),
        ));
    }
    (addr, sock, fill)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_probe_counts_at_once_and_keeps_the_schedule() {
    // Timeout = period: each probe runs into its timeout exactly at the next slot.
    // Three failures must take three periods (first probe within 1 s, then one per
    // second, each counted when it times out): Unhealthy within 4 s. A probe that
    // pushed the next slot back would take 5 s at least.
    let (addr, _sock, _fill) = black_hole();
    let e = ep(addr, 3, 1);
    let hub = Arc::new(HealthHub::new());
    let cell = hub.acquire(&e, Holder::new("bh.example", "dc1"));
    let start = Instant::now();
    let prober = hub.start(None);
    assert!(eventually(Duration::from_secs(8), || cell.get() == Health::Unhealthy).await);
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(4600),
        "Unhealthy after {took:?}"
    );
    // And the timeouts keep coming once per period.
    let timeouts = || hub.stats().probes[4].load(Ordering::Relaxed);
    let before = timeouts();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let n = timeouts() - before;
    assert!((3..=4).contains(&n), "{n} timed-out probes in 3.5 s");
    prober.shutdown().await.unwrap();
}

#[test]
fn http_verdicts_are_kept_apart_and_restored_by_their_own_key() {
    use crate::model::{Check, HttpCheck};
    let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let http = |path: &str| Endpoint {
        check: Check::Http(Arc::new(HttpCheck {
            https: false,
            path: path.into(),
            host: None,
            headers: vec![("X-A".into(), "1".into())],
        })),
        ..ep(addr, 1, 1)
    };
    let (a, b, tcp) = (http("/a"), http("/b"), ep(addr, 1, 1));
    let hub = HealthHub::new();
    let cells: Vec<_> = [&a, &b, &tcp]
        .iter()
        .map(|e| hub.acquire(e, Holder::new("x.example", "dc1")))
        .collect();
    // Three probes of one address and port: three streams.
    assert_eq!(hub.probe_streams(), 3);
    hub.feed(&a, ProbeResult::Success);
    hub.feed(&b, ProbeResult::HttpStatus(503));
    assert_eq!(
        cells.iter().map(|c| c.get()).collect::<Vec<_>>(),
        [Health::Healthy, Health::Unhealthy, Health::Pending]
    );
    assert_eq!(
        hub.status(&b).unwrap().last_error.as_deref(),
        Some("HTTP status 503")
    );
    let records = hub.records(None);
    let keys: std::collections::HashSet<String> = records.iter().map(|r| r.key()).collect();
    assert_eq!(keys.len(), 3, "{records:?}");
    let again = HealthHub::new();
    again.restore(records);
    assert_eq!(
        again.acquire(&b, Holder::new("x.example", "dc1")).get(),
        Health::Unhealthy
    );
    assert_eq!(
        again.acquire(&a, Holder::new("x.example", "dc1")).get(),
        Health::Healthy
    );
    assert_eq!(
        again.status(&b).unwrap().last_error.as_deref(),
        Some("HTTP status 503")
    );
}

#[test]
fn flap_damping_memory_survives_a_restart() {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let e = Endpoint {
        flap_damping: true,
        ..ep(addr, 3, 1)
    };
    let hub = HealthHub::new();
    let cell = hub.acquire(&e, Holder::new("x.example", "dc1"));
    for i in 0..12 {
        let r = if i % 2 == 0 {
            ProbeResult::Success
        } else {
            ProbeResult::Refused
        };
        hub.feed(&e, r);
    }
    assert_eq!(cell.get(), Health::Unhealthy);
    let hold = hub.status(&e).unwrap().damping;
    assert_eq!(
        hold,
        Some(machine::Hold::FailureRate {
            failed: 6,
            window: 12
        })
    );
    // The same verdict without damping is another record, kept apart.
    let plain = ep(addr, 3, 1);
    hub.acquire(&plain, Holder::new("y.example", "dc1"));
    let records = hub.records(None);
    assert_eq!(records.len(), 2);
    assert!(
        records
            .iter()
            .any(|r| r.flap_damping && r.damping.is_some())
    );

    let again = HealthHub::new();
    again.restore(records);
    let cell = again.acquire(&e, Holder::new("x.example", "dc1"));
    assert_eq!(cell.get(), Health::Unhealthy);
    // One more success: 6 of the last 12 still failed (the window came back).
    again.feed(&e, ProbeResult::Success);
    assert_eq!(cell.get(), Health::Unhealthy);
    assert!(again.status(&e).unwrap().damping.is_some());
    again.feed(&e, ProbeResult::Success);
    assert_eq!(cell.get(), Health::Healthy);
    assert_eq!(again.status(&e).unwrap().damping, None);
}

#[test]
fn the_majority_of_the_fleet_decides_and_a_cut_off_instance_decides_alone() {
    let hub = HealthHub::new();
    hub.join_fleet(true);
    let mut events = hub.subscribe();
    let e = ep("127.0.0.1:9".parse().unwrap(), 1, 1);
    let id = e.id();
    let cell = hub.acquire(&e, Holder::new("a.example", "dc1"));
    let stream = hub.table.streams()[0].clone();
    let obs = |h| {
        Some(Observation {
            health: h,
            last_probe_time: Some(1),
        })
    };
    // Its own probes alone decide nothing: they leave as its observation.
    hub.record(&stream, &ProbeResult::Success, Duration::ZERO);
    assert_eq!(cell.get(), Health::Pending);
    let local = std::iter::from_fn(|| events.try_recv().ok()).find_map(|ev| match &*ev {
        HealthEvent::Local { health, .. } => Some(*health),
        _ => None,
    });
    assert_eq!(local, Some(Health::Healthy));
    // One live observer decides alone.
    hub.observe(&id, "a", obs(Health::Healthy));
    assert_eq!(cell.get(), Health::Healthy);
    // 1 of 3 Unhealthy: no majority.
    hub.observe(&id, "b", obs(Health::Healthy));
    hub.observe(&id, "c", obs(Health::Unhealthy));
    assert_eq!(cell.get(), Health::Healthy);
    // 2 of 3.
    hub.observe(&id, "b", obs(Health::Unhealthy));
    assert_eq!(cell.get(), Health::Unhealthy);
    let quorum = std::iter::from_fn(|| events.try_recv().ok()).find_map(|ev| match &*ev {
        HealthEvent::Verdict(c) if c.new == Health::Unhealthy => Some(c.clone()),
        _ => None,
    });
    let quorum = quorum.expect("a verdict event");
    assert_eq!(quorum.source, Source::Quorum);
    assert_eq!(
        quorum.reason.to_string(),
        "2 of 3 live observers say Unhealthy"
    );
    // c's lease runs out: 1-1 keeps Unhealthy.
    hub.observe(&id, "c", None);
    assert_eq!(cell.get(), Health::Unhealthy);
    let st = hub.status(&e).unwrap();
    let names: Vec<&str> = st
        .observations
        .as_ref()
        .unwrap()
        .iter()
        .map(|(i, _)| &**i)
        .collect();
    assert_eq!(names, ["a", "b"]);
    // Cut off: its own verdict (Healthy) decides; back: the majority again.
    hub.set_cut_off(true);
    assert_eq!(cell.get(), Health::Healthy);
    hub.observe(&id, "b", obs(Health::Unhealthy));
    assert_eq!(cell.get(), Health::Healthy);
    hub.observe_all([
        (
            id.as_str().into(),
            "a".into(),
            Observation {
                health: Health::Unhealthy,
                last_probe_time: None,
            },
        ),
        (
            id.as_str().into(),
            "b".into(),
            Observation {
                health: Health::Unhealthy,
                last_probe_time: None,
            },
        ),
    ]);
    assert_eq!(cell.get(), Health::Healthy);
    hub.set_cut_off(false);
    assert_eq!(cell.get(), Health::Unhealthy);
    // A verdict created later starts from what the fleet says.
    let e2 = ep("127.0.0.1:9".parse().unwrap(), 2, 1);
    hub.observe(&e2.id(), "b", obs(Health::Healthy));
    assert_eq!(
        hub.acquire(&e2, Holder::new("b.example", "dc1")).get(),
        Health::Healthy
    );
    // Without the majority rule the fleet shows but does not decide.
    let alone = HealthHub::new();
    alone.join_fleet(false);
    let c = alone.acquire(&e, Holder::new("a.example", "dc1"));
    alone.observe(&id, "b", obs(Health::Healthy));
    assert_eq!(c.get(), Health::Pending);
    assert_eq!(alone.status(&e).unwrap().observations.unwrap().len(), 1);
    assert!(HealthHub::new().status(&e).is_none());
}
