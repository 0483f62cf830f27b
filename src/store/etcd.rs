//! The shared registry in etcd (v3 API): the only module that imports etcd-client.
//!
//! Keys, all under the configured prefix (CONTRACT §6, PLAN decision 2):
//!
//! ```text
//! <prefix>nameservices/<name>           the resource as JSON, exactly as a PUT stores it
//! <prefix>instances/<instance>          {"revision","lastSeen"} under the instance's lease
//! <prefix>health/<endpoint>/<instance>  an instance's verdict, under its lease (issue 9)
//! <prefix>overrides/<name>/<target>     an override as JSON, under a lease of its ttl
//! ```
//!
//! Every call has a deadline ([`REQUEST_TIMEOUT`]) and requires a leader, so an etcd
//! that is black-holed, crashed or without quorum turns into
//! [`EtcdError::Unavailable`] within seconds instead of a request that hangs.

use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions,
    Identity, PutOptions, SortOrder, SortTarget, TlsOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::config::{EtcdTls, RegistryConfig};

/// The deadline of one request to etcd (writes answer 503 well within 10 s).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);
/// Keys per page when listing (one revision for all pages).
const PAGE: i64 = 5_000;

#[derive(Debug, Clone, thiserror::Error)]
pub enum EtcdError {
    /// etcd did not answer, has no leader, or refused the connection.
    #[error("etcd is unavailable: {0}")]
    Unavailable(String),
    /// The revision asked for was compacted away.
    #[error("etcd compacted revision {0}")]
    Compacted(u64),
    /// etcd answered with an error that retrying will not fix (permissions, say).
    #[error("etcd refused the request: {0}")]
    Refused(String),
    /// An etcd endpoint answered, but TLS with it failed with the configured files
    /// (an untrusted server certificate, a client certificate etcd refused).
    #[error("TLS with etcd failed: {0}")]
    Tls(String),
}

impl From<etcd_client::Error> for EtcdError {
    fn from(e: etcd_client::Error) -> Self {
        use etcd_client::Error as E;
        match &e {
            E::GRpcStatus(s) => {
                use tonic::Code;
                match s.code() {
                    Code::PermissionDenied | Code::Unauthenticated | Code::InvalidArgument => {
                        Self::Refused(s.message().to_string())
                    }
                    Code::OutOfRange if s.message().contains("compacted") => Self::Compacted(0),
                    _ => Self::Unavailable(format!("{}: {}", code_name(s.code()), s.message())),
                }
            }
            E::InvalidArgs(m) | E::EndpointError(m) => Self::Refused(m.clone()),
            _ => Self::Unavailable(e.to_string()),
        }
    }
}

fn code_name(c: tonic::Code) -> String {
    format!("{c:?}")
}

/// Whether `e` says the request never left this process (the connection to the
/// member it was routed to could not be made): then sending it again, to another
/// member, cannot apply it twice. The balanced channel routes to every endpoint,
/// a dead member's included, until its reconnection fails often enough.
fn unsent(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            s.code() == tonic::Code::Unavailable && {
                let m = s.message();
                m.contains("tcp connect error")
                    || m.contains("Connection refused")
                    || m.contains("error trying to connect")
            }
        }
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

/// Runs `f` again (a few times, within the request deadline) while its request
/// could not be sent at all.
async fn retry_unsent<T, F, Fut>(mut f: F) -> Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
    let mut attempt = 0;
    loop {
        match f().await {
            Err(e) if unsent(&e) && tokio::time::Instant::now() < deadline && attempt < 8 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(25 * attempt)).await;
            }
            other => return other,
        }
    }
}

/// One NameService key as read from etcd.
#[derive(Debug, Clone)]
pub struct Kv {
    /// The name (the key without `<prefix>nameservices/`).
    pub name: String,
    pub value: Vec<u8>,
    pub mod_revision: u64,
}

/// Every NameService key at one revision.
#[derive(Debug)]
pub struct Listing {
    pub revision: u64,
    pub cluster_id: u64,
    pub items: Vec<Kv>,
}

/// A change of one NameService key seen by a watch.
#[derive(Debug, Clone)]
pub enum Event {
    Put(Kv),
    Delete { name: String, revision: u64 },
}

/// A batch of watch events, and the revision etcd was at when it sent them (every
/// change up to it has been delivered).
#[derive(Debug)]
pub struct WatchBatch {
    pub events: Vec<Event>,
    pub revision: u64,
}

/// What a conditional write expects of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Nothing.
    Any,
    /// The key exists at this mod revision.
    Revision(u64),
    /// The key exists.
    Exists,
    /// The key does not exist.
    Absent,
}

/// The outcome of a write transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Committed at `revision`; `existed` when the key had a value before.
    Done { revision: u64, existed: bool },
    /// The value was already what the write would store: nothing written.
    Unchanged { mod_revision: u64 },
    /// The expectation did not hold; the key's mod revision now (`None`: absent).
    Failed { current: Option<u64> },
}

/// A connection to the etcd cluster holding the registry.
#[derive(Clone)]
pub struct Etcd {
    /// Set at start, or at the first request after a start with etcd away (with
    /// authentication on, connecting needs a round trip to etcd).
    client: tokio::sync::OnceCell<Client>,
    endpoints: Vec<String>,
    opts: ConnectOptions,
    prefix: String,
    /// The task that sends concurrent PUTs as one transaction (started by the
    /// first PUT, ends when the last clone of this connection is dropped).
    batcher: Arc<std::sync::OnceLock<mpsc::UnboundedSender<Pending>>>,
}

impl Etcd {
    /// Connects (lazily: an unreachable etcd makes requests fail, not this call,
    /// unless authentication needs a round trip). With TLS, an etcd that answers but
    /// fails the TLS handshake is an error here (see [`check_tls`]).
    pub async fn connect(cfg: &RegistryConfig) -> Result<Self, EtcdError> {
        if let Some(tls) = &cfg.tls {
            check_tls(&cfg.endpoints, tls).await?;
        }
        let mut opts = ConnectOptions::new()
            .with_require_leader(true)
            .with_timeout(REQUEST_TIMEOUT)
            .with_connect_timeout(Duration::from_secs(2))
            .with_keep_alive(Duration::from_secs(1), Duration::from_secs(2))
            .with_keep_alive_while_idle(true);
        if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
            opts = opts
                .with_user(u.clone(), p.clone())
                .with_auto_token_refresh(true);
        }
        if let Some(tls) = &cfg.tls {
            let mut t = TlsOptions::new();
            if let Some(ca) = &tls.ca_pem {
                t = t.ca_certificate(Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = &tls.identity {
                t = t.identity(Identity::from_pem(cert, key));
            }
            opts = opts.with_tls(t);
        }
        let etcd = Self {
            client: tokio::sync::OnceCell::new(),
            endpoints: cfg.endpoints.clone(),
            opts,
            prefix: cfg.prefix.clone(),
            batcher: Default::default(),
        };
        if let Err(e) = etcd.client().await {
            match EtcdError::from(e) {
                // Refused (a wrong password, say): a configuration error, said at start.
                e @ EtcdError::Refused(_) => return Err(e),
                // etcd away: the instance serves its local copy and connects later.
                e => {
                    tracing::warn!(error = %e, "cannot connect to etcd now; retrying in the background");
                }
            }
        }
        Ok(etcd)
    }

    /// The client, connecting first if that has not happened yet.
    async fn client(&self) -> Result<&Client, etcd_client::Error> {
        self.client
            .get_or_try_init(|| Client::connect(&self.endpoints, Some(self.opts.clone())))
            .await
    }

    fn ns_key(&self, name: &str) -> String {
        format!("{}nameservices/{name}", self.prefix)
    }

    /// `kv` with its key stripped of `strip` (the watched or listed prefix).
    fn kv(kv: &etcd_client::KeyValue, strip: &str) -> Option<Kv> {
        let key = std::str::from_utf8(kv.key()).ok()?;
        let name = key.strip_prefix(strip)?;
        Some(Kv {
            name: name.to_string(),
            value: kv.value().to_vec(),
            mod_revision: kv.mod_revision() as u64,
        })
    }

    /// Every NameService key, read page by page at the revision of the first page.
    pub async fn list(&self) -> Result<Listing, EtcdError> {
        self.list_under_at("nameservices/").await
    }

    /// Every key under `<prefix><sub>` (names relative to it), read page by page at
    /// the revision of the first page.
    pub async fn list_under_at(&self, sub: &str) -> Result<Listing, EtcdError> {
        let prefix = format!("{}{sub}", self.prefix);
        let end = prefix_end(prefix.as_bytes());
        let kv = self.client().await?.kv_client();
        let mut items = Vec::new();
        let mut from = prefix.clone().into_bytes();
        let mut revision = 0i64;
        let mut cluster_id = 0;
        loop {
            let mut opts = GetOptions::new()
                .with_range(end.clone())
                .with_limit(PAGE)
                .with_sort(SortTarget::Key, SortOrder::Ascend);
            if revision > 0 {
                opts = opts.with_revision(revision);
            }
            let resp = retry_unsent(|| {
                let (from, opts) = (from.clone(), opts.clone());
                let mut kv = kv.clone();
                async move { kv.get(from, Some(opts)).await }
            })
            .await?;
            if let Some(h) = resp.header() {
                if revision == 0 {
                    revision = h.revision();
                }
                cluster_id = h.cluster_id();
            }
            let kvs = resp.kvs();
            for k in kvs {
                match Self::kv(k, &prefix) {
                    Some(item) => items.push(item),
                    None => {
                        tracing::warn!(key = %String::from_utf8_lossy(k.key()), "etcd key under the NameService prefix is not UTF-8; skipped")
                    }
                }
            }
            if !resp.more() || kvs.is_empty() {
                break;
            }
            // The next page starts right after the last key.
            from = kvs.last().expect("not empty").key().to_vec();
            from.push(0);
        }
        Ok(Listing {
            revision: revision as u64,
            cluster_id,
            items,
        })
    }

    /// Watches the NameService keys from `start` (inclusive).
    pub async fn watch(&self, start: u64) -> Result<Watch, EtcdError> {
        self.watch_under("nameservices/", start).await
    }

    /// Watches the keys under `<prefix><sub>` from `start` (inclusive); events name
    /// keys relative to it.
    pub async fn watch_under(&self, sub: &str, start: u64) -> Result<Watch, EtcdError> {
        let prefix = format!("{}{sub}", self.prefix);
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(start as i64)
            .with_progress_notify();
        let client = self.client().await?.clone();
        let stream = retry_unsent(|| {
            let mut client = client.watch_client();
            let (prefix, opts) = (prefix.clone(), opts.clone());
            async move { client.watch(prefix, Some(opts)).await }
        })
        .await?;
        Ok(Watch { stream, prefix })
    }

    /// Puts `value` under `name` if `expect` holds. Without an expectation, a value
    /// identical to the stored one writes nothing.
    ///
    /// Concurrent PUTs of this instance travel together: while one transaction is
    /// on its way, the PUTs that arrive queue and leave as the next transaction, each
    /// as a nested transaction with its own condition (etcd commits them at one
    /// revision, all or none). One client alone pays nothing for it; sixteen share
    /// etcd's raft round and fsync instead of queueing for one each.
    pub async fn put(
        &self,
        name: &str,
        value: Vec<u8>,
        expect: Expect,
    ) -> Result<Written, EtcdError> {
        let client = self.client().await?.clone();
        let (reply, rx) = oneshot::channel();
        let pending = Pending {
            key: self.ns_key(name),
            value,
            expect,
            reply,
        };
        let queue = self.batcher.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(batch_puts(client, rx));
            tx
        });
        queue
            .send(pending)
            .map_err(|_| EtcdError::Unavailable("the write batcher stopped".into()))?;
        rx.await
            .map_err(|_| EtcdError::Unavailable("the write batcher stopped".into()))?
    }

    /// Deletes `name` if `expect` holds, and its overrides with it (in the same
    /// transaction). `Done { existed: false }`: there was nothing to delete.
    pub async fn delete(&self, name: &str, expect: Expect) -> Result<Written, EtcdError> {
        let key = self.ns_key(name);
        let del = TxnOp::delete(key.clone(), Some(DeleteOptions::new().with_prev_key()));
        let overrides = TxnOp::delete(
            self.override_key(name, ""),
            Some(DeleteOptions::new().with_prefix()),
        );
        let txn = Txn::new()
            .when(compare(&key, expect))
            .and_then([del, overrides])
            .or_else([TxnOp::get(key.clone(), None)]);
        let client = self.client().await?.clone();
        let resp = retry_unsent(|| {
            let txn = txn.clone();
            let mut kv = client.kv_client();
            async move { kv.txn(txn).await }
        })
        .await?;
        let revision = resp.header().map_or(0, |h| h.revision()) as u64;
        match (resp.succeeded(), resp.op_responses().into_iter().next()) {
            (true, Some(TxnOpResponse::Delete(d))) => Ok(Written::Done {
                revision,
                existed: d.deleted() > 0,
            }),
            (false, Some(TxnOpResponse::Get(g))) => Ok(Written::Failed {
                current: g.kvs().first().map(|kv| kv.mod_revision() as u64),
            }),
            (ok, other) => Err(EtcdError::Unavailable(format!(
                "unexpected transaction response (succeeded {ok}): {other:?}"
            ))),
        }
    }

    /// `<prefix>overrides/<name>/<target>` (with an empty target: the prefix of
    /// every override of `name`).
    fn override_key(&self, name: &str, target: &str) -> String {
        format!("{}overrides/{name}/{target}", self.prefix)
    }

    /// Puts the override of (`name`, `target`), attached to a new lease of
    /// `ttl_seconds`, so etcd removes it for the whole fleet when its time is up
    /// (and no instance has to be there to do it). Returns the revision.
    pub async fn put_override(
        &self,
        name: &str,
        target: &str,
        value: Vec<u8>,
        ttl_seconds: u32,
    ) -> Result<u64, EtcdError> {
        let lease = self.grant(ttl_seconds.max(1)).await?;
        let key = self.override_key(name, target);
        let client = self.client().await?.clone();
        let resp = retry_unsent(|| {
            let mut kv = client.kv_client();
            let (key, value) = (key.clone(), value.clone());
            async move {
                kv.put(key, value, Some(PutOptions::new().with_lease(lease.id)))
                    .await
            }
        })
        .await?;
        Ok(resp.header().map_or(0, |h| h.revision()) as u64)
    }

    /// Deletes the override of (`name`, `target`): `Done { existed }` with the
    /// revision of the deletion.
    pub async fn delete_override(&self, name: &str, target: &str) -> Result<Written, EtcdError> {
        let key = self.override_key(name, target);
        let client = self.client().await?.clone();
        let resp = retry_unsent(|| {
            let mut kv = client.kv_client();
            let key = key.clone();
            async move { kv.delete(key, None).await }
        })
        .await?;
        Ok(Written::Done {
            revision: resp.header().map_or(0, |h| h.revision()) as u64,
            existed: resp.deleted() > 0,
        })
    }

    /// The mod revision of `name` now (`None`: absent).
    pub async fn mod_revision(&self, name: &str) -> Result<Option<u64>, EtcdError> {
        let client = self.client().await?.clone();
        let resp = retry_unsent(|| {
            let mut kv = client.kv_client();
            let key = self.ns_key(name);
            async move { kv.get(key, Some(GetOptions::new().with_keys_only())).await }
        })
        .await?;
        Ok(resp.kvs().first().map(|kv| kv.mod_revision() as u64))
    }

    /// Grants a lease of `ttl` seconds.
    pub async fn grant(&self, ttl: u32) -> Result<Lease, EtcdError> {
        let client = self.client().await?.clone();
        let resp = retry_unsent(|| {
            let mut l = client.lease_client();
            async move { l.grant(i64::from(ttl), None).await }
        })
        .await?;
        Ok(Lease { id: resp.id() })
    }

    /// Renews `lease` once; `false` when etcd no longer knows it (it ran out).
    pub async fn keep_alive(&self, lease: Lease) -> Result<bool, EtcdError> {
        let client = self.client().await?.clone();
        let (mut keeper, mut stream) = retry_unsent(|| {
            let mut l = client.lease_client();
            async move { l.keep_alive(lease.id).await }
        })
        .await?;
        keeper.keep_alive().await?;
        match tokio::time::timeout(REQUEST_TIMEOUT, stream.message()).await {
            Ok(Ok(Some(r))) => Ok(r.ttl() > 0),
            Ok(Ok(None)) => Ok(false),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(EtcdError::Unavailable("lease keep-alive timed out".into())),
        }
    }

    /// Revokes `lease` (shutdown): its keys go at once.
    pub async fn revoke(&self, lease: Lease) -> Result<(), EtcdError> {
        self.client().await?.lease_client().revoke(lease.id).await?;
        Ok(())
    }

    /// Puts `value` under `<prefix><key>`, attached to `lease`.
    pub async fn put_leased(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Lease,
    ) -> Result<(), EtcdError> {
        let key = format!("{}{key}", self.prefix);
        let client = self.client().await?.clone();
        retry_unsent(|| {
            let mut kv = client.kv_client();
            let (key, value) = (key.clone(), value.clone());
            async move {
                kv.put(key, value, Some(PutOptions::new().with_lease(lease.id)))
                    .await
            }
        })
        .await?;
        Ok(())
    }

    /// Deletes `<prefix><key>`.
    pub async fn delete_key(&self, key: &str) -> Result<(), EtcdError> {
        self.client()
            .await?
            .kv_client()
            .delete(format!("{}{key}", self.prefix), None)
            .await?;
        Ok(())
    }

    /// Every key under `<prefix><sub>` with its value (the sub-prefix stripped).
    pub async fn list_under(&self, sub: &str) -> Result<Vec<(String, Vec<u8>)>, EtcdError> {
        let p = format!("{}{sub}", self.prefix);
        let client = self.client().await?.clone();
        let resp = retry_unsent(|| {
            let mut kv = client.kv_client();
            let p = p.clone();
            async move { kv.get(p, Some(GetOptions::new().with_prefix())).await }
        })
        .await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let k = std::str::from_utf8(kv.key()).ok()?.strip_prefix(&p)?;
                Some((k.to_string(), kv.value().to_vec()))
            })
            .collect())
    }
}

/// A lease of this instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    id: i64,
}

/// A PUT waiting for the next transaction.
struct Pending {
    key: String,
    value: Vec<u8>,
    expect: Expect,
    reply: oneshot::Sender<Result<Written, EtcdError>>,
}

/// PUTs per transaction at most (etcd refuses more than `--max-txn-ops`, 128 by
/// default, operations at one level).
const BATCH_OPS: usize = 64;
/// Value bytes per transaction at most (each value may travel twice, in the
/// comparison and the put; etcd refuses requests over `--max-request-bytes`,
/// 1.5 MiB by default). A larger single value goes alone.
const BATCH_BYTES: usize = 512 * 1024;

/// How long a PUT waits for others when writers are busy (see [`batch_puts`]):
/// against etcd's raft round and fsync per transaction, a millisecond that
/// lets more PUTs share them.
const LINGER: Duration = Duration::from_millis(1);

/// The nested transaction of one PUT: `then` holds the branch taken when the
/// write is to be skipped or refused (a read of the key), `else` the put, or the
/// other way round, as [`outcome`] reads them.
fn put_txn(p: &Pending) -> Txn {
    let put = TxnOp::put(
        p.key.clone(),
        p.value.clone(),
        Some(PutOptions::new().with_prev_key()),
    );
    let get = TxnOp::get(p.key.clone(), None);
    match p.expect {
        Expect::Any => Txn::new()
            .when([Compare::value(
                p.key.clone(),
                CompareOp::Equal,
                p.value.clone(),
            )])
            .and_then([get])
            .or_else([put]),
        e => Txn::new()
            .when(compare(&p.key, e))
            .and_then([put])
            .or_else([get]),
    }
}

/// What one PUT's nested transaction did.
fn outcome(
    expect: Expect,
    succeeded: bool,
    first: Option<TxnOpResponse>,
    revision: u64,
) -> Result<Written, EtcdError> {
    match (expect, succeeded, first) {
        (Expect::Any, true, Some(TxnOpResponse::Get(g))) => Ok(Written::Unchanged {
            mod_revision: g.kvs().first().map_or(0, |kv| kv.mod_revision() as u64),
        }),
        (Expect::Any, false, Some(TxnOpResponse::Put(p)))
        | (_, true, Some(TxnOpResponse::Put(p))) => Ok(Written::Done {
            revision,
            existed: p.prev_key().is_some(),
        }),
        (_, false, Some(TxnOpResponse::Get(g))) => Ok(Written::Failed {
            current: g.kvs().first().map(|kv| kv.mod_revision() as u64),
        }),
        (_, ok, other) => Err(EtcdError::Unavailable(format!(
            "unexpected transaction response (succeeded {ok}): {other:?}"
        ))),
    }
}

/// Sends the queued PUTs, as many as fit one transaction at a time, until every
/// sender is gone. A key already in the transaction waits for the next one (etcd
/// refuses a key twice in one request).
async fn batch_puts(client: Client, mut queue: mpsc::UnboundedReceiver<Pending>) {
    let mut held: std::collections::VecDeque<Pending> = Default::default();
    // The last transaction carried several PUTs: writers are busy, so a first
    // PUT with nothing behind it waits [`LINGER`] for company.
    let mut busy = false;
    loop {
        let first = match held.pop_front() {
            Some(p) => p,
            None => match queue.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        if busy && held.is_empty() && queue.is_empty() {
            tokio::time::sleep(LINGER).await;
        }
        let mut bytes = first.value.len();
        let mut keys: HashSet<String> = HashSet::from([first.key.clone()]);
        let mut batch = vec![first];
        let mut later = std::collections::VecDeque::new();
        // What is already queued, then what arrived meanwhile.
        while batch.len() < BATCH_OPS {
            let Some(p) = held.pop_front().or_else(|| queue.try_recv().ok()) else {
                break;
            };
            if bytes + p.value.len() > BATCH_BYTES {
                later.push_back(p);
                break;
            }
            if !keys.insert(p.key.clone()) {
                later.push_back(p);
                continue;
            }
            bytes += p.value.len();
            batch.push(p);
        }
        later.extend(held.drain(..));
        held = later;
        busy = batch.len() > 1;
        send_batch(&client, batch).await;
    }
}

/// One transaction for `batch`: a single PUT as it is, several as nested
/// transactions of one. Every waiting writer gets its own outcome, or the error.
async fn send_batch(client: &Client, batch: Vec<Pending>) {
    let txn = if let [one] = &batch[..] {
        put_txn(one)
    } else {
        Txn::new().and_then(
            batch
                .iter()
                .map(|p| TxnOp::txn(put_txn(p)))
                .collect::<Vec<_>>(),
        )
    };
    let sent = retry_unsent(|| {
        let txn = txn.clone();
        let mut kv = client.kv_client();
        async move { kv.txn(txn).await }
    })
    .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => {
            let e = EtcdError::from(e);
            for p in batch {
                let _ = p.reply.send(Err(e.clone()));
            }
            return;
        }
    };
    let revision = resp.header().map_or(0, |h| h.revision()) as u64;
    if batch.len() == 1 {
        let p = batch.into_iter().next().expect("one");
        let first = resp.op_responses().into_iter().next();
        let _ = p
            .reply
            .send(outcome(p.expect, resp.succeeded(), first, revision));
        return;
    }
    let mut inner = resp.op_responses().into_iter();
    for p in batch {
        let result = match inner.next() {
            Some(TxnOpResponse::Txn(t)) => outcome(
                p.expect,
                t.succeeded(),
                t.op_responses().into_iter().next(),
                revision,
            ),
            other => Err(EtcdError::Unavailable(format!(
                "unexpected transaction response: {other:?}"
            ))),
        };
        let _ = p.reply.send(result);
    }
}

fn compare(key: &str, expect: Expect) -> Vec<Compare> {
    match expect {
        Expect::Any => vec![],
        Expect::Revision(r) => vec![Compare::mod_revision(key, CompareOp::Equal, r as i64)],
        Expect::Exists => vec![Compare::version(key, CompareOp::Greater, 0)],
        Expect::Absent => vec![Compare::version(key, CompareOp::Equal, 0)],
    }
}

/// The end of the range of keys that start with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// How often an idle watch asks etcd where it stands, and how long it waits for any
/// answer before it gives the watch up as broken (a black-holed member keeps the
/// connection open and says nothing).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
const SILENCE_LIMIT: Duration = Duration::from_secs(3);

/// An open watch on the keys under one prefix.
pub struct Watch {
    stream: etcd_client::WatchStream,
    /// The watched prefix, stripped from the keys of the events.
    prefix: String,
}

impl Watch {
    /// The next batch of events; progress notifications come as empty batches (one
    /// at least every [`PROGRESS_EVERY`] while nothing changes).
    pub async fn next(&mut self) -> Result<WatchBatch, EtcdError> {
        let mut answered = tokio::time::Instant::now();
        let mut ask_at = answered + PROGRESS_EVERY;
        loop {
            let resp = tokio::select! {
                m = self.stream.message() => {
                    m?.ok_or_else(|| EtcdError::Unavailable("the watch stream ended".into()))?
                }
                _ = tokio::time::sleep_until(ask_at) => {
                    if answered.elapsed() >= SILENCE_LIMIT {
                        return Err(EtcdError::Unavailable(format!(
                            "etcd answered nothing on the watch for {} s",
                            SILENCE_LIMIT.as_secs()
                        )));
                    }
                    self.stream.request_progress().await?;
                    ask_at = tokio::time::Instant::now() + PROGRESS_EVERY;
                    continue;
                }
            };
            answered = tokio::time::Instant::now();
            ask_at = answered + PROGRESS_EVERY;
            if resp.compact_revision() > 0 {
                return Err(EtcdError::Compacted(resp.compact_revision() as u64));
            }
            if resp.canceled() {
                return Err(EtcdError::Unavailable(format!(
                    "the watch was canceled: {}",
                    resp.cancel_reason()
                )));
            }
            if resp.created() && resp.events().is_empty() {
                continue;
            }
            let revision = resp.header().map_or(0, |h| h.revision()) as u64;
            let events = resp
                .events()
                .iter()
                .filter_map(|e| {
                    let kv = e.kv()?;
                    match e.event_type() {
                        EventType::Put => Etcd::kv(kv, &self.prefix).map(Event::Put),
                        EventType::Delete => {
                            let key = std::str::from_utf8(kv.key()).ok()?;
                            let name = key.strip_prefix(&self.prefix)?;
                            Some(Event::Delete {
                                name: name.to_string(),
                                revision: kv.mod_revision() as u64,
                            })
                        }
                    }
                })
                .collect();
            return Ok(WatchBatch { events, revision });
        }
    }
}

/// Tries TLS with every endpoint, in parallel, with the configured files: the
/// etcd client's channel only retries a failed handshake (its reason goes to a
/// debug log, and requests fail as "transport error" or "operation was
/// canceled"), so an untrusted CA or a refused client certificate would look like
/// an etcd that is away. Fails when no endpoint completed TLS and one refused it;
/// endpoints that do not answer are left to the usual retries (a start with etcd
/// away serves the local copy).
async fn check_tls(endpoints: &[String], tls: &EtcdTls) -> Result<(), EtcdError> {
    let config = std::sync::Arc::new(tls_client_config(tls).map_err(EtcdError::Tls)?);
    let probes: Vec<_> = endpoints
        .iter()
        .map(|e| {
            let (e, config) = (e.clone(), config.clone());
            tokio::task::spawn_blocking(move || probe_tls(&e, config))
        })
        .collect();
    let mut refused = None;
    for (endpoint, probe) in endpoints.iter().zip(probes) {
        match probe.await {
            Ok(Probe::Ok) => return Ok(()),
            Ok(Probe::Refused(e)) => {
                let why = match &e {
                    rustls::Error::InvalidCertificate(_) => {
                        "etcd's server certificate is not trusted; registry.ca_file must hold the CA that signed it"
                    }
                    rustls::Error::AlertReceived(_) => {
                        "etcd refused this client; with etcd's --client-cert-auth, registry.cert_file and registry.key_file must hold a certificate signed by a CA of etcd's --trusted-ca-file"
                    }
                    rustls::Error::InvalidMessage(_) => {
                        "the endpoint does not speak TLS; is etcd's client URL https://?"
                    }
                    _ => "check registry.ca_file, cert_file and key_file",
                };
                refused.get_or_insert(format!("{endpoint}: {e} ({why})"));
            }
            Ok(Probe::Unreached) | Err(_) => {}
        }
    }
    refused.map_or(Ok(()), |m| Err(EtcdError::Tls(m)))
}

/// The outcome of [`probe_tls`].
enum Probe {
    /// TLS completed and etcd sent its first HTTP/2 frame.
    Ok,
    /// TLS failed: the certificate check here or an alert from etcd.
    Refused(rustls::Error),
    /// No answer (etcd away, or not TLS at all): nothing learned.
    Unreached,
}

/// A TLS handshake with `endpoint` (`https://host:port`), then the HTTP/2 client
/// preface and a read: after a TLS 1.3 handshake etcd checks the client
/// certificate, so a refused one shows as an alert at that read.
fn probe_tls(endpoint: &str, config: std::sync::Arc<rustls::ClientConfig>) -> Probe {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    const WAIT: Duration = Duration::from_secs(2);
    let Some(authority) = endpoint
        .strip_prefix("https://")
        .and_then(|r| r.split('/').next())
    else {
        return Probe::Unreached;
    };
    let host = match authority.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
        None => authority,
    };
    let (Ok(name), Some(addr)) = (
        rustls::pki_types::ServerName::try_from(host.to_string()),
        authority.to_socket_addrs().ok().and_then(|mut a| a.next()),
    ) else {
        return Probe::Unreached;
    };
    let Ok(tcp) = std::net::TcpStream::connect_timeout(&addr, WAIT) else {
        return Probe::Unreached;
    };
    let _ = tcp.set_read_timeout(Some(WAIT));
    let _ = tcp.set_write_timeout(Some(WAIT));
    let conn = match rustls::ClientConnection::new(config, name) {
        Ok(c) => c,
        Err(e) => return Probe::Refused(e),
    };
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let refused = |e: std::io::Error| match e.into_inner().map(|i| i.downcast::<rustls::Error>()) {
        Some(Ok(e)) => Probe::Refused(*e),
        _ => Probe::Unreached,
    };
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            return refused(e);
        }
    }
    // The preface and an empty SETTINGS frame; a write error shows at the read.
    let _ = tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0");
    match tls.read(&mut [0u8; 1]) {
        Ok(n) if n > 0 => Probe::Ok,
        Ok(_) => Probe::Unreached,
        Err(e) => refused(e),
    }
}

/// A rustls client configuration from the same PEM files the etcd client gets.
fn tls_client_config(tls: &EtcdTls) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(tls.ca_pem.as_deref().unwrap_or_default()) {
        let c = c.map_err(|e| format!("registry.ca_file: {e}"))?;
        roots.add(c).map_err(|e| format!("registry.ca_file: {e}"))?;
    }
    if roots.is_empty() {
        return Err("registry.ca_file holds no PEM certificate".into());
    }
    let builder = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut config = match &tls.identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("registry.cert_file: {e}"))?;
            if chain.is_empty() {
                return Err("registry.cert_file holds no PEM certificate".into());
            }
            let key = PrivateKeyDer::from_pem_slice(key)
                .map_err(|e| format!("registry.key_file: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("registry.cert_file and key_file: {e}"))?
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/gslb/"), b"/gslb0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }
}
