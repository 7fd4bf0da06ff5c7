//! End-to-end: the test stands in for the service (PROTOCOL-ENDPOINT §3.8 topology in a private
//! RabbitMQ vhost), publishes tasks built by the unmodified SDK serializer with the headers the
//! service sets, runs the UEP runtime in-process, and reads results and heartbeats back.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use gc_config::UserEndpointConfig;
use gc_engine::WorkerCommand;
use gc_uep::{Stopped, UepOptions};
use gc_wire::messagepack::{Message, Task, TaskResult, pack, unpack};
use gc_wire::uep_stdin::UepStdin;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use rand::Rng;
use serde_json::{Value, json};
use uuid::Uuid;

const ALLOWED_FN: &str = "0a0a0a0a-0000-4000-8000-00000000000a";
const REFUSED_FN: &str = "c11aa2a1-3803-4995-bbec-7d9f9a1d3e73";

fn python() -> PathBuf {
    std::env::var_os("GCRS_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
        PathBuf::from,
    )
}

/// gc-engine's SDK helper: payloads and result decoding by the unmodified SDK.
fn helper() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../gc-engine/tests/support/sdk_helper.py")
}

fn payloads() -> Value {
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
}

/// The SDK's view of a result: `{"value": …}` or `{"raised": …}`.
fn decode(result: &TaskResult) -> Value {
    use std::io::Write;
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

fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private vhost, deleted on drop.
struct Vhost(String);

impl Vhost {
    fn new() -> Vhost {
        let name = format!("gcrs-uep-test-{:016x}", rand::rng().random::<u64>());
        rabbitmqctl(&["add_vhost", &name]);
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        Vhost(name)
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.0)
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.0])
            .output();
    }
}

/// The service side: topology, task publishing, queue reading.
struct Service {
    conn: Connection,
    ch: lapin::Channel,
    uep_id: Uuid,
}

impl Service {
    async fn new(vhost: &Vhost, uep_id: Uuid) -> Service {
        let conn = Connection::connect(&vhost.url(), ConnectionProperties::default())
            .await
            .expect("service connection");
        let ch = conn.create_channel().await.expect("channel");
        let tasks_q = format!("{uep_id}.tasks");
        for (exchange, kind, queue, key) in [
            (
                "tasks",
                ExchangeKind::Direct,
                tasks_q.as_str(),
                tasks_q.as_str(),
            ),
            ("results", ExchangeKind::Topic, "results", "*.results"),
            (
                "heartbeats",
                ExchangeKind::Topic,
                "heartbeats",
                "*.heartbeats",
            ),
        ] {
            ch.exchange_declare(
                exchange.into(),
                kind,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("exchange");
            ch.queue_declare(
                queue.into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await
            .expect("queue");
            ch.queue_bind(
                queue.into(),
                exchange.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
        }
        Service { conn, ch, uep_id }
    }

    fn stdin(&self, url: &str, config: &str) -> UepStdin {
        let info = |exchange: &str, queue: &str| {
            json!({
                "connection_url": url, "exchange": exchange, "queue": queue,
                "queue_publish_kwargs": {
                    "exchange": exchange,
                    "routing_key": format!("{}.{exchange}", self.uep_id),
                    "mandatory": true,
                    "properties": {"delivery_mode": 2}
                }
            })
        };
        let doc = json!({
            "amqp_creds": {
                "endpoint_id": self.uep_id,
                "task_queue_info": {"connection_url": url, "exchange": "tasks", "queue": format!("{}.tasks", self.uep_id)},
                "result_queue_info": info("results", "results"),
                "heartbeat_queue_info": info("heartbeats", "heartbeats"),
            },
            "config": config,
            "ep_info": {"posix_ppid": std::os::unix::process::parent_id()},
            "allowed_functions": [ALLOWED_FN],
        });
        UepStdin::from_slice(doc.to_string().as_bytes()).expect("stdin document")
    }

    /// Publishes a task the way the service does: messagepack `Task` body, string headers.
    async fn submit(&self, function_id: &str, task_buffer: &str) -> Uuid {
        let task_id = Uuid::new_v4();
        let body = pack(&Message::Task(Task {
            task_id,
            container_id: None,
            container: None,
            task_buffer: task_buffer.to_owned(),
        }));
        let mut headers = FieldTable::default();
        let s = |v: String| AMQPValue::LongString(v.into());
        headers.insert("task_uuid".into(), s(task_id.to_string()));
        headers.insert("function_uuid".into(), s(function_id.to_owned()));
        headers.insert("resource_specification".into(), s("null".into()));
        headers.insert("result_serializers".into(), AMQPValue::Void);
        self.ch
            .basic_publish(
                "tasks".into(),
                format!("{}.tasks", self.uep_id).as_str().into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_headers(headers),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        task_id
    }

    /// Every message currently in `queue`, decoded.
    async fn drain(&self, queue: &str) -> Vec<Message> {
        let mut out = Vec::new();
        while let Some(m) = self
            .ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
        {
            out.push(unpack(&m.delivery.data).expect("a protocol-v1 message"));
        }
        out
    }

    /// Waits (bounded) until `n` results have arrived.
    async fn results(&self, n: usize) -> Vec<TaskResult> {
        let mut got = Vec::new();
        for _ in 0..1200 {
            for m in self.drain("results").await {
                match m {
                    Message::Result(r) => got.push(r),
                    other => panic!("not a result: {other:?}"),
                }
            }
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("only {} of {n} results arrived within 120 s", got.len());
    }
}

fn uep_config(text: &str) -> UserEndpointConfig {
    UserEndpointConfig::from_yaml(text, "<test config>").expect("UEP config")
}

fn options(dir: &Path) -> UepOptions {
    UepOptions {
        endpoint_dir: dir.to_owned(),
        worker: WorkerCommand::embedded(python()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_results_refusals_heartbeats_and_idle_shutdown() {
    let vhost = Vhost::new();
    let uep_id = Uuid::new_v4();
    let service = Service::new(&vhost, uep_id).await;
    let config_text = "heartbeat_period: 5\nidle_heartbeats_soft: 1\nidle_heartbeats_hard: 3\nengine:\n  type: ThreadPoolEngine\n  max_workers: 2";
    let stdin = service.stdin(&vhost.url(), config_text);
    let payloads = payloads();
    let add = service
        .submit(ALLOWED_FN, payloads["add"].as_str().unwrap())
        .await;
    let raises = service
        .submit(ALLOWED_FN, payloads["raises"].as_str().unwrap())
        .await;
    let refused = service
        .submit(REFUSED_FN, payloads["add"].as_str().unwrap())
        .await;

    let dir = tempfile::tempdir().unwrap();
    let config = uep_config(config_text);
    let opts = options(dir.path());
    let uep =
        tokio::spawn(
            async move { gc_uep::run(&stdin, &config, opts, std::future::pending()).await },
        );

    let results = service.results(3).await;
    let find = |id: Uuid| {
        results
            .iter()
            .find(|r| r.task_id == id)
            .unwrap_or_else(|| panic!("no result for {id}"))
    };
    let ok = find(add);
    assert!(!ok.is_error(), "{ok:?}");
    assert_eq!(decode(ok), json!({"value": 3}));
    let details = ok.details.as_ref().expect("worker details");
    assert_eq!(details["endpoint_id"], uep_id.to_string());

    let failed = find(raises);
    let err = failed.error_details.as_ref().expect("error details");
    assert_eq!(err.code, "RemoteExecutionError");
    assert!(
        failed.data.contains("ValueError: bad value 7"),
        "{}",
        failed.data
    );

    let no = find(refused);
    let msg = format!("Function {REFUSED_FN} not permitted on endpoint {uep_id}");
    assert_eq!(no.data, msg);
    let err = no.error_details.as_ref().expect("error details");
    assert_eq!(
        (err.code.as_str(), err.user_message.as_str()),
        ("FUNCTION_NOT_ALLOWED", msg.as_str())
    );
    assert_eq!(no.details.as_ref().unwrap()["eid"], uep_id.to_string());

    // Idle: one heartbeat with movement, then one idle heartbeat ⇒ shut down (soft = 1).
    let stopped = tokio::time::timeout(Duration::from_secs(120), uep)
        .await
        .expect("UEP stops on its own when idle")
        .expect("UEP task")
        .expect("UEP run");
    assert!(matches!(stopped, Stopped::IdleSoft), "{stopped:?}");

    let beats: Vec<_> = service
        .drain("heartbeats")
        .await
        .into_iter()
        .map(|m| match m {
            Message::EpStatusReport(r) => r,
            other => panic!("not a status report: {other:?}"),
        })
        .collect();
    assert!(
        beats.len() >= 3,
        "first, periodic and final heartbeats: {beats:?}"
    );
    for b in &beats {
        assert_eq!(b.endpoint_id, uep_id);
        assert_eq!(b.heartbeat_period(), Some(5.0));
        assert_eq!(b.global_state["engine_type"], "ThreadPoolEngine");
        assert_eq!(b.global_state["config_raw"], config_text);
        assert!(b.task_statuses.is_empty());
    }
    let (last, earlier) = beats.split_last().unwrap();
    assert_eq!(last.active(), Some(false), "final heartbeat");
    assert!(earlier.iter().all(|b| b.active() == Some(true)));

    // Everything was acknowledged and confirmed: nothing left on the task queue, nothing
    // stored for later.
    assert!(service.drain(&format!("{uep_id}.tasks")).await.is_empty());
    let stored: Vec<_> = std::fs::read_dir(dir.path().join("unacked_results"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(stored.is_empty(), "{stored:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_finishes_accepted_tasks_and_sends_final_heartbeat() {
    let vhost = Vhost::new();
    let uep_id = Uuid::new_v4();
    let service = Service::new(&vhost, uep_id).await;
    let config_text = "heartbeat_period: 5\nengine:\n  type: ThreadPoolEngine\n  max_workers: 1";
    let stdin = service.stdin(&vhost.url(), config_text);
    let dir = tempfile::tempdir().unwrap();
    let config = uep_config(config_text);
    let opts = options(dir.path());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let uep = tokio::spawn(async move {
        let stop = async move {
            let _ = stop_rx.await;
        };
        gc_uep::run(&stdin, &config, opts, stop).await
    });
    let payloads = payloads();
    let add = service
        .submit(ALLOWED_FN, payloads["add"].as_str().unwrap())
        .await;
    let first = service.results(1).await;
    assert_eq!(first[0].task_id, add);

    // The UEP consumes its task queue exclusively: another consumer is refused.
    let other = service.conn.create_channel().await.expect("channel");
    let refused = other
        .basic_consume(
            format!("{uep_id}.tasks").as_str().into(),
            "intruder".into(),
            lapin::options::BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await;
    let err = refused.expect_err("a second consumer must be refused");
    assert!(err.to_string().contains("ACCESS_REFUSED"), "{err}");

    stop_tx.send(()).expect("UEP still running");
    let stopped = tokio::time::timeout(Duration::from_secs(60), uep)
        .await
        .expect("UEP stops when asked")
        .expect("UEP task")
        .expect("UEP run");
    assert!(matches!(stopped, Stopped::Requested), "{stopped:?}");
    let beats = service.drain("heartbeats").await;
    let Some(Message::EpStatusReport(last)) = beats.last() else {
        panic!("no heartbeats: {beats:?}");
    };
    assert_eq!(last.active(), Some(false));
    assert_eq!(last.heartbeat_period(), Some(5.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_stored_by_an_earlier_run_are_published_at_start() {
    let vhost = Vhost::new();
    let uep_id = Uuid::new_v4();
    let service = Service::new(&vhost, uep_id).await;
    let config_text = "heartbeat_period: 5\nengine:\n  type: ThreadPoolEngine\n  max_workers: 1";
    let stdin = service.stdin(&vhost.url(), config_text);
    let dir = tempfile::tempdir().unwrap();
    // What an earlier run (ours or upstream's) left behind: the packed result, named by task id.
    let old_task = Uuid::new_v4();
    let old = pack(&Message::Result(TaskResult {
        task_id: old_task,
        data: "00\ngARLKi4=\n".into(),
        details: None,
        error_details: None,
        task_statuses: None,
    }));
    let store = dir.path().join("unacked_results");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join(old_task.to_string()), &old).unwrap();

    let config = uep_config(config_text);
    let opts = options(dir.path());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let uep = tokio::spawn(async move {
        let stop = async move {
            let _ = stop_rx.await;
        };
        gc_uep::run(&stdin, &config, opts, stop).await
    });
    let got = service.results(1).await;
    assert_eq!(got[0].task_id, old_task);
    assert_eq!(got[0].data, "00\ngARLKi4=\n");
    stop_tx.send(()).expect("UEP still running");
    tokio::time::timeout(Duration::from_secs(60), uep)
        .await
        .expect("UEP stops when asked")
        .expect("UEP task")
        .expect("UEP run");
    assert!(
        !store.join(old_task.to_string()).exists(),
        "a confirmed result is removed from the store"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_exit_65_with_a_failure_notice() {
    let vhost = Vhost::new();
    let uep_id = Uuid::new_v4();
    let service = Service::new(&vhost, uep_id).await;
    let config_text = "engine:\n  type: ThreadPoolEngine";
    let mut doc: Value =
        serde_json::from_slice(&service.stdin(&vhost.url(), config_text).to_bytes()).unwrap();
    doc["amqp_creds"]
        .as_object_mut()
        .unwrap()
        .remove("result_queue_info");
    let dir = tempfile::tempdir().unwrap();
    let bytes = doc.to_string().into_bytes();
    let path = dir.path().to_owned();
    let status = tokio::task::spawn_blocking(move || {
        gc_uep::run_from_stdin(&bytes, path, WorkerCommand::embedded(python()))
    })
    .await
    .unwrap();
    assert_eq!(status, 65);
    let beats = service.drain("heartbeats").await;
    let [Message::EpStatusReport(notice)] = beats.as_slice() else {
        panic!("expected one failure notice: {beats:?}");
    };
    assert_eq!(notice.endpoint_id, uep_id);
    assert_eq!(
        notice.error(),
        Some("Failed to start or unexpected error:\n  (SystemExit) 65")
    );

    // Not a stdin document at all: status 1, nothing sent.
    let path = dir.path().to_owned();
    let status = tokio::task::spawn_blocking(move || {
        gc_uep::run_from_stdin(b"not json", path, WorkerCommand::embedded(python()))
    })
    .await
    .unwrap();
    assert_eq!(status, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unroutable_results_are_stored_and_sent_once_routable() {
    let vhost = Vhost::new();
    let uep_id = Uuid::new_v4();
    let service = Service::new(&vhost, uep_id).await;
    // The service "forgot" the results binding: a mandatory publish comes back.
    service
        .ch
        .queue_unbind(
            "results".into(),
            "results".into(),
            "*.results".into(),
            FieldTable::default(),
        )
        .await
        .expect("unbind");
    let config_text = "heartbeat_period: 5\nengine:\n  type: ThreadPoolEngine\n  max_workers: 1";
    let stdin = service.stdin(&vhost.url(), config_text);
    let dir = tempfile::tempdir().unwrap();
    let config = uep_config(config_text);
    let opts = options(dir.path());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let uep = tokio::spawn(async move {
        let stop = async move {
            let _ = stop_rx.await;
        };
        gc_uep::run(&stdin, &config, opts, stop).await
    });
    let payloads = payloads();
    let add = service
        .submit(ALLOWED_FN, payloads["add"].as_str().unwrap())
        .await;
    let stored = dir.path().join("unacked_results").join(add.to_string());
    let mut waited = 0;
    while !stored.exists() {
        assert!(waited < 1200, "result never stored");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    // Fix the topology: the stored result is re-published with a later heartbeat.
    service
        .ch
        .queue_bind(
            "results".into(),
            "results".into(),
            "*.results".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    let got = service.results(1).await;
    assert_eq!(got[0].task_id, add);
    assert_eq!(decode(&got[0]), json!({"value": 3}));
    stop_tx.send(()).expect("UEP still running");
    tokio::time::timeout(Duration::from_secs(60), uep)
        .await
        .expect("UEP stops when asked")
        .expect("UEP task")
        .expect("UEP run");
    assert!(!stored.exists(), "confirmed result removed from the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_endpoint_setup_exits_78_with_a_failure_notice() {
    let vhost = Vhost::new();
    let uep_id = Uuid::new_v4();
    let service = Service::new(&vhost, uep_id).await;
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("setup-ran");
    let config_text = format!(
        "endpoint_setup: touch {}; exit 4\nengine:\n  type: ThreadPoolEngine",
        mark.display()
    );
    let bytes = service.stdin(&vhost.url(), &config_text).to_bytes();
    let path = dir.path().to_owned();
    let status = tokio::task::spawn_blocking(move || {
        gc_uep::run_from_stdin(&bytes, path, WorkerCommand::embedded(python()))
    })
    .await
    .unwrap();
    assert_eq!(status, 78);
    assert!(mark.exists(), "endpoint_setup did not run");
    let beats = service.drain("heartbeats").await;
    let [Message::EpStatusReport(notice)] = beats.as_slice() else {
        panic!("expected one failure notice: {beats:?}");
    };
    assert_eq!(
        notice.error(),
        Some("Failed to start or unexpected error:\n  (SystemExit) 78")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_other_than_posix_ppid_refuses_to_start() {
    let vhost = Vhost::new();
    let uep_id = Uuid::new_v4();
    let service = Service::new(&vhost, uep_id).await;
    let config_text = "engine:\n  type: ThreadPoolEngine";
    let mut doc: Value =
        serde_json::from_slice(&service.stdin(&vhost.url(), config_text).to_bytes()).unwrap();
    // Any pid but our real parent's.
    doc["ep_info"]["posix_ppid"] = json!(i64::from(std::os::unix::process::parent_id()) + 1);
    let stdin = UepStdin::from_slice(doc.to_string().as_bytes()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stopped = tokio::time::timeout(
        Duration::from_secs(30),
        gc_uep::run(
            &stdin,
            &uep_config(config_text),
            options(dir.path()),
            std::future::pending(),
        ),
    )
    .await
    .expect("refuses at once")
    .expect("UEP run");
    assert!(matches!(stopped, Stopped::NotParent), "{stopped:?}");
}

/// HA audit (ENDPOINT §4.10): with `audit_fd` in the stdin document the UEP writes one packet
/// per task state to that descriptor — here a real packet pipe whose read end the test keeps,
/// standing in for the MEP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_records_for_a_task_and_a_refused_function() {
    use std::io::Read;
    use std::os::fd::{AsRawFd, IntoRawFd};
    let vhost = Vhost::new();
    let uep_id = Uuid::new_v4();
    let service = Service::new(&vhost, uep_id).await;
    let config_text = "heartbeat_period: 5\nengine:\n  type: ThreadPoolEngine\n  max_workers: 1";
    let mut stdin = service.stdin(&vhost.url(), config_text);
    let (read, write) = gc_sys::packet_pipe().expect("packet pipe");
    // Handed over by number, as an inherited descriptor (not close-on-exec, as after the
    // MEP's dup2); the UEP takes ownership.
    nix::fcntl::fcntl(
        write.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .expect("clear close-on-exec");
    stdin.audit_fd = Some(write.into_raw_fd());
    let payloads = payloads();
    let add = service
        .submit(ALLOWED_FN, payloads["add"].as_str().unwrap())
        .await;
    let refused = service
        .submit(REFUSED_FN, payloads["add"].as_str().unwrap())
        .await;

    let dir = tempfile::tempdir().unwrap();
    let config = uep_config(config_text);
    let opts = options(dir.path());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let uep = tokio::spawn(async move {
        let stop = async move {
            let _ = stop_rx.await;
        };
        gc_uep::run(&stdin, &config, opts, stop).await
    });
    let results = service.results(2).await;
    assert_eq!(results.len(), 2);
    // None of this UEP's workers (they run user code) holds the pipe. (Workers of tests
    // running alongside may, if they forked while the descriptor was inheritable; this UEP's
    // workers are those whose environment names its directory.)
    let ours = format!("GLOBUS_COMPUTE_ENDPOINT_DIR={}", dir.path().display());
    let pipe_id = std::fs::read_link(format!("/proc/self/fd/{}", read.as_raw_fd()))
        .expect("pipe link")
        .display()
        .to_string();
    let me = std::process::id().to_string();
    let mut holders = Vec::new();
    let mut workers = 0;
    for proc_dir in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let pid = proc_dir.file_name().to_string_lossy().into_owned();
        if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let environ = std::fs::read(proc_dir.path().join("environ")).unwrap_or_default();
        if !environ.split(|b| *b == 0).any(|var| var == ours.as_bytes()) {
            continue;
        }
        workers += 1;
        let Ok(fds) = std::fs::read_dir(proc_dir.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|t| t.display().to_string() == pipe_id) {
                holders.push(pid.clone());
            }
        }
    }
    assert!(workers > 0, "no worker of this UEP found");
    assert!(holders.is_empty(), "{pipe_id} also held by {holders:?}");
    stop_tx.send(()).expect("UEP still running");
    let stopped = tokio::time::timeout(Duration::from_secs(60), uep)
        .await
        .expect("UEP stops when asked")
        .expect("UEP task")
        .expect("UEP run");
    assert!(matches!(stopped, Stopped::Requested), "{stopped:?}");

    // The UEP closed its end: read every packet up to the end of the pipe.
    let mut pipe = std::fs::File::from(read);
    let mut packets = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = pipe.read(&mut buf).expect("read the audit pipe");
        if n == 0 {
            break;
        }
        packets.push(String::from_utf8(buf[..n].to_vec()).expect("UTF-8 record"));
    }
    let of = |fid: &str, tid: Uuid| {
        let prefix = format!("fid={fid} tid={tid} bid= ");
        packets
            .iter()
            .filter_map(|p| p.strip_prefix(&prefix))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        of(ALLOWED_FN, add),
        ["RECEIVED", "EXEC_START", "EXEC_END"],
        "{packets:#?}"
    );
    assert_eq!(
        of(REFUSED_FN, refused),
        [
            "RECEIVED",
            "FAILED - Function not permitted on endpoint",
            "EXEC_END"
        ],
        "{packets:#?}"
    );
    assert_eq!(packets.len(), 6, "{packets:#?}");
}

/// `target/<profile>/` holding `gc-worker-manager` (built with the workspace).
fn manager_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .to_owned();
    assert!(
        dir.join("gc-worker-manager").is_file(),
        "{}/gc-worker-manager is missing: cargo build -p gc-htex",
        dir.display()
    );
    dir
}

/// HA audit with GlobusComputeEngine (ENDPOINT §4.10): a `RUNNING` record names the block and
/// job the task went to, and `EXEC_END` carries them too; a high-assurance configuration
/// whose GlobusComputeEngine is not `encrypted` does not start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_running_record_names_the_block_of_a_globus_compute_engine_task() {
    use std::io::Read;
    use std::os::fd::IntoRawFd;
    let bin = manager_dir();
    let vhost = Vhost::new();
    let uep_id = Uuid::new_v4();
    let service = Service::new(&vhost, uep_id).await;
    let config_text = format!(
        "high_assurance: true\nheartbeat_period: 5\nengine:\n  type: GlobusComputeEngine\n  \
         address: 127.0.0.1\n  max_workers_per_node: 1\n  provider:\n    type: LocalProvider\n    \
         worker_init: \"export PATH={}:$PATH\"\n",
        bin.display()
    );
    let dir = tempfile::tempdir().unwrap();

    // Not encrypted: refused before anything starts.
    let plain = config_text.replace("  address:", "  encrypted: false\n  address:");
    let stdin = service.stdin(&vhost.url(), &plain);
    let refused = gc_uep::run(
        &stdin,
        &uep_config(&plain),
        options(dir.path()),
        std::future::pending(),
    )
    .await
    .expect_err("not HA compliant");
    assert_eq!(
        refused.to_string(),
        "Engine configuration is not High Assurance compliant.  Endpoint will not start."
    );
    assert!(
        !dir.path().join("submit_scripts").exists(),
        "a block was submitted"
    );

    let mut stdin = service.stdin(&vhost.url(), &config_text);
    let (read, write) = gc_sys::packet_pipe().expect("packet pipe");
    stdin.audit_fd = Some(write.into_raw_fd());
    let payloads = payloads();
    let add = service
        .submit(ALLOWED_FN, payloads["add"].as_str().unwrap())
        .await;
    let config = uep_config(&config_text);
    let opts = options(dir.path());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let uep = tokio::spawn(async move {
        let stop = async move {
            let _ = stop_rx.await;
        };
        gc_uep::run(&stdin, &config, opts, stop).await
    });
    let results = service.results(1).await;
    assert_eq!(
        decode(&results[0]),
        json!({"value": 3}),
        "{}",
        results[0].data
    );
    stop_tx.send(()).expect("UEP still running");
    let stopped = tokio::time::timeout(Duration::from_secs(60), uep)
        .await
        .expect("UEP stops when asked")
        .expect("UEP task")
        .expect("UEP run");
    assert!(matches!(stopped, Stopped::Requested), "{stopped:?}");

    let mut pipe = std::fs::File::from(read);
    let mut packets = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = pipe.read(&mut buf).expect("read the audit pipe");
        if n == 0 {
            break;
        }
        packets.push(String::from_utf8(buf[..n].to_vec()).expect("UTF-8 record"));
    }
    let prefix = format!("fid={ALLOWED_FN} tid={add} ");
    let ours: Vec<&str> = packets
        .iter()
        .filter_map(|p| p.strip_prefix(&prefix))
        .collect();
    let [received, start, running, end] = ours.as_slice() else {
        panic!("{packets:#?}");
    };
    assert_eq!(*received, "bid= RECEIVED");
    assert_eq!(*start, "bid= EXEC_START");
    // LocalProvider's job id is the block's process id.
    let job = running
        .strip_prefix("bid=0 jid=")
        .and_then(|r| r.strip_suffix(" RUNNING"))
        .unwrap_or_else(|| panic!("{running:?}"));
    assert!(
        !job.is_empty() && job.bytes().all(|b| b.is_ascii_digit()),
        "{running}"
    );
    assert_eq!(*end, format!("bid=0 jid={job} EXEC_END"));
}

/// `(ready, unacknowledged)` of a queue, from the broker's own view.
fn queue_depth(vhost: &Vhost, queue: &str) -> (u64, u64) {
    let out = Command::new("rabbitmqctl")
        .args([
            "-q",
            "list_queues",
            "-p",
            &vhost.0,
            "name",
            "messages_ready",
            "messages_unacknowledged",
        ])
        .output()
        .expect("rabbitmqctl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && f[0] == queue).then(|| (f[1].parse().ok(), f[2].parse().ok()))
        })
        .find_map(|(r, u)| Some((r?, u?)))
        .unwrap_or_else(|| panic!("queue {queue} not listed: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_is_acknowledged_only_once_its_result_is_confirmed() {
    let vhost = Vhost::new();
    let uep_id = Uuid::new_v4();
    let service = Service::new(&vhost, uep_id).await;
    let config_text = "heartbeat_period: 5\nengine:\n  type: ThreadPoolEngine\n  max_workers: 1";
    let stdin = service.stdin(&vhost.url(), config_text);
    let dir = tempfile::tempdir().unwrap();
    let config = uep_config(config_text);
    let opts = options(dir.path());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let uep = tokio::spawn(async move {
        let stop = async move {
            let _ = stop_rx.await;
        };
        gc_uep::run(&stdin, &config, opts, stop).await
    });
    let payloads = payloads();
    // One worker: a long task, and a short one queued behind it in the engine.
    let sleeper = service
        .submit(ALLOWED_FN, payloads["sleep"].as_str().unwrap())
        .await;
    let add = service
        .submit(ALLOWED_FN, payloads["add"].as_str().unwrap())
        .await;
    let marker = dir.path().join("tasks_working_dir").join("started");
    for _ in 0..600 {
        if marker.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid: i32 = std::fs::read_to_string(&marker)
        .expect("the long task started")
        .trim()
        .parse()
        .expect("a pid");
    // Both are with the user endpoint (running, queued in the engine) and neither is
    // acknowledged: a user endpoint killed now would leave both on the queue.
    let queue = format!("{uep_id}.tasks");
    let mut depth = (u64::MAX, u64::MAX);
    for _ in 0..100 {
        depth = queue_depth(&vhost, &queue);
        if depth == (0, 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(depth, (0, 2), "(ready, unacked) while the tasks are held");

    // The long task's worker dies: its error result, then the short task's result, are
    // confirmed, and only then are the deliveries acknowledged.
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let results = service.results(2).await;
    let ids: Vec<Uuid> = results.iter().map(|r| r.task_id).collect();
    assert!(ids.contains(&sleeper) && ids.contains(&add), "{ids:?}");
    for _ in 0..100 {
        depth = queue_depth(&vhost, &queue);
        if depth == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(depth, (0, 0), "(ready, unacked) once both results are safe");

    stop_tx.send(()).expect("UEP still running");
    let stopped = tokio::time::timeout(Duration::from_secs(60), uep)
        .await
        .expect("UEP stops when asked")
        .expect("UEP task")
        .expect("UEP run");
    assert!(matches!(stopped, Stopped::Requested), "{stopped:?}");
}
