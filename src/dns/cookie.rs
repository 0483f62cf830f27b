//! DNS server cookies (RFC 7873), built the interoperable way of RFC 9018 so that
//! every instance sharing a secret accepts the cookies the others hand out.
//!
//! A server cookie is 16 bytes: version 1, three reserved bytes, a 32-bit Unix
//! timestamp and an 8-byte SipHash-2-4 of (client cookie | version | reserved |
//! timestamp | client address) keyed with the 16-byte server secret. Checking one
//! costs one SipHash over at most 32 bytes; nothing is allocated or locked.

use std::net::IpAddr;

use siphasher::sip::SipHasher24;

/// Bytes of a client cookie.
pub const CLIENT_LEN: usize = 8;
/// Bytes of the server cookies we make (RFC 9018 §4).
pub const SERVER_LEN: usize = 16;
/// Longest COOKIE option: client cookie plus a server cookie of up to 32 bytes.
pub const MAX_OPTION: usize = CLIENT_LEN + 32;
/// A cookie older than this is not valid any more (RFC 9018 §4.3: one hour).
const MAX_AGE: i64 = 3600;
/// A valid cookie younger than this is echoed as it is; an older one is renewed
/// (RFC 9018 §4.3: renew after half an hour).
const RENEW_AFTER: i64 = 1800;
/// Clock skew tolerated for timestamps in the future (RFC 9018 §4.3: 5 minutes).
const MAX_FUTURE: i64 = 300;

/// The server secret (a SipHash-2-4 key).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 16]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never printed: it is what makes the cookies unforgeable.
        f.write_str("Secret(<hidden>)")
    }
}

impl Secret {
    /// A random secret (from the kernel's random source), for an instance whose
    /// cookies no other instance checks.
    pub fn random() -> Self {
        let mut k = [0u8; 16];
        if !getrandom(&mut k) {
            // No /dev/urandom (a bare chroot): fastrand's seed mixes the time, the
            // thread and a hash of addresses; weaker, but cookies stay unguessable
            // to anyone off-path.
            fastrand::fill(&mut k);
        }
        Self(k)
    }

    /// Parses `cookie_secret`: exactly 32 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, String> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("must be exactly 32 hex digits (16 bytes)".into());
        }
        let mut k = [0u8; 16];
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        Ok(Self(k))
    }

    /// The RFC 9018 hash of a server cookie's first 8 bytes for `client` at `ip`.
    fn hash(&self, client: &[u8; CLIENT_LEN], head: &[u8; 8], ip: IpAddr) -> [u8; 8] {
        let mut h = SipHasher24::new_with_key(&self.0);
        let mut msg = [0u8; CLIENT_LEN + 8 + 16];
        msg[..8].copy_from_slice(client);
        msg[8..16].copy_from_slice(head);
        let len = match canonical(ip) {
            IpAddr::V4(a) => {
                msg[16..20].copy_from_slice(&a.octets());
                20
            }
            IpAddr::V6(a) => {
                msg[16..32].copy_from_slice(&a.octets());
                32
            }
        };
        std::hash::Hasher::write(&mut h, &msg[..len]);
        std::hash::Hasher::finish(&h).to_le_bytes()
    }

    /// The server cookie for `client` at `ip` made at `now` (Unix seconds).
    pub fn make(&self, client: &[u8; CLIENT_LEN], ip: IpAddr, now: u32) -> [u8; SERVER_LEN] {
        let mut c = [0u8; SERVER_LEN];
        c[0] = 1;
        c[4..8].copy_from_slice(&now.to_be_bytes());
        let head: [u8; 8] = c[..8].try_into().unwrap();
        c[8..].copy_from_slice(&self.hash(client, &head, ip));
        c
    }

    /// Checks the server cookie `server` that a query from `ip` sent with `client`.
    pub fn check(&self, client: &[u8; CLIENT_LEN], server: &[u8], ip: IpAddr, now: u32) -> Verdict {
        let Ok(server) = <&[u8; SERVER_LEN]>::try_from(server) else {
            // Another length: made by some other method (another server, an older
            // secret scheme); not ours to accept.
            return Verdict::Invalid;
        };
        if server[0] != 1 {
            return Verdict::Invalid;
        }
        let stamp = u32::from_be_bytes(server[4..8].try_into().unwrap());
        // Serial number arithmetic (RFC 1982): the timestamp wraps in 2106.
        let age = i64::from(now.wrapping_sub(stamp) as i32);
        if !(-MAX_FUTURE..=MAX_AGE).contains(&age) {
            return Verdict::Invalid;
        }
        let head: [u8; 8] = server[..8].try_into().unwrap();
        // Compared in constant time: it costs nothing, and leaks nothing.
        let want = self.hash(client, &head, ip);
        if !constant_eq(&want, &server[8..]) {
            return Verdict::Invalid;
        }
        if age >= RENEW_AFTER {
            Verdict::Renew
        } else {
            Verdict::Valid
        }
    }
}

/// What a received server cookie is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Ours, fresh: echo it.
    Valid,
    /// Ours and valid, but older than half an hour: valid, answer with a new one.
    Renew,
    /// Not ours, expired, or damaged: answer with a new one, as if only the client
    /// cookie had been sent (RFC 7873 §5.2.3).
    Invalid,
}

/// An IPv4-mapped IPv6 address is the IPv4 client it stands for (dual-stack sockets).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn constant_eq(a: &[u8; 8], b: &[u8]) -> bool {
    b.len() == 8 && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Fills `buf` from the kernel's random source; false when it cannot.
fn getrandom(buf: &mut [u8]) -> bool {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn client(s: &str) -> [u8; 8] {
        hex(s).try_into().unwrap()
    }

    /// RFC 9018 Appendix A.1 to A.3.
    #[test]
    fn rfc9018_test_vectors() {
        let secret = Secret::from_hex("e5e973e5a6b2a43f48e7dc849e37bfcf").unwrap();
        for (cc, ip, now, want) in [
            (
                "2464c4abcf10c957",
                "198.51.100.100",
                1559731985,
                "010000005cf79f111f8130c3eee29480",
            ),
            (
                "2464c4abcf10c957",
                "198.51.100.100",
                1559734385,
                "010000005cf7a871d4a564a1442aca77",
            ),
            (
                "fc93fc62807ddb86",
                "203.0.113.203",
                1559734700,
                "010000005cf7a9acf73a7810aca2381e",
            ),
        ] {
            let got = secret.make(&client(cc), ip.parse().unwrap(), now);
            assert_eq!(got.to_vec(), hex(want), "{cc} {ip} {now}");
            // And it is accepted, by this secret only.
            assert_eq!(
                secret.check(&client(cc), &got, ip.parse().unwrap(), now + 10),
                Verdict::Valid
            );
            let other = Secret::from_hex("00e973e5a6b2a43f48e7dc849e37bfcf").unwrap();
            assert_eq!(
                other.check(&client(cc), &got, ip.parse().unwrap(), now + 10),
                Verdict::Invalid
            );
        }
    }

    #[test]
    fn validity_window_and_binding() {
        let s = Secret::random();
        let cc = client("0102030405060708");
        let ip: IpAddr = "2001:db8::53".parse().unwrap();
        let t = 1_700_000_000u32;
        let c = s.make(&cc, ip, t);
        assert_eq!(s.check(&cc, &c, ip, t), Verdict::Valid);
        assert_eq!(s.check(&cc, &c, ip, t + 1799), Verdict::Valid);
        assert_eq!(s.check(&cc, &c, ip, t + 1800), Verdict::Renew);
        assert_eq!(s.check(&cc, &c, ip, t + 3600), Verdict::Renew);
        assert_eq!(s.check(&cc, &c, ip, t + 3601), Verdict::Invalid);
        assert_eq!(s.check(&cc, &c, ip, t - 300), Verdict::Valid);
        assert_eq!(s.check(&cc, &c, ip, t - 301), Verdict::Invalid);
        // Bound to the client cookie and the address.
        assert_eq!(
            s.check(&client("0102030405060709"), &c, ip, t),
            Verdict::Invalid
        );
        assert_eq!(
            s.check(&cc, &c, "2001:db8::54".parse().unwrap(), t),
            Verdict::Invalid
        );
        // Any flipped bit, other lengths, other versions.
        for i in 0..16 {
            let mut bad = c;
            bad[i] ^= 0x10;
            let v = s.check(&cc, &bad, ip, t);
            // Flipping reserved bits still changes the hash input.
            assert_eq!(v, Verdict::Invalid, "byte {i}");
        }
        assert_eq!(s.check(&cc, &c[..8], ip, t), Verdict::Invalid);
        // A dual-stack socket's view of an IPv4 client is the same client.
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(s.check(&cc, &s.make(&cc, v4, t), mapped, t), Verdict::Valid);
        // The timestamp wraps (2106) without breaking the check.
        let c = s.make(&cc, ip, u32::MAX - 5);
        assert_eq!(s.check(&cc, &c, ip, 10), Verdict::Valid);
    }

    #[test]
    fn secret_parsing() {
        assert!(Secret::from_hex("E5E973E5A6B2A43F48E7DC849E37BFCF").is_ok());
        for bad in [
            "",
            "e5e9",
            "e5e973e5a6b2a43f48e7dc849e37bfcf00",
            "g5e973e5a6b2a43f48e7dc849e37bfcf",
        ] {
            assert!(Secret::from_hex(bad).is_err(), "{bad}");
        }
        assert_ne!(Secret::random(), Secret::random());
        assert_eq!(format!("{:?}", Secret::random()), "Secret(<hidden>)");
    }
}
