use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::healthcheck::HealthCheckInput;
use super::{Endpoint, HealthCheck, Locality, LocalityPattern, ValidationError, normalize_name};

/// How the answer for a NameService is chosen among its eligible targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Policy {
    RoundRobin,
    Ratio,
    Locality,
}

/// What to answer when no enabled target of the queried family is eligible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum AllDown {
    /// Fail open: every enabled target of the family is answered.
    #[default]
    AnswerAll,
    /// Answer NODATA.
    NoData,
}

/// How Ratio draws for a client: independently per query, or by the client's subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Stickiness {
    /// Every query draws anew.
    #[default]
    #[serde(rename = "None")]
    Off,
    /// A consistent (rendezvous) hash of the client's /24 (IPv4) or /56 (IPv6) picks
    /// the target: a subnet keeps its target while the set of candidates is unchanged.
    ClientSubnet,
}

/// One gateway VIP of a NameService.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub name: String,
    /// The gateway VIP; exactly one of `address` and `fqdn` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
    /// A DNS name (lowercase, no trailing dot) whose A and AAAA records are the
    /// target's addresses, resolved by gslb (see `crate::resolver`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    pub ratio: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Filled in for an address target (defaults to `address`); never set for an
    /// fqdn target, whose resolved addresses are probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_address: Option<IpAddr>,
    pub enabled: bool,
}

/// `failover`: clients in region `from` go to region `to` when their region has no
/// eligible target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FailoverRule {
    pub from: String,
    pub to: String,
}

/// `distribute`: clients matching `from` get the targets of one `to` pattern, drawn by weight.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DistributeRule {
    pub from: String,
    pub to: BTreeMap<String, u32>,
}

/// A validated NameService with every default filled in: the stored and returned form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NameService {
    pub name: String,
    pub ttl: u32,
    pub policy: Policy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    pub targets: Vec<Target>,
    pub all_down: AllDown,
    #[serde(default)]
    pub failover: Vec<FailoverRule>,
    #[serde(default)]
    pub distribute: Vec<DistributeRule>,
    /// Below this share (percent) of eligible targets among the enabled ones of a
    /// family, answer as if every enabled one were eligible; 0 = off.
    pub panic_threshold_percent: u32,
    /// A target that turns Healthy ramps from 10% to 100% of its share over this
    /// many seconds; 0 = at once.
    pub slow_start_seconds: u32,
    /// TTL of the answers that health changed (a target of the family not
    /// eligible, failing open, panic). Filled in with `ttl` when absent.
    pub degraded_ttl: u32,
    pub stickiness: Stickiness,
    /// A Drain override that would leave fewer eligible targets of a family is
    /// refused (409) unless forced; 0 = no check.
    pub min_eligible_targets: u32,
}

pub const DEFAULT_TTL: u32 = 30;
pub const MAX_TTL: u32 = 86_400;
pub const MAX_TARGETS: usize = 64;
pub const MAX_RATIO: u32 = 10_000;
pub const MAX_WEIGHT: u32 = 10_000;
pub const MAX_SLOW_START_SECONDS: u32 = 3600;
pub const DEFAULT_MIN_ELIGIBLE_TARGETS: u32 = 1;
/// At most this many `failover` rules, `distribute` rules, and patterns in one
/// `distribute.to`: DNS workers scan them per query, so they stay bounded (and a
/// rule's patterns fit the policy's 64-bit sets).
pub const MAX_RULES: usize = 64;

// The request body as a client may send it: everything optional so that a missing
// field becomes a precise 422 instead of a serde message.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NameServiceInput {
    name: Option<String>,
    ttl: Option<u32>,
    policy: Option<Policy>,
    health_check: Option<HealthCheckInput>,
    targets: Option<Vec<TargetInput>>,
    all_down: Option<AllDown>,
    failover: Option<Vec<FailoverRule>>,
    distribute: Option<Vec<DistributeRule>>,
    panic_threshold_percent: Option<u32>,
    slow_start_seconds: Option<u32>,
    degraded_ttl: Option<u32>,
    stickiness: Option<Stickiness>,
    min_eligible_targets: Option<u32>,
    /// Accepted and ignored, so a GET result can be PUT back as it is.
    #[serde(rename = "status")]
    _status: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TargetInput {
    name: Option<String>,
    address: Option<String>,
    fqdn: Option<String>,
    locality: Option<String>,
    ratio: Option<u32>,
    port: Option<u32>,
    probe_address: Option<String>,
    enabled: Option<bool>,
}

pub(super) fn err(field: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError::new(field, message)
}

pub(super) fn in_range(field: &str, v: u32, lo: u32, hi: u32) -> Result<u32, ValidationError> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(err(
            field,
            format!("{field} must be between {lo} and {hi}, got {v}"),
        ))
    }
}

fn parse_ip(field: &str, s: &str) -> Result<IpAddr, ValidationError> {
    s.parse().map_err(|_| {
        err(
            field,
            format!("{field} must be an IPv4 or IPv6 literal, got {s:?}"),
        )
    })
}

fn valid_target_name(s: &str) -> bool {
    let b = s.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 63
        && ok(&b[0])
        && ok(&b[b.len() - 1])
        && b.iter().all(|c| ok(c) || *c == b'-')
}

impl NameService {
    /// Validates a request body (already known to be syntactically valid JSON) and
    /// returns the resource with every default filled in. The first broken rule is
    /// reported with its field path.
    pub fn from_json(value: serde_json::Value) -> Result<Self, ValidationError> {
        if !value.is_object() {
            return Err(err("", "the body must be a JSON object"));
        }
        let input: NameServiceInput = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            let message = e.into_inner().to_string();
            // serde names the parent of an unknown field: point at the field itself.
            let field = match message
                .strip_prefix("unknown field `")
                .and_then(|rest| rest.split('`').next())
            {
                Some(unknown) if path == unknown || path.ends_with(&format!(".{unknown}")) => path,
                Some(unknown) if path.is_empty() => unknown.to_string(),
                Some(unknown) => format!("{path}.{unknown}"),
                None => path,
            };
            err(field, message)
        })?;
        Self::validate(input)
    }

    fn validate(input: NameServiceInput) -> Result<Self, ValidationError> {
        let raw_name = input.name.ok_or_else(|| err("name", "name is required"))?;
        let name = normalize_name(&raw_name).map_err(|e| {
            err(
                "name",
                format!("name {raw_name:?} is not a valid DNS name: {e}"),
            )
        })?;
        let ttl = in_range("ttl", input.ttl.unwrap_or(DEFAULT_TTL), 0, MAX_TTL)?;
        let policy = input.policy.ok_or_else(|| {
            err(
                "policy",
                "policy is required: one of RoundRobin, Ratio, Locality",
            )
        })?;

        let health_check = input
            .health_check
            .map(HealthCheckInput::validate)
            .transpose()?;

        let targets_in = input
            .targets
            .ok_or_else(|| err("targets", "targets is required"))?;
        if targets_in.is_empty() || targets_in.len() > MAX_TARGETS {
            return Err(err(
                "targets",
                format!(
                    "targets must have 1 to {MAX_TARGETS} entries, got {}",
                    targets_in.len()
                ),
            ));
        }
        let mut seen = HashSet::new();
        let mut targets = Vec::with_capacity(targets_in.len());
        for (i, t) in targets_in.into_iter().enumerate() {
            let f = |k: &str| format!("targets[{i}].{k}");
            let tname = t
                .name
                .ok_or_else(|| err(f("name"), format!("{} is required", f("name"))))?;
            if !valid_target_name(&tname) {
                return Err(err(
                    f("name"),
                    format!(
                        "{} {tname:?} must match [a-z0-9]([a-z0-9-]{{0,61}}[a-z0-9])?",
                        f("name")
                    ),
                ));
            }
            if !seen.insert(tname.clone()) {
                return Err(err(
                    f("name"),
                    format!("target name {tname:?} is used twice"),
                ));
            }
            let (address, fqdn) = match (&t.address, &t.fqdn) {
                (Some(a), None) => {
                    let address = parse_ip(&f("address"), a)?;
                    super::address::check(&f("address"), address, &[])?;
                    (Some(address), None)
                }
                (None, Some(n)) => {
                    let fqdn = normalize_name(n).map_err(|e| {
                        err(
                            f("fqdn"),
                            format!("{} {n:?} is not a valid DNS name: {e}", f("fqdn")),
                        )
                    })?;
                    // A name that is an IP literal is meant as an address.
                    if fqdn.parse::<IpAddr>().is_ok() || fqdn.is_empty() {
                        return Err(err(
                            f("fqdn"),
                            format!(
                                "{} {n:?} is not a host name: give an IP address as address",
                                f("fqdn")
                            ),
                        ));
                    }
                    if t.probe_address.is_some() {
                        return Err(err(
                            f("probeAddress"),
                            format!(
                                "{} is not allowed with fqdn: the addresses the name resolves to are probed",
                                f("probeAddress")
                            ),
                        ));
                    }
                    (None, Some(fqdn))
                }
                (Some(_), Some(_)) => {
                    return Err(err(
                        f("fqdn"),
                        format!(
                            "{} and {} exclude each other: give one",
                            f("address"),
                            f("fqdn")
                        ),
                    ));
                }
                (None, None) => {
                    return Err(err(
                        f("address"),
                        format!("{} (or {}) is required", f("address"), f("fqdn")),
                    ));
                }
            };
            if let Some(l) = &t.locality {
                Locality::parse(l).map_err(|m| err(f("locality"), m))?;
            }
            let ratio = in_range(&f("ratio"), t.ratio.unwrap_or(1), 0, MAX_RATIO)?;
            let port = match t.port {
                None => None,
                Some(p) => Some(in_range(&f("port"), p, 1, 65_535)? as u16),
            };
            let probe_address = match &t.probe_address {
                None => address,
                Some(s) => {
                    let ip = parse_ip(&f("probeAddress"), s)?;
                    super::address::check(&f("probeAddress"), ip, &[])?;
                    Some(ip)
                }
            };
            targets.push(Target {
                name: tname,
                address,
                fqdn,
                locality: t.locality,
                ratio,
                port,
                probe_address,
                enabled: t.enabled.unwrap_or(true),
            });
        }

        // Ratio draws by ratio among enabled targets: with every one at 0 no answer
        // could ever be drawn (a service with every target drained is not this case).
        if policy == Policy::Ratio
            && targets.iter().any(|t| t.enabled)
            && targets.iter().filter(|t| t.enabled).all(|t| t.ratio == 0)
        {
            return Err(err(
                "targets",
                "policy Ratio needs an enabled target with a ratio above 0: every enabled target has ratio 0, so no answer could be drawn",
            ));
        }

        let failover = input.failover.unwrap_or_default();
        let distribute = input.distribute.unwrap_or_default();
        if policy != Policy::Locality {
            if !failover.is_empty() {
                return Err(err(
                    "failover",
                    "failover is only allowed with policy Locality",
                ));
            }
            if !distribute.is_empty() {
                return Err(err(
                    "distribute",
                    "distribute is only allowed with policy Locality",
                ));
            }
        }
        for (field, n) in [
            ("failover", failover.len()),
            ("distribute", distribute.len()),
        ] {
            if n > MAX_RULES {
                return Err(err(
                    field,
                    format!("{field} may have at most {MAX_RULES} rules, got {n}"),
                ));
            }
        }
        for (i, rule) in failover.iter().enumerate() {
            for (k, v) in [("from", &rule.from), ("to", &rule.to)] {
                let field = format!("failover[{i}].{k}");
                let l = Locality::parse(v).map_err(|m| err(&field, m))?;
                if l.parts().len() != 1 {
                    return Err(err(field, format!("failover names a region, got {v:?}")));
                }
            }
        }
        for (i, rule) in distribute.iter().enumerate() {
            LocalityPattern::parse(&rule.from)
                .map_err(|m| err(format!("distribute[{i}].from"), m))?;
            if rule.to.is_empty() || rule.to.len() > MAX_RULES {
                return Err(err(
                    format!("distribute[{i}].to"),
                    format!(
                        "distribute[{i}].to must have 1 to {MAX_RULES} patterns, got {}",
                        rule.to.len()
                    ),
                ));
            }
            let mut sum = 0u64;
            for (pattern, weight) in &rule.to {
                let field = format!("distribute[{i}].to.{pattern}");
                LocalityPattern::parse(pattern).map_err(|m| err(&field, m))?;
                in_range(&field, *weight, 0, MAX_WEIGHT)?;
                sum += u64::from(*weight);
            }
            if sum == 0 {
                return Err(err(
                    format!("distribute[{i}].to"),
                    "distribute weights must not all be 0",
                ));
            }
        }

        let panic_threshold_percent = in_range(
            "panicThresholdPercent",
            input.panic_threshold_percent.unwrap_or(0),
            0,
            100,
        )?;
        let slow_start_seconds = in_range(
            "slowStartSeconds",
            input.slow_start_seconds.unwrap_or(0),
            0,
            MAX_SLOW_START_SECONDS,
        )?;
        let degraded_ttl = in_range("degradedTtl", input.degraded_ttl.unwrap_or(ttl), 0, MAX_TTL)?;
        let stickiness = input.stickiness.unwrap_or_default();
        if stickiness != Stickiness::Off && policy != Policy::Ratio {
            return Err(err(
                "stickiness",
                "stickiness ClientSubnet is only allowed with policy Ratio",
            ));
        }
        let min_eligible_targets = in_range(
            "minEligibleTargets",
            input
                .min_eligible_targets
                .unwrap_or(DEFAULT_MIN_ELIGIBLE_TARGETS),
            0,
            MAX_TARGETS as u32,
        )?;

        Ok(NameService {
            name,
            ttl,
            policy,
            health_check,
            targets,
            all_down: input.all_down.unwrap_or_default(),
            failover,
            distribute,
            panic_threshold_percent,
            slow_start_seconds,
            degraded_ttl,
            stickiness,
            min_eligible_targets,
        })
    }

    /// The health-check endpoint of address target `i`, or `None` when targets are
    /// not probed or it is an fqdn target (see [`NameService::endpoint_at`]).
    pub fn endpoint(&self, i: usize) -> Option<Endpoint> {
        let t = &self.targets[i];
        self.endpoint_at(i, t.probe_address?)
    }

    /// The health-check endpoint of target `i` probed at `address` (one of the
    /// addresses an fqdn target resolved to), or `None` when targets are not probed.
    pub fn endpoint_at(&self, i: usize, address: IpAddr) -> Option<Endpoint> {
        let hc = self.health_check.as_ref()?;
        let t = &self.targets[i];
        Some(Endpoint {
            address,
            port: t.port.unwrap_or_else(|| hc.port()),
            check: hc.check(),
            period_seconds: hc.period_seconds,
            timeout_seconds: hc.timeout_seconds,
            failure_threshold: hc.failure_threshold,
            success_threshold: hc.success_threshold,
            flap_damping: hc.flap_damping,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal() -> serde_json::Value {
        json!({"name": "App.Gslb.Example.", "policy": "RoundRobin",
               "targets": [{"name": "dc1", "address": "192.0.2.10"}]})
    }

    #[test]
    fn fills_defaults() {
        let ns = NameService::from_json(minimal()).unwrap();
        assert_eq!(ns.name, "app.gslb.example");
        assert_eq!(ns.ttl, 30);
        assert_eq!(ns.all_down, AllDown::AnswerAll);
        let t = &ns.targets[0];
        assert_eq!((t.ratio, t.enabled, t.probe_address), (1, true, t.address));
        assert!(ns.health_check.is_none());
        assert_eq!(
            (
                ns.panic_threshold_percent,
                ns.slow_start_seconds,
                ns.degraded_ttl,
                ns.stickiness,
                ns.min_eligible_targets
            ),
            (0, 0, 30, Stickiness::Off, 1)
        );
        // degradedTtl defaults to the ttl given.
        let mut v = minimal();
        v["ttl"] = json!(5);
        assert_eq!(NameService::from_json(v).unwrap().degraded_ttl, 5);
        let mut v = minimal();
        v["healthCheck"] = json!({"port": 443});
        let hc = NameService::from_json(v).unwrap().health_check.unwrap();
        assert_eq!(
            (
                hc.period_seconds,
                hc.timeout_seconds,
                hc.failure_threshold,
                hc.success_threshold
            ),
            (5, 2, 3, 1)
        );
    }

    #[test]
    fn round_trips_through_json() {
        let ns = NameService::from_json(minimal()).unwrap();
        let again = NameService::from_json(serde_json::to_value(&ns).unwrap()).unwrap();
        assert_eq!(ns, again);
    }

    #[test]
    fn rejects_each_broken_rule_naming_the_field() {
        let cases: Vec<(&str, serde_json::Value)> = vec![
            ("name", json!({"name": "bad name"})),
            ("name", json!({"name": null})),
            ("ttl", json!({"ttl": 86401})),
            ("ttl", json!({"ttl": -1})),
            ("ttl", json!({"ttl": "30"})),
            ("policy", json!({"policy": "Random"})),
            ("policy", json!({"policy": null})),
            ("healthCheck.port", json!({"healthCheck": {}})),
            ("healthCheck.port", json!({"healthCheck": {"port": 0}})),
            ("healthCheck.port", json!({"healthCheck": {"port": 65536}})),
            (
                "healthCheck.periodSeconds",
                json!({"healthCheck": {"port": 1, "periodSeconds": 3601}}),
            ),
            (
                "healthCheck.timeoutSeconds",
                json!({"healthCheck": {"port": 1, "periodSeconds": 2, "timeoutSeconds": 3}}),
            ),
            (
                "healthCheck.timeoutSeconds",
                json!({"healthCheck": {"port": 1, "timeoutSeconds": 0}}),
            ),
            (
                "healthCheck.failureThreshold",
                json!({"healthCheck": {"port": 1, "failureThreshold": 11}}),
            ),
            (
                "healthCheck.successThreshold",
                json!({"healthCheck": {"port": 1, "successThreshold": 0}}),
            ),
            ("targets", json!({"targets": []})),
            ("targets", json!({"targets": null})),
            (
                "targets[0].name",
                json!({"targets": [{"name": "DC1", "address": "192.0.2.1"}]}),
            ),
            (
                "targets[0].name",
                json!({"targets": [{"name": "-dc", "address": "192.0.2.1"}]}),
            ),
            (
                "targets[1].name",
                json!({"targets": [{"name": "a", "address": "192.0.2.1"}, {"name": "a", "address": "192.0.2.2"}]}),
            ),
            (
                "targets[0].address",
                json!({"targets": [{"name": "a", "address": "host.example"}]}),
            ),
            ("targets[0].address", json!({"targets": [{"name": "a"}]})),
            (
                "targets[0].locality",
                json!({"targets": [{"name": "a", "address": "192.0.2.1", "locality": "a/b/c/d"}]}),
            ),
            (
                "targets[0].ratio",
                json!({"targets": [{"name": "a", "address": "192.0.2.1", "ratio": 10001}]}),
            ),
            (
                "targets[0].port",
                json!({"targets": [{"name": "a", "address": "192.0.2.1", "port": 0}]}),
            ),
            (
                "targets[0].probeAddress",
                json!({"targets": [{"name": "a", "address": "192.0.2.1", "probeAddress": "x"}]}),
            ),
            (
                "targets[0].enabled",
                json!({"targets": [{"name": "a", "address": "192.0.2.1", "enabled": "yes"}]}),
            ),
            (
                "targets[0].address",
                json!({"targets": [{"name": "a", "address": "169.254.169.254"}]}),
            ),
            (
                "targets[0].address",
                json!({"targets": [{"name": "a", "address": "0.0.0.0"}]}),
            ),
            (
                "targets[0].address",
                json!({"targets": [{"name": "a", "address": "ff02::1"}]}),
            ),
            (
                "targets[1].probeAddress",
                json!({"targets": [{"name": "a", "address": "192.0.2.1"},
                                   {"name": "b", "address": "192.0.2.2", "probeAddress": "fe80::1"}]}),
            ),
            (
                "targets[0].probeAddress",
                json!({"targets": [{"name": "a", "address": "192.0.2.1", "probeAddress": "255.255.255.255"}]}),
            ),
            (
                "targets",
                json!({"policy": "Ratio", "targets": [
                    {"name": "a", "address": "192.0.2.1", "ratio": 0},
                    {"name": "b", "address": "192.0.2.2", "ratio": 7, "enabled": false}]}),
            ),
            ("allDown", json!({"allDown": "Panic"})),
            (
                "panicThresholdPercent",
                json!({"panicThresholdPercent": 101}),
            ),
            (
                "panicThresholdPercent",
                json!({"panicThresholdPercent": -1}),
            ),
            (
                "panicThresholdPercent",
                json!({"panicThresholdPercent": 50.5}),
            ),
            ("slowStartSeconds", json!({"slowStartSeconds": 3601})),
            ("slowStartSeconds", json!({"slowStartSeconds": "60"})),
            ("degradedTtl", json!({"degradedTtl": 86401})),
            ("degradedTtl", json!({"degradedTtl": -5})),
            ("stickiness", json!({"stickiness": "Client"})),
            // Only Ratio draws; the other policies have nothing to stick.
            ("stickiness", json!({"stickiness": "ClientSubnet"})),
            ("minEligibleTargets", json!({"minEligibleTargets": 65})),
            ("minEligibleTargets", json!({"minEligibleTargets": true})),
            ("failover", json!({"failover": [{"from": "a", "to": "b"}]})),
            (
                "distribute",
                json!({"distribute": [{"from": "a", "to": {"b": 1}}]}),
            ),
            ("bogus", json!({"bogus": 1})),
            ("healthCheck.prot", json!({"healthCheck": {"prot": 1}})),
            (
                "targets[0].adress",
                json!({"targets": [{"name": "a", "adress": "192.0.2.1"}]}),
            ),
        ];
        for (field, patch) in cases {
            let mut v = minimal();
            for (k, val) in patch.as_object().unwrap() {
                v[k] = val.clone();
            }
            let e = NameService::from_json(v.clone()).expect_err(&format!("accepted {v}"));
            assert_eq!(e.field, field, "{v}: {e}");
        }
        let many: Vec<_> = (0..65)
            .map(|i| json!({"name": format!("t{i}"), "address": "192.0.2.1"}))
            .collect();
        let mut v = minimal();
        v["targets"] = json!(many);
        assert_eq!(NameService::from_json(v).unwrap_err().field, "targets");
    }

    #[test]
    fn locality_rules_are_checked() {
        let mut v = minimal();
        v["policy"] = json!("Locality");
        v["failover"] = json!([{"from": "us-west", "to": "us-east/zone-a"}]);
        assert_eq!(
            NameService::from_json(v.clone()).unwrap_err().field,
            "failover[0].to"
        );
        v["failover"] = json!([{"from": "us-west", "to": "us-east"}]);
        v["distribute"] = json!([{"from": "*/*", "to": {"r1/z1/*": 99, "r2/z2/*": 1}}]);
        NameService::from_json(v.clone()).unwrap();
        v["distribute"] = json!([{"from": "*/*", "to": {"r1/z1/*": 0}}]);
        assert_eq!(
            NameService::from_json(v.clone()).unwrap_err().field,
            "distribute[0].to"
        );
        v["distribute"] = json!([{"from": "a b", "to": {"r1": 1}}]);
        assert_eq!(
            NameService::from_json(v).unwrap_err().field,
            "distribute[0].from"
        );
    }

    #[test]
    fn failover_and_distribute_cases() {
        let rules_64: Vec<_> = (0..64)
            .map(|i| json!({"from": format!("r{i}"), "to": "x"}))
            .collect();
        let rules_65: Vec<_> = (0..65)
            .map(|i| json!({"from": format!("r{i}"), "to": "x"}))
            .collect();
        let to_65: serde_json::Map<String, serde_json::Value> =
            (0..65).map(|i| (format!("r{i}"), json!(1))).collect();
        // (expected error field or None for accepted, patch)
        let cases: Vec<(Option<&str>, serde_json::Value)> = vec![
            (
                None,
                json!({"failover": [{"from": "r1", "to": "r2"}, {"from": "r1", "to": "r3"}]}),
            ),
            (None, json!({"failover": rules_64})),
            (Some("failover"), json!({"failover": rules_65})),
            (
                Some("failover[0].from"),
                json!({"failover": [{"from": "*", "to": "r2"}]}),
            ),
            (
                Some("failover[0].from"),
                json!({"failover": [{"from": "", "to": "r2"}]}),
            ),
            (
                Some("failover[1].to"),
                json!({"failover": [{"from": "a", "to": "b"}, {"from": "a", "to": "b/c"}]}),
            ),
            (Some("failover[0]"), json!({"failover": [{"from": "a"}]})),
            (
                Some("failover[0].to"),
                json!({"failover": [{"from": "a", "to": 3}]}),
            ),
            (
                Some("failover"),
                json!({"failover": {"from": "a", "to": "b"}}),
            ),
            (
                None,
                json!({"distribute": [{"from": "*", "to": {"*/*/*": 1}}]}),
            ),
            (
                None,
                json!({"distribute": [{"from": "r1/*/s1", "to": {"r2": 10000, "r3": 0}}]}),
            ),
            (
                Some("distribute[0].from"),
                json!({"distribute": [{"from": "r1/*/s1/x", "to": {"r2": 1}}]}),
            ),
            (
                Some("distribute[0].from"),
                json!({"distribute": [{"from": "r1//s1", "to": {"r2": 1}}]}),
            ),
            (
                Some("distribute[0].from"),
                json!({"distribute": [{"from": "r*", "to": {"r2": 1}}]}),
            ),
            (
                Some("distribute[0].to.r2/"),
                json!({"distribute": [{"from": "*", "to": {"r2/": 1}}]}),
            ),
            (
                Some("distribute[0].to.r2"),
                json!({"distribute": [{"from": "*", "to": {"r2": 10001}}]}),
            ),
            (
                Some("distribute[0].to.r2"),
                json!({"distribute": [{"from": "*", "to": {"r2": -1}}]}),
            ),
            (
                Some("distribute[0].to.r2"),
                json!({"distribute": [{"from": "*", "to": {"r2": 1.5}}]}),
            ),
            (
                Some("distribute[0].to"),
                json!({"distribute": [{"from": "*", "to": {}}]}),
            ),
            (
                Some("distribute[0].to"),
                json!({"distribute": [{"from": "*", "to": to_65}]}),
            ),
            (
                Some("distribute[1].to"),
                json!({"distribute": [{"from": "*", "to": {"a": 1}}, {"from": "*", "to": {"a": 0, "b": 0}}]}),
            ),
            (
                Some("distribute[0]"),
                json!({"distribute": [{"from": "*"}]}),
            ),
        ];
        for (want, patch) in cases {
            let mut v = json!({"name": "app.gslb.example", "policy": "Locality",
                               "targets": [{"name": "dc1", "address": "192.0.2.10"}]});
            for (k, val) in patch.as_object().unwrap() {
                v[k] = val.clone();
            }
            match (want, NameService::from_json(v.clone())) {
                (None, Ok(_)) => {}
                (Some(field), Err(e)) => assert_eq!(e.field, field, "{patch}: {e}"),
                (want, got) => panic!("{patch}: want {want:?}, got {got:?}"),
            }
            // The same rules are refused outright with any other policy.
            if want.is_none() {
                let key = patch.as_object().unwrap().keys().next().unwrap().clone();
                for policy in ["RoundRobin", "Ratio"] {
                    v["policy"] = json!(policy);
                    assert_eq!(NameService::from_json(v.clone()).unwrap_err().field, key);
                }
            }
        }
    }

    #[test]
    fn steering_fields_round_trip() {
        let mut v = minimal();
        for (k, val) in [
            ("policy", json!("Ratio")),
            ("ttl", json!(60)),
            ("panicThresholdPercent", json!(100)),
            ("slowStartSeconds", json!(3600)),
            ("degradedTtl", json!(0)),
            ("stickiness", json!("ClientSubnet")),
            ("minEligibleTargets", json!(0)),
        ] {
            v[k] = val;
        }
        let ns = NameService::from_json(v).unwrap();
        assert_eq!(
            (
                ns.panic_threshold_percent,
                ns.slow_start_seconds,
                ns.degraded_ttl,
                ns.stickiness,
                ns.min_eligible_targets
            ),
            (100, 3600, 0, Stickiness::ClientSubnet, 0)
        );
        let out = serde_json::to_value(&ns).unwrap();
        assert_eq!(out["stickiness"], "ClientSubnet");
        assert_eq!(out["degradedTtl"], 0);
        assert_eq!(NameService::from_json(out).unwrap(), ns);
        // The default spelled out is accepted too.
        let mut v = minimal();
        v["stickiness"] = json!("None");
        let ns = NameService::from_json(v).unwrap();
        assert_eq!(serde_json::to_value(&ns).unwrap()["stickiness"], "None");
    }

    #[test]
    fn fqdn_targets() {
        let mut v = minimal();
        v["targets"] = json!([{"name": "a", "fqdn": "GW.DC1.Example."}]);
        let ns = NameService::from_json(v.clone()).unwrap();
        let t = &ns.targets[0];
        assert_eq!(t.fqdn.as_deref(), Some("gw.dc1.example"));
        assert_eq!((t.address, t.probe_address), (None, None));
        assert_eq!(ns.endpoint(0), None);
        // GET output PUTs back unchanged.
        let out = serde_json::to_value(&ns).unwrap();
        assert!(out["targets"][0].get("address").is_none());
        assert_eq!(NameService::from_json(out).unwrap(), ns);
        let mut hc = v.clone();
        hc["healthCheck"] = json!({"port": 443});
        let ns = NameService::from_json(hc).unwrap();
        assert_eq!(ns.endpoint(0), None);
        let ep = ns.endpoint_at(0, "192.0.2.7".parse().unwrap()).unwrap();
        assert_eq!((ep.address.to_string(), ep.port), ("192.0.2.7".into(), 443));
        for (target, field, needle) in [
            (
                json!({"name": "a", "fqdn": "gw.example", "address": "192.0.2.1"}),
                "targets[0].fqdn",
                "exclude each other",
            ),
            (
                json!({"name": "a", "fqdn": "gw.example", "probeAddress": "192.0.2.1"}),
                "targets[0].probeAddress",
                "not allowed with fqdn",
            ),
            (
                json!({"name": "a", "fqdn": "bad name"}),
                "targets[0].fqdn",
                "not a valid DNS name",
            ),
            (
                json!({"name": "a", "fqdn": "192.0.2.1"}),
                "targets[0].fqdn",
                "not a host name",
            ),
            (json!({"name": "a", "fqdn": "."}), "targets[0].fqdn", ""),
            (json!({"name": "a", "fqdn": 7}), "targets[0].fqdn", ""),
            (
                json!({"name": "a"}),
                "targets[0].address",
                "(or targets[0].fqdn) is required",
            ),
        ] {
            let mut v = minimal();
            v["targets"] = json!([target]);
            let e = NameService::from_json(v.clone()).expect_err(&format!("accepted {v}"));
            assert_eq!(e.field, field, "{v}: {e}");
            assert!(e.message.contains(needle), "{v}: {e}");
        }
    }

    #[test]
    fn ratio_zero_is_fine_while_one_enabled_target_has_a_ratio() {
        let mut v = minimal();
        v["policy"] = json!("Ratio");
        v["targets"] = json!([
            {"name": "a", "address": "192.0.2.1", "ratio": 0},
            {"name": "b", "address": "2001:db8::1", "ratio": 1}]);
        NameService::from_json(v.clone()).unwrap();
        // Every target drained: nothing is drawn anyway, and draining stays possible.
        v["targets"] = json!([{"name": "a", "address": "192.0.2.1", "ratio": 0, "enabled": false}]);
        NameService::from_json(v.clone()).unwrap();
        // Other policies answer ratio-0 targets.
        v["policy"] = json!("RoundRobin");
        v["targets"] = json!([{"name": "a", "address": "192.0.2.1", "ratio": 0}]);
        NameService::from_json(v).unwrap();
    }

    #[test]
    fn status_is_ignored_on_input() {
        let mut v = minimal();
        v["status"] = json!({"conditions": []});
        NameService::from_json(v).unwrap();
    }

    #[test]
    fn non_object_body() {
        assert_eq!(NameService::from_json(json!([1])).unwrap_err().field, "");
    }
}
