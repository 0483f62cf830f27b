//! The command `gslb import istio`: read, map, then print or apply, and the exit
//! status (docs/istio.md):
//!
//! - 0: every ServiceEntry host was imported (printed, or applied with `--apply`);
//!   fields and objects with no NameService equivalent are named on stderr as
//!   warnings;
//! - 1: an error (a file unreadable, invalid YAML or objects, nothing to import, a
//!   write the server refused or could not take); nothing is printed or applied
//!   unless every object was valid, and with `--apply` the other writes go ahead;
//! - 2: bad command line (clap's);
//! - 3: `--strict` and some field or object could not be mapped: named on stderr,
//!   nothing printed or applied.

use std::io::Write;

use super::{Options, import, read_files};
use crate::cli::Client;

pub const EXIT_OK: u8 = 0;
pub const EXIT_ERROR: u8 = 1;
pub const EXIT_NOT_MAPPED: u8 = 3;

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct Command {
    pub files: Vec<String>,
    pub options: Options,
    pub strict: bool,
    /// `--apply`: the API's base URL and the bearer token.
    pub apply: Option<(String, Option<String>)>,
}

/// Runs the import; returns the exit status.
pub fn run(cmd: &Command) -> u8 {
    let (inputs, read_errors) = read_files(&cmd.files);
    for e in &read_errors {
        eprintln!("gslb: import: error: {e}");
    }
    if !read_errors.is_empty() {
        return EXIT_ERROR;
    }
    let result = import(&inputs, &cmd.options);
    let level = if cmd.strict { "error" } else { "warning" };
    for n in &result.left_out {
        eprintln!("gslb: import: {level}: {n}");
    }
    for n in &result.errors {
        eprintln!("gslb: import: error: {n}");
    }
    if !result.errors.is_empty() {
        eprintln!(
            "gslb: import: {} error(s); nothing imported",
            result.errors.len()
        );
        return EXIT_ERROR;
    }
    if cmd.strict && !result.left_out.is_empty() {
        eprintln!(
            "gslb: import: {} field(s) or object(s) not mapped and --strict; nothing imported",
            result.left_out.len()
        );
        return EXIT_NOT_MAPPED;
    }
    if result.services.is_empty() {
        eprintln!("gslb: import: error: no ServiceEntry host to import");
        return EXIT_ERROR;
    }
    let summary = |verb: &str| {
        eprintln!(
            "gslb: import: {} NameService(s) {verb}, {} field(s) or object(s) not mapped",
            result.services.len(),
            result.left_out.len()
        );
    };
    let Some((server, token)) = &cmd.apply else {
        let mut out = std::io::stdout().lock();
        for ns in &result.services {
            let line = serde_json::to_string(ns).expect("a NameService serializes");
            if writeln!(out, "{line}").is_err() {
                return EXIT_ERROR;
            }
        }
        if out.flush().is_err() {
            return EXIT_ERROR;
        }
        summary("printed");
        return EXIT_OK;
    };
    let client = match Client::new(server, token.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gslb: import: error: {e}");
            return EXIT_ERROR;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gslb: import: error: cannot start the async runtime: {e}");
            return EXIT_ERROR;
        }
    };
    let mut failed = 0;
    for ns in &result.services {
        let body = serde_json::to_value(ns).expect("a NameService serializes");
        match runtime.block_on(client.apply(&ns.name, &body)) {
            Ok(how) => println!("nameservice/{} {}", ns.name, how.as_str()),
            Err(e) => {
                failed += 1;
                eprintln!("gslb: import: error: nameservice/{}: {e}", ns.name);
            }
        }
    }
    if failed > 0 {
        eprintln!(
            "gslb: import: {failed} of {} NameService(s) not applied",
            result.services.len()
        );
        return EXIT_ERROR;
    }
    summary("applied");
    EXIT_OK
}
