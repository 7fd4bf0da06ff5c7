//! Running an `external_identity_mapping#1.0.0` program (IDENTITY-MAPPING.md §6): argv
//! contract, stdin document, time limit (the whole process group is killed when it expires),
//! a cap on how much output is read, and strict interpretation of the answer.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::expression::{Hits, add_hit};
use crate::json::{self, Json};
use crate::pytext::normalise_uuid;

/// The POSIX connector id the MEP passes with `-c`.
pub const POSIX_CONNECTOR_ID: &str = "145812c8-decc-41f1-83cf-bb2a85a2a70b";
/// Time allowed for the whole exchange with the program.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Output beyond this many bytes is not read: the program is killed and the configuration fails.
pub const MAX_STDOUT_BYTES: usize = 1024 * 1024;
/// Standard error is drained but only this much is kept for the log.
const MAX_STDERR_BYTES: usize = 64 * 1024;

/// How external programs are run.
#[derive(Debug, Clone)]
pub struct ExternalContext {
    /// Value of `-c`.
    pub connector_id: String,
    /// Value of `-s` (the MEP's endpoint id).
    pub storage_gateway_id: String,
    /// Time limit for one exchange.
    pub timeout: Duration,
    /// Working directory for the program (`None`: inherit ours).
    pub cwd: Option<PathBuf>,
}

impl ExternalContext {
    /// The MEP's settings for endpoint `endpoint_id`.
    pub fn for_endpoint(endpoint_id: impl Into<String>) -> ExternalContext {
        ExternalContext {
            connector_id: POSIX_CONNECTOR_ID.to_string(),
            storage_gateway_id: endpoint_id.into(),
            timeout: DEFAULT_TIMEOUT,
            cwd: None,
        }
    }
}

/// Why an external configuration produced nothing (each falls through to the next one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExternalError {
    /// The program could not be started.
    #[error("cannot run {program:?}: {reason}")]
    Spawn {
        /// argv\[0\].
        program: String,
        /// OS error text.
        reason: String,
    },
    /// It did not finish within the time limit (it was killed).
    #[error("no answer within {0:?}; the program was killed")]
    TimedOut(Duration),
    /// It wrote more than [`MAX_STDOUT_BYTES`] to stdout (it was killed).
    #[error("more than {MAX_STDOUT_BYTES} bytes on stdout; the program was killed")]
    OutputTooLarge,
    /// It exited with a non-zero status or was killed by a signal.
    #[error("exited with {status}{}", stderr_suffix(stderr))]
    ExitStatus {
        /// Exit status description.
        status: String,
        /// Captured standard error.
        stderr: String,
    },
    /// An input identity has no `id`, so no answer can be checked.
    #[error("an input identity has no 'id', so the program's answer cannot be checked")]
    InputWithoutId,
    /// The answer is not a valid `identity_mapping_output#1.0.0` document.
    #[error("invalid answer: {0}")]
    BadOutput(String),
    /// The answer names an id that is not one of the input identities.
    #[error("answer names id {0:?}, which is not an input identity")]
    UnknownId(String),
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!("; stderr: {}", stderr.trim_end())
    }
}

/// What a run produced, for `--explain`.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// The full argv.
    pub argv: Vec<String>,
    /// Captured stdout (lossy text).
    pub stdout: String,
    /// Captured stderr (lossy text, truncated).
    pub stderr: String,
}

enum Piped {
    Stdout(Result<Vec<u8>, ()>),
    Stderr(Vec<u8>),
}

/// The stdin document for `identities`.
pub fn input_document(identities: &[Json]) -> String {
    Json::Object(vec![
        (
            "DATA_TYPE".into(),
            Json::Str("identity_mapping_input#1.0.0".into()),
        ),
        ("identities".into(), Json::Array(identities.to_vec())),
    ])
    .to_python_json()
}

/// Run `command` for `identities` and interpret the answer.
pub fn run(
    command: &[String],
    identities: &[Json],
    ctx: &ExternalContext,
    record: Option<&mut RunRecord>,
) -> Result<Vec<Hits>, ExternalError> {
    let mut argv: Vec<String> = command.to_vec();
    argv.extend([
        "-c".to_string(),
        ctx.connector_id.clone(),
        "-s".to_string(),
        ctx.storage_gateway_id.clone(),
        "-a".to_string(),
    ]);
    let (stdout, stderr, status) = exchange(&argv, identities, ctx)?;
    let stdout_text = String::from_utf8_lossy(&stdout).into_owned();
    let stderr_text = String::from_utf8_lossy(&stderr).into_owned();
    if !stderr.is_empty() {
        tracing::info!(program = %argv[0], stderr = %stderr_text, "identity mapping program wrote to stderr");
    }
    if let Some(r) = record {
        r.argv = argv.clone();
        r.stdout = stdout_text.clone();
        r.stderr = stderr_text.clone();
    }
    if !status.success() {
        return Err(ExternalError::ExitStatus {
            status: match status.code() {
                Some(code) => format!("status {code}"),
                None => "a signal".to_string(),
            },
            stderr: stderr_text,
        });
    }
    if stdout.is_empty() {
        return Ok(Vec::new());
    }
    let mut input_ids = Vec::with_capacity(identities.len());
    for ident in identities {
        input_ids.push(ident.get("id").ok_or(ExternalError::InputWithoutId)?);
    }
    let text = String::from_utf8(stdout)
        .map_err(|_| ExternalError::BadOutput("stdout is not UTF-8".into()))?;
    let answer = interpret(&text)?;
    let mut hits: Hits = Vec::new();
    for (id, output) in answer {
        let key = Json::Str(id.clone());
        if !input_ids.iter().any(|i| **i == key) {
            return Err(ExternalError::UnknownId(id));
        }
        add_hit(&mut hits, &key, output);
    }
    Ok(if hits.is_empty() {
        Vec::new()
    } else {
        vec![hits]
    })
}

/// Parse an `identity_mapping_output#1.0.0` document: `(normalised id, output)` pairs in order.
pub fn interpret(text: &str) -> Result<Vec<(String, String)>, ExternalError> {
    let bad = |m: String| ExternalError::BadOutput(m);
    let doc = json::parse(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let Json::Object(members) = &doc else {
        return Err(bad("not a JSON object".into()));
    };
    for (k, _) in members {
        if k != "DATA_TYPE" && k != "result" {
            return Err(bad(format!("unknown member {k:?}")));
        }
    }
    match doc.get("DATA_TYPE") {
        None => {}
        Some(Json::Str(s)) if s == "identity_mapping_output#1.0.0" => {}
        Some(other) => return Err(bad(format!("wrong DATA_TYPE {}", other.to_json_unicode()))),
    }
    let Some(Json::Array(results)) = doc.get("result") else {
        return Err(bad("'result' must be a list".into()));
    };
    let mut out = Vec::with_capacity(results.len());
    for item in results {
        let Json::Object(members) = item else {
            return Err(bad("a result element is not an object".into()));
        };
        for (k, _) in members {
            if k != "id" && k != "output" {
                return Err(bad(format!("unknown member {k:?} in a result")));
            }
        }
        let id = match item.get("id") {
            Some(Json::Str(s)) => {
                normalise_uuid(s).ok_or_else(|| bad(format!("id {s:?} is not a UUID")))?
            }
            Some(_) => return Err(bad("a result id is not a string".into())),
            None => return Err(bad("a result has no id".into())),
        };
        let output = match item.get("output") {
            Some(Json::Str(s)) => s.clone(),
            Some(_) => return Err(bad("a result output is not a string".into())),
            None => return Err(bad("a result has no output".into())),
        };
        out.push((id, output));
    }
    Ok(out)
}

fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn read_capped<R: Read>(mut r: R, cap: usize) -> Result<Vec<u8>, ()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match r.read(&mut chunk) {
            Ok(0) => return Ok(buf),
            Ok(n) => {
                if buf.len() + n > cap {
                    return Err(());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Ok(buf),
        }
    }
}

fn exchange(
    argv: &[String],
    identities: &[Json],
    ctx: &ExternalContext,
) -> Result<(Vec<u8>, Vec<u8>, std::process::ExitStatus), ExternalError> {
    let deadline = Instant::now() + ctx.timeout;
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(dir) = &ctx.cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().map_err(|e| ExternalError::Spawn {
        program: argv[0].clone(),
        reason: e.to_string(),
    })?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    if let Some(mut stdin) = child.stdin.take() {
        let doc = input_document(identities);
        // A program that never reads stdin must not block us: write from a thread, and
        // ignore a broken pipe like the reference does.
        std::thread::spawn(move || {
            let _ = stdin.write_all(doc.as_bytes());
        });
    }
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send(Piped::Stdout(read_capped(out, MAX_STDOUT_BYTES)));
        });
    }
    if let Some(mut err) = child.stderr.take() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut chunk = [0u8; 8192];
            while let Ok(n) = err.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let room = MAX_STDERR_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
            let _ = tx.send(Piped::Stderr(kept));
        });
    }
    drop(tx);
    let mut stdout = None;
    let mut stderr = None;
    let give_up = |child: &mut std::process::Child, err: ExternalError| {
        kill_group(pid);
        let _ = child.kill();
        let _ = child.wait();
        Err(err)
    };
    while stdout.is_none() || stderr.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Piped::Stdout(Ok(b))) => stdout = Some(b),
            Ok(Piped::Stdout(Err(()))) => {
                return give_up(&mut child, ExternalError::OutputTooLarge);
            }
            Ok(Piped::Stderr(b)) => stderr = Some(b),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return give_up(&mut child, ExternalError::TimedOut(ctx.timeout));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Ok((
                    stdout.unwrap_or_default(),
                    stderr.unwrap_or_default(),
                    status,
                ));
            }
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(None) => return give_up(&mut child, ExternalError::TimedOut(ctx.timeout)),
            Err(e) => {
                return give_up(
                    &mut child,
                    ExternalError::Spawn {
                        program: argv[0].clone(),
                        reason: e.to_string(),
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        let ok = interpret(
            r#" {"result": [{"id": "{000000C9-0000-4000-8000-0000000000C9}", "output": ""}]} "#,
        )
        .unwrap();
        assert_eq!(ok[0].0, "000000c9-0000-4000-8000-0000000000c9");
        for bad in [
            "  \n",
            "[]",
            r#"{"result": null}"#,
            r#"{"DATA_TYPE": "identity_mapping_output#1.0.1", "result": []}"#,
            r#"{"result": [], "x": 1}"#,
            r#"{"result": [{"id": "000000c9-0000-4000-8000-0000000000c9", "output": 5}]}"#,
            r#"{"result": [{"id": "nope", "output": "x"}]}"#,
            r#"{"result": []} trailing"#,
        ] {
            assert!(interpret(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stdin_document_is_python_json() {
        let ids = vec![json::parse(r#"{"id": "a", "name": "Zoé"}"#).unwrap()];
        assert_eq!(
            input_document(&ids),
            r#"{"DATA_TYPE": "identity_mapping_input#1.0.0", "identities": [{"id": "a", "name": "Zo\u00e9"}]}"#
        );
    }
}
