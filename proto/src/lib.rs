//! Retrace's wire contract: the protobuf [`Envelope`] every event travels in, the [`Outcome`]
//! a consumer reports for it, and the Kafka headers that carry the same ids
//! ([`headers::TraceHeaders`]).
//!
//! Everything that publishes or reads Retrace messages goes through this crate, so the
//! contract has one definition. Evolution rules are in `proto/README.md`.

#[cfg(any(test, feature = "arbitrary"))]
pub mod arbitrary;
mod envelope;
#[cfg(test)]
mod fuzz_tests;
pub mod headers;

pub use envelope::{EnvelopeError, MAX_ERROR_CODE_LEN, check_error_code, new_event_id};

/// Types generated from `proto/retrace/v1/envelope.proto`.
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/retrace.v1.rs"));
}

pub use v1::{AuditEvent, Envelope, Job, JobPriority, Outcome, OutcomeStatus, Replay};

/// The topic every consumer's [`Outcome`]s are published on.
pub const OUTCOMES_TOPIC: &str = "retrace.outcomes";

/// The topic services publish their [`AuditEvent`]s on, for the archive's audit trail.
pub const AUDIT_TOPIC: &str = "retrace.audit";

/// The archive's change log: replays and erasures that every archive replica applies (the
/// records' format is the archive's own, in `retrace-log-store`).
pub const ARCHIVE_CHANGES_TOPIC: &str = "retrace.archive.changes";

/// The `retrace-type` header of an audit message.
pub const AUDIT_TYPE: &str = "retrace.audit.v1";

/// The `retrace-type` header of an outcome message.
pub const OUTCOME_TYPE: &str = "retrace.outcome.v1";
