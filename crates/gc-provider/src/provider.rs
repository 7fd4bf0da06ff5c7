//! The provider-independent part: block limits, common options, the script file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gc_config::engine::{Options, ProviderConfig, ProviderType};
use serde_json::Value as Json;

use crate::launcher::Launcher;
use crate::local::LocalProvider;
use crate::pbspro::PbsProProvider;
use crate::slurm::SlurmProvider;
use crate::{JobId, JobStatus, ProviderError};

/// How many blocks a provider may run (upstream's provider options).
#[derive(Debug, Clone, PartialEq)]
pub struct BlockLimits {
    /// Blocks started with the engine.
    pub init_blocks: usize,
    /// Never scale in below this.
    pub min_blocks: usize,
    /// Never scale out above this.
    pub max_blocks: usize,
    /// Ratio of worker slots to outstanding tasks the scaling strategy aims for (0..=1).
    pub parallelism: f64,
    /// Nodes in one block.
    pub nodes_per_block: usize,
}

/// Options every provider here has.
#[derive(Debug, Clone)]
pub(crate) struct Common {
    pub limits: BlockLimits,
    pub worker_init: String,
    pub launcher: Launcher,
    pub cmd_timeout: Duration,
    pub script_dir: PathBuf,
}

pub(crate) fn int(options: &Options, name: &str, default: i64) -> Result<i64, ProviderError> {
    match options.get(name) {
        None | Some(Json::Null) => Ok(default),
        Some(v) => v
            .as_i64()
            .ok_or_else(|| ProviderError::Config(format!("`{name}` must be an integer, not {v}"))),
    }
}

pub(crate) fn count(options: &Options, name: &str, default: i64) -> Result<usize, ProviderError> {
    let v = int(options, name, default)?;
    usize::try_from(v)
        .map_err(|_| ProviderError::Config(format!("`{name}` must not be negative (got {v})")))
}

pub(crate) fn opt_str(options: &Options, name: &str) -> Option<String> {
    options
        .get(name)
        .and_then(Json::as_str)
        .map(str::to_string)
        .filter(|s| !s.is_empty())
}

/// `walltime` as written: a string, or (YAML 1.1 reads `1:00:00` as 3600) seconds.
pub(crate) fn walltime(options: &Options, default: &str) -> Result<String, ProviderError> {
    match options.get("walltime") {
        None | Some(Json::Null) => Ok(default.to_string()),
        Some(Json::String(s)) => Ok(s.clone()),
        Some(v) => match v.as_u64() {
            Some(secs) => Ok(format!(
                "{:02}:{:02}:{:02}",
                secs / 3600,
                secs / 60 % 60,
                secs % 60
            )),
            None => Err(ProviderError::Config(format!(
                "`walltime` must be HH:MM:SS, not {v}"
            ))),
        },
    }
}

/// Whole minutes of an `[[HH:]MM:]SS`-style walltime, rounded up (Slurm's `--time`).
pub(crate) fn walltime_minutes(walltime: &str) -> Result<u64, ProviderError> {
    let bad = || ProviderError::Config(format!("`walltime` must be HH:MM:SS, not {walltime:?}"));
    let parts: Vec<u64> = walltime
        .split(':')
        .map(|p| p.trim().parse::<u64>().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let seconds = match parts.as_slice() {
        [m] => m * 60,
        [m, s] => m * 60 + s,
        [h, m, s] => h * 3600 + m * 60 + s,
        _ => return Err(bad()),
    };
    Ok(seconds.div_ceil(60).max(1))
}

impl Common {
    pub(crate) fn from_options(
        options: &Options,
        launcher: Launcher,
        default_timeout: i64,
        script_dir: &Path,
    ) -> Result<Self, ProviderError> {
        let parallelism = match options.get("parallelism") {
            None | Some(Json::Null) => 1.0,
            Some(v) => v.as_f64().ok_or_else(|| {
                ProviderError::Config(format!("`parallelism` must be a number, not {v}"))
            })?,
        };
        if !(0.0..=1.0).contains(&parallelism) {
            return Err(ProviderError::Config(format!(
                "`parallelism` must be between 0 and 1 (got {parallelism})"
            )));
        }
        let limits = BlockLimits {
            init_blocks: count(options, "init_blocks", 1)?,
            min_blocks: count(options, "min_blocks", 0)?,
            max_blocks: count(options, "max_blocks", 1)?,
            parallelism,
            nodes_per_block: count(options, "nodes_per_block", 1)?.max(1),
        };
        if limits.min_blocks > limits.max_blocks {
            return Err(ProviderError::Config(format!(
                "min_blocks ({}) must not exceed max_blocks ({})",
                limits.min_blocks, limits.max_blocks
            )));
        }
        let cmd_timeout = count(options, "cmd_timeout", default_timeout)?;
        Ok(Common {
            limits,
            worker_init: opt_str(options, "worker_init").unwrap_or_default(),
            launcher,
            cmd_timeout: Duration::from_secs(cmd_timeout.max(1) as u64),
            script_dir: script_dir.to_path_buf(),
        })
    }

    /// `<script_dir>/<job_name>.submit` (and its `.stdout`/`.stderr` companions).
    pub(crate) fn script_path(&self, job_name: &str) -> PathBuf {
        self.script_dir.join(format!("{job_name}.submit"))
    }

    /// Write a job script (owner-only permissions: it may hold site secrets).
    pub(crate) fn write_script(&self, path: &Path, text: &str) -> Result<(), ProviderError> {
        let err = |source| ProviderError::Write {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(&self.script_dir).map_err(|source| ProviderError::Write {
            path: self.script_dir.clone(),
            source,
        })?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o700)
            .open(path)
            .map_err(err)?;
        f.write_all(text.as_bytes()).map_err(err)
    }
}

/// A configured execution provider: where blocks of worker managers run.
#[derive(Debug)]
pub enum Provider {
    /// Blocks are background processes on this host.
    Local(LocalProvider),
    /// Blocks are Slurm batch jobs.
    Slurm(SlurmProvider),
    /// Blocks are PBS Pro batch jobs.
    PbsPro(PbsProProvider),
}

impl Provider {
    /// Build the provider of `engine.provider` (`None`: a default `LocalProvider`); job
    /// scripts go to `script_dir` (upstream: `<uep dir>/submit_scripts`).
    pub fn from_config(
        config: Option<&ProviderConfig>,
        script_dir: &Path,
    ) -> Result<Self, ProviderError> {
        let Some(cfg) = config else {
            return Ok(Provider::Local(LocalProvider::new(
                &Options::default(),
                Launcher::default(),
                script_dir,
            )?));
        };
        let launcher = Launcher::from_config(cfg.launcher.as_ref())?;
        Ok(match cfg.provider_type {
            ProviderType::Local => {
                Provider::Local(LocalProvider::new(&cfg.options, launcher, script_dir)?)
            }
            ProviderType::Slurm => {
                Provider::Slurm(SlurmProvider::new(&cfg.options, launcher, script_dir)?)
            }
            ProviderType::PbsPro => {
                Provider::PbsPro(PbsProProvider::new(&cfg.options, launcher, script_dir)?)
            }
            other => {
                return Err(ProviderError::Config(format!(
                    "{} is not supported by this endpoint; supported providers: \
                     LocalProvider, SlurmProvider, PBSProProvider",
                    other.name()
                )));
            }
        })
    }

    fn common(&self) -> &Common {
        match self {
            Provider::Local(p) => &p.common,
            Provider::Slurm(p) => &p.common,
            Provider::PbsPro(p) => &p.common,
        }
    }

    /// The `type` name (`SlurmProvider`).
    pub fn name(&self) -> &'static str {
        match self {
            Provider::Local(_) => "LocalProvider",
            Provider::Slurm(_) => "SlurmProvider",
            Provider::PbsPro(_) => "PBSProProvider",
        }
    }

    /// Block limits.
    pub fn limits(&self) -> &BlockLimits {
        &self.common().limits
    }

    /// The configured launcher.
    pub fn launcher(&self) -> &Launcher {
        &self.common().launcher
    }

    /// Cores of one node when the configuration says (`cores_per_node`, `cpus_per_node`);
    /// `None` for LocalProvider (the engine uses this host's count).
    pub fn cores_per_node(&self) -> Option<usize> {
        match self {
            Provider::Local(_) => None,
            Provider::Slurm(p) => p.cores_per_node,
            Provider::PbsPro(p) => Some(p.cpus_per_node),
        }
    }

    /// Memory of one node in GB when the configuration says (`mem_per_node`, Slurm only).
    pub fn mem_per_node(&self) -> Option<usize> {
        match self {
            Provider::Slurm(p) => p.mem_per_node,
            Provider::Local(_) | Provider::PbsPro(_) => None,
        }
    }

    /// The queue blocks go to (`partition` for Slurm, `queue` for PBS Pro), for heartbeats.
    pub fn queue(&self) -> Option<&str> {
        match self {
            Provider::Slurm(p) => p.partition.as_deref(),
            Provider::PbsPro(p) => p.queue.as_deref(),
            Provider::Local(_) => None,
        }
    }

    /// The account blocks are charged to, for heartbeats.
    pub fn account(&self) -> Option<&str> {
        match self {
            Provider::Slurm(p) => p.account.as_deref(),
            Provider::PbsPro(p) => p.account.as_deref(),
            Provider::Local(_) => None,
        }
    }

    /// The job script for one block (what [`Provider::submit`] writes), for inspection.
    pub fn script(&self, command: &str, tasks_per_node: usize, job_name: &str) -> String {
        match self {
            Provider::Local(p) => p.script(command, tasks_per_node, job_name),
            Provider::Slurm(p) => p.script(command, tasks_per_node, job_name),
            Provider::PbsPro(p) => p.script(command, tasks_per_node, job_name),
        }
    }

    /// Submit one block running `command` (`tasks_per_node` copies per node).
    pub async fn submit(
        &self,
        command: &str,
        tasks_per_node: usize,
        job_name: &str,
    ) -> Result<JobId, ProviderError> {
        match self {
            Provider::Local(p) => p.submit(command, tasks_per_node, job_name).await,
            Provider::Slurm(p) => p.submit(command, tasks_per_node, job_name).await,
            Provider::PbsPro(p) => p.submit(command, tasks_per_node, job_name).await,
        }
    }

    /// The status of each job, in order.
    pub async fn status(&self, jobs: &[JobId]) -> Result<Vec<JobStatus>, ProviderError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Provider::Local(p) => Ok(p.status(jobs)),
            Provider::Slurm(p) => p.status(jobs).await,
            Provider::PbsPro(p) => p.status(jobs).await,
        }
    }

    /// Cancel jobs.
    pub async fn cancel(&self, jobs: &[JobId]) -> Result<(), ProviderError> {
        if jobs.is_empty() {
            return Ok(());
        }
        match self {
            Provider::Local(p) => p.cancel(jobs).await,
            Provider::Slurm(p) => p.cancel(jobs).await,
            Provider::PbsPro(p) => p.cancel(jobs).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walltime_to_minutes() {
        assert_eq!(walltime_minutes("00:10:00").unwrap(), 10);
        assert_eq!(walltime_minutes("01:00:30").unwrap(), 61);
        assert_eq!(walltime_minutes("5").unwrap(), 5);
        assert_eq!(walltime_minutes("00:00:01").unwrap(), 1);
        assert!(walltime_minutes("1-00:00:00").is_err());
        assert!(walltime_minutes("a:b").is_err());
    }
}
