//! `globus-compute-endpoint map-identity`: run an identity mapping file against an identity set
//! the way a multi-user endpoint would, and say which local user results.
//!
//! Contract (one JSON line on stdout):
//! * `{"id": <matched identity id>, "username": "<name>"}`, exit 0;
//! * `{"none": true}`, exit 1: the file is valid but maps nobody (or maps to an empty name);
//! * `{"invalid": true, "error": "<reason>"}`, exit 2: the mapping file is rejected.
//!
//! An unreadable mapping file exits 77 (permission) or 78 (missing), like the MEP at start-up;
//! an unusable identities file exits 64. External programs run in the current directory.
//! `--explain` writes, per configuration and per rule, what was tried and why, to stderr.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use gc_idmap::json::{self, Json};
use gc_idmap::{ConfigKind, ExternalContext, FileError, MappingFile, MappingOutcome};

/// Identities files larger than this are refused.
const MAX_IDENTITIES_BYTES: u64 = 16 * 1024 * 1024;
/// `EX_USAGE`: the identities file cannot be used.
const EXIT_USAGE: u8 = 64;
/// `-s` value when no endpoint id is given.
const NIL_ENDPOINT_ID: &str = "00000000-0000-0000-0000-000000000000";

/// Arguments of `map-identity`.
#[derive(Debug, Clone, clap::Args)]
pub struct MapIdentityArgs {
    /// The identity mapping configuration file (a JSON list of mapping documents).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// A JSON list of Globus Auth identity records (the request's identity set).
    #[arg(long, value_name = "FILE")]
    pub identities: PathBuf,
    /// Endpoint id passed to external mapping programs as the storage gateway (`-s`).
    #[arg(long, value_name = "UUID")]
    pub endpoint_id: Option<String>,
    /// Explain on stderr, per configuration and rule, what was tried and why it matched or not.
    #[arg(long)]
    pub explain: bool,
}

fn print_line(value: &Json) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", value.to_python_json());
    let _ = out.flush();
}

fn obj(members: Vec<(&str, Json)>) -> Json {
    Json::Object(
        members
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn read_identities(path: &Path) -> Result<Vec<Json>, String> {
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot read identities file {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_IDENTITIES_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read identities file {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_IDENTITIES_BYTES {
        return Err(format!(
            "identities file {} is larger than {MAX_IDENTITIES_BYTES} bytes",
            path.display()
        ));
    }
    match json::parse_bytes(&bytes) {
        Ok(Json::Array(items)) => Ok(items),
        Ok(_) => Err(format!(
            "identities file {} must hold a JSON list of identity objects",
            path.display()
        )),
        Err(e) => Err(format!(
            "identities file {} is not valid JSON: {e}",
            path.display()
        )),
    }
}

fn explain(file: &MappingFile, reports: &[gc_idmap::ConfigReport], outcome: &MappingOutcome) {
    let mut err = std::io::stderr().lock();
    let total = file.configurations.len() + file.skipped.len();
    let _ = writeln!(
        err,
        "identity mapping: {total} configuration(s) in the file, evaluated in order"
    );
    for index in 0..total {
        if let Some((_, dt)) = file.skipped.iter().find(|(i, _)| *i == index) {
            let _ = writeln!(
                err,
                "configuration {index}: DATA_TYPE {dt:?} is not a known mapping type; skipped"
            );
            continue;
        }
        let Some(report) = reports.iter().find(|r| r.index == index) else {
            continue;
        };
        let cfg = file.configurations.iter().find(|c| c.index == index);
        let detail = match cfg.map(|c| &c.kind) {
            Some(ConfigKind::Expression(rules)) => format!(
                "expression_identity_mapping#1.0.0, {} mapping(s); entries are tried in order, \
                 each against every identity whose status is \"used\" or \"private\"",
                rules.len()
            ),
            Some(ConfigKind::External(_)) => {
                "external_identity_mapping#1.0.0; the program receives every identity".to_string()
            }
            None => report.kind.to_string(),
        };
        let _ = writeln!(err, "configuration {index}: {detail}");
        for line in &report.lines {
            let _ = writeln!(err, "{line}");
        }
    }
    let decision = match outcome {
        MappingOutcome::Mapped {
            identity_id,
            username,
        } => format!(
            "decision: the first configuration with a candidate wins: identity {} -> user {:?}",
            identity_id.to_json_unicode(),
            username
        ),
        MappingOutcome::EmptyUsername { identity_id } => format!(
            "decision: the first candidate (identity {}) maps to the empty string, which means \
             \"failed to map\"; later configurations are not consulted",
            identity_id.to_json_unicode()
        ),
        MappingOutcome::NoMapping => "decision: no configuration produced a candidate".into(),
    };
    let _ = writeln!(err, "{decision}");
}

/// Run `map-identity`.
pub fn run(args: &MapIdentityArgs) -> ExitCode {
    let file = match gc_idmap::reload::load_file(&args.config) {
        Ok(f) => f,
        Err(FileError::Invalid { source, .. }) => {
            if args.explain {
                eprintln!("identity mapping file rejected: {source}");
            }
            print_line(&obj(vec![
                ("invalid", Json::Bool(true)),
                ("error", Json::Str(source.to_string())),
            ]));
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let identities = match read_identities(&args.identities) {
        Ok(ids) => ids,
        Err(msg) => {
            eprintln!("Error: {msg}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let ctx = ExternalContext::for_endpoint(args.endpoint_id.as_deref().unwrap_or(NIL_ENDPOINT_ID));
    let outcome = if args.explain {
        let (outcome, reports) = file.explain(&identities, &ctx);
        explain(&file, &reports, &outcome);
        outcome
    } else {
        file.map_identities(&identities, &ctx)
    };
    match outcome {
        MappingOutcome::Mapped {
            identity_id,
            username,
        } => {
            print_line(&obj(vec![
                ("id", identity_id),
                ("username", Json::Str(username)),
            ]));
            ExitCode::SUCCESS
        }
        MappingOutcome::EmptyUsername { .. } | MappingOutcome::NoMapping => {
            print_line(&obj(vec![("none", Json::Bool(true))]));
            ExitCode::from(1)
        }
    }
}
