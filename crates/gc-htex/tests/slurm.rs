//! GlobusComputeEngine over a real Slurm cluster (`scripts/slurm.sh` starts a one-node one on
//! this machine): blocks are `sbatch` jobs, a `scancel`led block's task is retried on a new
//! block under `max_retries_on_system_failure: 1`.
//!
//! Without Slurm the test says so and passes, unless `GCRS_REQUIRE_SLURM` is set (as
//! `scripts/test.sh` does after starting the cluster), in which case it fails.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use gc_htex::{HtexConfig, HtexEngine, ManagerCommand};
use serde_json::json;

mod support;
use support::{decode, python, request};

fn slurm_up() -> bool {
    let up = Command::new("sinfo")
        .args(["--noheader", "--format=%T"])
        .output()
        .is_ok_and(|o| {
            o.status.success() && {
                let s = String::from_utf8_lossy(&o.stdout);
                s.contains("idle") || s.contains("mixed") || s.contains("alloc")
            }
        });
    if !up {
        assert!(
            std::env::var_os("GCRS_REQUIRE_SLURM").is_none(),
            "GCRS_REQUIRE_SLURM is set but no Slurm node is up (run scripts/slurm.sh)"
        );
        eprintln!("SKIPPED: no Slurm cluster (run scripts/slurm.sh)");
    }
    up
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slurm_blocks_run_tasks_and_a_cancelled_block_is_replaced() {
    if !slurm_up() {
        return;
    }
    // Batch jobs run where slurmd runs: the directory must be reachable there (same host).
    let dir = tempfile::tempdir().unwrap();
    let text = "engine:\n  type: GlobusComputeEngine\n  address: 127.0.0.1\n  heartbeat_period: 1\n  \
                max_workers_per_node: 1\n  max_retries_on_system_failure: 1\n  \
                job_status_kwargs:\n    strategy_period: 0.5\n  \
                provider:\n    type: SlurmProvider\n    partition: debug\n    exclusive: false\n    \
                walltime: \"00:05:00\"\n    init_blocks: 1\n    min_blocks: 0\n    max_blocks: 1\n    \
                worker_init: \"export GCRS_FROM_WORKER_INIT=1\"\n";
    let cfg = gc_config::UserEndpointConfig::from_yaml(text, "slurm.yaml").expect("config");
    let mut config = HtexConfig::from_engine_config(&cfg.engine, dir.path()).expect("engine");
    config.manager = ManagerCommand {
        program: PathBuf::from(env!("CARGO_BIN_EXE_gc-worker-manager")),
        python: python().display().to_string(),
    };
    let engine = HtexEngine::start(config, None, dir.path())
        .await
        .expect("start");
    let t0 = Instant::now();
    let handles: Vec<_> = (0..10)
        .map(|_| engine.submit(request("add")).unwrap())
        .collect();
    for h in handles {
        let r = tokio::time::timeout(Duration::from_secs(120), h)
            .await
            .expect("result in time")
            .expect("result");
        assert_eq!(decode(&r), json!({"value": 3}), "{}", r.data);
    }
    eprintln!(
        "10 tasks through one sbatch block in {:?} (incl. start)",
        t0.elapsed()
    );
    let first_job = engine.status().managers[0].job_id.clone().expect("job id");
    let script = std::fs::read_dir(dir.path().join("submit_scripts"))
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with(".submit"))
        .expect("a submit script");
    let script = std::fs::read_to_string(script.path()).unwrap();
    assert!(script.contains("#SBATCH --partition=debug\n"), "{script}");
    assert!(
        script.contains("export GCRS_FROM_WORKER_INIT=1\n"),
        "{script}"
    );

    let h = engine.submit(request("hang_first_time")).unwrap();
    let marker = dir.path().join("tasks_working_dir/attempted");
    let start = Instant::now();
    while !marker.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "first attempt never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let st = Command::new("scancel").arg(&first_job).status().unwrap();
    assert!(st.success());
    let r = tokio::time::timeout(Duration::from_secs(120), h)
        .await
        .expect("retried result in time")
        .expect("result");
    assert!(!r.is_error(), "{}", r.data);
    assert_eq!(decode(&r), json!({"value": "second attempt"}));
    let s = engine.status();
    assert_eq!(s.lost_manager_tasks, 1);
    assert_eq!(s.blocks_submitted, 2);
    let second_job = s.managers[0].job_id.clone().expect("job id");
    assert_ne!(second_job, first_job);
    engine.shutdown().await;
    // Shutdown cancelled the second block.
    let start = Instant::now();
    loop {
        let out = Command::new("squeue")
            .args(["--noheader", "--format=%t", &format!("--jobs={second_job}")])
            .output()
            .unwrap();
        let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if state.is_empty() || state == "CA" || state == "CG" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "block still {state}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
