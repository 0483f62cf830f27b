//! DNS names as the API and the store see them: lowercase, dotted, no trailing dot.

/// Why a string is not a usable DNS name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name is longer than 253 characters")]
    TooLong,
    #[error("label {0:?} is empty or longer than 63 characters")]
    BadLabelLength(String),
    #[error("label {0:?} has a character other than a-z, 0-9, '-' or '_'")]
    BadCharacter(String),
    #[error("label {0:?} starts or ends with '-'")]
    BadHyphen(String),
}

/// Lowercases `input`, strips one trailing dot and checks it is a hostname-like
/// DNS name (labels of `[a-z0-9_-]`, 1..=63 characters, 253 in all).
pub fn normalize_name(input: &str) -> Result<String, NameError> {
    let trimmed = input.strip_suffix('.').unwrap_or(input);
    if trimmed.is_empty() {
        return Err(NameError::Empty);
    }
    if trimmed.len() > 253 {
        return Err(NameError::TooLong);
    }
    let lower = trimmed.to_ascii_lowercase();
    for label in lower.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(NameError::BadLabelLength(label.to_string()));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(NameError::BadCharacter(label.to_string()));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(NameError::BadHyphen(label.to_string()));
        }
    }
    Ok(lower)
}

/// True when `name` equals `zone` or lies below it (both normalized).
pub fn is_in_zone(name: &str, zone: &str) -> bool {
    name == zone
        || (name.len() > zone.len()
            && name.ends_with(zone)
            && name.as_bytes()[name.len() - zone.len() - 1] == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        assert_eq!(
            normalize_name("App.GSLB.example.").unwrap(),
            "app.gslb.example"
        );
        assert_eq!(normalize_name("a_b-1.example").unwrap(), "a_b-1.example");
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            ".",
            "a..b",
            "-a.b",
            "a-.b",
            "a b.c",
            "a*.b",
            &"x".repeat(64),
        ] {
            assert!(normalize_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(normalize_name(&format!("{}.b", "a.".repeat(127))).is_err());
    }

    #[test]
    fn zone_membership() {
        assert!(is_in_zone("gslb.example", "gslb.example"));
        assert!(is_in_zone("app.gslb.example", "gslb.example"));
        assert!(!is_in_zone("appgslb.example", "gslb.example"));
        assert!(!is_in_zone("example", "gslb.example"));
    }
}
