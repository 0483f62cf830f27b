//! Reading zone files: directives, defaults, record data (through hickory-proto),
//! the zone checks, and building the query-ready [`Zone`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use hickory_proto::serialize::txt::{Parser, parse_ttl};

use super::lexer::{self, Entry, Token};
use super::{Glue, NO_NAME, Node, Rdata, Rrset, Zone, ZoneError, ZoneSet, rtype, wire};

/// Deepest `$INCLUDE` nesting accepted.
const MAX_INCLUDE_DEPTH: usize = 8;

pub(super) fn load_dir(dir: &Path) -> Result<ZoneSet, ZoneError> {
    let err = |message: String| ZoneError {
        file: dir.display().to_string(),
        line: 0,
        message,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| err(format!("cannot read the zones directory: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "zone") && p.is_file())
        .collect();
    files.sort();
    let mut zones: Vec<Zone> = Vec::with_capacity(files.len());
    let mut seen: HashMap<Box<[u8]>, String> = HashMap::new();
    for path in &files {
        let (zone, origin_line) = load_file(path)?;
        let file = path.display().to_string();
        if let Some(first) = seen.get(&zone.apex) {
            return Err(ZoneError {
                file,
                line: origin_line,
                message: format!("zone {} is already loaded from {first}", zone.origin),
            });
        }
        seen.insert(zone.apex.clone(), file);
        zones.push(zone);
    }
    Ok(ZoneSet::from_zones(zones))
}

/// RFC 2181 §8: a TTL is at most 2^31 - 1; larger values (the top bit set) are
/// refused rather than served as 0 or mangled by resolvers.
pub(super) const MAX_TTL: u32 = i32::MAX as u32;

fn check_ttl(ttl: u32) -> Result<(), String> {
    if ttl > MAX_TTL {
        return Err(format!(
            "TTL {ttl} is above {MAX_TTL} (RFC 2181 section 8: TTLs are 31-bit)"
        ));
    }
    Ok(())
}

/// Every `*.zone` file of `dir`, each checked on its own: the zones that load, and
/// the first error of every file that does not (plus duplicate origins).
pub(super) fn check_dir(dir: &Path) -> (ZoneSet, Vec<ZoneError>) {
    let mut errors = Vec::new();
    let files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => {
            let mut v: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "zone") && p.is_file())
                .collect();
            v.sort();
            v
        }
        Err(e) => {
            errors.push(ZoneError {
                file: dir.display().to_string(),
                line: 0,
                message: format!("cannot read the zones directory: {e}"),
            });
            Vec::new()
        }
    };
    let mut zones: Vec<Zone> = Vec::with_capacity(files.len());
    let mut seen: HashMap<Box<[u8]>, String> = HashMap::new();
    for path in &files {
        match load_file(path) {
            Ok((zone, origin_line)) => {
                let file = path.display().to_string();
                if let Some(first) = seen.get(&zone.apex) {
                    errors.push(ZoneError {
                        file,
                        line: origin_line,
                        message: format!("zone {} is already loaded from {first}", zone.origin),
                    });
                    continue;
                }
                seen.insert(zone.apex.clone(), file);
                zones.push(zone);
            }
            Err(e) => errors.push(e),
        }
    }
    (ZoneSet::from_zones(zones), errors)
}

/// In-zone NS targets (names inside the zone) without an A or AAAA record in it:
/// resolvers cannot reach such a name server through this zone (no glue).
fn ns_without_glue(reader: &Reader, apex: &[u8]) -> Vec<ZoneError> {
    let with_address: std::collections::HashSet<&[u8]> = reader
        .records
        .iter()
        .filter(|p| matches!(p.rtype, RecordType::A | RecordType::AAAA))
        .map(|p| &*p.owner)
        .collect();
    let mut out = Vec::new();
    for p in &reader.records {
        if let RData::NS(n) = &p.rdata {
            let target = wire::from_name(&n.0);
            if wire::is_at_or_below(&target, apex) && !with_address.contains(&*target) {
                out.push(reader.error(
                    p.file,
                    p.line,
                    format!(
                        "NS {} of {} is inside the zone but has no A or AAAA record (no glue): resolvers cannot reach it through this zone",
                        wire::to_dotted(&target),
                        display_name(&p.owner)
                    ),
                ));
            }
        }
    }
    out
}

fn display_name(w: &[u8]) -> String {
    let d = wire::to_dotted(w);
    if d.is_empty() { ".".into() } else { d }
}

/// One record as read, before the zone is assembled.
struct Parsed {
    owner: Box<[u8]>,
    rtype: RecordType,
    ttl: u32,
    rdata: RData,
    file: usize,
    line: usize,
}

/// Reading state shared across a file and its includes.
struct Reader {
    files: Vec<String>,
    records: Vec<Parsed>,
    /// `$TTL` (RFC 2308).
    default_ttl: Option<u32>,
    /// Last explicit TTL (RFC 1035 §5.1).
    last_ttl: Option<u32>,
    /// The zone origin, decided by the first `$ORIGIN` before any record.
    zone_origin: Option<(Name, usize)>,
}

/// Where an entry is being read: for error messages and relative names.
struct Scope {
    file: usize,
    path: PathBuf,
    origin: Name,
    owner: Option<Name>,
    depth: usize,
}

impl Reader {
    fn error(&self, file: usize, line: usize, message: impl Into<String>) -> ZoneError {
        ZoneError {
            file: self.files[file].clone(),
            line,
            message: message.into(),
        }
    }

    fn read_file(&mut self, scope: &mut Scope, text: &str) -> Result<(), ZoneError> {
        let entries =
            lexer::entries(text).map_err(|e| self.error(scope.file, e.line, e.message))?;
        for entry in &entries {
            self.entry(scope, entry)?;
        }
        Ok(())
    }

    fn entry(&mut self, scope: &mut Scope, entry: &Entry) -> Result<(), ZoneError> {
        let line = entry.line;
        let first = &entry.tokens[0];
        if !entry.blank_owner && !first.quoted && first.text.starts_with('$') {
            return self.directive(scope, entry);
        }
        // An RR: [owner] [ttl] [class] type rdata (ttl and class in either order).
        let (owner, rest) = if entry.blank_owner {
            let owner = scope.owner.clone().ok_or_else(|| {
                self.error(
                    scope.file,
                    line,
                    "record without an owner name (no previous owner to repeat)",
                )
            })?;
            (owner, &entry.tokens[..])
        } else {
            let owner = self
                .name(&first.text, &scope.origin)
                .map_err(|m| self.error(scope.file, line, format!("bad owner name: {m}")))?;
            (owner, &entry.tokens[1..])
        };
        if self.zone_origin.is_none() {
            self.zone_origin = Some((scope.origin.clone(), 0));
        }
        scope.owner = Some(owner.clone());

        let mut ttl = None;
        let mut class = None;
        let mut idx = 0;
        let rtype = loop {
            let Some(tok) = rest.get(idx) else {
                return Err(self.error(scope.file, line, "record has no type"));
            };
            idx += 1;
            if tok.quoted {
                return Err(self.error(
                    scope.file,
                    line,
                    format!("expected a TTL, class or type, found {}", tok.text),
                ));
            }
            if let Ok(t) = parse_ttl(&tok.text) {
                if ttl.replace(t).is_some() {
                    return Err(self.error(scope.file, line, "two TTLs in one record"));
                }
                continue;
            }
            let upper = tok.text.to_ascii_uppercase();
            if let Ok(c) = DNSClass::from_str(&upper) {
                if class.replace(c).is_some() {
                    return Err(self.error(scope.file, line, "two classes in one record"));
                }
                continue;
            }
            match RecordType::from_str(&upper) {
                Ok(t) => break t,
                Err(_) => {
                    return Err(self.error(
                        scope.file,
                        line,
                        format!("unknown record type {}", tok.text),
                    ));
                }
            }
        };
        if let Some(c) = class.filter(|c| *c != DNSClass::IN) {
            return Err(self.error(
                scope.file,
                line,
                format!("class {c} is not supported (only IN)"),
            ));
        }
        let data = &rest[idx..];
        if data.is_empty() {
            return Err(self.error(scope.file, line, format!("{rtype} record has no data")));
        }
        // hickory ignores surplus fields; a stray one is usually a mistake.
        if let Some(n) = fixed_fields(rtype).filter(|&n| n != data.len()) {
            return Err(self.error(
                scope.file,
                line,
                format!("{rtype} record takes {n} field(s), found {}", data.len()),
            ));
        }
        let rdata = parse_rdata(rtype, data, &scope.origin)
            .map_err(|m| self.error(scope.file, line, format!("bad {rtype} record: {m}")))?;
        let ttl = match (ttl, self.default_ttl, self.last_ttl) {
            (Some(t), _, _) => {
                check_ttl(t).map_err(|m| self.error(scope.file, line, m))?;
                self.last_ttl = Some(t);
                t
            }
            (None, Some(t), _) | (None, None, Some(t)) => t,
            (None, None, None) => match &rdata {
                // BIND's choice for a zone without $TTL: the SOA MINIMUM.
                RData::SOA(soa) => {
                    self.last_ttl = Some(soa.minimum);
                    soa.minimum
                }
                _ => {
                    return Err(self.error(
                        scope.file,
                        line,
                        "record has no TTL and no $TTL or earlier TTL applies",
                    ));
                }
            },
        };
        self.records.push(Parsed {
            owner: wire::from_name(&owner),
            rtype,
            ttl,
            rdata,
            file: scope.file,
            line,
        });
        Ok(())
    }

    fn directive(&mut self, scope: &mut Scope, entry: &Entry) -> Result<(), ZoneError> {
        let line = entry.line;
        let args = &entry.tokens[1..];
        let name = entry.tokens[0].text.to_ascii_uppercase();
        let arity = |min: usize, max: usize| -> Result<(), ZoneError> {
            if args.len() < min || args.len() > max {
                Err(self.error(
                    scope.file,
                    line,
                    format!(
                        "{name} takes {min}..={max} argument(s), found {}",
                        args.len()
                    ),
                ))
            } else {
                Ok(())
            }
        };
        match name.as_str() {
            "$ORIGIN" => {
                arity(1, 1)?;
                // Before any record the file name is only a default: a relative
                // first $ORIGIN is taken from the root.
                let base = if self.zone_origin.is_none() {
                    Name::root()
                } else {
                    scope.origin.clone()
                };
                let origin = self
                    .name(&args[0].text, &base)
                    .map_err(|m| self.error(scope.file, line, format!("bad $ORIGIN: {m}")))?;
                if self.zone_origin.is_none() {
                    self.zone_origin = Some((origin.clone(), line));
                }
                scope.origin = origin;
            }
            "$TTL" => {
                arity(1, 1)?;
                let ttl = parse_ttl(&args[0].text).map_err(|e| {
                    self.error(scope.file, line, format!("bad $TTL {}: {e}", args[0].text))
                })?;
                check_ttl(ttl).map_err(|m| self.error(scope.file, line, m))?;
                self.default_ttl = Some(ttl);
            }
            "$INCLUDE" => {
                arity(1, 2)?;
                if scope.depth >= MAX_INCLUDE_DEPTH {
                    return Err(self.error(
                        scope.file,
                        line,
                        format!("$INCLUDE nested deeper than {MAX_INCLUDE_DEPTH}"),
                    ));
                }
                let rel = Path::new(&args[0].text);
                let path = if rel.is_absolute() {
                    rel.to_path_buf()
                } else {
                    scope.path.parent().unwrap_or(Path::new(".")).join(rel)
                };
                let origin = match args.get(1) {
                    Some(t) => self.name(&t.text, &scope.origin).map_err(|m| {
                        self.error(scope.file, line, format!("bad $INCLUDE origin: {m}"))
                    })?,
                    None => scope.origin.clone(),
                };
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    self.error(
                        scope.file,
                        line,
                        format!("cannot read $INCLUDE file {}: {e}", path.display()),
                    )
                })?;
                if self.zone_origin.is_none() {
                    self.zone_origin = Some((scope.origin.clone(), line));
                }
                self.files.push(path.display().to_string());
                let mut inner = Scope {
                    file: self.files.len() - 1,
                    path,
                    origin,
                    owner: scope.owner.clone(),
                    depth: scope.depth + 1,
                };
                // The included file's $ORIGIN and owner do not leak back (RFC 1035 §5.1).
                self.read_file(&mut inner, &text)?;
            }
            other => {
                return Err(self.error(scope.file, line, format!("unknown directive {other}")));
            }
        }
        Ok(())
    }

    /// A name relative to `origin` (`@` is the origin itself).
    fn name(&self, text: &str, origin: &Name) -> Result<Name, String> {
        if text == "@" {
            return Ok(origin.clone());
        }
        let mut n = Name::parse(text, Some(origin)).map_err(|e| format!("{text}: {e}"))?;
        n.set_fqdn(true);
        Ok(n)
    }
}

/// Number of fields of the record types whose data has a fixed shape.
fn fixed_fields(rtype: RecordType) -> Option<usize> {
    match rtype {
        RecordType::A | RecordType::AAAA | RecordType::CNAME | RecordType::NS | RecordType::PTR => {
            Some(1)
        }
        RecordType::MX => Some(2),
        RecordType::SRV => Some(4),
        RecordType::SOA => Some(7),
        _ => None,
    }
}

/// Parses one record's data with hickory, as a one-record zone whose owner is the
/// origin (so that relative names in the data resolve against it).
fn parse_rdata(rtype: RecordType, tokens: &[Token], origin: &Name) -> Result<RData, String> {
    let mut fqdn = origin.to_ascii();
    if !fqdn.ends_with('.') {
        fqdn.push('.');
    }
    let mut text = format!("@ 0 IN {rtype}");
    for t in tokens {
        text.push(' ');
        if !t.quoted && t.text == "@" {
            text.push_str(&fqdn);
        } else {
            text.push_str(&t.text);
        }
    }
    text.push('\n');
    let (_, rrsets) = Parser::new(text, None, Some(origin.clone()))
        .parse()
        .map_err(|e| e.to_string())?;
    rrsets
        .into_values()
        .next()
        .and_then(|rs| rs.records_without_rrsigs().next().map(|r| r.data.clone()))
        .ok_or_else(|| "no record data".to_string())
}

/// Reads one zone file and its includes and assembles the zone. Also returns the
/// line that decided the origin (for duplicate-zone errors).
fn load_file(path: &Path) -> Result<(Zone, usize), ZoneError> {
    let text = std::fs::read_to_string(path).map_err(|e| ZoneError {
        file: path.display().to_string(),
        line: 0,
        message: format!("cannot read: {e}"),
    })?;
    load_text(path, &text)
}

/// [`load_file`] for a file whose text is already read (includes are still read
/// from disk, relative to `path`).
pub(super) fn load_text(path: &Path, text: &str) -> Result<(Zone, usize), ZoneError> {
    let file = path.display().to_string();
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut file_origin = Name::parse(&stem, Some(&Name::root())).map_err(|e| ZoneError {
        file: file.clone(),
        line: 1,
        message: format!("file name {stem:?} is not a zone name ({e}) and there is no $ORIGIN"),
    })?;
    file_origin.set_fqdn(true);
    let mut reader = Reader {
        files: vec![file],
        records: Vec::new(),
        default_ttl: None,
        last_ttl: None,
        zone_origin: None,
    };
    let mut scope = Scope {
        file: 0,
        path: path.to_path_buf(),
        origin: file_origin.clone(),
        owner: None,
        depth: 0,
    };
    reader.read_file(&mut scope, text)?;
    let (origin, origin_line) = reader.zone_origin.take().unwrap_or((file_origin, 0));
    let zone = assemble(&reader, &origin)?;
    Ok((zone, origin_line.max(1)))
}

/// Encodes one record's data, noting where compressible names sit.
fn encode(rdata: &RData) -> Result<Rdata, String> {
    let mut buf = Vec::new();
    {
        let mut enc = BinEncoder::new(&mut buf);
        enc.set_name_encoding(NameEncoding::Uncompressed);
        rdata.emit(&mut enc).map_err(|e| e.to_string())?;
    }
    if buf.len() > u16::MAX as usize {
        return Err("record data longer than 65535 bytes".into());
    }
    let (names, target) = match rdata {
        RData::NS(n) => ([0, NO_NAME], Some(wire::from_name(&n.0))),
        RData::CNAME(n) => ([0, NO_NAME], Some(wire::from_name(&n.0))),
        RData::PTR(_) => ([0, NO_NAME], None),
        RData::MX(_) => ([2, NO_NAME], None),
        RData::SOA(soa) => ([0, wire::from_name(&soa.mname).len() as u16], None),
        _ => ([NO_NAME, NO_NAME], None),
    };
    Ok(Rdata {
        wire: buf.into(),
        names,
        target,
    })
}

/// The checks of a zone and its query-ready form.
fn assemble(reader: &Reader, origin: &Name) -> Result<Zone, ZoneError> {
    let apex = wire::from_name(origin);
    let origin_text = wire::to_dotted(&apex);
    let shown = if origin_text.is_empty() {
        ".".to_string()
    } else {
        origin_text.clone()
    };
    let at = |p: &Parsed, message: String| reader.error(p.file, p.line, message);

    // Group by owner, keeping file order; check placement and SOA/CNAME rules.
    let mut by_owner: HashMap<Box<[u8]>, Vec<&Parsed>> = HashMap::new();
    let mut soa: Option<&Parsed> = None;
    for p in &reader.records {
        if !wire::is_at_or_below(&p.owner, &apex) {
            return Err(at(
                p,
                format!("{} is outside the zone {shown}", wire::to_dotted(&p.owner)),
            ));
        }
        if p.rtype == RecordType::SOA {
            if *p.owner != *apex {
                return Err(at(
                    p,
                    format!("SOA record must be at the zone apex {shown}"),
                ));
            }
            if let Some(first) = soa {
                return Err(at(
                    p,
                    format!("second SOA record (the first is at line {})", first.line),
                ));
            }
            soa = Some(p);
        }
        let group = by_owner.entry(p.owner.clone()).or_default();
        if let Some(other) = group
            .iter()
            .find(|o| o.rtype == RecordType::CNAME || p.rtype == RecordType::CNAME)
        {
            let name = wire::to_dotted(&p.owner);
            return Err(at(
                p,
                if other.rtype == RecordType::CNAME && p.rtype == RecordType::CNAME {
                    format!(
                        "second CNAME at {name} (the first is at line {})",
                        other.line
                    )
                } else {
                    format!(
                        "CNAME and other data at {name}: {} here, {} at line {}",
                        p.rtype, other.rtype, other.line
                    )
                },
            ));
        }
        group.push(p);
    }
    let Some(soa) = soa else {
        let line = reader.records.first().map_or(1, |p| p.line);
        let file = reader.records.first().map_or(0, |p| p.file);
        return Err(reader.error(
            file,
            line,
            format!("zone {shown} has no SOA record at its apex"),
        ));
    };
    let apex_ns = by_owner
        .get(&apex)
        .is_some_and(|g| g.iter().any(|p| p.rtype == RecordType::NS));
    if !apex_ns {
        return Err(at(
            soa,
            format!("zone {shown} has no NS record at its apex"),
        ));
    }

    // Build nodes: RRsets in order of first appearance, duplicates dropped, the
    // TTL of an RRset is its first record's (RFC 2181 §5.2 wants them equal).
    let mut nodes: wire::NameMap<Box<[u8]>, Node> = wire::NameMap::default();
    let mut has_wildcards = false;
    let mut has_delegations = false;
    let mut rdatas_seen: HashMap<(Box<[u8]>, u16), Vec<RData>> = HashMap::new();
    for p in &reader.records {
        let code = u16::from(p.rtype);
        let seen = rdatas_seen.entry((p.owner.clone(), code)).or_default();
        if seen.contains(&p.rdata) {
            continue;
        }
        seen.push(p.rdata.clone());
        let rd = encode(&p.rdata).map_err(|m| at(p, format!("bad {} record: {m}", p.rtype)))?;
        let node = nodes.entry(p.owner.clone()).or_default();
        match node.rrsets.iter_mut().find(|r| r.rtype == code) {
            Some(rs) => rs.rdata.push(rd),
            None => node.rrsets.push(Rrset {
                rtype: code,
                ttl: p.ttl,
                rdata: vec![rd],
                glue: Vec::new(),
            }),
        }
        if code == rtype::NS && *p.owner != *apex {
            node.delegation = true;
            has_delegations = true;
        }
        if p.owner.starts_with(b"\x01*") {
            has_wildcards = true;
        }
    }
    // Empty non-terminals: every name between a node and the apex exists.
    let owners: Vec<Box<[u8]>> = nodes.keys().cloned().collect();
    for owner in owners {
        let apex_at = owner.len() - apex.len();
        for o in wire::suffixes(&owner).skip(1) {
            if o > apex_at {
                break;
            }
            nodes.entry(owner[o..].into()).or_default();
        }
    }
    // Glue for every NS RRset: the in-zone A/AAAA of each target.
    let mut glue_of: HashMap<Box<[u8]>, Vec<Glue>> = HashMap::new();
    for (owner, node) in &nodes {
        if let Some(ns) = node.rrset(rtype::NS) {
            let mut glue = Vec::new();
            for rd in &ns.rdata {
                let Some(target) = &rd.target else { continue };
                if !wire::is_at_or_below(target, &apex)
                    || glue.iter().any(|g: &Glue| g.owner == *target)
                {
                    continue;
                }
                if let Some(t) = nodes.get(target) {
                    let rrsets: Vec<Rrset> = [rtype::A, rtype::AAAA]
                        .iter()
                        .filter_map(|&ty| t.rrset(ty).cloned())
                        .collect();
                    if !rrsets.is_empty() {
                        glue.push(Glue {
                            owner: target.clone(),
                            rrsets,
                        });
                    }
                }
            }
            glue_of.insert(owner.clone(), glue);
        }
    }
    for (owner, glue) in glue_of {
        if let Some(ns) = nodes
            .get_mut(&owner)
            .and_then(|n| n.rrsets.iter_mut().find(|r| r.rtype == rtype::NS))
        {
            ns.glue = glue;
        }
    }
    let (minimum, serial) = match &soa.rdata {
        RData::SOA(s) => (s.minimum, s.serial),
        _ => (soa.ttl, 0),
    };
    let mut negative_soa = nodes
        .get(&apex)
        .and_then(|n| n.rrset(rtype::SOA))
        .cloned()
        .ok_or_else(|| at(soa, "SOA record lost".to_string()))?;
    negative_soa.ttl = negative_soa.ttl.min(minimum);
    let negative_record = super::NegativeSoa::new(&apex, &negative_soa);
    let warnings = ns_without_glue(reader, &apex);
    Ok(Zone {
        origin: origin_text,
        apex,
        nodes,
        negative_soa,
        negative_record,
        serial,
        warnings,
        has_delegations,
        has_wildcards,
    })
}
