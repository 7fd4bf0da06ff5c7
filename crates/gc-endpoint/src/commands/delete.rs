//! `delete [--force] [--yes] [NAME_OR_UUID]` (ENDPOINT.md §1.4.8): delete an endpoint from
//! the web service (when its id is known) and its local directory.

use std::path::Path;

use serde_json::Value;

use crate::click::{self, CliError, CmdResult, Usage};
use crate::commands::common::{CommonOptions, parse, single_name};
use crate::compute_dir::{self, read_endpoint_id};
use crate::console;
use crate::pyyaml::{self, PyValue};
use crate::service::{self, ComputeClient, ServiceError};

const USAGE: Usage = Usage {
    command_path: "globus-compute-endpoint delete",
    pieces: "[OPTIONS] [NAME_OR_UUID]",
    help_hint: None,
};

const HELP: &str = include_str!("../help/delete.txt");

/// `EX_UNAVAILABLE`: the service refused and a local directory exists.
const EX_UNAVAILABLE: u8 = 69;
/// `EX_TEMPFAIL`: network error.
const EX_TEMPFAIL: u8 = 75;
/// `sys.exit(-1)`.
const EXIT_MINUS_ONE: u8 = 255;

click_args! {
    struct Args {
        #[arg(value_name = "NAME_OR_UUID")]
        names: Vec<String>,
        #[arg(long)]
        force: bool,
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        common: CommonOptions,
    }
}

/// What `delete` needs from an endpoint's `config.yaml`: where the service is.
#[derive(Debug, Default)]
struct ServiceChoice {
    local_compute_services: bool,
    environment: Option<String>,
}

/// Load `config.yaml` far enough to know it is readable YAML and where the service is.
fn load_config(dir: &Path) -> Result<ServiceChoice, ()> {
    let text = std::fs::read_to_string(dir.join("config.yaml")).map_err(|_| ())?;
    let PyValue::Map(pairs) = pyyaml::safe_load(&text).map_err(|_| ())? else {
        return Err(());
    };
    let mut choice = ServiceChoice::default();
    for (k, v) in pairs {
        match (k, v) {
            (PyValue::Str(k), PyValue::Bool(b)) if k == "local_compute_services" => {
                choice.local_compute_services = b;
            }
            (PyValue::Str(k), PyValue::Str(e)) if k == "environment" => {
                choice.environment = Some(e);
            }
            _ => {}
        }
    }
    Ok(choice)
}

/// Run `delete`.
pub fn run(argv: &[String]) -> CmdResult {
    let args: Args = parse(argv, USAGE)?;
    if args.common.apply(HELP) {
        return Ok(());
    }
    let name_arg = single_name(&args.names, USAGE)?;
    let value = name_arg.as_str();
    let resolved = compute_dir::resolve_endpoint(value, false).map_err(CliError::Click)?;
    let ep_dir = resolved.dir;
    let mut ep_uuid = resolved.uuid;

    let mut info = ep_dir
        .as_ref()
        .map(|d| format!("< {} >", base_name(d)))
        .unwrap_or_default();
    if let Some(u) = &ep_uuid {
        info.push_str(&format!(" ( {u} )"));
    }
    if !args.yes {
        click::confirm(&format!("Are you sure you want to delete endpoint {info}?"))?;
    }

    let mut choice = ServiceChoice::default();
    let error_msg = match &ep_dir {
        Some(dir) => {
            let loaded = load_config(dir).and_then(|c| {
                if ep_uuid.is_none() {
                    ep_uuid = match read_endpoint_id(dir).map_err(|_| ())? {
                        Some(Value::String(s)) if !s.is_empty() => Some(s),
                        _ => None,
                    };
                }
                Ok(c)
            });
            match loaded {
                Ok(c) => {
                    choice = c;
                    None
                }
                Err(()) => Some(format!(
                    "Failed to read configuration from {}/ ",
                    dir.display()
                )),
            }
        }
        None => Some(format!(
            "No local endpoint configuration available for {}",
            ep_uuid.as_deref().unwrap_or("None")
        )),
    };
    if let Some(msg) = error_msg {
        if args.force {
            console::info(&format!(
                "{msg}, proceeding to remote deletion by --force ..."
            ));
        } else {
            return Err(CliError::Click(format!(
                "{msg}\n\nPlease add the --force flag if you wish to proceed with attempting to delete the endpoint both locally and from the Globus Compute web services."
            )));
        }
    }
    delete_endpoint(ep_dir.as_deref(), &choice, args.force, ep_uuid.as_deref())
}

fn base_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `Endpoint.delete_endpoint`: remote deletion first, then the local directory.
fn delete_endpoint(
    ep_dir: Option<&Path>,
    choice: &ServiceChoice,
    force: bool,
    ep_uuid: Option<&str>,
) -> CmdResult {
    let ep_name = match (ep_dir, ep_uuid) {
        (Some(d), _) => d.display().to_string(),
        (None, Some(u)) => u.to_string(),
        (None, None) => {
            console::warning("Name or UUID is needed to delete an Endpoint");
            return Err(CliError::Exit(EXIT_MINUS_ONE));
        }
    };
    if let Some(uuid) = ep_uuid {
        let env =
            service::environment_name(choice.local_compute_services, choice.environment.as_deref());
        let outcome = ComputeClient::login(&env).and_then(|client| {
            let status = client.endpoint_status(uuid)?;
            if status.get("status").and_then(Value::as_str) == Some("online") {
                if !force {
                    console::warning(&format!(
                        "Endpoint {uuid} is currently running.  To proceed with deletion, first stop the endpoint, or ignore the current status with `delete --force`"
                    ));
                    return Ok(Some(CliError::Exit(EXIT_MINUS_ONE)));
                }
                if let Some(dir) = ep_dir {
                    // A running local instance is stopped first, as upstream does.
                    if let Err(e) = crate::commands::stop::stop_dir(dir, &base_name(dir), None) {
                        return Ok(Some(e));
                    }
                }
            }
            client.delete_endpoint(uuid)?;
            console::info(&format!(
                "Endpoint {uuid} has been deleted from the web service"
            ));
            Ok(None)
        });
        match outcome {
            Ok(None) => {}
            Ok(Some(e)) => return Err(e),
            Err(e @ (ServiceError::Auth { .. } | ServiceError::Setup(_))) => {
                return Err(e.into_cli());
            }
            Err(ServiceError::Api { text, .. }) => {
                console::warning(&format!(
                    "Endpoint {uuid} could not be deleted from the web service: [{text}]"
                ));
                if ep_dir.is_some() && !force {
                    console::critical("Exiting without deleting the local endpoint");
                    return Err(CliError::Exit(EX_UNAVAILABLE));
                }
            }
            Err(ServiceError::Network(e)) => {
                console::warning(&format!(
                    "Endpoint {uuid} could not be deleted from the web service:   [{e}]"
                ));
                if !force {
                    let msg = "globus-compute-endpoint is unable to reach the Globus Compute service due to a network error.\nPlease ensure the Globus Compute service address is reachable, then attempt to delete the endpoint again.";
                    println!("{msg}");
                    console::critical(msg);
                    return Err(CliError::Exit(EX_TEMPFAIL));
                }
            }
        }
    }
    if let Some(dir) = ep_dir.filter(|d| d.exists()) {
        std::fs::remove_dir_all(dir).map_err(|e| {
            CliError::Click(format!(
                "{}: {}",
                compute_dir::py_os_error_name(&e),
                crate::pyfmt::os_error(&e, dir)
            ))
        })?;
        console::info(&format!(
            "Endpoint {ep_name} has been deleted from {}",
            dir.display()
        ));
    }
    Ok(())
}
