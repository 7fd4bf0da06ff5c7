//! The interchange against hand-written managers speaking the channel protocol (plain TCP,
//! `encrypted: false`, no blocks): heartbeat loss, protocol refusal, results routed back.

use std::time::Duration;

use gc_engine::TaskRequest;
use gc_htex::proto::{self, FromManager, ToManager};
use gc_htex::{HtexConfig, HtexEngine};
use gc_wire::messagepack::{self, Message, TaskResult};
use tokio::net::TcpStream;
use uuid::Uuid;

async fn engine(dir: &std::path::Path) -> HtexEngine {
    let text = "engine:\n  type: GlobusComputeEngine\n  address: 127.0.0.1\n  encrypted: false\n  \
                heartbeat_period: 1\n  heartbeat_threshold: 2\n  max_workers_per_node: 1\n  \
                strategy: none\n  provider:\n    type: LocalProvider\n    init_blocks: 0\n    \
                min_blocks: 0\n    max_blocks: 0\n";
    let cfg = gc_config::UserEndpointConfig::from_yaml(text, "t.yaml").unwrap();
    let config = HtexConfig::from_engine_config(&cfg.engine, dir).unwrap();
    HtexEngine::start(config, None, dir).await.unwrap()
}

fn request() -> TaskRequest {
    TaskRequest {
        task_id: Uuid::new_v4(),
        task_buffer: "opaque to the interchange".into(),
        result_serializers: vec!["s".into()],
        resource_specification: Default::default(),
        user_runtime: serde_json::json!({"python": {"version": "3.11.2"}})
            .as_object()
            .cloned(),
    }
}

/// The next frame that is not a heartbeat.
async fn next_frame(s: &mut TcpStream) -> (ToManager, Vec<u8>) {
    loop {
        let (msg, blob): (ToManager, Vec<u8>) = proto::read_frame(s).await.unwrap();
        if msg != ToManager::Heartbeat {
            return (msg, blob);
        }
    }
}

async fn register(port: u16, protocol: u32) -> (TcpStream, ToManager) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let reg = FromManager::Register {
        protocol,
        block_id: "b".into(),
        hostname: "fake-node".into(),
        pid: 4242,
        workers: 1,
        python_version: None,
        sdk_version: None,
    };
    proto::write_frame(&mut s, &reg, b"").await.unwrap();
    let (answer, _): (ToManager, _) = proto::read_frame(&mut s).await.unwrap();
    (s, answer)
}

#[tokio::test]
async fn a_silent_manager_is_given_up_after_heartbeat_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let (mut s, answer) = register(engine.port(), proto::PROTOCOL_VERSION).await;
    assert!(matches!(answer, ToManager::Registered { .. }), "{answer:?}");
    let h = engine.submit(request()).unwrap();
    let task_id = h.task_id();
    // The task arrives with its buffer; then the manager says nothing at all.
    let (task, blob) = next_frame(&mut s).await;
    assert_eq!(
        task,
        ToManager::Task {
            task_id,
            result_serializers: vec!["s".into()],
            resource_specification: Default::default(),
            user_runtime: serde_json::json!({"python": {"version": "3.11.2"}})
                .as_object()
                .cloned(),
        }
    );
    assert_eq!(blob, b"opaque to the interchange");
    let r = tokio::time::timeout(Duration::from_secs(10), h)
        .await
        .unwrap()
        .unwrap();
    assert!(r.is_error());
    assert!(
        r.data
            .contains("ManagerLost: the worker manager fake-node-4242-")
            && r.data.contains(
                "on fake-node (block b) was lost while running this task: no heartbeat for "
            )
            && r.data.contains(" s (heartbeat_threshold)"),
        "{}",
        r.data
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn results_are_routed_back_and_heartbeats_keep_a_manager() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let (mut s, answer) = register(engine.port(), proto::PROTOCOL_VERSION).await;
    let ToManager::Registered { settings, .. } = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(settings.heartbeat_period, 1.0);
    assert!(settings.working_dir.ends_with("/tasks_working_dir"));
    let h = engine.submit(request()).unwrap();
    let task_id = h.task_id();
    let (task, _) = next_frame(&mut s).await;
    assert!(matches!(task, ToManager::Task { .. }));
    // Stay alive past the threshold with heartbeats, then answer.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        proto::write_frame(&mut s, &FromManager::Heartbeat, b"")
            .await
            .unwrap();
    }
    let result = TaskResult {
        task_id,
        data: "done".into(),
        details: None,
        error_details: None,
        task_statuses: None,
    };
    let packed = messagepack::pack(&Message::Result(result.clone()));
    proto::write_frame(&mut s, &FromManager::Result { task_id }, &packed)
        .await
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), h)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r, result);
    // A result for a task it does not hold is ignored, not trusted.
    let stray = Uuid::new_v4();
    let packed = messagepack::pack(&Message::Result(TaskResult {
        task_id: stray,
        ..result
    }));
    proto::write_frame(&mut s, &FromManager::Result { task_id: stray }, &packed)
        .await
        .unwrap();
    proto::write_frame(&mut s, &FromManager::Heartbeat, b"")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(engine.status().completed_tasks, 1);
    assert_eq!(engine.status().managers.len(), 1);
    engine.shutdown().await;
    // Shutdown tells the manager to stop.
    assert_eq!(next_frame(&mut s).await.0, ToManager::Shutdown);
}

#[tokio::test]
async fn another_protocol_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let (_s, answer) = register(engine.port(), 99).await;
    assert_eq!(
        answer,
        ToManager::Refused {
            reason: "protocol 99 is not supported (interchange speaks 1)".into()
        }
    );
    assert!(engine.status().managers.is_empty());
    engine.shutdown().await;
}
