//! Starting the real binary and talking to it.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};

pub const BIN: &str = env!("CARGO_BIN_EXE_gslb");
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh, empty directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "gslb-it-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port free for both UDP and TCP on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// How to start a server.
#[derive(Clone)]
pub struct ServerOpts {
    pub zones_dir: PathBuf,
    pub config: Option<String>,
    pub token: Option<String>,
    pub extra_args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Default for ServerOpts {
    fn default() -> Self {
        Self {
            zones_dir: Path::new(REPO).join("zones"),
            config: None,
            token: None,
            extra_args: Vec::new(),
            env: Vec::new(),
        }
    }
}

/// A running `gslb serve`; killed on drop, its log printed if the test failed.
pub struct Server {
    pub child: Option<Child>,
    pub dns: SocketAddr,
    pub api: SocketAddr,
    pub data: PathBuf,
    pub log: PathBuf,
    pub opts: ServerOpts,
    pub _tmp: Option<TempDir>,
}

impl Server {
    /// Starts a server on fresh ports with a fresh data dir and waits for /healthz.
    pub fn start() -> Self {
        Self::start_with(ServerOpts::default())
    }

    pub fn start_with(opts: ServerOpts) -> Self {
        let tmp = TempDir::new("srv");
        let data = tmp.path().join("data");
        let mut s = Self::spawn(opts, data, tmp.path().join("gslb.log"));
        s._tmp = Some(tmp);
        s.wait_ready_or_rebind();
        s
    }

    /// Waits for /healthz; when the process exited because one of the ports
    /// `free_port` picked was taken in between (by another test's process), starts
    /// it again on fresh ports, a few times.
    fn wait_ready_or_rebind(&mut self) {
        for _ in 0..3 {
            match self.wait_ready_inner() {
                Ok(()) => return,
                Err(log) if log.contains("cannot bind") || log.contains("in use") => {
                    self.restart_unready();
                }
                Err(log) => panic!("gslb exited early:\n{log}"),
            }
        }
        self.wait_ready();
    }

    /// Starts a server on fresh ports with `data` as its data dir (which the caller
    /// keeps; the log goes elsewhere) and waits for /healthz.
    pub fn start_on(opts: ServerOpts, data: PathBuf) -> Self {
        let tmp = TempDir::new("srv");
        let mut s = Self::spawn(opts, data, tmp.path().join("gslb.log"));
        s._tmp = Some(tmp);
        s.wait_ready_or_rebind();
        s
    }

    /// Starts a server without waiting for /healthz (one that is expected to stay
    /// unready, say).
    pub fn start_unready(opts: ServerOpts) -> Self {
        let tmp = TempDir::new("srv");
        let data = tmp.path().join("data");
        let mut s = Self::spawn(opts, data, tmp.path().join("gslb.log"));
        s._tmp = Some(tmp);
        s
    }

    /// Starts a new process on the same data dir without waiting for /healthz.
    pub fn restart_unready(&mut self) {
        let mut fresh = Self::spawn(self.opts.clone(), self.data.clone(), self.log.clone());
        self.child = fresh.child.take();
        self.dns = fresh.dns;
        self.api = fresh.api;
    }

    /// kill -9 (the data dir stays).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn spawn(opts: ServerOpts, data: PathBuf, log: PathBuf) -> Self {
        let dns: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--dns-listen")
            .arg(dns.to_string())
            .arg("--api-listen")
            .arg(api.to_string())
            .arg("--data-dir")
            .arg(&data)
            .arg("--zones-dir")
            .arg(&opts.zones_dir);
        if let Some(cfg) = &opts.config {
            let p = log.with_extension("toml");
            std::fs::write(&p, cfg).unwrap();
            cmd.arg("--config").arg(p);
        }
        if let Some(t) = &opts.token {
            cmd.arg("--api-token").arg(t);
        }
        cmd.args(&opts.extra_args);
        cmd.env_remove("GSLB_API_TOKEN");
        cmd.env("RUST_LOG", "info");
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        cmd.stdout(Stdio::null()).stderr(logf);
        let child = cmd.spawn().expect("spawn gslb");
        Self {
            child: Some(child),
            dns,
            api,
            data,
            log,
            opts,
            _tmp: None,
        }
    }

    /// Waits until /healthz answers 200; `Err(log)` when the process exited first.
    fn wait_ready_inner(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.as_mut().unwrap().try_wait().unwrap().is_some() {
                return Err(self.log_text());
            }
            if http_get(self.api, "/healthz", None).is_ok_and(|r| r.status == 200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("gslb not ready within 20 s:\n{}", self.log_text());
    }

    /// Waits until /healthz answers 200 (or the process died).
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("gslb exited early ({st}):\n{}", self.log_text());
            }
            if http_get(self.api, "/healthz", None).is_ok_and(|r| r.status == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("gslb not ready within 20 s:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// kill -9, then start again on the same data dir (new ports), waiting for /healthz.
    pub fn kill9_and_restart(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        self.restart_same_data();
    }

    /// SIGTERM and wait; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take().unwrap();
        unsafe_kill(child.id(), 15);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("gslb did not stop on SIGTERM:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a new process on the same data dir and zones (after the old one stopped).
    pub fn restart_same_data(&mut self) {
        let fresh = Self::spawn(self.opts.clone(), self.data.clone(), self.log.clone());
        let mut fresh = fresh;
        self.child = fresh.child.take();
        self.dns = fresh.dns;
        self.api = fresh.api;
        self.wait_ready_or_rebind();
    }

    // ---- HTTP helpers bound to this server ----

    pub fn get(&self, path: &str) -> Resp {
        http(
            self.api,
            "GET",
            path,
            None,
            self.opts.token.as_deref(),
            None,
        )
        .unwrap()
    }

    pub fn put_json(&self, path: &str, body: &serde_json::Value) -> Resp {
        http(
            self.api,
            "PUT",
            path,
            Some(body.to_string().as_bytes()),
            self.opts.token.as_deref(),
            Some("application/json"),
        )
        .unwrap()
    }

    pub fn delete(&self, path: &str) -> Resp {
        http(
            self.api,
            "DELETE",
            path,
            None,
            self.opts.token.as_deref(),
            None,
        )
        .unwrap()
    }

    /// PUT a NameService and assert success.
    pub fn put_ns(&self, body: &serde_json::Value) -> serde_json::Value {
        let name = body["name"].as_str().unwrap();
        let r = self.put_json(&format!("/api/v1/nameservices/{name}"), body);
        assert!(
            r.status == 200 || r.status == 201,
            "PUT {name}: {} {}",
            r.status,
            r.body
        );
        r.json()
    }

    // ---- DNS helpers bound to this server ----

    pub fn udp(&self, name: &str, rtype: RecordType) -> Message {
        dns_udp(self.dns, &query(name, rtype, Some(1232)))
    }

    pub fn tcp(&self, name: &str, rtype: RecordType) -> Message {
        dns_tcp(self.dns, &query(name, rtype, Some(1232)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- gslb log ({}) ----\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}

pub fn unsafe_kill(pid: u32, sig: i32) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(st.success());
}

// ---- HTTP (a tiny HTTP/1.1 client: exact control over headers and bodies) ----

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub fn http_get(api: SocketAddr, path: &str, token: Option<&str>) -> std::io::Result<Resp> {
    http(api, "GET", path, None, token, None)
}

/// One request with extra header lines (`"Name: value"`), on a fresh connection.
pub fn http_with(
    api: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    token: Option<&str>,
    headers: &[&str],
) -> std::io::Result<Resp> {
    let mut extra = String::new();
    for h in headers {
        extra.push_str(h);
        extra.push_str("\r\n");
    }
    http_raw(
        api,
        method,
        path,
        body,
        token,
        Some("application/json").filter(|_| body.is_some()),
        &extra,
    )
}

/// One request on a fresh connection (`Connection: close`).
pub fn http(
    api: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    token: Option<&str>,
    content_type: Option<&str>,
) -> std::io::Result<Resp> {
    http_raw(api, method, path, body, token, content_type, "")
}

fn http_raw(
    api: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    token: Option<&str>,
    content_type: Option<&str>,
    extra_headers: &str,
) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect_timeout(&api, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(ct) = content_type {
        req.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    req.push_str(extra_headers);
    let body = body.unwrap_or_default();
    if !body.is_empty() || method == "PUT" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    // Large bodies may be refused before they are fully read: ignore write errors.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<Resp> {
    let text = String::from_utf8_lossy(raw);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("bad HTTP response: {text:?}")))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok(Resp {
        status,
        headers,
        body,
    })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

// ---- DNS ----

/// A query message for `name`/`rtype`, with EDNS advertising `edns` bytes if given.
pub fn query(name: &str, rtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::query();
    m.metadata.id = fastrand::u16(..);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m
}

/// Sends `q` over UDP and returns the parsed answer (panics on timeout).
pub fn dns_udp(server: SocketAddr, q: &Message) -> Message {
    let raw = dns_udp_raw(server, &q.to_vec().unwrap()).expect("no UDP answer");
    Message::from_vec(&raw).expect("answer parses")
}

/// Sends raw bytes over UDP; `None` when nothing came back within 2 s.
pub fn dns_udp_raw(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    dns_udp_raw_from("127.0.0.1".parse().unwrap(), server, bytes)
}

/// Like [`dns_udp_raw`] but from a chosen loopback source address (127.0.0.x).
pub fn dns_udp_raw_from(src: IpAddr, server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind((src, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.send_to(bytes, server).unwrap();
    let mut buf = vec![0u8; 65535];
    match sock.recv_from(&mut buf) {
        Ok((n, _)) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

/// Sends `q` over a fresh TCP connection and returns the parsed answer.
pub fn dns_tcp(server: SocketAddr, q: &Message) -> Message {
    let mut s = TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp_send(&mut s, &q.to_vec().unwrap());
    Message::from_vec(&tcp_recv(&mut s).expect("TCP answer")).unwrap()
}

pub fn tcp_send(s: &mut TcpStream, bytes: &[u8]) {
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    s.write_all(&framed).unwrap();
}

pub fn tcp_recv(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).ok()?;
    Some(buf)
}

/// The A/AAAA addresses in the answer section, in order.
pub fn addrs(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            hickory_proto::rr::RData::A(a) => Some(IpAddr::V4(a.0)),
            hickory_proto::rr::RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

/// Polls `f` every 100 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
