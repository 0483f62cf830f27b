//! The DNS wire format on the query path: reading a query (header, question, OPT
//! with ECS) and writing a response with name compression into a reused buffer.
//!
//! Zone data is parsed and encoded by hickory-proto once, at load time (`zone`);
//! per query this module only walks bytes. Reading never allocates; writing
//! appends to the caller's buffer, which keeps its capacity between queries.

use crate::zone::wire::MAX_NAME;
use crate::zone::{NO_NAME, NegativeSoa, Rdata, Rrset};

pub const HEADER_LEN: usize = 12;
/// EDNS option code of the Name Server Identifier (RFC 5001).
pub const OPT_NSID: u16 = 3;
/// EDNS option code of Client Subnet (RFC 7871).
pub const OPT_ECS: u16 = 8;
/// EDNS option code of DNS cookies (RFC 7873).
pub const OPT_COOKIE: u16 = 10;
pub const TYPE_OPT: u16 = 41;

/// The fixed header fields we use.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub id: u16,
    pub qr: bool,
    pub opcode: u8,
    pub rd: bool,
    pub cd: bool,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
}

impl Header {
    /// `None` when fewer than 12 bytes.
    #[inline]
    pub fn read(msg: &[u8]) -> Option<Self> {
        if msg.len() < HEADER_LEN {
            return None;
        }
        let u = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]);
        Some(Self {
            id: u(0),
            qr: msg[2] & 0x80 != 0,
            opcode: (msg[2] >> 3) & 0x0f,
            rd: msg[2] & 0x01 != 0,
            cd: msg[3] & 0x10 != 0,
            qdcount: u(4),
            ancount: u(6),
            nscount: u(8),
            arcount: u(10),
        })
    }
}

/// The question of a query. The name is kept both as sent (a byte range of the
/// query, echoed verbatim so that its letter case is preserved) and lowercased.
/// Large (the name buffer): kept in the caller's reused [`Scratch`](super::engine::Scratch)
/// and filled in place rather than moved around.
#[derive(Clone)]
pub struct Question {
    /// Byte range of the whole question (name, type, class) in the query.
    pub start: usize,
    pub end: usize,
    pub qtype: u16,
    pub qclass: u16,
    name: [u8; MAX_NAME],
    name_len: u8,
}

impl Default for Question {
    fn default() -> Self {
        Self {
            start: 0,
            end: 0,
            qtype: 0,
            qclass: 0,
            name: [0; MAX_NAME],
            name_len: 0,
        }
    }
}

impl Question {
    /// The query name in lowercase wire form.
    #[inline]
    pub fn name(&self) -> &[u8] {
        &self.name[..self.name_len as usize]
    }
}

/// A validated EDNS Client Subnet option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ecs {
    pub family: u16,
    pub source: u8,
    pub scope: u8,
    /// The address bytes as sent (`ceil(source / 8)` of them).
    pub addr: [u8; 16],
    pub addr_len: u8,
}

impl Ecs {
    /// The address as an `IpAddr` (missing trailing bytes are zero).
    pub fn ip(&self) -> std::net::IpAddr {
        if self.family == 1 {
            let mut b = [0u8; 4];
            b.copy_from_slice(&self.addr[..4]);
            std::net::IpAddr::from(b)
        } else {
            std::net::IpAddr::from(self.addr)
        }
    }

    /// Address length in bits of the family.
    pub fn max_bits(&self) -> u8 {
        if self.family == 1 { 32 } else { 128 }
    }
}

/// The COOKIE option of a query, as sent (RFC 7873 §4): a client cookie, and a
/// server cookie of 8 to 32 bytes when the client has learnt one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cookie {
    pub bytes: [u8; crate::dns::cookie::MAX_OPTION],
    pub len: u8,
}

impl Cookie {
    pub fn client(&self) -> &[u8; 8] {
        self.bytes[..8].try_into().expect("8 bytes")
    }

    /// The server cookie, empty when only a client cookie was sent.
    pub fn server(&self) -> &[u8] {
        &self.bytes[8..usize::from(self.len)]
    }
}

/// The OPT record of a query.
#[derive(Debug, Clone, Copy)]
pub struct Edns {
    pub payload: u16,
    pub version: u8,
    pub dnssec_ok: bool,
    pub ecs: Option<Ecs>,
    /// The ECS option is present but malformed (RFC 7871 §7.1.2: FORMERR).
    pub bad_ecs: bool,
    /// An NSID option asks for the server's identifier (RFC 5001).
    pub nsid: bool,
    pub cookie: Option<Cookie>,
    /// A COOKIE option of a length other than 8 or 16..=40, or two of them
    /// (RFC 7873 §5.2.2: FORMERR).
    pub bad_cookie: bool,
}

/// What could be read of a query (the question itself goes to the caller's
/// [`Question`]).
pub struct Parsed {
    pub header: Header,
    /// The first question could be read (into the caller's [`Question`]).
    pub question: bool,
    /// The OPT record, if one could be read.
    pub edns: Option<Edns>,
    /// Something in the message is malformed (FORMERR).
    pub malformed: bool,
}

/// Reads everything we need from a query of at least 12 bytes; the first question
/// goes into `q`. Never fails: what cannot be read is reported through `malformed`.
pub fn parse(msg: &[u8], header: Header, q: &mut Question) -> Parsed {
    let mut p = Parsed {
        header,
        question: false,
        edns: None,
        malformed: false,
    };
    let mut pos = HEADER_LEN;
    for i in 0..header.qdcount {
        let end = if i == 0 {
            read_question(msg, pos, q)
        } else {
            skip_question(msg, pos)
        };
        match end {
            Some(end) => {
                pos = end;
                p.question |= i == 0;
            }
            None => {
                p.malformed = true;
                return p;
            }
        }
    }
    let skipped = u32::from(header.ancount) + u32::from(header.nscount);
    for _ in 0..skipped {
        match skip_rr(msg, pos) {
            Some((end, _, _)) => pos = end,
            None => {
                p.malformed = true;
                return p;
            }
        }
    }
    for _ in 0..header.arcount {
        let Some((end, rtype, name_len)) = skip_rr(msg, pos) else {
            p.malformed = true;
            return p;
        };
        if rtype == TYPE_OPT {
            // One OPT, owned by the root (RFC 6891 §6.1.1).
            if p.edns.is_some() || name_len != 1 {
                p.malformed = true;
            }
            if p.edns.is_none() {
                match read_opt(&msg[pos + name_len..end]) {
                    Some(e) => p.edns = Some(e),
                    None => p.malformed = true,
                }
            }
        }
        pos = end;
    }
    if pos != msg.len() {
        p.malformed = true;
    }
    p
}

/// The end of an uncompressed name (a question name cannot point anywhere useful)
/// starting at `start`, if it is one of at most [`MAX_NAME`] bytes.
#[inline]
fn name_end(msg: &[u8], start: usize) -> Option<usize> {
    let mut pos = start;
    loop {
        let len = *msg.get(pos)? as usize;
        if len & 0xc0 != 0 {
            return None;
        }
        pos += 1 + len;
        if pos - start > MAX_NAME {
            return None;
        }
        if len == 0 {
            return (pos <= msg.len()).then_some(pos);
        }
    }
}

/// Reads the question at `start` into `q` (the name lowercased); returns its end.
#[inline]
fn read_question(msg: &[u8], start: usize, q: &mut Question) -> Option<usize> {
    let pos = name_end(msg, start)?;
    let tc = msg.get(pos..pos + 4)?;
    let n = pos - start;
    // Length bytes are at most 63, below 'A': lowercasing the whole name at once
    // only touches letters.
    q.name[..n].copy_from_slice(&msg[start..pos]);
    q.name[..n].make_ascii_lowercase();
    q.name_len = n as u8;
    q.start = start;
    q.qtype = u16::from_be_bytes([tc[0], tc[1]]);
    q.qclass = u16::from_be_bytes([tc[2], tc[3]]);
    q.end = pos + 4;
    Some(q.end)
}

/// Skips a question after the first (FORMERR follows anyway: QDCOUNT > 1).
fn skip_question(msg: &[u8], start: usize) -> Option<usize> {
    let pos = name_end(msg, start)?;
    msg.get(pos..pos + 4)?;
    Some(pos + 4)
}

/// Skips a possibly compressed name; returns the position after it.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    let mut total = 0usize;
    loop {
        let len = *msg.get(pos)? as usize;
        match len & 0xc0 {
            0x00 => {
                total += 1 + len;
                if total > MAX_NAME {
                    return None;
                }
                pos += 1 + len;
                if len == 0 {
                    return (pos <= msg.len()).then_some(pos);
                }
            }
            0xc0 => {
                msg.get(pos + 1)?;
                return Some(pos + 2);
            }
            _ => return None,
        }
    }
}

/// Skips one resource record; returns (end, type, owner name length in bytes).
fn skip_rr(msg: &[u8], pos: usize) -> Option<(usize, u16, usize)> {
    let after_name = skip_name(msg, pos)?;
    let fixed = msg.get(after_name..after_name + 10)?;
    let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    let rdlen = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
    let end = after_name + 10 + rdlen;
    if end > msg.len() {
        return None;
    }
    Some((end, rtype, after_name - pos))
}

/// Reads an OPT record from its type field on; `None` if its options are malformed.
fn read_opt(rr: &[u8]) -> Option<Edns> {
    // type(2) class=payload(2) ttl=ext_rcode(1) version(1) flags(2) rdlen(2) rdata
    let payload = u16::from_be_bytes([rr[2], rr[3]]);
    let version = rr[5];
    let dnssec_ok = rr[6] & 0x80 != 0;
    let mut opts = &rr[10..];
    let mut e = Edns {
        payload,
        version,
        dnssec_ok,
        ecs: None,
        bad_ecs: false,
        nsid: false,
        cookie: None,
        bad_cookie: false,
    };
    while !opts.is_empty() {
        if opts.len() < 4 {
            return None;
        }
        let code = u16::from_be_bytes([opts[0], opts[1]]);
        let len = u16::from_be_bytes([opts[2], opts[3]]) as usize;
        let data = opts.get(4..4 + len)?;
        match code {
            OPT_ECS => {
                if e.ecs.is_some() || e.bad_ecs {
                    // More than one ECS option (RFC 7871 §6).
                    e.ecs = None;
                    e.bad_ecs = true;
                } else {
                    match read_ecs(data) {
                        Some(ecs) => e.ecs = Some(ecs),
                        None => e.bad_ecs = true,
                    }
                }
            }
            OPT_COOKIE => {
                if e.cookie.is_some() || e.bad_cookie {
                    e.cookie = None;
                    e.bad_cookie = true;
                } else {
                    match read_cookie(data) {
                        Some(c) => e.cookie = Some(c),
                        None => e.bad_cookie = true,
                    }
                }
            }
            // RFC 5001 §2.1: a query's NSID option is empty; data in it is ignored.
            OPT_NSID => e.nsid = true,
            _ => {}
        }
        opts = &opts[4 + len..];
    }
    Some(e)
}

/// RFC 7873 §4: a client cookie of 8 bytes, alone or followed by a server cookie
/// of 8 to 32 bytes.
pub fn read_cookie(data: &[u8]) -> Option<Cookie> {
    if data.len() != 8 && !(16..=crate::dns::cookie::MAX_OPTION).contains(&data.len()) {
        return None;
    }
    let mut c = Cookie {
        bytes: [0; crate::dns::cookie::MAX_OPTION],
        len: data.len() as u8,
    };
    c.bytes[..data.len()].copy_from_slice(data);
    Some(c)
}

/// RFC 7871 §6: family 1 or 2, source prefix within the address, exactly
/// `ceil(source / 8)` address bytes, no bits set beyond the prefix.
pub fn read_ecs(data: &[u8]) -> Option<Ecs> {
    if data.len() < 4 {
        return None;
    }
    let family = u16::from_be_bytes([data[0], data[1]]);
    let source = data[2];
    let scope = data[3];
    let max = match family {
        1 => 32,
        2 => 128,
        _ => return None,
    };
    if source > max {
        return None;
    }
    let addr = &data[4..];
    let want = (source as usize).div_ceil(8);
    if addr.len() != want {
        return None;
    }
    if !source.is_multiple_of(8) {
        let mask = 0xffu8 >> (source % 8);
        if addr[want - 1] & mask != 0 {
            return None;
        }
    }
    let mut e = Ecs {
        family,
        source,
        scope,
        addr: [0; 16],
        addr_len: want as u8,
    };
    e.addr[..want].copy_from_slice(addr);
    Some(e)
}

// ---------------------------------------------------------------------------
// Writing

const CLASS_IN: u16 = 1;
const CLASS_CH: u16 = 3;

/// The EDNS options of a response (each written when present).
#[derive(Default, Clone, Copy)]
pub struct OptOut<'a> {
    pub nsid: Option<&'a [u8]>,
    pub ecs: Option<&'a Ecs>,
    /// The whole COOKIE option: client cookie and server cookie.
    pub cookie: Option<&'a [u8]>,
}

/// Where a record's owner name comes from.
#[derive(Clone, Copy)]
pub enum Owner<'a> {
    /// A name already in the message at this offset (e.g. 12, the question).
    At(u16),
    /// A lowercase wire-form name, compressed against what is written.
    Name(&'a [u8]),
}

const TABLE: usize = 64;
const MAX_POINTER: usize = 0x3fff;

/// A response being written into a caller-owned buffer.
pub struct Writer<'b> {
    pub buf: &'b mut Vec<u8>,
    /// Offsets of names (label starts) written uncompressed, for compression.
    table: [u16; TABLE],
    entries: usize,
    /// an, ns, ar counts.
    counts: [u16; 3],
    /// End of the question section.
    question_end: usize,
    /// Table entries that belong to the question.
    question_entries: usize,
    /// Length of the question name (at offset 12), when there is a question.
    question_name: Option<usize>,
}

/// Section of a record.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Answer = 0,
    Authority = 1,
    Additional = 2,
}

impl<'b> Writer<'b> {
    /// Starts a response: header (counts filled in by [`Writer::finish`]) and the
    /// question copied from the query as sent.
    pub fn new(buf: &'b mut Vec<u8>, query: &[u8], h: &Header, q: Option<&Question>) -> Self {
        buf.clear();
        let mut flags: u16 = 0x8000 | (u16::from(h.opcode) << 11);
        if h.rd {
            flags |= 0x0100;
        }
        // CD belongs to QUERY (RFC 6840 §5.9): echoed there, clear for other opcodes.
        if h.cd && h.opcode == 0 {
            flags |= 0x0010;
        }
        let [id0, id1] = h.id.to_be_bytes();
        let [f0, f1] = flags.to_be_bytes();
        buf.extend_from_slice(&[id0, id1, f0, f1, 0, u8::from(q.is_some()), 0, 0, 0, 0, 0, 0]);
        let mut w = Self {
            buf,
            table: [0; TABLE],
            entries: 0,
            counts: [0; 3],
            question_end: HEADER_LEN,
            question_entries: 0,
            question_name: q.map(|q| q.name().len()),
        };
        if let Some(q) = q {
            let start = w.buf.len();
            w.buf.extend_from_slice(&query[q.start..q.end]);
            w.register_labels(start, q.name());
            w.question_end = w.buf.len();
            w.question_entries = w.entries;
        }
        w
    }

    #[inline]
    pub fn set_aa(&mut self, aa: bool) {
        if aa {
            self.buf[2] |= 0x04;
        } else {
            self.buf[2] &= !0x04;
        }
    }

    /// Sets the low four bits of the response code.
    #[inline]
    pub fn set_rcode(&mut self, rcode: u16) {
        self.buf[3] = (self.buf[3] & 0xf0) | (rcode & 0x0f) as u8;
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Length of the question's name, which starts at offset 12.
    #[inline]
    pub fn question_name_len(&self) -> Option<usize> {
        self.question_name
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Records the label starts of a name just written at `start` (uncompressed).
    fn register_labels(&mut self, start: usize, name: &[u8]) {
        for o in crate::zone::wire::suffixes(name) {
            if name[o] == 0 || self.entries == TABLE || start + o > MAX_POINTER {
                break;
            }
            self.table[self.entries] = (start + o) as u16;
            self.entries += 1;
        }
    }

    /// True when the name at `at` in the message equals `name` (case-insensitive).
    fn name_at_eq(&self, mut at: usize, name: &[u8]) -> bool {
        let buf = &self.buf[..];
        let mut i = 0usize;
        let mut hops = 0;
        loop {
            let Some(&len) = buf.get(at) else {
                return false;
            };
            if len & 0xc0 == 0xc0 {
                hops += 1;
                if hops > 32 {
                    return false;
                }
                let Some(&lo) = buf.get(at + 1) else {
                    return false;
                };
                at = (usize::from(len & 0x3f) << 8) | usize::from(lo);
                continue;
            }
            let len = len as usize;
            if name.get(i) != Some(&(len as u8)) {
                return false;
            }
            if len == 0 {
                return true;
            }
            let (Some(a), Some(b)) = (buf.get(at + 1..at + 1 + len), name.get(i + 1..i + 1 + len))
            else {
                return false;
            };
            if !a.eq_ignore_ascii_case(b) {
                return false;
            }
            at += 1 + len;
            i += 1 + len;
        }
    }

    /// Writes `name` (wire form), compressed against names already written.
    /// Returns an offset where the name can be found (for pointers to it): where it
    /// was written, or the earlier copy when it was entirely compressed.
    pub fn name(&mut self, name: &[u8]) -> usize {
        let start = self.buf.len();
        for o in crate::zone::wire::suffixes(name) {
            if name[o] == 0 {
                break;
            }
            let hit = (0..self.entries)
                .map(|e| self.table[e])
                .find(|&t| self.name_at_eq(t as usize, &name[o..]));
            if let Some(t) = hit {
                if o == 0 {
                    // The whole name is already there: point at it.
                    self.buf.extend_from_slice(&(0xc000 | t).to_be_bytes());
                    return t as usize;
                }
                self.buf.extend_from_slice(&name[..o]);
                self.buf.extend_from_slice(&(0xc000 | t).to_be_bytes());
                self.register_labels(start, &name[..o]);
                return start;
            }
        }
        self.buf.extend_from_slice(name);
        self.register_labels(start, name);
        start
    }

    /// Writes an owner name; returns where it starts.
    #[inline]
    fn owner(&mut self, owner: Owner<'_>) -> usize {
        match owner {
            Owner::At(off) => {
                let start = self.buf.len();
                self.buf.extend_from_slice(&(0xc000 | off).to_be_bytes());
                start
            }
            Owner::Name(n) => self.name(n),
        }
    }

    /// Type, class IN, TTL and a placeholder RDLENGTH; returns the RDLENGTH position.
    #[inline]
    fn rr_fixed(&mut self, rtype: u16, ttl: u32) -> usize {
        self.rr_fixed_class(rtype, CLASS_IN, ttl)
    }

    #[inline]
    fn rr_fixed_class(&mut self, rtype: u16, class: u16, ttl: u32) -> usize {
        self.buf.extend_from_slice(&rtype.to_be_bytes());
        self.buf.extend_from_slice(&class.to_be_bytes());
        self.buf.extend_from_slice(&ttl.to_be_bytes());
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        at
    }

    #[inline]
    fn patch_rdlen(&mut self, at: usize) {
        let len = (self.buf.len() - at - 2).min(u16::MAX as usize) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_be_bytes());
    }

    /// One record with address data (A or AAAA).
    pub fn address(
        &mut self,
        section: Section,
        owner: Owner<'_>,
        addr: std::net::IpAddr,
        ttl: u32,
    ) {
        // Owner pointer, type, class IN, TTL, RDLENGTH and the address: one
        // fixed-size copy for the usual case, an owner pointer.
        let [t0, t1, t2, t3] = ttl.to_be_bytes();
        match (owner, addr) {
            (Owner::At(off), std::net::IpAddr::V4(a)) => {
                let [p0, p1] = (0xc000 | off).to_be_bytes();
                let [a0, a1, a2, a3] = a.octets();
                self.buf
                    .extend_from_slice(&[p0, p1, 0, 1, 0, 1, t0, t1, t2, t3, 0, 4, a0, a1, a2, a3]);
            }
            (owner, addr) => {
                self.owner(owner);
                let (rtype, data): (u16, &[u8]) = match &addr {
                    std::net::IpAddr::V4(a) => (crate::zone::rtype::A, &a.octets()[..]),
                    std::net::IpAddr::V6(a) => (crate::zone::rtype::AAAA, &a.octets()[..]),
                };
                let [r0, r1] = rtype.to_be_bytes();
                let [l0, l1] = (data.len() as u16).to_be_bytes();
                self.buf
                    .extend_from_slice(&[r0, r1, 0, 1, t0, t1, t2, t3, l0, l1]);
                self.buf.extend_from_slice(data);
            }
        }
        self.counts[section as usize] += 1;
    }

    /// One TXT record of class CH (CHAOS, for `id.server` and the like) holding
    /// `text` as one character-string (at most 255 bytes are written).
    pub fn chaos_txt(&mut self, section: Section, owner: Owner<'_>, text: &[u8]) {
        self.owner(owner);
        let at = self.rr_fixed_class(crate::zone::rtype::TXT, CLASS_CH, 0);
        let text = &text[..text.len().min(255)];
        self.buf.push(text.len() as u8);
        self.buf.extend_from_slice(text);
        self.patch_rdlen(at);
        self.counts[section as usize] += 1;
    }

    /// One record of a zone RRset. Returns the offset of the first name in its data
    /// (for following a CNAME), if it has one.
    pub fn record(
        &mut self,
        section: Section,
        owner: Owner<'_>,
        rrset: &Rrset,
        rd: &Rdata,
    ) -> Option<usize> {
        self.record_ttl(section, owner, rrset, rd, rrset.ttl)
    }

    fn record_ttl(
        &mut self,
        section: Section,
        owner: Owner<'_>,
        rrset: &Rrset,
        rd: &Rdata,
        ttl: u32,
    ) -> Option<usize> {
        self.owner(owner);
        let at = self.rr_fixed(rrset.rtype, ttl);
        let mut first = None;
        let mut copied = 0usize;
        for &n in &rd.names {
            if n == NO_NAME {
                break;
            }
            let n = n as usize;
            self.buf.extend_from_slice(&rd.wire[copied..n]);
            let name_len = crate::zone::wire::suffixes(&rd.wire[n..])
                .last()
                .map_or(0, |o| o + 1);
            let off = self.name(&rd.wire[n..n + name_len]);
            first.get_or_insert(off);
            copied = n + name_len;
        }
        self.buf.extend_from_slice(&rd.wire[copied..]);
        self.patch_rdlen(at);
        self.counts[section as usize] += 1;
        first
    }

    /// All records of an RRset under one owner (the first written, the rest pointing to it).
    /// Returns the offset of the first record's first data name.
    pub fn rrset(&mut self, section: Section, owner: Owner<'_>, rrset: &Rrset) -> Option<usize> {
        self.rrset_ttl(section, owner, rrset, rrset.ttl)
    }

    /// [`Writer::rrset`] with another TTL.
    pub fn rrset_ttl(
        &mut self,
        section: Section,
        owner: Owner<'_>,
        rrset: &Rrset,
        ttl: u32,
    ) -> Option<usize> {
        let mut owner = owner;
        let mut first = None;
        for rd in &rrset.rdata {
            let start = self.buf.len();
            let n = self.record_ttl(section, owner, rrset, rd, ttl);
            if first.is_none() {
                first = n;
            }
            if let Owner::Name(_) = owner {
                // Point at the name just written (or where it points itself).
                let b = &self.buf[start..];
                if b[0] & 0xc0 == 0xc0 {
                    owner = Owner::At(u16::from_be_bytes([b[0] & 0x3f, b[1]]));
                } else if start <= MAX_POINTER {
                    owner = Owner::At(start as u16);
                }
            }
        }
        first
    }

    /// The zone's ready-made negative SOA record (see [`NegativeSoa`]), its names
    /// pointing at the apex at `apex_at` in the question, its TTL lowered to
    /// `ttl_cap` if that is lower. Names written later do not compress against it
    /// (nothing is written after it but the OPT).
    #[inline]
    pub fn negative_soa(
        &mut self,
        section: Section,
        rec: &NegativeSoa,
        apex_at: u16,
        ttl_cap: u32,
    ) {
        rec.write(self.buf, apex_at, ttl_cap);
        self.counts[section as usize] += 1;
    }

    /// Drops every record: a TC=1 response keeps only the question (and OPT).
    pub fn truncate(&mut self) {
        self.buf.truncate(self.question_end);
        self.counts = [0; 3];
        self.entries = self.question_entries;
        self.buf[2] |= 0x02;
    }

    /// Appends the OPT record (RFC 6891) with our payload size, the extended rcode
    /// bits, DO as in the query, and the options of `opts`.
    pub fn opt(&mut self, payload: u16, rcode: u16, dnssec_ok: bool, opts: &OptOut<'_>) {
        let [t0, t1] = TYPE_OPT.to_be_bytes();
        let [p0, p1] = payload.to_be_bytes();
        let ext = (rcode >> 4) as u8;
        let flags = if dnssec_ok { 0x80 } else { 0 };
        // Root owner, type, payload, extended rcode, version 0, flags, RDLENGTH.
        self.buf
            .extend_from_slice(&[0, t0, t1, p0, p1, ext, 0, flags, 0, 0, 0]);
        let rdlen_at = self.buf.len() - 2;
        if let Some(n) = opts.nsid {
            self.buf.extend_from_slice(&OPT_NSID.to_be_bytes());
            self.buf.extend_from_slice(&(n.len() as u16).to_be_bytes());
            self.buf.extend_from_slice(n);
        }
        if let Some(e) = opts.ecs {
            let len = 4 + e.addr_len as u16;
            self.buf.extend_from_slice(&OPT_ECS.to_be_bytes());
            self.buf.extend_from_slice(&len.to_be_bytes());
            self.buf.extend_from_slice(&e.family.to_be_bytes());
            self.buf.push(e.source);
            self.buf.push(e.scope);
            self.buf.extend_from_slice(&e.addr[..e.addr_len as usize]);
        }
        if let Some(c) = opts.cookie {
            self.buf.extend_from_slice(&OPT_COOKIE.to_be_bytes());
            self.buf.extend_from_slice(&(c.len() as u16).to_be_bytes());
            self.buf.extend_from_slice(c);
        }
        self.patch_rdlen(rdlen_at);
        self.counts[Section::Additional as usize] += 1;
    }

    /// Writes the section counts into the header.
    pub fn finish(&mut self) {
        let [an, ns, ar] = self.counts;
        self.buf[6..8].copy_from_slice(&an.to_be_bytes());
        self.buf[8..10].copy_from_slice(&ns.to_be_bytes());
        self.buf[10..12].copy_from_slice(&ar.to_be_bytes());
    }

    /// Number of records written in a section.
    pub fn count(&self, section: Section) -> u16 {
        self.counts[section as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecs_validation() {
        // Valid: 192.0.2.0/24.
        let e = read_ecs(&[0, 1, 24, 0, 192, 0, 2]).unwrap();
        assert_eq!((e.family, e.source, e.addr_len), (1, 24, 3));
        assert_eq!(e.ip(), "192.0.2.0".parse::<std::net::IpAddr>().unwrap());
        // Prefix 0, no address bytes.
        assert_eq!(read_ecs(&[0, 2, 0, 0]).unwrap().addr_len, 0);
        // /20 with bits only in the prefix.
        assert!(read_ecs(&[0, 1, 20, 0, 10, 1, 0xf0]).is_some());
        for bad in [
            &[0, 3, 24, 0, 192, 0, 2][..], // family
            &[0, 1, 33, 0, 1, 2, 3, 4, 5], // prefix longer than v4
            &[0, 2, 129, 0],               // prefix longer than v6 (and length)
            &[0, 1, 24, 0, 192, 0, 2, 0],  // too many bytes
            &[0, 1, 24, 0, 192, 0],        // too few bytes
            &[0, 1, 20, 0, 10, 1, 0xf8],   // bits beyond the prefix
            &[0, 1, 24],                   // short
        ] {
            assert!(read_ecs(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn compression() {
        let mut buf = Vec::new();
        let q = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03WwW\x04gslb\x07example\x00\x00\x01\x00\x01";
        let h = Header::read(q).unwrap();
        let mut qq = Question::default();
        let p = parse(q, h, &mut qq);
        assert!(!p.malformed && p.question);
        assert_eq!(qq.name(), b"\x03www\x04gslb\x07example\x00");
        let mut w = Writer::new(&mut buf, q, &h, Some(&qq));
        // Exact match -> pointer to 12.
        let at = w.name(b"\x03www\x04gslb\x07example\x00");
        assert_eq!(at, 12);
        assert_eq!(&w.buf[w.buf.len() - 2..], &[0xc0, 12]);
        // Suffix match -> label + pointer to gslb.example (offset 16).
        let at = w.name(b"\x03ns1\x04gslb\x07example\x00");
        assert_eq!(&w.buf[at..], b"\x03ns1\xc0\x10");
        // The new name is itself a target now.
        let len = w.buf.len();
        let at2 = w.name(b"\x03NS1\x04gslb\x07example\x00");
        assert_eq!(at2, at);
        assert_eq!(&w.buf[len..], &(0xc000u16 | at as u16).to_be_bytes());
        // Unrelated name written in full.
        let at = w.name(b"\x01x\x00");
        assert_eq!(&w.buf[at..], b"\x01x\x00");
    }

    #[test]
    fn parse_flags_malformed() {
        let q = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01a\x00\x00\x01\x00\x01";
        let h = Header::read(q).unwrap();
        let qq = &mut Question::default();
        assert!(!parse(q, h, qq).malformed);
        let mut g = q.to_vec();
        g.push(0xff);
        assert!(parse(&g, h, qq).malformed, "trailing garbage");
        assert!(parse(&q[..q.len() - 1], h, qq).malformed, "short question");
        let p = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01";
        assert!(
            parse(p, Header::read(p).unwrap(), qq).malformed,
            "pointer in qname"
        );
        // Longest name: 255 bytes in wire form; one more is malformed.
        let label = |n: usize| [&[n as u8][..], &vec![b'A'; n]].concat();
        let mut name = [label(63), label(63), label(63), label(61)].concat();
        name.push(0);
        assert_eq!(name.len(), 255);
        let mk = |name: &[u8]| {
            let mut m = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00".to_vec();
            m.extend_from_slice(name);
            m.extend_from_slice(&[0, 1, 0, 1]);
            m
        };
        let m = mk(&name);
        let p = parse(&m, Header::read(&m).unwrap(), qq);
        assert!(!p.malformed && p.question);
        assert_eq!(qq.name().len(), 255);
        assert!(qq.name()[1..64].iter().all(|&b| b == b'a'), "lowercased");
        assert_eq!(&m[qq.start..qq.end - 4], &name[..], "as sent");
        let mut long = [label(63), label(63), label(63), label(62)].concat();
        long.push(0);
        let m = mk(&long);
        assert!(parse(&m, Header::read(&m).unwrap(), qq).malformed);
        // A second question is read past (QDCOUNT 2 is FORMERR, but the rest parses).
        let mut two = mk(b"\x01a\x00");
        two[5] = 2;
        two.extend_from_slice(b"\x01b\x00\x00\x01\x00\x01");
        let p = parse(&two, Header::read(&two).unwrap(), qq);
        assert!(!p.malformed && p.question);
        assert_eq!(qq.name(), b"\x01a\x00");
    }
}
