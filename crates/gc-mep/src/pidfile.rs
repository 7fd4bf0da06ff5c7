//! `daemon.pid` (ENDPOINT §4.8): exclusive creation, staleness, removal on exit.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// File name inside the endpoint directory.
pub const PID_FILE: &str = "daemon.pid";

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

/// A held PID file; removed when dropped.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Takes `<dir>/daemon.pid`: a file modified within `stale_after` means another instance
    /// runs; an older one is removed with a warning. Written `<pid>\n`, mode 0600.
    pub fn acquire(dir: &Path, stale_after: Duration) -> Result<PidFile, PidFileError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(PID_FILE);
        let io = |source| PidFileError::Io {
            path: path.clone(),
            source,
        };
        if let Ok(meta) = std::fs::metadata(&path) {
            let age = meta
                .modified()
                .ok()
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .unwrap_or_default();
            if age < stale_after {
                let content = std::fs::read_to_string(&path).unwrap_or_default();
                tracing::info!("PID file {} exists: {}", path.display(), content.trim());
                return Err(PidFileError::Running { path, content });
            }
            tracing::warn!(
                "Previous endpoint instance failed to shutdown cleanly.  Removing PID file."
            );
            std::fs::remove_file(&path).map_err(io)?;
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
    pub fn touch(&self) -> bool {
        match std::fs::OpenOptions::new().append(true).open(&self.path) {
            Ok(f) => f.set_modified(SystemTime::now()).is_ok() || self.path.exists(),
            Err(_) => false,
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

    #[test]
    fn fresh_file_refuses_stale_file_is_replaced_and_drop_removes() {
        let d = tempfile::tempdir().unwrap();
        let held = PidFile::acquire(d.path(), Duration::from_secs(90)).unwrap();
        assert_eq!(
            std::fs::read_to_string(held.path()).unwrap(),
            format!("{}\n", std::process::id())
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
}
