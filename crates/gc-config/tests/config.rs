//! Configuration model tests (ENDPOINT.md §2): defaults, coercions, cross-kind rules and
//! errors that name the file, the field and the line.

use gc_config::engine::{AddressConfig, LauncherType, ProviderType};
use gc_config::{
    ConfigErrorKind, CoreEndpointConfig, EndpointConfig, EngineType, LoadOptions, Number,
    UserEndpointConfig, load_config,
};

const SRC: &str = "/eps/ep1/config.yaml";

fn core(text: &str) -> CoreEndpointConfig {
    CoreEndpointConfig::from_yaml(text, SRC, LoadOptions::default()).unwrap()
}

fn core_err(text: &str) -> gc_config::ConfigError {
    CoreEndpointConfig::from_yaml(text, SRC, LoadOptions::default()).unwrap_err()
}

fn user_err(text: &str) -> gc_config::ConfigError {
    UserEndpointConfig::from_yaml(text, "<rendered>").unwrap_err()
}

#[test]
fn default_config_gives_upstream_defaults() {
    let c = core(gc_config::defaults::DEFAULT_CONFIG_YAML);
    assert_eq!(c.base.display_name, None);
    assert!(!c.public);
    assert!(!c.pam.enable);
    assert_eq!(c.pam.service_name, "globus-compute-endpoint");
    assert_eq!(c.base.heartbeat_period, Number::Int(30));
    assert_eq!(c.mu_child_ep_grace_period_s, 30.0);
    assert_eq!(c.source_content, "display_name: null\n");
    assert_eq!(core(""), CoreEndpointConfig::default());
}

#[test]
fn unknown_field_names_file_field_and_line() {
    let err = core_err("display_name: x\n\nfoo: 1\n");
    assert_eq!(err.line, Some(3));
    assert_eq!(err.field.as_deref(), Some("foo"));
    assert_eq!(err.kind, ConfigErrorKind::UnknownField);
    assert_eq!(
        err.to_string(),
        "/eps/ep1/config.yaml: line 3: unknown field `foo` (Unexpected keyword argument)"
    );
    // Cross-kind keys are unknown too (§2.4).
    let err = core_err("idle_heartbeats_soft: 3\n");
    assert_eq!(err.kind, ConfigErrorKind::UnknownField);
    let err = user_err("engine:\n  type: ThreadPoolEngine\npublic: true\n");
    assert_eq!(
        err.to_string(),
        "<rendered>: line 3: unknown field `public` (Unexpected keyword argument)"
    );
}

#[test]
fn wrong_type_names_file_field_and_line() {
    let err = core_err("display_name: x\npublic: maybe\n");
    assert_eq!(err.line, Some(2));
    assert_eq!(err.field.as_deref(), Some("public"));
    assert_eq!(
        err.to_string(),
        "/eps/ep1/config.yaml: line 2: field `public`: Input should be a valid boolean (got 'maybe')"
    );
    let err = core_err("allowed_functions:\n  - 6d0ba55f-de15-4af2-827d-05c50c338aa7\n  - nope\n");
    assert_eq!(
        (err.line, err.field.as_deref()),
        (Some(3), Some("allowed_functions[1]"))
    );
    assert!(
        err.to_string()
            .ends_with("badly formed hexadecimal UUID string"),
        "{err}"
    );
    let err = user_err(
        "engine:\n  type: GlobusComputeEngine\n  provider:\n    type: LocalProvider\n    max_blocks: lots\n",
    );
    assert_eq!(
        (err.line, err.field.as_deref()),
        (Some(5), Some("engine.provider.max_blocks"))
    );
    assert_eq!(
        err.to_string(),
        "<rendered>: line 5: field `engine.provider.max_blocks`: Input should be a valid integer (got 'lots')"
    );
}

#[test]
fn lax_coercions_and_normalisation() {
    let c = core(
        "public: 'yes'\namqp_port: '5671'\nheartbeat_period: 2\nauthentication_policy: '{2340174A-1A0E-46D8-A958-7C3DDF2C834A}'\ndisplay_name: None\nmu_child_ep_grace_period_s: 5\npam: {}\n",
    );
    assert!(c.public);
    assert_eq!(c.base.amqp_port, Some(5671));
    assert_eq!(c.base.heartbeat_period, Number::Float(5.0));
    assert_eq!(
        c.base.authentication_policy.unwrap().to_string(),
        "2340174a-1a0e-46d8-a958-7c3ddf2c834a"
    );
    assert_eq!(c.base.display_name, None);
    assert_eq!(c.mu_child_ep_grace_period_s, 5.0);
    assert!(c.pam.enable, "a present pam mapping enables PAM");
    let c = core("pam:\n  enable: false\n  foo: 2\nheartbeat_period: 12.5\n");
    assert!(!c.pam.enable);
    assert_eq!(c.base.heartbeat_period, Number::Float(12.5));
}

#[test]
fn syntax_and_shape_errors() {
    let err = core_err("a: [1,\n");
    assert!(matches!(err.kind, ConfigErrorKind::Syntax(_)));
    assert!(
        err.to_string().starts_with("/eps/ep1/config.yaml: line "),
        "{err}"
    );
    let err = core_err("- a\n- b\n");
    assert_eq!(err.kind, ConfigErrorKind::NotAMapping { found: "list" });
}

#[test]
fn engine_decides_the_kind() {
    assert!(matches!(
        load_config("engine: null\n", SRC, LoadOptions::default()).unwrap(),
        EndpointConfig::Core(_)
    ));
    let err = core_err("display_name: x\nengine:\n  type: ThreadPoolEngine\n");
    assert_eq!(err.kind, ConfigErrorKind::EngineInCoreConfig);
    assert_eq!(err.line, Some(2));
    assert_eq!(
        gc_config::engine_in_core_config_message("ep1"),
        "Configuration for endpoint ep1 contains an `engine` field; endpoint will not start. (Hint: move the `engine` block to `user_config_template.yaml.j2`)"
    );
    let err = user_err("idle_heartbeats_soft: 1\n");
    assert_eq!(err.kind, ConfigErrorKind::MissingEngine);
}

#[test]
fn paths_must_exist_when_checked() {
    let text = "identity_mapping_config_path: /no/such/idmap.json\n";
    let err = core_err(text);
    assert_eq!(
        err.to_string(),
        "/eps/ep1/config.yaml: line 1: field `identity_mapping_config_path`: Identity mapping config path not found (/no/such/idmap.json)"
    );
    let c = CoreEndpointConfig::from_yaml(text, SRC, LoadOptions { check_paths: false }).unwrap();
    assert_eq!(
        c.identity_mapping_config_path.unwrap().to_str(),
        Some("/no/such/idmap.json")
    );
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("t.j2");
    std::fs::write(&template, "x").unwrap();
    let c = core(&format!(
        "user_config_template_path: {}\nuser_config_schema_path: ''\n",
        template.display()
    ));
    assert_eq!(c.template_path(dir.path()), template);
    assert_eq!(
        c.schema_path(dir.path()),
        dir.path().join("user_config_schema.json")
    );
    // a missing config.yaml in an existing directory reads as empty
    let c = CoreEndpointConfig::from_file(&dir.path().join("config.yaml"), LoadOptions::default())
        .unwrap();
    assert_eq!(c, CoreEndpointConfig::default());
}

#[test]
fn user_config_fields_and_rules() {
    let c = UserEndpointConfig::from_yaml(
        "heartbeat_period: 5\nheartbeat_threshold: 3\nidle_heartbeats_soft: -2\nidle_heartbeats_hard: 0\nendpoint_setup: ''\npaths:\n  endpoint_dir: ~/x\n  other: 1\nengine:\n  type: ProcessPoolEngine\n  max_workers: 4\n  max_tasks_per_child: 100\n",
        "<rendered>",
    )
    .unwrap();
    assert_eq!(c.heartbeat_threshold, 10.0);
    assert_eq!(c.idle_heartbeats_soft, 0);
    assert_eq!(c.effective_idle_heartbeats_hard(), 1);
    assert_eq!(c.paths.unwrap().endpoint_dir.as_deref(), Some("~/x"));
    assert_eq!(c.engine.engine_type, EngineType::ProcessPool);
    assert_eq!(c.engine.label(), "ProcessPoolEngine");
    assert_eq!(
        c.engine.options.get("max_workers"),
        Some(&serde_json::json!(4))
    );
}

#[test]
fn engine_dispatch_errors() {
    let err = user_err("engine:\n  max_workers: 1\n");
    assert_eq!(
        (err.field.as_deref(), &err.kind),
        (Some("engine.type"), &ConfigErrorKind::MissingField)
    );
    let err = user_err("engine:\n  type: NopeEngine\n");
    assert!(err.to_string().ends_with("'NopeEngine' is not a valid engine. Valid options are: ThreadPoolEngine\n\tProcessPoolEngine\n\tGlobusComputeEngine\n\tGlobusMPIEngine"), "{err}");
    let err = user_err("engine:\n  type: ThreadPoolEngine\n  working_dir: x\n");
    assert_eq!(
        err.to_string(),
        "<rendered>: line 3: field `engine.working_dir`: ThreadPoolExecutor.__init__() got an unexpected keyword argument 'working_dir'"
    );
    let err = user_err("engine:\n  type: GlobusComputeEngine\n  bogus: 1\n");
    assert!(
        err.to_string().ends_with(
            "HighThroughputExecutor.__init__() got an unexpected keyword argument 'bogus'"
        ),
        "{err}"
    );
    let err = user_err(
        "engine:\n  type: GlobusComputeEngine\n  provider:\n    type: LocalProvider\n    partition: x\n",
    );
    assert!(
        err.to_string()
            .ends_with("LocalProvider.__init__() got an unexpected keyword argument 'partition'"),
        "{err}"
    );
    let err = user_err("engine:\n  type: GlobusComputeEngine\n  container_type: lxc\n");
    assert!(
        err.to_string()
            .ends_with("lxc is not a valid container_type"),
        "{err}"
    );
    let err = user_err("engine:\n  type: GlobusComputeEngine\n  enable_mpi_mode: true\n");
    assert!(
        err.to_string().ends_with(
            "MPI mode is not supported on GlobusComputeEngine. Use GlobusMPIEngine instead."
        ),
        "{err}"
    );
    let err = user_err(
        "engine:\n  type: GlobusComputeEngine\n  container_uri: x\n  provider:\n    type: KubernetesProvider\n    image: i\n",
    );
    assert!(
        err.to_string().contains(
            "The 'container_uri' field is not compatible with KubernetesProvider because"
        ),
        "{err}"
    );
    let err = user_err(
        "engine:\n  type: GlobusComputeEngine\n  allowed_serializers: [globus_compute_sdk.serialize.DillCodeSource]\n",
    );
    assert!(err.to_string().ends_with("Deserialization allowlists must contain at least one code and one data deserializer/wildcard (got: ['globus_compute_sdk.serialize.DillCodeSource'])"), "{err}");
    let err = user_err(
        "engine:\n  type: GlobusComputeEngine\n  allowed_serializers: [globus_compute_sdk.*Code, globus_compute_sdk.serialize.DillCode, globus_compute_sdk.*Data]\n",
    );
    assert!(
        err.to_string()
            .contains("Cannot mix 'AllowlistWildcard.CODE' with specific deserializers"),
        "{err}"
    );
    let err = user_err(
        "engine:\n  type: GlobusComputeEngine\n  allowed_serializers: [foo.Bar, globus_compute_sdk.*Data]\n",
    );
    assert!(
        err.to_string().contains("Invalid strategy-like 'foo.Bar'."),
        "{err}"
    );
}

#[test]
fn full_engine_tree() {
    let c = UserEndpointConfig::from_yaml(
        "engine:\n  type: GlobusComputeEngine\n  encrypted: false\n  worker_debug: null\n  address:\n    type: address_by_interface\n    ifname: bond0\n  strategy:\n    type: SimpleStrategy\n    max_idletime: 30\n  allowed_serializers:\n    - globus_compute_sdk.*Code\n    - globus_compute_sdk.serialize.JSONData\n  provider:\n    type: PBSProProvider\n    queue: debug\n    walltime: 1:00:00\n    launcher:\n      type: MpiExecLauncher\n      bind_cmd: --cpu-bind\n",
        "<rendered>",
    )
    .unwrap();
    let e = &c.engine;
    assert_eq!(e.encrypted(), Some(false));
    assert!(e.assert_ha_compliant().is_err());
    assert_eq!(
        e.options.get("worker_debug"),
        Some(&serde_json::json!(false)),
        "null falls back to the default"
    );
    assert!(
        matches!(&e.address, Some(AddressConfig::Function { options, .. }) if options.get("ifname") == Some(&serde_json::json!("bond0")))
    );
    let p = e.provider.as_ref().unwrap();
    assert_eq!(p.provider_type, ProviderType::PbsPro);
    assert_eq!(
        p.options.get("walltime"),
        Some(&serde_json::json!(3600)),
        "YAML 1.1 sexagesimal"
    );
    assert_eq!(p.options.get("cpus_per_node"), Some(&serde_json::json!(1)));
    assert_eq!(
        p.launcher.as_ref().unwrap().launcher_type,
        LauncherType::MpiExec
    );
    assert_eq!(e.allowed_serializers().unwrap().len(), 2);
    assert_eq!(e.working_dir(), "tasks_working_dir");
}

#[test]
fn expand_path_handles_tilde_and_variables() {
    let env = |name: &str| (name == "SCRATCH").then(|| "/scratch/alice".to_string());
    assert_eq!(
        gc_config::expand_path("~/eps/x", "/home/alice", env),
        "/home/alice/eps/x"
    );
    assert_eq!(
        gc_config::expand_path("$SCRATCH/ep.log", "/h", env),
        "/scratch/alice/ep.log"
    );
    assert_eq!(
        gc_config::expand_path("${SCRATCH}/a/$NOPE/b$", "/h", env),
        "/scratch/alice/a/$NOPE/b$"
    );
}
