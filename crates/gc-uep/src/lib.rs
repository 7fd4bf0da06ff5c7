//! The user endpoint (UEP) runtime: one job — run a user endpoint from its stdin document and
//! rendered configuration until it stops (ENDPOINT.md §5, PROTOCOL-ENDPOINT §5.4, §6.2, §6.3,
//! §7).
//!
//! [`run`] connects with the stdin document's `amqp_creds`, consumes the task queue
//! exclusively, takes each task's id from its `task_uuid` header, refuses functions outside
//! `allowed_functions` with upstream's `FUNCTION_NOT_ALLOWED` result, hands the rest to a
//! gc-engine pool (acknowledging each task once the engine has it), and publishes every
//! result with a confirm. A result that cannot be confirmed is written to
//! `<endpoint_dir>/unacked_results/` and re-published after a reconnect or at the next start.
//! Heartbeats go out at once and every `heartbeat_period`; idle shutdown follows
//! `idle_heartbeats_soft`/`idle_heartbeats_hard`; the final heartbeat says `active: false`.
//!
//! ```no_run
//! # async fn demo(stdin: gc_wire::uep_stdin::UepStdin) -> Result<(), Box<dyn std::error::Error>> {
//! use gc_config::UserEndpointConfig;
//! use gc_engine::WorkerCommand;
//! let config = UserEndpointConfig::from_yaml(&stdin.config, "<stdin config>")?;
//! let options = gc_uep::UepOptions {
//!     endpoint_dir: "/home/u/.globus_compute/uep.x.y".into(),
//!     worker: WorkerCommand::embedded("/usr/bin/python3"),
//! };
//! let stopped = gc_uep::run(&stdin, &config, options, gc_uep::termination_signals()?).await?;
//! println!("stopped: {stopped:?}"); // exit status 0
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod audit;
mod entry;
mod error;
mod heartbeat;
mod idle;
mod runtime;
mod settings;
mod setup;
mod task;

use std::future::Future;

pub use entry::{BAD_STDIN, run_from_stdin};
pub use error::UepError;
pub use idle::{IdleTracker, IdleVerdict};
pub use runtime::{Stopped, run};
pub use settings::{UepOptions, notice_target};

/// Installs handlers for SIGTERM, SIGHUP, SIGQUIT and SIGINT now, and returns a future that
/// completes at the first of them (ENDPOINT.md §5.5; SIGINT is treated like SIGTERM, as the
/// spec recommends).
pub fn termination_signals() -> Result<impl Future<Output = ()>, UepError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(UepError::Signals)?;
    let mut hup = signal(SignalKind::hangup()).map_err(UepError::Signals)?;
    let mut quit = signal(SignalKind::quit()).map_err(UepError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(UepError::Signals)?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = hup.recv() => "SIGHUP",
            _ = quit.recv() => "SIGQUIT",
            _ = int.recv() => "SIGINT",
        };
        tracing::warn!("Received {name}, setting termination flag.");
    })
}
