//! Offline compaction: the archive rewritten into a fresh directory holding only what is
//! live, so nothing overwritten or erased survives anywhere under the data directory —
//! not in a table, not in the engine's journal (which only rotates past 64 MB).
//!
//! The swap is crash-safe: a `COMPLETE` marker in the staging directory says the copy is
//! whole; [`finish_interrupted`] (run by [`LogStore::open`]) completes or discards a swap a
//! crash interrupted.

use std::path::{Path, PathBuf};

use fjall::PersistMode;

use crate::store::LogStore;
use crate::{StoreError, StoreOptions};

const COMPLETE: &str = "COMPLETE";
/// Entries copied per atomic batch.
const COPY_BATCH: usize = 10_000;

/// What [`compact`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionSummary {
    pub entries: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Rewrites the archive at `path`. It must not be open in any process (the engine's lock
/// refuses a second opener), so stop the archive service first.
pub fn compact(path: &Path, options: &StoreOptions) -> Result<CompactionSummary, StoreError> {
    let source = LogStore::open(path, options)?;
    let staging = sibling(path, "compacting");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(&staging, "clear the staging copy"))?;
    }
    let target = LogStore::open(&staging, options)?;
    let mut summary = CompactionSummary {
        bytes_before: source.disk_space()?,
        ..CompactionSummary::default()
    };
    summary.entries = copy_keyspaces(
        source.inner().all_keyspaces().map(fjall::Keyspace::iter),
        &target,
    )?;
    summary.bytes_after = target.disk_space()?;
    drop((source, target));
    let marker = staging.join(COMPLETE);
    std::fs::write(&marker, b"").map_err(io(&marker, "mark the copy complete"))?;
    std::fs::File::open(&marker)
        .and_then(|f| f.sync_all())
        .map_err(io(&marker, "mark the copy complete"))?;
    swap(path)?;
    Ok(summary)
}

/// Copies every entry of `sources` (one iterator per keyspace, in
/// [`all_keyspaces`](crate::store::Inner::all_keyspaces) order) into `target`'s keyspaces,
/// in atomic batches, then makes the copy durable. Returns the entries copied.
pub(crate) fn copy_keyspaces(
    sources: [fjall::Iter; 16],
    target: &LogStore,
) -> Result<u64, StoreError> {
    let mut entries = 0;
    for (from, to) in sources.into_iter().zip(target.inner().all_keyspaces()) {
        entries += copy_keyspace(from, to, target)?;
    }
    target
        .inner()
        .db
        .persist(PersistMode::SyncAll)
        .map_err(target.error("flush the copy"))?;
    Ok(entries)
}

/// Copies every entry of `from` into `to`, one of `target`'s keyspaces, in atomic batches;
/// the caller makes the copy durable. Returns the entries copied.
pub(crate) fn copy_keyspace(
    from: fjall::Iter,
    to: &fjall::Keyspace,
    target: &LogStore,
) -> Result<u64, StoreError> {
    let mut entries = 0;
    let mut batch = target.inner().db.batch();
    let mut pending = 0;
    for guard in from {
        let (key, value) = guard
            .into_inner()
            .map_err(target.error("read the archive to copy it"))?;
        batch.insert(to, key, value);
        pending += 1;
        entries += 1;
        if pending == COPY_BATCH {
            let full = std::mem::replace(&mut batch, target.inner().db.batch());
            full.commit().map_err(target.error("write the copy"))?;
            pending = 0;
        }
    }
    batch.commit().map_err(target.error("write the copy"))?;
    Ok(entries)
}

/// Completes a compaction a crash interrupted after its copy was whole, or discards one
/// interrupted before.
pub(crate) fn finish_interrupted(path: &Path) -> Result<(), StoreError> {
    let staging = sibling(path, "compacting");
    if staging.join(COMPLETE).exists() {
        return swap(path);
    }
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(&staging, "discard an unfinished copy"))?;
    }
    let old = sibling(path, "old");
    if path.join(COMPLETE).exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(io(&old, "remove the old archive"))?;
        }
        let marker = path.join(COMPLETE);
        std::fs::remove_file(&marker).map_err(io(&marker, "finish a compaction"))?;
    }
    Ok(())
}

/// `path` → `path.old`, staging → `path`, then the old one goes. Each step can be redone.
fn swap(path: &Path) -> Result<(), StoreError> {
    let staging = sibling(path, "compacting");
    let old = sibling(path, "old");
    if path.exists() && !old.exists() {
        std::fs::rename(path, &old).map_err(io(path, "set the old archive aside"))?;
    }
    std::fs::rename(&staging, path).map_err(io(&staging, "put the compacted archive in place"))?;
    finish_interrupted(path)
}

pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    path.with_file_name(name)
}

fn io(path: &Path, operation: &'static str) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Compaction {
        operation,
        path,
        source,
    }
}
