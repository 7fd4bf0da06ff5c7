//! Loading and validating a mapping file (IDENTITY-MAPPING.md §2): the whole file is checked at
//! once and one bad element rejects all of it.

use crate::dialect::{self, DialectError};
use crate::json::{self, Json, JsonError};
use crate::pyre::PyRegex;

/// `DATA_TYPE` of expression mappings.
pub const EXPRESSION_DATA_TYPE: &str = "expression_identity_mapping#1.0.0";
/// `DATA_TYPE` of external-program mappings.
pub const EXTERNAL_DATA_TYPE: &str = "external_identity_mapping#1.0.0";
/// Mapping files larger than this are rejected without being parsed.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;

/// Why a mapping file is rejected. Positions are 0-based list indexes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("mapping file is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge,
    /// The file is not JSON.
    #[error("mapping file is not valid JSON: {0}")]
    Json(#[from] JsonError),
    /// The top-level value is not a list of configurations.
    #[error("mapping file must be a JSON list of mapping configurations, not {0}")]
    NotAList(&'static str),
    /// A list element is not an object.
    #[error("configuration {index}: must be an object, not {kind}")]
    NotAnObject {
        /// Position in the list.
        index: usize,
        /// JSON kind found.
        kind: &'static str,
    },
    /// `DATA_TYPE` missing, empty, or not a string.
    #[error("configuration {index}: missing or invalid DATA_TYPE")]
    BadDataType {
        /// Position in the list.
        index: usize,
    },
    /// A known type name with a version other than `1.0.0`.
    #[error("configuration {index}: unsupported DATA_TYPE {data_type:?}")]
    UnsupportedVersion {
        /// Position in the list.
        index: usize,
        /// The `DATA_TYPE` given.
        data_type: String,
    },
    /// `mappings` of an expression configuration is missing or not a list of objects.
    #[error("configuration {index}: 'mappings' must be a list of objects ({why})")]
    BadMappings {
        /// Position in the list.
        index: usize,
        /// What is wrong.
        why: &'static str,
    },
    /// An expression entry lacks a required member or has a non-string `match`.
    #[error("configuration {index}, mapping {entry}: {why}")]
    BadEntry {
        /// Position of the configuration.
        index: usize,
        /// Position of the entry in `mappings`.
        entry: usize,
        /// What is wrong.
        why: String,
    },
    /// An expression entry's `match` is rejected by the dialect checks or does not compile.
    #[error("configuration {index}, mapping {entry}: match {text:?}: {error}")]
    BadMatch {
        /// Position of the configuration.
        index: usize,
        /// Position of the entry in `mappings`.
        entry: usize,
        /// The `match` text.
        text: String,
        /// Why it was rejected.
        error: DialectError,
    },
    /// `command` of an external configuration is missing, null, empty or not a list.
    #[error("configuration {index}: 'command' must be a non-empty list")]
    BadCommand {
        /// Position in the list.
        index: usize,
    },
}

/// One expression rule, compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Position in `mappings`.
    pub position: usize,
    /// The `source` member (checked to be a string only when used).
    pub source: Json,
    /// The `match` text as written.
    pub match_text: String,
    /// The `output` member (checked to be a string only when used).
    pub output: Json,
    /// `literal`, by truthiness.
    pub literal: bool,
    /// `ignore_case`, by truthiness.
    pub ignore_case: bool,
    /// The compiled pattern.
    pub regex: PyRegex,
}

/// The kind-specific part of a configuration.
#[derive(Debug, Clone)]
pub enum ConfigKind {
    /// `expression_identity_mapping#1.0.0`.
    Expression(Vec<Rule>),
    /// `external_identity_mapping#1.0.0`: the configured argv (before `-c … -s … -a`).
    External(Vec<String>),
}

/// One mapping configuration of the file.
#[derive(Debug, Clone)]
pub struct Configuration {
    /// Position in the file's list.
    pub index: usize,
    /// What it does.
    pub kind: ConfigKind,
}

/// A validated mapping file.
#[derive(Debug, Clone, Default)]
pub struct MappingFile {
    /// Known configurations, in file order.
    pub configurations: Vec<Configuration>,
    /// Elements skipped because of an unknown type name: position and `DATA_TYPE`.
    pub skipped: Vec<(usize, String)>,
}

fn kind_name(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Int(_) | Json::Float(_) => "a number",
        Json::Str(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

impl MappingFile {
    /// Parse and validate the bytes of a mapping file.
    pub fn from_bytes(bytes: &[u8]) -> Result<MappingFile, LoadError> {
        if bytes.len() > MAX_FILE_BYTES {
            return Err(LoadError::TooLarge);
        }
        MappingFile::from_json(&json::parse_bytes(bytes)?)
    }

    /// Validate an already parsed mapping document.
    pub fn from_json(doc: &Json) -> Result<MappingFile, LoadError> {
        let items: &[Json] = match doc {
            Json::Array(items) => items,
            // The reference iterates `doc or []`: falsy values are "no configurations".
            v if !v.truthy() => &[],
            v => return Err(LoadError::NotAList(kind_name(v))),
        };
        let mut file = MappingFile::default();
        for (index, item) in items.iter().enumerate() {
            if !matches!(item, Json::Object(_)) {
                return Err(LoadError::NotAnObject {
                    index,
                    kind: kind_name(item),
                });
            }
            let data_type = match item.get("DATA_TYPE") {
                Some(Json::Str(s)) if !s.is_empty() => s.as_str(),
                _ => return Err(LoadError::BadDataType { index }),
            };
            let name = data_type.split('#').next().unwrap_or_default();
            let kind = match name {
                "expression_identity_mapping" => {
                    check_version(index, data_type, EXPRESSION_DATA_TYPE)?;
                    ConfigKind::Expression(load_rules(index, item.get("mappings"))?)
                }
                "external_identity_mapping" => {
                    check_version(index, data_type, EXTERNAL_DATA_TYPE)?;
                    ConfigKind::External(load_command(index, item.get("command"))?)
                }
                _ => {
                    tracing::warn!(
                        index,
                        data_type,
                        "no identity mapper for this DATA_TYPE; skipped"
                    );
                    file.skipped.push((index, data_type.to_string()));
                    continue;
                }
            };
            file.configurations.push(Configuration { index, kind });
        }
        Ok(file)
    }
}

fn check_version(index: usize, got: &str, want: &str) -> Result<(), LoadError> {
    if got == want {
        Ok(())
    } else {
        Err(LoadError::UnsupportedVersion {
            index,
            data_type: got.to_string(),
        })
    }
}

fn load_rules(index: usize, mappings: Option<&Json>) -> Result<Vec<Rule>, LoadError> {
    let bad = |why| LoadError::BadMappings { index, why };
    let entries: &[Json] = match mappings {
        None => return Err(bad("missing")),
        Some(Json::Array(items)) => items,
        // Iterating an empty string or object yields nothing in the reference.
        Some(Json::Str(s)) if s.is_empty() => &[],
        Some(Json::Object(o)) if o.is_empty() => &[],
        Some(Json::Null) => return Err(bad("null")),
        Some(_) => return Err(bad("not a list")),
    };
    let mut rules = Vec::with_capacity(entries.len());
    for (entry, e) in entries.iter().enumerate() {
        if !matches!(e, Json::Object(_)) {
            return Err(LoadError::BadEntry {
                index,
                entry,
                why: format!("must be an object, not {}", kind_name(e)),
            });
        }
        let member = |k: &str| {
            e.get(k).ok_or_else(|| LoadError::BadEntry {
                index,
                entry,
                why: format!("'{k}' is missing"),
            })
        };
        let source = member("source")?.clone();
        let match_text = match member("match")? {
            Json::Str(s) => s.clone(),
            other => {
                return Err(LoadError::BadEntry {
                    index,
                    entry,
                    why: format!("'match' must be a string, not {}", kind_name(other)),
                });
            }
        };
        let output = member("output")?.clone();
        let literal = e.get("literal").is_some_and(Json::truthy);
        let ignore_case = e.get("ignore_case").is_some_and(Json::truthy);
        let regex = dialect::compile(&match_text, literal, ignore_case).map_err(|error| {
            LoadError::BadMatch {
                index,
                entry,
                text: match_text.clone(),
                error,
            }
        })?;
        rules.push(Rule {
            position: entry,
            source,
            match_text,
            output,
            literal,
            ignore_case,
            regex,
        });
    }
    Ok(rules)
}

fn load_command(index: usize, command: Option<&Json>) -> Result<Vec<String>, LoadError> {
    match command {
        Some(Json::Array(items)) if !items.is_empty() => {
            Ok(items.iter().map(Json::py_str).collect())
        }
        // A string is iterated character by character by the reference (pinned quirk).
        Some(Json::Str(s)) if !s.is_empty() => Ok(s.chars().map(String::from).collect()),
        _ => Err(LoadError::BadCommand { index }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<MappingFile, LoadError> {
        MappingFile::from_bytes(text.as_bytes())
    }

    #[test]
    fn top_level_shapes() {
        assert!(load("[]").unwrap().configurations.is_empty());
        assert!(load("null").is_ok() && load("{}").is_ok() && load("0").is_ok());
        assert!(matches!(load("5"), Err(LoadError::NotAList(_))));
        assert!(matches!(load("true"), Err(LoadError::NotAList(_))));
        assert!(matches!(
            load(r#"{"DATA_TYPE": "x"}"#),
            Err(LoadError::NotAList(_))
        ));
        assert!(matches!(load("[1"), Err(LoadError::Json(_))));
    }

    #[test]
    fn data_types() {
        let f = load(
            r#"[{"DATA_TYPE": "ldap#1.0.0"}, {"DATA_TYPE": "Expression_Identity_Mapping#1.0.0"}]"#,
        )
        .unwrap();
        assert_eq!(f.skipped.len(), 2);
        for bad in [
            r#"[{"DATA_TYPE": "expression_identity_mapping#1.0.0 ", "mappings": []}]"#,
            r#"[{"DATA_TYPE": "external_identity_mapping#1.0.0#x", "command": ["x"]}]"#,
            r#"[{"DATA_TYPE": ""}]"#,
            r#"[{"DATA_TYPE": false}]"#,
        ] {
            assert!(load(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn members() {
        let ok = load(
            r#"[{"DATA_TYPE": "expression_identity_mapping#1.0.0", "mappings": [{"source": 5, "match": "x", "output": null, "literal": "false"}]},
                {"DATA_TYPE": "external_identity_mapping#1.0.0", "command": "./x"}]"#,
        )
        .unwrap();
        match &ok.configurations[0].kind {
            ConfigKind::Expression(rules) => assert!(rules[0].literal),
            ConfigKind::External(_) => panic!("wrong kind"),
        }
        match &ok.configurations[1].kind {
            ConfigKind::External(cmd) => assert_eq!(cmd, &[".", "/", "x"]),
            ConfigKind::Expression(_) => panic!("wrong kind"),
        }
        for bad in [
            r#"[{"DATA_TYPE": "external_identity_mapping#1.0.0", "command": []}]"#,
            r#"[{"DATA_TYPE": "external_identity_mapping#1.0.0", "command": null}]"#,
            r#"[{"DATA_TYPE": "expression_identity_mapping#1.0.0", "mappings": [[]]}]"#,
            r#"[{"DATA_TYPE": "expression_identity_mapping#1.0.0", "mappings": false}]"#,
            r#"[{"DATA_TYPE": "expression_identity_mapping#1.0.0", "mappings": [{"source": "", "match": "\\d", "output": ""}]}]"#,
        ] {
            assert!(load(bad).is_err(), "{bad}");
        }
    }
}
