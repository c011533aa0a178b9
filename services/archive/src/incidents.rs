//! Incidents: failed steps grouped by where and why they failed, so a thousand failures of
//! one outage are one row with a count rather than a thousand rows.
//!
//! `fingerprint` decides which failures are one incident: the step (topic, event type,
//! consumer) and the cause (the consumer's `error_code`, else its error text with the
//! variable parts normalised). The rule, and how a consumer controls it, is in
//! docs/incidents.md; keep the two in step. `rule` applies it to a transaction's records
//! for the store, which keeps the incident index at ingest (log-store's
//! `store/incidents.rs`); `views` is the index as the API answers it.

mod fingerprint;
mod rule;
mod views;

pub use fingerprint::{Cause, Fingerprint, MAX_CAUSE_CHARS, normalise_error};
pub use rule::FingerprintRule;
pub(crate) use views::IncidentFilter;
