//! Compilation of a parsed pattern into a small instruction list, and a backtracking machine
//! that runs it with Python `sre` semantics (greedy loops with zero-width protection, captures
//! that keep their last iteration, atomic look-arounds) and a hard budget of steps.

use super::parse::{At, Category, ClassItem, Flags, Greed, MAXREPEAT, Node};
use crate::pytext::{
    decimal_value, equivalents, is_alnum, is_cased, is_space, lower, lower_preimages,
};

#[derive(Debug, Clone)]
struct Class {
    items: Vec<ClassItem>,
    negate: bool,
    flags: Flags,
    cased: bool,
}

#[derive(Debug, Clone)]
enum Inst {
    Char(char),
    /// Case-insensitive literal: matches when the simple lower case of the character is one of
    /// these (the pattern character's lower case and Python's extra equivalents).
    CharFold([char; 3]),
    /// Case-insensitive literal under the ASCII flag.
    CharAscii(char),
    Any(Flags),
    Class(usize),
    Assert(At, Flags),
    Split(usize, usize),
    Jmp(usize),
    Save(usize),
    RepStart(usize),
    RepLoop {
        reg: usize,
        min: u64,
        max: u64,
        lazy: bool,
        body: usize,
        exit: usize,
    },
    RepIter(usize),
    Backref(usize, Flags),
    Look {
        sub: usize,
        next: usize,
        behind: Option<u64>,
        negate: bool,
    },
    Atomic {
        sub: usize,
        next: usize,
    },
    Cond {
        group: usize,
        yes: usize,
        no: usize,
    },
    Done,
}

/// A compiled program.
#[derive(Debug, Clone)]
pub struct Program {
    insts: Vec<Inst>,
    classes: Vec<Class>,
    regs: usize,
    slots: usize,
}

/// The step budget ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted;

struct Compiler {
    insts: Vec<Inst>,
    classes: Vec<Class>,
    regs: usize,
}

impl Compiler {
    fn emit(&mut self, i: Inst) -> usize {
        self.insts.push(i);
        self.insts.len() - 1
    }

    fn node(&mut self, n: &Node) {
        match n {
            Node::Lit(c, f) => {
                let inst = if !f.ignore_case {
                    Inst::Char(*c)
                } else if f.ascii {
                    Inst::CharAscii(*c)
                } else if !is_cased(*c) {
                    Inst::Char(*c)
                } else {
                    let lo = lower(*c);
                    let mut set = [lo; 3];
                    for (slot, e) in set.iter_mut().zip(equivalents(lo)) {
                        *slot = *e;
                    }
                    Inst::CharFold(set)
                };
                self.emit(inst);
            }
            Node::Any(f) => {
                self.emit(Inst::Any(*f));
            }
            Node::Class {
                items,
                negate,
                flags,
                cased,
            } => {
                self.classes.push(Class {
                    items: items.clone(),
                    negate: *negate,
                    flags: *flags,
                    cased: *cased,
                });
                let id = self.classes.len() - 1;
                self.emit(Inst::Class(id));
            }
            Node::At(a, f) => {
                self.emit(Inst::Assert(*a, *f));
            }
            Node::Group(None, b) => self.node(b),
            Node::Group(Some(g), b) => {
                self.emit(Inst::Save(2 * g));
                self.node(b);
                self.emit(Inst::Save(2 * g + 1));
            }
            Node::Seq(items) => {
                for it in items {
                    self.node(it);
                }
            }
            Node::Alt(branches) => {
                let mut jumps = Vec::new();
                for (i, b) in branches.iter().enumerate() {
                    if i + 1 < branches.len() {
                        let split = self.emit(Inst::Split(0, 0));
                        self.node(b);
                        jumps.push(self.emit(Inst::Jmp(0)));
                        let next = self.insts.len();
                        self.insts[split] = Inst::Split(split + 1, next);
                    } else {
                        self.node(b);
                    }
                }
                let end = self.insts.len();
                for j in jumps {
                    self.insts[j] = Inst::Jmp(end);
                }
            }
            Node::Repeat {
                body,
                min,
                max,
                greed,
            } => {
                if *greed == Greed::Possessive {
                    let inner = Node::Repeat {
                        body: body.clone(),
                        min: *min,
                        max: *max,
                        greed: Greed::Greedy,
                    };
                    self.node(&Node::Atomic(Box::new(inner)));
                    return;
                }
                let reg = self.regs;
                self.regs += 1;
                self.emit(Inst::RepStart(reg));
                let head = self.emit(Inst::Jmp(0));
                let body_at = self.insts.len();
                self.node(body);
                self.emit(Inst::RepIter(reg));
                self.emit(Inst::Jmp(head));
                let exit = self.insts.len();
                self.insts[head] = Inst::RepLoop {
                    reg,
                    min: *min,
                    max: *max,
                    lazy: *greed == Greed::Lazy,
                    body: body_at,
                    exit,
                };
            }
            Node::Backref(g, f) => {
                self.emit(Inst::Backref(*g, *f));
            }
            Node::Look {
                body,
                behind,
                negate,
            } => {
                let at = self.emit(Inst::Jmp(0));
                let sub = self.insts.len();
                self.node(body);
                self.emit(Inst::Done);
                let next = self.insts.len();
                self.insts[at] = Inst::Look {
                    sub,
                    next,
                    behind: *behind,
                    negate: *negate,
                };
            }
            Node::Atomic(body) => {
                let at = self.emit(Inst::Jmp(0));
                let sub = self.insts.len();
                self.node(body);
                self.emit(Inst::Done);
                let next = self.insts.len();
                self.insts[at] = Inst::Atomic { sub, next };
            }
            Node::Cond { group, yes, no } => {
                let at = self.emit(Inst::Jmp(0));
                let yes_at = self.insts.len();
                self.node(yes);
                let jump = self.emit(Inst::Jmp(0));
                let no_at = self.insts.len();
                self.node(no);
                let end = self.insts.len();
                self.insts[jump] = Inst::Jmp(end);
                self.insts[at] = Inst::Cond {
                    group: *group,
                    yes: yes_at,
                    no: no_at,
                };
            }
        }
    }
}

/// Compile a parsed pattern with `groups` capturing groups.
pub fn compile(node: &Node, groups: usize) -> Program {
    let mut c = Compiler {
        insts: Vec::new(),
        classes: Vec::new(),
        regs: 0,
    };
    c.node(node);
    c.emit(Inst::Done);
    Program {
        insts: c.insts,
        classes: c.classes,
        regs: c.regs,
        slots: 2 * (groups + 1),
    }
}

#[derive(Debug, Clone, Copy)]
struct Reg {
    count: u64,
    last: usize,
}

const NO_POS: usize = usize::MAX;

enum Bt {
    Resume(usize, usize),
    LazyIter { reg: usize, pc: usize, pos: usize },
    Slot(usize, Option<usize>),
    Reg(usize, Reg),
}

struct Vm<'a> {
    prog: &'a Program,
    s: &'a [char],
    caps: Vec<Option<usize>>,
    regs: Vec<Reg>,
    steps: u64,
    limit: u64,
}

fn is_word(c: char, ascii: bool) -> bool {
    if ascii {
        c.is_ascii_alphanumeric() || c == '_'
    } else {
        is_alnum(c) || c == '_'
    }
}

fn category(cat: Category, c: char, ascii: bool) -> bool {
    match cat {
        Category::Digit => {
            if ascii {
                c.is_ascii_digit()
            } else {
                decimal_value(c).is_some()
            }
        }
        Category::NotDigit => !category(Category::Digit, c, ascii),
        Category::Space => {
            if ascii {
                matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{b}' | '\u{c}')
            } else {
                is_space(c)
            }
        }
        Category::NotSpace => !category(Category::Space, c, ascii),
        Category::Word => is_word(c, ascii),
        Category::NotWord => !is_word(c, ascii),
    }
}

fn class_match(cls: &Class, ch: char) -> bool {
    let f = cls.flags;
    let hit = if f.ignore_case && cls.cased && !f.ascii {
        let lc = lower(ch);
        let mut targets = vec![lc];
        targets.extend(equivalents(lc).iter().copied().filter(|c| *c != lc));
        cls.items.iter().any(|it| match it {
            ClassItem::Cat(cat) => category(*cat, lc, false),
            ClassItem::Range(lo, hi) => targets
                .iter()
                .flat_map(|t| lower_preimages(*t))
                .any(|p| *lo <= p && p <= *hi),
        })
    } else if f.ignore_case && f.ascii {
        let lc = ch.to_ascii_lowercase();
        let uc = ch.to_ascii_uppercase();
        cls.items.iter().any(|it| match it {
            ClassItem::Cat(cat) => category(*cat, ch, true),
            ClassItem::Range(lo, hi) => [ch, lc, uc].iter().any(|c| lo <= c && c <= hi),
        })
    } else {
        cls.items.iter().any(|it| match it {
            ClassItem::Cat(cat) => category(*cat, ch, f.ascii),
            ClassItem::Range(lo, hi) => *lo <= ch && ch <= *hi,
        })
    };
    hit != cls.negate
}

impl Vm<'_> {
    fn assert(&self, at: At, f: Flags, pos: usize) -> bool {
        let n = self.s.len();
        match at {
            At::Beginning | At::BeginningString => pos == 0,
            At::BeginningLine => pos == 0 || self.s[pos - 1] == '\n',
            At::End => pos == n || (pos + 1 == n && self.s[pos] == '\n'),
            At::EndLine => pos == n || self.s[pos] == '\n',
            At::EndString => pos == n,
            At::Boundary | At::NonBoundary => {
                if n == 0 {
                    return false;
                }
                let before = pos > 0 && is_word(self.s[pos - 1], f.ascii);
                let after = pos < n && is_word(self.s[pos], f.ascii);
                (before != after) == (at == At::Boundary)
            }
        }
    }

    /// Run from `pc` at `pos` until `Done`; the end position, or `None` when nothing matches.
    fn run(&mut self, pc0: usize, pos0: usize) -> Result<Option<usize>, Exhausted> {
        let mut stack: Vec<Bt> = Vec::new();
        let mut pc = pc0;
        let mut pos = pos0;
        loop {
            self.steps += 1;
            if self.steps > self.limit {
                return Err(Exhausted);
            }
            let prog = self.prog;
            let ok = match &prog.insts[pc] {
                Inst::Char(c) => {
                    if pos < self.s.len() && self.s[pos] == *c {
                        pos += 1;
                        pc += 1;
                        true
                    } else {
                        false
                    }
                }
                Inst::CharFold(set) => {
                    if pos < self.s.len() && set.contains(&lower(self.s[pos])) {
                        pos += 1;
                        pc += 1;
                        true
                    } else {
                        false
                    }
                }
                Inst::CharAscii(c) => {
                    if pos < self.s.len() && self.s[pos].eq_ignore_ascii_case(c) {
                        pos += 1;
                        pc += 1;
                        true
                    } else {
                        false
                    }
                }
                Inst::Any(f) => {
                    if pos < self.s.len() && (f.dotall || self.s[pos] != '\n') {
                        pos += 1;
                        pc += 1;
                        true
                    } else {
                        false
                    }
                }
                Inst::Class(id) => {
                    if pos < self.s.len() && class_match(&prog.classes[*id], self.s[pos]) {
                        pos += 1;
                        pc += 1;
                        true
                    } else {
                        false
                    }
                }
                Inst::Assert(at, f) => {
                    pc += 1;
                    self.assert(*at, *f, pos)
                }
                Inst::Split(a, b) => {
                    stack.push(Bt::Resume(*b, pos));
                    pc = *a;
                    true
                }
                Inst::Jmp(t) => {
                    pc = *t;
                    true
                }
                Inst::Save(slot) => {
                    stack.push(Bt::Slot(*slot, self.caps[*slot]));
                    self.caps[*slot] = Some(pos);
                    pc += 1;
                    true
                }
                Inst::RepStart(reg) => {
                    stack.push(Bt::Reg(*reg, self.regs[*reg]));
                    self.regs[*reg] = Reg {
                        count: 0,
                        last: NO_POS,
                    };
                    pc += 1;
                    true
                }
                Inst::RepIter(reg) => {
                    let r = self.regs[*reg];
                    stack.push(Bt::Reg(*reg, r));
                    self.regs[*reg].count = r.count.saturating_add(1);
                    pc += 1;
                    true
                }
                Inst::RepLoop {
                    reg,
                    min,
                    max,
                    lazy,
                    body,
                    exit,
                } => {
                    let r = self.regs[*reg];
                    if r.count < *min {
                        pc = *body;
                    } else if (r.count < *max || *max == MAXREPEAT) && pos != r.last {
                        if *lazy {
                            stack.push(Bt::LazyIter {
                                reg: *reg,
                                pc: *body,
                                pos,
                            });
                            pc = *exit;
                        } else {
                            stack.push(Bt::Resume(*exit, pos));
                            stack.push(Bt::Reg(*reg, r));
                            self.regs[*reg].last = pos;
                            pc = *body;
                        }
                    } else {
                        pc = *exit;
                    }
                    true
                }
                Inst::Backref(g, f) => match (self.caps[2 * g], self.caps[2 * g + 1]) {
                    (Some(a), Some(b)) if a <= b => {
                        let len = b - a;
                        let f = *f;
                        let ok = pos + len <= self.s.len()
                            && (0..len).all(|k| {
                                let (x, y) = (self.s[a + k], self.s[pos + k]);
                                if !f.ignore_case {
                                    x == y
                                } else if f.ascii {
                                    x.eq_ignore_ascii_case(&y)
                                } else {
                                    lower(x) == lower(y)
                                }
                            });
                        if ok {
                            pos += len;
                            pc += 1;
                        }
                        ok
                    }
                    _ => false,
                },
                Inst::Look {
                    sub,
                    next,
                    behind,
                    negate,
                } => {
                    let (sub, next, negate) = (*sub, *next, *negate);
                    let start = match behind {
                        None => Some(pos),
                        Some(w) => usize::try_from(*w).ok().and_then(|w| pos.checked_sub(w)),
                    };
                    match start {
                        None => {
                            negate && {
                                pc = next;
                                true
                            }
                        }
                        Some(start) => {
                            let before = self.caps.clone();
                            let found = self.run(sub, start)?.is_some();
                            if found && !negate {
                                self.keep_caps(&before, &mut stack);
                                pc = next;
                                true
                            } else {
                                self.caps = before;
                                if found == negate {
                                    false
                                } else {
                                    pc = next;
                                    true
                                }
                            }
                        }
                    }
                }
                Inst::Atomic { sub, next } => {
                    let (sub, next) = (*sub, *next);
                    let before = self.caps.clone();
                    match self.run(sub, pos)? {
                        Some(end) => {
                            self.keep_caps(&before, &mut stack);
                            pos = end;
                            pc = next;
                            true
                        }
                        None => {
                            self.caps = before;
                            false
                        }
                    }
                }
                Inst::Cond { group, yes, no } => {
                    let set = self.caps.get(2 * group).copied().flatten().is_some()
                        && self.caps.get(2 * group + 1).copied().flatten().is_some();
                    pc = if set { *yes } else { *no };
                    true
                }
                Inst::Done => return Ok(Some(pos)),
            };
            if ok {
                continue;
            }
            // Backtrack.
            loop {
                match stack.pop() {
                    None => return Ok(None),
                    Some(Bt::Slot(s, v)) => self.caps[s] = v,
                    Some(Bt::Reg(r, v)) => self.regs[r] = v,
                    Some(Bt::Resume(p, at)) => {
                        pc = p;
                        pos = at;
                        break;
                    }
                    Some(Bt::LazyIter {
                        reg,
                        pc: p,
                        pos: at,
                    }) => {
                        let r = self.regs[reg];
                        stack.push(Bt::Reg(reg, r));
                        self.regs[reg].last = at;
                        pc = p;
                        pos = at;
                        break;
                    }
                }
            }
        }
    }

    /// After a successful atomic sub-run, make the captures it set undoable by the outer run.
    fn keep_caps(&self, before: &[Option<usize>], stack: &mut Vec<Bt>) {
        for (i, (old, new)) in before.iter().zip(&self.caps).enumerate() {
            if old != new {
                stack.push(Bt::Slot(i, *old));
            }
        }
    }
}

/// A capturing group's span in character offsets, `None` when it did not take part.
pub type Span = Option<(usize, usize)>;

/// Match `prog` against `s` starting at position 0. On success, the group spans (1-based
/// groups at index `g - 1`) in character offsets.
pub fn run(prog: &Program, s: &[char], limit: u64) -> Result<Option<Vec<Span>>, Exhausted> {
    let mut vm = Vm {
        prog,
        s,
        caps: vec![None; prog.slots],
        regs: vec![
            Reg {
                count: 0,
                last: NO_POS
            };
            prog.regs
        ],
        steps: 0,
        limit,
    };
    Ok(vm.run(0, 0)?.map(|_| {
        (1..prog.slots / 2)
            .map(|g| match (vm.caps[2 * g], vm.caps[2 * g + 1]) {
                (Some(a), Some(b)) if a <= b => Some((a, b)),
                _ => None,
            })
            .collect()
    }))
}
