//! Errors of the UEP runtime.
//!
//! The rule: a [`UepError`] means the UEP could not start or had to stop abnormally; each
//! maps to upstream's exit status ([`UepError::exit_code`], ENDPOINT.md §5.6). Anything that
//! goes wrong with a single task becomes an error *result* instead, never a `UepError`.

use gc_broker::{ConfigError, StoreError};
use gc_engine::EngineError;

/// Why the UEP could not run.
#[derive(Debug, thiserror::Error)]
pub enum UepError {
    /// `amqp_creds` lacks a required key (upstream: `Invalid credential structure: <key>`).
    #[error("Invalid credential structure: {0}")]
    InvalidCredentials(String),
    /// A queue info or `connection_url` cannot be used.
    #[error("invalid AMQP queue information: {0}")]
    QueueInfo(#[from] ConfigError),
    /// A configuration value this runtime cannot honour.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// `high_assurance: true` with an engine that is not HA compliant (GlobusComputeEngine
    /// without `encrypted`); the reason is logged as CRITICAL first, as upstream does.
    #[error("Engine configuration is not High Assurance compliant.  Endpoint will not start.")]
    NotHighAssurance(String),
    /// The unacked-result store could not be opened.
    #[error("Failed to initialize the result storage.  ({0})")]
    Store(#[from] StoreError),
    /// The engine refused to start.
    #[error("engine failed to start: {0}")]
    Engine(#[from] EngineError),
    /// GlobusComputeEngine refused to start (configuration, provider, certificates, port).
    #[error("engine failed to start: {0}")]
    Htex(#[from] gc_htex::HtexError),
    /// `endpoint_setup` exited with a non-zero status (Python's `returncode`).
    #[error("endpoint_setup failed with exit code {0}")]
    EndpointSetup(i32),
    /// `endpoint_setup` could not be started.
    #[error("cannot run endpoint_setup: {0}")]
    SetupSpawn(#[source] std::io::Error),
    /// Installing signal handlers failed.
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    /// The stdin document's `audit_fd` is not an open descriptor.
    #[error("Unable to open the audit log descriptor {fd}: {source}")]
    AuditFd {
        /// The descriptor number.
        fd: i32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl UepError {
    /// The process exit status upstream uses for this failure (ENDPOINT.md §5.6).
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        match self {
            UepError::InvalidCredentials(_) => 65,
            // EX_CONFIG
            UepError::EndpointSetup(_) | UepError::SetupSpawn(_) => 78,
            _ => 1,
        }
    }
}
