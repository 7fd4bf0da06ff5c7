//! The UEP's side of the high-assurance audit log (ENDPOINT §4.10): one record per task state
//! change, written as **one** `write` to the packet pipe the MEP gave as `audit_fd` (4). The
//! MEP adds the time, uid, pid and UEP id from its own bookkeeping; a record here is only
//! `fid=<fid> tid=<tid> bid=<block or empty> [jid=<job> ]<STATE>[ - <msg>]`, with newlines,
//! carriage returns and NULs removed and at most one page long.
//!
//! A failed write is logged once as ERROR `Unable to write audit log; endpoint may not
//! continue: (<Type>) <msg>` and reported on a watch channel; the runtime then stops.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// The longest record (one page: the pipe's packet size).
pub const RECORD_MAX: usize = 4096;

/// A task state in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditState {
    /// Taken from the task queue.
    Received,
    /// Accepted by the engine.
    ExecStart,
    /// The engine reported the block it runs in (GlobusComputeEngine only).
    Running,
    /// The result is ready, before it is published.
    ExecEnd,
    /// Refused (`allowed_functions`).
    Failed,
}

impl AuditState {
    fn as_str(self) -> &'static str {
        match self {
            AuditState::Received => "RECEIVED",
            AuditState::ExecStart => "EXEC_START",
            AuditState::Running => "RUNNING",
            AuditState::ExecEnd => "EXEC_END",
            AuditState::Failed => "FAILED",
        }
    }
}

/// The message of the `FAILED` record of a refused function.
pub const NOT_PERMITTED: &str = "Function not permitted on endpoint";

/// One record's bytes: sanitised (no `\n`, `\r`, NUL) and cut to [`RECORD_MAX`] bytes at a
/// character boundary.
pub fn record(
    fid: &str,
    tid: &str,
    bid: Option<&str>,
    jid: Option<&str>,
    state: AuditState,
    msg: Option<&str>,
) -> Vec<u8> {
    let mut text = format!("fid={fid} tid={tid} bid={} ", bid.unwrap_or(""));
    if let Some(jid) = jid {
        text.push_str(&format!("jid={jid} "));
    }
    text.push_str(state.as_str());
    if let Some(msg) = msg {
        text.push_str(" - ");
        text.push_str(msg);
    }
    text.retain(|c| !matches!(c, '\n' | '\r' | '\0'));
    if text.len() > RECORD_MAX {
        let mut end = RECORD_MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text.into_bytes()
}

/// The write end of the audit pipe.
#[derive(Debug)]
pub struct AuditWriter {
    pipe: Mutex<std::fs::File>,
    failed: watch::Sender<Option<String>>,
}

impl AuditWriter {
    /// Wraps the pipe; a failed write is reported on `failed`.
    pub fn new(pipe: OwnedFd, failed: watch::Sender<Option<String>>) -> AuditWriter {
        AuditWriter {
            pipe: Mutex::new(std::fs::File::from(pipe)),
            failed,
        }
    }

    /// Writes one record as one `write`; a short write counts as a failure.
    pub fn write(
        &self,
        fid: &str,
        tid: &str,
        state: AuditState,
        msg: Option<&str>,
    ) -> Result<(), String> {
        self.write_placed(fid, tid, None, None, state, msg)
    }

    /// [`AuditWriter::write`] with the task's block and job, when known.
    pub fn write_placed(
        &self,
        fid: &str,
        tid: &str,
        bid: Option<&str>,
        jid: Option<&str>,
        state: AuditState,
        msg: Option<&str>,
    ) -> Result<(), String> {
        let bytes = record(fid, tid, bid, jid, state, msg);
        let outcome = {
            let mut pipe = self.pipe.lock().unwrap_or_else(|p| p.into_inner());
            match pipe.write(&bytes) {
                Ok(n) if n == bytes.len() => Ok(()),
                Ok(n) => Err(format!(
                    "(OSError) short write: {n} of {} bytes",
                    bytes.len()
                )),
                Err(e) => Err(format!("({}) {e}", os_error_name(&e))),
            }
        };
        if let Err(why) = &outcome {
            let text = format!("Unable to write audit log; endpoint may not continue: {why}");
            if self.failed.borrow().is_none() {
                tracing::error!("{text}");
            }
            self.failed.send_replace(Some(text));
        }
        outcome
    }
}

/// The records of one task handed to an engine: `EXEC_START`, `RUNNING` each time the
/// engine places it on another block (GlobusComputeEngine), then `EXEC_END` carrying the
/// last block and job, as upstream's task future does. `RUNNING` may be reported by the
/// engine before the runtime wrote `EXEC_START`; it is then held back and written right
/// after it, so the records keep upstream's order.
#[derive(Debug)]
pub struct TaskAudit {
    writer: Arc<AuditWriter>,
    fid: String,
    tid: String,
    state: Mutex<TaskAuditState>,
}

#[derive(Debug, Default)]
struct TaskAuditState {
    started: bool,
    running_held: bool,
    bid: Option<String>,
    jid: Option<String>,
}

impl TaskAudit {
    /// A task's records go to `writer`.
    pub fn new(writer: Arc<AuditWriter>, fid: String, tid: String) -> TaskAudit {
        TaskAudit {
            writer,
            fid,
            tid,
            state: Mutex::new(TaskAuditState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TaskAuditState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn put(&self, st: &TaskAuditState, state: AuditState) {
        let _ = self.writer.write_placed(
            &self.fid,
            &self.tid,
            st.bid.as_deref(),
            st.jid.as_deref(),
            state,
            None,
        );
    }

    /// The engine accepted the task (no block yet, as upstream: its `EXEC_START` is written
    /// when the executor's task id is known, before any block is).
    pub fn exec_start(&self) {
        let mut st = self.lock();
        let _ = self
            .writer
            .write(&self.fid, &self.tid, AuditState::ExecStart, None);
        st.started = true;
        if std::mem::take(&mut st.running_held) {
            self.put(&st, AuditState::Running);
        }
    }

    /// The engine sent the task to block `bid` (job `jid`).
    pub fn running(&self, bid: &str, jid: Option<&str>) {
        let mut st = self.lock();
        st.bid = Some(bid.to_string());
        st.jid = jid.map(str::to_string);
        if st.started {
            self.put(&st, AuditState::Running);
        } else {
            st.running_held = true;
        }
    }

    /// The result is ready.
    pub fn exec_end(&self) {
        let st = self.lock();
        self.put(&st, AuditState::ExecEnd);
    }
}

/// Python's exception class for an OS error, as upstream's message would name it.
fn os_error_name(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::BrokenPipe => "BrokenPipeError",
        std::io::ErrorKind::PermissionDenied => "PermissionError",
        _ => "OSError",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_formats() {
        let r = |bid, jid, state, msg| {
            String::from_utf8(record("f", "t", bid, jid, state, msg)).unwrap()
        };
        assert_eq!(
            r(None, None, AuditState::Received, None),
            "fid=f tid=t bid= RECEIVED"
        );
        assert_eq!(
            r(Some("3"), Some("99.head"), AuditState::Running, None),
            "fid=f tid=t bid=3 jid=99.head RUNNING"
        );
        assert_eq!(
            r(None, None, AuditState::Failed, Some(NOT_PERMITTED)),
            "fid=f tid=t bid= FAILED - Function not permitted on endpoint"
        );
        assert_eq!(
            r(None, None, AuditState::ExecEnd, Some("a\nb\r\0c")),
            "fid=f tid=t bid= EXEC_END - abc"
        );
    }

    #[test]
    fn long_records_are_cut_to_a_page_on_a_char_boundary() {
        let msg = "é".repeat(RECORD_MAX);
        let rec = record("f", "t", None, None, AuditState::ExecEnd, Some(&msg));
        assert!(rec.len() <= RECORD_MAX && rec.len() >= RECORD_MAX - 1);
        assert!(String::from_utf8(rec).is_ok());
    }

    #[test]
    fn task_records_carry_the_block_and_keep_upstreams_order() {
        use std::io::Read;
        let (r, w) = gc_sys::packet_pipe().unwrap();
        let (tx, _rx) = watch::channel(None);
        let writer = Arc::new(AuditWriter::new(w, tx));
        let mut r = std::fs::File::from(r);
        let mut next = move || {
            let mut buf = [0u8; RECORD_MAX];
            let n = r.read(&mut buf).unwrap();
            String::from_utf8(buf[..n].to_vec()).unwrap()
        };
        // Placed before EXEC_START was written: RUNNING follows EXEC_START.
        let t = TaskAudit::new(Arc::clone(&writer), "f".into(), "t".into());
        t.running("0", Some("17"));
        t.exec_start();
        t.running("1", Some("18"));
        t.exec_end();
        assert_eq!(next(), "fid=f tid=t bid= EXEC_START");
        assert_eq!(next(), "fid=f tid=t bid=0 jid=17 RUNNING");
        assert_eq!(next(), "fid=f tid=t bid=1 jid=18 RUNNING");
        assert_eq!(next(), "fid=f tid=t bid=1 jid=18 EXEC_END");
        // A pool engine never places: no block, no RUNNING.
        let t = TaskAudit::new(writer, "g".into(), "u".into());
        t.exec_start();
        t.exec_end();
        assert_eq!(next(), "fid=g tid=u bid= EXEC_START");
        assert_eq!(next(), "fid=g tid=u bid= EXEC_END");
    }

    #[test]
    fn writes_are_packets_and_a_closed_pipe_is_reported() {
        use std::io::Read;
        let (r, w) = gc_sys::packet_pipe().unwrap();
        let (tx, rx) = watch::channel(None);
        let writer = AuditWriter::new(w, tx);
        writer.write("f", "t", AuditState::Received, None).unwrap();
        writer.write("f", "t", AuditState::ExecEnd, None).unwrap();
        let mut r = std::fs::File::from(r);
        let mut buf = [0u8; RECORD_MAX];
        let n = r.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"fid=f tid=t bid= RECEIVED");
        let n = r.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"fid=f tid=t bid= EXEC_END");
        assert!(rx.borrow().is_none());
        drop(r);
        // Rust ignores SIGPIPE, so the write fails with EPIPE.
        let err = writer
            .write("f", "t", AuditState::Received, None)
            .unwrap_err();
        assert!(err.starts_with("(BrokenPipeError) "), "{err}");
        assert_eq!(
            rx.borrow().as_deref(),
            Some(format!("Unable to write audit log; endpoint may not continue: {err}").as_str())
        );
    }
}
