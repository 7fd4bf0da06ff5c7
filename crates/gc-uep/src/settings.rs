//! What the runtime needs, taken from the stdin document and the rendered configuration
//! (ENDPOINT.md §5.1, §5.2; PROTOCOL-ENDPOINT §5.4, §3.3–3.6).

use std::collections::HashSet;
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::time::Duration;

use gc_broker::{ConsumeTarget, NoticeTarget, PublishTarget};
use gc_config::{EngineType, UserEndpointConfig};
use gc_engine::{EngineKind, PoolConfig, WorkerCommand};
use gc_wire::amqp_creds::AmqpCreds;
use gc_wire::uep_stdin::UepStdin;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::UepError;

/// The three keys a credential object must have besides `endpoint_id` (ENDPOINT.md §5.2 step 11).
const QUEUE_INFO_KEYS: [&str; 3] = [
    "task_queue_info",
    "result_queue_info",
    "heartbeat_queue_info",
];

/// Everything [`crate::run`] needs besides the stdin document and the configuration.
#[derive(Debug, Clone)]
pub struct UepOptions {
    /// The UEP directory (`GLOBUS_COMPUTE_ENDPOINT_DIR`): engine run directory and
    /// `unacked_results/`.
    pub endpoint_dir: PathBuf,
    /// How the engine starts a Python worker.
    pub worker: WorkerCommand,
}

/// Validated settings of one UEP run.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub uep_id: Uuid,
    pub tasks: ConsumeTarget,
    pub results: PublishTarget,
    pub heartbeats: PublishTarget,
    /// `heartbeat_period` as configured (seconds, reported as a float).
    pub heartbeat_period: f64,
    pub idle_soft: u64,
    pub idle_hard: u64,
    /// `None` allows every function; canonical lower-case UUID strings otherwise.
    pub allowed_functions: Option<HashSet<String>>,
    pub engine: EngineChoice,
    /// `ep_info` of the stdin document (echoed in heartbeats).
    pub ep_info: Map<String, Value>,
    /// The rendered configuration text (`config_raw`).
    pub config_raw: String,
}

impl Settings {
    pub(crate) fn new(
        stdin: &UepStdin,
        config: &UserEndpointConfig,
        worker: WorkerCommand,
    ) -> Result<Settings, UepError> {
        let creds = credentials(stdin)?;
        let amqp_port = config
            .base
            .amqp_port
            .map(|p| u16::try_from(p).map_err(|_| UepError::Config(format!("amqp_port {p}"))))
            .transpose()?;
        let info = |key: &str| creds.get(key).cloned().unwrap_or(Value::Null);
        let tasks = ConsumeTarget::from_json(&info("task_queue_info"), amqp_port)?;
        let results = PublishTarget::from_json(&info("result_queue_info"), amqp_port)?;
        let heartbeats = PublishTarget::from_json(&info("heartbeat_queue_info"), amqp_port)?;
        let parsed = AmqpCreds::from_json(&Value::Object(creds.clone()))
            .map_err(|e| UepError::InvalidCredentials(e.to_string()))?;

        let heartbeat_period = config.base.heartbeat_period.as_f64();
        if !(heartbeat_period.is_finite() && heartbeat_period > 0.0) {
            return Err(UepError::Config(format!(
                "heartbeat_period must be positive (got {heartbeat_period})"
            )));
        }
        let idle_soft = u64::try_from(config.idle_heartbeats_soft.max(0)).unwrap_or(0);
        let idle_hard =
            u64::try_from(config.effective_idle_heartbeats_hard().max(0)).unwrap_or(u64::MAX);
        // A stdin list (even empty) replaces the configuration's (§5.2 step 5).
        let allowed_functions = stdin
            .allowed_functions
            .as_ref()
            .or(config.base.allowed_functions.as_ref())
            .map(|ids| ids.iter().map(Uuid::to_string).collect());
        let ep_info = match serde_json::to_value(&stdin.ep_info) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        Ok(Settings {
            uep_id: parsed.endpoint_id,
            tasks,
            results,
            heartbeats,
            heartbeat_period,
            idle_soft,
            idle_hard,
            allowed_functions,
            engine: engine_choice(config, worker)?,
            ep_info,
            config_raw: stdin.config.clone(),
        })
    }

    pub(crate) fn heartbeat_interval(&self) -> Duration {
        Duration::from_secs_f64(self.heartbeat_period)
    }
}

/// The stdin's `amqp_creds`, with upstream's key check (exit status 65 when one is missing).
fn credentials(stdin: &UepStdin) -> Result<Map<String, Value>, UepError> {
    let Some(creds) = stdin.amqp_creds.clone() else {
        // With the 4.19 memfd (`mem_fd` + `enckey`) `entry.rs` has already decrypted it into
        // `amqp_creds`; a document with neither is refused here.
        return Err(UepError::InvalidCredentials("'amqp_creds'".into()));
    };
    for key in std::iter::once("endpoint_id").chain(QUEUE_INFO_KEYS) {
        if !creds.contains_key(key) {
            return Err(UepError::InvalidCredentials(format!("'{key}'")));
        }
    }
    Ok(creds)
}

/// Which engine family runs the tasks.
#[derive(Debug, Clone)]
pub(crate) enum EngineChoice {
    /// `ThreadPoolEngine` / `ProcessPoolEngine`: a gc-engine pool beside the UEP.
    Pool(PoolConfig),
    /// `GlobusComputeEngine`: gc-htex, configured from `engine:` at start; workers use
    /// `python` (the UEP's worker Python, when it is a plain interpreter).
    Htex { python: Option<String> },
}

/// The engine for the configured `engine.type`.
fn engine_choice(
    config: &UserEndpointConfig,
    worker: WorkerCommand,
) -> Result<EngineChoice, UepError> {
    let kind = match config.engine.engine_type {
        EngineType::ThreadPool => EngineKind::ThreadPool,
        EngineType::ProcessPool => EngineKind::ProcessPool,
        EngineType::GlobusCompute | EngineType::GlobusMpi => {
            return Ok(EngineChoice::Htex {
                python: worker_python(&worker),
            });
        }
    };
    pool_config(config, kind, worker).map(EngineChoice::Pool)
}

/// The interpreter of an embedded worker command (`python -c <bootstrap>`), for the workers
/// a GlobusComputeEngine manager starts; `None` (the manager's default, `python3` after
/// `worker_init`) for anything else, e.g. a command wrapped in a shell.
fn worker_python(worker: &WorkerCommand) -> Option<String> {
    let name = worker.program.file_name()?.to_str()?;
    if worker.source_on_stdin && name.starts_with("python") {
        worker.program.to_str().map(str::to_owned)
    } else {
        None
    }
}

/// The worker pool of a pool engine.
fn pool_config(
    config: &UserEndpointConfig,
    kind: EngineKind,
    worker: WorkerCommand,
) -> Result<PoolConfig, UepError> {
    let engine = &config.engine;
    let mut pool = PoolConfig::new(kind, worker);
    // ThreadPoolEngine starts its Python workers on demand, as upstream's thread pool starts
    // its threads: an idle user endpoint (e.g. one of many on a multi-user login node) holds
    // no interpreter until its first task. ProcessPoolEngine keeps starting them at once.
    pool.prestart_workers = kind != EngineKind::ThreadPool;
    let opts = &engine.options;
    if let Some(v) = opts.get("max_workers") {
        let n = v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                UepError::Config(format!("max_workers must be a positive integer (got {v})"))
            })?;
        pool.max_workers = Some(n);
    }
    if let Some(v) = opts.get("max_tasks_per_child") {
        pool.max_tasks_per_child = v.as_u64().and_then(NonZeroU64::new);
    }
    pool.working_dir = PathBuf::from(engine.working_dir());
    pool.run_in_sandbox = engine.run_in_sandbox();
    pool.allowed_deserializers = engine.allowed_serializers().unwrap_or_default();
    pool.max_retries_on_system_failure =
        u32::try_from(engine.max_retries_on_system_failure()).unwrap_or(u32::MAX);
    Ok(pool)
}

/// Where failure notices go: the heartbeat queue of the stdin `amqp_creds` (PE §5.5).
pub fn notice_target(stdin: &UepStdin) -> Option<NoticeTarget> {
    let info = stdin.amqp_creds.as_ref()?.get("heartbeat_queue_info")?;
    NoticeTarget::from_json(info).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> UserEndpointConfig {
        UserEndpointConfig::from_yaml(text, "<test>").unwrap()
    }

    #[test]
    fn globus_compute_engine_is_run_by_htex_with_the_workers_python() {
        let cfg = config("engine:\n  type: GlobusComputeEngine\n  max_workers_per_node: 2\n");
        let choice = engine_choice(&cfg, WorkerCommand::embedded("/opt/py/bin/python3.12"));
        match choice {
            Ok(EngineChoice::Htex { python }) => {
                assert_eq!(python.as_deref(), Some("/opt/py/bin/python3.12"));
            }
            other => panic!("expected Htex, got {other:?}"),
        }
        // A shell-wrapped worker leaves the choice of Python to the node.
        let wrapped = WorkerCommand::embedded("python3").with_shell_init("module load x");
        match engine_choice(&cfg, wrapped) {
            Ok(EngineChoice::Htex { python }) => assert_eq!(python, None),
            other => panic!("expected Htex, got {other:?}"),
        }
    }

    #[test]
    fn pool_engines_keep_their_options() {
        let cfg = config("engine:\n  type: ThreadPoolEngine\n  max_workers: 3\n");
        match engine_choice(&cfg, WorkerCommand::embedded("python3")) {
            Ok(EngineChoice::Pool(p)) => {
                assert_eq!(p.kind, EngineKind::ThreadPool);
                assert_eq!(p.max_workers, Some(3));
                assert!(
                    !p.prestart_workers,
                    "thread pool workers start on the first task"
                );
            }
            other => panic!("expected Pool, got {other:?}"),
        }
        let cfg = config("engine:\n  type: ProcessPoolEngine\n");
        match engine_choice(&cfg, WorkerCommand::embedded("python3")) {
            Ok(EngineChoice::Pool(p)) => {
                assert_eq!(p.kind, EngineKind::ProcessPool);
                assert!(
                    p.prestart_workers,
                    "process pool workers start with the engine"
                );
            }
            other => panic!("expected Pool, got {other:?}"),
        }
    }
}
