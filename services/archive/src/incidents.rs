//! Incidents: failed steps grouped by where and why they failed, so a thousand failures of
//! one outage are one row with a count rather than a thousand rows.
//!
//! `fingerprint` decides which failures are one incident: the step (topic, event type,
//! consumer) and the cause (the consumer's `error_code`, else its error text with the
//! variable parts normalised). The rule, and how a consumer controls it, is in
//! docs/incidents.md; keep the two in step.

mod fingerprint;
mod rule;

pub use fingerprint::{Cause, Fingerprint, MAX_CAUSE_CHARS, normalise_error};
pub use rule::FingerprintRule;
