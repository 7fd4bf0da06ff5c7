//! The default files `configure` writes, byte-for-byte as upstream 4.19.0 ships them
//! (ENDPOINT.md §1.6.3–§1.6.7).
//!
//! These are data, not code: `configure` copies them verbatim into a new endpoint directory.
//! The bytes live in `crates/gc-config/defaults/` and are embedded with `include_str!`.

/// Source of the generated `config.yaml` (§1.6.3): `display_name: null` plus a newline.
///
/// `configure` loads this, applies its overrides and dumps the result; it is not copied as-is.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("../defaults/default_config.yaml");

/// The 4.19 `user_config_schema.json` (§1.6.4), with a trailing newline.
pub const USER_CONFIG_SCHEMA_JSON: &str = include_str!("../defaults/user_config_schema.json");

/// The 4.19 "dynamic uv" `user_config_template.yaml.j2` (§1.6.5). **No trailing newline.**
pub const USER_CONFIG_TEMPLATE_J2: &str = include_str!("../defaults/user_config_template.yaml.j2");

/// The default `user_environment.yaml` (§1.6.6): comments only, so it defines no variables.
pub const USER_ENVIRONMENT_YAML: &str = include_str!("../defaults/user_environment.yaml");

/// The default `example_identity_mapping_config.json` (§1.6.7), with a trailing newline.
pub const EXAMPLE_IDENTITY_MAPPING_CONFIG_JSON: &str =
    include_str!("../defaults/example_identity_mapping_config.json");

/// File names under which `configure` writes the defaults into an endpoint directory.
pub mod file_names {
    /// The MEP configuration.
    pub const CONFIG_YAML: &str = "config.yaml";
    /// The UEP configuration template.
    pub const USER_CONFIG_TEMPLATE: &str = "user_config_template.yaml.j2";
    /// The JSON schema for user options.
    pub const USER_CONFIG_SCHEMA: &str = "user_config_schema.json";
    /// Environment variables for UEPs.
    pub const USER_ENVIRONMENT: &str = "user_environment.yaml";
    /// Example identity mapping written when identity mapping is chosen without a file.
    pub const EXAMPLE_IDENTITY_MAPPING: &str = "example_identity_mapping_config.json";
    /// Identity mapping copied from `--id-mapping-config`.
    pub const IDENTITY_MAPPING: &str = "identity_mapping_config.json";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_has_no_trailing_newline() {
        assert!(USER_CONFIG_TEMPLATE_J2.ends_with("| indent(6) }}"));
        assert!(USER_CONFIG_TEMPLATE_J2.starts_with("{#-\n  This is the default"));
    }

    #[test]
    fn data_files_end_with_one_newline() {
        for text in [
            DEFAULT_CONFIG_YAML,
            USER_CONFIG_SCHEMA_JSON,
            USER_ENVIRONMENT_YAML,
            EXAMPLE_IDENTITY_MAPPING_CONFIG_JSON,
        ] {
            assert!(text.ends_with('\n') && !text.ends_with("\n\n"), "{text:?}");
        }
        assert_eq!(DEFAULT_CONFIG_YAML, "display_name: null\n");
    }

    #[test]
    fn json_defaults_parse() {
        let schema: serde_json::Value = serde_json::from_str(USER_CONFIG_SCHEMA_JSON).unwrap();
        assert_eq!(schema["properties"]["requirements"]["minLength"], 1);
        let idmap: serde_json::Value =
            serde_json::from_str(EXAMPLE_IDENTITY_MAPPING_CONFIG_JSON).unwrap();
        assert_eq!(idmap[0]["DATA_TYPE"], "expression_identity_mapping#1.0.0");
    }
}
