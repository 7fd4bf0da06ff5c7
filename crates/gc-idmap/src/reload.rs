//! Live reload of the mapping file (IDENTITY-MAPPING.md §7.4).
//!
//! [`ReloadingMapping`] holds the configuration in force. The MEP calls
//! [`ReloadingMapping::reload_if_changed`] on a timer (every [`DEFAULT_POLL_INTERVAL`], never more
//! often than [`MIN_POLL_INTERVAL`]); from tokio, wrap it in `spawn_blocking` or call it from an
//! interval task, it only stats and, on change, reads one file. A valid new file replaces the old
//! one atomically; anything else is logged and the old configuration stays in force.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use crate::config::{LoadError, MAX_FILE_BYTES, MappingFile};

/// How often the MEP looks at the file by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// The shortest allowed poll interval.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// `EX_NOPERM`: the file exists but may not be read.
pub const EXIT_NOPERM: u8 = 77;
/// `EX_CONFIG`: the file is missing or invalid.
pub const EXIT_CONFIG: u8 = 78;

/// Why the mapping file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Reading it failed.
    #[error("cannot read identity mapping file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Its content is rejected.
    #[error("invalid identity mapping file {path}: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        source: LoadError,
    },
}

impl FileError {
    /// The process exit status the MEP uses when this happens at start-up (77 or 78).
    pub fn exit_code(&self) -> u8 {
        match self {
            FileError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                EXIT_NOPERM
            }
            _ => EXIT_CONFIG,
        }
    }
}

/// The (inode, ctime, mtime, size) identity of a file state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileState {
    dev: u64,
    ino: u64,
    ctime: (i64, i64),
    mtime: (i64, i64),
    size: u64,
}

fn file_state(path: &Path) -> std::io::Result<FileState> {
    let m = std::fs::metadata(path)?;
    Ok(FileState {
        dev: m.dev(),
        ino: m.ino(),
        ctime: (m.ctime(), m.ctime_nsec()),
        mtime: (m.mtime(), m.mtime_nsec()),
        size: m.size(),
    })
}

/// Read and validate a mapping file (bounded to [`MAX_FILE_BYTES`]).
pub fn load_file(path: &Path) -> Result<MappingFile, FileError> {
    let io = |source| FileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    MappingFile::from_bytes(&bytes).map_err(|source| FileError::Invalid {
        path: path.to_path_buf(),
        source,
    })
}

/// What [`ReloadingMapping::reload_if_changed`] did.
#[derive(Debug)]
pub enum ReloadStatus {
    /// The file looks the same as at the last attempt; nothing was read.
    Unchanged,
    /// The file changed and its new content is now in force.
    Reloaded,
    /// The file changed (or vanished) but could not be used; the previous configuration stays.
    Kept(FileError),
}

/// A mapping configuration that follows its file.
#[derive(Debug)]
pub struct ReloadingMapping {
    path: PathBuf,
    current: RwLock<Arc<MappingFile>>,
    last_state: Mutex<Option<FileState>>,
}

impl ReloadingMapping {
    /// Load `path` for the first time; failure is fatal for the MEP (see [`FileError::exit_code`]).
    pub fn open(path: impl Into<PathBuf>) -> Result<ReloadingMapping, FileError> {
        let path = path.into();
        let state = file_state(&path).ok();
        let mapping = load_file(&path)?;
        Ok(ReloadingMapping {
            path,
            current: RwLock::new(Arc::new(mapping)),
            last_state: Mutex::new(state),
        })
    }

    /// The file being followed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configuration in force (cheap; hold it for the duration of one mapping).
    pub fn current(&self) -> Arc<MappingFile> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Look at the file; if its (inode, ctime, mtime, size) changed since the last attempt,
    /// re-read and re-validate it. The new state is recorded before parsing, so a bad file is
    /// not retried until it changes again. A missing file is reported at every call.
    pub fn reload_if_changed(&self) -> ReloadStatus {
        let state = match file_state(&self.path) {
            Ok(s) => s,
            Err(source) => {
                *self
                    .last_state
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = None;
                let err = FileError::Io {
                    path: self.path.clone(),
                    source,
                };
                tracing::error!(error = %err, "identity mapping file unavailable; keeping the previous configuration");
                return ReloadStatus::Kept(err);
            }
        };
        {
            let mut last = self
                .last_state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if *last == Some(state) {
                return ReloadStatus::Unchanged;
            }
            *last = Some(state);
        }
        match load_file(&self.path) {
            Ok(mapping) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(mapping);
                tracing::info!(path = %self.path.display(), "identity mapping file reloaded");
                ReloadStatus::Reloaded
            }
            Err(err) => {
                tracing::error!(error = %err, "identity mapping file rejected; keeping the previous configuration");
                ReloadStatus::Kept(err)
            }
        }
    }
}
