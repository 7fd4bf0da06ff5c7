//! Untrusted input never panics: configuration text, user environment files, templates and
//! user options (the template and options come from users through the service).

use std::collections::BTreeMap;

use gc_config::template::{RenderInputs, render_user_config};
use gc_config::user_env::load_user_environment;
use gc_config::{CoreEndpointConfig, LoadOptions, UserEndpointConfig, load_config};
use proptest::prelude::*;
use serde_json::json;

/// Fragments that steer random text towards the interesting parts of the grammar.
fn yamlish() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "engine:",
        "  type: GlobusComputeEngine",
        "  provider:",
        "    type: SlurmProvider",
        "    launcher: {type: SrunLauncher}",
        "  address: {type: address_by_interface, ifname: x}",
        "heartbeat_period: ",
        "1:00:00",
        "yes",
        "~",
        "&a",
        "*a",
        "<<: *a",
        "- ",
        "'",
        "\"",
        "[",
        "]",
        "{",
        "}",
        ": ",
        "\n",
        "  ",
        "!!str",
        "!!python/object",
        "0x1F",
        ".inf",
        "pam: {}",
        "allowed_functions: [",
        "display_name: None",
        "idle_heartbeats_soft: -1",
        "\t",
        "#",
        "é",
        "...",
        "---",
    ]);
    prop::collection::vec(
        prop_oneof![pieces.prop_map(str::to_string), "\\PC{0,6}"],
        0..30,
    )
    .prop_map(|parts| parts.concat())
}

fn jinjaish() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "{{",
        "}}",
        "{%",
        "%}",
        "{#",
        "#}",
        "-",
        " x ",
        " _GC.user_runtime ",
        ".python",
        ".__class__",
        " | indent(2)",
        " | shell_escape",
        " | tojson",
        " | default()",
        "if ",
        "endif",
        "for k in x ",
        "endfor",
        "set y = ",
        "endset",
        "include 'a' ",
        " ~ ",
        "[1:-1]",
        " parent_config.nope ",
        ".items()",
        "(",
        ")",
        "'",
        "\"",
        "\n",
    ]);
    prop::collection::vec(
        prop_oneof![pieces.prop_map(str::to_string), "\\PC{0,4}"],
        0..25,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn configuration_text_never_panics(text in yamlish()) {
        let _ = load_config(&text, "fuzz", LoadOptions { check_paths: false });
        let _ = CoreEndpointConfig::from_yaml(&text, "fuzz", LoadOptions::default());
        let _ = UserEndpointConfig::from_yaml(&text, "fuzz");
        let _ = load_user_environment(&text, "fuzz");
    }

    #[test]
    fn templates_and_options_never_panic(template in jinjaish(), key in "[a-z_]{1,6}", value in "\\PC{0,8}") {
        let parent = CoreEndpointConfig::default();
        let env = BTreeMap::new();
        let opts = json!({ "x": value, key: [1, null, {"k": "v"}] });
        let _ = render_user_config(&RenderInputs {
            template: &template,
            template_dir: None,
            schema: Some(&json!({"type": "object", "properties": {"x": {"type": "string", "pattern": "^a"}}})),
            user_opts: &opts,
            user_runtime: &json!({"python": {"version_tuple": [3, 12]}}),
            parent_config: &parent,
            mapped_identity: &json!({}),
            env: &env,
        });
    }
}
