//! Errors of providers, launchers and address discovery.
//!
//! Rule: every variant names what was being done and carries the scheduler's own words
//! (its exit status and standard error), so an administrator can act on the message alone.

use std::path::PathBuf;
use std::time::Duration;

/// What can go wrong while configuring a provider or talking to a batch scheduler.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The configuration names something this crate does not implement, or an option value
    /// cannot work.
    #[error("{0}")]
    Config(String),
    /// Writing a submit script (or creating its directory) failed.
    #[error("cannot write {path:?}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A scheduler command could not be started (not installed, not on `PATH`).
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A scheduler command ran longer than `cmd_timeout` and was killed.
    #[error("`{command}` did not finish within {timeout:?} (cmd_timeout)")]
    Timeout {
        /// The command line.
        command: String,
        /// The limit.
        timeout: Duration,
    },
    /// A scheduler command exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// `exit status 1`, `signal 9`.
        status: String,
        /// Its standard error (and standard output when stderr is empty), trimmed.
        stderr: String,
    },
    /// A scheduler answered something this crate cannot read.
    #[error("cannot understand the output of `{command}`: {detail}")]
    Parse {
        /// The command line.
        command: String,
        /// What was wrong, with the offending text.
        detail: String,
    },
    /// An address function found no address.
    #[error("{0}")]
    Address(String),
}
