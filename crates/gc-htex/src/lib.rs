//! GlobusComputeEngine: tasks run by worker managers on the nodes of batch-scheduled blocks.
//!
//! Upstream wraps Parsl's HighThroughputExecutor (ENDPOINT.md §6.4); this crate is a Rust
//! implementation of the same design:
//!
//! * the **interchange** ([`HtexEngine`]) lives in the user endpoint: it queues tasks, listens
//!   for managers (mutual TLS with per-start keys when `encrypted`, the default — [`tls`]),
//!   hands each manager up to `workers + prefetch_capacity` tasks, and turns results back
//!   into `TaskResult`s;
//! * a **worker manager** (`gc-worker-manager`, [`manager`]) runs on each node of a block
//!   and starts `max_workers_per_node` Python workers — gc-engine's process pool over the
//!   `globus_compute_rs_worker` package, so the worker-side execute path (§6.7) is the same
//!   code as for the pool engines;
//! * **blocks** are submitted, polled and cancelled through `gc-provider` (Local, Slurm,
//!   PBS Pro): `init_blocks` at start, then every `strategy_period` the strategy scales out
//!   on backlog up to `max_blocks` and in on blocks idle for `max_idletime`, down to
//!   `min_blocks`.
//!
//! Failures: a manager that disconnects, stops sending heartbeats for
//! `heartbeat_threshold`, or whose block's job ends takes its tasks with it — each is retried
//! (`max_retries_on_system_failure`) or answered with upstream's engine-level failure text
//! naming the manager, its host and block. A block that ends before any manager connected
//! (a broken `worker_init`, say) fails the queued tasks with the end of its stderr, when no
//! other block can take them.
//!
//! ```no_run
//! # async fn demo(engine_config: &gc_config::EngineConfig, request: gc_engine::TaskRequest)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use gc_htex::{HtexConfig, HtexEngine};
//! let uep_dir = std::path::Path::new("/home/alice/.globus_compute/uep.x.y");
//! let config = HtexConfig::from_engine_config(engine_config, uep_dir)?;
//! let engine = HtexEngine::start(config, None, uep_dir).await?;
//! let result = engine.submit(request)?.await?; // gc_wire::messagepack::TaskResult
//! let heartbeat_fields = engine.global_state();
//! engine.shutdown().await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod any;
mod config;
mod interchange;
pub mod manager;
pub mod mpi;
pub mod proto;
mod scaling;
pub mod tls;
pub mod workers;

pub use any::{AnyEngine, AnyHandle};
pub use config::{Container, HtexConfig, ManagerCommand, Strategy};
pub use gc_engine::TaskHandle;
pub use interchange::{HtexEngine, HtexStatus, ManagerInfo, Placement, PlacementHook};

/// Errors starting the engine (never a task's: those are `TaskResult`s).
#[derive(Debug, thiserror::Error)]
pub enum HtexError {
    /// An option cannot work.
    #[error("{0}")]
    Config(String),
    /// The provider could not be configured.
    #[error(transparent)]
    Provider(#[from] gc_provider::ProviderError),
    /// Certificates could not be made.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// No port to listen on.
    #[error("cannot listen for worker managers: {0}")]
    Listen(std::io::Error),
}
