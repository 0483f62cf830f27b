//! The process's TLS crypto: rustls with *ring*.
//!
//! reqwest is built without a bundled crypto provider (its default one, aws-lc-rs,
//! needs a C toolchain and doubles the build), so every HTTP client of gslb — the
//! HTTPS health probes, the command-line API client, `gslb import istio --apply` —
//! runs on ring. Clients that verify certificates use the process default, which
//! [`install`] sets; call it before building one.

use std::sync::Arc;

/// The ring crypto provider.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // Deprecated for lacking post-quantum key exchange, which neither a health
    // probe nor a client of gslb's own API on the operator's network needs.
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process's default crypto provider (idempotent: a provider set
/// before stays).
pub fn install() {
    let _ = rustls::crypto::CryptoProvider::install_default((*provider()).clone());
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_default_client_builds() {
        super::install();
        super::install();
        reqwest::Client::builder().build().unwrap();
    }
}
