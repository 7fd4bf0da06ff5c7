//! GlobusComputeEngine worker options with LocalProvider, real `gc-worker-manager` processes
//! and real Python workers: `cpu_affinity`, `available_accelerators`, `mem_per_worker`,
//! `drain_period`, `worker_debug`, `worker_logdir_root`, `run_in_sandbox`, and the Python /
//! SDK versions managers report for heartbeats (`node_info`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gc_htex::{HtexConfig, HtexEngine, ManagerCommand};
use serde_json::{Value, json};
use uuid::Uuid;

mod support;
use support::{decode, python, request};

async fn start(dir: &Path, engine_yaml: &str) -> HtexEngine {
    let text = format!(
        "engine:\n  type: GlobusComputeEngine\n  address: 127.0.0.1\n  heartbeat_period: 1\n{engine_yaml}"
    );
    let cfg = gc_config::UserEndpointConfig::from_yaml(&text, "test.yaml").expect("config");
    let mut config = HtexConfig::from_engine_config(&cfg.engine, dir).expect("engine config");
    config.manager = ManagerCommand {
        program: PathBuf::from(env!("CARGO_BIN_EXE_gc-worker-manager")),
        python: python().display().to_string(),
    };
    HtexEngine::start(config, Some(Uuid::nil()), dir)
        .await
        .expect("engine start")
}

async fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the workers' Python says about itself.
fn python_says(code: &str) -> String {
    let out = Command::new(python())
        .args(["-c", code])
        .output()
        .expect("run python");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_accelerators_sandbox_logs_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let yaml = format!(
        "  max_workers_per_node: 4\n  cpu_affinity: block\n  \
         available_accelerators: [\"acc-a\", \"acc-b\"]\n  run_in_sandbox: true\n  \
         worker_debug: true\n  worker_logdir_root: {}\n  provider:\n    type: LocalProvider\n    \
         init_blocks: 1\n    min_blocks: 0\n    max_blocks: 1\n",
        logs.display()
    );
    let engine = start(dir.path(), &yaml).await;
    let requests: Vec<_> = (0..6).map(|_| request("placement")).collect();
    let ids: Vec<Uuid> = requests.iter().map(|r| r.task_id).collect();
    let handles: Vec<_> = requests
        .into_iter()
        .map(|r| engine.submit(r).unwrap())
        .collect();
    let mut places = Vec::new();
    for (h, id) in handles.into_iter().zip(ids) {
        let r = tokio::time::timeout(Duration::from_secs(120), h)
            .await
            .expect("result in time")
            .expect("result");
        let Value::Object(v) = decode(&r) else {
            panic!("{}", r.data)
        };
        let place = v["value"].as_array().expect("list").clone();
        // run_in_sandbox: the task ran in <working_dir>/<task id>, exported as such.
        let sandbox = dir
            .path()
            .join("tasks_working_dir")
            .join(id.to_string())
            .display()
            .to_string();
        assert_eq!(place[3], json!(sandbox));
        assert_eq!(place[4], json!(sandbox));
        assert_eq!(place[5], json!(id.to_string()));
        places.push(place);
    }
    // Two workers (two accelerators), each pinned to its own CPUs and given its own
    // accelerator, with OMP_NUM_THREADS = its CPU count.
    let status = engine.status();
    assert_eq!(status.managers.len(), 1);
    assert_eq!(status.managers[0].workers, 2);
    let mut by_accelerator: Vec<(String, Vec<u64>)> = places
        .iter()
        .map(|p| {
            let cpus: Vec<u64> = p[0]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_u64().unwrap())
                .collect();
            assert_eq!(p[2], json!(cpus.len().to_string()), "{p:?}");
            (
                p[1].as_str().expect("CUDA_VISIBLE_DEVICES").to_string(),
                cpus,
            )
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    by_accelerator.dedup();
    assert_eq!(by_accelerator.len(), 2, "{by_accelerator:?}");
    assert_eq!(by_accelerator[0].0, "acc-a");
    assert_eq!(by_accelerator[1].0, "acc-b");
    let (a, b) = (&by_accelerator[0].1, &by_accelerator[1].1);
    assert!(!a.is_empty() && a.len() == b.len(), "{a:?} {b:?}");
    assert!(
        a.iter().all(|c| !b.contains(c)),
        "overlapping CPUs {a:?} {b:?}"
    );
    assert!(
        a.iter().max() < b.iter().min(),
        "block: worker 0 gets the first CPUs"
    );

    // The workers' Python and SDK versions, for node_info.
    let py = python_says("import platform; print(platform.python_version())");
    let sdk =
        python_says("from importlib.metadata import version; print(version('globus-compute-sdk'))");
    assert_eq!(
        status.managers[0].python_version.as_deref(),
        Some(py.as_str())
    );
    assert_eq!(
        status.managers[0].sdk_version.as_deref(),
        Some(sdk.as_str())
    );
    let g = engine.global_state();
    let node_info = g["node_info"].as_object().expect("node_info");
    let entry = &node_info.values().next().expect("one job")[0];
    assert_eq!(entry["python_version"], json!(py));
    assert_eq!(entry["sdk_version"], json!(sdk));
    assert_eq!(entry["worker_count"], json!(2));
    assert!(entry.get("parsl_version").is_some());

    // worker_debug + worker_logdir_root: the manager logs at DEBUG to
    // <root>/<label>-HighThroughputExecutor/block-0/<host>-<pid>/manager.log.
    let block_dir = logs.join("GlobusComputeEngine-HighThroughputExecutor/block-0");
    let manager_dirs: Vec<PathBuf> = std::fs::read_dir(&block_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", block_dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(manager_dirs.len(), 1, "{manager_dirs:?}");
    let name = manager_dirs[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        name.ends_with(&format!("-{}", status.managers[0].pid)),
        "{name}"
    );
    let log = std::fs::read_to_string(manager_dirs[0].join("manager.log")).expect("manager.log");
    assert!(log.contains("DEBUG"), "{log}");
    assert!(log.contains("worker placement"), "{log}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limits_workers_and_a_drained_manager_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    // 2 CPUs / 0.25 = 8 by cores, 4 by max_workers_per_node, 3 GB / 1 GB = 3 by memory.
    let yaml = "  max_workers_per_node: 4\n  cores_per_worker: 0.25\n  mem_per_worker: 1\n  \
                drain_period: 5\n  job_status_kwargs:\n    strategy_period: 0.5\n  \
                provider:\n    type: LocalProvider\n    init_blocks: 1\n    min_blocks: 0\n    \
                max_blocks: 1\n    worker_init: \"export PARSL_MEMORY_GB=3 PARSL_CORES=2\"\n";
    let engine = start(dir.path(), yaml).await;
    // The manager registers at once (its workers start in the background).
    wait_for("the first manager", Duration::from_secs(60), || {
        !engine.status().managers.is_empty()
    })
    .await;
    let first = engine.status().managers[0].clone();
    assert_eq!(first.workers, 3);
    assert_eq!(engine.global_state()["mem_per_worker"], json!(1.0));

    // drain_period: the manager stops taking tasks 5 s after it started and leaves; nothing
    // is lost, and tasks go to a new block.
    wait_for(
        "the manager to drain and leave",
        Duration::from_secs(60),
        || engine.status().managers.iter().all(|m| m.pid != first.pid),
    )
    .await;
    let r = tokio::time::timeout(
        Duration::from_secs(120),
        engine.submit(request("add")).unwrap(),
    )
    .await
    .expect("result in time")
    .expect("result");
    assert_eq!(decode(&r), json!({"value": 3}), "{}", r.data);
    let s = engine.status();
    assert_eq!(s.lost_manager_tasks, 0);
    assert!(s.blocks_submitted >= 2, "{}", s.blocks_submitted);
    engine.shutdown().await;
}
