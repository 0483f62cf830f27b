//! `gslb import istio`: NameServices from Istio's own objects.
//!
//! An Istio user already holds ServiceEntry, WorkloadEntry, WorkloadGroup and
//! DestinationRule objects that say what a NameService says: which addresses serve a
//! host, in which locality, with which weight, how they are probed, and how traffic
//! stays local or fails over. This module reads them from Kubernetes YAML
//! ([`objects`]), maps them ([`mapping`]) and returns one validated NameService per
//! ServiceEntry host, with every field it could not map named ([`Note`]).
//! docs/istio.md is the field-by-field reference.
//!
//! The mapping is pure; [`read_files`] reads the input, and [`run`] is the command
//! with its exit status (`--apply` writes through the API client of
//! [`crate::cli`]).

pub mod fields;
pub mod mapping;
pub mod objects;
pub mod run;

use std::fmt;
use std::io::Read;
use std::sync::Arc;

pub use mapping::Import;
pub use objects::Source;

/// A remark about one object (and field): a field left out, or an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub source: Arc<Source>,
    /// Path of the field in the object (`spec.endpoints[0].address`); empty for the
    /// whole object.
    pub field: String,
    pub message: String,
}

impl Note {
    pub fn new(source: Arc<Source>, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            source,
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.source, self.message)
        } else {
            write!(f, "{}: {}: {}", self.source, self.field, self.message)
        }
    }
}

/// Options of an import.
#[derive(Debug, Clone)]
pub struct Options {
    /// The namespace of objects that name none (`kubectl apply -n`'s).
    pub namespace: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            namespace: "default".into(),
        }
    }
}

/// Imports `(file name, content)` pairs.
pub fn import(inputs: &[(String, String)], options: &Options) -> Import {
    let mut parsed = objects::Parsed::default();
    for (file, text) in inputs {
        objects::parse_file(file, text, &options.namespace, &mut parsed);
    }
    mapping::map(parsed)
}

/// Reads every file (`-` is standard input); the files that cannot be read are
/// returned as errors, named.
pub fn read_files(paths: &[String]) -> (Vec<(String, String)>, Vec<String>) {
    let mut inputs = Vec::with_capacity(paths.len());
    let mut errors = Vec::new();
    for p in paths {
        let read = if p == "-" {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map(|_| s)
        } else {
            std::fs::read_to_string(p)
        };
        match read {
            Ok(text) => inputs.push((p.clone(), text)),
            Err(e) => errors.push(format!("{p}: cannot read: {e}")),
        }
    }
    (inputs, errors)
}

#[cfg(test)]
mod tests;
