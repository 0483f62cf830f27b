//! Pure domain types and their validation: no I/O, no tokio, no DNS library.
//!
//! [`NameService`] is the resource of the REST API and of the store. It is only ever
//! built by [`NameService::from_json`], which fills in every default and enforces
//! every rule of the contract, so any `NameService` in the program is valid.

pub mod address;
mod healthcheck;
pub mod locality;
pub mod name;
mod nameservice;
mod overrides;

pub use healthcheck::*;
pub use locality::{Locality, LocalityPattern};
pub use name::{NameError, normalize_name};
pub use nameservice::*;
pub use overrides::*;

/// A rule of the resource broken by a request: becomes a 422 naming `field`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// JSON path of the offending field, e.g. `targets[1].address`; empty for the whole body.
    pub field: String,
    /// One human sentence saying what is wrong and with which value.
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
