//! The high-assurance audit log (ENDPOINT §4.10): active iff the MEP configuration has
//! `high_assurance: true` **and** `audit_log_path`.
//!
//! The MEP opens the file (append, 0600), writes a `Begin` line, and gives every UEP the write
//! end of a packet-mode pipe as descriptor 4 ([`gc_sys::packet_pipe`]). One reader thread per
//! UEP turns each packet (one record, at most a page) into one line, with a header built from
//! the MEP's own bookkeeping — the UEP's uid, pid and id are never taken from the UEP:
//!
//! ```text
//! 2025-04-10T14:44:58.742079-05:00 uid=1001 pid=4242 uep=<uep id> fid=… tid=… bid= RECEIVED
//! ```
//!
//! At shutdown the MEP waits (bounded) for the readers to drain their pipes, then writes the
//! `End` line. A failed write is reported once on the failure channel; the MEP then stops.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// The most a reader takes per packet: one page, as the kernel's pipe packets.
pub const PACKET_MAX: usize = 4096;

/// The descriptor number the UEP finds its audit pipe at (4 in upstream 4.19).
pub const UEP_AUDIT_FD: i32 = 4;

/// How long shutdown waits for the readers to drain.
const DRAIN_WAIT: Duration = Duration::from_secs(5);

/// Errors of the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The file could not be opened.
    #[error("unable to open the audit log {path}: {source}")]
    Open {
        /// The configured path.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A line could not be written.
    #[error("Failed to write audit log message: [uid={uid}, eid={eid}] - ({kind}) {source}")]
    Write {
        /// Whose record (the MEP's uid for session lines, the UEP's for records).
        uid: u32,
        /// The MEP's endpoint id.
        eid: String,
        /// Python-style exception name (`OSError`).
        kind: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The pipe could not be created.
    #[error("unable to create the audit pipe: {0}")]
    Pipe(#[source] std::io::Error),
}

/// `<ts>`: local time, ISO-8601 with microseconds and the UTC offset.
pub fn timestamp<Tz: chrono::TimeZone>(t: &chrono::DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    t.format("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string()
}

fn now() -> String {
    timestamp(&chrono::Local::now())
}

/// The `Begin`/`End` session line (without the trailing newline).
pub fn session_line(ts: &str, uid: u32, pid: u32, eid: &str, begin: bool) -> String {
    let what = if begin {
        "Begin CEP session ====="
    } else {
        "End CEP session -----"
    };
    format!("{ts} uid={uid} pid={pid} eid={eid} {what}")
}

/// One record line from a packet: the header from the MEP's bookkeeping, the packet with `\n`
/// → space and `\r`, `\0` removed, then `\n`. Invalid UTF-8 is kept as the replacement
/// character.
pub fn record_line(ts: &str, uid: u32, pid: u32, uep: &str, packet: &[u8]) -> String {
    let body = String::from_utf8_lossy(packet);
    let mut line = format!("{ts} uid={uid} pid={pid} uep={uep} ");
    line.reserve(body.len() + 1);
    for c in body.chars() {
        match c {
            '\n' => line.push(' '),
            '\r' | '\0' => {}
            c => line.push(c),
        }
    }
    line.push('\n');
    line
}

/// The open audit log of one MEP run.
#[derive(Debug)]
pub struct AuditLog {
    file: Mutex<std::fs::File>,
    uid: u32,
    pid: u32,
    eid: String,
    failures: mpsc::UnboundedSender<AuditError>,
    readers: Mutex<Vec<std::sync::mpsc::Receiver<()>>>,
}

impl AuditLog {
    /// Opens `path` (append, created 0600) and writes the `Begin` line. Write failures later on
    /// are sent to `failures`.
    pub fn open(
        path: &Path,
        eid: &str,
        failures: mpsc::UnboundedSender<AuditError>,
    ) -> Result<Arc<AuditLog>, AuditError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| AuditError::Open {
                path: path.display().to_string(),
                source,
            })?;
        let log = Arc::new(AuditLog {
            file: Mutex::new(file),
            uid: nix::unistd::getuid().as_raw(),
            pid: std::process::id(),
            eid: eid.to_string(),
            failures,
            readers: Mutex::new(Vec::new()),
        });
        log.session(true)?;
        Ok(log)
    }

    fn write(&self, uid: u32, line: &str) -> Result<(), AuditError> {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(line.as_bytes())
            .map_err(|source| AuditError::Write {
                uid,
                eid: self.eid.clone(),
                kind: "OSError",
                source,
            })
    }

    fn session(&self, begin: bool) -> Result<(), AuditError> {
        let mut line = session_line(&now(), self.uid, self.pid, &self.eid, begin);
        line.push('\n');
        self.write(self.uid, &line)
    }

    /// A new pipe for a UEP: returns the write end (to place at [`UEP_AUDIT_FD`] in the child)
    /// and a [`PendingReader`] to start once the child's pid is known.
    pub fn pipe(self: &Arc<Self>) -> Result<(OwnedFd, PendingReader), AuditError> {
        let (read, write) = gc_sys::packet_pipe().map_err(AuditError::Pipe)?;
        Ok((
            write,
            PendingReader {
                log: Arc::clone(self),
                read,
            },
        ))
    }

    /// Waits (at most a few seconds) for every reader to reach the end of its pipe, then
    /// writes the `End` line.
    pub fn finish(&self) -> Result<(), AuditError> {
        let readers = std::mem::take(&mut *self.readers.lock().unwrap_or_else(|p| p.into_inner()));
        let deadline = Instant::now() + DRAIN_WAIT;
        for done in readers {
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = done.recv_timeout(left);
        }
        self.session(false)
    }
}

/// The read end of a UEP's audit pipe, not yet being read.
#[derive(Debug)]
pub struct PendingReader {
    log: Arc<AuditLog>,
    read: OwnedFd,
}

impl PendingReader {
    /// Starts the reader thread for the UEP `uep` running as `uid` with `pid`. The thread ends
    /// at the end of the pipe (every write end closed) or on a failed write (reported once).
    pub fn start(self, uid: u32, pid: u32, uep: String) {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        self.log
            .readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(done_rx);
        let log = self.log;
        let mut pipe = std::fs::File::from(self.read);
        let spawned = std::thread::Builder::new()
            .name(format!("audit-{pid}"))
            .spawn(move || {
                let mut buf = vec![0u8; PACKET_MAX];
                loop {
                    let n = match pipe.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            tracing::error!("Unable to read the audit pipe of pid {pid}: {e}");
                            break;
                        }
                    };
                    let line = record_line(&now(), uid, pid, &uep, &buf[..n]);
                    if let Err(e) = log.write(uid, &line) {
                        let _ = log.failures.send(e);
                        break;
                    }
                }
                let _ = done_tx.send(());
            });
        if let Err(e) = spawned {
            tracing::error!("Unable to start the audit reader of pid {pid}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_has_microseconds_and_offset() {
        let tz = chrono::FixedOffset::west_opt(5 * 3600).unwrap();
        let t = chrono::DateTime::parse_from_rfc3339("2025-04-10T14:44:58.742079123-05:00")
            .unwrap()
            .with_timezone(&tz);
        assert_eq!(timestamp(&t), "2025-04-10T14:44:58.742079-05:00");
        let utc = chrono::DateTime::parse_from_rfc3339("2025-01-02T03:04:05Z").unwrap();
        assert_eq!(timestamp(&utc), "2025-01-02T03:04:05.000000+00:00");
    }

    #[test]
    fn session_lines() {
        assert_eq!(
            session_line("T", 0, 12, "e-1", true),
            "T uid=0 pid=12 eid=e-1 Begin CEP session ====="
        );
        assert_eq!(
            session_line("T", 0, 12, "e-1", false),
            "T uid=0 pid=12 eid=e-1 End CEP session -----"
        );
    }

    #[test]
    fn record_lines_are_sanitised_and_get_the_mep_header() {
        assert_eq!(
            record_line("T", 1001, 77, "u-1", b"fid=f tid=t bid= RECEIVED"),
            "T uid=1001 pid=77 uep=u-1 fid=f tid=t bid= RECEIVED\n"
        );
        // A UEP cannot forge a second line or a header of its own.
        assert_eq!(
            record_line("T", 1001, 77, "u-1", b"a\nT uid=0 pid=1 uep=x\r\0b\n"),
            "T uid=1001 pid=77 uep=u-1 a T uid=0 pid=1 uep=xb \n"
        );
        assert_eq!(
            record_line("T", 1, 2, "u", b"\xffz"),
            "T uid=1 pid=2 uep=u \u{fffd}z\n"
        );
    }

    #[test]
    fn log_file_gets_begin_records_and_end() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "earlier\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let log = AuditLog::open(&path, "eid-1", tx).unwrap();
        let (write, reader) = log.pipe().unwrap();
        reader.start(1234, 5678, "uep-1".into());
        let mut w = std::fs::File::from(write);
        w.write_all(b"fid=f tid=t bid= RECEIVED").unwrap();
        w.write_all(b"fid=f tid=t bid= EXEC_END\n").unwrap();
        drop(w);
        log.finish().unwrap();
        assert!(rx.try_recv().is_err());

        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(lines[0], "earlier");
        let me = nix::unistd::getuid().as_raw();
        let pid = std::process::id();
        let rest = |l: &str| l.split_once(' ').unwrap().1.to_string();
        assert_eq!(
            rest(lines[1]),
            format!("uid={me} pid={pid} eid=eid-1 Begin CEP session =====")
        );
        assert_eq!(
            rest(lines[2]),
            "uid=1234 pid=5678 uep=uep-1 fid=f tid=t bid= RECEIVED"
        );
        assert_eq!(
            rest(lines[3]),
            "uid=1234 pid=5678 uep=uep-1 fid=f tid=t bid= EXEC_END "
        );
        assert_eq!(
            rest(lines[4]),
            format!("uid={me} pid={pid} eid=eid-1 End CEP session -----")
        );
        let ts = lines[1].split_once(' ').unwrap().0;
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
        assert_eq!(ts.split_once('.').unwrap().1.len(), 6 + 6, "{ts}");
    }

    #[test]
    fn new_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let (tx, _rx) = mpsc::unbounded_channel();
        let log = AuditLog::open(&path, "e", tx).unwrap();
        log.finish().unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn unopenable_path_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = mpsc::unbounded_channel();
        let err = AuditLog::open(&dir.path().join("no/such/dir/audit.log"), "e", tx).unwrap_err();
        assert!(matches!(err, AuditError::Open { .. }), "{err}");
    }
}
