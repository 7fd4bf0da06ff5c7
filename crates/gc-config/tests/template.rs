//! Template rendering acceptance tests (ENDPOINT.md §3.5, §3.6, §3.8).
//!
//! The `fixtures/default_*.out` files are the output of the upstream 4.19.0
//! `globus-compute-endpoint render-user-config` for the same inputs (it prints the rendered
//! text plus one newline).

use std::collections::BTreeMap;

use gc_config::defaults::{USER_CONFIG_SCHEMA_JSON, USER_CONFIG_TEMPLATE_J2};
use gc_config::template::{RenderInputs, TemplateError, render_and_load, render_user_config};
use gc_config::{CoreEndpointConfig, EngineType};
use serde_json::{Value, json};

const RUNTIME: &str = include_str!("fixtures/rt.json");
const OPTS: &str = include_str!("fixtures/opts.json");

fn render(
    template: &str,
    opts: Value,
    runtime: Value,
    schema: Option<&Value>,
) -> Result<String, TemplateError> {
    let parent = CoreEndpointConfig::default();
    let identity = json!({"local": {"uname": "root", "uid": 0, "gid": 0, "gecos": "root", "shell": "/bin/bash", "dir": "/root", "groups": [0]}, "globus": {"id": null}});
    let env = BTreeMap::from([("HOME".to_string(), "/root".to_string())]);
    render_user_config(&RenderInputs {
        template,
        template_dir: None,
        schema,
        user_opts: &opts,
        user_runtime: &runtime,
        parent_config: &parent,
        mapped_identity: &identity,
        env: &env,
    })
}

fn fixture(text: &str) -> &str {
    text.strip_suffix('\n')
        .expect("fixture ends with the CLI's newline")
}

#[test]
fn default_template_with_runtime_and_no_options() {
    let out = render(
        USER_CONFIG_TEMPLATE_J2,
        json!({}),
        serde_json::from_str(RUNTIME).unwrap(),
        None,
    )
    .unwrap();
    assert_eq!(out, fixture(include_str!("fixtures/default_rt_noopts.out")));
    // The visible facts of §3.6.
    assert!(out.starts_with(
        " \nidle_heartbeats_soft: 10\nidle_heartbeats_hard: 5760\n\nendpoint_setup: \n\nengine:\n"
    ));
    assert!(out.contains("      ENV_PATH=\"$HOME/.globus_compute/venvs/py3.11.7-sdk4.19.0\"\n      uv venv --allow-existing \"$ENV_PATH\" --python 3.11.7\n"));
    assert!(out.ends_with(
        "      UV_EXCLUDE_NEWER=false uv pip install globus-compute-endpoint==4.19.0   "
    ));
}

#[test]
fn default_template_with_runtime_and_options() {
    let opts: Value = serde_json::from_str(OPTS).unwrap();
    let schema: Value = serde_json::from_str(USER_CONFIG_SCHEMA_JSON).unwrap();
    let out = render(
        USER_CONFIG_TEMPLATE_J2,
        opts,
        serde_json::from_str(RUNTIME).unwrap(),
        Some(&schema),
    )
    .unwrap();
    assert_eq!(out, fixture(include_str!("fixtures/default_rt_opts.out")));
    assert!(out.contains("endpoint_setup: \"echo setup\"\n"));
    assert!(out.contains("      uv pip install -r <(echo -e \"numpy\\nscipy==1.0\")  \n"));
    assert!(out.ends_with("\n      eval '$(echo -e \"module load x; echo \\\"hi\\\"\" )' "));
}

#[test]
fn default_template_without_runtime() {
    let out = render(USER_CONFIG_TEMPLATE_J2, json!({}), json!({}), None).unwrap();
    assert_eq!(
        out,
        fixture(include_str!("fixtures/default_nort_noopts.out"))
    );
    assert!(!out.contains("uv venv"));
}

#[test]
fn default_template_loads_as_user_config() {
    let parent = CoreEndpointConfig::default();
    let opts: Value = serde_json::from_str(OPTS).unwrap();
    let runtime: Value = serde_json::from_str(RUNTIME).unwrap();
    let env = BTreeMap::new();
    let config = render_and_load(
        &RenderInputs {
            template: USER_CONFIG_TEMPLATE_J2,
            template_dir: None,
            schema: None,
            user_opts: &opts,
            user_runtime: &runtime,
            parent_config: &parent,
            mapped_identity: &json!({}),
            env: &env,
        },
        "<rendered>",
    )
    .unwrap();
    assert_eq!(config.engine.engine_type, EngineType::GlobusCompute);
    assert_eq!(config.idle_heartbeats_soft, 10);
    assert_eq!(config.endpoint_setup.as_deref(), Some("echo setup"));
    let provider = config.engine.provider.as_ref().unwrap();
    let worker_init = provider
        .options
        .get("worker_init")
        .unwrap()
        .as_str()
        .unwrap();
    assert!(worker_init.contains("uv pip install -r <(echo -e \"numpy\\nscipy==1.0\")"));
}

#[test]
fn reserved_words_are_refused_in_order() {
    for word in ["parent_config", "user_runtime", "mapped_identity", "_GC"] {
        let err = render("x: 1", json!({ word: 1 }), json!({}), None).unwrap_err();
        assert_eq!(err.python_type(), "ValueError");
        assert_eq!(
            err.to_string(),
            format!("'{word}' is a reserved word and cannot be passed in via user config")
        );
    }
    let err = render(
        "x: 1",
        json!({"_GC": 1, "parent_config": 2}),
        json!({}),
        None,
    )
    .unwrap_err();
    assert_eq!(
        format!("({}) {}", err.python_type(), err),
        "(ValueError) 'parent_config' is a reserved word and cannot be passed in via user config"
    );
}

#[test]
fn schema_violations_read_like_python_jsonschema() {
    let schema = json!({"type": "object", "properties": {"x": {"type": "integer"}}, "additionalProperties": false});
    let err = render("x: 1", json!({"y": 1}), json!({}), Some(&schema)).unwrap_err();
    assert_eq!(
        format!("({}) {}", err.python_type(), err),
        "(ValidationError) Additional properties are not allowed ('y' was unexpected)\n\nFailed validating 'additionalProperties' in schema:\n    {'type': 'object',\n     'properties': {'x': {'type': 'integer'}},\n     'additionalProperties': False}\n\nOn instance:\n    {'y': 1}"
    );
    let default_schema: Value = serde_json::from_str(USER_CONFIG_SCHEMA_JSON).unwrap();
    let err = render(
        "x: 1",
        json!({"worker_init": 5}),
        json!({}),
        Some(&default_schema),
    )
    .unwrap_err();
    assert_eq!(
        err.python_qualified_type(),
        "jsonschema.exceptions.ValidationError"
    );
    assert_eq!(
        err.to_string(),
        "5 is not of type 'string'\n\nFailed validating 'type' in schema['properties']['worker_init']:\n    {'type': 'string'}\n\nOn instance['worker_init']:\n    5"
    );
    let err = render(
        "x: 1",
        json!({"requirements": ""}),
        json!({}),
        Some(&default_schema),
    )
    .unwrap_err();
    assert!(
        err.to_string().starts_with("'' should be non-empty\n"),
        "{err}"
    );
}

#[test]
fn non_scalars_print_like_python() {
    let opts: Value = serde_json::from_str(
        r#"{"foo":{"x":"y","z":[1,"w"]},"bar":["a",2],"baz":null,"n":10,"t":true,"fl":1.5e20}"#,
    )
    .unwrap();
    let out = render(
        "a: {{ foo }} / b: {{ bar }} / c: {{ baz }} / d: {{ n }} / e: {{ t }} / f: {{ fl }}",
        opts,
        json!({}),
        None,
    )
    .unwrap();
    assert_eq!(
        out,
        "a: {'x': '\"y\"', 'z': [1, '\"w\"']} / b: ['\"a\"', 2] / c: null / d: 10 / e: True / f: 1.5e+20"
    );
    let out = render("{{ _GC.mapped_identity.local }} {{ _GC.parent_config.heartbeat_period }} {{ _GC.parent_config.pam.enable }} {{ _GC.parent_config.display_name }}", json!({}), json!({}), None).unwrap();
    assert_eq!(
        out,
        "{'uname': 'root', 'uid': 0, 'gid': 0, 'gecos': 'root', 'shell': '/bin/bash', 'dir': '/root', 'groups': [0]} 30 False None"
    );
}

#[test]
fn strict_undefined_shell_escape_and_aliases() {
    let err = render("a: {{ missing }}", json!({}), json!({}), None).unwrap_err();
    assert_eq!(
        format!("({}) {}", err.python_type(), err),
        "(UndefinedError) 'missing' is undefined"
    );
    let out = render(
        "{{ foo | shell_escape }}",
        json!({"foo": "-lh; rm -rf /"}),
        json!({}),
        None,
    )
    .unwrap();
    assert_eq!(out, "\"'-lh; rm -rf /'\"");
    let out = render("{% if '3.12' in user_runtime.python_version %}new{% else %}old{% endif %} {{ _GC.env.HOME }}", json!({}), json!({"python_version": "3.12.1 (main)"}), None).unwrap();
    assert_eq!(out, "new /root");
    let out = render("{{ user_runtime.anything }}", json!({}), json!({}), None).unwrap();
    assert_eq!(out, "None");
    assert_eq!(
        render("a: 1", Value::Null, Value::Null, None).unwrap(),
        "a: 1"
    );
    let err = render("a: 1", json!([1]), json!({}), None).unwrap_err();
    assert_eq!(err.python_type(), "ValueError");
    let err = render("{% if %}", json!({}), json!({}), None).unwrap_err();
    assert_eq!(err.python_type(), "TemplateSyntaxError");
    let out = render(
        "{% if env == '\"test\"' %}yes{% endif %}",
        json!({"env": "test"}),
        json!({}),
        None,
    )
    .unwrap();
    assert_eq!(out, "yes");
}

#[test]
fn template_and_schema_files() {
    use gc_config::template::{
        SchemaFileError, read_user_config_schema, read_user_config_template,
    };
    let dir = tempfile::tempdir().unwrap();
    let j2 = dir.path().join("user_config_template.yaml.j2");
    let plain = dir.path().join("user_config_template.yaml");
    std::fs::write(&plain, "engine: {type: ThreadPoolEngine}").unwrap();
    let (text, used) = read_user_config_template(&j2).unwrap();
    assert_eq!(
        (text.as_str(), used),
        ("engine: {type: ThreadPoolEngine}", plain)
    );
    std::fs::write(&j2, "a").unwrap();
    assert_eq!(read_user_config_template(&j2).unwrap().1, j2);

    let schema = dir.path().join("user_config_schema.json");
    assert_eq!(read_user_config_schema(&schema).unwrap(), None);
    std::fs::write(&schema, "{not json").unwrap();
    let err = read_user_config_schema(&schema).unwrap_err();
    assert!(matches!(err, SchemaFileError::NotJson { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "The user config schema is not valid JSON: {}",
            schema.display()
        )
    );
    std::fs::write(&schema, USER_CONFIG_SCHEMA_JSON).unwrap();
    assert!(read_user_config_schema(&schema).unwrap().is_some());
}

#[test]
fn high_assurance_rule() {
    use gc_config::template::apply_high_assurance;
    let rendered = "engine:\n  type: ThreadPoolEngine\n";
    assert_eq!(apply_high_assurance(rendered, false).unwrap(), rendered);
    assert_eq!(
        apply_high_assurance(rendered, true).unwrap(),
        format!("high_assurance: true\n{rendered}")
    );
    let err = apply_high_assurance(
        "high_assurance: false\nengine: {type: ThreadPoolEngine}\n",
        false,
    )
    .unwrap_err();
    assert_eq!(
        format!("({}) {err}", err.python_type()),
        "(ValueError) Error generating template; contact endpoint administrator"
    );
}

#[test]
fn sibling_templates_load_only_with_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("engine.yaml.j2"),
        "engine:\n  type: {{ engine_type | default('ThreadPoolEngine') }}",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("macros.j2"),
        "{% macro q(x) %}[{{ x }}]{% endmacro %}",
    )
    .unwrap();
    let template =
        "{% import 'macros.j2' as m %}{% include 'engine.yaml.j2' %}\nendpoint_setup: {{ m.q(1) }}";
    let parent = CoreEndpointConfig::default();
    let env = BTreeMap::new();
    let empty = json!({});
    let inputs = |template_dir| RenderInputs {
        template,
        template_dir,
        schema: None,
        user_opts: &empty,
        user_runtime: &empty,
        parent_config: &parent,
        mapped_identity: &empty,
        env: &env,
    };
    let out = render_user_config(&inputs(Some(dir.path()))).unwrap();
    assert_eq!(
        out,
        "engine:\n  type: ThreadPoolEngine\nendpoint_setup: [1]"
    );
    let err = render_user_config(&inputs(None)).unwrap_err();
    assert_eq!(err.python_type(), "TemplateNotFound");
    let escape = RenderInputs {
        template: "{% include '../secret' %}",
        ..inputs(Some(dir.path()))
    };
    assert_eq!(
        render_user_config(&escape).unwrap_err().python_type(),
        "TemplateNotFound"
    );
}

#[test]
fn default_filter_and_defined_test_accept_undefined_options() {
    // Jinja2's StrictUndefined still lets `default` and `is defined` look at a missing
    // option; only printing or operating on it is an error (ENDPOINT.md §3.3).
    let out = render(
        "a: {{ x | default(0) }}\nb: {{ y is defined }}\nc: {{ z | default('q') }}\n\
         d: {% if w | default(false) %}yes{% else %}no{% endif %}\n\
         e: {{ provider | default('local') == 'slurm' }}",
        json!({"z": "v"}),
        json!({}),
        None,
    )
    .unwrap();
    assert_eq!(out, "a: 0\nb: False\nc: \"v\"\nd: no\ne: False");
    let err = render("a: {{ x }}", json!({}), json!({}), None).unwrap_err();
    assert_eq!(err.python_type(), "UndefinedError");
}
