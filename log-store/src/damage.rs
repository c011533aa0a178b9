//! Telling a damaged archive from a failing one. fjall checks an xxh3 checksum on every
//! table block it reads and on every journal batch it recovers, so a flipped byte surfaces
//! as an error, never as a wrong answer; this module turns that error into one that names
//! the damaged file and the way back (restore a backup, rebuild from Kafka).

use std::path::{Path, PathBuf};

use fjall::{AbstractTree, Keyspace, LsmError};

use crate::StoreError;

/// Whether `error` says stored bytes are not what was written (as opposed to a full disk
/// or a permission problem).
pub(crate) fn is_damage(error: &fjall::Error) -> bool {
    match error {
        fjall::Error::Storage(inner) => matches!(
            inner,
            LsmError::ChecksumMismatch { .. }
                | LsmError::Decompress(_)
                | LsmError::InvalidTrailer
                | LsmError::InvalidHeader(_)
                | LsmError::InvalidTag(_)
                | LsmError::InvalidVersion(_)
                | LsmError::Unrecoverable
        ),
        fjall::Error::JournalRecovery(_)
        | fjall::Error::InvalidTrailer
        | fjall::Error::InvalidTag(_)
        | fjall::Error::Decompress(_) => true,
        _ => false,
    }
}

/// `operation` failed with `source`: [`StoreError::Damaged`] naming the damaged table file
/// when the archive's bytes are wrong, else [`StoreError::Engine`].
pub(crate) fn classify(
    archive: &Path,
    keyspaces: &[&Keyspace],
    operation: &'static str,
    source: fjall::Error,
) -> StoreError {
    if !is_damage(&source) {
        return StoreError::Engine { operation, source };
    }
    StoreError::Damaged {
        file: damaged_table(keyspaces).unwrap_or_else(|| archive.to_path_buf()),
        operation,
        source,
    }
}

/// The first table file whose blocks fail their checksums: each table is read whole, so
/// this costs a full read of the archive, paid only once damage was seen.
fn damaged_table(keyspaces: &[&Keyspace]) -> Option<PathBuf> {
    keyspaces.iter().find_map(|keyspace| {
        keyspace
            .tree
            .current_version()
            .iter_tables()
            .find(|table| table.iter().any(|item| item.is_err()))
            .map(|table| table.path.to_path_buf())
    })
}

#[cfg(test)]
mod tests {
    use crate::test_records::{archived, prepared};
    use crate::{LogStore, StoreError, StoreOptions};

    #[test]
    fn a_flipped_byte_in_a_table_is_reported_naming_the_file_never_answered() {
        let dir = tempfile::tempdir().unwrap();
        let table = {
            let store = LogStore::open(dir.path(), &StoreOptions::default()).unwrap();
            store.append(&prepared(0..200)).unwrap();
            let records = &store.inner().records;
            records.rotate_memtable_and_wait().unwrap();
            let version = fjall::AbstractTree::current_version(&records.tree);
            let table = version.iter_tables().next().expect("flushed to a table");
            table.path.to_path_buf()
        };
        let mut bytes = std::fs::read(&table).unwrap();
        bytes[100] ^= 0x01;
        std::fs::write(&table, bytes).unwrap();

        let read = LogStore::open(dir.path(), &StoreOptions::default())
            .and_then(|store| store.get(&archived(3).key));
        let error = read.expect_err("the damage is reported");
        assert!(matches!(error, StoreError::Damaged { .. }), "{error}");
        let message = error.to_string();
        assert!(message.contains(&table.display().to_string()), "{message}");
        assert!(message.contains("retrace restore"), "{message}");
        assert!(message.contains("retrace rebuild"), "{message}");
    }
}
