//! `configure [OPTIONS] [NAME]` (ENDPOINT.md §1.4.2, §1.6.2): create a new endpoint directory
//! with `config.yaml`, the user config template and schema, the user environment and, for
//! identity-mapping endpoints, the identity mapping file.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, FromArgMatches};
use gc_config::defaults::{self, file_names};
use nix::sys::stat::{Mode, umask};

use crate::click::{self, CliError, CmdResult, Usage};
use crate::commands::common::{CommonOptions, single_name};
use crate::compute_dir;
use crate::console;
use crate::pyyaml::{self, PyValue};
use crate::service::{self, ServiceError, Session};

const USAGE: Usage = Usage {
    command_path: "globus-compute-endpoint configure",
    pieces: "[OPTIONS] [NAME]",
    help_hint: None,
};

const HELP: &str = include_str!("../help/configure.txt");

const AUTH_POLICY_DEFAULT_NAME: &str = "Globus Compute Authentication Policy";
const AUTH_POLICY_DEFAULT_DESC: &str = "This policy was created automatically by Globus Compute.";

click_args! {
    /// The words as typed; values are converted afterwards, in Click's order.
    struct Args {
        #[arg(long, allow_hyphen_values = true)]
        multi_user: Option<String>,
        #[arg(long)]
        high_assurance: bool,
        #[arg(long, allow_hyphen_values = true)]
        display_name: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        auth_policy: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        contact_email: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        manager_config: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        core_config: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        template_config: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        schema_config: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        user_env_config: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        id_mapping_config: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        auth_policy_project_id: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        auth_policy_display_name: Option<String>,
        #[arg(long)]
        auth_policy_mfa_required: bool,
        #[arg(long, allow_hyphen_values = true)]
        auth_policy_description: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        allowed_domains: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        excluded_domains: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        auth_timeout: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        subscription_id: Option<String>,
        /// NAME, plus any extra words (refused like Click refuses them).
        #[arg(value_name = "NAME")]
        names: Vec<String>,
        #[command(flatten)]
        common: CommonOptions,
    }
}

/// The options after conversion.
#[derive(Debug, Default)]
struct Converted {
    multi_user: Option<bool>,
    manager_config: Option<PathBuf>,
    core_config: Option<PathBuf>,
    template_config: Option<PathBuf>,
    schema_config: Option<PathBuf>,
    user_env_config: Option<PathBuf>,
    id_mapping_config: Option<PathBuf>,
    auth_timeout: Option<i128>,
}

/// Convert the typed values in Click's order: options in the order they were typed, then NAME.
fn convert(args: &Args, m: &clap::ArgMatches) -> Result<Converted, CliError> {
    let mut out = Converted::default();
    let ids = [
        "multi_user",
        "manager_config",
        "core_config",
        "template_config",
        "schema_config",
        "user_env_config",
        "id_mapping_config",
        "auth_timeout",
    ];
    let mut present: Vec<(usize, &str)> = ids
        .iter()
        .filter_map(|id| m.index_of(id).map(|i| (i, *id)))
        .collect();
    present.sort();
    let usage = |message: String| CliError::Usage {
        usage: USAGE,
        message,
    };
    let file = |param: &str, v: &Option<String>| -> Result<Option<PathBuf>, CliError> {
        v.as_deref()
            .map(|p| click::existing_file(param, p))
            .transpose()
            .map_err(usage)
    };
    for (_, id) in present {
        match id {
            "multi_user" => {
                let v = args.multi_user.as_deref().unwrap_or_default();
                out.multi_user = Some(click::parse_bool("--multi-user", v).map_err(usage)?);
            }
            "manager_config" => {
                eprintln!(
                    "DeprecationWarning: The option 'manager_config' is deprecated. Use --core-config instead."
                );
                out.manager_config = file("--manager-config", &args.manager_config)?;
            }
            "core_config" => out.core_config = file("--core-config", &args.core_config)?,
            "template_config" => {
                out.template_config = file("--template-config", &args.template_config)?;
            }
            "schema_config" => out.schema_config = file("--schema-config", &args.schema_config)?,
            "user_env_config" => {
                out.user_env_config = file("--user-env-config", &args.user_env_config)?;
            }
            "id_mapping_config" => {
                out.id_mapping_config = file("--id-mapping-config", &args.id_mapping_config)?;
            }
            "auth_timeout" => {
                let v = args.auth_timeout.as_deref().unwrap_or_default();
                out.auth_timeout = Some(click::parse_int_min0("--auth-timeout", v).map_err(usage)?);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Run `configure`.
pub fn run(argv: &[String]) -> CmdResult {
    let cmd = Args::command();
    let long = click::long_options(&cmd);
    let m = cmd
        .try_get_matches_from(argv)
        .map_err(|e| click::from_clap(&e, USAGE, &long, argv))?;
    let args = Args::from_arg_matches(&m).map_err(|e| click::from_clap(&e, USAGE, &long, argv))?;
    if args.common.apply(HELP) {
        return Ok(());
    }
    let conv = convert(&args, &m)?;
    let name_arg = single_name(&args.names, USAGE)?;
    let name = name_arg;
    if compute_dir::looks_like_uuid(&name) {
        return Err(CliError::Usage {
            usage: USAGE,
            message: format!(
                "Invalid value for '[NAME]': '{}' requires an endpoint name that is not a UUID (got: '{name}')",
                USAGE.command_path
            ),
        });
    }

    if !cfg!(target_os = "linux") {
        return Err(CliError::Click(
            "Unable to configure new endpoints; Compute endpoints are not supported on this system"
                .into(),
        ));
    }
    let mut core_config = conv.core_config.clone();
    if let Some(mc) = &conv.manager_config {
        if core_config.is_some() {
            eprintln!(
                "UserWarning: Both --manager-config and --core-config were provided; --manager-config is deprecated and will be ignored."
            );
        } else {
            core_config = Some(mc.clone());
        }
    }
    compute_dir::validate_endpoint_name(&name).map_err(CliError::Click)?;

    let id_mapping = conv
        .multi_user
        .unwrap_or_else(gc_mep::privilege::is_privileged);
    let contact_email = args.contact_email.clone().filter(|e| !e.is_empty());
    if id_mapping && contact_email.is_none() {
        return Err(CliError::Click(
            "Email must be specified via --contact-email for multi-user endpoints".into(),
        ));
    }
    if conv.id_mapping_config.is_some() && !id_mapping {
        return Err(CliError::Click(
            "--id-mapping-config requires multi user support (hint: --multi-user true)".into(),
        ));
    }
    let create_policy = args.auth_policy_project_id.is_some()
        || args
            .auth_policy_display_name
            .as_deref()
            .is_some_and(|d| d != AUTH_POLICY_DEFAULT_NAME)
        || args
            .auth_policy_description
            .as_deref()
            .is_some_and(|d| d != AUTH_POLICY_DEFAULT_DESC)
        || args.allowed_domains.is_some()
        || args.excluded_domains.is_some()
        || conv.auth_timeout.is_some();
    let auth_policy = args.auth_policy.clone().filter(|p| !p.is_empty());
    let subscription_id = args.subscription_id.clone().filter(|s| !s.is_empty());
    let mut created_policy = None;
    if create_policy && auth_policy.is_some() {
        return Err(CliError::Click(
            "Cannot specify an existing auth policy and create a new one at the same time".into(),
        ));
    } else if args.high_assurance
        && !(subscription_id.is_some() && (create_policy || auth_policy.is_some()))
    {
        return Err(CliError::Click(
            "High Assurance(HA) endpoints require both a HA policy and a HA subscription id".into(),
        ));
    } else if args.auth_policy_mfa_required && !create_policy {
        return Err(CliError::Click(
            "MFA may only be specified when creating a policy".into(),
        ));
    } else if create_policy {
        if args.auth_policy_mfa_required && !args.high_assurance {
            return Err(CliError::Click(
                "MFA may only be enabled for High Assurance(HA) policies".into(),
            ));
        }
        created_policy = Some(create_auth_policy(&args, conv.auth_timeout)?);
    }
    let auth_policy = created_policy.or(auth_policy);

    let ep_dir = compute_dir::compute_dir().join(&name);
    if ep_dir.exists() {
        println!("{}", ep_dir.display());
        println!("config dir <{name}> already exists");
        return Err(CliError::Click("ConfigExists".into()));
    }
    let plan = Plan {
        ep_dir: &ep_dir,
        core_config: core_config.as_deref(),
        template: conv.template_config.as_deref(),
        schema: conv.schema_config.as_deref(),
        user_env: conv.user_env_config.as_deref(),
        id_mapping_config: conv.id_mapping_config.as_deref(),
        id_mapping,
        high_assurance: args.high_assurance,
        display_name: args.display_name.as_deref().filter(|d| !d.is_empty()),
        auth_policy: auth_policy.as_deref(),
        subscription_id: subscription_id.as_deref(),
        contact_email: contact_email.as_deref(),
    };
    console::debug(&format!("Creating endpoint dir {}", ep_dir.display()));
    let old_mask = umask(Mode::from_bits_truncate(0o077));
    let written = plan.write();
    umask(old_mask);
    let idmap_path = match written {
        Ok(p) => p,
        Err(msg) => {
            // The directory may be incomplete: remove it, as upstream does.
            let _ = fs::remove_dir_all(&ep_dir);
            return Err(CliError::Click(msg));
        }
    };

    let d = ep_dir.display();
    let mut text = format!(
        "Created profile for endpoint named <{name}>\n\n\tConfiguration file: {d}/config.yaml\n"
    );
    if id_mapping {
        text.push_str(&format!(
            "\n\tIdentity mapping configuration: {}\n",
            idmap_path.display()
        ));
    }
    text.push_str(&format!(
        "\n\tUser endpoint configuration template: {d}/{}\n\tUser endpoint configuration schema: {d}/{}\n\tUser endpoint environment variables: {d}/{}\n\nUse the `start` subcommand to run it:\n\n\t$ globus-compute-endpoint start {name}\n",
        file_names::USER_CONFIG_TEMPLATE,
        file_names::USER_CONFIG_SCHEMA,
        file_names::USER_ENVIRONMENT,
    ));
    print!("{text}");
    Ok(())
}

/// Create the authentication policy the "Authentication Policy Creation" options describe
/// (`POST {auth}/v2/api/policies`); returns its id. Optional settings are sent only when
/// truthy, as upstream does (so `--auth-timeout 0` sends no timeout).
fn create_auth_policy(args: &Args, timeout: Option<i128>) -> Result<String, CliError> {
    let Some(project_id) = args
        .auth_policy_project_id
        .clone()
        .filter(|p| !p.is_empty())
    else {
        return Err(CliError::Click(
            "Choosing or creating an auth project interactively is not available in this build; pass the project with --auth-policy-project-id".into(),
        ));
    };
    let domains = |v: &Option<String>| {
        v.as_deref()
            .filter(|d| !d.is_empty())
            .map(|d| serde_json::Value::from(d.split(',').collect::<Vec<_>>()))
    };
    let mut policy = serde_json::json!({
        "project_id": project_id,
        "display_name": args
            .auth_policy_display_name
            .as_deref()
            .unwrap_or(AUTH_POLICY_DEFAULT_NAME),
        "description": args
            .auth_policy_description
            .as_deref()
            .unwrap_or(AUTH_POLICY_DEFAULT_DESC),
    });
    let mut set = |k: &str, v: serde_json::Value| {
        if let Some(obj) = policy.as_object_mut() {
            obj.insert(k.to_string(), v);
        }
    };
    if let Some(d) = domains(&args.allowed_domains) {
        set("domain_constraints_include", d);
    }
    if let Some(d) = domains(&args.excluded_domains) {
        set("domain_constraints_exclude", d);
    }
    if args.high_assurance {
        set("high_assurance", true.into());
    }
    if let Some(t) = timeout.filter(|t| *t != 0) {
        let t = i64::try_from(t)
            .map_err(|_| CliError::Click(format!("--auth-timeout {t} is out of range")))?;
        set("authentication_assurance_timeout", t.into());
    }
    if args.auth_policy_mfa_required {
        set("required_mfa", true.into());
    }
    let session = Session::from_env(&service::environment_name(false, None))
        .map_err(ServiceError::into_cli)?;
    let client = session.auth().map_err(ServiceError::into_cli)?;
    let answer = client.create_policy(&policy).map_err(|e| match e {
        ServiceError::Api { text } => {
            CliError::Click(format!("Unable to create authentication policy: [{text}]"))
        }
        other => other.into_cli(),
    })?;
    answer
        .pointer("/policy/id")
        .and_then(serde_json::Value::as_str)
        .map(String::from)
        .ok_or_else(|| {
            CliError::Click(format!(
                "Unable to create authentication policy: [{answer}]"
            ))
        })
}

/// Everything `configure` writes, decided before anything is written.
struct Plan<'a> {
    ep_dir: &'a Path,
    core_config: Option<&'a Path>,
    template: Option<&'a Path>,
    schema: Option<&'a Path>,
    user_env: Option<&'a Path>,
    id_mapping_config: Option<&'a Path>,
    id_mapping: bool,
    high_assurance: bool,
    display_name: Option<&'a str>,
    auth_policy: Option<&'a str>,
    subscription_id: Option<&'a str>,
    contact_email: Option<&'a str>,
}

fn io_msg(e: &std::io::Error, path: &Path) -> String {
    format!(
        "{}: {}",
        compute_dir::py_os_error_name(e),
        crate::pyfmt::os_error(e, path)
    )
}

/// Copy `src` (or write the built-in default) to `dst`.
fn copy_or_default(src: Option<&Path>, default: &str, dst: &Path) -> Result<(), String> {
    let bytes = match src {
        Some(p) => fs::read(p).map_err(|e| io_msg(&e, p))?,
        None => default.as_bytes().to_vec(),
    };
    fs::write(dst, bytes).map_err(|e| io_msg(&e, dst))
}

fn chmod(path: &Path, mode: u32) -> Result<(), String> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| io_msg(&e, path))
}

impl Plan<'_> {
    /// Create the directory and its files; returns the identity mapping file's path.
    fn write(&self) -> Result<PathBuf, String> {
        fs::DirBuilder::new()
            .recursive(true)
            .create(self.ep_dir)
            .map_err(|e| io_msg(&e, self.ep_dir))?;
        let tmpl = self.ep_dir.join(file_names::USER_CONFIG_TEMPLATE);
        let idmap = self.ep_dir.join(if self.id_mapping_config.is_some() {
            file_names::IDENTITY_MAPPING
        } else {
            file_names::EXAMPLE_IDENTITY_MAPPING
        });
        copy_or_default(self.template, defaults::USER_CONFIG_TEMPLATE_J2, &tmpl)?;
        copy_or_default(
            self.schema,
            defaults::USER_CONFIG_SCHEMA_JSON,
            &self.ep_dir.join(file_names::USER_CONFIG_SCHEMA),
        )?;
        copy_or_default(
            self.user_env,
            defaults::USER_ENVIRONMENT_YAML,
            &self.ep_dir.join(file_names::USER_ENVIRONMENT),
        )?;
        if self.id_mapping {
            copy_or_default(
                self.id_mapping_config,
                defaults::EXAMPLE_IDENTITY_MAPPING_CONFIG_JSON,
                &idmap,
            )?;
            chmod(&idmap, 0o600)?;
            chmod(&tmpl, 0o644)?;
        }
        let text = self.config_text(&idmap)?;
        let cfg = self.ep_dir.join(file_names::CONFIG_YAML);
        fs::write(&cfg, text).map_err(|e| io_msg(&e, &cfg))?;
        Ok(idmap)
    }

    /// The generated `config.yaml` (§1.6.2).
    fn config_text(&self, idmap: &Path) -> Result<String, String> {
        let (source_text, source_name) = match self.core_config {
            Some(p) => (
                fs::read_to_string(p).map_err(|e| io_msg(&e, p))?,
                p.display().to_string(),
            ),
            None => (
                defaults::DEFAULT_CONFIG_YAML.to_string(),
                "default_config.yaml".to_string(),
            ),
        };
        let doc = pyyaml::safe_load(&source_text)
            .map_err(|e| format!("Invalid YAML in {source_name}: {e}"))?;
        let PyValue::Map(mut pairs) = doc else {
            return Err(format!(
                "Source config file ({source_name}) must be a valid YAML mapping (got a {})",
                doc.kind_name()
            ));
        };
        let key = |k: &str| PyValue::Str(k.to_string());
        pairs.retain(|(k, _)| *k != key("engine"));
        let mut set = |k: &str, v: PyValue| match pairs.iter_mut().find(|(ek, _)| *ek == key(k)) {
            Some(slot) => slot.1 = v,
            None => pairs.push((key(k), v)),
        };
        let s = |v: &str| PyValue::Str(v.to_string());
        if let Some(d) = self.display_name {
            set("display_name", s(d));
        }
        if let Some(e) = self.contact_email {
            set("email", s(e));
        }
        if self.id_mapping {
            set("identity_mapping_config_path", s(&idmap.to_string_lossy()));
        }
        if let Some(p) = self.auth_policy {
            set("authentication_policy", s(p));
        }
        if self.high_assurance {
            set("high_assurance", PyValue::Bool(true));
            let audit = self.ep_dir.join("audit.log");
            set("audit_log_path", s(&audit.to_string_lossy()));
        }
        if let Some(sub) = self.subscription_id {
            set("subscription_id", s(sub));
        }
        if self.id_mapping && !pairs.iter().any(|(k, _)| *k == key("public")) {
            pairs.push((key("public"), PyValue::Bool(true)));
        }
        if pairs.is_empty() {
            return Ok("# The generated config file is currently empty\n".into());
        }
        Ok(pyyaml::safe_dump(&PyValue::Map(pairs)))
    }
}
