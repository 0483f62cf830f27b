//! Configuration: the TOML file, merged with command-line flags, validated.
//!
//! Precedence: flags > config file > defaults (CONTRACT §1).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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
    /// The config file, when one was given (for messages).
    pub file: Option<PathBuf>,
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

/// Parses a CIDR such as `10.1.0.0/16` or `2001:db8::/32` (host bits must be zero).
pub fn parse_cidr(s: &str) -> Result<(std::net::IpAddr, u8), String> {
    let (a, p) = s
        .split_once('/')
        .ok_or_else(|| format!("cidr {s:?} is not ADDRESS/PREFIX"))?;
    let addr: std::net::IpAddr = a
        .parse()
        .map_err(|_| format!("cidr {s:?}: {a:?} is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = p
        .parse()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| format!("cidr {s:?}: prefix length must be 0..={max}"))?;
    let bits = match addr {
        std::net::IpAddr::V4(v) => u128::from(u32::from(v)) << 96,
        std::net::IpAddr::V6(v) => u128::from(v),
    };
    let host_mask = u128::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
    let host_mask = if addr.is_ipv4() {
        host_mask & (u128::MAX << 96)
    } else {
        host_mask
    };
    if bits & host_mask != 0 {
        return Err(format!("cidr {s:?} has host bits set"));
    }
    Ok((addr, prefix))
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
            let (addr, prefix) = parse_cidr(t_in.cidr.get_ref())
                .map_err(|m| invalid(t_in.cidr.span(), format!("topology: {m}")))?;
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
        assert_eq!(parse_cidr("10.1.0.0/16").unwrap().1, 16);
        assert_eq!(parse_cidr("2001:db8:1::/48").unwrap().1, 48);
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
