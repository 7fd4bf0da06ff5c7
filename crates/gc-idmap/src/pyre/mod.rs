//! Python `re` semantics for the patterns an identity mapping can contain.
//!
//! The reference hands the rewritten `match` text straight to CPython's `re`, so every Python
//! construct that survives the dialect checks has Python meaning (look-around, back-references,
//! scoped flags, and, through literal-mode leaks, character classes and `\d`-style escapes).
//! Neither `regex` (no back-references or look-around, different `$`) nor `fancy-regex`
//! (different syntax errors, case folding without Python's extra equivalences such as `ı`/`i`)
//! reproduces that exactly, so this module parses the `sre_parse` grammar itself and runs a
//! backtracking machine with `sre` semantics. Every match has a step budget: a pattern that
//! exhausts it counts as no match, and the caller logs it.

mod exec;
mod parse;

use parse::Flags;
pub use parse::PatternError;

/// Steps (instructions executed) allowed for one match attempt. Python would backtrack for
/// ever on a catastrophic pattern; we stop after this many (tens of milliseconds of work).
pub const STEP_LIMIT: u64 = 1_000_000;

/// A compiled Python pattern.
#[derive(Debug, Clone)]
pub struct PyRegex {
    prog: exec::Program,
    groups: usize,
    top_level_alternation: bool,
}

/// The result of one match attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchOutcome {
    /// Matched; the text of each capturing group (groups 1.. of Python, `None` when the group
    /// did not take part).
    Matched(Vec<Option<String>>),
    /// Did not match.
    NoMatch,
    /// Gave up after [`STEP_LIMIT`] steps (counts as no match).
    Exhausted,
}

impl PyRegex {
    /// `re.compile(pattern, re.I if ignore_case else 0)`.
    pub fn compile(pattern: &str, ignore_case: bool) -> Result<PyRegex, PatternError> {
        let flags = Flags {
            ignore_case,
            ..Flags::default()
        };
        let parsed = parse::parse(pattern, flags)?;
        Ok(PyRegex {
            prog: exec::compile(&parsed.node, parsed.groups),
            groups: parsed.groups,
            top_level_alternation: matches!(parsed.node, parse::Node::Alt(_)),
        })
    }

    /// Number of capturing groups.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// Whether the pattern is an alternation at its top level (for a mapping's `^…$` pattern
    /// this means the anchors are split between the first and last branch, IDENTITY-MAPPING.md
    /// §3.4).
    pub fn top_level_alternation(&self) -> bool {
        self.top_level_alternation
    }

    /// `pattern.match(text)`: anchored at the start of `text`.
    pub fn match_start(&self, text: &str) -> MatchOutcome {
        self.match_with_limit(text, STEP_LIMIT)
    }

    /// As [`PyRegex::match_start`] with an explicit step budget.
    pub fn match_with_limit(&self, text: &str, limit: u64) -> MatchOutcome {
        let chars: Vec<char> = text.chars().collect();
        match exec::run(&self.prog, &chars, limit) {
            Err(exec::Exhausted) => MatchOutcome::Exhausted,
            Ok(None) => MatchOutcome::NoMatch,
            Ok(Some(spans)) => MatchOutcome::Matched(
                spans
                    .into_iter()
                    .map(|sp| sp.map(|(a, b)| chars[a..b].iter().collect()))
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, ic: bool, s: &str) -> Option<Vec<Option<String>>> {
        match PyRegex::compile(p, ic).unwrap().match_start(s) {
            MatchOutcome::Matched(g) => Some(g),
            _ => None,
        }
    }

    fn g(v: &[Option<&str>]) -> Option<Vec<Option<String>>> {
        Some(v.iter().map(|x| x.map(String::from)).collect())
    }

    #[test]
    fn anchoring_like_python() {
        assert_eq!(m("^alice|bob$", false, "alice@x"), g(&[]));
        assert_eq!(m("^alice|bob$", false, "bob@x"), None);
        assert_eq!(m("^(.*)$", false, "alice\n"), g(&[Some("alice")]));
        assert_eq!(m("^(.*)$", false, "a\nb"), None);
        assert_eq!(m("^a\\Z", false, "a\n"), None);
        assert_eq!(m("^alice\\$", false, "alice$x"), g(&[]));
    }

    #[test]
    fn groups_and_repeats() {
        assert_eq!(m("^(a|b)*$", false, "ab"), g(&[Some("b")]));
        assert_eq!(m("^(dev-)?(.*)$", false, "x"), g(&[None, Some("x")]));
        assert_eq!(m("^(a*)*$", false, "b"), None);
        assert_eq!(m("^(a*)*b$", false, "aab"), g(&[Some("")]));
        assert_eq!(m("^(a)\\1$", false, "aa"), g(&[Some("a")]));
        assert_eq!(m("^(?P<x>a)(?P=x)$", false, "aa"), g(&[Some("a")]));
        assert_eq!(m("^(?:(a)|b)(?(1)c|d)$", false, "bd"), g(&[None]));
        assert_eq!(m("^(?<=)a$", false, "a"), g(&[]));
        assert_eq!(m("^.(?<=a)b$", false, "ab"), g(&[]));
        assert_eq!(m("^(?=.*@x)(.*)@.*$", false, "k@x"), g(&[Some("k")]));
        assert_eq!(m("^(?!a).*$", false, "ab"), None);
        assert_eq!(m("^(?i:A)b$", false, "aB"), None);
        assert_eq!(m("^(?i:A)b$", false, "ab"), g(&[]));
        assert_eq!(m("^(?x: a b )$", false, "ab"), g(&[]));
        assert_eq!(m("^a\\0$", false, "a\0"), g(&[]));
    }

    #[test]
    fn case_insensitivity() {
        assert_eq!(m("^(k)ay$", true, "\u{212a}ay"), g(&[Some("\u{212a}")]));
        assert_eq!(m("^ı$", true, "I"), g(&[]));
        assert_eq!(m("^ß$", true, "SS"), None);
        assert_eq!(m("^οδοσ$", true, "ΟΔΟΣ"), g(&[]));
        assert_eq!(m("^[a-c]$", true, "B"), g(&[]));
    }

    #[test]
    fn rejects_like_python() {
        for p in [
            "^(abc$",
            "^a|*b$",
            "^(*a)$",
            "^a**$",
            "^a?*$",
            "^(a)\\2$",
            "^(?i)abc$",
            "^abc)$",
            "^\\w\\q$",
            "^(?<=a*)b$",
            "^[b-a]$",
            "^[abc$",
            "^(?P<1>a)$",
            "^(?P<a>x)(?P<a>y)$",
            "^(?L:a)$",
            "^(?(2)a|b)(c)$",
            "^*$",
        ] {
            assert!(
                PyRegex::compile(p, false).is_err(),
                "{p} should be rejected"
            );
        }
        assert!(PyRegex::compile("^(?(1)a|b)(c)$", false).is_ok());
    }

    #[test]
    fn catastrophic_patterns_are_cut_off() {
        let re = PyRegex::compile("^(a*)*(b|c*)*d$", false).unwrap();
        let text = "a".repeat(40) + "e";
        assert_eq!(re.match_start(&text), MatchOutcome::Exhausted);
    }
}
