//! The decision across configurations (IDENTITY-MAPPING.md §7.1–7.2) and the `--explain` report.

use crate::config::{ConfigKind, MappingFile};
use crate::expression::{self, Hits, show};
use crate::external::{self, ExternalContext, RunRecord};
use crate::json::Json;

/// The result of mapping one identity set.
#[derive(Debug, Clone, PartialEq)]
pub enum MappingOutcome {
    /// The first configuration with a result mapped `identity_id` to `username`.
    Mapped {
        /// The matched identity's `id` value, as found in the identity record.
        identity_id: Json,
        /// The local user name (never empty).
        username: String,
    },
    /// The chosen result was the empty string: mapping failed (later configurations are not
    /// consulted).
    EmptyUsername {
        /// The identity whose output was empty.
        identity_id: Json,
    },
    /// No configuration produced anything.
    NoMapping,
}

/// What one configuration did, for logs and `--explain`.
#[derive(Debug, Clone)]
pub struct ConfigReport {
    /// Position in the mapping file.
    pub index: usize,
    /// `expression` or `external`.
    pub kind: &'static str,
    /// Human-readable steps.
    pub lines: Vec<String>,
    /// The non-empty id → outputs maps it produced (empty on error or no match).
    pub candidates: Vec<Hits>,
    /// The error that discarded its results, if any.
    pub error: Option<String>,
}

impl MappingFile {
    /// Map `identities` (the request's identity set) to a local user name.
    pub fn map_identities(&self, identities: &[Json], ctx: &ExternalContext) -> MappingOutcome {
        self.evaluate(identities, ctx, false).0
    }

    /// As [`MappingFile::map_identities`], also reporting what every configuration did.
    pub fn explain(
        &self,
        identities: &[Json],
        ctx: &ExternalContext,
    ) -> (MappingOutcome, Vec<ConfigReport>) {
        self.evaluate(identities, ctx, true)
    }

    fn evaluate(
        &self,
        identities: &[Json],
        ctx: &ExternalContext,
        explain: bool,
    ) -> (MappingOutcome, Vec<ConfigReport>) {
        let mut reports = Vec::with_capacity(self.configurations.len());
        for cfg in &self.configurations {
            let mut lines = Vec::new();
            let (kind, result) = match &cfg.kind {
                ConfigKind::Expression(rules) => (
                    "expression",
                    expression::evaluate(rules, identities, explain.then_some(&mut lines))
                        .map_err(|e| e.to_string()),
                ),
                ConfigKind::External(command) => {
                    let mut record = RunRecord {
                        argv: Vec::new(),
                        stdout: String::new(),
                        stderr: String::new(),
                    };
                    let r = external::run(command, identities, ctx, Some(&mut record))
                        .map_err(|e| e.to_string());
                    if explain {
                        let argv = if record.argv.is_empty() {
                            command.join(" ")
                        } else {
                            record.argv.join(" ")
                        };
                        lines.push(format!("  ran: {argv}"));
                        lines.push(format!("  stdin: {}", external::input_document(identities)));
                        if !record.stdout.is_empty() {
                            lines.push(format!("  stdout: {}", record.stdout.trim_end()));
                        }
                        if !record.stderr.is_empty() {
                            lines.push(format!("  stderr: {}", record.stderr.trim_end()));
                        }
                    }
                    ("external", r)
                }
            };
            let (candidates, error) = match result {
                Ok(c) => (c, None),
                Err(e) => {
                    tracing::warn!(configuration = cfg.index, kind, error = %e, "identity mapping configuration failed; its results are discarded");
                    (Vec::new(), Some(e))
                }
            };
            if explain {
                match (&error, candidates.first()) {
                    (Some(e), _) => lines.push(format!(
                        "  => error, this configuration contributes nothing: {e}"
                    )),
                    (None, None) => lines.push("  => no match".into()),
                    (None, Some(first)) => {
                        let (id, outs) = &first[0];
                        lines.push(format!(
                            "  => candidate: identity {} -> {}",
                            show(id),
                            show(&Json::Str(outs[0].clone()))
                        ));
                    }
                }
            }
            reports.push(ConfigReport {
                index: cfg.index,
                kind,
                lines,
                candidates,
                error,
            });
        }
        (decide(&reports), reports)
    }
}

/// §7.2: the first configuration with a non-empty result decides.
fn decide(reports: &[ConfigReport]) -> MappingOutcome {
    let Some(first) = reports.iter().find_map(|r| r.candidates.first()) else {
        return MappingOutcome::NoMapping;
    };
    let Some((id, outputs)) = first.first() else {
        return MappingOutcome::NoMapping;
    };
    match outputs.first() {
        Some(name) if !name.is_empty() => MappingOutcome::Mapped {
            identity_id: id.clone(),
            username: name.clone(),
        },
        _ => MappingOutcome::EmptyUsername {
            identity_id: id.clone(),
        },
    }
}
