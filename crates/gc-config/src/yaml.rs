//! A YAML 1.1 loader that keeps line numbers.
//!
//! Upstream parses configuration with PyYAML's safe loader, i.e. YAML **1.1** scalar
//! resolution: `yes`/`no`/`on`/`off` are booleans, `1:00:00` is the sexagesimal integer 3600,
//! `0755` is octal, a float needs a dot (`1e5` is a string), `~` is null. Parsing is done with
//! `yaml-rust2`'s event parser (so quoting style is known) and every node remembers the
//! 1-based line it started on, which configuration errors report.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A parsed YAML node and the line (1-based) where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// 1-based line number of the node in its source text.
    pub line: usize,
}

/// A YAML value after YAML 1.1 scalar resolution.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`, `~` or an empty scalar.
    Null,
    /// A boolean (`true`, `yes`, `on`, … in any of PyYAML's spellings).
    Bool(bool),
    /// An integer (decimal, `0x`, `0b`, octal `0…`, sexagesimal `a:b:c`).
    Int(i64),
    /// A float (must contain a dot, or be `.inf`/`.nan`).
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping in document order. Keys are scalars rendered to text; the line of each key is
    /// kept next to it.
    Map(Vec<(String, usize, Node)>),
}

/// A YAML syntax or structure error.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("{message} (line {line})")]
pub struct YamlError {
    /// What went wrong.
    pub message: String,
    /// 1-based line of the problem.
    pub line: usize,
}

impl Node {
    /// A short type name for error messages (`string`, `int`, `mapping`, …).
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Seq(_) => "list",
            Value::Map(_) => "mapping",
        }
    }

    /// Convert to JSON (non-finite floats become strings as PyYAML would print them).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or_else(|| J::String(f.to_string())),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, _, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// The entry `key` of a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _, _)| k == key).map(|(_, _, v)| v),
            _ => None,
        }
    }
}

/// Parse `text` as a single YAML document. An empty document gives `None`.
pub fn parse(text: &str) -> Result<Option<Node>, YamlError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, true).map_err(|e| YamlError {
        message: e.info().to_string(),
        line: e.marker().line(),
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    if builder.docs.len() > 1 {
        return Err(YamlError {
            message: "expected a single document in the stream".into(),
            line: builder.docs[1].line,
        });
    }
    Ok(builder.docs.pop())
}

enum Frame {
    Seq(Vec<Node>, usize, usize),
    Map(
        Vec<(String, usize, Node)>,
        Option<(String, usize)>,
        usize,
        usize,
    ),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    docs: Vec<Node>,
    anchors: HashMap<usize, Node>,
    error: Option<YamlError>,
    doc_open: bool,
}

impl Builder {
    fn fail(&mut self, message: impl Into<String>, line: usize) {
        if self.error.is_none() {
            self.error = Some(YamlError {
                message: message.into(),
                line,
            });
        }
    }

    fn push_node(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq(items, _, _)) => items.push(node),
            Some(Frame::Map(entries, pending, _, _)) => match pending.take() {
                None => {
                    let line = node.line;
                    match scalar_key(&node) {
                        Some(key) => *pending = Some((key, line)),
                        None => self.fail("mapping keys must be scalars", line),
                    }
                }
                Some((key, key_line)) => {
                    if key == "<<" && merge(entries, &node) {
                        return;
                    }
                    if let Some(slot) = entries.iter_mut().find(|(k, _, _)| *k == key) {
                        // PyYAML keeps the last value of a duplicated key.
                        *slot = (key, key_line, node);
                    } else {
                        entries.push((key, key_line, node));
                    }
                }
            },
        }
    }
}

/// Apply a `<<` merge key; returns false when the value is not mergeable.
fn merge(entries: &mut Vec<(String, usize, Node)>, node: &Node) -> bool {
    let sources: Vec<&Node> = match &node.value {
        Value::Map(_) => vec![node],
        Value::Seq(items) if items.iter().all(|n| matches!(n.value, Value::Map(_))) => {
            items.iter().collect()
        }
        _ => return false,
    };
    for source in sources {
        if let Value::Map(src) = &source.value {
            for (k, l, v) in src {
                if !entries.iter().any(|(ek, _, _)| ek == k) {
                    entries.push((k.clone(), *l, v.clone()));
                }
            }
        }
    }
    true
}

fn scalar_key(node: &Node) -> Option<String> {
    Some(match &node.value {
        Value::Null => "None".to_string(),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Str(s) => s.clone(),
        Value::Seq(_) | Value::Map(_) => return None,
    })
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let line = mark.line();
        match ev {
            Event::DocumentStart => self.doc_open = true,
            Event::DocumentEnd => self.doc_open = false,
            Event::Scalar(text, style, anchor, tag) => match resolve(text, style, tag.as_ref()) {
                Ok(value) => self.push_node(Node { value, line }, anchor),
                Err(msg) => self.fail(msg, line),
            },
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(node) => self.push_node(node, 0),
                None => self.fail("found undefined alias", line),
            },
            Event::SequenceStart(anchor, tag) => {
                if let Some(msg) = unsupported_tag(tag.as_ref(), "seq") {
                    self.fail(msg, line);
                }
                self.stack.push(Frame::Seq(Vec::new(), anchor, line));
            }
            Event::MappingStart(anchor, tag) => {
                if let Some(msg) = unsupported_tag(tag.as_ref(), "map") {
                    self.fail(msg, line);
                }
                self.stack.push(Frame::Map(Vec::new(), None, anchor, line));
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq(items, anchor, start)) = self.stack.pop() {
                    self.push_node(
                        Node {
                            value: Value::Seq(items),
                            line: start,
                        },
                        anchor,
                    );
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(entries, _, anchor, start)) = self.stack.pop() {
                    self.push_node(
                        Node {
                            value: Value::Map(entries),
                            line: start,
                        },
                        anchor,
                    );
                }
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd => {}
        }
    }
}

fn unsupported_tag(tag: Option<&Tag>, expected: &str) -> Option<String> {
    let tag = tag?;
    if (tag.handle == "tag:yaml.org,2002:" || tag.handle == "!!") && tag.suffix == expected {
        return None;
    }
    Some(format!(
        "could not determine a constructor for the tag '{}{}'",
        tag.handle, tag.suffix
    ))
}

fn resolve(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if let Some(tag) = tag {
        let core = tag.handle == "!!" || tag.handle == "tag:yaml.org,2002:";
        let err = || {
            format!(
                "could not determine a constructor for the tag '{}{}'",
                tag.handle, tag.suffix
            )
        };
        if !core {
            return Err(err());
        }
        return match tag.suffix.as_str() {
            "str" => Ok(Value::Str(text)),
            "null" => Ok(Value::Null),
            "bool" => resolve_bool(&text)
                .map(Value::Bool)
                .ok_or_else(|| format!("invalid boolean '{text}'")),
            "int" => resolve_int(&text)
                .map(Value::Int)
                .ok_or_else(|| format!("invalid literal for int(): '{text}'")),
            "float" => resolve_float(&text)
                .or_else(|| resolve_int(&text).map(|i| i as f64))
                .map(Value::Float)
                .ok_or_else(|| format!("could not convert string to float: '{text}'")),
            _ => Err(err()),
        };
    }
    if !matches!(style, TScalarStyle::Plain) {
        return Ok(Value::Str(text));
    }
    Ok(resolve_plain(text))
}

/// PyYAML's implicit resolution of a plain scalar.
fn resolve_plain(text: String) -> Value {
    if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL") {
        return Value::Null;
    }
    if let Some(b) = resolve_bool(&text) {
        return Value::Bool(b);
    }
    if let Some(i) = resolve_int(&text) {
        return Value::Int(i);
    }
    if let Some(f) = resolve_float(&text) {
        return Value::Float(f);
    }
    Value::Str(text)
}

fn resolve_bool(t: &str) -> Option<bool> {
    match t {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

fn split_sign(t: &str) -> (bool, &str) {
    if let Some(rest) = t.strip_prefix('-') {
        (true, rest)
    } else {
        (false, t.strip_prefix('+').unwrap_or(t))
    }
}

fn resolve_int(t: &str) -> Option<i64> {
    let (neg, body) = split_sign(t);
    if body.is_empty() {
        return None;
    }
    let digits = |s: &str, ok: fn(char) -> bool| -> Option<String> {
        if s.is_empty() || !s.chars().all(|c| ok(c) || c == '_') {
            return None;
        }
        let clean: String = s.chars().filter(|c| *c != '_').collect();
        (!clean.is_empty()).then_some(clean)
    };
    let magnitude: i64 = if let Some(bin) = body.strip_prefix("0b") {
        i64::from_str_radix(&digits(bin, |c| c == '0' || c == '1')?, 2).ok()?
    } else if let Some(hex) = body.strip_prefix("0x") {
        i64::from_str_radix(&digits(hex, |c| c.is_ascii_hexdigit())?, 16).ok()?
    } else if body.contains(':') {
        // sexagesimal: [1-9][0-9_]*(:[0-5]?[0-9])+
        let mut parts = body.split(':');
        let head = parts.next()?;
        if !head.starts_with(|c: char| ('1'..='9').contains(&c)) {
            return None;
        }
        let mut value: i64 = digits(head, |c| c.is_ascii_digit())?.parse().ok()?;
        for part in parts {
            if part.is_empty() || part.len() > 2 || !part.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            if part.len() == 2 && part.as_bytes()[0] > b'5' {
                return None;
            }
            value = value
                .checked_mul(60)?
                .checked_add(part.parse::<i64>().ok()?)?;
        }
        value
    } else if body == "0" {
        0
    } else if let Some(oct) = body.strip_prefix('0') {
        i64::from_str_radix(&digits(oct, |c| ('0'..='7').contains(&c))?, 8).ok()?
    } else {
        if !body.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        digits(body, |c| c.is_ascii_digit())?.parse().ok()?
    };
    Some(if neg { -magnitude } else { magnitude })
}

fn resolve_float(t: &str) -> Option<f64> {
    let (neg, body) = split_sign(t);
    let sign = if neg { -1.0 } else { 1.0 };
    match body {
        ".inf" | ".Inf" | ".INF" => return Some(sign * f64::INFINITY),
        ".nan" | ".NaN" | ".NAN" if t == body => return Some(f64::NAN),
        _ => {}
    }
    if body.contains(':') {
        // sexagesimal float: [0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]*
        let (int_part, frac) = body.split_once('.')?;
        let int = resolve_int(int_part)? as f64;
        let frac: String = frac.chars().filter(|c| *c != '_').collect();
        if !frac.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let frac: f64 = if frac.is_empty() {
            0.0
        } else {
            format!("0.{frac}").parse().ok()?
        };
        return Some(sign * (int + frac));
    }
    // [0-9][0-9_]*\.[0-9_]*([eE][-+][0-9]+)?  |  \.[0-9_]+([eE][-+][0-9]+)?
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(pos) => (&body[..pos], Some(&body[pos + 1..])),
        None => (body, None),
    };
    let (int_part, frac) = mantissa.split_once('.')?;
    let ok_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit() || c == '_');
    if !ok_digits(int_part) || !ok_digits(frac) {
        return None;
    }
    if int_part.is_empty() && frac.is_empty() {
        return None;
    }
    if int_part.is_empty() && t != body {
        // the sign is not allowed before a bare `.5`
        return None;
    }
    if int_part.starts_with('_') || (int_part.is_empty() && frac.starts_with('_')) {
        return None;
    }
    if let Some(exp) = exponent {
        let digits = exp.strip_prefix(['+', '-'])?;
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
    }
    let clean: String = body.chars().filter(|c| *c != '_').collect();
    let clean = if clean.starts_with('.') {
        format!("0{clean}")
    } else {
        clean
    };
    clean.parse::<f64>().ok().map(|f| sign * f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(text: &str) -> Value {
        parse(&format!("k: {text}\n"))
            .unwrap()
            .unwrap()
            .get("k")
            .unwrap()
            .value
            .clone()
    }

    #[test]
    fn yaml_1_1_scalars() {
        assert_eq!(scalar("yes"), Value::Bool(true));
        assert_eq!(scalar("Off"), Value::Bool(false));
        assert_eq!(scalar("~"), Value::Null);
        assert_eq!(scalar(""), Value::Null);
        assert_eq!(scalar("1:00:00"), Value::Int(3600));
        assert_eq!(scalar("010"), Value::Int(8));
        assert_eq!(scalar("0x1f"), Value::Int(31));
        assert_eq!(scalar("1_000"), Value::Int(1000));
        assert_eq!(scalar("-5"), Value::Int(-5));
        assert_eq!(scalar("1.5"), Value::Float(1.5));
        assert_eq!(scalar("1.5e+20"), Value::Float(1.5e20));
        assert_eq!(scalar("1e5"), Value::Str("1e5".into()));
        assert_eq!(scalar("1.5e20"), Value::Str("1.5e20".into()));
        assert_eq!(scalar(".5"), Value::Float(0.5));
        assert_eq!(scalar("'yes'"), Value::Str("yes".into()));
        assert_eq!(scalar("\"5\""), Value::Str("5".into()));
        assert_eq!(scalar("00:10:00"), Value::Str("00:10:00".into()));
        assert_eq!(scalar("!!str 5"), Value::Str("5".into()));
        assert_eq!(scalar("2001:db8::1"), Value::Str("2001:db8::1".into()));
    }

    #[test]
    fn lines_aliases_and_errors() {
        let doc = parse("a: 1\nb: &x\n  c: 2\nd: *x\n").unwrap().unwrap();
        let Value::Map(entries) = &doc.value else {
            panic!("not a map")
        };
        assert_eq!(entries[1].1, 2);
        assert_eq!(doc.get("d").unwrap().get("c").unwrap().value, Value::Int(2));
        assert!(parse("").unwrap().is_none());
        assert!(parse("# only a comment\n").unwrap().is_none());
        let err = parse("a: [1\nb: 2\n").unwrap_err();
        assert!(err.line >= 1, "{err}");
        assert!(parse("a: !!python/object x\n").is_err());
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
    }
}
