//! The two configuration models of ENDPOINT.md §2: the core endpoint's (MEP) `config.yaml`
//! ([`CoreEndpointConfig`]) and the rendered user endpoint configuration
//! ([`UserEndpointConfig`]), with upstream defaults and the cross-cutting rules of §2.7.

use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::coerce::{self, At, Number};
use crate::engine::{self, EngineConfig};
use crate::error::{ConfigError, ConfigErrorKind};
use crate::yaml::{self, Node, Value};

/// The smallest heartbeat period; smaller values are raised to it with a warning.
pub const MINIMUM_HEARTBEAT: f64 = 5.0;

/// Fields shared by both configurations (§2.2, upstream `BaseConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct BaseConfig {
    /// Shown in the web UI; `None` ⇒ the endpoint name. The string `None` is read as null.
    pub display_name: Option<String>,
    /// High-assurance endpoint.
    pub high_assurance: bool,
    /// Functions allowed to run (`None` ⇒ all), normalised UUIDs.
    pub allowed_functions: Option<Vec<Uuid>>,
    /// Globus Auth policy.
    pub authentication_policy: Option<Uuid>,
    /// Globus subscription.
    pub subscription_id: Option<Uuid>,
    /// Extra administrators.
    pub admins: Option<Vec<Uuid>>,
    /// AMQP port override (not validated).
    pub amqp_port: Option<i64>,
    /// Heartbeat period in seconds (default 30; below 5 clamped to the float 5.0).
    pub heartbeat_period: Number,
    /// Dev-only service environment name.
    pub environment: Option<String>,
    /// Dev-only: talk to a local Compute service.
    pub local_compute_services: bool,
    /// Debug logging.
    pub debug: bool,
}

impl Default for BaseConfig {
    fn default() -> Self {
        BaseConfig {
            display_name: None,
            high_assurance: false,
            allowed_functions: None,
            authentication_policy: None,
            subscription_id: None,
            admins: None,
            amqp_port: None,
            heartbeat_period: Number::Int(30),
            environment: None,
            local_compute_services: false,
            debug: false,
        }
    }
}

/// `pam:` (§2.5). Unknown keys are ignored, as upstream does.
#[derive(Debug, Clone, PartialEq)]
pub struct PamConfig {
    /// Open a PAM account/session around uid changes.
    pub enable: bool,
    /// `/etc/pam.d/<service_name>`.
    pub service_name: String,
}

impl Default for PamConfig {
    /// The value when `pam:` is absent: disabled.
    fn default() -> Self {
        PamConfig {
            enable: false,
            service_name: "globus-compute-endpoint".into(),
        }
    }
}

/// `paths:` of a user endpoint (§2.5, 4.19). Values are kept as written; expand `~` and
/// `$VARS` with [`expand_path`] when using them. Unknown keys are ignored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PathsConfig {
    /// UEP directory.
    pub endpoint_dir: Option<String>,
    /// UEP log file.
    pub endpoint_log: Option<String>,
}

/// The core endpoint (MEP) configuration, `config.yaml` (§2.3).
#[derive(Debug, Clone, PartialEq)]
pub struct CoreEndpointConfig {
    /// Shared fields.
    pub base: BaseConfig,
    /// Web UI visibility (default false).
    pub public: bool,
    /// Contact email; required for privileged endpoints (checked by `start`).
    pub email: Option<String>,
    /// Identity mapping configuration file.
    pub identity_mapping_config_path: Option<PathBuf>,
    /// Template path override (`None` ⇒ `<ep_dir>/user_config_template.yaml.j2`).
    pub user_config_template_path: Option<PathBuf>,
    /// Schema path override (`None` ⇒ `<ep_dir>/user_config_schema.json`).
    pub user_config_schema_path: Option<PathBuf>,
    /// Audit log (used only with `high_assurance`).
    pub audit_log_path: Option<PathBuf>,
    /// PAM settings.
    pub pam: PamConfig,
    /// Grace period for reviving a UEP after a duplicate start (seconds).
    pub mu_child_ep_grace_period_s: f64,
    /// The raw text the configuration was loaded from.
    pub source_content: String,
}

impl Default for CoreEndpointConfig {
    fn default() -> Self {
        CoreEndpointConfig {
            base: BaseConfig::default(),
            public: false,
            email: None,
            identity_mapping_config_path: None,
            user_config_template_path: None,
            user_config_schema_path: None,
            audit_log_path: None,
            pam: PamConfig::default(),
            mu_child_ep_grace_period_s: 30.0,
            source_content: String::new(),
        }
    }
}

/// The rendered user endpoint (UEP) configuration (§2.4).
#[derive(Debug, Clone, PartialEq)]
pub struct UserEndpointConfig {
    /// Shared fields.
    pub base: BaseConfig,
    /// The engine (required).
    pub engine: EngineConfig,
    /// Stored as `max(2 × heartbeat_period, value)`; unused by the endpoint.
    pub heartbeat_threshold: f64,
    /// Idle heartbeats before shutdown once work was seen (0 disables idle shutdown).
    pub idle_heartbeats_soft: i64,
    /// Idle heartbeats before shutdown when no work was ever seen.
    pub idle_heartbeats_hard: i64,
    /// Shell command run before the engine starts.
    pub endpoint_setup: Option<String>,
    /// Shell command run by `stop`.
    pub endpoint_teardown: Option<String>,
    /// Directory and log location.
    pub paths: Option<PathsConfig>,
    /// The raw text the configuration was loaded from.
    pub source_content: String,
}

impl UserEndpointConfig {
    /// The effective hard idle limit, `max(soft + 1, hard)` (§2.4).
    pub fn effective_idle_heartbeats_hard(&self) -> i64 {
        self.idle_heartbeats_hard.max(self.idle_heartbeats_soft + 1)
    }
}

/// Either kind of configuration (§2.1 step 3: a non-null `engine` makes it a UEP config).
#[derive(Debug, Clone, PartialEq)]
pub enum EndpointConfig {
    /// No (or a null) `engine`.
    Core(Box<CoreEndpointConfig>),
    /// Has an `engine`.
    User(Box<UserEndpointConfig>),
}

/// Options for loading a core configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Check that `identity_mapping_config_path`, `user_config_template_path` and
    /// `user_config_schema_path` exist, as upstream does at load time. Off only for tools that
    /// validate a configuration meant for another machine.
    pub check_paths: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { check_paths: true }
    }
}

const BASE_FIELDS: &[&str] = &[
    "display_name",
    "high_assurance",
    "allowed_functions",
    "authentication_policy",
    "subscription_id",
    "admins",
    "amqp_port",
    "heartbeat_period",
    "environment",
    "local_compute_services",
    "debug",
];

/// Parse YAML text into a top-level mapping (empty ⇒ no entries).
fn parse_mapping(text: &str, source: &str) -> Result<Vec<(String, usize, Node)>, ConfigError> {
    let syntax = |message: String, line: Option<usize>| ConfigError {
        source_name: source.to_string(),
        line,
        field: None,
        kind: ConfigErrorKind::Syntax(message),
    };
    match yaml::parse(text).map_err(|e| syntax(e.message, Some(e.line)))? {
        None => Ok(Vec::new()),
        Some(Node {
            value: Value::Map(entries),
            ..
        }) => Ok(entries),
        Some(node) => Err(ConfigError {
            source_name: source.to_string(),
            line: Some(node.line),
            field: None,
            kind: ConfigErrorKind::NotAMapping {
                found: node.type_name(),
            },
        }),
    }
}

fn at<'a>(source: &'a str, key: &str, line: usize) -> At<'a> {
    At {
        source,
        field: key.to_string(),
        line,
    }
}

fn set_base(base: &mut BaseConfig, a: &At, node: &Node) -> Result<(), ConfigError> {
    match a.field.as_str() {
        "display_name" => {
            base.display_name = coerce::to_opt_string(a, node)?.filter(|s| s != "None");
        }
        "high_assurance" => base.high_assurance = coerce::to_bool(a, node)?,
        "allowed_functions" => base.allowed_functions = coerce::to_opt_uuid_list(a, node)?,
        "authentication_policy" => base.authentication_policy = coerce::to_opt_uuid(a, node)?,
        "subscription_id" => base.subscription_id = coerce::to_opt_uuid(a, node)?,
        "admins" => base.admins = coerce::to_opt_uuid_list(a, node)?,
        "amqp_port" => {
            base.amqp_port = match node.value {
                Value::Null => None,
                _ => Some(coerce::to_int(a, node)?),
            }
        }
        "heartbeat_period" => {
            let period = coerce::to_number(a, node)?;
            base.heartbeat_period = if period.as_f64() < MINIMUM_HEARTBEAT {
                let shown = match period {
                    Number::Int(i) => i.to_string(),
                    Number::Float(f) => crate::pyfmt::float_repr(f),
                };
                tracing::warn!("Heartbeat minimum is 5.0s (requested: {shown})");
                Number::Float(MINIMUM_HEARTBEAT)
            } else {
                period
            };
        }
        "environment" => base.environment = coerce::to_opt_string(a, node)?,
        "local_compute_services" => base.local_compute_services = coerce::to_bool(a, node)?,
        "debug" => base.debug = coerce::to_bool(a, node)?,
        _ => return Err(a.err(ConfigErrorKind::UnknownField)),
    }
    Ok(())
}

/// Load text as either configuration kind (§2.1): a non-null `engine` ⇒ UEP config.
pub fn load_config(
    text: &str,
    source: &str,
    options: LoadOptions,
) -> Result<EndpointConfig, ConfigError> {
    let entries = parse_mapping(text, source)?;
    let has_engine = entries
        .iter()
        .any(|(k, _, v)| k == "engine" && v.value != Value::Null);
    if has_engine {
        user_from_entries(entries, text, source).map(|c| EndpointConfig::User(Box::new(c)))
    } else {
        core_from_entries(entries, text, source, options).map(|c| EndpointConfig::Core(Box::new(c)))
    }
}

impl CoreEndpointConfig {
    /// Load a core endpoint `config.yaml`. An `engine` key with a non-null value is an error
    /// ([`ConfigErrorKind::EngineInCoreConfig`]; the CLI words it with
    /// [`crate::engine_in_core_config_message`]).
    pub fn from_yaml(text: &str, source: &str, options: LoadOptions) -> Result<Self, ConfigError> {
        match load_config(text, source, options)? {
            EndpointConfig::Core(config) => Ok(*config),
            EndpointConfig::User(_) => {
                let entries = parse_mapping(text, source)?;
                let line = entries.iter().find(|e| e.0 == "engine").map(|e| e.1);
                Err(ConfigError {
                    source_name: source.to_string(),
                    line,
                    field: Some("engine".into()),
                    kind: ConfigErrorKind::EngineInCoreConfig,
                })
            }
        }
    }

    /// Read and load `path` (a missing file in an existing directory reads as empty, §2.1).
    pub fn from_file(path: &Path, options: LoadOptions) -> Result<Self, ConfigError> {
        let source = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && path.parent().is_some_and(Path::is_dir) =>
            {
                String::new()
            }
            Err(e) => {
                return Err(ConfigError {
                    source_name: source,
                    line: None,
                    field: None,
                    kind: ConfigErrorKind::Syntax(e.to_string()),
                });
            }
        };
        Self::from_yaml(&text, &source, options)
    }

    /// The template path: the override, else `<endpoint_dir>/user_config_template.yaml.j2`.
    pub fn template_path(&self, endpoint_dir: &Path) -> PathBuf {
        self.user_config_template_path
            .clone()
            .unwrap_or_else(|| endpoint_dir.join(crate::defaults::file_names::USER_CONFIG_TEMPLATE))
    }

    /// The schema path: the override, else `<endpoint_dir>/user_config_schema.json`.
    pub fn schema_path(&self, endpoint_dir: &Path) -> PathBuf {
        self.user_config_schema_path
            .clone()
            .unwrap_or_else(|| endpoint_dir.join(crate::defaults::file_names::USER_CONFIG_SCHEMA))
    }
}

fn core_from_entries(
    entries: Vec<(String, usize, Node)>,
    text: &str,
    source: &str,
    options: LoadOptions,
) -> Result<CoreEndpointConfig, ConfigError> {
    let mut config = CoreEndpointConfig {
        source_content: text.to_string(),
        ..CoreEndpointConfig::default()
    };
    for (key, line, node) in &entries {
        let a = at(source, key, *line);
        match key.as_str() {
            "engine" => {} // null engine: a core config (§2.1 step 3)
            "public" => config.public = coerce::to_bool(&a, node)?,
            "email" => config.email = coerce::to_opt_string(&a, node)?,
            "identity_mapping_config_path" => {
                config.identity_mapping_config_path =
                    checked_path(&a, node, options, "Identity mapping config path")?;
            }
            "user_config_template_path" => {
                config.user_config_template_path =
                    checked_path(&a, node, options, "User config template path")?;
            }
            "user_config_schema_path" => {
                config.user_config_schema_path =
                    checked_path(&a, node, options, "User config schema path")?;
            }
            "audit_log_path" => config.audit_log_path = coerce::to_opt_path(&a, node)?,
            "pam" => config.pam = pam(&a, node)?,
            "mu_child_ep_grace_period_s" => {
                config.mu_child_ep_grace_period_s = coerce::to_number(&a, node)?.as_f64();
            }
            "multi_user" => {
                // Pre-4.x spelling still shown in the user docs; upstream 4.19 rejects it.
                // Accepted (bool) and ignored: privilege is detected at start (§4.1).
                coerce::to_bool(&a, node)?;
                tracing::warn!(
                    "{source}: `multi_user` is obsolete and ignored; an endpoint started with privileges serves multiple users"
                );
            }
            other if BASE_FIELDS.contains(&other) => set_base(&mut config.base, &a, node)?,
            _ => return Err(a.err(ConfigErrorKind::UnknownField)),
        }
    }
    Ok(config)
}

fn checked_path(
    a: &At,
    node: &Node,
    options: LoadOptions,
    what: &'static str,
) -> Result<Option<PathBuf>, ConfigError> {
    let path = coerce::to_opt_path(a, node)?;
    if let Some(p) = &path {
        if options.check_paths && !p.exists() {
            return Err(a.err(ConfigErrorKind::PathNotFound {
                what,
                path: p.display().to_string(),
            }));
        }
    }
    Ok(path)
}

fn sub<'a>(a: &At<'a>, key: &str, line: usize) -> At<'a> {
    At {
        source: a.source,
        field: format!("{}.{key}", a.field),
        line,
    }
}

fn pam(a: &At, node: &Node) -> Result<PamConfig, ConfigError> {
    let entries = match &node.value {
        Value::Null => return Ok(PamConfig::default()),
        Value::Map(entries) => entries,
        _ => return Err(a.wrong("a mapping", node)),
    };
    let mut pam = PamConfig {
        enable: true,
        ..PamConfig::default()
    };
    for (key, line, value) in entries {
        match key.as_str() {
            "enable" => pam.enable = coerce::to_bool(&sub(a, key, *line), value)?,
            "service_name" => pam.service_name = coerce::to_string(&sub(a, key, *line), value)?,
            _ => {} // ignored upstream
        }
    }
    Ok(pam)
}

fn paths(a: &At, node: &Node) -> Result<Option<PathsConfig>, ConfigError> {
    let entries = match &node.value {
        Value::Null => return Ok(None),
        Value::Map(entries) => entries,
        _ => return Err(a.wrong("a mapping", node)),
    };
    let mut paths = PathsConfig::default();
    for (key, line, value) in entries {
        match key.as_str() {
            "endpoint_dir" => {
                paths.endpoint_dir = coerce::to_opt_string(&sub(a, key, *line), value)?
            }
            "endpoint_log" => {
                paths.endpoint_log = coerce::to_opt_string(&sub(a, key, *line), value)?
            }
            _ => {} // ignored upstream
        }
    }
    Ok(Some(paths))
}

impl UserEndpointConfig {
    /// Load a rendered user endpoint configuration; `engine` is required
    /// ([`ConfigErrorKind::MissingEngine`]; wording: [`crate::missing_engine_message`]).
    pub fn from_yaml(text: &str, source: &str) -> Result<Self, ConfigError> {
        let entries = parse_mapping(text, source)?;
        user_from_entries(entries, text, source)
    }
}

fn user_from_entries(
    entries: Vec<(String, usize, Node)>,
    text: &str,
    source: &str,
) -> Result<UserEndpointConfig, ConfigError> {
    let mut base = BaseConfig::default();
    let mut engine = None;
    let mut threshold: Option<f64> = None;
    let mut soft = 0;
    let mut hard = 5760;
    let mut setup = None;
    let mut teardown = None;
    let mut path_config = None;
    // The engine is built first (§2.1 step 3), so its errors come first.
    for (key, line, node) in &entries {
        if key == "engine" && node.value != Value::Null {
            engine = Some(engine::build_engine(&at(source, key, *line), node)?);
        }
    }
    for (key, line, node) in &entries {
        let a = at(source, key, *line);
        match key.as_str() {
            "engine" => {}
            "heartbeat_threshold" => threshold = Some(coerce::to_int(&a, node)? as f64),
            "idle_heartbeats_soft" => soft = coerce::to_int(&a, node)?.max(0),
            "idle_heartbeats_hard" => hard = coerce::to_int(&a, node)?.max(0),
            "endpoint_setup" => setup = coerce::to_opt_string(&a, node)?,
            "endpoint_teardown" => teardown = coerce::to_opt_string(&a, node)?,
            "paths" => path_config = paths(&a, node)?,
            other if BASE_FIELDS.contains(&other) => set_base(&mut base, &a, node)?,
            _ => return Err(a.err(ConfigErrorKind::UnknownField)),
        }
    }
    let Some(engine) = engine else {
        return Err(ConfigError {
            source_name: source.to_string(),
            line: None,
            field: Some("engine".into()),
            kind: ConfigErrorKind::MissingEngine,
        });
    };
    let heartbeat_threshold = threshold
        .unwrap_or(120.0)
        .max(2.0 * base.heartbeat_period.as_f64());
    Ok(UserEndpointConfig {
        base,
        engine,
        heartbeat_threshold,
        idle_heartbeats_soft: soft,
        idle_heartbeats_hard: hard,
        endpoint_setup: setup,
        endpoint_teardown: teardown,
        paths: path_config,
        source_content: text.to_string(),
    })
}

/// Expand a leading `~` (to `home`) and `$VAR`/`${VAR}` (from `env`; unknown variables are
/// left as written, like Python's `os.path.expandvars`).
pub fn expand_path(raw: &str, home: &str, env: impl Fn(&str) -> Option<String>) -> String {
    let tilde = if raw == "~" {
        home.to_string()
    } else if let Some(rest) = raw.strip_prefix("~/") {
        format!("{}/{rest}", home.trim_end_matches('/'))
    } else {
        raw.to_string()
    };
    let mut out = String::with_capacity(tilde.len());
    let mut rest = tilde.as_str();
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (name, consumed) = if let Some(inner) = after.strip_prefix('{') {
            match inner.find('}') {
                Some(end) => (&inner[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        match (name.is_empty(), env(name)) {
            (false, Some(value)) => out.push_str(&value),
            _ => out.push_str(&rest[pos..pos + 1 + consumed]),
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    out
}
