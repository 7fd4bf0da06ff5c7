//! Running scheduler commands (`sbatch`, `squeue`, `qsub`…) with `cmd_timeout`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::ProviderError;

/// Standard output of a command that succeeded.
pub(crate) async fn run(
    program: &str,
    args: &[String],
    cwd: Option<&Path>,
    timeout: Duration,
) -> Result<String, ProviderError> {
    let out = run_output(program, args, cwd, timeout).await?;
    if out.success {
        return Ok(out.stdout);
    }
    Err(out.failure())
}

/// What a command printed, whether or not it succeeded.
pub(crate) struct Output {
    pub command: String,
    pub success: bool,
    pub status: String,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub(crate) fn failure(self) -> ProviderError {
        let stderr = self.stderr.trim().to_string();
        ProviderError::Failed {
            command: self.command,
            status: self.status,
            stderr: if stderr.is_empty() {
                self.stdout.trim().to_string()
            } else {
                stderr
            },
        }
    }
}

/// Run a command and collect its output; only spawning and the timeout are errors.
pub(crate) async fn run_output(
    program: &str,
    args: &[String],
    cwd: Option<&Path>,
    timeout: Duration,
) -> Result<Output, ProviderError> {
    let line = command_line(program, args);
    let mut command = Command::new(program);
    if let Some(dir) = cwd {
        command.current_dir(dir);
    }
    let child = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ProviderError::Spawn {
            command: line.clone(),
            source,
        })?;
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(source)) => {
            return Err(ProviderError::Spawn {
                command: line,
                source,
            });
        }
        Err(_) => {
            return Err(ProviderError::Timeout {
                command: line,
                timeout,
            });
        }
    };
    Ok(Output {
        command: line,
        success: out.status.success(),
        status: out.status.to_string(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

pub(crate) fn command_line(program: &str, args: &[String]) -> String {
    std::iter::once(program)
        .chain(args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}
