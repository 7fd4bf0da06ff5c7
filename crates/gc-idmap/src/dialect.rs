//! The reference's rewriting of a mapping's `match` text into a Python pattern
//! (IDENTITY-MAPPING.md §3.2, §3.4, §3.6), including its leaks.

use crate::pyre::{PatternError, PyRegex};

/// Why a `match` text is rejected when the file is loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialectError {
    /// A backslash followed by something other than `. ? * | ( ) \` or a digit.
    #[error("invalid \\ expression: \\{0}")]
    BadEscape(char),
    /// `*?` or `??` somewhere in the text.
    #[error("invalid ? expression: {0}?")]
    Lazy(char),
    /// The text starts with `*` or `?`.
    #[error("invalid leading wildcard expression: {0}")]
    LeadingWildcard(char),
    /// Python's `re` would not compile the rewritten pattern.
    #[error("not a valid pattern: {0}")]
    Compile(#[from] PatternError),
}

/// The Python pattern text the reference compiles for `text` (without flags).
pub fn python_pattern(text: &str, literal: bool) -> Result<String, DialectError> {
    let chars: Vec<char> = text.chars().collect();
    let body = if literal {
        literal_body(&chars)
    } else {
        expression_body(&chars)?
    };
    Ok(format!("^{body}$"))
}

/// Compile a `match` text as the reference does.
pub fn compile(text: &str, literal: bool, ignore_case: bool) -> Result<PyRegex, DialectError> {
    let pattern = python_pattern(text, literal)?;
    Ok(PyRegex::compile(&pattern, ignore_case)?)
}

fn expression_body(chars: &[char]) -> Result<String, DialectError> {
    // 1. Every backslash must be followed by one of `. ? * | ( ) \` or an ASCII digit.
    for w in chars.windows(2) {
        if w[0] == '\\' && !matches!(w[1], '.' | '?' | '*' | '|' | '(' | ')' | '\\' | '0'..='9') {
            return Err(DialectError::BadEscape(w[1]));
        }
    }
    // 2. No lazy quantifiers, escaped or not.
    for w in chars.windows(2) {
        if matches!(w[0], '*' | '?') && w[1] == '?' {
            return Err(DialectError::Lazy(w[0]));
        }
    }
    // 3. No leading wildcard.
    if let Some(&c @ ('*' | '?')) = chars.first() {
        return Err(DialectError::LeadingWildcard(c));
    }
    // 4. `^ $ + { } [ ]` become literal unless directly preceded by a backslash.
    Ok(escape_unless_after_backslash(chars, "^$+{}[]"))
}

fn literal_body(chars: &[char]) -> String {
    let first = escape_unless_after_backslash(chars, "^?*|()\\$+.{}[]");
    // Then every backslash-digit pair (left to right, non-overlapping) gets another backslash.
    let c: Vec<char> = first.chars().collect();
    let mut out = String::with_capacity(c.len() + 4);
    let mut i = 0;
    while i < c.len() {
        if c[i] == '\\' && c.get(i + 1).is_some_and(char::is_ascii_digit) {
            out.push('\\');
            out.push('\\');
            out.push(c[i + 1]);
            i += 2;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

fn escape_unless_after_backslash(chars: &[char], specials: &str) -> String {
    let mut out = String::with_capacity(chars.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        if specials.contains(c) && (i == 0 || chars[i - 1] != '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pyre::MatchOutcome;

    fn matches(text: &str, literal: bool, ic: bool, src: &str) -> bool {
        matches!(
            compile(text, literal, ic).unwrap().match_start(src),
            MatchOutcome::Matched(_)
        )
    }

    #[test]
    fn rewriting() {
        assert_eq!(python_pattern("a+b", false).unwrap(), "^a\\+b$");
        assert_eq!(python_pattern("a\\1", true).unwrap(), "^a\\\\\\1$");
        assert_eq!(python_pattern("a\\.b", true).unwrap(), "^a\\\\.b$");
    }

    #[test]
    fn dialect_checks() {
        assert!(matches!(
            compile("\\d", false, false),
            Err(DialectError::BadEscape('d'))
        ));
        assert!(matches!(
            compile("a\\\\d", false, false),
            Err(DialectError::BadEscape('d'))
        ));
        assert!(matches!(
            compile("a\\*?", false, false),
            Err(DialectError::Lazy('*'))
        ));
        assert!(matches!(
            compile("*a", false, false),
            Err(DialectError::LeadingWildcard('*'))
        ));
        assert!(matches!(
            compile("(?i)abc", false, false),
            Err(DialectError::Compile(_))
        ));
        assert!(compile("a\\1", true, false).is_err());
    }

    #[test]
    fn literal_leaks() {
        assert!(matches("a\\.b", true, false, "a\\xb"));
        assert!(matches("a\\*", true, false, "a\\\\\\"));
        assert!(matches("a\\\\", true, false, "a\\$anything"));
        assert!(matches("a\\\\d", true, false, "a\\7"));
        assert!(matches("[x]{2}+^$?", true, false, "[x]{2}+^$?"));
        assert!(matches("alice\\", false, false, "alice$tail"));
        assert!(matches("ALICE", true, true, "alice\n"));
    }
}
