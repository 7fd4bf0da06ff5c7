//! Lax value coercion in the style of upstream's pydantic `validate_call` (ENDPOINT.md §2.1):
//! ints accept `"5"`/`5.0`, floats accept ints and numeric strings, bools accept
//! `true/false/yes/no/on/off/1/0/t/f/y/n`, UUIDs are normalised to lower-case hyphenated text.

use uuid::Uuid;

use crate::error::{ConfigError, ConfigErrorKind};
use crate::yaml::{Node, Value};

/// A number that keeps whether YAML wrote it as an integer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// Written as an integer.
    Int(i64),
    /// Written as a float.
    Float(f64),
}

impl Number {
    /// The value as a float.
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

/// Where errors are reported: the source name plus the dotted field path.
#[derive(Debug, Clone)]
pub(crate) struct At<'a> {
    pub source: &'a str,
    pub field: String,
    pub line: usize,
}

impl At<'_> {
    pub fn err(&self, kind: ConfigErrorKind) -> ConfigError {
        ConfigError {
            source_name: self.source.to_string(),
            line: Some(self.line),
            field: (!self.field.is_empty()).then(|| self.field.clone()),
            kind,
        }
    }

    pub fn wrong(&self, expected: &'static str, node: &Node) -> ConfigError {
        self.err(ConfigErrorKind::WrongType {
            expected,
            found: short_repr(node),
        })
    }
}

/// A short Python-like rendering of a node for error messages.
pub(crate) fn short_repr(node: &Node) -> String {
    let text = match &node.value {
        Value::Null => "None".to_string(),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => crate::pyfmt::float_repr(*f),
        Value::Str(s) => format!("'{s}'"),
        Value::Seq(_) => "a list".to_string(),
        Value::Map(_) => "a mapping".to_string(),
    };
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(57).collect();
        format!("{cut}...")
    } else {
        text
    }
}

pub(crate) fn to_bool(at: &At, node: &Node) -> Result<bool, ConfigError> {
    const EXPECTED: &str = "a valid boolean";
    match &node.value {
        Value::Bool(b) => Ok(*b),
        Value::Int(0) => Ok(false),
        Value::Int(1) => Ok(true),
        Value::Float(f) if *f == 0.0 => Ok(false),
        Value::Float(f) if *f == 1.0 => Ok(true),
        Value::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" | "t" | "y" => Ok(true),
            "false" | "no" | "off" | "0" | "f" | "n" => Ok(false),
            _ => Err(at.wrong(EXPECTED, node)),
        },
        _ => Err(at.wrong(EXPECTED, node)),
    }
}

pub(crate) fn to_int(at: &At, node: &Node) -> Result<i64, ConfigError> {
    const EXPECTED: &str = "a valid integer";
    match &node.value {
        Value::Int(i) => Ok(*i),
        Value::Bool(b) => Ok(i64::from(*b)),
        Value::Float(f) if f.fract() == 0.0 && f.is_finite() && f.abs() < 9.0e18 => Ok(*f as i64),
        Value::Str(s) => s.trim().parse().map_err(|_| at.wrong(EXPECTED, node)),
        _ => Err(at.wrong(EXPECTED, node)),
    }
}

pub(crate) fn to_number(at: &At, node: &Node) -> Result<Number, ConfigError> {
    const EXPECTED: &str = "a valid number";
    match &node.value {
        Value::Int(i) => Ok(Number::Int(*i)),
        Value::Bool(b) => Ok(Number::Int(i64::from(*b))),
        Value::Float(f) => Ok(Number::Float(*f)),
        Value::Str(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .map(Number::Int)
                .or_else(|_| s.parse::<f64>().map(Number::Float))
                .map_err(|_| at.wrong(EXPECTED, node))
        }
        _ => Err(at.wrong(EXPECTED, node)),
    }
}

pub(crate) fn to_string(at: &At, node: &Node) -> Result<String, ConfigError> {
    match &node.value {
        Value::Str(s) => Ok(s.clone()),
        _ => Err(at.wrong("a valid string", node)),
    }
}

pub(crate) fn to_opt_string(at: &At, node: &Node) -> Result<Option<String>, ConfigError> {
    match &node.value {
        Value::Null => Ok(None),
        _ => to_string(at, node).map(Some),
    }
}

pub(crate) fn to_uuid(at: &At, node: &Node) -> Result<Uuid, ConfigError> {
    match &node.value {
        Value::Str(s) => Uuid::parse_str(s.trim()).map_err(|_| {
            at.err(ConfigErrorKind::InvalidValue(
                "badly formed hexadecimal UUID string".into(),
            ))
        }),
        _ => Err(at.wrong("a valid UUID", node)),
    }
}

pub(crate) fn to_opt_uuid(at: &At, node: &Node) -> Result<Option<Uuid>, ConfigError> {
    match &node.value {
        Value::Null => Ok(None),
        _ => to_uuid(at, node).map(Some),
    }
}

pub(crate) fn to_opt_uuid_list(at: &At, node: &Node) -> Result<Option<Vec<Uuid>>, ConfigError> {
    match &node.value {
        Value::Null => Ok(None),
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let at = At {
                    source: at.source,
                    field: format!("{}[{i}]", at.field),
                    line: item.line,
                };
                to_uuid(&at, item)
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        _ => Err(at.wrong("a list of UUIDs", node)),
    }
}

/// A path field: null or empty string means "not set".
pub(crate) fn to_opt_path(at: &At, node: &Node) -> Result<Option<std::path::PathBuf>, ConfigError> {
    match &node.value {
        Value::Null => Ok(None),
        Value::Str(s) if s.is_empty() => Ok(None),
        Value::Str(s) => Ok(Some(s.into())),
        _ => Err(at.wrong("a valid path", node)),
    }
}
