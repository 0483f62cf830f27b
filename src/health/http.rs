//! One HTTP(S) probe: a GET that must answer 200-399 within the timeout.
//!
//! As kubelet and Route 53 do: redirects are not followed (a 3xx is a success),
//! HTTPS certificates are not verified, and every probe opens a fresh connection
//! (nothing is pooled, so a probe sees what a new client would). Only the status
//! line and headers are read; the body is dropped unread and the connection closed.
//! The request carries `User-Agent: gslb/<version> (<instance>)`.
//!
//! The connection always goes to the target's probe address. `httpGet.host` names
//! the Host header and, over HTTPS, the TLS server name (SNI) — unlike Kubernetes,
//! where `host` also changes where kubelet connects.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::probe::ProbeResult;
use crate::model::HttpCheck;

/// The TLS settings of every HTTPS probe: ring's primitives, TLS 1.2 and 1.3, no
/// certificate verification, HTTP/1.1 by ALPN.
pub fn tls_config() -> rustls::ClientConfig {
    let provider = crate::tls::provider();
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(schemes)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// Accepts whatever certificate the target presents: a health probe asks whether
/// the gateway answers, not who it is (a gateway's certificate names the service,
/// not the VIP gslb connects to).
#[derive(Debug)]
struct AcceptAnyCertificate(Vec<SignatureScheme>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.clone()
    }
}

/// The HTTP(S) probe of one probe stream: its client (built once, pooling
/// nothing) and request.
#[derive(Debug)]
pub struct HttpProbe {
    client: reqwest::Client,
    url: reqwest::Url,
    /// Set when the Host header cannot come from the URL (an IP literal `host`).
    host_header: Option<String>,
    headers: Vec<(String, String)>,
}

impl HttpProbe {
    pub fn new(
        check: &HttpCheck,
        addr: SocketAddr,
        user_agent: &str,
        tls: &rustls::ClientConfig,
    ) -> Result<Self, String> {
        let scheme = if check.https { "https" } else { "http" };
        let default_port = if check.https { 443 } else { 80 };
        let mut builder = reqwest::Client::builder()
            .user_agent(user_agent)
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .no_proxy()
            .http1_only()
            .tcp_nodelay(true)
            .tls_backend_preconfigured(tls.clone());
        let mut host_header = None;
        let authority = match check.host.as_deref() {
            // A name: the URL carries it (Host header, SNI), resolved to the probe
            // address without asking DNS.
            Some(h) if h.parse::<IpAddr>().is_err() => {
                let h = h.trim_end_matches('.');
                builder = builder.resolve(h, addr);
                format!("{h}:{}", addr.port())
            }
            // An IP literal (or nothing): connect to the probe address; the Host
            // header names the literal.
            other => {
                if let Some(ip) = other.and_then(|h| h.parse::<IpAddr>().ok()) {
                    let ip = match ip {
                        IpAddr::V4(a) => a.to_string(),
                        IpAddr::V6(a) => format!("[{a}]"),
                    };
                    host_header = Some(if addr.port() == default_port {
                        ip
                    } else {
                        format!("{ip}:{}", addr.port())
                    });
                }
                addr.to_string()
            }
        };
        let url = format!("{scheme}://{authority}{}", check.path);
        let url = reqwest::Url::parse(&url).map_err(|e| format!("invalid probe URL {url}: {e}"))?;
        let client = builder
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(Self {
            client,
            url,
            host_header,
            headers: check.headers.clone(),
        })
    }

    /// Sends the GET; the status decides, the body is never read.
    pub async fn probe(&self, timeout: Duration) -> ProbeResult {
        let mut req = self.client.get(self.url.clone());
        if let Some(h) = &self.host_header {
            req = req.header(reqwest::header::HOST, h);
        }
        for (n, v) in &self.headers {
            req = req.header(n, v);
        }
        match tokio::time::timeout(timeout, req.send()).await {
            Err(_) => ProbeResult::Timeout,
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                // Dropping the response unread closes the connection.
                drop(resp);
                if (200..400).contains(&status) {
                    ProbeResult::Success
                } else {
                    ProbeResult::HttpStatus(status)
                }
            }
            Ok(Err(e)) => classify(&e),
        }
    }
}

/// What a failed request means: the connection's error when there is one (refused,
/// reset, ...), a TLS failure, or the client's own words.
fn classify(e: &reqwest::Error) -> ProbeResult {
    if e.is_timeout() {
        return ProbeResult::Timeout;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(tls) = s.downcast_ref::<rustls::Error>() {
            return ProbeResult::Error(format!("TLS handshake failed: {tls}"));
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref()
                && let Some(tls) = inner.downcast_ref::<rustls::Error>()
            {
                return ProbeResult::Error(format!("TLS handshake failed: {tls}"));
            }
            if io.raw_os_error().is_some() {
                return ProbeResult::from_io(io);
            }
            if io.kind() == std::io::ErrorKind::UnexpectedEof {
                return ProbeResult::Error("connection closed before an HTTP response".into());
            }
        }
        source = s.source();
    }
    // The innermost message says the most.
    let mut last = e.to_string();
    let mut s = std::error::Error::source(e);
    while let Some(inner) = s {
        last = inner.to_string();
        s = inner.source();
    }
    ProbeResult::Error(last)
}
