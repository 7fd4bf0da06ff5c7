//! The pool: a queue of tasks and `max_workers` slots, each owning at most one worker.

use std::collections::BTreeMap;
use std::future::Future;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gc_wire::messagepack::{ActorName, ResultErrorDetails, TaskResult, TaskState, TaskTransition};
use serde_json::{Map, Value};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::frame::Outcome;
use crate::worker::{WorkerCommand, WorkerError, WorkerProcess, WorkerSettings};

/// Upstream's result size limit: 10 MiB (ENDPOINT.md §6.7).
pub const DEFAULT_RESULT_SIZE_LIMIT: usize = 10 * 1024 * 1024;

/// `code`/`user_message` of task failures and engine-level failures (PROTOCOL-ENDPOINT §7.4).
const REMOTE_EXECUTION_ERROR: &str = "RemoteExecutionError";
const REMOTE_EXECUTION_MESSAGE: &str = "An error occurred during the execution of this task";

/// Which upstream engine a pool stands in for. Both run tasks in long-lived Python
/// processes; they differ in defaults and in the name they report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// `ThreadPoolEngine` (ENDPOINT.md §6.2). Upstream runs tasks in threads of the user
    /// endpoint; here each "thread" is a worker process, so tasks no longer share a working
    /// directory or `GC_TASK_*` variables.
    ThreadPool,
    /// `ProcessPoolEngine` (ENDPOINT.md §6.3).
    ProcessPool,
}

impl EngineKind {
    /// `engine_type` in heartbeats, and the default `label`.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::ThreadPool => "ThreadPoolEngine",
            EngineKind::ProcessPool => "ProcessPoolEngine",
        }
    }

    /// Upstream's default `max_workers`: `min(32, cpus + 4)` for threads, `cpus` for
    /// processes.
    pub fn default_max_workers(self) -> usize {
        let cpus = cpu_count();
        match self {
            EngineKind::ThreadPool => (cpus + 4).min(32),
            EngineKind::ProcessPool => cpus,
        }
    }
}

/// Everything a pool needs; the endpoint builds it from gc-config's engine model.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Which engine this is.
    pub kind: EngineKind,
    /// Number of worker processes; `None` means [`EngineKind::default_max_workers`].
    pub max_workers: Option<usize>,
    /// Replace a worker after it ran this many tasks (`max_tasks_per_child`).
    pub max_tasks_per_child: Option<NonZeroU64>,
    /// How to start a worker.
    pub worker: WorkerCommand,
    /// Task working directory. Relative paths are joined to `run_dir` by [`Engine::start`]
    /// (upstream's `working_dir`, default `tasks_working_dir`).
    pub working_dir: PathBuf,
    /// Run each task in `<working_dir>/<task_id>` and export `GC_TASK_SANDBOX_DIR`.
    pub run_in_sandbox: bool,
    /// Deserializer allow-list (import paths or wildcards); empty allows every strategy.
    pub allowed_deserializers: Vec<String>,
    /// Largest serialized result, in characters.
    pub result_size_limit: usize,
    /// Extra attempts after an engine-level failure (worker lost), not after a task error.
    pub max_retries_on_system_failure: u32,
    /// Start every worker (in parallel, in the background) when the engine starts, instead
    /// of when a task first needs one. Neither blocks [`Engine::start`]. A worker that exits
    /// while idle is replaced when the next task needs it, so one that cannot stay up does
    /// not make the engine spin.
    pub prestart_workers: bool,
    /// How long a new worker may take to become ready.
    pub start_timeout: Duration,
}

impl PoolConfig {
    /// Upstream defaults for `kind`, with workers started by `worker`.
    pub fn new(kind: EngineKind, worker: WorkerCommand) -> Self {
        Self {
            kind,
            max_workers: None,
            max_tasks_per_child: None,
            worker,
            working_dir: PathBuf::from("tasks_working_dir"),
            run_in_sandbox: false,
            allowed_deserializers: Vec::new(),
            result_size_limit: DEFAULT_RESULT_SIZE_LIMIT,
            max_retries_on_system_failure: 0,
            prestart_workers: true,
            start_timeout: Duration::from_secs(300),
        }
    }
}

/// Errors of the engine itself (never of a task: a task's failure is a [`TaskResult`]).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The configuration cannot work.
    #[error("invalid engine configuration: {0}")]
    Config(String),
    /// The engine is shutting down and takes no more tasks.
    #[error("Engine not started and cannot execute tasks")]
    NotRunning,
    /// The engine was dropped before the task finished; the task may or may not have run.
    #[error("the engine stopped before task {0} finished")]
    Stopped(Uuid),
}

/// One task to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRequest {
    /// The task id (the AMQP header `task_uuid`).
    pub task_id: Uuid,
    /// `Task.task_buffer`: the packed function, args and kwargs.
    pub task_buffer: String,
    /// The header `result_serializers` (import paths); empty means the SDK defaults.
    pub result_serializers: Vec<String>,
    /// The header `resource_specification`, parsed; empty means none. Pool engines support
    /// none: a non-empty one fails the task (an engine-level failure, as upstream).
    pub resource_specification: Map<String, Value>,
    /// The header `user_runtime` (the submitter's runtime, PROTOCOL-SDK §5.4), if the task
    /// carried one: the worker refuses a runtime it cannot work with before deserializing.
    pub user_runtime: Option<Map<String, Value>>,
}

/// Resolves to the task's [`TaskResult`] — success, task failure, or engine-level failure.
#[derive(Debug)]
pub struct TaskHandle {
    task_id: Uuid,
    rx: oneshot::Receiver<TaskResult>,
}

impl TaskHandle {
    /// A handle that resolves to what is sent on the other end of `rx` (or to
    /// [`EngineError::Stopped`] if that end is dropped). Other engines (GlobusComputeEngine in
    /// gc-htex) hand out the same handle type.
    pub fn new(task_id: Uuid, rx: oneshot::Receiver<TaskResult>) -> Self {
        TaskHandle { task_id, rx }
    }

    /// The task this handle belongs to.
    pub fn task_id(&self) -> Uuid {
        self.task_id
    }
}

impl Future for TaskHandle {
    type Output = Result<TaskResult, EngineError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let task_id = self.task_id;
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.map_err(|_| EngineError::Stopped(task_id)))
    }
}

/// Counters for heartbeats (PROTOCOL-ENDPOINT §6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineStatus {
    /// `ThreadPoolEngine` or `ProcessPoolEngine`.
    pub engine_type: &'static str,
    /// Configured number of workers.
    pub max_workers: usize,
    /// Worker processes alive right now.
    pub live_workers: usize,
    /// Tasks accepted and waiting for a worker.
    pub pending_tasks: usize,
    /// Tasks handed to a worker and not finished.
    pub running_tasks: usize,
}

impl EngineStatus {
    /// The engine's part of a heartbeat's `global_state`, with upstream's keys in upstream's
    /// order. Unlike upstream (always 0), `pending_tasks` and `outstanding_tasks` (pending +
    /// running) are real counts.
    pub fn global_state(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("total_cores".into(), cpu_count().into());
        m.insert("total_mem".into(), available_memory_gib().into());
        m.insert("total_core_hrs".into(), 0.into());
        m.insert("total_workers".into(), self.max_workers.into());
        m.insert("pending_tasks".into(), self.pending_tasks.into());
        let outstanding = self.pending_tasks + self.running_tasks;
        m.insert("outstanding_tasks".into(), outstanding.into());
        m.insert("scaling_enabled".into(), false.into());
        m.insert("max_blocks".into(), 1.into());
        m.insert("min_blocks".into(), 1.into());
        m.insert("max_workers_per_node".into(), self.max_workers.into());
        m.insert("nodes_per_block".into(), 1.into());
        m.insert("engine_type".into(), self.engine_type.into());
        m
    }
}

struct Job {
    request: TaskRequest,
    environment: BTreeMap<String, String>,
    reply: oneshot::Sender<TaskResult>,
}

#[derive(Default)]
struct Counters {
    live: AtomicUsize,
    pending: AtomicUsize,
    running: AtomicUsize,
}

struct Shared {
    kind: EngineKind,
    endpoint_id: Option<Uuid>,
    settings: WorkerSettings,
    max_tasks_per_child: Option<NonZeroU64>,
    max_retries: u32,
    prestart: bool,
    queue: Mutex<mpsc::UnboundedReceiver<Job>>,
    counters: Counters,
}

/// A running pool engine.
///
/// Dropping it kills its workers; tasks not finished by then resolve to
/// [`EngineError::Stopped`]. [`Engine::shutdown`] instead finishes every accepted task.
pub struct Engine {
    shared: Arc<Shared>,
    max_workers: usize,
    sender: Option<mpsc::UnboundedSender<Job>>,
    slots: Vec<JoinHandle<()>>,
}

impl Engine {
    /// Start the engine: `endpoint_id` goes into every result's `details`; a relative
    /// `working_dir` is joined to `run_dir`. Returns at once (workers start in the
    /// background or on demand); must be called inside a tokio runtime.
    pub fn start(
        config: PoolConfig,
        endpoint_id: Option<Uuid>,
        run_dir: &Path,
    ) -> Result<Engine, EngineError> {
        let max_workers = config
            .max_workers
            .unwrap_or_else(|| config.kind.default_max_workers());
        if max_workers == 0 {
            return Err(EngineError::Config(
                "max_workers must be greater than 0".into(),
            ));
        }
        if config.result_size_limit < 128 {
            return Err(EngineError::Config(format!(
                "Invalid result limit; must be at least 128 bytes (result_size_limit={})",
                config.result_size_limit
            )));
        }
        let working_dir = if config.working_dir.is_absolute() {
            config.working_dir.clone()
        } else {
            let base = if run_dir.is_absolute() {
                run_dir.to_path_buf()
            } else {
                std::env::current_dir()
                    .map_err(|e| EngineError::Config(format!("current directory: {e}")))?
                    .join(run_dir)
            };
            base.join(&config.working_dir)
        };
        let Some(run_dir) = working_dir.to_str() else {
            return Err(EngineError::Config(format!(
                "working_dir {working_dir:?} is not valid UTF-8"
            )));
        };
        let (sender, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            kind: config.kind,
            endpoint_id,
            settings: WorkerSettings {
                command: config.worker,
                run_dir: run_dir.to_owned(),
                run_in_sandbox: config.run_in_sandbox,
                allowed_deserializers: config.allowed_deserializers,
                result_size_limit: config.result_size_limit,
                start_timeout: config.start_timeout,
            },
            max_tasks_per_child: config.max_tasks_per_child,
            max_retries: config.max_retries_on_system_failure,
            prestart: config.prestart_workers,
            queue: Mutex::new(receiver),
            counters: Counters::default(),
        });
        let slots = (0..max_workers)
            .map(|n| tokio::spawn(slot(n, Arc::clone(&shared))))
            .collect();
        Ok(Engine {
            shared,
            max_workers,
            sender: Some(sender),
            slots,
        })
    }

    /// Queue a task. Fails only when the engine is shutting down.
    pub fn submit(&self, request: TaskRequest) -> Result<TaskHandle, EngineError> {
        self.submit_with_environment(request, BTreeMap::new())
    }

    /// Queue a task whose worker sets `environment` for the task's duration (and restores
    /// its own values afterwards): GlobusMPIEngine's `PARSL_*` variables (gc-htex).
    pub fn submit_with_environment(
        &self,
        request: TaskRequest,
        environment: BTreeMap<String, String>,
    ) -> Result<TaskHandle, EngineError> {
        let sender = self.sender.as_ref().ok_or(EngineError::NotRunning)?;
        let (reply, rx) = oneshot::channel();
        let task_id = request.task_id;
        if !request.resource_specification.is_empty() {
            // Upstream's `_submit` raises this on every attempt, retries included.
            let text = format!(
                "ValueError: resource_specification is not supported on {}.  For MPI apps, \
                 use GlobusMPIEngine.\n",
                self.shared.kind.name()
            );
            let attempts = 1 + self.shared.max_retries as usize;
            let result = system_failure(task_id, &vec![text; attempts], now_ns());
            // The receiver is right here: this send cannot fail.
            let _ = reply.send(result);
            return Ok(TaskHandle { task_id, rx });
        }
        self.shared.counters.pending.fetch_add(1, Ordering::SeqCst);
        let job = Job {
            request,
            environment,
            reply,
        };
        if sender.send(job).is_err() {
            self.shared.counters.pending.fetch_sub(1, Ordering::SeqCst);
            return Err(EngineError::NotRunning);
        }
        Ok(TaskHandle { task_id, rx })
    }

    /// Current counters.
    pub fn status(&self) -> EngineStatus {
        let c = &self.shared.counters;
        EngineStatus {
            engine_type: self.shared.kind.name(),
            max_workers: self.max_workers,
            live_workers: c.live.load(Ordering::SeqCst),
            pending_tasks: c.pending.load(Ordering::SeqCst),
            running_tasks: c.running.load(Ordering::SeqCst),
        }
    }

    /// Stop taking tasks, finish every accepted one, then stop the workers.
    pub async fn shutdown(mut self) {
        self.sender = None;
        for slot in std::mem::take(&mut self.slots) {
            if let Err(e) = slot.await {
                tracing::error!("engine slot failed: {e}");
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        for slot in &self.slots {
            slot.abort();
        }
    }
}

/// A worker of a slot, counted in `live_workers` for as long as it exists.
struct Live {
    worker: WorkerProcess,
    _counted: LiveCount,
}

struct LiveCount(Arc<Shared>);

impl Drop for LiveCount {
    fn drop(&mut self) {
        self.0.counters.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Live {
    fn new(worker: WorkerProcess, shared: &Arc<Shared>) -> Self {
        shared.counters.live.fetch_add(1, Ordering::SeqCst);
        Live {
            worker,
            _counted: LiveCount(Arc::clone(shared)),
        }
    }
}

async fn start_worker(n: usize, shared: &Arc<Shared>) -> Result<Live, WorkerError> {
    let worker = WorkerProcess::start(&shared.settings).await?;
    tracing::debug!(slot = n, pid = worker.pid(), "worker started");
    Ok(Live::new(worker, shared))
}

/// One worker slot: takes tasks from the shared queue while the engine runs.
async fn slot(n: usize, shared: Arc<Shared>) {
    let mut worker: Option<Live> = None;
    if shared.prestart {
        match start_worker(n, &shared).await {
            Ok(w) => worker = Some(w),
            Err(e) => tracing::error!(slot = n, "{e}"),
        }
    }
    loop {
        let job = match worker.as_mut() {
            Some(live) => {
                tokio::select! {
                    job = next_job(&shared) => job,
                    how = live.worker.exited() => {
                        // Replaced on demand: a worker that cannot stay up must not spin.
                        tracing::warn!(slot = n, pid = live.worker.pid(), "idle worker {how}");
                        worker = None;
                        continue;
                    }
                }
            }
            None => next_job(&shared).await,
        };
        let Some(job) = job else { break };
        shared.counters.pending.fetch_sub(1, Ordering::SeqCst);
        shared.counters.running.fetch_add(1, Ordering::SeqCst);
        let result = run_job(n, &shared, &mut worker, &job.request, &job.environment).await;
        shared.counters.running.fetch_sub(1, Ordering::SeqCst);
        if job.reply.send(result).is_err() {
            tracing::warn!(task_id = %job.request.task_id, "result dropped: nobody is waiting");
        }
        if let (Some(live), Some(max)) = (&worker, shared.max_tasks_per_child) {
            if live.worker.tasks_run() >= max.get() {
                if let Some(live) = worker.take() {
                    // In the background: the slot need not wait for the old one to exit.
                    tokio::spawn(retire(live));
                }
                if shared.prestart {
                    match start_worker(n, &shared).await {
                        Ok(w) => worker = Some(w),
                        Err(e) => tracing::error!(slot = n, "{e}"),
                    }
                }
            }
        }
    }
    if let Some(live) = worker.take() {
        retire(live).await;
    }
}

async fn retire(live: Live) {
    let Live { worker, _counted } = live;
    worker.retire().await;
}

async fn next_job(shared: &Shared) -> Option<Job> {
    shared.queue.lock().await.recv().await
}

/// Run one task to its result, replacing the worker if it dies; engine-level failures are
/// retried up to `max_retries` times.
async fn run_job(
    n: usize,
    shared: &Arc<Shared>,
    worker: &mut Option<Live>,
    request: &TaskRequest,
    environment: &BTreeMap<String, String>,
) -> TaskResult {
    let task_id = request.task_id.to_string();
    let mut failures: Vec<String> = Vec::new();
    let mut redelivered = false;
    loop {
        let launched = now_ns();
        let attempt = match worker.as_mut() {
            Some(live) => Ok(live),
            None => start_worker(n, shared).await.map(|w| worker.insert(w)),
        };
        let outcome = match attempt {
            Ok(live) => {
                let r = live
                    .worker
                    .run(
                        &task_id,
                        &request.task_buffer,
                        &request.result_serializers,
                        environment,
                        request.user_runtime.as_ref(),
                    )
                    .await;
                match r {
                    Ok(reply) => Ok((reply, live.worker.details().clone())),
                    Err(e) => {
                        *worker = None;
                        Err(e)
                    }
                }
            }
            Err(e) => Err(e),
        };
        let failure = match outcome {
            Ok((reply, details)) if reply.outcome != Outcome::SystemFailure => {
                if let Some(warning) = &reply.warning {
                    tracing::warn!(slot = n, %task_id, "{warning}");
                }
                let ns = reply.exec_end.saturating_sub(reply.exec_start);
                tracing::debug!(slot = n, %task_id, "task processing completed in {ns} ns");
                return task_result(shared, request.task_id, reply, details);
            }
            Ok((reply, _)) => reply.data,
            Err(WorkerError::NotDelivered { pid, how }) if !redelivered => {
                // The task never started: hand it to a fresh worker, once, without
                // counting an attempt.
                tracing::warn!(slot = n, pid, %task_id, "worker {how}; task handed to a new worker");
                redelivered = true;
                continue;
            }
            Err(e) => {
                tracing::error!(slot = n, %task_id, "{e}");
                // Say where: a user reading the failure at the SDK has no other way to know
                // which machine lost the worker.
                format!("WorkerLost: {e} (on host {})\n", this_host())
            }
        };
        failures.push(failure);
        if failures.len() as u64 > u64::from(shared.max_retries) {
            return system_failure(request.task_id, &failures, launched);
        }
    }
}

/// This machine's host name, for error texts ("unknown" if it cannot be read).
fn this_host() -> &'static str {
    static HOST: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "unknown".into())
    });
    &HOST
}

fn task_result(
    shared: &Shared,
    task_id: Uuid,
    reply: crate::worker::Reply,
    mut details: Map<String, Value>,
) -> TaskResult {
    details.insert(
        "endpoint_id".into(),
        shared
            .endpoint_id
            .map_or(Value::Null, |id| Value::String(id.to_string())),
    );
    let error_details = match (reply.outcome, reply.code, reply.user_message) {
        (Outcome::Failure, Some(code), Some(user_message)) => {
            Some(ResultErrorDetails { code, user_message })
        }
        _ => None,
    };
    TaskResult {
        task_id,
        data: reply.data,
        details: Some(details),
        error_details,
        task_statuses: Some(vec![
            transition(
                reply.exec_start,
                TaskState::ExecutionStart,
                ActorName::Worker,
            ),
            transition(reply.exec_end, TaskState::ExecutionEnd, ActorName::Worker),
        ]),
    }
}

/// The engine-level failure result (ENDPOINT.md §6.1 step 3).
fn system_failure(task_id: Uuid, failures: &[String], launched: i64) -> TaskResult {
    let text = system_failure_text(failures);
    TaskResult {
        task_id,
        data: text,
        details: None,
        error_details: Some(ResultErrorDetails {
            code: REMOTE_EXECUTION_ERROR.into(),
            user_message: REMOTE_EXECUTION_MESSAGE.into(),
        }),
        task_statuses: Some(vec![
            transition(
                launched,
                TaskState::WaitingForLaunch,
                ActorName::Interchange,
            ),
            transition(now_ns(), TaskState::ExecutionEnd, ActorName::Interchange),
        ]),
    }
}

/// `"+"×68`, the error text, `"-"×68`; with several attempts one block per attempt headed
/// `Traceback from attempt: <n>` (the last `final attempt`), joined with newlines.
fn system_failure_text(failures: &[String]) -> String {
    let plus = "+".repeat(68);
    let minus = "-".repeat(68);
    match failures {
        [only] => format!("{plus}\n{only}{minus}"),
        _ => failures
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let label = if i + 1 == failures.len() {
                    "final attempt".to_string()
                } else {
                    i.to_string()
                };
                format!("{plus}\nTraceback from attempt: {label}\n{text}{minus}")
            })
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

fn transition(timestamp: i64, state: TaskState, actor: ActorName) -> TaskTransition {
    TaskTransition {
        timestamp,
        state,
        actor,
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `MemAvailable` in GiB, one decimal, as upstream reports `total_mem`.
fn available_memory_gib() -> f64 {
    let kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .unwrap_or(0);
    (kib as f64 / (1024.0 * 1024.0) * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_failure_is_one_block() {
        let text = system_failure_text(&["WorkerLost: gone\n".into()]);
        assert_eq!(
            text,
            format!("{}\nWorkerLost: gone\n{}", "+".repeat(68), "-".repeat(68))
        );
    }

    #[test]
    fn retried_failures_are_numbered_blocks() {
        let text = system_failure_text(&["a\n".into(), "b\n".into(), "c\n".into()]);
        let (p, m) = ("+".repeat(68), "-".repeat(68));
        assert_eq!(
            text,
            format!(
                "{p}\nTraceback from attempt: 0\na\n{m}\n{p}\nTraceback from attempt: 1\nb\n{m}\n\
                 {p}\nTraceback from attempt: final attempt\nc\n{m}"
            )
        );
    }

    #[test]
    fn global_state_has_upstream_keys_in_order() {
        let s = EngineStatus {
            engine_type: "ProcessPoolEngine",
            max_workers: 3,
            live_workers: 1,
            pending_tasks: 4,
            running_tasks: 2,
        };
        let g = s.global_state();
        let keys: Vec<&str> = g.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "total_cores",
                "total_mem",
                "total_core_hrs",
                "total_workers",
                "pending_tasks",
                "outstanding_tasks",
                "scaling_enabled",
                "max_blocks",
                "min_blocks",
                "max_workers_per_node",
                "nodes_per_block",
                "engine_type"
            ]
        );
        assert_eq!(g["outstanding_tasks"], 6);
        assert_eq!(g["total_workers"], 3);
        assert!(g["total_mem"].is_f64());
    }

    #[test]
    fn defaults_follow_upstream() {
        let cpus = cpu_count();
        assert_eq!(EngineKind::ProcessPool.default_max_workers(), cpus);
        assert_eq!(
            EngineKind::ThreadPool.default_max_workers(),
            (cpus + 4).min(32)
        );
    }
}
