//! Reading a topic back, to check what a scenario expects is on Kafka.

use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
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
