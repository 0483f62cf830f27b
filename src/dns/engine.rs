//! The answer engine: one pure function from (snapshot, query bytes, client,
//! transport, rng) to response bytes. No I/O, no locks, no await; the only
//! allocation is growth of the caller's reused buffers.
//!
//! **Architecture Invariant:** whatever the bytes of a query, [`answer`] returns a
//! response or `None` (drop); an error becomes an rcode, never a panic.

use std::net::IpAddr;

use super::wire::{self, Ecs, Header, Owner, Question, Section, Writer};
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

/// What was answered, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Query type (0 when there was no readable question).
    pub qtype: u16,
    /// Response code, extended (BADVERS = 16).
    pub rcode: u16,
    /// Sent with TC=1.
    pub truncated: bool,
    /// A NameService answer that failed open (no eligible target, `allDown: AnswerAll`).
    pub failed_open: bool,
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

/// Answers `query` from `snap`, writing the response into `out`. `None`: drop the
/// query silently (shorter than a header, or not a query at all). `now_ms` is the
/// time in Unix milliseconds, read once per UDP batch or TCP query (slow start and
/// override expiry in the policies use it).
// The parameters are what one query needs, each from a different owner (the
// snapshot, the socket, the worker); a struct of them would be built per query.
#[allow(clippy::too_many_arguments)]
pub fn answer(
    snap: &Snapshot,
    query: &[u8],
    src: IpAddr,
    transport: Transport,
    now_ms: u64,
    rng: &mut fastrand::Rng,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> Option<Outcome> {
    let header = Header::read(query)?;
    if header.qr {
        return None;
    }
    let Scratch { addrs, question } = scratch;
    let parsed = wire::parse(query, header, question);
    let question = (parsed.question && header.qdcount == 1).then_some(&*question);
    let edns = parsed.edns;
    let limit = match (transport, &edns) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, Some(e)) => usize::from(e.payload.clamp(MIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD)),
        (Transport::Udp, None) => usize::from(MIN_UDP_PAYLOAD),
    };
    let mut w = Writer::new(out, query, &header, question);
    let mut ecs_out: Option<Ecs> = None;
    let mut failed_open = false;
    let rcode = match (question, &edns) {
        _ if header.opcode != 0 => rcode::NOTIMP,
        (None, _) => rcode::FORMERR,
        _ if parsed.malformed => rcode::FORMERR,
        (_, Some(e)) if e.version > 0 => rcode::BADVERS,
        (_, Some(e)) if e.bad_ecs => rcode::FORMERR,
        (Some(q), _) => {
            let ecs = edns.as_ref().and_then(|e| e.ecs);
            let client = match &ecs {
                Some(e) if e.source > 0 => ClientInfo {
                    addr: e.ip(),
                    ecs_source_prefix: Some(e.source),
                },
                _ => ClientInfo {
                    addr: src,
                    ecs_source_prefix: None,
                },
            };
            let mut ctx = Ctx {
                snap,
                client,
                now_ms,
                rng,
                addrs,
                scope: 0,
                failed_open: false,
            };
            let rcode = ctx.resolve(&mut w, q);
            failed_open = ctx.failed_open;
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
    let write_opt = |w: &mut Writer<'_>| {
        if let Some(e) = &edns {
            w.opt(MAX_UDP_PAYLOAD, rcode, e.dnssec_ok, ecs_out.as_ref());
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
    Some(Outcome {
        qtype: question.map_or(0, |q| q.qtype),
        rcode,
        truncated,
        failed_open,
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
    })
}

/// State of answering one query.
struct Ctx<'s, 'r> {
    snap: &'s Snapshot,
    client: ClientInfo,
    /// Unix milliseconds, once per query.
    now_ms: u64,
    rng: &'r mut fastrand::Rng,
    addrs: &'r mut Vec<IpAddr>,
    /// ECS scope decided by the policies (largest seen).
    scope: u8,
    /// Some policy answer failed open.
    failed_open: bool,
}

impl<'s> Ctx<'s, '_> {
    fn resolve(&mut self, w: &mut Writer<'_>, q: &Question) -> u16 {
        let qtype = q.qtype;
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
                    negative(w, zone);
                    return rcode::NOERROR;
                }
                None => match zone.wildcard(name, |n| self.exists_by_services(n)) {
                    Some(n) => n,
                    None => {
                        negative(w, zone);
                        return rcode::NXDOMAIN;
                    }
                },
            };
            if let Some(cname) = node.rrset(rtype::CNAME).filter(|_| qtype != rtype::CNAME) {
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
                    negative(w, zone);
                }
                for rs in node.rrsets() {
                    w.rrset(Section::Answer, owner, rs);
                }
                return rcode::NOERROR;
            }
            match node.rrset(qtype) {
                Some(rs) => {
                    w.rrset(Section::Answer, owner, rs);
                    glue(w, rs);
                }
                None => negative(w, zone),
            }
            return rcode::NOERROR;
        }
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
                any |= self.addresses(w, owner, svc, false);
                any |= self.addresses(w, owner, svc, true);
                for rs in zone.node(name).map(|n| n.rrsets()).unwrap_or_default() {
                    if rs.rtype != rtype::A && rs.rtype != rtype::AAAA {
                        w.rrset(Section::Answer, owner, rs);
                        any = true;
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
            negative(w, zone);
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
        for &a in self.addrs.iter() {
            w.address(Section::Answer, owner, a, svc.ttl);
        }
        !self.addrs.is_empty()
    }
}

/// The zone SOA in the authority section (NXDOMAIN and NODATA, RFC 2308). The
/// question name is at or below the zone apex (that is how the zone was found), so
/// the apex is its tail: the ready-made record points there.
#[inline]
fn negative(w: &mut Writer<'_>, zone: &Zone) {
    match (zone.negative_record(), w.question_name_len()) {
        (Some(rec), Some(qlen)) if qlen >= zone.apex().len() => {
            let at = wire::HEADER_LEN + qlen - zone.apex().len();
            w.negative_soa(Section::Authority, rec, at as u16);
        }
        _ => {
            w.rrset(
                Section::Authority,
                Owner::Name(zone.apex()),
                zone.negative_soa(),
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
