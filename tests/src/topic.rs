//! Reading a topic back, to check what a scenario expects is on Kafka.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Offset, TopicPartitionList};

use crate::{Broker, PATIENCE, unique_topic};

/// Reads `count` messages of `topic` from the beginning of its `partitions`.
pub async fn read_topic(
    broker: &Broker,
    topic: &str,
    partitions: i32,
    count: usize,
) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer = broker
        .client_config()
        .set("group.id", unique_topic("gateway-test-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut messages = Vec::new();
    while messages.len() < count {
        let message = tokio::time::timeout(PATIENCE, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} messages on {topic}", messages.len()))
            .unwrap();
        messages.push(message.detach());
    }
    messages
}

/// How many messages `topic` holds: the sum of its partitions' high watermarks.
pub async fn messages_on(broker: &Broker, topic: &str, partitions: i32) -> i64 {
    let consumer: StreamConsumer = broker
        .client_config()
        .set("group.id", unique_topic("gateway-test-counter"))
        .create()
        .unwrap();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        (0..partitions)
            .map(|partition| {
                let (low, high) = consumer
                    .fetch_watermarks(&topic, partition, Duration::from_secs(30))
                    .unwrap();
                assert_eq!(low, 0);
                high
            })
            .sum()
    })
    .await
    .unwrap()
}

/// What consumer group `group` has committed for each of `topic`'s `partitions`: the next
/// offset it will read, or `None` where it committed nothing.
pub fn committed_offsets(
    broker: &Broker,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<(i32, Option<i64>)> {
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", group)
        .create()
        .unwrap();
    let mut wanted = TopicPartitionList::new();
    for partition in 0..partitions {
        wanted.add_partition(topic, partition);
    }
    consumer
        .committed_offsets(wanted, Duration::from_secs(10))
        .expect("the broker answers OffsetFetch")
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(next) => (e.partition(), Some(next)),
            _ => (e.partition(), None),
        })
        .collect()
}
