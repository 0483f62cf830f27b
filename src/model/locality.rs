//! Istio-style localities (`region/zone/subzone`) and the patterns that match them.

use std::fmt;

/// A parsed `region[/zone[/subzone]]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Locality {
    parts: Vec<String>,
}

fn valid_part(p: &str) -> bool {
    !p.is_empty()
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

impl Locality {
    /// Parses `region[/zone[/subzone]]`, each part `[A-Za-z0-9._-]+`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() > 3 {
            return Err(format!(
                "locality {s:?} has more than 3 parts (region/zone/subzone)"
            ));
        }
        if let Some(bad) = parts.iter().find(|p| !valid_part(p)) {
            return Err(format!(
                "locality {s:?} has an invalid part {bad:?} (each part is [A-Za-z0-9._-]+)"
            ));
        }
        Ok(Self {
            parts: parts.into_iter().map(str::to_string).collect(),
        })
    }

    pub fn parts(&self) -> &[String] {
        &self.parts
    }

    pub fn region(&self) -> &str {
        &self.parts[0]
    }

    /// How many leading parts (0..=3) `self` and `other` share.
    pub fn shared_depth(&self, other: &Locality) -> usize {
        self.parts
            .iter()
            .zip(&other.parts)
            .take_while(|(a, b)| a == b)
            .count()
    }
}

impl fmt::Display for Locality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.parts.join("/"))
    }
}

/// One part of a pattern: a literal or `*` (any one part).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PatternPart {
    Any,
    Exact(String),
}

/// `region[/zone[/subzone]]` where any part may be `*`. A pattern matches a locality
/// when every part of the pattern matches the locality's part at the same depth; a
/// shorter pattern therefore matches every locality below it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LocalityPattern {
    parts: Vec<PatternPart>,
}

impl LocalityPattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        let raw: Vec<&str> = s.split('/').collect();
        if raw.len() > 3 {
            return Err(format!(
                "pattern {s:?} has more than 3 parts (region/zone/subzone)"
            ));
        }
        let mut parts = Vec::with_capacity(raw.len());
        for p in raw {
            if p == "*" {
                parts.push(PatternPart::Any);
            } else if valid_part(p) {
                parts.push(PatternPart::Exact(p.to_string()));
            } else {
                return Err(format!(
                    "pattern {s:?} has an invalid part {p:?} (each part is [A-Za-z0-9._-]+ or *)"
                ));
            }
        }
        Ok(Self { parts })
    }

    pub fn parts(&self) -> &[PatternPart] {
        &self.parts
    }

    /// Does this pattern match `loc`? A locality with fewer parts than the pattern
    /// does not match (it is not below the pattern).
    pub fn matches(&self, loc: &Locality) -> bool {
        self.parts.len() <= loc.parts.len()
            && self.parts.iter().zip(&loc.parts).all(|(p, l)| match p {
                PatternPart::Any => true,
                PatternPart::Exact(e) => e == l,
            })
    }
}

impl fmt::Display for LocalityPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s: Vec<&str> = self
            .parts
            .iter()
            .map(|p| match p {
                PatternPart::Any => "*",
                PatternPart::Exact(e) => e.as_str(),
            })
            .collect();
        f.write_str(&s.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(s: &str) -> Locality {
        Locality::parse(s).unwrap()
    }

    #[test]
    fn parses_localities() {
        assert_eq!(loc("us-west/zone-a/rack.3").parts().len(), 3);
        for bad in ["", "a//b", "a/b/c/d", "a b", "a/*"] {
            assert!(Locality::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn pattern_matching() {
        let cases = [
            ("us-west", "us-west/zone-a", true),
            ("us-west", "us-west", true),
            ("us-west/zone-a", "us-west", false),
            ("*/*", "region1/zone1", true),
            ("*/*", "region1", false),
            ("region1/zone1/*", "region1/zone1/sz", true),
            ("region1/zone1/*", "region1/zone2/sz", false),
            ("*", "anything/at/all", true),
        ];
        for (p, l, want) in cases {
            assert_eq!(
                LocalityPattern::parse(p).unwrap().matches(&loc(l)),
                want,
                "{p} ~ {l}"
            );
        }
    }

    #[test]
    fn shared_depth() {
        assert_eq!(loc("a/b/c").shared_depth(&loc("a/b/d")), 2);
        assert_eq!(loc("a/b").shared_depth(&loc("x/b")), 0);
    }
}
