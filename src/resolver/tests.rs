//! The resolver against a real authoritative server: gslb's own DNS server,
//! started in-process on loopback with a zone this test writes and swaps.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::*;
use crate::snapshot::Snapshot;
use crate::zone::ZoneSet;

const SOA: &str = "$ORIGIN up.example.\n$TTL 1\n@ IN SOA ns1 hostmaster 1 3600 600 86400 1\n@ IN NS ns1\nns1 IN A 127.0.0.1\n";

/// A zone directory for `up.example` with `records` below the SOA.
fn zones(tag: &str, records: &str) -> Arc<ZoneSet> {
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "gslb-resolver-{tag}-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("up.example.zone"), format!("{SOA}{records}")).unwrap();
    let z = ZoneSet::load_dir(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    Arc::new(z)
}

/// gslb's DNS server answering from `snapshots`, on 127.0.0.1; stopped by `stop`.
fn serve(snapshots: Arc<ArcSwap<Snapshot>>) -> (SocketAddr, watch::Sender<bool>) {
    let server =
        crate::dns::DnsServer::bind_with_workers(&["127.0.0.1:0".parse().unwrap()], 1).unwrap();
    let addr = server.local_addrs()[0];
    let (stop, rx) = watch::channel(false);
    server
        .start(
            snapshots,
            Arc::new(crate::dns::engine::Settings::default()),
            crate::dns::TcpLimits::default(),
            Arc::new(crate::metrics::Metrics::new()),
            rx,
        )
        .unwrap();
    (addr, stop)
}

fn snapshot(zones: Arc<ZoneSet>) -> Snapshot {
    Snapshot {
        zones,
        services: Default::default(),
        topology: Default::default(),
        unloaded: false,
    }
}

fn ips(list: &[&str]) -> Arc<[IpAddr]> {
    let mut v: Vec<IpAddr> = list.iter().map(|s| s.parse().unwrap()).collect();
    v.sort();
    v.into()
}

/// Polls until `f` holds for `name`'s resolution, at most `within`.
async fn until(
    r: &Resolvers,
    name: &str,
    within: Duration,
    f: impl Fn(&Resolution) -> bool,
) -> Resolution {
    let deadline = Instant::now() + within;
    loop {
        let got = r.get(name).expect("held");
        if f(&got) || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn refresh_is_bounded() {
    assert_eq!(refresh_after(0), MIN_REFRESH);
    assert_eq!(refresh_after(1), MIN_REFRESH);
    assert_eq!(refresh_after(30), Duration::from_secs(30));
    assert_eq!(refresh_after(86_400), MAX_REFRESH);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolves_follows_changes_and_keeps_stale_addresses() {
    let records =
        "svc IN A 127.0.0.31\nsvc IN A 127.0.0.32\nsvc IN AAAA ::1\nv4only IN A 127.0.0.40\n";
    let snaps = Arc::new(ArcSwap::from_pointee(snapshot(zones("a", records))));
    let (addr, stop) = serve(snaps.clone());
    let settings = Settings {
        servers: vec![addr],
        ..Settings::default()
    };
    let r = Resolvers::new(&settings, tokio::runtime::Handle::current()).unwrap();

    // First resolution within a second of being held; both families.
    assert_eq!(r.acquire("svc.up.example"), Resolution::default());
    let got = until(&r, "svc.up.example", Duration::from_secs(3), |s| {
        s.resolved_at.is_some()
    })
    .await;
    assert_eq!(got.addresses, ips(&["127.0.0.31", "127.0.0.32", "::1"]));
    assert_eq!(got.error, None);
    assert_eq!(r.changed().await, vec![Arc::<str>::from("svc.up.example")]);
    // A name with only A records (AAAA is NODATA) resolves too.
    r.acquire("v4only.up.example");
    let got = until(&r, "v4only.up.example", Duration::from_secs(3), |s| {
        s.resolved_at.is_some()
    })
    .await;
    assert_eq!(got.addresses, ips(&["127.0.0.40"]));

    // The records change: seen after the TTL (1 s, refreshed after MIN_REFRESH).
    snaps.store(Arc::new(snapshot(zones("b", "svc IN A 127.0.0.33\n"))));
    let got = until(&r, "svc.up.example", MIN_REFRESH * 2, |s| {
        *s.addresses == *ips(&["127.0.0.33"])
    })
    .await;
    assert_eq!(got.addresses, ips(&["127.0.0.33"]), "{got:?}");
    let changed = r.changed().await;
    assert!(
        changed.contains(&Arc::from("svc.up.example")),
        "{changed:?}"
    );

    // The server goes away: the failure shows, the addresses stay (stale_seconds
    // is an hour).
    stop.send(true).unwrap();
    let got = until(&r, "svc.up.example", MIN_REFRESH * 3, |s| s.error.is_some()).await;
    assert!(got.error.is_some(), "{got:?}");
    assert_eq!(got.addresses, ips(&["127.0.0.33"]));
    assert!(got.resolved_at.is_some());

    // Released by its last holder: not watched any more.
    r.release("svc.up.example");
    r.release("v4only.up.example");
    assert!(r.get("svc.up.example").is_none());
    assert!(r.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_addresses_are_dropped_after_stale_seconds() {
    let snaps = Arc::new(ArcSwap::from_pointee(snapshot(zones(
        "d",
        "svc IN A 127.0.0.60\n",
    ))));
    let (addr, stop) = serve(snaps);
    let settings = Settings {
        servers: vec![addr],
        stale: Duration::from_secs(1),
    };
    let r = Resolvers::new(&settings, tokio::runtime::Handle::current()).unwrap();
    r.acquire("svc.up.example");
    let got = until(&r, "svc.up.example", Duration::from_secs(3), |s| {
        s.resolved_at.is_some()
    })
    .await;
    assert_eq!(got.addresses, ips(&["127.0.0.60"]));
    stop.send(true).unwrap();
    // The next refresh (after MIN_REFRESH) fails, more than a second after the
    // last success: no addresses any more, the error and the last success shown.
    let got = until(&r, "svc.up.example", MIN_REFRESH * 3, |s| {
        s.addresses.is_empty()
    })
    .await;
    assert!(got.addresses.is_empty(), "{got:?}");
    assert!(got.error.is_some(), "{got:?}");
    assert!(got.resolved_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_does_not_exist_is_never_resolved() {
    let snaps = Arc::new(ArcSwap::from_pointee(snapshot(zones(
        "c",
        "other IN A 127.0.0.50\n",
    ))));
    let (addr, _stop) = serve(snaps);
    let settings = Settings {
        servers: vec![addr],
        ..Settings::default()
    };
    let r = Resolvers::new(&settings, tokio::runtime::Handle::current()).unwrap();
    r.acquire("missing.up.example");
    r.acquire("missing.up.example");
    let got = until(&r, "missing.up.example", Duration::from_secs(3), |s| {
        s.error.is_some()
    })
    .await;
    assert!(got.addresses.is_empty());
    assert_eq!(got.resolved_at, None);
    assert!(
        got.error.as_deref().is_some_and(|e| e.contains("NXDOMAIN")),
        "{got:?}"
    );
    // A name with records of other types only: no address, an error.
    r.acquire("up.example");
    let got = until(&r, "up.example", Duration::from_secs(3), |s| {
        s.error.is_some()
    })
    .await;
    assert!(
        got.error
            .as_deref()
            .is_some_and(|e| e.contains("no A or AAAA")),
        "{got:?}"
    );
    // Two holders: one release keeps it.
    r.release("missing.up.example");
    assert!(r.get("missing.up.example").is_some());
    r.release("missing.up.example");
    assert!(r.get("missing.up.example").is_none());
}
