//! The archive's own changes, which every replica applies in the order its change log (a
//! Kafka topic) holds them: a replay's record and progress, and erasures. A replica that
//! receives an API call publishes the change and waits for its own store to apply it, like
//! every other replica does; none writes such a change straight into its store. So replicas
//! converge by reading, and the log decides between two replicas that ask at once.

use crate::{RecordKey, ReplayRecord};

/// One record of the change log. Stored as protobuf, like the replay record it may carry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ArchiveChange {
    #[prost(oneof = "Change", tags = "1, 2")]
    pub change: Option<Change>,
    /// The archive whose replicas apply it (its consumer group's stem): other archives on
    /// the same cluster keep the record and apply nothing.
    #[prost(string, tag = "3")]
    pub archive: String,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Change {
    /// A replay claimed (its first record) or its progress saved (the same id again). The
    /// first record with an idempotency key wins the key: a later claim of it is not kept.
    #[prost(message, tag = "1")]
    Replay(ReplayRecord),
    /// A subject's payloads to erase, as far as the replica that was asked had archived.
    #[prost(message, tag = "2")]
    Erasure(Erasure),
}

/// An erasure, bounded by what the replica that received it had archived when asked, so
/// every replica erases the same records: one further behind waits until it has archived as
/// much ([`LogStore::due_erasures`](crate::LogStore::due_erasures)); one further ahead keeps
/// records archived after the bound, as the first did.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Erasure {
    #[prost(string, tag = "1")]
    pub erasure_id: String,
    #[prost(string, tag = "2")]
    pub subject_id: String,
    #[prost(int64, tag = "3")]
    pub erased_at_ms: i64,
    /// Each partition's position when the erasure was asked for; records of partitions not
    /// listed are not covered.
    #[prost(message, repeated, tag = "4")]
    pub bound: Vec<Watermark>,
}

/// How far one partition was archived.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Watermark {
    #[prost(string, tag = "1")]
    pub topic: String,
    #[prost(int32, tag = "2")]
    pub partition: i32,
    #[prost(uint32, tag = "3")]
    pub epoch: u32,
    #[prost(int64, tag = "4")]
    pub next_offset: i64,
}

impl Erasure {
    /// Whether the record at `key` was archived below the erasure's bound.
    pub fn covers(&self, key: &RecordKey) -> bool {
        self.bound.iter().any(|mark| {
            mark.topic == key.topic
                && mark.partition == key.partition
                && (key.epoch, key.offset) < (mark.epoch, mark.next_offset)
        })
    }
}

/// What an erasure did on this replica; kept under its id so the caller that asked reads it.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct ErasureSummary {
    /// Transactions with a record naming the subject within the bound.
    #[prost(uint64, tag = "1")]
    pub transactions: u64,
    /// Records whose payload was removed by this erasure.
    #[prost(uint64, tag = "2")]
    pub records: u64,
    /// Records that were already erased.
    #[prost(uint64, tag = "3")]
    pub already_erased: u64,
    /// Outcomes of the subject's transactions whose free text was removed.
    #[prost(uint64, tag = "4")]
    pub outcomes: u64,
}
