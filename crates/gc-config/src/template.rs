//! Rendering `user_config_template.yaml.j2` into a user endpoint configuration
//! (ENDPOINT.md §3).
//!
//! Order of work, as upstream: reserved option names are refused, then the **raw** options are
//! validated against the JSON schema, then they are *sanitised* (every string becomes its JSON
//! encoding, quotes included; `null` becomes the bare word `null`) and the template is
//! rendered in a sandboxed, strict-undefined Jinja environment.
//!
//! # The §3.5 hazard, decided
//! Jinja2 prints values with Python's `str()`. This environment emulates it: `None`,
//! `True`/`False`, Python float spelling (`1.5e+20`, `1e-05`), and for lists/dicts Python's
//! `repr` (`{'x': '"y"', 'z': [1, '"w"']}`), so templates that print containers render the same
//! bytes as upstream. Sanitised user strings are already JSON-quoted scalars, so `{{ opt }}`
//! cannot break the YAML structure. Known differences: `~` concatenation with `none` gives
//! `none` rather than `None`; `_GC.mapped_identity.globus.id` prints as the bare UUID inside a
//! repr (upstream `UUID('…')`). Python attributes do not exist here, so the sandbox holds by
//! construction; for compatible error texts, a failing dotted lookup is described as Jinja2
//! would (`'x' is undefined`, `'dict object' has no attribute 'y'`, and a `SecurityError`
//! `access to attribute '__class__' of 'str' object is unsafe.` for Python's object dunders).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use minijinja::value::{Enumerator, Object, ObjectRepr, Value, ValueKind};
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use serde_json::Value as Json;

use crate::config::{CoreEndpointConfig, UserEndpointConfig};
use crate::error::ConfigError;
use crate::pyfmt;

/// Top-level option names a user may not pass (checked in this order).
pub const RESERVED_WORDS: [&str; 4] = ["parent_config", "user_runtime", "mapped_identity", "_GC"];

/// Everything a rendering needs.
#[derive(Debug, Clone, Copy)]
pub struct RenderInputs<'a> {
    /// The template text (read before dropping privileges).
    pub template: &'a str,
    /// Directory for `{% include %}`/`{% extends %}`/`{% import %}` of sibling files; `None`
    /// (e.g. the directory cannot be listed) disables them.
    pub template_dir: Option<&'a Path>,
    /// The user-option schema; `None` or an empty object ⇒ no validation.
    pub schema: Option<&'a Json>,
    /// `kwargs.user_opts` of the start command (must be an object).
    pub user_opts: &'a Json,
    /// `kwargs.user_runtime` of the start command.
    pub user_runtime: &'a Json,
    /// The MEP configuration (`_GC.parent_config`).
    pub parent_config: &'a CoreEndpointConfig,
    /// `{"local": {uname, uid, gid, gecos, shell, dir, groups}, "globus": {"id": …}}`.
    pub mapped_identity: &'a Json,
    /// The process environment at render time (`_GC.env`).
    pub env: &'a BTreeMap<String, String>,
}

/// A JSON-schema validation failure, with the parts of Python `jsonschema`'s message.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaViolation {
    /// First line, in Python `jsonschema` wording (e.g. `5 is not of type 'string'`).
    pub message: String,
    /// The failing keyword (`type`, `additionalProperties`, …).
    pub keyword: String,
    /// Path of the failing sub-schema, rendered `['properties']['x']`.
    pub schema_path: String,
    /// The failing sub-schema.
    pub schema: Json,
    /// Path of the failing instance part, rendered `['x']`.
    pub instance_path: String,
    /// The failing instance part.
    pub instance: Json,
}

impl std::fmt::Display for SchemaViolation {
    /// Python `str(ValidationError)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n\nFailed validating {} in schema{}:\n    {}\n\nOn instance{}:\n    {}",
            self.message,
            pyfmt::str_repr(&self.keyword),
            self.schema_path,
            pformat(&self.schema).replace('\n', "\n    "),
            self.instance_path,
            pformat(&self.instance).replace('\n', "\n    "),
        )
    }
}

/// Why rendering failed. `Display` is the Python `str(exc)`; [`TemplateError::python_type`]
/// gives the exception class, so the failure notice of §3.8 is
/// `format!("({}) {}", e.python_type(), e)`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    /// A reserved word was passed as an option.
    #[error("'{0}' is a reserved word and cannot be passed in via user config")]
    ReservedWord(String),
    /// `user_opts` is not a JSON object.
    #[error("user config options must be a JSON object")]
    OptionsNotAnObject,
    /// The schema itself is invalid.
    #[error("{0}")]
    SchemaInvalid(String),
    /// The options violate the schema.
    #[error("{0}")]
    Validation(Box<SchemaViolation>),
    /// Template syntax error.
    #[error("{0}")]
    Syntax(String),
    /// Use of an undefined variable.
    #[error("{0}")]
    Undefined(String),
    /// Access to an unsafe (Python-internal) attribute such as `__class__`.
    #[error("{0}")]
    Security(String),
    /// A template named in include/extends/import was not found (or no loader).
    #[error("{0}")]
    NotFound(String),
    /// Any other rendering failure.
    #[error("{0}")]
    Render(String),
    /// The rendered text is not a valid user endpoint configuration.
    #[error("{0}")]
    Config(ConfigError),
    /// The template set `high_assurance` (§3.7 step 3) or the HA prefix is inconsistent.
    #[error("Error generating template; contact endpoint administrator")]
    HighAssurance,
}

impl TemplateError {
    /// The Python exception class upstream reports for this failure.
    pub fn python_type(&self) -> &'static str {
        match self {
            TemplateError::ReservedWord(_) | TemplateError::OptionsNotAnObject => "ValueError",
            TemplateError::SchemaInvalid(_) => "SchemaError",
            TemplateError::Validation(_) => "ValidationError",
            TemplateError::Syntax(_) => "TemplateSyntaxError",
            TemplateError::Undefined(_) => "UndefinedError",
            TemplateError::Security(_) => "SecurityError",
            TemplateError::NotFound(_) => "TemplateNotFound",
            TemplateError::Render(_) => "TemplateError",
            TemplateError::Config(_) => "ClickException",
            TemplateError::HighAssurance => "ValueError",
        }
    }

    /// The fully qualified class, as `render-user-config` prints it
    /// (`(jinja2.exceptions.UndefinedError) …`).
    pub fn python_qualified_type(&self) -> &'static str {
        match self {
            TemplateError::ReservedWord(_) | TemplateError::OptionsNotAnObject => {
                "builtins.ValueError"
            }
            TemplateError::SchemaInvalid(_) => "jsonschema.exceptions.SchemaError",
            TemplateError::Validation(_) => "jsonschema.exceptions.ValidationError",
            TemplateError::Syntax(_) => "jinja2.exceptions.TemplateSyntaxError",
            TemplateError::Undefined(_) => "jinja2.exceptions.UndefinedError",
            TemplateError::Security(_) => "jinja2.exceptions.SecurityError",
            TemplateError::NotFound(_) => "jinja2.exceptions.TemplateNotFound",
            TemplateError::Render(_) => "jinja2.exceptions.TemplateError",
            TemplateError::Config(_) => "click.exceptions.ClickException",
            TemplateError::HighAssurance => "builtins.ValueError",
        }
    }
}

/// Validate options (reserved words, then schema) without rendering (§3.2 steps 1–2).
/// `null` options count as `{}` (upstream: `user_opts or {}`).
pub fn validate_user_opts(user_opts: &Json, schema: Option<&Json>) -> Result<(), TemplateError> {
    let empty = Json::Object(serde_json::Map::new());
    let user_opts = if user_opts.is_null() {
        &empty
    } else {
        user_opts
    };
    let Json::Object(opts) = user_opts else {
        return Err(TemplateError::OptionsNotAnObject);
    };
    for word in RESERVED_WORDS {
        if opts.contains_key(word) {
            return Err(TemplateError::ReservedWord(word.to_string()));
        }
    }
    let Some(schema) = schema else { return Ok(()) };
    if schema.as_object().is_some_and(|o| o.is_empty()) || schema.is_null() {
        return Ok(());
    }
    let validator = jsonschema::validator_for(schema).map_err(|e| {
        tracing::error!("\n\nThe user config schema is invalid\n");
        TemplateError::SchemaInvalid(e.to_string())
    })?;
    let best = validator
        .iter_errors(user_opts)
        .min_by_key(|e| e.instance_path().as_str().matches('/').count());
    if let Some(error) = best {
        tracing::error!("\n\nThe provided user config options are invalid\n");
        return Err(TemplateError::Validation(Box::new(violation(
            schema, &error,
        ))));
    }
    Ok(())
}

fn pointer_segments(pointer: &str) -> Vec<Json> {
    pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .map(|s| match s.parse::<u64>() {
            Ok(n) if !s.starts_with('+') => Json::from(n),
            _ => Json::String(s),
        })
        .collect()
}

fn format_index(segments: &[Json]) -> String {
    segments
        .iter()
        .map(|s| format!("[{}]", py_repr_json(s)))
        .collect()
}

fn violation(schema: &Json, error: &jsonschema::ValidationError<'_>) -> SchemaViolation {
    use jsonschema::error::ValidationErrorKind as K;
    let mut schema_segments = pointer_segments(error.schema_path().as_str());
    let keyword = match schema_segments.pop() {
        Some(Json::String(s)) => s,
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let sub_pointer: String = schema_segments
        .iter()
        .map(|s| match s {
            Json::String(s) => format!("/{}", s.replace('~', "~0").replace('/', "~1")),
            other => format!("/{other}"),
        })
        .collect();
    let sub_schema = schema.pointer(&sub_pointer).cloned().unwrap_or(Json::Null);
    let instance = error.instance().clone().into_owned();
    let inst = py_repr_json(&instance);
    let message = match error.kind() {
        K::Type { .. } => {
            let types = match sub_schema.get("type") {
                Some(Json::Array(list)) => {
                    list.iter().map(py_repr_json).collect::<Vec<_>>().join(", ")
                }
                Some(t) => py_repr_json(t),
                None => String::new(),
            };
            format!("{inst} is not of type {types}")
        }
        K::AdditionalProperties { unexpected } => {
            let names: Vec<String> = unexpected.iter().map(|s| pyfmt::str_repr(s)).collect();
            let verb = if names.len() == 1 { "was" } else { "were" };
            format!(
                "Additional properties are not allowed ({} {verb} unexpected)",
                names.join(", ")
            )
        }
        K::Required { property } => format!("{} is a required property", py_repr_json(property)),
        K::Enum { options } => format!("{inst} is not one of {}", py_repr_json(options)),
        K::Constant { expected_value } => format!("{} was expected", py_repr_json(expected_value)),
        K::Pattern { pattern } => format!("{inst} does not match {}", pyfmt::str_repr(pattern)),
        K::Minimum { limit } => {
            format!("{inst} is less than the minimum of {}", py_repr_json(limit))
        }
        K::Maximum { limit } => format!(
            "{inst} is greater than the maximum of {}",
            py_repr_json(limit)
        ),
        K::ExclusiveMinimum { limit } => {
            format!(
                "{inst} is less than or equal to the minimum of {}",
                py_repr_json(limit)
            )
        }
        K::ExclusiveMaximum { limit } => {
            format!(
                "{inst} is greater than or equal to the maximum of {}",
                py_repr_json(limit)
            )
        }
        K::MinLength { limit } | K::MinItems { limit } => {
            format!(
                "{inst} {}",
                if *limit == 1 {
                    "should be non-empty"
                } else {
                    "is too short"
                }
            )
        }
        K::MaxLength { limit } | K::MaxItems { limit } => {
            format!(
                "{inst} {}",
                if *limit == 0 {
                    "is expected to be empty"
                } else {
                    "is too long"
                }
            )
        }
        _ => error.to_string(),
    };
    SchemaViolation {
        message,
        keyword,
        schema_path: format_index(&schema_segments),
        schema: sub_schema,
        instance_path: format_index(&pointer_segments(error.instance_path().as_str())),
        instance,
    }
}

/// Python `json.dumps(s)` of a string (ASCII-only output, `/` not escaped).
pub use gc_pytext::json_dumps_str;

/// Python `shlex.quote`.
pub fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\"'\"'"))
    }
}

/// The sanitised form of a user value (§3.2 step 3).
fn sanitize(value: &Json) -> Value {
    match value {
        Json::String(s) => Value::from(json_dumps_str(s)),
        Json::Null => Value::from("null"),
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => number_value(n),
        Json::Array(items) => Value::from(items.iter().map(sanitize).collect::<Vec<_>>()),
        Json::Object(map) => Value::from_iter(map.iter().map(|(k, v)| (k.clone(), sanitize(v)))),
    }
}

fn number_value(n: &serde_json::Number) -> Value {
    if let Some(i) = n.as_i64() {
        Value::from(i)
    } else if let Some(u) = n.as_u64() {
        Value::from(u)
    } else {
        Value::from(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// Plain (unsanitised) conversion, for `_GC.mapped_identity`.
fn plain(value: &Json) -> Value {
    match value {
        Json::String(s) => Value::from(s.clone()),
        Json::Null => Value::from(()),
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => number_value(n),
        Json::Array(items) => Value::from(items.iter().map(plain).collect::<Vec<_>>()),
        Json::Object(map) => Value::from_iter(map.iter().map(|(k, v)| (k.clone(), plain(v)))),
    }
}

fn opt<T: Into<Value>>(v: Option<T>) -> Value {
    v.map_or(Value::from(()), Into::into)
}

fn path_value(p: &Option<PathBuf>) -> Value {
    opt(p.as_ref().map(|p| p.display().to_string()))
}

fn uuid_list(list: &Option<Vec<uuid::Uuid>>) -> Value {
    opt(list
        .as_ref()
        .map(|l| Value::from(l.iter().map(|u| u.to_string()).collect::<Vec<_>>())))
}

/// `_GC.parent_config`: the MEP configuration's fields.
fn parent_config_value(c: &CoreEndpointConfig) -> Value {
    let b = &c.base;
    let heartbeat = match b.heartbeat_period {
        crate::Number::Int(i) => Value::from(i),
        crate::Number::Float(f) => Value::from(f),
    };
    let pam = Value::from_iter([
        ("enable", Value::from(c.pam.enable)),
        ("service_name", Value::from(c.pam.service_name.clone())),
    ]);
    Value::from_iter([
        ("display_name", opt(b.display_name.clone())),
        ("high_assurance", Value::from(b.high_assurance)),
        ("allowed_functions", uuid_list(&b.allowed_functions)),
        (
            "authentication_policy",
            opt(b.authentication_policy.map(|u| u.to_string())),
        ),
        (
            "subscription_id",
            opt(b.subscription_id.map(|u| u.to_string())),
        ),
        ("admins", uuid_list(&b.admins)),
        ("amqp_port", opt(b.amqp_port)),
        ("heartbeat_period", heartbeat),
        ("environment", opt(b.environment.clone())),
        (
            "local_compute_services",
            Value::from(b.local_compute_services),
        ),
        ("debug", Value::from(b.debug)),
        ("public", Value::from(c.public)),
        ("email", opt(c.email.clone())),
        (
            "identity_mapping_config_path",
            path_value(&c.identity_mapping_config_path),
        ),
        (
            "user_config_template_path",
            path_value(&c.user_config_template_path),
        ),
        (
            "user_config_schema_path",
            path_value(&c.user_config_schema_path),
        ),
        ("audit_log_path", path_value(&c.audit_log_path)),
        ("pam", pam),
        (
            "mu_child_ep_grace_period_s",
            Value::from(c.mu_child_ep_grace_period_s),
        ),
        ("source_content", Value::from(c.source_content.clone())),
    ])
}

/// The deprecated top-level aliases `parent_config`, `user_runtime`, `mapped_identity`: any
/// use logs a warning; member lookups on empty data give null (upstream quirk).
#[derive(Debug)]
struct DeprecatedAlias {
    name: &'static str,
    data: Value,
    warned: AtomicBool,
}

impl DeprecatedAlias {
    fn warn(&self) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "Template access to `{0}` is deprecated; access via `_GC` instead.  (i.e., _GC.{0})",
                self.name
            );
        }
    }

    fn is_empty(&self) -> bool {
        self.data.len().is_none_or(|n| n == 0)
    }
}

impl Object for DeprecatedAlias {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.warn();
        if self.is_empty() {
            return Some(Value::from(()));
        }
        self.data.get_item(key).ok().filter(|v| !v.is_undefined())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        self.warn();
        match self.data.try_iter() {
            Ok(iter) => Enumerator::Values(iter.collect()),
            Err(_) => Enumerator::Empty,
        }
    }

    fn is_true(self: &Arc<Self>) -> bool {
        self.warn();
        !self.is_empty()
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.warn();
        f.write_str(&py_str(&self.data))
    }
}

fn alias(name: &'static str, data: Value) -> Value {
    Value::from_object(DeprecatedAlias {
        name,
        data,
        warned: AtomicBool::new(false),
    })
}

/// Python `str()` of a template value.
fn py_str(value: &Value) -> String {
    match value.kind() {
        ValueKind::String => value.as_str().unwrap_or_default().to_string(),
        _ => py_repr(value),
    }
}

/// Python `repr()` of a template value.
fn py_repr(value: &Value) -> String {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => "None".into(),
        ValueKind::Bool => if value.is_true() { "True" } else { "False" }.into(),
        ValueKind::Number if value.is_integer() => value.to_string(),
        ValueKind::Number => pyfmt::float_repr(f64::try_from(value.clone()).unwrap_or(f64::NAN)),
        ValueKind::String => pyfmt::str_repr(value.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<String> = value
                .try_iter()
                .map(|it| it.map(|v| py_repr(&v)).collect())
                .unwrap_or_default();
            format!("[{}]", items.join(", "))
        }
        ValueKind::Map => {
            let items: Vec<String> = value
                .try_iter()
                .map(|it| {
                    it.map(|k| {
                        let v = value.get_item(&k).unwrap_or_default();
                        format!("{}: {}", py_repr(&k), py_repr(&v))
                    })
                    .collect()
                })
                .unwrap_or_default();
            format!("{{{}}}", items.join(", "))
        }
        _ => value.to_string(),
    }
}

/// Python repr of a JSON value (for schema error messages).
fn py_repr_json(value: &Json) -> String {
    py_repr(&plain(value))
}

/// Python `pprint.pformat(x, width=72, sort_dicts=False)` for JSON values.
fn pformat(value: &Json) -> String {
    let mut out = String::new();
    pformat_into(value, 0, 0, &mut out);
    out
}

fn pformat_into(value: &Json, indent: usize, allowance: usize, out: &mut String) {
    const WIDTH: usize = 72;
    let rep = py_repr_json(value);
    if rep.chars().count() <= WIDTH.saturating_sub(indent + allowance) {
        out.push_str(&rep);
        return;
    }
    match value {
        Json::Object(map) if !map.is_empty() => {
            out.push('{');
            let inner = indent + 1;
            let n = map.len();
            for (i, (k, v)) in map.iter().enumerate() {
                let key = pyfmt::str_repr(k);
                out.push_str(&key);
                out.push_str(": ");
                let last = i + 1 == n;
                pformat_into(
                    v,
                    inner + key.chars().count() + 2,
                    if last { allowance + 1 } else { 1 },
                    out,
                );
                if !last {
                    out.push_str(",\n");
                    out.push_str(&" ".repeat(inner));
                }
            }
            out.push('}');
        }
        Json::Array(items) if !items.is_empty() => {
            out.push('[');
            let inner = indent + 1;
            let n = items.len();
            for (i, v) in items.iter().enumerate() {
                let last = i + 1 == n;
                pformat_into(v, inner, if last { allowance + 1 } else { 1 }, out);
                if !last {
                    out.push_str(",\n");
                    out.push_str(&" ".repeat(inner));
                }
            }
            out.push(']');
        }
        _ => out.push_str(&rep),
    }
}

/// Jinja2's `indent` filter (its exact semantics, including keeping a trailing newline and
/// Python's `splitlines` line breaks).
fn jinja_indent(
    s: Value,
    width: Option<Value>,
    first: Option<bool>,
    blank: Option<bool>,
) -> Result<String, minijinja::Error> {
    let s = py_str(&s);
    let indention = match width {
        None => " ".repeat(4),
        Some(w) if w.kind() == ValueKind::String => w.as_str().unwrap_or_default().to_string(),
        Some(w) => {
            let n = usize::try_from(w.clone()).map_err(|_| {
                minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    "indent width must be an integer or a string",
                )
            })?;
            " ".repeat(n)
        }
    };
    let text = format!("{s}\n");
    let lines = python_splitlines(&text);
    let mut rv = if blank.unwrap_or(false) {
        lines.join(&format!("\n{indention}"))
    } else {
        let mut iter = lines.into_iter();
        let mut rv = iter.next().unwrap_or_default().to_string();
        let rest: Vec<String> = iter
            .map(|l| {
                if l.is_empty() {
                    String::new()
                } else {
                    format!("{indention}{l}")
                }
            })
            .collect();
        if !rest.is_empty() {
            rv.push('\n');
            rv.push_str(&rest.join("\n"));
        }
        rv
    };
    if first.unwrap_or(false) {
        rv = format!("{indention}{rv}");
    }
    Ok(rv)
}

fn python_splitlines(s: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let is_break = matches!(
            c,
            '\n' | '\r'
                | '\u{b}'
                | '\u{c}'
                | '\u{1c}'
                | '\u{1d}'
                | '\u{1e}'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        );
        if is_break {
            lines.push(&s[start..i]);
            let mut end = i + c.len_utf8();
            if c == '\r' {
                if let Some(&(j, '\n')) = chars.peek() {
                    chars.next();
                    end = j + 1;
                }
            }
            start = end;
        }
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

/// Python `json.dumps(value, sort_keys=True, indent=indent)` of a template value.
fn python_json(
    value: &Value,
    indent: Option<usize>,
    level: usize,
    out: &mut String,
) -> Result<(), minijinja::Error> {
    let newline = |out: &mut String, level: usize| {
        if let Some(width) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(width * level));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&py_repr(value)),
        ValueKind::String => out.push_str(&json_dumps_str(value.as_str().unwrap_or_default())),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                python_json(item, indent, level + 1, out)?;
            }
            newline(out, level);
            out.push(']');
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = value.try_iter()?.collect();
            keys.sort_by_key(py_str);
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                out.push_str(&json_dumps_str(&py_str(key)));
                out.push_str(": ");
                python_json(&value.get_item(key)?, indent, level + 1, out)?;
            }
            newline(out, level);
            out.push('}');
        }
        _ => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("Object of type {} is not JSON serializable", value.kind()),
            ));
        }
    }
    Ok(())
}

/// Jinja2's `tojson` filter: sorted keys, Python separators, HTML-safe escapes.
fn jinja_tojson(value: Value, indent: Option<usize>) -> Result<String, minijinja::Error> {
    let mut out = String::new();
    python_json(&value, indent, 0, &mut out)?;
    Ok(out
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\'', "\\u0027"))
}

/// The `shell_escape` filter (§3.3).
fn shell_escape(value: Value) -> Result<Value, minijinja::Error> {
    let Some(text) = value.as_str().filter(|_| value.kind() == ValueKind::String) else {
        return Ok(value);
    };
    let decoded: Json = serde_json::from_str(text).map_err(|e| {
        minijinja::Error::new(ErrorKind::InvalidOperation, format!("JSONDecodeError: {e}"))
    })?;
    match decoded {
        Json::String(s) => Ok(Value::from(json_dumps_str(&shell_quote(&s)))),
        _ => Ok(value),
    }
}

fn build_environment(template_dir: Option<&Path>) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(false);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_formatter(|out, _state, value| {
        if value.is_undefined() {
            return Err(minijinja::Error::from(ErrorKind::UndefinedError));
        }
        out.write_str(&py_str(value))
            .map_err(minijinja::Error::from)
    });
    // Python methods on values (`.items()`, `.strip()`, `.split()`, …) as Jinja2 allows.
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_filter("indent", jinja_indent);
    env.add_filter("shell_escape", shell_escape);
    env.add_filter("tojson", jinja_tojson);
    if let Some(dir) = template_dir {
        let dir = dir.to_path_buf();
        env.set_loader(move |name| {
            let rel = Path::new(name);
            if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
                return Ok(None);
            }
            match std::fs::read_to_string(dir.join(rel)) {
                Ok(text) => Ok(Some(text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(minijinja::Error::new(
                    ErrorKind::TemplateNotFound,
                    e.to_string(),
                )),
            }
        });
    }
    env
}

/// Name the first variable the template uses that the context does not define (Jinja2 names
/// it in its message; minijinja does not).
fn undefined_name(env: &Environment<'_>, source: &str, known: &[String]) -> Option<String> {
    let template = env.template_from_str(source).ok()?;
    let missing = template.undeclared_variables(false);
    missing
        .into_iter()
        .filter(|name| !known.contains(name))
        .min_by_key(|name| find_word(source, name).unwrap_or(usize::MAX))
}

fn find_word(source: &str, word: &str) -> Option<usize> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    source.match_indices(word).map(|(i, _)| i).find(|&i| {
        let before = source[..i].chars().next_back();
        let after = source[i + word.len()..].chars().next();
        !before.is_some_and(|c| is_ident(c) || c == '.') && !after.is_some_and(is_ident)
    })
}

/// Attributes every Python object has; the Jinja2 sandbox refuses access to them.
const OBJECT_DUNDERS: &[&str] = &[
    "__class__",
    "__doc__",
    "__init__",
    "__new__",
    "__repr__",
    "__str__",
    "__hash__",
    "__eq__",
    "__ne__",
    "__lt__",
    "__le__",
    "__gt__",
    "__ge__",
    "__getattribute__",
    "__setattr__",
    "__delattr__",
    "__dir__",
    "__format__",
    "__reduce__",
    "__reduce_ex__",
    "__sizeof__",
    "__init_subclass__",
    "__subclasshook__",
    "__getstate__",
];

/// Jinja2's name for the type of a value in "has no attribute" messages.
fn jinja_type_name(path: &str, value: &Value) -> &'static str {
    match path {
        "_GC.parent_config" | "parent_config" => {
            return "globus_compute_endpoint.endpoint.config.config.CoreEndpointConfig";
        }
        "_GC.parent_config.pam" | "parent_config.pam" => {
            return "globus_compute_endpoint.endpoint.config.pam.PamConfiguration";
        }
        "_GC.env" => return "os._Environ",
        _ => {}
    }
    match value.kind() {
        ValueKind::None => "NoneType",
        ValueKind::Bool => "bool",
        ValueKind::Number if value.is_integer() => "int",
        ValueKind::Number => "float",
        ValueKind::String => "str",
        ValueKind::Seq | ValueKind::Iterable => "list",
        ValueKind::Map => "dict",
        _ => "object",
    }
}

/// Jinja2's message for the undefined dotted expression around `range` of `source`:
/// `'<name>' is undefined` or `'<type> object' has no attribute '<attr>'`.
fn describe_undefined(
    env: &Environment<'_>,
    context: &Value,
    source: &str,
    range: std::ops::Range<usize>,
) -> Option<TemplateError> {
    let is_path = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
    let bytes = source.get(..range.end)?;
    let start = bytes
        .char_indices()
        .rev()
        .take_while(|(i, c)| *i >= range.start || is_path(*c))
        .take_while(|(_, c)| is_path(*c) || c.is_whitespace())
        .last()
        .map(|(i, _)| i)?;
    let text = source.get(start..range.end)?.trim();
    let text = text
        .rsplit(|c: char| !is_path(c))
        .next()?
        .trim_start_matches('.');
    let parts: Vec<&str> = text.split('.').collect();
    if parts.is_empty()
        || parts
            .iter()
            .any(|p| p.is_empty() || p.starts_with(|c: char| c.is_ascii_digit()))
    {
        return None;
    }
    let eval = |expr: &str| -> Option<Value> {
        let value = env.compile_expression(expr).ok()?.eval(context).ok()?;
        (!value.is_undefined()).then_some(value)
    };
    if eval(parts[0]).is_none() {
        return Some(TemplateError::Undefined(format!(
            "'{}' is undefined",
            parts[0]
        )));
    }
    for n in 1..parts.len() {
        let prefix = parts[..n].join(".");
        let value = eval(&prefix)?;
        if eval(&parts[..=n].join(".")).is_none() {
            let type_name = jinja_type_name(&prefix, &value);
            if OBJECT_DUNDERS.contains(&parts[n]) {
                let short = type_name.rsplit('.').next().unwrap_or(type_name);
                return Some(TemplateError::Security(format!(
                    "access to attribute '{}' of '{short}' object is unsafe.",
                    parts[n]
                )));
            }
            return Some(TemplateError::Undefined(format!(
                "'{type_name} object' has no attribute '{}'",
                parts[n]
            )));
        }
    }
    None
}

/// Validate the options and render the template (§3.2–§3.4); returns the rendered text.
pub fn render_user_config(inputs: &RenderInputs<'_>) -> Result<String, TemplateError> {
    validate_user_opts(inputs.user_opts, inputs.schema)?;
    let no_opts = serde_json::Map::new();
    let opts = match inputs.user_opts {
        Json::Object(opts) => opts,
        Json::Null => &no_opts,
        _ => return Err(TemplateError::OptionsNotAnObject),
    };
    let runtime = match inputs.user_runtime {
        Json::Null => Value::from_iter(std::iter::empty::<(String, Value)>()),
        other => sanitize(other),
    };
    let parent = parent_config_value(inputs.parent_config);
    let identity = plain(inputs.mapped_identity);
    let gc = Value::from_iter([
        ("parent_config", parent.clone()),
        ("mapped_identity", identity.clone()),
        ("user_runtime", runtime.clone()),
        ("env", Value::from_serialize(inputs.env)),
    ]);
    let mut ctx: BTreeMap<String, Value> =
        opts.iter().map(|(k, v)| (k.clone(), sanitize(v))).collect();
    ctx.insert("_GC".into(), gc);
    ctx.insert("parent_config".into(), alias("parent_config", parent));
    ctx.insert("mapped_identity".into(), alias("mapped_identity", identity));
    ctx.insert("user_runtime".into(), alias("user_runtime", runtime));

    let env = build_environment(inputs.template_dir);
    let context = Value::from_iter(ctx.iter().map(|(k, v)| (k.clone(), v.clone())));
    let result = env
        .template_from_str(inputs.template)
        .and_then(|t| t.render(context.clone()));
    result.map_err(|e| {
        let detail = e
            .detail()
            .map(str::to_string)
            .unwrap_or_else(|| e.to_string());
        match e.kind() {
            ErrorKind::SyntaxError => TemplateError::Syntax(detail),
            ErrorKind::UndefinedError => {
                let known: Vec<String> = ctx.keys().cloned().collect();
                let source = e.template_source().unwrap_or(inputs.template);
                e.range()
                    .and_then(|range| describe_undefined(&env, &context, source, range))
                    .or_else(|| {
                        undefined_name(&env, inputs.template, &known)
                            .map(|name| TemplateError::Undefined(format!("'{name}' is undefined")))
                    })
                    .unwrap_or_else(|| TemplateError::Undefined(e.to_string()))
            }
            ErrorKind::TemplateNotFound => TemplateError::NotFound(detail),
            _ => TemplateError::Render(e.to_string()),
        }
    })
}

/// Read the template at `path`; when it does not exist, the same path without a trailing
/// `.j2` is read instead (§2.3). Returns the text and the path actually read.
pub fn read_user_config_template(path: &Path) -> std::io::Result<(String, PathBuf)> {
    let path = if path.exists() {
        path.to_path_buf()
    } else {
        let text = path.to_string_lossy();
        PathBuf::from(text.strip_suffix(".j2").unwrap_or(&text).to_string())
    };
    std::fs::read_to_string(&path).map(|text| (text, path))
}

/// Why a user-option schema file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SchemaFileError {
    /// The file exists but cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The schema path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not JSON (upstream logs `The user config schema is not valid JSON: <path>`).
    #[error("The user config schema is not valid JSON: {path}")]
    NotJson {
        /// The schema path.
        path: String,
        /// The parser's message.
        message: String,
    },
}

/// Read a user-option schema: a missing file means "no schema" (§2.3).
pub fn read_user_config_schema(path: &Path) -> Result<Option<Json>, SchemaFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SchemaFileError::Read {
                path: path.display().to_string(),
                source,
            });
        }
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        tracing::error!(
            "\n\nThe user config schema is not valid JSON: {}\n",
            path.display()
        );
        SchemaFileError::NotJson {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    })
}

/// The high-assurance rule of §3.7 steps 3–4: a rendered configuration may not set
/// `high_assurance`; an HA core endpoint prepends `high_assurance: true` to it.
pub fn apply_high_assurance(
    rendered: &str,
    mep_high_assurance: bool,
) -> Result<String, TemplateError> {
    let sets_ha = matches!(
        crate::yaml::parse(rendered),
        Ok(Some(node)) if node.get("high_assurance").is_some()
    );
    if sets_ha {
        tracing::error!("`high_assurance` may not be specified in template");
        return Err(TemplateError::HighAssurance);
    }
    Ok(if mep_high_assurance {
        format!("high_assurance: true\n{rendered}")
    } else {
        rendered.to_string()
    })
}

/// Render, then load the result as a [`UserEndpointConfig`] (`source` names it in errors).
pub fn render_and_load(
    inputs: &RenderInputs<'_>,
    source: &str,
) -> Result<UserEndpointConfig, TemplateError> {
    let text = render_user_config(inputs)?;
    UserEndpointConfig::from_yaml(&text, source).map_err(TemplateError::Config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_helpers() {
        assert_eq!(json_dumps_str("é/\"\n"), "\"\\u00e9/\\\"\\n\"");
        assert_eq!(json_dumps_str("😀"), "\"\\ud83d\\ude00\"");
        assert_eq!(shell_quote("-lh; rm -rf /"), "'-lh; rm -rf /'");
        assert_eq!(shell_quote("a'b"), "'a'\"'\"'b'");
        assert_eq!(shell_quote("ok/path-1.2"), "ok/path-1.2");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(python_splitlines("a\r\nb\n\nc"), vec!["a", "b", "", "c"]);
    }

    #[test]
    fn pformat_wraps_like_python() {
        let schema: Json = serde_json::from_str(
            r#"{"type": "object", "properties": {"x": {"type": "integer"}}, "additionalProperties": false}"#,
        )
        .unwrap();
        assert_eq!(
            pformat(&schema),
            "{'type': 'object',\n 'properties': {'x': {'type': 'integer'}},\n 'additionalProperties': False}"
        );
    }
}
