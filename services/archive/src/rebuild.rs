//! `retrace rebuild --from-kafka`: an archive rebuilt, or its gap filled, from what Kafka
//! still retains, offline (the archive service stopped). It reads each partition from where
//! the archive stands (or `since`) up to the high watermark seen when it started, through
//! the archiver's own path: [`classify`] (with the configuration's signing keys), [`prepare`],
//! [`LogStore::append`] with positions, the change log's erasures applied when due.
//! Records already archived are skipped, so running it twice, or over a restored backup,
//! stores nothing twice; the archive service resumes where the rebuild stopped.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use retrace_log_store::{LogStore, PreparedRecord, StoreError};
use retrace_telemetry::InternalEvent;

use crate::changes::apply_due_erasures;
use crate::classify::{classify, prepare};
use crate::config::{ALL_TOPICS_PATTERN, ArchiveConfig, TopicSelection};
use crate::events::BatchArchived;
use crate::replay::now_ms;
use crate::shards::Shard;

const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot {operation} on Kafka at {bootstrap}: {source}")]
    Kafka {
        operation: &'static str,
        bootstrap: String,
        source: KafkaError,
    },
    #[error(
        "a rebuild reads topics by name, and the archive is configured with the pattern \
         {0:?}: pass the topics with --topics"
    )]
    Pattern(String),
    #[error("no topic to rebuild from: {0}")]
    NoTopics(String),
    #[error(transparent)]
    SigningKeys(#[from] retrace_auth::SigningKeyError),
}

/// How far a rebuild got: messages read out of the total it set out to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RebuildProgress {
    pub read: u64,
    pub total: u64,
    pub appended: u64,
    pub already_archived: u64,
}

/// One partition to read, from `next` up to (not including) `end`.
struct Range {
    topic: String,
    partition: i32,
    next: i64,
    end: i64,
}

/// Rebuilds the archive in `config.data_dir` from `config.topics` (names, or the default:
/// every topic but Kafka's internal ones), from `since_ms` on when given; calls `progress`
/// after each batch. The archive service must be stopped (the store allows one opener).
pub fn rebuild(
    config: &ArchiveConfig,
    since_ms: Option<i64>,
    mut progress: impl FnMut(RebuildProgress),
) -> Result<RebuildProgress, RebuildError> {
    // Audit events are chained only when signed with one of the configured keys, as the
    // archive service does.
    let keys = config.auth.signing_keys()?;
    let store = LogStore::open(&config.data_dir, &config.store)?;
    // A gap filled: this replica's own audit events are in its trail already, as when the
    // service archives them; an archive rebuilt from nothing chains them all.
    let own_replica = (!store.positions()?.is_empty()).then(|| config.replica());
    let kafka = |operation| kafka_error(config, operation);
    let consumer: BaseConsumer = config
        .kafka
        .client_config(&[
            ("group.id", "retrace-rebuild"),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"),
        ])
        .create()
        .map_err(kafka("connect"))?;
    let shard = config.sharding.as_ref().map(|sharding| sharding.shard);
    let ranges = ranges(&consumer, config, shard, &store, since_ms)?;
    let mut assignment = TopicPartitionList::new();
    for range in &ranges {
        assignment
            .add_partition_offset(&range.topic, range.partition, Offset::Offset(range.next))
            .map_err(kafka("assign partitions"))?;
    }
    let mut done = RebuildProgress {
        total: ranges.iter().map(|r| (r.end - r.next) as u64).sum(),
        ..RebuildProgress::default()
    };
    progress(done);
    let mut open: HashMap<(String, i32), i64> = ranges
        .into_iter()
        .map(|r| ((r.topic, r.partition), r.end))
        .collect();
    if open.is_empty() {
        return Ok(done);
    }
    consumer
        .assign(&assignment)
        .map_err(kafka("assign partitions"))?;
    let mut batch: Vec<PreparedRecord> = Vec::new();
    while !open.is_empty() {
        match consumer.poll(Duration::from_millis(500)) {
            None | Some(Err(KafkaError::PartitionEOF(_))) => {
                finished(&consumer, config, &mut open)?
            }
            Some(Ok(message)) => {
                let key = (message.topic().to_owned(), message.partition());
                let Some(end) = open.get(&key).copied() else {
                    continue;
                };
                if message.offset() < end {
                    let record = classify(&message, now_ms(), &keys, own_replica);
                    batch.push(prepare(record, &config.group_id));
                    done.read += 1;
                }
                if message.offset() + 1 >= end {
                    open.remove(&key);
                }
            }
            Some(Err(error)) => return Err(kafka("read")(error)),
        }
        if batch.len() >= config.batch.max_records || (open.is_empty() && !batch.is_empty()) {
            write(&store, shard, &mut batch, &mut done)?;
            progress(done);
        }
    }
    store.flush()?;
    Ok(done)
}

/// Drops from `open` the partitions the consumer has read to their end (the last offsets
/// may be transaction markers, never delivered as messages).
fn finished(
    consumer: &BaseConsumer,
    config: &ArchiveConfig,
    open: &mut HashMap<(String, i32), i64>,
) -> Result<(), RebuildError> {
    let positions = consumer
        .position()
        .map_err(kafka_error(config, "read positions"))?;
    for element in positions.elements() {
        if let Offset::Offset(position) = element.offset() {
            let key = (element.topic().to_owned(), element.partition());
            if open.get(&key).is_some_and(|end| position >= *end) {
                open.remove(&key);
            }
        }
    }
    Ok(())
}

fn kafka_error(
    config: &ArchiveConfig,
    operation: &'static str,
) -> impl FnOnce(KafkaError) -> RebuildError {
    let bootstrap = config.kafka.bootstrap_servers.clone();
    move |source| RebuildError::Kafka {
        operation,
        bootstrap,
        source,
    }
}

fn write(
    store: &LogStore,
    shard: Option<Shard>,
    batch: &mut Vec<PreparedRecord>,
    done: &mut RebuildProgress,
) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    let summary = store.append(batch)?;
    BatchArchived {
        summary: &summary,
        elapsed: started.elapsed(),
    }
    .emit();
    done.appended += summary.appended as u64;
    done.already_archived += summary.already_archived as u64;
    batch.clear();
    // The change log's erasures, as the archive service applies them.
    apply_due_erasures(store, shard);
    Ok(())
}

/// What to read of each partition (a shard: each it owns): from the archive's position (or the oldest retained
/// offset, or the first at `since_ms`, whichever is later) to the high watermark now.
fn ranges(
    consumer: &BaseConsumer,
    config: &ArchiveConfig,
    shard: Option<Shard>,
    store: &LogStore,
    since_ms: Option<i64>,
) -> Result<Vec<Range>, RebuildError> {
    let kafka = |operation| kafka_error(config, operation);
    let metadata = consumer
        .fetch_metadata(None, KAFKA_TIMEOUT)
        .map_err(kafka("list topics"))?;
    let wanted = |name: &str| match &config.topics {
        TopicSelection::Names(names) => names.iter().any(|n| n == name),
        TopicSelection::Pattern(_) => !name.starts_with("__"),
    };
    if let TopicSelection::Pattern(pattern) = &config.topics
        && pattern != ALL_TOPICS_PATTERN
    {
        return Err(RebuildError::Pattern(pattern.clone()));
    }
    let mut ranges = Vec::new();
    for topic in metadata.topics().iter().filter(|t| wanted(t.name())) {
        let owned = topic
            .partitions()
            .iter()
            .filter(|partition| shard.is_none_or(|shard| shard.owns(topic.name(), partition.id())));
        for partition in owned {
            let (low, high) = consumer
                .fetch_watermarks(topic.name(), partition.id(), KAFKA_TIMEOUT)
                .map_err(kafka("read watermarks"))?;
            let mut next = low.max(store.next_offset(topic.name(), partition.id()).unwrap_or(0));
            if let Some(since) = since_ms {
                let mut at = TopicPartitionList::new();
                at.add_partition_offset(topic.name(), partition.id(), Offset::Offset(since))
                    .map_err(kafka("find offsets by time"))?;
                let found = consumer
                    .offsets_for_times(at, KAFKA_TIMEOUT)
                    .map_err(kafka("find offsets by time"))?;
                let since_offset = match found.elements().first().map(|e| e.offset()) {
                    Some(Offset::Offset(offset)) => offset,
                    // No message at or after `since`: nothing to read.
                    _ => high,
                };
                next = next.max(since_offset);
            }
            if next < high {
                ranges.push(Range {
                    topic: topic.name().to_owned(),
                    partition: partition.id(),
                    next,
                    end: high,
                });
            }
        }
    }
    if let TopicSelection::Names(names) = &config.topics
        && let Some(missing) = names
            .iter()
            .find(|name| !metadata.topics().iter().any(|t| t.name() == name.as_str()))
    {
        return Err(RebuildError::NoTopics(format!(
            "topic {missing:?} does not exist on {}",
            config.kafka.bootstrap_servers
        )));
    }
    Ok(ranges)
}
