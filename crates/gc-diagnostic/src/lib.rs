//! `globus-compute-diagnostic`: the upstream SDK's self-diagnostic (same options, same
//! `== Diagnostic: … ==` sections, same `globus_compute_diagnostic_<UTC time>.txt.gz` output),
//! with every byte that goes into the report passed through [`redact::Redactor`] first.
//!
//! The report has: host facts (`uname`, OS release, CPU, memory, disks, network), versions
//! (`globus-compute-endpoint version`, Python packages), the Globus/GCRS environment variables,
//! connectivity checks (TCP to the web service, `GET /v2/version`, TCP and an AMQP 0-9-1
//! handshake to the broker), `globus-compute-endpoint whoami` and `list`, and the tail of the
//! configuration files and logs of the most recently active endpoint directories.
#![forbid(unsafe_code)]

pub mod checks;
pub mod redact;
pub mod report;
