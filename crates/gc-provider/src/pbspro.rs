//! `PBSProProvider`: blocks are `qsub` jobs; status from `qstat -x -f -F json`; `qdel`.
//!
//! PBS Pro is not packaged for Debian, so this module is tested against recorded scheduler
//! output (`tests/recorded/`), not a live server.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;

use gc_config::engine::Options;
use serde_json::Value as Json;

use crate::command::{command_line, run, run_output};
use crate::launcher::Launcher;
use crate::provider::{Common, count, opt_str, walltime};
use crate::{JobId, JobState, JobStatus, ProviderError};

/// Blocks as PBS Pro jobs (upstream: Parsl's `PBSProProvider`).
#[derive(Debug)]
pub struct PbsProProvider {
    pub(crate) common: Common,
    pub(crate) cpus_per_node: usize,
    pub(crate) account: Option<String>,
    pub(crate) queue: Option<String>,
    scheduler_options: String,
    select_options: String,
    walltime: String,
    cancelled: Mutex<HashSet<JobId>>,
}

impl PbsProProvider {
    pub(crate) fn new(
        options: &Options,
        launcher: Launcher,
        script_dir: &Path,
    ) -> Result<Self, ProviderError> {
        Ok(Self {
            common: Common::from_options(options, launcher, 120, script_dir)?,
            cpus_per_node: count(options, "cpus_per_node", 1)?.max(1),
            account: opt_str(options, "account"),
            queue: opt_str(options, "queue"),
            scheduler_options: opt_str(options, "scheduler_options").unwrap_or_default(),
            select_options: opt_str(options, "select_options").unwrap_or_default(),
            walltime: walltime(options, "00:20:00")?,
            cancelled: Mutex::new(HashSet::new()),
        })
    }

    /// The `#PBS` header, `worker_init`, `JOBNAME` and the launcher's lines.
    pub(crate) fn script(&self, command: &str, tasks_per_node: usize, job_name: &str) -> String {
        let c = &self.common;
        let path = c.script_path(job_name);
        let nodes = c.limits.nodes_per_block;
        let select = if self.select_options.is_empty() {
            String::new()
        } else {
            format!(":{}", self.select_options.trim_start_matches(':'))
        };
        let mut s = format!(
            "#!/bin/bash\n\n\
             #PBS -S /bin/bash\n\
             #PBS -N {job_name}\n\
             #PBS -m n\n\
             #PBS -l walltime={walltime}\n\
             #PBS -l select={nodes}:ncpus={cpus}{select}\n\
             #PBS -o {out}\n\
             #PBS -e {err}\n",
            walltime = self.walltime,
            cpus = self.cpus_per_node,
            out = path.with_extension("submit.stdout").display(),
            err = path.with_extension("submit.stderr").display(),
        );
        if let Some(q) = &self.queue {
            s.push_str(&format!("#PBS -q {q}\n"));
        }
        if !self.scheduler_options.trim().is_empty() {
            s.push_str(self.scheduler_options.trim_end());
            s.push('\n');
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
        let mut args = Vec::new();
        if let Some(a) = &self.account {
            args.push("-A".to_string());
            args.push(a.clone());
        }
        args.push(path.display().to_string());
        let out = run("qsub", &args, Some(&c.script_dir), c.cmd_timeout).await?;
        let id = parse_qsub(&out).ok_or_else(|| ProviderError::Parse {
            command: command_line("qsub", &args),
            detail: format!("no job id in {out:?}"),
        })?;
        tracing::info!(job = %id, %job_name, "PBS Pro block submitted");
        Ok(id)
    }

    pub(crate) async fn status(&self, ids: &[JobId]) -> Result<Vec<JobStatus>, ProviderError> {
        let mut args: Vec<String> = ["-x", "-f", "-F", "json"].map(String::from).into();
        args.extend(ids.iter().map(|i| i.0.clone()));
        let out = run_output("qstat", &args, None, self.common.cmd_timeout).await?;
        let mut statuses = match qstat_statuses(out.success, &out.stdout, &out.stderr, ids) {
            Some(Ok(s)) => s,
            Some(Err(detail)) => {
                return Err(ProviderError::Parse {
                    command: command_line("qstat", &args),
                    detail,
                });
            }
            None => return Err(out.failure()),
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
        let args: Vec<String> = ids.iter().map(|i| i.0.clone()).collect();
        run("qdel", &args, None, self.common.cmd_timeout).await?;
        Ok(())
    }
}

/// `qsub` prints the job id (`1234.pbs01`) alone on a line.
pub fn parse_qsub(out: &str) -> Option<JobId> {
    out.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.contains(char::is_whitespace))
        .map(|l| JobId(l.to_string()))
}

/// The statuses in a `qstat` answer. Without job history (`job_history_enable` off, the
/// default) finished jobs are unknown to `qstat`, which then exits non-zero, says
/// `Unknown Job Id` on stderr and still prints the JSON of the jobs it knows: that is an
/// answer, not a failure. `None`: a real failure.
pub fn qstat_statuses(
    success: bool,
    stdout: &str,
    stderr: &str,
    ids: &[JobId],
) -> Option<Result<Vec<JobStatus>, String>> {
    if success {
        return Some(parse_qstat_json(stdout, ids));
    }
    if !stderr.contains("Unknown Job Id") {
        return None;
    }
    if stdout.trim().is_empty() {
        return Some(parse_qstat_json("{}", ids));
    }
    Some(parse_qstat_json(stdout, ids))
}

/// PBS Pro writes `Variable_List` values without escaping backslashes; make them JSON.
fn repair_backslashes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                Some('"' | '\\' | '/' | 'b' | 'f' | 'n' | 'r' | 't' | 'u') => {
                    out.push(c);
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                }
                _ => out.push_str("\\\\"),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The state of each of `ids` in `qstat -x -f -F json` output. Jobs the server no longer
/// lists are reported completed, as upstream does.
pub fn parse_qstat_json(out: &str, ids: &[JobId]) -> Result<Vec<JobStatus>, String> {
    let doc: Json = match serde_json::from_str(out) {
        Ok(doc) => doc,
        Err(_) => serde_json::from_str(&repair_backslashes(out))
            .map_err(|e| format!("not JSON ({e}): {:.200}", out))?,
    };
    let empty = serde_json::Map::new();
    let jobs = match doc.get("Jobs") {
        None => &empty,
        Some(Json::Object(jobs)) => jobs,
        Some(other) => return Err(format!("`Jobs` is not an object: {other:.200}")),
    };
    Ok(ids
        .iter()
        .map(|id| {
            let job = jobs.get(&id.0).or_else(|| {
                // `qstat` may print the full server name (`42.pbs01.example.org` for `42.pbs01`).
                jobs.iter()
                    .find(|(k, _)| k.starts_with(&format!("{}.", id.0)))
                    .map(|(_, v)| v)
            });
            match job {
                None => JobStatus::with_message(JobState::Completed, "not listed by qstat"),
                Some(job) => pbs_status(job),
            }
        })
        .collect())
}

fn pbs_status(job: &Json) -> JobStatus {
    let state = job.get("job_state").and_then(Json::as_str).unwrap_or("");
    let exit = job.get("Exit_status").and_then(Json::as_i64);
    match state {
        "Q" | "W" | "T" | "M" => JobStatus::new(JobState::Pending),
        "H" | "S" | "U" => JobStatus::new(JobState::Held),
        "R" | "E" | "B" => JobStatus::new(JobState::Running),
        "F" | "X" => match exit {
            Some(0) => JobStatus::new(JobState::Completed),
            Some(code) => JobStatus::with_message(JobState::Failed, format!("Exit_status={code}")),
            None => JobStatus::with_message(JobState::Failed, "finished without an exit status"),
        },
        other => JobStatus::with_message(JobState::Unknown, format!("job_state={other:?}")),
    }
}
