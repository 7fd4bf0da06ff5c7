//! A manager's Python workers: how many a node gets (`max_workers_per_node`,
//! `cores_per_worker`, `mem_per_worker`, `available_accelerators`), which CPUs and which
//! accelerator each one is given (`cpu_affinity`, `available_accelerators`), and the pool
//! that runs them. The rules are Parsl's process worker pool's (ENDPOINT.md §6.4).

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

use gc_engine::{Engine, EngineError, PoolConfig, TaskHandle, TaskRequest, WorkerCommand};
use gc_wire::messagepack::TaskResult;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Workers one node runs: at most `max_workers`, `cores / cores_per_worker`,
/// `mem_gb / mem_per_worker` (when both are known) and `accelerators` (when there are any);
/// at least one.
pub fn slots(
    cores: usize,
    mem_gb: Option<f64>,
    cores_per_worker: f64,
    max_workers: Option<usize>,
    mem_per_worker: Option<f64>,
    accelerators: usize,
) -> usize {
    let mut n = ((cores as f64) / cores_per_worker.max(0.001))
        .floor()
        .max(1.0) as usize;
    if let Some(max) = max_workers {
        n = n.min(max);
    }
    if let (Some(mem), Some(per)) = (mem_gb, mem_per_worker)
        && per > 0.0
    {
        n = n.min((mem / per).floor().max(0.0) as usize);
    }
    if accelerators > 0 {
        n = n.min(accelerators);
    }
    n.max(1)
}

/// This node's cores and available memory in GB (to one decimal), as Parsl reads them:
/// `PARSL_CORES` / `PARSL_MEMORY_GB` when set, else the CPUs this process may use and
/// `MemAvailable` of `/proc/meminfo`.
pub fn node_resources() -> (usize, Option<f64>) {
    let env_num = |k: &str| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let cores = env_num("PARSL_CORES")
        .filter(|c| *c >= 1.0)
        .map(|c| c as usize)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mem = env_num("PARSL_MEMORY_GB").or_else(|| {
        let text = std::fs::read_to_string("/proc/meminfo").ok()?;
        let kb: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some((kb / (1024.0 * 1024.0) * 10.0).round() / 10.0)
    });
    (cores, mem)
}

/// The CPUs this process may run on (`Cpus_allowed_list` of `/proc/self/status`), sorted.
pub fn allowed_cpus() -> Vec<usize> {
    let listed = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|l| parse_cpu_list(l.trim()))
        })
        .and_then(Result::ok)
        .filter(|l| !l.is_empty());
    listed.unwrap_or_else(|| {
        (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
    })
}

/// `0-3,8,10-11` → `[0, 1, 2, 3, 8, 10, 11]`.
fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        let bad = || format!("Affinity list formatting is not expected {text}");
        match part.split_once('-') {
            Some((a, b)) => {
                let a: usize = a.trim().parse().map_err(|_| bad())?;
                let b: usize = b.trim().parse().map_err(|_| bad())?;
                cpus.extend(a..=b);
            }
            None => cpus.push(part.trim().parse().map_err(|_| bad())?),
        }
    }
    Ok(cpus)
}

/// The CPUs of worker `worker` of `pool_size` under `cpu_affinity`, Parsl's way: `block`
/// gives each worker `len(avail) / pool_size` consecutive CPUs, `block-reverse` the same
/// from the end, `alternating` every `pool_size`-th CPU, `list:a:b:…` the listed ones;
/// `none` → `None` (no pinning).
pub fn worker_cpus(
    cpu_affinity: &str,
    avail: &[usize],
    pool_size: usize,
    worker: usize,
) -> Result<Option<Vec<usize>>, String> {
    if cpu_affinity == "none" {
        return Ok(None);
    }
    let pool_size = pool_size.max(1);
    let per = avail.len() / pool_size;
    if !cpu_affinity.starts_with("list") && per == 0 {
        return Err("Affinity does not work if there are more workers than cores".into());
    }
    let cpus = match cpu_affinity {
        "block" => avail[per * worker..per * (worker + 1)].to_vec(),
        "block-reverse" => {
            let w = pool_size - worker - 1;
            avail[per * w..per * (w + 1)].to_vec()
        }
        "alternating" => avail
            .iter()
            .copied()
            .skip(worker)
            .step_by(pool_size)
            .collect(),
        list if list.starts_with("list") => {
            let ranks: Vec<&str> = list.split(':').skip(1).collect();
            if ranks.len() != pool_size {
                return Err(format!(
                    "Affinity list {list} has wrong number of thread ranks"
                ));
            }
            parse_cpu_list(ranks[worker])?
        }
        other => return Err(format!("Affinity strategy {other} is not supported")),
    };
    Ok(Some(cpus))
}

/// `base` for one worker: pinned to `cpus` (with the OpenMP variables Parsl sets) and given
/// `accelerator` (`CUDA_VISIBLE_DEVICES`, `ROCR_VISIBLE_DEVICES`, `ZE_AFFINITY_MASK`).
/// Pinning is done by the worker's Python itself (`os.sched_setaffinity`) before it starts.
pub fn worker_command(
    base: &WorkerCommand,
    cpus: Option<&[usize]>,
    accelerator: Option<&str>,
) -> WorkerCommand {
    let mut cmd = base.clone();
    if let Some(cpus) = cpus {
        let list = cpus
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",");
        cmd.env
            .push(("OMP_NUM_THREADS".into(), cpus.len().to_string().into()));
        cmd.env
            .push(("GOMP_CPU_AFFINITY".into(), list.clone().into()));
        cmd.env.push((
            "KMP_AFFINITY".into(),
            format!("explicit,proclist=[{list}]").into(),
        ));
        // The embedded bootstrap is `python -c <program>`: pin first, then run it.
        if let Some(pos) = cmd.args.iter().position(|a| a == "-c")
            && let Some(program) = cmd.args.get(pos + 1).and_then(|p| p.to_str())
        {
            let pinned =
                format!("import os as _gc_os\n_gc_os.sched_setaffinity(0, [{list}])\n{program}");
            cmd.args[pos + 1] = pinned.into();
        }
    }
    if let Some(acc) = accelerator {
        for var in [
            "CUDA_VISIBLE_DEVICES",
            "ROCR_VISIBLE_DEVICES",
            "ZE_AFFINITY_MASK",
        ] {
            cmd.env.push((var.into(), acc.into()));
        }
        cmd.env
            .push(("ZE_ENABLE_PCI_ID_DEVICE_ORDER".into(), "1".into()));
    }
    cmd
}

/// The Python and `globus-compute-sdk` versions of the workers' interpreter, for the
/// engine's heartbeat (`node_info`); `None` when they cannot be read.
pub async fn probe_versions(python: &Path) -> (Option<String>, Option<String>) {
    const PROBE: &str = "import platform\n\
        try:\n    from importlib.metadata import version\n    sdk = version('globus-compute-sdk')\n\
        except Exception:\n    sdk = ''\n\
        print(platform.python_version())\nprint(sdk)\n";
    let run = tokio::process::Command::new(python)
        .args(["-c", PROBE])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(std::time::Duration::from_secs(60), run).await {
        Ok(Ok(out)) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text
                .lines()
                .map(str::trim)
                .map(|l| (!l.is_empty()).then(|| l.to_string()));
            (lines.next().flatten(), lines.next().flatten())
        }
        _ => (None, None),
    }
}

/// The workers of one manager: one pool when they are all alike, else one single-worker
/// pool per worker (pinned CPUs or an accelerator each) with tasks handed to whichever is
/// free.
pub enum Workers {
    /// All workers alike.
    Pool(Engine),
    /// A pool per worker; tasks queue here until one is free.
    PerWorker(mpsc::UnboundedSender<Queued>),
}

/// A task waiting for a free worker.
pub struct Queued {
    request: TaskRequest,
    environment: BTreeMap<String, String>,
    reply: oneshot::Sender<TaskResult>,
}

impl Workers {
    /// Start `count` workers from `pool` (its `worker` command and task settings), pinned
    /// per `cpu_affinity` and given one of `accelerators` each when either is asked for.
    pub fn start(
        mut pool: PoolConfig,
        count: usize,
        cpu_affinity: &str,
        accelerators: &[String],
        endpoint_id: Option<Uuid>,
        run_dir: &Path,
    ) -> Result<Workers, EngineError> {
        if cpu_affinity == "none" && accelerators.is_empty() {
            pool.max_workers = Some(count);
            return Ok(Workers::Pool(Engine::start(pool, endpoint_id, run_dir)?));
        }
        let avail = allowed_cpus();
        let mut engines = Vec::with_capacity(count);
        for i in 0..count {
            let cpus = worker_cpus(cpu_affinity, &avail, count, i).map_err(EngineError::Config)?;
            let acc = accelerators.get(i).map(String::as_str);
            let mut one = pool.clone();
            one.max_workers = Some(1);
            one.worker = worker_command(&pool.worker, cpus.as_deref(), acc);
            tracing::info!(worker = i, ?cpus, accelerator = ?acc, "worker placement");
            engines.push(Arc::new(Engine::start(one, endpoint_id, run_dir)?));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(hand_out(engines, rx));
        Ok(Workers::PerWorker(tx))
    }

    /// Queue a task whose worker sets `environment` while it runs.
    pub fn submit_with_environment(
        &self,
        request: TaskRequest,
        environment: BTreeMap<String, String>,
    ) -> Result<TaskHandle, EngineError> {
        match self {
            Workers::Pool(e) => e.submit_with_environment(request, environment),
            Workers::PerWorker(tx) => {
                let (reply, rx) = oneshot::channel();
                let task_id = request.task_id;
                tx.send(Queued {
                    request,
                    environment,
                    reply,
                })
                .map_err(|_| EngineError::NotRunning)?;
                Ok(TaskHandle::new(task_id, rx))
            }
        }
    }
}

/// Hands queued tasks to free single-worker pools, in order. Ends (dropping the pools and
/// so their workers) when the [`Workers`] is dropped.
async fn hand_out(engines: Vec<Arc<Engine>>, mut rx: mpsc::UnboundedReceiver<Queued>) {
    let mut free: Vec<usize> = (0..engines.len()).rev().collect();
    let mut queue: VecDeque<Queued> = VecDeque::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<usize>();
    loop {
        tokio::select! {
            q = rx.recv() => match q {
                Some(q) => queue.push_back(q),
                None => break,
            },
            Some(i) = done_rx.recv() => free.push(i),
        }
        while !queue.is_empty() {
            let Some(i) = free.pop() else { break };
            let Some(q) = queue.pop_front() else { break };
            match engines[i].submit_with_environment(q.request, q.environment) {
                Ok(handle) => {
                    let done = done_tx.clone();
                    tokio::spawn(async move {
                        if let Ok(result) = handle.await {
                            let _ = q.reply.send(result);
                        }
                        let _ = done.send(i);
                    });
                }
                Err(e) => {
                    tracing::error!("worker {i}: {e}");
                    free.push(i);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_take_the_smallest_limit() {
        assert_eq!(slots(8, None, 1.0, None, None, 0), 8);
        assert_eq!(slots(8, None, 2.0, None, None, 0), 4);
        assert_eq!(slots(8, None, 1.0, Some(3), None, 0), 3);
        assert_eq!(slots(8, Some(10.0), 1.0, None, Some(4.0), 0), 2);
        assert_eq!(slots(8, None, 1.0, None, Some(4.0), 0), 8, "memory unknown");
        assert_eq!(slots(8, None, 1.0, None, None, 2), 2);
        assert_eq!(
            slots(8, Some(1.0), 1.0, None, Some(4.0), 0),
            1,
            "at least one"
        );
    }

    #[test]
    fn cpus_per_worker_as_parsl_assigns_them() {
        let avail: Vec<usize> = (0..8).collect();
        let c = |aff, w| worker_cpus(aff, &avail, 4, w).unwrap().unwrap();
        assert_eq!(c("block", 0), [0, 1]);
        assert_eq!(c("block", 3), [6, 7]);
        assert_eq!(c("block-reverse", 0), [6, 7]);
        assert_eq!(c("alternating", 1), [1, 5]);
        assert_eq!(c("list:0:1-2:3,5:6-7", 2), [3, 5]);
        assert_eq!(worker_cpus("none", &avail, 4, 0).unwrap(), None);
        assert_eq!(
            worker_cpus("list:0:1", &avail, 4, 0).unwrap_err(),
            "Affinity list list:0:1 has wrong number of thread ranks"
        );
        assert_eq!(
            worker_cpus("block", &avail[..2], 4, 0).unwrap_err(),
            "Affinity does not work if there are more workers than cores"
        );
        assert_eq!(parse_cpu_list("0-2,5").unwrap(), [0, 1, 2, 5]);
        assert!(!allowed_cpus().is_empty());
    }

    #[test]
    fn worker_commands_carry_pinning_and_accelerators() {
        let base = WorkerCommand::embedded("python3");
        let cmd = worker_command(&base, Some(&[2, 3]), Some("1"));
        let env: BTreeMap<String, String> = cmd
            .env
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )
            })
            .collect();
        assert_eq!(env["OMP_NUM_THREADS"], "2");
        assert_eq!(env["GOMP_CPU_AFFINITY"], "2,3");
        assert_eq!(env["KMP_AFFINITY"], "explicit,proclist=[2,3]");
        assert_eq!(env["CUDA_VISIBLE_DEVICES"], "1");
        assert_eq!(env["ROCR_VISIBLE_DEVICES"], "1");
        assert_eq!(env["ZE_AFFINITY_MASK"], "1");
        let program = cmd.args[1].to_string_lossy().into_owned();
        assert!(
            program.starts_with("import os as _gc_os\n_gc_os.sched_setaffinity(0, [2,3])\n"),
            "{program}"
        );
        assert!(program.ends_with(base.args[1].to_str().unwrap()));
        let plain = worker_command(&base, None, None);
        assert_eq!(plain.args, base.args);
        assert!(plain.env.is_empty());
    }
}
