//! `store-ack`: the record of the last acknowledged batch, kept outside sled.
//!
//! sled recovers from a damaged log by cutting it at the damage: it then opens an
//! older, self-consistent state, and its own record (written in the same batches)
//! agrees with that older state. Only something outside sled's log can tell that
//! acknowledged writes went missing. This file holds, after every durable batch
//! and before the writers are answered, the store id and the revision, count and
//! digest the store had then; on open, a store whose revision is older than the
//! acknowledged one is refused.
//!
//! Layout: two 64-byte slots written alternately, so a write torn by a crash
//! leaves the other slot intact; the valid slot with the higher revision counts.
//! A slot: `magic:8 ("gslback2") id seq revision count digest reserved:8
//! checksum` (u64 little-endian; checksum = xxh3-64 of the 56 bytes before it).
//! `seq` is the store's batch number; slots written before it existed
//! (`"gslback1"`, no `seq`) are read with seq = revision.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::xxh3_64;

pub(super) const FILE: &str = "store-ack";
const MAGIC: &[u8; 8] = b"gslback2";
const MAGIC_V1: &[u8; 8] = b"gslback1";
const SLOT: usize = 64;

/// What the store held when a batch was acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ack {
    pub id: u64,
    pub seq: u64,
    pub revision: u64,
    pub count: u64,
    pub digest: u64,
}

impl Ack {
    fn encode(&self) -> [u8; SLOT] {
        let mut b = [0u8; SLOT];
        b[..8].copy_from_slice(MAGIC);
        for (i, n) in [self.id, self.seq, self.revision, self.count, self.digest]
            .into_iter()
            .enumerate()
        {
            b[8 + i * 8..16 + i * 8].copy_from_slice(&n.to_le_bytes());
        }
        let sum = xxh3_64(&b[..56]);
        b[56..].copy_from_slice(&sum.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != SLOT || xxh3_64(&b[..56]).to_le_bytes() != b[56..] {
            return None;
        }
        let n = |i: usize| u64::from_le_bytes(b[8 + i * 8..16 + i * 8].try_into().expect("8"));
        if &b[..8] == MAGIC {
            Some(Self {
                id: n(0),
                seq: n(1),
                revision: n(2),
                count: n(3),
                digest: n(4),
            })
        } else if &b[..8] == MAGIC_V1 {
            Some(Self {
                id: n(0),
                seq: n(1),
                revision: n(1),
                count: n(2),
                digest: n(3),
            })
        } else {
            None
        }
    }
}

/// The open `store-ack` file.
pub(super) struct AckFile {
    file: File,
    path: PathBuf,
    /// The slot the next write goes to.
    next: u64,
    /// What the last write put on disk.
    written: Option<Ack>,
}

/// What reading the file found.
pub(super) enum Read {
    /// No file: no batch was ever acknowledged here.
    Absent,
    /// The file exists but neither slot is valid.
    Damaged,
    Found(Ack),
}

impl AckFile {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(FILE)
    }

    /// Reads the file in `dir` without opening it for writing.
    pub fn read(dir: &Path) -> io::Result<Read> {
        let bytes = match std::fs::read(Self::path(dir)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Read::Absent),
            Err(e) => return Err(e),
        };
        let best = bytes
            .chunks(SLOT)
            .take(2)
            .filter_map(Ack::decode)
            .max_by_key(|a| a.seq);
        Ok(best.map_or(Read::Damaged, Read::Found))
    }

    /// Opens (creating) the file in `dir` and writes `ack` durably.
    pub fn create(dir: &Path, ack: Ack) -> io::Result<Self> {
        let path = Self::path(dir);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let mut f = Self {
            file,
            path,
            next: 0,
            written: None,
        };
        // Both slots, so an older slot never outranks the new one.
        f.write(ack)?;
        f.write(ack)?;
        if let Some(d) = f.path.parent() {
            File::open(d)?.sync_all()?;
        }
        Ok(f)
    }

    /// Writes `ack` to the next slot and waits for it to reach the disk.
    pub fn write(&mut self, ack: Ack) -> io::Result<()> {
        self.file
            .write_all_at(&ack.encode(), (self.next % 2) * SLOT as u64)?;
        self.file.sync_data()?;
        self.next += 1;
        self.written = Some(ack);
        Ok(())
    }

    /// Whether `ack` is what the last write put on disk (a flush would add nothing).
    pub fn holds(&self, ack: &Ack) -> bool {
        self.written.as_ref() == Some(ack)
    }

    pub fn display(&self) -> String {
        self.path.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_valid_slot_counts_and_a_torn_one_is_ignored() {
        let dir = std::env::temp_dir().join(format!("gslb-ack-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(matches!(AckFile::read(&dir).unwrap(), Read::Absent));
        let a = |revision| Ack {
            id: 9,
            seq: revision + 100,
            revision,
            count: revision * 2,
            digest: revision * 3,
        };
        let mut f = AckFile::create(&dir, a(1)).unwrap();
        f.write(a(2)).unwrap();
        f.write(a(3)).unwrap();
        assert!(matches!(AckFile::read(&dir).unwrap(), Read::Found(x) if x == a(3)));
        // The newest slot torn: the other one, one batch older, counts.
        let mut bytes = std::fs::read(AckFile::path(&dir)).unwrap();
        bytes[SLOT + 8] ^= 1;
        std::fs::write(AckFile::path(&dir), &bytes).unwrap();
        assert!(matches!(AckFile::read(&dir).unwrap(), Read::Found(x) if x == a(2)));
        // Both torn.
        bytes[8] ^= 1;
        std::fs::write(AckFile::path(&dir), &bytes).unwrap();
        assert!(matches!(AckFile::read(&dir).unwrap(), Read::Damaged));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
