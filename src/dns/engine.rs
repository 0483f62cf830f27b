//! The answer engine: one pure function from (snapshot, settings, query bytes,
//! client, transport, time, rng) to response bytes. No I/O, no locks, no await; the
//! only allocation is growth of the caller's reused buffers.
//!
//! **Architecture Invariant:** whatever the bytes of a query, [`answer`] returns a
//! response or `None` (drop); an error becomes an rcode, never a panic.

use std::net::IpAddr;

use super::cookie::{self, Secret};
use super::rrl::{self, Rrl};
use super::wire::{self, Ecs, Header, OptOut, Owner, Question, Section, Writer};
use crate::policy::{self, ClientInfo};
use crate::snapshot::{ServiceEntry, Snapshot};
use crate::zone::{Rrset, Zone, rtype, wire as name_wire};

/// Response codes (RFC 1035, RFC 6891).
pub mod rcode {
    pub const NOERROR: u16 = 0;
    pub const FORMERR: u16 = 1;
    pub const SERVFAIL: u16 = 2;
    pub const NXDOMAIN: u16 = 3;
    pub const NOTIMP: u16 = 4;
    pub const REFUSED: u16 = 5;
    pub const BADVERS: u16 = 16;
}

const QTYPE_ANY: u16 = 255;
const QTYPE_AXFR: u16 = 252;
const QTYPE_IXFR: u16 = 251;
const CLASS_IN: u16 = 1;
const CLASS_CH: u16 = 3;
const CLASS_ANY: u16 = 255;

/// Largest UDP response we send (the DNS flag day 2020 value).
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// UDP limit without EDNS (RFC 1035).
const MIN_UDP_PAYLOAD: u16 = 512;
/// Longest CNAME chain followed inside a zone.
const MAX_CHAIN: usize = 8;

/// How the query arrived: decides the response size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// One query as received.
#[derive(Debug, Clone, Copy)]
pub struct Request<'q> {
    pub bytes: &'q [u8],
    /// The source address of the datagram or connection.
    pub src: IpAddr,
    pub transport: Transport,
    /// Unix time in milliseconds, read once per UDP batch or TCP query (server
    /// cookies, rate limiting and policies that depend on time use it).
    pub now_ms: u64,
}

/// Per-process settings of the engine, fixed at start and shared by every worker.
#[derive(Debug)]
pub struct Settings {
    /// The name server identifier (RFC 5001), also answered to CHAOS TXT
    /// `id.server` and `hostname.bind`; `None`: no NSID, those are REFUSED.
    pub nsid: Option<Box<[u8]>>,
    /// The server cookie secret (RFC 7873, RFC 9018).
    pub cookie_secret: Secret,
    /// Response rate limiting of UDP answers; `None` when disabled.
    pub rrl: Option<Rrl>,
}

impl Default for Settings {
    /// No NSID, a random cookie secret, no rate limiting.
    fn default() -> Self {
        Self {
            nsid: None,
            cookie_secret: Secret::random(),
            rrl: None,
        }
    }
}

/// What was answered, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Query type (0 when there was no readable question).
    pub qtype: u16,
    /// Response code, extended (BADVERS = 16).
    pub rcode: u16,
    /// Sent with TC=1 because it did not fit (not counting rate-limit slips).
    pub truncated: bool,
    /// A NameService answer that failed open (no eligible target, `allDown: AnswerAll`).
    pub failed_open: bool,
    /// Rate limiting: `Slip` was sent truncated instead, `Drop` must not be sent.
    pub rrl: rrl::Verdict,
}

/// Per-worker buffers reused across queries.
#[derive(Default)]
pub struct Scratch {
    addrs: Vec<IpAddr>,
    question: Question,
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            addrs: Vec::with_capacity(64),
            question: Question::default(),
        }
    }
}

/// Answers `req` from `snap`, writing the response into `out`. `None`: drop the
/// query silently (shorter than a header, or not a query at all). An outcome whose
/// `rrl` is `Drop` has a response in `out` that must not be sent.
pub fn answer(
    snap: &Snapshot,
    settings: &Settings,
    req: &Request<'_>,
    rng: &mut fastrand::Rng,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> Option<Outcome> {
    let query = req.bytes;
    let header = Header::read(query)?;
    if header.qr {
        return None;
    }
    let Scratch { addrs, question } = scratch;
    let parsed = wire::parse(query, header, question);
    let question = (parsed.question && header.qdcount == 1).then_some(&*question);
    let edns = parsed.edns;
    let limit = match (req.transport, &edns) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, Some(e)) => usize::from(e.payload.clamp(MIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD)),
        (Transport::Udp, None) => usize::from(MIN_UDP_PAYLOAD),
    };
    let now_s = req.now_ms / 1000;
    // Server cookie (RFC 7873 §5.2): the response carries the client cookie and a
    // server cookie, ours if the query's is valid and fresh, else a new one.
    let mut cookie_out = [0u8; cookie::CLIENT_LEN + cookie::SERVER_LEN];
    let mut cookie_valid = false;
    let cookie_in = edns
        .as_ref()
        .and_then(|e| e.cookie.filter(|_| !e.bad_cookie));
    if let Some(c) = &cookie_in {
        let client = c.client();
        cookie_out[..8].copy_from_slice(client);
        let now = now_s as u32;
        let verdict = if c.server().is_empty() {
            cookie::Verdict::Invalid
        } else {
            settings
                .cookie_secret
                .check(client, c.server(), req.src, now)
        };
        cookie_valid = verdict != cookie::Verdict::Invalid;
        if verdict == cookie::Verdict::Valid {
            cookie_out[8..].copy_from_slice(c.server());
        } else {
            cookie_out[8..].copy_from_slice(&settings.cookie_secret.make(client, req.src, now));
        }
    }
    let mut w = Writer::new(out, query, &header, question);
    let mut ecs_out: Option<Ecs> = None;
    let mut failed_open = false;
    let mut zone_apex: &[u8] = &[];
    let rcode = match (question, &edns) {
        _ if header.opcode != 0 => rcode::NOTIMP,
        (None, _) => rcode::FORMERR,
        _ if parsed.malformed => rcode::FORMERR,
        (_, Some(e)) if e.version > 0 => rcode::BADVERS,
        (_, Some(e)) if e.bad_ecs || e.bad_cookie => rcode::FORMERR,
        (Some(q), _) => {
            let ecs = edns.as_ref().and_then(|e| e.ecs);
            let client = match &ecs {
                Some(e) if e.source > 0 => ClientInfo {
                    addr: e.ip(),
                    ecs_source_prefix: Some(e.source),
                },
                _ => ClientInfo {
                    addr: req.src,
                    ecs_source_prefix: None,
                },
            };
            let mut ctx = Ctx {
                snap,
                settings,
                client,
                now_ms: req.now_ms,
                rng,
                addrs,
                scope: 0,
                failed_open: false,
                policy_ttl: u32::MAX,
                minimal_any: req.transport == Transport::Udp,
                zone_apex: &[],
            };
            let rcode = ctx.resolve(&mut w, q);
            failed_open = ctx.failed_open;
            zone_apex = ctx.zone_apex;
            ecs_out = ecs.map(|mut e| {
                e.scope = if e.source == 0 {
                    0
                } else {
                    ctx.scope.min(e.max_bits())
                };
                e
            });
            rcode
        }
    };
    w.set_rcode(rcode);
    let nsid = settings
        .nsid
        .as_deref()
        .filter(|_| edns.as_ref().is_some_and(|e| e.nsid));
    let opts = OptOut {
        nsid,
        ecs: ecs_out.as_ref(),
        // A malformed COOKIE option gets FORMERR and no cookie.
        cookie: cookie_in.map(|_| &cookie_out[..]),
    };
    let write_opt = |w: &mut Writer<'_>| {
        if let Some(e) = &edns {
            w.opt(MAX_UDP_PAYLOAD, rcode, e.dnssec_ok, &opts);
        }
    };
    write_opt(&mut w);
    w.finish();
    let mut truncated = false;
    if w.len() > limit {
        w.truncate();
        write_opt(&mut w);
        w.finish();
        truncated = true;
    }
    // Rate limiting: UDP only, and never a source that proved its address with a
    // valid server cookie.
    let mut verdict = rrl::Verdict::Pass;
    if let (Some(rrl), Transport::Udp, false) = (&settings.rrl, req.transport, cookie_valid) {
        let (class, name, qtype) = match (rcode, question) {
            (rcode::NOERROR, Some(q)) => (rrl::Class::Response, q.name(), q.qtype),
            (rcode::NXDOMAIN, _) => (rrl::Class::NxDomain, zone_apex, 0),
            _ => (rrl::Class::Error, zone_apex, 0),
        };
        verdict = rrl.check(req.src, class, name, qtype, now_s);
        if verdict == rrl::Verdict::Slip && !truncated {
            w.truncate();
            write_opt(&mut w);
            w.finish();
        }
    }
    Some(Outcome {
        qtype: question.map_or(0, |q| q.qtype),
        rcode,
        truncated,
        failed_open,
        rrl: verdict,
    })
}

/// Answers a datagram that was longer than the receive buffer, of which `head` is
/// the beginning: FORMERR without a question (nothing after the header can be
/// trusted), or `None` (drop) as [`answer`] would for a short or response message.
pub fn answer_cut(head: &[u8], out: &mut Vec<u8>) -> Option<Outcome> {
    let header = Header::read(head)?;
    if header.qr {
        return None;
    }
    let mut w = Writer::new(out, head, &header, None);
    w.set_rcode(rcode::FORMERR);
    w.finish();
    Some(Outcome {
        qtype: 0,
        rcode: rcode::FORMERR,
        truncated: false,
        failed_open: false,
        rrl: rrl::Verdict::Pass,
    })
}

/// State of answering one query.
struct Ctx<'s, 'r> {
    snap: &'s Snapshot,
    settings: &'s Settings,
    client: ClientInfo,
    /// Unix milliseconds, once per query.
    now_ms: u64,
    rng: &'r mut fastrand::Rng,
    addrs: &'r mut Vec<IpAddr>,
    /// ECS scope decided by the policies (largest seen).
    scope: u8,
    /// Some policy answer failed open.
    failed_open: bool,
    /// The smallest TTL the policies gave (`degradedTtl` when health changed an
    /// answer): the cap of a NODATA SOA's TTL at a NameService.
    policy_ttl: u32,
    /// ANY gets one RRset (RFC 8482): over UDP, where it could amplify.
    minimal_any: bool,
    /// The apex of the zone the question fell in (lowercase wire form), empty when
    /// none: the rate limiter's key for NXDOMAIN and errors.
    zone_apex: &'s [u8],
}

/// CHAOS names answered with the NSID (as Knot and NSD do); `version.bind` and
/// everything else in class CH is REFUSED.
const CHAOS_ID_NAMES: [&[u8]; 2] = [b"\x02id\x06server\x00", b"\x08hostname\x04bind\x00"];

impl<'s> Ctx<'s, '_> {
    fn resolve(&mut self, w: &mut Writer<'_>, q: &Question) -> u16 {
        let qtype = q.qtype;
        if q.qclass == CLASS_CH {
            return self.chaos(w, q);
        }
        if q.qclass != CLASS_IN && q.qclass != CLASS_ANY {
            return rcode::REFUSED;
        }
        if qtype == QTYPE_AXFR || qtype == QTYPE_IXFR {
            return rcode::REFUSED;
        }
        if qtype == wire::TYPE_OPT {
            return rcode::FORMERR;
        }
        let snap = self.snap;
        let Some(zone) = snap.zones.find(q.name()) else {
            return rcode::REFUSED;
        };
        self.zone_apex = zone.apex();
        w.set_aa(true);

        // Names already answered in this chain (CNAME loop guard).
        let mut chain: [&[u8]; MAX_CHAIN + 1] = [&[]; MAX_CHAIN + 1];
        let mut name: &[u8] = q.name();
        let mut owner = Owner::At(wire::HEADER_LEN as u16);
        for depth in 0..=MAX_CHAIN {
            chain[depth] = name;
            if let Some(cut) = zone.delegation(name) {
                // DS lives on the parent side of a cut (we have none: NODATA below).
                if !(cut == 0 && qtype == rtype::DS) {
                    if depth == 0 {
                        w.set_aa(false);
                        let cut_name = &name[cut..];
                        if let Some(ns) = zone.node(cut_name).and_then(|n| n.rrset(rtype::NS)) {
                            w.rrset(Section::Authority, Owner::Name(cut_name), ns);
                            glue(w, ns);
                        }
                    }
                    // A chain into a delegated subzone ends here; the resolver follows it.
                    return rcode::NOERROR;
                }
            }
            if let Some(svc) = self.service(name) {
                self.service_answer(w, zone, name, owner, svc, qtype);
                return rcode::NOERROR;
            }
            let node = match zone.node(name) {
                Some(n) => n,
                // No registry loaded yet (etcd backend, no local copy): the name may be
                // a NameService this instance does not know; SERVFAIL sends resolvers
                // to another name server and is not cached as a negative answer.
                None if snap.unloaded => return rcode::SERVFAIL,
                // A name with NameServices below it exists (an empty non-terminal).
                None if self.has_services_below(name) => {
                    negative(w, zone, u32::MAX);
                    return rcode::NOERROR;
                }
                None => match zone.wildcard(name, |n| self.exists_by_services(n)) {
                    Some(n) => n,
                    None => {
                        negative(w, zone, u32::MAX);
                        return rcode::NXDOMAIN;
                    }
                },
            };
            // ANY matches the CNAME itself (RFC 1034 §4.3.2 step 3a): not followed.
            let follow = qtype != rtype::CNAME && qtype != QTYPE_ANY;
            if let Some(cname) = node.rrset(rtype::CNAME).filter(|_| follow) {
                let at = w.rrset(Section::Answer, owner, cname);
                let Some(target) = cname.rdata.first().and_then(|r| r.target.as_deref()) else {
                    return rcode::NOERROR;
                };
                if depth == MAX_CHAIN
                    || !name_wire::is_at_or_below(target, zone.apex())
                    || chain[..=depth].contains(&target)
                {
                    return rcode::NOERROR;
                }
                owner = match at {
                    Some(at) if at <= 0x3fff => Owner::At(at as u16),
                    _ => Owner::Name(target),
                };
                name = target;
                continue;
            }
            if qtype == QTYPE_ANY {
                if node.is_empty() {
                    negative(w, zone, u32::MAX);
                }
                if self.minimal_any {
                    // Over UDP one RRset (RFC 8482 §4.1): the lowest type number.
                    if let Some(rs) = node.rrsets().iter().min_by_key(|r| r.rtype) {
                        w.rrset(Section::Answer, owner, rs);
                    }
                } else {
                    for rs in node.rrsets() {
                        w.rrset(Section::Answer, owner, rs);
                    }
                }
                return rcode::NOERROR;
            }
            match node.rrset(qtype) {
                Some(rs) => {
                    w.rrset(Section::Answer, owner, rs);
                    glue(w, rs);
                }
                None => negative(w, zone, u32::MAX),
            }
            return rcode::NOERROR;
        }
        rcode::NOERROR
    }

    /// Class CH: `id.server` and `hostname.bind` TXT answer the NSID when one is
    /// configured; everything else (`version.bind`, `authors.bind`...) is REFUSED.
    fn chaos(&mut self, w: &mut Writer<'_>, q: &Question) -> u16 {
        let Some(nsid) = self.settings.nsid.as_deref() else {
            return rcode::REFUSED;
        };
        if !(q.qtype == rtype::TXT || q.qtype == QTYPE_ANY) || !CHAOS_ID_NAMES.contains(&q.name()) {
            return rcode::REFUSED;
        }
        w.set_aa(true);
        w.chaos_txt(Section::Answer, Owner::At(wire::HEADER_LEN as u16), nsid);
        rcode::NOERROR
    }

    /// The NameService at `name` (lowercase wire form), if any.
    #[inline]
    fn service(&self, name: &[u8]) -> Option<&'s std::sync::Arc<ServiceEntry>> {
        self.snap.services.get_wire(name)
    }

    /// True when NameServices lie below `name` (lowercase wire form).
    #[inline]
    fn has_services_below(&self, name: &[u8]) -> bool {
        self.snap.services.has_descendants(name)
    }

    /// True when `name` exists in the DNS tree because of NameServices: one is at
    /// `name` or below it (for the RFC 4592 closest encloser).
    fn exists_by_services(&self, name: &[u8]) -> bool {
        self.service(name).is_some() || self.has_services_below(name)
    }

    /// Answers at a NameService name: A/AAAA from the policy, other types from the
    /// zone's static records at that name, else NODATA.
    fn service_answer(
        &mut self,
        w: &mut Writer<'_>,
        zone: &Zone,
        name: &[u8],
        owner: Owner<'_>,
        svc: &ServiceEntry,
        qtype: u16,
    ) {
        let mut any = false;
        match qtype {
            rtype::A | rtype::AAAA => {
                any |= self.addresses(w, owner, svc, qtype == rtype::AAAA);
            }
            QTYPE_ANY => {
                // Over UDP one RRset (RFC 8482): the policy's A, else its AAAA, else
                // the static RRset of the lowest type number.
                let one = self.minimal_any;
                any |= self.addresses(w, owner, svc, false);
                if !(any && one) {
                    any |= self.addresses(w, owner, svc, true);
                }
                if !(any && one) {
                    let statics = zone
                        .node(name)
                        .map(|n| n.rrsets())
                        .unwrap_or_default()
                        .iter()
                        .filter(|rs| rs.rtype != rtype::A && rs.rtype != rtype::AAAA);
                    if one {
                        if let Some(rs) = statics.min_by_key(|r| r.rtype) {
                            w.rrset(Section::Answer, owner, rs);
                            any = true;
                        }
                    } else {
                        for rs in statics {
                            w.rrset(Section::Answer, owner, rs);
                            any = true;
                        }
                    }
                }
            }
            _ => {
                if let Some(rs) = zone.node(name).and_then(|n| n.rrset(qtype)) {
                    w.rrset(Section::Answer, owner, rs);
                    glue(w, rs);
                    any = true;
                }
            }
        }
        if !any {
            // CONTRACT §5: a resolver keeps this NODATA no longer than it would
            // keep an answer (an all-down service answers again within its TTL, and
            // within its degradedTtl when health made it NODATA).
            negative(w, zone, svc.ttl.min(self.policy_ttl));
        }
    }

    /// Writes the policy's choice of one family; false when it chose nothing.
    fn addresses(
        &mut self,
        w: &mut Writer<'_>,
        owner: Owner<'_>,
        svc: &ServiceEntry,
        v6: bool,
    ) -> bool {
        let sel = policy::select(
            svc,
            v6,
            &self.client,
            &self.snap.topology,
            self.now_ms,
            self.rng,
            self.addrs,
        );
        self.scope = self.scope.max(sel.ecs_scope);
        self.failed_open |= sel.failed_open;
        self.policy_ttl = self.policy_ttl.min(sel.ttl);
        for &a in self.addrs.iter() {
            w.address(Section::Answer, owner, a, sel.ttl);
        }
        !self.addrs.is_empty()
    }
}

/// The zone SOA in the authority section (NXDOMAIN and NODATA, RFC 2308), its TTL
/// at most `ttl_cap`. The question name is at or below the zone apex (that is how
/// the zone was found), so the apex is its tail: the ready-made record points there.
#[inline]
fn negative(w: &mut Writer<'_>, zone: &Zone, ttl_cap: u32) {
    match (zone.negative_record(), w.question_name_len()) {
        (Some(rec), Some(qlen)) if qlen >= zone.apex().len() => {
            let at = wire::HEADER_LEN + qlen - zone.apex().len();
            w.negative_soa(Section::Authority, rec, at as u16, ttl_cap);
        }
        _ => {
            let soa = zone.negative_soa();
            w.rrset_ttl(
                Section::Authority,
                Owner::Name(zone.apex()),
                soa,
                soa.ttl.min(ttl_cap),
            );
        }
    }
}

/// Address records of in-zone name servers of an NS RRset.
#[inline]
fn glue(w: &mut Writer<'_>, rs: &Rrset) {
    for g in &rs.glue {
        for a in &g.rrsets {
            w.rrset(Section::Additional, Owner::Name(&g.owner), a);
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod profile;

#[cfg(test)]
mod differential;
