//! The durable archive: every Kafka record Retrace consumes, kept whole, with the indexes
//! that let a transaction be traced end to end and a beneficiary's history be found.
//!
//! The storage engine (fjall) stays behind this crate's API; nothing else in the workspace
//! touches it. Records are written in atomic, fsynced batches together with the consumed
//! position of each partition, so a writer that restarts resumes exactly where the archive
//! ends: no record lost, none stored twice.

mod audit;
mod backup;
mod changes;
mod codec;
mod compact;
mod damage;
mod format;
mod incidents;
mod keys;
mod positions;
mod replays;
mod split;
mod store;
#[cfg(test)]
mod test_records;

use std::fmt;
use std::path::PathBuf;

pub use audit::{AuditEntry, AuditFilter, AuditRecord, AuditVerification};
pub use backup::{BackupSummary, restore};
pub use changes::{ArchiveChange, Change, Erasure, ErasureSummary, Watermark};
pub use compact::{CompactionSummary, compact};
pub use format::FORMAT_VERSION;
pub use incidents::{
    Incident, IncidentCause, IncidentChange, IncidentMember, IncidentRule, IncidentSubject,
    IncidentTransition, MINUTE_MS, StepFailure, TransactionFailures, minute_of,
};
pub use replays::{ReplayRecord, ReplayState};
pub use split::{SplitShard, SplitSummary, split};
pub use store::digest::{DIGEST_ALGORITHM, PartitionDigest};
pub use store::reads::page_subject_transactions;
pub use store::{LogStore, PreparedRecord, StoreOptions};

/// A record in the store's own encoding, without its key: how one shard hands another the
/// records it holds, so the other rebuilds them exactly.
pub fn encode_record(record: ArchivedRecord) -> Vec<u8> {
    codec::encode(record)
}

/// The record at `key` from [`encode_record`]'s bytes.
pub fn decode_record(key: RecordKey, bytes: &[u8]) -> Result<ArchivedRecord, StoreError> {
    let shown = key.to_string();
    codec::decode(key, bytes).map_err(|source| StoreError::Corrupt { key: shown, source })
}

/// Where a record lives in Kafka: its primary key in the archive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey {
    pub topic: String,
    pub partition: i32,
    /// Which log of the partition the offset belongs to: 0 for the first, one more each
    /// time the archive found the partition's log replaced (topic deleted and recreated,
    /// log cut back, another cluster), so the new log's offsets never collide with the old
    /// one's. See [`Position::epoch`].
    pub epoch: u32,
    pub offset: i64,
}

impl RecordKey {
    /// Epochs above this cannot be stored: the key keeps the epoch in 16 bits.
    pub const MAX_EPOCH: u32 = (1 << 16) - 1;
    /// Offsets above this cannot be stored: the key keeps the offset in 48 bits, 89 years
    /// of a partition written at 100,000 records a second.
    pub const MAX_OFFSET: i64 = (1 << 48) - 1;
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.topic, self.partition, self.offset)?;
        if self.epoch > 0 {
            write!(f, " (epoch {})", self.epoch)?;
        }
        Ok(())
    }
}

/// A Kafka header as received: values are bytes and may be absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Option<Vec<u8>>,
}

/// What the archiver made of a record's value and headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A valid Retrace envelope.
    Envelope = 1,
    /// Not an envelope, but traceable through its `retrace-*` headers.
    HeadersOnly = 2,
    /// A consumer's outcome, from the outcomes topic.
    Outcome = 3,
    /// Neither an envelope nor Retrace headers: kept, flagged, not traceable.
    Untraceable = 4,
    /// Claims to be Retrace's (an envelope, an outcome, or `retrace-*` headers) but cannot be
    /// read; kept with the reason.
    Malformed = 5,
    /// A service's audit event, from the audit topic; also in the audit trail.
    Audit = 6,
    /// One of the archive's own changes, from its change log: applied by every replica.
    Change = 7,
}

impl RecordKind {
    pub const ALL: [RecordKind; 7] = [
        RecordKind::Envelope,
        RecordKind::HeadersOnly,
        RecordKind::Outcome,
        RecordKind::Untraceable,
        RecordKind::Malformed,
        RecordKind::Audit,
        RecordKind::Change,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Envelope => "envelope",
            RecordKind::HeadersOnly => "headers_only",
            RecordKind::Outcome => "outcome",
            RecordKind::Untraceable => "untraceable",
            RecordKind::Malformed => "malformed",
            RecordKind::Audit => "audit",
            RecordKind::Change => "change",
        }
    }

    /// Flagged records are listed by [`LogStore::flagged`] for someone to look at.
    pub fn is_flagged(self) -> bool {
        matches!(self, RecordKind::Untraceable | RecordKind::Malformed)
    }

    fn from_i32(value: i32) -> Self {
        match value {
            1 => RecordKind::Envelope,
            2 => RecordKind::HeadersOnly,
            3 => RecordKind::Outcome,
            4 => RecordKind::Untraceable,
            6 => RecordKind::Audit,
            7 => RecordKind::Change,
            _ => RecordKind::Malformed,
        }
    }
}

/// The ids that make a record traceable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventIds {
    pub event_id: String,
    pub transaction_id: String,
    pub causation_id: String,
    pub subject_ids: Vec<String>,
    pub source: String,
    pub event_type: String,
}

/// One archived Kafka record, whole, with what was understood of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedRecord {
    pub key: RecordKey,
    pub message_key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
    pub kafka_timestamp_ms: Option<i64>,
    /// When the event happened: the envelope's `occurred_at`, else the Kafka timestamp, else
    /// when it was archived. Traces and time queries are ordered by it.
    pub time_ms: i64,
    pub kind: RecordKind,
    /// Why the record is flagged or could not be fully read.
    pub problem: Option<String>,
    /// Absent for untraceable records. For outcomes: the transaction and the consumer (as
    /// `source`).
    pub ids: Option<EventIds>,
    /// For outcomes: the event the outcome is about, and whether it reports a failure.
    pub outcome: Option<OutcomeRef>,
    pub archived_at_ms: i64,
    /// When the record's payload was erased ([`LogStore::erase_subject`]): its value and
    /// non-Retrace headers are gone, its ids, kind and times remain.
    pub erased_at_ms: Option<i64>,
    /// An audit event another service published: appended to the audit trail in the same
    /// atomic write as the record, so it is chained exactly once. Not stored in the record.
    pub audit: Option<AuditEntry>,
}

/// What an outcome record is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeRef {
    pub event_id: String,
    /// The consumer reported a failure (failed or dead-lettered): the transaction is listed
    /// by [`LogStore::transaction_marks`] with [`Mark::Failure`].
    pub failed: bool,
}

/// Moments worth finding a transaction by, without knowing its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// A root event (one with no causation id) was archived: the transaction started.
    Start,
    /// A consumer reported that it failed to handle one of the transaction's events.
    Failure,
}

/// A transaction found by a [`Mark`] at `time_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkedTransaction {
    pub transaction_id: String,
    pub time_ms: i64,
    /// Resume a listing after this item.
    pub cursor: String,
}

/// The next offset to archive in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    /// The partition's current log: 0 until the archive first found it replaced.
    pub epoch: u32,
    /// The next offset to archive in the current log.
    pub next_offset: i64,
    /// How the current log replaced the previous one; `None` in epoch 0.
    pub reset: Option<LogReset>,
}

/// The archive found a partition's log replaced by a shorter one: a record arrived below
/// the offset it had archived up to. The old log's records stay under their epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogReset {
    /// Where the archive stood in the previous log (epoch - 1) when it was replaced.
    pub previous_next_offset: i64,
    /// When the first record of the new log was written.
    pub at_ms: i64,
}

/// What one [`LogStore::append`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppendSummary {
    pub appended: usize,
    /// Records at or behind the stored position of their partition's log (epoch): already
    /// archived.
    pub already_archived: usize,
    /// Incidents the batch opened, reopened or resolved.
    pub incidents: Vec<IncidentChange>,
}

/// A transaction that touched a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectTransaction {
    pub transaction_id: String,
    /// Time of the newest record of the transaction that touched the subject.
    pub last_seen_ms: i64,
}

/// One page of a listing; pass `next_cursor` back to get the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// What [`LogStore::check_consistency`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsistencyReport {
    pub records: u64,
    pub index_entries: u64,
    /// Each problem in one sentence; empty when every index agrees with the records.
    pub problems: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot open the archive at {path}: {source}. Check that the directory is writable \
         and that no other Retrace process has it open"
    )]
    Open { path: PathBuf, source: fjall::Error },
    #[error("the archive could not {operation}: {source}")]
    Engine {
        operation: &'static str,
        source: fjall::Error,
    },
    #[error(
        "archived record {key} cannot be decoded ({source}); the archive is damaged: \
         restore a backup or rebuild it from Kafka"
    )]
    Corrupt {
        key: String,
        source: prost::DecodeError,
    },
    #[error(
        "index {index} entry {key} points at no record; the archive is damaged: restore a \
         backup or rebuild it from Kafka"
    )]
    Dangling { index: &'static str, key: String },
    #[error(
        "the archive at {path} has format version {found}; this build reads versions \
         {oldest} to {supported} (older ones are migrated when opened): {advice}"
    )]
    UnsupportedFormat {
        path: PathBuf,
        found: String,
        oldest: u32,
        supported: u32,
        advice: &'static str,
    },
    #[error(
        "the archive is damaged: {file} failed its checksum while trying to {operation} \
         ({source}). Nothing from it is served. Stop the archive and restore the latest \
         backup (`retrace restore --from BACKUP --data-dir DIR --force`) or rebuild it from \
         Kafka (`retrace rebuild --from-kafka --data-dir DIR`); see docs/operations.md"
    )]
    Damaged {
        /// The damaged file when it could be found, else the archive's directory.
        file: PathBuf,
        operation: &'static str,
        source: fjall::Error,
    },
    #[error("cannot back the archive up into {path}: {reason}. Choose an empty or new directory")]
    BackupTarget { path: PathBuf, reason: String },
    #[error("cannot restore into {path}: {reason}")]
    RestoreTarget { path: PathBuf, reason: String },
    #[error("cannot {operation} at {path}: {source}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cursor {0:?} was not issued by this listing: start again without a cursor")]
    BadCursor(String),
    #[error(
        "compaction could not {operation} at {path}: {source}. The archive itself is intact; \
         free space or fix permissions and run the compaction again"
    )]
    Compaction {
        operation: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "record {key} cannot be stored: the archive keeps offsets up to {max_offset} and \
         epochs up to {max_epoch}"
    )]
    KeyOutOfRange {
        key: RecordKey,
        max_offset: i64,
        max_epoch: u32,
    },
    #[error("{field} {value:?} contains a NUL byte, which no id may contain")]
    InvalidId { field: &'static str, value: String },
    #[error(
        "the archive's filesystem at {path} has {free} bytes free, too little to write a batch \
         and keep {reserve} in reserve, so writing is paused: free space (grow the volume, move files away, or \
         compact the archive) and it resumes by itself; Kafka keeps the records meanwhile"
    )]
    DiskReserve {
        path: PathBuf,
        free: u64,
        reserve: u64,
    },
    #[error("cannot read the free space of the archive's filesystem at {path}: {source}")]
    FreeSpace {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the split cannot use {path}: {reason}")]
    SplitRefused { path: PathBuf, reason: String },
}

impl StoreError {
    /// The disk is (nearly) full: writes wait for space rather than fail for good.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::DiskReserve { .. } => true,
            StoreError::Engine {
                source: fjall::Error::Io(error),
                ..
            } => error.kind() == std::io::ErrorKind::StorageFull,
            _ => false,
        }
    }

    /// The engine refuses every write after one failed half-way (its journal may be torn):
    /// only reopening the store, that is restarting the process, recovers.
    pub fn needs_reopen(&self) -> bool {
        matches!(
            self,
            StoreError::Engine {
                source: fjall::Error::Poisoned,
                ..
            }
        )
    }
}
