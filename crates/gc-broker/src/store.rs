//! Durable store of results that could not be confirmed (§3.7): one file per result,
//! `<dir>/unacked_results/<task_id>`, holding the packed result message bytes exactly as they
//! go on the wire — the same layout upstream's UEP uses, so either implementation can pick up
//! what the other left behind in the same endpoint directory.
//!
//! Files are written atomically: a hidden temporary file (`.<task_id>.<random>.tmp`, hidden
//! names are never listed as results, as upstream) is written, `fsync`ed and renamed into
//! place, and the directory is `fsync`ed, so a crash leaves either the whole result or none.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{PublishError, StoreError};
use crate::publisher::Publisher;

/// Name of the sub-directory, as upstream.
pub const STORE_DIR: &str = "unacked_results";

/// The unacked-result store of one endpoint directory.
#[derive(Debug, Clone)]
pub struct UnackedStore {
    dir: PathBuf,
}

/// Outcome of [`UnackedStore::republish`].
#[derive(Debug, Default)]
pub struct RepublishReport {
    /// Task ids confirmed by the broker and removed from the store.
    pub confirmed: Vec<String>,
    /// Task ids that failed again (still stored), with the reason.
    pub failed: Vec<(String, PublishError)>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

impl UnackedStore {
    /// Opens (creating, mode 0700) `<endpoint_dir>/unacked_results` and removes temporary
    /// files left by an interrupted write.
    pub fn open(endpoint_dir: &Path) -> Result<Self, StoreError> {
        let dir = endpoint_dir.join(STORE_DIR);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io_err(&dir))?;
        }
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".tmp") {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(UnackedStore { dir })
    }

    /// The store directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, task_id: &str) -> Result<PathBuf, StoreError> {
        let valid = !task_id.is_empty()
            && !task_id.starts_with('.')
            && task_id.len() <= 255
            && !task_id.contains(['/', '\\', '\0']);
        if !valid {
            return Err(StoreError::InvalidKey(task_id.to_owned()));
        }
        Ok(self.dir.join(task_id))
    }

    /// Stores (or replaces) the result of `task_id`, atomically and durably.
    pub fn put(&self, task_id: &str, body: &[u8]) -> Result<(), StoreError> {
        use rand::Rng;
        let path = self.path_of(task_id)?;
        let tmp = self.dir.join(format!(
            ".{task_id}.{:016x}.tmp",
            rand::rng().random::<u64>()
        ));
        let write = || -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            f.write_all(body)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(&tmp)(e));
        }
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(&path)(e));
        }
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))
    }

    /// Reads the stored result of `task_id`, if any.
    pub fn get(&self, task_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path_of(task_id)?;
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Removes the result of `task_id` (no error if it is not there).
    pub fn remove(&self, task_id: &str) -> Result<(), StoreError> {
        let path = self.path_of(task_id)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Task ids currently stored, sorted.
    pub fn task_ids(&self) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            if !entry.file_type().map_err(io_err(&entry.path()))?.is_file() {
                continue;
            }
            if let Some(name) = entry.file_name().to_str() {
                if !name.starts_with('.') {
                    ids.push(name.to_owned());
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Publishes every stored result (pipelined) and removes each one the broker confirms.
    /// Call it at start-up and after every reconnect of the result publisher.
    pub async fn republish(&self, publisher: &Publisher) -> Result<RepublishReport, StoreError> {
        let mut report = RepublishReport::default();
        let mut confirms = Vec::new();
        for id in self.task_ids()? {
            let Some(body) = self.get(&id)? else { continue };
            match publisher.publish(body).await {
                Ok(c) => confirms.push((id, c)),
                Err(f) => report.failed.push((id, f.error)),
            }
        }
        for (id, confirm) in confirms {
            match confirm.await {
                Ok(()) => {
                    self.remove(&id)?;
                    report.confirmed.push(id);
                }
                Err(f) => report.failed.push((id, f.error)),
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_remove_and_hidden_files() {
        let tmp = tempfile::tempdir().unwrap();
        let store = UnackedStore::open(tmp.path()).unwrap();
        store.put("t1", b"one").unwrap();
        store.put("t2", b"two").unwrap();
        store.put("t1", b"one again").unwrap();
        fs::write(store.dir().join(".t3.0.tmp"), b"partial").unwrap();
        assert_eq!(store.task_ids().unwrap(), vec!["t1", "t2"]);
        assert_eq!(store.get("t1").unwrap().as_deref(), Some(&b"one again"[..]));
        store.remove("t1").unwrap();
        store.remove("t1").unwrap();
        assert_eq!(store.get("t1").unwrap(), None);
        // Re-opening clears interrupted writes and keeps results.
        let store = UnackedStore::open(tmp.path()).unwrap();
        assert!(!store.dir().join(".t3.0.tmp").exists());
        assert_eq!(store.task_ids().unwrap(), vec!["t2"]);
    }

    #[test]
    fn unsafe_keys_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = UnackedStore::open(tmp.path()).unwrap();
        for bad in ["", ".", "..", "../x", "a/b", ".hidden"] {
            assert!(
                matches!(store.put(bad, b"x"), Err(StoreError::InvalidKey(_))),
                "{bad:?}"
            );
        }
    }
}
