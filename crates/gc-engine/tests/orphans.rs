//! A worker does not outlive its engine's process (issue #10): the process that runs an
//! engine is killed with SIGKILL, so no clean-up code of ours runs, and its Python workers
//! must be gone shortly after (PR_SET_PDEATHSIG, set by the engine when it spawns them).
//!
//! The engine's process is this test binary run again in a "child" role (selected by an
//! environment variable): it starts a ProcessPoolEngine and gives one worker a task that
//! sleeps for ten minutes. An idle worker would exit anyway when its channel closes; the busy
//! one is not reading its channel, so only the kernel's parent-death signal can end it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gc_engine::{Engine, EngineKind, PoolConfig, TaskRequest, WorkerCommand};

const ROLE: &str = "GC_ENGINE_ORPHAN_TEST_CHILD";

fn helper() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/sdk_helper.py")
}

/// The SDK-built payload of `mark_then_sleep(600)` (writes its pid to `started`, sleeps).
fn sleep_payload() -> String {
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
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).expect("payload JSON");
    all["sleep"].as_str().expect("sleep payload").to_owned()
}

fn python() -> PathBuf {
    std::env::var_os("GCRS_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
        PathBuf::from,
    )
}

/// `(state, ppid)` from `/proc/<pid>/stat`, `None` once the process is gone.
fn stat(pid: i32) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = text.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != 'Z')
}

fn children_of(parent: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| stat(*pid).is_some_and(|(s, ppid)| ppid == parent && s != 'Z'))
        .collect()
}

fn child_role() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut config =
            PoolConfig::new(EngineKind::ProcessPool, WorkerCommand::embedded(python()));
        config.max_workers = Some(2);
        let dir = std::env::var_os("GC_ENGINE_ORPHAN_TEST_DIR").expect("dir");
        let engine = Engine::start(config, None, Path::new(&dir)).expect("engine starts");
        let task_buffer = std::env::var("GC_ENGINE_ORPHAN_TEST_PAYLOAD").expect("payload");
        let _handle = engine
            .submit(TaskRequest {
                task_id: uuid::Uuid::new_v4(),
                task_buffer,
                result_serializers: Vec::new(),
                resource_specification: Default::default(),
                user_runtime: None,
            })
            .expect("submit");
        tokio::time::sleep(Duration::from_secs(600)).await;
    });
}

#[test]
fn workers_die_with_the_engine_process() {
    if std::env::var_os(ROLE).is_some() {
        child_role();
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "workers_die_with_the_engine_process",
            "--nocapture",
        ])
        .env(ROLE, "1")
        .env("GC_ENGINE_ORPHAN_TEST_DIR", dir.path())
        .env("GC_ENGINE_ORPHAN_TEST_PAYLOAD", sleep_payload())
        .stdout(Stdio::null())
        .spawn()
        .expect("start the engine process");
    let pid = i32::try_from(child.id()).expect("pid");
    let marker = dir.path().join("tasks_working_dir").join("started");
    let deadline = Instant::now() + Duration::from_secs(60);
    let busy: i32 = loop {
        if let Some(pid) = std::fs::read_to_string(&marker)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            break pid;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the engine process exited early: {status}");
        }
        assert!(Instant::now() < deadline, "the task never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut workers = children_of(pid);
    assert!(workers.contains(&busy), "{busy} not among {workers:?}");
    workers.sort_unstable();
    child.kill().expect("SIGKILL the engine process");
    child.wait().expect("reap");
    let deadline = Instant::now() + Duration::from_secs(10);
    while workers.iter().any(|w| alive(*w)) {
        assert!(
            Instant::now() < deadline,
            "workers {workers:?} outlived their engine"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
