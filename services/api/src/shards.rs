//! What the shards of a sharded archive ask each other (`/v1/shard/...`): the raw material
//! of an answer about the whole archive, which the shard asked by the client builds once.
//! Clients of the archive have no use for these; they are here because they are documents
//! on the wire like the rest.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/shard/records`: the records a shard holds of these transactions, and of these
/// events (their copies, and the outcomes reported on them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecordsQuery {
    #[serde(default)]
    pub transactions: Vec<String>,
    #[serde(default)]
    pub events: Vec<String>,
}

/// One archived record, as the archive stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShardRecord {
    pub topic: String,
    pub partition: i32,
    pub epoch: u32,
    pub offset: i64,
    /// The record in the log store's encoding, base64: the same bytes a digest covers, so
    /// the asking shard rebuilds exactly what this one holds. Masked for a caller without
    /// `payload:read` before it is encoded.
    pub stored: String,
}

/// The answer to a [`RecordsQuery`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShardRecords {
    pub records: Vec<ShardRecord>,
}

/// One entry of `GET /v1/shard/marks`: a transaction that started or failed at `time_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShardMark {
    pub transaction_id: String,
    pub time_ms: i64,
    /// Where the listing stands after this entry. Marks are keyed the same way on every
    /// shard, so one cursor orders them across shards.
    pub cursor: String,
}

/// `GET /v1/shard/marks`: newest first; fewer than the limit asked when no more are left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShardMarks {
    pub marks: Vec<ShardMark>,
}

/// A transaction that touched a subject, and when this shard last saw it do so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SubjectSeen {
    pub transaction_id: String,
    pub last_seen_ms: i64,
}

/// `GET /v1/shard/subjects/{id}`: every transaction of the subject this shard holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShardSubject {
    pub transactions: Vec<SubjectSeen>,
}
