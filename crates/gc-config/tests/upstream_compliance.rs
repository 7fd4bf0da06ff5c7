//! The same rendering scenarios run against upstream 4.19.0 (`globus-compute-endpoint
//! render-user-config` from the project's Python venv) and against this crate, in one test
//! run: outputs and error texts must be identical.
//!
//! The venv is `$GCRS_VENV`, else `<workspace root>/.venv` (made by `scripts/setup.sh`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use gc_config::defaults::{USER_CONFIG_SCHEMA_JSON, USER_CONFIG_TEMPLATE_J2};
use gc_config::template::{RenderInputs, render_user_config};
use gc_config::{CoreEndpointConfig, LoadOptions};
use serde_json::{Value, json};

struct Case {
    name: &'static str,
    template: &'static str,
    opts: Value,
    runtime: Value,
    schema: Option<Value>,
}

fn upstream_cli() -> PathBuf {
    let venv = std::env::var_os("GCRS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv"));
    let cli = venv.join("bin/globus-compute-endpoint");
    assert!(
        cli.is_file(),
        "upstream endpoint not found at {} — run scripts/setup.sh or set GCRS_VENV",
        cli.display()
    );
    cli
}

/// Upstream's default mapped identity is the invoking user; only its name is compared.
fn identity() -> Value {
    let out = Command::new("id").arg("-un").output().expect("run id -un");
    let uname = String::from_utf8(out.stdout).unwrap().trim().to_string();
    json!({"local": {"uname": uname}, "globus": {"id": "00000000-0000-0000-0000-000000000000"}})
}

fn full_runtime() -> Value {
    json!({
        "globus_compute_sdk_version": "4.19.0",
        "python_version": "3.12.1 (main, Dec  8 2023) [GCC 11.4.0]",
        "python": {"version": "3.12.1", "version_tuple": [3, 12, 1]}
    })
}

/// `Ok(stdout)` or `Err("(<qualified type>) <message>")`, as upstream prints them.
fn upstream(cli: &Path, dir: &Path, case: &Case) -> Result<String, String> {
    let write = |name: &str, text: &str| {
        let path = dir.join(format!("{}-{name}", case.name));
        std::fs::write(&path, text).unwrap();
        path
    };
    let mut cmd = Command::new(cli);
    cmd.arg("render-user-config")
        .arg("-t")
        .arg(write("template.j2", case.template))
        .arg("-o")
        .arg(write("opts.json", &case.opts.to_string()))
        .arg("--user-runtime")
        .arg(write("runtime.json", &case.runtime.to_string()))
        .arg("--parent-config")
        .arg(write(
            "parent.yaml",
            "display_name: null\nheartbeat_period: 12\n",
        ))
        .env("HOME", dir)
        .env("GLOBUS_COMPUTE_USER_DIR", dir.join("gc"));
    if let Some(schema) = &case.schema {
        cmd.arg("-s").arg(write("schema.json", &schema.to_string()));
    }
    let out = cmd.output().expect("run upstream render-user-config");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    if out.status.success() {
        return Ok(stdout.strip_suffix('\n').unwrap_or(&stdout).to_string());
    }
    const MARK: &str = "Error: Failed to render user configuration template.\n\t";
    match stderr.find(MARK) {
        Some(pos) => Err(stderr[pos + MARK.len()..]
            .trim_end_matches('\n')
            .to_string()),
        None => panic!("{}: unexpected upstream failure:\n{stderr}", case.name),
    }
}

fn ours(case: &Case) -> Result<String, String> {
    let parent = CoreEndpointConfig::from_yaml(
        "display_name: null\nheartbeat_period: 12\n",
        "parent.yaml",
        LoadOptions::default(),
    )
    .unwrap();
    let env = BTreeMap::new();
    render_user_config(&RenderInputs {
        template: case.template,
        template_dir: None,
        schema: case.schema.as_ref(),
        user_opts: &case.opts,
        user_runtime: &case.runtime,
        parent_config: &parent,
        mapped_identity: &identity(),
        env: &env,
    })
    .map_err(|e| format!("({}) {e}", e.python_qualified_type()))
}

#[test]
fn renders_match_upstream() {
    let cli = upstream_cli();
    let dir = tempfile::tempdir().unwrap();
    let schema: Value = serde_json::from_str(USER_CONFIG_SCHEMA_JSON).unwrap();
    let cases = vec![
        Case { name: "default-empty", template: USER_CONFIG_TEMPLATE_J2, opts: json!({}), runtime: json!({}), schema: Some(schema.clone()) },
        Case { name: "default-runtime", template: USER_CONFIG_TEMPLATE_J2, opts: json!({}), runtime: full_runtime(), schema: Some(schema.clone()) },
        Case { name: "default-worker-init", template: USER_CONFIG_TEMPLATE_J2, opts: json!({"worker_init": "module load 'x'\nexport A=\"é\""}), runtime: json!({}), schema: Some(schema.clone()) },
        Case { name: "default-reqs", template: USER_CONFIG_TEMPLATE_J2, opts: json!({"requirements": "numpy>=2\ntorch", "endpoint_setup": "echo $HOME"}), runtime: full_runtime(), schema: Some(schema.clone()) },
        Case { name: "default-bad-type", template: USER_CONFIG_TEMPLATE_J2, opts: json!({"worker_init": 5}), runtime: json!({}), schema: Some(schema.clone()) },
        Case { name: "default-empty-reqs", template: USER_CONFIG_TEMPLATE_J2, opts: json!({"requirements": ""}), runtime: json!({}), schema: Some(schema) },
        Case {
            name: "non-scalars",
            template: "a: {{ foo }} / b: {{ bar }} / c: {{ baz }} / d: {{ n }} / e: {{ t }} / f: {{ fl }} / g: {{ small }} / h: {{ whole }}",
            opts: serde_json::from_str(r#"{"foo":{"x":"y","z":[1,"w"]},"bar":["a",2],"baz":null,"n":10,"t":true,"fl":1.5e20,"small":0.00001,"whole":3.0}"#).unwrap(),
            runtime: json!({}),
            schema: None,
        },
        Case {
            name: "gc-variables",
            template: "{{ _GC.parent_config.heartbeat_period }} {{ _GC.parent_config.display_name }} {{ _GC.parent_config.pam.enable }} {{ _GC.mapped_identity.local.uname }} {{ _GC.user_runtime.python.version_tuple }} {{ user_runtime.python_version }}",
            opts: json!({}),
            runtime: full_runtime(),
            schema: None,
        },
        Case {
            name: "conditions-and-filters",
            template: "{% if env == '\"prod\"' %}prod{% endif %} {{ cmd | shell_escape }} {{ n | default(3) }} {{ lines | indent(2) }}|{{ lines | indent(2, true) }}|{{ items | join(',') }}",
            opts: json!({"env": "prod", "cmd": "-lh; rm -rf /", "lines": "a\nb", "items": ["x", "y"]}),
            runtime: json!({}),
            schema: None,
        },
        Case {
            name: "python-methods",
            template: "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %} {{ s.strip('\"').upper() }} {{ s.split(' ') }} {{ s.startswith('\"a') }} {{ d.get('x') }} {{ d.get('nope', 7) }} {{ d.keys() | list }}",
            opts: json!({"d": {"x": 1, "y": "z"}, "s": "ab cd"}),
            runtime: json!({}),
            schema: None,
        },
        Case {
            name: "tojson",
            template: "a: {{ d | tojson }}\nb: {{ l | tojson(2) }}\nc: {{ _GC.user_runtime | tojson }}",
            opts: json!({"d": {"z": [1, 2.5, null, true], "a": "<b>'&"}, "l": ["x", {"k": 1e-5}]}),
            runtime: full_runtime(),
            schema: None,
        },
        Case { name: "reserved", template: "x: 1", opts: json!({"_GC": 1}), runtime: json!({}), schema: None },
        Case { name: "undefined", template: "a: {{ missing }}", opts: json!({}), runtime: json!({}), schema: None },
        Case { name: "undefined-later", template: "a: {{ x }}\nb: {% if y == 1 %}{{ zzz }}{% endif %}", opts: json!({"x": 1, "y": 1}), runtime: json!({}), schema: None },
        Case { name: "no-attribute-dict", template: "a: {{ foo.x }} {{ foo.nope }}", opts: json!({"foo": {"x": 1}}), runtime: json!({}), schema: None },
        Case { name: "no-attribute-str", template: "a: {{ foo.nope }}", opts: json!({"foo": "bar"}), runtime: json!({}), schema: None },
        Case { name: "no-attribute-runtime", template: "a: {{ _GC.user_runtime.python.nope }}", opts: json!({}), runtime: full_runtime(), schema: None },
        Case { name: "security-str", template: "a: {{ foo.__class__ }}", opts: json!({"foo": "bar"}), runtime: json!({}), schema: None },
        Case { name: "security-dict", template: "a: {{ _GC.user_runtime.__init__ }}", opts: json!({}), runtime: json!({}), schema: None },
        Case { name: "no-attribute-parent", template: "a: {{ _GC.parent_config.nope }}", opts: json!({}), runtime: json!({}), schema: None },
        Case {
            name: "additional-properties",
            template: "x: 1",
            opts: json!({"y": 1}),
            runtime: json!({}),
            schema: Some(json!({"type": "object", "properties": {"x": {"type": "integer"}}, "additionalProperties": false})),
        },
        Case {
            name: "required-and-enum",
            template: "x: 1",
            opts: json!({"queue": "gpu"}),
            runtime: json!({}),
            schema: Some(json!({"type": "object", "properties": {"queue": {"enum": ["debug", "prod"]}}, "required": ["queue"]})),
        },
    ];
    let mut mismatches = Vec::new();
    for case in &cases {
        let theirs = upstream(&cli, dir.path(), case);
        let mine = ours(case);
        if theirs != mine {
            mismatches.push(format!(
                "case {}:\n upstream: {theirs:?}\n ours:     {mine:?}",
                case.name
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}
