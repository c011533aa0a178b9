//! A shard's data consumer is assigned its partitions, never subscribed: the group protocol
//! would spread partitions over whoever joins, and a partition moved to another process
//! leaves its history on a disk that no longer receives it.
//!
//! The partitions come from topic metadata, read again every `metadata_refresh`, so a topic
//! created later (or given more partitions) is archived by the shard that owns each of its
//! partitions. A partition is assigned once, starting from the archive's position like any
//! assignment; one that disappears (its topic deleted, or no longer selected) is let go.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaResult;
use retrace_proto::ARCHIVE_CHANGES_TOPIC;
use retrace_telemetry::InternalEvent;
use tokio::time::Instant;

use super::Shard;
use crate::archiver::ArchiveContext;
use crate::config::TopicSelection;
use crate::events::{During, KafkaProblem, PartitionsAssigned};

/// How long a metadata request may take before the refresh is left to the next one.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// The partitions of `topics` (name, partition count) that `shard` archives with its data
/// consumer: every selected topic's owned partitions, the change log left to its own.
fn owned<'a>(
    topics: impl Iterator<Item = (&'a str, i32)>,
    selection: &TopicSelection,
    shard: Shard,
) -> BTreeSet<(String, i32)> {
    topics
        .filter(|(topic, _)| *topic != ARCHIVE_CHANGES_TOPIC && selection.matches(topic))
        .flat_map(|(topic, count)| {
            (0..count)
                .filter(move |partition| shard.owns(topic, *partition))
                .map(move |partition| (topic.to_owned(), partition))
        })
        .collect()
}

/// What the shard's data consumer holds, and when to look for new partitions.
pub(crate) struct StaticAssignment {
    shard: Shard,
    held: BTreeSet<(String, i32)>,
    every: Duration,
    next: Instant,
}

impl StaticAssignment {
    /// Nothing held yet; the first refresh is due at once.
    pub fn new(shard: Shard, every: Duration) -> Self {
        StaticAssignment {
            shard,
            held: BTreeSet::new(),
            every,
            next: Instant::now(),
        }
    }

    pub fn shard(&self) -> Shard {
        self.shard
    }

    /// When the next refresh is due.
    pub fn due(&self) -> Instant {
        self.next
    }

    /// Makes the next refresh due at once (the topic selection changed).
    pub fn refresh_now(&mut self) {
        self.next = Instant::now();
    }

    /// Assigns the owned partitions not held yet, from the archive's positions, and lets go
    /// of the held ones no longer there. A failed metadata request changes nothing.
    pub async fn refresh(
        &mut self,
        consumer: &Arc<StreamConsumer<ArchiveContext>>,
        selection: &TopicSelection,
    ) {
        self.next = Instant::now() + self.every;
        let asked = Arc::clone(consumer);
        let metadata =
            tokio::task::spawn_blocking(move || asked.fetch_metadata(None, METADATA_TIMEOUT))
                .await
                .expect("a metadata request does not panic");
        let wanted = match metadata {
            Ok(metadata) => {
                let (answered, failed): (Vec<_>, Vec<_>) = metadata
                    .topics()
                    .iter()
                    .partition(|topic| topic.error().is_none());
                let mut wanted = owned(
                    answered
                        .iter()
                        .map(|topic| (topic.name(), topic.partitions().len() as i32)),
                    selection,
                    self.shard,
                );
                // A topic the broker could not describe this time is still there.
                wanted.extend(
                    self.held
                        .iter()
                        .filter(|(held, _)| failed.iter().any(|topic| topic.name() == held))
                        .cloned(),
                );
                wanted
            }
            Err(error) => {
                return KafkaProblem {
                    during: During::ShardAssignment,
                    error: &error,
                }
                .emit();
            }
        };
        if let Err(error) = self.follow(consumer, wanted) {
            KafkaProblem {
                during: During::ShardAssignment,
                error: &error,
            }
            .emit();
        }
    }

    fn follow(
        &mut self,
        consumer: &StreamConsumer<ArchiveContext>,
        wanted: BTreeSet<(String, i32)>,
    ) -> KafkaResult<()> {
        let gone: TopicPartitionList = list(self.held.difference(&wanted));
        if gone.count() > 0 {
            consumer.incremental_unassign(&gone)?;
        }
        let mut new = list(wanted.difference(&self.held));
        if new.count() > 0 {
            let assigned = consumer.context().resume_from_archive(&mut new);
            consumer.incremental_assign(&new)?;
            PartitionsAssigned {
                partitions: &assigned,
            }
            .emit();
        }
        self.held = wanted;
        Ok(())
    }
}

fn list<'a>(partitions: impl Iterator<Item = &'a (String, i32)>) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for (topic, partition) in partitions {
        list.add_partition(topic, *partition);
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use retrace_proto::AUDIT_TOPIC;

    #[test]
    fn a_shard_takes_its_share_of_every_selected_topic_and_the_audit_topic_whole() {
        let shard: Shard = "1/2".parse().unwrap();
        let topics = [
            ("births", 4),
            ("deaths", 1),
            (AUDIT_TOPIC, 2),
            (ARCHIVE_CHANGES_TOPIC, 2),
            ("__consumer_offsets", 4),
        ];
        let selection = TopicSelection::Pattern(crate::ALL_TOPICS_PATTERN.to_owned());
        let owned = owned(topics.into_iter(), &selection, shard);
        let owned: Vec<(&str, i32)> = owned.iter().map(|(t, p)| (t.as_str(), *p)).collect();
        assert_eq!(
            owned,
            [
                ("births", 1),
                ("births", 3),
                (AUDIT_TOPIC, 0),
                (AUDIT_TOPIC, 1)
            ]
        );
    }
}
