//! Pool engines of the user endpoint: run Globus Compute tasks in long-lived Python worker
//! processes and turn each into the `Result` message the SDK expects.
//!
//! [`Engine`] stands in for upstream's `ThreadPoolEngine` and `ProcessPoolEngine`
//! (ENDPOINT.md §6.2, §6.3; pick one with [`EngineKind`]). Both keep `max_workers` Python
//! processes running `globus_compute_rs_worker` (the package in `python/`, also embedded here
//! as [`WORKER_SOURCE`]), which deserializes tasks with the SDK's own serializer. The engine
//! never looks inside a payload: it forwards `task_buffer` to a worker and builds the
//! [`TaskResult`](gc_wire::messagepack::TaskResult) around the worker's answer.
//!
//! * Workers start in parallel in the background when the engine starts (or on demand with
//!   `prestart_workers = false`), so [`Engine::start`] never waits for an interpreter.
//! * A task's own failure (its function raised, its result is too big, a serializer is not
//!   allowed) is a normal result with `error_details`, with upstream's exact text.
//! * A worker that dies mid-task fails that task with an engine-level error result naming
//!   what happened (`worker process 4242 was killed by signal 9 (SIGKILL) while running this
//!   task`), and a new worker takes its place; no task waits forever on a dead worker.
//! * [`Engine::status`] gives the counters heartbeats report.
//!
//! ```no_run
//! use gc_engine::{Engine, EngineKind, PoolConfig, TaskRequest, WorkerCommand};
//! # async fn demo(task_buffer: String) -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = PoolConfig::new(
//!     EngineKind::ProcessPool,
//!     WorkerCommand::embedded("/usr/bin/python3"),
//! );
//! config.max_workers = Some(4);
//! let engine = Engine::start(config, None, std::path::Path::new("/tmp/uep"))?;
//! let handle = engine.submit(TaskRequest {
//!     task_id: uuid::Uuid::new_v4(),
//!     task_buffer,
//!     result_serializers: Vec::new(),
//!     resource_specification: Default::default(),
//!     user_runtime: None,
//! })?;
//! let result = handle.await?; // gc_wire::messagepack::TaskResult, ready to publish
//! assert_eq!(result.is_error(), result.error_details.is_some());
//! engine.shutdown().await;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod engine;
mod frame;
mod worker;

pub use engine::{
    DEFAULT_RESULT_SIZE_LIMIT, Engine, EngineError, EngineKind, EngineStatus, PoolConfig,
    TaskHandle, TaskRequest,
};
pub use worker::{WORKER_SOURCE, WorkerCommand};
