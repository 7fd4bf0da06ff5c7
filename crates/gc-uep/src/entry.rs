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
    let mut doc = match UepStdin::from_slice(stdin) {
        Ok(doc) => doc,
        Err(e) => {
            tracing::error!("{BAD_STDIN} ({e})");
            eprintln!("Exception: {BAD_STDIN}");
            return 1;
        }
    };
    if let Err(e) = credentials_from_memfd(&mut doc) {
        // Without credentials nothing can be reported either (upstream: 65).
        tracing::error!("Unable to read the credential memfd: {e}");
        eprintln!("Exception: Unable to read the credential memfd: {e}");
        return 65;
    }
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

/// With `mem_fd` + `enckey` (PROTOCOL-ENDPOINT §5.4): takes the inherited descriptor (marked
/// close-on-exec, so workers never see it), decrypts `{"amqp_creds": {...}}` and puts the
/// credentials into the document, where the rest of the runtime reads them.
fn credentials_from_memfd(doc: &mut UepStdin) -> Result<(), String> {
    let (Some(fd), Some(key)) = (doc.mem_fd, doc.enckey.as_deref()) else {
        return Ok(());
    };
    let key = gc_sys::credfd::FernetKey::from_text(key).map_err(|e| e.to_string())?;
    let file = std::fs::File::from(gc_sys::take_inherited_fd(fd).map_err(|e| e.to_string())?);
    let plain = gc_sys::credfd::read_token(&file, &key).map_err(|e| e.to_string())?;
    let value: serde_json::Value = serde_json::from_slice(&plain).map_err(|e| e.to_string())?;
    match value.get("amqp_creds") {
        Some(serde_json::Value::Object(creds)) => {
            doc.amqp_creds = Some(creds.clone());
            Ok(())
        }
        _ => Err("no amqp_creds object in the credential memfd".into()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_memfd_and_it_is_kept_from_children() {
        use std::os::fd::IntoRawFd;
        let creds = gc_sys::credfd::CredentialFd::create().unwrap();
        creds
            .write(br#"{"amqp_creds":{"endpoint_id":"e","task_queue_info":{}}}"#)
            .unwrap();
        let fd = creds.reader().unwrap().into_raw_fd();
        let mut doc = UepStdin::from_slice(
            format!(
                r#"{{"config":"x","ep_info":{{"posix_ppid":1}},"mem_fd":{fd},"enckey":"{}"}}"#,
                creds.key().to_text()
            )
            .as_bytes(),
        )
        .unwrap();
        assert!(doc.amqp_creds.is_none());
        credentials_from_memfd(&mut doc).unwrap();
        assert_eq!(doc.amqp_creds.unwrap()["endpoint_id"], "e");
        // A wrong key is an error, not an empty credential set.
        let other = gc_sys::credfd::FernetKey::generate().unwrap().to_text();
        let fd = creds.reader().unwrap().into_raw_fd();
        let mut doc = UepStdin::from_slice(
            format!(
                r#"{{"config":"x","ep_info":{{"posix_ppid":1}},"mem_fd":{fd},"enckey":"{other}"}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        assert!(credentials_from_memfd(&mut doc).is_err());
    }
}
