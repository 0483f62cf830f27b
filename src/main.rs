//! The `gslb` binary: parse the command line, set up logging, run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use gslb::config::{Config, Overrides};

#[derive(Parser)]
#[command(
    name = "gslb",
    version,
    about = "Authoritative DNS server for global server load balancing"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve DNS and the REST API.
    Serve(ServeArgs),
    /// Validate the config and every zone file, then exit.
    Check(CheckArgs),
    /// Turn another system's objects into NameServices.
    Import(ImportArgs),
    /// Show NameServices (a table, or -o json|yaml) through the API.
    Get(gslb::cli::GetArgs),
    /// Create or replace NameServices from a JSON or YAML file (or - for stdin);
    /// prints created / configured / unchanged for each.
    Apply(gslb::cli::ApplyArgs),
    /// Delete a NameService.
    Delete(gslb::cli::DeleteArgs),
    /// Show the decision the DNS makes for a client: locality, step, eligibility,
    /// probabilities, answer.
    Explain(gslb::cli::ExplainArgs),
    /// Take a target out of the answers for a while (an override with a reason).
    Drain(gslb::cli::DrainArgs),
    /// Remove a target's override.
    Undrain(gslb::cli::UndrainArgs),
}

#[derive(Args)]
struct ImportArgs {
    #[command(subcommand)]
    from: ImportFrom,
}

#[derive(Subcommand)]
enum ImportFrom {
    /// Istio ServiceEntry, WorkloadEntry, WorkloadGroup and DestinationRule objects
    /// (Kubernetes YAML): prints one NameService JSON per line, one per ServiceEntry
    /// host, or writes them through the API with --apply. Fields that have no
    /// NameService equivalent are named on stderr. Exit status: 0 imported, 1 error
    /// (nothing imported), 2 bad usage, 3 --strict and something not mapped.
    Istio(IstioArgs),
}

#[derive(Args)]
struct IstioArgs {
    /// Kubernetes YAML files, several documents each (`-` reads standard input).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<String>,
    /// Namespace of the objects that name none.
    #[arg(long, short = 'n', value_name = "NAMESPACE", default_value = "default")]
    namespace: String,
    /// Fail with exit status 3, importing nothing, when any field or object cannot be mapped.
    #[arg(long)]
    strict: bool,
    /// Create or replace the NameServices through the API instead of printing them.
    #[arg(long)]
    apply: bool,
    /// The API's base URL, for --apply (token from GSLB_API_TOKEN).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    server: String,
}

#[derive(Args)]
struct ServeArgs {
    /// TOML config file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// UDP and TCP DNS listener (repeatable) [default: 127.0.0.1:1053]
    #[arg(long = "dns-listen", value_name = "ADDR:PORT")]
    dns_listen: Vec<String>,
    /// REST API, /healthz and /metrics listener [default: 127.0.0.1:8080]
    #[arg(long = "api-listen", value_name = "ADDR:PORT")]
    api_listen: Option<String>,
    /// Embedded store directory [default: ./data]
    #[arg(long = "data-dir", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Directory of RFC 1035 zone files (*.zone) [default: ./zones]
    #[arg(long = "zones-dir", value_name = "DIR")]
    zones_dir: Option<PathBuf>,
    /// Bearer token required on /api/ calls.
    #[arg(
        long = "api-token",
        env = "GSLB_API_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    api_token: Option<String>,
    /// etcd client URL (repeatable); selects the etcd registry backend
    #[arg(long = "etcd-endpoint", value_name = "URL")]
    etcd_endpoint: Vec<String>,
    /// This instance's name [default: the host name]
    #[arg(long = "instance", value_name = "NAME")]
    instance: Option<String>,
}

#[derive(Args)]
struct CheckArgs {
    /// TOML config file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory of RFC 1035 zone files (*.zone) [default: ./zones]
    #[arg(long = "zones-dir", value_name = "DIR")]
    zones_dir: Option<PathBuf>,
}

/// Allocator tunables that keep RSS close to the live data (glibc):
/// - two arenas: glibc gives every allocating thread its own (up to 8 per core), and
///   gslb's threads mostly allocate briefly, so extra arenas only hold freed memory;
/// - a fixed 128 KiB mmap threshold: glibc otherwise raises it after the first large
///   free, and the big short-lived buffers of startup (parsing a 10,000-entry
///   topology, loading the store) then stay in the heap. Measured: a 10,000-prefix
///   topology costs 10 MiB of RSS instead of 20.
///
/// No cost on the answer path, which does not allocate.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator tunables; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    // Client commands: their output is their own, no tracing setup. Exit status:
    // 0 done, 1 refused by the server, 2 bad usage or input, 3 server unreachable.
    let command = match cli.command {
        Command::Get(a) => return gslb::cli::run(gslb::cli::Command::Get(a)),
        Command::Apply(a) => return gslb::cli::run(gslb::cli::Command::Apply(a)),
        Command::Delete(a) => return gslb::cli::run(gslb::cli::Command::Delete(a)),
        Command::Explain(a) => return gslb::cli::run(gslb::cli::Command::Explain(a)),
        Command::Drain(a) => return gslb::cli::run(gslb::cli::Command::Drain(a)),
        Command::Undrain(a) => return gslb::cli::run(gslb::cli::Command::Undrain(a)),
        other => other,
    };
    if let Command::Import(ImportArgs {
        from: ImportFrom::Istio(a),
    }) = command
    {
        // A client command: its output is its own, no tracing setup.
        return ExitCode::from(gslb::istio::run::run(&gslb::istio::run::Command {
            files: a.files,
            options: gslb::istio::Options {
                namespace: a.namespace,
            },
            strict: a.strict,
            apply: a
                .apply
                .then(|| (a.server, std::env::var("GSLB_API_TOKEN").ok())),
        }));
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let result = match command {
        Command::Serve(a) => Config::load(
            a.config.as_deref(),
            Overrides {
                dns_listen: a.dns_listen,
                api_listen: a.api_listen,
                data_dir: a.data_dir,
                zones_dir: a.zones_dir,
                api_token: a.api_token,
                etcd_endpoints: a.etcd_endpoint,
                instance: a.instance,
            },
        )
        .map_err(anyhow::Error::from)
        .and_then(gslb::app::serve),
        Command::Check(a) => gslb::app::check(
            Config::load(
                a.config.as_deref(),
                Overrides {
                    zones_dir: a.zones_dir.clone(),
                    ..Overrides::default()
                },
            ),
            a.zones_dir.as_deref(),
        ),
        Command::Import(_)
        | Command::Get(_)
        | Command::Apply(_)
        | Command::Delete(_)
        | Command::Explain(_)
        | Command::Drain(_)
        | Command::Undrain(_) => unreachable!("handled above"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One clear line: what and where.
            eprintln!("gslb: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
