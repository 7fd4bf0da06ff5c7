//! `daemon.pid` (ENDPOINT §4.8): exclusive creation, staleness, the 15 s touch, removal on
//! exit — and the read-only view the CLI's `list`, `stop`, `logout`, `enable-on-boot` and
//! `delete` take of it.
//!
//! Two staleness windows exist, on purpose (§4.8): a starting process treats an existing
//! file as live when its mtime is at or after `now − 3 × heartbeat_period` (so a file from
//! the future is live too); the inspecting commands use a fixed 30 s window around now
//! (`|mtime − now| < 30 s`, so a file far in the future is *not* fresh).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// File name inside the endpoint directory.
pub const PID_FILE: &str = "daemon.pid";

/// How often a running process touches its PID file (§4.8).
pub const TOUCH_PERIOD: Duration = Duration::from_secs(15);

/// The fixed window of `list`, `stop`, `logout`, `enable-on-boot` (§4.8): a file touched
/// within this of now belongs to a running process.
pub const INSPECT_WINDOW: Duration = Duration::from_secs(30);

/// Why the PID file could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    /// A fresh PID file exists (exit 73).
    #[error(
        "Another instance of this endpoint is running.  (Perhaps on another login node?)  \
         Refusing to start.  If this is not correct, then remove the PID file before starting \
         again."
    )]
    Running { path: PathBuf, content: String },
    /// Any other file-system problem (exit 1).
    #[error("cannot create {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl PidFileError {
    /// Exit status.
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        match self {
            PidFileError::Running { .. } => 73,
            PidFileError::Io { .. } => 1,
        }
    }
}

/// How `<dir>/daemon.pid` looks to the inspecting commands (30 s window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidState {
    /// No PID file.
    Absent,
    /// Touched within 30 s of now: the endpoint runs.
    Fresh,
    /// Older (or further in the future): left behind by a process that did not clean up.
    Stale,
}

/// Signed age of the file's mtime: positive in the past, negative in the future.
fn signed_age(path: &Path) -> Option<f64> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(match SystemTime::now().duration_since(modified) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    })
}

/// `|mtime − now|` of `<dir>/daemon.pid`, `None` if there is none.
#[must_use]
pub fn age(dir: &Path) -> Option<Duration> {
    signed_age(&dir.join(PID_FILE)).map(|a| Duration::from_secs_f64(a.abs()))
}

/// [`PidState`] of `<dir>/daemon.pid`.
#[must_use]
pub fn state(dir: &Path) -> PidState {
    match age(dir) {
        None => PidState::Absent,
        Some(a) if a < INSPECT_WINDOW => PidState::Fresh,
        Some(_) => PidState::Stale,
    }
}

/// The PID written in `<dir>/daemon.pid`, if the file holds a positive number.
#[must_use]
pub fn read_pid(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join(PID_FILE))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|p| *p > 0)
}

/// Refreshes `path`'s modification time; `false` if the file has disappeared.
#[must_use]
pub fn touch_path(path: &Path) -> bool {
    match std::fs::OpenOptions::new().append(true).open(path) {
        Ok(f) => f.set_modified(SystemTime::now()).is_ok() || path.exists(),
        Err(_) => false,
    }
}

/// A held PID file; removed when dropped.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Takes `<dir>/daemon.pid`: a file modified at or after `now − stale_after` (including
    /// one from the future) means another instance runs; an older one is removed with the
    /// warning `Previous endpoint instance failed to shutdown cleanly.  Removing PID file.`
    /// Written `<pid>\n`, mode 0600, created exclusively.
    pub fn acquire(dir: &Path, stale_after: Duration) -> Result<PidFile, PidFileError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(PID_FILE);
        let io = |source| PidFileError::Io {
            path: path.clone(),
            source,
        };
        if let Some(age) = signed_age(&path) {
            if age < stale_after.as_secs_f64() {
                let content = std::fs::read_to_string(&path).unwrap_or_default();
                tracing::info!(
                    "PID file {} exists ({age:.0} s old): {}",
                    path.display(),
                    content.trim()
                );
                return Err(PidFileError::Running { path, content });
            }
            tracing::warn!(
                "Previous endpoint instance failed to shutdown cleanly.  Removing PID file."
            );
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(e)),
            }
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        writeln!(f, "{}", std::process::id()).map_err(io)?;
        Ok(PidFile { path })
    }

    /// Refreshes the modification time; `false` if the file has disappeared (the caller
    /// should shut down, §4.8).
    #[must_use]
    pub fn touch(&self) -> bool {
        touch_path(&self.path)
    }

    /// Touches the file every [`TOUCH_PERIOD`]; completes (after the warning `PID file
    /// removed by another process; initiating shutdown`) when the file has disappeared —
    /// another process removed it to ask this one to stop.
    pub async fn watch(&self) {
        let mut tick = tokio::time::interval(TOUCH_PERIOD);
        tick.tick().await;
        loop {
            tick.tick().await;
            if !self.touch() {
                tracing::warn!("PID file removed by another process; initiating shutdown");
                return;
            }
        }
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn set_mtime(path: &Path, t: SystemTime) {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    #[test]
    fn fresh_file_refuses_stale_file_is_replaced_and_drop_removes() {
        let d = tempfile::tempdir().unwrap();
        let held = PidFile::acquire(d.path(), Duration::from_secs(90)).unwrap();
        assert_eq!(
            std::fs::read_to_string(held.path()).unwrap(),
            format!("{}\n", std::process::id())
        );
        assert_eq!(
            std::fs::metadata(held.path()).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let err = PidFile::acquire(d.path(), Duration::from_secs(90)).unwrap_err();
        assert_eq!(err.exit_code(), 73);
        assert!(held.touch());
        std::mem::forget(held);
        // With a zero staleness window the existing file counts as stale.
        let again = PidFile::acquire(d.path(), Duration::ZERO).unwrap();
        let path = again.path().to_path_buf();
        drop(again);
        assert!(!path.exists());
    }

    #[test]
    fn an_old_file_is_replaced_a_future_one_refuses() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(PID_FILE);
        std::fs::write(&path, "1\n").unwrap();
        set_mtime(&path, SystemTime::now() - Duration::from_secs(100));
        let held = PidFile::acquire(d.path(), Duration::from_secs(90)).unwrap();
        assert_eq!(
            std::fs::read_to_string(held.path()).unwrap(),
            format!("{}\n", std::process::id())
        );
        std::mem::forget(held);
        set_mtime(&path, SystemTime::now() + Duration::from_secs(1000));
        assert!(matches!(
            PidFile::acquire(d.path(), Duration::from_secs(90)),
            Err(PidFileError::Running { .. })
        ));
    }

    #[test]
    fn inspecting_uses_thirty_seconds_either_side_of_now() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(PID_FILE);
        assert_eq!(state(d.path()), PidState::Absent);
        assert_eq!(read_pid(d.path()), None);
        std::fs::write(&path, "4242\n").unwrap();
        assert_eq!(state(d.path()), PidState::Fresh);
        assert_eq!(read_pid(d.path()), Some(4242));
        set_mtime(&path, SystemTime::now() - Duration::from_secs(31));
        assert_eq!(state(d.path()), PidState::Stale);
        set_mtime(&path, SystemTime::now() + Duration::from_secs(20));
        assert_eq!(state(d.path()), PidState::Fresh);
        set_mtime(&path, SystemTime::now() + Duration::from_secs(40));
        assert_eq!(state(d.path()), PidState::Stale);
        assert!(age(d.path()).unwrap() > Duration::from_secs(35));
        std::fs::write(&path, "garbage").unwrap();
        assert_eq!(read_pid(d.path()), None);
    }

    #[test]
    fn touch_refreshes_and_notices_removal() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(PID_FILE);
        std::fs::write(&path, "1\n").unwrap();
        set_mtime(&path, SystemTime::now() - Duration::from_secs(100));
        assert!(touch_path(&path));
        assert_eq!(state(d.path()), PidState::Fresh);
        std::fs::remove_file(&path).unwrap();
        assert!(!touch_path(&path));
    }
}
