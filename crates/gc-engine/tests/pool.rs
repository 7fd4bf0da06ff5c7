//! End-to-end tests of the pool engines with real Python workers and the unmodified SDK.
//!
//! Python comes from `GCRS_PYTHON` (default `<workspace>/.venv/bin/python`, which has
//! globus-compute-sdk 4.19.0). Payloads are built, and results decoded, by the SDK itself
//! (`tests/support/sdk_helper.py`).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use gc_engine::{Engine, EngineKind, PoolConfig, TaskRequest, WorkerCommand};
use gc_wire::messagepack::{ActorName, TaskResult, TaskState};
use serde_json::{Value, json};
use uuid::Uuid;

const MIB: usize = 1024 * 1024;

fn python() -> PathBuf {
    std::env::var_os("GCRS_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
        PathBuf::from,
    )
}

fn helper() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/sdk_helper.py")
}

/// Every payload, built once per test binary.
fn payload(case: &str) -> String {
    static PAYLOADS: OnceLock<HashMap<String, String>> = OnceLock::new();
    let all = PAYLOADS.get_or_init(|| {
        let out = Command::new(python())
            .arg(helper())
            .arg("payloads")
            .output()
            .expect("run the SDK helper");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("payload JSON")
    });
    all[case].clone()
}

/// The SDK's view of a result: `{"value": …}` or `{"raised": str(TaskExecutionFailed)}`.
fn decode(result: &TaskResult) -> Value {
    let mut child = Command::new(python())
        .arg(helper())
        .arg("decode")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the SDK helper");
    let req = json!({"data": result.data, "error": result.is_error()});
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(req.to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("helper output");
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).expect("decode JSON")
}

struct Pool {
    engine: Engine,
    dir: tempfile::TempDir,
}

impl Pool {
    fn working_dir(&self) -> PathBuf {
        self.dir.path().join("tasks_working_dir")
    }
}

fn config(kind: EngineKind, workers: usize) -> PoolConfig {
    let mut config = PoolConfig::new(kind, WorkerCommand::embedded(python()));
    config.max_workers = Some(workers);
    config
}

fn start(config: PoolConfig) -> Pool {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::start(config, Some(endpoint_id()), dir.path()).expect("engine starts");
    Pool { engine, dir }
}

fn endpoint_id() -> Uuid {
    Uuid::from_u128(0x2222_2222_3333_4444_8555_6666_6666_6666)
}

fn request(case: &str) -> TaskRequest {
    TaskRequest {
        task_id: Uuid::new_v4(),
        task_buffer: payload(case),
        result_serializers: Vec::new(),
        resource_specification: Default::default(),
        user_runtime: None,
    }
}

async fn run(pool: &Pool, case: &str) -> TaskResult {
    let req = request(case);
    let id = req.task_id;
    let result = pool
        .engine
        .submit(req)
        .expect("submit")
        .await
        .expect("result");
    assert_eq!(result.task_id, id);
    result
}

fn value(result: &TaskResult) -> Value {
    assert!(!result.is_error(), "task failed: {}", result.data);
    decode(result)["value"].clone()
}

fn states(result: &TaskResult) -> Vec<(TaskState, ActorName)> {
    result
        .task_statuses
        .as_ref()
        .expect("task_statuses")
        .iter()
        .map(|t| (t.state, t.actor))
        .collect()
}

#[tokio::test]
async fn runs_functions_with_args_kwargs_and_closures() {
    let pool = start(config(EngineKind::ProcessPool, 2));
    let (a, k, c) = tokio::join!(
        run(&pool, "add"),
        run(&pool, "kwargs"),
        run(&pool, "closure")
    );
    assert_eq!(value(&a), json!(3));
    assert_eq!(value(&k), json!(42));
    assert_eq!(value(&c), json!(15));
    // `__main__`, where by-value functions find their globals, holds nothing of the worker.
    assert_eq!(value(&run(&pool, "main_namespace").await), json!([]));

    let details = a.details.as_ref().expect("details");
    let keys: Vec<&str> = details.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "os",
            "dill_version",
            "python_version",
            "globus_compute_sdk_version",
            "endpoint_id"
        ]
    );
    assert_eq!(details["globus_compute_sdk_version"], "4.19.0");
    assert_eq!(details["endpoint_id"], endpoint_id().to_string());
    assert_eq!(
        states(&a),
        [
            (TaskState::ExecutionStart, ActorName::Worker),
            (TaskState::ExecutionEnd, ActorName::Worker)
        ]
    );
    pool.engine.shutdown().await;
}

#[tokio::test]
async fn exception_traceback_reaches_the_sdk() {
    let pool = start(config(EngineKind::ThreadPool, 1));
    let r = run(&pool, "raises").await;
    let e = r.error_details.as_ref().expect("error_details");
    assert_eq!(e.code, "RemoteExecutionError");
    assert_eq!(
        e.user_message,
        "An error occurred during the execution of this task"
    );
    assert!(r.data.starts_with("Traceback (most recent call last):\n"));
    let raised = decode(&r)["raised"].as_str().expect("raised").to_owned();
    assert!(raised.contains(" ValueError: bad value 7\n"), "{raised}");
    assert!(raised.contains(", in inner\n"), "{raised}");
    assert_eq!(
        states(&r)[0],
        (TaskState::ExecutionStart, ActorName::Worker)
    );

    let bad = run(&pool, "not_three_buffers").await;
    assert!(
        bad.data
            .contains("AssertionError: Unpack expects 3 buffers, got 1")
    );
    pool.engine.shutdown().await;
}

#[tokio::test]
async fn five_megabyte_argument_and_result() {
    let pool = start(config(EngineKind::ProcessPool, 1));
    assert_eq!(value(&run(&pool, "big_arg").await), json!(5 * MIB));
    assert_eq!(
        value(&run(&pool, "big_result").await),
        json!(format!("str of {} chars, all 'x'", 5 * MIB))
    );
    let too_big = run(&pool, "too_big").await;
    let e = too_big.error_details.as_ref().expect("error_details");
    assert_eq!(e.code, "MaxResultSizeExceeded");
    assert!(e.user_message.starts_with("remote error: Task result of "));
    assert!(
        e.user_message
            .ends_with("B exceeded current limit of 10485760B")
    );
    assert!(too_big.data.starts_with("MaxResultSizeExceeded("));
    assert!(too_big.data.ends_with(", 10485760)"));
    pool.engine.shutdown().await;
}

#[tokio::test]
async fn killed_worker_fails_its_task_and_is_replaced() {
    let pool = start(config(EngineKind::ProcessPool, 1));
    let first_pid = value(&run(&pool, "getpid").await);

    let handle = pool.engine.submit(request("sleep")).expect("submit");
    let marker = pool.working_dir().join("started");
    let pid = wait_for_file(&marker).await;
    assert_eq!(json!(pid), first_pid);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the worker");

    let lost = handle.await.expect("a result, not a hang");
    let e = lost.error_details.as_ref().expect("error_details");
    assert_eq!(e.code, "RemoteExecutionError");
    let expected = format!(
        "{}\nWorkerLost: worker process {pid} was killed by signal 9 (SIGKILL) while running \
         this task (on host {})\n{}",
        "+".repeat(68),
        hostname::get().unwrap().to_string_lossy(),
        "-".repeat(68)
    );
    assert_eq!(lost.data, expected);
    assert!(lost.details.is_none());
    assert_eq!(
        states(&lost),
        [
            (TaskState::WaitingForLaunch, ActorName::Interchange),
            (TaskState::ExecutionEnd, ActorName::Interchange)
        ]
    );
    let raised = decode(&lost)["raised"].as_str().expect("raised").to_owned();
    assert!(raised.contains("killed by signal 9 (SIGKILL)"), "{raised}");

    let next_pid = value(&run(&pool, "getpid").await);
    assert_ne!(next_pid, first_pid);
    assert_eq!(pool.engine.status().live_workers, 1);
    pool.engine.shutdown().await;
}

async fn wait_for_file(path: &Path) -> i32 {
    // Polls without a deadline of its own: the test harness's timeout bounds it.
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(pid) = text.trim().parse() {
                return pid;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn worker_exit_is_retried_then_reported_per_attempt() {
    let mut cfg = config(EngineKind::ProcessPool, 1);
    cfg.max_retries_on_system_failure = 1;
    let pool = start(cfg);
    let r = run(&pool, "die").await;
    assert!(r.is_error());
    assert!(
        r.data
            .starts_with(&format!("{}\nTraceback from attempt: 0\n", "+".repeat(68)))
    );
    assert!(
        r.data
            .contains("\nTraceback from attempt: final attempt\nWorkerLost: ")
    );
    assert_eq!(
        r.data.matches("(SIGKILL) while running this task").count(),
        2
    );
    assert_eq!(value(&run(&pool, "add").await), json!(3));
    pool.engine.shutdown().await;
}

#[tokio::test]
async fn user_output_does_not_touch_the_channel() {
    let pool = start(config(EngineKind::ProcessPool, 1));
    assert_eq!(value(&run(&pool, "chatty").await), json!("quiet"));
    assert_eq!(value(&run(&pool, "add").await), json!(3));
    pool.engine.shutdown().await;
}

#[tokio::test]
async fn sandbox_directory_and_task_environment() {
    let mut cfg = config(EngineKind::ProcessPool, 1);
    cfg.run_in_sandbox = true;
    let pool = start(cfg);
    let req = request("cwd_and_env");
    let id = req.task_id.to_string();
    let r = pool
        .engine
        .submit(req)
        .expect("submit")
        .await
        .expect("result");
    let sandbox = pool.working_dir().join(&id);
    let sandbox = sandbox.to_str().expect("utf-8");
    assert_eq!(value(&r), json!([sandbox, id, sandbox]));
    pool.engine.shutdown().await;
}

#[tokio::test]
async fn deserializer_allowlist_is_enforced() {
    let mut cfg = config(EngineKind::ProcessPool, 1);
    cfg.allowed_deserializers = vec![
        "globus_compute_sdk.serialize.PureSourceTextInspect".into(),
        "globus_compute_sdk.*Data".into(),
    ];
    let pool = start(cfg);
    let r = run(&pool, "add").await;
    assert_eq!(
        r.error_details.as_ref().map(|e| e.code.as_str()),
        Some("RemoteExecutionError")
    );
    assert!(
        r.data
            .contains(" Code serializer DillCode disabled by current configuration."),
        "{}",
        r.data
    );
    pool.engine.shutdown().await;
}

#[tokio::test]
async fn rejected_configuration_and_missing_python_fail_tasks_instead_of_hanging() {
    let mut cfg = config(EngineKind::ProcessPool, 1);
    cfg.allowed_deserializers = vec!["no.such.Strategy".into()];
    let pool = start(cfg);
    let r = run(&pool, "add").await;
    assert!(r.is_error());
    assert!(
        r.data
            .contains("rejected its configuration: SerdeError: Invalid strategy-like"),
        "{}",
        r.data
    );
    pool.engine.shutdown().await;

    let mut cfg = config(EngineKind::ProcessPool, 1);
    cfg.worker = WorkerCommand::embedded("/nonexistent/python");
    let pool = start(cfg);
    let r = run(&pool, "add").await;
    assert!(
        r.data
            .contains("WorkerLost: could not start worker process \"/nonexistent/python\""),
        "{}",
        r.data
    );
    pool.engine.shutdown().await;
}

#[tokio::test]
async fn lazy_start_and_status_counters() {
    let mut cfg = config(EngineKind::ThreadPool, 2);
    cfg.prestart_workers = false;
    let pool = start(cfg);
    let s = pool.engine.status();
    assert_eq!(s.engine_type, "ThreadPoolEngine");
    assert_eq!((s.max_workers, s.live_workers), (2, 0));
    assert_eq!((s.pending_tasks, s.running_tasks), (0, 0));

    let sleeping = pool.engine.submit(request("sleep")).expect("submit");
    wait_for_file(&pool.working_dir().join("started")).await;
    let s = pool.engine.status();
    assert_eq!((s.live_workers, s.running_tasks), (1, 1));
    assert_eq!(s.global_state()["outstanding_tasks"], 1);
    assert_eq!(s.global_state()["engine_type"], "ThreadPoolEngine");
    drop(pool);
    assert!(
        sleeping.await.is_err(),
        "dropping the engine stops its tasks"
    );
}

#[tokio::test]
async fn module_launch_and_worker_replacement_after_max_tasks() {
    let mut cfg = config(EngineKind::ProcessPool, 1);
    let package =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../python/globus_compute_rs_worker");
    cfg.worker = WorkerCommand::module(python());
    cfg.worker
        .env
        .push(("PYTHONPATH".into(), package.into_os_string()));
    cfg.max_tasks_per_child = std::num::NonZeroU64::new(1);
    let pool = start(cfg);
    let a = value(&run(&pool, "getpid").await);
    let b = value(&run(&pool, "getpid").await);
    assert_ne!(a, b);
    assert_eq!(value(&run(&pool, "main_namespace").await), json!([]));
    pool.engine.shutdown().await;
}

#[tokio::test]
async fn shutdown_finishes_accepted_tasks() {
    let pool = start(config(EngineKind::ProcessPool, 2));
    let handles: Vec<_> = (0..6)
        .map(|_| pool.engine.submit(request("add")).expect("submit"))
        .collect();
    pool.engine.shutdown().await;
    for h in handles {
        let r = h.await.expect("finished before shutdown returned");
        assert!(!r.is_error());
    }
}

#[tokio::test]
async fn requested_result_serializer_is_used() {
    let pool = start(config(EngineKind::ProcessPool, 1));
    let mut req = request("kwargs");
    req.result_serializers = vec!["globus_compute_sdk.serialize.JSONData".into()];
    let r = pool
        .engine
        .submit(req)
        .expect("submit")
        .await
        .expect("result");
    assert_eq!(r.data, "11\n42");
    pool.engine.shutdown().await;
}

#[tokio::test]
async fn resource_specification_is_refused_like_upstream() {
    let mut cfg = config(EngineKind::ThreadPool, 1);
    cfg.max_retries_on_system_failure = 1;
    let pool = start(cfg);
    let mut req = request("add");
    req.resource_specification
        .insert("num_nodes".into(), json!(2));
    let r = pool
        .engine
        .submit(req)
        .expect("submit")
        .await
        .expect("result");
    let line = "ValueError: resource_specification is not supported on ThreadPoolEngine.  For \
                MPI apps, use GlobusMPIEngine.\n";
    assert_eq!(r.data.matches(line).count(), 2, "{}", r.data);
    assert!(r.data.contains("Traceback from attempt: final attempt\n"));
    assert_eq!(r.error_details.expect("error").code, "RemoteExecutionError");
    pool.engine.shutdown().await;
}

#[tokio::test]
async fn shell_init_runs_before_the_worker_without_touching_the_channel() {
    let mut cfg = config(EngineKind::ProcessPool, 1);
    cfg.worker = WorkerCommand::embedded(python())
        .with_shell_init("echo noise on stdout; export GCRS_INIT_MARK=from-init");
    let pool = start(cfg);
    assert_eq!(value(&run(&pool, "init_mark").await), json!("from-init"));
    pool.engine.shutdown().await;
}
