//! What the archive reports about serving its API: replays, queries, the audit trail,
//! backups, reloaded API settings, refused audit events.

use std::time::Duration;

use metrics::{counter, histogram};
use retrace_log_store::{RecordKey, ReplayRecord, ReplayState};
use retrace_sdk::Delivery;
use retrace_telemetry::{InternalEvent, register};
use tracing::{debug, error, info, warn};

use super::STORE_REPLAY_PROGRESS;

/// The `endpoint` of every API route answered through `routes::plumbing::answer`.
pub(crate) const ENDPOINTS: [&str; 24] = [
    "transactions",
    "transaction",
    "subject",
    "event",
    "messages",
    "incidents",
    "incident",
    "incident_subjects",
    "replay",
    "replay_transaction",
    "bulk_replay",
    "erase",
    "audit",
    "audit_verify",
    "tokens",
    "token_create",
    "token_revoke",
    "backup",
    "whoami",
    "digests",
    "digest",
    "shard_records",
    "shard_marks",
    "shard_subject",
];

/// Registers at zero the series of serving the API: per endpoint its timing and its server
/// errors (what `RetraceApiServerErrors` watches; other statuses appear at their first
/// answer), replays, backups, audit losses and refusals.
pub(super) fn register_metrics() {
    register(
        "retrace_api_requests_total",
        &[("endpoint", &ENDPOINTS), ("status", &["500"])],
    );
    register("retrace_api_request_seconds", &[("endpoint", &ENDPOINTS)]);
    let finished = [ReplayState::Done, ReplayState::Failed].map(ReplayState::as_str);
    register("retrace_replays_finished_total", &[("state", &finished)]);
    register(
        "retrace_archive_audit_events_rejected_total",
        &[("reason", &retrace_auth::Verdict::REJECTIONS)],
    );
    for plain in [
        "retrace_replays_started_total",
        "retrace_audit_write_errors_total",
        "retrace_archive_backups_total",
        "retrace_archive_backup_seconds",
    ] {
        register(plain, &[]);
    }
}

pub(crate) struct ReplayStarted<'a> {
    pub replay: &'a ReplayRecord,
}

impl InternalEvent for ReplayStarted<'_> {
    fn emit(self) {
        info!(
            category = "audit",
            replay_id = self.replay.replay_id,
            requested_by = self.replay.requested_by,
            reason = self.replay.reason,
            transactions = ?self.replay.transaction_ids,
            selection = self.replay.selection,
            planned = self.replay.planned,
            "replay started"
        );
        counter!("retrace_replays_started_total").increment(1);
    }
}

pub(crate) struct ReplayFinished<'a> {
    pub replay: &'a ReplayRecord,
}

impl InternalEvent for ReplayFinished<'_> {
    fn emit(self) {
        let state = self.replay.state().as_str();
        if self.replay.error.is_empty() {
            info!(
                replay_id = self.replay.replay_id,
                published = self.replay.published,
                state,
                "replay finished"
            );
        } else {
            warn!(
                replay_id = self.replay.replay_id,
                published = self.replay.published,
                planned = self.replay.planned,
                error = self.replay.error,
                state,
                "replay stopped early"
            );
        }
        counter!("retrace_replays_finished_total", "state" => state).increment(1);
    }
}

pub(crate) struct MessageReplayed<'a> {
    pub replay_id: &'a str,
    pub original: &'a RecordKey,
    pub delivery: &'a Delivery,
}

impl InternalEvent for MessageReplayed<'_> {
    fn emit(self) {
        debug!(
            replay_id = self.replay_id,
            original = %self.original,
            topic = self.delivery.topic,
            partition = self.delivery.partition,
            offset = self.delivery.offset,
            "message re-published"
        );
        counter!("retrace_replay_messages_total", "topic" => self.delivery.topic.clone())
            .increment(1);
    }
}

pub(crate) struct ReplayProgressNotSaved<'a> {
    pub replay_id: &'a str,
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for ReplayProgressNotSaved<'_> {
    fn emit(self) {
        error!(
            replay_id = self.replay_id,
            error = %self.error,
            "could not save a replay's progress; its status may lag"
        );
        counter!("retrace_archive_store_errors_total", "reason" => STORE_REPLAY_PROGRESS)
            .increment(1);
    }
}

/// A query of the trace API was answered (or refused).
pub(crate) struct QueryServed {
    pub endpoint: &'static str,
    pub status: u16,
    pub elapsed: Duration,
}

impl InternalEvent for QueryServed {
    fn emit(self) {
        debug!(
            endpoint = self.endpoint,
            status = self.status,
            elapsed_ms = self.elapsed.as_secs_f64() * 1e3,
            "query served"
        );
        counter!(
            "retrace_api_requests_total",
            "endpoint" => self.endpoint,
            "status" => self.status.to_string(),
        )
        .increment(1);
        histogram!("retrace_api_request_seconds", "endpoint" => self.endpoint)
            .record(self.elapsed.as_secs_f64());
    }
}

/// An audit record was appended to the store's trail; the same facts as a log line.
pub(crate) struct AuditRecorded<'a> {
    pub entry: &'a retrace_log_store::AuditEntry,
    pub seq: u64,
}

impl InternalEvent for AuditRecorded<'_> {
    fn emit(self) {
        let entry = self.entry;
        info!(
            category = "audit",
            seq = self.seq,
            at_ms = entry.at_ms,
            actor = entry.actor,
            role = entry.role,
            origin = entry.origin,
            action = entry.action,
            target = entry.target,
            reason = entry.reason,
            result = entry.result,
            "audit"
        );
        counter!("retrace_audit_records_total", "action" => entry.action.clone()).increment(1);
    }
}

/// An audit record could not be written: the request it records is answered with an error.
pub(crate) struct AuditNotRecorded<'a> {
    pub entry: &'a retrace_log_store::AuditEntry,
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for AuditNotRecorded<'_> {
    fn emit(self) {
        let entry = self.entry;
        error!(
            category = "audit",
            actor = entry.actor,
            origin = entry.origin,
            action = entry.action,
            target = entry.target,
            result = entry.result,
            error = %self.error,
            "could not append to the audit trail; the request is refused"
        );
        counter!("retrace_audit_write_errors_total").increment(1);
    }
}

pub(crate) struct BackupWritten<'a> {
    pub directory: &'a std::path::Path,
    pub records: u64,
    pub entries: u64,
    pub elapsed: Duration,
}

impl InternalEvent for BackupWritten<'_> {
    fn emit(self) {
        info!(
            category = "audit",
            directory = %self.directory.display(),
            records = self.records,
            entries = self.entries,
            elapsed_ms = self.elapsed.as_millis() as u64,
            "archive backed up"
        );
        counter!("retrace_archive_backups_total").increment(1);
        histogram!("retrace_archive_backup_seconds").record(self.elapsed.as_secs_f64());
    }
}

pub(crate) struct ArchiveRestored<'a> {
    pub from: &'a std::path::Path,
    pub data_dir: &'a std::path::Path,
    pub records: u64,
}

impl InternalEvent for ArchiveRestored<'_> {
    fn emit(self) {
        info!(
            category = "audit",
            from = %self.from.display(),
            data_dir = %self.data_dir.display(),
            records = self.records,
            "archive restored from a backup"
        );
    }
}

/// A reloaded configuration's API settings could not be built: the previous ones stay.
pub(crate) struct LiveSettingsKept<'a> {
    pub version: &'a str,
    pub error: &'a crate::masking::MaskingError,
}

impl InternalEvent for LiveSettingsKept<'_> {
    fn emit(self) {
        error!(
            version = self.version,
            error = %self.error,
            "configuration {} not applied to the API ({}); the previous masking rules and \
             replay threshold stay",
            self.version,
            self.error
        );
    }
}

/// A record on the audit topic without a valid signature from a Retrace service: kept as
/// malformed, never chained into the audit trail; alerted on
/// (`RetraceUnsignedSecurityRecords`).
pub(crate) struct AuditEventRejected<'a> {
    pub partition: i32,
    pub offset: i64,
    pub verdict: &'a retrace_auth::Verdict,
}

impl InternalEvent for AuditEventRejected<'_> {
    fn emit(self) {
        error!(
            category = "security",
            topic = retrace_proto::AUDIT_TOPIC,
            partition = self.partition,
            offset = self.offset,
            reason = self.verdict.reason(),
            problem = %self.verdict,
            "audit event NOT chained, {}: something wrote the audit topic without Retrace's \
             signing key (docs/security.md, \"Signed records\")",
            self.verdict
        );
        counter!(
            "retrace_archive_audit_events_rejected_total",
            "reason" => self.verdict.reason(),
        )
        .increment(1);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    /// The endpoint literal of each `answer(`, `answer_audited(&api, `, `.answer(` and
    /// `.answer_partial(` call in `text`: the first argument that is a string.
    fn answered(text: &str) -> Vec<&str> {
        let mut found = Vec::new();
        for marker in ["answer(", "answer_audited(", "answer_partial("] {
            for (at, _) in text.match_indices(marker) {
                let args = &text[at + marker.len()..];
                let Some(quote) = args.find('"') else {
                    continue;
                };
                let before = &args[..quote];
                if before.len() > 40
                    || !before
                        .chars()
                        .all(|c| c.is_whitespace() || c.is_alphanumeric() || "&,._".contains(c))
                {
                    continue;
                }
                let literal = &args[quote + 1..];
                found.push(&literal[..literal.find('"').expect("literals close")]);
            }
        }
        found
    }

    #[test]
    fn every_endpoint_a_route_answers_is_registered() {
        let routes = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/routes");
        let texts: Vec<String> = std::fs::read_dir(&routes)
            .unwrap()
            .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
            .collect();
        let answered: BTreeSet<&str> = texts.iter().flat_map(|text| answered(text)).collect();
        let registered: BTreeSet<&str> = super::ENDPOINTS.into_iter().collect();
        assert!(answered.len() > 10, "found only {answered:?}");
        assert_eq!(answered, registered, "routes/ answers these endpoints");
    }
}
