//! What a fault scenario checks afterwards: the archive holds a gap-free copy of a topic, and
//! every acknowledged event is in it (moved here from `scenarios/faults.rs`, which the
//! three-node scenarios of `scenarios/cluster.rs` share).

use std::collections::HashMap;

use retrace_log_store::{ArchivedRecord, LogStore, RecordKind};

use crate::{Broker, PATIENCE, RunningArchive, eventually, messages_on};

/// Every record of `topic` in `store`, in partition, epoch and offset order. Checks that each
/// partition's offsets (in each epoch) run from 0 without a gap or repeat, `on_kafka` records
/// in all: the
/// archive keeps one record per Kafka offset and cannot hold one beyond Kafka's end, so this
/// makes it a copy of the topic (each Kafka record archived once, none missing).
pub fn archived_copy(store: &LogStore, topic: &str, on_kafka: i64) -> Vec<ArchivedRecord> {
    let mut copy = Vec::new();
    let mut next_offset: HashMap<(i32, u32), i64> = HashMap::new();
    let mut cursor = None;
    loop {
        let page = store
            .records(topic, None, 0, 500, cursor.as_deref())
            .unwrap();
        for record in page.items {
            let next = next_offset
                .entry((record.key.partition, record.key.epoch))
                .or_default();
            assert_eq!(
                record.key.offset, *next,
                "no gap, no repeat: {}",
                record.key
            );
            *next += 1;
            copy.push(record);
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => {
                assert_eq!(
                    copy.len() as i64,
                    on_kafka,
                    "every offset of the topic archived"
                );
                return copy;
            }
        }
    }
}

/// The event ids of every record of `topic` in `store` (each an envelope), with how many
/// times each is there. The archive is checked to be a copy of the topic ([`archived_copy`]),
/// so the counts are Kafka's too: an id counted twice was published twice.
pub fn in_archive(store: &LogStore, topic: &str, on_kafka: i64) -> HashMap<String, usize> {
    let mut ids = HashMap::new();
    for record in archived_copy(store, topic, on_kafka) {
        assert_eq!(record.kind, RecordKind::Envelope, "{}", record.key);
        let id = record.ids.as_ref().unwrap().event_id.clone();
        *ids.entry(id).or_default() += 1;
    }
    ids
}

/// Waits until the archive holds as many records of `topic` (of `partitions`) as Kafka does.
pub async fn wait_until_archived(
    broker: &Broker,
    archive: &RunningArchive,
    topic: &str,
    partitions: i32,
) {
    eventually("the archive to catch up with Kafka", PATIENCE, || async {
        let on_kafka = messages_on(broker, topic, partitions).await;
        (archive.archived_count(topic).await? == on_kafka).then_some(())
    })
    .await;
}

/// Each acknowledged event exactly once on Kafka and in the archive (see [`in_archive`]), and
/// no event twice.
pub fn check_exactly_once(acked: &[String], archived: &HashMap<String, usize>) {
    for event_id in acked {
        assert_eq!(archived.get(event_id), Some(&1), "acked {event_id} once");
    }
    assert!(archived.values().all(|n| *n == 1), "an event twice");
}

/// `name{labels} N` summed over every series of `name` whose labels contain `label`, in a
/// Prometheus text exposition.
pub fn metric_sum(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(name) && line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
