//! The configuration error type: every error names the source (file path or a label such as
//! `<rendered user config>`), the line and the field when they are known.

use std::fmt;

/// An error found while loading a configuration document.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigError {
    /// The file path or label of the document.
    pub source_name: String,
    /// 1-based line of the offending node, when known.
    pub line: Option<usize>,
    /// Dotted path of the offending field (`engine.provider.max_blocks`), when there is one.
    pub field: Option<String>,
    /// What went wrong.
    pub kind: ConfigErrorKind,
}

/// The kinds of configuration errors.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigErrorKind {
    /// The text is not YAML, or not a single document.
    Syntax(String),
    /// The document (or a section) is not a mapping.
    NotAMapping {
        /// What was found instead (`list`, `string`, …).
        found: &'static str,
    },
    /// An unknown top-level key (upstream: `Unexpected keyword argument`).
    UnknownField,
    /// An option an engine, provider, launcher or address function does not accept; the text
    /// is upstream's `<Class>.__init__() got an unexpected keyword argument '<key>'`.
    UnexpectedKeyword {
        /// The class that rejects the key (`HighThroughputExecutor`, `LocalProvider`, …).
        class: String,
    },
    /// A value of the wrong type.
    WrongType {
        /// What the field accepts.
        expected: &'static str,
        /// A short rendering of the offending value.
        found: String,
    },
    /// A value with the right type but not allowed.
    InvalidValue(String),
    /// A required key is missing (for example `type` of an engine).
    MissingField,
    /// `type` names no known class of this kind.
    UnknownType {
        /// `engine`, `provider`, `launcher` or `address`.
        what: &'static str,
        /// The offending type name.
        name: String,
        /// The valid names.
        valid: &'static [&'static str],
    },
    /// A path that must exist does not.
    PathNotFound {
        /// Which path (upstream's wording, e.g. `Identity mapping config path`).
        what: &'static str,
        /// The path as configured.
        path: String,
    },
    /// An `engine` key in a core (`config.yaml`) configuration.
    EngineInCoreConfig,
    /// A user endpoint configuration without `engine`.
    MissingEngine,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.source_name)?;
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        let field = self.field.as_deref().unwrap_or("");
        match &self.kind {
            ConfigErrorKind::Syntax(msg) => write!(f, "Invalid config syntax: {msg}"),
            ConfigErrorKind::NotAMapping { found } if field.is_empty() => write!(
                f,
                "Invalid config syntax: the document must be a mapping, not a {found}"
            ),
            ConfigErrorKind::NotAMapping { found } => {
                write!(f, "field `{field}`: expected a mapping, got a {found}")
            }
            ConfigErrorKind::UnknownField => {
                write!(f, "unknown field `{field}` (Unexpected keyword argument)")
            }
            ConfigErrorKind::UnexpectedKeyword { class } => {
                let key = field.rsplit('.').next().unwrap_or(field);
                write!(
                    f,
                    "field `{field}`: {class}.__init__() got an unexpected keyword argument '{key}'"
                )
            }
            ConfigErrorKind::WrongType { expected, found } => {
                write!(
                    f,
                    "field `{field}`: Input should be {expected} (got {found})"
                )
            }
            ConfigErrorKind::InvalidValue(msg) => write!(f, "field `{field}`: {msg}"),
            ConfigErrorKind::MissingField => write!(f, "field `{field}`: Field required"),
            ConfigErrorKind::UnknownType { what, name, valid } => write!(
                f,
                "field `{field}`: '{name}' is not a valid {what}. Valid options are: {}",
                valid.join("\n\t")
            ),
            ConfigErrorKind::PathNotFound { what, path } => {
                write!(f, "field `{field}`: {what} not found ({path})")
            }
            ConfigErrorKind::EngineInCoreConfig => write!(
                f,
                "configuration contains an `engine` field; endpoint will not start. (Hint: move the `engine` block to `user_config_template.yaml.j2`)"
            ),
            ConfigErrorKind::MissingEngine => write!(
                f,
                "configuration is missing an `engine` field; endpoint will not start. (Hint: is `user_config_template.yaml.j2` missing an `engine` block?)"
            ),
        }
    }
}

/// Upstream's exact message when a core endpoint's `config.yaml` has an `engine` field
/// (ENDPOINT.md §2.7); the CLI prints it after `Error: `.
pub fn engine_in_core_config_message(endpoint_name: &str) -> String {
    format!(
        "Configuration for endpoint {endpoint_name} contains an `engine` field; endpoint will not start. (Hint: move the `engine` block to `user_config_template.yaml.j2`)"
    )
}

/// Upstream's exact message when a rendered user endpoint configuration lacks `engine`
/// (ENDPOINT.md §2.7).
pub fn missing_engine_message(uep_name: &str) -> String {
    format!(
        "Configuration for endpoint {uep_name} is missing an `engine` field; endpoint will not start. (Hint: is `user_config_template.yaml.j2` missing an `engine` block?)"
    )
}
