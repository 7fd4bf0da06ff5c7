//! `SlurmProvider`: blocks are `sbatch` jobs; status from `sacct` (or `squeue` where
//! accounting is off); `scancel` to cancel.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use gc_config::engine::Options;
use regex::Regex;
use serde_json::Value as Json;

use crate::command::{command_line, run};
use crate::launcher::Launcher;
use crate::provider::{Common, count, opt_str, walltime, walltime_minutes};
use crate::{JobId, JobState, JobStatus, ProviderError};

/// Blocks as Slurm jobs (upstream: Parsl's `SlurmProvider`).
#[derive(Debug)]
pub struct SlurmProvider {
    pub(crate) common: Common,
    pub(crate) cores_per_node: Option<usize>,
    pub(crate) partition: Option<String>,
    pub(crate) account: Option<String>,
    qos: Option<String>,
    constraint: Option<String>,
    clusters: Option<String>,
    pub(crate) mem_per_node: Option<usize>,
    gpus_per_node: Option<usize>,
    gres: Option<String>,
    walltime_minutes: u64,
    scheduler_options: String,
    exclusive: bool,
    regex_job_id: Regex,
    /// `sacct` answered "accounting disabled" once: use `squeue` from then on.
    no_sacct: AtomicBool,
    cancelled: Mutex<HashSet<JobId>>,
}

fn optional_count(options: &Options, name: &str) -> Result<Option<usize>, ProviderError> {
    match options.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(_) => count(options, name, 0).map(Some),
    }
}

impl SlurmProvider {
    pub(crate) fn new(
        options: &Options,
        launcher: Launcher,
        script_dir: &Path,
    ) -> Result<Self, ProviderError> {
        let pattern = options
            .get("regex_job_id")
            .and_then(Json::as_str)
            .unwrap_or(r"Submitted batch job (?P<id>\S*)");
        let regex_job_id = Regex::new(pattern).map_err(|e| {
            ProviderError::Config(format!("`regex_job_id` is not a valid expression: {e}"))
        })?;
        if regex_job_id.capture_names().all(|n| n != Some("id")) {
            return Err(ProviderError::Config(
                "`regex_job_id` must have a group named `id`".into(),
            ));
        }
        Ok(Self {
            common: Common::from_options(options, launcher, 10, script_dir)?,
            cores_per_node: optional_count(options, "cores_per_node")?,
            partition: opt_str(options, "partition"),
            account: opt_str(options, "account"),
            qos: opt_str(options, "qos"),
            constraint: opt_str(options, "constraint"),
            clusters: opt_str(options, "clusters"),
            mem_per_node: optional_count(options, "mem_per_node")?,
            gpus_per_node: optional_count(options, "gpus_per_node")?,
            gres: opt_str(options, "gres"),
            walltime_minutes: walltime_minutes(&walltime(options, "00:10:00")?)?,
            scheduler_options: opt_str(options, "scheduler_options").unwrap_or_default(),
            exclusive: options
                .get("exclusive")
                .and_then(Json::as_bool)
                .unwrap_or(true),
            regex_job_id,
            no_sacct: AtomicBool::new(false),
            cancelled: Mutex::new(HashSet::new()),
        })
    }

    /// The `#SBATCH` header, `worker_init`, `JOBNAME` and the launcher's lines.
    pub(crate) fn script(&self, command: &str, tasks_per_node: usize, job_name: &str) -> String {
        let c = &self.common;
        let path = c.script_path(job_name);
        let nodes = c.limits.nodes_per_block;
        let mut s = format!(
            "#!/bin/bash\n\n\
             #SBATCH --job-name={job_name}\n\
             #SBATCH --output={out}\n\
             #SBATCH --error={err}\n\
             #SBATCH --nodes={nodes}\n\
             #SBATCH --time={minutes}\n\
             #SBATCH --ntasks-per-node={tpn}\n",
            out = path.with_extension("submit.stdout").display(),
            err = path.with_extension("submit.stderr").display(),
            minutes = self.walltime_minutes,
            tpn = tasks_per_node.max(1),
        );
        if !self.scheduler_options.trim().is_empty() {
            s.push_str(self.scheduler_options.trim_end());
            s.push('\n');
        }
        let mut line = |opt: String| {
            s.push_str("#SBATCH ");
            s.push_str(&opt);
            s.push('\n');
        };
        if self.exclusive {
            line("--exclusive".into());
        }
        let pairs = [
            ("partition", &self.partition),
            ("account", &self.account),
            ("qos", &self.qos),
            ("constraint", &self.constraint),
            ("clusters", &self.clusters),
        ];
        for (name, value) in pairs {
            if let Some(v) = value {
                line(format!("--{name}={v}"));
            }
        }
        if let Some(g) = self.gpus_per_node {
            line(format!("--gpus-per-node={g}"));
        }
        if let Some(g) = &self.gres {
            line(format!("--gres={g}"));
        }
        if let Some(m) = self.mem_per_node {
            line(format!("--mem={m}g"));
        }
        if let Some(cores) = self.cores_per_node {
            line(format!(
                "--cpus-per-task={}",
                (cores / tasks_per_node.max(1)).max(1)
            ));
        }
        s.push('\n');
        if !c.worker_init.is_empty() {
            s.push_str(&c.worker_init);
            s.push('\n');
        }
        s.push_str(&format!("\nexport JOBNAME=\"{job_name}\"\n\n"));
        s.push_str(&c.launcher.wrap(command, tasks_per_node, nodes));
        s
    }

    pub(crate) async fn submit(
        &self,
        command: &str,
        tasks_per_node: usize,
        job_name: &str,
    ) -> Result<JobId, ProviderError> {
        let c = &self.common;
        let path = c.script_path(job_name);
        c.write_script(&path, &self.script(command, tasks_per_node, job_name))?;
        let args = vec![path.display().to_string()];
        let out = run("sbatch", &args, Some(&c.script_dir), c.cmd_timeout).await?;
        let id = parse_sbatch(&self.regex_job_id, &out).ok_or_else(|| ProviderError::Parse {
            command: command_line("sbatch", &args),
            detail: format!("no job id matching `{}` in {out:?}", self.regex_job_id),
        })?;
        tracing::info!(job = %id, %job_name, "Slurm block submitted");
        Ok(id)
    }

    fn cluster_args(&self) -> Vec<String> {
        self.clusters
            .iter()
            .map(|c| format!("--clusters={c}"))
            .collect()
    }

    pub(crate) async fn status(&self, ids: &[JobId]) -> Result<Vec<JobStatus>, ProviderError> {
        let list = ids
            .iter()
            .map(|i| i.0.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let timeout = self.common.cmd_timeout;
        let mut statuses = None;
        if !self.no_sacct.load(Ordering::Relaxed) {
            let mut args = vec![
                "-X".into(),
                "--noheader".into(),
                "--parsable2".into(),
                "--format=JobID,State".into(),
                format!("--jobs={list}"),
            ];
            args.extend(self.cluster_args());
            match run("sacct", &args, None, timeout).await {
                Ok(out) => statuses = Some(parse_sacct(&out, ids)),
                Err(e) => {
                    tracing::info!("sacct unusable, using squeue from now on: {e}");
                    self.no_sacct.store(true, Ordering::Relaxed);
                }
            }
        }
        let mut statuses = match statuses {
            Some(s) => s,
            None => {
                let mut args = vec![
                    "--noheader".into(),
                    "--format=%i %t".into(),
                    format!("--jobs={list}"),
                ];
                args.extend(self.cluster_args());
                match run("squeue", &args, None, timeout).await {
                    Ok(out) => parse_squeue(&out, ids),
                    // Every job finished and was forgotten.
                    Err(ProviderError::Failed { stderr, .. })
                        if stderr.contains("Invalid job id") =>
                    {
                        parse_squeue("", ids)
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let cancelled = self.cancelled.lock().unwrap_or_else(|p| p.into_inner());
        for (id, status) in ids.iter().zip(statuses.iter_mut()) {
            if status.state.is_terminal() && cancelled.contains(id) {
                status.state = JobState::Cancelled;
            }
        }
        Ok(statuses)
    }

    pub(crate) async fn cancel(&self, ids: &[JobId]) -> Result<(), ProviderError> {
        self.cancelled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(ids.iter().cloned());
        let mut args = self.cluster_args();
        args.extend(ids.iter().map(|i| i.0.clone()));
        run("scancel", &args, None, self.common.cmd_timeout).await?;
        Ok(())
    }
}

/// The job id in `sbatch`'s answer (`Submitted batch job 42`).
pub fn parse_sbatch(regex: &Regex, out: &str) -> Option<JobId> {
    out.lines()
        .find_map(|l| regex.captures(l))
        .and_then(|c| c.name("id"))
        .map(|m| JobId(m.as_str().to_string()))
        .filter(|id| !id.0.is_empty())
}

/// A Slurm state name (`sacct`'s words or `squeue`'s two-letter codes).
fn slurm_state(word: &str) -> JobState {
    match word {
        "PENDING" | "PD" | "CONFIGURING" | "CF" | "REQUEUED" | "RQ" | "REQUEUE_FED" | "RF"
        | "REQUEUE_HOLD" | "RH" | "RESIZING" | "RS" => JobState::Pending,
        "RUNNING" | "R" | "COMPLETING" | "CG" | "SIGNALING" | "SI" | "STAGE_OUT" | "SO" => {
            JobState::Running
        }
        "SUSPENDED" | "S" | "STOPPED" | "ST" | "RESV_DEL_HOLD" | "RD" => JobState::Held,
        "COMPLETED" | "CD" => JobState::Completed,
        "CANCELLED" | "CA" | "REVOKED" | "RV" => JobState::Cancelled,
        "TIMEOUT" | "TO" | "DEADLINE" | "DL" => JobState::Timeout,
        "FAILED" | "F" | "NODE_FAIL" | "NF" | "BOOT_FAIL" | "BF" | "OUT_OF_MEMORY" | "OOM"
        | "PREEMPTED" | "PR" | "SPECIAL_EXIT" | "SE" => JobState::Failed,
        _ => JobState::Unknown,
    }
}

fn collect(
    ids: &[JobId],
    rows: impl Iterator<Item = (String, String)>,
    missing: &str,
) -> Vec<JobStatus> {
    let mut found = std::collections::HashMap::new();
    for (id, state) in rows {
        found.insert(id, state);
    }
    ids.iter()
        .map(|id| match found.get(&id.0) {
            Some(text) => {
                // `CANCELLED by 0`: the first word is the state, the rest the reason.
                let word = text.split_whitespace().next().unwrap_or_default();
                let state = slurm_state(word);
                if text.contains(' ') || state == JobState::Unknown {
                    JobStatus::with_message(state, text.clone())
                } else {
                    JobStatus::new(state)
                }
            }
            // squeue forgets finished jobs: as upstream, assume they completed.
            None => JobStatus::with_message(JobState::Completed, missing),
        })
        .collect()
}

/// `sacct -X --noheader --parsable2 --format=JobID,State` lines: `42|CANCELLED by 0`.
pub fn parse_sacct(out: &str, ids: &[JobId]) -> Vec<JobStatus> {
    let rows = out.lines().filter_map(|l| {
        let (id, state) = l.trim().split_once('|')?;
        Some((id.to_string(), state.to_string()))
    });
    collect(ids, rows, "not listed by sacct")
}

/// `squeue --noheader --format='%i %t'` lines: `42 PD`.
pub fn parse_squeue(out: &str, ids: &[JobId]) -> Vec<JobStatus> {
    let rows = out.lines().filter_map(|l| {
        let mut w = l.split_whitespace();
        Some((w.next()?.to_string(), w.next()?.to_string()))
    });
    collect(ids, rows, "no longer listed by squeue")
}
