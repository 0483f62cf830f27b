//! The embedded store: sled, with checksums on every NameService value and the
//! store's own record of what it holds.
//!
//! Layout of a NameService value (format version 3), under its name as the key:
//!
//! ```text
//! 3  checksum:u64le  revision:u64le  body (codec.rs, with its extension section)
//! checksum = xxh3-64(key || revision || body)
//! ```
//!
//! **Overrides** live in the same tree, under keys no name can take either
//! (`\x01<name>\0<target>`), so a batch writes NameServices and overrides
//! atomically: `3 checksum:u64le revision:u64le JSON`, the checksum as above.
//!
//! **The record.** The NameService tree also holds, under a key no name can take
//! (`\0meta`), the store's record of itself, rewritten in the same atomic batch as
//! every change: the store id, the registry revision, the number of entries
//! (NameServices and overrides) and a digest of them (the wrapping sum of xxh3-64
//! over each key and value), and what the store is for ([`Origin`]). Loading
//! recomputes the count and digest and refuses a store that differs from its record.
//!
//! **Acknowledged means on disk.** sled's own flush ends in `sync_file_range`,
//! which neither flushes the disk's write cache nor the file's size: a power loss
//! may take back what it wrote. A durable batch here ends in `fdatasync` of sled's
//! log file, and then in a write of the record to `store-ack` ([`ack`]), outside
//! sled, also synced, before the writers are answered. sled cuts a damaged log at
//! the damage and comes back older but self-consistent; `store-ack` is what tells
//! that acknowledged writes went missing, and opening refuses such a store.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use xxhash_rust::xxh3::xxh3_64;

use super::ack::{self, Ack, AckFile};
use super::{
    Change, FORMAT_CHECKED, FORMAT_NAMESERVICE, FORMAT_VERSION, Origin, Store, StoreError,
    StoredHealth, StoredOverride, codec,
};
use crate::model::{NameService, Override};

const NAMESERVICES: &str = "nameservices/v1";
const HEALTH: &str = "health/v1";
/// The store's own record. No NameService key starts with a zero byte (names are
/// lowercase DNS names).
const META_KEY: &[u8] = b"\x00meta";
/// The first byte of an override's key: `\x01<nameservice>\0<target>`.
const OVERRIDE_KEY: u8 = 1;
/// The record as the first gslb with revisions wrote it: the revision alone.
const META_V1: u8 = 1;
/// The record without the batch sequence number (read only).
const META_V2: u8 = 2;
/// The record now: see [`Record::encode`].
const META_V3: u8 = 3;

/// The store's own record of what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    id: u64,
    /// Bumped by every batch written (the registry revision need not move: with
    /// etcd, a write applied ahead of the watch keeps it), so "the batch that was
    /// acknowledged last" is always well defined.
    seq: u64,
    revision: u64,
    count: u64,
    digest: u64,
    origin: Origin,
}

impl Record {
    /// `3 id seq revision count digest origin:u8 [cluster_id:u64 prefix_len:u16
    /// prefix] checksum` (u64 little-endian; checksum = xxh3-64 of everything
    /// before it). Version 2 had no `seq`.
    fn encode(&self) -> Vec<u8> {
        let mut v = vec![META_V3];
        for n in [self.id, self.seq, self.revision, self.count, self.digest] {
            v.extend_from_slice(&n.to_le_bytes());
        }
        match &self.origin {
            Origin::Sled => v.push(0),
            Origin::Etcd { cluster_id, prefix } => {
                v.push(1);
                v.extend_from_slice(&cluster_id.to_le_bytes());
                let p = prefix.as_bytes();
                v.extend_from_slice(&(p.len().min(u16::MAX as usize) as u16).to_le_bytes());
                v.extend_from_slice(&p[..p.len().min(u16::MAX as usize)]);
            }
        }
        let sum = xxh3_64(&v);
        v.extend_from_slice(&sum.to_le_bytes());
        v
    }

    fn decode(v: &[u8]) -> Result<Self, String> {
        let (body, sum) = v
            .split_last_chunk::<8>()
            .ok_or_else(|| format!("the record is {} bytes long", v.len()))?;
        if xxh3_64(body) != u64::from_le_bytes(*sum) {
            return Err("the record's checksum does not match".into());
        }
        let u64_at = |i: usize| -> Result<u64, String> {
            body.get(i..i + 8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                .ok_or_else(|| "the record is truncated".to_string())
        };
        // Version 3 has `seq` after the id; version 2 is read with seq = revision.
        let (at, seq_at) = match body.first() {
            Some(&META_V3) => (17, Some(9)),
            Some(&META_V2) => (9, None),
            other => return Err(format!("the record has format {other:?}")),
        };
        let o = at + 24;
        let origin = match body.get(o) {
            Some(0) => Origin::Sled,
            Some(1) => {
                let cluster_id = u64_at(o + 1)?;
                let len = body
                    .get(o + 9..o + 11)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
                    .ok_or("the record is truncated")?;
                let prefix = body
                    .get(o + 11..o + 11 + len)
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .ok_or("the record's prefix is damaged")?
                    .to_string();
                Origin::Etcd { cluster_id, prefix }
            }
            other => return Err(format!("the record names an unknown origin {other:?}")),
        };
        let revision = u64_at(at)?;
        Ok(Self {
            id: u64_at(1)?,
            seq: seq_at.map_or(Ok(revision), u64_at)?,
            revision,
            count: u64_at(at + 8)?,
            digest: u64_at(at + 16)?,
            origin,
        })
    }
}

impl Record {
    fn ack(&self) -> Ack {
        Ack {
            id: self.id,
            seq: self.seq,
            revision: self.revision,
            count: self.count,
            digest: self.digest,
        }
    }
}

/// What one stored entry adds to the digest.
fn entry_hash(key: &[u8], value: &[u8]) -> u64 {
    let mut h = xxh3_64(key);
    h ^= xxh3_64(value).rotate_left(17);
    h
}

/// The embedded default store.
pub struct SledStore {
    db: sled::Db,
    nameservices: sled::Tree,
    health: sled::Tree,
    dir: PathBuf,
    /// sled's log file, to `fdatasync` it after sled's flush.
    log: File,
    /// The blob files (`blobs/<lsn>`) already synced: sled writes a node too big
    /// for its log (over 128 KiB) to a file of its own and never syncs it.
    synced_blobs: Mutex<std::collections::HashSet<std::ffi::OsString>>,
    /// The record as last written and the acknowledgment file; only the writer (the
    /// registry's committer) changes them, under this lock.
    record: Mutex<(Record, AckFile)>,
    /// Makes the next NameService flush fail (tests of the failure path).
    #[cfg(test)]
    fail_flush: std::sync::atomic::AtomicBool,
}

/// The free space below which a write is refused (see [`SledStore::ensure_room`]).
const ROOM: u64 = 2 * 1024 * 1024;

/// Bytes an unprivileged process may still write on the file system holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid C string and `st` points to writable memory of the
    // right type; statvfs fills it when it returns 0.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut buf = vec![FORMAT_VERSION];
    // Serializing our own plain data types to JSON cannot fail.
    serde_json::to_writer(&mut buf, value).expect("serializable");
    buf
}

fn decode<T: serde::de::DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, StoreError> {
    let key = String::from_utf8_lossy(key).into_owned();
    match value.split_first() {
        Some((&FORMAT_VERSION, body)) => {
            serde_json::from_slice(body).map_err(|e| StoreError::Decode {
                key,
                reason: e.to_string(),
            })
        }
        Some((&found, _)) => Err(StoreError::Version { key, found }),
        None => Err(StoreError::Decode {
            key,
            reason: "empty value".into(),
        }),
    }
}

/// A checked value under `key`: format byte, checksum over the key and the rest,
/// `revision`, then the body `body` writes.
fn checked_value(key: &[u8], revision: u64, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut buf = Vec::with_capacity(160);
    buf.push(FORMAT_CHECKED);
    buf.extend_from_slice(&[0; 8]);
    buf.extend_from_slice(&revision.to_le_bytes());
    body(&mut buf);
    let sum = checksum(key, &buf[9..]);
    buf[1..9].copy_from_slice(&sum.to_le_bytes());
    buf
}

/// The stored form of `ns` under its name, written by the change at `revision`.
pub(super) fn encode_nameservice(ns: &NameService, revision: u64) -> Vec<u8> {
    checked_value(ns.name.as_bytes(), revision, |buf| codec::encode(ns, buf))
}

/// A checked NameService value under `key` around any `body` (the fuzz target
/// reaches the body decoder through the checksum with it).
pub(super) fn seal_nameservice_body(key: &[u8], revision: u64, body: &[u8]) -> Vec<u8> {
    checked_value(key, revision, |buf| buf.extend_from_slice(body))
}

/// The key of the override of (`nameservice`, `target`). Neither can hold a zero
/// byte (a DNS name, a target name), so the split is unambiguous.
fn override_key(nameservice: &str, target: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + nameservice.len() + target.len());
    k.push(OVERRIDE_KEY);
    k.extend_from_slice(nameservice.as_bytes());
    k.push(0);
    k.extend_from_slice(target.as_bytes());
    k
}

/// The stored form of an override under `key`, written by the change at `revision`.
fn encode_override(key: &[u8], ovr: &Override, revision: u64) -> Vec<u8> {
    checked_value(key, revision, |buf| {
        serde_json::to_writer(buf, ovr).expect("an override serializes")
    })
}

fn decode_override(key: &[u8], value: &[u8]) -> Result<StoredOverride, StoreError> {
    let bad = |reason: String| StoreError::Decode {
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    };
    let (nameservice, target) = key
        .strip_prefix(&[OVERRIDE_KEY])
        .and_then(|k| {
            let i = k.iter().position(|b| *b == 0)?;
            Some((
                std::str::from_utf8(&k[..i]).ok()?,
                std::str::from_utf8(&k[i + 1..]).ok()?,
            ))
        })
        .ok_or_else(|| bad("not an override key".into()))?;
    let rest = match value.split_first() {
        Some((&FORMAT_CHECKED, rest)) => rest,
        _ => return Err(bad(format!("unknown override format {:?}", value.first()))),
    };
    let (revision, json) = checked(key, rest, value.len()).map_err(bad)?;
    let ovr: Override = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
    Ok(StoredOverride {
        nameservice: nameservice.to_string(),
        target: target.to_string(),
        ovr,
        revision,
    })
}

/// The revision and the body of a checked value (`rest` follows its format
/// byte: checksum over key and the rest, revision, body); `len` is the whole
/// value's length, for the message.
fn checked<'a>(key: &[u8], rest: &'a [u8], len: usize) -> Result<(u64, &'a [u8]), String> {
    let (sum, rest) = rest
        .split_first_chunk::<8>()
        .ok_or_else(|| format!("truncated: {len} bytes"))?;
    if checksum(key, rest) != u64::from_le_bytes(*sum) {
        return Err("its checksum does not match (the value is damaged)".into());
    }
    let (rev, body) = rest
        .split_first_chunk::<8>()
        .ok_or_else(|| format!("truncated: {len} bytes"))?;
    Ok((u64::from_le_bytes(*rev), body))
}

fn checksum(key: &[u8], rest: &[u8]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(key);
    h.update(rest);
    h.digest()
}

/// Decodes a stored NameService and the revision that wrote it (0 for values
/// written before revisions existed).
pub(super) fn decode_nameservice(
    key: &[u8],
    value: &[u8],
) -> Result<(NameService, u64), StoreError> {
    let bad = |reason: String| StoreError::Decode {
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    };
    let (ns, rev) = match value.split_first() {
        Some((&FORMAT_CHECKED, rest)) => {
            let (rev, body) = checked(key, rest, value.len()).map_err(bad)?;
            (codec::decode(body, codec::Layout::V3).map_err(bad)?, rev)
        }
        Some((&FORMAT_NAMESERVICE, body)) => {
            (codec::decode(body, codec::Layout::V2).map_err(bad)?, 0)
        }
        _ => (decode(key, value)?, 0),
    };
    // A value stored under another key is as corrupt as an undecodable one.
    if ns.name.as_bytes() != key {
        return Err(bad(format!("holds the NameService {:?}", ns.name)));
    }
    // The JSON of format 1 is not checked by the binary decoder.
    codec::check_targets(&ns).map_err(bad)?;
    Ok((ns, rev))
}

fn health_key(h: &StoredHealth) -> Vec<u8> {
    h.key().into_bytes()
}

impl SledStore {
    /// Opens (creating if needed) the store in `dir`. Refuses a store whose record
    /// is damaged or lost (see the module doc); the contents are checked against the
    /// record by [`Store::load_each`].
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.display().to_string();
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let damaged = |detail: String| StoreError::Damaged {
            path: path.clone(),
            detail,
        };
        let file_err = |p: &Path, e: std::io::Error| StoreError::File {
            path: p.display().to_string(),
            source: e.into(),
        };
        let ack_path = AckFile::path(dir).display().to_string();
        let acked = ack::AckFile::read(dir).map_err(|e| file_err(&AckFile::path(dir), e))?;
        // sled recreates a missing database silently: a store that existed must
        // still have its files.
        if !matches!(acked, ack::Read::Absent) {
            for f in ["conf", "db"] {
                if !dir.join(f).exists() {
                    return Err(damaged(format!(
                        "{} is missing, but {ack_path} says a store was here",
                        dir.join(f).display(),
                    )));
                }
            }
        }
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::LowSpace)
            .cache_capacity(16 * 1024 * 1024)
            .open()
            .map_err(open_err)?;
        let nameservices = db.open_tree(NAMESERVICES).map_err(open_err)?;
        let health = db.open_tree(HEALTH).map_err(open_err)?;
        let stored = nameservices.get(META_KEY).map_err(open_err)?;
        let record = match (&stored, acked) {
            (Some(v), acked) if matches!(v.first(), Some(&META_V2 | &META_V3)) => {
                let r = Record::decode(v).map_err(|d| damaged(format!("{d} (key \\0meta)")))?;
                match acked {
                    ack::Read::Found(a) if a.id != r.id => {
                        return Err(damaged(format!(
                            "{ack_path} names store {:016x} but the store is {:016x}",
                            a.id, r.id
                        )));
                    }
                    ack::Read::Found(a) if r.seq < a.seq => {
                        return Err(damaged(format!(
                            "it holds revision {} ({} NameServices, batch {}), but revision {} ({} NameServices, batch {}) was acknowledged ({ack_path}): acknowledged writes are missing",
                            r.revision, r.count, r.seq, a.revision, a.count, a.seq
                        )));
                    }
                    ack::Read::Found(a)
                        if r.seq == a.seq && (r.count, r.digest) != (a.count, a.digest) =>
                    {
                        return Err(damaged(format!(
                            "after batch {} it holds {} NameServices, but {} different ones were acknowledged ({ack_path})",
                            r.seq, r.count, a.count
                        )));
                    }
                    ack::Read::Found(_) => {}
                    ack::Read::Damaged => {
                        return Err(damaged(format!("{ack_path} is damaged")));
                    }
                    ack::Read::Absent => {
                        tracing::warn!(file = %ack_path, "store acknowledgment file missing; rewriting it (the contents are checked against the store's record on load)");
                    }
                }
                r
            }
            (_, ack::Read::Found(_) | ack::Read::Damaged) => {
                return Err(damaged(format!(
                    "its record (key \\0meta) is {}, but {ack_path} says a store was here",
                    if stored.is_some() {
                        "of an unknown format"
                    } else {
                        "missing"
                    },
                )));
            }
            (_, ack::Read::Absent) => {
                // A new store, or one written before the record existed: take stock
                // of what it holds once and record it.
                let revision = match &stored {
                    Some(v) if v.first() == Some(&META_V1) && v.len() == 9 => {
                        u64::from_le_bytes(v[1..9].try_into().expect("8 bytes"))
                    }
                    Some(_) => return Err(damaged("its record (key \\0meta) is damaged".into())),
                    None => 0,
                };
                let (mut count, mut digest) = (0u64, 0u64);
                for kv in nameservices.iter() {
                    let (k, v) = kv.map_err(open_err)?;
                    if k.first() != Some(&0) {
                        count += 1;
                        digest = digest.wrapping_add(entry_hash(&k, &v));
                    }
                }
                let r = Record {
                    id: fastrand::u64(1..),
                    seq: 0,
                    revision,
                    count,
                    digest,
                    origin: Origin::Sled,
                };
                nameservices
                    .insert(META_KEY, r.encode())
                    .map_err(open_err)?;
                db.flush().map_err(open_err)?;
                if count > 0 {
                    tracing::info!(
                        nameservices = count,
                        "store written by an earlier gslb: its record now lists what it holds"
                    );
                }
                r
            }
        };
        let log_path = dir.join("db");
        let log = File::open(&log_path).map_err(|e| file_err(&log_path, e))?;
        log.sync_data().map_err(|e| file_err(&log_path, e))?;
        let ack =
            AckFile::create(dir, record.ack()).map_err(|e| file_err(&AckFile::path(dir), e))?;
        Ok(Self {
            db,
            nameservices,
            health,
            dir: dir.to_path_buf(),
            log,
            synced_blobs: Mutex::default(),
            record: Mutex::new((record, ack)),
            #[cfg(test)]
            fail_flush: Default::default(),
        })
    }

    fn record(&self) -> std::sync::MutexGuard<'_, (Record, AckFile)> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes everything written so far durable and acknowledges `record`: sled's
    /// flush, `fdatasync` of its log and of any new blob file, then `store-ack`.
    fn sync_and_ack(&self, record: &Record, ack: &mut AckFile) -> Result<(), StoreError> {
        self.flush_nameservices()?;
        self.log.sync_data().map_err(|e| StoreError::File {
            path: self.dir.join("db").display().to_string(),
            source: e.into(),
        })?;
        self.sync_blobs()?;
        ack.write(record.ack()).map_err(|e| StoreError::File {
            path: ack.display(),
            source: e.into(),
        })
    }

    /// `fdatasync` of every blob file not synced yet, then of the `blobs` directory
    /// (their names). Usually the directory is empty: one `readdir`.
    fn sync_blobs(&self) -> Result<(), StoreError> {
        let dir = self.dir.join("blobs");
        let err = |path: &Path, e: std::io::Error| StoreError::File {
            path: path.display().to_string(),
            source: e.into(),
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(err(&dir, e)),
        };
        let mut synced = self.synced_blobs.lock().unwrap_or_else(|e| e.into_inner());
        let mut present = std::collections::HashSet::new();
        let mut new = false;
        for entry in entries {
            let name = entry.map_err(|e| err(&dir, e))?.file_name();
            if !synced.contains(&name) {
                let path = dir.join(&name);
                match File::open(&path) {
                    Ok(f) => f.sync_data().map_err(|e| err(&path, e))?,
                    // Removed by sled's blob collection meanwhile.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(err(&path, e)),
                }
                new = true;
            }
            present.insert(name);
        }
        if new {
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| err(&dir, e))?;
        }
        // Forget the blobs sled removed.
        *synced = present;
        Ok(())
    }

    fn flush_nameservices(&self) -> Result<(), StoreError> {
        #[cfg(test)]
        if self
            .fail_flush
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(StoreError::Io(sled::Error::Io(std::io::Error::other(
                "injected flush failure",
            ))));
        }
        self.db.flush()?;
        Ok(())
    }

    /// [`Store::apply`], and with `origin`, records it in the same batch.
    fn apply_batch(
        &self,
        changes: &[Change],
        revision: u64,
        durable: bool,
        origin: Option<Origin>,
    ) -> Result<(), StoreError> {
        let mut guard = self.record();
        let (record, ack) = &mut *guard;
        let mut next = record.clone();
        next.revision = revision;
        if let Some(origin) = origin {
            next.origin = origin;
        }
        next.seq += 1;
        let mut batch = sled::Batch::default();
        let mut undo = sled::Batch::default();
        undo.insert(META_KEY, record.encode());
        // What this batch has written so far, per key (a key may come twice).
        let mut written: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
        for c in changes {
            let key: Vec<u8> = match c {
                Change::Put(ns, _) => ns.name.as_bytes().to_vec(),
                Change::Delete(name) => name.as_bytes().to_vec(),
                Change::PutOverride(name, target, ..) | Change::DeleteOverride(name, target) => {
                    override_key(name, target)
                }
            };
            let key = key.as_slice();
            let old = match written.get(key) {
                Some(v) => v.clone(),
                None => {
                    let old = self.nameservices.get(key)?.map(|v| v.to_vec());
                    match &old {
                        Some(v) => undo.insert(key, v.as_slice()),
                        None => undo.remove(key),
                    }
                    old
                }
            };
            if let Some(old) = &old {
                next.count -= 1;
                next.digest = next.digest.wrapping_sub(entry_hash(key, old));
            }
            let new = match c {
                Change::Put(ns, rev) => Some(encode_nameservice(ns, *rev)),
                Change::PutOverride(_, _, ovr, rev) => Some(encode_override(key, ovr, *rev)),
                Change::Delete(_) | Change::DeleteOverride(..) => None,
            };
            match &new {
                Some(v) => {
                    next.count += 1;
                    next.digest = next.digest.wrapping_add(entry_hash(key, v));
                    batch.insert(key, v.as_slice());
                }
                None => batch.remove(key),
            }
            written.insert(key.to_vec(), new);
        }
        batch.insert(META_KEY, next.encode());
        // A write sled meets ENOSPC on fails, and sled then refuses every later write
        // until the process restarts. Refuse the batch before it reaches sled while
        // that could happen: writes come back by themselves once there is room.
        let bytes: u64 = written
            .iter()
            .map(|(k, v)| (k.len() + v.as_ref().map_or(0, Vec::len)) as u64)
            .sum();
        self.ensure_room(bytes)?;
        self.nameservices.apply_batch(batch)?;
        if durable && let Err(e) = self.sync_and_ack(&next, ack) {
            // The batch sits in sled's memory: take it out again, so that no later
            // flush (sled's own, or the next write's) makes durable what the caller
            // is told failed.
            if let Err(undo_err) = self.nameservices.apply_batch(undo) {
                tracing::error!(error = %undo_err, "cannot undo a batch whose flush failed");
            }
            return Err(e);
        }
        *record = next;
        Ok(())
    }

    fn damaged(&self, detail: String) -> StoreError {
        StoreError::Damaged {
            path: self.dir.display().to_string(),
            detail,
        }
    }
}

impl Store for SledStore {
    fn load_each(&self, f: &mut dyn FnMut(NameService, u64)) -> Result<(), StoreError> {
        // A first pass that only counts. sled evicts from its cache only after many
        // accesses (its LRU is 256 shards, each acting on 64 queued accesses), so
        // after a single pass every page read stays in memory. The counting pass
        // pulls the pages in; the decoding pass below then lets sled evict them
        // while we allocate the decoded resources, which reuse the freed memory.
        // Measured at 100,000 names: ~20 MB less RSS for ~0.08 s more startup.
        self.nameservices.len();
        let (mut count, mut digest) = (0u64, 0u64);
        for kv in self.nameservices.iter() {
            let (k, v) = kv?;
            if k.first() == Some(&0) {
                continue;
            }
            count += 1;
            digest = digest.wrapping_add(entry_hash(&k, &v));
            if k.first() == Some(&OVERRIDE_KEY) {
                continue; // see load_overrides
            }
            let (mut ns, rev) = decode_nameservice(&k, &v)?;
            // JSON decoding grows the vector by doubling; 100,000 of them live on.
            ns.targets.shrink_to_fit();
            f(ns, rev);
        }
        let guard = self.record();
        let r = &guard.0;
        if count != r.count {
            return Err(self.damaged(format!(
                "it holds {count} NameServices and overrides, its record says {}",
                r.count
            )));
        }
        if digest != r.digest {
            return Err(self.damaged(format!(
                "its {count} NameServices and overrides do not match the digest of its record"
            )));
        }
        Ok(())
    }

    fn load_overrides(&self) -> Result<Vec<StoredOverride>, StoreError> {
        let mut out = Vec::new();
        for kv in self.nameservices.scan_prefix([OVERRIDE_KEY]) {
            let (k, v) = kv?;
            out.push(decode_override(&k, &v)?);
        }
        Ok(out)
    }

    fn revision(&self) -> Result<u64, StoreError> {
        Ok(self.record().0.revision)
    }

    fn count(&self) -> Result<u64, StoreError> {
        Ok(self.record().0.count)
    }

    fn origin(&self) -> Origin {
        self.record().0.origin.clone()
    }

    fn set_origin(&self, origin: Origin) -> Result<(), StoreError> {
        let mut guard = self.record();
        let (record, ack) = &mut *guard;
        let mut next = record.clone();
        next.origin = origin;
        self.nameservices.insert(META_KEY, next.encode())?;
        self.sync_and_ack(&next, ack)?;
        *record = next;
        Ok(())
    }

    fn apply(&self, changes: &[Change], revision: u64, durable: bool) -> Result<(), StoreError> {
        self.apply_batch(changes, revision, durable, None)
    }

    fn apply_from(
        &self,
        changes: &[Change],
        revision: u64,
        origin: Origin,
    ) -> Result<(), StoreError> {
        self.apply_batch(changes, revision, true, Some(origin))
    }

    /// Refuses (`StoreError::Full`) a batch of about `bytes` when the file system
    /// holding the store has less than [`ROOM`] plus twice that free: sled may have
    /// to start a new log segment (512 KiB) or write a node as a blob of its own.
    fn ensure_room(&self, bytes: u64) -> Result<(), StoreError> {
        match free_bytes(&self.dir) {
            Some(free) if free < ROOM + 2 * bytes => {
                tracing::error!(
                    store = %self.dir.display(),
                    free_bytes = free,
                    needed_bytes = ROOM + 2 * bytes,
                    "the disk holding the store is (nearly) full: write refused"
                );
                Err(StoreError::Full)
            }
            // Unknown (statvfs failed): let the write try.
            _ => Ok(()),
        }
    }

    fn load_health(&self) -> Result<Vec<StoredHealth>, StoreError> {
        self.health
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                decode(&k, &v)
            })
            .collect()
    }

    fn save_health(
        &self,
        upsert: &[StoredHealth],
        removed: &[StoredHealth],
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for h in removed {
            batch.remove(health_key(h));
        }
        for h in upsert {
            batch.insert(health_key(h), encode(h));
        }
        self.health.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        let mut guard = self.record();
        let (record, ack) = &mut *guard;
        if ack.holds(&record.ack()) {
            // Everything applied is already on disk.
            return Ok(());
        }
        let record = record.clone();
        self.sync_and_ack(&record, ack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `stored_value` fuzz target: a format 1 (JSON) value whose
    /// target has neither an address nor an fqdn (the key misspelt) was accepted,
    /// and its binary form then refused.
    #[test]
    fn json_values_hold_the_target_rules_too() {
        let ok = br#"{"name":"a.example","ttl":30,"policy":"Ratio","targets":[{"name":"a","fqdn":"gw.dc1.example","ratio":3,"enabled":true}],"allDown":"AnswerAll","failover":[],"distribute":[],"panicThresholdPercent":0,"slowStartSeconds":0,"degradedTtl":30,"stickiness":"None","minEligibleTargets":1}"#;
        let mut value = vec![FORMAT_VERSION];
        value.extend_from_slice(ok);
        let (ns, _) = decode_nameservice(b"a.example", &value).unwrap();
        assert_eq!(ns.targets[0].fqdn.as_deref(), Some("gw.dc1.example"));
        for (from, to, want) in [
            ("\"fqdn\"", "\"fq&n\"", "neither an address nor an fqdn"),
            (
                "\"ratio\":3",
                "\"ratio\":3,\"address\":\"192.0.2.1\"",
                "both an address and an fqdn",
            ),
            (
                "\"ratio\":3",
                "\"ratio\":3,\"probeAddress\":\"192.0.2.1\"",
                "a probeAddress with an fqdn",
            ),
        ] {
            let text = std::str::from_utf8(ok).unwrap().replace(from, to);
            let mut value = vec![FORMAT_VERSION];
            value.extend_from_slice(text.as_bytes());
            let e = decode_nameservice(b"a.example", &value)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e}");
        }
        // The fuzz target's reproducer, kept in its seeds.
        let crash =
            include_bytes!("../../fuzz/seeds/stored_value/regression-json-target-without-address");
        assert!(decode_nameservice(b"a.example", crash).is_err());
    }

    fn ns(name: &str) -> NameService {
        NameService::from_json(serde_json::json!({
            "name": name, "policy": "RoundRobin",
            "targets": [{"name": "a", "address": "192.0.2.1"}]
        }))
        .unwrap()
    }

    fn put(name: &str, rev: u64) -> Change {
        Change::Put(ns(name).into(), rev)
    }

    /// Opens a store just dropped: sled releases its file lock from a background
    /// thread, so a reopen right after a drop can briefly find it still held.
    fn reopen(dir: &Path) -> Result<SledStore, StoreError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match SledStore::open(dir) {
                // sled releases its file lock from a background thread after the
                // `Db` is dropped: on a busy machine that takes a while, and the
                // error it reports meanwhile varies. Retry whatever it is.
                Err(StoreError::Open { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    fn tmpdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("gslb-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// A NameService as big as validation lets it be: 16 headers of 4 KiB.
    fn big(name: &str) -> NameService {
        let headers: Vec<_> = (0..16)
            .map(|i| serde_json::json!({"name": format!("X-H{i}"), "value": "v".repeat(4096)}))
            .collect();
        NameService::from_json(serde_json::json!({
            "name": name, "policy": "RoundRobin",
            "healthCheck": {"httpGet": {"path": "/", "port": 80, "httpHeaders": headers}},
            "targets": [{"name": "a", "address": "192.0.2.1"}]
        }))
        .unwrap()
    }

    /// sled writes a node too big for its log to a blob file of its own, and never
    /// syncs it: an acknowledged batch has every blob synced.
    #[test]
    fn blobs_are_synced_before_a_batch_is_acknowledged() {
        let dir = tmpdir("blobs");
        let s = SledStore::open(&dir).unwrap();
        let changes: Vec<Change> = (0..12)
            .map(|i| Change::Put(big(&format!("n{i:02}.example")).into(), i + 1))
            .collect();
        s.apply(&changes, 12, true).unwrap();
        let blobs: std::collections::HashSet<_> = std::fs::read_dir(dir.join("blobs"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            !blobs.is_empty(),
            "no blob written: the test proves nothing"
        );
        let synced = s.synced_blobs.lock().unwrap().clone();
        assert!(blobs.is_subset(&synced), "{blobs:?} not all in {synced:?}");
        drop(s);
        let s = reopen(&dir).unwrap();
        assert_eq!(s.load_all().unwrap().len(), 12);
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn put_delete_reopen_with_revisions() {
        let dir = tmpdir("reopen");
        {
            let s = SledStore::open(&dir).unwrap();
            assert_eq!(s.revision().unwrap(), 0);
            s.apply(&[put("b.example", 1), put("a.example", 2)], 2, true)
                .unwrap();
            s.apply(&[Change::Delete("b.example".into())], 3, true)
                .unwrap();
            // A batch that only moves the revision (a watch caught up, say).
            s.apply(&[], 7, false).unwrap();
        }
        let s = reopen(&dir).unwrap();
        assert_eq!(s.load_all().unwrap(), vec![(ns("a.example"), 2)]);
        assert_eq!(s.revision().unwrap(), 7);
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_flush_leaves_nothing_behind() {
        let dir = tmpdir("failflush");
        let mut a2 = ns("a.example");
        a2.ttl = 60;
        {
            let s = SledStore::open(&dir).unwrap();
            s.apply(&[put("a.example", 1), put("c.example", 2)], 2, true)
                .unwrap();
            s.fail_flush
                .store(true, std::sync::atomic::Ordering::SeqCst);
            let failed = s.apply(
                &[
                    Change::Put(a2.clone().into(), 3),
                    put("b.example", 4),
                    Change::Delete("c.example".into()),
                ],
                5,
                true,
            );
            assert!(matches!(failed, Err(StoreError::Io(_))));
            assert_eq!(s.revision().unwrap(), 2);
            assert_eq!(
                s.load_all().unwrap(),
                vec![(ns("a.example"), 1), (ns("c.example"), 2)]
            );
            // A later flush (here the shutdown one) must not bring the batch back.
            s.flush().unwrap();
        }
        let s = reopen(&dir).unwrap();
        assert_eq!(
            s.load_all().unwrap(),
            vec![(ns("a.example"), 1), (ns("c.example"), 2)]
        );
        assert_eq!(s.revision().unwrap(), 2);
        s.apply(&[Change::Put(a2.clone().into(), 3)], 3, true)
            .unwrap();
        assert_eq!(s.load_all().unwrap(), vec![(a2, 3), (ns("c.example"), 2)]);
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_every_earlier_format_and_records_what_it_holds() {
        let dir = tmpdir("formats");
        {
            // A store as an earlier gslb left it: JSON and binary values, no record.
            let db = sled::open(&dir).unwrap();
            let t = db.open_tree(NAMESERVICES).unwrap();
            t.insert("a.example", encode(&ns("a.example"))).unwrap();
            let mut v2 = vec![FORMAT_NAMESERVICE];
            let mut body = Vec::new();
            codec::encode(&ns("b.example"), &mut body);
            body.pop(); // version 2 had no extension section
            v2.extend_from_slice(&body);
            t.insert("b.example", v2).unwrap();
            db.flush().unwrap();
        }
        let s = reopen(&dir).unwrap();
        assert_eq!(
            s.load_all().unwrap(),
            vec![(ns("a.example"), 0), (ns("b.example"), 0)]
        );
        s.apply(&[put("c.example", 1)], 1, true).unwrap();
        let raw = s.nameservices.get("c.example").unwrap().unwrap();
        assert_eq!(raw[0], FORMAT_CHECKED);
        assert_eq!(s.load_all().unwrap().len(), 3);
        drop(s);
        // The record written on the first open is checked from now on.
        let s = reopen(&dir).unwrap();
        assert_eq!(s.load_all().unwrap().len(), 3);
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_value_stops_the_load_naming_the_key() {
        let dir = tmpdir("damaged");
        let s = SledStore::open(&dir).unwrap();
        s.apply(&[put("a.example", 1), put("b.example", 2)], 2, true)
            .unwrap();
        let good = s.nameservices.get("b.example").unwrap().unwrap().to_vec();
        // Every single flipped bit of the value is caught.
        for i in 0..good.len() {
            for bit in 0..8 {
                let mut bad = good.clone();
                bad[i] ^= 1 << bit;
                s.nameservices.insert("b.example", bad).unwrap();
                match s.load_all() {
                    Err(StoreError::Decode { key, .. }) | Err(StoreError::Version { key, .. }) => {
                        assert_eq!(key, "b.example")
                    }
                    other => panic!("byte {i} bit {bit}: {other:?}"),
                }
            }
        }
        // Truncated.
        s.nameservices
            .insert("b.example", &good[..good.len() - 1])
            .unwrap();
        assert!(matches!(s.load_all(), Err(StoreError::Decode { .. })));
        // A value moved under another key.
        s.nameservices.insert("b.example", good.clone()).unwrap();
        s.nameservices.insert("c.example", good.clone()).unwrap();
        assert!(matches!(s.load_all(), Err(StoreError::Decode { key, .. }) if key == "c.example"));
        s.nameservices.remove("c.example").unwrap();
        s.load_all().unwrap();
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn contents_that_differ_from_the_record_are_refused() {
        let dir = tmpdir("record");
        let s = SledStore::open(&dir).unwrap();
        s.apply(&[put("a.example", 1), put("b.example", 2)], 2, true)
            .unwrap();
        let b = s.nameservices.get("b.example").unwrap().unwrap();
        // A value lost behind the record's back.
        s.nameservices.remove("b.example").unwrap();
        let e = s.load_all().unwrap_err();
        assert!(matches!(&e, StoreError::Damaged { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("holds 1 NameServices and overrides, its record says 2"),
            "{e}"
        );
        assert!(e.to_string().contains(&dir.display().to_string()), "{e}");
        // A valid value swapped for another valid one (an older version, say).
        s.nameservices.insert("b.example", b).unwrap();
        s.load_all().unwrap();
        let older = encode_nameservice(&ns("b.example"), 1);
        s.nameservices.insert("b.example", older).unwrap();
        let e = s.load_all().unwrap_err();
        assert!(e.to_string().contains("digest"), "{e}");
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_lost_store_is_refused_naming_the_file() {
        let dir = tmpdir("lost");
        {
            let s = SledStore::open(&dir).unwrap();
            s.apply(&[put("a.example", 1)], 1, true).unwrap();
        }
        // sled's database file gone: sled would start an empty one.
        std::fs::rename(dir.join("db"), dir.join("db.moved")).unwrap();
        let e = reopen(&dir).err().expect("refused");
        assert!(e.to_string().contains("db is missing"), "{e}");
        std::fs::rename(dir.join("db.moved"), dir.join("db")).unwrap();
        // The record gone.
        {
            let s = reopen(&dir).unwrap();
            s.nameservices.remove(META_KEY).unwrap();
            s.flush().unwrap();
        }
        let e = reopen(&dir).err().expect("refused");
        assert!(
            e.to_string().contains("missing") && e.to_string().contains(ack::FILE),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();

        // The id file gone, the store intact: rewritten.
        {
            let s = SledStore::open(&dir).unwrap();
            s.apply(&[put("a.example", 1)], 1, true).unwrap();
        }
        std::fs::remove_file(dir.join(ack::FILE)).unwrap();
        let s = reopen(&dir).unwrap();
        assert_eq!(s.load_all().unwrap().len(), 1);
        assert!(dir.join(ack::FILE).exists());
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_store_older_than_what_was_acknowledged_is_refused() {
        let dir = tmpdir("older");
        let old = tmpdir("older-copy");
        {
            let s = SledStore::open(&dir).unwrap();
            s.apply(&[put("a.example", 1)], 1, true).unwrap();
        }
        // sled's files as they were at revision 1 ...
        std::fs::create_dir_all(&old).unwrap();
        for f in ["conf", "db"] {
            std::fs::copy(dir.join(f), old.join(f)).unwrap();
        }
        {
            let s = reopen(&dir).unwrap();
            s.apply(&[put("b.example", 2)], 2, true).unwrap();
        }
        // ... come back (as when sled cuts a damaged log), with store-ack at 2.
        for f in ["conf", "db"] {
            std::fs::copy(old.join(f), dir.join(f)).unwrap();
        }
        let e = reopen(&dir).err().expect("refused");
        assert!(
            e.to_string().contains(
                "holds revision 1 (1 NameServices, batch 1), but revision 2 (2 NameServices, batch 2) was acknowledged"
            ),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&old).unwrap();
    }

    /// With etcd, a write applied ahead of the watch keeps the registry revision:
    /// two durable batches at one revision, and a crash after the second reached
    /// sled but before its acknowledgment, open fine (the batch number tells).
    #[test]
    fn a_batch_stored_but_not_yet_acknowledged_is_not_damage() {
        let dir = tmpdir("unacked");
        {
            let s = SledStore::open(&dir).unwrap();
            s.apply(&[put("a.example", 5)], 4, true).unwrap();
        }
        let acked = std::fs::read(dir.join(ack::FILE)).unwrap();
        {
            let s = reopen(&dir).unwrap();
            s.apply(&[put("b.example", 6)], 4, true).unwrap();
        }
        std::fs::write(dir.join(ack::FILE), acked).unwrap();
        let s = reopen(&dir).unwrap();
        assert_eq!(s.load_all().unwrap().len(), 2);
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_origin_is_kept() {
        let dir = tmpdir("origin");
        let etcd = Origin::Etcd {
            cluster_id: 0xdead_beef,
            prefix: "/gslb/".into(),
        };
        {
            let s = SledStore::open(&dir).unwrap();
            assert_eq!(s.origin(), Origin::Sled);
            s.set_origin(etcd.clone()).unwrap();
            s.apply(&[put("a.example", 5)], 5, false).unwrap();
            s.flush().unwrap();
        }
        let s = reopen(&dir).unwrap();
        assert_eq!(s.origin(), etcd);
        assert_eq!(s.revision().unwrap(), 5);
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A first listing and its origin land in one batch: a failed batch leaves
    /// neither (an empty standalone-looking store, never names without origin).
    #[test]
    fn a_listing_and_its_origin_are_one_batch() {
        let dir = tmpdir("apply-from");
        let etcd = Origin::Etcd {
            cluster_id: 42,
            prefix: "/gslb/".into(),
        };
        {
            let s = SledStore::open(&dir).unwrap();
            s.fail_flush
                .store(true, std::sync::atomic::Ordering::SeqCst);
            assert!(
                s.apply_from(&[put("a.example", 3)], 3, etcd.clone())
                    .is_err()
            );
            assert_eq!(s.origin(), Origin::Sled);
            assert_eq!(s.count().unwrap(), 0);
            s.apply_from(&[put("a.example", 3), put("b.example", 3)], 3, etcd.clone())
                .unwrap();
        }
        let s = reopen(&dir).unwrap();
        assert_eq!(s.origin(), etcd);
        assert_eq!(s.count().unwrap(), 2);
        assert_eq!(s.revision().unwrap(), 3);
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn record_round_trip_and_damage() {
        for origin in [
            Origin::Sled,
            Origin::Etcd {
                cluster_id: 7,
                prefix: "/p/".into(),
            },
        ] {
            let r = Record {
                id: 1,
                seq: 9,
                revision: 2,
                count: 3,
                digest: 4,
                origin,
            };
            let v = r.encode();
            assert_eq!(Record::decode(&v).unwrap(), r);
            for i in 0..v.len() {
                let mut bad = v.clone();
                bad[i] ^= 0x10;
                assert!(Record::decode(&bad).is_err(), "byte {i}");
            }
            assert!(Record::decode(&v[..v.len() - 1]).is_err());
        }
    }

    #[test]
    fn health_round_trip() {
        let dir = tmpdir("health");
        let s = SledStore::open(&dir).unwrap();
        let h = StoredHealth {
            address: "192.0.2.1".parse().unwrap(),
            port: 443,
            http: None,
            period_seconds: 5,
            timeout_seconds: 2,
            failure_threshold: 3,
            success_threshold: 1,
            flap_damping: true,
            health: "Healthy".into(),
            local_health: Some("Unhealthy".into()),
            consecutive_failures: 0,
            consecutive_successes: 4,
            last_probe_time: Some(1),
            last_error: None,
            last_change_time: Some(1),
            damping: Some(crate::health::machine::Damping {
                recent: 0b1010,
                seen: 4,
                changes: vec![1_000, 2_000],
                held_since: None,
                passing_since: Some(2_000),
                raw: crate::health::Health::Healthy,
            }),
        };
        s.save_health(std::slice::from_ref(&h), &[]).unwrap();
        assert_eq!(s.load_health().unwrap(), vec![h.clone()]);
        s.save_health(&[], std::slice::from_ref(&h)).unwrap();
        assert!(s.load_health().unwrap().is_empty());
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn overrides_are_stored_with_the_nameservices_and_checked() {
        use crate::model::{Override, OverrideState};
        let dir = tmpdir("overrides");
        let s = SledStore::open(&dir).unwrap();
        let o = |state: OverrideState| Override {
            state,
            reason: "maintenance".into(),
            ttl_seconds: 60,
            created_at_ms: 1_000,
            expires_at_ms: 61_000,
            by: Some("ops".into()),
        };
        s.apply(
            &[
                put("a.example", 1),
                Change::PutOverride("a.example".into(), "dc1".into(), o(OverrideState::Drain), 2),
                Change::PutOverride(
                    "a.example".into(),
                    "dc2".into(),
                    o(OverrideState::ForceHealthy),
                    3,
                ),
            ],
            3,
            true,
        )
        .unwrap();
        s.apply(
            &[Change::DeleteOverride("a.example".into(), "dc2".into())],
            4,
            true,
        )
        .unwrap();
        drop(s);
        let s = reopen(&dir).unwrap();
        // The NameServices load as before (overrides are not NameServices) ...
        assert_eq!(s.load_all().unwrap().len(), 1);
        // ... and the overrides come back.
        let got = s.load_overrides().unwrap();
        assert_eq!(
            got,
            [StoredOverride {
                nameservice: "a.example".into(),
                target: "dc1".into(),
                ovr: o(OverrideState::Drain),
                revision: 2,
            }]
        );
        // A damaged override stops the load, naming it; a lost one is caught by the
        // record.
        let key = override_key("a.example", "dc1");
        let mut v = s.nameservices.get(&key).unwrap().unwrap().to_vec();
        let last = v.len() - 2;
        v[last] ^= 0x20;
        s.nameservices.insert(&key, v).unwrap();
        let e = s.load_overrides().unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
        assert!(matches!(
            s.load_all().unwrap_err(),
            StoreError::Damaged { .. }
        ));
        s.nameservices.remove(&key).unwrap();
        assert!(matches!(
            s.load_all().unwrap_err(),
            StoreError::Damaged { .. }
        ));
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
