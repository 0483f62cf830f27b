//! Configuration: the TOML file, merged with command-line flags, validated.
//!
//! Precedence: flags > config file > defaults (CONTRACT §1).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

use crate::dns::cookie::Secret;
use crate::dns::rrl::Settings as RrlSettings;
use crate::model::Locality;
use crate::policy::{Topology, TopologyEntry};

pub const DEFAULT_DNS_LISTEN: &str = "127.0.0.1:1053";
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "data";
pub const DEFAULT_ZONES_DIR: &str = "zones";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    Invalid {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{0}")]
    Flag(String),
}

/// The config file as written (every key optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    dns_listen: Option<Vec<toml::Spanned<String>>>,
    api_listen: Option<toml::Spanned<String>>,
    data_dir: Option<PathBuf>,
    zones_dir: Option<PathBuf>,
    api_token: Option<String>,
    #[serde(default)]
    api_tokens: Vec<toml::Spanned<ApiTokenInput>>,
    #[serde(default)]
    topology: Vec<toml::Spanned<TopologyInput>>,
    nsid: Option<toml::Spanned<String>>,
    cookie_secret: Option<toml::Spanned<String>>,
    tcp_idle_timeout_seconds: Option<toml::Spanned<i64>>,
    tcp_max_clients: Option<toml::Spanned<i64>>,
    tcp_max_per_source: Option<toml::Spanned<i64>>,
    api_max_connections: Option<toml::Spanned<i64>>,
    api_header_timeout_seconds: Option<toml::Spanned<i64>>,
    api_idle_timeout_seconds: Option<toml::Spanned<i64>>,
    rrl: Option<RrlInput>,
    registry: Option<toml::Spanned<RegistryInput>>,
    health: Option<HealthInput>,
    resolver: Option<ResolverInput>,
}

/// `[resolver]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolverInput {
    servers: Option<Vec<toml::Spanned<String>>>,
    stale_seconds: Option<toml::Spanned<u64>>,
}

/// The largest `[resolver] stale_seconds`: a week.
pub const MAX_STALE_SECONDS: u64 = 7 * 86_400;

/// `[health]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthInput {
    deny: Option<Vec<toml::Spanned<String>>>,
    quorum: Option<toml::Spanned<String>>,
}

/// `[health]`, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthConfig {
    /// `deny`: ranges no target `address` or `probeAddress` may be in, besides the
    /// unspecified, multicast, broadcast and link-local addresses that are always
    /// refused (CONTRACT §8).
    pub deny: Vec<ipnet::IpNet>,
    /// `quorum`: who decides a target's verdict (CONTRACT §7).
    pub quorum: Quorum,
}

/// `[health] quorum`: whose probes decide the verdict the answers use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Quorum {
    /// Each instance's own probes (the default).
    #[default]
    Local,
    /// The majority of the live instances' published verdicts (etcd backend only).
    Majority,
}

/// `[rrl]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RrlInput {
    enabled: Option<bool>,
    responses_per_second: Option<toml::Spanned<i64>>,
    slip: Option<toml::Spanned<i64>>,
    window_seconds: Option<toml::Spanned<i64>>,
    ipv4_prefix: Option<toml::Spanned<i64>>,
    ipv6_prefix: Option<toml::Spanned<i64>>,
    exempt: Option<Vec<toml::Spanned<String>>>,
    table_size: Option<toml::Spanned<i64>>,
}

/// `[registry]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryInput {
    backend: Option<toml::Spanned<String>>,
    endpoints: Option<toml::Spanned<Vec<toml::Spanned<String>>>>,
    prefix: Option<toml::Spanned<String>>,
    instance: Option<toml::Spanned<String>>,
    lease_ttl_seconds: Option<toml::Spanned<i64>>,
    username: Option<toml::Spanned<String>>,
    password_file: Option<toml::Spanned<PathBuf>>,
    ca_file: Option<toml::Spanned<PathBuf>>,
    cert_file: Option<toml::Spanned<PathBuf>>,
    key_file: Option<toml::Spanned<PathBuf>>,
}

/// `[[api_tokens]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiTokenInput {
    name: toml::Spanned<String>,
    token: toml::Spanned<String>,
    role: toml::Spanned<String>,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// GET (and HEAD) only; any other method gets 403.
    Read,
    /// Everything.
    Write,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
        }
    }
}

/// One API token: `[[api_tokens]]`, or `api_token` (named [`LEGACY_TOKEN_NAME`],
/// role write).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Shown in events as the author of a write; never the secret.
    pub name: String,
    pub token: String,
    pub role: Role,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .field("token", &"<set>")
            .field("role", &self.role)
            .finish()
    }
}

/// The name events give the token of `api_token` / `GSLB_API_TOKEN` / `--api-token`.
pub const LEGACY_TOKEN_NAME: &str = "api_token";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopologyInput {
    cidr: toml::Spanned<String>,
    locality: toml::Spanned<String>,
}

/// Flags of `gslb serve` / `gslb check` that override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub dns_listen: Vec<String>,
    pub api_listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub zones_dir: Option<PathBuf>,
    pub api_token: Option<String>,
    /// `--etcd-endpoint` (repeatable): selects the etcd backend, replaces the file's list.
    pub etcd_endpoints: Vec<String>,
    /// `--instance`.
    pub instance: Option<String>,
}

/// Where the NameService registry lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded sled store: this instance alone.
    Sled,
    /// A shared etcd (v3) registry; sled keeps this instance's local copy.
    Etcd,
}

/// TLS material for the etcd connection, read at load time (so `gslb check` and a
/// bad path fail early, naming the file).
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// PEM CA bundle that signs etcd's server certificates (`ca_file`).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate and key (`cert_file`, `key_file`), for etcd's
    /// `--client-cert-auth`.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// `[registry]`, validated.
#[derive(Clone)]
pub struct RegistryConfig {
    pub backend: Backend,
    /// etcd client URLs (`http://host:port` or `https://host:port`).
    pub endpoints: Vec<String>,
    /// Every key gslb writes starts with it; ends with `/`.
    pub prefix: String,
    /// Liveness of this instance's keys in etcd.
    pub lease_ttl_seconds: u32,
    /// etcd authentication: user name and the password read from `password_file`.
    pub username: Option<String>,
    pub password: Option<String>,
    /// Set when `ca_file` or `cert_file`/`key_file` is given.
    pub tls: Option<EtcdTls>,
}

impl std::fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password and the key are never printed.
        f.debug_struct("RegistryConfig")
            .field("backend", &self.backend)
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("lease_ttl_seconds", &self.lease_ttl_seconds)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field(
                "tls",
                &self
                    .tls
                    .as_ref()
                    .map(|t| (t.ca_pem.is_some(), t.identity.is_some())),
            )
            .finish()
    }
}

pub const DEFAULT_ETCD_ENDPOINT: &str = "http://127.0.0.1:2379";
pub const DEFAULT_PREFIX: &str = "/gslb/";
pub const DEFAULT_LEASE_TTL_SECONDS: u32 = 10;
pub const LEASE_TTL_RANGE: std::ops::RangeInclusive<i64> = 2..=60;

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Sled,
            endpoints: vec![DEFAULT_ETCD_ENDPOINT.to_string()],
            prefix: DEFAULT_PREFIX.to_string(),
            lease_ttl_seconds: DEFAULT_LEASE_TTL_SECONDS,
            username: None,
            password: None,
            tls: None,
        }
    }
}

/// Checks an instance name: it is part of etcd keys, HTTP headers and metrics
/// labels, so it is kept to a host-name-like alphabet.
pub fn check_instance_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "instance name {name:?} must be 1-63 characters of [A-Za-z0-9._-] starting with a letter or digit"
        ))
    }
}

/// Checks an etcd client URL: `http://` or `https://`, a host, an optional port, no path.
pub fn check_endpoint(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("etcd endpoint {url:?} must start with http:// or https://"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!(
            "etcd endpoint {url:?} must be scheme://host[:port] (no path, query or credentials)"
        ));
    }
    // host[:port], with IPv6 hosts in brackets.
    let port = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("etcd endpoint {url:?}: unclosed [ in the host"))?;
        host.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("etcd endpoint {url:?}: {host:?} is not an IPv6 address"))?;
        match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| {
                format!("etcd endpoint {url:?}: expected :PORT after the IPv6 host")
            })?),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((host, p)) if !host.is_empty() => Some(p),
            Some(_) => return Err(format!("etcd endpoint {url:?} has no host")),
            None => None,
        }
    };
    if let Some(p) = port
        && p.parse::<u16>().ok().filter(|p| *p > 0).is_none()
    {
        return Err(format!("etcd endpoint {url:?}: port {p:?} is not 1-65535"));
    }
    Ok(())
}

/// This machine's host name (the default instance name).
fn host_name() -> Result<String, String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(format!(
            "cannot read the host name ({}): set [registry] instance or --instance",
            std::io::Error::last_os_error()
        ));
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8(buf[..end].to_vec())
        .map_err(|_| "the host name is not UTF-8: set [registry] instance or --instance".into())
}

/// The effective configuration.
#[derive(Clone)]
pub struct Config {
    pub dns_listen: Vec<SocketAddr>,
    pub api_listen: SocketAddr,
    pub data_dir: PathBuf,
    pub zones_dir: PathBuf,
    pub api_token: Option<String>,
    /// `[[api_tokens]]`: named tokens with a role, besides `api_token`.
    pub api_tokens: Vec<ApiToken>,
    pub topology: std::sync::Arc<Topology>,
    /// The name server identifier (RFC 5001), 1 to 128 bytes; `None`: no NSID.
    pub nsid: Option<String>,
    /// The server cookie secret; `None`: random per start.
    pub cookie_secret: Option<Secret>,
    pub rrl: RrlConfig,
    pub tcp_idle_timeout_seconds: u64,
    pub tcp_max_clients: usize,
    pub tcp_max_per_source: usize,
    /// `api_max_connections`, `api_header_timeout_seconds`, `api_idle_timeout_seconds`.
    pub api_limits: crate::api::limits::Limits,
    /// This instance's name (`[registry] instance`, `--instance`, default the host
    /// name): `/api/v1/instances`, etcd keys, the probes' User-Agent.
    pub instance: String,
    pub registry: RegistryConfig,
    pub health: HealthConfig,
    /// `[resolver]`: how fqdn targets are resolved.
    pub resolver: crate::resolver::Settings,
    /// The config file, when one was given (for messages, and for a reload).
    pub file: Option<PathBuf>,
    /// The flags it was loaded with (a reload loads the file again under them).
    pub overrides: Overrides,
}

/// `[rrl]`: response rate limiting (CONTRACT §8; docs/security.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RrlConfig {
    pub enabled: bool,
    pub limits: RrlSettings,
}

impl Default for RrlConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            limits: RrlSettings {
                responses_per_second: 200,
                slip: 2,
                window_seconds: 15,
                ipv4_prefix: 24,
                ipv6_prefix: 56,
                exempt: vec![
                    "127.0.0.0/8".parse().expect("valid"),
                    "::1/128".parse().expect("valid"),
                ],
                table_size: DEFAULT_RRL_TABLE_SIZE,
            },
        }
    }
}

/// Buckets of the rate limiter's table by default (8 bytes each).
pub const DEFAULT_RRL_TABLE_SIZE: usize = 1 << 16;
pub const DEFAULT_TCP_IDLE_TIMEOUT_SECONDS: u64 = 10;
pub const DEFAULT_TCP_MAX_CLIENTS: usize = 1024;
pub const DEFAULT_TCP_MAX_PER_SOURCE: usize = 64;

impl Config {
    /// What the DNS engine needs of the config: NSID, cookie secret, rate limiter.
    pub fn dns_settings(&self) -> crate::dns::Settings {
        crate::dns::Settings {
            nsid: self.nsid.as_ref().map(|n| n.as_bytes().into()),
            cookie_secret: self.cookie_secret.clone().unwrap_or_else(Secret::random),
            rrl: self
                .rrl
                .enabled
                .then(|| crate::dns::rrl::Rrl::new(&self.rrl.limits)),
        }
    }

    /// The TCP listener's limits. A connection stalled inside a message or on
    /// an answer the client does not read is given as long as an idle one.
    pub fn tcp_limits(&self) -> crate::dns::TcpLimits {
        let idle = std::time::Duration::from_secs(self.tcp_idle_timeout_seconds);
        crate::dns::TcpLimits {
            idle,
            io: idle,
            max_connections: self.tcp_max_clients,
            max_per_source: self.tcp_max_per_source,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is never printed.
        f.debug_struct("Config")
            .field("dns_listen", &self.dns_listen)
            .field("api_listen", &self.api_listen)
            .field("data_dir", &self.data_dir)
            .field("zones_dir", &self.zones_dir)
            .field("api_token", &self.api_token.as_ref().map(|_| "<set>"))
            .field("api_tokens", &self.api_tokens)
            .field("topology_entries", &self.topology.len())
            .field("nsid", &self.nsid)
            // Not even the key's name: nothing secret-looking is ever printed.
            .field(
                "cookies",
                &if self.cookie_secret.is_some() {
                    "<configured key>"
                } else {
                    "<random key per start>"
                },
            )
            .field("rrl", &self.rrl)
            .field("tcp_idle_timeout_seconds", &self.tcp_idle_timeout_seconds)
            .field("tcp_max_clients", &self.tcp_max_clients)
            .field("tcp_max_per_source", &self.tcp_max_per_source)
            .field("api_limits", &self.api_limits)
            .field("instance", &self.instance)
            .field("registry", &self.registry)
            .field("health", &self.health)
            .field("resolver", &self.resolver)
            .finish()
    }
}

/// Checks `[[api_tokens]]`: names and tokens unique (also against `api_token`),
/// names printable in events, tokens usable in an HTTP header.
fn api_tokens(
    input: &[toml::Spanned<ApiTokenInput>],
    legacy: Option<&str>,
    invalid: &impl Fn(std::ops::Range<usize>, String) -> ConfigError,
) -> Result<Vec<ApiToken>, ConfigError> {
    let mut out: Vec<ApiToken> = Vec::with_capacity(input.len());
    for t in input {
        let t = t.get_ref();
        let name = t.name.get_ref();
        let name_ok = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !name_ok {
            return Err(invalid(
                t.name.span(),
                format!("api_tokens.name {name:?} must be 1-64 characters of [A-Za-z0-9._-]"),
            ));
        }
        if name == LEGACY_TOKEN_NAME && legacy.is_some() {
            return Err(invalid(
                t.name.span(),
                format!("api_tokens.name {name:?} is the name of api_token; pick another"),
            ));
        }
        if out.iter().any(|o| o.name == *name) {
            return Err(invalid(
                t.name.span(),
                format!("api_tokens.name {name:?} is listed twice"),
            ));
        }
        let token = t.token.get_ref();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                t.token.span(),
                format!(
                    "api_tokens.token of {name:?} must be non-empty printable ASCII without spaces"
                ),
            ));
        }
        // One secret for two names (or roles) would make the author of a write
        // ambiguous. The secret itself is never printed.
        if out.iter().any(|o| o.token == *token) || legacy == Some(token.as_str()) {
            return Err(invalid(
                t.token.span(),
                format!("api_tokens.token of {name:?} is the same as another token's"),
            ));
        }
        let role = match t.role.get_ref().as_str() {
            "read" => Role::Read,
            "write" => Role::Write,
            other => {
                return Err(invalid(
                    t.role.span(),
                    format!("api_tokens.role {other:?} of {name:?} must be \"read\" or \"write\""),
                ));
            }
        };
        out.push(ApiToken {
            name: name.clone(),
            token: token.clone(),
            role,
        });
    }
    Ok(out)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not an ADDR:PORT socket address (IPv6 as [::1]:53)"))
}

/// Parses a CIDR such as `10.1.0.0/16` or `2001:db8::/32` (host bits must be zero),
/// with a message naming what is wrong with it.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let net: IpNet = match s.parse() {
        Ok(n) => n,
        // ipnet says only "invalid IP address syntax": say which part is wrong.
        Err(_) => {
            let Some((a, _)) = s.split_once('/') else {
                return Err(format!("cidr {s:?} is not ADDRESS/PREFIX"));
            };
            return Err(match a.parse::<std::net::IpAddr>() {
                Err(_) => format!("cidr {s:?}: {a:?} is not an IP address"),
                Ok(addr) => format!(
                    "cidr {s:?}: prefix length must be 0..={}",
                    if addr.is_ipv4() { 32 } else { 128 }
                ),
            });
        }
    };
    if net.addr() != net.network() {
        return Err(format!(
            "cidr {s:?} has host bits set (the network is {})",
            net.trunc()
        ));
    }
    Ok(net)
}

/// Validates `[registry]` (`input`) with the `--etcd-endpoint` flags on top.
fn registry_config(
    input: Option<&RegistryInput>,
    flag_endpoints: &[String],
    invalid: &dyn Fn(std::ops::Range<usize>, String) -> ConfigError,
) -> Result<RegistryConfig, ConfigError> {
    let mut rc = RegistryConfig::default();
    let empty = RegistryInput::default();
    let r = input.unwrap_or(&empty);
    if let Some(b) = &r.backend {
        rc.backend = match b.get_ref().as_str() {
            "sled" => Backend::Sled,
            "etcd" => Backend::Etcd,
            other => {
                return Err(invalid(
                    b.span(),
                    format!("registry.backend: {other:?} is neither \"sled\" nor \"etcd\""),
                ));
            }
        };
    }
    if let Some(list) = &r.endpoints {
        if list.get_ref().is_empty() {
            return Err(invalid(
                list.span(),
                "registry.endpoints: needs at least one etcd client URL".into(),
            ));
        }
        for e in list.get_ref() {
            check_endpoint(e.get_ref())
                .map_err(|m| invalid(e.span(), format!("registry.endpoints: {m}")))?;
        }
        // endpoints with the sled backend would silently do nothing: a forgotten
        // `backend = "etcd"` must not leave an instance alone with its own store.
        if rc.backend == Backend::Sled && flag_endpoints.is_empty() {
            let at = r.backend.as_ref().map_or(list.span(), |b| b.span());
            return Err(invalid(
                at,
                "registry.endpoints is set but registry.backend is \"sled\": set backend = \"etcd\" to use them".into(),
            ));
        }
        rc.endpoints = list.get_ref().iter().map(|e| e.get_ref().clone()).collect();
    }
    if !flag_endpoints.is_empty() {
        for e in flag_endpoints {
            check_endpoint(e).map_err(|m| ConfigError::Flag(format!("--etcd-endpoint: {m}")))?;
        }
        rc.backend = Backend::Etcd;
        rc.endpoints = flag_endpoints.to_vec();
    }
    if let Some(p) = &r.prefix {
        let prefix = p.get_ref();
        if !prefix.ends_with('/') || prefix.len() > 200 || prefix.chars().any(char::is_control) {
            return Err(invalid(
                p.span(),
                format!(
                    "registry.prefix: {prefix:?} must end with \"/\" (so one prefix is never the start of another) and be at most 200 printable characters"
                ),
            ));
        }
        rc.prefix = prefix.clone();
    }
    if let Some(t) = &r.lease_ttl_seconds {
        let v = *t.get_ref();
        if !LEASE_TTL_RANGE.contains(&v) {
            return Err(invalid(
                t.span(),
                format!("registry.lease_ttl_seconds: {v} is outside 2..=60"),
            ));
        }
        rc.lease_ttl_seconds = v as u32;
    }
    let read = |p: &toml::Spanned<PathBuf>, key: &str| {
        std::fs::read(p.get_ref()).map_err(|e| {
            invalid(
                p.span(),
                format!("registry.{key}: cannot read {}: {e}", p.get_ref().display()),
            )
        })
    };
    match (&r.username, &r.password_file) {
        (None, None) => {}
        (Some(u), Some(pf)) => {
            if u.get_ref().is_empty() {
                return Err(invalid(u.span(), "registry.username: empty".into()));
            }
            let raw = read(pf, "password_file")?;
            let text = String::from_utf8(raw).map_err(|_| {
                invalid(
                    pf.span(),
                    format!(
                        "registry.password_file: {} is not UTF-8",
                        pf.get_ref().display()
                    ),
                )
            })?;
            // One line; the trailing newline of `echo pw > file` is not part of it.
            let password = text.trim_end_matches(['\n', '\r']).to_string();
            if password.is_empty() {
                return Err(invalid(
                    pf.span(),
                    format!(
                        "registry.password_file: {} is empty",
                        pf.get_ref().display()
                    ),
                ));
            }
            rc.username = Some(u.get_ref().clone());
            rc.password = Some(password);
        }
        (Some(u), None) => {
            return Err(invalid(
                u.span(),
                "registry.username needs registry.password_file".into(),
            ));
        }
        (None, Some(pf)) => {
            return Err(invalid(
                pf.span(),
                "registry.password_file needs registry.username".into(),
            ));
        }
    }
    let ca_pem = r.ca_file.as_ref().map(|p| read(p, "ca_file")).transpose()?;
    let identity = match (&r.cert_file, &r.key_file) {
        (None, None) => None,
        (Some(c), Some(k)) => Some((read(c, "cert_file")?, read(k, "key_file")?)),
        (Some(c), None) => {
            return Err(invalid(
                c.span(),
                "registry.cert_file needs registry.key_file".into(),
            ));
        }
        (None, Some(k)) => {
            return Err(invalid(
                k.span(),
                "registry.key_file needs registry.cert_file".into(),
            ));
        }
    };
    if ca_pem.is_some() || identity.is_some() {
        rc.tls = Some(EtcdTls { ca_pem, identity });
    }
    let https = rc
        .endpoints
        .iter()
        .filter(|e| e.starts_with("https://"))
        .count();
    if https != 0 && https != rc.endpoints.len() {
        let at = r.endpoints.as_ref().map_or(0..0, |l| l.span());
        return Err(if r.endpoints.is_some() {
            invalid(
                at,
                "registry.endpoints: mix http:// and https:// URLs; use one scheme".into(),
            )
        } else {
            ConfigError::Flag(
                "--etcd-endpoint: mixes http:// and https:// URLs; use one scheme".into(),
            )
        });
    }
    if rc.backend == Backend::Etcd
        && https != 0
        && rc.tls.as_ref().is_none_or(|t| t.ca_pem.is_none())
    {
        return Err(ConfigError::Flag(
            "registry: https:// etcd endpoints need registry.ca_file (the CA that signs etcd's server certificates)".into(),
        ));
    }
    if rc.backend == Backend::Etcd && rc.tls.is_some() && https == 0 {
        let at = r
            .ca_file
            .as_ref()
            .or(r.cert_file.as_ref())
            .map_or(0..0, |p| p.span());
        return Err(invalid(
            at,
            "registry: TLS files are set but the etcd endpoints are http://; use https:// URLs"
                .into(),
        ));
    }
    Ok(rc)
}

impl Config {
    /// Loads `file` (if any) and applies `flags` on top.
    pub fn load(file: Option<&Path>, flags: Overrides) -> Result<Self, ConfigError> {
        let overrides = flags.clone();
        let (fc, text, fname) = match file {
            None => (FileConfig::default(), String::new(), String::new()),
            Some(path) => {
                let fname = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    file: fname.clone(),
                    source,
                })?;
                let fc: FileConfig = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
                    file: fname.clone(),
                    line: e.span().map_or(1, |s| line_of(&text, s.start)),
                    message: e.message().to_string(),
                })?;
                (fc, text, fname)
            }
        };
        let invalid = |span: std::ops::Range<usize>, message: String| ConfigError::Invalid {
            file: fname.clone(),
            line: line_of(&text, span.start),
            message,
        };

        let dns_listen = if !flags.dns_listen.is_empty() {
            flags
                .dns_listen
                .iter()
                .map(|s| parse_addr(s).map_err(|m| ConfigError::Flag(format!("--dns-listen: {m}"))))
                .collect::<Result<Vec<_>, _>>()?
        } else if let Some(list) = &fc.dns_listen {
            if list.is_empty() {
                return Err(invalid(
                    0..0,
                    "dns_listen: needs at least one address".into(),
                ));
            }
            list.iter()
                .map(|s| {
                    parse_addr(s.get_ref())
                        .map_err(|m| invalid(s.span(), format!("dns_listen: {m}")))
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            vec![DEFAULT_DNS_LISTEN.parse().expect("valid default")]
        };

        let api_listen = match (&flags.api_listen, &fc.api_listen) {
            (Some(s), _) => {
                parse_addr(s).map_err(|m| ConfigError::Flag(format!("--api-listen: {m}")))?
            }
            (None, Some(s)) => parse_addr(s.get_ref())
                .map_err(|m| invalid(s.span(), format!("api_listen: {m}")))?,
            (None, None) => DEFAULT_API_LISTEN.parse().expect("valid default"),
        };

        let mut seen = std::collections::HashSet::new();
        let mut entries = Vec::with_capacity(fc.topology.len());
        for t in &fc.topology {
            let t_in = t.get_ref();
            let net = parse_cidr(t_in.cidr.get_ref())
                .map_err(|m| invalid(t_in.cidr.span(), format!("topology: {m}")))?;
            let (addr, prefix) = (net.addr(), net.prefix_len());
            // `::ffff:10.0.0.0/104` and `10.0.0.0/8` are the same network to lookups.
            if !seen.insert(crate::policy::canonical(addr, prefix)) {
                return Err(invalid(
                    t_in.cidr.span(),
                    format!("topology: cidr {:?} is listed twice", t_in.cidr.get_ref()),
                ));
            }
            let locality = Locality::parse(t_in.locality.get_ref())
                .map_err(|m| invalid(t_in.locality.span(), format!("topology: {m}")))?;
            entries.push(TopologyEntry {
                addr,
                prefix,
                locality,
            });
        }

        let api_token = flags.api_token.or(fc.api_token).filter(|t| !t.is_empty());
        let api_tokens = api_tokens(&fc.api_tokens, api_token.as_deref(), &invalid)?;

        // An integer key within `range`, else the default.
        let int = |v: &Option<toml::Spanned<i64>>,
                   key: &str,
                   range: std::ops::RangeInclusive<i64>,
                   default: i64|
         -> Result<i64, ConfigError> {
            match v {
                None => Ok(default),
                Some(v) if range.contains(v.get_ref()) => Ok(*v.get_ref()),
                Some(v) => Err(invalid(
                    v.span(),
                    format!(
                        "{key}: {} is out of range ({}..={})",
                        v.get_ref(),
                        range.start(),
                        range.end()
                    ),
                )),
            }
        };

        let nsid = match &fc.nsid {
            None => None,
            Some(n) if (1..=128).contains(&n.get_ref().len()) => Some(n.get_ref().clone()),
            Some(n) => {
                return Err(invalid(
                    n.span(),
                    format!("nsid: {:?} must be 1 to 128 bytes long", n.get_ref()),
                ));
            }
        };
        let cookie_secret = match &fc.cookie_secret {
            None => None,
            Some(c) => Some(
                Secret::from_hex(c.get_ref())
                    .map_err(|m| invalid(c.span(), format!("cookie_secret: {m}")))?,
            ),
        };
        let tcp_idle_timeout_seconds = int(
            &fc.tcp_idle_timeout_seconds,
            "tcp_idle_timeout_seconds",
            1..=3600,
            DEFAULT_TCP_IDLE_TIMEOUT_SECONDS as i64,
        )? as u64;
        let tcp_max_clients = int(
            &fc.tcp_max_clients,
            "tcp_max_clients",
            1..=65_535,
            DEFAULT_TCP_MAX_CLIENTS as i64,
        )? as usize;
        let tcp_max_per_source = match &fc.tcp_max_per_source {
            // The default never exceeds a smaller global cap.
            None => DEFAULT_TCP_MAX_PER_SOURCE.min(tcp_max_clients),
            v => int(
                v,
                "tcp_max_per_source",
                1..=tcp_max_clients as i64,
                DEFAULT_TCP_MAX_PER_SOURCE as i64,
            )? as usize,
        };

        let api_defaults = crate::api::limits::Limits::default();
        let api_limits = crate::api::limits::Limits {
            max_connections: int(
                &fc.api_max_connections,
                "api_max_connections",
                1..=65_535,
                api_defaults.max_connections as i64,
            )? as usize,
            header_timeout: std::time::Duration::from_secs(int(
                &fc.api_header_timeout_seconds,
                "api_header_timeout_seconds",
                1..=300,
                api_defaults.header_timeout.as_secs() as i64,
            )? as u64),
            idle_timeout: std::time::Duration::from_secs(int(
                &fc.api_idle_timeout_seconds,
                "api_idle_timeout_seconds",
                1..=3600,
                api_defaults.idle_timeout.as_secs() as i64,
            )? as u64),
        };

        let mut rrl = RrlConfig::default();
        if let Some(r) = &fc.rrl {
            let l = &mut rrl.limits;
            rrl.enabled = r.enabled.unwrap_or(true);
            l.responses_per_second = int(
                &r.responses_per_second,
                "rrl.responses_per_second",
                1..=1_000_000,
                i64::from(l.responses_per_second),
            )? as u32;
            l.slip = int(&r.slip, "rrl.slip", 0..=10, i64::from(l.slip))? as u8;
            l.window_seconds = int(
                &r.window_seconds,
                "rrl.window_seconds",
                1..=3600,
                i64::from(l.window_seconds),
            )? as u32;
            l.ipv4_prefix = int(
                &r.ipv4_prefix,
                "rrl.ipv4_prefix",
                8..=32,
                i64::from(l.ipv4_prefix),
            )? as u8;
            l.ipv6_prefix = int(
                &r.ipv6_prefix,
                "rrl.ipv6_prefix",
                16..=128,
                i64::from(l.ipv6_prefix),
            )? as u8;
            l.table_size = int(
                &r.table_size,
                "rrl.table_size",
                64..=(1 << 24),
                l.table_size as i64,
            )? as usize;
            if let Some(list) = &r.exempt {
                l.exempt = list
                    .iter()
                    .map(|c| {
                        parse_cidr(c.get_ref())
                            .map_err(|m| invalid(c.span(), format!("rrl.exempt: {m}")))
                    })
                    .collect::<Result<_, _>>()?;
            }
        }
        let reg_in = fc.registry.as_ref().map(|r| r.get_ref());
        let instance = match (&flags.instance, reg_in.and_then(|r| r.instance.as_ref())) {
            (Some(i), _) => {
                check_instance_name(i)
                    .map_err(|m| ConfigError::Flag(format!("--instance: {m}")))?;
                i.clone()
            }
            (None, Some(i)) => {
                check_instance_name(i.get_ref())
                    .map_err(|m| invalid(i.span(), format!("registry.instance: {m}")))?;
                i.get_ref().clone()
            }
            (None, None) => {
                let h = host_name().map_err(ConfigError::Flag)?;
                check_instance_name(&h).map_err(|m| {
                    ConfigError::Flag(format!(
                        "the host name cannot be the instance name: {m}; set [registry] instance or --instance"
                    ))
                })?;
                h
            }
        };
        let registry = registry_config(reg_in, &flags.etcd_endpoints, &invalid)?;

        let mut health = HealthConfig::default();
        let health_in = fc.health.unwrap_or_default();
        for d in health_in.deny.iter().flatten() {
            let net = parse_cidr(d.get_ref())
                .map_err(|m| invalid(d.span(), format!("health.deny: {m}")))?;
            if health.deny.contains(&net) {
                return Err(invalid(
                    d.span(),
                    format!("health.deny: {:?} is listed twice", d.get_ref()),
                ));
            }
            health.deny.push(net);
        }
        if let Some(q) = &health_in.quorum {
            health.quorum = match q.get_ref().as_str() {
                "local" => Quorum::Local,
                "majority" => Quorum::Majority,
                other => {
                    return Err(invalid(
                        q.span(),
                        format!("health.quorum: {other:?} is neither \"local\" nor \"majority\""),
                    ));
                }
            };
            // A majority of one instance is its own verdict: an operator who asks for
            // it alone has forgotten the etcd backend, so say so instead of
            // silently deciding alone.
            if health.quorum == Quorum::Majority && registry.backend == Backend::Sled {
                return Err(invalid(
                    q.span(),
                    "health.quorum: \"majority\" needs the etcd backend (several instances to vote); set [registry] backend = \"etcd\" (or --etcd-endpoint), or quorum = \"local\"".into(),
                ));
            }
        }

        let mut resolver = crate::resolver::Settings::default();
        let resolver_in = fc.resolver.unwrap_or_default();
        for srv in resolver_in.servers.iter().flatten() {
            let text = srv.get_ref();
            // "IP:port", or an IP alone for port 53.
            let addr = text
                .parse::<SocketAddr>()
                .or_else(|_| {
                    text.parse::<std::net::IpAddr>()
                        .map(|ip| SocketAddr::new(ip, 53))
                })
                .map_err(|_| {
                    invalid(
                        srv.span(),
                        format!(
                            "resolver.servers: {text:?} is not IP:port (IPv6 as [::1]:53) or an IP"
                        ),
                    )
                })?;
            if resolver.servers.contains(&addr) {
                return Err(invalid(
                    srv.span(),
                    format!("resolver.servers: {text:?} is listed twice"),
                ));
            }
            resolver.servers.push(addr);
        }
        if let Some(st) = &resolver_in.stale_seconds {
            let v = *st.get_ref();
            if v > MAX_STALE_SECONDS {
                return Err(invalid(
                    st.span(),
                    format!("resolver.stale_seconds: {v} is above {MAX_STALE_SECONDS} (a week)"),
                ));
            }
            resolver.stale = std::time::Duration::from_secs(v);
        }

        Ok(Config {
            resolver,
            health,
            dns_listen,
            api_listen,
            data_dir: flags
                .data_dir
                .or(fc.data_dir)
                .unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
            zones_dir: flags
                .zones_dir
                .or(fc.zones_dir)
                .unwrap_or_else(|| DEFAULT_ZONES_DIR.into()),
            api_token,
            api_tokens,
            topology: std::sync::Arc::new(Topology::new(entries)),
            nsid,
            cookie_secret,
            rrl,
            tcp_idle_timeout_seconds,
            tcp_max_clients,
            tcp_max_per_source,
            api_limits,
            instance,
            registry,
            file: file.map(Path::to_path_buf),
            overrides,
        })
    }

    /// Every token the API accepts: `api_token` (named [`LEGACY_TOKEN_NAME`], role
    /// write) first, then `[[api_tokens]]`. Empty: the API needs no token.
    pub fn tokens(&self) -> Vec<ApiToken> {
        self.api_token
            .iter()
            .map(|t| ApiToken {
                name: LEGACY_TOKEN_NAME.into(),
                token: t.clone(),
                role: Role::Write,
            })
            .chain(self.api_tokens.iter().cloned())
            .collect()
    }

    /// The settings (other than zones and `[[topology]]`) whose value differs in
    /// `other`: a reload does not apply them, they need a restart.
    pub fn restart_settings_changed(&self, other: &Config) -> Vec<&'static str> {
        let mut changed = Vec::new();
        let mut check = |name: &'static str, same: bool| {
            if !same {
                changed.push(name);
            }
        };
        check("dns_listen", self.dns_listen == other.dns_listen);
        check("api_listen", self.api_listen == other.api_listen);
        check("data_dir", self.data_dir == other.data_dir);
        check("zones_dir", self.zones_dir == other.zones_dir);
        check(
            "api_token",
            self.api_token.as_deref().map(str::as_bytes)
                == other.api_token.as_deref().map(str::as_bytes),
        );
        let tokens = |c: &Config| -> Vec<(String, String, String)> {
            c.api_tokens
                .iter()
                .map(|t| (t.name.clone(), t.token.clone(), format!("{:?}", t.role)))
                .collect()
        };
        check("api_tokens", tokens(self) == tokens(other));
        check("nsid", self.nsid == other.nsid);
        check("cookie_secret", self.cookie_secret == other.cookie_secret);
        check(
            "rrl",
            format!("{:?}", self.rrl) == format!("{:?}", other.rrl),
        );
        check(
            "tcp_idle_timeout_seconds",
            self.tcp_idle_timeout_seconds == other.tcp_idle_timeout_seconds,
        );
        check(
            "tcp_max_clients",
            self.tcp_max_clients == other.tcp_max_clients,
        );
        check(
            "tcp_max_per_source",
            self.tcp_max_per_source == other.tcp_max_per_source,
        );
        check("api limits", self.api_limits == other.api_limits);
        check("registry.instance", self.instance == other.instance);
        check(
            "registry",
            format!("{:?}", self.registry) == format!("{:?}", other.registry)
                && self.registry.password == other.registry.password
                && self.registry.tls == other.registry.tls,
        );
        check("health", self.health == other.health);
        // Anything added later that the list above does not name yet: Debug shows
        // every setting but secrets and the topology.
        let rest = |c: &Config| {
            let mut c = c.clone();
            c.topology = Default::default();
            format!("{c:?}")
        };
        if changed.is_empty() && rest(self) != rest(other) {
            changed.push("other settings");
        }
        changed
    }

    /// Without a token the API may only listen on loopback (CONTRACT §3).
    pub fn check_api_exposure(&self) -> Result<(), ConfigError> {
        if self.tokens().is_empty() && !self.api_listen.ip().is_loopback() {
            return Err(ConfigError::Flag(format!(
                "the API would listen on {} without a token: set api_token (or GSLB_API_TOKEN / --api-token) or [[api_tokens]], or listen on a loopback address",
                self.api_listen
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(tag: &str, text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("gslb-config-{tag}-{}.toml", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Loads `text` as a config file that must be refused at `line` with a message
    /// containing `needle`; returns the message.
    fn refused(tag: &str, text: &str, line: usize, needle: &str) -> String {
        let p = write(tag, text);
        let e = Config::load(Some(&p), Overrides::default()).unwrap_err();
        std::fs::remove_file(p).unwrap();
        match &e {
            ConfigError::Invalid {
                line: l, message, ..
            } => {
                assert_eq!(*l, line, "{text:?}: {e}");
                assert!(message.contains(needle), "{text:?}: {e}");
                message.clone()
            }
            other => panic!("{text:?}: {other}"),
        }
    }

    #[test]
    fn defaults_file_and_flags_layer() {
        let c = Config::load(None, Overrides::default()).unwrap();
        assert_eq!(c.dns_listen, vec!["127.0.0.1:1053".parse().unwrap()]);
        assert_eq!(c.api_listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("data"));
        let p = write(
            "layer",
            "dns_listen = [\"127.0.0.1:5300\"]\napi_listen = \"127.0.0.1:9000\"\ndata_dir = \"/tmp/x\"\n",
        );
        let c = Config::load(Some(&p), Overrides::default()).unwrap();
        assert_eq!(c.api_listen.port(), 9000);
        assert_eq!(c.dns_listen[0].port(), 5300);
        let c = Config::load(
            Some(&p),
            Overrides {
                api_listen: Some("127.0.0.1:9001".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.api_listen.port(), 9001);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("api_listen = \"nope\"\n", 1, "api_listen"),
            ("\n\nbogus = 1\n", 3, "unknown field"),
            (
                "[[topology]]\ncidr = \"10.1.0.0/16\"\nlocality = \"a/b/c/d\"\n",
                3,
                "locality",
            ),
            (
                "[[topology]]\ncidr = \"10.1.0.1/16\"\nlocality = \"a\"\n",
                2,
                "host bits",
            ),
            (
                "[[topology]]\ncidr = \"10.1.0.0/33\"\nlocality = \"a\"\n",
                2,
                "prefix",
            ),
            (
                "[[topology]]\ncidr = \"10.0.0.0/8\"\nlocality = \"a\"\n[[topology]]\ncidr = \"10.0.0.0/8\"\nlocality = \"b\"\n",
                5,
                "twice",
            ),
            (
                "[[topology]]\ncidr = \"10.0.0.0/8\"\nlocality = \"a\"\n\n[[topology]]\ncidr = \"::ffff:10.0.0.0/104\"\nlocality = \"b\"\n",
                6,
                "twice",
            ),
            (
                "[[topology]]\ncidr = \"2001:db8::1/64\"\nlocality = \"a\"\n",
                2,
                "host bits",
            ),
            (
                "[[topology]]\ncidr = \"2001:db8::/129\"\nlocality = \"a\"\n",
                2,
                "prefix",
            ),
            (
                "[[topology]]\ncidr = \"2001:db8::\"\nlocality = \"a\"\n",
                2,
                "ADDRESS/PREFIX",
            ),
            ("# header\n[[topology]]\nlocality = \"a\"\n", 2, "cidr"),
            (
                "[[topology]]\ncidr = \"10.0.0.0/8\"\nlocality = \"a\"\nweight = 3\n",
                4,
                "unknown field",
            ),
            (
                "[[topology]]\ncidr = \"10.0.0.0/8\"\nlocality = \"us west\"\n",
                3,
                "invalid part",
            ),
            ("\ncookie_secret = \"abc\"\n", 2, "32 hex digits"),
            ("nsid = \"\"\n", 1, "1 to 128 bytes"),
            (
                "tcp_max_clients = 0\n",
                1,
                "tcp_max_clients: 0 is out of range",
            ),
            (
                "tcp_max_clients = 10\ntcp_max_per_source = 11\n",
                2,
                "tcp_max_per_source: 11 is out of range (1..=10)",
            ),
            (
                "tcp_idle_timeout_seconds = -1\n",
                1,
                "tcp_idle_timeout_seconds",
            ),
            (
                "[rrl]\nslip = 11\n",
                2,
                "rrl.slip: 11 is out of range (0..=10)",
            ),
            (
                "[rrl]\n\nresponses_per_second = 0\n",
                3,
                "rrl.responses_per_second",
            ),
            ("[rrl]\nipv6_prefix = 129\n", 2, "rrl.ipv6_prefix"),
            (
                "[rrl]\nexempt = [\"10.0.0.1/8\"]\n",
                2,
                "rrl.exempt: cidr \"10.0.0.1/8\" has host bits set (the network is 10.0.0.0/8)",
            ),
            ("[rrl]\nburst = 3\n", 2, "unknown field"),
        ];
        for (i, (text, line, needle)) in cases.into_iter().enumerate() {
            refused(&format!("err{i}"), text, line, needle);
        }
    }

    #[test]
    fn resolver_table() {
        let c = Config::load(None, Overrides::default()).unwrap();
        assert!(c.resolver.servers.is_empty());
        assert_eq!(c.resolver.stale, std::time::Duration::from_secs(3600));
        let p = write(
            "resolver",
            "[resolver]\nservers = [\"127.0.0.1:5353\", \"[::1]:53\", \"192.0.2.53\"]\nstale_seconds = 60\n",
        );
        let c = Config::load(Some(&p), Overrides::default()).unwrap();
        std::fs::remove_file(p).unwrap();
        let want: Vec<SocketAddr> = ["127.0.0.1:5353", "[::1]:53", "192.0.2.53:53"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(c.resolver.servers, want);
        assert_eq!(c.resolver.stale, std::time::Duration::from_secs(60));
        for (text, line, needle) in [
            (
                "[resolver]\nservers = [\n \"127.0.0.1:53\",\n \"dns.example:53\"]\n",
                4,
                "resolver.servers: \"dns.example:53\" is not IP:port",
            ),
            (
                "[resolver]\nservers = [\"127.0.0.1:53\", \"127.0.0.1:53\"]\n",
                2,
                "listed twice",
            ),
            ("[resolver]\nstale_seconds = 604801\n", 2, "above 604800"),
            ("[resolver]\nstale_seconds = -1\n", 2, ""),
            ("[resolver]\nserver = []\n", 2, "unknown field"),
        ] {
            refused("resolver-bad", text, line, needle);
        }
    }

    #[test]
    fn health_deny() {
        let p = write(
            "deny",
            "[health]\ndeny = [\"10.0.0.0/8\", \"2001:db8:1::/48\"]\n",
        );
        let c = Config::load(Some(&p), Overrides::default()).unwrap();
        std::fs::remove_file(p).unwrap();
        let want: Vec<ipnet::IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8:1::/48".parse().unwrap(),
        ];
        assert_eq!(c.health.deny, want);
        assert!(
            Config::load(None, Overrides::default())
                .unwrap()
                .health
                .deny
                .is_empty()
        );
        for (text, line, needle) in [
            (
                "[health]\ndeny = [\n  \"10.0.0.0/8\",\n  \"10.0.0.1/8\",\n]\n",
                4,
                "health.deny: cidr \"10.0.0.1/8\" has host bits set",
            ),
            (
                "[health]\ndeny = [\"10.0.0.0/8\", \"10.0.0.0/8\"]\n",
                2,
                "listed twice",
            ),
            (
                "[health]\ndeny = [\"nope\"]\n",
                2,
                "health.deny: cidr \"nope\"",
            ),
            ("\n[health]\ndenny = []\n", 3, "unknown field"),
        ] {
            refused("deny-bad", text, line, needle);
        }
    }

    #[test]
    fn dns_keys_and_defaults() {
        let c = Config::load(None, Overrides::default()).unwrap();
        assert_eq!(c.rrl, RrlConfig::default());
        assert!(c.rrl.enabled);
        assert_eq!(c.rrl.limits.responses_per_second, 200);
        assert_eq!((c.rrl.limits.slip, c.rrl.limits.window_seconds), (2, 15));
        assert_eq!(
            (c.rrl.limits.ipv4_prefix, c.rrl.limits.ipv6_prefix),
            (24, 56)
        );
        assert_eq!(c.rrl.limits.exempt.len(), 2);
        assert_eq!(
            (
                c.tcp_idle_timeout_seconds,
                c.tcp_max_clients,
                c.tcp_max_per_source
            ),
            (10, 1024, 64)
        );
        assert!(c.nsid.is_none() && c.cookie_secret.is_none());
        let s = c.dns_settings();
        assert!(s.rrl.is_some() && s.nsid.is_none());

        let p = write(
            "dnskeys",
            "nsid = \"dc1-a\"\ncookie_secret = \"e5e973e5a6b2a43f48e7dc849e37bfcf\"\n\
             tcp_max_clients = 8\ntcp_idle_timeout_seconds = 3\n\
             [rrl]\nenabled = false\nexempt = []\nresponses_per_second = 5\n",
        );
        let c = Config::load(Some(&p), Overrides::default()).unwrap();
        std::fs::remove_file(p).unwrap();
        assert_eq!(c.nsid.as_deref(), Some("dc1-a"));
        // The per-source default never exceeds a smaller global cap.
        assert_eq!((c.tcp_max_clients, c.tcp_max_per_source), (8, 8));
        assert_eq!(c.tcp_limits().idle, std::time::Duration::from_secs(3));
        assert_eq!(c.tcp_limits().io, std::time::Duration::from_secs(3));
        assert!(!c.rrl.enabled && c.rrl.limits.exempt.is_empty());
        assert_eq!(c.rrl.limits.responses_per_second, 5);
        let s = c.dns_settings();
        assert!(s.rrl.is_none());
        assert_eq!(
            s.cookie_secret,
            crate::dns::cookie::Secret::from_hex("e5e973e5a6b2a43f48e7dc849e37bfcf").unwrap()
        );
        // Never printed.
        assert!(!format!("{c:?}").contains("e5e973"));
    }

    #[test]
    fn api_tokens_with_roles() {
        let p = write(
            "tokens",
            "api_token = \"legacy-secret\"\n\
             [[api_tokens]]\nname = \"ci\"\ntoken = \"ci-secret\"\nrole = \"write\"\n\
             [[api_tokens]]\nname = \"grafana.read\"\ntoken = \"ro-secret\"\nrole = \"read\"\n",
        );
        let c = Config::load(Some(&p), Overrides::default()).unwrap();
        std::fs::remove_file(p).unwrap();
        let t = c.tokens();
        let summary: Vec<(&str, &str, Role)> = t
            .iter()
            .map(|t| (t.name.as_str(), t.token.as_str(), t.role))
            .collect();
        assert_eq!(
            summary,
            [
                ("api_token", "legacy-secret", Role::Write),
                ("ci", "ci-secret", Role::Write),
                ("grafana.read", "ro-secret", Role::Read),
            ]
        );
        // Secrets never show in Debug.
        let dbg = format!("{c:?}");
        for secret in ["legacy-secret", "ci-secret", "ro-secret"] {
            assert!(!dbg.contains(secret), "{dbg}");
        }
        assert!(dbg.contains("grafana.read"), "{dbg}");
    }

    #[test]
    fn api_token_errors_name_the_line() {
        let entry = |name: &str, token: &str, role: &str| {
            format!("[[api_tokens]]\nname = \"{name}\"\ntoken = \"{token}\"\nrole = \"{role}\"\n")
        };
        let cases = [
            (entry("ci", "a", "admin"), 4, "role"),
            (entry("c i", "a", "read"), 2, "name"),
            (entry("ci", "", "read"), 3, "token"),
            (entry("ci", "a b", "read"), 3, "token"),
            (
                entry("ci", "a", "read") + &entry("ci", "b", "read"),
                6,
                "twice",
            ),
            (
                entry("ci", "a", "read") + &entry("cd", "a", "write"),
                7,
                "same as another",
            ),
            (
                format!("api_token = \"x\"\n{}", entry("ro", "x", "read")),
                4,
                "same as another",
            ),
            (
                format!("api_token = \"x\"\n{}", entry("api_token", "y", "read")),
                3,
                "name of api_token",
            ),
            (
                "[[api_tokens]]\nname = \"ci\"\ntoken = \"a\"\n".to_string(),
                1,
                "role",
            ),
        ];
        for (i, (text, line, needle)) in cases.into_iter().enumerate() {
            let message = refused(&format!("tok{i}"), &text, line, needle);
            assert!(!message.contains("\"a\""), "secret printed: {message}");
        }
    }

    #[test]
    fn exposure_rule() {
        let mut c = Config::load(None, Overrides::default()).unwrap();
        c.check_api_exposure().unwrap();
        c.api_listen = "0.0.0.0:8080".parse().unwrap();
        assert!(c.check_api_exposure().is_err());
        c.api_token = Some("t".into());
        c.check_api_exposure().unwrap();
        c.api_token = None;
        c.api_tokens = vec![ApiToken {
            name: "ro".into(),
            token: "t".into(),
            role: Role::Read,
        }];
        c.check_api_exposure().unwrap();
    }

    #[test]
    fn cidrs() {
        assert_eq!(parse_cidr("10.1.0.0/16").unwrap().prefix_len(), 16);
        assert_eq!(parse_cidr("2001:db8:1::/48").unwrap().prefix_len(), 48);
        assert!(parse_cidr("2001:db8:1::1/48").is_err());
        assert!(parse_cidr("0.0.0.0/0").is_ok());
        assert!(parse_cidr("10.0.0.0").is_err());
        for ok in [
            "192.0.2.1/32",
            "::/0",
            "::1/128",
            "2001:db8::1/128",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
            "2001:db8:8000::/33",
            "::ffff:10.0.0.0/104",
        ] {
            assert!(parse_cidr(ok).is_ok(), "{ok}");
        }
        for bad in [
            "10.0.0.1/31",
            "1.0.0.0/0",
            "2001:db8::/129",
            "2001:db8:8000::/32",
            "::1/127",
            "2001:db8::/",
            "/24",
            "10.0.0.0/-1",
            "2001:db8::/4 8",
            "10.0.0.0/8/8",
            "example.com/24",
        ] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn registry_defaults_file_and_flags() {
        let c = Config::load(None, Overrides::default()).unwrap();
        assert_eq!(c.registry.backend, Backend::Sled);
        assert_eq!(c.registry.prefix, "/gslb/");
        assert_eq!(c.registry.lease_ttl_seconds, 10);
        assert_eq!(c.instance, host_name().unwrap());

        let pw = std::env::temp_dir().join(format!("gslb-config-pw-{}", std::process::id()));
        std::fs::write(&pw, "hunter2\n").unwrap();
        let p = write(
            "registry",
            &format!(
                "[registry]\nbackend = \"etcd\"\nendpoints = [\"http://10.0.0.1:2379\", \"http://[::1]:2379\", \"http://etcd-a\"]\n\
                 prefix = \"/prod/gslb/\"\ninstance = \"dc1-a\"\nlease_ttl_seconds = 4\n\
                 username = \"gslb\"\npassword_file = \"{}\"\n",
                pw.display()
            ),
        );
        let c = Config::load(Some(&p), Overrides::default()).unwrap();
        assert_eq!(c.registry.backend, Backend::Etcd);
        assert_eq!(c.registry.endpoints.len(), 3);
        assert_eq!(c.registry.prefix, "/prod/gslb/");
        assert_eq!(c.instance, "dc1-a");
        assert_eq!(c.registry.lease_ttl_seconds, 4);
        assert_eq!(c.registry.password.as_deref(), Some("hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));

        // Flags win: --instance, and --etcd-endpoint replaces the list.
        let c = Config::load(
            Some(&p),
            Overrides {
                instance: Some("dc2-b".into()),
                etcd_endpoints: vec!["http://127.0.0.1:23790".into()],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.instance, "dc2-b");
        assert_eq!(c.registry.endpoints, ["http://127.0.0.1:23790"]);
        // --etcd-endpoint alone selects etcd.
        let c = Config::load(
            None,
            Overrides {
                etcd_endpoints: vec!["http://127.0.0.1:2379".into()],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.registry.backend, Backend::Etcd);
        for (flags, needle) in [
            (
                Overrides {
                    instance: Some("no spaces".into()),
                    ..Default::default()
                },
                "--instance",
            ),
            (
                Overrides {
                    etcd_endpoints: vec!["127.0.0.1:2379".into()],
                    ..Default::default()
                },
                "http://",
            ),
        ] {
            let e = Config::load(None, flags).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        std::fs::remove_file(p).unwrap();
        std::fs::remove_file(pw).unwrap();
    }

    #[test]
    fn registry_errors_name_the_line() {
        let cases = [
            ("[registry]\nbackend = \"zk\"\n", 2, "neither"),
            ("[registry]\n\nlease_ttl_seconds = 1\n", 3, "2..=60"),
            ("[registry]\nlease_ttl_seconds = 61\n", 2, "2..=60"),
            ("[registry]\nprefix = \"/gslb\"\n", 2, "end with"),
            ("[registry]\ninstance = \"dc 1\"\n", 2, "instance"),
            ("[registry]\ninstance = \"-dc1\"\n", 2, "instance"),
            (
                "[registry]\nbackend = \"etcd\"\nendpoints = []\n",
                3,
                "at least one",
            ),
            (
                "[registry]\nbackend = \"etcd\"\nendpoints = [\"http://a:2379\",\n \"http://b:99999\"]\n",
                4,
                "port",
            ),
            (
                "[registry]\nbackend = \"etcd\"\nendpoints = [\"http://a:2379/v3\"]\n",
                3,
                "no path",
            ),
            (
                "[registry]\nendpoints = [\"http://a:2379\"]\n",
                2,
                "backend = \"etcd\"",
            ),
            ("[registry]\nusername = \"u\"\n", 2, "password_file"),
            (
                "[registry]\n\npassword_file = \"/nonexistent/pw\"\n",
                3,
                "username",
            ),
            (
                "[registry]\nusername = \"u\"\npassword_file = \"/nonexistent/pw\"\n",
                3,
                "cannot read",
            ),
            (
                "[registry]\ncert_file = \"/nonexistent/c\"\n",
                2,
                "key_file",
            ),
            (
                "[registry]\nca_file = \"/nonexistent/ca\"\n",
                2,
                "cannot read",
            ),
            ("[registry]\nbogus = 1\n", 2, "unknown field"),
        ];
        for (i, (text, line, needle)) in cases.into_iter().enumerate() {
            refused(&format!("regerr{i}"), text, line, needle);
        }
    }

    #[test]
    fn health_quorum() {
        let p = write(
            "quorum-ok",
            "[registry]\nbackend = \"etcd\"\n[health]\nquorum = \"majority\"\n",
        );
        let c = Config::load(Some(&p), Overrides::default()).unwrap();
        assert_eq!(c.health.quorum, Quorum::Majority);
        std::fs::remove_file(p).unwrap();
        // --etcd-endpoint selects the etcd backend too.
        let p = write("quorum-flag", "[health]\nquorum = \"majority\"\n");
        let flags = Overrides {
            etcd_endpoints: vec!["http://127.0.0.1:2379".into()],
            ..Default::default()
        };
        assert_eq!(
            Config::load(Some(&p), flags).unwrap().health.quorum,
            Quorum::Majority
        );
        std::fs::remove_file(p).unwrap();
        assert_eq!(
            Config::load(None, Overrides::default())
                .unwrap()
                .health
                .quorum,
            Quorum::Local
        );
        for (i, (text, line, needle)) in [
            (
                "[health]\n\nquorum = \"majority\"\n",
                3,
                "needs the etcd backend",
            ),
            (
                "[registry]\nbackend = \"etcd\"\n[health]\nquorum = \"most\"\n",
                4,
                "neither",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let p = write(&format!("quorum-err{i}"), text);
            match Config::load(Some(&p), Overrides::default()).unwrap_err() {
                ConfigError::Invalid {
                    line: l, message, ..
                } => {
                    assert_eq!(l, line, "{text:?}: {message}");
                    assert!(message.contains(needle), "{text:?}: {message}");
                }
                other => panic!("{text:?}: {other}"),
            }
            std::fs::remove_file(p).unwrap();
        }
    }

    #[test]
    fn etcd_endpoint_urls() {
        for ok in [
            "http://127.0.0.1:2379",
            "https://etcd.internal:2379",
            "http://[::1]:2379",
            "http://etcd",
            "http://etcd:2379/",
        ] {
            assert!(check_endpoint(ok).is_ok(), "{ok}");
        }
        for bad in [
            "127.0.0.1:2379",
            "unix:///run/etcd.sock",
            "http://",
            "http://:2379",
            "http://a:0",
            "http://a:x",
            "http://u:p@a:2379",
            "http://[::1:2379",
            "http://[nope]:2379",
            "http://a:2379/v3",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn topology_is_loaded_for_lookups() {
        let p = write(
            "topo",
            "[[topology]]\ncidr = \"10.1.0.0/16\"\nlocality = \"us-west/zone-a\"\n\
             [[topology]]\ncidr = \"2001:db8:1::/48\"\nlocality = \"us-east/zone-b/rack-3\"\n",
        );
        let c = Config::load(Some(&p), Overrides::default()).unwrap();
        std::fs::remove_file(p).unwrap();
        let (l, len) = c.topology.lookup("10.1.2.3".parse().unwrap()).unwrap();
        assert_eq!((l.to_string(), len), ("us-west/zone-a".into(), 16));
        let (l, len) = c
            .topology
            .lookup("2001:db8:1:2::3".parse().unwrap())
            .unwrap();
        assert_eq!((l.to_string(), len), ("us-east/zone-b/rack-3".into(), 48));
        assert!(c.topology.lookup("10.2.0.0".parse().unwrap()).is_none());
    }
}
