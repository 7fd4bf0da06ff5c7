//! The whole `start` sequence of an unprivileged MEP (ENDPOINT §4.2) as one call returning
//! the process exit status, for the CLI.

use std::path::PathBuf;
use std::time::Duration;

use gc_config::{CoreEndpointConfig, LoadOptions};
use gc_wire::messagepack::{self, EpStatusReport, Message};

use crate::pidfile::PidFile;
use crate::register::{ClientCredentials, RegisterError, RegisterInputs, ServiceUrls, register};
use crate::runtime::{MepOptions, StopCause, run, shutdown_signal};

/// How often the PID file is touched (and checked for removal).
const PID_TOUCH_PERIOD: Duration = Duration::from_secs(15);

/// What `globus-compute-endpoint start NAME` passes.
#[derive(Debug, Clone)]
pub struct StartArgs {
    /// Endpoint name.
    pub name: String,
    /// `<compute dir>/<name>`.
    pub endpoint_dir: PathBuf,
    /// `--endpoint-uuid`.
    pub endpoint_uuid: Option<String>,
    /// `metadata.python_version` for the registration.
    pub python_version: String,
}

fn print_register_error(e: &RegisterError) {
    match e {
        RegisterError::Blocked { .. } | RegisterError::Invalid { .. } => {
            tracing::warn!("{e}");
            println!("{e}");
        }
        RegisterError::Network(_) => {
            tracing::error!("{e}");
            eprintln!("{e}");
        }
        _ => {
            tracing::error!("{e}");
            eprintln!("Error: {e}");
        }
    }
}

/// Completes when the PID file disappears (§4.8).
async fn pid_file_watch(pid: &PidFile) {
    let mut tick = tokio::time::interval(PID_TOUCH_PERIOD);
    tick.tick().await;
    loop {
        tick.tick().await;
        if !pid.touch() {
            tracing::warn!("PID file removed by another process; initiating shutdown");
            return;
        }
    }
}

/// Runs a MEP from its directory until a signal: loads `config.yaml`, takes the PID file,
/// registers, serves, shuts down. Returns the exit status (0 after a requested shutdown;
/// PE §2.6 statuses for registration failures; 73 when another instance runs).
pub async fn start(args: StartArgs) -> i32 {
    let config_path = args.endpoint_dir.join("config.yaml");
    let config = match CoreEndpointConfig::from_file(&config_path, LoadOptions::default()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(
                "Failed to find or parse endpoint configuration.  Endpoint will not start. {e}"
            );
            eprintln!("Error: {e}");
            return 1;
        }
    };
    let period = config.base.heartbeat_period.as_f64().max(5.0);
    let privileged = crate::privilege::is_privileged();
    let refuse = |msg: &str| {
        tracing::error!("{msg}");
        eprintln!("Error: {msg}");
        1
    };
    let pid = match PidFile::acquire(&args.endpoint_dir, Duration::from_secs_f64(3.0 * period)) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("{e}");
            return e.exit_code();
        }
    };
    if privileged && config.email.is_none() {
        return refuse("Multi-user endpoints require a contact email; set `email` in config.yaml.");
    }
    let urls = match ServiceUrls::for_config(&config) {
        Ok(u) => u,
        Err(e) => {
            print_register_error(&e);
            return e.exit_code();
        }
    };
    let credentials = match ClientCredentials::from_env() {
        Ok(c) => c,
        Err(e) => {
            print_register_error(&e);
            return e.exit_code();
        }
    };
    let registration = match register(&RegisterInputs {
        endpoint_dir: &args.endpoint_dir,
        name: &args.name,
        config: &config,
        endpoint_uuid: args.endpoint_uuid.as_deref(),
        urls: &urls,
        credentials: &credentials,
        python_version: &args.python_version,
        takeover: false,
    })
    .await
    {
        Ok(r) => r,
        Err(e) => {
            print_register_error(&e);
            return e.exit_code();
        }
    };
    let heartbeat_info = registration.heartbeat_queue_info.clone();
    let endpoint_id = registration.endpoint_id.clone();
    let options = match MepOptions::new(args.name.clone(), args.endpoint_dir.clone(), config) {
        Ok(o) => o,
        Err(e) => return report_after_registration(&endpoint_id, &heartbeat_info, &e).await,
    };
    let shutdown = async {
        tokio::select! {
            () = shutdown_signal() => {}
            () = pid_file_watch(&pid) => {}
        }
    };
    let outcome = run(options, registration, shutdown).await;
    drop(pid);
    match outcome {
        Ok(StopCause::Requested) => 0,
        // The command queue is the MEP's reason to exist; losing it for good is an error.
        Ok(StopCause::CommandQueueLost(_) | StopCause::AuditLogFailed(_)) => 1,
        Err(e) => report_after_registration(&endpoint_id, &heartbeat_info, &e).await,
    }
}

/// An error after registration: logged, and reported on the MEP's own heartbeat routing as
/// `Failed to start or unexpected error:\n  (<Type>) <msg>` (ENDPOINT §4.2).
async fn report_after_registration(
    endpoint_id: &str,
    heartbeat_info: &serde_json::Value,
    e: &crate::runtime::MepError,
) -> i32 {
    let text = format!("Failed to start or unexpected error:\n  (MepError) {e}");
    tracing::error!("{text}");
    eprintln!("{text}");
    if let (Ok(id), Ok(target)) = (
        uuid::Uuid::parse_str(endpoint_id),
        gc_broker::NoticeTarget::from_json(heartbeat_info),
    ) {
        let body = messagepack::pack(&Message::EpStatusReport(EpStatusReport::failure_notice(
            id, text,
        )));
        if let Err(err) = gc_broker::send_notice(&target, &body, Duration::from_secs(10)).await {
            tracing::error!("Unable to send failure notice: {err}");
        }
    }
    e.exit_code()
}

/// [`start`] on a new multi-threaded tokio runtime, for a synchronous `main`.
pub fn start_blocking(args: StartArgs) -> i32 {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(start(args)),
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            1
        }
    }
}
