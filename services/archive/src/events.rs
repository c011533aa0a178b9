//! Everything the archiver reports about itself: one typed event per observable thing, each
//! emitting its log line and its metrics together.

use std::time::Duration;

use metrics::{counter, gauge, histogram};
use retrace_log_store::{AppendSummary, RecordKey, RecordKind, ReplayRecord};
use retrace_sdk::Delivery;
use retrace_telemetry::InternalEvent;
use tracing::{debug, error, info, warn};

pub(crate) struct ArchiveStarted<'a> {
    pub bootstrap: &'a str,
    pub topics: &'a str,
    pub group_id: &'a str,
    pub data_dir: &'a std::path::Path,
}

impl InternalEvent for ArchiveStarted<'_> {
    fn emit(self) {
        info!(
            bootstrap = self.bootstrap,
            topics = self.topics,
            group_id = self.group_id,
            data_dir = %self.data_dir.display(),
            "archive started"
        );
    }
}

pub(crate) struct ApiListening<'a> {
    pub url: &'a str,
}

impl InternalEvent for ApiListening<'_> {
    fn emit(self) {
        info!(url = self.url, "archive API listening");
    }
}

pub(crate) struct BatchArchived {
    pub summary: AppendSummary,
    pub elapsed: Duration,
}

impl InternalEvent for BatchArchived {
    fn emit(self) {
        debug!(
            appended = self.summary.appended,
            already_archived = self.summary.already_archived,
            elapsed_ms = self.elapsed.as_millis() as u64,
            "batch archived"
        );
        counter!("retrace_archive_records_written_total").increment(self.summary.appended as u64);
        counter!("retrace_archive_records_already_archived_total")
            .increment(self.summary.already_archived as u64);
        histogram!("retrace_archive_batch_write_seconds").record(self.elapsed.as_secs_f64());
        histogram!("retrace_archive_batch_records").record(self.summary.appended as f64);
    }
}

/// A record was consumed; flagged ones are also logged, so someone can find them.
pub(crate) struct RecordConsumed<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub kind: RecordKind,
    pub problem: Option<&'a str>,
}

impl InternalEvent for RecordConsumed<'_> {
    fn emit(self) {
        if self.kind.is_flagged() {
            warn!(
                topic = self.topic,
                partition = self.partition,
                offset = self.offset,
                kind = self.kind.as_str(),
                problem = self.problem,
                "record kept but flagged"
            );
        }
        counter!(
            "retrace_archive_records_consumed_total",
            "topic" => self.topic.to_owned(),
            "kind" => self.kind.as_str(),
        )
        .increment(1);
    }
}

pub(crate) struct StoreWriteFailed<'a> {
    pub error: &'a dyn std::fmt::Display,
    /// The disk is full, or below the store's reserve: waits for space to be freed.
    pub disk_full: bool,
    pub attempt: u32,
    pub retry_in: Duration,
}

impl InternalEvent for StoreWriteFailed<'_> {
    fn emit(self) {
        error!(
            error = %self.error,
            attempt = self.attempt,
            retry_in_ms = self.retry_in.as_millis() as u64,
            disk_full = self.disk_full,
            "archive write failed; consumption paused, nothing committed, retrying"
        );
        let reason = if self.disk_full { "disk_full" } else { "write" };
        counter!("retrace_archive_store_errors_total", "reason" => reason).increment(1);
    }
}

/// The store refuses every write after one failed half-way: the archive stops, so that its
/// restart reopens the store (recovering its journal) and resumes from the stored positions.
pub(crate) struct StoreUnwritable<'a> {
    pub error: &'a retrace_log_store::StoreError,
}

impl InternalEvent for StoreUnwritable<'_> {
    fn emit(self) {
        error!(
            error = %self.error,
            "the archive's store refuses writes until it is reopened (a write failed half-way: \
             disk full or an I/O error); stopping the archive so a restart recovers it. Nothing \
             is lost: it resumes from its stored positions. Free space or check the disk, then \
             restart it if no supervisor does"
        );
        counter!("retrace_archive_store_unwritable_total").increment(1);
    }
}

/// Kafka deleted offsets `from..to` of a partition (retention) before the archive read
/// them: those records are not in the archive, and no rebuild can bring them back.
pub(crate) struct RetentionGap<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub from: i64,
    pub to: i64,
}

impl InternalEvent for RetentionGap<'_> {
    fn emit(self) {
        error!(
            topic = self.topic,
            partition = self.partition,
            from_offset = self.from,
            to_offset = self.to,
            records = self.to - self.from,
            "Kafka deleted offsets {}..{} of {}/{} before the archive read them (retention): they \
             are not archived. Keep topics longer than the archive can fall behind (retention.ms, \
             retention.bytes), and alert on this",
            self.from,
            self.to,
            self.topic,
            self.partition
        );
        counter!("retrace_archive_retention_gap_offsets_total", "topic" => self.topic.to_owned())
            .increment((self.to - self.from) as u64);
    }
}

/// A record arrived below the offset the archive had reached in its partition: the log was
/// replaced by a shorter one (topic deleted and recreated, log cut back by an unclean leader
/// election, another cluster), and librdkafka went back to its start.
pub(crate) struct LogReset<'a> {
    pub topic: &'a str,
    pub partition: i32,
    /// The epoch the new log's records are archived under.
    pub epoch: u32,
    /// Where the archive stood in the old log.
    pub previous_next_offset: i64,
    /// The new log's first record read.
    pub offset: i64,
}

impl InternalEvent for LogReset<'_> {
    fn emit(self) {
        error!(
            topic = self.topic,
            partition = self.partition,
            epoch = self.epoch,
            previous_next_offset = self.previous_next_offset,
            offset = self.offset,
            "{}/{} went back from offset {} to {}: its log was replaced (topic deleted and \
             recreated, log cut back by an unclean leader election, or another cluster). The \
             new log is archived as epoch {}, beside the old records, which stay findable. \
             Find out why the log was replaced",
            self.topic,
            self.partition,
            self.previous_next_offset,
            self.offset,
            self.epoch
        );
        counter!("retrace_archive_log_resets_total", "topic" => self.topic.to_owned()).increment(1);
    }
}

/// A lag check of one partition: how many records Kafka holds that the archive does not
/// yet, and for how long it has been behind (0 while it keeps up).
pub(crate) struct PartitionLagChecked<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub lag: i64,
    pub behind_ms: i64,
}

impl InternalEvent for PartitionLagChecked<'_> {
    fn emit(self) {
        gauge!(
            "retrace_archive_lag_records",
            "topic" => self.topic.to_owned(),
            "partition" => self.partition.to_string()
        )
        .set(self.lag as f64);
        gauge!(
            "retrace_archive_behind_seconds",
            "topic" => self.topic.to_owned(),
            "partition" => self.partition.to_string()
        )
        .set(self.behind_ms as f64 / 1000.0);
    }
}

/// A partition fell behind: a record Kafka held a check ago is still not archived.
pub(crate) struct ArchiveBehind<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub lag: i64,
    pub since: &'a str,
}

impl InternalEvent for ArchiveBehind<'_> {
    fn emit(self) {
        warn!(
            topic = self.topic,
            partition = self.partition,
            lag = self.lag,
            since = self.since,
            "the archive is {} records behind on {}/{} (since {}): traces and listings may \
             miss its latest events until it catches up",
            self.lag,
            self.topic,
            self.partition,
            self.since
        );
        counter!("retrace_archive_fell_behind_total", "topic" => self.topic.to_owned())
            .increment(1);
    }
}

pub(crate) struct ArchiveCaughtUp<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub behind_for: Duration,
}

impl InternalEvent for ArchiveCaughtUp<'_> {
    fn emit(self) {
        info!(
            topic = self.topic,
            partition = self.partition,
            behind_ms = self.behind_for.as_millis() as u64,
            "the archive caught up on {}/{} after {:.1} s behind",
            self.topic,
            self.partition,
            self.behind_for.as_secs_f64()
        );
    }
}

/// Kafka did not say where its partitions end, so the lag is not known.
pub(crate) struct LagCheckFailed<'a> {
    pub error: &'a rdkafka::error::KafkaError,
    /// Logged on the first failure of a run of them, counted every time.
    pub logged: bool,
}

impl InternalEvent for LagCheckFailed<'_> {
    fn emit(self) {
        if self.logged {
            warn!(
                error = %self.error,
                "cannot ask Kafka where the archived partitions end ({}): /v1/positions keeps \
                 the last lag known; checks go on",
                self.error
            );
        }
        counter!("retrace_archive_lag_check_failures_total").increment(1);
    }
}

pub(crate) struct ConsumptionPaused {
    pub paused: bool,
}

impl InternalEvent for ConsumptionPaused {
    fn emit(self) {
        if self.paused {
            warn!("consumption paused until the archive accepts writes again");
        } else {
            info!("archive accepts writes again; consumption resumed");
        }
        metrics::gauge!("retrace_archive_paused").set(if self.paused { 1.0 } else { 0.0 });
    }
}

pub(crate) struct KafkaProblem<'a> {
    pub during: &'static str,
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for KafkaProblem<'_> {
    fn emit(self) {
        warn!(during = self.during, error = %self.error, "Kafka problem; continuing");
        counter!("retrace_archive_kafka_errors_total", "during" => self.during).increment(1);
    }
}

pub(crate) struct PartitionsAssigned<'a> {
    pub partitions: &'a [(String, i32, Option<i64>)],
}

impl InternalEvent for PartitionsAssigned<'_> {
    fn emit(self) {
        for (topic, partition, resume_at) in self.partitions {
            info!(
                topic,
                partition,
                resume_at,
                "partition assigned; resuming from the archive's own position"
            );
        }
        counter!("retrace_archive_rebalances_total").increment(1);
    }
}

pub(crate) struct ShutdownWithUnwrittenBatch {
    pub records: usize,
}

impl InternalEvent for ShutdownWithUnwrittenBatch {
    fn emit(self) {
        warn!(
            records = self.records,
            "shutting down before the archive accepted the last batch; its records stay in \
             Kafka and are archived on the next start"
        );
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
        counter!("retrace_archive_store_errors_total", "reason" => "replay_progress").increment(1);
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
