//! A real etcd cluster for tests: Debian's etcd-server, N members on loopback with
//! ephemeral ports and data dirs in a temp dir, started as child processes and
//! stopped by PID on drop. Faults are the real thing: SIGSTOP (a black hole: the
//! sockets stay open, nothing answers), kill -9 (a crash), restart on the same
//! data dir, and `etcdctl compaction`. [`Etcd::start_tls`] serves the client URLs
//! over TLS with client certificates (peers stay plain http on loopback).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicU32, Ordering};

use crate::harness::{ServerOpts, TempDir, http_get, unsafe_kill};

/// The next port to try for an etcd member.
static NEXT_PORT: AtomicU32 = AtomicU32::new(0);

/// A port for an etcd member, below the kernel's ephemeral range (32768 and up), so
/// that no `free_port()` of another test (which binds port 0) hands it out between
/// our pick and etcd's bind. Each test process walks its own stretch.
fn etcd_port() -> u16 {
    let _ = NEXT_PORT.compare_exchange(
        0,
        20_000 + (std::process::id() % 40) * 300,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let p = NEXT_PORT.fetch_add(1, Ordering::SeqCst);
        let port = 20_000 + (p - 20_000) % 12_000;
        let port = port as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// TLS material as PEM files: a CA, a server certificate for etcd (127.0.0.1 and
/// localhost) and a client certificate, both signed by the CA.
#[derive(Clone, Debug)]
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Pki {
    /// Generates a fresh CA and the two certificates it signs into `dir`.
    pub fn generate(dir: &Path) -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType,
            ExtendedKeyUsagePurpose as Eku, IsCa, KeyPair, KeyUsagePurpose,
        };
        std::fs::create_dir_all(dir).unwrap();
        let write = |name: &str, pem: String| {
            let p = dir.join(name);
            std::fs::write(&p, pem).unwrap();
            p
        };
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name.push(
            DnType::CommonName,
            format!("gslb test CA {}", fastrand::u32(..)),
        );
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let leaf = |cn: &str, sans: &[&str], usages: Vec<Eku>| {
            let mut p =
                CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.extended_key_usages = usages;
            let key = KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &ca).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        // etcd also presents its server certificate as a client (its gRPC gateway
        // dials itself), so it gets both usages.
        let (server_cert, server_key) = leaf(
            "etcd",
            &["127.0.0.1", "localhost"],
            vec![Eku::ServerAuth, Eku::ClientAuth],
        );
        let (client_cert, client_key) = leaf("gslb", &[], vec![Eku::ClientAuth]);
        Self {
            ca: write("ca.pem", ca.pem()),
            server_cert: write("etcd-server.pem", server_cert),
            server_key: write("etcd-server-key.pem", server_key),
            client_cert: write("etcd-client.pem", client_cert),
            client_key: write("etcd-client-key.pem", client_key),
        }
    }
}

/// One etcd member.
struct Member {
    name: String,
    client: u16,
    peer: u16,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    stopped: bool,
}

/// An etcd cluster of child processes.
pub struct Etcd {
    members: Vec<Member>,
    cluster: String,
    dir: TempDir,
    /// The client URLs, one per member.
    pub endpoints: Vec<String>,
    /// Set by [`Etcd::start_tls`]: the client URLs are `https://` and need a
    /// client certificate signed by `pki.ca`.
    pub pki: Option<Pki>,
}

impl Etcd {
    /// Starts a cluster of `n` members and waits until it has a leader.
    pub fn start(n: usize) -> Self {
        Self::launch(n, false)
    }

    /// Like [`Etcd::start`], with TLS on the client URLs (`https://127.0.0.1:port`)
    /// and `--client-cert-auth`, under a fresh [`Pki`] (`self.pki`).
    pub fn start_tls(n: usize) -> Self {
        Self::launch(n, true)
    }

    fn launch(n: usize, tls: bool) -> Self {
        let dir = TempDir::new("etcd");
        let pki = tls.then(|| Pki::generate(&dir.path().join("pki")));
        let scheme = if tls { "https" } else { "http" };
        let token = format!("gslb-test-{}", fastrand::u64(..));
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: etcd_port(),
                peer: etcd_port(),
                data: dir.path().join(format!("m{i}")),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
                stopped: false,
            })
            .collect();
        let cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let endpoints = members
            .iter()
            .map(|m| format!("{scheme}://127.0.0.1:{}", m.client))
            .collect();
        let mut e = Self {
            members,
            cluster: format!("{cluster}|{token}"),
            dir,
            endpoints,
            pki,
        };
        for i in 0..n {
            e.spawn(i);
        }
        e.wait_healthy(Duration::from_secs(30));
        e
    }

    fn spawn(&mut self, i: usize) {
        let (cluster, token) = self.cluster.split_once('|').unwrap();
        let url = self.endpoints[i].clone();
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .unwrap();
        let mut cmd = Command::new("etcd");
        if let Some(pki) = &self.pki {
            cmd.arg("--cert-file")
                .arg(&pki.server_cert)
                .arg("--key-file")
                .arg(&pki.server_key)
                .arg("--trusted-ca-file")
                .arg(&pki.ca)
                .arg("--client-cert-auth");
        }
        let child = cmd
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data)
            .arg("--listen-client-urls")
            .arg(&url)
            .arg("--advertise-client-urls")
            .arg(&url)
            .arg("--listen-peer-urls")
            .arg(format!("http://127.0.0.1:{}", m.peer))
            .arg("--initial-advertise-peer-urls")
            .arg(format!("http://127.0.0.1:{}", m.peer))
            .arg("--initial-cluster")
            .arg(cluster)
            .arg("--initial-cluster-token")
            .arg(token)
            .arg("--initial-cluster-state")
            .arg("new")
            // Fast elections on loopback; small snapshots keep the data dirs small.
            .arg("--heartbeat-interval")
            .arg("50")
            .arg("--election-timeout")
            .arg("500")
            .arg("--snapshot-count")
            .arg("10000")
            .arg("--log-level")
            .arg("warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd (apt-get install etcd-server)");
        m.child = Some(child);
        m.stopped = false;
    }

    /// Waits until every running member reports healthy (the cluster has a leader
    /// and quorum).
    pub fn wait_healthy(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let ok = self
                .members
                .iter()
                .enumerate()
                .filter(|(_, m)| m.child.is_some() && !m.stopped)
                .all(|(i, m)| match self.pki {
                    // /health over TLS needs the client certificate: etcdctl has it.
                    Some(_) => self.etcdctl_on(i, &["endpoint", "health"]).status.success(),
                    None => http_get(
                        format!("127.0.0.1:{}", m.client).parse().unwrap(),
                        "/health",
                        None,
                    )
                    .is_ok_and(|r| r.status == 200 && r.body.contains("\"true\"")),
                });
            if ok {
                return;
            }
            if Instant::now() > deadline {
                panic!("etcd not healthy within {timeout:?}:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                format!(
                    "---- {} ----\n{}",
                    m.name,
                    std::fs::read_to_string(&m.log).unwrap_or_default()
                )
            })
            .collect()
    }

    fn pid(&self, i: usize) -> u32 {
        self.members[i].child.as_ref().expect("running").id()
    }

    /// SIGSTOP: the member is black-holed (connections stay open, nothing answers).
    pub fn freeze(&mut self, i: usize) {
        unsafe_kill(self.pid(i), 19);
        self.members[i].stopped = true;
    }

    /// SIGCONT after [`Etcd::freeze`].
    pub fn thaw(&mut self, i: usize) {
        unsafe_kill(self.pid(i), 18);
        self.members[i].stopped = false;
    }

    pub fn freeze_all(&mut self) {
        for i in 0..self.members.len() {
            self.freeze(i);
        }
    }

    pub fn thaw_all(&mut self) {
        for i in 0..self.members.len() {
            self.thaw(i);
        }
    }

    /// kill -9.
    pub fn crash(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.members[i].stopped = false;
    }

    pub fn crash_all(&mut self) {
        for i in 0..self.members.len() {
            self.crash(i);
        }
    }

    /// Starts a crashed member again on its data dir.
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} is running");
        self.spawn(i);
    }

    pub fn restart_all(&mut self) {
        for i in 0..self.members.len() {
            self.restart(i);
        }
        self.wait_healthy(Duration::from_secs(30));
    }

    /// Runs etcdctl against the running, unfrozen members.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        let endpoints = self
            .members
            .iter()
            .zip(&self.endpoints)
            .filter(|(m, _)| m.child.is_some() && !m.stopped)
            .map(|(_, e)| e.as_str())
            .collect::<Vec<_>>()
            .join(",");
        self.run_etcdctl(&endpoints, args)
    }

    /// Runs etcdctl against member `i` alone.
    pub fn etcdctl_on(&self, i: usize, args: &[&str]) -> Output {
        self.run_etcdctl(&self.endpoints[i], args)
    }

    fn run_etcdctl(&self, endpoints: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new("etcdctl");
        if let Some(pki) = &self.pki {
            cmd.arg("--cacert")
                .arg(&pki.ca)
                .arg("--cert")
                .arg(&pki.client_cert)
                .arg("--key")
                .arg(&pki.client_key);
        }
        cmd.arg("--endpoints")
            .arg(endpoints)
            .arg("--command-timeout=5s")
            .args(args)
            .env("ETCDCTL_API", "3")
            .output()
            .expect("run etcdctl (apt-get install etcd-client)")
    }

    /// Waits until member `i` has applied a compaction at `revision` (a read just
    /// below it fails as compacted there).
    pub fn wait_compacted_on(&self, i: usize, revision: u64) {
        let before = (revision - 1).to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.etcdctl_on(i, &["get", "x", "--rev", &before]);
            if String::from_utf8_lossy(&out.stderr).contains("compacted") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "member {i} never applied the compaction"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// etcdctl, asserting success; returns stdout.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = self.etcdctl(args);
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The cluster's current revision.
    pub fn revision(&self) -> u64 {
        let out = self.ctl(&["endpoint", "status", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0]["Status"]["header"]["revision"].as_u64().unwrap()
    }

    /// Compacts the history up to the current revision.
    pub fn compact(&self) -> u64 {
        let rev = self.revision();
        self.ctl(&["compaction", &rev.to_string()]);
        rev
    }

    /// `ServerOpts` for a gslb instance named `instance` on this cluster.
    pub fn server_opts(&self, instance: &str) -> ServerOpts {
        let all: Vec<usize> = (0..self.members.len()).collect();
        self.server_opts_on(instance, &all)
    }

    /// `ServerOpts` for an instance that knows only the given members' endpoints.
    pub fn server_opts_on(&self, instance: &str, members: &[usize]) -> ServerOpts {
        let mut args = Vec::new();
        for e in members.iter().map(|&i| &self.endpoints[i]) {
            args.push("--etcd-endpoint".to_string());
            args.push(e.clone());
        }
        args.push("--instance".into());
        args.push(instance.into());
        let mut config = "[registry]\nlease_ttl_seconds = 3\n".to_string();
        if let Some(pki) = &self.pki {
            config += &format!(
                "ca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n",
                pki.ca, pki.client_cert, pki.client_key
            );
        }
        ServerOpts {
            extra_args: args,
            config: Some(config),
            ..ServerOpts::default()
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}
