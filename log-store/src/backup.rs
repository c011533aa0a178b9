//! Online backup and offline restore.
//!
//! A backup is a new archive: every keyspace read from one cross-keyspace snapshot while
//! the archiver keeps writing, so its records, indexes and partition positions agree with
//! each other exactly as they stood at one instant. Restored, the archive resumes from those
//! positions: what arrived after the backup is read again from Kafka, nothing is doubled.
//! A restore copies entry by entry, so every block of the backup is checksummed on the way.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use fjall::Readable;

use crate::compact::{copy_keyspaces, sibling};
use crate::store::LogStore;
use crate::{FORMAT_VERSION, Position, StoreError, StoreOptions};

/// What a backup or a restore holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    pub format_version: u32,
    pub records: u64,
    /// Entries copied, indexes and audit trail included.
    pub entries: u64,
    /// Where the archive resumes in each partition.
    pub positions: Vec<Position>,
}

impl LogStore {
    /// Writes a consistent copy of the archive as it is now into `target` (new or empty)
    /// while writes go on.
    pub fn backup(&self, target: &Path) -> Result<BackupSummary, StoreError> {
        if let Some(reason) = not_empty(target)? {
            return Err(StoreError::BackupTarget {
                path: target.to_path_buf(),
                reason,
            });
        }
        let snapshot = self.inner().db.snapshot();
        let copy = LogStore::open(target, &StoreOptions::default())?;
        let entries = copy_keyspaces(
            self.inner()
                .all_keyspaces()
                .map(|keyspace| snapshot.iter(keyspace)),
            &copy,
        )?;
        drop((snapshot, copy));
        summarise(target, entries)
    }
}

/// Makes the archive in `backup` the archive in `data_dir`. Refuses while `data_dir` is open
/// in a running archive; an archive already there is replaced only with `replace`, and is
/// then kept beside it as `<data_dir>.replaced` until the next restore.
pub fn restore(backup: &Path, data_dir: &Path, replace: bool) -> Result<BackupSummary, StoreError> {
    let refuse = |reason: String| StoreError::RestoreTarget {
        path: data_dir.to_path_buf(),
        reason,
    };
    if in_use(data_dir)? {
        return Err(refuse(
            "a running archive has it open; stop the archive first".into(),
        ));
    }
    if let Some(reason) = not_empty(data_dir)?
        && !replace
    {
        return Err(refuse(format!(
            "{reason}; pass --force to replace it (the current one is kept as {})",
            sibling(data_dir, "replaced").display()
        )));
    }
    let staging = sibling(data_dir, "restoring");
    remove_dir(&staging)?;
    let entries = {
        let source = LogStore::open(backup, &StoreOptions::default())?;
        let copy = LogStore::open(&staging, &StoreOptions::default())?;
        copy_keyspaces(
            source.inner().all_keyspaces().map(fjall::Keyspace::iter),
            &copy,
        )?
    };
    if data_dir.exists() {
        let replaced = sibling(data_dir, "replaced");
        remove_dir(&replaced)?;
        std::fs::rename(data_dir, &replaced).map_err(io(data_dir, "set the old archive aside"))?;
    }
    std::fs::rename(&staging, data_dir)
        .map_err(io(&staging, "put the restored archive in place"))?;
    summarise(data_dir, entries)
}

fn summarise(path: &Path, entries: u64) -> Result<BackupSummary, StoreError> {
    let store = LogStore::open(path, &StoreOptions::default())?;
    Ok(BackupSummary {
        format_version: FORMAT_VERSION,
        records: store.record_count(),
        entries,
        positions: store.positions()?,
    })
}

/// Why `dir` cannot receive a copy: it holds files.
pub(crate) fn not_empty(dir: &Path) -> Result<Option<String>, StoreError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries
            .next()
            .is_some()
            .then(|| format!("{} is not empty", dir.display()))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io(dir, "read the directory")(error)),
    }
}

/// Whether a process holds the engine's lock on the archive in `dir`.
pub(crate) fn in_use(dir: &Path) -> Result<bool, StoreError> {
    let lock = dir.join("lock");
    let Ok(file) = File::open(&lock) else {
        return Ok(false);
    };
    match file.try_lock() {
        Ok(()) => Ok(false),
        Err(TryLockError::WouldBlock) => Ok(true),
        Err(TryLockError::Error(error)) => Err(io(&lock, "check the archive's lock")(error)),
    }
}

pub(crate) fn remove_dir(dir: &PathBuf) -> Result<(), StoreError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io(dir, "remove a leftover copy"))?;
    }
    Ok(())
}

pub(crate) fn io(
    path: &Path,
    operation: &'static str,
) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io {
        operation,
        path,
        source,
    }
}

#[cfg(test)]
#[path = "backup_tests.rs"]
mod tests;
