//! `source`/`output` templates (IDENTITY-MAPPING.md §4): `{field}` and `{N}` placeholders,
//! found in the original text and substituted by global textual replacement, like the reference.

use crate::json::Json;
use crate::pytext::parse_int;

/// Why a template could not be expanded. Any of these poisons the whole configuration (§5.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The identity has no such top-level member.
    #[error("identity has no field {0:?}")]
    MissingField(String),
    /// The identity member is `null`.
    #[error("identity field {0:?} is null")]
    NullField(String),
    /// The identity member is not a string (no conversion is done).
    #[error("identity field {0:?} is not a string")]
    NotAString(String),
    /// A group reference beyond the pattern's groups (or any group reference in `source`).
    #[error("invalid reference to group {0}")]
    NoSuchGroup(i128),
    /// The referenced group did not take part in the match.
    #[error("group {0} did not take part in the match")]
    GroupUnset(i128),
    /// Expansion grew beyond [`MAX_EXPANSION_CHARS`] (values that contain placeholders are
    /// expanded again by later replacements, which can grow exponentially).
    #[error("expanded text exceeds {MAX_EXPANSION_CHARS} characters")]
    TooLong,
    /// The identity record itself is not a JSON object.
    #[error("identity record is not an object")]
    IdentityNotObject,
}

/// Upper bound on an expanded template's length (in bytes).
pub const MAX_EXPANSION_CHARS: usize = 1024 * 1024;

/// A placeholder found in a template: its full text (`{name}`) and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    /// `{name}` as it appears in the template.
    pub text: String,
    /// The text between the braces.
    pub name: String,
}

/// Placeholders of `template`, left to right (a `{` after an odd run of backslashes is
/// escaped; `name` runs to the first `}`).
pub fn placeholders(template: &str) -> Vec<Placeholder> {
    let chars: Vec<char> = template.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '{' {
            i += 1;
            continue;
        }
        let mut run = 0;
        while run < i && chars[i - 1 - run] == '\\' {
            run += 1;
        }
        if run % 2 == 1 {
            i += 1;
            continue;
        }
        let Some(close) = chars[i + 1..].iter().position(|c| *c == '}') else {
            break;
        };
        let end = i + 1 + close;
        out.push(Placeholder {
            text: chars[i..=end].iter().collect(),
            name: chars[i + 1..end].iter().collect(),
        });
        i = end + 1;
    }
    out
}

/// Expand `template` for `identity`; `groups` are the match groups (Python groups 1..), empty
/// for a `source`.
pub fn expand(
    template: &str,
    identity: &Json,
    groups: &[Option<String>],
) -> Result<String, TemplateError> {
    let mut result = template.to_string();
    for ph in placeholders(template) {
        let value: &str = match parse_int(&ph.name) {
            Some(n) => {
                let len = groups.len() as i128;
                let idx = if n < 0 { len + n } else { n };
                if n >= len || idx < 0 {
                    return Err(TemplateError::NoSuchGroup(n));
                }
                groups
                    .get(idx as usize)
                    .and_then(|g| g.as_deref())
                    .ok_or(TemplateError::GroupUnset(n))?
            }
            None => {
                let Json::Object(_) = identity else {
                    return Err(TemplateError::IdentityNotObject);
                };
                match identity.get(&ph.name) {
                    None => return Err(TemplateError::MissingField(ph.name)),
                    Some(Json::Null) => return Err(TemplateError::NullField(ph.name)),
                    Some(Json::Str(s)) => s,
                    Some(_) => return Err(TemplateError::NotAString(ph.name)),
                }
            }
        };
        let hits = result.matches(ph.text.as_str()).count();
        let grown = result.len() + hits.saturating_mul(value.len());
        if grown > MAX_EXPANSION_CHARS {
            return Err(TemplateError::TooLong);
        }
        result = result.replace(&ph.text, value);
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse;

    fn ident() -> Json {
        parse(r#"{"username": "x{0}y@example.org", "n": 5, "z": null, "e": ""}"#).unwrap()
    }

    #[test]
    fn finding_placeholders() {
        let names: Vec<String> = placeholders(r"\{a}{b}\\{c}{{d}}{x")
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, vec!["b", "c", "{d"]);
    }

    #[test]
    fn expansion_quirks() {
        let id = ident();
        let g = vec![Some("x{0}y".to_string())];
        assert_eq!(
            expand("{username}|{0}", &id, &g).unwrap(),
            "xx{0}yy@example.org|x{0}y"
        );
        assert_eq!(expand(r"\{e}={e}", &id, &[]).unwrap(), r"\=");
        assert_eq!(expand("{-1}{ 0 }{+0}", &id, &g).unwrap(), "x{0}yx{0}yx{0}y");
        assert_eq!(expand("{1}", &id, &g), Err(TemplateError::NoSuchGroup(1)));
        assert_eq!(expand("{-2}", &id, &g), Err(TemplateError::NoSuchGroup(-2)));
        assert_eq!(
            expand("{0}", &id, &[None]),
            Err(TemplateError::GroupUnset(0))
        );
        assert!(matches!(
            expand("{n}", &id, &[]),
            Err(TemplateError::NotAString(_))
        ));
        assert!(matches!(
            expand("{z}", &id, &[]),
            Err(TemplateError::NullField(_))
        ));
        assert!(matches!(
            expand("{q}", &id, &[]),
            Err(TemplateError::MissingField(_))
        ));
        assert_eq!(expand("plain {x", &id, &[]).unwrap(), "plain {x");
        let bomb = parse(r#"{"b": "{b}{b}{b}{b}"}"#).unwrap();
        assert_eq!(
            expand(&"{b}".repeat(40), &bomb, &[]),
            Err(TemplateError::TooLong)
        );
    }
}
