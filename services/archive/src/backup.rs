//! Backups and restores of the archive. `POST /v1/admin/backups` copies the running
//! archive, from one consistent snapshot, into `DIR/archive` beside a `DIR/manifest.json`;
//! [`restore`] (offline, `retrace restore`) checks the manifest and puts the copy in place.
//! Restored, the archive resumes from the positions the backup holds: Kafka supplies what
//! came after, and records already stored are skipped, so nothing is missed or doubled.

use std::path::{Path, PathBuf};

use retrace_api::BackupManifest;
use retrace_http::ApiError;
use retrace_log_store::{BackupSummary, FORMAT_VERSION, LogStore, StoreError};
use retrace_telemetry::InternalEvent;

use crate::events::{ArchiveRestored, BackupWritten};
use crate::reads::{position_view, store_error};
use crate::replay::now_ms;
use crate::trace::rfc3339;

const MANIFEST: &str = "manifest.json";
const STORE: &str = "archive";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "{path} is not a Retrace backup ({reason}); pass the directory `retrace backup --to` \
         wrote"
    )]
    NotABackup { path: PathBuf, reason: String },
    #[error(
        "the backup in {path} has format version {found}, newer than this build's \
         {FORMAT_VERSION}: restore it with the release that made it, or a newer one"
    )]
    NewerFormat { path: PathBuf, found: u32 },
    #[error(
        "the restored archive holds {restored} records but the backup's manifest says \
         {expected}: the backup is incomplete; use another one or rebuild from Kafka"
    )]
    Incomplete { expected: u64, restored: u64 },
    #[error("cannot write {path}: {source}")]
    Manifest {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl BackupError {
    /// Whether the request was refused as asked (wrong or occupied directory, not a backup,
    /// too new), rather than failing on the way.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            BackupError::Store(StoreError::BackupTarget { .. } | StoreError::RestoreTarget { .. })
                | BackupError::NotABackup { .. }
                | BackupError::NewerFormat { .. }
        )
    }
}

/// `POST /v1/admin/backups`: the archive as it is now, into `directory` (absolute, new or
/// empty, on the archive's host).
pub(crate) fn backup_on_request(
    store: &LogStore,
    directory: &str,
) -> Result<BackupManifest, ApiError> {
    if !Path::new(directory).is_absolute() {
        return Err(ApiError::invalid(
            "directory",
            "directory must be an absolute path: a new or empty directory on the archive's \
             host",
        ));
    }
    backup(store, Path::new(directory)).map_err(|error| match error {
        BackupError::Store(StoreError::BackupTarget { .. }) => {
            ApiError::conflict(error.to_string())
        }
        BackupError::Store(error) => store_error(error),
        other => ApiError::internal(other.to_string()),
    })
}

/// Writes a backup of `store` into `dir` (new or empty): the store in `dir/archive`, then
/// `dir/manifest.json`, last, so a directory with a manifest holds a whole backup.
pub fn backup(store: &LogStore, dir: &Path) -> Result<BackupManifest, BackupError> {
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(StoreError::BackupTarget {
            path: dir.to_path_buf(),
            reason: "it is not empty".into(),
        }
        .into());
    }
    let started = std::time::Instant::now();
    let summary = store.backup(&dir.join(STORE))?;
    let manifest = manifest(&summary);
    let path = dir.join(MANIFEST);
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
    std::fs::write(&path, json)
        .and_then(|()| std::fs::File::open(&path)?.sync_all())
        .map_err(|source| BackupError::Manifest { path, source })?;
    BackupWritten {
        directory: dir,
        records: summary.records,
        entries: summary.entries,
        elapsed: started.elapsed(),
    }
    .emit();
    Ok(manifest)
}

/// Restores the backup in `from` as the archive in `data_dir` (the archive must be
/// stopped); an archive already there is replaced only with `force`.
pub fn restore(from: &Path, data_dir: &Path, force: bool) -> Result<BackupManifest, BackupError> {
    let path = from.join(MANIFEST);
    let not_a_backup = |reason: String| BackupError::NotABackup {
        path: from.to_path_buf(),
        reason,
    };
    let text = std::fs::read(&path)
        .map_err(|error| not_a_backup(format!("cannot read {}: {error}", path.display())))?;
    let manifest: BackupManifest = serde_json::from_slice(&text)
        .map_err(|error| not_a_backup(format!("{} is not a manifest: {error}", path.display())))?;
    if manifest.format_version > FORMAT_VERSION {
        return Err(BackupError::NewerFormat {
            path: from.to_path_buf(),
            found: manifest.format_version,
        });
    }
    let summary = retrace_log_store::restore(&from.join(STORE), data_dir, force)?;
    if summary.records != manifest.records {
        return Err(BackupError::Incomplete {
            expected: manifest.records,
            restored: summary.records,
        });
    }
    ArchiveRestored {
        from,
        data_dir,
        records: summary.records,
    }
    .emit();
    Ok(manifest)
}

fn manifest(summary: &BackupSummary) -> BackupManifest {
    BackupManifest {
        format_version: summary.format_version,
        created_at: rfc3339(now_ms()),
        records: summary.records,
        positions: summary
            .positions
            .iter()
            .cloned()
            .map(position_view)
            .collect(),
    }
}

#[cfg(test)]
#[path = "backup_tests.rs"]
mod tests;
