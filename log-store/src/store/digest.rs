//! A partition's digest: one SHA-256 over what every replica of the archive holds alike
//! because it came from Kafka, so two archives consuming the same topics can prove they
//! hold the same records, and find the first one where they do not.

use sha2::{Digest, Sha256};

use super::LogStore;
use crate::{ArchivedRecord, StoreError, keys};

/// Changes whenever what a digest covers, or how it is encoded, changes: digests made by
/// different versions must never compare equal by accident.
pub const DIGEST_ALGORITHM: &str = "sha256-v1";

/// Records read per page while digesting, so a large partition is never held in memory.
const PAGE: usize = 1_000;

/// What [`LogStore::partition_digest`] covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDigest {
    pub topic: String,
    pub partition: i32,
    /// The partition's current log, whose records are covered (0 when nothing is archived).
    pub epoch: u32,
    /// Records with an offset below this are covered.
    pub until_offset: i64,
    pub records: u64,
    /// Lowercase hex of the SHA-256 ([`DIGEST_ALGORITHM`]).
    pub digest: String,
    pub first_offset: Option<i64>,
    pub last_offset: Option<i64>,
}

impl LogStore {
    /// The digest of `topic`/`partition`'s archived records with an offset below
    /// `until_offset`, in offset order, in the partition's current log (epoch): the log
    /// every archive consuming the partition now reads, whichever epoch number its own
    /// history gave it.
    ///
    /// Covered: topic, partition, offset, message key, value as stored (after an erasure),
    /// headers, Kafka timestamp, and when the payload was erased. Not covered: what each
    /// archive derives or adds itself (archive time, event time, kind, problem, ids,
    /// outcome), which may differ between versions or configurations without the records
    /// differing.
    pub fn partition_digest(
        &self,
        topic: &str,
        partition: i32,
        until_offset: i64,
    ) -> Result<PartitionDigest, StoreError> {
        let epoch = self.position(topic, partition).map_or(0, |p| p.epoch);
        let mut hasher = Sha256::new();
        hasher.update(DIGEST_ALGORITHM.as_bytes());
        let mut digest = PartitionDigest {
            topic: topic.to_owned(),
            partition,
            epoch,
            until_offset,
            records: 0,
            digest: String::new(),
            first_offset: None,
            last_offset: None,
        };
        let mut cursor = None;
        'pages: loop {
            let page = self.records(topic, Some(partition), 0, PAGE, cursor.as_deref())?;
            for record in &page.items {
                // Earlier epochs sort first: logs this archive no longer reads.
                if record.key.epoch < epoch {
                    continue;
                }
                if record.key.epoch > epoch || record.key.offset >= until_offset {
                    break 'pages;
                }
                hash_record(&mut hasher, record);
                digest.records += 1;
                digest.first_offset.get_or_insert(record.key.offset);
                digest.last_offset = Some(record.key.offset);
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        digest.digest = keys::to_hex(&hasher.finalize());
        Ok(digest)
    }
}

/// Feeds the covered fields of `record`, each length-prefixed or of fixed width and every
/// optional one tagged, so no two different records (or runs of records) feed the same bytes.
fn hash_record(hasher: &mut Sha256, record: &ArchivedRecord) {
    bytes(hasher, record.key.topic.as_bytes());
    hasher.update(record.key.partition.to_be_bytes());
    hasher.update(record.key.offset.to_be_bytes());
    optional_bytes(hasher, record.message_key.as_deref());
    optional_bytes(hasher, record.value.as_deref());
    hasher.update((record.headers.len() as u64).to_be_bytes());
    for header in &record.headers {
        bytes(hasher, header.name.as_bytes());
        optional_bytes(hasher, header.value.as_deref());
    }
    optional_number(hasher, record.kafka_timestamp_ms);
    optional_number(hasher, record.erased_at_ms);
}

fn bytes(hasher: &mut Sha256, value: &[u8]) {
    hasher.update((value.len() as u64).to_be_bytes());
    hasher.update(value);
}

fn optional_bytes(hasher: &mut Sha256, value: Option<&[u8]>) {
    match value {
        Some(value) => {
            hasher.update([1]);
            bytes(hasher, value);
        }
        None => hasher.update([0]),
    }
}

fn optional_number(hasher: &mut Sha256, value: Option<i64>) {
    match value {
        Some(value) => {
            hasher.update([1]);
            hasher.update(value.to_be_bytes());
        }
        None => hasher.update([0]),
    }
}

#[cfg(test)]
#[path = "digest_tests.rs"]
mod tests;
