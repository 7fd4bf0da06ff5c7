//! A JSON value model that behaves like Python's `json` module.
//!
//! The reference reads mapping files and program output with Python's `json.loads`, which accepts
//! `NaN`/`Infinity`, keeps integers exact at any size, lets the last duplicate key win and detects
//! UTF-16/32 input by its byte pattern. It also turns values into text the Python way (`True`,
//! `None`, `1e+16`) when they become command-line arguments. `serde_json` does none of this, so
//! this module carries its own small parser and printers.

use gc_pytext::{write_json_str, write_repr_str};

/// Nesting deeper than this is rejected (Python's own parser gives up near its recursion limit).
const MAX_DEPTH: usize = 512;

/// A parsed JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// An integer, kept as its canonical decimal text (`-0` becomes `0`), so any size is exact.
    Int(String),
    /// A number with a fraction or exponent, or `NaN`/`Infinity`.
    Float(f64),
    /// A string.
    Str(String),
    /// An array.
    Array(Vec<Json>),
    /// An object; keys are unique, in first-seen order, holding the last value given.
    Object(Vec<(String, Json)>),
}

/// Why a text is not JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg} at character {pos}")]
pub struct JsonError {
    /// What went wrong.
    pub msg: &'static str,
    /// Character offset of the problem.
    pub pos: usize,
}

impl Json {
    /// Member `key` of an object; `None` for a missing member or a non-object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Python truthiness (`bool(value)`).
    pub fn truthy(&self) -> bool {
        match self {
            Json::Null => false,
            Json::Bool(b) => *b,
            Json::Int(s) => s != "0",
            Json::Float(f) => *f != 0.0,
            Json::Str(s) => !s.is_empty(),
            Json::Array(a) => !a.is_empty(),
            Json::Object(o) => !o.is_empty(),
        }
    }

    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Python `str(value)` of the decoded value (`True`, `None`, `1.5`, `['a', 1]`).
    pub fn py_str(&self) -> String {
        match self {
            Json::Str(s) => s.clone(),
            other => other.py_repr(),
        }
    }

    /// Python `repr(value)` of the decoded value.
    pub fn py_repr(&self) -> String {
        let mut out = String::new();
        self.write_repr(&mut out);
        out
    }

    fn write_repr(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("None"),
            Json::Bool(true) => out.push_str("True"),
            Json::Bool(false) => out.push_str("False"),
            Json::Int(s) => out.push_str(s),
            Json::Float(f) => out.push_str(&py_float_repr(*f)),
            Json::Str(s) => write_repr_str(s, out),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write_repr(out);
                }
                out.push(']');
            }
            Json::Object(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_repr_str(k, out);
                    out.push_str(": ");
                    v.write_repr(out);
                }
                out.push('}');
            }
        }
    }

    /// Python equality between two values usable as dictionary keys (`1 == 1.0 == True`).
    pub fn py_eq(&self, other: &Json) -> bool {
        match (self.as_number(), other.as_number()) {
            (Some(a), Some(b)) => match (a, b) {
                (Num::Int(a), Num::Int(b)) => a == b,
                (a, b) => a.as_f64() == b.as_f64(),
            },
            (None, None) => self == other,
            _ => false,
        }
    }

    fn as_number(&self) -> Option<Num<'_>> {
        match self {
            Json::Bool(b) => Some(Num::Int(if *b { "1" } else { "0" })),
            Json::Int(s) => Some(Num::Int(s)),
            Json::Float(f) => Some(Num::Float(*f)),
            _ => None,
        }
    }

    /// Whether Python could use this value as a dictionary key (lists and objects cannot).
    pub fn hashable(&self) -> bool {
        !matches!(self, Json::Array(_) | Json::Object(_))
    }

    /// Serialise like Python's `json.dumps` with default settings
    /// (`", "` and `": "` separators, non-ASCII escaped as `\uXXXX`).
    pub fn to_python_json(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out, true);
        out
    }

    /// Serialise compactly-readable JSON keeping non-ASCII characters as they are.
    pub fn to_json_unicode(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out, false);
        out
    }

    fn write_json(&self, out: &mut String, ascii: bool) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(s) => out.push_str(s),
            Json::Float(f) => {
                if f.is_nan() {
                    out.push_str("NaN");
                } else if f.is_infinite() {
                    out.push_str(if *f > 0.0 { "Infinity" } else { "-Infinity" });
                } else {
                    out.push_str(&py_float_repr(*f));
                }
            }
            Json::Str(s) => write_json_str(s, out, ascii),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write_json(out, ascii);
                }
                out.push(']');
            }
            Json::Object(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_json_str(k, out, ascii);
                    out.push_str(": ");
                    v.write_json(out, ascii);
                }
                out.push('}');
            }
        }
    }
}

enum Num<'a> {
    Int(&'a str),
    Float(f64),
}

impl Num<'_> {
    fn as_f64(&self) -> f64 {
        match self {
            Num::Int(s) => s.parse().unwrap_or(f64::NAN),
            Num::Float(f) => *f,
        }
    }
}

/// Python `repr(float)`: shortest round-trip digits, exponent form outside `1e-4 <= |x| < 1e16`.
pub use gc_pytext::repr_float as py_float_repr;

/// Decode file bytes the way Python's `json.loads(bytes)` does (BOM and NUL-pattern detection).
pub fn decode_bytes(bytes: &[u8]) -> Result<String, JsonError> {
    let bad = JsonError {
        msg: "cannot decode the bytes as UTF-8/16/32",
        pos: 0,
    };
    let (encoding, body) = if bytes.starts_with(&[0, 0, 0xfe, 0xff]) {
        ("utf-32-be", &bytes[4..])
    } else if bytes.starts_with(&[0xff, 0xfe, 0, 0]) {
        ("utf-32-le", &bytes[4..])
    } else if bytes.starts_with(&[0xfe, 0xff]) {
        ("utf-16-be", &bytes[2..])
    } else if bytes.starts_with(&[0xff, 0xfe]) {
        ("utf-16-le", &bytes[2..])
    } else if bytes.starts_with(&[0xef, 0xbb, 0xbf]) {
        ("utf-8", &bytes[3..])
    } else if bytes.len() >= 4 {
        if bytes[0] == 0 {
            (
                if bytes[1] != 0 {
                    "utf-16-be"
                } else {
                    "utf-32-be"
                },
                bytes,
            )
        } else if bytes[1] == 0 {
            (
                if bytes[2] != 0 || bytes[3] != 0 {
                    "utf-16-le"
                } else {
                    "utf-32-le"
                },
                bytes,
            )
        } else {
            ("utf-8", bytes)
        }
    } else if bytes.len() == 2 && bytes[0] == 0 {
        ("utf-16-be", bytes)
    } else if bytes.len() == 2 && bytes[1] == 0 {
        ("utf-16-le", bytes)
    } else {
        ("utf-8", bytes)
    };
    match encoding {
        "utf-8" => String::from_utf8(body.to_vec()).map_err(|_| bad),
        "utf-16-be" | "utf-16-le" => {
            if body.len() % 2 != 0 {
                return Err(bad);
            }
            let units: Vec<u16> = body
                .chunks_exact(2)
                .map(|c| {
                    if encoding == "utf-16-be" {
                        u16::from_be_bytes([c[0], c[1]])
                    } else {
                        u16::from_le_bytes([c[0], c[1]])
                    }
                })
                .collect();
            String::from_utf16(&units).map_err(|_| bad)
        }
        _ => {
            if body.len() % 4 != 0 {
                return Err(bad);
            }
            body.chunks_exact(4)
                .map(|c| {
                    let n = if encoding == "utf-32-be" {
                        u32::from_be_bytes([c[0], c[1], c[2], c[3]])
                    } else {
                        u32::from_le_bytes([c[0], c[1], c[2], c[3]])
                    };
                    char::from_u32(n).ok_or(bad.clone())
                })
                .collect()
        }
    }
}

/// Parse bytes as Python's `json.loads(bytes)` would.
pub fn parse_bytes(bytes: &[u8]) -> Result<Json, JsonError> {
    parse(&decode_bytes(bytes)?)
}

/// Parse text as Python's `json.loads(str)` would.
pub fn parse(text: &str) -> Result<Json, JsonError> {
    let chars: Vec<char> = text.chars().collect();
    let mut p = Parser { s: &chars, i: 0 };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i != chars.len() {
        return Err(p.err("extra data"));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [char],
    i: usize,
}

impl Parser<'_> {
    fn err(&self, msg: &'static str) -> JsonError {
        JsonError { msg, pos: self.i }
    }

    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\n' | '\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, word: &str) -> bool {
        let n = word.chars().count();
        if self.i + n <= self.s.len() && self.s[self.i..self.i + n].iter().copied().eq(word.chars())
        {
            self.i += n;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        match self.peek() {
            Some('{') => self.object(depth),
            Some('[') => self.array(depth),
            Some('"') => Ok(Json::Str(self.string()?)),
            Some('n') if self.eat("null") => Ok(Json::Null),
            Some('t') if self.eat("true") => Ok(Json::Bool(true)),
            Some('f') if self.eat("false") => Ok(Json::Bool(false)),
            Some('N') if self.eat("NaN") => Ok(Json::Float(f64::NAN)),
            Some('I') if self.eat("Infinity") => Ok(Json::Float(f64::INFINITY)),
            Some('-') if self.eat("-Infinity") => Ok(Json::Float(f64::NEG_INFINITY)),
            Some('-' | '0'..='9') => self.number(),
            _ => Err(self.err("expecting value")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, JsonError> {
        self.i += 1;
        let mut members: Vec<(String, Json)> = Vec::new();
        self.ws();
        if self.peek() == Some('}') {
            self.i += 1;
            return Ok(Json::Object(members));
        }
        loop {
            self.ws();
            if self.peek() != Some('"') {
                return Err(self.err("expecting property name enclosed in double quotes"));
            }
            let key = self.string()?;
            self.ws();
            if self.peek() != Some(':') {
                return Err(self.err("expecting ':' delimiter"));
            }
            self.i += 1;
            self.ws();
            let value = self.value(depth + 1)?;
            match members.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => members.push((key, value)),
            }
            self.ws();
            match self.peek() {
                Some(',') => self.i += 1,
                Some('}') => {
                    self.i += 1;
                    return Ok(Json::Object(members));
                }
                _ => return Err(self.err("expecting ',' delimiter")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json, JsonError> {
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(']') {
            self.i += 1;
            return Ok(Json::Array(items));
        }
        loop {
            self.ws();
            items.push(self.value(depth + 1)?);
            self.ws();
            match self.peek() {
                Some(',') => self.i += 1,
                Some(']') => {
                    self.i += 1;
                    return Ok(Json::Array(items));
                }
                _ => return Err(self.err("expecting ',' delimiter")),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut n = 0u32;
        for _ in 0..4 {
            let d = self
                .peek()
                .and_then(|c| c.to_digit(16))
                .ok_or_else(|| self.err("invalid \\uXXXX escape"))?;
            n = n * 16 + d;
            self.i += 1;
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let c = self.peek().ok_or_else(|| self.err("unterminated string"))?;
            self.i += 1;
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let e = self.peek().ok_or_else(|| self.err("unterminated string"))?;
                    self.i += 1;
                    match e {
                        '"' => out.push('"'),
                        '\\' => out.push('\\'),
                        '/' => out.push('/'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'n' => out.push('\n'),
                        'r' => out.push('\r'),
                        't' => out.push('\t'),
                        'u' => {
                            let hi = self.hex4()?;
                            let mut code = hi;
                            if (0xd800..0xdc00).contains(&hi)
                                && self.s.get(self.i) == Some(&'\\')
                                && self.s.get(self.i + 1) == Some(&'u')
                            {
                                let save = self.i;
                                self.i += 2;
                                let lo = self.hex4()?;
                                if (0xdc00..0xe000).contains(&lo) {
                                    code = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
                                } else {
                                    self.i = save;
                                }
                            }
                            // A lone surrogate cannot live in a Rust string; Python keeps it,
                            // we substitute U+FFFD (documented divergence).
                            out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                        }
                        _ => return Err(self.err("invalid \\escape")),
                    }
                }
                c if (c as u32) < 0x20 => return Err(self.err("invalid control character")),
                c => out.push(c),
            }
        }
    }

    fn number(&mut self) -> Result<Json, JsonError> {
        let start = self.i;
        if self.peek() == Some('-') {
            self.i += 1;
        }
        match self.peek() {
            Some('0') => self.i += 1,
            Some('1'..='9') => {
                while matches!(self.peek(), Some('0'..='9')) {
                    self.i += 1;
                }
            }
            _ => return Err(self.err("expecting value")),
        }
        let mut is_float = false;
        if self.peek() == Some('.') && matches!(self.s.get(self.i + 1), Some('0'..='9')) {
            is_float = true;
            self.i += 1;
            while matches!(self.peek(), Some('0'..='9')) {
                self.i += 1;
            }
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let save = self.i;
            self.i += 1;
            if matches!(self.peek(), Some('+' | '-')) {
                self.i += 1;
            }
            if matches!(self.peek(), Some('0'..='9')) {
                is_float = true;
                while matches!(self.peek(), Some('0'..='9')) {
                    self.i += 1;
                }
            } else {
                self.i = save;
            }
        }
        let text: String = self.s[start..self.i].iter().collect();
        if is_float {
            Ok(Json::Float(text.parse().unwrap_or(f64::NAN)))
        } else if text == "-0" {
            Ok(Json::Int("0".into()))
        } else {
            Ok(Json::Int(text))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_extensions_and_duplicates() {
        let v =
            parse(r#"{"a": NaN, "b": -Infinity, "a": 1, "big": 123456789012345678901234567890}"#)
                .unwrap();
        assert_eq!(v.get("a"), Some(&Json::Int("1".into())));
        assert_eq!(
            v.get("big").unwrap().py_str(),
            "123456789012345678901234567890"
        );
        assert!(matches!(v, Json::Object(ref m) if m[0].0 == "a" && m.len() == 3));
        assert!(parse("[1] x").is_err());
        assert!(parse("  ").is_err());
        assert!(parse("\"a\tb\"").is_err());
    }

    #[test]
    fn python_text_forms() {
        assert_eq!(Json::Bool(true).py_str(), "True");
        assert_eq!(Json::Null.py_str(), "None");
        assert_eq!(py_float_repr(1.5), "1.5");
        assert_eq!(py_float_repr(1.0), "1.0");
        assert_eq!(py_float_repr(1e16), "1e+16");
        assert_eq!(py_float_repr(1.5e-5), "1.5e-05");
        assert_eq!(py_float_repr(0.0001), "0.0001");
        assert_eq!(py_float_repr(123456.0), "123456.0");
        let list = parse(r#"["a", 1, null, {"k": "it's"}]"#).unwrap();
        assert_eq!(list.py_str(), r#"['a', 1, None, {'k': "it's"}]"#);
    }

    #[test]
    fn utf16_detection_and_dumps() {
        let text = "[\"é\"]";
        let mut bytes = vec![0xff, 0xfe];
        for u in text.encode_utf16() {
            bytes.extend_from_slice(&u.to_le_bytes());
        }
        let v = parse_bytes(&bytes).unwrap();
        assert_eq!(v.to_python_json(), "[\"\\u00e9\"]");
        assert_eq!(parse("\"\\ud83d\\ude00\"").unwrap(), Json::Str("😀".into()));
    }
}
