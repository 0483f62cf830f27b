//! DNS names in uncompressed wire form (length-prefixed labels ending with the root
//! label 0), the form the query path compares and hashes. Names kept in a
//! [`super::ZoneSet`] are always lowercase.

/// Longest name in wire form (RFC 1035 §3.1).
pub const MAX_NAME: usize = 255;

/// Lowercase wire form of a dotted name without trailing dot (`""` is the root);
/// `None` if a label is empty or too long, or the name too long.
pub fn from_dotted(name: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(name.len() + 2);
    if !name.is_empty() {
        for label in name.split('.') {
            if label.is_empty() || label.len() > 63 {
                return None;
            }
            out.push(label.len() as u8);
            out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
        }
    }
    out.push(0);
    (out.len() <= MAX_NAME).then_some(out)
}

/// Lowercase wire form of a hickory name.
pub fn from_name(name: &hickory_proto::rr::Name) -> Box<[u8]> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(|b| b.to_ascii_lowercase()));
    }
    out.push(0);
    out.into()
}

/// Wire form of a hickory name, case kept.
pub fn from_name_case(name: &hickory_proto::rr::Name) -> Box<[u8]> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
    out.into()
}

/// Presentation form without the trailing dot (root is `""`); bytes other than
/// letters, digits, `-`, `_` and `*` are escaped as `\DDD` (a dot as `\.`).
pub fn to_dotted(wire: &[u8]) -> String {
    let mut s = String::with_capacity(wire.len());
    let mut i = 0;
    while i < wire.len() && wire[i] != 0 {
        let len = wire[i] as usize;
        if !s.is_empty() {
            s.push('.');
        }
        for &b in &wire[i + 1..(i + 1 + len).min(wire.len())] {
            match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'*' => s.push(b as char),
                b'.' | b'\\' => {
                    s.push('\\');
                    s.push(b as char)
                }
                _ => s.push_str(&format!("\\{b:03}")),
            }
        }
        i += 1 + len;
    }
    s
}

/// Offsets of every suffix of `wire`, longest first, the root (`[0]`) last.
#[inline]
pub fn suffixes(wire: &[u8]) -> Suffixes<'_> {
    Suffixes { wire, pos: 0 }
}

/// Iterator of [`suffixes`].
pub struct Suffixes<'a> {
    wire: &'a [u8],
    pos: usize,
}

impl Iterator for Suffixes<'_> {
    type Item = usize;
    #[inline]
    fn next(&mut self) -> Option<usize> {
        let p = self.pos;
        let len = *self.wire.get(p)? as usize;
        self.pos = if len == 0 { usize::MAX } else { p + 1 + len };
        Some(p)
    }
}

/// Number of labels, the root not counted.
#[inline]
pub fn label_count(wire: &[u8]) -> usize {
    suffixes(wire).count().saturating_sub(1)
}

/// Offset in `name` where `ancestor` starts if `name` is `ancestor` or below it.
#[inline]
pub fn offset_in(name: &[u8], ancestor: &[u8]) -> Option<usize> {
    if ancestor.len() > name.len() {
        return None;
    }
    let want = name.len() - ancestor.len();
    suffixes(name)
        .find(|&o| o >= want)
        .filter(|&o| o == want && &name[o..] == ancestor)
}

/// True when `name` equals `ancestor` or lies below it.
#[inline]
pub fn is_at_or_below(name: &[u8], ancestor: &[u8]) -> bool {
    offset_in(name, ancestor).is_some()
}

/// A fast, non-cryptographic hasher for DNS names (folded multiply, in the spirit
/// of foldhash): the query path hashes a name for every zone, node and NameService
/// lookup, and SipHash (the std default) costs several times more. The keys of these
/// maps come from zone files and the authenticated API, never from queries, so the
/// maps need no protection against crafted collisions: a query can only look up.
#[derive(Debug, Clone, Copy, Default)]
pub struct NameHasher {
    h: u64,
}

/// Builds [`NameHasher`]s; the `S` of the maps keyed by names.
pub type NameHash = std::hash::BuildHasherDefault<NameHasher>;

/// A `HashMap` keyed by names, with [`NameHasher`].
pub type NameMap<K, V> = std::collections::HashMap<K, V, NameHash>;

const K1: u64 = 0x243f_6a88_85a3_08d3;
const K2: u64 = 0x1319_8a2e_0370_7344;

/// 64x64 -> 128 bit multiply, halves xored: every input bit reaches every output bit.
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

#[inline(always)]
fn read8(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[inline(always)]
fn read4(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

impl std::hash::Hasher for NameHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let len = bytes.len();
        let mut h = self.h ^ K2.wrapping_mul(len as u64 + 1);
        // Whole 8-byte words, then the last 8 bytes (overlapping the previous word):
        // no byte-wise tail, no copy. The length, mixed in above, tells apart inputs
        // that the overlap would otherwise confuse.
        if len >= 8 {
            let mut i = 0;
            while i + 8 < len {
                h = fold(h ^ read8(bytes, i), K1);
                i += 8;
            }
            h = fold(h ^ read8(bytes, len - 8), K1);
        } else if len >= 4 {
            let w = (u64::from(read4(bytes, 0)) << 32) | u64::from(read4(bytes, len - 4));
            h = fold(h ^ w, K1);
        } else if len > 0 {
            let w = (u64::from(bytes[0]) << 16)
                | (u64::from(bytes[len / 2]) << 8)
                | u64::from(bytes[len - 1]);
            h = fold(h ^ w, K1);
        }
        self.h = h;
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.h = fold(self.h ^ u64::from(i), K1);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.h = fold(self.h ^ i as u64, K1);
    }

    #[inline]
    fn finish(&self) -> u64 {
        fold(self.h ^ K2, K1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_round_trip() {
        let w = from_dotted("App.GSLB.example").unwrap();
        assert_eq!(w, b"\x03app\x04gslb\x07example\x00");
        assert_eq!(to_dotted(&w), "app.gslb.example");
        assert_eq!(from_dotted("").unwrap(), b"\x00");
        assert_eq!(to_dotted(b"\x00"), "");
        assert!(from_dotted("a..b").is_none());
        assert!(from_dotted(&"x".repeat(64)).is_none());
        assert_eq!(to_dotted(b"\x03a.b\x01\x07\x00"), "a\\.b.\\007");
    }

    #[test]
    fn suffix_walk() {
        let w = from_dotted("a.bc.d").unwrap();
        assert_eq!(suffixes(&w).collect::<Vec<_>>(), vec![0, 2, 5, 7]);
        assert_eq!(label_count(&w), 3);
        let z = from_dotted("bc.d").unwrap();
        assert_eq!(offset_in(&w, &z), Some(2));
        assert!(is_at_or_below(&z, &z));
        assert!(!is_at_or_below(&z, &w));
        // A byte suffix that is not a label boundary.
        let x = from_dotted("xc.d").unwrap();
        let y = from_dotted("c.d").unwrap();
        assert!(!is_at_or_below(&x, &y));
        assert!(is_at_or_below(&x, b"\x00"));
    }

    #[test]
    fn name_hash_spreads_similar_names() {
        use std::hash::BuildHasher;
        // Names that differ in one byte at any position (including the top byte of
        // an 8-byte chunk) land in distinct, evenly filled buckets of a 4,096-slot
        // table: the low bits decide hashbrown's bucket, the top 7 its tag.
        let b = NameHash::default();
        let mut names: Vec<String> = (0..100_000)
            .map(|i| format!("app{i}.gslb.example"))
            .collect();
        for c in b'a'..=b'z' {
            for pos in 0..24 {
                let mut n = b"aaaaaaaaaaaaaaaaaaaaaaaa.example".to_vec();
                n[pos] = c;
                names.push(String::from_utf8(n).unwrap());
            }
        }
        // Short and odd lengths (the tail handling).
        for n in 0..2000 {
            names.push(format!("{n}"));
            names.push(format!("{n}.x"));
            names.push(format!("{n:09}"));
        }
        names.sort();
        names.dedup();
        for (bits, shift) in [(12u32, 0u32), (7, 57), (8, 32)] {
            let slots = 1usize << bits;
            let mut load = vec![0usize; slots];
            for n in &names {
                load[((b.hash_one(n.as_str()) >> shift) as usize) & (slots - 1)] += 1;
            }
            let mean = names.len() as f64 / slots as f64;
            let max = *load.iter().max().unwrap() as f64;
            // Like a uniform random hash: the fullest slot within 6 standard
            // deviations of the mean, and a chi-square near its expectation.
            assert!(
                max < mean + 6.0 * mean.sqrt() + 3.0,
                "bits {bits}>>{shift}: max {max}, mean {mean}"
            );
            let chi2: f64 = load.iter().map(|&l| (l as f64 - mean).powi(2) / mean).sum();
            let df = (slots - 1) as f64;
            assert!(
                chi2 < df + 6.0 * (2.0 * df).sqrt(),
                "bits {bits}>>{shift}: chi2 {chi2}, df {df}"
            );
            let hashes: std::collections::HashSet<u64> =
                names.iter().map(|n| b.hash_one(n.as_str())).collect();
            assert_eq!(hashes.len(), names.len(), "no full collisions");
        }
    }
}
