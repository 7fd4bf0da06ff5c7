//! `list` (ENDPOINT.md §1.4.7): the table of local endpoints and their states.

use std::path::Path;

use gc_mep::pidfile::{self, PidState};
use serde_json::Value;

use crate::click::{CmdResult, Usage};
use crate::commands::common::{CommonOptions, parse};
use crate::compute_dir::{self, id_text, read_endpoint_id};
use crate::console;
use crate::texttable;

const USAGE: Usage = Usage {
    command_path: "globus-compute-endpoint list",
    pieces: "[OPTIONS]",
    help_hint: None,
};

const HELP: &str = include_str!("../help/list.txt");

click_args! {
    struct Args {
        #[command(flatten)]
        common: CommonOptions,
    }
}

/// Python truthiness of a JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Rows `[id, status, name]` for every endpoint directory, in directory order.
pub fn endpoint_rows(conf_dir: &Path) -> Vec<[String; 3]> {
    let mut rows: Vec<[String; 3]> = Vec::new();
    for dir in compute_dir::endpoint_dirs(conf_dir) {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (id_shown, has_id) = match read_endpoint_id(&dir) {
            Ok(id) => {
                let has = id.as_ref().is_some_and(truthy);
                (id_text(&id), has)
            }
            Err(e) => {
                console::warning(&format!(
                    "Failed to read endpoint id: [{}] {} ({})",
                    e.kind,
                    e.message,
                    dir.display()
                ));
                ("[failed to read endpoint id]".to_string(), true)
            }
        };
        let status = if !has_id {
            "Initialized"
        } else {
            match pidfile::state(&dir) {
                PidState::Fresh => "Running",
                PidState::Stale => "Disconnected",
                PidState::Absent => "Stopped",
            }
        };
        rows.push([id_shown, status.to_string(), name]);
    }
    rows
}

/// Run `list`.
pub fn run(args: &[String]) -> CmdResult {
    let args: Args = parse(args, USAGE)?;
    if args.common.apply(HELP) {
        return Ok(());
    }
    let rows = endpoint_rows(&compute_dir::compute_dir());
    if rows.is_empty() {
        println!("No endpoints configured!\n\n (Hint: globus-compute-endpoint configure)");
    } else {
        println!(
            "{}",
            texttable::endpoint_table(&rows, texttable::terminal_columns())
        );
    }
    Ok(())
}
