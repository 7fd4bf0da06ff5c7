//! Reading the `data` object of each message type with the leniency of the Python reader
//! (pydantic v2 "lax" mode, PROTOCOL-ENDPOINT §8.1): UUIDs in any of the forms the Python
//! `uuid` module accepts, integers also from integral floats, booleans and numeric strings,
//! strings only from strings, enums case-sensitive, unknown keys ignored.
//!
//! Values are moved out of the parsed JSON tree, so large strings (`task_buffer`, `data`) are
//! not copied.

use indexmap::IndexMap;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::DecodeError;
use super::types::*;

/// Where in the envelope a value sits; rendered only when an error is reported.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        if out.is_empty() {
            out.push_str("(message)");
        }
        out
    }

    fn render_into(&self, out: &mut String) {
        match self {
            Path::Root => {}
            Path::Key(parent, key) => {
                parent.render_into(out);
                if !out.is_empty() {
                    out.push('.');
                }
                // Keys come from the input; keep error messages bounded.
                out.extend(key.chars().take(64));
            }
            Path::Index(parent, i) => {
                parent.render_into(out);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&i.to_string());
            }
        }
    }

    fn invalid(&self, expected: &'static str) -> DecodeError {
        DecodeError::Invalid {
            path: self.render(),
            expected,
        }
    }

    fn missing(&self) -> DecodeError {
        DecodeError::Missing {
            path: self.render(),
        }
    }
}

/// An object whose fields are being taken out one by one.
struct Fields<'a> {
    map: Map<String, Value>,
    path: Path<'a>,
}

impl<'a> Fields<'a> {
    fn new(value: Value, path: Path<'a>) -> Result<Self, DecodeError> {
        match value {
            Value::Object(map) => Ok(Fields { map, path }),
            _ => Err(path.invalid("an object")),
        }
    }

    /// Take a field; `None` if absent.
    fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key)
    }

    fn required<T>(
        &mut self,
        key: &'static str,
        read: impl FnOnce(Value, Path<'_>) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        let path = Path::Key(&self.path, key);
        match self.map.remove(key) {
            Some(v) => read(v, path),
            None => Err(path.missing()),
        }
    }

    /// A field that must be present but may be `null`.
    fn required_nullable<T>(
        &mut self,
        key: &'static str,
        read: impl FnOnce(Value, Path<'_>) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        let path = Path::Key(&self.path, key);
        match self.map.remove(key) {
            Some(Value::Null) => Ok(None),
            Some(v) => read(v, path).map(Some),
            None => Err(path.missing()),
        }
    }

    /// A field that defaults to `None` when absent or `null`.
    fn optional<T>(
        &mut self,
        key: &'static str,
        read: impl FnOnce(Value, Path<'_>) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        let path = Path::Key(&self.path, key);
        match self.map.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => read(v, path).map(Some),
        }
    }
}

fn read_string(v: Value, path: Path<'_>) -> Result<String, DecodeError> {
    match v {
        Value::String(s) => Ok(s),
        _ => Err(path.invalid("a string")),
    }
}

fn read_uuid(v: Value, path: Path<'_>) -> Result<Uuid, DecodeError> {
    match v {
        Value::String(s) => parse_uuid_lax(&s).ok_or_else(|| path.invalid("a UUID")),
        _ => Err(path.invalid("a UUID string")),
    }
}

/// The UUID spellings pydantic accepts (it parses with the Rust `uuid` crate too): hyphenated,
/// simple 32-hex, `{}`-braced and `urn:uuid:` forms, hex digits of either case.
fn parse_uuid_lax(s: &str) -> Option<Uuid> {
    Uuid::try_parse(s).ok()
}

fn read_object(v: Value, path: Path<'_>) -> Result<Map<String, Value>, DecodeError> {
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(path.invalid("an object")),
    }
}

fn read_list<T>(
    v: Value,
    path: Path<'_>,
    read: impl Fn(Value, Path<'_>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    match v {
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                out.push(read(item, Path::Index(&path, i))?);
            }
            Ok(out)
        }
        _ => Err(path.invalid("an array")),
    }
}

/// An integer the way pydantic's lax mode reads one from JSON.
fn read_int(v: Value, path: Path<'_>) -> Result<i64, DecodeError> {
    const EXPECTED: &str = "an integer (64-bit)";
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i)
            } else if let Some(f) = n.as_f64() {
                // Integral floats only; the bounds are exactly representable (±2^63).
                if f.fract() == 0.0
                    && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f)
                {
                    // In range and integral, so the conversion is exact.
                    Ok(f as i64)
                } else {
                    Err(path.invalid(EXPECTED))
                }
            } else {
                Err(path.invalid(EXPECTED))
            }
        }
        Value::Bool(b) => Ok(i64::from(b)),
        Value::String(s) => parse_int_lax(&s).ok_or_else(|| path.invalid(EXPECTED)),
        _ => Err(path.invalid(EXPECTED)),
    }
}

/// Numeric strings as pydantic accepts them: surrounding whitespace, an optional sign,
/// single `_` between digits, and an optional all-zero fractional part (`"12.00"`).
fn parse_int_lax(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = match s.split_once('.') {
        Some((int, frac)) if !frac.is_empty() && frac.bytes().all(|b| b == b'0') => int,
        Some(_) => return None,
        None => s,
    };
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let bytes = digits.as_bytes();
    if bytes.is_empty() || !bytes[0].is_ascii_digit() || !bytes[bytes.len() - 1].is_ascii_digit() {
        return None;
    }
    let mut value: i64 = 0;
    let mut prev_underscore = false;
    for &b in bytes {
        if b == b'_' {
            if prev_underscore {
                return None;
            }
            prev_underscore = true;
            continue;
        }
        prev_underscore = false;
        if !b.is_ascii_digit() {
            return None;
        }
        let d = i64::from(b - b'0');
        // Accumulate negatively so that i64::MIN is reachable.
        value = value.checked_mul(10)?.checked_sub(d)?;
    }
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}

fn read_enum<T>(
    v: Value,
    path: Path<'_>,
    from_wire: fn(&str) -> Option<T>,
    expected: &'static str,
) -> Result<T, DecodeError> {
    match &v {
        Value::String(s) => from_wire(s).ok_or_else(|| path.invalid(expected)),
        _ => Err(path.invalid(expected)),
    }
}

fn read_task_transition(v: Value, path: Path<'_>) -> Result<TaskTransition, DecodeError> {
    let mut f = Fields::new(v, path)?;
    Ok(TaskTransition {
        timestamp: f.required("timestamp", read_int)?,
        state: f.required("state", |v, p| {
            read_enum(v, p, TaskState::from_wire, "a task state")
        })?,
        actor: f.required("actor", |v, p| {
            read_enum(v, p, ActorName::from_wire, "an actor name")
        })?,
    })
}

fn read_task_statuses(v: Value, path: Path<'_>) -> Result<TaskStatuses, DecodeError> {
    let map = read_object(v, path)?;
    let mut out = IndexMap::with_capacity(map.len());
    for (key, value) in map {
        let list = read_list(value, Path::Key(&path, &key), read_task_transition)?;
        out.insert(key, list);
    }
    Ok(out)
}

fn read_container_image(v: Value, path: Path<'_>) -> Result<ContainerImage, DecodeError> {
    let mut f = Fields::new(v, path)?;
    Ok(ContainerImage {
        image_type: f.required("image_type", read_string)?,
        location: f.required("location", read_string)?,
        created_at: f.required("created_at", read_int)?,
        modified_at: f.required("modified_at", read_int)?,
        build_status: f.required_nullable("build_status", read_string)?,
        build_stderr: f.required_nullable("build_stderr", read_string)?,
    })
}

fn read_container(v: Value, path: Path<'_>) -> Result<Container, DecodeError> {
    let mut f = Fields::new(v, path)?;
    Ok(Container {
        container_id: f.required("container_id", read_uuid)?,
        name: f.required("name", read_string)?,
        images: f.required("images", |v, p| read_list(v, p, read_container_image))?,
    })
}

fn read_error_details(v: Value, path: Path<'_>) -> Result<ResultErrorDetails, DecodeError> {
    let mut f = Fields::new(v, path)?;
    Ok(ResultErrorDetails {
        code: f.required("code", read_string)?,
        user_message: f.required("user_message", read_string)?,
    })
}

/// Read a whole envelope. Unknown envelope keys are ignored, as by the Python reader; the
/// message type is checked before `data`.
pub(super) fn read_envelope(envelope: Value) -> Result<Message, DecodeError> {
    let root = Path::Root;
    let mut f = Fields::new(envelope, root)?;
    let message_type = f.required("message_type", read_string)?;
    if !MESSAGE_TYPES.contains(&message_type.as_str()) {
        return Err(DecodeError::UnknownMessageType(
            message_type.chars().take(64).collect(),
        ));
    }
    let data = f.required("data", |v, p| match v {
        Value::Object(_) => Ok(v),
        _ => Err(p.invalid("an object")),
    })?;
    read_message(&message_type, data, Path::Key(&root, "data"))
}

/// Every `message_type` protocol v1 knows.
const MESSAGE_TYPES: &[&str] = &[
    "task",
    "result",
    "ep_status_report",
    "task_transition",
    "task_cancel",
    "manager_status_report",
    "container",
    "containerimage",
];

/// Read the `data` object of a message whose type is `message_type`.
fn read_message(message_type: &str, data: Value, path: Path<'_>) -> Result<Message, DecodeError> {
    let message = match message_type {
        "task" => {
            let mut f = Fields::new(data, path)?;
            Message::Task(Task {
                task_id: f.required("task_id", read_uuid)?,
                container_id: f.optional("container_id", read_uuid)?,
                container: f.optional("container", read_container)?,
                task_buffer: f.required("task_buffer", read_string)?,
            })
        }
        "result" => {
            let mut f = Fields::new(data, path)?;
            Message::Result(TaskResult {
                task_id: f.required("task_id", read_uuid)?,
                data: f.required("data", read_string)?,
                details: f.optional("details", read_object)?,
                error_details: f.optional("error_details", read_error_details)?,
                task_statuses: f.optional("task_statuses", |v, p| {
                    read_list(v, p, read_task_transition)
                })?,
            })
        }
        "ep_status_report" => {
            let mut f = Fields::new(data, path)?;
            let endpoint_id = f.required("endpoint_id", read_uuid)?;
            // The alias wins when both keys are present (as in pydantic).
            let global_state = match f.take("ep_status_report") {
                Some(v) => read_object(v, Path::Key(&path, "ep_status_report"))?,
                None => f.required("global_state", read_object)?,
            };
            Message::EpStatusReport(EpStatusReport {
                endpoint_id,
                global_state,
                task_statuses: f.required("task_statuses", read_task_statuses)?,
            })
        }
        "task_transition" => Message::TaskTransition(read_task_transition(data, path)?),
        "task_cancel" => {
            let mut f = Fields::new(data, path)?;
            Message::TaskCancel(TaskCancel {
                task_id: f.required("task_id", read_uuid)?,
            })
        }
        "manager_status_report" => {
            let mut f = Fields::new(data, path)?;
            Message::ManagerStatusReport(ManagerStatusReport {
                task_statuses: f.required("task_statuses", read_task_statuses)?,
            })
        }
        "container" => Message::Container(read_container(data, path)?),
        "containerimage" => Message::ContainerImage(read_container_image(data, path)?),
        other => {
            return Err(DecodeError::UnknownMessageType(
                other.chars().take(64).collect(),
            ));
        }
    };
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lax_integer_strings_match_pydantic() {
        // Accepted/rejected exactly as globus-compute-common 1.0.0 (pydantic 2) does.
        for (s, want) in [
            ("12", Some(12)),
            (" 12 ", Some(12)),
            ("\t12\n", Some(12)),
            ("1_000", Some(1000)),
            ("12.0", Some(12)),
            ("12.00", Some(12)),
            (" +12_3.000 ", Some(123)),
            ("+5", Some(5)),
            ("-0", Some(0)),
            ("00012", Some(12)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775807", Some(i64::MAX)),
            ("9223372036854775808", None),
            ("12.", None),
            (".0", None),
            ("12.5", None),
            ("1__0", None),
            ("_1", None),
            ("1_", None),
            ("1e3", None),
            ("0x10", None),
            ("", None),
            ("-", None),
            ("1 2", None),
            ("\u{661}\u{662}", None),
        ] {
            assert_eq!(parse_int_lax(s), want, "{s:?}");
        }
    }

    #[test]
    fn lax_integers_from_json_values() {
        let read = |v: Value| read_int(v, Path::Root).ok();
        assert_eq!(read(serde_json::json!(1.0)), Some(1));
        assert_eq!(
            read(serde_json::json!(1e18)),
            Some(1_000_000_000_000_000_000)
        );
        assert_eq!(read(serde_json::json!(true)), Some(1));
        assert_eq!(read(serde_json::json!(false)), Some(0));
        assert_eq!(read(serde_json::json!(1.5)), None);
        assert_eq!(read(serde_json::json!(9.3e18)), None);
        assert_eq!(read(serde_json::json!(-9.3e18)), None);
        assert_eq!(read(serde_json::json!(u64::MAX)), None);
        assert_eq!(read(Value::Null), None);
        assert_eq!(read(serde_json::json!([1])), None);
    }

    #[test]
    fn lax_uuids_match_python() {
        let canonical = Uuid::parse_str("00000000-0000-4000-8000-000000000001").unwrap();
        for s in [
            "00000000-0000-4000-8000-000000000001",
            "00000000-0000-4000-8000-000000000001"
                .to_uppercase()
                .as_str(),
            "00000000000040008000000000000001",
            "{00000000-0000-4000-8000-000000000001}",
            "urn:uuid:00000000-0000-4000-8000-000000000001",
        ] {
            assert_eq!(parse_uuid_lax(s), Some(canonical), "{s:?}");
        }
        for s in [
            "0000-0000",
            " 00000000-0000-4000-8000-000000000001",
            "00000000-0000-4000-8000-00000000000g",
            "0000000-00000-4000-8000-000000000001",
            "00000000-0000-4000-8000000000000001",
            "",
        ] {
            assert_eq!(parse_uuid_lax(s), None, "{s:?}");
        }
    }
}
