//! YAML as upstream reads and writes `config.yaml` in `configure`: PyYAML's `safe_load`
//! (YAML 1.1 implicit types: `yes`/`on` are booleans, `0x1F` and `017` are integers, ...) and
//! `safe_dump(sort_keys=False)` (block style, indent 2, width 80, ASCII-only output, PyYAML's
//! choice between plain, single- and double-quoted scalars and its line folding).

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use yaml_rust2::parser::{Event, EventReceiver, Parser};
use yaml_rust2::scanner::TScalarStyle;

/// A value as PyYAML's safe loader produces it.
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    /// `None`
    Null,
    /// `bool`
    Bool(bool),
    /// `int`
    Int(i128),
    /// `float`
    Float(f64),
    /// `str`
    Str(String),
    /// A date or timestamp, kept as written (dumped back plain).
    Timestamp(String),
    /// `list`
    Seq(Vec<PyValue>),
    /// `dict`, insertion-ordered
    Map(Vec<(PyValue, PyValue)>),
}

impl PyValue {
    /// PyYAML's name for the kind of a loaded document that is not a mapping.
    pub fn kind_name(&self) -> &'static str {
        if matches!(self, PyValue::Seq(_)) {
            "sequence"
        } else {
            "scalar"
        }
    }
}

/// Why a YAML text could not be loaded.
#[derive(Debug)]
pub struct LoadError(pub String);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

static BOOL_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$")
        .expect("static regex")
});
static FLOAT_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
    )
    .expect("static regex")
});
static INT_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$",
    )
    .expect("static regex")
});
static NULL_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(?:~|null|Null|NULL|)$").expect("static regex"));
static TIMESTAMP_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$",
    )
    .expect("static regex")
});

/// What a plain scalar means under PyYAML's resolver.
fn resolve_plain(s: &str) -> PyValue {
    if NULL_RE.is_match(s) {
        PyValue::Null
    } else if BOOL_RE.is_match(s) {
        PyValue::Bool(matches!(
            s.to_ascii_lowercase().as_str(),
            "yes" | "true" | "on"
        ))
    } else if INT_RE.is_match(s) {
        construct_int(s).map_or_else(|| PyValue::Str(s.into()), PyValue::Int)
    } else if FLOAT_RE.is_match(s) {
        PyValue::Float(construct_float(s))
    } else if TIMESTAMP_RE.is_match(s) {
        PyValue::Timestamp(s.into())
    } else {
        PyValue::Str(s.into())
    }
}

/// Whether PyYAML would read `s`, written plain, as something other than a string.
fn plain_is_ambiguous(s: &str) -> bool {
    NULL_RE.is_match(s)
        || BOOL_RE.is_match(s)
        || INT_RE.is_match(s)
        || FLOAT_RE.is_match(s)
        || TIMESTAMP_RE.is_match(s)
        || s == "<<"
        || s == "="
}

fn construct_int(s: &str) -> Option<i128> {
    let v = s.replace('_', "");
    let (neg, v) = match v.as_bytes().first() {
        Some(b'-') => (true, &v[1..]),
        Some(b'+') => (false, &v[1..]),
        _ => (false, &v[..]),
    };
    let n = if v == "0" {
        0
    } else if let Some(b) = v.strip_prefix("0b") {
        i128::from_str_radix(b, 2).ok()?
    } else if let Some(h) = v.strip_prefix("0x") {
        i128::from_str_radix(h, 16).ok()?
    } else if let Some(o) = v.strip_prefix('0') {
        i128::from_str_radix(o, 8).ok()?
    } else if v.contains(':') {
        let mut total: i128 = 0;
        for part in v.split(':') {
            total = total
                .checked_mul(60)?
                .checked_add(part.parse::<i128>().ok()?)?;
        }
        total
    } else {
        v.parse::<i128>().ok()?
    };
    Some(if neg { -n } else { n })
}

fn construct_float(s: &str) -> f64 {
    let v = s.replace('_', "").to_lowercase();
    let (sign, v) = match v.as_bytes().first() {
        Some(b'-') => (-1.0, v[1..].to_string()),
        Some(b'+') => (1.0, v[1..].to_string()),
        _ => (1.0, v),
    };
    if v == ".inf" {
        sign * f64::INFINITY
    } else if v == ".nan" {
        f64::NAN
    } else if v.contains(':') {
        let mut total = 0.0;
        for part in v.split(':') {
            total = total * 60.0 + part.parse::<f64>().unwrap_or(0.0);
        }
        sign * total
    } else {
        sign * v.parse::<f64>().unwrap_or(0.0)
    }
}

struct Frame {
    value: PyValue,
    pending_key: Option<PyValue>,
    anchor: usize,
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, PyValue>,
    root: Option<PyValue>,
}

impl Builder {
    fn push_value(&mut self, v: PyValue) {
        match self.stack.last_mut() {
            Some(Frame {
                value: PyValue::Seq(items),
                ..
            }) => items.push(v),
            Some(Frame {
                value: PyValue::Map(pairs),
                pending_key,
                ..
            }) => match pending_key.take() {
                Some(k) => pairs.push((k, v)),
                None => *pending_key = Some(v),
            },
            _ => self.root = Some(v),
        }
    }

    fn open(&mut self, value: PyValue, anchor: usize) {
        self.stack.push(Frame {
            value,
            pending_key: None,
            anchor,
        });
    }
}

/// Merge duplicate keys the way a Python dict does: last value wins, first position kept.
fn dedup(pairs: Vec<(PyValue, PyValue)>) -> Vec<(PyValue, PyValue)> {
    let mut out: Vec<(PyValue, PyValue)> = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        match out.iter_mut().find(|(ok, _)| *ok == k) {
            Some(slot) => slot.1 = v,
            None => out.push((k, v)),
        }
    }
    out
}

impl EventReceiver for Builder {
    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Scalar(value, style, anchor, tag) => {
                let v = match (&tag, style) {
                    (Some(t), _) if t.suffix == "str" => PyValue::Str(value),
                    (_, TScalarStyle::Plain) => resolve_plain(&value),
                    _ => PyValue::Str(value),
                };
                if anchor > 0 {
                    self.anchors.insert(anchor, v.clone());
                }
                self.push_value(v);
            }
            Event::SequenceStart(anchor, _) => self.open(PyValue::Seq(Vec::new()), anchor),
            Event::MappingStart(anchor, _) => self.open(PyValue::Map(Vec::new()), anchor),
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    return;
                };
                let v = match frame.value {
                    PyValue::Map(pairs) => PyValue::Map(dedup(pairs)),
                    other => other,
                };
                let anchor = frame.anchor;
                if anchor > 0 {
                    self.anchors.insert(anchor, v.clone());
                }
                self.push_value(v);
            }
            Event::Alias(id) => {
                let v = self.anchors.get(&id).cloned().unwrap_or(PyValue::Null);
                self.push_value(v);
            }
            _ => {}
        }
    }
}

/// `yaml.safe_load(text)` for the first document (an empty text is `None`).
pub fn safe_load(text: &str) -> Result<PyValue, LoadError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser
        .load(&mut builder, false)
        .map_err(|e| LoadError(e.to_string()))?;
    Ok(builder.root.unwrap_or(PyValue::Null))
}

/// `yaml.safe_dump(value, sort_keys=False)`.
pub fn safe_dump(value: &PyValue) -> String {
    let mut e = Emitter::default();
    match value {
        PyValue::Map(pairs) if !pairs.is_empty() => e.mapping(pairs, 0, false),
        PyValue::Seq(items) if !items.is_empty() => e.sequence(items, 0, false),
        other => {
            let text = e.flow_or_scalar(other, 0, false);
            e.write(&text);
            if !matches!(other, PyValue::Map(_) | PyValue::Seq(_)) {
                // A bare scalar document ends with the document-end marker.
                e.write("\n...");
            }
        }
    }
    e.out.push('\n');
    e.out
}

#[derive(Default)]
struct Emitter {
    out: String,
    column: usize,
}

const BEST_WIDTH: usize = 80;

#[derive(Clone, Copy, PartialEq)]
enum Style {
    Plain,
    Single,
    Double,
}

fn is_break(c: char) -> bool {
    matches!(c, '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_ws_or_end(c: Option<char>) -> bool {
    match c {
        None => true,
        Some(c) => matches!(c, '\0' | ' ' | '\t' | '\r') || is_break(c),
    }
}

/// PyYAML's `analyze_scalar` + `choose_scalar_style` for a string.
fn choose_style(s: &str, simple_key: bool) -> Style {
    if s.is_empty() {
        return Style::Single;
    }
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    // Only block context is emitted here, so flow indicators never matter.
    let mut block_ind = s.starts_with("---") || s.starts_with("...");
    let (mut line_breaks, mut special) = (false, false);
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut prev_space, mut prev_break) = (false, false);
    let mut preceded_ws = true;
    let mut followed_ws = is_ws_or_end(chars.get(1).copied());
    for (i, &ch) in chars.iter().enumerate() {
        if i == 0 {
            if "#,[]{}&*!|>'\"%@`".contains(ch) {
                block_ind = true;
            }
            if (ch == '?' || ch == ':') && followed_ws {
                block_ind = true;
            }
            if ch == '-' && followed_ws {
                block_ind = true;
            }
        } else {
            if ch == ':' && followed_ws {
                block_ind = true;
            }
            if ch == '#' && preceded_ws {
                block_ind = true;
            }
        }
        if is_break(ch) {
            line_breaks = true;
        }
        if !(ch == '\n' || (' '..='~').contains(&ch)) {
            // Non-ASCII is special because safe_dump does not allow unicode output.
            special = true;
        }
        if ch == ' ' {
            if i == 0 {
                leading_space = true;
            }
            if i == n - 1 {
                trailing_space = true;
            }
            if prev_break {
                break_space = true;
            }
            prev_space = true;
            prev_break = false;
        } else if is_break(ch) {
            if i == 0 {
                leading_break = true;
            }
            if i == n - 1 {
                trailing_break = true;
            }
            if prev_space {
                space_break = true;
            }
            prev_space = false;
            prev_break = true;
        } else {
            prev_space = false;
            prev_break = false;
        }
        preceded_ws = is_ws_or_end(Some(ch));
        followed_ws = is_ws_or_end(chars.get(i + 2).copied());
    }
    let mut allow_plain = true;
    let mut allow_single = true;
    if leading_space || leading_break || trailing_space || trailing_break {
        allow_plain = false;
    }
    if break_space {
        allow_plain = false;
        allow_single = false;
    }
    if space_break || special {
        allow_plain = false;
        allow_single = false;
    }
    if line_breaks {
        allow_plain = false;
    }
    if block_ind {
        allow_plain = false;
    }
    let multiline = line_breaks;
    if allow_plain && !(plain_is_ambiguous(s) || simple_key && multiline) {
        return Style::Plain;
    }
    if allow_single && !(simple_key && multiline) {
        return Style::Single;
    }
    Style::Double
}

fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return ".nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.into();
    }
    let v = crate::pyfmt::py_float_repr(f).to_lowercase();
    if !v.contains('.') && v.contains('e') {
        v.replacen('e', ".0e", 1)
    } else {
        v
    }
}

impl Emitter {
    fn write(&mut self, s: &str) {
        for c in s.chars() {
            if c == '\n' {
                self.column = 0;
            } else {
                self.column += 1;
            }
        }
        self.out.push_str(s);
    }

    fn newline_indent(&mut self, indent: usize) {
        if !self.out.is_empty() && self.column != 0 {
            self.write("\n");
        }
        if self.column < indent {
            let pad = " ".repeat(indent - self.column);
            self.write(&pad);
        }
    }

    /// A scalar or an empty collection, as it is written after `key: ` or `- `.
    fn flow_or_scalar(&mut self, v: &PyValue, _indent: usize, _key: bool) -> String {
        match v {
            PyValue::Null => "null".into(),
            PyValue::Bool(b) => if *b { "true" } else { "false" }.into(),
            PyValue::Int(i) => i.to_string(),
            PyValue::Float(f) => float_repr(*f),
            PyValue::Timestamp(s) => s.clone(),
            PyValue::Map(_) => "{}".into(),
            PyValue::Seq(_) => "[]".into(),
            PyValue::Str(s) => s.clone(),
        }
    }

    fn scalar(&mut self, v: &PyValue, indent: usize, simple_key: bool) {
        match v {
            PyValue::Str(s) => match choose_style(s, simple_key) {
                Style::Plain => self.plain(s, indent, !simple_key),
                Style::Single => self.single_quoted(s, indent, !simple_key),
                Style::Double => self.double_quoted(s, indent, !simple_key),
            },
            other => {
                let t = self.flow_or_scalar(other, indent, simple_key);
                self.write(&t);
            }
        }
    }

    fn plain(&mut self, s: &str, indent: usize, split: bool) {
        let chars: Vec<char> = s.chars().collect();
        let (mut spaces, mut start) = (false, 0usize);
        for end in 0..=chars.len() {
            let ch = chars.get(end).copied();
            if spaces {
                if ch != Some(' ') {
                    if start + 1 == end && self.column > BEST_WIDTH && split {
                        self.indent_line(indent);
                    } else {
                        let t: String = chars[start..end].iter().collect();
                        self.write(&t);
                    }
                    start = end;
                }
            } else if ch.is_none() || ch == Some(' ') {
                let t: String = chars[start..end].iter().collect();
                self.write(&t);
                start = end;
            }
            if let Some(c) = ch {
                spaces = c == ' ';
            }
        }
    }

    fn indent_line(&mut self, indent: usize) {
        self.write("\n");
        let pad = " ".repeat(indent);
        self.write(&pad);
    }

    fn single_quoted(&mut self, s: &str, indent: usize, split: bool) {
        self.write("'");
        let chars: Vec<char> = s.chars().collect();
        let n = chars.len();
        let (mut spaces, mut breaks, mut start) = (false, false, 0usize);
        for end in 0..=n {
            let ch = chars.get(end).copied();
            if spaces {
                if ch != Some(' ') {
                    if start + 1 == end
                        && self.column > BEST_WIDTH
                        && split
                        && start != 0
                        && end != n
                    {
                        self.indent_line(indent);
                    } else {
                        let t: String = chars[start..end].iter().collect();
                        self.write(&t);
                    }
                    start = end;
                }
            } else if breaks {
                if ch.is_none_or(|c| !is_break(c)) {
                    if chars[start] == '\n' {
                        self.write("\n");
                    }
                    for &br in &chars[start..end] {
                        if br == '\n' {
                            self.write("\n");
                        } else {
                            self.write(&br.to_string());
                        }
                    }
                    let pad = " ".repeat(indent);
                    self.write(&pad);
                    start = end;
                }
            } else if (ch.is_none() || ch.is_some_and(|c| c == ' ' || is_break(c) || c == '\''))
                && start < end
            {
                let t: String = chars[start..end].iter().collect();
                self.write(&t);
                start = end;
            }
            if ch == Some('\'') {
                self.write("''");
                start = end + 1;
            }
            if let Some(c) = ch {
                spaces = c == ' ';
                breaks = is_break(c);
            }
        }
        self.write("'");
    }

    fn double_quoted(&mut self, s: &str, indent: usize, split: bool) {
        self.write("\"");
        let chars: Vec<char> = s.chars().collect();
        let n = chars.len();
        let mut start = 0usize;
        for end in 0..=n {
            let ch = chars.get(end).copied();
            let needs_escape = match ch {
                None => true,
                Some(c) => {
                    "\"\\\u{85}\u{2028}\u{2029}\u{feff}".contains(c) || !(' '..='~').contains(&c)
                }
            };
            if needs_escape {
                if start < end {
                    let t: String = chars[start..end].iter().collect();
                    self.write(&t);
                    start = end;
                }
                if let Some(c) = ch {
                    let rep = match c {
                        '\0' => "0".to_string(),
                        '\x07' => "a".into(),
                        '\x08' => "b".into(),
                        '\t' => "t".into(),
                        '\n' => "n".into(),
                        '\x0b' => "v".into(),
                        '\x0c' => "f".into(),
                        '\r' => "r".into(),
                        '\x1b' => "e".into(),
                        '"' => "\"".into(),
                        '\\' => "\\".into(),
                        '\u{85}' => "N".into(),
                        '\u{a0}' => "_".into(),
                        '\u{2028}' => "L".into(),
                        '\u{2029}' => "P".into(),
                        c if (c as u32) <= 0xff => format!("x{:02X}", c as u32),
                        c if (c as u32) <= 0xffff => format!("u{:04X}", c as u32),
                        c => format!("U{:08X}", c as u32),
                    };
                    self.write(&format!("\\{rep}"));
                    start = end + 1;
                }
            }
            if end > 0
                && end + 1 < n
                && (ch == Some(' ') || start >= end)
                && self.column + (end - start) > BEST_WIDTH
                && split
            {
                let mut t: String = chars[start..end].iter().collect();
                t.push('\\');
                self.write(&t);
                start = start.max(end);
                self.indent_line(indent);
                if chars.get(start) == Some(&' ') {
                    self.write("\\");
                }
            }
        }
        self.write("\"");
    }

    fn mapping(&mut self, pairs: &[(PyValue, PyValue)], indent: usize, inline_first: bool) {
        for (i, (k, v)) in pairs.iter().enumerate() {
            if !(inline_first && i == 0) {
                self.newline_indent(indent);
            }
            self.scalar(k, indent, true);
            self.write(":");
            match v {
                PyValue::Map(inner) if !inner.is_empty() => self.mapping(inner, indent + 2, false),
                PyValue::Seq(items) if !items.is_empty() => self.sequence(items, indent, false),
                other => {
                    self.write(" ");
                    self.scalar(other, indent + 2, false);
                }
            }
        }
    }

    fn sequence(&mut self, items: &[PyValue], indent: usize, inline_first: bool) {
        for (i, item) in items.iter().enumerate() {
            if !(inline_first && i == 0) {
                self.newline_indent(indent);
            }
            self.write("- ");
            match item {
                PyValue::Map(inner) if !inner.is_empty() => self.mapping(inner, indent + 2, true),
                PyValue::Seq(inner) if !inner.is_empty() => self.sequence(inner, indent + 2, true),
                other => self.scalar(other, indent + 2, false),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(src: &str) -> String {
        safe_dump(&safe_load(src).unwrap())
    }

    #[test]
    fn yaml11_types_and_quoting() {
        assert_eq!(roundtrip("display_name: null\n"), "display_name: null\n");
        assert_eq!(
            roundtrip("a: yes\nb: 'yes'\nc: 0x1F\nd: 017\ne: 1_000\n"),
            "a: true\nb: 'yes'\nc: 31\nd: 15\ne: 1000\n"
        );
        assert_eq!(
            roundtrip("a: '123'\nb: ''\nc: 1.5\nd: 1e5\n"),
            "a: '123'\nb: ''\nc: 1.5\nd: 1e5\n"
        );
        assert_eq!(roundtrip("a: 1.0e+5\n"), "a: 100000.0\n");
        assert_eq!(
            roundtrip("a: 'x: y'\nb: '#c'\nc: 'd #e'\n"),
            "a: 'x: y'\nb: '#c'\nc: 'd #e'\n"
        );
        assert_eq!(roundtrip("a: \"caf\u{e9}\"\n"), "a: \"caf\\xE9\"\n");
        assert_eq!(roundtrip("a: \"x\\ny\"\n"), "a: 'x\n\n  y'\n");
    }

    #[test]
    fn nested_collections() {
        let src =
            "engine:\n  type: T\nlist:\n  - 1\n  - a: 1\n    b: [x, y]\nempty: {}\nnone: []\n";
        assert_eq!(
            roundtrip(src),
            "engine:\n  type: T\nlist:\n- 1\n- a: 1\n  b:\n  - x\n  - y\nempty: {}\nnone: []\n"
        );
    }

    #[test]
    fn long_plain_values_fold_at_80() {
        let words = vec!["word"; 30].join(" ");
        let out = roundtrip(&format!("display_name: {words}\n"));
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.len() > 1);
        assert!(lines[1].starts_with("  word"));
    }
}
