//! Python's text spellings of values: `repr()` of `str` and `float`, and `json.dumps` string
//! escaping.
//!
//! Upstream prints these spellings in messages, rendered templates and command-line arguments,
//! so the Rust crates must produce them byte for byte. Each function names the Python
//! expression it reproduces.
//!
//! `repr()` of a string comes in two flavours that differ only in which characters other than
//! `\\`, `\n`, `\r`, `\t` and the quote are escaped:
//!
//! * [`repr_str`] escapes every control character (C0, DEL and C1) and the soft hyphen
//!   U+00AD, as `\xNN`, `\uNNNN` or `\UNNNNNNNN` — closer to CPython, which escapes everything
//!   `str.isprintable()` rejects;
//! * [`repr_str_ascii_controls`] escapes only C0 controls and DEL (as `\xNN`) and writes every
//!   other character as it is.
//!
//! # Example
//!
//! ```
//! use gc_pytext::{json_dumps_str, repr_float, repr_str};
//!
//! assert_eq!(repr_float(1e16), "1e+16");
//! assert_eq!(repr_float(1e-5), "1e-05");
//! assert_eq!(repr_float(10.0), "10.0");
//! assert_eq!(repr_str("it's"), "\"it's\"");
//! assert_eq!(repr_str("a\u{85}b"), "'a\\x85b'");
//! assert_eq!(json_dumps_str("é/\"\n"), "\"\\u00e9/\\\"\\n\"");
//! ```

#![forbid(unsafe_code)]

use std::fmt::Write as _;

/// Python's `repr(float)` (also `str(float)`): shortest round-trip digits, `1.0` rather than
/// `1`, exponent form (`1e+16`, `1.5e-05`) when the decimal exponent is below -4 or at least
/// 16, and `nan`, `inf`, `-inf`, `-0.0`.
pub fn repr_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // `{:e}` gives the shortest round-trip digits: "-1.2345e-7".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::with_capacity(digits.len() + 8);
    if neg {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        if point <= 0 {
            out.push_str("0.");
            for _ in 0..(-point) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            let point = point as usize;
            if digits.len() <= point {
                out.push_str(&digits);
                for _ in digits.len()..point {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    out
}

/// Python's `repr(str)`, escaping every control character (C0, DEL, C1) and U+00AD.
///
/// Single quotes unless the text holds a `'` and no `"`. See [`repr_str_ascii_controls`] for
/// the flavour that leaves non-ASCII characters alone.
pub fn repr_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    write_repr_str(s, &mut out);
    out
}

/// [`repr_str`], appended to `out`.
pub fn write_repr_str(s: &str, out: &mut String) {
    write_repr(s, out, |c| c.is_control() || c == '\u{ad}');
}

/// Python's `repr(str)` for text where only C0 controls and DEL need escaping: those become
/// `\xNN`; every other character (C1 controls included) is written as it is.
pub fn repr_str_ascii_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    write_repr(s, &mut out, |c| (c as u32) < 0x20 || c as u32 == 0x7f);
    out
}

fn write_repr(s: &str, out: &mut String, escaped: impl Fn(char) -> bool) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if escaped(c) => {
                let n = c as u32;
                let _ = if n < 0x100 {
                    write!(out, "\\x{n:02x}")
                } else if n < 0x10000 {
                    write!(out, "\\u{n:04x}")
                } else {
                    write!(out, "\\U{n:08x}")
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Python's `json.dumps(s)` of a string with the default `ensure_ascii=True`: everything
/// outside printable ASCII as `\uXXXX` (UTF-16 surrogate pairs beyond the BMP), `/` not
/// escaped.
pub fn json_dumps_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    write_json_str(s, &mut out, true);
    out
}

/// Python's `json.dumps(s, ensure_ascii=ensure_ascii)` of a string, appended to `out`.
///
/// With `ensure_ascii` false only `"`, `\` and C0 controls are escaped (DEL and non-ASCII
/// characters are written as they are), as Python does.
pub fn write_json_str(s: &str, out: &mut String, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && (c as u32) > 0x7e) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_python() {
        assert_eq!(repr_float(1.5e20), "1.5e+20");
        assert_eq!(repr_float(1e20), "1e+20");
        assert_eq!(repr_float(1e-5), "1e-05");
        assert_eq!(repr_float(1.5e-5), "1.5e-05");
        assert_eq!(repr_float(-2.5e-7), "-2.5e-07");
        assert_eq!(repr_float(0.0001), "0.0001");
        assert_eq!(repr_float(0.1), "0.1");
        assert_eq!(repr_float(1.0), "1.0");
        assert_eq!(repr_float(1.5), "1.5");
        assert_eq!(repr_float(10.0), "10.0");
        assert_eq!(repr_float(123456.0), "123456.0");
        assert_eq!(repr_float(123456.789), "123456.789");
        assert_eq!(repr_float(1e15), "1000000000000000.0");
        assert_eq!(repr_float(1e16), "1e+16");
        assert_eq!(
            repr_float(1.7976931348623157e308),
            "1.7976931348623157e+308"
        );
        assert_eq!(repr_float(5e-324), "5e-324");
        assert_eq!(repr_float(0.0), "0.0");
        assert_eq!(repr_float(-0.0), "-0.0");
        assert_eq!(repr_float(f64::NAN), "nan");
        assert_eq!(repr_float(-f64::NAN), "nan");
        assert_eq!(repr_float(f64::INFINITY), "inf");
        assert_eq!(repr_float(f64::NEG_INFINITY), "-inf");
    }

    #[test]
    fn strings_like_python() {
        for repr in [repr_str, repr_str_ascii_controls] {
            assert_eq!(repr("a"), "'a'");
            assert_eq!(repr("maybe"), "'maybe'");
            assert_eq!(repr(""), "''");
            assert_eq!(repr("\"a\""), "'\"a\"'");
            assert_eq!(repr("it's"), "\"it's\"");
            assert_eq!(repr("it's \"x\""), "'it\\'s \"x\"'");
            assert_eq!(repr("a\nb"), "'a\\nb'");
            assert_eq!(repr("a\\b\r\t"), "'a\\\\b\\r\\t'");
            assert_eq!(repr("\0\u{1b}\u{7f}"), "'\\x00\\x1b\\x7f'");
            assert_eq!(repr("é😀"), "'é😀'");
        }
    }

    #[test]
    fn the_two_repr_flavours_differ_beyond_ascii() {
        assert_eq!(repr_str("a\u{85}b\u{ad}"), "'a\\x85b\\xad'");
        assert_eq!(
            repr_str_ascii_controls("a\u{85}b\u{ad}"),
            "'a\u{85}b\u{ad}'"
        );
        let mut out = String::from("x=");
        write_repr_str("\u{9f}", &mut out);
        assert_eq!(out, "x='\\x9f'");
    }

    #[test]
    fn json_strings_like_python() {
        assert_eq!(json_dumps_str("é/\"\n"), "\"\\u00e9/\\\"\\n\"");
        assert_eq!(json_dumps_str("😀"), "\"\\ud83d\\ude00\"");
        assert_eq!(
            json_dumps_str("\u{8}\u{c}\u{1}\u{7f}~ "),
            "\"\\b\\f\\u0001\\u007f~ \""
        );
        let mut out = String::new();
        write_json_str("é\u{7f}\u{1}\\", &mut out, false);
        assert_eq!(out, "\"é\u{7f}\\u0001\\\\\"");
    }
}
