//! The compact binary form of a stored NameService (the body of format versions 2
//! and 3).
//!
//! JSON (version 1) spells every field name and default in every value: ~600 bytes
//! for a three-target service, which at 100,000 names makes startup read and parse
//! 60 MB and leaves as much in sled's page cache. This form is ~130 bytes and
//! decodes without a parser. Version 1 values are still read.
//!
//! **Adding a field** needs no new format version: version 3 bodies end with an
//! extension section of tagged fields, `ext:var × { tag:var len:var bytes }`. A new
//! field gets the next tag (see [`ext`]), is written only when it differs from its
//! default (so old values and small values stay as they are) and is read back in
//! `Reader::extension`. A value carrying a tag this gslb does not know is refused
//! with the tag named (it was written by a newer gslb: serving it without the field
//! would answer differently from the instance that wrote it). Version 2 bodies have
//! no extension section.
//!
//! Layout (integers little-endian; `var` is LEB128; a string is `var` length + UTF-8):
//!
//! ```text
//! name:str ttl:var policy:u8 all_down:u8
//! health_check: 0 | 1 port:u16 period:var timeout:var failure:var success:var
//! targets:var × { name:str address:ip locality:(0 | 1 str) ratio:var
//!                 port:(0 | 1 u16) probe_address:ip enabled:u8 }
//! failover:var × { from:str to:str }
//! distribute:var × { from:str to:var × { pattern:str weight:var } }
//! ip = 4 a.b.c.d | 6 sixteen bytes
//! (version 3 only) ext:var × { tag:var len:var bytes }
//! ```
//!
//! The encoder destructures every struct, so a field added to the model does not
//! compile until it is stored here too.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::model::{
    AllDown, DEFAULT_MIN_ELIGIBLE_TARGETS, DistributeRule, FailoverRule, HealthCheck, HttpGet,
    HttpHeader, NameService, Policy, Probe, Scheme, Stickiness, Target, TcpSocket,
};

/// Tags of the extension section. Append new ones; never reuse a number.
pub(super) mod ext {
    /// `panicThresholdPercent`: one `var`.
    pub const PANIC_THRESHOLD_PERCENT: u32 = 1;
    /// `slowStartSeconds`: one `var`.
    pub const SLOW_START_SECONDS: u32 = 2;
    /// `degradedTtl`: one `var` (its default is `ttl`).
    pub const DEGRADED_TTL: u32 = 3;
    /// `stickiness`: one `var`, 1 = ClientSubnet.
    pub const STICKINESS: u32 = 4;
    /// `minEligibleTargets`: one `var`.
    pub const MIN_ELIGIBLE_TARGETS: u32 = 5;
    /// `targets[].fqdn`: `count:var × { index:var fqdn:str }`, the targets named by
    /// a DNS name. In the core layout their `address` and `probe_address` are
    /// `0.0.0.0`, an address no target may have.
    pub const TARGET_FQDNS: u32 = 6;
    /// `healthCheck.tcpSocket` / `healthCheck.httpGet` (written when the probe is not
    /// spelled `port`): kind:u8 (1 tcpSocket, 2 httpGet), then for httpGet
    /// path:str scheme:u8 (0 HTTP, 1 HTTPS) host:(0 | 1 str)
    /// headers:var × { name:str value:str }. The port is the core's.
    pub const HC_PROBE: u32 = 16;
    /// `healthCheck.initialDelaySeconds` (written when not 0): one `var`.
    pub const HC_INITIAL_DELAY: u32 = 17;
    /// `healthCheck.flapDamping` (written when true): one `var`, 1.
    pub const HC_FLAP_DAMPING: u32 = 18;
}

/// Writes the body of a version 3 value.
pub(super) fn encode(ns: &NameService, out: &mut Vec<u8>) {
    encode_core(ns, out);
    let NameService {
        ttl,
        panic_threshold_percent,
        slow_start_seconds,
        degraded_ttl,
        stickiness,
        min_eligible_targets,
        ..
    } = ns;
    let stickiness = match stickiness {
        Stickiness::Off => 0,
        Stickiness::ClientSubnet => 1,
    };
    // (tag, value, default): written only when it differs from the default.
    let numbers = [
        (ext::PANIC_THRESHOLD_PERCENT, *panic_threshold_percent, 0),
        (ext::SLOW_START_SECONDS, *slow_start_seconds, 0),
        (ext::DEGRADED_TTL, *degraded_ttl, *ttl),
        (ext::STICKINESS, stickiness, 0),
        (
            ext::MIN_ELIGIBLE_TARGETS,
            *min_eligible_targets,
            DEFAULT_MIN_ELIGIBLE_TARGETS,
        ),
    ];
    let mut fields: Vec<(u32, Vec<u8>)> = numbers
        .into_iter()
        .filter(|(_, v, d)| v != d)
        .map(|(tag, v, _)| {
            let mut value = Vec::with_capacity(5);
            put_var(&mut value, v);
            (tag, value)
        })
        .collect();
    if let Some(hc) = &ns.health_check {
        health_check_fields(hc, &mut fields);
    }
    let fqdns: Vec<(usize, &str)> = ns
        .targets
        .iter()
        .enumerate()
        .filter_map(|(i, t)| Some((i, t.fqdn.as_deref()?)))
        .collect();
    if !fqdns.is_empty() {
        let mut value = Vec::new();
        put_len(&mut value, fqdns.len());
        for (i, fqdn) in fqdns {
            put_len(&mut value, i);
            put_str(&mut value, fqdn);
        }
        fields.push((ext::TARGET_FQDNS, value));
    }
    put_len(out, fields.len());
    for (tag, value) in fields {
        put_var(out, tag);
        put_len(out, value.len());
        out.extend_from_slice(&value);
    }
}

/// The core layout's address of an fqdn target (see [`ext::TARGET_FQDNS`]).
const NO_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// The extension fields of a health check: its probe shape unless `port`, its
/// initial delay unless 0.
fn health_check_fields(hc: &HealthCheck, fields: &mut Vec<(u32, Vec<u8>)>) {
    let HealthCheck {
        probe,
        initial_delay_seconds,
        flap_damping,
        ..
    } = hc;
    match probe {
        Probe::Port(_) => {}
        Probe::TcpSocket(_) => fields.push((ext::HC_PROBE, vec![1])),
        Probe::HttpGet(HttpGet {
            path,
            port: _,
            scheme,
            host,
            http_headers,
        }) => {
            let mut b = vec![2];
            put_str(&mut b, path);
            b.push(match scheme {
                Scheme::Http => 0,
                Scheme::Https => 1,
            });
            match host {
                None => b.push(0),
                Some(h) => {
                    b.push(1);
                    put_str(&mut b, h);
                }
            }
            put_len(&mut b, http_headers.len());
            for HttpHeader { name, value } in http_headers {
                put_str(&mut b, name);
                put_str(&mut b, value);
            }
            fields.push((ext::HC_PROBE, b));
        }
    }
    if *initial_delay_seconds != 0 {
        let mut b = Vec::new();
        put_var(&mut b, *initial_delay_seconds);
        fields.push((ext::HC_INITIAL_DELAY, b));
    }
    if *flap_damping {
        fields.push((ext::HC_FLAP_DAMPING, vec![1]));
    }
}

fn encode_core(ns: &NameService, out: &mut Vec<u8>) {
    let NameService {
        name,
        ttl,
        policy,
        health_check,
        targets,
        all_down,
        failover,
        distribute,
        // In the extension section (see `encode`).
        panic_threshold_percent: _,
        slow_start_seconds: _,
        degraded_ttl: _,
        stickiness: _,
        min_eligible_targets: _,
    } = ns;
    put_str(out, name);
    put_var(out, *ttl);
    out.push(match policy {
        Policy::RoundRobin => 0,
        Policy::Ratio => 1,
        Policy::Locality => 2,
    });
    out.push(match all_down {
        AllDown::AnswerAll => 0,
        AllDown::NoData => 1,
    });
    match health_check {
        None => out.push(0),
        Some(
            hc @ HealthCheck {
                probe: _,
                initial_delay_seconds: _,
                flap_damping: _,
                period_seconds,
                timeout_seconds,
                failure_threshold,
                success_threshold,
            },
        ) => {
            // The probe's shape and the initial delay go to the extension section.
            out.push(1);
            out.extend_from_slice(&hc.port().to_le_bytes());
            for v in [
                period_seconds,
                timeout_seconds,
                failure_threshold,
                success_threshold,
            ] {
                put_var(out, *v);
            }
        }
    }
    put_len(out, targets.len());
    for t in targets {
        let Target {
            name,
            address,
            // In the extension section.
            fqdn: _,
            locality,
            ratio,
            port,
            probe_address,
            enabled,
        } = t;
        put_str(out, name);
        put_ip(out, &address.unwrap_or(NO_ADDRESS));
        match locality {
            None => out.push(0),
            Some(l) => {
                out.push(1);
                put_str(out, l);
            }
        }
        put_var(out, *ratio);
        match port {
            None => out.push(0),
            Some(p) => {
                out.push(1);
                out.extend_from_slice(&p.to_le_bytes());
            }
        }
        put_ip(out, &probe_address.unwrap_or(NO_ADDRESS));
        out.push(u8::from(*enabled));
    }
    put_len(out, failover.len());
    for FailoverRule { from, to } in failover {
        put_str(out, from);
        put_str(out, to);
    }
    put_len(out, distribute.len());
    for DistributeRule { from, to } in distribute {
        put_str(out, from);
        put_len(out, to.len());
        for (pattern, weight) in to {
            put_str(out, pattern);
            put_var(out, *weight);
        }
    }
}

fn put_var(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    // Every list and string of a valid resource is far below 4 GiB (bodies are at most 1 MiB).
    put_var(out, u32::try_from(n).expect("length fits in u32"));
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_ip(out: &mut Vec<u8>, ip: &IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out.push(6);
            out.extend_from_slice(&a.octets());
        }
    }
}

/// Which body layout a value holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    /// Format version 2: no extension section.
    V2,
    /// Format version 3: with the extension section.
    V3,
}

/// Decodes what [`encode`] wrote (or, with [`Layout::V2`], what gslb wrote before the
/// extension section existed); the error says what is wrong and where.
pub(super) fn decode(buf: &[u8], layout: Layout) -> Result<NameService, String> {
    let mut r = Reader { buf, pos: 0 };
    let mut ns = r.nameservice()?;
    if layout == Layout::V3 {
        for _ in 0..r.len("extension count")? {
            let tag = r.var("extension tag")?;
            let n = r.len("extension length")?;
            let at = r.pos;
            let data = r.take(n, "extension data")?;
            r.extension(&mut ns, tag, data, at)?;
        }
    }
    if r.pos != buf.len() {
        return Err(format!("{} unexpected bytes at the end", buf.len() - r.pos));
    }
    check_targets(&ns)?;
    Ok(ns)
}

/// What every stored NameService must hold whatever its format, and what the
/// binary form relies on: each target has exactly one of `address` and `fqdn`, and
/// no `probeAddress` with an `fqdn`.
pub(super) fn check_targets(ns: &NameService) -> Result<(), String> {
    for t in &ns.targets {
        let broken = match (&t.address, &t.fqdn, &t.probe_address) {
            (Some(_), Some(_), _) => "both an address and an fqdn",
            (None, None, _) => "neither an address nor an fqdn",
            (None, Some(_), Some(_)) => "a probeAddress with an fqdn",
            _ => continue,
        };
        return Err(format!("target {:?} has {broken}", t.name));
    }
    Ok(())
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Reads one field of the extension section into `ns`.
    fn extension(
        &self,
        ns: &mut NameService,
        tag: u32,
        data: &[u8],
        at: usize,
    ) -> Result<(), String> {
        let one_var = |what: &str| {
            let mut r = Reader { buf: data, pos: 0 };
            let v = r.var(what)?;
            if r.pos != data.len() {
                return Err(format!(
                    "{what} at offset {at}: {} bytes, not one integer",
                    data.len()
                ));
            }
            Ok(v)
        };
        match tag {
            ext::PANIC_THRESHOLD_PERCENT => {
                ns.panic_threshold_percent = one_var("panicThresholdPercent")?
            }
            ext::SLOW_START_SECONDS => ns.slow_start_seconds = one_var("slowStartSeconds")?,
            ext::DEGRADED_TTL => ns.degraded_ttl = one_var("degradedTtl")?,
            ext::STICKINESS => {
                ns.stickiness = match one_var("stickiness")? {
                    0 => Stickiness::Off,
                    1 => Stickiness::ClientSubnet,
                    v => return Err(format!("invalid stickiness {v} at offset {at}")),
                }
            }
            ext::MIN_ELIGIBLE_TARGETS => ns.min_eligible_targets = one_var("minEligibleTargets")?,
            ext::TARGET_FQDNS => {
                let mut r = Reader { buf: data, pos: 0 };
                for _ in 0..r.len("targets[].fqdn count")? {
                    let i = r.len("targets[].fqdn index")?;
                    let fqdn = r.str("targets[].fqdn")?;
                    let t = ns
                        .targets
                        .get_mut(i)
                        .ok_or_else(|| format!("targets[].fqdn at offset {at}: no target {i}"))?;
                    if t.fqdn.is_some() || t.address.is_some() || t.probe_address.is_some() {
                        return Err(format!(
                            "targets[{i}].fqdn at offset {at}: the target has an address or an fqdn already"
                        ));
                    }
                    t.fqdn = Some(fqdn);
                }
                if r.pos != data.len() {
                    return Err(format!("targets[].fqdn at offset {at}: trailing bytes"));
                }
            }
            ext::HC_PROBE => self.health_check_probe(ns, data, at)?,
            ext::HC_INITIAL_DELAY => {
                let v = one_var("healthCheck.initialDelaySeconds")?;
                ns.health_check
                    .as_mut()
                    .ok_or_else(|| {
                        format!(
                            "healthCheck.initialDelaySeconds at offset {at} without a healthCheck"
                        )
                    })?
                    .initial_delay_seconds = v;
            }
            ext::HC_FLAP_DAMPING => {
                let v = one_var("healthCheck.flapDamping")?;
                if v != 1 {
                    return Err(format!(
                        "invalid healthCheck.flapDamping {v} at offset {at}"
                    ));
                }
                ns.health_check
                    .as_mut()
                    .ok_or_else(|| {
                        format!("healthCheck.flapDamping at offset {at} without a healthCheck")
                    })?
                    .flap_damping = true;
            }
            _ => Err(format!(
                "unknown field tag {tag} at offset {at}: written by a newer gslb"
            ))?,
        }
        Ok(())
    }

    /// The probe shape of `ns`'s health check (extension field `HC_PROBE` at `at`).
    fn health_check_probe(
        &self,
        ns: &mut NameService,
        data: &[u8],
        at: usize,
    ) -> Result<(), String> {
        let hc = ns
            .health_check
            .as_mut()
            .ok_or_else(|| format!("healthCheck probe at offset {at} without a healthCheck"))?;
        // Offsets in messages count from the start of the value.
        let end = at + data.len();
        let mut r = Reader {
            buf: &self.buf[..end],
            pos: at,
        };
        let port = hc.port();
        hc.probe = match r.u8("healthCheck probe")? {
            1 => Probe::TcpSocket(TcpSocket { port }),
            2 => Probe::HttpGet(HttpGet {
                path: r.str("healthCheck.httpGet.path")?,
                port,
                scheme: match r.u8("healthCheck.httpGet.scheme")? {
                    0 => Scheme::Http,
                    1 => Scheme::Https,
                    b => return Err(r.bad("healthCheck.httpGet.scheme", b)),
                },
                host: match r.flag("healthCheck.httpGet.host")? {
                    false => None,
                    true => Some(r.str("healthCheck.httpGet.host")?),
                },
                http_headers: {
                    let n = r.len("healthCheck.httpGet.httpHeaders")?;
                    let mut v = Vec::with_capacity(n);
                    for _ in 0..n {
                        v.push(HttpHeader {
                            name: r.str("healthCheck.httpGet.httpHeaders[].name")?,
                            value: r.str("healthCheck.httpGet.httpHeaders[].value")?,
                        });
                    }
                    v
                },
            }),
            b => return Err(r.bad("healthCheck probe", b)),
        };
        if r.pos != end {
            return Err(format!(
                "healthCheck probe at offset {at}: {} unexpected bytes",
                end - r.pos
            ));
        }
        Ok(())
    }

    fn nameservice(&mut self) -> Result<NameService, String> {
        let name = self.str("name")?;
        let ttl = self.var("ttl")?;
        let policy = match self.u8("policy")? {
            0 => Policy::RoundRobin,
            1 => Policy::Ratio,
            2 => Policy::Locality,
            b => return Err(self.bad("policy", b)),
        };
        let all_down = match self.u8("allDown")? {
            0 => AllDown::AnswerAll,
            1 => AllDown::NoData,
            b => return Err(self.bad("allDown", b)),
        };
        let health_check = match self.flag("healthCheck")? {
            false => None,
            true => Some(HealthCheck {
                // The extension section may respell it (tcpSocket, httpGet).
                probe: Probe::Port(self.u16("healthCheck.port")?),
                initial_delay_seconds: 0,
                flap_damping: false,
                period_seconds: self.var("healthCheck.periodSeconds")?,
                timeout_seconds: self.var("healthCheck.timeoutSeconds")?,
                failure_threshold: self.var("healthCheck.failureThreshold")?,
                success_threshold: self.var("healthCheck.successThreshold")?,
            }),
        };
        let n = self.len("targets")?;
        let mut targets = Vec::with_capacity(n);
        for _ in 0..n {
            targets.push(Target {
                name: self.str("targets[].name")?,
                address: Some(self.ip("targets[].address")?).filter(|a| *a != NO_ADDRESS),
                fqdn: None,
                locality: match self.flag("targets[].locality")? {
                    false => None,
                    true => Some(self.str("targets[].locality")?),
                },
                ratio: self.var("targets[].ratio")?,
                port: match self.flag("targets[].port")? {
                    false => None,
                    true => Some(self.u16("targets[].port")?),
                },
                probe_address: Some(self.ip("targets[].probeAddress")?)
                    .filter(|a| *a != NO_ADDRESS),
                enabled: self.flag("targets[].enabled")?,
            });
        }
        let n = self.len("failover")?;
        let mut failover = Vec::with_capacity(n);
        for _ in 0..n {
            failover.push(FailoverRule {
                from: self.str("failover[].from")?,
                to: self.str("failover[].to")?,
            });
        }
        let n = self.len("distribute")?;
        let mut distribute = Vec::with_capacity(n);
        for _ in 0..n {
            let from = self.str("distribute[].from")?;
            let mut to = BTreeMap::new();
            for _ in 0..self.len("distribute[].to")? {
                let pattern = self.str("distribute[].to pattern")?;
                to.insert(pattern, self.var("distribute[].to weight")?);
            }
            distribute.push(DistributeRule { from, to });
        }
        Ok(NameService {
            name,
            ttl,
            policy,
            health_check,
            targets,
            all_down,
            failover,
            distribute,
            // The defaults; the extension section may say otherwise.
            panic_threshold_percent: 0,
            slow_start_seconds: 0,
            degraded_ttl: ttl,
            stickiness: Stickiness::Off,
            min_eligible_targets: DEFAULT_MIN_ELIGIBLE_TARGETS,
        })
    }

    fn bad(&self, what: &str, b: u8) -> String {
        format!("invalid {what} byte {b} at offset {}", self.pos - 1)
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| format!("truncated in {what} at offset {}", self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    fn flag(&mut self, what: &str) -> Result<bool, String> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(self.bad(what, b)),
        }
    }

    fn u16(&mut self, what: &str) -> Result<u16, String> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn var(&mut self, what: &str) -> Result<u32, String> {
        let mut v: u32 = 0;
        for shift in (0..35).step_by(7) {
            let b = self.u8(what)?;
            let bits = u32::from(b & 0x7f);
            if shift == 28 && bits > 0x0f {
                break;
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("{what}: integer too long at offset {}", self.pos))
    }

    fn len(&mut self, what: &str) -> Result<usize, String> {
        let n = self.var(what)? as usize;
        // Every element takes at least one byte: a longer count is corruption (and
        // must not make us reserve gigabytes).
        if n > self.buf.len() - self.pos {
            return Err(format!(
                "{what}: count {n} exceeds the value at offset {}",
                self.pos
            ));
        }
        Ok(n)
    }

    fn str(&mut self, what: &str) -> Result<String, String> {
        let n = self.len(what)?;
        let at = self.pos;
        let b = self.take(n, what)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| format!("{what}: invalid UTF-8 at offset {at}"))
    }

    fn ip(&mut self, what: &str) -> Result<IpAddr, String> {
        match self.u8(what)? {
            4 => {
                let b = self.take(4, what)?;
                Ok(Ipv4Addr::new(b[0], b[1], b[2], b[3]).into())
            }
            6 => {
                let b: [u8; 16] = self.take(16, what)?.try_into().expect("16 bytes");
                Ok(Ipv6Addr::from(b).into())
            }
            b => Err(self.bad(what, b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn samples() -> Vec<NameService> {
        [
            json!({"name": "a.example", "policy": "RoundRobin",
                   "targets": [{"name": "a", "address": "192.0.2.1"}]}),
            json!({"name": "b.example", "ttl": 86400, "policy": "Ratio", "allDown": "NoData",
                   "stickiness": "ClientSubnet", "minEligibleTargets": 64, "degradedTtl": 86400,
                   "healthCheck": {"port": 65535, "periodSeconds": 3600, "timeoutSeconds": 3600,
                                   "failureThreshold": 10, "successThreshold": 10},
                   "targets": [
                       {"name": "v4", "address": "198.51.100.7", "ratio": 10000, "port": 8443,
                        "probeAddress": "10.0.0.1", "enabled": false},
                       {"name": "v6", "address": "2001:db8::1", "ratio": 0,
                        "probeAddress": "2001:db8::ffff:1"},
                       {"name": "v4b", "address": "198.51.100.8", "ratio": 1}]}),
            json!({"name": "c.example", "ttl": 0, "policy": "Locality",
                   "targets": [
                       {"name": "w", "address": "192.0.2.10", "locality": "us-west/zone-a/rack-1"},
                       {"name": "e", "address": "192.0.2.20", "locality": "us-east"}],
                   "panicThresholdPercent": 50, "slowStartSeconds": 3600, "degradedTtl": 5,
                   "minEligibleTargets": 0,
                   "failover": [{"from": "us-west", "to": "us-east"}, {"from": "eu", "to": "us-west"}],
                   "distribute": [{"from": "us-west/*", "to": {"us-west/zone-a": 80, "us-east": 20}},
                                  {"from": "eu", "to": {"us-east": 1}}]}),
        ]
        .into_iter()
        .map(|v| NameService::from_json(v).unwrap())
        .collect()
    }

    /// Health checks in every probe shape.
    fn hc_samples() -> Vec<NameService> {
        [
            json!({"name": "d.example", "policy": "RoundRobin",
                   "healthCheck": {"tcpSocket": {"port": 443}, "initialDelaySeconds": 3600,
                                   "flapDamping": true},
                   "targets": [{"name": "a", "address": "192.0.2.1"}]}),
            json!({"name": "e.example", "policy": "RoundRobin",
                   "healthCheck": {"httpGet": {"path": "/healthz?x=%C3%A9%20", "port": 8443,
                                               "scheme": "HTTPS", "host": "app.example",
                                               "httpHeaders": [{"name": "X-A", "value": "1"},
                                                               {"name": "X-B", "value": ""}]},
                                   "initialDelaySeconds": 1},
                   "targets": [{"name": "a", "address": "192.0.2.1"}]}),
            json!({"name": "f.example", "policy": "RoundRobin",
                   "healthCheck": {"httpGet": {"port": 80}},
                   "targets": [{"name": "a", "address": "192.0.2.1"}]}),
        ]
        .into_iter()
        .map(|v| NameService::from_json(v).unwrap())
        .collect()
    }

    #[test]
    fn health_check_fields_round_trip_and_are_checked() {
        for ns in hc_samples() {
            let mut buf = Vec::new();
            encode(&ns, &mut buf);
            assert_eq!(decode(&buf, Layout::V3).unwrap(), ns);
            for n in 0..buf.len() {
                assert!(decode(&buf[..n], Layout::V3).is_err());
            }
        }
        // A probe field without a health check, or of an unknown kind, is refused.
        let plain = &samples()[0];
        for (tag, data, want) in [
            (ext::HC_PROBE, vec![1u8], "without a healthCheck"),
            (ext::HC_INITIAL_DELAY, vec![5u8], "without a healthCheck"),
            (ext::HC_FLAP_DAMPING, vec![1u8], "without a healthCheck"),
        ] {
            let mut bad = Vec::new();
            encode_core(plain, &mut bad);
            bad.extend_from_slice(&[1, tag as u8, data.len() as u8]);
            bad.extend_from_slice(&data);
            let e = decode(&bad, Layout::V3).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
        let hc = &hc_samples()[2];
        let mut bad = Vec::new();
        encode_core(hc, &mut bad);
        bad.extend_from_slice(&[1, ext::HC_PROBE as u8, 1, 9]);
        let e = decode(&bad, Layout::V3).unwrap_err();
        assert!(e.contains("invalid healthCheck probe byte 9"), "{e}");
    }

    #[test]
    fn round_trips_every_field() {
        for ns in samples().into_iter().chain(hc_samples()) {
            let mut buf = Vec::new();
            encode(&ns, &mut buf);
            assert_eq!(decode(&buf, Layout::V3).unwrap(), ns);
            // A version 2 body is the same without the extension section (and so
            // without the fields kept there).
            let mut v2 = Vec::new();
            encode_core(&ns, &mut v2);
            let old = decode(&v2, Layout::V2).unwrap();
            assert_eq!(
                old,
                NameService {
                    panic_threshold_percent: 0,
                    slow_start_seconds: 0,
                    degraded_ttl: ns.ttl,
                    stickiness: Stickiness::Off,
                    min_eligible_targets: DEFAULT_MIN_ELIGIBLE_TARGETS,
                    health_check: ns.health_check.clone().map(|hc| HealthCheck {
                        probe: Probe::Port(hc.port()),
                        initial_delay_seconds: 0,
                        flap_damping: false,
                        ..hc
                    }),
                    ..ns.clone()
                }
            );
        }
    }

    #[test]
    fn fqdn_targets_round_trip_in_the_extension_section() {
        let ns = NameService::from_json(json!({
            "name": "f.example", "policy": "Ratio",
            "targets": [
                {"name": "a", "address": "192.0.2.1", "ratio": 2},
                {"name": "b", "fqdn": "gw.dc2.example", "locality": "r2", "port": 8443},
                {"name": "c", "fqdn": "gw.dc3.example", "enabled": false}]}))
        .unwrap();
        let mut buf = Vec::new();
        encode(&ns, &mut buf);
        assert_eq!(decode(&buf, Layout::V3).unwrap(), ns);
        // Without the extension section the fqdn targets have neither.
        let mut core = Vec::new();
        encode_core(&ns, &mut core);
        let e = decode(&core, Layout::V2).unwrap_err();
        assert!(
            e.contains("target \"b\" has neither an address nor an fqdn"),
            "{e}"
        );
        // An fqdn for a target that has an address, or that is not there: refused.
        let tampered = |index: u8| {
            let mut out = core.clone();
            let mut value = vec![1, index];
            put_str(&mut value, "x.example");
            out.push(1);
            put_var(&mut out, ext::TARGET_FQDNS);
            put_len(&mut out, value.len());
            out.extend_from_slice(&value);
            decode(&out, Layout::V3).unwrap_err()
        };
        assert!(
            tampered(0).contains("has an address or an fqdn already"),
            "{}",
            tampered(0)
        );
        assert!(tampered(9).contains("no target 9"), "{}", tampered(9));
    }

    #[test]
    fn extension_fields_are_written_only_when_not_default() {
        let [plain, sticky, steered]: [NameService; 3] = samples().try_into().unwrap();
        let ext_len = |ns: &NameService| {
            let (mut all, mut core) = (Vec::new(), Vec::new());
            encode(ns, &mut all);
            encode_core(ns, &mut core);
            all.len() - core.len()
        };
        // Just the count 0; stickiness + minEligibleTargets (degradedTtl = ttl);
        // four fields, one of them minEligibleTargets 0.
        assert_eq!(ext_len(&plain), 1);
        assert_eq!(ext_len(&sticky), 1 + 2 * 3);
        assert_eq!(ext_len(&steered), 1 + 3 + 4 + 3 + 3);
        // A field whose value is not one integer is refused.
        let mut bad = Vec::new();
        encode_core(&plain, &mut bad);
        bad.extend_from_slice(&[1, ext::SLOW_START_SECONDS as u8, 2, 1, 0]);
        assert!(
            decode(&bad, Layout::V3)
                .unwrap_err()
                .contains("not one integer")
        );
    }

    #[test]
    fn is_much_smaller_than_json() {
        let ns = &samples()[2];
        let mut buf = Vec::new();
        encode(ns, &mut buf);
        let json = serde_json::to_vec(ns).unwrap();
        assert!(
            buf.len() * 3 < json.len(),
            "{} vs {}",
            buf.len(),
            json.len()
        );
    }

    #[test]
    fn corruption_is_an_error_never_a_panic() {
        for ns in samples().into_iter().chain(hc_samples()) {
            let mut buf = Vec::new();
            encode(&ns, &mut buf);
            // Every truncation.
            for n in 0..buf.len() {
                assert!(
                    decode(&buf[..n], Layout::V3).is_err(),
                    "{} of {} bytes",
                    n,
                    buf.len()
                );
            }
            // Trailing bytes.
            let mut long = buf.clone();
            long.push(0);
            assert!(
                decode(&long, Layout::V3)
                    .unwrap_err()
                    .contains("unexpected bytes")
            );
            // A field from a newer gslb.
            let mut newer = Vec::new();
            encode_core(&ns, &mut newer);
            newer.extend_from_slice(&[1, 99, 2, 0xab, 0xcd]);
            assert!(
                decode(&newer, Layout::V3)
                    .unwrap_err()
                    .contains("unknown field tag 99")
            );
            // Every single byte flipped: an error or some other valid resource.
            for i in 0..buf.len() {
                let mut bad = buf.clone();
                bad[i] ^= 0xff;
                let _ = decode(&bad, Layout::V3);
            }
        }
    }

    #[test]
    fn integers_use_every_width() {
        for v in [0, 1, 127, 128, 16_383, 16_384, u32::MAX] {
            let mut buf = Vec::new();
            put_var(&mut buf, v);
            let mut r = Reader { buf: &buf, pos: 0 };
            assert_eq!(r.var("v").unwrap(), v);
            assert_eq!(r.pos, buf.len());
        }
        // Five bytes whose last carries more than 32 bits, and six-byte integers.
        for bad in [
            &[0xff, 0xff, 0xff, 0xff, 0x1f][..],
            &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
        ] {
            assert!(Reader { buf: bad, pos: 0 }.var("v").is_err());
        }
    }

    /// The seed corpus of the `stored_value` fuzz target (fuzz/seeds/stored_value/):
    /// format 3 bodies of NameServices with every field and probe shape, and whole
    /// stored values of format 1, 2 and 3 under `a.example` (the key the target
    /// decodes raw values under).
    /// `cargo test --lib store::codec::tests::write_fuzz_seeds -- --ignored` after
    /// changing the format.
    #[test]
    #[ignore = "writes fuzz/seeds/stored_value/"]
    fn write_fuzz_seeds() {
        use crate::store::fuzzing;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/stored_value");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fqdn = NameService::from_json(json!({
            "name": "g.example", "policy": "Ratio",
            "targets": [{"name": "a", "fqdn": "gw.dc1.example", "ratio": 3},
                        {"name": "b", "address": "192.0.2.2", "ratio": 1}]}))
        .unwrap();
        let mut all: Vec<NameService> = samples().into_iter().chain(hc_samples()).collect();
        all.push(fqdn);
        let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("api/examples");
        let mut files: Vec<_> = std::fs::read_dir(&examples)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for f in files {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
            all.push(NameService::from_json(v).unwrap());
        }
        for (i, ns) in all.iter().enumerate() {
            let body = fuzzing::encode_body(ns);
            assert_eq!(&fuzzing::decode_body(&body, true).unwrap(), ns);
            std::fs::write(dir.join(format!("body-{i:02}-{}", ns.name)), &body).unwrap();
            // The same NameService as a whole value under a.example.
            let ns = NameService {
                name: "a.example".into(),
                ..ns.clone()
            };
            let v3 = fuzzing::encode_value(&ns, 1000 + i as u64);
            let mut v2 = vec![crate::store::FORMAT_NAMESERVICE];
            encode_core(&ns, &mut v2);
            let mut v1 = vec![crate::store::FORMAT_VERSION];
            v1.extend_from_slice(&serde_json::to_vec(&ns).unwrap());
            for (format, value) in [(3, v3), (2, v2), (1, v1)] {
                if format == 2 && ns.targets.iter().any(|t| t.fqdn.is_some()) {
                    continue; // format 2 has no fqdn targets
                }
                assert!(
                    fuzzing::decode_value(b"a.example", &value).is_ok(),
                    "{i} format {format}"
                );
                std::fs::write(dir.join(format!("value{format}-{i:02}")), &value).unwrap();
            }
        }
    }
}
