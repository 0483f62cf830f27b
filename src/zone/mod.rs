//! Zone files: loading RFC 1035 master files into an immutable, query-ready form.
//!
//! Loading ([`ZoneSet::load_dir`]) does all the work once: text is split into
//! entries with their line numbers ([`lexer`]), record data is parsed by
//! hickory-proto, the zone is checked (one SOA and some NS at the apex, nothing
//! outside the origin, no CNAME next to other data) and every RRset is encoded to
//! wire form. Answering then only hashes lowercase wire names and copies bytes.
//!
//! **Architecture Invariant:** a [`ZoneSet`] is never mutated after loading; the DNS
//! workers read it without locks through the snapshot.

mod lexer;
mod load;
pub mod wire;

use std::fmt;
use std::path::Path;

/// Record types the query path needs by number.
pub mod rtype {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const CNAME: u16 = 5;
    pub const SOA: u16 = 6;
    pub const PTR: u16 = 12;
    pub const MX: u16 = 15;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const DS: u16 = 43;
}

/// Every zone served, immutable once loaded.
#[derive(Default)]
pub struct ZoneSet {
    zones: Vec<Zone>,
    /// Index in `zones` by lowercase wire-form origin.
    by_apex: wire::NameMap<Box<[u8]>, usize>,
    origins: Vec<String>,
    /// Most labels of any origin: longer suffixes of a query name need no lookup.
    max_labels: usize,
    /// With few zones, their indexes, longest apex first: comparing a name's tail
    /// with each apex is cheaper than hashing its suffixes.
    few: Vec<usize>,
}

/// Up to this many zones, [`ZoneSet::find`] compares apexes instead of hashing.
const FEW_ZONES: usize = 4;

impl fmt::Debug for ZoneSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZoneSet")
            .field("origins", &self.origins)
            .finish()
    }
}

/// A zone file that cannot be served, with the file and line at fault.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ZoneError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Why a NameService may not live at a name of a zone (CONTRACT §3: 409).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Collision {
    /// The zone file has a CNAME at that name.
    Cname,
    /// The name is at or below a delegation (NS below the apex) of the zone.
    Delegation(String),
}

impl ZoneSet {
    /// Loads every `*.zone` file in `dir`.
    pub fn load_dir(dir: &Path) -> Result<Self, ZoneError> {
        load::load_dir(dir)
    }

    fn from_zones(zones: Vec<Zone>) -> Self {
        let mut origins: Vec<String> = zones.iter().map(|z| z.origin.clone()).collect();
        origins.sort();
        let max_labels = zones
            .iter()
            .map(|z| wire::label_count(&z.apex))
            .max()
            .unwrap_or(0);
        let mut few: Vec<usize> = if zones.len() <= FEW_ZONES {
            (0..zones.len()).collect()
        } else {
            Vec::new()
        };
        few.sort_by_key(|&i| std::cmp::Reverse(zones[i].apex.len()));
        Self {
            by_apex: zones
                .iter()
                .enumerate()
                .map(|(i, z)| (z.apex.clone(), i))
                .collect(),
            zones,
            origins,
            max_labels,
            few,
        }
    }

    /// The origin (lowercase, no trailing dot) of the most specific zone holding `name`.
    pub fn zone_of(&self, name: &str) -> Option<&str> {
        let w = wire::from_dotted(name.strip_suffix('.').unwrap_or(name))?;
        self.find(&w).map(|z| z.origin.as_str())
    }

    /// Whether a NameService at `name` would collide with the zone's static data.
    pub fn collision(&self, name: &str) -> Option<Collision> {
        let w = wire::from_dotted(name.strip_suffix('.').unwrap_or(name))?;
        let zone = self.find(&w)?;
        if let Some(at) = zone.delegation(&w) {
            return Some(Collision::Delegation(wire::to_dotted(&w[at..])));
        }
        zone.node(&w)
            .and_then(|n| n.rrset(rtype::CNAME))
            .map(|_| Collision::Cname)
    }

    /// Origins of all zones, sorted.
    pub fn origins(&self) -> Vec<String> {
        self.origins.clone()
    }

    /// Checks every `*.zone` file of `dir` on its own (`gslb check`): the zones that
    /// load, and the first error of each file that does not.
    pub fn check_dir(dir: &Path) -> (Self, Vec<ZoneError>) {
        load::check_dir(dir)
    }

    /// What is served but probably wrong (in-zone NS targets without glue), by
    /// zone, with file and line.
    pub fn warnings(&self) -> Vec<&ZoneError> {
        self.zones.iter().flat_map(|z| z.warnings.iter()).collect()
    }

    /// Every zone's origin and SOA serial, sorted by origin (startup log, reload).
    pub fn serials(&self) -> Vec<(String, u32)> {
        let mut v: Vec<(String, u32)> = self
            .zones
            .iter()
            .map(|z| (z.origin.clone(), z.serial))
            .collect();
        v.sort();
        v
    }

    /// The most specific zone holding `name` (lowercase wire form).
    #[inline]
    pub fn find(&self, name: &[u8]) -> Option<&Zone> {
        if self.zones.is_empty() {
            return None;
        }
        if !self.few.is_empty() {
            // The deepest apex that `name` is at or below: a longer apex that is an
            // ancestor of the same name is a deeper one.
            return self
                .few
                .iter()
                .map(|&i| &self.zones[i])
                .find(|z| wire::is_at_or_below(name, &z.apex));
        }
        let skip = wire::label_count(name).saturating_sub(self.max_labels);
        wire::suffixes(name)
            .skip(skip)
            .find_map(|o| self.by_apex.get(&name[o..]))
            .map(|&i| &self.zones[i])
    }
}

/// One zone: its nodes by lowercase wire name, empty non-terminals included.
pub struct Zone {
    origin: String,
    apex: Box<[u8]>,
    nodes: wire::NameMap<Box<[u8]>, Node>,
    /// The apex SOA with the negative-caching TTL (RFC 2308 §5: min(TTL, MINIMUM)).
    negative_soa: Rrset,
    /// The same as a ready-made record, when its names allow.
    negative_record: Option<NegativeSoa>,
    /// The SOA serial as written in the file.
    serial: u32,
    /// Served, but probably a mistake (see [`ZoneSet::warnings`]).
    warnings: Vec<ZoneError>,
    has_delegations: bool,
    has_wildcards: bool,
}

impl Zone {
    /// Lowercase origin without trailing dot.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The SOA serial as written in the zone file.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Lowercase wire-form origin.
    pub fn apex(&self) -> &[u8] {
        &self.apex
    }

    /// The node at `name` (lowercase wire form); empty non-terminals are nodes too.
    #[inline]
    pub fn node(&self, name: &[u8]) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// The apex SOA as it goes into the authority section of negative answers.
    pub fn negative_soa(&self) -> &Rrset {
        &self.negative_soa
    }

    /// [`Zone::negative_soa`] encoded once, for messages that hold the apex name.
    #[inline]
    pub fn negative_record(&self) -> Option<&NegativeSoa> {
        self.negative_record.as_ref()
    }

    /// Offset in `name` of the highest delegation point at or above it (strictly
    /// below the apex), if any.
    #[inline]
    pub fn delegation(&self, name: &[u8]) -> Option<usize> {
        if !self.has_delegations {
            return None;
        }
        let apex_at = name.len().checked_sub(self.apex.len())?;
        let mut found = None;
        for o in wire::suffixes(name) {
            if o >= apex_at {
                break;
            }
            if self.nodes.get(&name[o..]).is_some_and(|n| n.delegation) {
                found = Some(o);
            }
        }
        found
    }

    /// RFC 4592 source of synthesis for a `name` that has no node: the `*` child of
    /// its closest encloser, if that exists. `exists_elsewhere` tells whether a name
    /// without a node exists all the same (names that NameServices bring along); it
    /// is only asked when the zone has wildcards.
    pub fn wildcard(&self, name: &[u8], exists_elsewhere: impl Fn(&[u8]) -> bool) -> Option<&Node> {
        if !self.has_wildcards {
            return None;
        }
        let encloser = wire::suffixes(name).skip(1).find(|&o| {
            let n = &name[o..];
            self.nodes.contains_key(n) || exists_elsewhere(n)
        })?;
        let rest = &name[encloser..];
        let mut buf = [0u8; wire::MAX_NAME + 2];
        buf[0] = 1;
        buf[1] = b'*';
        buf[2..2 + rest.len()].copy_from_slice(rest);
        self.nodes.get(&buf[..2 + rest.len()])
    }
}

/// The negative-answer SOA record in wire form, with every name compressed
/// against the apex: the owner is a pointer to the apex, and the SOA's MNAME and
/// RNAME are their labels below the apex followed by a pointer to it. A response
/// whose question name is at or below the apex has the apex at a known offset in
/// the question; [`NegativeSoa::write`] patches that offset into the pointers.
#[derive(Debug, Clone)]
pub struct NegativeSoa {
    bytes: Box<[u8]>,
    /// Offsets in `bytes` of the 2-byte pointers to the apex.
    pointers: Vec<usize>,
}

impl NegativeSoa {
    /// `None` when MNAME or RNAME is not at or below the apex (the general writer
    /// compresses those).
    fn new(apex: &[u8], soa: &Rrset) -> Option<Self> {
        let rd = soa.rdata.first()?;
        let mut bytes = vec![0xc0, 0];
        let mut pointers = vec![0];
        bytes.extend_from_slice(&soa.rtype.to_be_bytes());
        bytes.extend_from_slice(&1u16.to_be_bytes());
        bytes.extend_from_slice(&soa.ttl.to_be_bytes());
        let rdlen_at = bytes.len();
        bytes.extend_from_slice(&[0, 0]);
        let mut pos = 0;
        for _ in 0..2 {
            let name_len = wire::suffixes(rd.wire.get(pos..)?).last()? + 1;
            let name = &rd.wire[pos..pos + name_len];
            let lower: Vec<u8> = name.iter().map(u8::to_ascii_lowercase).collect();
            let at = wire::offset_in(&lower, apex)?;
            bytes.extend_from_slice(&name[..at]);
            pointers.push(bytes.len());
            bytes.extend_from_slice(&[0xc0, 0]);
            pos += name_len;
        }
        // SERIAL REFRESH RETRY EXPIRE MINIMUM.
        let rest = rd.wire.get(pos..)?;
        if rest.len() != 20 {
            return None;
        }
        bytes.extend_from_slice(rest);
        let rdlen = (bytes.len() - rdlen_at - 2) as u16;
        bytes[rdlen_at..rdlen_at + 2].copy_from_slice(&rdlen.to_be_bytes());
        Some(Self {
            bytes: bytes.into(),
            pointers,
        })
    }

    /// Appends the record to `buf`, its pointers aimed at `apex_at` (at most 0x3fff),
    /// its TTL lowered to `ttl_cap` when that is lower.
    #[inline]
    pub fn write(&self, buf: &mut Vec<u8>, apex_at: u16, ttl_cap: u32) {
        let start = buf.len();
        buf.extend_from_slice(&self.bytes);
        let ptr = (0xc000 | apex_at).to_be_bytes();
        for &p in &self.pointers {
            buf[start + p..start + p + 2].copy_from_slice(&ptr);
        }
        // Owner pointer (2), type (2), class (2), then the TTL.
        let ttl = &mut buf[start + 6..start + 10];
        let own = u32::from_be_bytes([ttl[0], ttl[1], ttl[2], ttl[3]]);
        if ttl_cap < own {
            ttl.copy_from_slice(&ttl_cap.to_be_bytes());
        }
    }
}

/// The records at one name.
#[derive(Debug, Default)]
pub struct Node {
    rrsets: Vec<Rrset>,
    /// NS records below the apex: a zone cut.
    delegation: bool,
}

impl Node {
    #[inline]
    pub fn rrset(&self, rtype: u16) -> Option<&Rrset> {
        self.rrsets.iter().find(|r| r.rtype == rtype)
    }

    pub fn rrsets(&self) -> &[Rrset] {
        &self.rrsets
    }

    /// True for an empty non-terminal (a name that only exists because of names below).
    pub fn is_empty(&self) -> bool {
        self.rrsets.is_empty()
    }

    pub fn is_delegation(&self) -> bool {
        self.delegation
    }
}

/// Records of one type at one name, encoded once at load time.
#[derive(Debug, Clone)]
pub struct Rrset {
    pub rtype: u16,
    pub ttl: u32,
    pub rdata: Vec<Rdata>,
    /// For NS: the in-zone address records of the name servers (glue).
    pub glue: Vec<Glue>,
}

/// Sentinel for an unused slot of [`Rdata::names`].
pub const NO_NAME: u16 = u16::MAX;

/// One record's data in uncompressed wire form.
#[derive(Debug, Clone)]
pub struct Rdata {
    pub wire: Box<[u8]>,
    /// Offsets in `wire` of names a response may compress (RFC 3597 §4: only the
    /// RFC 1035 types), [`NO_NAME`] when unused.
    pub names: [u16; 2],
    /// For CNAME and NS: the target in lowercase wire form.
    pub target: Option<Box<[u8]>>,
}

/// Address records of one name server name, for the additional section.
#[derive(Debug, Clone)]
pub struct Glue {
    /// Lowercase wire form.
    pub owner: Box<[u8]>,
    /// A, then AAAA.
    pub rrsets: Vec<Rrset>,
}

/// Entry points for the fuzz targets in `fuzz/` (not an API).
#[doc(hidden)]
pub mod fuzzing {
    use std::path::Path;

    /// Splits a master file into entries: `(line, token count)` of each, or the
    /// line of the error.
    pub fn lex(text: &str) -> Result<Vec<(usize, usize)>, usize> {
        super::lexer::entries(text)
            .map(|v| v.iter().map(|e| (e.line, e.tokens.len())).collect())
            .map_err(|e| e.line)
    }

    /// Loads `text` as the zone file `path` (its origin from `$ORIGIN` or the
    /// file name); the origin, or the error.
    pub fn load(path: &Path, text: &str) -> Result<String, super::ZoneError> {
        super::load::load_text(path, text).map(|(z, _)| z.origin)
    }
}

#[cfg(test)]
mod tests;
