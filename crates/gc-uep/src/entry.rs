//! The process entry point behind `globus-compute-endpoint _start-user-endpoint`: stdin bytes
//! in, exit status out (ENDPOINT.md §5.2 steps 3–5 and 17, §5.6; PROTOCOL-ENDPOINT §5.5).

use std::path::PathBuf;
use std::time::Duration;

use gc_config::UserEndpointConfig;
use gc_engine::WorkerCommand;
use gc_wire::messagepack::{EpStatusReport, Message, pack};
use gc_wire::uep_stdin::UepStdin;
use uuid::Uuid;

use crate::{UepError, UepOptions, notice_target, run, termination_signals};

/// Upstream's text for a stdin document it cannot use (§1.4.4).
pub const BAD_STDIN: &str = "Missing or invalid endpoint information from stdin.  (Hint: this \
command is not meant to be invoked manually; it should only be run by a core endpoint process.)";

/// How long a failure notice may take.
const NOTICE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a user endpoint from its stdin document and returns the process exit status: 0 for
/// every normal stop, 1 for a bad stdin document or configuration, 65 for bad credentials.
/// Every non-zero status after the document was read also sends upstream's failure notice
/// (`Failed to start or unexpected error:\n  (<Type>) <msg>`) to the heartbeat queue. Builds
/// its own tokio runtime: call it from a plain `main`, not from inside a runtime.
#[must_use]
pub fn run_from_stdin(stdin: &[u8], endpoint_dir: PathBuf, worker: WorkerCommand) -> i32 {
    let doc = match UepStdin::from_slice(stdin) {
        Ok(doc) => doc,
        Err(e) => {
            tracing::error!("{BAD_STDIN} ({e})");
            eprintln!("Exception: {BAD_STDIN}");
            return 1;
        }
    };
    let (status, failure) = match run_document(&doc, endpoint_dir, worker) {
        Ok(()) => (0, None),
        Err(Failure {
            status,
            kind,
            message,
        }) => (status, Some(format!("({kind}) {message}"))),
    };
    if let Some(text) = failure {
        let text = format!("Failed to start or unexpected error:\n  {text}");
        tracing::error!("{text}");
        send_failure_notice(&doc, &text);
    }
    status
}

struct Failure {
    status: i32,
    kind: &'static str,
    message: String,
}

impl From<UepError> for Failure {
    fn from(e: UepError) -> Self {
        match e {
            // Upstream exits with a bare status here, so its notice reads `(SystemExit) 65` (or 78).
            UepError::InvalidCredentials(_) | UepError::EndpointSetup(_) => Failure {
                status: e.exit_code(),
                kind: "SystemExit",
                message: e.exit_code().to_string(),
            },
            other => Failure {
                status: other.exit_code(),
                kind: "UepError",
                message: other.to_string(),
            },
        }
    }
}

fn run_document(
    doc: &UepStdin,
    endpoint_dir: PathBuf,
    worker: WorkerCommand,
) -> Result<(), Failure> {
    let config = UserEndpointConfig::from_yaml(&doc.config, "<stdin config>").map_err(|e| {
        tracing::error!(
            "Failed to find or parse endpoint configuration.  Endpoint will not start. ({e})"
        );
        Failure {
            status: 1,
            kind: "ClickException",
            message: e.to_string(),
        }
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure {
            status: 1,
            kind: "OSError",
            message: e.to_string(),
        })?;
    runtime.block_on(async {
        let signals = termination_signals()?;
        let options = UepOptions {
            endpoint_dir,
            worker,
        };
        let stopped = run(doc, &config, options, signals).await?;
        tracing::info!("UEP stopped: {stopped:?}");
        Ok::<(), UepError>(())
    })?;
    Ok(())
}

fn send_failure_notice(doc: &UepStdin, text: &str) {
    let endpoint_id = doc
        .amqp_creds
        .as_ref()
        .and_then(|c| c.get("endpoint_id"))
        .and_then(|v| v.as_str())
        .and_then(|s| Uuid::parse_str(s).ok());
    let (Some(endpoint_id), Some(target)) = (endpoint_id, notice_target(doc)) else {
        tracing::warn!("no usable heartbeat queue information; failure notice not sent");
        return;
    };
    let body = pack(&Message::EpStatusReport(EpStatusReport::failure_notice(
        endpoint_id,
        text,
    )));
    if let Err(e) = gc_broker::send_notice_blocking(&target, &body, NOTICE_TIMEOUT) {
        tracing::error!("failure notice not sent: {e}");
    }
}
