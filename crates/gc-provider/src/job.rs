//! Jobs (blocks) as a scheduler reports them.

use std::fmt;

/// A scheduler's id of one submitted block (`4242`, `1234.pbs01`, a local process id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub String);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The state of a job, in Parsl's vocabulary (what upstream logs and audits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Queued, not started.
    Pending,
    /// Running (or finishing).
    Running,
    /// Held by the scheduler or an administrator.
    Held,
    /// Ended with success.
    Completed,
    /// Ended with an error.
    Failed,
    /// Cancelled (by us or someone else).
    Cancelled,
    /// Killed at its walltime.
    Timeout,
    /// The scheduler no longer knows it and cannot say how it ended.
    Unknown,
}

impl JobState {
    /// Whether the job can no longer run workers.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Completed
                | JobState::Failed
                | JobState::Cancelled
                | JobState::Timeout
                | JobState::Unknown
        )
    }

    /// Upper-case name, as Parsl prints it (`RUNNING`).
    pub fn name(self) -> &'static str {
        match self {
            JobState::Pending => "PENDING",
            JobState::Running => "RUNNING",
            JobState::Held => "HELD",
            JobState::Completed => "COMPLETED",
            JobState::Failed => "FAILED",
            JobState::Cancelled => "CANCELLED",
            JobState::Timeout => "TIMEOUT",
            JobState::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A job's state and, when the scheduler says, why it is in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    /// The state.
    pub state: JobState,
    /// The scheduler's words (`exit status 1`, `CANCELLED by 0`, `Exit_status=271`).
    pub message: Option<String>,
}

impl JobStatus {
    /// A status without a message.
    pub fn new(state: JobState) -> Self {
        Self {
            state,
            message: None,
        }
    }

    /// A status with the scheduler's words.
    pub fn with_message(state: JobState, message: impl Into<String>) -> Self {
        Self {
            state,
            message: Some(message.into()),
        }
    }
}
