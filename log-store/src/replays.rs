//! What the archive remembers about replays: who asked, why, what was re-published, and how
//! far it got. Replays are written as the archive's changes ([`crate::Change::Replay`]).

/// One replay request and its progress. Stored as protobuf, so fields can be added without
/// breaking archives already written.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReplayRecord {
    #[prost(string, tag = "1")]
    pub replay_id: String,
    /// Identity of the person or service that asked.
    #[prost(string, tag = "2")]
    pub requested_by: String,
    #[prost(string, tag = "3")]
    pub reason: String,
    #[prost(int64, tag = "4")]
    pub requested_at_ms: i64,
    /// The transactions it re-publishes messages of.
    #[prost(string, repeated, tag = "5")]
    pub transaction_ids: Vec<String>,
    /// How the messages were chosen, as the caller asked (e.g. `only_failed`, a query).
    #[prost(string, tag = "6")]
    pub selection: String,
    /// Where messages go; empty: each to the topic it came from.
    #[prost(string, tag = "7")]
    pub target_topic: String,
    #[prost(uint64, tag = "8")]
    pub planned: u64,
    #[prost(uint64, tag = "9")]
    pub published: u64,
    #[prost(enumeration = "ReplayState", tag = "10")]
    pub state: i32,
    /// Why it stopped early, when it did.
    #[prost(string, tag = "11")]
    pub error: String,
    #[prost(int64, tag = "12")]
    pub finished_at_ms: i64,
    /// The caller's idempotency key, scoped to the caller: asking again with it returns
    /// this replay.
    #[prost(string, tag = "13")]
    pub request_key: String,
    /// A hash of the request the key came with: the same key with another request is
    /// refused rather than answered with this replay.
    #[prost(string, tag = "14")]
    pub request_fingerprint: String,
    /// The archive replica that publishes it; only that one marks it failed when it
    /// restarts after stopping in the middle.
    #[prost(string, tag = "15")]
    pub replica_id: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ReplayState {
    Unspecified = 0,
    /// Accepted; messages are being re-published.
    Running = 1,
    /// Every planned message was re-published and acknowledged by Kafka.
    Done = 2,
    /// Stopped before the end; `error` says why, `published` how far it got.
    Failed = 3,
}

impl ReplayState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplayState::Unspecified => "unspecified",
            ReplayState::Running => "running",
            ReplayState::Done => "done",
            ReplayState::Failed => "failed",
        }
    }
}
