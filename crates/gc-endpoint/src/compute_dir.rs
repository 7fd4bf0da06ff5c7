//! The Compute directory and the endpoints in it (ENDPOINT.md §1.2, §1.3): where it is, making
//! sure it exists, validating a new endpoint's name, and finding an endpoint by name or UUID.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

use crate::pyfmt::py_str;

/// Environment variable naming the Compute directory.
pub const COMPUTE_DIR_ENV: &str = "GLOBUS_COMPUTE_USER_DIR";
/// Environment variable that, when set, is the directory of every endpoint argument.
pub const COMPUTE_EP_DIR_ENV: &str = "GLOBUS_COMPUTE_ENDPOINT_DIR";

/// `--config-dir`, which upstream writes into `GLOBUS_COMPUTE_USER_DIR` for the rest of the
/// process. Setting the variable needs `unsafe` in Rust, so the value lives here instead and
/// anything this process starts must be given it in its environment.
static OVERRIDE: OnceLock<PathBuf> = OnceLock::new();

/// Record `--config-dir DIR` (first call wins; the group option is parsed once).
pub fn set_override(dir: &str) {
    if !dir.is_empty() {
        let _ = OVERRIDE.set(PathBuf::from(dir));
    }
}

/// `--config-dir`, else `$GLOBUS_COMPUTE_USER_DIR` if set and non-empty, else
/// `~/.globus_compute`.
pub fn compute_dir() -> PathBuf {
    if let Some(d) = OVERRIDE.get() {
        return py_path(d);
    }
    match std::env::var_os(COMPUTE_DIR_ENV) {
        Some(d) if !d.is_empty() => py_path(Path::new(&d)),
        _ => py_path(&home_dir().join(".globus_compute")),
    }
}

/// A path spelled as Python's `pathlib` spells it: no repeated or trailing slashes, no `.`
/// components (`..` is kept).
pub fn py_path(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for comp in p.components() {
        match comp {
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// Python's `Path.home()`: `$HOME`, else the passwd entry of the real user.
fn home_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h);
    }
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.dir)
        .unwrap_or_default()
}

/// Create the Compute directory (mode 0700, with parents) unless it exists; a file in the way
/// or a permission problem is the message upstream shows.
pub fn ensure_compute_dir() -> Result<PathBuf, String> {
    let dir = compute_dir();
    if dir.is_file() {
        return Err(format!(
            "Error creating directory {}, please remove or rename the conflicting file",
            dir.display()
        ));
    }
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| crate::pyfmt::os_error(&e, &dir))?;
    }
    Ok(dir)
}

/// Whether `c` is removed by Python's `\s` (Unicode whitespace as `str.isspace` sees it).
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `pathlib.Path(name).resolve().name` (relative to the working directory).
fn resolved_basename(name: &str) -> String {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let joined = cwd.join(name);
    // Follow symbolic links as far as the path exists, then normalise the rest lexically.
    let mut out = PathBuf::from("/");
    for comp in joined.components() {
        match comp {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(part) => {
                out.push(part);
                if let Ok(real) = fs::canonicalize(&out) {
                    out = real;
                }
            }
        }
    }
    out.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `Endpoint.validate_endpoint_name`: the reason a name is refused, if it is.
pub fn validate_endpoint_name(name: &str) -> Result<(), String> {
    let prefix = "Invalid endpoint name: ";
    if name.is_empty() {
        return Err(format!("{prefix}Received no endpoint name"));
    }
    let len = name.chars().count();
    if len > 128 {
        return Err(format!(
            "{prefix}must be less than 129 characters (length: {len})"
        ));
    }
    let validated = resolved_basename(name);
    if validated != name {
        return Err(format!(
            "{prefix}no '..' or '/' characters\n  Requested:  {name}\n  Reduced to: {validated} (*potentially* valid)"
        ));
    }
    let reduced: String = validated
        .chars()
        .filter(|&c| !(c == '\\' || c == '/' || c == '\'' || c == '"' || py_space(c)))
        .collect();
    let reduced = reduced.trim_start_matches('.').to_string();
    if reduced != name {
        return Err(format!(
            "{prefix}no whitespace (spaces, newlines, tabs), slashes, or prefixed '.'\n  Requested:  {name}\n  Reduced to: {reduced} (*potentially* valid)"
        ));
    }
    let base = Path::new(&reduced)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if base != name {
        return Err(format!(
            "{prefix}unknown reason\n  Requested:  {name}\n  Reduced to: {base} (*potentially* valid)"
        ));
    }
    Ok(())
}

/// Python's `uuid.UUID(value)` acceptance test (braces, `urn:uuid:`, missing hyphens...).
pub fn looks_like_uuid(value: &str) -> bool {
    let s = value.replace("urn:", "").replace("uuid:", "");
    let s = s.trim_matches(['{', '}']).replace('-', "");
    if s.chars().count() != 32 {
        return false;
    }
    // `int(hex, 16)`: optional whitespace and sign, optional 0x, digits with single `_`.
    let t = s.trim();
    let t = t.strip_prefix(['+', '-']).unwrap_or(t);
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .map(|r| r.strip_prefix('_').unwrap_or(r))
        .unwrap_or(t);
    !t.is_empty()
        && t.chars().all(|c| c.is_ascii_hexdigit() || c == '_')
        && !t.starts_with('_')
        && !t.ends_with('_')
        && !t.contains("__")
}

/// Endpoint directories: the parents of `<compute dir>/*/config.*`, first-seen order.
pub fn endpoint_dirs(compute_dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(compute_dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let Ok(inner) = fs::read_dir(&path) else {
            continue;
        };
        let has_config = inner
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("config."));
        if has_config {
            found.push(path);
        }
    }
    found
}

/// Why an `endpoint.json` could not give an id, spelled as Python's exception.
#[derive(Debug)]
pub struct EndpointIdError {
    /// Python exception class name, e.g. `JSONDecodeError`.
    pub kind: String,
    /// The exception's message.
    pub message: String,
}

/// `Endpoint.get_endpoint_id`: `Ok(None)` when there is no `endpoint.json`, the JSON value of
/// `endpoint_id` otherwise.
pub fn read_endpoint_id(dir: &Path) -> Result<Option<Value>, EndpointIdError> {
    let path = dir.join("endpoint.json");
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(EndpointIdError {
                kind: py_os_error_name(&e).into(),
                message: crate::pyfmt::os_error(&e, &path),
            });
        }
    };
    let doc: Value = serde_json::from_slice(&bytes).map_err(|e| EndpointIdError {
        kind: "JSONDecodeError".into(),
        message: e.to_string(),
    })?;
    match doc {
        Value::Object(mut map) => match map.remove("endpoint_id") {
            Some(v) => Ok(Some(v)),
            None => Err(EndpointIdError {
                kind: "KeyError".into(),
                message: "'endpoint_id'".into(),
            }),
        },
        other => Err(EndpointIdError {
            kind: "TypeError".into(),
            message: format!(
                "{} indices must be integers or slices, not str",
                match other {
                    Value::Array(_) => "list",
                    Value::String(_) => "string",
                    _ => "object",
                }
            ),
        }),
    }
}

/// Python's `OSError` subclass name for an I/O error.
pub fn py_os_error_name(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::NotFound => "FileNotFoundError",
        K::PermissionDenied => "PermissionError",
        K::IsADirectory => "IsADirectoryError",
        K::NotADirectory => "NotADirectoryError",
        K::AlreadyExists => "FileExistsError",
        _ => "OSError",
    }
}

/// Where a `NAME_OR_UUID` argument led.
#[derive(Debug, Default)]
pub struct Resolved {
    /// The endpoint directory, if one exists.
    pub dir: Option<PathBuf>,
    /// The argument, when it is a UUID and the command accepts remote-only endpoints.
    pub uuid: Option<String>,
}

/// `get_ep_dir_by_name_or_uuid` (§1.3); `require_local = false` is `delete`'s variant.
pub fn resolve_endpoint(value: &str, require_local: bool) -> Result<Resolved, String> {
    if value.is_empty() {
        return Ok(Resolved::default());
    }
    let mut resolved = Resolved::default();
    let (dir, info): (Option<PathBuf>, String) = match std::env::var_os(COMPUTE_EP_DIR_ENV) {
        Some(d) if !d.is_empty() => {
            let p = py_path(Path::new(&d));
            let info = p.display().to_string();
            (Some(p), info)
        }
        _ => {
            let conf_dir = compute_dir();
            if looks_like_uuid(value) {
                if !require_local {
                    resolved.uuid = Some(value.to_string());
                }
                match find_by_uuid(&conf_dir, value) {
                    Ok(found) => (found, value.to_string()),
                    // Upstream quirk: an undecodable endpoint.json turns the lookup into a
                    // directory-name lookup.
                    Err(()) => {
                        let p = conf_dir.join(value);
                        let info = p.display().to_string();
                        (Some(p), info)
                    }
                }
            } else {
                let p = conf_dir.join(value);
                let info = p.display().to_string();
                (Some(p), info)
            }
        }
    };
    let missing = match &dir {
        Some(d) => !d.is_dir(),
        None => require_local,
    };
    if missing {
        return Err(format!("Failed to find endpoint configuration ({info})"));
    }
    resolved.dir = dir;
    Ok(resolved)
}

/// The endpoint directory whose `endpoint.json` names `uuid`; `Err` on an undecodable file.
fn find_by_uuid(conf_dir: &Path, uuid: &str) -> Result<Option<PathBuf>, ()> {
    for dir in endpoint_dirs(conf_dir) {
        match read_endpoint_id(&dir) {
            Ok(Some(Value::String(id))) if id == uuid => return Ok(Some(dir)),
            Ok(_) => {}
            Err(e) if e.kind == "JSONDecodeError" => return Err(()),
            Err(_) => {}
        }
    }
    Ok(None)
}

/// `str()` of an endpoint id value for display.
pub fn id_text(v: &Option<Value>) -> String {
    match v {
        None => "None".into(),
        Some(v) => py_str(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_spelled_like_pathlib() {
        assert_eq!(
            py_path(Path::new("/tmp//x/./y/")),
            PathBuf::from("/tmp/x/y")
        );
        assert_eq!(py_path(Path::new("./rel/../z")).to_str(), Some("rel/../z"));
        assert_eq!(py_path(Path::new("")).to_str(), Some("."));
    }

    #[test]
    fn uuid_forms_python_accepts() {
        assert!(looks_like_uuid("12345678-1234-1234-1234-123456789abc"));
        assert!(looks_like_uuid("{12345678123412341234123456789abc}"));
        assert!(looks_like_uuid(
            "urn:uuid:12345678-1234-1234-1234-123456789abc"
        ));
        assert!(!looks_like_uuid("default"));
        assert!(!looks_like_uuid("12345678-1234-1234-1234-123456789abz"));
    }

    #[test]
    fn name_rules_in_order() {
        assert_eq!(
            validate_endpoint_name("").unwrap_err(),
            "Invalid endpoint name: Received no endpoint name"
        );
        assert_eq!(
            validate_endpoint_name(&"a".repeat(129)).unwrap_err(),
            "Invalid endpoint name: must be less than 129 characters (length: 129)"
        );
        assert_eq!(
            validate_endpoint_name("a/b").unwrap_err(),
            "Invalid endpoint name: no '..' or '/' characters\n  Requested:  a/b\n  Reduced to: b (*potentially* valid)"
        );
        assert_eq!(
            validate_endpoint_name("has space").unwrap_err(),
            "Invalid endpoint name: no whitespace (spaces, newlines, tabs), slashes, or prefixed '.'\n  Requested:  has space\n  Reduced to: hasspace (*potentially* valid)"
        );
        assert_eq!(
            validate_endpoint_name(".hidden").unwrap_err(),
            "Invalid endpoint name: no whitespace (spaces, newlines, tabs), slashes, or prefixed '.'\n  Requested:  .hidden\n  Reduced to: hidden (*potentially* valid)"
        );
        assert!(validate_endpoint_name("nice_normal-name.1").is_ok());
    }
}
