//! A parser for Python 3.11 `re` pattern syntax (str patterns), following `sre_parse`: the same
//! constructs, the same rejections, the same scoping of inline flags.

use crate::pytext::{is_cased, parse_int};

/// `sre_constants.MAXREPEAT`: a repeat bound equal to this means "no upper bound".
pub const MAXREPEAT: u64 = u32::MAX as u64;
/// Groups nested deeper than this are rejected (CPython hits its recursion limit near here).
const MAX_NESTING: usize = 200;

/// Flags in force for one atom.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    pub ignore_case: bool,
    pub multiline: bool,
    pub dotall: bool,
    pub ascii: bool,
    pub verbose: bool,
}

/// Character categories (`\d`, `\s`, `\w` and their negations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Digit,
    NotDigit,
    Space,
    NotSpace,
    Word,
    NotWord,
}

/// Zero-width assertions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    Beginning,
    BeginningLine,
    BeginningString,
    End,
    EndLine,
    EndString,
    Boundary,
    NonBoundary,
}

/// One member of a character class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassItem {
    Range(char, char),
    Cat(Category),
}

/// Repetition flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Greed {
    Greedy,
    Lazy,
    Possessive,
}

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Lit(char, Flags),
    Any(Flags),
    Class {
        items: Vec<ClassItem>,
        negate: bool,
        flags: Flags,
        cased: bool,
    },
    At(At, Flags),
    Group(Option<usize>, Box<Node>),
    Seq(Vec<Node>),
    Alt(Vec<Node>),
    Repeat {
        body: Box<Node>,
        min: u64,
        max: u64,
        greed: Greed,
    },
    Backref(usize, Flags),
    Look {
        body: Box<Node>,
        behind: Option<u64>,
        negate: bool,
    },
    Atomic(Box<Node>),
    Cond {
        group: usize,
        yes: Box<Node>,
        no: Box<Node>,
    },
}

impl Node {
    fn is_at(&self) -> bool {
        matches!(self, Node::At(..))
    }
    fn is_repeat(&self) -> bool {
        matches!(self, Node::Repeat { .. })
    }
}

/// A compile error, worded like Python's `re.error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg} at position {pos}")]
pub struct PatternError {
    pub msg: String,
    pub pos: usize,
}

/// A parsed pattern plus its group count (groups numbered from 1).
#[derive(Debug, Clone)]
pub struct Parsed {
    pub node: Node,
    pub groups: usize,
}

struct State {
    groups: usize, // next group number (Python's state.groups, starts at 1)
    names: Vec<(String, usize)>,
    open: Vec<usize>,
    widths: Vec<(u64, u64)>, // indexed by group number
    lookbehind_groups: Option<usize>,
    cond_refs: Vec<(usize, usize)>,
}

struct P<'a> {
    s: &'a [char],
    i: usize,
    st: State,
}

/// Parse `pattern` with the given global flags.
pub fn parse(pattern: &str, flags: Flags) -> Result<Parsed, PatternError> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut p = P {
        s: &chars,
        i: 0,
        st: State {
            groups: 1,
            names: Vec::new(),
            open: Vec::new(),
            widths: vec![(0, 0)],
            lookbehind_groups: None,
            cond_refs: Vec::new(),
        },
    };
    let node = p.sub(flags, 0)?;
    if p.i < chars.len() {
        return Err(p.err("unbalanced parenthesis"));
    }
    for &(g, pos) in &p.st.cond_refs {
        if g >= p.st.groups {
            return Err(PatternError {
                msg: "invalid group reference".into(),
                pos,
            });
        }
    }
    Ok(Parsed {
        node,
        groups: p.st.groups - 1,
    })
}

fn is_identifier(name: &str) -> bool {
    let mut it = name.chars();
    match it.next() {
        Some(c) if c == '_' || c.is_alphabetic() => it.all(|c| c == '_' || c.is_alphanumeric()),
        _ => false,
    }
}

const FLAG_CHARS: &str = "iLmsxatu";

impl P<'_> {
    fn err(&self, msg: impl Into<String>) -> PatternError {
        PatternError {
            msg: msg.into(),
            pos: self.i,
        }
    }

    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn get(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.i += 1;
        }
        c
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn get_until(&mut self, term: char, what: &str) -> Result<String, PatternError> {
        let start = self.i;
        loop {
            match self.get() {
                None => return Err(self.err(format!("missing {term}, unterminated name"))),
                Some(c) if c == term => break,
                Some(_) => {}
            }
        }
        let name: String = self.s[start..self.i - 1].iter().collect();
        if name.is_empty() {
            return Err(self.err(format!("missing {what}")));
        }
        Ok(name)
    }

    fn sub(&mut self, flags: Flags, nested: usize) -> Result<Node, PatternError> {
        if nested > MAX_NESTING {
            return Err(self.err("too many nested groups"));
        }
        let mut branches = vec![self.seq(flags, nested)?];
        while self.eat('|') {
            branches.push(self.seq(flags, nested)?);
        }
        Ok(if branches.len() == 1 {
            branches.pop().unwrap_or(Node::Seq(Vec::new()))
        } else {
            Node::Alt(branches)
        })
    }

    fn seq(&mut self, flags: Flags, nested: usize) -> Result<Node, PatternError> {
        let mut items: Vec<Node> = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            self.i += 1;
            if flags.verbose {
                if " \t\n\r\u{b}\u{c}".contains(c) {
                    continue;
                }
                if c == '#' {
                    while let Some(c) = self.get() {
                        if c == '\n' {
                            break;
                        }
                    }
                    continue;
                }
            }
            match c {
                '\\' => {
                    let e = self
                        .get()
                        .ok_or_else(|| self.err("bad escape (end of pattern)"))?;
                    items.push(self.escape(e, flags)?);
                }
                '[' => items.push(self.class(flags)?),
                '*' | '+' | '?' | '{' => {
                    let (min, max) = match c {
                        '?' => (0, 1),
                        '*' => (0, MAXREPEAT),
                        '+' => (1, MAXREPEAT),
                        _ => {
                            if self.peek() == Some('}') {
                                items.push(Node::Lit('{', flags));
                                continue;
                            }
                            let here = self.i;
                            let lo = self.digits();
                            let hi = if self.eat(',') {
                                self.digits()
                            } else {
                                lo.clone()
                            };
                            if !self.eat('}') {
                                items.push(Node::Lit('{', flags));
                                self.i = here;
                                continue;
                            }
                            let mut min = 0;
                            let mut max = MAXREPEAT;
                            if !lo.is_empty() {
                                min = lo.parse::<u64>().unwrap_or(u64::MAX);
                                if min >= MAXREPEAT {
                                    return Err(self.err("the repetition number is too large"));
                                }
                            }
                            if !hi.is_empty() {
                                max = hi.parse::<u64>().unwrap_or(u64::MAX);
                                if max >= MAXREPEAT {
                                    return Err(self.err("the repetition number is too large"));
                                }
                                if max < min {
                                    return Err(self.err("min repeat greater than max repeat"));
                                }
                            }
                            (min, max)
                        }
                    };
                    let item = match items.pop() {
                        None => return Err(self.err("nothing to repeat")),
                        Some(it) if it.is_at() => return Err(self.err("nothing to repeat")),
                        Some(it) if it.is_repeat() => return Err(self.err("multiple repeat")),
                        Some(Node::Group(None, body)) => *body,
                        Some(it) => it,
                    };
                    let greed = if self.eat('?') {
                        Greed::Lazy
                    } else if self.eat('+') {
                        Greed::Possessive
                    } else {
                        Greed::Greedy
                    };
                    items.push(Node::Repeat {
                        body: Box::new(item),
                        min,
                        max,
                        greed,
                    });
                }
                '.' => items.push(Node::Any(flags)),
                '(' => {
                    if let Some(node) = self.group(flags, nested)? {
                        items.push(node);
                    }
                }
                '^' => items.push(Node::At(
                    if flags.multiline {
                        At::BeginningLine
                    } else {
                        At::Beginning
                    },
                    flags,
                )),
                '$' => items.push(Node::At(
                    if flags.multiline {
                        At::EndLine
                    } else {
                        At::End
                    },
                    flags,
                )),
                c => items.push(Node::Lit(c, flags)),
            }
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Node::Seq(Vec::new()))
        } else {
            Node::Seq(items)
        })
    }

    fn digits(&mut self) -> String {
        let mut out = String::new();
        while let Some(c) = self.peek().filter(char::is_ascii_digit) {
            out.push(c);
            self.i += 1;
        }
        out
    }

    fn check_lookbehind_group(&self, gid: usize) -> Result<(), PatternError> {
        if let Some(lb) = self.st.lookbehind_groups {
            if self.st.open.contains(&gid) {
                return Err(self.err("cannot refer to an open group"));
            }
            if gid >= lb {
                return Err(
                    self.err("cannot refer to group defined in the same lookbehind subpattern")
                );
            }
        }
        Ok(())
    }

    fn backref(&self, gid: usize, flags: Flags) -> Result<Node, PatternError> {
        if self.st.open.contains(&gid) {
            return Err(self.err("cannot refer to an open group"));
        }
        self.check_lookbehind_group(gid)?;
        Ok(Node::Backref(gid, flags))
    }

    /// Parse after `(`; `None` for a comment group.
    fn group(&mut self, flags: Flags, nested: usize) -> Result<Option<Node>, PatternError> {
        let mut capture = true;
        let mut atomic = false;
        let mut name = None;
        let mut inner = flags;
        if self.eat('?') {
            let c = self
                .get()
                .ok_or_else(|| self.err("unexpected end of pattern"))?;
            match c {
                'P' => {
                    if self.eat('<') {
                        let n = self.get_until('>', "group name")?;
                        if !is_identifier(&n) {
                            return Err(self.err(format!("bad character in group name '{n}'")));
                        }
                        name = Some(n);
                    } else if self.eat('=') {
                        let n = self.get_until(')', "group name")?;
                        if !is_identifier(&n) {
                            return Err(self.err(format!("bad character in group name '{n}'")));
                        }
                        let gid = self
                            .st
                            .names
                            .iter()
                            .find(|(k, _)| *k == n)
                            .map(|(_, g)| *g)
                            .ok_or_else(|| self.err(format!("unknown group name '{n}'")))?;
                        return self.backref(gid, flags).map(Some);
                    } else {
                        return Err(match self.get() {
                            None => self.err("unexpected end of pattern"),
                            Some(c) => self.err(format!("unknown extension ?P{c}")),
                        });
                    }
                }
                ':' => capture = false,
                '#' => loop {
                    match self.get() {
                        None => return Err(self.err("missing ), unterminated comment")),
                        Some(')') => return Ok(None),
                        Some(_) => {}
                    }
                },
                '=' | '!' | '<' => {
                    let mut kind = c;
                    let mut behind = false;
                    let saved_lb = self.st.lookbehind_groups;
                    if c == '<' {
                        kind = self
                            .get()
                            .ok_or_else(|| self.err("unexpected end of pattern"))?;
                        if kind != '=' && kind != '!' {
                            return Err(self.err(format!("unknown extension ?<{kind}")));
                        }
                        behind = true;
                        if saved_lb.is_none() {
                            self.st.lookbehind_groups = Some(self.st.groups);
                        }
                    }
                    let body = self.sub(flags, nested + 1)?;
                    if behind && saved_lb.is_none() {
                        self.st.lookbehind_groups = None;
                    }
                    if !self.eat(')') {
                        return Err(self.err("missing ), unterminated subpattern"));
                    }
                    let behind = if behind {
                        let (lo, hi) = self.width(&body);
                        if lo != hi {
                            return Err(self.err("look-behind requires fixed-width pattern"));
                        }
                        Some(lo)
                    } else {
                        None
                    };
                    return Ok(Some(Node::Look {
                        body: Box::new(body),
                        behind,
                        negate: kind == '!',
                    }));
                }
                '(' => {
                    let pos = self.i;
                    let cond = self.get_until(')', "group name")?;
                    let group = if is_identifier(&cond) {
                        self.st
                            .names
                            .iter()
                            .find(|(k, _)| *k == cond)
                            .map(|(_, g)| *g)
                            .ok_or_else(|| self.err(format!("unknown group name '{cond}'")))?
                    } else {
                        let g = parse_int(&cond).filter(|g| *g >= 0).ok_or_else(|| {
                            self.err(format!("bad character in group name '{cond}'"))
                        })?;
                        if g == 0 {
                            return Err(self.err("bad group number"));
                        }
                        let g = usize::try_from(g)
                            .ok()
                            .filter(|g| *g < (1 << 30))
                            .ok_or_else(|| self.err("invalid group reference"))?;
                        self.st.cond_refs.push((g, pos));
                        g
                    };
                    self.check_lookbehind_group(group)?;
                    let yes = self.seq(flags, nested + 1)?;
                    let no = if self.eat('|') {
                        let no = self.seq(flags, nested + 1)?;
                        if self.peek() == Some('|') {
                            return Err(self.err("conditional backref with more than two branches"));
                        }
                        no
                    } else {
                        Node::Seq(Vec::new())
                    };
                    if !self.eat(')') {
                        return Err(self.err("missing ), unterminated subpattern"));
                    }
                    return Ok(Some(Node::Cond {
                        group,
                        yes: Box::new(yes),
                        no: Box::new(no),
                    }));
                }
                '>' => {
                    capture = false;
                    atomic = true;
                }
                c if FLAG_CHARS.contains(c) || c == '-' => {
                    inner = self.scoped_flags(c, flags)?;
                    capture = false;
                }
                c => return Err(self.err(format!("unknown extension ?{c}"))),
            }
        }
        let gid = if capture {
            let gid = self.st.groups;
            if let Some(n) = &name {
                if self.st.names.iter().any(|(k, _)| k == n) {
                    return Err(self.err(format!("redefinition of group name '{n}'")));
                }
                self.st.names.push((n.clone(), gid));
            }
            self.st.groups += 1;
            self.st.open.push(gid);
            self.st.widths.push((0, 0));
            Some(gid)
        } else {
            None
        };
        let body = self.sub(inner, nested + 1)?;
        if !self.eat(')') {
            return Err(self.err("missing ), unterminated subpattern"));
        }
        if let Some(g) = gid {
            self.st.open.retain(|x| *x != g);
            let w = self.width(&body);
            if let Some(slot) = self.st.widths.get_mut(g) {
                *slot = w;
            }
        }
        Ok(Some(if atomic {
            Node::Atomic(Box::new(body))
        } else {
            Node::Group(gid, Box::new(body))
        }))
    }

    /// `(?flags:` or `(?flags-flags:`; global `(?flags)` is always an error here because the
    /// reference prepends `^`, so such a group is never at the start of the expression.
    fn scoped_flags(&mut self, first: char, flags: Flags) -> Result<Flags, PatternError> {
        let mut add = String::new();
        let mut del = String::new();
        let mut c = first;
        if c != '-' {
            loop {
                if c == 'L' {
                    return Err(
                        self.err("bad inline flags: cannot use 'L' flag with a str pattern")
                    );
                }
                add.push(c);
                if add.contains('a') && add.contains('u') {
                    return Err(
                        self.err("bad inline flags: flags 'a', 'u' and 'L' are incompatible")
                    );
                }
                c = self.get().ok_or_else(|| self.err("missing -, : or )"))?;
                if ")-:".contains(c) {
                    break;
                }
                if !FLAG_CHARS.contains(c) {
                    return Err(self.err(if c.is_alphabetic() {
                        "unknown flag"
                    } else {
                        "missing -, : or )"
                    }));
                }
            }
        }
        if c == ')' {
            return Err(self.err("global flags not at the start of the expression"));
        }
        if add.contains('t') {
            return Err(self.err("bad inline flags: cannot turn on global flag"));
        }
        if c == '-' {
            c = self.get().ok_or_else(|| self.err("missing flag"))?;
            if !FLAG_CHARS.contains(c) {
                return Err(self.err(if c.is_alphabetic() {
                    "unknown flag"
                } else {
                    "missing flag"
                }));
            }
            loop {
                if "auL".contains(c) {
                    return Err(
                        self.err("bad inline flags: cannot turn off flags 'a', 'u' and 'L'")
                    );
                }
                del.push(c);
                c = self.get().ok_or_else(|| self.err("missing :"))?;
                if c == ':' {
                    break;
                }
                if !FLAG_CHARS.contains(c) {
                    return Err(self.err(if c.is_alphabetic() {
                        "unknown flag"
                    } else {
                        "missing :"
                    }));
                }
            }
        }
        if del.contains('t') {
            return Err(self.err("bad inline flags: cannot turn off global flag"));
        }
        if add.chars().any(|f| del.contains(f)) {
            return Err(self.err("bad inline flags: flag turned on and off"));
        }
        let mut f = flags;
        let set = |f: &mut Flags, ch: char, on: bool| match ch {
            'i' => f.ignore_case = on,
            'm' => f.multiline = on,
            's' => f.dotall = on,
            'x' => f.verbose = on,
            'a' => f.ascii = on,
            _ => {}
        };
        for ch in add.chars() {
            set(&mut f, ch, true);
        }
        for ch in del.chars() {
            set(&mut f, ch, false);
        }
        Ok(f)
    }

    fn hex_escape(&mut self, n: usize) -> Result<char, PatternError> {
        let mut v = 0u32;
        for _ in 0..n {
            let d = self
                .peek()
                .filter(char::is_ascii_hexdigit)
                .and_then(|c| c.to_digit(16))
                .ok_or_else(|| self.err("incomplete escape"))?;
            v = v * 16 + d;
            self.i += 1;
        }
        char::from_u32(v).ok_or_else(|| self.err("bad escape"))
    }

    /// Escapes shared by both contexts: `\x`, `\u`, `\U`, `\N`, and the simple letters.
    fn common_escape(&mut self, e: char) -> Result<Option<char>, PatternError> {
        Ok(Some(match e {
            'a' => '\u{7}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'v' => '\u{b}',
            '\\' => '\\',
            'x' => self.hex_escape(2)?,
            'u' => self.hex_escape(4)?,
            'U' => self.hex_escape(8)?,
            // Named characters would need the Unicode name database; no pattern the dialect
            // checks let through can form `\N{...}` (its `{` is always escaped first).
            'N' => {
                return Err(self.err(if self.peek() == Some('{') {
                    "undefined character name"
                } else {
                    "missing {"
                }));
            }
            _ => return Ok(None),
        }))
    }

    fn escape(&mut self, e: char, flags: Flags) -> Result<Node, PatternError> {
        let cat = |c| Node::Class {
            items: vec![ClassItem::Cat(c)],
            negate: false,
            flags,
            cased: false,
        };
        match e {
            'A' => return Ok(Node::At(At::BeginningString, flags)),
            'Z' => return Ok(Node::At(At::EndString, flags)),
            'b' => return Ok(Node::At(At::Boundary, flags)),
            'B' => return Ok(Node::At(At::NonBoundary, flags)),
            'd' => return Ok(cat(Category::Digit)),
            'D' => return Ok(cat(Category::NotDigit)),
            's' => return Ok(cat(Category::Space)),
            'S' => return Ok(cat(Category::NotSpace)),
            'w' => return Ok(cat(Category::Word)),
            'W' => return Ok(cat(Category::NotWord)),
            _ => {}
        }
        if let Some(c) = self.common_escape(e)? {
            return Ok(Node::Lit(c, flags));
        }
        if e == '0' {
            let mut v = 0;
            for _ in 0..2 {
                match self.peek().filter(|c| ('0'..='7').contains(c)) {
                    Some(d) => {
                        v = v * 8 + (d as u32 - '0' as u32);
                        self.i += 1;
                    }
                    None => break,
                }
            }
            return Ok(Node::Lit(char::from_u32(v).unwrap_or('\0'), flags));
        }
        if e.is_ascii_digit() {
            let mut text = e.to_string();
            if let Some(d2) = self.peek().filter(char::is_ascii_digit) {
                self.i += 1;
                text.push(d2);
                let octal = |c: char| ('0'..='7').contains(&c);
                if octal(e) && octal(d2) {
                    if let Some(d3) = self.peek().filter(|c| octal(*c)) {
                        self.i += 1;
                        text.push(d3);
                        let v = u32::from_str_radix(&text, 8).unwrap_or(u32::MAX);
                        if v > 0o377 {
                            return Err(self.err(format!(
                                "octal escape value \\{text} outside of range 0-0o377"
                            )));
                        }
                        return Ok(Node::Lit(char::from_u32(v).unwrap_or('\0'), flags));
                    }
                }
            }
            let gid: usize = text.parse().unwrap_or(usize::MAX);
            if gid < self.st.groups {
                return self.backref(gid, flags);
            }
            return Err(self.err(format!("invalid group reference {gid}")));
        }
        if e.is_ascii_alphabetic() {
            return Err(self.err(format!("bad escape \\{e}")));
        }
        Ok(Node::Lit(e, flags))
    }

    /// One escape inside `[...]`: a character or a category.
    fn class_escape(&mut self, e: char) -> Result<ClassItem, PatternError> {
        let cat = match e {
            'd' => Some(Category::Digit),
            'D' => Some(Category::NotDigit),
            's' => Some(Category::Space),
            'S' => Some(Category::NotSpace),
            'w' => Some(Category::Word),
            'W' => Some(Category::NotWord),
            _ => None,
        };
        if let Some(c) = cat {
            return Ok(ClassItem::Cat(c));
        }
        let lit = |c| Ok(ClassItem::Range(c, c));
        if e == 'b' {
            return lit('\u{8}');
        }
        if let Some(c) = self.common_escape(e)? {
            return lit(c);
        }
        if ('0'..='7').contains(&e) {
            let mut v = e as u32 - '0' as u32;
            for _ in 0..2 {
                match self.peek().filter(|c| ('0'..='7').contains(c)) {
                    Some(d) => {
                        v = v * 8 + (d as u32 - '0' as u32);
                        self.i += 1;
                    }
                    None => break,
                }
            }
            if v > 0o377 {
                return Err(self.err("octal escape value outside of range 0-0o377"));
            }
            return lit(char::from_u32(v).unwrap_or('\0'));
        }
        if e.is_ascii_alphanumeric() {
            return Err(self.err(format!("bad escape \\{e}")));
        }
        lit(e)
    }

    fn class(&mut self, flags: Flags) -> Result<Node, PatternError> {
        let negate = self.eat('^');
        let mut items: Vec<ClassItem> = Vec::new();
        loop {
            let c = self
                .get()
                .ok_or_else(|| self.err("unterminated character set"))?;
            if c == ']' && !items.is_empty() {
                break;
            }
            let first = if c == '\\' {
                let e = self
                    .get()
                    .ok_or_else(|| self.err("unterminated character set"))?;
                self.class_escape(e)?
            } else {
                ClassItem::Range(c, c)
            };
            if self.eat('-') {
                let that = self
                    .get()
                    .ok_or_else(|| self.err("unterminated character set"))?;
                if that == ']' {
                    items.push(first);
                    items.push(ClassItem::Range('-', '-'));
                    break;
                }
                let second = if that == '\\' {
                    let e = self
                        .get()
                        .ok_or_else(|| self.err("unterminated character set"))?;
                    self.class_escape(e)?
                } else {
                    ClassItem::Range(that, that)
                };
                match (first, second) {
                    (ClassItem::Range(lo, lo2), ClassItem::Range(hi, hi2))
                        if lo == lo2 && hi == hi2 && lo <= hi =>
                    {
                        items.push(ClassItem::Range(lo, hi));
                    }
                    _ => return Err(self.err("bad character range")),
                }
            } else {
                items.push(first);
            }
        }
        let cased = flags.ignore_case
            && items.iter().any(|it| match it {
                ClassItem::Range(lo, hi) => {
                    (*hi as u32 - *lo as u32) > 4096 || (*lo..=*hi).any(is_cased)
                }
                ClassItem::Cat(_) => false,
            });
        Ok(Node::Class {
            items,
            negate,
            flags,
            cased,
        })
    }

    /// `SubPattern.getwidth()`: minimum and maximum number of characters consumed.
    fn width(&self, node: &Node) -> (u64, u64) {
        let (lo, hi) = match node {
            Node::Lit(..) | Node::Any(_) | Node::Class { .. } => (1, 1),
            Node::At(..) | Node::Look { .. } => (0, 0),
            Node::Group(_, b) | Node::Atomic(b) => self.width(b),
            Node::Seq(items) => items.iter().fold((0u64, 0u64), |(a, b), n| {
                let (l, h) = self.width(n);
                (a.saturating_add(l), b.saturating_add(h))
            }),
            Node::Alt(bs) => {
                let mut i = MAXREPEAT - 1;
                let mut j = 0;
                for b in bs {
                    let (l, h) = self.width(b);
                    i = i.min(l);
                    j = j.max(h);
                }
                (i, j)
            }
            Node::Repeat { body, min, max, .. } => {
                let (l, h) = self.width(body);
                (l.saturating_mul(*min), h.saturating_mul(*max))
            }
            Node::Backref(g, _) => self.st.widths.get(*g).copied().unwrap_or((0, 0)),
            Node::Cond { yes, no, .. } => {
                let (l1, h1) = self.width(yes);
                let (l2, h2) = self.width(no);
                let empty_no = matches!(**no, Node::Seq(ref v) if v.is_empty());
                (if empty_no { 0 } else { l1.min(l2) }, h1.max(h2))
            }
        };
        (lo.min(MAXREPEAT - 1), hi.min(MAXREPEAT))
    }
}
