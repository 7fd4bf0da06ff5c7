//! The MEP event loop (ENDPOINT §4.3, §4.6, §4.7): command queue, UEP children, heartbeats,
//! shutdown.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gc_broker::{
    ConsumeTarget, NoticeTarget, PublishTarget, Publisher, PublisherOptions, Subscriber,
    SubscriberOptions,
};
use gc_config::{CoreEndpointConfig, Number};
use gc_wire::mep_command::StartEndpoint;
use gc_wire::messagepack::{self, EpStatusReport, Message};
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::command::{self, Envelope, Rejection};
use crate::register::Registration;
use crate::uep::{self, Context, LocalUser};

/// How long the final heartbeat and failure notices may take.
const PUBLISH_WAIT: Duration = Duration::from_secs(10);
/// How long children get after SIGTERM (and again after SIGKILL).
const CHILD_WAIT: Duration = Duration::from_secs(10);

/// Why the runtime could not run.
#[derive(Debug, thiserror::Error)]
pub enum MepError {
    /// The registration's queue infos are unusable.
    #[error("Invalid or unexpected registration data structure: {0}")]
    QueueInfo(#[from] gc_broker::ConfigError),
    /// The endpoint id is not a UUID.
    #[error("endpoint id {0:?} is not a UUID")]
    EndpointId(String),
    /// The current executable could not be determined.
    #[error("cannot determine the current executable: {0}")]
    CurrentExe(#[source] std::io::Error),
    /// The identity mapping file could not be loaded (ENDPOINT §4.2 step 8).
    #[error("{0} -- Unable to read identity mapping configuration")]
    IdentityMapping(#[from] gc_idmap::FileError),
    /// A multi-user endpoint needs `email`.
    #[error("Multi-user endpoints require a contact email; set `email` in config.yaml.")]
    NoEmail,
    /// The HA audit log could not be opened or its `Begin` line written.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

impl MepError {
    /// Exit status (upstream: 70 for a malformed registration).
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        match self {
            MepError::QueueInfo(_) | MepError::EndpointId(_) => 70,
            MepError::CurrentExe(_) | MepError::NoEmail | MepError::Audit(_) => 1,
            MepError::IdentityMapping(e) => i32::from(e.exit_code()),
        }
    }
}

/// What ended a run that started successfully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopCause {
    /// The shutdown future completed (a signal).
    Requested,
    /// The command-queue subscriber gave up.
    CommandQueueLost(String),
    /// A line could not be written to the HA audit log (ENDPOINT §4.10).
    AuditLogFailed(String),
}

/// Something the runtime did, reported on [`MepOptions::events`] (for supervisors and tests).
#[derive(Debug, Clone, PartialEq)]
pub enum MepEvent {
    /// A command was refused; `notice` tells whether a failure notice was sent for it.
    Rejected { text: String, notice: bool },
    /// A start failed before the UEP ran (a failure notice was sent).
    StartFailed { name: String, text: String },
    /// A UEP process was started.
    Spawned { pid: u32, name: String },
    /// A start command for a running UEP was cached instead (§4.3).
    Duplicate { pid: u32, name: String },
    /// A UEP process ended (`code` is `None` when killed by a signal).
    Exited {
        pid: u32,
        name: String,
        code: Option<i32>,
    },
}

/// Settings of one MEP run.
#[derive(Debug, Clone)]
pub struct MepOptions {
    /// The endpoint (directory) name.
    pub name: String,
    /// `<compute dir>/<name>`.
    pub endpoint_dir: PathBuf,
    /// The loaded `config.yaml`.
    pub config: CoreEndpointConfig,
    /// Where UEP directories go: `$GLOBUS_COMPUTE_USER_DIR` or `~/.globus_compute`.
    pub compute_dir: PathBuf,
    /// The program exec'd for a UEP; defaults to the current executable (which must be
    /// `globus-compute-endpoint`, whose `_start-user-endpoint` runs the UEP).
    pub child_program: PathBuf,
    /// Where to report [`MepEvent`]s, if anywhere.
    pub events: Option<mpsc::UnboundedSender<MepEvent>>,
    /// Identity mapping (a privileged MEP with `identity_mapping_config_path`): start
    /// commands are mapped to local users and UEPs run as them (ENDPOINT §4.4–§4.5).
    pub identity_mapping: Option<Arc<gc_idmap::ReloadingMapping>>,
}

impl MepOptions {
    /// Options with `compute_dir` = the parent of `endpoint_dir` and the current executable
    /// as the UEP program.
    pub fn new(
        name: impl Into<String>,
        endpoint_dir: PathBuf,
        config: CoreEndpointConfig,
    ) -> Result<Self, MepError> {
        let identity_mapping = match &config.identity_mapping_config_path {
            Some(path) if crate::privilege::can_change_user() => {
                if config.email.is_none() {
                    return Err(MepError::NoEmail);
                }
                Some(Arc::new(gc_idmap::ReloadingMapping::open(path.clone())?))
            }
            _ => None,
        };
        let compute_dir = endpoint_dir
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(MepOptions {
            name: name.into(),
            endpoint_dir,
            compute_dir,
            child_program: std::env::current_exe().map_err(MepError::CurrentExe)?,
            events: None,
            identity_mapping,
            config,
        })
    }
}

/// A reaped child: pid, status, and the bootstrap's stderr text (mapped users only).
type Exit = (u32, std::io::Result<ExitStatus>, Option<String>);

/// One live UEP child.
struct Child {
    /// The local user it runs as (for notices).
    user: String,
    name: String,
    /// The start command's `amqp_creds`, for a notice if the process is killed.
    amqp_creds: Map<String, Value>,
    describe: String,
    /// A repeated start command seen while this child ran (§4.3), for the revive rule.
    cached: Option<(Instant, StartEndpoint)>,
    /// The writable side of its credential memfd (rewritten on a repeated start command).
    credentials: gc_sys::credfd::CredentialFd,
}

/// A fresh credential memfd holding `amqp_creds` (ENDPOINT §4.5 step 5), and the read-only
/// handle for the child's descriptor 3.
fn credential_memfd(
    amqp_creds: &Map<String, Value>,
) -> Result<(gc_sys::credfd::CredentialFd, std::os::fd::OwnedFd), uep::PrepareError> {
    let made = gc_sys::credfd::CredentialFd::create().and_then(|c| {
        c.write(&uep::credential_plaintext(amqp_creds))?;
        let reader = c.reader()?;
        Ok((c, reader))
    });
    made.map_err(|e| uep::PrepareError {
        code: 70,
        kind: "OSError".into(),
        message: e.to_string(),
    })
}

/// `heartbeat_period` as the JSON number upstream sends (int, or float from the clamp).
fn period_value(n: Number) -> (Value, Duration) {
    match n {
        Number::Int(i) => {
            let i = i.max(5);
            (Value::from(i), Duration::from_secs(i.unsigned_abs()))
        }
        Number::Float(f) => {
            let f = if f.is_finite() { f.max(5.0) } else { 5.0 };
            (Value::from(f), Duration::from_secs_f64(f))
        }
    }
}

fn status_report(endpoint_id: uuid::Uuid, period: Value) -> Vec<u8> {
    let mut global_state = Map::new();
    global_state.insert("heartbeat_period".into(), period);
    messagepack::pack(&Message::EpStatusReport(EpStatusReport {
        endpoint_id,
        global_state,
        task_statuses: Default::default(),
    }))
}

/// Publishes a failure notice (§4.6) in the background, to the UEP's heartbeat queue.
fn send_failure_notice(amqp_creds: &Map<String, Value>, text: String) {
    let Some(id) = amqp_creds
        .get("endpoint_id")
        .and_then(Value::as_str)
        .and_then(|s| uuid::Uuid::parse_str(s).ok())
    else {
        tracing::error!("Unable to send failure notice: amqp_creds has no valid endpoint_id");
        return;
    };
    let target = match amqp_creds
        .get("heartbeat_queue_info")
        .map(NoticeTarget::from_json)
    {
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            tracing::error!("Unable to send failure notice: {e}");
            return;
        }
        None => {
            tracing::error!("Unable to send failure notice: no heartbeat_queue_info");
            return;
        }
    };
    let body = messagepack::pack(&Message::EpStatusReport(EpStatusReport::failure_notice(
        id, text,
    )));
    tokio::spawn(async move {
        if let Err(e) = gc_broker::send_notice(&target, &body, PUBLISH_WAIT).await {
            tracing::error!("Unable to send failure notice: {e}");
        }
    });
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Waits for SIGTERM, SIGINT or SIGQUIT (§4.7). If the handlers cannot be installed it waits
/// forever (the process can still be killed).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let kinds = [
        SignalKind::terminate(),
        SignalKind::interrupt(),
        SignalKind::quit(),
    ];
    let mut streams: Vec<_> = kinds.into_iter().filter_map(|k| signal(k).ok()).collect();
    if streams.is_empty() {
        std::future::pending::<()>().await;
    }
    let waits = streams.iter_mut().map(|s| Box::pin(s.recv()));
    futures_select_all(waits).await;
}

async fn futures_select_all<F: Future + Unpin>(futs: impl Iterator<Item = F>) {
    let mut futs: Vec<F> = futs.collect();
    std::future::poll_fn(|cx| {
        for f in futs.iter_mut() {
            if std::pin::Pin::new(f).poll(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await;
}

struct Mep {
    opts: MepOptions,
    registration: Registration,
    base_env: BTreeMap<String, String>,
    children: HashMap<u32, Child>,
    exits: mpsc::UnboundedSender<Exit>,
    stopping: bool,
    privileged: bool,
    /// The HA audit log, when `high_assurance` and `audit_log_path` are both set.
    audit: Option<Arc<crate::audit::AuditLog>>,
}

/// Runs the MEP until `shutdown` completes or the command queue is lost, then shuts down:
/// final heartbeat (`heartbeat_period: 0`), SIGTERM to every UEP, SIGKILL to the process
/// groups of those still alive after 10 s.
pub async fn run(
    opts: MepOptions,
    registration: Registration,
    shutdown: impl Future<Output = ()>,
) -> Result<StopCause, MepError> {
    let endpoint_id = uuid::Uuid::parse_str(&registration.endpoint_id)
        .map_err(|_| MepError::EndpointId(registration.endpoint_id.clone()))?;
    let amqp_port = opts
        .config
        .base
        .amqp_port
        .and_then(|p| u16::try_from(p).ok());
    let consume = ConsumeTarget::from_json(&registration.command_queue_info, amqp_port)?;
    let heartbeat = PublishTarget::from_json(&registration.heartbeat_queue_info, None)?;
    let (period, period_duration) = period_value(opts.config.base.heartbeat_period);

    tracing::info!("\n\n========== Core Endpoint begins: {endpoint_id}");
    let mut subscriber = Subscriber::start(
        consume,
        SubscriberOptions {
            exclusive: false,
            ..Default::default()
        },
    );
    let publisher = Publisher::start(heartbeat, PublisherOptions::default());
    let (exit_tx, mut exit_rx) = mpsc::unbounded_channel();
    let (audit_tx, mut audit_rx) = mpsc::unbounded_channel();
    let audit = match (
        &opts.config.base.high_assurance,
        &opts.config.audit_log_path,
    ) {
        (true, Some(path)) => Some(crate::audit::AuditLog::open(
            path,
            &endpoint_id.to_string(),
            audit_tx,
        )?),
        _ => None,
    };
    let mut mep = Mep {
        audit,
        base_env: std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect(),
        opts,
        registration,
        children: HashMap::new(),
        exits: exit_tx,
        stopping: false,
        privileged: crate::privilege::is_privileged(),
    };

    let mut ticker = tokio::time::interval(period_duration);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    let cause = loop {
        tokio::select! {
            () = &mut shutdown => break StopCause::Requested,
            _ = ticker.tick() => {
                match publisher.publish(status_report(endpoint_id, period.clone())).await {
                    Ok(confirm) => {
                        tokio::spawn(async move {
                            if let Err(e) = confirm.await {
                                tracing::error!("Heartbeat not confirmed: {e}");
                            }
                        });
                    }
                    Err(e) => tracing::error!("Unable to send heartbeat: {e}"),
                }
            }
            delivery = subscriber.next() => match delivery {
                Ok(d) => {
                    // Acked as soon as dequeued, as upstream.
                    subscriber.handed_off(d.token);
                    mep.handle(&d).await;
                }
                Err(e) => {
                    tracing::error!("Command queue consumer stopped: {e}");
                    break StopCause::CommandQueueLost(e.to_string());
                }
            },
            Some((pid, status, text)) = exit_rx.recv() => mep.reaped(pid, status, text).await,
            Some(e) = audit_rx.recv() => {
                tracing::error!("{e}");
                break StopCause::AuditLogFailed(e.to_string());
            }
        }
    };

    mep.stopping = true;
    subscriber.close().await;
    let final_report = status_report(endpoint_id, Value::from(0));
    let sent = tokio::time::timeout(PUBLISH_WAIT, publisher.publish_confirmed(final_report)).await;
    match sent {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("Unable to send final heartbeat -- ({}) {e}", "PublishError"),
        Err(_) => tracing::warn!("Unable to send final heartbeat -- (TimeoutError) timed out"),
    }
    publisher.close().await;
    mep.stop_children(&mut exit_rx).await;
    if let Some(audit) = mep.audit.take() {
        // Drains the pipes (bounded), then the `End` line.
        match tokio::task::spawn_blocking(move || audit.finish()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("{e}"),
            Err(e) => tracing::error!("Audit log drain failed: {e}"),
        }
    }
    tracing::info!("Shutdown complete.\n---------- Core Endpoint ends: {endpoint_id}\n\n");
    Ok(cause)
}

/// The UEP's endpoint id, for audit records (from the start command's `amqp_creds`).
fn uep_id(start: &StartEndpoint) -> String {
    match start.amqp_creds.get("endpoint_id") {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    }
}

impl Mep {
    /// With the audit log on: a new packet pipe whose write end `cmd`'s child gets as
    /// descriptor 4, and the reader of its read end (to start once the pid is known).
    fn audit_pipe(
        &self,
        cmd: &mut std::process::Command,
    ) -> Result<Option<crate::audit::PendingReader>, crate::audit::AuditError> {
        let Some(audit) = &self.audit else {
            return Ok(None);
        };
        let (write, reader) = audit.pipe()?;
        gc_sys::place_fd_before_exec(cmd, write, crate::audit::UEP_AUDIT_FD);
        Ok(Some(reader))
    }

    fn event(&self, event: MepEvent) {
        if let Some(tx) = &self.opts.events {
            let _ = tx.send(event);
        }
    }

    async fn handle(&mut self, d: &gc_broker::Delivery) {
        let props = &d.properties;
        if let Some(headers) = d.headers() {
            if let Some(v) = headers.inner().get("debug") {
                if !matches!(
                    v,
                    gc_broker::AMQPValue::Boolean(false) | gc_broker::AMQPValue::Void
                ) {
                    tracing::warn!(
                        "Command received (debug): {}",
                        command::redacted_dump(&d.body)
                    );
                }
            }
        }
        let envelope = Envelope {
            content_type: props.content_type().as_ref().map(|s| s.as_str()),
            timestamp: *props.timestamp(),
        };
        let owners = self
            .opts
            .identity_mapping
            .is_none()
            .then_some(&self.registration.identity_set);
        match command::check(envelope, &d.body, now_s(), owners) {
            Err(Rejection::Drop(text)) => {
                tracing::error!("{text}");
                self.event(MepEvent::Rejected {
                    text,
                    notice: false,
                });
            }
            Err(Rejection::Notice { text, amqp_creds }) => {
                tracing::error!("{text}");
                let notice = amqp_creds.is_some();
                match amqp_creds {
                    Some(creds) => send_failure_notice(&creds, text.clone()),
                    None => {
                        tracing::error!("No amqp_creds in command; unable to send failure notice")
                    }
                }
                self.event(MepEvent::Rejected { text, notice });
            }
            Ok(start) => self.start(start).await,
        }
    }

    async fn start(&mut self, start: StartEndpoint) {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some((pid, child)) = self.children.iter_mut().find(|(_, c)| c.name == start.name) {
            tracing::info!(
                "User endpoint {} is already running (pid: {pid}); updating credentials then \
                 caching arguments in case it's about to shut down",
                start.name
            );
            // The UEP reads the new credentials at its next reconnect (PE §5.4).
            match child
                .credentials
                .write(&uep::credential_plaintext(&start.amqp_creds))
            {
                Ok(()) => child.amqp_creds = start.amqp_creds.clone(),
                Err(e) => tracing::error!(
                    "Unable to update the credentials of user endpoint {} (pid: {pid}): {e}",
                    start.name
                ),
            }
            child.cached = Some((Instant::now(), start));
            let event = MepEvent::Duplicate {
                pid: *pid,
                name: child.name.clone(),
            };
            self.event(event);
            return;
        }
        if self.opts.identity_mapping.is_some() {
            return self.start_mapped(start).await;
        }
        let ctx = Context {
            uid_change: false,
            endpoint_dir: &self.opts.endpoint_dir,
            config: &self.opts.config,
            compute_dir: &self.opts.compute_dir,
            base_env: &self.base_env,
            mep_pid: std::process::id(),
            privileged: self.privileged,
            program_dir: self.opts.child_program.parent(),
            audit_fd: self.audit.is_some().then_some(crate::audit::UEP_AUDIT_FD),
            credential_key: None,
        };
        let user = command::display(&start.globus_username);
        let fail = |e: uep::PrepareError| {
            let text = format!("Unable to start user endpoint process for {user} {e}");
            tracing::error!("{text}");
            send_failure_notice(&start.amqp_creds, text.clone());
            self.event(MepEvent::StartFailed {
                name: start.name.clone(),
                text,
            });
        };
        let (credentials, cred_reader) = match credential_memfd(&start.amqp_creds) {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        let key = credentials.key().to_text();
        let ctx = Context {
            credential_key: Some(&key),
            ..ctx
        };
        let prepared = match uep::prepare(&ctx, &start) {
            Ok(p) => p,
            Err(e) => return fail(e),
        };
        let log = match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(nix::fcntl::OFlag::O_SYNC.bits())
            .open(&prepared.log_path)
        {
            Ok(f) => f,
            Err(e) => {
                return fail(uep::PrepareError {
                    code: 79,
                    kind: "OSError".into(),
                    message: e.to_string(),
                });
            }
        };
        if prepared.debug {
            // The configuration dump (ENDPOINT §3.7 step 6), secrets redacted.
            use std::io::Write as _;
            let dump = uep::config_dump(&prepared.config, chrono::Local::now());
            if let Err(e) = (&log).write_all(dump.as_bytes()) {
                return fail(uep::PrepareError {
                    code: 81,
                    kind: "OSError".into(),
                    message: e.to_string(),
                });
            }
        }
        let log2 = match log.try_clone() {
            Ok(f) => f,
            Err(e) => {
                return fail(uep::PrepareError {
                    code: 80,
                    kind: "OSError".into(),
                    message: e.to_string(),
                });
            }
        };
        let mut cmd = tokio::process::Command::new(&self.opts.child_program);
        cmd.arg0("globus-compute-endpoint")
            .args(&prepared.args)
            .env_clear()
            .envs(&prepared.env)
            .current_dir(&prepared.cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .process_group(0);
        // Only 0–2, the credential memfd at 3 and the audit pipe at 4 (both placed after this)
        // reach the UEP (PE §5.3).
        gc_sys::cloexec_above_stdio_before_exec(cmd.as_std_mut());
        gc_sys::place_fd_before_exec(cmd.as_std_mut(), cred_reader, uep::CREDENTIAL_FD);
        let reader = match self.audit_pipe(cmd.as_std_mut()) {
            Ok(r) => r,
            Err(e) => {
                return fail(uep::PrepareError {
                    code: 81,
                    kind: "OSError".into(),
                    message: e.to_string(),
                });
            }
        };
        let spawned = cmd.spawn();
        // Closes the MEP's copy of the audit pipe's write end (owned by the hook).
        drop(cmd);
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                return fail(uep::PrepareError {
                    code: 83,
                    kind: "FileNotFoundError".into(),
                    message: format!("{e}: {}", self.opts.child_program.display()),
                });
            }
        };
        let Some(pid) = child.id() else {
            return;
        };
        if let Some(reader) = reader {
            reader.start(nix::unistd::getuid().as_raw(), pid, uep_id(&start));
        }
        let describe = format!(
            "({user}, {}) globus-compute-endpoint {}",
            start.name,
            prepared.args.join(" ")
        );
        tracing::info!("Creating new user endpoint (pid: {pid}) [{describe}]");
        if let Some(mut stdin) = child.stdin.take() {
            if let Err(e) = stdin.write_all(&prepared.stdin).await {
                tracing::error!("Unable to write the stdin document of pid {pid}: {e}");
            }
            drop(stdin);
        }
        let exits = self.exits.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let _ = exits.send((pid, status, None));
        });
        self.children.insert(
            pid,
            Child {
                user: user.clone(),
                name: start.name.clone(),
                amqp_creds: start.amqp_creds.clone(),
                describe,
                cached: None,
                credentials,
            },
        );
        self.event(MepEvent::Spawned {
            pid,
            name: start.name.clone(),
        });
        tracing::info!(
            "Command process successfully forked for '{user}' (Globus effective identity: {}).",
            command::display(&start.globus_effective_identity)
        );
    }

    /// Maps the command's identity set to a local account (ENDPOINT §4.4, IDENTITY-MAPPING
    /// §7); the error is the failure-notice text.
    async fn map_identity(
        &self,
        mapping: &Arc<gc_idmap::ReloadingMapping>,
        start: &StartEndpoint,
    ) -> Result<(LocalUser, Option<String>), String> {
        let identity_lines = format!(
            "\n  Globus effective identity: {}\n  Globus username: {}",
            command::display(&start.globus_effective_identity),
            command::display(&start.globus_username)
        );
        let ids = serde_json::to_string(&start.globus_identity_set)
            .ok()
            .and_then(|t| gc_idmap::json::parse(&t).ok());
        let Some(gc_idmap::json::Json::Array(ids)) = ids else {
            return Err(format!(
                "Unhandled error attempting to map to a local user name.{identity_lines}"
            ));
        };
        let mapping = Arc::clone(mapping);
        let ctx = gc_idmap::ExternalContext::for_endpoint(self.registration.endpoint_id.clone());
        // External mappers run programs: keep them off the event loop.
        let outcome = tokio::task::spawn_blocking(move || {
            if let gc_idmap::ReloadStatus::Kept(e) = mapping.reload_if_changed() {
                tracing::error!(
                    "Identity mapping file not reloaded; keeping the previous one: {e}"
                );
            }
            mapping.current().map_identities(&ids, &ctx)
        })
        .await
        .map_err(|e| {
            format!("Unhandled error attempting to map to a local user name. ({e}){identity_lines}")
        })?;
        let (username, globus_id) = match outcome {
            gc_idmap::MappingOutcome::Mapped {
                identity_id,
                username,
            } => (username, identity_id.as_str().map(String::from)),
            gc_idmap::MappingOutcome::EmptyUsername { .. }
            | gc_idmap::MappingOutcome::NoMapping => {
                return Err(format!(
                    "Identity failed to map to a local user name.  (LookupError) no mapping \
                     configuration matched the identity set{identity_lines}"
                ));
            }
        };
        match LocalUser::by_name(&username) {
            Ok(Some(user)) => Ok((user, globus_id)),
            Ok(None) | Err(_) => Err(format!(
                "(KeyError)\n  Identity mapped to a local user name, but local user does not \
                 exist.\n  Local user name: {username}{identity_lines}"
            )),
        }
    }

    /// §4.5 for a mapped user: lookups and privileged reads here, the rest in the bootstrap
    /// program ([`crate::bootstrap`]) after the privilege drop.
    async fn start_mapped(&mut self, start: StartEndpoint) {
        let Some(mapping) = self.opts.identity_mapping.clone() else {
            return;
        };
        let refuse = |this: &Self, text: String| {
            tracing::error!("{text}");
            send_failure_notice(&start.amqp_creds, text.clone());
            this.event(MepEvent::StartFailed {
                name: start.name.clone(),
                text,
            });
        };
        let (user, globus_id) = match self.map_identity(&mapping, &start).await {
            Ok(found) => found,
            Err(text) => return refuse(self, text),
        };
        let my_uid = nix::unistd::getuid().as_raw();
        let me = LocalUser::current();
        if user.uid == my_uid || me.as_ref().is_some_and(|m| m.name == user.name) {
            tracing::error!(
                "Requested UID is same as Core Endpoint UID on a user-mapped Core Endpoint. To \
                 allow the same UID to run tasks, consider:\n * using a non-root user,\n * \
                 removing privileges from the UID, or\n * removing the identity mapping \
                 configuration file ({}).\n\nDetails:\n  MU Process UID: {my_uid} ({})\n  \
                 Requested UID:  {} ({})\n  Via identity:   {}",
                mapping.path().display(),
                me.as_ref().map(|m| m.name.as_str()).unwrap_or(""),
                user.uid,
                user.name,
                globus_id.as_deref().unwrap_or("None"),
            );
            return refuse(self, command::INVALID_COMMAND_TEXT.to_string());
        }
        let start_failed = |this: &Self, e: uep::PrepareError| {
            refuse(
                this,
                format!(
                    "Unable to start user endpoint process for {} {e}",
                    user.name
                ),
            )
        };
        let sources = match uep::read_sources(&self.opts.endpoint_dir, &self.opts.config) {
            Ok(s) => s,
            Err(e) => return start_failed(self, e),
        };
        let config_path = self.opts.endpoint_dir.join("config.yaml");
        let config_yaml = match std::fs::read_to_string(&config_path) {
            Ok(t) => t,
            Err(e) => {
                return start_failed(
                    self,
                    uep::PrepareError {
                        code: 70,
                        kind: "OSError".into(),
                        message: format!("{}: {e}", config_path.display()),
                    },
                );
            }
        };
        let (credentials, cred_reader) = match credential_memfd(&start.amqp_creds) {
            Ok(c) => c,
            Err(e) => return start_failed(self, e),
        };
        let pam = &self.opts.config.pam;
        let document = crate::bootstrap::Document {
            name: start.name.clone(),
            args: start.args.clone(),
            user_opts: start.user_opts.clone(),
            user_runtime: start.user_runtime.clone(),
            enckey: credentials.key().to_text(),
            config_yaml,
            config_source: config_path.display().to_string(),
            sources,
            user: user.clone(),
            globus_id: globus_id.clone(),
            mep_pid: std::process::id(),
            program: self.opts.child_program.clone(),
            pam_service: pam.enable.then(|| pam.service_name.clone()),
            audit_fd: self.audit.is_some().then_some(crate::audit::UEP_AUDIT_FD),
        };
        let document = match serde_json::to_vec(&document) {
            Ok(d) => d,
            Err(e) => {
                return start_failed(
                    self,
                    uep::PrepareError {
                        code: 70,
                        kind: "ValueError".into(),
                        message: e.to_string(),
                    },
                );
            }
        };
        let mut cmd = std::process::Command::new(&self.opts.child_program);
        {
            use std::os::unix::process::CommandExt;
            cmd.arg0("globus-compute-endpoint")
                .arg(crate::bootstrap::SUBCOMMAND)
                .arg(&start.name)
                .env_clear()
                // The bootstrap has no Compute directory of its own (it uses the user's, from
                // the document); "/" keeps the CLI from creating one in a home that may not
                // exist.
                .env("GLOBUS_COMPUTE_USER_DIR", "/")
                .current_dir("/")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
        }
        if !pam.enable {
            let who = gc_sys::Identity {
                uid: gc_sys::Uid(user.uid),
                gid: gc_sys::Gid(user.gid),
                groups: user.groups.iter().copied().map(gc_sys::Gid).collect(),
            };
            // A failed step exits with its ladder status and says which step on stderr.
            let opts = gc_sys::DropOptions {
                exit_on_failure: true,
                ..gc_sys::DropOptions::default()
            };
            gc_sys::drop_before_exec(&mut cmd, who, opts);
        } else {
            // The PAM bootstrap keeps root until it has opened the session; it still must not
            // inherit anything of the MEP's but 0–2 and the descriptors placed below.
            gc_sys::cloexec_above_stdio_before_exec(&mut cmd);
        }
        // After the hooks above, which mark every descriptor above 2 close-on-exec.
        gc_sys::place_fd_before_exec(&mut cmd, cred_reader, uep::CREDENTIAL_FD);
        let reader = match self.audit_pipe(&mut cmd) {
            Ok(r) => r,
            Err(e) => {
                return start_failed(
                    self,
                    uep::PrepareError {
                        code: 70,
                        kind: "OSError".into(),
                        message: e.to_string(),
                    },
                );
            }
        };
        // The temporary Command (and with it the MEP's copy of the audit pipe's write end) is
        // dropped at the end of this statement.
        let mut child = match tokio::process::Command::from(cmd).spawn() {
            Ok(c) => c,
            Err(e) => {
                // A failed privilege drop fails the spawn (the hook can only return errno).
                tracing::error!(
                    "Unable to start the user endpoint bootstrap as {} (uid {}): {e}",
                    user.name,
                    user.uid
                );
                return start_failed(
                    self,
                    uep::PrepareError {
                        code: 71,
                        kind: "PermissionError".into(),
                        message: "see your system administrator".into(),
                    },
                );
            }
        };
        let Some(pid) = child.id() else {
            return;
        };
        if let Some(reader) = reader {
            reader.start(user.uid, pid, uep_id(&start));
        }
        let describe = format!(
            "({}, {}) globus-compute-endpoint _start-user-endpoint {} {}",
            user.name,
            start.name,
            start.name,
            start.args.join(" ")
        );
        tracing::info!("Creating new user endpoint (pid: {pid}) [{describe}]");
        if let Some(mut stdin) = child.stdin.take() {
            if let Err(e) = stdin.write_all(&document).await {
                tracing::error!("Unable to write the bootstrap document of pid {pid}: {e}");
            }
            drop(stdin);
        }
        let stderr = child.stderr.take();
        let exits = self.exits.clone();
        tokio::spawn(async move {
            let mut text = String::new();
            if let Some(mut err) = stderr {
                use tokio::io::AsyncReadExt;
                let mut bytes = Vec::new();
                let _ = err.read_to_end(&mut bytes).await;
                text = String::from_utf8_lossy(&bytes).into_owned();
                for line in text.lines() {
                    tracing::warn!("UserEndpointProcess_Bootstrap(PreExec) [pid {pid}] {line}");
                }
            }
            let status = child.wait().await;
            let _ = exits.send((pid, status, Some(text)));
        });
        self.children.insert(
            pid,
            Child {
                user: user.name.clone(),
                name: start.name.clone(),
                amqp_creds: start.amqp_creds.clone(),
                describe,
                cached: None,
                credentials,
            },
        );
        self.event(MepEvent::Spawned {
            pid,
            name: start.name.clone(),
        });
        tracing::info!(
            "Command process successfully forked for '{}' (Globus effective identity: {}).",
            user.name,
            command::display(&start.globus_effective_identity)
        );
    }

    async fn reaped(
        &mut self,
        pid: u32,
        status: std::io::Result<ExitStatus>,
        bootstrap: Option<String>,
    ) {
        use std::os::unix::process::ExitStatusExt;
        let Some(child) = self.children.remove(&pid) else {
            return;
        };
        let args = &child.describe;
        let code = status.as_ref().ok().and_then(ExitStatus::code);
        // A mapped user's bootstrap failed before the UEP ran: it wrote the failure line.
        let failure_line = bootstrap
            .as_deref()
            .filter(|_| code != Some(0))
            .and_then(|text| {
                crate::bootstrap::decode_failure(text).or_else(|| {
                    // The privilege drop between fork and exec failed: the hook wrote the step
                    // and exited with its ladder status (§4.5).
                    text.contains("privilege drop failed: ").then(|| {
                        format!(
                            "[exit code: {}; (PermissionError) see your system administrator]",
                            code.unwrap_or(71)
                        )
                    })
                })
            });
        if let Some(line) = failure_line {
            let text = format!(
                "Unable to start user endpoint process for {} {line}",
                child.user
            );
            tracing::error!("{text}");
            send_failure_notice(&child.amqp_creds, text.clone());
            self.event(MepEvent::StartFailed {
                name: child.name.clone(),
                text,
            });
        }
        self.event(MepEvent::Exited {
            pid,
            name: child.name.clone(),
            code,
        });
        match &status {
            Ok(s) if s.code() == Some(0) => {
                tracing::info!("Command stopped normally ({pid}) [{args}]")
            }
            Ok(s) if s.code().is_some() => tracing::warn!(
                "Command return code: {} ({pid}) [{args}]",
                s.code().unwrap_or_default()
            ),
            Ok(s) if s.signal().is_some() => tracing::warn!(
                "Command terminated by signal: {} ({pid}) [{args}]",
                s.signal().unwrap_or_default()
            ),
            _ => tracing::warn!("Command unknown return code: ({pid}) [{args}]"),
        }
        // A UEP reports its own failures (any non-zero exit goes through its failure-notice
        // wrapper, PE §5.5), but one killed by a signal cannot: report that here, unless the
        // MEP itself is stopping it.
        if let Ok(signal) = status.as_ref().map(|s| s.signal()) {
            if let (Some(sig), false) = (signal, self.stopping) {
                let sig_name = nix::sys::signal::Signal::try_from(sig)
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|_| sig.to_string());
                send_failure_notice(
                    &child.amqp_creds,
                    format!(
                        "Failed to start or unexpected error:\n  (UserEndpointTerminated) user \
                         endpoint process {pid} was terminated by signal {sig} ({sig_name})"
                    ),
                );
            }
        }
        let grace = Duration::from_secs_f64(
            self.opts
                .config
                .mu_child_ep_grace_period_s
                .clamp(0.0, 1.0e9),
        );
        if code == Some(0) && !self.stopping {
            if let Some((at, start)) = child.cached {
                if at.elapsed() < grace {
                    tracing::info!(
                        "User EP stopped within grace period; using cached arguments to start a \
                         new instance (name: {})",
                        child.name
                    );
                    Box::pin(self.start(start)).await;
                }
            }
        }
    }

    async fn stop_children(&mut self, exits: &mut mpsc::UnboundedReceiver<Exit>) {
        use nix::sys::signal::{Signal, kill, killpg};
        use nix::unistd::Pid;
        for (pid, child) in &self.children {
            tracing::info!(
                "Signaling shutdown of user endpoint (PID: {pid}) [{}]",
                child.describe
            );
            if let Ok(raw) = i32::try_from(*pid) {
                let _ = kill(Pid::from_raw(raw), Signal::SIGTERM);
            }
        }
        for signal in [None, Some(Signal::SIGKILL)] {
            if let Some(sig) = signal {
                for (pid, child) in &self.children {
                    tracing::info!(
                        "Forcibly killing user endpoint (PID: {pid}) [{}]",
                        child.describe
                    );
                    if let Ok(raw) = i32::try_from(*pid) {
                        let _ = killpg(Pid::from_raw(raw), sig);
                    }
                }
            }
            let deadline = tokio::time::Instant::now() + CHILD_WAIT;
            while !self.children.is_empty() {
                match tokio::time::timeout_at(deadline, exits.recv()).await {
                    Ok(Some((pid, status, text))) => self.reaped(pid, status, text).await,
                    Ok(None) | Err(_) => break,
                }
            }
            if self.children.is_empty() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_period_is_clamped_and_keeps_its_number_type() {
        assert_eq!(period_value(Number::Int(30)).0, Value::from(30));
        assert_eq!(period_value(Number::Int(2)).0, Value::from(5));
        assert_eq!(period_value(Number::Float(5.0)).0, Value::from(5.0));
        assert_eq!(
            period_value(Number::Float(7.5)).1,
            Duration::from_secs_f64(7.5)
        );
    }

    #[test]
    fn final_heartbeat_bytes() {
        let id = uuid::Uuid::parse_str("11111111-2222-4333-8444-555555555555").unwrap();
        assert_eq!(
            status_report(id, Value::from(0)),
            b"\x01{\"message_type\":\"ep_status_report\",\"data\":{\"endpoint_id\":\
              \"11111111-2222-4333-8444-555555555555\",\"global_state\":{\"heartbeat_period\":0},\
              \"task_statuses\":{}}}"
                .to_vec()
        );
    }
}
