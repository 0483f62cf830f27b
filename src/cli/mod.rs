//! The command line as a client of the REST API: `gslb get`, `apply`, `delete`,
//! `explain`, `drain`, `undrain` (CONTRACT §10).
//!
//! Every command talks to `--server URL` (default `http://127.0.0.1:8080`) with the
//! bearer token of `GSLB_API_TOKEN`, prints what it did on stdout in kubectl's
//! words (`nameservice/NAME created`), and reports a refusal on stderr with the
//! API's own message and field. Exit status:
//!
//! - 0: done;
//! - 1: the server refused a request or answered an error (`apply` goes on with
//!   the other resources and exits 1 if any failed);
//! - 2: bad usage: a bad flag (clap's), an input file that cannot be read or is
//!   neither JSON nor YAML, a bad duration;
//! - 3: the server could not be reached.

pub mod client;

use std::io::Read;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde_json::{Value, json};

pub use client::{Applied, Client, ClientError};

pub const EXIT_OK: u8 = 0;
pub const EXIT_REFUSED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_UNREACHABLE: u8 = 3;

/// Where the API is; shared by every client command.
#[derive(Debug, Clone, Args)]
pub struct Server {
    /// The API's base URL (token from the environment variable GSLB_API_TOKEN).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    pub server: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A table, one line per NameService.
    #[default]
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// One NameService; all of them when absent.
    pub name: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(flatten)]
    pub server: Server,
}

#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// JSON or YAML: one NameService, a list of them, `{"items": [...]}`, or several
    /// YAML documents. `-` reads standard input.
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
    pub file: String,
    #[command(flatten)]
    pub server: Server,
}

#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    pub name: String,
    #[command(flatten)]
    pub server: Server,
}

#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    pub name: String,
    /// The client address the decision is made for.
    #[arg(long, value_name = "IP")]
    pub client: String,
    /// The EDNS Client Subnet the query carries, e.g. 10.1.2.0/24.
    #[arg(long, value_name = "CIDR")]
    pub ecs: Option<String>,
    /// A or AAAA [default: A].
    #[arg(long = "type", value_name = "TYPE")]
    pub qtype: Option<String>,
    /// Output format (the table form is YAML).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Yaml)]
    pub output: Output,
    #[command(flatten)]
    pub server: Server,
}

#[derive(Debug, Clone, Args)]
pub struct DrainArgs {
    pub name: String,
    pub target: String,
    /// Why (shown in status and events).
    #[arg(long, required = true)]
    pub reason: String,
    /// How long, e.g. 30m, 2h, 1d [default: the server's, one hour].
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: Option<String>,
    /// Drain even when fewer than minEligibleTargets would stay eligible.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub server: Server,
}

#[derive(Debug, Clone, Args)]
pub struct UndrainArgs {
    pub name: String,
    pub target: String,
    #[command(flatten)]
    pub server: Server,
}

/// A client command.
#[derive(Debug, Clone)]
pub enum Command {
    Get(GetArgs),
    Apply(ApplyArgs),
    Delete(DeleteArgs),
    Explain(ExplainArgs),
    Drain(DrainArgs),
    Undrain(UndrainArgs),
}

impl Command {
    fn server(&self) -> &str {
        match self {
            Command::Get(a) => &a.server.server,
            Command::Apply(a) => &a.server.server,
            Command::Delete(a) => &a.server.server,
            Command::Explain(a) => &a.server.server,
            Command::Drain(a) => &a.server.server,
            Command::Undrain(a) => &a.server.server,
        }
    }
}

/// Runs a client command; prints on stdout/stderr and returns the exit status.
pub fn run(cmd: Command) -> ExitCode {
    ExitCode::from(run_code(cmd))
}

fn run_code(cmd: Command) -> u8 {
    let token = std::env::var("GSLB_API_TOKEN").ok();
    let client = match Client::new(cmd.server(), token) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gslb: error: {e}");
            return EXIT_USAGE;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gslb: error: cannot start the async runtime: {e}");
            return EXIT_REFUSED;
        }
    };
    rt.block_on(async move {
        match cmd {
            Command::Get(a) => get(&client, a).await,
            Command::Apply(a) => apply(&client, a).await,
            Command::Delete(a) => report(
                client.delete(&a.name).await,
                |()| format!("nameservice/{} deleted", a.name),
                &a.name,
            ),
            Command::Explain(a) => {
                let r = client
                    .explain(&a.name, &a.client, a.ecs.as_deref(), a.qtype.as_deref())
                    .await;
                match r {
                    Ok(v) => print_value(&v, a.output),
                    Err(e) => fail(&e, &a.name),
                }
            }
            Command::Drain(a) => drain(&client, a).await,
            Command::Undrain(a) => report(
                client.delete_override(&a.name, &a.target).await,
                |()| format!("nameservice/{} target {} undrained", a.name, a.target),
                &a.name,
            ),
        }
    })
}

fn exit_of(e: &ClientError) -> u8 {
    match e {
        ClientError::Unreachable { .. } => EXIT_UNREACHABLE,
        ClientError::BadServer(_) => EXIT_USAGE,
        ClientError::Api { .. } | ClientError::Protocol { .. } => EXIT_REFUSED,
    }
}

fn fail(e: &ClientError, name: &str) -> u8 {
    eprintln!("gslb: error: nameservice/{name}: {e}");
    exit_of(e)
}

fn report<T>(r: Result<T, ClientError>, ok: impl FnOnce(T) -> String, name: &str) -> u8 {
    match r {
        Ok(v) => {
            println!("{}", ok(v));
            EXIT_OK
        }
        Err(e) => fail(&e, name),
    }
}

async fn get(client: &Client, a: GetArgs) -> u8 {
    let (items, single) = match &a.name {
        Some(n) => match client.get(n).await {
            Ok(v) => (vec![v], true),
            Err(e) => return fail(&e, n),
        },
        None => match client.list().await {
            Ok(v) => (v, false),
            Err(e) => {
                eprintln!("gslb: error: {e}");
                return exit_of(&e);
            }
        },
    };
    match a.output {
        Output::Table => {
            print!("{}", table(&items));
            EXIT_OK
        }
        out if single => print_value(&items[0], out),
        out => print_value(&json!({ "items": items }), out),
    }
}

fn print_value(v: &Value, out: Output) -> u8 {
    match out {
        Output::Json => match serde_json::to_string_pretty(v) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("gslb: error: {e}");
                return EXIT_REFUSED;
            }
        },
        Output::Yaml | Output::Table => match serde_yaml_ng::to_string(v) {
            Ok(s) => print!("{s}"),
            Err(e) => {
                eprintln!("gslb: error: {e}");
                return EXIT_REFUSED;
            }
        },
    }
    EXIT_OK
}

/// One line per NameService: name, policy, TTL, targets, how many are eligible by
/// health (Healthy or Unchecked), and the Ready condition.
pub fn table(items: &[Value]) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "POLICY".into(),
        "TTL".into(),
        "TARGETS".into(),
        "HEALTHY".into(),
        "READY".into(),
        "REASON".into(),
    ]];
    for v in items {
        let targets = v["status"]["targets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let healthy = targets
            .iter()
            .filter(|t| matches!(t["health"].as_str(), Some("Healthy" | "Unchecked")))
            .count();
        let ready = v["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .cloned()
            .unwrap_or(Value::Null);
        let s = |v: &Value| match v {
            Value::String(s) => s.clone(),
            Value::Null => "-".into(),
            other => other.to_string(),
        };
        rows.push([
            s(&v["name"]),
            s(&v["policy"]),
            s(&v["ttl"]),
            v["targets"].as_array().map_or(0, Vec::len).to_string(),
            format!("{healthy}/{}", targets.len()),
            s(&ready["status"]),
            s(&ready["reason"]),
        ]);
    }
    let mut widths = [0usize; 7];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

async fn apply(client: &Client, a: ApplyArgs) -> u8 {
    let text = match read_input(&a.file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("gslb: error: {}: {e}", a.file);
            return EXIT_USAGE;
        }
    };
    let resources = match parse_resources(&text) {
        Ok(r) if r.is_empty() => {
            eprintln!("gslb: error: {}: no NameService in it", a.file);
            return EXIT_USAGE;
        }
        Ok(r) => r,
        Err(e) => {
            eprintln!("gslb: error: {}: {e}", a.file);
            return EXIT_USAGE;
        }
    };
    let mut code = EXIT_OK;
    for (i, r) in resources.iter().enumerate() {
        let Some(name) = r["name"].as_str().filter(|n| !n.is_empty()) else {
            eprintln!(
                "gslb: error: {}: resource #{} has no \"name\"",
                a.file,
                i + 1
            );
            code = code.max(EXIT_REFUSED);
            continue;
        };
        match client.apply(name, r).await {
            Ok(how) => println!("nameservice/{name} {}", how.as_str()),
            Err(e) => {
                let c = fail(&e, name);
                if c == EXIT_UNREACHABLE {
                    return c;
                }
                code = code.max(c);
            }
        }
    }
    code
}

fn read_input(file: &str) -> std::io::Result<String> {
    if file == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(file)
    }
}

/// The NameServices in a JSON or YAML text: one object, an array, an object with
/// `items`, or several YAML documents of those.
pub fn parse_resources(text: &str) -> Result<Vec<Value>, String> {
    let trimmed = text.trim_start();
    let docs: Vec<Value> = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        vec![serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?]
    } else {
        let mut docs = Vec::new();
        for d in serde_yaml_ng::Deserializer::from_str(text) {
            let v: Value = serde::Deserialize::deserialize(d)
                .map_err(|e| format!("not valid JSON or YAML: {e}"))?;
            docs.push(v);
        }
        docs
    };
    let mut out = Vec::new();
    for d in docs {
        match d {
            Value::Null => {}
            Value::Array(items) => out.extend(items),
            Value::Object(ref o) if o.contains_key("items") && !o.contains_key("name") => {
                match &o["items"] {
                    Value::Array(items) => out.extend(items.iter().cloned()),
                    _ => return Err("\"items\" is not a list".into()),
                }
            }
            obj @ Value::Object(_) => out.push(obj),
            other => {
                return Err(format!(
                    "expected a NameService object or a list of them, found {other}"
                ));
            }
        }
    }
    if let Some(bad) = out.iter().find(|v| !v.is_object()) {
        return Err(format!("expected NameService objects, found {bad}"));
    }
    Ok(out)
}

async fn drain(client: &Client, a: DrainArgs) -> u8 {
    let mut body = json!({"state": "Drain", "reason": a.reason});
    if let Some(d) = &a.duration {
        match humantime::parse_duration(d) {
            Ok(d) if d.as_secs() > 0 => body["ttlSeconds"] = json!(d.as_secs()),
            Ok(_) => {
                eprintln!("gslb: error: --for {d:?}: must be at least one second");
                return EXIT_USAGE;
            }
            Err(e) => {
                eprintln!("gslb: error: --for {d:?}: {e} (e.g. 30m, 2h, 1d)");
                return EXIT_USAGE;
            }
        }
    }
    report(
        client
            .set_override(&a.name, &a.target, &body, a.force)
            .await,
        |v| {
            let until = v["expiresAt"]
                .as_str()
                .map(|t| format!(" until {t}"))
                .unwrap_or_default();
            format!("nameservice/{} target {} drained{until}", a.name, a.target)
        },
        &a.name,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_from_json_and_yaml_in_every_shape() {
        let one = r#"{"name": "a.example", "policy": "RoundRobin"}"#;
        assert_eq!(parse_resources(one).unwrap().len(), 1);
        let list = r#"[{"name": "a.example"}, {"name": "b.example"}]"#;
        assert_eq!(parse_resources(list).unwrap().len(), 2);
        let items = r#"{"items": [{"name": "a.example"}, {"name": "b.example"}]}"#;
        assert_eq!(parse_resources(items).unwrap().len(), 2);
        let yaml = "name: a.example\npolicy: Ratio\ntargets:\n  - name: dc1\n    address: 192.0.2.1\n    ratio: 3\n---\nname: b.example\n---\n";
        let r = parse_resources(yaml).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0]["targets"][0]["ratio"], 3);
        assert_eq!(r[0]["targets"][0]["address"], "192.0.2.1");
        let yaml_list = "- name: a.example\n- name: b.example\n";
        assert_eq!(parse_resources(yaml_list).unwrap().len(), 2);
        let yaml_items = "items:\n- name: a.example\n";
        assert_eq!(parse_resources(yaml_items).unwrap().len(), 1);
        assert!(parse_resources("{not json").is_err());
        assert!(parse_resources("name: [unclosed").is_err());
        assert!(parse_resources("42").is_err());
        assert!(parse_resources("[1, 2]").is_err());
        assert!(parse_resources("").unwrap().is_empty());
    }

    #[test]
    fn table_counts_healthy_targets_and_ready() {
        let v = json!({"name": "app.example", "policy": "Ratio", "ttl": 30,
            "targets": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "SomeTargetsUnhealthy"}],
                       "targets": [{"health": "Healthy"}, {"health": "Unhealthy"}, {"health": "Unchecked"}]}});
        let t = table(&[v]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("NAME "), "{t}");
        let cols: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            cols,
            [
                "app.example",
                "Ratio",
                "30",
                "3",
                "2/3",
                "True",
                "SomeTargetsUnhealthy"
            ]
        );
    }
}
