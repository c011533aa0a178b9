//! The consume → archive → commit loop.
//!
//! Batches are written durably before their offsets are committed, and the archive, not
//! Kafka, decides where each partition resumes: on assignment every partition is sought to
//! the position stored with its records. While one batch is written the next is collected,
//! so the disk and the CPU work at the same time.
//!
//! Within one assignment a partition's offsets only grow: a record below the offset sought
//! to, or below the one before it, means the partition's log was replaced by a shorter one
//! and librdkafka went back to its start (`auto.offset.reset`). Its records are then new,
//! not "already archived": they are archived under the next epoch of the partition
//! ([`retrace_log_store::RecordKey::epoch`]) and the reset is reported ([`LogReset`]).
//!
//! A reloaded configuration is followed between batches: new batch limits apply at once; a
//! new topic set (compared by [`topic_set_hash`]) writes the batch in hand, then subscribes
//! the consumer anew (counted as a re-created consumer), which resumes every partition from
//! the archive's positions like any assignment. Any other change leaves the consumer alone.
//!
//! The change log ([`ARCHIVE_CHANGES_TOPIC`]) has a consumer of its own, in a group of its
//! own (`<group>.changes`) subscribed to that topic alone: a replica waits for its change to
//! be applied before it answers ([`crate::changes`]), so neither a rebalance of the data
//! topics' group (a new topic matching the pattern) nor a backlog on them may hold it up.
//! Its records go into the same batches, written the same way.

use std::collections::HashMap;
use std::ffi::CString;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use retrace_auth::SigningKeys;
use retrace_log_store::{LogStore, PreparedRecord, StoreError};
use retrace_proto::ARCHIVE_CHANGES_TOPIC;
use retrace_service::{ConsumerRecreated, Loaded, topic_set_hash};
use retrace_telemetry::InternalEvent;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::changes::{Applied, apply_due_erasures};
use crate::classify::{classify, prepare};
use crate::config::{ArchiveConfig, BatchSettings, TopicSelection};
use crate::events::{
    BatchArchived, ConsumptionPaused, During, KafkaProblem, LogReset, PartitionsAssigned,
    RecordConsumed, RetentionGap, ShutdownWithUnwrittenBatch, StoreUnwritable, StoreWriteFailed,
};
use crate::shards::assignment::StaticAssignment;

/// Where the consumer stands in one partition, as the archiver sees it.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    /// The epoch its records are archived under.
    epoch: u32,
    /// The lowest offset the next record may have without the log having been replaced:
    /// the archive's position on assignment, then one past each record consumed.
    next: i64,
}

/// Per topic and partition, shared by the rebalance callback (which sets where each
/// assignment starts) and the consuming loop.
type Cursors = Arc<Mutex<HashMap<(String, i32), Cursor>>>;

/// The archiver's consumer: the group protocol decides who reads which partition, the
/// archive decides where.
pub(crate) struct ArchiveContext {
    store: LogStore,
    cursors: Cursors,
    /// A topic the group may assign this consumer that it leaves to another (the data
    /// consumer's subscription may match the change log, which has its own).
    leaves: Option<&'static str>,
}

impl ClientContext for ArchiveContext {}

impl ConsumerContext for ArchiveContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let outcome = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut taken = self.taken(partitions);
                let assigned = self.resume_from_archive(&mut taken);
                let result = consumer.assign(&taken);
                PartitionsAssigned {
                    partitions: &assigned,
                }
                .emit();
                result
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => consumer.unassign(),
            other => Err(KafkaError::Rebalance(other.into())),
        };
        if let Err(error) = outcome {
            KafkaProblem {
                during: During::Rebalance,
                error: &error,
            }
            .emit();
        }
    }
}

impl ArchiveContext {
    /// The partitions of `partitions` this consumer reads.
    fn taken(&self, partitions: &TopicPartitionList) -> TopicPartitionList {
        let mut taken = TopicPartitionList::with_capacity(partitions.count());
        for p in partitions.elements() {
            if Some(p.topic()) != self.leaves {
                taken.add_partition(p.topic(), p.partition());
            }
        }
        taken
    }

    /// Sets each partition's start to the archive's position, or the beginning of what
    /// Kafka retains for a partition never archived. The epoch and offset read here are the
    /// cursor's start: one snapshot, so a batch of a new epoch still being written when the
    /// partition comes back is not taken for yet another reset.
    pub(crate) fn resume_from_archive(
        &self,
        partitions: &mut TopicPartitionList,
    ) -> Vec<(String, i32, Option<i64>)> {
        let mut cursors = self.cursors.lock().expect("never poisoned");
        let assigned: Vec<(String, i32, Option<i64>)> = partitions
            .elements()
            .iter()
            .map(|p| {
                let position = self.store.position(p.topic(), p.partition());
                let cursor = Cursor {
                    epoch: position.as_ref().map_or(0, |p| p.epoch),
                    next: position.as_ref().map_or(0, |p| p.next_offset),
                };
                cursors.insert((p.topic().to_owned(), p.partition()), cursor);
                let next = position.map(|p| p.next_offset);
                (p.topic().to_owned(), p.partition(), next)
            })
            .collect();
        drop(cursors);
        for (topic, partition, next) in &assigned {
            let offset = next.map_or(Offset::Beginning, Offset::Offset);
            if let Err(error) = partitions.set_partition_offset(topic, *partition, offset) {
                KafkaProblem {
                    during: During::Seek,
                    error: &error,
                }
                .emit();
            }
        }
        assigned
    }
}

pub(crate) struct Archiver {
    /// The data topics' consumer (everything but the change log). Shared with the blocking
    /// pool only while it asks for a shard's metadata.
    consumer: Arc<StreamConsumer<ArchiveContext>>,
    /// A shard's partitions, assigned by the archive instead of the group protocol.
    assignment: Option<StaticAssignment>,
    /// The change log's.
    changes: StreamConsumer<ArchiveContext>,
    group_id: String,
    store: LogStore,
    batch: BatchSettings,
    topics: TopicSelection,
    config: watch::Receiver<Arc<Loaded<ArchiveConfig>>>,
    cursors: Cursors,
    /// Audit events are chained only when signed with one of these.
    keys: SigningKeys,
    /// This replica's name: its own audit events are in its trail already.
    replica: String,
    /// The archive's group: the changes of another archive's replicas are not applied.
    archive: String,
    /// Told after every batch written, once the erasures it made due are applied.
    applied: Applied,
}

#[derive(Default)]
struct Batch {
    records: Arc<Vec<PreparedRecord>>,
    /// Next offset per partition, to commit once the batch is durable.
    commit: HashMap<(String, i32), i64>,
}

impl Archiver {
    /// An archiver of `config`'s topics, following the configurations `config` publishes.
    pub(crate) fn new(
        config: watch::Receiver<Arc<Loaded<ArchiveConfig>>>,
        store: LogStore,
        keys: SigningKeys,
        applied: Applied,
    ) -> KafkaResult<Self> {
        let current = Arc::clone(&config.borrow());
        let client = Self::client(&current.config);
        let cursors = Cursors::default();
        let context = |leaves| ArchiveContext {
            store: store.clone(),
            cursors: Arc::clone(&cursors),
            leaves,
        };
        let consumer = client.create_with_context(context(Some(ARCHIVE_CHANGES_TOPIC)))?;
        let assignment =
            current.config.sharding.as_ref().map(|sharding| {
                StaticAssignment::new(sharding.shard, current.config.metadata_refresh)
            });
        if assignment.is_none() {
            subscribe(&consumer, &current.config.topics)?;
        }
        let changes: StreamConsumer<ArchiveContext> =
            Self::changes_client(&client).create_with_context(context(None))?;
        changes.subscribe(&[ARCHIVE_CHANGES_TOPIC])?;
        Ok(Archiver {
            consumer: Arc::new(consumer),
            assignment,
            changes,
            group_id: current.config.consumer_group(),
            store,
            batch: current.config.batch.clone(),
            topics: current.config.topics.clone(),
            config,
            cursors,
            keys,
            replica: current.config.replica().to_owned(),
            archive: current.config.group_id.clone(),
            applied,
        })
    }

    /// The consumer's settings. The group has one member, this archive, which is a static
    /// member (`group.instance.id`, the group id unless the Kafka property says otherwise):
    /// restarted after a crash, it gets its partitions back at once instead of after the
    /// dead member's session timeout (45 s by default) and a rebalance. A second process in
    /// the same group fences the first, which stops with an error, rather than silently
    /// taking half the partitions of an archive that must hold them all.
    fn client(config: &ArchiveConfig) -> ClientConfig {
        let refresh = config.metadata_refresh.as_millis().to_string();
        let group = config.consumer_group();
        let defaults = [
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("topic.metadata.refresh.interval.ms", refresh.as_str()),
            ("group.instance.id", group.as_str()),
        ];
        let mut client = config.kafka.client_config(&defaults);
        client.set("group.id", &group);
        client
    }

    /// The change log consumer's settings: the data consumer's, in the group
    /// `<group>.changes` as its static member `<instance>.changes`.
    fn changes_client(data: &ClientConfig) -> ClientConfig {
        let mut client = data.clone();
        for property in ["group.id", "group.instance.id"] {
            if let Some(name) = data.get(property) {
                client.set(property, format!("{name}.changes"));
            }
        }
        client
    }

    /// Archives until `shutdown`, then writes what it holds and flushes the store. Fails
    /// only when the store refuses every write until it is reopened.
    pub(crate) async fn run(mut self, shutdown: &CancellationToken) -> Result<(), StoreError> {
        // Erasures a crash left due but not applied.
        self.apply_due_erasures().await;
        let mut batch = Batch::default();
        loop {
            if let Some(assignment) = &mut self.assignment
                && assignment.due() <= tokio::time::Instant::now()
            {
                assignment.refresh(&self.consumer, &self.topics).await;
            }
            if self.config.has_changed().unwrap_or(false) {
                // What the consumer gave is written (and committed) before it may go.
                if !batch.records.is_empty() {
                    if !self.write(batch, shutdown).await? {
                        break;
                    }
                    batch = Batch::default();
                }
                self.follow_configuration();
            }
            if batch.records.is_empty() {
                if shutdown.is_cancelled() {
                    break;
                }
                batch = self.collect(shutdown).await;
                continue;
            }
            let (written, next) = tokio::join!(self.write(batch, shutdown), self.collect(shutdown));
            if !written? {
                break;
            }
            batch = next;
        }
        if let Err(error) = self.store.flush() {
            KafkaProblem {
                during: During::FinalFlush,
                error: &error,
            }
            .emit();
        }
        Ok(())
    }

    /// Applies the configuration last published: batch limits, and a consumer of the new
    /// topic set if the set changed.
    fn follow_configuration(&mut self) {
        let loaded = Arc::clone(&self.config.borrow_and_update());
        self.batch = loaded.config.batch.clone();
        let wanted = &loaded.config.topics;
        let before = topic_set_hash(self.topics.subscription().iter().map(String::as_str));
        let after = topic_set_hash(wanted.subscription().iter().map(String::as_str));
        if before == after {
            return;
        }
        if let Some(assignment) = &mut self.assignment {
            // Assigned, not subscribed: the next refresh assigns the new topics' partitions
            // and lets go of the old ones'.
            assignment.refresh_now();
        } else if let Err(error) = subscribe(&self.consumer, wanted) {
            // The same consumer subscribes anew rather than a new one joining: the archive is
            // a static member of its group, and a static member replaced by a new consumer
            // keeps its old assignment. A new subscription rebalances like a new consumer
            // would, and every partition resumes from the archive's positions on assignment.
            KafkaProblem {
                during: During::Subscribe,
                error: &error,
            }
            .emit();
            return;
        }
        self.topics = wanted.clone();
        ConsumerRecreated {
            service: "archive",
            group: &self.group_id,
            from: &before,
            to: &after,
            topics: &wanted.subscription().join(","),
        }
        .emit();
    }

    /// Waits for a first record, then gathers more until the batch is full or its time is up.
    /// Returns early, possibly empty, on shutdown or when a new configuration is published.
    async fn collect(&self, shutdown: &CancellationToken) -> Batch {
        let mut updates = self.config.clone();
        let mut records = Vec::new();
        let mut commit = HashMap::new();
        let mut deadline = None;
        while records.len() < self.batch.max_records {
            let until = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            let reassign = async {
                match &self.assignment {
                    Some(assignment) => tokio::time::sleep_until(assignment.due()).await,
                    None => std::future::pending().await,
                }
            };
            let message = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Ok(()) = updates.changed() => break,
                _ = until => break,
                _ = reassign => break,
                message = self.changes.recv() => message,
                message = self.consumer.recv() => message,
            };
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    KafkaProblem {
                        during: During::Consume,
                        error: &error,
                    }
                    .emit();
                    continue;
                }
            };
            let mut record = classify(&message, now_ms(), &self.keys, Some(&self.replica));
            record.key.epoch =
                self.follow(&record.key.topic, record.key.partition, record.key.offset);
            RecordConsumed {
                topic: &record.key.topic,
                partition: record.key.partition,
                offset: record.key.offset,
                kind: record.kind,
                problem: record.problem.as_deref(),
            }
            .emit();
            commit.insert(
                (record.key.topic.clone(), record.key.partition),
                record.key.offset + 1,
            );
            records.push(prepare(record, &self.archive));
            deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.batch.max_wait);
        }
        Batch {
            records: Arc::new(records),
            commit,
        }
    }

    /// Moves the partition's cursor past a record at `offset` and answers the epoch to
    /// archive it under. Reports a log reset (an offset below the cursor: see the module's
    /// documentation), and the offsets Kafka deleted before the archive read them. Offsets
    /// are skipped for harmless reasons too (transaction markers, compaction), so a skip
    /// counts as a gap only below the partition's log start, which every fetch response
    /// carries: librdkafka resets a position that fell below it to the earliest offset
    /// without telling.
    fn follow(&self, topic: &str, partition: i32, offset: i64) -> u32 {
        let mut cursors = self.cursors.lock().expect("never poisoned");
        let key = (topic.to_owned(), partition);
        // Every partition is assigned before it is read; the store's position is the
        // assignment's start should the callback not have run.
        let cursor = cursors.entry(key).or_insert_with(|| {
            let position = self.store.position(topic, partition);
            Cursor {
                epoch: position.as_ref().map_or(0, |p| p.epoch),
                next: position.map_or(0, |p| p.next_offset),
            }
        });
        let expected = cursor.next;
        if offset < expected {
            cursor.epoch += 1;
            LogReset {
                topic,
                partition,
                epoch: cursor.epoch,
                previous_next_offset: expected,
                offset,
            }
            .emit();
        }
        cursor.next = offset + 1;
        let epoch = cursor.epoch;
        drop(cursors);
        if offset > expected {
            self.notice_retention_gap(topic, partition, expected, offset);
        }
        epoch
    }

    fn notice_retention_gap(&self, topic: &str, partition: i32, expected: i64, offset: i64) {
        if let Some(log_start) = cached_log_start(self.consumer_of(topic), topic, partition)
            && log_start > expected
        {
            RetentionGap {
                topic,
                partition,
                from: expected,
                to: log_start.min(offset),
            }
            .emit();
        }
    }

    /// Writes `batch` durably, retrying with consumption paused while the store fails, then
    /// commits its offsets. Returns false if shut down before the batch was written, and the
    /// error if the store cannot take writes until reopened.
    async fn write(&self, batch: Batch, shutdown: &CancellationToken) -> Result<bool, StoreError> {
        let mut attempt = 0;
        let mut paused = false;
        loop {
            let store = self.store.clone();
            let records = Arc::clone(&batch.records);
            let started = Instant::now();
            let written = tokio::task::spawn_blocking(move || store.append(&records)).await;
            let error = match written {
                Ok(Ok(summary)) => {
                    BatchArchived {
                        summary: &summary,
                        elapsed: started.elapsed(),
                    }
                    .emit();
                    if paused {
                        self.set_paused(false);
                    }
                    self.commit(&batch.commit);
                    self.apply_due_erasures().await;
                    return Ok(true);
                }
                Ok(Err(error)) if error.needs_reopen() => {
                    StoreUnwritable { error: &error }.emit();
                    return Err(error);
                }
                Ok(Err(error)) => (error.to_string(), error.is_disk_full()),
                Err(join_error) => (format!("the archive writer stopped: {join_error}"), false),
            };
            let (error, disk_full) = error;
            attempt += 1;
            let retry_in = Duration::from_millis(100 * 2u64.pow(attempt.min(7)));
            StoreWriteFailed {
                error: &error,
                disk_full,
                attempt,
                retry_in,
            }
            .emit();
            if !paused {
                self.set_paused(true);
                paused = true;
            }
            tokio::select! {
                _ = shutdown.cancelled() => {
                    ShutdownWithUnwrittenBatch { records: batch.records.len() }.emit();
                    return Ok(false);
                }
                _ = tokio::time::sleep(retry_in) => {}
            }
        }
    }

    /// Applies the erasures now due, then tells whoever waits for a change to be applied.
    async fn apply_due_erasures(&self) {
        let store = self.store.clone();
        let shard = self.assignment.as_ref().map(StaticAssignment::shard);
        tokio::task::spawn_blocking(move || apply_due_erasures(&store, shard))
            .await
            .expect("applying erasures does not panic");
        self.applied.notify();
    }

    /// Pauses or resumes every partition both consumers hold.
    fn set_paused(&self, paused: bool) {
        let result = [&self.consumer, &self.changes]
            .iter()
            .try_for_each(|consumer| {
                let partitions = consumer.assignment()?;
                if paused {
                    consumer.pause(&partitions)
                } else {
                    consumer.resume(&partitions)
                }
            });
        match result {
            Ok(()) => ConsumptionPaused { paused }.emit(),
            Err(error) => KafkaProblem {
                during: During::PauseOrResume,
                error: &error,
            }
            .emit(),
        }
    }

    /// The consumer that reads `topic`.
    fn consumer_of(&self, topic: &str) -> &StreamConsumer<ArchiveContext> {
        if topic == ARCHIVE_CHANGES_TOPIC {
            &self.changes
        } else {
            &self.consumer
        }
    }

    /// Tells Kafka how far the archive got. Only a hint for monitoring and other tools: on
    /// restart the archive resumes from its own positions.
    fn commit(&self, offsets: &HashMap<(String, i32), i64>) {
        for (consumer, changes) in [(&*self.consumer, false), (&self.changes, true)] {
            let mut list = TopicPartitionList::new();
            for ((topic, partition), next) in offsets {
                if (topic == ARCHIVE_CHANGES_TOPIC) != changes {
                    continue;
                }
                if let Err(error) =
                    list.add_partition_offset(topic, *partition, Offset::Offset(*next))
                {
                    KafkaProblem {
                        during: During::Commit,
                        error: &error,
                    }
                    .emit();
                }
            }
            if list.count() == 0 {
                continue;
            }
            if let Err(error) = consumer.commit(&list, CommitMode::Async) {
                KafkaProblem {
                    during: During::Commit,
                    error: &error,
                }
                .emit();
            }
        }
    }
}

/// The partition's log start as of the last fetch response: librdkafka keeps it, but
/// rust-rdkafka only offers the query that asks the broker and blocks.
fn cached_log_start(
    consumer: &StreamConsumer<ArchiveContext>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let topic = CString::new(topic).ok()?;
    let (mut low, mut high) = (-1_i64, -1_i64);
    // SAFETY: the handle lives as long as `consumer`; librdkafka reads `topic` only during
    // the call and writes only the two offsets.
    let error = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (error == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR && low >= 0).then_some(low)
}

fn subscribe(
    consumer: &StreamConsumer<ArchiveContext>,
    topics: &TopicSelection,
) -> KafkaResult<()> {
    let subscription = topics.subscription();
    let topics: Vec<&str> = subscription.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
