//! Evaluating one `expression_identity_mapping#1.0.0` configuration (IDENTITY-MAPPING.md §5).

use crate::config::Rule;
use crate::json::Json;
use crate::pyre::MatchOutcome;
use crate::template::{self, TemplateError};

/// Identity id → outputs, in first-match order (one map per rule or program answer).
pub type Hits = Vec<(Json, Vec<String>)>;

/// Why an expression configuration produced nothing at all (§5.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpressionError {
    /// A template could not be expanded.
    #[error("mapping {rule}: {template}: {error}")]
    Template {
        /// Rule position.
        rule: usize,
        /// `source` or `output`.
        template: &'static str,
        /// The cause.
        error: TemplateError,
    },
    /// `source` or `output` is not a string.
    #[error("mapping {rule}: '{template}' is not a string")]
    TemplateNotString {
        /// Rule position.
        rule: usize,
        /// `source` or `output`.
        template: &'static str,
    },
    /// A matching identity has no `id`.
    #[error("mapping {rule}: a matching identity has no 'id'")]
    MissingId {
        /// Rule position.
        rule: usize,
    },
    /// A matching identity's `id` is a list or object (unusable as a key).
    #[error("mapping {rule}: a matching identity's 'id' is a list or object")]
    UnhashableId {
        /// Rule position.
        rule: usize,
    },
    /// An identity record is not an object.
    #[error("identity {position} is not a JSON object")]
    IdentityNotObject {
        /// Position in the identity set.
        position: usize,
    },
}

/// Whether an identity takes part in expression mapping (`status` is `used` or `private`).
pub fn is_considered(identity: &Json) -> bool {
    matches!(identity.get("status"), Some(Json::Str(s)) if s == "used" || s == "private")
}

/// Add `output` under `id` with Python dictionary semantics (`1 == 1.0 == true`).
pub fn add_hit(hits: &mut Hits, id: &Json, output: String) {
    match hits.iter_mut().find(|(k, _)| k.py_eq(id)) {
        Some((_, outs)) => outs.push(output),
        None => hits.push((id.clone(), vec![output])),
    }
}

/// Short, loggable rendering of a value.
pub(crate) fn show(v: &Json) -> String {
    let s = v.to_json_unicode();
    if s.chars().count() > 200 {
        let cut: String = s.chars().take(200).collect();
        format!("{cut}…")
    } else {
        s
    }
}

/// Evaluate `rules` against `identities`: the non-empty hit maps, in rule order.
/// `trace`, when given, receives one line per step for `--explain`.
pub fn evaluate(
    rules: &[Rule],
    identities: &[Json],
    mut trace: Option<&mut Vec<String>>,
) -> Result<Vec<Hits>, ExpressionError> {
    let mut out = Vec::new();
    for rule in rules {
        let r = rule.position;
        let mut hits: Hits = Vec::new();
        if let Some(t) = trace.as_deref_mut() {
            t.push(format!(
                "  mapping {r}: source {} match {} ({}{}{}) output {}",
                show(&rule.source),
                show(&Json::Str(rule.match_text.clone())),
                if rule.literal {
                    "literal text"
                } else {
                    "regular expression"
                },
                if rule.ignore_case {
                    ", ignore_case"
                } else {
                    ""
                },
                match rule.regex.groups() {
                    0 => String::new(),
                    1 => ", 1 group".to_string(),
                    n => format!(", {n} groups"),
                },
                show(&rule.output),
            ));
            if rule.regex.top_level_alternation() {
                t.push(
                    "    note: '|' at the top level splits the anchors: every branch but the last \
                     only has to match the beginning of the source (write (a|b) for a full match)"
                        .to_string(),
                );
            }
        }
        for (position, identity) in identities.iter().enumerate() {
            if !matches!(identity, Json::Object(_)) {
                return Err(ExpressionError::IdentityNotObject { position });
            }
            let label = || match identity.get("id") {
                Some(id) => show(id),
                None => format!("#{position} (no id)"),
            };
            if !is_considered(identity) {
                if let Some(t) = trace.as_deref_mut() {
                    t.push(format!(
                        "    identity {}: skipped, status is {} (only \"used\" and \"private\" take part)",
                        label(),
                        identity.get("status").map_or("missing".to_string(), show)
                    ));
                }
                continue;
            }
            let Json::Str(source_t) = &rule.source else {
                return Err(ExpressionError::TemplateNotString {
                    rule: r,
                    template: "source",
                });
            };
            let source = template::expand(source_t, identity, &[]).map_err(|error| {
                ExpressionError::Template {
                    rule: r,
                    template: "source",
                    error,
                }
            })?;
            let groups = match rule.regex.match_start(&source) {
                MatchOutcome::Matched(g) => g,
                MatchOutcome::NoMatch => {
                    if let Some(t) = trace.as_deref_mut() {
                        t.push(format!(
                            "    identity {}: source value {} does not match",
                            label(),
                            show(&Json::Str(source))
                        ));
                    }
                    continue;
                }
                MatchOutcome::Exhausted => {
                    tracing::warn!(
                        rule = r,
                        pattern = %rule.match_text,
                        "pattern exceeded its matching budget; treated as no match"
                    );
                    if let Some(t) = trace.as_deref_mut() {
                        t.push(format!(
                            "    identity {}: source value {} gave up: the pattern needs too much backtracking (treated as no match)",
                            label(),
                            show(&Json::Str(source))
                        ));
                    }
                    continue;
                }
            };
            let id = identity
                .get("id")
                .ok_or(ExpressionError::MissingId { rule: r })?;
            if !id.hashable() {
                return Err(ExpressionError::UnhashableId { rule: r });
            }
            let Json::Str(output_t) = &rule.output else {
                return Err(ExpressionError::TemplateNotString {
                    rule: r,
                    template: "output",
                });
            };
            let output = template::expand(output_t, identity, &groups).map_err(|error| {
                ExpressionError::Template {
                    rule: r,
                    template: "output",
                    error,
                }
            })?;
            if let Some(t) = trace.as_deref_mut() {
                let shown: Vec<String> = groups
                    .iter()
                    .enumerate()
                    .map(|(i, g)| match g {
                        Some(s) => format!("{{{i}}}={}", show(&Json::Str(s.clone()))),
                        None => format!("{{{i}}}=(did not take part)"),
                    })
                    .collect();
                t.push(format!(
                    "    identity {}: source value {} matches{} -> output {}",
                    label(),
                    show(&Json::Str(source)),
                    if shown.is_empty() {
                        String::new()
                    } else {
                        format!(" with {}", shown.join(", "))
                    },
                    show(&Json::Str(output.clone()))
                ));
            }
            add_hit(&mut hits, id, output);
        }
        if !hits.is_empty() {
            out.push(hits);
        }
    }
    Ok(out)
}
