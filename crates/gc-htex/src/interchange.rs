//! The engine in the user endpoint: task queue, manager connections, block scaling.
//!
//! Three tasks cooperate:
//!
//! * the **actor** owns all state (queue, tasks, managers, blocks) and reacts to events:
//!   submissions, manager registrations, results, heartbeats, lost connections, block states;
//! * the **listener** accepts manager connections (TLS handshake, registration) and turns
//!   each into a reader feeding the actor and a writer fed by it;
//! * the **scaler** polls the provider for block states and, every `strategy_period`,
//!   asks the actor for a snapshot and submits or cancels blocks ([`crate::scaling`]).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gc_engine::{EngineError, TaskHandle, TaskRequest};
use gc_provider::{JobId, JobState, JobStatus, Provider, shell_quote};
use gc_wire::messagepack::{
    self, ActorName, Message, ResultErrorDetails, TaskResult, TaskState, TaskTransition,
};
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::config::{HtexConfig, Strategy};
use crate::proto::{self, FromManager, ToManager, WorkerSettings};
use crate::scaling::{Decision, ScaleInput, decide};
use crate::{HtexError, tls};

const REMOTE_EXECUTION_ERROR: &str = "RemoteExecutionError";
const REMOTE_EXECUTION_MESSAGE: &str = "An error occurred during the execution of this task";

/// How long a connecting manager gets for the TLS handshake and its registration.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(30);

/// One connected manager, as reported in heartbeats (`node_info`).
#[derive(Debug, Clone, PartialEq)]
pub struct ManagerInfo {
    /// The interchange's id of it.
    pub manager_id: String,
    /// Its block.
    pub block_id: String,
    /// The provider's job id of its block, when known.
    pub job_id: Option<String>,
    /// Its node.
    pub hostname: String,
    /// Its process id on that node.
    pub pid: u32,
    /// Workers it runs.
    pub workers: usize,
    /// Tasks on it now.
    pub outstanding: usize,
    /// Seconds since it last had nothing to do (0 while busy).
    pub idle_seconds: f64,
    /// Its workers' Python version, when it said.
    pub python_version: Option<String>,
    /// Its workers' `globus-compute-sdk` version, when it said.
    pub sdk_version: Option<String>,
}

/// Counters and settings for heartbeats (PROTOCOL-ENDPOINT §6.2, GlobusComputeEngine row).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HtexStatus {
    /// Tasks waiting for a manager.
    pub pending_tasks: usize,
    /// Tasks accepted and not finished (waiting or running).
    pub outstanding_tasks: usize,
    /// Tasks accepted since start.
    pub total_tasks: u64,
    /// Connected managers.
    pub managers: Vec<ManagerInfo>,
    /// Blocks submitted and not ended.
    pub active_blocks: usize,
    /// Results sent back since start.
    pub completed_tasks: u64,
    /// Tasks that had to be retried or failed because their manager was lost.
    pub lost_manager_tasks: u64,
    /// Blocks submitted since start.
    pub blocks_submitted: u64,
    /// Blocks cancelled by scale-in since start.
    pub blocks_scaled_in: u64,
}

struct StaticInfo {
    /// GlobusMPIEngine (resource specifications checked by [`crate::mpi::validate`]).
    mpi: bool,
    max_retries: u32,
    provider_type: &'static str,
    min_blocks: usize,
    max_blocks: usize,
    nodes_per_block: usize,
    max_workers_per_node: Option<usize>,
    cores_per_worker: f64,
    prefetch_capacity: usize,
    mem_per_worker: Option<f64>,
    queue: Option<String>,
    account: Option<String>,
}

impl HtexStatus {
    fn global_state(&self, s: &StaticInfo) -> Map<String, Value> {
        let total_workers: usize = self.managers.iter().map(|m| m.workers).sum();
        let busy: usize = self
            .managers
            .iter()
            .map(|m| m.outstanding.min(m.workers))
            .sum();
        let mut node_info: Map<String, Value> = Map::new();
        for m in &self.managers {
            let key = m.job_id.clone().unwrap_or_else(|| m.block_id.clone());
            let entry = node_info
                .entry(key)
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(list) = entry {
                // Upstream's keys; there is no Parsl in our managers.
                list.push(serde_json::json!({
                    "worker_count": m.workers,
                    "idle_duration": m.idle_seconds,
                    "parsl_version": Value::Null,
                    "endpoint_version": env!("CARGO_PKG_VERSION"),
                    "sdk_version": m.sdk_version,
                    "python_version": m.python_version,
                }));
            }
        }
        let mut g = Map::new();
        g.insert("managers".into(), self.managers.len().into());
        g.insert("active_managers".into(), self.managers.len().into());
        g.insert("total_workers".into(), total_workers.into());
        g.insert("idle_workers".into(), (total_workers - busy).into());
        g.insert("pending_tasks".into(), self.pending_tasks.into());
        g.insert("outstanding_tasks".into(), self.outstanding_tasks.into());
        g.insert("total_tasks".into(), self.total_tasks.into());
        g.insert("scaling_enabled".into(), (s.max_blocks > 0).into());
        g.insert(
            "mem_per_worker".into(),
            s.mem_per_worker.map_or(Value::Null, Value::from),
        );
        g.insert("cores_per_worker".into(), s.cores_per_worker.into());
        g.insert("prefetch_capacity".into(), s.prefetch_capacity.into());
        g.insert("max_blocks".into(), s.max_blocks.into());
        g.insert("min_blocks".into(), s.min_blocks.into());
        g.insert(
            "max_workers_per_node".into(),
            s.max_workers_per_node.map_or(Value::Null, Value::from),
        );
        g.insert("nodes_per_block".into(), s.nodes_per_block.into());
        g.insert("node_info".into(), Value::Object(node_info));
        g.insert("provider_type".into(), s.provider_type.into());
        g.insert(
            "queue".into(),
            s.queue.clone().map_or(Value::Null, Value::from),
        );
        g.insert(
            "account".into(),
            s.account.clone().map_or(Value::Null, Value::from),
        );
        let engine_type = if s.mpi {
            "GlobusMPIEngine"
        } else {
            "GlobusComputeEngine"
        };
        g.insert("engine_type".into(), engine_type.into());
        g
    }
}

type Outgoing = (ToManager, Vec<u8>);

/// Where a task was sent: the block of the manager that runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The block (`--block-id` of its manager).
    pub block_id: String,
    /// The provider's job id of that block, when known.
    pub job_id: Option<String>,
}

/// Called from the engine each time a task is sent to a block other than the one it was
/// last sent to (once per attempt that lands on a new block). Must not block for long: it
/// runs in the interchange's event loop. The high-assurance audit log's `RUNNING` record
/// (ENDPOINT.md §4.10) hangs off it.
pub type PlacementHook = Box<dyn Fn(&Placement) + Send + Sync>;

struct Registration {
    block_id: String,
    hostname: String,
    pid: u32,
    workers: usize,
    python_version: Option<String>,
    sdk_version: Option<String>,
}

struct Job {
    request: TaskRequest,
    reply: oneshot::Sender<TaskResult>,
    on_placed: Option<PlacementHook>,
}

enum Event {
    Submit(Job),
    Connected {
        conn: u64,
        reg: Registration,
        tx: mpsc::UnboundedSender<Outgoing>,
    },
    FromManager {
        conn: u64,
        msg: FromManager,
        blob: Vec<u8>,
    },
    Gone {
        conn: u64,
        reason: String,
    },
    BlockSubmitted {
        block_id: String,
        job: JobId,
    },
    BlockFailedToSubmit {
        block_id: String,
        error: String,
    },
    BlockStates(Vec<(String, JobStatus)>),
    Snapshot(oneshot::Sender<Snapshot>),
    Drain {
        block_id: String,
        reply: oneshot::Sender<Option<JobId>>,
    },
    Stop(oneshot::Sender<Vec<JobId>>),
}

struct Snapshot {
    active_tasks: usize,
    /// (block id, job id, idle for)
    blocks: Vec<(String, Option<JobId>, Option<Duration>)>,
}

/// A running GlobusComputeEngine.
pub struct HtexEngine {
    events: mpsc::UnboundedSender<Event>,
    status: Arc<Mutex<HtexStatus>>,
    info: StaticInfo,
    port: u16,
    tasks: Vec<JoinHandle<()>>,
    provider: Arc<Provider>,
}

impl HtexEngine {
    /// Start the engine: listen for managers, write the certificates (when `encrypted`) to
    /// `<uep_dir>/<label>-HighThroughputExecutor/certificates`, and submit `init_blocks`
    /// blocks in the background. `endpoint_id` goes into every result's `details`.
    pub async fn start(
        config: HtexConfig,
        endpoint_id: Option<Uuid>,
        uep_dir: &Path,
    ) -> Result<HtexEngine, HtexError> {
        let uep_dir = if uep_dir.is_absolute() {
            uep_dir.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| HtexError::Config(format!("current directory: {e}")))?
                .join(uep_dir)
        };
        let working_dir = uep_dir.join(&config.working_dir);
        let Some(working_dir) = working_dir.to_str().map(str::to_string) else {
            return Err(HtexError::Config(format!(
                "working_dir {working_dir:?} is not valid UTF-8"
            )));
        };
        let run_dir = uep_dir.join(config.executor_label());
        let cert_dir = run_dir.join("certificates");
        let acceptor = if config.encrypted {
            Some(tokio_rustls::TlsAcceptor::from(tls::make_server(
                &cert_dir,
            )?))
        } else {
            None
        };
        let listener = bind(config.worker_port, config.worker_port_range).await?;
        let port = listener.local_addr().map_err(HtexError::Listen)?.port();
        tracing::info!(
            port,
            encrypted = config.encrypted,
            "interchange listening for managers"
        );

        let settings = WorkerSettings {
            working_dir,
            run_in_sandbox: config.run_in_sandbox,
            allowed_deserializers: config.allowed_deserializers.clone(),
            result_size_limit: config.result_size_limit,
            endpoint_id,
            heartbeat_period: config.heartbeat_period.as_secs_f64(),
            heartbeat_threshold: config.heartbeat_threshold.as_secs_f64(),
            max_retries_on_system_failure: config.max_retries_on_system_failure,
        };
        let limits = config.provider.limits().clone();
        let cores = config
            .provider
            .cores_per_node()
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let workers_per_node =
            config.workers_per_node(cores, config.provider.mem_per_node().map(|m| m as f64));
        let info = StaticInfo {
            mpi: config.mpi_launcher.is_some(),
            max_retries: config.max_retries_on_system_failure,
            provider_type: config.provider.name(),
            min_blocks: limits.min_blocks,
            max_blocks: limits.max_blocks,
            nodes_per_block: limits.nodes_per_block,
            max_workers_per_node: config.max_workers_per_node,
            cores_per_worker: config.cores_per_worker,
            prefetch_capacity: config.prefetch_capacity,
            mem_per_worker: config.mem_per_worker,
            queue: config.provider.queue().map(str::to_string),
            account: config.provider.account().map(str::to_string),
        };
        let mut command = manager_command(&config, port, config.encrypted.then_some(&cert_dir));
        if let Some(container) = &config.container {
            command = container.wrap(&command, &uep_dir.display().to_string())?;
            tracing::info!("Containerized launch cmd template: {command}");
        }
        let status = Arc::new(Mutex::new(HtexStatus::default()));
        let (events, rx) = mpsc::unbounded_channel();
        let provider = Arc::new(config.provider);
        let actor = Actor {
            settings,
            max_retries: config.max_retries_on_system_failure,
            prefetch: config.prefetch_capacity,
            heartbeat_period: config.heartbeat_period,
            heartbeat_threshold: config.heartbeat_threshold,
            script_dir: uep_dir.join("submit_scripts"),
            queue: VecDeque::new(),
            tasks: HashMap::new(),
            managers: HashMap::new(),
            blocks: BTreeMap::new(),
            status: Arc::clone(&status),
            counters: HtexStatus::default(),
            stopping: None,
        };
        let scaler = Scaler {
            provider: Arc::clone(&provider),
            events: events.clone(),
            label: config.label.clone(),
            command,
            strategy: config.strategy,
            max_idletime: config.max_idletime,
            period: config.strategy_period,
            slots_per_block: workers_per_node * limits.nodes_per_block,
            next_block: 0,
        };
        let tasks = vec![
            tokio::spawn(actor.run(rx)),
            tokio::spawn(accept_loop(listener, acceptor, events.clone())),
            tokio::spawn(scaler.run(limits.init_blocks)),
        ];
        Ok(HtexEngine {
            events,
            status,
            info,
            port,
            tasks,
            provider,
        })
    }

    /// The port managers connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Queue a task. Fails only when the engine is stopping. A `resource_specification`
    /// other than `{priority: n}` fails the task, as upstream.
    pub fn submit(&self, request: TaskRequest) -> Result<TaskHandle, EngineError> {
        self.submit_placed(request, None)
    }

    /// [`HtexEngine::submit`], and call `on_placed` whenever the task is sent to a block
    /// (again only when a retry lands on another block).
    pub fn submit_placed(
        &self,
        request: TaskRequest,
        on_placed: Option<PlacementHook>,
    ) -> Result<TaskHandle, EngineError> {
        let (reply, rx) = oneshot::channel();
        let task_id = request.task_id;
        if self.info.mpi {
            if let Err(e) = crate::mpi::validate(&request.resource_specification) {
                // Upstream's submit raises this on every attempt, retries included.
                let text = format!("InvalidResourceSpecification: {e}\n");
                let attempts = 1 + self.info.max_retries as usize;
                let _ = reply.send(system_failure(task_id, &vec![text; attempts], now_ns()));
                return Ok(TaskHandle::new(task_id, rx));
            }
        } else if request
            .resource_specification
            .keys()
            .any(|k| k != "priority")
        {
            let text = "InvalidResourceSpecification: Task resource specification only \
                        accepts these types of resources: priority\n"
                .to_string();
            let _ = reply.send(system_failure(task_id, &[text], now_ns()));
            return Ok(TaskHandle::new(task_id, rx));
        }
        self.events
            .send(Event::Submit(Job {
                request,
                reply,
                on_placed,
            }))
            .map_err(|_| EngineError::NotRunning)?;
        Ok(TaskHandle::new(task_id, rx))
    }

    /// Counters now.
    pub fn status(&self) -> HtexStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The engine's part of a heartbeat's `global_state`.
    pub fn global_state(&self) -> Map<String, Value> {
        self.status().global_state(&self.info)
    }

    /// Wait until every accepted task has its result, at most `timeout`; returns how many
    /// are still outstanding. Call before [`HtexEngine::shutdown`] to stop gracefully.
    pub async fn drain(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            // Asked of the actor itself: events are handled in order, so every task
            // submitted before this call is counted.
            let (tx, rx) = oneshot::channel();
            if self.events.send(Event::Snapshot(tx)).is_err() {
                return 0;
            }
            let Ok(snapshot) = rx.await else { return 0 };
            let outstanding = snapshot.active_tasks;
            if outstanding == 0 || Instant::now() >= deadline {
                return outstanding;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stop: fail what is still queued or running (the endpoint is going away), tell managers
    /// to stop, cancel every block.
    pub async fn shutdown(mut self) {
        let (tx, rx) = oneshot::channel();
        let jobs = if self.events.send(Event::Stop(tx)).is_ok() {
            rx.await.unwrap_or_default()
        } else {
            Vec::new()
        };
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if let Err(e) = self.provider.cancel(&jobs).await {
            tracing::warn!("cancelling blocks at shutdown: {e}");
        }
    }
}

impl Drop for HtexEngine {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn bind(port: Option<u16>, range: (u16, u16)) -> Result<TcpListener, HtexError> {
    let any = |p: u16| SocketAddr::from((Ipv4Addr::UNSPECIFIED, p));
    if let Some(p) = port {
        return TcpListener::bind(any(p)).await.map_err(HtexError::Listen);
    }
    let mut last = None;
    for p in range.0..range.1.max(range.0 + 1) {
        match TcpListener::bind(any(p)).await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(HtexError::Listen(last.unwrap_or_else(|| {
        std::io::Error::other(format!("no port in {range:?}"))
    })))
}

/// The command line a block runs on each node.
fn manager_command(config: &HtexConfig, port: u16, cert_dir: Option<&PathBuf>) -> String {
    let mut parts = vec![
        shell_quote(&config.manager.program.display().to_string()),
        "--addresses".into(),
        shell_quote(&config.addresses.join(",")),
        "--port".into(),
        port.to_string(),
        "--block-id".into(),
        "{block_id}".into(),
        "--cores-per-worker".into(),
        config.cores_per_worker.to_string(),
        "--python".into(),
        shell_quote(&config.manager.python),
    ];
    if let Some(max) = config.max_workers_per_node {
        parts.push("--max-workers".into());
        parts.push(max.to_string());
    }
    if let Some(mem) = config.mem_per_worker {
        parts.push("--mem-per-worker".into());
        parts.push(mem.to_string());
    }
    if config.cpu_affinity != "none" {
        parts.push("--cpu-affinity".into());
        parts.push(shell_quote(&config.cpu_affinity));
    }
    if !config.available_accelerators.is_empty() {
        parts.push("--available-accelerators".into());
        parts.push(shell_quote(&config.available_accelerators.join(",")));
    }
    if let Some(d) = config.drain_period {
        parts.push("--drain-period".into());
        parts.push(d.as_secs_f64().to_string());
    }
    if config.worker_debug {
        parts.push("--debug".into());
    }
    if let Some(root) = &config.worker_logdir_root {
        parts.push("--logdir".into());
        parts.push(shell_quote(
            &root.join(config.executor_label()).display().to_string(),
        ));
    }
    if let Some(launcher) = config.mpi_launcher {
        parts.push("--mpi-launcher".into());
        parts.push(launcher.name().into());
    }
    if let Some(dir) = cert_dir {
        parts.push("--cert-dir".into());
        parts.push(shell_quote(&dir.display().to_string()));
    }
    parts.join(" ")
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    events: mpsc::UnboundedSender<Event>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accepting a manager connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let events = events.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(REGISTRATION_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls)) => serve_connection(tls, peer, events).await,
                        Ok(Err(e)) => tracing::warn!(%peer, "TLS handshake refused: {e}"),
                        Err(_) => tracing::warn!(%peer, "TLS handshake timed out"),
                    }
                }
                None => serve_connection(stream, peer, events).await,
            }
        });
    }
}

async fn serve_connection<S>(stream: S, peer: SocketAddr, events: mpsc::UnboundedSender<Event>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let first = tokio::time::timeout(
        REGISTRATION_TIMEOUT,
        proto::read_frame::<_, FromManager>(&mut reader),
    )
    .await;
    let reg = match first {
        Ok(Ok((
            FromManager::Register {
                protocol,
                block_id,
                hostname,
                pid,
                workers,
                python_version,
                sdk_version,
            },
            _,
        ))) => {
            if protocol != proto::PROTOCOL_VERSION {
                let reason = format!(
                    "protocol {protocol} is not supported (interchange speaks {})",
                    proto::PROTOCOL_VERSION
                );
                tracing::warn!(%peer, "{reason}");
                let _ = proto::write_frame(&mut writer, &ToManager::Refused { reason }, b"").await;
                return;
            }
            Registration {
                block_id,
                hostname,
                pid,
                workers: workers.max(1),
                python_version,
                sdk_version,
            }
        }
        Ok(Ok((other, _))) => {
            tracing::warn!(%peer, "expected a registration, got {other:?}");
            return;
        }
        Ok(Err(e)) => {
            tracing::warn!(%peer, "manager registration failed: {e}");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "manager did not register in time");
            return;
        }
    };
    let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
    if events.send(Event::Connected { conn, reg, tx }).is_err() {
        return;
    }
    let writer_task = tokio::spawn(async move {
        while let Some((msg, blob)) = rx.recv().await {
            if let Err(e) = proto::write_frame(&mut writer, &msg, &blob).await {
                tracing::debug!(conn, "writing to manager: {e}");
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    let reason = loop {
        match proto::read_frame::<_, FromManager>(&mut reader).await {
            Ok((msg, blob)) => {
                if events.send(Event::FromManager { conn, msg, blob }).is_err() {
                    break "the interchange stopped".to_string();
                }
            }
            Err(proto::FrameError::Closed) => break "its connection closed".to_string(),
            Err(e) => break format!("its connection failed: {e}"),
        }
    };
    let _ = events.send(Event::Gone { conn, reason });
    writer_task.abort();
}

struct TaskEntry {
    request: TaskRequest,
    reply: oneshot::Sender<TaskResult>,
    failures: Vec<String>,
    launched: i64,
    on: Option<u64>,
    on_placed: Option<PlacementHook>,
    placed_block: Option<String>,
}

struct Manager {
    id: String,
    block_id: String,
    hostname: String,
    pid: u32,
    workers: usize,
    tx: mpsc::UnboundedSender<Outgoing>,
    outstanding: HashSet<Uuid>,
    last_heard: Instant,
    idle_since: Instant,
    draining: bool,
    /// It asked to drain (`drain_period`): told to stop once it holds no task.
    drain_requested: bool,
    python_version: Option<String>,
    sdk_version: Option<String>,
}

#[derive(Default)]
struct Block {
    job: Option<JobId>,
    status: Option<JobStatus>,
    managers: HashSet<u64>,
    connected_ever: bool,
    cancelling: bool,
    failed_reported: bool,
}

impl Block {
    fn ended(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.state.is_terminal())
    }
}

struct Actor {
    settings: WorkerSettings,
    max_retries: u32,
    prefetch: usize,
    heartbeat_period: Duration,
    heartbeat_threshold: Duration,
    script_dir: PathBuf,
    queue: VecDeque<Uuid>,
    tasks: HashMap<Uuid, TaskEntry>,
    managers: HashMap<u64, Manager>,
    blocks: BTreeMap<String, Block>,
    status: Arc<Mutex<HtexStatus>>,
    counters: HtexStatus,
    stopping: Option<()>,
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Event>) {
        let mut tick = tokio::time::interval(self.heartbeat_period.min(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_beat = Instant::now();
        loop {
            tokio::select! {
                ev = rx.recv() => {
                    let Some(ev) = ev else { break };
                    if self.handle(ev) {
                        break;
                    }
                }
                _ = tick.tick() => {
                    if last_beat.elapsed() >= self.heartbeat_period {
                        last_beat = Instant::now();
                        for m in self.managers.values() {
                            let _ = m.tx.send((ToManager::Heartbeat, Vec::new()));
                        }
                    }
                    self.check_heartbeats();
                }
            }
            self.dispatch();
            self.publish();
        }
    }

    /// Returns true when the actor must stop.
    fn handle(&mut self, ev: Event) -> bool {
        match ev {
            Event::Submit(job) => {
                let id = job.request.task_id;
                if self.stopping.is_some() {
                    let text = "EngineStopped: the engine is shutting down\n".to_string();
                    let _ = job.reply.send(system_failure(id, &[text], now_ns()));
                    return false;
                }
                self.counters.total_tasks += 1;
                self.tasks.insert(
                    id,
                    TaskEntry {
                        request: job.request,
                        reply: job.reply,
                        failures: Vec::new(),
                        launched: now_ns(),
                        on: None,
                        on_placed: job.on_placed,
                        placed_block: None,
                    },
                );
                self.queue.push_back(id);
            }
            Event::Connected { conn, reg, tx } => {
                let id = format!("{}-{}-{}", reg.hostname, reg.pid, conn);
                tracing::info!(manager = %id, block = %reg.block_id, workers = reg.workers, "manager registered");
                let block = self.blocks.entry(reg.block_id.clone()).or_default();
                let draining = block.cancelling || self.stopping.is_some();
                block.managers.insert(conn);
                block.connected_ever = true;
                let _ = tx.send((
                    ToManager::Registered {
                        manager_id: id.clone(),
                        settings: self.settings.clone(),
                    },
                    Vec::new(),
                ));
                if draining {
                    let _ = tx.send((ToManager::Shutdown, Vec::new()));
                }
                self.managers.insert(
                    conn,
                    Manager {
                        id,
                        block_id: reg.block_id,
                        hostname: reg.hostname,
                        pid: reg.pid,
                        workers: reg.workers,
                        drain_requested: false,
                        python_version: reg.python_version,
                        sdk_version: reg.sdk_version,
                        tx,
                        outstanding: HashSet::new(),
                        last_heard: Instant::now(),
                        idle_since: Instant::now(),
                        draining,
                    },
                );
            }
            Event::FromManager { conn, msg, blob } => {
                if let Some(m) = self.managers.get_mut(&conn) {
                    m.last_heard = Instant::now();
                }
                match msg {
                    FromManager::Heartbeat => {}
                    FromManager::Result { task_id } => self.result(conn, task_id, &blob),
                    FromManager::Register { .. } => {
                        self.lose_manager(conn, "it registered twice".into());
                    }
                    FromManager::Drain => {
                        if let Some(m) = self.managers.get_mut(&conn) {
                            tracing::info!(manager = %m.id, "manager drains (drain_period)");
                            m.draining = true;
                            m.drain_requested = true;
                            if m.outstanding.is_empty() {
                                let _ = m.tx.send((ToManager::Shutdown, Vec::new()));
                            }
                        }
                    }
                }
            }
            Event::Gone { conn, reason } => self.lose_manager(conn, reason),
            Event::BlockSubmitted { block_id, job } => {
                self.counters.blocks_submitted += 1;
                self.blocks.entry(block_id).or_default().job = Some(job);
            }
            Event::BlockFailedToSubmit { block_id, error } => {
                let block = self.blocks.entry(block_id.clone()).or_default();
                block.status = Some(JobStatus::with_message(JobState::Failed, error.clone()));
                block.failed_reported = true;
                self.fail_queue_for_block(&block_id, &format!("could not be submitted: {error}"));
            }
            Event::BlockStates(states) => {
                for (block_id, status) in states {
                    self.block_state(block_id, status);
                }
            }
            Event::Snapshot(reply) => {
                let blocks = self
                    .blocks
                    .iter()
                    .filter(|(_, b)| !b.ended() && !b.cancelling)
                    .map(|(id, b)| (id.clone(), b.job.clone(), self.block_idle(b)))
                    .collect();
                let _ = reply.send(Snapshot {
                    active_tasks: self.tasks.len(),
                    blocks,
                });
            }
            Event::Drain { block_id, reply } => {
                let idle = self
                    .blocks
                    .get(&block_id)
                    .is_some_and(|b| self.block_idle(b).is_some());
                let job = if idle {
                    let block = self.blocks.entry(block_id.clone()).or_default();
                    block.cancelling = true;
                    let conns: Vec<u64> = block.managers.iter().copied().collect();
                    let job = block.job.clone();
                    for c in conns {
                        if let Some(m) = self.managers.get_mut(&c) {
                            m.draining = true;
                            let _ = m.tx.send((ToManager::Shutdown, Vec::new()));
                        }
                    }
                    self.counters.blocks_scaled_in += 1;
                    tracing::info!(block = %block_id, "scaling in idle block");
                    job
                } else {
                    None
                };
                let _ = reply.send(job);
            }
            Event::Stop(reply) => {
                self.stopping = Some(());
                let ids: Vec<Uuid> = self.tasks.keys().copied().collect();
                for id in ids {
                    if let Some(entry) = self.tasks.remove(&id) {
                        let text = "EngineStopped: the endpoint stopped before this task \
                                    finished\n"
                            .to_string();
                        let mut failures = entry.failures;
                        failures.push(text);
                        let _ = entry
                            .reply
                            .send(system_failure(id, &failures, entry.launched));
                    }
                }
                self.queue.clear();
                for m in self.managers.values() {
                    let _ = m.tx.send((ToManager::Shutdown, Vec::new()));
                }
                let jobs = self
                    .blocks
                    .values()
                    .filter(|b| !b.ended())
                    .filter_map(|b| b.job.clone())
                    .collect();
                let _ = reply.send(jobs);
                self.publish();
                return true;
            }
        }
        false
    }

    /// `Some(idle time)` when every manager of the block is idle (and it has some).
    fn block_idle(&self, b: &Block) -> Option<Duration> {
        if b.managers.is_empty() {
            return None;
        }
        let mut shortest: Option<Duration> = None;
        for c in &b.managers {
            let m = self.managers.get(c)?;
            if !m.outstanding.is_empty() {
                return None;
            }
            let idle = m.idle_since.elapsed();
            shortest = Some(shortest.map_or(idle, |s| s.min(idle)));
        }
        shortest
    }

    fn result(&mut self, conn: u64, task_id: Uuid, blob: &[u8]) {
        let Some(m) = self.managers.get_mut(&conn) else {
            return;
        };
        if !m.outstanding.remove(&task_id) {
            tracing::warn!(manager = %m.id, %task_id, "result for a task this manager does not hold");
            return;
        }
        if m.outstanding.is_empty() {
            m.idle_since = Instant::now();
            if m.drain_requested {
                let _ = m.tx.send((ToManager::Shutdown, Vec::new()));
            }
        }
        let Some(entry) = self.tasks.remove(&task_id) else {
            return;
        };
        let result = match messagepack::unpack(blob) {
            Ok(Message::Result(r)) if r.task_id == task_id => r,
            Ok(other) => {
                let text = format!(
                    "ManagerProtocolError: the manager answered with a {} message\n",
                    other.message_type()
                );
                system_failure(task_id, &[text], entry.launched)
            }
            Err(e) => {
                let text = format!("ManagerProtocolError: unreadable result: {e}\n");
                system_failure(task_id, &[text], entry.launched)
            }
        };
        self.counters.completed_tasks += 1;
        if entry.reply.send(result).is_err() {
            tracing::debug!(%task_id, "result dropped: nobody is waiting");
        }
    }

    fn lose_manager(&mut self, conn: u64, reason: String) {
        let Some(m) = self.managers.remove(&conn) else {
            return;
        };
        if let Some(b) = self.blocks.get_mut(&m.block_id) {
            b.managers.remove(&conn);
        }
        if m.outstanding.is_empty() {
            tracing::info!(manager = %m.id, "manager left: {reason}");
            return;
        }
        tracing::warn!(manager = %m.id, tasks = m.outstanding.len(), "manager lost: {reason}");
        for task_id in m.outstanding {
            self.counters.lost_manager_tasks += 1;
            let text = format!(
                "ManagerLost: the worker manager {} on {} (block {}) was lost while running \
                 this task: {reason}\n",
                m.id, m.hostname, m.block_id
            );
            self.system_failure(task_id, text);
        }
    }

    /// Record an engine-level failure: retry while attempts remain, else answer.
    fn system_failure(&mut self, task_id: Uuid, text: String) {
        let Some(entry) = self.tasks.get_mut(&task_id) else {
            return;
        };
        entry.failures.push(text);
        entry.on = None;
        if entry.failures.len() as u64 > u64::from(self.max_retries) {
            if let Some(entry) = self.tasks.remove(&task_id) {
                let result = system_failure(task_id, &entry.failures, entry.launched);
                let _ = entry.reply.send(result);
            }
        } else {
            tracing::info!(%task_id, attempt = entry.failures.len(), "retrying task");
            entry.launched = now_ns();
            self.queue.push_front(task_id);
        }
    }

    fn check_heartbeats(&mut self) {
        let late: Vec<(u64, Duration)> = self
            .managers
            .iter()
            .filter(|(_, m)| m.last_heard.elapsed() > self.heartbeat_threshold)
            .map(|(c, m)| (*c, m.last_heard.elapsed()))
            .collect();
        for (conn, silent) in late {
            self.lose_manager(
                conn,
                format!(
                    "no heartbeat for {:.1} s (heartbeat_threshold)",
                    silent.as_secs_f64()
                ),
            );
        }
    }

    fn block_state(&mut self, block_id: String, status: JobStatus) {
        let Some(block) = self.blocks.get_mut(&block_id) else {
            return;
        };
        let was_ended = block.ended();
        block.status = Some(status.clone());
        if was_ended || !status.state.is_terminal() {
            return;
        }
        let conns: Vec<u64> = block.managers.iter().copied().collect();
        let failed_early = !block.connected_ever && !block.cancelling && !block.failed_reported;
        if failed_early {
            block.failed_reported = true;
        }
        for conn in conns {
            self.lose_manager(
                conn,
                format!("its block's job ended ({})", describe_status(&status)),
            );
        }
        if failed_early {
            let mut why = format!(
                "ended ({}) before any manager connected",
                describe_status(&status)
            );
            if let Some(tail) = self.stderr_tail(&block_id) {
                why.push_str("; the end of its standard error:\n");
                why.push_str(&tail);
            }
            tracing::error!(block = %block_id, "block {why}");
            self.fail_queue_for_block(&block_id, &why);
        }
    }

    /// A block that could never run managers: queued tasks fail (or wait for the next
    /// block, retries permitting) — but only when no other block can take them.
    fn fail_queue_for_block(&mut self, block_id: &str, why: &str) {
        let others_alive = self
            .blocks
            .iter()
            .any(|(id, b)| id != block_id && !b.ended() && !b.cancelling)
            || !self.managers.is_empty();
        if others_alive {
            return;
        }
        let queued: Vec<Uuid> = self.queue.drain(..).collect();
        for task_id in queued {
            let text = format!("BlockFailed: block {block_id} {why}\n");
            self.system_failure(task_id, text);
        }
    }

    fn stderr_tail(&self, block_id: &str) -> Option<String> {
        let dir = std::fs::read_dir(&self.script_dir).ok()?;
        let needle = format!(".block-{block_id}.");
        let path = dir.filter_map(Result::ok).map(|e| e.path()).find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(&needle) && n.ends_with(".submit.stderr"))
        })?;
        let text = std::fs::read_to_string(path).ok()?;
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(10)..].join("\n");
        (!tail.is_empty()).then_some(tail)
    }

    fn dispatch(&mut self) {
        while let Some(&task_id) = self.queue.front() {
            let best = self
                .managers
                .iter()
                .filter(|(_, m)| !m.draining)
                .map(|(c, m)| {
                    let cap = (m.workers + self.prefetch).saturating_sub(m.outstanding.len());
                    (*c, cap)
                })
                .filter(|(_, cap)| *cap > 0)
                .max_by_key(|(c, cap)| (*cap, std::cmp::Reverse(*c)));
            let Some((conn, _)) = best else { break };
            self.queue.pop_front();
            let Some(entry) = self.tasks.get_mut(&task_id) else {
                continue;
            };
            let Some(m) = self.managers.get_mut(&conn) else {
                break;
            };
            let msg = ToManager::Task {
                task_id,
                result_serializers: entry.request.result_serializers.clone(),
                resource_specification: entry.request.resource_specification.clone(),
                user_runtime: entry.request.user_runtime.clone(),
            };
            let blob = entry.request.task_buffer.as_bytes().to_vec();
            if m.tx.send((msg, blob)).is_err() {
                // Its writer is gone; the Gone event follows. Put the task back.
                self.queue.push_front(task_id);
                m.draining = true;
                continue;
            }
            entry.on = Some(conn);
            m.outstanding.insert(task_id);
            if let Some(hook) = &entry.on_placed
                && entry.placed_block.as_deref() != Some(m.block_id.as_str())
            {
                entry.placed_block = Some(m.block_id.clone());
                let placement = Placement {
                    block_id: m.block_id.clone(),
                    job_id: self
                        .blocks
                        .get(&m.block_id)
                        .and_then(|b| b.job.as_ref().map(|j| j.0.clone())),
                };
                hook(&placement);
            }
        }
    }

    fn publish(&mut self) {
        let mut s = self.counters.clone();
        s.pending_tasks = self.queue.len();
        s.outstanding_tasks = self.tasks.len();
        s.active_blocks = self
            .blocks
            .values()
            .filter(|b| !b.ended() && !b.cancelling)
            .count();
        s.managers = self
            .managers
            .values()
            .map(|m| ManagerInfo {
                manager_id: m.id.clone(),
                block_id: m.block_id.clone(),
                job_id: self
                    .blocks
                    .get(&m.block_id)
                    .and_then(|b| b.job.as_ref().map(|j| j.0.clone())),
                hostname: m.hostname.clone(),
                pid: m.pid,
                workers: m.workers,
                outstanding: m.outstanding.len(),
                idle_seconds: if m.outstanding.is_empty() {
                    m.idle_since.elapsed().as_secs_f64()
                } else {
                    0.0
                },
                python_version: m.python_version.clone(),
                sdk_version: m.sdk_version.clone(),
            })
            .collect();
        s.managers.sort_by(|a, b| a.manager_id.cmp(&b.manager_id));
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }
}

fn describe_status(s: &JobStatus) -> String {
    match &s.message {
        Some(m) => format!("{}: {m}", s.state),
        None => s.state.to_string(),
    }
}

struct Scaler {
    provider: Arc<Provider>,
    events: mpsc::UnboundedSender<Event>,
    label: String,
    command: String,
    strategy: Strategy,
    max_idletime: Duration,
    period: Duration,
    slots_per_block: usize,
    next_block: u64,
}

impl Scaler {
    async fn run(mut self, init_blocks: usize) {
        for _ in 0..init_blocks {
            self.submit_block().await;
        }
        let mut tick = tokio::time::interval(self.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (tx, rx) = oneshot::channel();
            if self.events.send(Event::Snapshot(tx)).is_err() {
                return;
            }
            let Ok(snap) = rx.await else { return };
            // Poll the provider for the blocks it runs.
            let with_jobs: Vec<(String, JobId)> = snap
                .blocks
                .iter()
                .filter_map(|(id, job, _)| job.clone().map(|j| (id.clone(), j)))
                .collect();
            if !with_jobs.is_empty() {
                let jobs: Vec<JobId> = with_jobs.iter().map(|(_, j)| j.clone()).collect();
                match self.provider.status(&jobs).await {
                    Ok(states) => {
                        let ended: HashSet<String> = with_jobs
                            .iter()
                            .zip(&states)
                            .filter(|(_, s)| s.state.is_terminal())
                            .map(|((id, _), _)| id.clone())
                            .collect();
                        let pairs = with_jobs
                            .into_iter()
                            .map(|(id, _)| id)
                            .zip(states)
                            .collect();
                        let _ = self.events.send(Event::BlockStates(pairs));
                        // Decide on the blocks that still run.
                        let active: Vec<_> = snap
                            .blocks
                            .iter()
                            .filter(|(id, _, _)| !ended.contains(id))
                            .cloned()
                            .collect();
                        self.decide(snap.active_tasks, &active).await;
                        continue;
                    }
                    Err(e) => tracing::warn!("block status: {e}"),
                }
            }
            self.decide(snap.active_tasks, &snap.blocks).await;
        }
    }

    async fn decide(
        &mut self,
        active_tasks: usize,
        blocks: &[(String, Option<JobId>, Option<Duration>)],
    ) {
        let input = ScaleInput {
            active_tasks,
            active_blocks: blocks.len(),
            idle_blocks: blocks
                .iter()
                .filter_map(|(id, _, idle)| idle.map(|d| (id.clone(), d)))
                .collect(),
            slots_per_block: self.slots_per_block,
        };
        match decide(
            &input,
            self.provider.limits(),
            self.strategy,
            self.max_idletime,
        ) {
            Decision::Hold => {}
            Decision::Out(n) => {
                tracing::info!(blocks = n, active_tasks, "scaling out");
                for _ in 0..n {
                    self.submit_block().await;
                }
            }
            Decision::In(ids) => {
                for id in ids {
                    let (tx, rx) = oneshot::channel();
                    if self
                        .events
                        .send(Event::Drain {
                            block_id: id.clone(),
                            reply: tx,
                        })
                        .is_err()
                    {
                        return;
                    }
                    if let Ok(Some(job)) = rx.await {
                        if let Err(e) = self.provider.cancel(std::slice::from_ref(&job)).await {
                            tracing::warn!(block = %id, "cancelling: {e}");
                        }
                    }
                }
            }
        }
    }

    async fn submit_block(&mut self) {
        let block_id = self.next_block.to_string();
        self.next_block += 1;
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let job_name = format!("gc.{}.block-{block_id}.{stamp}", self.label);
        let command = self.command.replace("{block_id}", &block_id);
        match self.provider.submit(&command, 1, &job_name).await {
            Ok(job) => {
                tracing::info!(block = %block_id, %job, "block submitted");
                let _ = self.events.send(Event::BlockSubmitted { block_id, job });
            }
            Err(e) => {
                tracing::error!(block = %block_id, "block submission failed: {e}");
                let _ = self.events.send(Event::BlockFailedToSubmit {
                    block_id,
                    error: e.to_string(),
                });
            }
        }
    }
}

/// The engine-level failure result (ENDPOINT.md §6.1 step 3), as gc-engine writes it.
pub(crate) fn system_failure(task_id: Uuid, failures: &[String], launched: i64) -> TaskResult {
    TaskResult {
        task_id,
        data: system_failure_text(failures),
        details: None,
        error_details: Some(ResultErrorDetails {
            code: REMOTE_EXECUTION_ERROR.into(),
            user_message: REMOTE_EXECUTION_MESSAGE.into(),
        }),
        task_statuses: Some(vec![
            TaskTransition {
                timestamp: launched,
                state: TaskState::WaitingForLaunch,
                actor: ActorName::Interchange,
            },
            TaskTransition {
                timestamp: now_ns(),
                state: TaskState::ExecutionEnd,
                actor: ActorName::Interchange,
            },
        ]),
    }
}

/// `"+"×68`, the text, `"-"×68`; several attempts give one block each, headed
/// `Traceback from attempt: <n>` (the last `final attempt`), joined with newlines.
pub(crate) fn system_failure_text(failures: &[String]) -> String {
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

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_text_matches_upstream_layout() {
        let (p, m) = ("+".repeat(68), "-".repeat(68));
        assert_eq!(system_failure_text(&["a\n".into()]), format!("{p}\na\n{m}"));
        assert_eq!(
            system_failure_text(&["a\n".into(), "b\n".into()]),
            format!(
                "{p}\nTraceback from attempt: 0\na\n{m}\n{p}\nTraceback from attempt: final attempt\nb\n{m}"
            )
        );
    }
}
