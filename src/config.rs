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
    topology: Vec<toml::Spanned<TopologyInput>>,
    nsid: Option<toml::Spanned<String>>,
    cookie_secret: Option<toml::Spanned<String>>,
    tcp_idle_timeout_seconds: Option<toml::Spanned<i64>>,
    tcp_max_clients: Option<toml::Spanned<i64>>,
    tcp_max_per_source: Option<toml::Spanned<i64>>,
    rrl: Option<RrlInput>,
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
}

/// The effective configuration.
#[derive(Clone)]
pub struct Config {
    pub dns_listen: Vec<SocketAddr>,
    pub api_listen: SocketAddr,
    pub data_dir: PathBuf,
    pub zones_dir: PathBuf,
    pub api_token: Option<String>,
    pub topology: std::sync::Arc<Topology>,
    /// The name server identifier (RFC 5001), 1 to 128 bytes; `None`: no NSID.
    pub nsid: Option<String>,
    /// The server cookie secret; `None`: random per start.
    pub cookie_secret: Option<Secret>,
    pub rrl: RrlConfig,
    pub tcp_idle_timeout_seconds: u64,
    pub tcp_max_clients: usize,
    pub tcp_max_per_source: usize,
    /// The config file, when one was given (for messages).
    pub file: Option<PathBuf>,
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

    /// The TCP listener's limits.
    pub fn tcp_limits(&self) -> crate::dns::TcpLimits {
        crate::dns::TcpLimits {
            idle: std::time::Duration::from_secs(self.tcp_idle_timeout_seconds),
            max_connections: self.tcp_max_clients,
            max_per_source: self.tcp_max_per_source,
            ..Default::default()
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
            .field("topology_entries", &self.topology.len())
            .field("nsid", &self.nsid)
            .field(
                "cookie_secret",
                &self.cookie_secret.as_ref().map(|_| "<set>"),
            )
            .field("rrl", &self.rrl)
            .field("tcp_idle_timeout_seconds", &self.tcp_idle_timeout_seconds)
            .field("tcp_max_clients", &self.tcp_max_clients)
            .field("tcp_max_per_source", &self.tcp_max_per_source)
            .finish()
    }
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

impl Config {
    /// Loads `file` (if any) and applies `flags` on top.
    pub fn load(file: Option<&Path>, flags: Overrides) -> Result<Self, ConfigError> {
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

        Ok(Config {
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
            topology: std::sync::Arc::new(Topology::new(entries)),
            nsid,
            cookie_secret,
            rrl,
            tcp_idle_timeout_seconds,
            tcp_max_clients,
            tcp_max_per_source,
            file: file.map(Path::to_path_buf),
        })
    }

    /// Without a token the API may only listen on loopback (CONTRACT §3).
    pub fn check_api_exposure(&self) -> Result<(), ConfigError> {
        if self.api_token.is_none() && !self.api_listen.ip().is_loopback() {
            return Err(ConfigError::Flag(format!(
                "the API would listen on {} without a token: set api_token (or GSLB_API_TOKEN / --api-token), or listen on a loopback address",
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
            let p = write(&format!("err{i}"), text);
            let e = Config::load(Some(&p), Overrides::default()).unwrap_err();
            match &e {
                ConfigError::Invalid {
                    line: l, message, ..
                } => {
                    assert_eq!(*l, line, "{text:?}: {e}");
                    assert!(message.contains(needle), "{text:?}: {e}");
                }
                other => panic!("{text:?}: {other}"),
            }
            std::fs::remove_file(p).unwrap();
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
    fn exposure_rule() {
        let mut c = Config::load(None, Overrides::default()).unwrap();
        c.check_api_exposure().unwrap();
        c.api_listen = "0.0.0.0:8080".parse().unwrap();
        assert!(c.check_api_exposure().is_err());
        c.api_token = Some("t".into());
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
