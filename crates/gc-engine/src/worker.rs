//! One Python worker process: start it, hand it tasks one at a time, notice when it dies.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::frame::{self, FrameError, FromWorker, Outcome, ToWorker};

/// The source of the worker, embedded so that a worker environment needs only
/// `globus-compute-sdk` (see [`WorkerCommand::embedded`]).
pub const WORKER_SOURCE: &str =
    include_str!("../../../python/globus_compute_rs_worker/globus_compute_rs_worker/worker.py");

/// Reads [`WORKER_SOURCE`] from stdin (big-endian `u32` length, then UTF-8) and runs it as
/// the module `globus_compute_rs_worker.worker`, leaving `__main__` empty: functions the SDK
/// serialized by value resolve their globals in `__main__`, so the worker's own names must
/// not be there (they would leak into user code, and user globals could overwrite them).
/// The source travels on stdin rather than in argv to keep `ps` output short.
const BOOTSTRAP: &str = "\
def _boot():
    import os, sys, types
    def read(n):
        buf = bytearray()
        while len(buf) < n:
            chunk = os.read(0, n - len(buf))
            if not chunk:
                raise SystemExit('globus_compute_rs_worker: no worker source on stdin')
            buf += chunk
        return bytes(buf)
    source = read(int.from_bytes(read(4), 'big')).decode('utf-8')
    m = types.ModuleType('globus_compute_rs_worker.worker')
    m.__file__ = '<gc-engine embedded globus_compute_rs_worker/worker.py>'
    sys.modules[m.__name__] = m
    exec(compile(source, m.__file__, 'exec'), m.__dict__)
    del globals()['_boot']
    return m.main
raise SystemExit(_boot()())
";

/// How to start a worker process.
///
/// The process must speak the frame protocol of `globus_compute_rs_worker` on its
/// stdin/stdout. Its stderr is inherited (user code's prints end up there). A shell wrapper
/// that runs a `worker_init`-like script first and then `exec`s Python is fine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerCommand {
    /// The program to execute.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Variables added to the inherited environment.
    pub env: Vec<(OsString, OsString)>,
    /// Send [`WORKER_SOURCE`] on stdin before the first frame (what the bootstrap of
    /// [`WorkerCommand::embedded`] expects).
    pub source_on_stdin: bool,
}

impl WorkerCommand {
    /// `python -c <bootstrap>`, with the worker's source sent on stdin: nothing but the SDK
    /// needs to be installed.
    pub fn embedded(python: impl Into<PathBuf>) -> Self {
        Self {
            program: python.into(),
            args: vec!["-c".into(), BOOTSTRAP.into()],
            env: Vec::new(),
            source_on_stdin: true,
        }
    }

    /// Run `script` with `/bin/sh` first, in the shell that then `exec`s this command, so it
    /// can `source`, `export` or `module load` for the worker (like upstream's
    /// `worker_init`). The script's standard output goes to stderr: stdout is the channel.
    pub fn with_shell_init(self, script: &str) -> Self {
        let mut args: Vec<OsString> = vec![
            "-c".into(),
            format!("{{\n{script}\n}} 1>&2\nexec \"$0\" \"$@\"").into(),
            self.program.into_os_string(),
        ];
        args.extend(self.args);
        Self {
            program: PathBuf::from("/bin/sh"),
            args,
            env: self.env,
            source_on_stdin: self.source_on_stdin,
        }
    }

    /// `python -m globus_compute_rs_worker`: the package must be importable (installed, or
    /// on `PYTHONPATH`).
    pub fn module(python: impl Into<PathBuf>) -> Self {
        Self {
            program: python.into(),
            args: vec!["-m".into(), "globus_compute_rs_worker".into()],
            env: Vec::new(),
            source_on_stdin: false,
        }
    }
}

/// What every worker of a pool is told at start.
#[derive(Debug, Clone)]
pub(crate) struct WorkerSettings {
    pub command: WorkerCommand,
    pub run_dir: String,
    pub run_in_sandbox: bool,
    pub allowed_deserializers: Vec<String>,
    pub result_size_limit: usize,
    pub start_timeout: Duration,
}

/// Why a worker could not start or could not finish a task. The message is shown to the
/// SDK user inside the task's error text, so it names the process and what happened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WorkerError {
    #[error("could not start worker process {program:?}: {source}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("worker process {pid} rejected its configuration: {message}")]
    Rejected { pid: u32, message: String },
    #[error("worker process {pid} {how} before it was ready")]
    DiedEarly { pid: u32, how: String },
    #[error("worker process {pid} did not become ready within {0:?}", .timeout)]
    StartTimeout { pid: u32, timeout: Duration },
    /// The task reached the worker (or may have), and the worker is gone.
    #[error("worker process {pid} {how} while running this task")]
    Lost { pid: u32, how: String },
    /// The worker died before the task was handed over: the task never started.
    #[error("worker process {pid} {how} before this task could be handed to it")]
    NotDelivered { pid: u32, how: String },
    #[error("worker process {pid} broke the frame protocol ({detail}) and was stopped")]
    Protocol { pid: u32, detail: String },
}

/// The answer of a worker for one task.
#[derive(Debug)]
pub(crate) struct Reply {
    pub outcome: Outcome,
    pub data: String,
    pub code: Option<String>,
    pub user_message: Option<String>,
    pub exec_start: i64,
    pub exec_end: i64,
    /// The worker's note that the submitter's runtime differs (but may work).
    pub warning: Option<String>,
}

/// A running worker that has answered `init`.
pub(crate) struct WorkerProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    pid: u32,
    details: Map<String, Value>,
    tasks_run: u64,
}

/// How long a worker that closed its channel gets to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);

impl WorkerProcess {
    /// Start a worker and wait until it is ready for tasks.
    pub(crate) async fn start(settings: &WorkerSettings) -> Result<Self, WorkerError> {
        let cmd = &settings.command;
        let mut std_cmd = std::process::Command::new(&cmd.program);
        // A worker must not outlive its engine: if the user endpoint (or the worker manager)
        // dies without stopping it, the kernel kills the worker (PR_SET_PDEATHSIG).
        gc_sys::parent_death_signal_before_exec(&mut std_cmd, nix::libc::SIGKILL);
        let mut child = Command::from(std_cmd)
            .args(&cmd.args)
            .envs(cmd.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| WorkerError::Spawn {
                program: cmd.program.clone(),
                source,
            })?;
        let pid = child.id().unwrap_or(0);
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(WorkerError::Spawn {
                program: cmd.program.clone(),
                source: std::io::Error::other("stdin/stdout pipes missing"),
            });
        };
        let mut worker = Self {
            child,
            stdin,
            stdout,
            pid,
            details: Map::new(),
            tasks_run: 0,
        };
        match tokio::time::timeout(settings.start_timeout, worker.handshake(settings)).await {
            Ok(Ok(details)) => {
                worker.details = details;
                tracing::debug!(pid, "worker ready");
                Ok(worker)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(WorkerError::StartTimeout {
                pid,
                timeout: settings.start_timeout,
            }),
        }
    }

    async fn handshake(&mut self, s: &WorkerSettings) -> Result<Map<String, Value>, WorkerError> {
        let init = ToWorker::Init {
            protocol: frame::PROTOCOL_VERSION,
            run_dir: &s.run_dir,
            run_in_sandbox: s.run_in_sandbox,
            allowed_deserializers: &s.allowed_deserializers,
            result_size_limit: s.result_size_limit,
        };
        let pid = self.pid;
        let sent = if s.command.source_on_stdin {
            frame::write_source(&mut self.stdin, WORKER_SOURCE).await
        } else {
            Ok(())
        };
        let sent = match sent {
            Ok(()) => frame::write_frame(&mut self.stdin, &init, b"").await,
            Err(e) => Err(e),
        };
        let answer = match sent {
            Ok(()) => frame::read_frame(&mut self.stdout).await,
            Err(e) => Err(e),
        };
        match answer {
            Ok((
                FromWorker::Ready {
                    protocol,
                    details,
                    pid: python_pid,
                },
                _,
            )) => {
                if protocol == frame::PROTOCOL_VERSION {
                    // Differs from `pid` when a wrapper does not `exec` Python.
                    tracing::debug!(pid, python_pid, "worker answered init");
                    Ok(details)
                } else {
                    Err(self.protocol_error(format!("protocol {protocol}")).await)
                }
            }
            Ok((FromWorker::Fatal { message }, _)) => Err(WorkerError::Rejected { pid, message }),
            Ok((other, _)) => Err(self.protocol_error(format!("{other:?} before ready")).await),
            Err(FrameError::Malformed(detail)) => Err(self.protocol_error(detail).await),
            Err(FrameError::Closed | FrameError::Io(_)) => {
                let how = self.exit_description().await;
                Err(WorkerError::DiedEarly { pid, how })
            }
        }
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The worker environment for `Result.details` (`os`, `dill_version`, …).
    pub(crate) fn details(&self) -> &Map<String, Value> {
        &self.details
    }

    /// How many tasks this worker has answered.
    pub(crate) fn tasks_run(&self) -> u64 {
        self.tasks_run
    }

    /// Run one task. On any error the worker is unusable and must be dropped.
    pub(crate) async fn run(
        &mut self,
        task_id: &str,
        task_buffer: &str,
        result_serializers: &[String],
        environment: &BTreeMap<String, String>,
        user_runtime: Option<&Map<String, Value>>,
    ) -> Result<Reply, WorkerError> {
        let pid = self.pid;
        let header = ToWorker::Task {
            task_id,
            result_serializers,
            environment,
            user_runtime,
        };
        if let Err(e) = frame::write_frame(&mut self.stdin, &header, task_buffer.as_bytes()).await {
            return Err(match e {
                FrameError::Malformed(detail) => self.protocol_error(detail).await,
                FrameError::Closed | FrameError::Io(_) => {
                    let how = self.exit_description().await;
                    WorkerError::NotDelivered { pid, how }
                }
            });
        }
        let (header, blob) = match frame::read_frame(&mut self.stdout).await {
            Ok(frame) => frame,
            Err(FrameError::Malformed(detail)) => return Err(self.protocol_error(detail).await),
            Err(FrameError::Closed | FrameError::Io(_)) => {
                let how = self.exit_description().await;
                return Err(WorkerError::Lost { pid, how });
            }
        };
        let FromWorker::Result {
            task_id: answered,
            outcome,
            code,
            user_message,
            exec_start,
            exec_end,
            warning,
        } = header
        else {
            return Err(self.protocol_error(format!("unexpected {header:?}")).await);
        };
        if answered != task_id {
            let detail = format!("answered task {answered} instead of {task_id}");
            return Err(self.protocol_error(detail).await);
        }
        let data = match String::from_utf8(blob) {
            Ok(data) => data,
            Err(e) => {
                return Err(self
                    .protocol_error(format!("result is not UTF-8: {e}"))
                    .await);
            }
        };
        if outcome == Outcome::Failure && (code.is_none() || user_message.is_none()) {
            let detail = "failure without code or user_message".to_string();
            return Err(self.protocol_error(detail).await);
        }
        self.tasks_run += 1;
        Ok(Reply {
            outcome,
            data,
            code,
            user_message,
            exec_start,
            exec_end,
            warning,
        })
    }

    /// Wait until the idle worker exits on its own (used while it has no task).
    pub(crate) async fn exited(&mut self) -> String {
        match self.child.wait().await {
            Ok(status) => describe(status),
            Err(e) => format!("could not be waited for ({e})"),
        }
    }

    /// Close the channel so the worker exits after its current task; reap it.
    pub(crate) async fn retire(mut self) {
        drop(self.stdin);
        let pid = self.pid;
        match tokio::time::timeout(EXIT_GRACE, self.child.wait()).await {
            Ok(Ok(status)) => tracing::debug!(pid, %status, "worker retired"),
            _ => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                tracing::warn!(pid, "worker did not exit on end of input and was killed");
            }
        }
    }

    async fn protocol_error(&mut self, detail: String) -> WorkerError {
        tracing::error!(pid = self.pid, %detail, "worker broke the frame protocol");
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        WorkerError::Protocol {
            pid: self.pid,
            detail,
        }
    }

    /// After the channel broke: how the process ended (killing it if it lingers).
    async fn exit_description(&mut self) -> String {
        match tokio::time::timeout(EXIT_GRACE, self.child.wait()).await {
            Ok(Ok(status)) => describe(status),
            Ok(Err(e)) => format!("closed its channel and could not be waited for ({e})"),
            Err(_) => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                "closed its channel (and was then killed)".to_string()
            }
        }
    }
}

/// `exited with status 1`, `was killed by signal 9 (SIGKILL)`.
pub(crate) fn describe(status: ExitStatus) -> String {
    if let Some(sig) = status.signal() {
        match nix::sys::signal::Signal::try_from(sig) {
            Ok(name) => format!("was killed by signal {sig} ({name})"),
            Err(_) => format!("was killed by signal {sig}"),
        }
    } else if let Some(code) = status.code() {
        format!("exited with status {code}")
    } else {
        format!("ended ({status})")
    }
}
