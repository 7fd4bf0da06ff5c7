//! CLI commands against the real self-hosted service (`gc-service`, in process, on SQLite and
//! the local RabbitMQ at 127.0.0.1:5672), with client credentials issued by the service
//! itself: `delete`, `stop --remote`, `login`, `logout`, `whoami`, `enable-on-boot`,
//! `disable-on-boot`, and `configure` creating an authentication policy.

mod support;

use std::sync::Arc;
use std::time::Duration;

use gc_service::broker::{Broker, StaticCredentials};
use gc_service::store::{IdentityRow, Store};
use gc_service::{AppState, ServiceConfig};
use serde_json::{Value, json};
use support::{ours, ours_with, tempdir};

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const PRIMARY_IDENTITY: &str = "11111111-2222-4333-8444-555555555555";
const LINKED_IDENTITY: &str = "66666666-7777-4888-8999-aaaaaaaaaaaa";
const COMPUTE_SCOPE: &str =
    "https://auth.globus.org/scopes/facd7ccc-c5f4-42aa-916b-a0e270e2c2a9/all";

/// A running service and a client of it.
struct Svc {
    _dir: tempfile::TempDir,
    base: String,
    id: String,
    secret: String,
}

impl Svc {
    fn start() -> Svc {
        let dir = tempdir();
        let (base, id, secret) = start_service(dir.path());
        Svc {
            _dir: dir,
            base,
            id,
            secret,
        }
    }

    /// The environment that points our CLI at this service with this client.
    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("GLOBUS_SDK_SERVICE_URL_COMPUTE".into(), self.base.clone()),
            (
                "GLOBUS_SDK_SERVICE_URL_AUTH".into(),
                format!("{}/auth/", self.base),
            ),
            ("GLOBUS_COMPUTE_CLIENT_ID".into(), self.id.clone()),
            ("GLOBUS_COMPUTE_CLIENT_SECRET".into(), self.secret.clone()),
        ]
    }

    fn run(
        &self,
        compute_dir: &std::path::Path,
        args: &[&str],
        extra: &[(&str, &str)],
    ) -> support::Run {
        let env = self.env();
        let mut all: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        all.extend_from_slice(extra);
        ours_with(compute_dir, args, "", &all)
    }

    fn bearer(&self, scope: &str) -> String {
        let token: Value = reqwest::blocking::Client::new()
            .post(format!("{}/auth/v2/oauth2/token", self.base))
            .basic_auth(&self.id, Some(&self.secret))
            .form(&[("grant_type", "client_credentials"), ("scope", scope)])
            .send()
            .expect("token")
            .json()
            .expect("token json");
        token["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// Waits (up to 60 s) until the service reports endpoint `ep_id` online, i.e. has seen
    /// its first heartbeat.
    fn wait_online(&self, ep_id: &str) {
        let http = reqwest::blocking::Client::new();
        let bearer = self.bearer(COMPUTE_SCOPE);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let status: Value = http
                .get(format!("{}/v2/endpoints/{ep_id}/status", self.base))
                .bearer_auth(&bearer)
                .send()
                .expect("status")
                .json()
                .expect("status json");
            if status["status"] == "online" {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "endpoint {ep_id} never came online: {status}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Register an endpoint named `name`; returns its id.
    fn register(&self, name: &str) -> String {
        let reg: Value = reqwest::blocking::Client::new()
            .post(format!("{}/v3/endpoints", self.base))
            .bearer_auth(self.bearer(COMPUTE_SCOPE))
            .json(&json!({"endpoint_name": name, "metadata": {"endpoint_version": "0.1.0"}}))
            .send()
            .expect("register")
            .json()
            .expect("register json");
        reg["endpoint_id"]
            .as_str()
            .expect("endpoint_id")
            .to_string()
    }
}

/// `configure NAME` (no identity mapping) with `endpoint.json` naming `ep_id`.
fn configured(
    compute_dir: &std::path::Path,
    name: &str,
    ep_id: Option<&str>,
) -> std::path::PathBuf {
    let r = ours(compute_dir, &["configure", "--multi-user", "false", name]);
    assert_eq!(r.code, 0, "{r:?}");
    let dir = compute_dir.join(name);
    if let Some(id) = ep_id {
        std::fs::write(
            dir.join("endpoint.json"),
            format!(r#"{{"endpoint_id": "{id}"}}"#),
        )
        .unwrap();
    }
    dir
}

/// Start the service on a free port; returns its base URL and a client id/secret.
fn start_service(db_dir: &std::path::Path) -> (String, String, String) {
    let db = format!("sqlite://{}", db_dir.join("svc.db").display());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async move {
            let store = Store::connect(&db).await.expect("database");
            let id = uuid::Uuid::new_v4().to_string();
            let secret = gc_service::auth::random_secret();
            let hash = gc_service::auth::hash_secret(&secret).expect("hash");
            store
                .create_client(&id, "gc-endpoint test", &hash)
                .await
                .expect("client");
            for (ident, username, primary) in [
                (PRIMARY_IDENTITY, "alice@example.org", true),
                (LINKED_IDENTITY, "alice@other.example.org", false),
            ] {
                store
                    .add_identity(&IdentityRow {
                        id: ident.into(),
                        client_id: id.clone(),
                        username: username.into(),
                        name: Some("Alice Example".into()),
                        email: Some("alice@example.org".into()),
                        identity_provider: uuid::Uuid::new_v4().to_string(),
                        identity_provider_display_name: "Example".into(),
                        organization: None,
                        is_primary: primary,
                        created_at: 1,
                    })
                    .await
                    .expect("identity");
            }
            let state = AppState {
                store,
                broker: Arc::new(Broker::new(AMQP.into(), 60_000)),
                creds: Arc::new(StaticCredentials {
                    endpoint_url: AMQP.into(),
                    sdk_url: AMQP.into(),
                }),
                cfg: Arc::new(ServiceConfig::default()),
                events: Arc::new(tokio::sync::Notify::new()),
            };
            gc_service::start_background(&state)
                .await
                .expect("RabbitMQ");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            tx.send((format!("http://{addr}"), id, secret))
                .expect("send");
            axum_serve(listener, state).await;
        });
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("service start")
}

async fn axum_serve(listener: tokio::net::TcpListener, state: AppState) {
    let _ = axum::serve(listener, gc_service::router(state)).await;
}

#[test]
fn delete_removes_a_registered_endpoint_from_the_real_service() {
    let svc_dir = tempdir();
    let (base, id, secret) = start_service(svc_dir.path());
    let http = reqwest::blocking::Client::new();
    let token: Value = http
        .post(format!("{base}/auth/v2/oauth2/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "scope",
                "https://auth.globus.org/scopes/facd7ccc-c5f4-42aa-916b-a0e270e2c2a9/all",
            ),
        ])
        .send()
        .expect("token")
        .json()
        .expect("token json");
    let bearer = token["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    let reg: Value = http
        .post(format!("{base}/v3/endpoints"))
        .bearer_auth(&bearer)
        .json(&json!({"endpoint_name": "svc1", "metadata": {"endpoint_version": "0.1.0"}}))
        .send()
        .expect("register")
        .json()
        .expect("register json");
    let ep_id = reg["endpoint_id"]
        .as_str()
        .expect("endpoint_id")
        .to_string();

    let d = tempdir();
    assert_eq!(
        ours(d.path(), &["configure", "--multi-user", "false", "svc1"]).code,
        0
    );
    let dir = d.path().join("svc1");
    std::fs::write(
        dir.join("endpoint.json"),
        format!(r#"{{"endpoint_id": "{ep_id}"}}"#),
    )
    .unwrap();

    let env = [
        ("GLOBUS_SDK_SERVICE_URL_COMPUTE", base.as_str()),
        ("GLOBUS_SDK_SERVICE_URL_AUTH", &format!("{base}/auth/")),
        ("GLOBUS_COMPUTE_CLIENT_ID", id.as_str()),
        ("GLOBUS_COMPUTE_CLIENT_SECRET", secret.as_str()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, *v)).collect();
    let r = ours_with(d.path(), &["delete", "--yes", "svc1"], "", &env);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.starts_with(&format!(
        "> Endpoint {ep_id} has been deleted from the web service\n"
    )));
    assert!(!dir.exists());
    let after = http
        .get(format!("{base}/v2/endpoints/{ep_id}"))
        .bearer_auth(&bearer)
        .send()
        .expect("get");
    assert_eq!(after.status().as_u16(), 404);

    // Deleting it again: the service refuses, the (re-created) local directory is kept.
    assert_eq!(
        ours(d.path(), &["configure", "--multi-user", "false", "svc1"]).code,
        0
    );
    std::fs::write(
        dir.join("endpoint.json"),
        format!(r#"{{"endpoint_id": "{ep_id}"}}"#),
    )
    .unwrap();
    let again = ours_with(d.path(), &["delete", "--yes", "svc1"], "", &env);
    assert_ne!(again.code, 0, "{again:?}");
    assert!(dir.exists());
}

#[test]
fn stop_remote_locks_the_endpoint_on_the_service() {
    let svc = Svc::start();
    let ep_id = svc.register("rem1");
    let d = tempdir();
    configured(d.path(), "rem1", Some(&ep_id));
    let r = svc.run(d.path(), &["stop", "--remote", "rem1"], &[]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (0, "> Endpoint not active.\n"),
        "{r:?}"
    );
    // A locked endpoint cannot re-register until the lock expires.
    let again = reqwest::blocking::Client::new()
        .put(format!("{}/v3/endpoints/{ep_id}", svc.base))
        .bearer_auth(svc.bearer(COMPUTE_SCOPE))
        .json(&json!({"endpoint_name": "rem1", "metadata": {"endpoint_version": "0.1.0"}}))
        .send()
        .expect("put");
    assert_eq!(again.status().as_u16(), 423);

    // Without endpoint.json there is nothing to lock.
    configured(d.path(), "rem2", None);
    let r = svc.run(d.path(), &["stop", "--remote", "rem2"], &[]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (1, "Error: Endpoint <rem2> could not be located\n")
    );
    // Bad client secret: the Auth error block and exit 77 (once no token of this client id
    // is stored: a stored token is used as long as it is valid, as upstream's token store).
    std::fs::remove_file(d.path().join("storage.db")).expect("token store");
    let r = svc.run(
        d.path(),
        &["stop", "--remote", "rem1"],
        &[("GLOBUS_COMPUTE_CLIENT_SECRET", "wrong")],
    );
    assert_eq!(r.code, 77, "{r:?}");
    assert!(
        r.stdout.starts_with(
            "\nCompute CLI Error: An Auth API error occurred.\nHTTP status:       401\n"
        ),
        "{r:?}"
    );
}

#[test]
fn login_logout_and_whoami_with_a_client_identity() {
    let svc = Svc::start();
    let d = tempdir();
    let r = svc.run(d.path(), &["login"], &[]);
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
    // Tokens are stored now: a second login has nothing to do; a forced one with a wrong
    // secret is refused by the service.
    let r = svc.run(d.path(), &["login"], &[]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            0,
            "> Already logged in. Use --force to run login flow anyway\n"
        )
    );
    let r = svc.run(
        d.path(),
        &["login", "--force"],
        &[("GLOBUS_COMPUTE_CLIENT_SECRET", "wrong")],
    );
    assert_eq!(r.code, 77, "{r:?}");

    let r = svc.run(d.path(), &["whoami"], &[("COLUMNS", "200")]);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", r.stdout);
    assert!(lines[1].contains("Username") && lines[1].contains("Email"));
    assert!(lines[3].contains("alice@example.org") && lines[3].contains(PRIMARY_IDENTITY));
    let r = svc.run(
        d.path(),
        &["whoami", "--linked-identities"],
        &[("COLUMNS", "200")],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains(PRIMARY_IDENTITY) && r.stdout.contains(LINKED_IDENTITY));
    assert_eq!(r.stdout.lines().count(), 7, "{}", r.stdout);
    // Not logged in (no identity) and a half-set identity.
    let r = ours(d.path(), &["whoami"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            1,
            "Error: Unable to retrieve user information. Please log in again.\n"
        )
    );
    let r = ours_with(
        d.path(),
        &["whoami"],
        "",
        &[("GLOBUS_COMPUTE_CLIENT_SECRET", "x")],
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.starts_with(
        "Error: Both GLOBUS_COMPUTE_CLIENT_ID and GLOBUS_COMPUTE_CLIENT_SECRET must be set"
    ));

    // logout refuses while an endpoint runs (fresh daemon.pid), unless --force.
    let dir = configured(
        d.path(),
        "run1",
        Some("00000000-0000-4000-8000-000000000001"),
    );
    std::fs::write(dir.join("daemon.pid"), "1\n").unwrap();
    let r = svc.run(d.path(), &["logout"], &[]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            0,
            "> The following endpoints are currently running: run1\nPlease use logout --force to proceed\n"
        )
    );
    let r = svc.run(d.path(), &["logout", "--force"], &[]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            0,
            "> Logout succeeded and all cached credentials were revoked\n"
        )
    );
}

#[test]
fn enable_and_disable_on_boot_write_and_describe_the_unit() {
    let svc = Svc::start();
    let d = tempdir();
    let units = tempdir();
    let unit_dir = units.path().to_string_lossy().into_owned();
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_globus-compute-endpoint"))
        .parent()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let path_var = format!("{bin_dir}:/usr/bin:/bin");
    let env = [
        ("GCRS_SYSTEMD_UNIT_DIR", unit_dir.as_str()),
        ("PATH", path_var.as_str()),
        ("LOGNAME", "alice"),
    ];
    configured(d.path(), "boot1", None);
    let unit = units.path().join("globus-compute-endpoint-boot1.service");

    let r = svc.run(d.path(), &["disable-on-boot", "boot1"], &env);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        format!(
            "Error: There does not appear to be an existing systemd unit for endpoint boot1 (unit file {} not found)\n",
            unit.display()
        )
    );

    let r = svc.run(d.path(), &["enable-on-boot", "boot1"], &env);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.stdout,
        format!(
            "Systemd service installed at {}. Run\n\tsudo systemctl enable globus-compute-endpoint-boot1 --now\nto enable the service and start the endpoint.\n",
            unit.display()
        )
    );
    let text = std::fs::read_to_string(&unit).unwrap();
    assert_eq!(
        text,
        format!(
            "[Unit]\nDescription=Globus Compute Endpoint \"boot1\"\nAfter=network.target\nStartLimitIntervalSec=0\n\n[Service]\nExecStart={bin_dir}/globus-compute-endpoint start boot1\nUser=alice\nType=simple\nRestart=always\nRestartSec=1\n\n[Install]\nWantedBy=multi-user.target\n"
        )
    );
    // systemd itself accepts the unit, where systemd-analyze is installed.
    if let Ok(out) = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
    {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("globus-compute-endpoint-boot1.service:"),
            "systemd-analyze verify: {err}"
        );
    }

    let r = svc.run(d.path(), &["enable-on-boot", "boot1"], &env);
    assert_eq!(
        (r.code, r.stderr),
        (
            1,
            format!(
                "Error: Cannot create systemd unit file - a file with the name {} already exists\n",
                unit.display()
            )
        )
    );
    let r = svc.run(d.path(), &["disable-on-boot", "boot1"], &env);
    assert_eq!(
        (r.code, r.stdout),
        (
            0,
            format!(
                "Run the following to disable on-boot-persistence:\n\tsystemctl stop globus-compute-endpoint-boot1\n\tsystemctl disable globus-compute-endpoint-boot1\n\trm {}\n",
                unit.display()
            )
        )
    );

    // A running endpoint is refused; so is a machine without systemd.
    let dir = configured(d.path(), "boot2", None);
    std::fs::write(dir.join("daemon.pid"), "1\n").unwrap();
    let r = svc.run(d.path(), &["enable-on-boot", "boot2"], &env);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            1,
            "Error: Cannot enable on-boot persistence for an endpoint that is currently running. Stop endpoint boot2 and try again.\n"
        )
    );
    let missing = units.path().join("missing").to_string_lossy().into_owned();
    let r = svc.run(
        d.path(),
        &["enable-on-boot", "boot2"],
        &[("GCRS_SYSTEMD_UNIT_DIR", missing.as_str())],
    );
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            1,
            "Error: Systemd not found. On-boot persistence is currently only implemented for systemd; check this machine's init system documentation for alternatives.\n"
        )
    );
}

#[test]
fn configure_creates_an_authentication_policy() {
    let svc = Svc::start();
    let d = tempdir();
    let project = "99999999-8888-4777-8666-555555555555";
    let r = svc.run(
        d.path(),
        &[
            "configure",
            "--multi-user",
            "false",
            "--auth-policy-project-id",
            project,
            "--allowed-domains",
            "example.org,example.net",
            "--auth-timeout",
            "600",
            "pol1",
        ],
        &[],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let config = std::fs::read_to_string(d.path().join("pol1/config.yaml")).unwrap();
    let policy_id = config
        .lines()
        .find_map(|l| l.strip_prefix("authentication_policy: "))
        .unwrap_or_else(|| panic!("no policy in {config}"))
        .to_string();
    let policy: Value = reqwest::blocking::Client::new()
        .get(format!("{}/auth/v2/api/policies/{policy_id}", svc.base))
        .bearer_auth(svc.bearer("openid"))
        .send()
        .expect("get policy")
        .json()
        .expect("policy json");
    let p = &policy["policy"];
    assert_eq!(p["project_id"], project);
    assert_eq!(p["display_name"], "Globus Compute Authentication Policy");
    assert_eq!(p["authentication_assurance_timeout"], 600);
    assert_eq!(
        p["domain_constraints_include"],
        json!(["example.org", "example.net"])
    );

    // A high-assurance endpoint with a new HA policy that requires MFA.
    let r = svc.run(
        d.path(),
        &[
            "configure",
            "--multi-user",
            "false",
            "--high-assurance",
            "--subscription-id",
            "12121212-3434-4565-8787-909090909090",
            "--auth-policy-project-id",
            project,
            "--auth-policy-mfa-required",
            "--auth-timeout",
            "0",
            "--excluded-domains",
            "bad.example.org",
            "ha1",
        ],
        &[],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let config = std::fs::read_to_string(d.path().join("ha1/config.yaml")).unwrap();
    assert!(config.contains("high_assurance: true\n"), "{config}");
    assert!(
        config.contains("subscription_id: 12121212-3434-4565-8787-909090909090\n"),
        "{config}"
    );
    let ha_policy = config
        .lines()
        .find_map(|l| l.strip_prefix("authentication_policy: "))
        .unwrap_or_else(|| panic!("no policy in {config}"))
        .to_string();
    let policy: Value = reqwest::blocking::Client::new()
        .get(format!("{}/auth/v2/api/policies/{ha_policy}", svc.base))
        .bearer_auth(svc.bearer("openid"))
        .send()
        .expect("get policy")
        .json()
        .expect("policy json");
    let p = &policy["policy"];
    assert_eq!(p["high_assurance"], true, "{policy}");
    assert_eq!(p["required_mfa"], true, "{policy}");
    assert_eq!(p["domain_constraints_exclude"], json!(["bad.example.org"]));
    // `--auth-timeout 0` sends no timeout, as upstream.
    assert!(p["authentication_assurance_timeout"].is_null(), "{policy}");

    // The service's refusal is shown as upstream shows it; nothing is configured.
    let r = svc.run(
        d.path(),
        &[
            "configure",
            "--multi-user",
            "false",
            "--auth-policy-project-id",
            "not-a-uuid",
            "pol2",
        ],
        &[],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .starts_with("Error: Unable to create authentication policy: ["),
        "{r:?}"
    );
    assert!(!d.path().join("pol2").exists());
}

#[test]
fn start_on_a_terminal_shows_banner_and_timer_and_logs_to_the_file() {
    use std::io::Read;
    let svc = Svc::start();
    let d = tempdir();
    // Root may only start identity-mapping endpoints: as root, run the endpoint as `nobody`
    // (its own copy of the binary, a Compute directory it owns).
    let root = nix::unistd::geteuid().is_root();
    let gc_dir = d.path().join("gc");
    std::fs::create_dir(&gc_dir).unwrap();
    let mut bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_globus-compute-endpoint"));
    if root {
        use std::os::unix::fs::PermissionsExt;
        let copy = d.path().join("globus-compute-endpoint");
        std::fs::copy(&bin, &copy).unwrap();
        for p in [d.path(), copy.as_path()] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::os::unix::fs::chown(&gc_dir, Some(65534), Some(65534)).unwrap();
        bin = copy;
    }
    let as_endpoint_user = |program: &str| {
        let mut cmd = if root {
            let mut c = std::process::Command::new("setpriv");
            c.args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--",
                program,
            ]);
            c
        } else {
            std::process::Command::new(program)
        };
        cmd.env("GLOBUS_COMPUTE_USER_DIR", &gc_dir)
            .env("HOME", &gc_dir)
            .env_remove("GLOBUS_COMPUTE_ENDPOINT_DIR");
        for (k, v) in svc.env() {
            cmd.env(k, v);
        }
        cmd
    };
    let configure = as_endpoint_user(bin.to_str().unwrap())
        .args(["configure", "--multi-user", "false", "tty1"])
        .output()
        .expect("configure");
    assert!(configure.status.success(), "{configure:?}");
    let dir = gc_dir.join("tty1");
    // `script` gives the endpoint a terminal on stdin, stdout and stderr and copies what it
    // prints to its own stdout.
    // Runs `<bin> <words>` on a terminal until the banner and two timer lines show, stops
    // the endpoint with `stop` (or `stopper`), and returns what the terminal showed.
    let on_terminal_then = |words: &str, stopper: &dyn Fn()| -> String {
        let mut cmd = as_endpoint_user("script");
        cmd.args(["-q", "-f", "-e", "-c"])
            .arg(format!("{} {words}", bin.display()))
            .arg("/dev/null")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().expect("script");
        let mut out = child.stdout.take().expect("stdout");
        let seen = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let reader = {
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = out.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    seen.lock().expect("lock").extend_from_slice(&buf[..n]);
                }
            })
        };
        let text = || String::from_utf8_lossy(&seen.lock().expect("lock")).into_owned();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !(text().contains(">>> Endpoint ID: ") && text().matches("  ----> ").count() >= 2) {
            assert!(
                std::time::Instant::now() < deadline,
                "no banner and timer: {:?}",
                text()
            );
            assert!(
                child.try_wait().expect("wait").is_none(),
                "exited: {:?}",
                text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        stopper();
        assert!(child.wait().expect("wait").success());
        reader.join().expect("reader");
        text()
    };
    let stop = || {
        let r = ours(&gc_dir, &["stop", "tty1"]);
        assert_eq!(r.code, 0, "{r:?}");
        assert_eq!(r.stderr, "> Endpoint <tty1> is now stopped\n");
    };
    let on_terminal = |words: &str| on_terminal_then(words, &stop);
    let shown = on_terminal("start tty1 --log-to-console");

    let ep_json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("endpoint.json")).unwrap()).unwrap();
    let ep_id = ep_json["endpoint_id"].as_str().unwrap();
    assert!(
        shown.contains(&format!(
            "\x1b[?25l        >>> Endpoint ID: \x1b[104m{ep_id}\x1b[m <<<"
        )),
        "{shown:?}"
    );
    let timer =
        regex::Regex::new(r"  ----> [A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}\r")
            .unwrap();
    assert!(timer.is_match(&shown), "{shown:?}");
    assert!(shown.contains("\x1b[?25h"), "{shown:?}");
    // --log-to-console: INFO lines as `> …` on the terminal.
    assert!(
        shown.contains(&format!(
            "> \r\n\r\n========== Core Endpoint begins: {ep_id}"
        )),
        "{shown:?}"
    );
    // The log file: full lines, private.
    let log = std::fs::read_to_string(dir.join("endpoint.log")).unwrap();
    let line = regex::Regex::new(&format!(
        r"(?m)^\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d{{6}} INFO MainProcess-\d+ \S+-\d+ \S+:\d+ \S+ \n\n========== Core Endpoint begins: {ep_id}$"
    ))
    .unwrap();
    assert!(line.is_match(&log), "{log}");
    assert!(log.contains(&format!("---------- Core Endpoint ends: {ep_id}")));
    assert_eq!(support::mode(&dir.join("endpoint.log")), 0o600);

    // restart: the stop half cleans up a stale PID file, the start half runs as `start`
    // (without --log-to-console nothing but the banner and timer reaches the terminal).
    let pid_path = dir.join("daemon.pid");
    std::fs::write(&pid_path, "1\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&pid_path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let shown = on_terminal("restart tty1");
    assert!(
        shown.starts_with(&format!(
            "> Endpoint <tty1> has been cleaned up.\r\n\x1b[?25l        >>> Endpoint ID: \x1b[104m{ep_id}\x1b[m <<<\r\n  ----> "
        )),
        "{shown:?}"
    );
    assert!(!shown.contains("Core Endpoint begins"), "{shown:?}");

    // start --detach: returns once the background endpoint holds its PID file.
    let detached = as_endpoint_user(bin.to_str().unwrap())
        .args(["start", "tty1", "--detach"])
        .output()
        .expect("start --detach");
    assert!(detached.status.success(), "{detached:?}");
    assert_eq!(
        String::from_utf8_lossy(&detached.stdout),
        "> Endpoint tty1 starting in detached mode.\n"
    );
    let list = ours(&gc_dir, &["list"]);
    assert!(
        list.stdout.contains(&format!("| {ep_id} | Running ")),
        "{list:?}"
    );
    stop();

    // delete of a running endpoint: refused without --force (the service reports it
    // online); with --force the local instance is stopped first, as upstream does.
    let delete = || {
        // Refused only once the service has seen the endpoint's first heartbeat.
        svc.wait_online(ep_id);
        let r = svc.run(&gc_dir, &["delete", "--yes", "tty1"], &[]);
        assert_eq!(r.code, 255, "{r:?}");
        assert!(r.stderr.contains(" WARNING MainProcess-"), "{r:?}");
        assert!(
            r.stderr.contains(&format!(
                "Endpoint {ep_id} is currently running.  To proceed with deletion, first stop the endpoint, or ignore the current status with `delete --force`"
            )),
            "{r:?}"
        );
        let r = svc.run(&gc_dir, &["delete", "--force", "--yes", "tty1"], &[]);
        assert_eq!(r.code, 0, "{r:?}");
        assert!(
            r.stderr.starts_with(&format!(
                "> Endpoint <tty1> is now stopped\n> Endpoint {ep_id} has been deleted from the web service\n"
            )),
            "{r:?}"
        );
    };
    on_terminal_then("start tty1", &delete);
    assert!(!dir.exists());
}
