//! Prober scale benchmark: N distinct loopback endpoints probed by the real
//! `gslb::health` prober, measuring probe start lateness, probes per second, prober
//! CPU (per probe, too) and RSS. `--kind tcp|http|https` picks the probe: a TCP
//! connect, or an HTTP(S) GET of `/healthz` (each on a fresh connection; HTTPS
//! against a self-signed certificate), answered 200 by the listening VIPs.
//!
//! The fake VIPs run in a child process (this binary with `--serve-vips`) so that the
//! CPU and memory measured here are the prober's alone. Endpoints are spread over
//! `--addresses` addresses 127.1.x.y and consecutive ports from `--base-port`; the
//! first `--listening-ports` ports of the port range listen on every address (they
//! accept and drop), the next `--blackhole-ports` are black holes (a listener with a
//! full accept queue: SYNs are never answered, the probe times out), and all other
//! ports are closed and refuse at once.
//!
//! Run through `bench/probe/run.sh`; see docs/performance.md.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gslb::health::stats::{LATENESS_BOUNDS, quantile};
use gslb::health::{Health, HealthCell, HealthHub, Holder};
use gslb::model::{Check, Endpoint, HttpCheck};

struct Opts {
    endpoints: usize,
    addresses: usize,
    base_port: u16,
    listening_ports: usize,
    blackhole_ports: usize,
    period: u32,
    timeout: u32,
    warmup: u64,
    measure: u64,
    shared_names: usize,
    kind: Kind,
    serve_vips: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tcp,
    Http,
    Https,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Http => "http",
            Kind::Https => "https",
        }
    }
}

fn parse() -> Opts {
    let mut o = Opts {
        endpoints: 30_000,
        addresses: 100,
        base_port: 20_000,
        listening_ports: 10,
        blackhole_ports: 0,
        period: 5,
        timeout: 2,
        warmup: 15,
        measure: 60,
        shared_names: 10_000,
        kind: Kind::Tcp,
        serve_vips: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--serve-vips" {
            o.serve_vips = true;
            i += 1;
            continue;
        }
        let v = args
            .get(i + 1)
            .unwrap_or_else(|| panic!("{a} needs a value"))
            .as_str();
        let n = |v: &str| -> u64 { v.parse().unwrap_or_else(|_| panic!("{a}: bad number {v}")) };
        match a {
            "--endpoints" => o.endpoints = n(v) as usize,
            "--addresses" => o.addresses = n(v) as usize,
            "--base-port" => o.base_port = n(v) as u16,
            "--listening-ports" => o.listening_ports = n(v) as usize,
            "--blackhole-ports" => o.blackhole_ports = n(v) as usize,
            "--period" => o.period = n(v) as u32,
            "--timeout" => o.timeout = n(v) as u32,
            "--warmup" => o.warmup = n(v),
            "--measure" => o.measure = n(v),
            "--shared-names" => o.shared_names = n(v) as usize,
            "--kind" => {
                o.kind = match v {
                    "tcp" => Kind::Tcp,
                    "http" => Kind::Http,
                    "https" => Kind::Https,
                    _ => panic!("--kind: tcp, http or https, got {v}"),
                }
            }
            _ => panic!("unknown option {a}"),
        }
        i += 2;
    }
    o
}

fn address(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8))
}

/// Endpoint `i`: address-major, so consecutive endpoints differ in address.
fn endpoint(o: &Opts, i: usize) -> Endpoint {
    let check = match o.kind {
        Kind::Tcp => Check::Tcp,
        Kind::Http | Kind::Https => Check::Http(Arc::new(HttpCheck {
            https: o.kind == Kind::Https,
            path: "/healthz".into(),
            host: None,
            headers: Vec::new(),
        })),
    };
    Endpoint {
        address: address(i % o.addresses),
        port: o.base_port + (i / o.addresses) as u16,
        check,
        period_seconds: o.period,
        timeout_seconds: o.timeout,
        failure_threshold: 3,
        success_threshold: 1,
    }
}

fn ports_per_address(o: &Opts) -> usize {
    o.endpoints.div_ceil(o.addresses)
}

/// Answers one HTTP request on `s` with 200 and closes: reads the request head
/// (probes send no body), writes the response.
async fn answer_http<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let _ = s
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
        .await;
    let _ = s.shutdown().await;
}

/// A TLS acceptor with a fresh self-signed certificate.
fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    let ck = rcgen::generate_simple_self_signed(vec!["bench.example".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        ck.signing_key.serialize_der(),
    ));
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// Child: listen on the first `listening_ports` ports of every address: accept and
/// drop (TCP), or answer 200 to one HTTP(S) request per connection.
fn serve_vips(o: &Opts) {
    // HTTP(S) answers (TLS handshakes above all) cost the VIPs more than the prober
    // a plain accept: give them every core, so they never hold the prober back.
    let rt = match o.kind {
        Kind::Tcp => tokio::runtime::Builder::new_current_thread(),
        Kind::Http | Kind::Https => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build()
    .unwrap();
    let kind = o.kind;
    let tls = (kind == Kind::Https).then(tls_acceptor);
    rt.block_on(async {
        let mut n = 0;
        for a in 0..o.addresses {
            for p in 0..o.listening_ports.min(ports_per_address(o)) {
                let addr = SocketAddr::new(address(a), o.base_port + p as u16);
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
                n += 1;
                let tls = tls.clone();
                tokio::spawn(async move {
                    loop {
                        let Ok((s, _)) = l.accept().await else {
                            continue;
                        };
                        match (kind, &tls) {
                            (Kind::Tcp, _) => drop(s),
                            (Kind::Https, Some(tls)) => {
                                let tls = tls.clone();
                                tokio::spawn(async move {
                                    if let Ok(s) = tls.accept(s).await {
                                        answer_http(s).await;
                                    }
                                });
                            }
                            _ => {
                                tokio::spawn(answer_http(s));
                            }
                        }
                    }
                });
            }
        }
        // Black holes: backlog 0 and never accepted; our own connections fill the
        // queue, so the kernel drops every further SYN.
        let mut fillers = Vec::new();
        let first = o.listening_ports.min(ports_per_address(o));
        let last = (o.listening_ports + o.blackhole_ports).min(ports_per_address(o));
        for a in 0..o.addresses {
            for p in first..last {
                let addr = SocketAddr::new(address(a), o.base_port + p as u16);
                let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                    .unwrap();
                sock.bind(&addr.into())
                    .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
                sock.listen(0).unwrap();
                // Backlog 0 queues one connection: this one, never accepted.
                fillers.push(std::net::TcpStream::connect(addr).unwrap());
                fillers.push(std::net::TcpStream::from(sock));
            }
        }
        println!("ready {n}");
        std::io::stdout().flush().unwrap();
        // Until the parent closes our stdin.
        let _ = tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
        })
        .await;
    });
}

fn cpu_seconds() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we pass.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |s| format!("{:.3} ms", s * 1e3))
}

fn main() {
    let o = parse();
    if o.serve_vips {
        serve_vips(&o);
        return;
    }
    assert!(
        ports_per_address(&o) <= usize::from(u16::MAX - o.base_port),
        "too many endpoints per address"
    );
    let listening_per_addr = o.listening_ports.min(ports_per_address(&o));
    let listening: usize = (0..o.endpoints)
        .filter(|i| i / o.addresses < listening_per_addr)
        .count();
    let blackholed: usize = (0..o.endpoints)
        .filter(|i| {
            let p = i / o.addresses;
            p >= listening_per_addr && p < o.listening_ports + o.blackhole_ports
        })
        .count();
    println!(
        "{} probes: endpoints {} ({} addresses x {} ports), {listening} listening, {blackholed} black-holed (time out), the rest refuse; period {} s, timeout {} s",
        o.kind.name(),
        o.endpoints,
        o.addresses,
        ports_per_address(&o),
        o.period,
        o.timeout
    );

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(std::env::args().skip(1))
        .arg("--serve-vips")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the VIP process");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("ready"), "VIP process: {line:?}");

    // The prober runs on a runtime shaped like gslb's control plane.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gslb-ctl")
        .build()
        .unwrap();
    let rss_base = status_kb("VmRSS:");
    let hub = Arc::new(HealthHub::new());
    let cells: Vec<Arc<HealthCell>> = (0..o.endpoints)
        .map(|i| {
            hub.acquire(
                &endpoint(&o, i),
                Holder::new(&format!("n{i}.bench.example"), "dc1"),
            )
        })
        .collect();
    // Thousands of names behind a few VIPs add holders, not probes.
    for i in 0..o.shared_names {
        hub.acquire(
            &endpoint(&o, i % 4),
            Holder::new(&format!("shared{i}.bench.example"), "dc1"),
        );
    }
    assert_eq!(hub.probe_streams(), o.endpoints);
    println!(
        "{} names share the first 4 endpoints: still {} probe streams",
        o.shared_names,
        hub.probe_streams()
    );

    let t0 = Instant::now();
    let prober = rt.block_on(async { hub.start(None) });
    let stats = hub.stats();

    // Probes started per 100 ms: shows the spread over the period.
    let sample = |secs: u64| -> Vec<u64> {
        let mut per_tick = Vec::new();
        let mut last = stats.probes_total();
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(100));
            let now = stats.probes_total();
            per_tick.push(now - last);
            last = now;
        }
        per_tick
    };

    let startup = sample(o.warmup);
    let first_second: u64 = startup.iter().take(10).sum();
    let healthy = cells.iter().filter(|c| c.get() == Health::Healthy).count();
    let unhealthy = cells
        .iter()
        .filter(|c| c.get() == Health::Unhealthy)
        .count();
    let pending = cells.iter().filter(|c| c.get() == Health::Pending).count();
    let lat0 = stats.lateness.counts();
    println!(
        "startup: {first_second} probes in the first second ({} endpoints new, each due within 1 s); lateness over the first {} s p50 {}, p99 {}; then {healthy} Healthy, {unhealthy} Unhealthy, {pending} Pending",
        o.endpoints,
        o.warmup,
        ms(quantile(&LATENESS_BOUNDS, &lat0, 0.5)),
        ms(quantile(&LATENESS_BOUNDS, &lat0, 0.99)),
    );

    let probes0 = stats.probes_total();
    let cpu0 = cpu_seconds();
    let w0 = Instant::now();
    let ticks = sample(o.measure);
    let wall = w0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let probes = stats.probes_total() - probes0;
    let lat: Vec<u64> = stats
        .lateness
        .counts()
        .iter()
        .zip(&lat0)
        .map(|(a, b)| a - b)
        .collect();
    let expected = o.endpoints as f64 * wall / f64::from(o.period);
    let mean = ticks.iter().sum::<u64>() as f64 / ticks.len() as f64;
    let max = *ticks.iter().max().unwrap_or(&0);
    let min = *ticks.iter().min().unwrap_or(&0);
    let late_10ms: u64 = lat[LATENESS_BOUNDS.iter().position(|b| *b >= 0.01).unwrap() + 1..]
        .iter()
        .sum();

    println!("steady state over {wall:.1} s:");
    println!(
        "  probes        {probes} ({:.0}/s; expected {:.0} = endpoints x window / period)",
        probes as f64 / wall,
        expected
    );
    println!("  per 100 ms    min {min}, mean {mean:.0}, max {max} (spread over the period)");
    println!(
        "  lateness      p50 {}, p99 {}, p99.9 {}, > 10 ms: {late_10ms}",
        ms(quantile(&LATENESS_BOUNDS, &lat, 0.5)),
        ms(quantile(&LATENESS_BOUNDS, &lat, 0.99)),
        ms(quantile(&LATENESS_BOUNDS, &lat, 0.999)),
    );
    println!(
        "  prober CPU    {:.1}% of one core ({cpu:.2} s CPU in {wall:.1} s), {:.1} µs per probe",
        100.0 * cpu / wall,
        1e6 * cpu / probes.max(1) as f64
    );
    println!(
        "  summary       kind={} endpoints={} probes_per_s={:.0} cpu_us_per_probe={:.1} cpu_percent={:.1}",
        o.kind.name(),
        o.endpoints,
        probes as f64 / wall,
        1e6 * cpu / probes.max(1) as f64,
        100.0 * cpu / wall
    );
    println!(
        "  RSS           {} MiB (before endpoints: {} MiB, peak {} MiB)",
        status_kb("VmRSS:") / 1024,
        rss_base / 1024,
        status_kb("VmHWM:") / 1024
    );
    let healthy = cells.iter().filter(|c| c.get() == Health::Healthy).count();
    println!(
        "  verdicts      {healthy} Healthy (expected {listening}), {} Unhealthy",
        cells
            .iter()
            .filter(|c| c.get() == Health::Unhealthy)
            .count()
    );
    let results: Vec<String> = gslb::health::probe::RESULT_LABELS
        .iter()
        .zip(&stats.probes)
        .map(|(l, c)| format!("{l} {}", c.load(std::sync::atomic::Ordering::Relaxed)))
        .collect();
    println!("  results       {} (whole run)", results.join(", "));
    let lat_line: Vec<String> = LATENESS_BOUNDS
        .iter()
        .map(|b| format!("{}", b * 1e3))
        .chain(["+Inf".to_string()])
        .zip(&lat)
        .map(|(b, c)| format!("<={b}ms:{c}"))
        .collect();
    println!("  lateness hist {}", lat_line.join(" "));
    let r0 = Instant::now();
    let metrics = gslb::metrics::render_one(hub.collector());
    println!(
        "  /metrics      health part {} KiB, rendered in {:.1} ms",
        metrics.len() / 1024,
        r0.elapsed().as_secs_f64() * 1e3
    );
    rt.block_on(prober.shutdown()).unwrap();
    drop(child.stdin.take());
    let _ = child.kill();
    let _ = child.wait();
    println!("total run {:.0} s", t0.elapsed().as_secs_f64());
    assert_eq!(healthy, listening, "verdicts disagree with the VIPs");
}
