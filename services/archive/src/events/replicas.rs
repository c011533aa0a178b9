//! What the archive reports about being one replica of several: the changes it applied from
//! its change log, the audit records it could not hand to the other replicas, and whether it
//! is still catching up with Kafka (not ready to serve meanwhile).

use metrics::{counter, gauge};
use retrace_log_store::{Erasure, ErasureSummary};
use retrace_telemetry::{InternalEvent, register};
use tracing::{error, info, warn};

pub(super) fn register_metrics() {
    for plain in [
        "retrace_archive_erasures_applied_total",
        "retrace_archive_erasures_pending",
        "retrace_audit_publish_errors_total",
        "retrace_archive_catching_up",
    ] {
        register(plain, &[]);
    }
    gauge!("retrace_archive_catching_up").set(1.0);
}

/// An erasure from the change log, applied here once this replica had archived up to its
/// bound.
pub(crate) struct ErasureApplied<'a> {
    pub erasure: &'a Erasure,
    pub summary: &'a ErasureSummary,
}

impl InternalEvent for ErasureApplied<'_> {
    fn emit(self) {
        info!(
            category = "audit",
            erasure_id = self.erasure.erasure_id,
            subject_id = self.erasure.subject_id,
            transactions = self.summary.transactions,
            records = self.summary.records,
            outcomes = self.summary.outcomes,
            "erasure applied"
        );
        counter!("retrace_archive_erasures_applied_total").increment(1);
    }
}

/// Erasures read from the change log that wait for this replica to archive up to their
/// bound.
pub(crate) struct ErasuresPending {
    pub pending: usize,
}

impl InternalEvent for ErasuresPending {
    fn emit(self) {
        gauge!("retrace_archive_erasures_pending").set(self.pending as f64);
    }
}

/// Applying due erasures failed; they stay pending and are tried after the next batch.
pub(crate) struct ErasureNotApplied<'a> {
    pub erasure_id: &'a str,
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for ErasureNotApplied<'_> {
    fn emit(self) {
        error!(
            erasure_id = self.erasure_id,
            error = %self.error,
            "could not apply an erasure; it stays pending and is tried again after the next batch"
        );
        counter!("retrace_archive_store_errors_total", "reason" => super::STORE_WRITE).increment(1);
    }
}

/// An audit record, durable here, could not be published for the other replicas: their
/// trails lack it (this replica's has it).
pub(crate) struct AuditNotPublished<'a> {
    pub action: &'a str,
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for AuditNotPublished<'_> {
    fn emit(self) {
        warn!(
            category = "audit",
            action = self.action,
            error = %self.error,
            "audit record kept here but not published to retrace.audit: the other replicas' \
             trails lack it"
        );
        counter!("retrace_audit_publish_errors_total").increment(1);
    }
}

/// Whether the archive is catching up with Kafka (some partition behind): `/healthz` says
/// not ready meanwhile, so a replica that was down gets no traffic until it has caught up.
pub(crate) struct CatchingUp {
    pub catching_up: bool,
}

impl InternalEvent for CatchingUp {
    fn emit(self) {
        if self.catching_up {
            info!("catching up with Kafka: not ready to serve until no partition is behind");
        } else {
            info!("caught up with Kafka: ready to serve");
        }
        gauge!("retrace_archive_catching_up").set(if self.catching_up { 1.0 } else { 0.0 });
    }
}
