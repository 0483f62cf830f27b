//! Which addresses a target may have (CONTRACT §8, "Targets").
//!
//! gslb answers a target's `address` to the internet and connects to its
//! `probeAddress` from inside the network. An address no client can use, or one
//! that turns the prober into a scanner of what is only reachable from inside
//! (169.254.169.254 is the cloud metadata service), is refused: unspecified,
//! multicast, broadcast and link-local always, and the ranges of
//! `[health] deny` when the operator configures them.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{NameService, ValidationError};

/// Why `ip` may never be a target's address or probe address, or `None`.
/// An IPv4-mapped IPv6 address (`::ffff:169.254.169.254`) is judged as the IPv4
/// address it reaches.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip.to_canonical() {
        IpAddr::V4(a) if a.is_unspecified() => Some("unspecified"),
        IpAddr::V4(a) if a.is_broadcast() => Some("the broadcast address"),
        IpAddr::V4(a) if a.is_multicast() => Some("multicast"),
        IpAddr::V4(a) if a.is_link_local() => {
            Some("link-local (169.254.0.0/16, which holds cloud metadata services)")
        }
        IpAddr::V6(a) if a.is_unspecified() => Some("unspecified"),
        IpAddr::V6(a) if a.is_multicast() => Some("multicast"),
        IpAddr::V6(a) if a.is_unicast_link_local() => Some("link-local (fe80::/10)"),
        _ => None,
    }
}

/// The `[health] deny` range holding `ip`, if any (also for the IPv4 address an
/// IPv4-mapped IPv6 address reaches).
pub fn denied_by(ip: IpAddr, deny: &[IpNet]) -> Option<&IpNet> {
    let canonical = ip.to_canonical();
    deny.iter()
        .find(|net| net.contains(&ip) || net.contains(&canonical))
}

/// Why a resolved address of an fqdn target is not used, or `None`: the same rules
/// as for a literal address, since it is answered and probed the same way.
pub fn refused(ip: IpAddr, deny: &[IpNet]) -> Option<String> {
    if let Some(why) = forbidden(ip) {
        return Some(format!("{ip} is {why}"));
    }
    denied_by(ip, deny).map(|net| format!("{ip} is inside {net}, which [health] deny refuses"))
}

/// Checks one address of field `field` against the fixed rules and `deny`.
pub fn check(field: &str, ip: IpAddr, deny: &[IpNet]) -> Result<(), ValidationError> {
    if let Some(why) = forbidden(ip) {
        return Err(ValidationError::new(
            field,
            format!("{field} {ip} is {why}: gslb neither answers nor probes it"),
        ));
    }
    if let Some(net) = denied_by(ip, deny) {
        return Err(ValidationError::new(
            field,
            format!("{field} {ip} is inside {net}, which [health] deny refuses"),
        ));
    }
    Ok(())
}

impl NameService {
    /// The target address rules with the configured `deny` ranges: every
    /// `address` and `probeAddress`. [`NameService::from_json`] already applies the
    /// fixed rules; the registry calls this where it applies a resource, since the
    /// deny list is configuration (a stored resource written under another
    /// configuration may break it).
    pub fn check_addresses(&self, deny: &[IpNet]) -> Result<(), ValidationError> {
        for (i, t) in self.targets.iter().enumerate() {
            if let Some(a) = t.address {
                check(&format!("targets[{i}].address"), a, deny)?;
            }
            if let Some(a) = t.probe_address {
                check(&format!("targets[{i}].probeAddress"), a, deny)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_rules() {
        for (ip, why) in [
            ("0.0.0.0", Some("unspecified")),
            ("::", Some("unspecified")),
            ("255.255.255.255", Some("the broadcast address")),
            ("224.0.0.1", Some("multicast")),
            ("239.255.255.250", Some("multicast")),
            ("ff02::1", Some("multicast")),
            ("169.254.169.254", Some("link-local")),
            ("169.254.0.1", Some("link-local")),
            ("::ffff:169.254.169.254", Some("link-local")),
            ("::ffff:0.0.0.0", Some("unspecified")),
            ("fe80::1", Some("link-local (fe80::/10)")),
            ("febf::1", Some("link-local (fe80::/10)")),
            ("fec0::1", None),
            ("169.253.255.255", None),
            ("169.255.0.0", None),
            ("127.0.0.1", None),
            ("::1", None),
            ("10.1.2.3", None),
            ("192.0.2.10", None),
            ("2001:db8::1", None),
        ] {
            let got = forbidden(ip.parse().unwrap());
            match why {
                None => assert_eq!(got, None, "{ip}"),
                Some(w) => assert!(got.is_some_and(|g| g.starts_with(w)), "{ip}: {got:?}"),
            }
        }
    }

    #[test]
    fn deny_ranges() {
        let deny: Vec<IpNet> = ["10.0.0.0/8", "2001:db8:1::/48"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let hit = |ip: &str| denied_by(ip.parse().unwrap(), &deny).map(ToString::to_string);
        assert_eq!(hit("10.255.0.1").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(hit("::ffff:10.0.0.1").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(hit("2001:db8:1:2::3").as_deref(), Some("2001:db8:1::/48"));
        assert_eq!(hit("11.0.0.1"), None);
        assert_eq!(hit("2001:db8:2::1"), None);
        let e = check(
            "targets[1].probeAddress",
            "10.0.0.7".parse().unwrap(),
            &deny,
        )
        .unwrap_err();
        assert_eq!(e.field, "targets[1].probeAddress");
        assert!(e.message.contains("10.0.0.7 is inside 10.0.0.0/8"), "{e}");
    }
}
