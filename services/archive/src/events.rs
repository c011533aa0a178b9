//! Everything the archive reports about itself: one typed event per observable thing, each
//! emitting its log line and its metrics together; here what ingests, in [`serving`] what
//! serves the API. [`register_metrics`] registers the archive's series at zero as it opens.

mod incidents;
mod replicas;
mod serving;
mod shards;

use std::time::Duration;

use metrics::{counter, gauge, histogram};
use retrace_log_store::{AppendSummary, RecordKind};
use retrace_telemetry::{InternalEvent, register};
use tracing::{debug, error, info, warn};

pub(crate) use incidents::*;
pub(crate) use replicas::*;
pub(crate) use serving::*;
pub(crate) use shards::*;

use crate::ArchiveConfig;

/// The `reason` of `retrace_archive_store_errors_total`.
const STORE_DISK_FULL: &str = "disk_full";
const STORE_WRITE: &str = "write";
const STORE_REPLAY_PROGRESS: &str = "replay_progress";

/// Installs Retrace's metrics recorder, and registers at zero the archive's series (and the
/// SDK's its replays publish with): per kind of record, reason and Kafka step, and per topic
/// for the topics `config` names. Topics a pattern selects, and every partition's lag, are
/// registered at the first lag check that finds them ([`PartitionFollowed`]), made as the
/// archive starts and every `lag_check_ms` after.
pub(crate) fn register_metrics(config: &ArchiveConfig) {
    retrace_telemetry::prometheus();
    if let crate::TopicSelection::Names(names) = &config.topics {
        register_topic_metrics(&names.iter().map(String::as_str).collect::<Vec<_>>());
    }
    register(
        "retrace_archive_store_errors_total",
        &[(
            "reason",
            &[STORE_DISK_FULL, STORE_WRITE, STORE_REPLAY_PROGRESS],
        )],
    );
    register(
        "retrace_archive_kafka_errors_total",
        &[("during", &During::ALL.map(During::as_str))],
    );
    register(
        "retrace_consumer_recreated_total",
        &[
            ("service", &["archive"]),
            ("group", &[config.consumer_group().as_str()]),
        ],
    );
    for plain in [
        "retrace_archive_records_written_total",
        "retrace_archive_records_already_archived_total",
        "retrace_archive_batch_write_seconds",
        "retrace_archive_batch_records",
        "retrace_archive_paused",
        "retrace_archive_store_unwritable_total",
        "retrace_archive_lag_check_failures_total",
        "retrace_archive_rebalances_total",
    ] {
        register(plain, &[]);
    }
    serving::register_metrics();
    incidents::register_metrics();
    replicas::register_metrics();
    if let Some(sharding) = &config.sharding {
        shards::register_metrics(sharding);
    }
    retrace_sdk::register_metrics(&[], &[]);
}

/// Registers at zero the series of archiving `topics`, and of replaying to them.
fn register_topic_metrics(topics: &[&str]) {
    register(
        "retrace_archive_records_consumed_total",
        &[
            ("topic", topics),
            ("kind", &RecordKind::ALL.map(RecordKind::as_str)),
        ],
    );
    for per_topic in [
        "retrace_archive_retention_gap_offsets_total",
        "retrace_archive_log_resets_total",
        "retrace_archive_fell_behind_total",
        "retrace_replay_messages_total",
    ] {
        register(per_topic, &[("topic", topics)]);
    }
    retrace_sdk::register_metrics(&[], topics);
}

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

/// A batch written, and the incidents it changed.
pub(crate) struct BatchArchived<'a> {
    pub summary: &'a AppendSummary,
    pub elapsed: Duration,
}

impl InternalEvent for BatchArchived<'_> {
    fn emit(self) {
        for change in &self.summary.incidents {
            IncidentChanged { change }.emit();
        }
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
        let reason = if self.disk_full {
            STORE_DISK_FULL
        } else {
            STORE_WRITE
        };
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

/// A lag check found a partition for the first time (at start, or a topic created since that
/// the archive's pattern selects): its topic's series, and its lag gauges, start at zero.
pub(crate) struct PartitionFollowed<'a> {
    pub topic: &'a str,
    pub partition: i32,
}

impl InternalEvent for PartitionFollowed<'_> {
    fn emit(self) {
        debug!(
            topic = self.topic,
            partition = self.partition,
            "partition followed"
        );
        register_topic_metrics(&[self.topic]);
        let partition = self.partition.to_string();
        for per_partition in [
            "retrace_archive_lag_records",
            "retrace_archive_behind_seconds",
        ] {
            register(
                per_partition,
                &[
                    ("topic", &[self.topic]),
                    ("partition", &[partition.as_str()]),
                ],
            );
        }
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

/// What the archiver was doing when Kafka failed it: the `during` label of
/// `retrace_archive_kafka_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum During {
    Consume,
    Rebalance,
    Seek,
    PauseOrResume,
    Commit,
    FinalFlush,
    Subscribe,
    ShardAssignment,
}

impl During {
    pub const ALL: [During; 8] = [
        During::Consume,
        During::Rebalance,
        During::Seek,
        During::PauseOrResume,
        During::Commit,
        During::FinalFlush,
        During::Subscribe,
        During::ShardAssignment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            During::Consume => "consume",
            During::Rebalance => "rebalance",
            During::Seek => "seek to the archive's position",
            During::PauseOrResume => "pause or resume",
            During::Commit => "commit",
            During::FinalFlush => "final flush",
            During::Subscribe => "subscribe to the new topics (the old topics are still archived)",
            During::ShardAssignment => {
                "assign the shard's partitions (those it holds are still archived; tried again \
                 at the next metadata refresh)"
            }
        }
    }
}

pub(crate) struct KafkaProblem<'a> {
    pub during: During,
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for KafkaProblem<'_> {
    fn emit(self) {
        let during = self.during.as_str();
        warn!(during, error = %self.error, "Kafka problem; continuing");
        counter!("retrace_archive_kafka_errors_total", "during" => during).increment(1);
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
