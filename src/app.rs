//! Wiring and lifecycle: load, bind, serve, and shut down cleanly on a signal.
//!
//! Startup fails fast with one clear line (bad config, bad zone file, unwritable
//! data dir, store that cannot be decoded, port in use). On SIGTERM/SIGINT the
//! listeners stop accepting, in-flight work finishes, the store is flushed and the
//! process exits 0.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use tokio::sync::watch;

use crate::config::Config;
use crate::events::EventLog;
use crate::health::HealthHub;
use crate::metrics::{Exporter, Metrics};
use crate::registry::Registry;
use crate::store::{SledStore, Store};
use crate::zone::ZoneSet;

/// `gslb check`: the config (as loaded, or why it could not be) and every zone
/// file, all checked in one run: every error is printed on stderr, then the run
/// fails if there was one. Warnings (served, but probably wrong) do not fail it.
/// `zones_dir` is the `--zones-dir` flag, used when the config cannot be loaded.
pub fn check(
    config: Result<Config, crate::config::ConfigError>,
    zones_dir: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let mut errors: Vec<String> = Vec::new();
    let (dir, topology) = match &config {
        Ok(c) => {
            if let Err(e) = c.check_api_exposure() {
                errors.push(e.to_string());
            }
            (Some(c.zones_dir.clone()), c.topology.len())
        }
        Err(e) => {
            errors.push(e.to_string());
            (zones_dir.map(std::path::Path::to_path_buf), 0)
        }
    };
    let mut origins = Vec::new();
    if let Some(dir) = &dir {
        let (zones, zone_errors) = ZoneSet::check_dir(dir);
        for w in zones.warnings() {
            eprintln!("gslb: warning: {w}");
        }
        let no_files = zones.origins().is_empty() && zone_errors.is_empty();
        errors.extend(zone_errors.iter().map(ToString::to_string));
        if no_files {
            errors.push(format!("{}: no *.zone files found", dir.display()));
        }
        origins = zones.serials();
    }
    match errors.len() {
        0 => {}
        // One clear line.
        1 => anyhow::bail!("{}", errors[0]),
        n => {
            for e in &errors {
                eprintln!("gslb: error: {e}");
            }
            anyhow::bail!("{n} problems found");
        }
    }
    let shown: Vec<String> = origins
        .iter()
        .map(|(o, serial)| format!("{o} (serial {serial})"))
        .collect();
    println!(
        "ok: {} zone(s) ({}), {} topology entr{}",
        origins.len(),
        shown.join(", "),
        topology,
        if topology == 1 { "y" } else { "ies" }
    );
    Ok(())
}

/// Everything `/metrics` shows: build and process information, the server's own
/// counters, the registry size and the health metrics. Modules with numbers of
/// their own add their collector here.
pub fn exporter(metrics: &Arc<Metrics>, registry: &Arc<Registry>) -> Exporter {
    let mut e = Exporter::new();
    e.register(metrics.clone());
    let r = Arc::downgrade(registry);
    e.gauge_fn(
        crate::metrics::NAMESERVICES,
        "NameServices registered",
        move || r.upgrade().map_or(0, |r| r.len()),
    );
    e.register(registry.health().collector());
    e.register(registry.collector());
    e
}

/// Checks that the data dir suits the configured backend and, with etcd, connects.
///
/// A data dir is either a standalone (sled) registry or an etcd instance's local
/// copy, and each backend refuses the other's: an etcd instance would replace a
/// standalone registry's names with etcd's at its first listing, and a standalone
/// instance would fork a fleet's registry without anyone noticing.
async fn open_etcd(
    config: &Config,
    store: &dyn Store,
) -> anyhow::Result<Option<Arc<crate::registry::etcd::EtcdSide>>> {
    use crate::config::Backend;
    use crate::store::Origin;
    let dir = config.data_dir.display();
    match (config.registry.backend, store.origin()) {
        (Backend::Sled, Origin::Sled) => return Ok(None),
        (Backend::Sled, Origin::Etcd { prefix, .. }) => anyhow::bail!(
            "data dir {dir} holds the local copy of an etcd registry (prefix {prefix:?}), not a standalone registry: start it with [registry] backend = \"etcd\", or start the standalone instance on another data dir and PUT its NameServices there (docs/fleet.md, \"Leaving a fleet\")"
        ),
        (Backend::Etcd, Origin::Sled) => {
            let n = store.count()?;
            if n > 0 {
                anyhow::bail!(
                    "data dir {dir} holds a standalone (sled) registry of {n} NameServices; an etcd instance would replace them with etcd's at its first listing: move them into etcd first and start the etcd instance on an empty data dir (docs/fleet.md, \"Moving a standalone instance into etcd\")"
                );
            }
        }
        (Backend::Etcd, Origin::Etcd { prefix, .. }) if prefix != config.registry.prefix => {
            anyhow::bail!(
                "data dir {dir} holds the local copy of the etcd registry under prefix {prefix:?}, but [registry] prefix is {:?}: use another data dir for another registry",
                config.registry.prefix
            );
        }
        (Backend::Etcd, Origin::Etcd { .. }) => {}
    }
    let etcd = crate::store::etcd::Etcd::connect(&config.registry)
        .await
        .with_context(|| format!("etcd at {}", config.registry.endpoints.join(", ")))?;
    Ok(Some(Arc::new(crate::registry::etcd::EtcdSide::new(
        etcd,
        &config.instance,
        config.registry.lease_ttl_seconds,
        &config.registry.prefix,
    ))))
}

/// `gslb serve`: runs until SIGTERM or SIGINT.
pub fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gslb-ctl")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // The handlers are installed before anything starts, so a SIGTERM or SIGINT
        // that arrives as soon as /healthz says 200 is a clean stop, not a kill.
        let stop = shutdown_signal();
        run(config, stop).await
    })
}

/// Installs the SIGTERM and SIGINT handlers now (inside the runtime) and resolves
/// on the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
        }
    }
}

/// Brings everything up, serves until `shutdown` resolves, then tears down in order.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    // SIGHUP reloads (systemctl reload); without a handler it would kill us.
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    config.check_api_exposure()?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        instance = %config.instance,
        config = %config
            .file
            .as_deref()
            .map_or_else(|| "none (defaults and flags)".into(), |f| f.display().to_string()),
        "gslb {} starting",
        env!("CARGO_PKG_VERSION")
    );
    let zones = Arc::new(ZoneSet::load_dir(&config.zones_dir)?);
    if zones.origins().is_empty() {
        anyhow::bail!("{}: no *.zone files found", config.zones_dir.display());
    }
    for (zone, serial) in zones.serials() {
        tracing::info!(zone = %zone, serial, dir = %config.zones_dir.display(), "zone loaded");
    }
    for w in zones.warnings() {
        tracing::warn!("{w}");
    }

    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("data dir {}: cannot create", config.data_dir.display()))?;
    let probe = config.data_dir.join(".gslb-write-test");
    std::fs::write(&probe, b"ok")
        .with_context(|| format!("data dir {}: not writable", config.data_dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&config.data_dir)?);
    // Persisted health first, so the registry's targets start from their last known
    // verdicts instead of Pending: a restart neither revives a dead target nor takes
    // a healthy one out of the answers.
    let health = Arc::new(HealthHub::new());
    if config.registry.backend == crate::config::Backend::Etcd {
        health.join_fleet(config.health.quorum == crate::config::Quorum::Majority);
    }
    health.restore(
        store
            .load_health()
            .context("loading the stored health state")?,
    );
    let etcd = open_etcd(&config, store.as_ref()).await?;
    let registry = Arc::new(
        Registry::open_with(
            &config.instance,
            store.clone(),
            zones,
            config.topology.clone(),
            health.clone(),
            crate::registry::Options {
                deny: config.health.deny.clone(),
                resolvers: Some(
                    crate::resolver::Resolvers::new(
                        &config.resolver,
                        tokio::runtime::Handle::current(),
                    )
                    .context("[resolver]")?,
                ),
            },
            etcd,
        )
        .with_context(|| {
            format!(
                "loading the NameServices stored in {}",
                config.data_dir.display()
            )
        })?,
    );
    // Ready conditions follow health changes (subscribed before the first probe).
    let _status = registry.follow_health();
    // FQDN targets: a changed resolution recompiles the services holding the name.
    let _resolutions = registry.follow_resolutions();
    let metrics = Arc::new(Metrics::new());
    let events = Arc::new(EventLog::new(
        config.instance.as_str(),
        crate::events::DEFAULT_CAPACITY,
    ));
    let _health_events = tokio::spawn(crate::events::follow_health(
        events.clone(),
        health.subscribe(),
    ));
    let api_conns = Arc::new(crate::api::limits::ConnStats::default());
    let mut exporter = exporter(&metrics, &registry);
    exporter.register(crate::api::limits::ConnCollector(
        api_conns.clone(),
        config.api_limits.max_connections,
    ));
    let exporter = Arc::new(exporter);

    let (stop_tx, stop_rx) = watch::channel(false);
    let dns = crate::dns::DnsServer::bind(&config.dns_listen)?;
    let api_listener = tokio::net::TcpListener::bind(config.api_listen)
        .await
        .with_context(|| format!("api_listen {}: cannot bind", config.api_listen))?;

    let dns_task = dns.start(
        registry.snapshot_handle(),
        Arc::new(config.dns_settings()),
        config.tcp_limits(),
        metrics.clone(),
        stop_rx.clone(),
    )?;
    let ready = Arc::new(AtomicBool::new(false));
    let reloader = Arc::new(crate::reload::Reloader::new(
        config.clone(),
        registry.clone(),
        events.clone(),
    ));
    let api_state = crate::api::AppState {
        registry: registry.clone(),
        metrics: metrics.clone(),
        exporter,
        tokens: Arc::new(crate::api::auth::Tokens::new(&config.tokens())),
        events: events.clone(),
        ready: ready.clone(),
        reload: Some(reloader.clone()),
    };
    let hup_task = {
        let reloader = reloader.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP received, reloading zones and topology");
                // Logged inside, with the file and line of what was refused.
                let _ = reloader.reload("SIGHUP", None).await;
            }
        })
    };
    let api_task = tokio::spawn(crate::api::serve(
        api_listener,
        config.api_limits,
        api_conns,
        api_state,
        stop_rx.clone(),
    ));
    // Probes run here, on the control-plane runtime.
    let prober = health.start_with(
        Some(store),
        crate::health::ProberOptions::for_instance(&config.instance),
    );

    // With etcd: list, then watch. With a local copy, /healthz waits for the first
    // listing while etcd answers in time, else the local copy is served; an
    // instance that never loaded a registry says 503 until it has.
    let mut etcd_tasks = registry.start_etcd(&stop_rx);
    if let Some(fleet) = registry.fleet() {
        etcd_tasks.push(tokio::spawn(follow_fleet(
            health.clone(),
            fleet,
            stop_rx.clone(),
        )));
    }
    if !etcd_tasks.is_empty() {
        let listed = registry
            .wait_listed(std::time::Duration::from_millis(1500))
            .await;
        if !listed {
            if registry.etcd_connected() {
                // A big registry: etcd answered, its listing is being applied.
                tracing::info!(
                    serving = if registry.is_loaded() {
                        "the local copy"
                    } else {
                        "SERVFAIL for names without static records"
                    },
                    "etcd reached; its listing takes longer than 1.5 s to apply, serving meanwhile"
                );
            } else if registry.is_loaded() {
                tracing::warn!(
                    revision = registry.revision(),
                    "etcd not reached: serving the local copy, retrying"
                );
            } else {
                tracing::error!(
                    "etcd not reached and no local copy: names without static records answer SERVFAIL until etcd is reached"
                );
            }
        }
    }

    ready.store(true, Ordering::SeqCst);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        instance = %config.instance,
        dns = ?config.dns_listen,
        api = %config.api_listen,
        nameservices = registry.len(),
        topology_entries = config.topology.len(),
        registry = ?config.registry.backend,
        revision = registry.revision(),
        "gslb serving"
    );
    let trimmer = tokio::spawn(return_freed_memory());
    let expiry = tokio::spawn(expire_overrides(registry.clone(), events.clone()));

    shutdown.await;
    trimmer.abort();
    hup_task.abort();
    expiry.abort();
    ready.store(false, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    let api_result = api_task.await;
    dns_task.join().await;
    for t in etcd_tasks {
        let _ = t.await;
    }
    if let Err(e) = prober.shutdown().await {
        tracing::warn!(error = %e, "cannot write the health state at shutdown");
    }
    registry.flush().context("flushing the store at shutdown")?;
    match api_result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "API server ended with an error"),
        Err(e) => tracing::warn!(error = %e, "API task failed"),
    }
    tracing::info!("gslb stopped");
    Ok(())
}

/// Joins health and the fleet layer (CONTRACT §7), one way each: this instance's
/// own verdicts go out as its observations (withdrawn when no NameService uses the
/// endpoint here any more), and every observation in etcd, this instance's own
/// included, comes in to the health hub, which applies the majority rule; so does
/// the cut-off flag.
async fn follow_fleet(
    health: Arc<HealthHub>,
    fleet: Arc<crate::registry::fleet::Fleet>,
    mut stop: watch::Receiver<bool>,
) {
    use crate::health::{HealthEvent, Observation};
    use crate::registry::fleet::Observation as Published;
    use tokio::sync::broadcast::error::RecvError;
    let publish = |id: &str, o: Option<Observation>| {
        fleet.publish_observation(
            id,
            o.map(|o| Published {
                health: o.health,
                last_probe_time: o.last_probe_time,
            }),
        );
    };
    // A value that is neither Healthy nor Unhealthy (written by hand) is no vote.
    let incoming = |e: &crate::registry::fleet::ObservationEvent| {
        e.observation
            .filter(|o| {
                matches!(
                    o.health,
                    crate::health::Health::Healthy | crate::health::Health::Unhealthy
                )
            })
            .map(|o| Observation {
                health: o.health,
                last_probe_time: o.last_probe_time,
            })
    };
    // Subscribed first, then what is held now: nothing falls between the two.
    let mut bus = health.subscribe();
    for (id, o) in health.local_observations() {
        if o.is_some() {
            publish(&id, o);
        }
    }
    let subscribe = || {
        let (now, rx) = fleet.subscribe();
        health.observe_all(
            now.iter()
                .filter_map(|e| Some((e.endpoint.clone(), e.instance.clone(), incoming(e)?))),
        );
        rx
    };
    let mut observations = subscribe();
    let mut cut_off = fleet.cut_off();
    health.set_cut_off(*cut_off.borrow_and_update());
    loop {
        tokio::select! {
            ev = bus.recv() => match ev {
                Ok(ev) => match &*ev {
                    HealthEvent::Local { endpoint, health: h, last_probe_time } => {
                        let o = matches!(h, crate::health::Health::Healthy | crate::health::Health::Unhealthy)
                            .then_some(Observation { health: *h, last_probe_time: *last_probe_time });
                        publish(&endpoint.id(), o);
                    }
                    HealthEvent::Released { endpoint } => publish(&endpoint.id(), None),
                    _ => {}
                },
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "health events lagged: publishing every own verdict again");
                    for (id, o) in health.local_observations() {
                        publish(&id, o);
                    }
                }
                Err(RecvError::Closed) => return,
            },
            ev = observations.recv() => match ev {
                Ok(e) => health.observe(&e.endpoint, &e.instance, incoming(&e)),
                Err(RecvError::Lagged(_)) => observations = subscribe(),
                Err(RecvError::Closed) => return,
            },
            r = cut_off.changed() => {
                if r.is_err() {
                    return;
                }
                let cut = *cut_off.borrow_and_update();
                health.set_cut_off(cut);
            }
            _ = stop.changed() => return,
        }
    }
}

/// Removes overrides whose time is up, once a second, and records each in the event
/// log. The answer path stops applying an override at its expiry by itself (it
/// compares the expiry with the query's clock); this takes it out of the store,
/// the status and explain, through the registry's one apply path.
async fn expire_overrides(registry: Arc<Registry>, events: Arc<EventLog>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match registry
            .expire_overrides(crate::timefmt::now_unix_ms())
            .await
        {
            Ok(expired) => {
                for (name, target, o) in expired {
                    tracing::info!(nameservice = %name, target = %target, state = o.state.as_str(), "override expired");
                    events.record(
                        crate::events::NewEvent::new(
                            crate::events::EventKind::OverrideExpired,
                            format!(
                                "{} expired after {} s (was: {})",
                                o.state.as_str(),
                                o.ttl_seconds,
                                o.reason
                            ),
                        )
                        .nameservice(&*name)
                        .target(&target),
                    );
                }
            }
            // Logged where it failed (the store); tried again next second.
            Err(e) => tracing::debug!(error = %e, "expiring overrides failed; retrying"),
        }
    }
}

/// Hands heap memory that is free again back to the OS: once after startup (the
/// config, zone and store parsing leave large freed buffers behind) and then every
/// 10 s (API bursts do the same). glibc only trims the top of the heap by itself.
/// Runs on the control-plane runtime; DNS workers never allocate on the answer path.
async fn return_freed_memory() {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(10));
    loop {
        every.tick().await;
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free pages of the allocator's own heaps.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
