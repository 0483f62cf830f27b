//! From parsed Istio objects to NameServices: one per ServiceEntry host.
//!
//! The rules (docs/istio.md has them field by field):
//! - targets: the entry's `endpoints`, or the WorkloadEntries of its namespace whose
//!   labels include every label of its `workloadSelector`; address, locality and
//!   weight (as ratio; Istio's default weight is 1);
//! - healthCheck: the probe of the WorkloadGroups whose workloads the selector
//!   selects (`tcpSocket` or `httpGet`, in the same shape), with Kubernetes' probe
//!   defaults for what it leaves out;
//! - policy: `Locality` when the host's DestinationRule has `localityLbSetting`
//!   rules, or outlier detection and targets with localities (Istio then fails over
//!   by locality); else `Ratio` when the weights differ; else `RoundRobin`;
//! - `distribute` and `failover` from `localityLbSetting`.
//!
//! Every NameService is validated by the model before it is returned, and a broken
//! rule is reported on the Istio field it came from.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::{Value, json};

use super::Note;
use super::objects::{
    DestinationRule, Object, Parsed, PortRef, Probe, ProbeAction, ServiceEntry, Source, Workload,
    WorkloadGroup,
};
use crate::model::{Locality, MAX_RATIO, MAX_TARGETS, NameService, normalize_name};

/// Kubernetes' defaults for the probe fields a WorkloadGroup leaves out (the
/// kubelet's, which Istio's agent follows), so that an imported target is probed as
/// Istio would probe it.
pub const K8S_PERIOD_SECONDS: u32 = 10;
pub const K8S_TIMEOUT_SECONDS: u32 = 1;
pub const K8S_SUCCESS_THRESHOLD: u32 = 1;
pub const K8S_FAILURE_THRESHOLD: u32 = 3;

/// The outcome of an import.
#[derive(Debug, Default)]
pub struct Import {
    pub services: Vec<NameService>,
    /// Fields and objects with no NameService equivalent (warnings).
    pub left_out: Vec<Note>,
    /// Problems that stop the import: nothing is printed or applied.
    pub errors: Vec<Note>,
}

/// Where a part of a NameService came from, to report a broken model rule on the
/// Istio field that produced it.
#[derive(Clone)]
struct Origin {
    source: Arc<Source>,
    path: String,
}

impl Origin {
    fn note(&self, suffix: &str, message: impl Into<String>) -> Note {
        let field = match (self.path.is_empty(), suffix.is_empty()) {
            (true, _) => suffix.to_string(),
            (false, true) => self.path.clone(),
            (false, false) => format!("{}.{suffix}", self.path),
        };
        Note::new(self.source.clone(), field, message)
    }
}

/// Maps everything parsed into NameServices.
pub fn map(parsed: Parsed) -> Import {
    let mut out = Import {
        services: Vec::new(),
        left_out: parsed.left_out,
        errors: parsed.errors,
    };
    let objects = dedupe(parsed.objects, &mut out.left_out);

    let mut entries = Vec::new();
    let mut workloads = Vec::new();
    let mut groups = Vec::new();
    let mut rules = Vec::new();
    for o in objects {
        match o {
            Object::ServiceEntry(o) => entries.push(o),
            Object::WorkloadEntry(o) => workloads.push(o),
            Object::WorkloadGroup(o) => groups.push(o),
            Object::DestinationRule(o) => rules.push(o),
        }
    }
    let mut used_workloads = vec![false; workloads.len()];
    let mut used_groups = vec![false; groups.len()];
    let mut used_rules = vec![false; rules.len()];
    let mut hosts_seen: HashMap<String, Arc<Source>> = HashMap::new();

    for se in &entries {
        // Hosts first: a duplicate is reported even when the entry fails otherwise.
        let mut names = Vec::with_capacity(se.hosts.len());
        for (i, host) in se.hosts.iter().enumerate() {
            let field = format!("spec.hosts[{i}]");
            if host.contains('*') {
                out.left_out.push(Note::new(
                    se.source.clone(),
                    field,
                    format!("not mapped: the wildcard host {host:?} cannot be one NameService"),
                ));
                continue;
            }
            let name = match normalize_name(host) {
                Ok(n) => n,
                Err(e) => {
                    out.errors.push(Note::new(
                        se.source.clone(),
                        field,
                        format!("host {host:?} is not a valid DNS name: {e}"),
                    ));
                    continue;
                }
            };
            if let Some(first) = hosts_seen.get(&name) {
                out.errors.push(Note::new(
                    se.source.clone(),
                    field,
                    format!("host {name:?} is also a host of the ServiceEntry at {first}; one NameService per host"),
                ));
                continue;
            }
            hosts_seen.insert(name.clone(), se.source.clone());
            names.push(name);
        }
        if se.hosts.is_empty() {
            out.errors.push(Note::new(
                se.source.clone(),
                "spec.hosts",
                "spec.hosts is required: each host becomes one NameService",
            ));
        }
        let Some(targets) = targets_of(se, &workloads, &mut used_workloads, &mut out) else {
            continue;
        };
        let Ok(health) = health_of(se, &groups, &mut used_groups, &mut out) else {
            continue;
        };
        for name in names {
            let Ok(rule) = rule_for(&name, se, &rules, &mut used_rules, &mut out) else {
                continue;
            };
            if let Some(ns) = build(&name, se, &targets, health.as_ref(), rule, &mut out) {
                out.services.push(ns);
            }
        }
    }

    for (used, we) in used_workloads.iter().zip(&workloads) {
        if !used {
            out.left_out.push(Note::new(
                we.source.clone(),
                "",
                "not imported: no ServiceEntry selects this WorkloadEntry",
            ));
        }
    }
    for (used, wg) in used_groups.iter().zip(&groups) {
        if !used {
            out.left_out.push(Note::new(
                wg.source.clone(),
                "",
                "not imported: no ServiceEntry selects the workloads of this WorkloadGroup",
            ));
        }
    }
    for (used, dr) in used_rules.iter().zip(&rules) {
        if !used {
            out.left_out.push(Note::new(
                dr.source.clone(),
                "spec.host",
                format!(
                    "not imported: no imported ServiceEntry has the host {:?}",
                    dr.host
                ),
            ));
        }
    }
    out
}

/// Later objects replace earlier ones of the same kind, namespace and name, as
/// `kubectl apply` of the same files would.
fn dedupe(objects: Vec<Object>, left_out: &mut Vec<Note>) -> Vec<Object> {
    let mut last: HashMap<(String, String, String), usize> = HashMap::new();
    for (i, o) in objects.iter().enumerate() {
        let s = o.source();
        last.insert((s.kind.clone(), s.namespace.clone(), s.name.clone()), i);
    }
    let mut kept = Vec::with_capacity(last.len());
    for (i, o) in objects.into_iter().enumerate() {
        let s = o.source().clone();
        let winner = last[&(s.kind.clone(), s.namespace.clone(), s.name.clone())];
        if winner == i {
            kept.push(o);
        } else {
            left_out.push(Note::new(
                s,
                "",
                "not imported: a later object of the same kind, namespace and name replaces it (as kubectl apply would)",
            ));
        }
    }
    kept
}

/// A workload that becomes a target, with where it came from.
struct TargetIn<'a> {
    name: String,
    workload: &'a Workload,
    origin: Origin,
}

/// The targets of `se` (JSON for the model, and their origins), or `None` when the
/// entry cannot be imported (the reason is in `out.errors`).
fn targets_of(
    se: &ServiceEntry,
    workloads: &[super::objects::WorkloadEntry],
    used: &mut [bool],
    out: &mut Import,
) -> Option<Vec<(Value, Origin)>> {
    let mut chosen: Vec<TargetIn> = Vec::new();
    let mut names = HashSet::new();
    if !se.endpoints.is_empty() {
        if se.selector.is_some() {
            out.errors.push(Note::new(
                se.source.clone(),
                "spec.workloadSelector",
                "spec.endpoints and spec.workloadSelector exclude each other (as in Istio)",
            ));
            return None;
        }
        for w in &se.endpoints {
            let base = w.address.as_deref().unwrap_or("endpoint");
            chosen.push(TargetIn {
                name: unique_name(base, &mut names),
                workload: w,
                origin: Origin {
                    source: se.source.clone(),
                    path: w.path.clone(),
                },
            });
        }
    } else if let Some(selector) = &se.selector {
        for (i, we) in workloads.iter().enumerate() {
            if we.source.namespace == se.source.namespace && selects(selector, &we.workload.labels)
            {
                used[i] = true;
                chosen.push(TargetIn {
                    name: unique_name(&we.source.name, &mut names),
                    workload: &we.workload,
                    origin: Origin {
                        source: we.source.clone(),
                        path: we.workload.path.clone(),
                    },
                });
            }
        }
        if chosen.is_empty() {
            out.errors.push(Note::new(
                se.source.clone(),
                "spec.workloadSelector",
                format!(
                    "the workloadSelector {} selects no WorkloadEntry in namespace {:?}: gslb needs at least one target",
                    labels_text(selector),
                    se.source.namespace
                ),
            ));
            return None;
        }
    } else {
        let why = match se.resolution.as_deref() {
            Some("DNS") | Some("DNS_ROUND_ROBIN") => {
                "with resolution DNS and no endpoints the hosts resolve to themselves: give the entry endpoints or a workloadSelector"
            }
            _ => {
                "the entry has neither endpoints nor a workloadSelector: gslb needs at least one target"
            }
        };
        out.errors
            .push(Note::new(se.source.clone(), "spec.endpoints", why));
        return None;
    }
    if chosen.len() > MAX_TARGETS {
        out.errors.push(Note::new(
            se.source.clone(),
            "",
            format!(
                "the entry has {} workloads; a NameService has at most {MAX_TARGETS} targets",
                chosen.len()
            ),
        ));
        return None;
    }

    let mut targets = Vec::with_capacity(chosen.len());
    let mut ok = true;
    for t in chosen {
        match target_json(&t, out) {
            Some(v) => targets.push((v, t.origin)),
            None => ok = false,
        }
    }
    if !ok {
        return None;
    }
    if targets.is_empty() {
        out.errors.push(Note::new(
            se.source.clone(),
            "",
            "none of the entry's workloads has an address gslb can answer",
        ));
        return None;
    }
    Some(targets)
}

/// The JSON of one target; `None` after reporting an error.
fn target_json(t: &TargetIn, out: &mut Import) -> Option<Value> {
    let w = t.workload;
    let Some(address) = w.address.as_deref().filter(|a| !a.is_empty()) else {
        out.errors.push(t.origin.note(
            "address",
            "the workload has no address: gslb answers addresses, and reaching a workload through its network's gateway is Istio's job (import the gateway's address instead)",
        ));
        return None;
    };
    let mut target = serde_json::Map::new();
    target.insert("name".into(), json!(t.name));
    if let Ok(ip) = address.parse::<IpAddr>() {
        target.insert("address".into(), json!(ip.to_string()));
    } else if address.starts_with("unix://") {
        out.errors.push(t.origin.note(
            "address",
            format!("address {address:?} is a Unix socket: it cannot be answered in DNS"),
        ));
        return None;
    } else if let Ok(name) = normalize_name(address) {
        // A host name (the seed's `foo.bar.svc.cluster2`): gslb resolves it.
        target.insert("fqdn".into(), json!(name));
    } else {
        out.errors.push(t.origin.note(
            "address",
            format!("address {address:?} is neither an IP address nor a host name"),
        ));
        return None;
    }
    if let Some(l) = &w.locality {
        if let Err(m) = Locality::parse(l) {
            out.errors.push(t.origin.note("locality", m));
            return None;
        }
        target.insert("locality".into(), json!(l));
    }
    // Istio reads an absent or zero weight as 1.
    let weight = w.weight.filter(|w| *w > 0).unwrap_or(1);
    if weight > MAX_RATIO {
        out.errors.push(t.origin.note(
            "weight",
            format!("weight {weight} is above {MAX_RATIO}, the largest ratio of a target"),
        ));
        return None;
    }
    target.insert("ratio".into(), json!(weight));
    Some(Value::Object(target))
}

/// A selector selects a workload whose labels include every label of the selector.
fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", parts.join(", "))
}

/// A target name (`[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?`) made from `base` (an object
/// name or an address), unique among `taken`.
fn unique_name(base: &str, taken: &mut HashSet<String>) -> String {
    let mut s = String::with_capacity(base.len());
    for c in base.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            s.push(c);
        } else if !s.ends_with('-') {
            s.push('-');
        }
    }
    let trim = |s: &str, max: usize| -> String {
        let mut t: String = s.chars().take(max).collect();
        while t.ends_with('-') {
            t.pop();
        }
        t.trim_start_matches('-').to_string()
    };
    let mut name = trim(&s, 63);
    if name.is_empty() {
        name = "target".into();
    }
    let mut candidate = name.clone();
    let mut n = 2;
    while taken.contains(&candidate) {
        let suffix = format!("-{n}");
        candidate = format!("{}{suffix}", trim(&name, 63 - suffix.len()));
        n += 1;
    }
    taken.insert(candidate.clone());
    candidate
}

/// The healthCheck JSON and its origin from the WorkloadGroups whose workloads `se`
/// selects; `None` when there is no probe gslb can run, `Err` after reporting an
/// error.
fn health_of(
    se: &ServiceEntry,
    groups: &[WorkloadGroup],
    used: &mut [bool],
    out: &mut Import,
) -> Result<Option<(Value, Origin)>, ()> {
    let Some(selector) = se.selector.as_ref() else {
        return Ok(None);
    };
    let mut found: Vec<(&Probe, &WorkloadGroup)> = Vec::new();
    for (i, wg) in groups.iter().enumerate() {
        if wg.source.namespace != se.source.namespace || !selects(selector, &wg.labels) {
            continue;
        }
        used[i] = true;
        if let Some(p) = &wg.probe
            && !found.iter().any(|(q, _)| *q == p)
        {
            found.push((p, wg));
        }
    }
    let (probe, wg) = match found.as_slice() {
        [] => return Ok(None),
        [one] => *one,
        [(_, a), (_, b), ..] => {
            out.errors.push(Note::new(
                se.source.clone(),
                "spec.workloadSelector",
                format!(
                    "the workloads it selects have different probes ({} and {}); a NameService has one healthCheck",
                    a.source, b.source
                ),
            ));
            return Err(());
        }
    };
    let origin = Origin {
        source: wg.source.clone(),
        path: "spec.probe".into(),
    };
    // exec and grpc are named by the parser: no probe gslb can run.
    let Some(action) = &probe.action else {
        return Ok(None);
    };
    let port = |at: &str, p: &Option<PortRef>| -> Result<Value, Note> {
        match p {
            // The model names a missing port.
            None => Ok(Value::Null),
            Some(PortRef::Number(n)) => Ok(json!(n)),
            Some(PortRef::Name(name)) => Err(origin.note(
                at,
                format!(
                    "the named port {name:?} cannot be resolved: gslb probes each target's address, which has no port names; give the port number"
                ),
            )),
        }
    };
    let mut hc = serde_json::Map::new();
    let shape = match action {
        ProbeAction::Tcp { port: p } => {
            let p = port("tcpSocket.port", p).map_err(|n| out.errors.push(n))?;
            ("tcpSocket", json!({ "port": p }))
        }
        ProbeAction::Http(h) => {
            let p = port("httpGet.port", &h.port).map_err(|n| out.errors.push(n))?;
            let mut get = serde_json::Map::new();
            get.insert("port".into(), p);
            if let Some(path) = &h.path {
                get.insert("path".into(), json!(path));
            }
            if let Some(scheme) = &h.scheme {
                get.insert("scheme".into(), json!(scheme));
            }
            if let Some(host) = &h.host {
                get.insert("host".into(), json!(host));
            }
            let headers: Vec<Value> = h
                .headers
                .iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect();
            get.insert("httpHeaders".into(), Value::Array(headers));
            ("httpGet", Value::Object(get))
        }
    };
    hc.insert(shape.0.into(), shape.1);
    for (key, value) in [
        (
            "initialDelaySeconds",
            probe.initial_delay_seconds.unwrap_or(0),
        ),
        (
            "periodSeconds",
            probe.period_seconds.unwrap_or(K8S_PERIOD_SECONDS),
        ),
        (
            "timeoutSeconds",
            probe.timeout_seconds.unwrap_or(K8S_TIMEOUT_SECONDS),
        ),
        (
            "successThreshold",
            probe.success_threshold.unwrap_or(K8S_SUCCESS_THRESHOLD),
        ),
        (
            "failureThreshold",
            probe.failure_threshold.unwrap_or(K8S_FAILURE_THRESHOLD),
        ),
    ] {
        hc.insert(key.into(), json!(value));
    }
    Ok(Some((Value::Object(hc), origin)))
}

/// The DestinationRule of `host`: the one naming it exactly (in the entry's
/// namespace when several do), else the one with the longest matching wildcard;
/// `Err` after reporting an ambiguity.
fn rule_for<'a>(
    host: &str,
    se: &ServiceEntry,
    rules: &'a [DestinationRule],
    used: &mut [bool],
    out: &mut Import,
) -> Result<Option<&'a DestinationRule>, ()> {
    let norm = |h: &str| h.trim_end_matches('.').to_ascii_lowercase();
    let exact: Vec<usize> = (0..rules.len())
        .filter(|&i| norm(&rules[i].host) == host)
        .collect();
    let candidates = if exact.is_empty() {
        let mut wild: Vec<(usize, usize)> = (0..rules.len())
            .filter_map(|i| {
                let h = norm(&rules[i].host);
                let suffix = h.strip_prefix('*')?;
                (host.ends_with(suffix) && host.len() > suffix.len()).then_some((i, suffix.len()))
            })
            .collect();
        let Some(best) = wild.iter().map(|(_, l)| *l).max() else {
            return Ok(None);
        };
        wild.retain(|(_, l)| *l == best);
        wild.into_iter().map(|(i, _)| i).collect()
    } else {
        exact
    };
    let mut pick = candidates.clone();
    if pick.len() > 1 {
        pick.retain(|&i| rules[i].source.namespace == se.source.namespace);
    }
    for &i in &candidates {
        used[i] = true;
    }
    match pick.as_slice() {
        [] if candidates.len() > 1 => {
            out.errors.push(ambiguous(host, se, &candidates, rules));
            Err(())
        }
        [] => Ok(None),
        [one] => Ok(Some(&rules[*one])),
        many => {
            out.errors.push(ambiguous(host, se, many, rules));
            Err(())
        }
    }
}

fn ambiguous(host: &str, se: &ServiceEntry, which: &[usize], rules: &[DestinationRule]) -> Note {
    let names: Vec<String> = which.iter().map(|&i| rules[i].source.to_string()).collect();
    Note::new(
        se.source.clone(),
        "spec.hosts",
        format!(
            "several DestinationRules apply to host {host:?} ({}); Istio merges them by creation time, which files do not carry: keep one",
            names.join("; ")
        ),
    )
}

/// A gslb locality pattern with the meaning of Istio's `pattern`. Istio's `*`
/// also matches a part the locality does not have (`region1/zone1/*` matches the
/// locality `region1/zone1`), gslb's matches one part that is there, and a shorter
/// gslb pattern matches every locality below it; so trailing `*` parts are dropped,
/// keeping at least one part (`*/*` becomes `*`, which matches every locality).
fn pattern(istio: &str) -> String {
    let mut parts: Vec<&str> = istio.split('/').collect();
    while parts.len() > 1 && parts.last() == Some(&"*") {
        parts.pop();
    }
    parts.join("/")
}

/// The NameService of one host, validated; `None` after reporting an error.
fn build(
    name: &str,
    se: &ServiceEntry,
    targets: &[(Value, Origin)],
    health: Option<&(Value, Origin)>,
    rule: Option<&DestinationRule>,
    out: &mut Import,
) -> Option<NameService> {
    let mut failover: Vec<(Value, Origin)> = Vec::new();
    let mut distribute: Vec<(Value, Origin)> = Vec::new();
    let mut locality_rules = false;
    let mut locality_by_outliers = false;
    if let Some(dr) = rule {
        let origin = |path: &str| Origin {
            source: dr.source.clone(),
            path: path.to_string(),
        };
        let lb_path = "spec.trafficPolicy.loadBalancer.localityLbSetting";
        match &dr.locality {
            Some(l) if l.enabled == Some(false) => {
                let unused = !l.distribute.is_empty() || !l.failover.is_empty();
                if unused {
                    out.left_out.push(Note::new(
                        dr.source.clone(),
                        format!("{lb_path}.enabled"),
                        "not mapped: locality load balancing is disabled, so its distribute and failover rules are not used",
                    ));
                }
            }
            Some(l) => {
                locality_rules = true;
                for d in &l.distribute {
                    let to: BTreeMap<String, u32> =
                        d.to.iter().map(|(p, w)| (pattern(p), *w)).collect();
                    distribute.push((json!({"from": pattern(&d.from), "to": to}), origin(&d.path)));
                }
                let mut seen = HashSet::new();
                for f in &l.failover {
                    let region = |s: &str| s.split('/').next().unwrap_or_default().to_string();
                    let (from, to) = (region(&f.from), region(&f.to));
                    if from != f.from || to != f.to {
                        out.left_out.push(Note::new(
                            dr.source.clone(),
                            f.path.clone(),
                            format!(
                                "mapped to region {from:?} -> {to:?}: failover goes from region to region (in Istio and in gslb), the zone parts of {:?} -> {:?} are dropped",
                                f.from, f.to
                            ),
                        ));
                    }
                    if from == to {
                        out.left_out.push(Note::new(
                            dr.source.clone(),
                            f.path.clone(),
                            "not mapped: a failover within one region is what the Locality policy does anyway",
                        ));
                        continue;
                    }
                    if seen.insert((from.clone(), to.clone())) {
                        failover.push((json!({"from": from, "to": to}), origin(&f.path)));
                    }
                }
            }
            None => {}
        }
        let any_locality = targets.iter().any(|(t, _)| t.get("locality").is_some());
        locality_by_outliers = dr.outlier_detection
            && any_locality
            && dr
                .locality
                .as_ref()
                .is_none_or(|l| l.enabled != Some(false));
    }
    let ratios: HashSet<u64> = targets
        .iter()
        .filter_map(|(t, _)| t["ratio"].as_u64())
        .collect();
    let policy = if locality_rules || locality_by_outliers {
        "Locality"
    } else if ratios.len() > 1 {
        "Ratio"
    } else {
        "RoundRobin"
    };
    if policy == "Locality" && ratios.len() > 1 {
        for (t, origin) in targets {
            if t["ratio"] != json!(1) {
                out.left_out.push(origin.note(
                    "weight",
                    "kept as the target's ratio, but the Locality policy answers every eligible target of the chosen locality: weights matter to the Ratio policy only",
                ));
            }
        }
    }

    let mut ns = serde_json::Map::new();
    ns.insert("name".into(), json!(name));
    ns.insert("policy".into(), json!(policy));
    ns.insert(
        "targets".into(),
        Value::Array(targets.iter().map(|(t, _)| t.clone()).collect()),
    );
    if let Some((hc, _)) = health {
        ns.insert("healthCheck".into(), hc.clone());
    }
    if let Some(secs) = rule.and_then(|dr| dr.warmup_seconds) {
        ns.insert("slowStartSeconds".into(), json!(secs));
    }
    if !failover.is_empty() {
        ns.insert(
            "failover".into(),
            Value::Array(failover.iter().map(|(f, _)| f.clone()).collect()),
        );
    }
    if !distribute.is_empty() {
        ns.insert(
            "distribute".into(),
            Value::Array(distribute.iter().map(|(d, _)| d.clone()).collect()),
        );
    }
    match (NameService::from_json(Value::Object(ns)), rule) {
        (Ok(ns), _) => Some(ns),
        (Err(e), Some(dr)) if e.field == "slowStartSeconds" => {
            out.errors.push(Note::new(
                dr.source.clone(),
                "spec.trafficPolicy.loadBalancer.warmupDurationSecs",
                format!("{} (NameService field {})", e.message, e.field),
            ));
            None
        }
        (Err(e), _) => {
            out.errors.push(blame(
                &e.field,
                &e.message,
                se,
                targets,
                health,
                &failover,
                &distribute,
            ));
            None
        }
    }
}

/// A broken model rule, reported on the Istio object and field it came from.
fn blame(
    field: &str,
    message: &str,
    se: &ServiceEntry,
    targets: &[(Value, Origin)],
    health: Option<&(Value, Origin)>,
    failover: &[(Value, Origin)],
    distribute: &[(Value, Origin)],
) -> Note {
    // `targets[3].locality` -> (targets, 3, locality)
    let indexed = |list: &str| -> Option<(usize, String)> {
        let rest = field.strip_prefix(list)?.strip_prefix('[')?;
        let (i, rest) = rest.split_once(']')?;
        Some((i.parse().ok()?, rest.trim_start_matches('.').to_string()))
    };
    let message = format!("{message} (NameService field {field})");
    if let Some((i, sub)) = indexed("targets")
        && let Some((_, o)) = targets.get(i)
    {
        let sub = match sub.as_str() {
            "ratio" => "weight",
            other => other,
        };
        return o.note(if sub == "name" { "" } else { sub }, message);
    }
    if field.starts_with("healthCheck")
        && let Some((_, o)) = health
    {
        return o.note("", message);
    }
    for (list, rules) in [("failover", failover), ("distribute", distribute)] {
        if let Some((i, _)) = indexed(list)
            && let Some((_, o)) = rules.get(i)
        {
            return o.note("", message);
        }
    }
    Note::new(se.source.clone(), "", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names_are_valid_and_unique() {
        let mut taken = HashSet::new();
        let cases = [
            ("foo", "foo"),
            ("foo", "foo-2"),
            ("192.0.2.10", "192-0-2-10"),
            ("::1", "1"),
            ("Foo.Bar_baz", "foo-bar-baz"),
            ("...", "target"),
            ("foo", "foo-3"),
        ];
        for (base, want) in cases {
            assert_eq!(unique_name(base, &mut taken), want, "{base}");
        }
        let long = "a".repeat(80);
        let n1 = unique_name(&long, &mut taken);
        let n2 = unique_name(&long, &mut taken);
        assert_eq!(n1.len(), 63);
        assert_eq!(n2.len(), 63);
        assert!(n2.ends_with("-2"));
    }

    #[test]
    fn istio_patterns() {
        for (istio, gslb) in [
            ("*/*", "*"),
            ("*", "*"),
            ("region1/zone1/*", "region1/zone1"),
            ("region1/*/*", "region1"),
            ("*/zone1/*", "*/zone1"),
            ("region1/zone1/sz", "region1/zone1/sz"),
        ] {
            assert_eq!(pattern(istio), gslb, "{istio}");
        }
    }

    #[test]
    fn selectors_select_supersets() {
        let m = |l: &[(&str, &str)]| -> BTreeMap<String, String> {
            l.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(selects(
            &m(&[("run", "foo")]),
            &m(&[("run", "foo"), ("x", "y")])
        ));
        assert!(!selects(&m(&[("run", "foo")]), &m(&[("run", "bar")])));
        assert!(selects(&m(&[]), &m(&[("run", "bar")])));
        assert!(!selects(&m(&[("a", "1")]), &m(&[])));
    }
}
