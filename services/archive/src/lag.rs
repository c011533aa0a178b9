//! How far the archive is behind what Kafka holds, so that an answer the archive cannot give
//! yet is never mistaken for "it did not happen".
//!
//! Every `[archive] lag_check_ms` a client of its own (no group, so it disturbs no one) asks
//! Kafka for the log start and end of every partition the archive follows, and compares them
//! with the positions stored with the records. The archiver's consumer is not asked: while
//! the archive starts, or waits for the group to hand it its partitions, it has none.
//!
//! A partition is **behind** when a record Kafka held one check ago is still not archived.
//! Under steady traffic a record is always on its way (a batch collects for up to
//! `batch_wait_ms`); only one still missing a whole check later says the archive is not
//! keeping up. The first check of a partition has nothing to compare with: a lag there is
//! what the archive found on starting, and counts at once. "Since" is when the oldest record
//! not archived yet was first seen on Kafka by a check, so it is when the archive fell
//! behind, to within one check.
//!
//! The last records of a partition written by a transactional producer are followed by a
//! commit marker that no consumer receives: such a partition shows a lag of one (the marker)
//! until its next record. It is counted, never called behind: a mark one past the archive
//! and no record to fetch is what a marker looks like, and the next record clears it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use retrace_log_store::LogStore;
use retrace_service::{Loaded, next_config};
use retrace_telemetry::InternalEvent;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{ArchiveConfig, TopicSelection};
use crate::events::{
    ArchiveBehind, ArchiveCaughtUp, CatchingUp, LagCheckFailed, PartitionFollowed,
    PartitionLagChecked,
};
use crate::replay::now_ms;
use crate::shards::Shard;
use crate::trace::rfc3339;
use retrace_api::Behind;

/// How many not-yet-archived marks a partition remembers; past it, the oldest after the first
/// are forgotten (only the first dates "since").
const MARKS: usize = 256;

/// The last check of every partition followed, shared by the checker and the API.
#[derive(Clone, Default)]
pub(crate) struct Lag(Arc<RwLock<BTreeMap<(String, i32), PartitionLag>>>);

/// One partition as of the last check.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PartitionLag {
    /// Kafka's log end: the offset the next record written will have.
    pub high_watermark: i64,
    /// Records on Kafka the archive does not hold yet.
    pub lag: i64,
    /// When the partition fell behind; `None` while it keeps up.
    pub behind_since_ms: Option<i64>,
    /// Log ends seen by a check and not yet reached by the archive, oldest first.
    marks: VecDeque<Mark>,
    checked: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Mark {
    seen_ms: i64,
    high_watermark: i64,
    /// Seen by the partition's first check: a lag the archive started with.
    at_start: bool,
}

impl PartitionLag {
    /// Takes in a check made at `now_ms`: Kafka holds `log_start..high_watermark`, the
    /// archive stores from `archived_next` on. A partition not checked for `grace_ms` after
    /// a mark is behind (see the module's documentation).
    fn observe(
        &mut self,
        now_ms: i64,
        log_start: i64,
        high_watermark: i64,
        archived_next: i64,
        grace_ms: i64,
    ) {
        let first = !self.checked;
        self.checked = true;
        // Records Kafka deleted before the archive read them cannot be archived any more
        // (the archiver reports them as a retention gap): they are not a lag.
        let reached = archived_next.max(log_start);
        self.high_watermark = high_watermark;
        self.lag = (high_watermark - reached).max(0);
        self.marks.retain(|mark| mark.high_watermark > reached);
        if self.lag > 0
            && self
                .marks
                .back()
                .is_none_or(|mark| mark.high_watermark < high_watermark)
        {
            self.marks.push_back(Mark {
                seen_ms: now_ms,
                high_watermark,
                at_start: first,
            });
            if self.marks.len() > MARKS {
                self.marks.remove(1);
            }
        }
        let oldest = self.marks.front().filter(|mark| {
            // A lone marker: one past the archive, and nothing since to fetch.
            let marker = mark.high_watermark == reached + 1 && self.lag == 1;
            !marker && (mark.at_start || now_ms - mark.seen_ms >= grace_ms)
        });
        self.behind_since_ms = oldest.map(|mark| mark.seen_ms);
    }
}

/// Kafka's side of one partition, as a check read it.
struct Ends {
    topic: String,
    partition: i32,
    log_start: i64,
    high_watermark: i64,
}

impl Lag {
    /// Every partition followed, as of the last check.
    pub fn partitions(&self) -> BTreeMap<(String, i32), PartitionLag> {
        self.0.read().expect("never poisoned").clone()
    }

    /// The partitions behind now, of `topic` when given, for an answer that may be
    /// incomplete because of them.
    pub fn behind(&self, topic: Option<&str>) -> Vec<Behind> {
        self.0
            .read()
            .expect("never poisoned")
            .iter()
            .filter(|((t, _), _)| topic.is_none_or(|topic| topic == t))
            .filter_map(|((topic, partition), lag)| {
                Some(Behind {
                    topic: topic.clone(),
                    partition: *partition,
                    lag: lag.lag,
                    since: rfc3339(lag.behind_since_ms?),
                })
            })
            .collect()
    }

    fn record(&self, checked_at_ms: i64, ends: Vec<Ends>, store: &LogStore, grace_ms: i64) {
        let mut partitions = self.0.write().expect("never poisoned");
        for end in ends {
            let archived_next = store
                .position(&end.topic, end.partition)
                .map_or(0, |p| p.next_offset);
            let key = (end.topic, end.partition);
            let lag = partitions.entry(key.clone()).or_default();
            if !lag.checked {
                PartitionFollowed {
                    topic: &key.0,
                    partition: key.1,
                }
                .emit();
            }
            let was_behind = lag.behind_since_ms;
            lag.observe(
                checked_at_ms,
                end.log_start,
                end.high_watermark,
                archived_next,
                grace_ms,
            );
            let (topic, partition) = (&key.0, key.1);
            PartitionLagChecked {
                topic,
                partition,
                lag: lag.lag,
                behind_ms: lag.behind_since_ms.map_or(0, |since| checked_at_ms - since),
            }
            .emit();
            match (was_behind, lag.behind_since_ms) {
                (None, Some(since)) => ArchiveBehind {
                    topic,
                    partition,
                    lag: lag.lag,
                    since: &rfc3339(since),
                }
                .emit(),
                (Some(since), None) => ArchiveCaughtUp {
                    topic,
                    partition,
                    behind_for: Duration::from_millis((checked_at_ms - since).max(0) as u64),
                }
                .emit(),
                _ => {}
            }
        }
    }
}

/// Checks how far behind the archive is every `[archive] lag_check_ms` of the configuration
/// last published, until `shutdown`; sets `caught_up` when a check finds no partition behind
/// (and when checks fail: not knowing is no reason to stop serving).
pub(crate) async fn watch(
    lag: Lag,
    caught_up: Arc<AtomicBool>,
    mut config: watch::Receiver<Arc<Loaded<ArchiveConfig>>>,
    store: LogStore,
    shutdown: CancellationToken,
) {
    let mut current = Arc::clone(&config.borrow_and_update());
    let mut client = match Checker::new(&current.config) {
        Ok(client) => Arc::new(client),
        Err(error) => {
            LagCheckFailed {
                error: &error,
                logged: true,
            }
            .emit();
            return;
        }
    };
    let mut failing = false;
    loop {
        let checker = Arc::clone(&client);
        let selection = current.config.topics.clone();
        let shard = current
            .config
            .sharding
            .as_ref()
            .map(|sharding| sharding.shard);
        let checked_at_ms = now_ms();
        let checked = tokio::task::spawn_blocking(move || checker.ends(&selection, shard)).await;
        match checked.expect("a lag check does not panic") {
            Ok(ends) => {
                failing = false;
                let grace_ms = current.config.lag_check.as_millis() as i64;
                lag.record(checked_at_ms, ends, &store, grace_ms);
                follow_catching_up(&caught_up, !lag.behind(None).is_empty());
            }
            Err(error) => {
                LagCheckFailed {
                    error: &error,
                    logged: !failing,
                }
                .emit();
                failing = true;
                follow_catching_up(&caught_up, false);
            }
        }
        let wait = current.config.lag_check;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            next = next_config(&mut config, &shutdown) => match next {
                Some(next) => {
                    if next.config.kafka != current.config.kafka {
                        match Checker::new(&next.config) {
                            Ok(next) => client = Arc::new(next),
                            Err(error) => LagCheckFailed {
                                error: &error,
                                logged: true,
                            }
                            .emit(),
                        }
                    }
                    current = next;
                }
                None => return,
            },
        }
        if shutdown.is_cancelled() {
            return;
        }
    }
}

/// Sets `caught_up` to the opposite of `catching_up`, reporting a change.
fn follow_catching_up(caught_up: &AtomicBool, catching_up: bool) {
    if caught_up.swap(!catching_up, Ordering::AcqRel) == catching_up {
        CatchingUp { catching_up }.emit();
    }
}

/// Reads the partitions' log starts and ends from Kafka.
struct Checker {
    consumer: BaseConsumer,
    timeout: Duration,
}

impl Checker {
    fn new(config: &ArchiveConfig) -> Result<Checker, KafkaError> {
        Ok(Checker {
            consumer: config.kafka.client_config(&[]).create()?,
            timeout: config.lag_check.max(Duration::from_secs(5)),
        })
    }

    /// Every partition of the topics `selection` archives (a shard: those it owns), with its
    /// log start and end. Two ListOffsets requests per broker, however many partitions.
    fn ends(
        &self,
        selection: &TopicSelection,
        shard: Option<Shard>,
    ) -> Result<Vec<Ends>, KafkaError> {
        let metadata = self.consumer.fetch_metadata(None, self.timeout)?;
        let mut partitions = TopicPartitionList::new();
        for topic in metadata.topics() {
            if topic.error().is_some() || !selection.matches(topic.name()) {
                continue;
            }
            for partition in topic.partitions() {
                if shard.is_none_or(|shard| shard.owns(topic.name(), partition.id())) {
                    partitions.add_partition(topic.name(), partition.id());
                }
            }
        }
        if partitions.count() == 0 {
            return Ok(Vec::new());
        }
        let at = |offset: Offset| -> Result<TopicPartitionList, KafkaError> {
            let mut query = partitions.clone();
            query.set_all_offsets(offset)?;
            self.consumer.offsets_for_times(query, self.timeout)
        };
        let starts = at(Offset::Beginning)?;
        let ends = at(Offset::End)?;
        Ok(ends
            .elements()
            .iter()
            .filter_map(|end| {
                let Offset::Offset(high_watermark) = end.offset() else {
                    return None;
                };
                let log_start = starts
                    .find_partition(end.topic(), end.partition())
                    .and_then(|start| start.offset().to_raw())
                    .filter(|start| *start >= 0)
                    .unwrap_or(0);
                Some(Ends {
                    topic: end.topic().to_owned(),
                    partition: end.partition(),
                    log_start,
                    high_watermark,
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::PartitionLag;

    const GRACE: i64 = 1000;

    #[test]
    fn a_lag_found_on_the_first_check_is_behind_at_once() {
        let mut lag = PartitionLag::default();
        lag.observe(10_000, 0, 500, 100, GRACE);
        assert_eq!((lag.lag, lag.behind_since_ms), (400, Some(10_000)));
    }

    #[test]
    fn records_on_their_way_are_a_lag_but_not_behind_until_a_check_later() {
        let mut lag = PartitionLag::default();
        lag.observe(0, 0, 100, 100, GRACE);
        lag.observe(1000, 0, 150, 120, GRACE);
        assert_eq!((lag.lag, lag.behind_since_ms), (30, None));
        // Archived past what the previous check saw: keeping up, whatever arrived since.
        lag.observe(2000, 0, 200, 160, GRACE);
        assert_eq!((lag.lag, lag.behind_since_ms), (40, None));
        // 200 was on Kafka a check ago and is still not archived.
        lag.observe(3000, 0, 210, 180, GRACE);
        assert_eq!((lag.lag, lag.behind_since_ms), (30, Some(2000)));
    }

    #[test]
    fn behind_since_the_oldest_record_not_archived_and_caught_up_once_it_is() {
        let mut lag = PartitionLag::default();
        lag.observe(0, 0, 0, 0, GRACE);
        for second in 1..=5 {
            lag.observe(second * 1000, 0, second * 100, 0, GRACE);
        }
        assert_eq!((lag.lag, lag.behind_since_ms), (500, Some(1000)));
        // Past the first marks: behind since the oldest one still ahead.
        lag.observe(6000, 0, 500, 250, GRACE);
        assert_eq!((lag.lag, lag.behind_since_ms), (250, Some(3000)));
        lag.observe(7000, 0, 500, 500, GRACE);
        assert_eq!((lag.lag, lag.behind_since_ms), (0, None));
    }

    #[test]
    fn records_deleted_before_they_were_archived_are_no_lag() {
        let mut lag = PartitionLag::default();
        lag.observe(0, 900, 1000, 100, GRACE);
        assert_eq!(lag.lag, 100);
        lag.observe(1000, 1000, 1000, 100, GRACE);
        assert_eq!((lag.lag, lag.behind_since_ms), (0, None));
    }

    #[test]
    fn a_transaction_marker_after_the_last_record_is_a_lag_of_one_never_behind() {
        let mut lag = PartitionLag::default();
        lag.observe(0, 0, 10, 9, GRACE);
        lag.observe(5000, 0, 10, 9, GRACE);
        assert_eq!((lag.lag, lag.behind_since_ms), (1, None));
    }

    #[test]
    fn a_log_shorter_than_the_archive_is_no_lag() {
        let mut lag = PartitionLag::default();
        lag.observe(0, 0, 10, 500, GRACE);
        assert_eq!((lag.lag, lag.behind_since_ms), (0, None));
    }

    #[test]
    fn a_long_outage_keeps_its_start_however_many_checks_it_lasts() {
        let mut lag = PartitionLag::default();
        lag.observe(0, 0, 0, 0, GRACE);
        for second in 1..=1000 {
            lag.observe(second * 1000, 0, second, 0, GRACE);
        }
        assert_eq!(lag.behind_since_ms, Some(1000));
        assert!(lag.marks.len() <= super::MARKS);
    }
}
