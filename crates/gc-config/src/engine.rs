//! Models of the `engine`, `provider`, `launcher` and `address` dispatch of ENDPOINT.md §2.6 and
//! the per-engine options of §6.
//!
//! A mapping with a required `type` selects a class; the other keys are that class's options.
//! Keys whose value is null are dropped first (so the class default applies). Every option is
//! checked against the class's table: an unknown key is an error in upstream's words
//! (`<Class>.__init__() got an unexpected keyword argument '<key>'`), a value of the wrong
//! type names the field and line. Options are kept as JSON values; [`Options::get`] returns
//! the configured value or the upstream default.

use serde_json::{Map, Value as Json};

use crate::coerce::At;
use crate::error::{ConfigError, ConfigErrorKind};
use crate::yaml::{Node, Value};

/// The accepted shape of one option.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ty {
    Int,
    Float,
    Str,
    Bool,
    /// walltime-like: a string, or an int (YAML 1.1 reads `1:00:00` as 3600).
    StrOrInt,
    StrList,
    /// A pair of integers (`[54000, 55000]`).
    IntPair,
    Mapping,
    /// Anything YAML can express; checked by the consumer.
    Any,
    /// A Python object (callable, class instance): cannot come from YAML.
    PythonOnly,
}

struct Opt {
    name: &'static str,
    ty: Ty,
    /// Upstream default as JSON text; `None` means "no default" (null / computed).
    default: Option<&'static str>,
}

const fn o(name: &'static str, ty: Ty, default: Option<&'static str>) -> Opt {
    Opt { name, ty, default }
}

/// Configured options of one engine/provider/launcher/address (null-valued keys dropped).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Options {
    values: Map<String, Json>,
    defaults: Map<String, Json>,
}

impl Options {
    /// The configured value of `name`, else the upstream default (if any).
    pub fn get(&self, name: &str) -> Option<&Json> {
        self.values.get(name).or_else(|| self.defaults.get(name))
    }

    /// Only the values written in the configuration.
    pub fn configured(&self) -> &Map<String, Json> {
        &self.values
    }

    fn str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Json::as_str)
    }

    fn bool(&self, name: &str) -> Option<bool> {
        self.get(name).and_then(Json::as_bool)
    }
}

macro_rules! kinds {
    ($(#[$m:meta])* $enum:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $enum { $(#[doc = $name] $variant),+ }

        impl $enum {
            /// All valid `type` names.
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            /// The `type` name.
            pub fn name(self) -> &'static str {
                match self { $($enum::$variant => $name),+ }
            }

            /// Look up a `type` name.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($name => Some($enum::$variant),)+ _ => None }
            }

            const WHAT: &'static str = $what;
        }
    };
}

kinds!(
    /// Engine classes (§6).
    EngineType, "engine", {
        ThreadPool => "ThreadPoolEngine",
        ProcessPool => "ProcessPoolEngine",
        GlobusCompute => "GlobusComputeEngine",
        GlobusMpi => "GlobusMPIEngine",
    }
);

kinds!(
    /// Parsl execution providers (§6.6).
    ProviderType, "provider", {
        Local => "LocalProvider",
        Slurm => "SlurmProvider",
        PbsPro => "PBSProProvider",
        Torque => "TorqueProvider",
        Lsf => "LSFProvider",
        GridEngine => "GridEngineProvider",
        Condor => "CondorProvider",
        Kubernetes => "KubernetesProvider",
        Aws => "AWSProvider",
        GoogleCloud => "GoogleCloudProvider",
        Azure => "AzureProvider",
    }
);

kinds!(
    /// Parsl launchers (§6.6).
    LauncherType, "launcher", {
        SingleNode => "SingleNodeLauncher",
        Simple => "SimpleLauncher",
        Srun => "SrunLauncher",
        SrunMpi => "SrunMPILauncher",
        MpiExec => "MpiExecLauncher",
        MpiRun => "MpiRunLauncher",
        Aprun => "AprunLauncher",
        Jsrun => "JsrunLauncher",
        GnuParallel => "GnuParallelLauncher",
        Wrapped => "WrappedLauncher",
    }
);

kinds!(
    /// Parsl address functions (§6.6).
    AddressFunction, "address", {
        ByInterface => "address_by_interface",
        ByHostname => "address_by_hostname",
        ByRoute => "address_by_route",
        ByQuery => "address_by_query",
    }
);

/// A launcher: `provider.launcher`.
#[derive(Debug, Clone, PartialEq)]
pub struct LauncherConfig {
    /// Which launcher.
    pub launcher_type: LauncherType,
    /// Its options (`debug`, `overrides`, `bind_cmd`, `prepend`, …).
    pub options: Options,
}

/// An execution provider: `engine.provider`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderConfig {
    /// Which provider.
    pub provider_type: ProviderType,
    /// Its options (`init_blocks`, `worker_init`, `partition`, …), launcher excluded.
    pub options: Options,
    /// The configured launcher; `None` means the provider's default (SingleNodeLauncher, or
    /// AprunLauncher for TorqueProvider; none for Kubernetes).
    pub launcher: Option<LauncherConfig>,
}

/// `engine.address`: a literal or an address function.
#[derive(Debug, Clone, PartialEq)]
pub enum AddressConfig {
    /// An address string, kept as written.
    Literal(String),
    /// `{type: address_by_interface, ifname: bond0}` and friends.
    Function {
        /// Which function.
        function: AddressFunction,
        /// Its arguments.
        options: Options,
    },
}

/// The `engine` mapping of a user endpoint configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Which engine.
    pub engine_type: EngineType,
    /// Engine and executor options, provider and address excluded.
    pub options: Options,
    /// `provider` (GlobusComputeEngine/GlobusMPIEngine); `None` ⇒ Parsl's LocalProvider.
    pub provider: Option<ProviderConfig>,
    /// `address`; `None` ⇒ all of the host's addresses.
    pub address: Option<AddressConfig>,
}

impl EngineConfig {
    /// The engine label (defaults to the type name).
    pub fn label(&self) -> &str {
        self.options.str("label").unwrap_or(self.engine_type.name())
    }

    /// `allowed_serializers` (None ⇒ all allowed).
    pub fn allowed_serializers(&self) -> Option<Vec<String>> {
        self.options.get("allowed_serializers").and_then(|v| {
            v.as_array().map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
        })
    }

    /// `max_retries_on_system_failure` (0 for the pool engines, which do not accept it).
    pub fn max_retries_on_system_failure(&self) -> u64 {
        self.options
            .get("max_retries_on_system_failure")
            .and_then(Json::as_u64)
            .unwrap_or(0)
    }

    /// `encrypted` (only the Parsl engines have it; default true).
    pub fn encrypted(&self) -> Option<bool> {
        self.options.bool("encrypted")
    }

    /// `run_in_sandbox` (default false).
    pub fn run_in_sandbox(&self) -> bool {
        self.options.bool("run_in_sandbox").unwrap_or(false)
    }

    /// `working_dir` (default `tasks_working_dir`, relative to the UEP directory).
    pub fn working_dir(&self) -> &str {
        self.options
            .str("working_dir")
            .unwrap_or("tasks_working_dir")
    }

    /// `container_type`, if any.
    pub fn container_type(&self) -> Option<&str> {
        self.options.str("container_type")
    }

    /// The high-assurance rule (§2.7): Parsl engines need `encrypted: true`. Returns upstream's
    /// error text when not compliant.
    pub fn assert_ha_compliant(&self) -> Result<(), String> {
        match self.engine_type {
            EngineType::ThreadPool | EngineType::ProcessPool => Ok(()),
            EngineType::GlobusCompute | EngineType::GlobusMpi => {
                if self.encrypted() == Some(true) {
                    Ok(())
                } else {
                    Err(format!(
                        "High-Assurance {}s must enable the `encrypted` configuration value",
                        self.engine_type.name()
                    ))
                }
            }
        }
    }
}

const POOL_COMMON: &[Opt] = &[
    o("allowed_serializers", Ty::StrList, None),
    o("max_workers", Ty::Int, None),
    o("initializer", Ty::PythonOnly, None),
    o("initargs", Ty::PythonOnly, None),
];

const THREAD_POOL: &[Opt] = &[
    o("label", Ty::Str, Some("\"ThreadPoolEngine\"")),
    o("thread_name_prefix", Ty::Str, Some("\"\"")),
];

const PROCESS_POOL: &[Opt] = &[
    o("label", Ty::Str, Some("\"ProcessPoolEngine\"")),
    o("mp_context", Ty::Str, None),
    o("max_tasks_per_child", Ty::Int, None),
];

/// Engine-level options of GlobusComputeEngine/GlobusMPIEngine.
const GC_ENGINE: &[Opt] = &[
    o("max_retries_on_system_failure", Ty::Int, Some("0")),
    o("executor", Ty::PythonOnly, None),
    o("container_type", Ty::Str, None),
    o("container_uri", Ty::Str, None),
    o("container_cmd_options", Ty::Str, None),
    o("encrypted", Ty::Bool, Some("true")),
    o("strategy", Ty::Any, None),
    o("job_status_kwargs", Ty::Mapping, None),
    o("run_in_sandbox", Ty::Bool, Some("false")),
    o("allowed_serializers", Ty::StrList, None),
];

/// Options shared by Parsl's HighThroughputExecutor and MPIExecutor.
const PARSL_EXECUTOR: &[Opt] = &[
    o("launch_cmd", Ty::Str, None),
    o("interchange_launch_cmd", Ty::Any, None),
    o("loopback_address", Ty::Str, Some("\"127.0.0.1\"")),
    o("worker_port", Ty::Int, None),
    o("worker_port_range", Ty::IntPair, Some("[54000, 55000]")),
    o(
        "interchange_port_range",
        Ty::IntPair,
        Some("[55000, 56000]"),
    ),
    o("storage_access", Ty::PythonOnly, None),
    o("working_dir", Ty::Str, None),
    o("worker_debug", Ty::Bool, Some("false")),
    o("prefetch_capacity", Ty::Int, Some("0")),
    o("heartbeat_threshold", Ty::Int, Some("120")),
    o("heartbeat_period", Ty::Int, Some("30")),
    o("drain_period", Ty::Int, None),
    o("poll_period", Ty::Int, Some("10")),
    o("address_probe_timeout", Ty::Int, None),
    o("worker_logdir_root", Ty::Str, None),
    o("block_error_handler", Ty::Bool, Some("true")),
    o("remote_monitoring_radio", Ty::PythonOnly, None),
];

const HTEX_ONLY: &[Opt] = &[
    o("label", Ty::Str, Some("\"GlobusComputeEngine\"")),
    o("cores_per_worker", Ty::Float, Some("1.0")),
    o("mem_per_worker", Ty::Float, None),
    o("max_workers_per_node", Ty::Float, None),
    o("cpu_affinity", Ty::Str, Some("\"none\"")),
    o("available_accelerators", Ty::Any, Some("[]")),
    o("manager_selector", Ty::PythonOnly, None),
];

const MPI_ONLY: &[Opt] = &[
    o("label", Ty::Str, Some("\"GlobusMPIEngine\"")),
    o("max_workers_per_block", Ty::Int, Some("1")),
    o("mpi_launcher", Ty::Str, Some("\"mpiexec\"")),
];

const BLOCKS: &[Opt] = &[
    o("init_blocks", Ty::Int, Some("1")),
    o("min_blocks", Ty::Int, Some("0")),
    o("max_blocks", Ty::Int, Some("1")),
    o("parallelism", Ty::Float, Some("1")),
    o("worker_init", Ty::Str, Some("\"\"")),
];

fn provider_opts(kind: ProviderType) -> (&'static [Opt], &'static [Opt]) {
    use ProviderType::*;
    const LOCAL: &[Opt] = &[
        o("nodes_per_block", Ty::Int, Some("1")),
        o("cmd_timeout", Ty::Int, Some("30")),
    ];
    const SLURM: &[Opt] = &[
        o("partition", Ty::Str, None),
        o("account", Ty::Str, None),
        o("qos", Ty::Str, None),
        o("constraint", Ty::Str, None),
        o("clusters", Ty::Str, None),
        o("nodes_per_block", Ty::Int, Some("1")),
        o("cores_per_node", Ty::Int, None),
        o("mem_per_node", Ty::Int, None),
        o("gpus_per_node", Ty::Int, None),
        o("gres", Ty::Str, None),
        o("walltime", Ty::StrOrInt, Some("\"00:10:00\"")),
        o("scheduler_options", Ty::Str, Some("\"\"")),
        o(
            "regex_job_id",
            Ty::Str,
            Some("\"Submitted batch job (?P<id>\\\\S*)\""),
        ),
        o("cmd_timeout", Ty::Int, Some("10")),
        o("status_batch_size", Ty::Int, Some("50")),
        o("exclusive", Ty::Bool, Some("true")),
    ];
    const PBSPRO: &[Opt] = &[
        o("account", Ty::Str, None),
        o("queue", Ty::Str, None),
        o("scheduler_options", Ty::Str, Some("\"\"")),
        o("select_options", Ty::Str, Some("\"\"")),
        o("nodes_per_block", Ty::Int, Some("1")),
        o("cpus_per_node", Ty::Int, Some("1")),
        o("walltime", Ty::StrOrInt, Some("\"00:20:00\"")),
        o("cmd_timeout", Ty::Int, Some("120")),
    ];
    const TORQUE: &[Opt] = &[
        o("account", Ty::Str, None),
        o("queue", Ty::Str, None),
        o("scheduler_options", Ty::Str, Some("\"\"")),
        o("nodes_per_block", Ty::Int, Some("1")),
        o("walltime", Ty::StrOrInt, Some("\"00:20:00\"")),
        o("cmd_timeout", Ty::Int, Some("120")),
    ];
    const LSF: &[Opt] = &[
        o("nodes_per_block", Ty::Int, Some("1")),
        o("cores_per_block", Ty::Int, None),
        o("cores_per_node", Ty::Int, None),
        o("walltime", Ty::StrOrInt, Some("\"00:10:00\"")),
        o("scheduler_options", Ty::Str, Some("\"\"")),
        o("project", Ty::Str, None),
        o("queue", Ty::Str, None),
        o("cmd_timeout", Ty::Int, Some("120")),
        o("bsub_redirection", Ty::Bool, Some("false")),
        o("request_by_nodes", Ty::Bool, Some("true")),
    ];
    const GRID_ENGINE: &[Opt] = &[
        o("nodes_per_block", Ty::Int, Some("1")),
        o("walltime", Ty::StrOrInt, Some("\"00:10:00\"")),
        o("scheduler_options", Ty::Str, Some("\"\"")),
        o("cmd_timeout", Ty::Int, Some("60")),
        o("queue", Ty::Str, None),
    ];
    const CONDOR: &[Opt] = &[
        o("nodes_per_block", Ty::Int, Some("1")),
        o("cores_per_slot", Ty::Int, None),
        o("mem_per_slot", Ty::Float, None),
        o("environment", Ty::Mapping, None),
        o("project", Ty::Str, Some("\"\"")),
        o("scheduler_options", Ty::Str, Some("\"\"")),
        o("transfer_input_files", Ty::StrList, Some("[]")),
        o("walltime", Ty::StrOrInt, Some("\"00:10:00\"")),
        o("requirements", Ty::Str, Some("\"\"")),
        o("cmd_timeout", Ty::Int, Some("60")),
        o("cmd_chunk_size", Ty::Int, Some("100")),
    ];
    const KUBERNETES: &[Opt] = &[
        o("image", Ty::Str, None),
        o("namespace", Ty::Str, Some("\"default\"")),
        o("nodes_per_block", Ty::Int, Some("1")),
        o("max_cpu", Ty::Float, Some("2")),
        o("max_mem", Ty::Str, Some("\"500Mi\"")),
        o("init_cpu", Ty::Float, Some("1")),
        o("init_mem", Ty::Str, Some("\"250Mi\"")),
        o("extra_requests", Ty::Mapping, None),
        o("extra_limits", Ty::Mapping, None),
        o("pod_name", Ty::Str, None),
        o("user_id", Ty::StrOrInt, None),
        o("group_id", Ty::StrOrInt, None),
        o("run_as_non_root", Ty::Bool, Some("false")),
        o("secret", Ty::Str, None),
        o("persistent_volumes", Ty::Any, Some("[]")),
        o("service_account_name", Ty::Str, None),
        o("annotations", Ty::Mapping, None),
    ];
    const AWS: &[Opt] = &[
        o("image_id", Ty::Str, None),
        o("key_name", Ty::Str, None),
        o("nodes_per_block", Ty::Int, Some("1")),
        o("instance_type", Ty::Str, Some("\"t2.small\"")),
        o("region", Ty::Str, Some("\"us-east-2\"")),
        o("spot_max_bid", Ty::Float, Some("0")),
        o("key_file", Ty::Str, None),
        o("profile", Ty::Str, None),
        o("iam_instance_profile_arn", Ty::Str, Some("\"\"")),
        o("state_file", Ty::Str, None),
        o("walltime", Ty::StrOrInt, Some("\"01:00:00\"")),
        o("linger", Ty::Bool, Some("false")),
    ];
    const GOOGLE: &[Opt] = &[
        o("project_id", Ty::Str, None),
        o("key_file", Ty::Str, None),
        o("region", Ty::Str, None),
        o("os_project", Ty::Str, None),
        o("os_family", Ty::Str, None),
        o("google_version", Ty::Str, Some("\"v1\"")),
        o("instance_type", Ty::Str, Some("\"n1-standard-1\"")),
    ];
    const AZURE: &[Opt] = &[
        o("vm_reference", Ty::Mapping, None),
        o("location", Ty::Str, Some("\"westus\"")),
        o("group_name", Ty::Str, Some("\"parsl.group\"")),
        o("key_name", Ty::Str, None),
        o("key_file", Ty::Str, None),
        o("vnet_name", Ty::Str, Some("\"parsl.vnet\"")),
        o("linger", Ty::Bool, Some("false")),
    ];
    let specific = match kind {
        Local => LOCAL,
        Slurm => SLURM,
        PbsPro => PBSPRO,
        Torque => TORQUE,
        Lsf => LSF,
        GridEngine => GRID_ENGINE,
        Condor => CONDOR,
        Kubernetes => KUBERNETES,
        Aws => AWS,
        GoogleCloud => GOOGLE,
        Azure => AZURE,
    };
    (specific, BLOCKS)
}

/// Required (no default) constructor arguments per provider.
fn provider_required(kind: ProviderType) -> &'static [&'static str] {
    match kind {
        ProviderType::Kubernetes => &["image"],
        ProviderType::Aws => &["image_id", "key_name"],
        ProviderType::GoogleCloud => &[
            "project_id",
            "key_file",
            "region",
            "os_project",
            "os_family",
        ],
        ProviderType::Azure => &["vm_reference"],
        _ => &[],
    }
}

fn launcher_opts(kind: LauncherType) -> &'static [Opt] {
    use LauncherType::*;
    const DEBUG: Opt = o("debug", Ty::Bool, Some("true"));
    const OVERRIDES: Opt = o("overrides", Ty::Str, Some("\"\""));
    const SINGLE: &[Opt] = &[DEBUG, o("fail_on_any", Ty::Bool, Some("false"))];
    const PLAIN: &[Opt] = &[DEBUG];
    const WITH_OVERRIDES: &[Opt] = &[DEBUG, OVERRIDES];
    const MPIEXEC: &[Opt] = &[
        DEBUG,
        o("bind_cmd", Ty::Str, Some("\"--bind-to\"")),
        OVERRIDES,
    ];
    const MPIRUN: &[Opt] = &[
        DEBUG,
        o("bash_location", Ty::Str, Some("\"/bin/bash\"")),
        OVERRIDES,
    ];
    const WRAPPED: &[Opt] = &[DEBUG, o("prepend", Ty::Str, None)];
    match kind {
        SingleNode => SINGLE,
        Simple | GnuParallel => PLAIN,
        Srun | SrunMpi | Aprun | Jsrun => WITH_OVERRIDES,
        MpiExec => MPIEXEC,
        MpiRun => MPIRUN,
        Wrapped => WRAPPED,
    }
}

fn address_opts(kind: AddressFunction) -> &'static [Opt] {
    const BY_INTERFACE: &[Opt] = &[o("ifname", Ty::Str, None)];
    const BY_QUERY: &[Opt] = &[o("timeout", Ty::Float, Some("30"))];
    match kind {
        AddressFunction::ByInterface => BY_INTERFACE,
        AddressFunction::ByQuery => BY_QUERY,
        AddressFunction::ByHostname | AddressFunction::ByRoute => &[],
    }
}

const CONTAINER_TYPES: &[&str] = &[
    "docker",
    "podman",
    "podman-hpc",
    "apptainer",
    "singularity",
    "custom",
];

/// `mpi_launcher` values of GlobusMPIEngine.
const MPI_LAUNCHERS: &[&str] = &["srun", "aprun", "mpiexec"];

const CONTAINER_MANAGING_PROVIDERS: &[ProviderType] = &[
    ProviderType::Aws,
    ProviderType::GoogleCloud,
    ProviderType::Kubernetes,
];

/// Serialization strategies selectable in `allowed_serializers` (SDK 4.19), code ones first.
const CODE_STRATEGIES: &[&str] = &[
    "AllCodeStrategies",
    "CombinedCode",
    "DillCode",
    "DillCodeSource",
    "DillCodeTextInspect",
    "PureSourceDill",
    "PureSourceTextInspect",
    "PickleCode",
];
const DATA_STRATEGIES: &[&str] = &["AllDataStrategies", "DillDataBase64", "JSONData"];
const CODE_WILDCARD: &str = "globus_compute_sdk.*Code";
const DATA_WILDCARD: &str = "globus_compute_sdk.*Data";

/// Classify an `allowed_serializers` entry: `Some(true)` code, `Some(false)` data.
fn strategy_kind(path: &str) -> Option<bool> {
    let name = path
        .strip_prefix("globus_compute_sdk.serialize.concretes.")
        .or_else(|| path.strip_prefix("globus_compute_sdk.serialize."))?;
    if CODE_STRATEGIES.contains(&name) {
        Some(true)
    } else if DATA_STRATEGIES.contains(&name) {
        Some(false)
    } else {
        None
    }
}

/// Validate `allowed_serializers` as upstream does at config load (§6.1).
pub fn validate_allowed_serializers(list: &[String]) -> Result<(), String> {
    let listing = || {
        list.iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (mut code, mut data, mut code_wild, mut data_wild) = (false, false, false, false);
    for entry in list {
        match entry.as_str() {
            CODE_WILDCARD => code_wild = true,
            DATA_WILDCARD => data_wild = true,
            other => match strategy_kind(other) {
                Some(true) => code = true,
                Some(false) => data = true,
                None => {
                    return Err(format!(
                        "Invalid strategy-like '{other}'. Expected either a SerializationStrategy instance, a subclass of SerializationStrategy, or an import path to one."
                    ));
                }
            },
        }
    }
    if code_wild && code {
        return Err(format!(
            "Cannot mix 'AllowlistWildcard.CODE' with specific deserializers (got [{}])",
            listing()
        ));
    }
    if data_wild && data {
        return Err(format!(
            "Cannot mix 'AllowlistWildcard.DATA' with specific deserializers (got [{}])",
            listing()
        ));
    }
    if !(code || code_wild) || !(data || data_wild) {
        return Err(format!(
            "Deserialization allowlists must contain at least one code and one data deserializer/wildcard (got: [{}])",
            listing()
        ));
    }
    Ok(())
}

fn child<'a>(at: &At<'a>, key: &str, line: usize) -> At<'a> {
    At {
        source: at.source,
        field: if at.field.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", at.field)
        },
        line,
    }
}

/// The non-null, non-`type` entries of a dispatch mapping: key, line, value.
type Entries<'n> = Vec<(&'n str, usize, &'n Node)>;

/// Split a dispatch mapping into its `type` and remaining non-null entries.
fn dispatch<'n, T>(
    at: &At,
    node: &'n Node,
    from_name: fn(&str) -> Option<T>,
    what: &'static str,
    valid: &'static [&'static str],
) -> Result<(T, Entries<'n>), ConfigError> {
    let Value::Map(entries) = &node.value else {
        return Err(at.err(ConfigErrorKind::NotAMapping {
            found: node.type_name(),
        }));
    };
    let mut kind = None;
    let mut rest = Vec::new();
    for (key, line, value) in entries {
        if key == "type" {
            let type_at = child(at, "type", *line);
            let Value::Str(name) = &value.value else {
                return Err(type_at.wrong("a valid string", value));
            };
            kind = Some(from_name(name).ok_or_else(|| {
                type_at.err(ConfigErrorKind::UnknownType {
                    what,
                    name: name.clone(),
                    valid,
                })
            })?);
        } else if value.value != Value::Null {
            rest.push((key.as_str(), *line, value));
        }
    }
    match kind {
        Some(kind) => Ok((kind, rest)),
        None => Err(child(at, "type", node.line).err(ConfigErrorKind::MissingField)),
    }
}

/// Python truthiness of a YAML value.
fn is_truthy(node: &Node) -> bool {
    match &node.value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::Float(f) => *f != 0.0,
        Value::Str(s) => !s.is_empty(),
        Value::Seq(items) => !items.is_empty(),
        Value::Map(entries) => !entries.is_empty(),
    }
}

fn check_value(at: &At, ty: Ty, node: &Node) -> Result<Json, ConfigError> {
    let ok = match (ty, &node.value) {
        (Ty::Any | Ty::Mapping, Value::Map(_)) => true,
        (Ty::Mapping, _) => return Err(at.wrong("a mapping", node)),
        (Ty::Any, _) => true,
        (Ty::Int, Value::Int(_)) => true,
        (Ty::Int, Value::Float(f)) if f.fract() == 0.0 => {
            return Ok(Json::from(*f as i64));
        }
        (Ty::Int, _) => return Err(at.wrong("a valid integer", node)),
        (Ty::Float, Value::Int(_) | Value::Float(_)) => true,
        (Ty::Float, _) => return Err(at.wrong("a valid number", node)),
        (Ty::Str, Value::Str(_)) => true,
        (Ty::Str, _) => return Err(at.wrong("a valid string", node)),
        (Ty::Bool, Value::Bool(_)) => true,
        (Ty::Bool, _) => return Err(at.wrong("a valid boolean", node)),
        (Ty::StrOrInt, Value::Str(_) | Value::Int(_)) => true,
        (Ty::StrOrInt, _) => return Err(at.wrong("a string or an integer", node)),
        (Ty::StrList, Value::Seq(items)) => {
            if let Some(bad) = items.iter().find(|i| !matches!(i.value, Value::Str(_))) {
                return Err(at.wrong("a list of strings", bad));
            }
            true
        }
        (Ty::StrList, _) => return Err(at.wrong("a list of strings", node)),
        (Ty::IntPair, Value::Seq(items))
            if items.len() == 2 && items.iter().all(|i| matches!(i.value, Value::Int(_))) =>
        {
            true
        }
        (Ty::IntPair, _) => return Err(at.wrong("a pair of integers", node)),
        (Ty::PythonOnly, _) => {
            return Err(at.err(ConfigErrorKind::InvalidValue(
                "takes a Python object, which cannot be given in a YAML configuration".into(),
            )));
        }
    };
    debug_assert!(ok);
    Ok(node.to_json())
}

fn collect_options(
    at: &At,
    class: &str,
    tables: &[&[Opt]],
    entries: &[(&str, usize, &Node)],
    skip: &[&str],
) -> Result<Options, ConfigError> {
    let mut options = Options::default();
    for table in tables {
        for opt in table.iter() {
            if let Some(default) = opt.default {
                if !options.defaults.contains_key(opt.name) {
                    let value = serde_json::from_str(default).unwrap_or(Json::Null);
                    options.defaults.insert(opt.name.to_string(), value);
                }
            }
        }
    }
    for (key, line, node) in entries {
        if skip.contains(key) {
            continue;
        }
        let key_at = child(at, key, *line);
        let spec = tables
            .iter()
            .flat_map(|t| t.iter())
            .find(|opt| opt.name == *key);
        let Some(spec) = spec else {
            return Err(key_at.err(ConfigErrorKind::UnexpectedKeyword {
                class: class.to_string(),
            }));
        };
        let value = check_value(&key_at, spec.ty, node)?;
        options.values.insert((*key).to_string(), value);
    }
    Ok(options)
}

/// Build the launcher of `provider.launcher`.
fn build_launcher(at: &At, node: &Node) -> Result<LauncherConfig, ConfigError> {
    let (launcher_type, entries) = dispatch(
        at,
        node,
        LauncherType::from_name,
        LauncherType::WHAT,
        LauncherType::NAMES,
    )?;
    let options = collect_options(
        at,
        launcher_type.name(),
        &[launcher_opts(launcher_type)],
        &entries,
        &[],
    )?;
    if launcher_type == LauncherType::Wrapped && options.get("prepend").is_none() {
        return Err(child(at, "prepend", node.line).err(ConfigErrorKind::MissingField));
    }
    Ok(LauncherConfig {
        launcher_type,
        options,
    })
}

fn build_provider(at: &At, node: &Node) -> Result<ProviderConfig, ConfigError> {
    let (provider_type, entries) = dispatch(
        at,
        node,
        ProviderType::from_name,
        ProviderType::WHAT,
        ProviderType::NAMES,
    )?;
    let mut launcher = None;
    for (key, line, value) in &entries {
        if *key == "launcher" {
            if provider_type == ProviderType::Kubernetes {
                return Err(
                    child(at, key, *line).err(ConfigErrorKind::UnexpectedKeyword {
                        class: provider_type.name().to_string(),
                    }),
                );
            }
            launcher = Some(build_launcher(&child(at, key, *line), value)?);
        }
    }
    let (specific, blocks) = provider_opts(provider_type);
    let options = collect_options(
        at,
        provider_type.name(),
        &[specific, blocks],
        &entries,
        &["launcher"],
    )?;
    for required in provider_required(provider_type) {
        if options.get(required).is_none() {
            return Err(child(at, required, node.line).err(ConfigErrorKind::MissingField));
        }
    }
    Ok(ProviderConfig {
        provider_type,
        options,
        launcher,
    })
}

fn build_address(at: &At, node: &Node) -> Result<AddressConfig, ConfigError> {
    match &node.value {
        Value::Str(s) => Ok(AddressConfig::Literal(s.clone())),
        Value::Map(_) => {
            let (function, entries) = dispatch(
                at,
                node,
                AddressFunction::from_name,
                AddressFunction::WHAT,
                AddressFunction::NAMES,
            )?;
            let options = collect_options(
                at,
                function.name(),
                &[address_opts(function)],
                &entries,
                &[],
            )?;
            if function == AddressFunction::ByInterface && options.get("ifname").is_none() {
                return Err(child(at, "ifname", node.line).err(ConfigErrorKind::MissingField));
            }
            Ok(AddressConfig::Function { function, options })
        }
        _ => Err(at.wrong("an address string or an address mapping", node)),
    }
}

/// Build the `engine` mapping (`at` names the `engine` field).
pub(crate) fn build_engine(at: &At, node: &Node) -> Result<EngineConfig, ConfigError> {
    let (engine_type, entries) = dispatch(
        at,
        node,
        EngineType::from_name,
        EngineType::WHAT,
        EngineType::NAMES,
    )?;
    let mut provider = None;
    let mut address = None;
    let options = match engine_type {
        EngineType::ThreadPool => collect_options(
            at,
            "ThreadPoolExecutor",
            &[THREAD_POOL, POOL_COMMON],
            &entries,
            &[],
        )?,
        EngineType::ProcessPool => collect_options(
            at,
            "ProcessPoolExecutor",
            &[PROCESS_POOL, POOL_COMMON],
            &entries,
            &[],
        )?,
        EngineType::GlobusCompute | EngineType::GlobusMpi => {
            let mpi = engine_type == EngineType::GlobusMpi;
            for (key, line, value) in &entries {
                let key_at = child(at, key, *line);
                match *key {
                    "provider" => provider = Some(build_provider(&key_at, value)?),
                    "address" => address = Some(build_address(&key_at, value)?),
                    "enable_mpi_mode" | "mpi_launcher" if !mpi && is_truthy(value) => {
                        return Err(key_at.err(ConfigErrorKind::InvalidValue(
                            "MPI mode is not supported on GlobusComputeEngine. Use GlobusMPIEngine instead.".into(),
                        )));
                    }
                    _ => {}
                }
            }
            let (class, specific) = if mpi {
                ("MPIExecutor", MPI_ONLY)
            } else {
                ("HighThroughputExecutor", HTEX_ONLY)
            };
            let options = collect_options(
                at,
                class,
                &[specific, GC_ENGINE, PARSL_EXECUTOR],
                &entries,
                &["provider", "address"],
            )?;
            if mpi {
                let simple = provider
                    .as_ref()
                    .and_then(|p| p.launcher.as_ref())
                    .map(|l| l.launcher_type)
                    == Some(LauncherType::Simple);
                if !simple {
                    let line = entries
                        .iter()
                        .find(|e| e.0 == "provider")
                        .map_or(node.line, |e| e.1);
                    return Err(child(at, "provider", line).err(ConfigErrorKind::InvalidValue(
                        "mpi_mode requires the provider to be configured to use a SimpleLauncher".into(),
                    )));
                }
                let launcher = options.str("mpi_launcher").unwrap_or("mpiexec");
                if !MPI_LAUNCHERS.contains(&launcher) {
                    let line = entries
                        .iter()
                        .find(|e| e.0 == "mpi_launcher")
                        .map_or(node.line, |e| e.1);
                    return Err(child(at, "mpi_launcher", line).err(ConfigErrorKind::InvalidValue(format!(
                        "mpi_launcher set to:{launcher} must be set to one of ('srun', 'aprun', 'mpiexec')"
                    ))));
                }
            }
            if let Some(kind) = options
                .configured()
                .get("container_type")
                .and_then(Json::as_str)
            {
                if !CONTAINER_TYPES.contains(&kind) {
                    let line = entries
                        .iter()
                        .find(|e| e.0 == "container_type")
                        .map_or(node.line, |e| e.1);
                    return Err(child(at, "container_type", line).err(
                        ConfigErrorKind::InvalidValue(format!(
                            "{kind} is not a valid container_type"
                        )),
                    ));
                }
            }
            if options.configured().contains_key("container_uri") {
                if let Some(p) = provider
                    .as_ref()
                    .filter(|p| CONTAINER_MANAGING_PROVIDERS.contains(&p.provider_type))
                {
                    let name = p.provider_type.name();
                    return Err(child(at, "container_uri", node.line).err(ConfigErrorKind::InvalidValue(format!(
                        "The 'container_uri' field is not compatible with {name} because this provider manages containers internally. For more information on how to configure {name}, please refer to Parsl documentation: https://parsl.readthedocs.io/en/stable/stubs/parsl.providers.{name}.html"
                    ))));
                }
            }
            if options
                .configured()
                .get("container_type")
                .and_then(Json::as_str)
                == Some("custom")
                && options.get("container_cmd_options").is_none()
            {
                return Err(child(at, "container_cmd_options", node.line).err(
                    ConfigErrorKind::InvalidValue(
                        "GCE.container_cmd_options is required for GCE.container_type=custom"
                            .into(),
                    ),
                ));
            }
            options
        }
    };
    if let Some(list) = options
        .configured()
        .get("allowed_serializers")
        .and_then(Json::as_array)
    {
        let list: Vec<String> = list
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        let line = entries
            .iter()
            .find(|e| e.0 == "allowed_serializers")
            .map_or(node.line, |e| e.1);
        validate_allowed_serializers(&list).map_err(|msg| {
            child(at, "allowed_serializers", line).err(ConfigErrorKind::InvalidValue(msg))
        })?;
    }
    Ok(EngineConfig {
        engine_type,
        options,
        provider,
        address,
    })
}
