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
}
