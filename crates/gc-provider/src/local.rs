//! `LocalProvider`: each block is a `bash` process (in its own process group) on this host.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use gc_config::engine::Options;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::launcher::Launcher;
use crate::provider::Common;
use crate::{JobId, JobState, JobStatus, ProviderError};

/// How long a cancelled block gets after SIGTERM before its process group is killed.
const CANCEL_GRACE: Duration = Duration::from_secs(3);

/// Blocks as local processes (upstream: Parsl's `LocalProvider`).
#[derive(Debug)]
pub struct LocalProvider {
    pub(crate) common: Common,
    jobs: Mutex<HashMap<JobId, Job>>,
}

#[derive(Debug)]
struct Job {
    child: Child,
    cancelled: bool,
    ended: Option<JobStatus>,
}

impl LocalProvider {
    pub(crate) fn new(
        options: &Options,
        launcher: Launcher,
        script_dir: &Path,
    ) -> Result<Self, ProviderError> {
        Ok(Self {
            common: Common::from_options(options, launcher, 30, script_dir)?,
            jobs: Mutex::new(HashMap::new()),
        })
    }

    /// `<worker_init>`, `export JOBNAME=…`, the launcher's lines.
    pub(crate) fn script(&self, command: &str, tasks_per_node: usize, job_name: &str) -> String {
        let c = &self.common;
        format!(
            "{}\nexport JOBNAME=\"{job_name}\"\n\n{}",
            c.worker_init,
            c.launcher
                .wrap(command, tasks_per_node, c.limits.nodes_per_block)
        )
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
        let open = |ext: &str| {
            let p = path.with_extension(format!("submit.{ext}"));
            std::fs::File::create(&p).map_err(|source| ProviderError::Write { path: p, source })
        };
        let (stdout, stderr) = (open("stdout")?, open("stderr")?);
        let child = Command::new("/bin/bash")
            .arg(&path)
            .current_dir(&c.script_dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .map_err(|source| ProviderError::Spawn {
                command: format!("/bin/bash {}", path.display()),
                source,
            })?;
        let Some(pid) = child.id() else {
            return Err(ProviderError::Spawn {
                command: format!("/bin/bash {}", path.display()),
                source: std::io::Error::other("the process exited at once"),
            });
        };
        let id = JobId(pid.to_string());
        tracing::info!(job = %id, %job_name, "local block started");
        self.lock().insert(
            id.clone(),
            Job {
                child,
                cancelled: false,
                ended: None,
            },
        );
        Ok(id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Job>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn status(&self, ids: &[JobId]) -> Vec<JobStatus> {
        let mut jobs = self.lock();
        ids.iter()
            .map(|id| match jobs.get_mut(id) {
                None => JobStatus::with_message(JobState::Unknown, "not started by this provider"),
                Some(job) => {
                    if let Some(done) = &job.ended {
                        return done.clone();
                    }
                    match job.child.try_wait() {
                        Ok(None) => JobStatus::new(JobState::Running),
                        Ok(Some(status)) => {
                            let state = if job.cancelled {
                                JobState::Cancelled
                            } else if status.success() {
                                JobState::Completed
                            } else {
                                JobState::Failed
                            };
                            let done = JobStatus::with_message(state, status.to_string());
                            job.ended = Some(done.clone());
                            done
                        }
                        Err(e) => JobStatus::with_message(JobState::Unknown, e.to_string()),
                    }
                }
            })
            .collect()
    }

    pub(crate) async fn cancel(&self, ids: &[JobId]) -> Result<(), ProviderError> {
        let mut groups = Vec::new();
        {
            let mut jobs = self.lock();
            for id in ids {
                if let Some(job) = jobs.get_mut(id) {
                    if job.ended.is_none() {
                        job.cancelled = true;
                        if let Ok(pid) = id.0.parse::<i32>() {
                            groups.push(Pid::from_raw(pid));
                        }
                    }
                }
            }
        }
        for &pg in &groups {
            // Already gone is fine: that is what cancelling asks for.
            let _ = killpg(pg, Signal::SIGTERM);
        }
        let deadline = tokio::time::Instant::now() + CANCEL_GRACE;
        while tokio::time::Instant::now() < deadline {
            let pending: Vec<JobId> = groups.iter().map(|p| JobId(p.to_string())).collect();
            if self.status(&pending).iter().all(|s| s.state.is_terminal()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for &pg in &groups {
            // Whatever of the group outlived SIGTERM (workers ignoring it, say).
            let _ = killpg(pg, Signal::SIGKILL);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Provider;

    fn provider(dir: &Path, opts: &str) -> Provider {
        let text = format!(
            "engine:\n  type: GlobusComputeEngine\n  provider:\n    type: LocalProvider\n{opts}"
        );
        let cfg = gc_config::UserEndpointConfig::from_yaml(&text, "t.yaml").expect("config");
        Provider::from_config(cfg.engine.provider.as_ref(), dir).expect("provider")
    }

    #[test]
    fn script_runs_worker_init_first() {
        let dir = tempfile::tempdir().unwrap();
        let p = provider(
            dir.path(),
            "    worker_init: source /opt/env/bin/activate\n    launcher:\n      type: SimpleLauncher\n      debug: false\n",
        );
        assert_eq!(
            p.script("manager --x", 1, "gc.block-0"),
            "source /opt/env/bin/activate\nexport JOBNAME=\"gc.block-0\"\n\nmanager --x\n"
        );
    }

    #[tokio::test]
    async fn blocks_run_end_and_are_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let p = provider(dir.path(), "    worker_init: export MARK=hello\n");
        let done = p.submit("echo $MARK-$JOBNAME", 2, "quick").await.unwrap();
        let slow = p.submit("sleep 600", 1, "slow").await.unwrap();
        let mut state = JobState::Running;
        for _ in 0..100 {
            state = p.status(std::slice::from_ref(&done)).await.unwrap()[0].state;
            if state.is_terminal() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(state, JobState::Completed);
        let out = std::fs::read_to_string(dir.path().join("quick.submit.stdout")).unwrap();
        assert_eq!(out, "hello-quick\nhello-quick\n");
        assert_eq!(
            p.status(std::slice::from_ref(&slow)).await.unwrap()[0].state,
            JobState::Running
        );
        p.cancel(std::slice::from_ref(&slow)).await.unwrap();
        assert_eq!(
            p.status(std::slice::from_ref(&slow)).await.unwrap()[0].state,
            JobState::Cancelled
        );
        let unknown = p.status(&[JobId("1".into())]).await.unwrap();
        assert_eq!(unknown[0].state, JobState::Unknown);
    }

    #[tokio::test]
    async fn a_failing_block_is_failed() {
        let dir = tempfile::tempdir().unwrap();
        let p = provider(dir.path(), "");
        let id = p.submit("exit 3", 1, "bad").await.unwrap();
        let mut state = JobState::Running;
        for _ in 0..100 {
            state = p.status(std::slice::from_ref(&id)).await.unwrap()[0].state;
            if state.is_terminal() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(state, JobState::Failed);
    }
}
