//! Python text semantics the reference depends on: `int()` parsing, `str.isalnum()`,
//! `str.isspace()`, decimal digits and the simple case mapping used by `re.IGNORECASE`.

use crate::tables::{ALNUM, DECIMAL_ZEROS, LOWER_PREIMAGES, SPACE};

/// `str.isspace()` for one character.
pub fn is_space(c: char) -> bool {
    SPACE.binary_search(&(c as u32)).is_ok()
}

/// `str.isalnum()` for one character.
pub fn is_alnum(c: char) -> bool {
    let n = c as u32;
    ALNUM
        .binary_search_by(|&(lo, hi)| {
            if hi < n {
                std::cmp::Ordering::Less
            } else if lo > n {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// The value of a Unicode decimal digit (category Nd), as `unicodedata.decimal`.
pub fn decimal_value(c: char) -> Option<u32> {
    let n = c as u32;
    let idx = match DECIMAL_ZEROS.binary_search(&n) {
        Ok(i) => i,
        Err(0) => return None,
        Err(i) => i - 1,
    };
    let off = n - DECIMAL_ZEROS[idx];
    (off < 10).then_some(off)
}

/// Python's `int(text)` in base 10, limited to `i128` (larger magnitudes saturate, which is
/// enough for group references: anything that large is out of range either way).
/// `None` means Python would raise `ValueError`.
pub fn parse_int(text: &str) -> Option<i128> {
    let t = text.trim_matches(is_space);
    let (neg, digits) = match t.chars().next() {
        Some('-') => (true, &t[1..]),
        Some('+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut value: i128 = 0;
    let mut seen_digit = false;
    let mut prev_underscore = false;
    for c in digits.chars() {
        if c == '_' {
            if !seen_digit || prev_underscore {
                return None;
            }
            prev_underscore = true;
            continue;
        }
        let d = decimal_value(c)?;
        value = value.saturating_mul(10).saturating_add(i128::from(d));
        seen_digit = true;
        prev_underscore = false;
    }
    if !seen_digit || prev_underscore {
        return None;
    }
    Some(if neg { -value } else { value })
}

/// Python `int(text, 16)` limited to the range a UUID can hold; `None` for `ValueError` or a
/// value outside `0 ..= u128::MAX`.
pub fn parse_hex_u128(text: &str) -> Option<u128> {
    let t = text.trim_matches(is_space);
    let (neg, rest) = match t.chars().next() {
        Some('-') => (true, &t[1..]),
        Some('+') => (false, &t[1..]),
        _ => (false, t),
    };
    let rest = rest
        .strip_prefix("0x")
        .or_else(|| rest.strip_prefix("0X"))
        .map(|r| r.strip_prefix('_').unwrap_or(r))
        .unwrap_or(rest);
    let mut value: u128 = 0;
    let mut seen = false;
    let mut prev_underscore = false;
    for c in rest.chars() {
        if c == '_' {
            if !seen || prev_underscore {
                return None;
            }
            prev_underscore = true;
            continue;
        }
        let d = match decimal_value(c) {
            Some(d) => d,
            None => c.to_digit(16).filter(|_| c.is_ascii())?,
        };
        value = value.checked_mul(16)?.checked_add(u128::from(d))?;
        seen = true;
        prev_underscore = false;
    }
    if !seen || prev_underscore || (neg && value != 0) {
        return None;
    }
    Some(value)
}

/// Python's `uuid.UUID(text)` followed by `str()`: the canonical lower-case hyphenated form.
pub fn normalise_uuid(text: &str) -> Option<String> {
    let t = text.replace("urn:", "").replace("uuid:", "");
    let t = t.trim_matches(|c| c == '{' || c == '}').replace('-', "");
    if t.chars().count() != 32 {
        return None;
    }
    let v = parse_hex_u128(&t)?;
    let hex = format!("{v:032x}");
    Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// CPython's `_PyUnicode_ToLowercase`: the first character of the full lower-case mapping
/// (so U+0130 gives `i`).
pub fn lower(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

/// CPython's `_PyUnicode_ToUppercase`: the first character of the full upper-case mapping
/// (so `ß` gives `S`, which makes `ß` "cased" for `re`).
pub fn upper(c: char) -> char {
    c.to_uppercase().next().unwrap_or(c)
}

/// CPython `_sre.unicode_iscased`.
pub fn is_cased(c: char) -> bool {
    lower(c) != c || upper(c) != c
}

/// Extra case equivalences Python's `re` adds on top of lower-casing (`sre_compile`).
const EQUIVALENCES: &[&[char]] = &[
    &['\u{69}', '\u{131}'],
    &['\u{73}', '\u{17f}'],
    &['\u{b5}', '\u{3bc}'],
    &['\u{345}', '\u{3b9}', '\u{1fbe}'],
    &['\u{390}', '\u{1fd3}'],
    &['\u{3b0}', '\u{1fe3}'],
    &['\u{3b2}', '\u{3d0}'],
    &['\u{3b5}', '\u{3f5}'],
    &['\u{3b8}', '\u{3d1}'],
    &['\u{3ba}', '\u{3f0}'],
    &['\u{3c0}', '\u{3d6}'],
    &['\u{3c1}', '\u{3f1}'],
    &['\u{3c2}', '\u{3c3}'],
    &['\u{3c6}', '\u{3d5}'],
    &['\u{1e61}', '\u{1e9b}'],
    &['\u{fb05}', '\u{fb06}'],
];

/// The lower-cased characters Python treats as equal to `lo` (itself included).
pub fn equivalents(lo: char) -> &'static [char] {
    for set in EQUIVALENCES {
        if set.contains(&lo) {
            return set;
        }
    }
    &[]
}

/// Whether `ch` matches the pattern character `pat` under `re.IGNORECASE`.
pub fn eq_ignore_case(pat: char, ch: char) -> bool {
    if !is_cased(pat) {
        return pat == ch;
    }
    let lo = lower(pat);
    let lc = lower(ch);
    lc == lo || equivalents(lo).contains(&lc)
}

/// Every character whose lower-case form is `lo` (a small set: `lo`, its upper case, and the
/// special pre-images such as KELVIN SIGN for `k`).
pub fn lower_preimages(lo: char) -> Vec<char> {
    let mut out = vec![lo, upper(lo)];
    for &(c, l) in LOWER_PREIMAGES {
        if l == lo as u32 {
            if let Some(c) = char::from_u32(c) {
                out.push(c);
            }
        }
    }
    out.retain(|c| lower(*c) == lo);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_like_python() {
        assert_eq!(parse_int(" 1 "), Some(1));
        assert_eq!(parse_int("+1"), Some(1));
        assert_eq!(parse_int("-01"), Some(-1));
        assert_eq!(parse_int("1_0"), Some(10));
        assert_eq!(parse_int("\u{661}"), Some(1));
        assert_eq!(parse_int("1__0"), None);
        assert_eq!(parse_int("_1"), None);
        assert_eq!(parse_int(""), None);
        assert_eq!(parse_int("- 1"), None);
        assert_eq!(parse_int("0x1"), None);
    }

    #[test]
    fn uuid_forms() {
        let c = "000000c9-0000-4000-8000-0000000000c9";
        assert_eq!(normalise_uuid(c).as_deref(), Some(c));
        assert_eq!(normalise_uuid(&c.to_uppercase()).as_deref(), Some(c));
        assert_eq!(normalise_uuid(&format!("urn:uuid:{c}")).as_deref(), Some(c));
        assert_eq!(normalise_uuid(&format!("{{{c}}}")).as_deref(), Some(c));
        assert_eq!(normalise_uuid(&c.replace('-', "")).as_deref(), Some(c));
        assert_eq!(normalise_uuid("not-a-uuid"), None);
    }

    #[test]
    fn case_rules() {
        assert!(eq_ignore_case('k', '\u{212a}'));
        assert!(eq_ignore_case('i', '\u{131}'));
        assert!(eq_ignore_case('i', '\u{130}'));
        assert!(eq_ignore_case('σ', 'ς'));
        assert!(!eq_ignore_case('ß', 'S'));
        assert!(is_alnum('é') && !is_alnum('-') && is_space('\u{1c}'));
        assert!(lower_preimages('k').contains(&'\u{212a}'));
    }
}
