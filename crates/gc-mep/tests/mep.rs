//! The MEP runtime against the real self-hosted service (`gc-service` binary on a free
//! loopback port, temp SQLite database) and the real RabbitMQ at 127.0.0.1:5672.
//!
//! Needs the service binary: `cargo build -p gc-service` (same target directory).
//!
//! The user endpoint program is a small shell script that records its argv, environment,
//! working directory and stdin and exits 0: it stands in for `globus-compute-endpoint
//! _start-user-endpoint`, whose wiring to the UEP runtime is not done yet.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gc_broker::{
    AmqpUrl, BasicProperties, PublishKwargs, PublishTarget, Publisher, PublisherOptions,
};
use gc_mep::{ClientCredentials, MepEvent, MepOptions, RegisterInputs, ServiceUrls, StopCause};
use serde_json::{Value, json};

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2F";
const WAIT: Duration = Duration::from_secs(60);

/// The gc-service binary next to this test's `deps` directory.
fn service_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("gc-service");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build -p gc-service` first",
        bin.display()
    );
    bin
}

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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn start_service(dir: &Path) -> Service {
    let bin = service_binary();
    let db = format!("sqlite://{}", dir.join("svc.db").display());
    let out = Command::new(&bin)
        .args(["client", "create", "--name", "mep-test", "--json"])
        .env("GCRS_DATABASE_URL", &db)
        .output()
        .expect("client create");
    assert!(out.status.success(), "{out:?}");
    let created: Value = serde_json::from_slice(&out.stdout).expect("client json");
    let port = free_port();
    let log = std::fs::File::create(dir.join("service.log")).expect("log");
    let child = Command::new(&bin)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--amqp-url",
            AMQP,
            "--uep-start-timeout",
            "5",
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

/// Polls `probe` every 200 ms until it returns `Some`, failing after [`WAIT`].
async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const TEMPLATE: &str =
    "heartbeat_period: 5\nengine:\n  type: ThreadPoolEngine\n  max_workers: {{ workers }}\n";
const SCHEMA: &str = r#"{"type": "object", "properties": {"workers": {"type": "integer"}}}"#;

/// The recording script; it records, then waits while `hold` exists, then exits 0.
fn recorder_script(dir: &Path, records: &Path, hold: &Path) -> PathBuf {
    let script = dir.join("record-uep.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nd='{}'/$$\nmkdir -p \"$d\"\nprintf '%s\\n' \"$@\" > \"$d/argv\"\n\
             env > \"$d/env\"\npwd > \"$d/cwd\"\nls -l /proc/$$/fd > \"$d/fds\"\n\
             cat <&3 > \"$d/cred\"\ncat > \"$d/stdin\"\ntouch \"$d/done\"\n\
             if grep -q 'max_workers: 9' \"$d/stdin\"; then kill -KILL $$; fi\n\
             while [ -e '{}' ]; do sleep 0.1; done\ncat /proc/$$/fd/3 > \"$d/cred2\"\n",
            records.display(),
            hold.display()
        ),
    )
    .expect("script");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script
}

/// Every finished recording: (argv, env, stdin).
fn recordings(records: &Path) -> Vec<(Vec<String>, BTreeMap<String, String>, Value)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(records) else {
        return out;
    };
    for e in entries.flatten() {
        let d = e.path();
        if !d.join("done").exists() {
            continue;
        }
        let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap_or_default();
        let argv = read("argv").lines().map(str::to_string).collect();
        let env = read("env")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut stdin: Value = serde_json::from_str(&read("stdin")).unwrap_or(Value::Null);
        // The credentials are only in the memfd the script copied from descriptor 3: decrypt
        // them with the document's key and keep them beside it as "__memfd".
        if let Some(creds) = memfd_credentials(&stdin, read("cred").as_bytes()) {
            stdin["__memfd"] = creds;
        }
        out.push((argv, env, stdin));
    }
    out
}

/// The decrypted `{"amqp_creds": …}` of a copied credential memfd, with the stdin document's
/// `enckey`.
fn memfd_credentials(stdin: &Value, token: &[u8]) -> Option<Value> {
    let key = gc_sys::credfd::FernetKey::from_text(stdin["enckey"].as_str()?).ok()?;
    serde_json::from_slice(&key.decrypt(token).ok()?).ok()
}

/// The next event matching `pred` (others are skipped), failing after [`WAIT`].
async fn next_event(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<MepEvent>,
    what: &str,
    pred: impl Fn(&MepEvent) -> bool,
) -> MepEvent {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(e)) if pred(&e) => return e,
            Ok(Some(other)) => eprintln!("(skipped while waiting for {what}: {other:?})"),
            Ok(None) => panic!("event channel closed waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

async fn token(http: &reqwest::Client, svc: &Service) -> String {
    let t: Value = http
        .post(format!("{}/auth/v2/oauth2/token", svc.base))
        .basic_auth(&svc.client_id, Some(&svc.client_secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", gc_wire::rest::COMPUTE_SCOPE),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token json");
    t["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mep_registers_refuses_forgeries_spawns_user_endpoints_and_reports_failures() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let svc = start_service(tmp.path());
    let compute_dir = tmp.path().join("compute");
    let ep_dir = compute_dir.join("mep1");
    std::fs::create_dir_all(&ep_dir).expect("ep dir");
    std::fs::write(ep_dir.join("config.yaml"), "heartbeat_period: 5\n").expect("config");
    std::fs::write(ep_dir.join("user_config_template.yaml.j2"), TEMPLATE).expect("template");
    std::fs::write(ep_dir.join("user_config_schema.json"), SCHEMA).expect("schema");
    std::fs::write(ep_dir.join("user_environment.yaml"), "SITE_VAR: 42\n").expect("user env");
    let records = tmp.path().join("records");
    let hold = tmp.path().join("hold");
    let script = recorder_script(tmp.path(), &records, &hold);

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
    // The service may need a moment to listen.
    wait_for("the service", || async {
        http.get(format!("{}/v2/version", svc.base))
            .send()
            .await
            .ok()
    })
    .await;

    // 1. Registration writes endpoint.json; a second start re-registers (PUT) the same id.
    let inputs = RegisterInputs {
        endpoint_dir: &ep_dir,
        name: "mep1",
        config: &config,
        endpoint_uuid: None,
        urls: &urls,
        credentials: &credentials,
        python_version: "3.11.2",
        takeover: false,
    };
    let reg = gc_mep::register(&inputs).await.expect("register");
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(ep_dir.join("endpoint.json")).unwrap())
            .unwrap();
    assert_eq!(saved, json!({"endpoint_id": reg.endpoint_id}));
    let again = gc_mep::register(&inputs).await.expect("re-register");
    assert_eq!(again.endpoint_id, reg.endpoint_id);
    assert!(
        reg.identity_set.contains(&svc.client_id),
        "{:?}",
        reg.identity_set
    );

    // 2. Run the MEP in-process.
    let mut options = MepOptions::new("mep1", ep_dir.clone(), config.clone()).expect("options");
    options.compute_dir = compute_dir.clone();
    options.child_program = script;
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    options.events = Some(events_tx);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mep = tokio::spawn(gc_mep::run(options, reg.clone(), async {
        let _ = stop_rx.await;
    }));

    let bearer = token(&http, &svc).await;
    let ep_id = reg.endpoint_id.clone();
    let status = || async {
        let v: Value = http
            .get(format!("{}/v2/endpoints/{ep_id}/status", svc.base))
            .bearer_auth(&bearer)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        Some(v["status"].as_str()?.to_string())
    };
    wait_for("the first heartbeat", || async {
        (status().await.as_deref() == Some("online")).then_some(())
    })
    .await;

    // 3. Forged commands start nothing: wrong content type, stale timestamp, missing keys.
    let creds = json!({
        "endpoint_id": "99999999-3333-4444-8555-666666666666",
        "heartbeat_queue_info": reg.heartbeat_queue_info,
    });
    let command = json!({
        "command": "cmd_start_endpoint", "globus_username": "me",
        "globus_effective_identity": svc.client_id,
        "globus_identity_set": [{"sub": svc.client_id}],
        "args": [], "kwargs": {"name": "uep.forged", "user_opts": {"workers": 1}, "amqp_creds": creds},
    });
    let props = || BasicProperties::default().with_content_type("application/json".into());
    forge(
        &reg.command_queue_info,
        BasicProperties::default()
            .with_content_type("text/plain".into())
            .with_timestamp(now()),
        &command,
    )
    .await;
    forge(
        &reg.command_queue_info,
        props().with_timestamp(now() - 3600),
        &command,
    )
    .await;
    let mut missing = command.clone();
    missing
        .as_object_mut()
        .unwrap()
        .remove("globus_identity_set");
    forge(
        &reg.command_queue_info,
        props().with_timestamp(now()),
        &missing,
    )
    .await;

    for notice in [false, true, true] {
        let e = next_event(&mut events, "a rejection", |e| {
            matches!(e, MepEvent::Rejected { .. })
        })
        .await;
        assert!(
            matches!(&e, MepEvent::Rejected { notice: n, .. } if *n == notice),
            "{e:?}"
        );
    }

    // 4. A submit makes the service publish a start command; the MEP spawns the UEP.
    let function: Value = http
        .post(format!("{}/v3/functions", svc.base))
        .bearer_auth(&bearer)
        .json(&json!({"function_name": "f", "function_code": "code"}))
        .send()
        .await
        .expect("function")
        .json()
        .await
        .expect("function json");
    let fid = function["function_uuid"]
        .as_str()
        .expect("function_uuid")
        .to_string();
    let submit = |opts: Value| {
        let req = http
            .post(format!("{}/v3/endpoints/{ep_id}/submit", svc.base))
            .bearer_auth(&bearer)
            .json(&json!({
                "create_queue": true,
                "tasks": {fid.clone(): ["payload"]},
                "user_endpoint_config": opts,
                "user_runtime": {"python": {"version": "3.11.2"}, "globus_compute_sdk_version": "4.19.0"},
            }));
        async move { req.send().await.expect("submit") }
    };
    let first = tokio::spawn(submit(json!({"workers": 2})));
    let recs = wait_for("the user endpoint", || async {
        let r = recordings(&records);
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert_eq!(
        recs.len(),
        1,
        "forged commands must start nothing: {recs:?}"
    );
    let (argv, env, stdin) = &recs[0];
    assert_eq!(argv.len(), 2, "{argv:?}");
    assert_eq!(argv[0], "_start-user-endpoint");
    let name = &argv[1];
    assert!(name.starts_with(&format!("uep.{ep_id}.")), "{name}");
    let uep_dir = compute_dir.join(name);
    assert!(uep_dir.is_dir());
    assert_eq!(env["GLOBUS_COMPUTE_ENDPOINT_NAME"], *name);
    assert_eq!(
        env["GLOBUS_COMPUTE_ENDPOINT_DIR"],
        uep_dir.display().to_string()
    );
    assert_eq!(
        env["GLOBUS_COMPUTE_LOG_PATH"],
        uep_dir.join("endpoint.log").display().to_string()
    );
    assert_eq!(env["GC_USER_PYTHON_VERSION"], "3.11.2");
    assert_eq!(env["GC_USER_SDK_VERSION"], "4.19.0");
    assert_eq!(env["SITE_VAR"], "42");
    assert!(env.contains_key("CWD"));
    // Unprivileged: the MEP's whole environment is inherited; privileged: cleared first.
    if std::env::var_os("CARGO_MANIFEST_DIR").is_some() {
        assert_eq!(
            env.contains_key("CARGO_MANIFEST_DIR"),
            !gc_mep::privilege::is_privileged()
        );
    }
    assert!(
        env["PATH"].starts_with("/usr/local/bin:/usr/bin:/bin")
            || !gc_mep::privilege::is_privileged()
    );
    assert_eq!(
        stdin["config"],
        "heartbeat_period: 5\nengine:\n  type: ThreadPoolEngine\n  max_workers: 2"
    );
    assert_eq!(stdin["ep_info"], json!({"posix_ppid": std::process::id()}));
    // The credentials are not in the stdin pipe: only the key and the memfd's number are.
    assert!(stdin.get("amqp_creds").is_none(), "{stdin}");
    assert_eq!(stdin["mem_fd"], 3);
    assert_eq!(stdin["enckey"].as_str().map(str::len), Some(44));
    let creds = &stdin["__memfd"]["amqp_creds"];
    let uep_id = creds["endpoint_id"].as_str().expect("uep id");
    assert!(name.ends_with(uep_id), "{name} / {uep_id}");
    assert!(creds["task_queue_info"]["queue"].is_string());
    assert!(creds["task_queue_info"]["connection_url"].is_string());
    // Descriptors at exec: 0–2, the read-only memfd at 3, and the shell's own handle on its
    // script; nothing else of the MEP's.
    let fds = std::fs::read_dir(&records)
        .expect("records")
        .flatten()
        .find(|e| e.path().join("done").exists())
        .map(|e| std::fs::read_to_string(e.path().join("fds")).expect("fds"))
        .expect("a recording");
    assert_fds(&fds, &[], "record-uep.sh");
    assert!(stdin.get("allowed_functions").is_none());
    let first_spawn = next_event(&mut events, "the first UEP", |e| {
        matches!(e, MepEvent::Spawned { .. })
    })
    .await;
    assert!(matches!(&first_spawn, MepEvent::Spawned { name: n, .. } if n == name));
    let first_exit = next_event(&mut events, "the first UEP's exit", |e| {
        matches!(e, MepEvent::Exited { .. })
    })
    .await;
    assert!(matches!(&first_exit, MepEvent::Exited { name: n, code: Some(0), .. } if n == name));
    let first = first.await.expect("submit task");
    assert!(first.status().is_success(), "{:?}", first.text().await);

    // 4b. A repeated start command for a running UEP is cached, not run; when that UEP
    //     exits 0 within the grace period it is revived with the cached command.
    std::fs::write(&hold, "").expect("hold");
    let held = tokio::spawn(submit(json!({"workers": 3})));
    let spawned = next_event(&mut events, "the held UEP", |e| {
        matches!(e, MepEvent::Spawned { .. })
    })
    .await;
    let MepEvent::Spawned {
        pid,
        name: held_name,
    } = spawned
    else {
        unreachable!()
    };
    let repeat = tokio::spawn(submit(json!({"workers": 3})));
    let dup = next_event(&mut events, "the duplicate", |e| {
        matches!(e, MepEvent::Duplicate { .. })
    })
    .await;
    assert_eq!(
        dup,
        MepEvent::Duplicate {
            pid,
            name: held_name.clone()
        }
    );
    std::fs::remove_file(&hold).expect("release");
    let exited = next_event(&mut events, "the held UEP's exit", |e| {
        matches!(e, MepEvent::Exited { .. })
    })
    .await;
    assert_eq!(
        exited,
        MepEvent::Exited {
            pid,
            name: held_name.clone(),
            code: Some(0)
        }
    );
    let revived = next_event(&mut events, "the revival", |e| {
        matches!(e, MepEvent::Spawned { .. })
    })
    .await;
    assert!(
        matches!(&revived, MepEvent::Spawned { name, .. } if *name == held_name),
        "{revived:?}"
    );
    for t in [held, repeat] {
        let r = t.await.expect("submit task");
        assert!(r.status().is_success(), "{:?}", r.text().await);
    }
    wait_for("the revived UEP's recording", || async {
        (recordings(&records).len() == 3).then_some(())
    })
    .await;
    // The repeated command rewrote the held UEP's memfd (a new token, same key): the script
    // read it again through /proc after the hold.
    let held_dir = records.join(pid.to_string());
    let before = std::fs::read(held_dir.join("cred")).expect("cred");
    let after = wait_for("the re-read memfd", || async {
        std::fs::read(held_dir.join("cred2"))
            .ok()
            .filter(|b| !b.is_empty())
    })
    .await;
    assert_ne!(before, after, "the memfd was not rewritten");
    let held_stdin: Value =
        serde_json::from_slice(&std::fs::read(held_dir.join("stdin")).expect("stdin"))
            .expect("stdin json");
    assert!(memfd_credentials(&held_stdin, &after).is_some());

    // 5. A template failure (schema violation) becomes a failure notice on the UEP's heartbeat
    //    routing; the service turns it into a 422 for the waiting submit.
    let failed = submit(json!({"workers": "many"})).await;
    assert_eq!(failed.status().as_u16(), 422);
    let e = next_event(&mut events, "the start failure", |e| {
        matches!(e, MepEvent::StartFailed { .. })
    })
    .await;
    assert!(
        matches!(&e, MepEvent::StartFailed { text, .. } if text.contains("(ValidationError)")),
        "{e:?}"
    );
    let text = failed.text().await.expect("body");
    assert!(
        text.contains("Unable to start user endpoint process for")
            && text.contains("exit code: 73"),
        "{text}"
    );
    assert_eq!(recordings(&records).len(), 3);

    // 5b. A UEP killed by a signal cannot report itself: the MEP sends the notice.
    let killed = submit(json!({"workers": 9})).await;
    assert_eq!(killed.status().as_u16(), 422);
    let text = killed.text().await.expect("body");
    assert!(text.contains("terminated by signal 9 (SIGKILL)"), "{text}");

    // 6. Shutdown: final heartbeat (heartbeat_period 0) turns the endpoint offline.
    stop_tx.send(()).expect("stop");
    let cause = tokio::time::timeout(WAIT, mep)
        .await
        .expect("shutdown")
        .expect("join");
    assert_eq!(cause.expect("run"), StopCause::Requested);
    wait_for("offline", || async {
        (status().await.as_deref() == Some("offline")).then_some(())
    })
    .await;

    // 7. Registration failures map to upstream's exit statuses.
    let locked = http
        .post(format!("{}/v3/endpoints/{ep_id}/lock", svc.base))
        .bearer_auth(&bearer)
        .send()
        .await
        .expect("lock");
    assert!(locked.status().is_success());
    let err = gc_mep::register(&inputs).await.expect_err("locked");
    assert_eq!(err.exit_code(), 69, "{err}");
    assert!(
        err.to_string()
            .starts_with("Endpoint registration blocked.  [{"),
        "{err}"
    );
    let bad_secret = ClientCredentials {
        client_secret: "wrong".into(),
        ..credentials.clone()
    };
    let err = gc_mep::register(&RegisterInputs {
        credentials: &bad_secret,
        ..inputs.clone()
    })
    .await
    .expect_err("bad secret");
    assert_eq!(err.exit_code(), 77, "{err}");
    let closed = format!("http://127.0.0.1:{}", free_port());
    let nowhere = ServiceUrls {
        compute: closed.clone(),
        auth: format!("{closed}/auth/"),
    };
    let err = gc_mep::register(&RegisterInputs {
        urls: &nowhere,
        ..inputs.clone()
    })
    .await
    .expect_err("no service");
    assert_eq!(err.exit_code(), 75, "{err}");
}

/// Checks an `ls -l /proc/PID/fd` listing: 0–2, the credential memfd at 3, the `extra`
/// descriptors, and otherwise only the shell's handle on `script` or its saved stdout.
fn assert_fds(listing: &str, extra: &[i32], script: &str) {
    let mut numbers = Vec::new();
    for line in listing.lines() {
        let Some((left, target)) = line.split_once(" -> ") else {
            continue;
        };
        let n: i32 = left
            .rsplit(' ')
            .next()
            .and_then(|w| w.parse().ok())
            .expect("fd number");
        if n == 3 {
            assert!(target.starts_with("/memfd:dyn"), "{listing}");
        } else if n > 2 && !extra.contains(&n) {
            assert!(
                target.ends_with(script)
                    || target.ends_with("/endpoint.log")
                    || target == "/dev/null",
                "{listing}"
            );
        }
        numbers.push(n);
    }
    for n in [0, 1, 2, 3].iter().chain(extra) {
        assert!(numbers.contains(n), "{n} missing: {listing}");
    }
}

/// `start` refuses while another instance holds a fresh PID file (exit 73) and on a broken
/// `config.yaml` (exit 1), before contacting any service.
#[tokio::test]
async fn start_refusals_before_registration() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ep");
    std::fs::create_dir_all(&dir).expect("dir");
    let args = gc_mep::StartArgs {
        name: "ep".into(),
        endpoint_dir: dir.clone(),
        endpoint_uuid: None,
        python_version: "3.11.2".into(),
    };
    std::fs::write(dir.join("config.yaml"), "no_such_option: 1\n").expect("config");
    assert_eq!(gc_mep::start(args.clone()).await, 1);
    std::fs::write(dir.join("config.yaml"), "heartbeat_period: 30\n").expect("config");
    std::fs::write(dir.join("daemon.pid"), "12345\n").expect("pid");
    assert_eq!(gc_mep::start(args).await, 73);
    assert_eq!(
        std::fs::read_to_string(dir.join("daemon.pid")).expect("kept"),
        "12345\n"
    );
}

/// HA audit log (ENDPOINT §4.10) through an unprivileged MEP: `Begin`, the records a UEP
/// writes to descriptor 4 with the header from the MEP's bookkeeping (its uid, the UEP's pid
/// and id), `End`. The "UEP" is a script that writes two records (one with a newline that must
/// not start a line of its own) and records its stdin document and open descriptors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_mep_audit_log_gets_begin_uep_records_and_end() {
    ha_audit(false).await;
}

/// The same through a privileged MEP with identity mapping and the real bootstrap program
/// (`globus-compute-endpoint _bootstrap-user-endpoint`, run as a fresh local user after the
/// privilege drop): the "UEP" it execs finds the memfd at 3 and the pipe at 4 and nothing
/// else, and its records carry the user's uid (root only; needs `cargo build -p gc-endpoint`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_mapped_user_audit_log_gets_the_users_uid() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to create a user and change identity");
        return;
    }
    ha_audit(true).await;
}

/// The `globus-compute-endpoint` binary next to this test's `deps` directory.
fn endpoint_binary() -> PathBuf {
    let bin = service_binary().with_file_name("globus-compute-endpoint");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build -p gc-endpoint` first",
        bin.display()
    );
    bin
}

/// A local user, removed on drop.
struct LocalAccount(String);

impl Drop for LocalAccount {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-KILL", "-u", &self.0])
            .output();
        let _ = Command::new("userdel").arg(&self.0).output();
    }
}

async fn ha_audit(mapped: bool) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let svc = start_service(tmp.path());
    let compute_dir = tmp.path().join("compute");
    let ep_dir = compute_dir.join("mepha");
    std::fs::create_dir_all(&ep_dir).expect("ep dir");
    let account = mapped.then(|| {
        let name = format!("gcaud{:06x}", std::process::id() & 0xff_ffff);
        let out = Command::new("useradd")
            .args(["--no-create-home", "--shell", "/usr/sbin/nologin", &name])
            .output()
            .expect("useradd");
        assert!(out.status.success(), "{out:?}");
        LocalAccount(name)
    });
    let mut config_text = "heartbeat_period: 5\n".to_string();
    if let Some(account) = &account {
        let idmap = ep_dir.join("idmap.json");
        let mapping = json!([{"DATA_TYPE": "expression_identity_mapping#1.0.0",
            "mappings": [{"source": "{id}", "match": svc.client_id, "output": account.0}]}]);
        std::fs::write(&idmap, mapping.to_string()).expect("mapping");
        config_text.push_str(&format!(
            "email: admin@example.org\nidentity_mapping_config_path: {}\n",
            idmap.display()
        ));
        // The mapped user runs the script and writes the records.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    std::fs::write(ep_dir.join("config.yaml"), &config_text).expect("config");
    std::fs::write(ep_dir.join("user_config_template.yaml.j2"), TEMPLATE).expect("template");
    std::fs::write(ep_dir.join("user_config_schema.json"), SCHEMA).expect("schema");
    let records = tmp.path().join("records");
    std::fs::create_dir(&records).expect("records");
    std::fs::set_permissions(&records, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let script = tmp.path().join("audit-uep.sh");
    // Mapped: the MEP execs this script as the bootstrap (after the privilege drop), which
    // hands over to the real `globus-compute-endpoint _bootstrap-user-endpoint`; that execs
    // the script again as the "UEP", with the real descriptor set-up at exec.
    let bootstrap = match &account {
        Some(_) => {
            // The mapped user cannot reach the build directory under /root: a copy.
            let bin = tmp.path().join("globus-compute-endpoint");
            std::fs::copy(endpoint_binary(), &bin).expect("copy the endpoint binary");
            format!(
                "case \"$1\" in _bootstrap-user-endpoint) exec '{}' \"$@\";; esac\n",
                bin.display()
            )
        }
        None => String::new(),
    };
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{bootstrap}d='{}'/$$\nmkdir -p \"$d\"\ncat > \"$d/stdin\"\n\
             ls -l /proc/$$/fd > \"$d/fds\"\ncat <&3 > \"$d/cred\"\n\
             printf 'fid=f1 tid=t1 bid= RECEIVED' >&4\n\
             printf 'fid=f1 tid=t1 bid= EXEC_END\\nuid=0 forged\\r' >&4\n\
             echo $$ > \"$d/pid\"\ntouch \"$d/done\"\n",
            records.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    if account.is_some() {
        // The user has no home: its UEP directories go under the test's directory.
        let dirs = tmp.path().join("uep-dirs");
        std::fs::create_dir(&dirs).expect("uep dirs");
        std::fs::set_permissions(&dirs, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        std::fs::write(
            ep_dir.join("user_environment.yaml"),
            format!("GLOBUS_COMPUTE_USER_DIR: {}\n", dirs.display()),
        )
        .expect("user env");
    }
    let audit_path = tmp.path().join("audit.log");

    let plain = gc_config::CoreEndpointConfig::from_file(
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
    wait_for("the service", || async {
        http.get(format!("{}/v2/version", svc.base))
            .send()
            .await
            .ok()
    })
    .await;
    // Registered as a plain endpoint (the service wants a policy and subscription for HA);
    // the runtime gets the HA configuration.
    let reg = gc_mep::register(&RegisterInputs {
        endpoint_dir: &ep_dir,
        name: "mepha",
        config: &plain,
        endpoint_uuid: None,
        urls: &urls,
        credentials: &credentials,
        python_version: "3.11.2",
        takeover: false,
    })
    .await
    .expect("register");
    let mut config = plain.clone();
    config.base.high_assurance = true;
    config.audit_log_path = Some(audit_path.clone());

    let mut options = MepOptions::new("mepha", ep_dir.clone(), config).expect("options");
    options.compute_dir = compute_dir.clone();
    options.child_program = script;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mep = tokio::spawn(gc_mep::run(options, reg.clone(), async {
        let _ = stop_rx.await;
    }));

    let bearer = token(&http, &svc).await;
    let ep_id = reg.endpoint_id.clone();
    let function: Value = http
        .post(format!("{}/v3/functions", svc.base))
        .bearer_auth(&bearer)
        .json(&json!({"function_name": "f", "function_code": "code"}))
        .send()
        .await
        .expect("function")
        .json()
        .await
        .expect("function json");
    let fid = function["function_uuid"].as_str().expect("fid").to_string();
    let req = http
        .post(format!("{}/v3/endpoints/{ep_id}/submit", svc.base))
        .bearer_auth(&bearer)
        .json(&json!({
            "create_queue": true,
            "tasks": {fid: ["payload"]},
            "user_endpoint_config": {"workers": 1},
            "user_runtime": {"python": {"version": "3.11.2"}, "globus_compute_sdk_version": "4.19.0"},
        }));
    let submit = tokio::spawn(async move { req.send().await });
    let dir = wait_for("the user endpoint", || async {
        let entries = std::fs::read_dir(&records).ok()?;
        entries
            .flatten()
            .map(|e| e.path())
            .find(|d| d.join("done").exists())
    })
    .await;
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("recorded file");
    let stdin: Value = serde_json::from_str(&read("stdin")).expect("stdin JSON");
    assert_eq!(stdin["audit_fd"], 4, "{stdin}");
    // The UEP's stdin document: no credentials, only the memfd's number and key.
    assert!(stdin.get("amqp_creds").is_none(), "{stdin}");
    assert_eq!(stdin["mem_fd"], 3, "{stdin}");
    let creds = memfd_credentials(&stdin, read("cred").as_bytes()).expect("memfd credentials");
    let uep_id = creds["amqp_creds"]["endpoint_id"]
        .as_str()
        .expect("UEP id")
        .to_string();
    // The descriptors at exec (listed by `ls` from outside): 0–2, the memfd at 3, the audit
    // pipe at 4, and the shell's own; nothing else of the MEP's or the bootstrap's (its
    // stdin pipe, its stderr pipe to the MEP) leaked.
    let fds = read("fds");
    assert_fds(&fds, &[4], "audit-uep.sh");
    assert!(fds.contains(" 4 -> pipe:"), "{fds}");
    if account.is_some() {
        // Through the real bootstrap: stderr is the UEP log, and the only pipe
        // besides the audit pipe is stdin.
        let target = |n: i32| {
            fds.lines()
                .find(|l| l.contains(&format!(" {n} -> ")))
                .and_then(|l| l.split_once(" -> "))
                .map(|(_, t)| t.to_string())
                .unwrap_or_default()
        };
        // (1 is the `ls` redirection; the shell keeps the original stdout above 9.)
        assert!(target(2).ends_with("/endpoint.log"), "{fds}");
        assert!(target(0).starts_with("pipe:"), "{fds}");
        let pipes = fds.lines().filter(|l| l.contains("-> pipe:")).count();
        assert_eq!(pipes, 2, "only stdin and the audit pipe: {fds}");
    }
    let pid = read("pid").trim().to_string();

    stop_tx.send(()).expect("stop");
    let cause = tokio::time::timeout(WAIT, mep)
        .await
        .expect("shutdown")
        .expect("join");
    assert_eq!(cause.expect("run"), StopCause::Requested);
    submit.abort();

    let text = std::fs::read_to_string(&audit_path).expect("audit log");
    let lines: Vec<&str> = text.lines().collect();
    let me = nix::unistd::getuid().as_raw();
    let uep_uid = match &account {
        Some(a) => nix::unistd::User::from_name(&a.0)
            .expect("getpwnam")
            .expect("the user")
            .uid
            .as_raw(),
        None => me,
    };
    let mep_pid = std::process::id();
    let rest = |l: &str| l.split_once(' ').expect("a timestamp").1.to_string();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(
        rest(lines[0]),
        format!("uid={me} pid={mep_pid} eid={ep_id} Begin CEP session =====")
    );
    assert_eq!(
        rest(lines[1]),
        format!("uid={uep_uid} pid={pid} uep={uep_id} fid=f1 tid=t1 bid= RECEIVED")
    );
    assert_eq!(
        rest(lines[2]),
        format!("uid={uep_uid} pid={pid} uep={uep_id} fid=f1 tid=t1 bid= EXEC_END uid=0 forged")
    );
    assert_eq!(
        rest(lines[3]),
        format!("uid={me} pid={mep_pid} eid={ep_id} End CEP session -----")
    );
    for l in &lines {
        let ts = l.split_once(' ').expect("timestamp").0;
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
    }
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&audit_path).expect("meta").mode() & 0o777,
        0o600
    );
}
