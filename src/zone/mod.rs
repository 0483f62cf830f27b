//! Zone files: loading RFC 1035 master files into an immutable, query-ready form.

use std::path::Path;

/// Every zone served, immutable once loaded.
#[derive(Debug, Default)]
pub struct ZoneSet {}

/// A zone file that cannot be served, with the file and line at fault.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ZoneError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Why a NameService may not live at a name of a zone (CONTRACT §3: 409).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Collision {
    /// The zone file has a CNAME at that name.
    Cname,
    /// The name is at or below a delegation (NS below the apex) of the zone.
    Delegation(String),
}

impl ZoneSet {
    /// Loads every `*.zone` file in `dir`.
    pub fn load_dir(dir: &Path) -> Result<Self, ZoneError> {
        let _ = dir;
        Ok(Self::default())
    }

    /// The origin (lowercase, no trailing dot) of the most specific zone holding `name`.
    pub fn zone_of(&self, name: &str) -> Option<&str> {
        let _ = name;
        None
    }

    /// Whether a NameService at `name` would collide with the zone's static data.
    pub fn collision(&self, name: &str) -> Option<Collision> {
        let _ = name;
        None
    }

    /// Origins of all zones, sorted.
    pub fn origins(&self) -> Vec<String> {
        Vec::new()
    }
}
