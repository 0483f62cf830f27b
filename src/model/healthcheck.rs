//! The `healthCheck` of a NameService and the probe endpoints it makes.
//!
//! A health check takes one of three probe shapes, the last two as Kubernetes (and
//! Istio's WorkloadGroup) spell them: `port` (a TCP connect), `tcpSocket: {port}`
//! (the same) or `httpGet: {path, port, scheme, host, httpHeaders}`. The stored
//! resource keeps the shape it was written in, so GET output PUTs back unchanged.

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ValidationError;
use super::nameservice::{err, in_range};

/// Health-check settings (Kubernetes / Istio WorkloadGroup probe fields).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// What a probe does; serialized as one of `port`, `tcpSocket`, `httpGet`.
    #[serde(flatten)]
    pub probe: Probe,
    /// Seconds after a target's probe endpoint first appears before its first probe.
    #[serde(default)]
    pub initial_delay_seconds: u32,
    pub period_seconds: u32,
    pub timeout_seconds: u32,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    /// Flap damping (docs/health-checks.md): off by default, so the failover and
    /// recovery bounds of the thresholds hold unchanged.
    #[serde(default)]
    pub flap_damping: bool,
}

impl HealthCheck {
    /// The probe's port (a target's `port` overrides it).
    pub fn port(&self) -> u16 {
        match &self.probe {
            Probe::Port(p) => *p,
            Probe::TcpSocket(t) => t.port,
            Probe::HttpGet(h) => h.port,
        }
    }

    /// What the probes check, whatever the spelling.
    pub fn check(&self) -> Check {
        match &self.probe {
            Probe::Port(_) | Probe::TcpSocket(_) => Check::Tcp,
            Probe::HttpGet(h) => Check::Http(Arc::new(HttpCheck {
                https: h.scheme == Scheme::Https,
                path: h.path.clone(),
                host: h.host.clone(),
                headers: h
                    .http_headers
                    .iter()
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect(),
            })),
        }
    }
}

/// The probe shape, exactly one of the three.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Probe {
    /// `port`: a TCP connect.
    Port(u16),
    /// `tcpSocket`: a TCP connect, Kubernetes' spelling.
    TcpSocket(TcpSocket),
    /// `httpGet`: an HTTP(S) GET that must answer 200-399.
    HttpGet(HttpGet),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TcpSocket {
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scheme {
    #[serde(rename = "HTTP")]
    Http,
    #[serde(rename = "HTTPS")]
    Https,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpGet {
    pub path: String,
    pub port: u16,
    pub scheme: Scheme,
    /// The Host header (and TLS server name); the connection always goes to the
    /// target's probe address. Absent: the probe address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default)]
    pub http_headers: Vec<HttpHeader>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

/// What a probe checks, independent of how the resource spells it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Check {
    /// The TCP handshake completes.
    Tcp,
    /// An HTTP(S) GET answers 200-399.
    Http(Arc<HttpCheck>),
}

/// The parameters of an HTTP(S) probe.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpCheck {
    pub https: bool,
    /// Path and query, starting with `/`.
    pub path: String,
    pub host: Option<String>,
    /// Extra request headers, in order.
    pub headers: Vec<(String, String)>,
}

impl HttpCheck {
    /// A fingerprint of the parameters, the same on every instance and in every
    /// version (xxh3, 64 bits, over a length-prefixed encoding).
    pub fn fingerprint(&self) -> u64 {
        let mut b = Vec::with_capacity(64);
        let mut put = |s: &str| {
            b.extend_from_slice(&(s.len() as u32).to_le_bytes());
            b.extend_from_slice(s.as_bytes());
        };
        put(if self.https { "https" } else { "http" });
        put(&self.path);
        put(self.host.as_deref().unwrap_or(""));
        for (n, v) in &self.headers {
            put(n);
            put(v);
        }
        xxhash_rust::xxh3::xxh3_64(&b)
    }
}

/// What a health verdict is kept for. The probe itself is shared by every endpoint
/// with the same (address, port, check, period, timeout) — one probe per period
/// however many NameServices point at it — while the verdict is kept per (probe,
/// failureThreshold, successThreshold), because two services that read the same
/// probe stream with different thresholds may disagree about it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub address: IpAddr,
    pub port: u16,
    pub check: Check,
    pub period_seconds: u32,
    pub timeout_seconds: u32,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub flap_damping: bool,
}

impl Endpoint {
    /// `tcp`, `http` or `https`.
    pub fn kind(&self) -> &'static str {
        match &self.check {
            Check::Tcp => "tcp",
            Check::Http(h) if h.https => "https",
            Check::Http(_) => "http",
        }
    }

    /// The endpoint's id: a canonical string naming the probe (kind, address,
    /// port, period, timeout, HTTP parameters) and the thresholds, identical on
    /// every instance that reads the same resource. Used as a key (in etcd, under
    /// `health/<id>/<instance>`): it holds no `/`.
    ///
    /// `tcp-192.0.2.10-443-p5-t2-f3-s1`, `https-2001:db8::1-8443-p5-t2-f3-s1-h<16 hex>`;
    /// `-d` after the thresholds with flap damping.
    pub fn id(&self) -> String {
        let kind = self.kind();
        let fp = match &self.check {
            Check::Tcp => None,
            Check::Http(h) => Some(h.fingerprint()),
        };
        let mut id = format!(
            "{kind}-{}-{}-p{}-t{}-f{}-s{}",
            self.address,
            self.port,
            self.period_seconds,
            self.timeout_seconds,
            self.failure_threshold,
            self.success_threshold
        );
        if self.flap_damping {
            id.push_str("-d");
        }
        if let Some(fp) = fp {
            id.push_str(&format!("-h{fp:016x}"));
        }
        id
    }
}

// ---- input ----------------------------------------------------------------------

/// `healthCheck` as a client may send it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct HealthCheckInput {
    port: Option<u32>,
    tcp_socket: Option<TcpSocketInput>,
    http_get: Option<HttpGetInput>,
    initial_delay_seconds: Option<u32>,
    period_seconds: Option<u32>,
    timeout_seconds: Option<u32>,
    failure_threshold: Option<u32>,
    success_threshold: Option<u32>,
    flap_damping: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TcpSocketInput {
    port: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HttpGetInput {
    path: Option<String>,
    port: Option<u32>,
    scheme: Option<Scheme>,
    host: Option<String>,
    http_headers: Option<Vec<HttpHeaderInput>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpHeaderInput {
    name: Option<String>,
    value: Option<String>,
}

/// At most this many `httpHeaders`.
pub const MAX_HTTP_HEADERS: usize = 16;
/// Longest `httpGet.path`, header name and header value.
pub const MAX_PATH: usize = 2048;
pub const MAX_HEADER_NAME: usize = 256;
pub const MAX_HEADER_VALUE: usize = 4096;

fn port(field: &str, p: Option<u32>) -> Result<u16, ValidationError> {
    let p = p.ok_or_else(|| err(field, format!("{field} is required")))?;
    Ok(in_range(field, p, 1, 65_535)? as u16)
}

/// RFC 9110 `token` characters (header field names).
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// A host name (letters, digits, `-`, `.`; labels of 1 to 63) or an IP literal.
fn valid_host(h: &str) -> bool {
    if h.parse::<IpAddr>().is_ok() {
        return true;
    }
    let h = h.strip_suffix('.').unwrap_or(h);
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

impl HealthCheckInput {
    /// The validated health check with every default filled in.
    pub(super) fn validate(self) -> Result<HealthCheck, ValidationError> {
        let given: Vec<&str> = [
            self.port.is_some().then_some("port"),
            self.tcp_socket.is_some().then_some("tcpSocket"),
            self.http_get.is_some().then_some("httpGet"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if given.len() > 1 {
            return Err(err(
                "healthCheck",
                format!(
                    "healthCheck takes exactly one of port, tcpSocket, httpGet; got {}",
                    given.join(" and ")
                ),
            ));
        }
        let probe = if let Some(t) = self.tcp_socket {
            Probe::TcpSocket(TcpSocket {
                port: port("healthCheck.tcpSocket.port", t.port)?,
            })
        } else if let Some(h) = self.http_get {
            Probe::HttpGet(h.validate()?)
        } else {
            let p = self.port.ok_or_else(|| {
                err(
                    "healthCheck.port",
                    "healthCheck.port is required (or one of healthCheck.tcpSocket, healthCheck.httpGet)",
                )
            })?;
            Probe::Port(in_range("healthCheck.port", p, 1, 65_535)? as u16)
        };
        let initial_delay = in_range(
            "healthCheck.initialDelaySeconds",
            self.initial_delay_seconds.unwrap_or(0),
            0,
            3600,
        )?;
        let period = in_range(
            "healthCheck.periodSeconds",
            self.period_seconds.unwrap_or(5),
            1,
            3600,
        )?;
        let timeout = self.timeout_seconds.unwrap_or(2.min(period));
        let timeout = in_range("healthCheck.timeoutSeconds", timeout, 1, period)?;
        let failure = in_range(
            "healthCheck.failureThreshold",
            self.failure_threshold.unwrap_or(3),
            1,
            10,
        )?;
        let success = in_range(
            "healthCheck.successThreshold",
            self.success_threshold.unwrap_or(1),
            1,
            10,
        )?;
        Ok(HealthCheck {
            probe,
            initial_delay_seconds: initial_delay,
            period_seconds: period,
            timeout_seconds: timeout,
            failure_threshold: failure,
            success_threshold: success,
            flap_damping: self.flap_damping.unwrap_or(false),
        })
    }
}

impl HttpGetInput {
    fn validate(self) -> Result<HttpGet, ValidationError> {
        const F: &str = "healthCheck.httpGet";
        let path = self.path.unwrap_or_else(|| "/".to_string());
        if !path.starts_with('/')
            || path.len() > MAX_PATH
            || !path.bytes().all(|c| c.is_ascii_graphic() && c != b'#')
        {
            return Err(err(
                format!("{F}.path"),
                format!(
                    "{F}.path must start with / and hold at most {MAX_PATH} visible ASCII characters (no #, percent-encode the rest), got {path:?}"
                ),
            ));
        }
        let port = port(&format!("{F}.port"), self.port)?;
        if let Some(h) = &self.host
            && !valid_host(h)
        {
            return Err(err(
                format!("{F}.host"),
                format!("{F}.host must be a host name or an IP literal, got {h:?}"),
            ));
        }
        let headers_in = self.http_headers.unwrap_or_default();
        if headers_in.len() > MAX_HTTP_HEADERS {
            return Err(err(
                format!("{F}.httpHeaders"),
                format!(
                    "{F}.httpHeaders may have at most {MAX_HTTP_HEADERS} entries, got {}",
                    headers_in.len()
                ),
            ));
        }
        let mut http_headers = Vec::with_capacity(headers_in.len());
        for (i, h) in headers_in.into_iter().enumerate() {
            let f = |k: &str| format!("{F}.httpHeaders[{i}].{k}");
            let name = h
                .name
                .ok_or_else(|| err(f("name"), format!("{} is required", f("name"))))?;
            if name.is_empty() || name.len() > MAX_HEADER_NAME || !name.bytes().all(is_tchar) {
                return Err(err(
                    f("name"),
                    format!(
                        "{} must be an HTTP header name (letters, digits and !#$%&'*+-.^_`|~, at most {MAX_HEADER_NAME}), got {name:?}",
                        f("name")
                    ),
                ));
            }
            let lower = name.to_ascii_lowercase();
            let reserved = match lower.as_str() {
                "host" => Some("set healthCheck.httpGet.host instead"),
                "user-agent" => Some("gslb sends its own, naming the instance"),
                "content-length" | "transfer-encoding" | "connection" | "te" | "upgrade"
                | "trailer" | "keep-alive" | "proxy-connection" => {
                    Some("gslb manages the connection and sends no body")
                }
                _ => None,
            };
            if let Some(why) = reserved {
                return Err(err(
                    f("name"),
                    format!("{} {name:?} is not allowed: {why}", f("name")),
                ));
            }
            let value = h
                .value
                .ok_or_else(|| err(f("value"), format!("{} is required", f("value"))))?;
            if value.len() > MAX_HEADER_VALUE
                || !value
                    .bytes()
                    .all(|c| c == b'\t' || (b' '..=b'~').contains(&c))
            {
                return Err(err(
                    f("value"),
                    format!(
                        "{} must be at most {MAX_HEADER_VALUE} visible ASCII characters, spaces or tabs, got {value:?}",
                        f("value")
                    ),
                ));
            }
            http_headers.push(HttpHeader { name, value });
        }
        Ok(HttpGet {
            path,
            port,
            scheme: self.scheme.unwrap_or(Scheme::Http),
            host: self.host,
            http_headers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NameService;
    use serde_json::{Value, json};

    fn with_hc(hc: Value) -> Result<NameService, ValidationError> {
        NameService::from_json(json!({
            "name": "app.gslb.example", "policy": "RoundRobin", "healthCheck": hc,
            "targets": [{"name": "dc1", "address": "192.0.2.10"},
                        {"name": "dc2", "address": "192.0.2.11", "port": 9443}]
        }))
    }

    #[test]
    fn three_shapes_each_round_trip_in_their_own_spelling() {
        for hc in [
            json!({"port": 443}),
            json!({"tcpSocket": {"port": 443}}),
            json!({"httpGet": {"port": 8080}}),
            json!({"httpGet": {"path": "/healthz?full=1", "port": 8443, "scheme": "HTTPS",
                               "host": "app.example", "httpHeaders": [{"name": "X-Probe", "value": "gslb 1"}]},
                   "initialDelaySeconds": 30}),
        ] {
            let ns = with_hc(hc.clone()).unwrap_or_else(|e| panic!("{hc}: {e}"));
            let out = serde_json::to_value(&ns).unwrap();
            let out_hc = &out["healthCheck"];
            // Only the shape that was written comes back, with defaults filled in.
            let shapes: Vec<&str> = ["port", "tcpSocket", "httpGet"]
                .into_iter()
                .filter(|k| out_hc.get(*k).is_some())
                .collect();
            assert_eq!(shapes.len(), 1, "{out_hc}");
            assert!(hc.get(shapes[0]).is_some(), "{hc} came back as {out_hc}");
            assert!(out_hc["flapDamping"].is_boolean(), "{out_hc}");
            for k in [
                "initialDelaySeconds",
                "periodSeconds",
                "timeoutSeconds",
                "failureThreshold",
                "successThreshold",
            ] {
                assert!(out_hc[k].is_u64(), "{k} missing in {out_hc}");
            }
            // GET output PUTs back unchanged.
            let again = NameService::from_json(out.clone()).unwrap();
            assert_eq!(again, ns);
            assert_eq!(serde_json::to_value(&again).unwrap(), out);
        }
        let ns = with_hc(json!({"httpGet": {"port": 8080}})).unwrap();
        let out = serde_json::to_value(&ns).unwrap();
        assert_eq!(
            out["healthCheck"]["httpGet"],
            json!({"path": "/", "port": 8080, "scheme": "HTTP", "httpHeaders": []})
        );
        assert_eq!(out["healthCheck"]["initialDelaySeconds"], 0);
    }

    #[test]
    fn endpoints_carry_the_check_and_the_target_port() {
        let ns =
            with_hc(json!({"httpGet": {"path": "/h", "port": 8080, "scheme": "HTTPS"}})).unwrap();
        let e0 = ns.endpoint(0).unwrap();
        let e1 = ns.endpoint(1).unwrap();
        assert_eq!((e0.port, e1.port), (8080, 9443));
        let Check::Http(h) = &e0.check else {
            panic!("{e0:?}")
        };
        assert!(h.https && h.path == "/h" && h.host.is_none());
        // TCP either way it is spelled.
        let a = with_hc(json!({"port": 443})).unwrap().endpoint(0).unwrap();
        let b = with_hc(json!({"tcpSocket": {"port": 443}}))
            .unwrap()
            .endpoint(0)
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.id(), "tcp-192.0.2.10-443-p5-t2-f3-s1");
    }

    #[test]
    fn ids_are_stable_and_tell_probes_apart() {
        let id = |hc: Value| with_hc(hc).unwrap().endpoint(0).unwrap().id();
        let base = json!({"httpGet": {"path": "/h", "port": 80}});
        let a = id(base.clone());
        // Fixed: the id must not change between versions (it keys observations
        // that instances of different versions share).
        assert_eq!(a, "http-192.0.2.10-80-p5-t2-f3-s1-h068cbcc04c63d530");
        assert!(!a.contains('/'));
        let others = [
            json!({"httpGet": {"path": "/i", "port": 80}}),
            json!({"httpGet": {"path": "/h", "port": 80, "scheme": "HTTPS"}}),
            json!({"httpGet": {"path": "/h", "port": 80, "host": "x.example"}}),
            json!({"httpGet": {"path": "/h", "port": 80, "httpHeaders": [{"name": "a", "value": "b"}]}}),
            json!({"httpGet": {"path": "/h", "port": 80}, "failureThreshold": 2}),
            json!({"httpGet": {"path": "/h", "port": 80}, "periodSeconds": 6}),
            json!({"httpGet": {"path": "/h", "port": 80}, "flapDamping": true}),
            json!({"port": 80}),
        ];
        for o in others {
            assert_ne!(id(o.clone()), a, "{o}");
        }
        let v6 = NameService::from_json(json!({
            "name": "app.gslb.example", "policy": "RoundRobin", "healthCheck": {"port": 443},
            "targets": [{"name": "dc1", "address": "2001:DB8::0:1"}]
        }))
        .unwrap();
        assert_eq!(
            v6.endpoint(0).unwrap().id(),
            "tcp-2001:db8::1-443-p5-t2-f3-s1"
        );
    }

    #[test]
    fn each_broken_rule_names_its_field() {
        let cases: Vec<(&str, Value)> = vec![
            ("healthCheck.port", json!({})),
            ("healthCheck", json!({"port": 1, "tcpSocket": {"port": 1}})),
            ("healthCheck", json!({"port": 1, "httpGet": {"port": 1}})),
            (
                "healthCheck",
                json!({"tcpSocket": {"port": 1}, "httpGet": {"port": 1}}),
            ),
            ("healthCheck.tcpSocket.port", json!({"tcpSocket": {}})),
            (
                "healthCheck.tcpSocket.port",
                json!({"tcpSocket": {"port": 0}}),
            ),
            (
                "healthCheck.tcpSocket.host",
                json!({"tcpSocket": {"port": 1, "host": "x"}}),
            ),
            (
                "healthCheck.httpGet.port",
                json!({"httpGet": {"path": "/"}}),
            ),
            (
                "healthCheck.httpGet.port",
                json!({"httpGet": {"port": 65536}}),
            ),
            (
                "healthCheck.httpGet.path",
                json!({"httpGet": {"port": 1, "path": "healthz"}}),
            ),
            (
                "healthCheck.httpGet.path",
                json!({"httpGet": {"port": 1, "path": "/a b"}}),
            ),
            (
                "healthCheck.httpGet.path",
                json!({"httpGet": {"port": 1, "path": "/a#b"}}),
            ),
            (
                "healthCheck.httpGet.scheme",
                json!({"httpGet": {"port": 1, "scheme": "https"}}),
            ),
            (
                "healthCheck.httpGet.scheme",
                json!({"httpGet": {"port": 1, "scheme": "FTP"}}),
            ),
            (
                "healthCheck.httpGet.host",
                json!({"httpGet": {"port": 1, "host": "a b"}}),
            ),
            (
                "healthCheck.httpGet.host",
                json!({"httpGet": {"port": 1, "host": ""}}),
            ),
            (
                "healthCheck.httpGet.httpHeaders[0].name",
                json!({"httpGet": {"port": 1, "httpHeaders": [{"name": "X Y", "value": "1"}]}}),
            ),
            (
                "healthCheck.httpGet.httpHeaders[0].name",
                json!({"httpGet": {"port": 1, "httpHeaders": [{"name": "Host", "value": "a"}]}}),
            ),
            (
                "healthCheck.httpGet.httpHeaders[1].name",
                json!({"httpGet": {"port": 1, "httpHeaders": [{"name": "a", "value": "1"}, {"name": "user-agent", "value": "x"}]}}),
            ),
            (
                "healthCheck.httpGet.httpHeaders[0].value",
                json!({"httpGet": {"port": 1, "httpHeaders": [{"name": "a", "value": "x\r\ny: 1"}]}}),
            ),
            (
                "healthCheck.httpGet.httpHeaders[0].value",
                json!({"httpGet": {"port": 1, "httpHeaders": [{"name": "a"}]}}),
            ),
            (
                "healthCheck.httpGet.httpHeaders[0].extra",
                json!({"httpGet": {"port": 1, "httpHeaders": [{"name": "a", "value": "b", "extra": 1}]}}),
            ),
            (
                "healthCheck.httpGet.method",
                json!({"httpGet": {"port": 1, "method": "HEAD"}}),
            ),
            (
                "healthCheck.initialDelaySeconds",
                json!({"port": 1, "initialDelaySeconds": 3601}),
            ),
            (
                "healthCheck.initialDelaySeconds",
                json!({"port": 1, "initialDelaySeconds": -1}),
            ),
            (
                "healthCheck.flapDamping",
                json!({"port": 1, "flapDamping": "yes"}),
            ),
        ];
        for (field, hc) in cases {
            let e = with_hc(hc.clone()).expect_err(&format!("accepted {hc}"));
            assert_eq!(e.field, field, "{hc}: {e}");
        }
        let many: Vec<Value> = (0..17)
            .map(|i| json!({"name": format!("x-{i}"), "value": "1"}))
            .collect();
        let e = with_hc(json!({"httpGet": {"port": 1, "httpHeaders": many}})).unwrap_err();
        assert_eq!(e.field, "healthCheck.httpGet.httpHeaders");
        // Limits are inclusive.
        let path = format!("/{}", "a".repeat(MAX_PATH - 1));
        with_hc(json!({"httpGet": {"port": 1, "path": path}, "initialDelaySeconds": 3600}))
            .unwrap();
    }
}
