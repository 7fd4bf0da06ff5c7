//! `migrate-to-template-capable [--yes] [NAME_OR_UUID]` (ENDPOINT.md §1.4.12): split a
//! pre-template endpoint's `config.yaml` (one with an `engine`) into a core `config.yaml` and
//! a `user_config_template.yaml.j2`, keeping the original as `config.yaml.backup`.

use std::path::Path;

use gc_config::{EndpointConfig, LoadOptions};
use gc_mep::pidfile::{self, PidState};

use crate::click::{self, CliError, CmdResult, Usage};
use crate::commands::common::{HelpOnly, parse, single_name};
use crate::commands::start::endpoint_dir;
use crate::console;
use crate::pyyaml::{self, PyValue};

const USAGE: Usage = Usage {
    command_path: "globus-compute-endpoint migrate-to-template-capable",
    pieces: "[OPTIONS] [NAME_OR_UUID]",
    help_hint: Some("--help"),
};

const HELP: &str = include_str!("../help/migrate-to-template-capable.txt");

/// Keys that stay in the core endpoint's `config.yaml`.
const CORE_KEYS: [&str; 5] = [
    "admins",
    "display_name",
    "allowed_functions",
    "authentication_policy",
    "subscription_id",
];
/// Keys that go to both files.
const SHARED_KEYS: [&str; 5] = [
    "debug",
    "amqp_port",
    "heartbeat_period",
    "local_compute_services",
    "environment",
];

click_args! {
    struct Args {
        #[arg(value_name = "NAME_OR_UUID")]
        names: Vec<String>,
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        help: HelpOnly,
    }
}

/// Run `migrate-to-template-capable`.
pub fn run(argv: &[String]) -> CmdResult {
    let args: Args = parse(argv, USAGE)?;
    if args.help.apply(HELP) {
        return Ok(());
    }
    let value = single_name(&args.names, USAGE)?;
    let dir = endpoint_dir(&value)?;
    let name = dir
        .file_name()
        .map_or_else(|| value.clone(), |n| n.to_string_lossy().into_owned());
    if !args.yes {
        click::confirm(&format!(
            "> Are you sure you want to migrate endpoint '{name}' to be template capable? This is a one-way operation."
        ))?;
    }
    migrate(&dir, &name)
        .map_err(|e| CliError::Click(format!("Failed to migrate endpoint: {e}")))?;
    console::info(&format!(
        "Endpoint {name} successfully migrated to template capable."
    ));
    Ok(())
}

/// The pairs of `doc` whose keys satisfy `keep`, in their original order.
fn select(doc: &[(PyValue, PyValue)], keep: impl Fn(&str) -> bool) -> PyValue {
    PyValue::Map(
        doc.iter()
            .filter(|(k, _)| matches!(k, PyValue::Str(s) if keep(s)))
            .cloned()
            .collect(),
    )
}

fn migrate(dir: &Path, name: &str) -> Result<(), String> {
    let config_path = dir.join("config.yaml");
    let text = std::fs::read_to_string(&config_path).map_err(|e| {
        format!(
            "{}: {}",
            crate::compute_dir::py_os_error_name(&e),
            crate::pyfmt::os_error(&e, &config_path)
        )
    })?;
    match gc_config::load_config(
        &text,
        &config_path.to_string_lossy(),
        LoadOptions::default(),
    )
    .map_err(|e| e.to_string())?
    {
        EndpointConfig::Core(_) => {
            return Err(format!("Endpoint '{name}' is already template capable."));
        }
        EndpointConfig::User(_) => {}
    }
    if pidfile::state(dir) == PidState::Fresh {
        return Err(format!("Endpoint '{name}' is currently running."));
    }
    let PyValue::Map(doc) = pyyaml::safe_load(&text).map_err(|e| e.to_string())? else {
        return Err(format!("{} is not a YAML mapping", config_path.display()));
    };
    let backup = dir.join("config.yaml.backup");
    if backup.exists() {
        return Err(format!(
            "Tried to back up '{}' to '{}', but the latter already exists.",
            config_path.display(),
            backup.display()
        ));
    }
    std::fs::rename(&config_path, &backup).map_err(|e| e.to_string())?;
    let core = select(&doc, |k| CORE_KEYS.contains(&k) || SHARED_KEYS.contains(&k));
    let user = select(&doc, |k| !CORE_KEYS.contains(&k));
    let template = dir.join(gc_config::defaults::file_names::USER_CONFIG_TEMPLATE);
    for (value, dest) in [(core, config_path.as_path()), (user, template.as_path())] {
        std::fs::write(dest, pyyaml::safe_dump(&value)).map_err(|e| e.to_string())?;
    }
    Ok(())
}
