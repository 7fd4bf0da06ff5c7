//! Task throughput of a pool with real Python workers (`GCRS_PYTHON`, default
//! `<workspace>/.venv/bin/python`): a batch of small tasks through 1 and 2 workers, the same
//! function each time (so the worker's function cache applies), and the engine's cold start
//! to the first result.
//!
//! `cargo bench -p gc-engine`

use std::path::{Path, PathBuf};
use std::process::Command;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gc_engine::{Engine, EngineKind, PoolConfig, TaskRequest, WorkerCommand};
use uuid::Uuid;

const BATCH: usize = 200;

fn python() -> PathBuf {
    std::env::var_os("GCRS_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
        PathBuf::from,
    )
}

fn add_payload() -> String {
    let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/sdk_helper.py");
    let out = Command::new(python())
        .arg(helper)
        .arg("payloads")
        .output()
        .expect("run the SDK helper");
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).expect("payload JSON");
    all["add"].as_str().expect("add payload").to_owned()
}

fn request(task_buffer: &str) -> TaskRequest {
    TaskRequest {
        task_id: Uuid::new_v4(),
        task_buffer: task_buffer.to_owned(),
        result_serializers: Vec::new(),
        resource_specification: Default::default(),
        user_runtime: None,
    }
}

fn config(workers: usize) -> PoolConfig {
    let mut config = PoolConfig::new(EngineKind::ProcessPool, WorkerCommand::embedded(python()));
    config.max_workers = Some(workers);
    config
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let payload = add_payload();
    let dir = tempfile::tempdir().expect("tempdir");

    let mut group = c.benchmark_group("batch");
    group.sample_size(10);
    group.throughput(Throughput::Elements(BATCH as u64));
    for workers in [1, 2] {
        let engine = rt.block_on(async {
            let engine = Engine::start(config(workers), None, dir.path()).expect("engine");
            // Warm up: every worker started and the function cached.
            let warm: Vec<_> = (0..workers * 2)
                .map(|_| engine.submit(request(&payload)).expect("submit"))
                .collect();
            for h in warm {
                h.await.expect("result");
            }
            engine
        });
        group.bench_function(format!("{BATCH} tasks, {workers} workers"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let handles: Vec<_> = (0..BATCH)
                        .map(|_| engine.submit(request(&payload)).expect("submit"))
                        .collect();
                    for h in handles {
                        assert!(!h.await.expect("result").is_error());
                    }
                })
            })
        });
        rt.block_on(engine.shutdown());
    }
    group.finish();

    let mut group = c.benchmark_group("cold_start");
    group.sample_size(10);
    group.bench_function("engine start to first result, 1 worker", |b| {
        b.iter(|| {
            rt.block_on(async {
                let engine = Engine::start(config(1), None, dir.path()).expect("engine");
                let r = engine.submit(request(&payload)).expect("submit").await;
                assert!(!r.expect("result").is_error());
                engine.shutdown().await;
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
