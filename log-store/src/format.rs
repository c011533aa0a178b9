//! The archive's on-disk format version (`meta/format_version`), and the migrations that
//! bring an archive written by an older release up to this one when it is opened.
//!
//! History:
//! - 1: records, indexes, positions, replays, audit trail.
//! - 2: `meta/record_count`, the number of records, written in the same atomic batch as
//!   the records, so a backup's manifest and `/v1/positions` know it without a scan.
//!   Migrating from 1 counts the records once.
//! - 3: a partition's log may be replaced (topic deleted and recreated, log cut back by an
//!   unclean leader election, another cluster): each log is an epoch. A record key keeps
//!   its epoch in the top 16 bits of its 8-byte offset field, and a position that has seen
//!   a reset keeps its epoch and the reset after the next offset. Epoch 0 keys and
//!   8-byte positions are format 2's bytes, so migrating from 2 only rewrites the marker;
//!   a format-2 build refuses a format-3 archive, whose positions it could not read.
//! - 4: the incident index (`incidents` keyspace, `store/incidents.rs`), kept by every
//!   append. Migrating from 3 rewrites the marker; the index is built from the records at
//!   the first open with the incident rule. A format-3 build refuses a format-4 archive: its
//!   appends would leave the index behind the records without saying so.

use fjall::PersistMode;

use crate::StoreError;
use crate::store::Inner;

/// The on-disk format this build writes; it opens this one and migrates older ones.
pub const FORMAT_VERSION: u32 = 4;
/// The oldest format this build migrates.
const OLDEST_MIGRATED: u32 = 1;
const FORMAT_KEY: &str = "format_version";
pub(crate) const RECORD_COUNT_KEY: &str = "record_count";

/// Checks the archive's format, migrating an older one, and returns its record count.
/// A new archive is marked with this format.
pub(crate) fn open(inner: &Inner) -> Result<u64, StoreError> {
    let found = inner
        .meta
        .get(FORMAT_KEY)
        .map_err(inner.error("read its format version"))?;
    let version = match &found {
        // Every release wrote the marker at creation; an archive without one is new.
        None if inner.records.first_key_value().is_none() => {
            write_format(inner, 0)?;
            return Ok(0);
        }
        None => OLDEST_MIGRATED,
        Some(found) => std::str::from_utf8(found)
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0),
    };
    let unsupported = |advice| StoreError::UnsupportedFormat {
        path: inner.path.clone(),
        found: found
            .as_ref()
            .map_or("none".into(), |v| String::from_utf8_lossy(v).into_owned()),
        oldest: OLDEST_MIGRATED,
        supported: FORMAT_VERSION,
        advice,
    };
    match version {
        FORMAT_VERSION => read_record_count(inner),
        2 | 3 => {
            let records = read_record_count(inner)?;
            write_format(inner, records)?;
            Ok(records)
        }
        1 => {
            let records = inner
                .records
                .len()
                .map_err(inner.error("count records to migrate from format 1"))?;
            write_format(inner, records as u64)?;
            Ok(records as u64)
        }
        newer if newer > FORMAT_VERSION => Err(unsupported(
            "it was written by a newer Retrace; run that release (or newer), or restore a \
             backup made by this one",
        )),
        _ => Err(unsupported(
            "this build cannot migrate it; rebuild the archive from Kafka \
             (`retrace rebuild --from-kafka --data-dir DIR`)",
        )),
    }
}

fn write_format(inner: &Inner, records: u64) -> Result<(), StoreError> {
    let mut batch = inner.db.batch().durability(Some(PersistMode::SyncAll));
    batch.insert(&inner.meta, RECORD_COUNT_KEY, records.to_be_bytes());
    batch.insert(&inner.meta, FORMAT_KEY, FORMAT_VERSION.to_string());
    batch
        .commit()
        .map_err(inner.error("record its format version"))
}

pub(crate) fn read_record_count(inner: &Inner) -> Result<u64, StoreError> {
    let value = inner
        .meta
        .get(RECORD_COUNT_KEY)
        .map_err(inner.error("read its record count"))?;
    value
        .and_then(|v| <[u8; 8]>::try_from(&*v).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Dangling {
            index: "meta",
            key: RECORD_COUNT_KEY.into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LogStore, StoreOptions};

    /// The refusal to open an archive marked with format `version`.
    fn refusal(version: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path(), &StoreOptions::default()).unwrap();
        store.inner().meta.insert(FORMAT_KEY, version).unwrap();
        drop(store);
        LogStore::open(dir.path(), &StoreOptions::default())
            .err()
            .expect("refused")
            .to_string()
    }

    #[test]
    fn an_archive_of_a_newer_format_is_refused_naming_both_versions() {
        let error = refusal("5");
        assert!(error.contains("format version 5"), "{error}");
        assert!(error.contains("versions 1 to 4"), "{error}");
        assert!(error.contains("newer Retrace"), "{error}");
    }

    #[test]
    fn an_archive_of_an_unknown_older_format_is_refused_with_the_rebuild_advice() {
        let error = refusal("0");
        assert!(error.contains("format version 0"), "{error}");
        assert!(error.contains("retrace rebuild"), "{error}");
    }
}
