//! Partition digests, by which two archive replicas prove they hold the same records: what
//! `/v1/digests` and `/v1/digests/{topic}/{partition}` answer.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A partition the archive holds records of, and how far: a digest can cover its offsets
/// below `next_offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DigestPartition {
    pub topic: String,
    pub partition: i32,
    /// Which log of the partition `next_offset` is in (see `Position`); digests cover it
    /// alone.
    pub epoch: u32,
    /// The next offset the archive will store.
    pub next_offset: i64,
}

/// The digest of one partition's archived records below an offset. Two archives that
/// consumed the same log have the same `digest` for the same `until`, whenever each
/// archived them and in whatever batches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = PartitionDigest)]
pub struct PartitionDigestView {
    pub topic: String,
    pub partition: i32,
    /// The log of the partition covered: the current one.
    pub epoch: u32,
    /// Records with an offset below it are covered.
    pub until: i64,
    /// The next offset the archive will store: an `until` above it covers only what the
    /// archive holds so far.
    pub next_offset: i64,
    /// How many records are covered.
    pub records: u64,
    /// How `digest` is computed; digests of different algorithms never compare.
    pub algorithm: String,
    /// Lowercase hex SHA-256 over each covered record in offset order: topic, partition,
    /// offset, key, value as stored (after an erasure), headers, Kafka timestamp and
    /// erasure time. Not what each archive adds itself (when it archived the record, what
    /// it understood of it).
    pub digest: String,
    /// The lowest offset covered; absent when no record is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_offset: Option<i64>,
    /// The highest offset covered; absent when no record is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_offset: Option<i64>,
}
