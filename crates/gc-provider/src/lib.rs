//! Execution providers for GlobusComputeEngine: where and how blocks of worker managers run.
//!
//! A *block* is one batch job (or, with [`LocalProvider`], one local process group) that
//! starts a worker manager on each of its nodes. This crate writes the job script —
//! `worker_init` first, then `export JOBNAME=…`, then the [`Launcher`]'s lines — submits it,
//! asks for its state and cancels it (ENDPOINT.md §6.4, §6.6). It never decides *when*:
//! scaling is the engine's business (`gc-htex`).
//!
//! | Provider | submit | status | cancel |
//! | --- | --- | --- | --- |
//! | [`LocalProvider`] | `bash <script>` in its own process group | the process | `SIGTERM`, then `SIGKILL`, to the group |
//! | [`SlurmProvider`] | `sbatch` | `sacct` (falls back to `squeue` where accounting is off) | `scancel` |
//! | [`PbsProProvider`] | `qsub` | `qstat -x -f -F json` | `qdel` |
//!
//! Scheduler commands run with the provider's `cmd_timeout`; errors carry the command line
//! and the scheduler's own words ([`ProviderError`]).
//!
//! ```
//! use gc_provider::{JobState, Provider};
//! let cfg = gc_config::UserEndpointConfig::from_yaml(
//!     "engine:\n  type: GlobusComputeEngine\n  provider:\n    type: SlurmProvider\n    partition: debug\n    worker_init: module load python\n",
//!     "config.yaml",
//! )?;
//! let provider = Provider::from_config(cfg.engine.provider.as_ref(), "/tmp/submit_scripts".as_ref())?;
//! let script = provider.script("gc-worker-manager --block-id=0", 1, "gc.block-0");
//! assert!(script.contains("#SBATCH --partition=debug\n"));
//! assert!(script.find("module load python") < script.find("gc-worker-manager"));
//! assert_eq!(provider.limits().max_blocks, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod address;
mod command;
mod error;
mod job;
mod launcher;
mod local;
mod pbspro;
mod provider;
mod slurm;

pub use error::ProviderError;
pub use job::{JobId, JobState, JobStatus};
pub use launcher::{Launcher, shell_quote};
pub use local::LocalProvider;
pub use pbspro::PbsProProvider;
pub use provider::{BlockLimits, Provider};
pub use slurm::SlurmProvider;

#[doc(hidden)]
pub mod parse {
    //! Scheduler output parsers, public for the recorded-output tests.
    pub use crate::pbspro::{parse_qstat_json, parse_qsub, qstat_statuses};
    pub use crate::slurm::{parse_sacct, parse_sbatch, parse_squeue};
}
