//! GlobusComputeEngine end to end with LocalProvider: the interchange, real
//! `gc-worker-manager` processes started by blocks, real Python workers and the unmodified
//! SDK (Python from `GCRS_PYTHON`, default `<workspace>/.venv/bin/python`).

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gc_htex::{HtexConfig, HtexEngine, ManagerCommand};
use serde_json::json;
use uuid::Uuid;

mod support;
use support::{decode, python, request};

/// A GlobusComputeEngine over LocalProvider, configured by YAML engine options.
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

const PROVIDER_1X2: &str = "  max_workers_per_node: 2\n  provider:\n    type: LocalProvider\n    \
                            init_blocks: 1\n    min_blocks: 0\n    max_blocks: 1\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_through_one_block_of_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), PROVIDER_1X2).await;
    let t0 = Instant::now();
    let handles: Vec<_> = (0..40)
        .map(|i| {
            engine
                .submit(request(if i % 2 == 0 { "add" } else { "whoami" }))
                .unwrap()
        })
        .collect();
    let mut results = Vec::new();
    for h in handles {
        let id = h.task_id();
        let r = tokio::time::timeout(Duration::from_secs(120), h)
            .await
            .expect("result in time")
            .expect("result");
        assert_eq!(r.task_id, id);
        results.push(r);
    }
    eprintln!(
        "40 tasks through 1 block x 2 workers in {:?} (including block and worker start)",
        t0.elapsed()
    );
    let t1 = Instant::now();
    let again: Vec<_> = (0..200)
        .map(|_| engine.submit(request("add")).unwrap())
        .collect();
    for h in again {
        let r = h.await.expect("result");
        assert!(!r.is_error(), "{}", r.data);
    }
    eprintln!("200 more tasks on the warm block in {:?}", t1.elapsed());
    let mut pids = HashSet::new();
    for (i, r) in results.into_iter().enumerate() {
        assert!(!r.is_error(), "{}", r.data);
        let details = r.details.as_ref().expect("details");
        assert_eq!(details["endpoint_id"], Uuid::nil().to_string());
        let v = decode(&r);
        if i % 2 == 0 {
            assert_eq!(v, json!({"value": 3}));
        } else {
            let pid = v["value"][0].as_u64().expect("pid");
            let cwd = v["value"][1].as_str().expect("cwd").to_string();
            assert_eq!(Path::new(&cwd), dir.path().join("tasks_working_dir"));
            pids.insert(pid);
        }
    }
    assert!(!pids.is_empty() && pids.len() <= 2, "{pids:?}");
    let status = engine.status();
    assert_eq!(status.managers.len(), 1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(status.managers[0].workers, cores.min(2));
    assert_eq!(status.completed_tasks, 240);
    let g = engine.global_state();
    assert_eq!(g["total_workers"], cores.min(2));
    assert_eq!(g["managers"], 1);
    assert_eq!(g["engine_type"], "GlobusComputeEngine");
    assert_eq!(g["provider_type"], "LocalProvider");
    // Mutual TLS material, private to the endpoint's user.
    let certs = dir
        .path()
        .join("GlobusComputeEngine-HighThroughputExecutor/certificates");
    for f in ["ca.pem", "manager.pem", "manager.key"] {
        let mode = std::fs::metadata(certs.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    // The job script ran worker_init's place, JOBNAME and the manager.
    let scripts: Vec<_> = std::fs::read_dir(dir.path().join("submit_scripts"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        scripts
            .iter()
            .any(|n| n.starts_with("gc.GlobusComputeEngine.block-0.") && n.ends_with(".submit")),
        "{scripts:?}"
    );
    engine.shutdown().await;
}

fn kill_manager(engine: &HtexEngine) -> u32 {
    let pid = engine.status().managers[0].pid;
    let st = Command::new("kill")
        .arg("-9")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(st.success());
    pid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_manager_fails_its_tasks_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), PROVIDER_1X2).await;
    let a = engine.submit(request("hang")).unwrap();
    let b = engine.submit(request("hang")).unwrap();
    wait_for("both tasks on the manager", Duration::from_secs(60), || {
        engine
            .status()
            .managers
            .first()
            .is_some_and(|m| m.outstanding == 2)
    })
    .await;
    let pid = kill_manager(&engine);
    for h in [a, b] {
        let r = tokio::time::timeout(Duration::from_secs(30), h)
            .await
            .unwrap()
            .unwrap();
        assert!(r.is_error());
        assert!(r.data.starts_with(&"+".repeat(68)), "{}", r.data);
        assert!(
            r.data.contains("ManagerLost: the worker manager ")
                && r.data.contains(&format!("-{pid}-"))
                && r.data
                    .contains("(block 0) was lost while running this task: its connection"),
            "{}",
            r.data
        );
        let err = r.error_details.unwrap();
        assert_eq!(err.code, "RemoteExecutionError");
    }
    wait_for("the counters", Duration::from_secs(5), || {
        engine.status().lost_manager_tasks == 2
    })
    .await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_managers_task_is_retried_on_a_new_block() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(
        dir.path(),
        &format!(
            "  max_retries_on_system_failure: 1\n  job_status_kwargs:\n    strategy_period: 0.3\n{PROVIDER_1X2}"
        ),
    )
    .await;
    let h = engine.submit(request("hang_first_time")).unwrap();
    let marker = dir.path().join("tasks_working_dir/attempted");
    wait_for(
        "the first attempt to start",
        Duration::from_secs(60),
        || marker.exists(),
    )
    .await;
    kill_manager(&engine);
    let r = tokio::time::timeout(Duration::from_secs(60), h)
        .await
        .unwrap()
        .unwrap();
    assert!(!r.is_error(), "{}", r.data);
    assert_eq!(decode(&r), json!({"value": "second attempt"}));
    let s = engine.status();
    assert_eq!(s.lost_manager_tasks, 1);
    assert_eq!(s.blocks_submitted, 2, "the lost block was replaced");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_out_on_backlog_and_in_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(
        dir.path(),
        "  max_workers_per_node: 1\n  job_status_kwargs:\n    strategy_period: 0.3\n    max_idletime: 1\n  \
         provider:\n    type: LocalProvider\n    init_blocks: 0\n    min_blocks: 0\n    max_blocks: 2\n",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        engine.status().blocks_submitted,
        0,
        "init_blocks: 0 starts nothing"
    );
    let handles: Vec<_> = (0..4)
        .map(|_| engine.submit(request("nap")).unwrap())
        .collect();
    for h in handles {
        let r = tokio::time::timeout(Duration::from_secs(120), h)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(decode(&r), json!({"value": "rested"}));
    }
    let s = engine.status();
    assert_eq!(
        s.blocks_submitted, 2,
        "backlog of 4 one-worker tasks: max_blocks 2"
    );
    wait_for(
        "idle blocks to be scaled in",
        Duration::from_secs(30),
        || {
            let s = engine.status();
            s.active_blocks == 0 && s.managers.is_empty()
        },
    )
    .await;
    assert_eq!(engine.status().blocks_scaled_in, 2);
    // A new task scales out again.
    let r = engine.submit(request("add")).unwrap().await.unwrap();
    assert_eq!(decode(&r), json!({"value": 3}));
    assert_eq!(engine.status().blocks_submitted, 3);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_that_cannot_start_fails_the_queue_with_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(
        dir.path(),
        "  job_status_kwargs:\n    strategy_period: 0.3\n  provider:\n    type: LocalProvider\n    \
         worker_init: \"echo 'module: command not found' >&2; exit 7\"\n",
    )
    .await;
    let r = engine.submit(request("add")).unwrap();
    let r = tokio::time::timeout(Duration::from_secs(30), r)
        .await
        .unwrap()
        .unwrap();
    assert!(r.is_error());
    // Block 0 may fail before the task arrives; the task then fails with the next block.
    assert!(r.data.contains("BlockFailed: block "), "{}", r.data);
    assert!(
        r.data
            .contains(" ended (FAILED: exit status: 7) before any manager connected"),
        "{}",
        r.data
    );
    assert!(r.data.contains("module: command not found"), "{}", r.data);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unencrypted_managers_work_and_resource_specifications_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), &format!("  encrypted: false\n{PROVIDER_1X2}")).await;
    let r = engine.submit(request("add")).unwrap().await.unwrap();
    assert_eq!(decode(&r), json!({"value": 3}));
    assert!(
        !dir.path()
            .join("GlobusComputeEngine-HighThroughputExecutor/certificates")
            .exists()
    );
    let mut req = request("add");
    req.resource_specification
        .insert("num_nodes".into(), json!(2));
    let r = engine.submit(req).unwrap().await.unwrap();
    assert!(r.data.contains("InvalidResourceSpecification: Task resource specification only accepts these types of resources: priority"), "{}", r.data);
    let mut req = request("add");
    req.resource_specification
        .insert("priority".into(), json!(2));
    let r = engine.submit(req).unwrap().await.unwrap();
    assert_eq!(decode(&r), json!({"value": 3}));
    // Graceful stop: accepted tasks finish first.
    let naps: Vec<_> = (0..2)
        .map(|_| engine.submit(request("nap")).unwrap())
        .collect();
    assert_eq!(engine.drain(Duration::from_secs(60)).await, 0);
    engine.shutdown().await;
    for h in naps {
        assert_eq!(decode(&h.await.unwrap()), json!({"value": "rested"}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_engine_drives_pool_and_htex_engines_alike() {
    use gc_htex::AnyEngine;
    let dir = tempfile::tempdir().unwrap();
    let htex = AnyEngine::Htex(start(dir.path(), PROVIDER_1X2).await);
    let mut pool_config = gc_engine::PoolConfig::new(
        gc_engine::EngineKind::ProcessPool,
        gc_engine::WorkerCommand::embedded(python()),
    );
    pool_config.max_workers = Some(1);
    let pool = AnyEngine::Pool(gc_engine::Engine::start(pool_config, None, dir.path()).unwrap());
    for (engine, kind) in [(htex, "GlobusComputeEngine"), (pool, "ProcessPoolEngine")] {
        let h = engine.submit(request("add")).unwrap();
        let r = tokio::time::timeout(Duration::from_secs(60), h)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(decode(&r), json!({"value": 3}));
        assert_eq!(engine.global_state()["engine_type"], kind);
        let slow = engine.submit(request("nap")).unwrap();
        engine.shutdown(Duration::from_secs(60)).await;
        assert_eq!(decode(&slow.await.unwrap()), json!({"value": "rested"}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_container_command_wraps_the_manager() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(
        dir.path(),
        &format!(
            "  container_type: custom\n  container_cmd_options: \"env GCRS_IN_CONTAINER={{EXECUTOR_RUNDIR}} {{EXECUTOR_LAUNCH_CMD}}\"\n{PROVIDER_1X2}"
        ),
    )
    .await;
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        engine.submit(request("container_mark")).unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        decode(&r),
        json!({"value": dir.path().display().to_string()})
    );
    engine.shutdown().await;
}
