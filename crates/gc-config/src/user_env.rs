//! `user_environment.yaml` (ENDPOINT.md §1.6.6, §4.5 step 4): a flat YAML mapping of
//! environment variables for user endpoint processes.
//!
//! Values (and keys) become strings with Python `str()` (`True`, `1.0`, `None`, `['a']`).
//! Decision on §8 quirk 7: the shipped file promises that `HOME`, `USER` and `PWD` cannot be set
//! there (they come from the user's passwd entry); upstream code lets `HOME`/`USER` through.
//! We keep the documented promise: those three keys are dropped with a warning.

use std::collections::BTreeMap;

use crate::pyfmt;
use crate::yaml::{self, Node, Value};

/// Variables that `user_environment.yaml` may not set.
pub const PROTECTED_VARIABLES: [&str; 3] = ["HOME", "USER", "PWD"];

/// The warning upstream logs (before the details) when the file cannot be used.
pub const UNUSABLE_FILE_WARNING: &str = "Using only default environment variables as no variables read from environment file.  Is it a valid YAML file?  (Hint: the `yq` command line utility may be helpful.)";

/// Why a `user_environment.yaml` could not be used; the caller logs
/// [`UNUSABLE_FILE_WARNING`] plus this and continues with defaults.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{source_name}: line {line}: {message}")]
pub struct UserEnvError {
    /// File path or label.
    pub source_name: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Python `str()` of a YAML node.
pub fn python_str(node: &Node) -> String {
    match &node.value {
        Value::Str(s) => s.clone(),
        _ => python_repr(node),
    }
}

fn python_repr(node: &Node) -> String {
    match &node.value {
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => pyfmt::float_repr(*f),
        Value::Str(s) => pyfmt::str_repr(s),
        Value::Seq(items) => format!(
            "[{}]",
            items.iter().map(python_repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Map(entries) => format!(
            "{{{}}}",
            entries
                .iter()
                .map(|(k, _, v)| format!("{}: {}", pyfmt::str_repr(k), python_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Parse `user_environment.yaml` text. An empty (or comments-only) file gives an empty map.
pub fn load_user_environment(
    text: &str,
    source: &str,
) -> Result<BTreeMap<String, String>, UserEnvError> {
    let err = |line, message: String| UserEnvError {
        source_name: source.to_string(),
        line,
        message,
    };
    let node = match yaml::parse(text) {
        Ok(None) => return Ok(BTreeMap::new()),
        Ok(Some(node)) => node,
        Err(e) => return Err(err(e.line, e.message)),
    };
    let Value::Map(entries) = node.value else {
        return Err(err(
            node.line,
            format!(
                "expected a mapping of variable names to values, got a {}",
                node.type_name()
            ),
        ));
    };
    let mut vars = BTreeMap::new();
    for (key, line, value) in entries {
        if PROTECTED_VARIABLES.contains(&key.as_str()) {
            tracing::warn!(
                "{source}: line {line}: `{key}` cannot be set in user_environment.yaml; it is set from the user's passwd entry (ignored)"
            );
            continue;
        }
        vars.insert(key, python_str(&value));
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_file_defines_nothing() {
        let vars = load_user_environment(
            crate::defaults::USER_ENVIRONMENT_YAML,
            "user_environment.yaml",
        )
        .unwrap();
        assert!(vars.is_empty());
    }

    #[test]
    fn values_become_python_strings() {
        let text = "A: yes\nB: 1.0\nC: ~\nD: [a, 1]\nE: 42\nF: /opt/bin:/usr/bin\nHOME: /x\nUSER: y\nPWD: /z\n";
        let vars = load_user_environment(text, "env.yaml").unwrap();
        let expected: BTreeMap<String, String> = [
            ("A", "True"),
            ("B", "1.0"),
            ("C", "None"),
            ("D", "['a', 1]"),
            ("E", "42"),
            ("F", "/opt/bin:/usr/bin"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(vars, expected);
    }

    #[test]
    fn non_mapping_is_an_error_with_a_line() {
        let err = load_user_environment("- a\n- b\n", "env.yaml").unwrap_err();
        assert_eq!(err.line, 1);
        assert!(
            err.to_string()
                .starts_with("env.yaml: line 1: expected a mapping"),
            "{err}"
        );
        assert!(load_user_environment("a: [\n", "env.yaml").is_err());
    }
}
