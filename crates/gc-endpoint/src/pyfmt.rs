//! Python spellings users see in upstream's messages: `repr()` of strings, `str()` of JSON
//! values, and what `int()` / `float()` accept.

use serde_json::Value;

/// Python's `repr()` of a `str`; only C0 controls and DEL are escaped (as `\xNN`).
pub use gc_pytext::repr_str_ascii_controls as py_repr_str;

/// Python's `str()` of a value loaded by `json.loads`.
pub fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => py_repr(other),
    }
}

fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| !n.is_i64() && !n.is_u64()) {
                py_float_repr(f)
            } else {
                n.to_string()
            }
        }
        Value::String(s) => py_repr_str(s),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(py_repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", py_repr_str(k), py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Python's `repr()` of a float (shortest round-trip digits, `1.0` not `1`).
pub use gc_pytext::repr_float as py_float_repr;

/// Python's `str()` of an `OSError` about `path`: `[Errno 13] Permission denied: '/x'`.
pub fn os_error(e: &std::io::Error, path: &std::path::Path) -> String {
    match e.raw_os_error() {
        Some(n) => format!(
            "[Errno {n}] {}: {}",
            nix::errno::Errno::from_raw(n).desc(),
            py_repr_str(&path.to_string_lossy())
        ),
        None => e.to_string(),
    }
}

/// Whether every `_` in `s` sits between two ASCII digits (Python's numeric literal rule).
fn underscores_ok(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().all(|(i, &c)| {
        c != b'_'
            || (i > 0
                && i + 1 < b.len()
                && b[i - 1].is_ascii_alphanumeric()
                && b[i + 1].is_ascii_alphanumeric())
    })
}

/// Python's `int(s)` for base 10; `None` where Python raises `ValueError`.
pub fn py_int(s: &str) -> Option<i128> {
    let t = s.trim();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty()
        || !digits.bytes().all(|c| c.is_ascii_digit() || c == b'_')
        || !underscores_ok(digits)
    {
        return None;
    }
    let clean: String = digits.chars().filter(|&c| c != '_').collect();
    // Values beyond i128 are far past any range check that follows; saturate.
    let v = clean.parse::<i128>().unwrap_or(i128::MAX);
    Some(if neg { -v } else { v })
}

/// Python's `float(s)`; `None` where Python raises `ValueError`.
pub fn py_float(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() || !underscores_ok(t) {
        return None;
    }
    let clean: String = t.chars().filter(|&c| c != '_').collect();
    let body = clean.trim_start_matches(['+', '-']);
    let lower = body.to_ascii_lowercase();
    let word = matches!(lower.as_str(), "inf" | "infinity" | "nan");
    if !word
        && !body
            .bytes()
            .all(|c| c.is_ascii_digit() || b".eE+-".contains(&c))
    {
        return None;
    }
    clean.parse::<f64>().ok()
}

/// C's `%.*e` as Python formats it (`1.000e+08`).
pub fn fmt_exp(f: f64, precision: usize) -> String {
    if !f.is_finite() {
        return py_float_repr(f);
    }
    let s = format!("{f:.precision$e}");
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mant}e{sign}{:02}", exp.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repr_of_strings() {
        assert_eq!(py_repr_str("maybe"), "'maybe'");
        assert_eq!(py_repr_str("it's"), "\"it's\"");
        assert_eq!(py_repr_str("a\nb"), "'a\\nb'");
    }

    #[test]
    fn python_number_syntax() {
        assert_eq!(py_int(" 42 "), Some(42));
        assert_eq!(py_int("1__0"), None);
        assert_eq!(py_int("0x10"), None);
        assert_eq!(py_float("1e5"), Some(100000.0));
        assert_eq!(py_float("1_0.5"), Some(10.5));
        assert!(py_float("nan").is_some_and(f64::is_nan));
        assert_eq!(py_float("abc"), None);
        assert_eq!(py_float("0x1"), None);
        assert_eq!(fmt_exp(123456789.0, 3), "1.235e+08");
        assert_eq!(py_float_repr(1.0), "1.0");
        assert_eq!(py_float_repr(1e20), "1e+20");
    }

    #[test]
    fn str_of_json_values() {
        assert_eq!(py_str(&serde_json::json!(null)), "None");
        assert_eq!(py_str(&serde_json::json!(false)), "False");
        assert_eq!(py_str(&serde_json::json!(["a", 1])), "['a', 1]");
        assert_eq!(py_str(&serde_json::json!("x")), "x");
    }
}
