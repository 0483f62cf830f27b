//! A fake gateway that speaks HTTP/1.1 (optionally over TLS with a self-signed
//! certificate): records every request it gets and answers what the test's handler
//! says. One thread per connection; `Reply::Hang` holds the connection silent.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the gateway saw.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// The TLS server name the client sent (HTTPS only).
    pub sni: Option<String>,
    /// The connection it came on (a counter): fresh connections get new numbers.
    pub connection: usize,
    pub at: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What to answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A status with `Location` when given, and a small body.
    Status(u16, Option<String>),
    /// Never answer (the connection stays open, silent, for 30 s).
    Hang,
}

pub type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

pub struct HttpVip {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    handler: Arc<Mutex<Handler>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpVip {
    /// An HTTP gateway on `ip` (port 0: any free one) answering `handler`.
    pub fn http(ip: &str, handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        Self::start(&format!("{ip}:0"), None, Arc::new(handler)).unwrap()
    }

    /// An HTTPS gateway with a fresh self-signed certificate for `names`.
    pub fn https(
        ip: &str,
        names: &[&str],
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> Self {
        Self::start(
            &format!("{ip}:0"),
            Some(self_signed(names)),
            Arc::new(handler),
        )
        .unwrap()
    }

    /// An HTTPS gateway on exactly `addr` (several gateways on one port, as one
    /// probe of a WorkloadGroup reaches them all); an error when `addr` is taken.
    pub fn https_at(
        addr: SocketAddr,
        names: &[&str],
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        Self::start(
            &addr.to_string(),
            Some(self_signed(names)),
            Arc::new(handler),
        )
    }

    fn start(
        bind: &str,
        tls: Option<Arc<rustls::ServerConfig>>,
        handler: Handler,
    ) -> std::io::Result<Self> {
        let l = TcpListener::bind(bind)?;
        l.set_nonblocking(true)?;
        let addr = l.local_addr()?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(Mutex::new(handler));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, h, s) = (requests.clone(), handler.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let conns = Arc::new(AtomicUsize::new(0));
            while !s.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((c, _)) => {
                        let n = conns.fetch_add(1, Ordering::SeqCst);
                        let (r, h, s, tls) = (r.clone(), h.clone(), s.clone(), tls.clone());
                        std::thread::spawn(move || serve(c, n, tls, r, h, s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Ok(Self {
            addr,
            requests,
            handler,
            stop,
            thread: Some(thread),
        })
    }

    pub fn ip(&self) -> String {
        self.addr.ip().to_string()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// Requests whose target (path and query) is `target`.
    pub fn count_of(&self, target: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.target == target)
            .count()
    }

    /// Answers `handler` from now on.
    pub fn set(&self, handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) {
        *self.handler.lock().unwrap() = Arc::new(handler);
    }
}

impl Drop for HttpVip {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A server configuration with a fresh self-signed certificate for `names`.
fn self_signed(names: &[&str]) -> Arc<rustls::ServerConfig> {
    let ck =
        rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        ck.signing_key.serialize_der(),
    ));
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    Arc::new(config)
}

trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

fn serve(
    c: TcpStream,
    n: usize,
    tls: Option<Arc<rustls::ServerConfig>>,
    requests: Arc<Mutex<Vec<Request>>>,
    handler: Arc<Mutex<Handler>>,
    stop: Arc<AtomicBool>,
) {
    let _ = c.set_nonblocking(false);
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    let mut sni = None;
    let mut stream: Box<dyn Conn> = match tls {
        None => Box::new(c),
        Some(cfg) => {
            let conn = rustls::ServerConnection::new(cfg).unwrap();
            let mut s = rustls::StreamOwned::new(conn, c);
            // Drive the handshake to learn the server name.
            while s.conn.is_handshaking() {
                if s.conn.complete_io(&mut s.sock).is_err() {
                    return;
                }
            }
            sni = s.conn.server_name().map(str::to_string);
            Box::new(s)
        }
    };
    // Read the request head (no body: probes send none).
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
        if buf.len() > 64 * 1024 {
            return;
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let target = first.next().unwrap_or_default().to_string();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let req = Request {
        method,
        target,
        headers,
        sni,
        connection: n,
        at: Instant::now(),
    };
    let reply = (handler.lock().unwrap().clone())(&req);
    requests.lock().unwrap().push(req);
    match reply {
        Reply::Status(code, location) => {
            let body = format!("status {code}\n");
            let mut resp = format!(
                "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            if let Some(l) = location {
                resp.push_str(&format!("Location: {l}\r\n"));
            }
            resp.push_str("\r\n");
            resp.push_str(&body);
            let _ = stream.write_all(resp.as_bytes());
            let _ = stream.flush();
        }
        Reply::Hang => {
            let until = Instant::now() + Duration::from_secs(30);
            while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
