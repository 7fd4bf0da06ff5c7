//! `render-user-config` (ENDPOINT.md §1.4.11): render a user config template offline, exactly
//! as the endpoint would for a start request, and print the result.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, FromArgMatches};
use gc_config::template::{RenderInputs, TemplateError, render_user_config};
use gc_config::{CoreEndpointConfig, EndpointConfig, LoadOptions, load_config};
use serde_json::{Value as Json, json};

use crate::click::{self, CliError, CmdResult, Usage};
use crate::compute_dir;
use crate::console;

const USAGE: Usage = Usage {
    command_path: "globus-compute-endpoint render-user-config",
    pieces: "[OPTIONS]",
    help_hint: Some("--help"),
};

const HELP: &str = include_str!("../help/render-user-config.txt");

click_args! {
    struct Args {
        #[arg(short = 'e', long, allow_hyphen_values = true)]
        endpoint: Option<String>,
        #[arg(short = 't', long, allow_hyphen_values = true)]
        template: Option<String>,
        #[arg(short = 'o', long, allow_hyphen_values = true)]
        user_options: Option<String>,
        #[arg(short = 's', long, allow_hyphen_values = true)]
        user_schema: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        parent_config: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        user_runtime: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        mapped_identity: Option<String>,
        #[arg(long)]
        help: bool,
    }
}

/// An input file, read when its option is processed (Click's `File()` opens it then).
struct Input {
    /// `<stdin>` or the path as given.
    name: String,
    text: String,
}

fn open_input(flags: &str, value: &str) -> Result<Input, CliError> {
    if value == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::Click(format!("<stdin>: {e}")))?;
        return Ok(Input {
            name: "<stdin>".into(),
            text,
        });
    }
    let text = std::fs::read_to_string(value).map_err(|e| {
        let reason = e
            .raw_os_error()
            .map(|n| nix::errno::Errno::from_raw(n).desc().to_string())
            .unwrap_or_else(|| e.to_string());
        CliError::Usage {
            usage: USAGE,
            message: format!("Invalid value for {flags}: '{value}': {reason}"),
        }
    })?;
    Ok(Input {
        name: value.to_string(),
        text,
    })
}

/// Inputs after Click's per-option processing.
#[derive(Default)]
struct Processed {
    ep_dir: Option<PathBuf>,
    template: Option<Input>,
    user_options: Option<Input>,
    user_schema: Option<Input>,
    parent_config: Option<Input>,
    user_runtime: Option<Input>,
    mapped_identity: Option<Input>,
}

fn process(args: &Args, m: &clap::ArgMatches) -> Result<Processed, CliError> {
    let stdin_count = [
        &args.template,
        &args.user_options,
        &args.user_schema,
        &args.parent_config,
        &args.user_runtime,
        &args.mapped_identity,
    ]
    .iter()
    .filter(|v| v.as_deref() == Some("-"))
    .count();
    if stdin_count > 1 {
        return Err(CliError::Click(
            "At most one input may be read from stdin across all options.".into(),
        ));
    }
    let ids = [
        "endpoint",
        "template",
        "user_options",
        "user_schema",
        "parent_config",
        "user_runtime",
        "mapped_identity",
    ];
    let mut present: Vec<(usize, &str)> = ids
        .iter()
        .filter_map(|id| m.index_of(id).map(|i| (i, *id)))
        .collect();
    present.sort();
    let mut out = Processed::default();
    for (_, id) in present {
        let get = |v: &Option<String>| v.clone().unwrap_or_default();
        match id {
            "endpoint" => {
                out.ep_dir = compute_dir::resolve_endpoint(&get(&args.endpoint), true)
                    .map_err(CliError::Click)?
                    .dir;
            }
            "template" => {
                out.template = Some(open_input("'--template' / '-t'", &get(&args.template))?);
            }
            "user_options" => {
                out.user_options = Some(open_input(
                    "'--user-options' / '-o'",
                    &get(&args.user_options),
                )?);
            }
            "user_schema" => {
                out.user_schema = Some(open_input(
                    "'--user-schema' / '-s'",
                    &get(&args.user_schema),
                )?);
            }
            "parent_config" => {
                out.parent_config =
                    Some(open_input("'--parent-config'", &get(&args.parent_config))?);
            }
            "user_runtime" => {
                out.user_runtime = Some(open_input("'--user-runtime'", &get(&args.user_runtime))?);
            }
            "mapped_identity" => {
                out.mapped_identity = Some(open_input(
                    "'--mapped-identity'",
                    &get(&args.mapped_identity),
                )?);
            }
            _ => {}
        }
    }
    Ok(out)
}

fn read_json_dict(input: &Input, what: &str) -> Result<serde_json::Map<String, Json>, CliError> {
    let data: Json = serde_json::from_str(&input.text).map_err(|e| {
        CliError::Click(format!(
            "Invalid JSON in {} for {what}.\n\t(json.decoder.JSONDecodeError) {e}",
            input.name
        ))
    })?;
    match data {
        Json::Object(map) => Ok(map),
        _ => Err(CliError::Click(format!(
            "Invalid {what} data in {}: must be a JSON dictionary.",
            input.name
        ))),
    }
}

fn config_error(e: gc_config::ConfigError) -> CliError {
    CliError::Click(e.to_string())
}

/// The invoking user's passwd entry as `_GC.mapped_identity`, matched to the nil identity.
fn default_mapped_identity() -> Json {
    use nix::unistd::{User, getgrouplist, getuid};
    let Some(user) = User::from_uid(getuid()).ok().flatten() else {
        return json!({"local": {}, "globus": {"id": "00000000-0000-0000-0000-000000000000"}});
    };
    let name = std::ffi::CString::new(user.name.clone()).unwrap_or_default();
    let groups: Vec<u32> = getgrouplist(&name, user.gid)
        .map(|g| g.iter().map(|g| g.as_raw()).collect())
        .unwrap_or_else(|_| vec![user.gid.as_raw()]);
    json!({
        "local": {
            "uname": user.name,
            "uid": user.uid.as_raw(),
            "gid": user.gid.as_raw(),
            "gecos": user.gecos.to_string_lossy(),
            "shell": user.shell.to_string_lossy(),
            "dir": user.dir.to_string_lossy(),
            "groups": groups,
        },
        "globus": {"id": "00000000-0000-0000-0000-000000000000"},
    })
}

/// A `--mapped-identity` document: either the template's own shape (`local`/`globus`) or
/// upstream's `MappedPosixIdentity` fields (`local_user_record` as a passwd tuple or mapping,
/// `matched_identity`).
fn mapped_identity_from(map: serde_json::Map<String, Json>) -> Json {
    if map.contains_key("local") {
        return Json::Object(map);
    }
    let rec = map.get("local_user_record").cloned().unwrap_or(Json::Null);
    let field = |idx: usize, key: &str| match &rec {
        Json::Array(a) => a.get(idx).cloned().unwrap_or(Json::Null),
        Json::Object(o) => o.get(key).cloned().unwrap_or(Json::Null),
        _ => Json::Null,
    };
    let gid = field(3, "pw_gid");
    json!({
        "local": {
            "uname": field(0, "pw_name"),
            "uid": field(2, "pw_uid"),
            "gid": gid.clone(),
            "gecos": field(4, "pw_gecos"),
            "shell": field(6, "pw_shell"),
            "dir": field(5, "pw_dir"),
            "groups": [gid],
        },
        "globus": {"id": map.get("matched_identity").cloned().unwrap_or(Json::Null)},
    })
}

/// Run `render-user-config`.
pub fn run(argv: &[String]) -> CmdResult {
    let cmd = Args::command();
    let long = click::long_options(&cmd);
    let m = cmd
        .try_get_matches_from(argv)
        .map_err(|e| click::from_clap(&e, USAGE, &long, argv))?;
    let args = Args::from_arg_matches(&m).map_err(|e| click::from_clap(&e, USAGE, &long, argv))?;
    if args.help {
        click::print_help(HELP);
        return Ok(());
    }
    let p = process(&args, &m)?;
    if p.ep_dir.is_none() && p.template.is_none() {
        return Err(CliError::Click(
            "Must provide at least one of --endpoint or --template.".into(),
        ));
    }

    let mut parent = CoreEndpointConfig::default();
    let mut template: Option<(String, PathBuf)> = None;
    let mut schema: Option<Json> = None;
    if let Some(dir) = &p.ep_dir {
        let cfg_path = dir.join("config.yaml");
        let text = std::fs::read_to_string(&cfg_path).unwrap_or_default();
        let name = cfg_path.display().to_string();
        match load_config(&text, &name, LoadOptions::default()).map_err(config_error)? {
            EndpointConfig::Core(c) => parent = *c,
            EndpointConfig::User(_) => {
                return Err(CliError::Click(format!(
                    "Endpoint {} does not support templating.",
                    dir.file_name().unwrap_or_default().to_string_lossy()
                )));
            }
        }
        let tpath = parent.template_path(dir);
        let ttext = std::fs::read_to_string(&tpath).map_err(|e| {
            CliError::Click(format!(
                "{}: {}",
                compute_dir::py_os_error_name(&e),
                crate::pyfmt::os_error(&e, &tpath)
            ))
        })?;
        template = Some((ttext, tpath));
        let spath = parent.schema_path(dir);
        if let Ok(stext) = std::fs::read_to_string(&spath) {
            let parsed: Json = serde_json::from_str(&stext).map_err(|e| {
                CliError::Click(format!(
                    "Invalid JSON in {} for user schema.\n\t(json.decoder.JSONDecodeError) {e}",
                    spath.display()
                ))
            })?;
            schema = Some(parsed);
        }
    }
    if let Some(input) = &p.parent_config {
        match load_config(&input.text, &input.name, LoadOptions::default()) {
            Ok(EndpointConfig::Core(c)) => parent = *c,
            Ok(EndpointConfig::User(_)) => {
                return Err(CliError::Click(
                    "Provided parent config does not support templating.".into(),
                ));
            }
            Err(e) => {
                return Err(CliError::Click(format!(
                    "Invalid parent config data in {}.\n\t(pydantic_core._pydantic_core.ValidationError) {e}",
                    input.name
                )));
            }
        }
    }
    if let Some(input) = &p.template {
        template = Some((input.text.clone(), PathBuf::from(&input.name)));
    }
    if let Some(input) = &p.user_schema {
        schema = Some(Json::Object(read_json_dict(input, "user schema")?));
    }
    let user_opts = match &p.user_options {
        Some(input) => Json::Object(read_json_dict(input, "user options")?),
        None => json!({}),
    };
    // Without a Python SDK beside this program there is no local runtime to describe.
    let user_runtime = match &p.user_runtime {
        Some(input) => Json::Object(read_json_dict(input, "user runtime")?),
        None => json!({}),
    };
    let mapped_identity = match &p.mapped_identity {
        Some(input) => mapped_identity_from(read_json_dict(input, "mapped identity")?),
        None => default_mapped_identity(),
    };
    let Some((template_text, template_path)) = template else {
        return Err(CliError::Click(
            "Must provide at least one of --endpoint or --template.".into(),
        ));
    };
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let template_dir = template_path.parent().map(|d| {
        if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        }
    });
    let inputs = RenderInputs {
        template: &template_text,
        template_dir,
        schema: schema.as_ref(),
        user_opts: &user_opts,
        user_runtime: &user_runtime,
        parent_config: &parent,
        mapped_identity: &mapped_identity,
        env: &env,
    };
    match render_user_config(&inputs) {
        Ok(text) => {
            console::info("Rendered user config:");
            println!("{text}");
            Ok(())
        }
        Err(e) => {
            if matches!(e, TemplateError::Validation(_)) {
                console::error("\n\nThe provided user config options are invalid\n");
            }
            Err(CliError::Click(format!(
                "Failed to render user configuration template.\n\t({}) {e}",
                e.python_qualified_type()
            )))
        }
    }
}
