//! The Istio objects `gslb import istio` reads, parsed from Kubernetes YAML.
//!
//! Every field of an object is either taken by the parser (and then used by the
//! mapping in [`super::mapping`]) or named in [`Parsed::left_out`] with the reason it
//! has no NameService equivalent. Fields of the wrong type are errors.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::Note;
use super::fields::{FieldError, Fields};

/// Where an object came from, for messages: `FILE: document N (Kind ns/name)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub file: String,
    /// `document 2`, or `document 2, items[3]` inside a `kind: List`.
    pub document: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.document)?;
        if !self.kind.is_empty() {
            write!(f, " ({} {}/{})", self.kind, self.namespace, self.name)?;
        }
        Ok(())
    }
}

/// A workload address with its labels, locality and weight: a WorkloadEntry's spec,
/// or one of a ServiceEntry's `endpoints`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Path of the workload in its object (`spec`, `spec.endpoints[1]`).
    pub path: String,
    pub address: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub locality: Option<String>,
    pub weight: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct ServiceEntry {
    pub source: Arc<Source>,
    pub hosts: Vec<String>,
    /// `NONE`, `STATIC`, `DNS`, `DNS_ROUND_ROBIN`; absent means `NONE`.
    pub resolution: Option<String>,
    pub endpoints: Vec<Workload>,
    /// `spec.workloadSelector.labels`, when the entry selects its workloads.
    pub selector: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone)]
pub struct WorkloadEntry {
    pub source: Arc<Source>,
    pub workload: Workload,
}

/// A Kubernetes probe as a WorkloadGroup carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub initial_delay_seconds: Option<u32>,
    pub period_seconds: Option<u32>,
    pub timeout_seconds: Option<u32>,
    pub success_threshold: Option<u32>,
    pub failure_threshold: Option<u32>,
    /// `tcpSocket` or `httpGet`; `None` when the probe has neither (an `exec` or
    /// `grpc` probe, named as not mapped).
    pub action: Option<ProbeAction>,
}

/// A probe port: Kubernetes' IntOrString, a number or the name of a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRef {
    Number(u32),
    Name(String),
}

/// What a probe does, in the two shapes gslb runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAction {
    /// `tcpSocket`.
    Tcp { port: Option<PortRef> },
    /// `httpGet`.
    Http(HttpProbe),
}

/// `probe.httpGet`, already in gslb's terms: `host` is the Host header (and TLS
/// server name) gslb sends, taken from a `Host` entry of `httpHeaders` or from
/// `host` when it is a name; `headers` are the other headers gslb can send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    pub path: Option<String>,
    pub port: Option<PortRef>,
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct WorkloadGroup {
    pub source: Arc<Source>,
    /// `spec.metadata.labels`: the labels of the group's workloads.
    pub labels: BTreeMap<String, String>,
    pub probe: Option<Probe>,
    /// Fields of the probe left out for a reason of their own (a header gslb sets
    /// itself, a probe host that cannot be per target): (field path, reason).
    pub left_out: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distribute {
    pub path: String,
    pub from: String,
    pub to: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failover {
    pub path: String,
    pub from: String,
    pub to: String,
}

/// `trafficPolicy.loadBalancer.localityLbSetting`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalityLb {
    pub enabled: Option<bool>,
    pub distribute: Vec<Distribute>,
    pub failover: Vec<Failover>,
}

#[derive(Debug, Clone)]
pub struct DestinationRule {
    pub source: Arc<Source>,
    pub host: String,
    pub locality: Option<LocalityLb>,
    /// `trafficPolicy.outlierDetection` is set: Istio then fails over by locality
    /// even without a `localityLbSetting` (it is on by default mesh-wide).
    pub outlier_detection: bool,
    /// `trafficPolicy.loadBalancer.warmupDurationSecs`, in whole seconds (rounded
    /// up): Envoy's slow start, gslb's `slowStartSeconds`.
    pub warmup_seconds: Option<u64>,
}

#[derive(Debug, Clone)]
pub enum Object {
    ServiceEntry(ServiceEntry),
    WorkloadEntry(WorkloadEntry),
    WorkloadGroup(WorkloadGroup),
    DestinationRule(DestinationRule),
}

impl Object {
    pub fn source(&self) -> &Arc<Source> {
        match self {
            Object::ServiceEntry(o) => &o.source,
            Object::WorkloadEntry(o) => &o.source,
            Object::WorkloadGroup(o) => &o.source,
            Object::DestinationRule(o) => &o.source,
        }
    }
}

/// Everything read from the input files.
#[derive(Debug, Default)]
pub struct Parsed {
    pub objects: Vec<Object>,
    /// Fields and objects that have no NameService equivalent.
    pub left_out: Vec<Note>,
    /// Unreadable files, invalid YAML, fields of the wrong type.
    pub errors: Vec<Note>,
}

const GROUP: &str = "networking.istio.io/";

/// Parses every document of `text` (the content of `file`) into `out`.
/// `namespace` is given to objects that name none (as `kubectl apply -n` would).
pub fn parse_file(file: &str, text: &str, namespace: &str, out: &mut Parsed) {
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let document = format!("document {}", i + 1);
        let source = Source {
            file: file.to_string(),
            document,
            kind: String::new(),
            namespace: String::new(),
            name: String::new(),
        };
        match Value::deserialize(doc) {
            // An empty document (a trailing `---`, a file of comments).
            Ok(Value::Null) => {}
            Ok(value) => parse_object(source, value, namespace, out),
            Err(e) => {
                let at = e
                    .location()
                    .map(|l| format!("line {}, column {}: ", l.line(), l.column()))
                    .unwrap_or_default();
                out.errors.push(Note::new(
                    Arc::new(source),
                    "",
                    format!("{at}not valid YAML: {e}"),
                ));
                // The parser cannot go on past a syntax error in this file.
                break;
            }
        }
    }
}

fn parse_object(mut source: Source, value: Value, namespace: &str, out: &mut Parsed) {
    let mut obj = match Fields::new("", value) {
        Ok(f) => f,
        Err(_) => {
            out.errors.push(Note::new(
                Arc::new(source),
                "",
                "a document must be a Kubernetes object (a mapping with apiVersion and kind)",
            ));
            return;
        }
    };
    let header = (|| -> Result<_, FieldError> {
        let api_version = obj.string("apiVersion")?.unwrap_or_default();
        let kind = obj.string("kind")?.unwrap_or_default();
        let mut meta = obj.mapping("metadata")?;
        let (name, ns) = match &mut meta {
            Some(m) => (m.string("name")?, m.string("namespace")?),
            None => (None, None),
        };
        Ok((api_version, kind, name, ns))
    })();
    let (api_version, kind, name, ns) = match header {
        Ok(h) => h,
        Err(e) => {
            out.errors
                .push(Note::new(Arc::new(source), e.field, e.message));
            return;
        }
    };
    source.kind = kind.clone();
    source.namespace = ns.unwrap_or_else(|| namespace.to_string());
    source.name = name.unwrap_or_default();

    if kind == "List" && api_version == "v1" {
        // `kubectl get -o yaml` wraps several objects in a List.
        let items = match obj.list("items") {
            Ok(items) => items,
            Err(e) => {
                out.errors
                    .push(Note::new(Arc::new(source), e.field, e.message));
                return;
            }
        };
        for (path, item) in items {
            let inner = Source {
                document: format!("{}, {path}", source.document),
                kind: String::new(),
                namespace: String::new(),
                name: String::new(),
                ..source.clone()
            };
            parse_object(inner, item, namespace, out);
        }
        return;
    }

    let source = Arc::new(source);
    if !api_version.starts_with(GROUP) {
        let what = if kind.is_empty() && api_version.is_empty() {
            "a document without apiVersion and kind".to_string()
        } else {
            format!("{kind} of {api_version:?}")
        };
        out.left_out.push(Note::new(
            source,
            "",
            format!("{what} is not imported: gslb imports ServiceEntry, WorkloadEntry, WorkloadGroup and DestinationRule of {GROUP}*"),
        ));
        return;
    }
    if source.name.is_empty() {
        out.errors.push(Note::new(
            source,
            "metadata.name",
            "metadata.name is required",
        ));
        return;
    }
    // Kubernetes bookkeeping: nothing in it is meant for the data plane.
    obj.discard("metadata");
    obj.discard("status");
    let spec = match obj.mapping("spec") {
        Ok(s) => s.unwrap_or_else(|| Fields::new("spec", Value::Null).expect("null is empty")),
        Err(e) => {
            out.errors.push(Note::new(source, e.field, e.message));
            return;
        }
    };
    let mut rest = obj.rest();
    let parsed = match kind.as_str() {
        "ServiceEntry" => service_entry(source.clone(), spec, &mut rest).map(Object::ServiceEntry),
        "WorkloadEntry" => {
            workload_entry(source.clone(), spec, &mut rest).map(Object::WorkloadEntry)
        }
        "WorkloadGroup" => {
            workload_group(source.clone(), spec, &mut rest).map(Object::WorkloadGroup)
        }
        "DestinationRule" => {
            destination_rule(source.clone(), spec, &mut rest).map(Object::DestinationRule)
        }
        _ => {
            out.left_out.push(Note::new(
                source,
                "",
                format!("{kind} has no NameService equivalent: gslb answers DNS for ServiceEntry hosts; routing inside the mesh is Envoy's"),
            ));
            return;
        }
    };
    match parsed {
        Ok(o) => {
            let mut notes: Vec<(String, String)> = rest
                .into_iter()
                .map(|field| {
                    let reason = reason(&kind, &field);
                    (field, reason)
                })
                .collect();
            if let Object::WorkloadGroup(g) = &o {
                notes.extend(g.left_out.iter().cloned());
                notes.sort();
            }
            for (field, reason) in notes {
                out.left_out.push(Note::new(source.clone(), field, reason));
            }
            out.objects.push(o);
        }
        Err(e) => out.errors.push(Note::new(source, e.field, e.message)),
    }
}

/// Why `field` of a `kind` is not mapped: the fields Istio defines that have no
/// NameService equivalent, each with its reason; anything else is unknown.
pub fn reason(kind: &str, field: &str) -> String {
    // Without list indexes: `spec.endpoints[0].ports` -> `spec.endpoints.ports`.
    let mut path = String::with_capacity(field.len());
    let mut in_index = false;
    for c in field.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            c if !in_index => path.push(c),
            _ => {}
        }
    }
    const PORTS: &str = "ports are proxy listener settings; a DNS answer carries addresses only";
    const NETWORK: &str =
        "Istio networks pick a gateway inside the mesh; gslb's targets are the gateways";
    const IDENTITY: &str = "workload identity is checked by mTLS, not by DNS";
    const EXPORT: &str = "namespace visibility inside the mesh; a NameService is global";
    const PROXY: &str = "a proxy setting with no DNS equivalent";
    let r = match (kind, path.as_str()) {
        ("ServiceEntry", "spec.ports" | "spec.endpoints.ports") => PORTS,
        ("ServiceEntry", "spec.endpoints.network") => NETWORK,
        ("ServiceEntry", "spec.endpoints.serviceAccount" | "spec.subjectAltNames") => IDENTITY,
        ("ServiceEntry", "spec.exportTo") => EXPORT,
        ("ServiceEntry", "spec.addresses") => {
            "the virtual IPs of the service inside the mesh; gslb answers the endpoints' addresses"
        }
        ("ServiceEntry", "spec.location") => {
            "MESH_INTERNAL/MESH_EXTERNAL selects Istio's mTLS; it has no DNS equivalent"
        }
        ("WorkloadEntry", "spec.ports") => PORTS,
        ("WorkloadEntry", "spec.network") => NETWORK,
        ("WorkloadEntry", "spec.serviceAccount") => IDENTITY,
        ("WorkloadGroup", "spec.template") => {
            "the template of auto-registered WorkloadEntries; gslb imports WorkloadEntries that exist"
        }
        ("WorkloadGroup", "spec.metadata.annotations") => "annotations carry no routing meaning",
        ("WorkloadGroup", "spec.probe.exec") => "gslb cannot run a command on the workload",
        ("WorkloadGroup", "spec.probe.grpc") => "gRPC health probes are not supported",
        ("WorkloadGroup", "spec.probe.tcpSocket.host") => {
            "one probe host for every workload cannot be a per-target probe address"
        }
        ("WorkloadGroup", "spec.probe.terminationGracePeriodSeconds") => {
            "a pod setting; gslb restarts nothing"
        }
        ("DestinationRule", "spec.trafficPolicy.outlierDetection") => {
            "passive outlier detection; gslb's active healthCheck decides eligibility"
        }
        ("DestinationRule", "spec.trafficPolicy.connectionPool") => {
            "connection limits are the proxy's, not DNS's"
        }
        ("DestinationRule", "spec.trafficPolicy.tls") => "TLS settings are the proxy's, not DNS's",
        ("DestinationRule", "spec.trafficPolicy.portLevelSettings") => {
            "per-port policies are the proxy's, not DNS's"
        }
        ("DestinationRule", "spec.trafficPolicy.proxyProtocol" | "spec.trafficPolicy.tunnel") => {
            PROXY
        }
        ("DestinationRule", "spec.trafficPolicy.loadBalancer.simple") => {
            "gslb's policy comes from the endpoints' weights and localities (see docs/istio.md)"
        }
        ("DestinationRule", "spec.trafficPolicy.loadBalancer.consistentHash") => {
            "hashing on HTTP headers or cookies is not possible in DNS"
        }
        (
            "DestinationRule",
            "spec.trafficPolicy.loadBalancer.localityLbSetting.failoverPriority",
        ) => "label-based failover priority has no equivalent; gslb fails over by locality",
        ("DestinationRule", "spec.subsets") => {
            "subsets are picked by VirtualService routes inside the mesh"
        }
        ("DestinationRule", "spec.exportTo") => EXPORT,
        ("DestinationRule", "spec.workloadSelector") => "it applies to sidecars, not to DNS",
        _ => "unknown field: misspelt, misplaced, or from a newer Istio",
    };
    format!("not mapped: {r}")
}

fn workload(mut f: Fields, rest: &mut Vec<String>) -> Result<Workload, FieldError> {
    let w = Workload {
        path: f.path().to_string(),
        address: f.string("address")?,
        labels: f.string_map("labels")?,
        locality: f.string("locality")?.filter(|l| !l.is_empty()),
        weight: f.uint("weight")?,
    };
    rest.extend(f.rest());
    Ok(w)
}

fn service_entry(
    source: Arc<Source>,
    mut spec: Fields,
    rest: &mut Vec<String>,
) -> Result<ServiceEntry, FieldError> {
    let hosts = spec.strings("hosts")?;
    let resolution = spec.string("resolution")?;
    let mut endpoints = Vec::new();
    for (path, v) in spec.list("endpoints")? {
        endpoints.push(workload(Fields::new(path, v)?, rest)?);
    }
    let selector = match spec.mapping("workloadSelector")? {
        None => None,
        Some(mut sel) => {
            let labels = sel.string_map("labels")?;
            rest.extend(sel.rest());
            Some(labels)
        }
    };
    rest.extend(spec.rest());
    Ok(ServiceEntry {
        source,
        hosts,
        resolution,
        endpoints,
        selector,
    })
}

fn workload_entry(
    source: Arc<Source>,
    spec: Fields,
    rest: &mut Vec<String>,
) -> Result<WorkloadEntry, FieldError> {
    Ok(WorkloadEntry {
        source,
        workload: workload(spec, rest)?,
    })
}

fn workload_group(
    source: Arc<Source>,
    mut spec: Fields,
    rest: &mut Vec<String>,
) -> Result<WorkloadGroup, FieldError> {
    let labels = match spec.mapping("metadata")? {
        None => BTreeMap::new(),
        Some(mut m) => {
            let labels = m.string_map("labels")?;
            rest.extend(m.rest());
            labels
        }
    };
    let mut left_out = Vec::new();
    let probe = match spec.mapping("probe")? {
        None => None,
        Some(p) => Some(probe(p, rest, &mut left_out)?),
    };
    rest.extend(spec.rest());
    Ok(WorkloadGroup {
        source,
        labels,
        probe,
        left_out,
    })
}

/// The handlers of a Kubernetes probe, of which it takes exactly one.
const HANDLERS: [&str; 4] = ["tcpSocket", "httpGet", "exec", "grpc"];

/// Headers gslb sets itself or that belong to the connection: named as not mapped.
fn reserved_header(lower: &str) -> Option<&'static str> {
    match lower {
        "user-agent" => Some("gslb sends its own User-Agent, gslb/<version> (<instance>)"),
        "content-length" | "transfer-encoding" | "connection" | "te" | "upgrade" | "trailer"
        | "keep-alive" | "proxy-connection" => {
            Some("gslb manages the probe's connection and sends no body")
        }
        _ => None,
    }
}

fn probe(
    mut p: Fields,
    rest: &mut Vec<String>,
    left_out: &mut Vec<(String, String)>,
) -> Result<Probe, FieldError> {
    let given: Vec<&str> = HANDLERS.into_iter().filter(|h| p.has(h)).collect();
    if given.len() > 1 {
        return Err(FieldError::new(
            p.path(),
            format!(
                "{} takes exactly one of tcpSocket, httpGet, exec, grpc; got {}",
                p.path(),
                given.join(" and ")
            ),
        ));
    }
    let mut action = None;
    if let Some(mut t) = p.mapping("tcpSocket")? {
        let port = port_ref(&mut t, "port")?;
        rest.extend(t.rest());
        action = Some(ProbeAction::Tcp { port });
    }
    if let Some(h) = p.mapping("httpGet")? {
        action = Some(ProbeAction::Http(http_get(h, rest, left_out)?));
    }
    let probe = Probe {
        initial_delay_seconds: p.uint("initialDelaySeconds")?,
        period_seconds: p.uint("periodSeconds")?,
        timeout_seconds: p.uint("timeoutSeconds")?,
        success_threshold: p.uint("successThreshold")?,
        failure_threshold: p.uint("failureThreshold")?,
        action,
    };
    rest.extend(p.rest());
    Ok(probe)
}

/// A port as Kubernetes writes it: a number, or the name of a port.
fn port_ref(f: &mut Fields, key: &str) -> Result<Option<PortRef>, FieldError> {
    let field = super::fields::join(f.path(), key);
    match f.value(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(PortRef::Name(s))),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(|n| Some(PortRef::Number(n)))
            .ok_or_else(|| {
                FieldError::new(
                    &field,
                    format!("{field} must be a port number or a port name, got {v}"),
                )
            }),
    }
}

/// `probe.httpGet` in gslb's terms (see [`HttpProbe`]).
fn http_get(
    mut h: Fields,
    rest: &mut Vec<String>,
    left_out: &mut Vec<(String, String)>,
) -> Result<HttpProbe, FieldError> {
    let path = h.string("path")?;
    let port = port_ref(&mut h, "port")?;
    let scheme = h.string("scheme")?;
    let k8s_host = h.string("host")?;
    let host_field = super::fields::join(h.path(), "host");
    let mut host_header: Option<String> = None;
    let mut headers = Vec::new();
    for (path, v) in h.list("httpHeaders")? {
        let mut e = Fields::new(path, v)?;
        let name = e.string("name")?.unwrap_or_default();
        let value = e.string("value")?.unwrap_or_default();
        let here = e.path().to_string();
        rest.extend(e.rest());
        let lower = name.to_ascii_lowercase();
        if lower == "host" {
            if host_header.is_some() {
                left_out.push((
                    here,
                    "not mapped: a second Host header; the first one is gslb's httpGet.host".into(),
                ));
            } else {
                host_header = Some(value);
            }
        } else if let Some(why) = reserved_header(&lower) {
            left_out.push((here, format!("not mapped: {why}")));
        } else {
            headers.push((name, value));
        }
    }
    rest.extend(h.rest());
    // Kubernetes' `host` is where the kubelet connects (and so the Host header when
    // no Host header is given); gslb connects to each target's probe address and
    // sends `httpGet.host` as Host header and TLS server name.
    let host = match (host_header, k8s_host) {
        (Some(header), Some(_)) => {
            left_out.push((
                host_field,
                "not mapped: the address the kubelet connects to; gslb connects to each target's address, and the Host header gives the name it sends".into(),
            ));
            Some(header)
        }
        (Some(header), None) => Some(header),
        (None, Some(host)) if host.parse::<std::net::IpAddr>().is_ok() => {
            left_out.push((
                host_field,
                "not mapped: one address for every workload cannot be a per-target probe address; gslb connects to each target's address".into(),
            ));
            None
        }
        (None, host) => host,
    };
    Ok(HttpProbe {
        path,
        port,
        scheme,
        host,
        headers,
    })
}

fn destination_rule(
    source: Arc<Source>,
    mut spec: Fields,
    rest: &mut Vec<String>,
) -> Result<DestinationRule, FieldError> {
    let host = spec
        .string("host")?
        .ok_or_else(|| FieldError::new("spec.host", "spec.host is required"))?;
    let mut locality = None;
    let mut outlier_detection = false;
    let mut warmup_seconds = None;
    if let Some(mut tp) = spec.mapping("trafficPolicy")? {
        // Known but not mapped: named by `rest` below with its reason. Only whether
        // it is there matters (see `DestinationRule::outlier_detection`).
        outlier_detection = tp.has("outlierDetection");
        if let Some(mut lb) = tp.mapping("loadBalancer")? {
            warmup_seconds = duration_seconds(&mut lb, "warmupDurationSecs")?;
            if let Some(mut l) = lb.mapping("localityLbSetting")? {
                let mut distribute = Vec::new();
                for (path, v) in l.list("distribute")? {
                    let mut d = Fields::new(path, v)?;
                    let from = d.string("from")?.ok_or_else(|| {
                        FieldError::new(
                            super::fields::join(d.path(), "from"),
                            format!("{}.from is required", d.path()),
                        )
                    })?;
                    let to = d.uint_map("to")?;
                    distribute.push(Distribute {
                        path: d.path().to_string(),
                        from,
                        to,
                    });
                    rest.extend(d.rest());
                }
                let mut failover = Vec::new();
                for (path, v) in l.list("failover")? {
                    let mut fo = Fields::new(path, v)?;
                    let mut req = |k: &str| {
                        let field = super::fields::join(fo.path(), k);
                        fo.string(k)?
                            .ok_or_else(|| FieldError::new(&field, format!("{field} is required")))
                    };
                    let from = req("from")?;
                    let to = req("to")?;
                    failover.push(Failover {
                        path: fo.path().to_string(),
                        from,
                        to,
                    });
                    rest.extend(fo.rest());
                }
                locality = Some(LocalityLb {
                    enabled: l.boolean("enabled")?,
                    distribute,
                    failover,
                });
                rest.extend(l.rest());
            }
            rest.extend(lb.rest());
        }
        rest.extend(tp.rest());
    }
    rest.extend(spec.rest());
    Ok(DestinationRule {
        source,
        host,
        locality,
        outlier_detection,
        warmup_seconds,
    })
}

/// A protobuf Duration as Istio's YAML writes it (`60s`, `1.5s`, also `1m30s`), in
/// whole seconds rounded up.
fn duration_seconds(f: &mut Fields, key: &str) -> Result<Option<u64>, FieldError> {
    let field = super::fields::join(f.path(), key);
    let Some(text) = f.string(key)? else {
        return Ok(None);
    };
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        FieldError::new(
            &field,
            format!("{field} must be a duration such as \"60s\", got {text:?}: {e}"),
        )
    })?;
    Ok(Some(d.as_secs() + u64::from(d.subsec_nanos() > 0)))
}
