//! Resolution of FQDN targets (`targets[].fqdn`): the only module that imports
//! hickory-resolver.
//!
//! Every distinct name held by some published NameService has one watch task that
//! asks for its A and AAAA records, then again when their TTL runs out (at least
//! every [`MIN_REFRESH`], at most every [`MAX_REFRESH`]). When a resolution fails
//! the last addresses are kept for `stale_seconds` after the last success (and the
//! failure is reported); a name never resolved has no addresses. A change of a
//! name's addresses or error is queued for [`Resolvers::changed`], which the
//! registry waits on to recompile the services that hold the name.
//!
//! **Architecture Invariant:** DNS workers never see this module: resolved
//! addresses reach them only through a recompiled, published snapshot.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData};

/// A resolution is repeated after the records' TTL, but never sooner than this...
pub const MIN_REFRESH: Duration = Duration::from_secs(5);
/// ...and never later than this. A failed resolution is retried after `MIN_REFRESH`.
pub const MAX_REFRESH: Duration = Duration::from_secs(300);

/// `[resolver]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The recursive resolvers to ask; empty: the system's (`/etc/resolv.conf`).
    pub servers: Vec<SocketAddr>,
    /// How long the last addresses of a name outlive its last successful resolution.
    pub stale: Duration,
}

pub const DEFAULT_STALE_SECONDS: u64 = 3600;

impl Default for Settings {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            stale: Duration::from_secs(DEFAULT_STALE_SECONDS),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    #[error("cannot read the system's resolver configuration (set [resolver] servers): {0}")]
    SystemConfig(String),
    #[error("cannot set up the resolver: {0}")]
    Build(String),
}

/// What is known about one name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resolution {
    /// The addresses answered for the name: sorted (IPv4 first), no duplicates.
    /// Empty when it was never resolved, or its last addresses went stale.
    pub addresses: Arc<[IpAddr]>,
    /// Why the last resolution failed; `None` after a success.
    pub error: Option<String>,
    /// Unix seconds of the last successful resolution.
    pub resolved_at: Option<u64>,
}

/// One watched name.
struct Watch {
    holders: usize,
    state: Resolution,
    task: tokio::task::AbortHandle,
}

struct Inner {
    resolver: TokioResolver,
    stale: Duration,
    runtime: tokio::runtime::Handle,
    names: Mutex<HashMap<Arc<str>, Watch>>,
    /// Names whose resolution changed since the last [`Resolvers::changed`].
    dirty: Mutex<BTreeSet<Arc<str>>>,
    notify: tokio::sync::Notify,
}

impl Inner {
    fn names(&self) -> MutexGuard<'_, HashMap<Arc<str>, Watch>> {
        self.names.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The watched names and their resolutions. Cheap to clone.
#[derive(Clone)]
pub struct Resolvers {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Resolvers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolvers")
            .field("names", &self.inner.names().len())
            .finish_non_exhaustive()
    }
}

impl Resolvers {
    /// A resolver asking `settings.servers` (or the system's), whose watch tasks run
    /// on `runtime`.
    pub fn new(
        settings: &Settings,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, ResolverError> {
        let mut builder = if settings.servers.is_empty() {
            TokioResolver::builder_tokio()
                .map_err(|e| ResolverError::SystemConfig(e.to_string()))?
        } else {
            let servers = settings
                .servers
                .iter()
                .map(|s| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = s.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = s.port();
                    let mut ns = NameServerConfig::udp_and_tcp(s.ip());
                    ns.connections = vec![udp, tcp];
                    ns
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        };
        let opts = builder.options_mut();
        // Every refresh asks the servers: the schedule here follows the TTLs, and a
        // cached answer would hide a change until hickory's own expiry.
        opts.cache_size = 0;
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 2;
        let resolver = builder
            .build()
            .map_err(|e| ResolverError::Build(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                resolver,
                stale: settings.stale,
                runtime,
                names: Mutex::new(HashMap::new()),
                dirty: Mutex::new(BTreeSet::new()),
                notify: tokio::sync::Notify::new(),
            }),
        })
    }

    /// Holds `name` (lowercase, no trailing dot) and returns what is known about it;
    /// a name not held yet starts being resolved at once.
    pub fn acquire(&self, name: &str) -> Resolution {
        let mut names = self.inner.names();
        if let Some(w) = names.get_mut(name) {
            w.holders += 1;
            return w.state.clone();
        }
        let key: Arc<str> = name.into();
        let weak = Arc::downgrade(&self.inner);
        let task = self
            .inner
            .runtime
            .spawn(watch(weak, key.clone()))
            .abort_handle();
        names.insert(
            key,
            Watch {
                holders: 1,
                state: Resolution::default(),
                task,
            },
        );
        Resolution::default()
    }

    /// Gives back what [`Resolvers::acquire`] took; the last holder stops the watch.
    pub fn release(&self, name: &str) {
        let mut names = self.inner.names();
        if let Some(w) = names.get_mut(name) {
            w.holders -= 1;
            if w.holders == 0 {
                w.task.abort();
                names.remove(name);
            }
        }
    }

    /// What is known about `name`, if it is held.
    pub fn get(&self, name: &str) -> Option<Resolution> {
        self.inner.names().get(name).map(|w| w.state.clone())
    }

    /// How many names are watched.
    pub fn len(&self) -> usize {
        self.inner.names().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until some held name's resolution changed and returns those names
    /// (every change since the last call, each name once).
    pub async fn changed(&self) -> Vec<Arc<str>> {
        loop {
            let notified = self.inner.notify.notified();
            {
                let mut dirty = self.inner.dirty.lock().unwrap_or_else(|e| e.into_inner());
                if !dirty.is_empty() {
                    return std::mem::take(&mut *dirty).into_iter().collect();
                }
            }
            notified.await;
        }
    }
}

/// The outcome of one resolution: the addresses and the TTL to refresh after.
type Outcome = Result<(BTreeSet<IpAddr>, u32), String>;

/// Asks for the A and AAAA records of `name`. Both must be answered (records or
/// "no records of this type"); an NXDOMAIN, a timeout, a SERVFAIL or an answer with
/// no address at all is a failure.
async fn resolve(resolver: &TokioResolver, name: &Name) -> Outcome {
    let (a, aaaa) = tokio::join!(
        resolver.ipv4_lookup(name.clone()),
        resolver.ipv6_lookup(name.clone())
    );
    let mut addresses = BTreeSet::new();
    let mut ttl: Option<u32> = None;
    let mut negative_ttl: Option<u32> = None;
    for (kind, result) in [("A", a), ("AAAA", aaaa)] {
        match result {
            Ok(lookup) => {
                for r in lookup.answers() {
                    let ip = match &r.data {
                        RData::A(a) => IpAddr::V4(a.0),
                        RData::AAAA(a) => IpAddr::V6(a.0),
                        _ => continue,
                    };
                    addresses.insert(ip);
                    ttl = Some(ttl.map_or(r.ttl, |t| t.min(r.ttl)));
                }
            }
            Err(e) if e.is_nx_domain() => {
                return Err(format!("{name} does not exist (NXDOMAIN)"));
            }
            Err(NetError::Dns(hickory_resolver::net::DnsError::NoRecordsFound(nr))) => {
                if let Some(t) = nr.negative_ttl {
                    negative_ttl = Some(negative_ttl.map_or(t, |n| n.min(t)));
                }
            }
            Err(e) => return Err(format!("{kind} query for {name}: {e}")),
        }
    }
    if addresses.is_empty() {
        return Err(format!("{name} has no A or AAAA records"));
    }
    Ok((
        addresses,
        ttl.or(negative_ttl).unwrap_or(MIN_REFRESH.as_secs() as u32),
    ))
}

/// When to resolve again after a success with records of `ttl` seconds.
pub fn refresh_after(ttl: u32) -> Duration {
    Duration::from_secs(u64::from(ttl)).clamp(MIN_REFRESH, MAX_REFRESH)
}

/// The watch task of one name: resolves, records, sleeps, until aborted (or the
/// resolvers are gone).
async fn watch(inner: std::sync::Weak<Inner>, key: Arc<str>) {
    let Ok(name) = Name::from_ascii(format!("{key}.")) else {
        // The model only admits valid DNS names.
        tracing::error!(fqdn = %key, "not a DNS name; not resolved");
        return;
    };
    let mut last_ok: Option<Instant> = None;
    loop {
        let Some(me) = inner.upgrade() else { return };
        let resolver = me.resolver.clone();
        drop(me);
        let outcome = resolve(&resolver, &name).await;
        let Some(me) = inner.upgrade() else { return };
        let now = crate::timefmt::now_unix();
        let (next, update) = match outcome {
            Ok((addresses, ttl)) => {
                last_ok = Some(Instant::now());
                (
                    refresh_after(ttl),
                    Resolution {
                        addresses: addresses.into_iter().collect(),
                        error: None,
                        resolved_at: Some(now),
                    },
                )
            }
            Err(error) => {
                let current = me.names().get(&key).map(|w| w.state.clone());
                let Some(current) = current else { return };
                let stale = last_ok.is_none_or(|t| t.elapsed() >= me.stale);
                let addresses = if stale {
                    Arc::from([])
                } else {
                    current.addresses.clone()
                };
                // Retry soon, but wake up in time to drop the addresses when they go stale.
                let until_stale = last_ok.map(|t| me.stale.saturating_sub(t.elapsed()));
                let next = until_stale.map_or(MIN_REFRESH, |s| {
                    if s.is_zero() {
                        MIN_REFRESH
                    } else {
                        s.min(MIN_REFRESH)
                    }
                });
                (
                    next,
                    Resolution {
                        addresses,
                        error: Some(error),
                        resolved_at: current.resolved_at,
                    },
                )
            }
        };
        let changed = {
            let mut names = me.names();
            let Some(w) = names.get_mut(&key) else { return };
            let changed = w.state.addresses != update.addresses || w.state.error != update.error;
            if changed {
                log_change(&key, &w.state, &update);
            }
            w.state = update;
            changed
        };
        if changed {
            me.dirty
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.clone());
            me.notify.notify_one();
        }
        drop(me);
        tokio::time::sleep(next).await;
    }
}

fn log_change(name: &str, old: &Resolution, new: &Resolution) {
    let list = |a: &[IpAddr]| {
        a.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match &new.error {
        None => tracing::info!(
            fqdn = %name,
            addresses = %list(&new.addresses),
            "FQDN target resolved: [{}] (was [{}])",
            list(&new.addresses),
            list(&old.addresses)
        ),
        Some(e) if new.addresses.is_empty() && !old.addresses.is_empty() => tracing::warn!(
            fqdn = %name, error = %e,
            "FQDN target resolution failing and its last addresses went stale: no addresses"
        ),
        Some(e) if old.error.as_ref() != Some(e) => tracing::warn!(
            fqdn = %name, error = %e, kept = %list(&new.addresses),
            "FQDN target resolution failed"
        ),
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests;
