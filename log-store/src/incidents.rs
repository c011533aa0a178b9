//! The incident index's documents: what an incident is as stored, and the rule the store
//! asks to attribute a transaction's failures to incidents.
//!
//! The store does not know why steps fail alike: the archive service owns that rule (its
//! fingerprint, docs/incidents.md) and hands it to [`LogStore::open`](crate::LogStore::open)
//! in [`StoreOptions::incidents`](crate::StoreOptions::incidents). The store calls it for
//! every transaction a batch touches and keeps what it answers, in the batch's own atomic
//! write, so the index is never behind or ahead of the records it was made from.

use std::fmt;

/// The width of the buckets an incident's failures are counted in.
pub const MINUTE_MS: i64 = 60_000;

/// The start of the minute bucket `time_ms` is counted in: readers fill the minutes between
/// buckets with this same rule.
pub fn minute_of(time_ms: i64) -> i64 {
    time_ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

/// Attributes a transaction's failures to incidents.
pub trait IncidentRule: Send + Sync + fmt::Debug {
    /// Every failure outcome among `records` (every record of the transaction archived so
    /// far, in time order) whose event is archived too, with the incident it
    /// belongs to. A failure whose event is not archived yet is left out: the store asks
    /// again when the event arrives.
    fn failures(
        &self,
        transaction_id: &str,
        records: &[crate::ArchivedRecord],
    ) -> TransactionFailures;
}

/// What the rule found in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransactionFailures {
    /// Every subject its events carry: whom an incident of it touched.
    pub subject_ids: Vec<String>,
    pub failures: Vec<StepFailure>,
}

/// One failure outcome: a consumer's failure on one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    pub cause: IncidentCause,
    pub event_id: String,
    /// When it failed (the outcome's time).
    pub at_ms: i64,
    /// The error text as the consumer wrote it.
    pub error: String,
    /// This failure is its step's last word: the step still fails.
    pub still_failing: bool,
    /// When a later outcome of its step said processed (or skipped), if the step's last word
    /// is that success.
    pub recovered_at_ms: Option<i64>,
}

/// Where and why a step failed: the incident's identity and what it shows.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct IncidentCause {
    /// The fingerprint: equal for, and only for, failures of one step with one cause.
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub topic: String,
    #[prost(string, tag = "3")]
    pub event_type: String,
    #[prost(string, tag = "4")]
    pub consumer: String,
    /// The cause is the consumer's error code (else its normalised error text).
    #[prost(bool, tag = "5")]
    pub is_code: bool,
    #[prost(string, tag = "6")]
    pub cause: String,
}

/// An incident as the index keeps it: its cause and running figures.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Incident {
    #[prost(message, optional, tag = "1")]
    pub cause: Option<IncidentCause>,
    /// The newest failure's error text; empty once its subject was erased.
    #[prost(string, tag = "2")]
    pub example_error: String,
    #[prost(int64, tag = "3")]
    pub first_seen_ms: i64,
    #[prost(int64, tag = "4")]
    pub last_seen_ms: i64,
    /// Its first failure, or the failure that last reopened it.
    #[prost(int64, tag = "5")]
    pub opened_at_ms: i64,
    /// When its last failing transaction stopped failing; absent while open.
    #[prost(int64, optional, tag = "6")]
    pub resolved_at_ms: Option<i64>,
    #[prost(uint32, tag = "7")]
    pub reopened: u32,
    /// Transactions that failed with this cause, ever.
    #[prost(uint64, tag = "8")]
    pub transactions: u64,
    /// Of those, the ones still failing with it.
    #[prost(uint64, tag = "9")]
    pub failing: u64,
    /// Failure outcomes with this cause.
    #[prost(uint64, tag = "10")]
    pub failures: u64,
    /// The transaction `example_error` came from: an erasure of its subject clears both.
    #[prost(string, tag = "11")]
    pub example_transaction_id: String,
}

impl Incident {
    pub fn id(&self) -> &str {
        self.cause.as_ref().map_or("", |c| c.id.as_str())
    }

    pub fn is_open(&self) -> bool {
        self.failing > 0
    }
}

/// One transaction of an incident.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IncidentMember {
    #[prost(string, tag = "1")]
    pub incident_id: String,
    #[prost(string, tag = "2")]
    pub transaction_id: String,
    /// When each of its failures with this cause happened, oldest first.
    #[prost(int64, repeated, tag = "3")]
    pub failure_times_ms: Vec<i64>,
    /// The events whose step still fails with this cause: empty once it recovered.
    #[prost(string, repeated, tag = "4")]
    pub failing_event_ids: Vec<String>,
    #[prost(int64, optional, tag = "5")]
    pub recovered_at_ms: Option<i64>,
    #[prost(string, repeated, tag = "6")]
    pub subject_ids: Vec<String>,
}

impl IncidentMember {
    pub fn is_failing(&self) -> bool {
        !self.failing_event_ids.is_empty()
    }
}

/// A subject an incident touched, with the incident's transactions that carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentSubject {
    pub subject_id: String,
    /// (transaction id, still failing with the incident's cause).
    pub transactions: Vec<(String, bool)>,
}

/// How an incident changed in one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentTransition {
    /// Its first failure.
    Opened,
    /// A failure after it was resolved.
    Reopened,
    /// None of its transactions fails with its cause any more.
    Resolved,
}

/// An incident that opened, reopened or resolved in a batch, as it stands after it.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentChange {
    pub transition: IncidentTransition,
    pub incident: Incident,
}
