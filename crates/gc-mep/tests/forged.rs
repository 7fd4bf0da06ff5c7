//! Forged and stale start commands on the mapped (root) path of a privileged MEP with an
//! identity-mapping file (ENDPOINT §4.3, §4.4; PROTOCOL-ENDPOINT §4.1, §4.2): a wrong content
//! type, a timestamp more than 180 s in the past or the future, a missing `globus_*` key and an
//! identity outside the mapping each start nothing and are logged; a genuine command sent
//! after them starts exactly one process, as the mapped user.
//!
//! Real parts: the gc-service binary (SQLite, loopback port) for registration, RabbitMQ at
//! 127.0.0.1:5672, a Linux user created here. The forged messages are published straight onto
//! the MEP's command queue. Root only (skipped otherwise); needs `cargo build -p gc-service`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gc_broker::{
    AmqpUrl, BasicProperties, PublishKwargs, PublishTarget, Publisher, PublisherOptions,
};
use gc_mep::{ClientCredentials, MepEvent, MepOptions, RegisterInputs, ServiceUrls, StopCause};
use serde_json::{Value, json};

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2F";
const WAIT: Duration = Duration::from_secs(60);

struct Service {
    child: Child,
    base: String,
    client_id: String,
    client_secret: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_service(dir: &Path) -> Service {
    let exe = std::env::current_exe().expect("test exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("gc-service");
    assert!(
        bin.exists(),
        "{} missing: cargo build -p gc-service",
        bin.display()
    );
    let db = format!("sqlite://{}", dir.join("svc.db").display());
    let out = Command::new(&bin)
        .args(["client", "create", "--name", "forged-test", "--json"])
        .env("GCRS_DATABASE_URL", &db)
        .output()
        .expect("client create");
    assert!(out.status.success(), "{out:?}");
    let created: Value = serde_json::from_slice(&out.stdout).expect("client json");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let log = std::fs::File::create(dir.join("service.log")).expect("log");
    let child = Command::new(&bin)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--amqp-url",
            AMQP,
        ])
        .env("GCRS_DATABASE_URL", &db)
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("serve");
    Service {
        child,
        base: format!("http://127.0.0.1:{port}"),
        client_id: created["client_id"].as_str().expect("id").into(),
        client_secret: created["client_secret"].as_str().expect("secret").into(),
    }
}

/// Publishes one message straight onto the MEP's command queue.
async fn forge(queue_info: &Value, properties: BasicProperties, body: &Value) {
    let queue = queue_info["queue"].as_str().expect("queue").to_string();
    let target = PublishTarget {
        url: AmqpUrl::parse(queue_info["connection_url"].as_str().expect("url")).expect("url"),
        exchange: String::new(),
        queue: queue.clone(),
        kwargs: PublishKwargs {
            exchange: String::new(),
            routing_key: queue,
            mandatory: true,
            properties,
        },
    };
    let publisher = Publisher::start(target, PublisherOptions::default());
    publisher
        .publish_confirmed(serde_json::to_vec(body).expect("json"))
        .await
        .expect("forged publish");
    publisher.close().await;
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Everything the MEP logs, for the "are logged" half of the checks.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log lock")).into_owned()
    }
}

/// A local user, removed on drop (with any process it still has).
struct LocalAccount(String);

impl Drop for LocalAccount {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-KILL", "-u", &self.0])
            .output();
        let _ = Command::new("userdel").arg(&self.0).output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapped_root_mep_starts_nothing_for_forged_or_stale_commands() {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: the mapped path needs root");
        return;
    }
    let log = Captured::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let svc = start_service(tmp.path());
    let account = {
        let name = format!("gcfrg{:06x}", std::process::id() & 0xff_ffff);
        let out = Command::new("useradd")
            .args(["--no-create-home", "--shell", "/usr/sbin/nologin", &name])
            .output()
            .expect("useradd");
        assert!(out.status.success(), "{out:?}");
        LocalAccount(name)
    };
    let uid = nix::unistd::User::from_name(&account.0)
        .expect("getpwnam")
        .expect("the user")
        .uid
        .as_raw();
    let compute_dir = tmp.path().join("compute");
    let ep_dir = compute_dir.join("mepforged");
    std::fs::create_dir_all(&ep_dir).expect("ep dir");
    let idmap = ep_dir.join("idmap.json");
    let mapping = json!([{"DATA_TYPE": "expression_identity_mapping#1.0.0",
        "mappings": [{"source": "{id}", "match": svc.client_id, "output": account.0}]}]);
    std::fs::write(&idmap, mapping.to_string()).expect("mapping");
    std::fs::write(
        ep_dir.join("config.yaml"),
        format!(
            "heartbeat_period: 5\nemail: admin@example.org\nidentity_mapping_config_path: {}\n",
            idmap.display()
        ),
    )
    .expect("config");
    std::fs::write(
        ep_dir.join("user_config_template.yaml.j2"),
        "engine:\n  type: ThreadPoolEngine\n",
    )
    .expect("template");
    // The "bootstrap" is a script that records who it runs as; any start reaches it.
    let records = tmp.path().join("records");
    std::fs::create_dir(&records).expect("records");
    std::fs::set_permissions(&records, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let script = tmp.path().join("started.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nr='{}'\nid -u > \"$r/.$$\" && mv \"$r/.$$\" \"$r/$$\"\ncat > /dev/null\n",
            records.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let config = gc_config::CoreEndpointConfig::from_file(
        &ep_dir.join("config.yaml"),
        gc_config::LoadOptions::default(),
    )
    .expect("config");
    let urls = ServiceUrls {
        compute: svc.base.clone(),
        auth: format!("{}/auth/", svc.base),
    };
    let credentials = ClientCredentials {
        client_id: svc.client_id.clone(),
        client_secret: svc.client_secret.clone(),
    };
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while http
        .get(format!("{}/v2/version", svc.base))
        .send()
        .await
        .is_err()
    {
        assert!(tokio::time::Instant::now() < deadline, "service not up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reg = gc_mep::register(&RegisterInputs {
        endpoint_dir: &ep_dir,
        name: "mepforged",
        config: &config,
        endpoint_uuid: None,
        urls: &urls,
        credentials: &credentials,
        python_version: "3.11.2",
        takeover: false,
    })
    .await
    .expect("register");

    let mut options = MepOptions::new("mepforged", ep_dir.clone(), config).expect("options");
    assert!(options.identity_mapping.is_some(), "the mapped path");
    options.compute_dir = compute_dir.clone();
    options.child_program = script;
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    options.events = Some(events_tx);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mep = tokio::spawn(gc_mep::run(options, reg.clone(), async {
        let _ = stop_rx.await;
    }));

    let creds = json!({
        "endpoint_id": "99999999-3333-4444-8555-666666666666",
        "heartbeat_queue_info": reg.heartbeat_queue_info,
    });
    let command = |name: &str, identity: &str| {
        json!({
            "command": "cmd_start_endpoint", "globus_username": "someone@example.org",
            "globus_effective_identity": identity,
            "globus_identity_set": [{"sub": identity, "id": identity, "username": "someone@example.org", "status": "used"}],
            "args": [], "kwargs": {"name": name, "amqp_creds": creds},
        })
    };
    let json_props = |ts: u64| {
        BasicProperties::default()
            .with_content_type("application/json".into())
            .with_timestamp(ts)
    };
    let q = &reg.command_queue_info;
    let genuine = command("uep.genuine", &svc.client_id);
    // 1. Wrong content type (an otherwise genuine command).
    forge(
        q,
        BasicProperties::default()
            .with_content_type("text/plain".into())
            .with_timestamp(now()),
        &genuine,
    )
    .await;
    // 2./3. Timestamps 200 s in the past and in the future.
    forge(q, json_props(now() - 200), &genuine).await;
    forge(q, json_props(now() + 200), &genuine).await;
    // 4. Missing globus_* keys, one each.
    for key in [
        "globus_effective_identity",
        "globus_identity_set",
        "globus_username",
    ] {
        let mut missing = genuine.clone();
        missing.as_object_mut().expect("object").remove(key);
        forge(q, json_props(now()), &missing).await;
    }
    // 5. An identity the mapping does not know.
    let stranger = "0badc0de-0000-4000-8000-000000000000";
    forge(q, json_props(now()), &command("uep.stranger", stranger)).await;
    // 6. The genuine command, last.
    forge(q, json_props(now()), &genuine).await;

    let mut seen = Vec::new();
    let spawned_pid = loop {
        let e = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("an event in time")
            .expect("event channel open");
        match e {
            MepEvent::Spawned { pid, name } => {
                assert_eq!(name, "uep.genuine");
                break pid;
            }
            other => seen.push(other),
        }
    };
    // (event kind, notice sent, text it must contain), in queue order.
    let expected: [(&str, bool, &str); 7] = [
        (
            "rejected",
            false,
            "Unable to deserialize Globus Compute services command.",
        ),
        (
            "rejected",
            true,
            "Command too old or skew between system clocks is too large.",
        ),
        (
            "rejected",
            true,
            "Command too old or skew between system clocks is too large.",
        ),
        ("rejected", true, "(KeyError) 'globus_effective_identity'"),
        ("rejected", true, "(KeyError) 'globus_identity_set'"),
        ("rejected", true, "(KeyError) 'globus_username'"),
        (
            "failed",
            true,
            "Identity failed to map to a local user name.",
        ),
    ];
    assert_eq!(seen.len(), expected.len(), "{seen:#?}");
    for (e, (kind, notice, needle)) in seen.iter().zip(expected) {
        let ok = match e {
            MepEvent::Rejected { text, notice: n } => {
                kind == "rejected" && *n == notice && text.contains(needle)
            }
            MepEvent::StartFailed { name, text } => {
                kind == "failed" && name == "uep.stranger" && text.contains(needle)
            }
            _ => false,
        };
        assert!(ok, "expected {kind} {needle:?}, got {e:?} in {seen:#?}");
    }

    // Exactly one process was started, by the genuine command, as the mapped user.
    let deadline = tokio::time::Instant::now() + WAIT;
    let started = loop {
        let files: Vec<PathBuf> = std::fs::read_dir(&records)
            .expect("records")
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
            })
            .collect();
        if !files.is_empty() {
            break files;
        }
        assert!(tokio::time::Instant::now() < deadline, "the genuine start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(started.len(), 1, "{started:?}");
    assert!(started[0].ends_with(spawned_pid.to_string()));
    let ran_as = std::fs::read_to_string(&started[0]).expect("record");
    assert_eq!(ran_as.trim(), uid.to_string());

    stop_tx.send(()).expect("stop");
    let cause = tokio::time::timeout(WAIT, mep)
        .await
        .expect("shutdown")
        .expect("join");
    assert_eq!(cause.expect("run"), StopCause::Requested);

    // Each refusal is in the MEP's log.
    let text = log.text();
    for needle in [
        "Unable to deserialize Globus Compute services command.",
        "Ignoring command from server\nCommand too old or skew between system clocks is too large.",
        "Invalid server command.  (KeyError) 'globus_effective_identity'",
        "Invalid server command.  (KeyError) 'globus_identity_set'",
        "Invalid server command.  (KeyError) 'globus_username'",
        "Identity failed to map to a local user name.",
    ] {
        assert!(text.contains(needle), "{needle:?} not logged:\n{text}");
    }
    assert_eq!(
        text.matches("Command too old or skew between system clocks")
            .count(),
        2,
        "{text}"
    );
}
