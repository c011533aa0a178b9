//! The Python SDK (`sdks/python`) in the workspace's test command: its pytest suite run against
//! the Apache Kafka node this test binary shares (`RETRACE_TEST_KAFKA_BOOTSTRAP`), and the
//! shared test vectors (`proto/testdata/vectors.json`) checked against what the Rust SDK
//! really sends, so the file the other SDKs test themselves against is the Rust SDK's
//! behaviour, not only `proto/tests/vectors.rs`'s. Where the Rust SDK puts each id of
//! `partitions.json` is `sdk_rust.rs`'s.
//!
//! The SDK's virtualenv (`sdks/python/.venv`, with the SDK installed editable) is made by
//! `tests/setup`.

use prost::Message as _;
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use retrace_proto::{Envelope, Outcome};
use retrace_sdk::{Delivery, Publisher, QueueTopics, enqueue};
use retrace_tests::{Broker, PATIENCE, assert_not_checked_in, repo, unique_topic};
use serde_json::Value;

fn testdata(name: &str) -> Value {
    let path = repo().join("proto/testdata").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdks_tests_pass_against_apache_kafka() {
    let sdk = repo().join("sdks/python");
    let python = sdk.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `tests/setup` (it makes the Python SDK's virtualenv and installs \
         the SDK and pytest into it)",
        python.display()
    );
    let broker = Broker::real();
    let output = tokio::process::Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "--color=no"])
        .current_dir(&sdk)
        .env("RETRACE_TEST_KAFKA_BOOTSTRAP", broker.bootstrap())
        .output()
        .await
        .expect("the virtualenv's python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Python SDK's pytest failed ({}) on {}:\n{stdout}\n{stderr}",
        output.status,
        broker.bootstrap()
    );
    println!("{stdout}");
}

/// The record at `topic`/`partition`@`offset`.
async fn read_at(broker: &Broker, delivery: &Delivery) -> OwnedMessage {
    let consumer: StreamConsumer = broker
        .client_config()
        .set("group.id", unique_topic("sdk-python-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(
            &delivery.topic,
            delivery.partition,
            Offset::Offset(delivery.offset),
        )
        .unwrap();
    consumer.assign(&assignment).unwrap();
    tokio::time::timeout(PATIENCE, consumer.recv())
        .await
        .unwrap_or_else(|_| panic!("no record at {delivery:?}"))
        .unwrap()
        .detach()
}

fn text(value: &Value, member: &str) -> String {
    value[member]
        .as_str()
        .unwrap_or_else(|| panic!("vector member {member} is not text: {value}"))
        .to_owned()
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Every vector published by the Rust SDK (`publish`, `enqueue`, `publish_outcome`) is on
/// Kafka with exactly the vector's key, value and headers. The Python tests check the Python
/// SDK's records against the same file: the two SDKs' headers are byte-equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_sdk_publishes_every_vector_byte_for_byte() {
    let broker = Broker::real();
    let vectors = testdata("vectors.json");
    let publisher = Publisher::new(&broker.settings()).unwrap();
    let topic = unique_topic("sdk-python-vectors");
    broker.create_topic(&topic, 3).await;
    broker.create_topic(retrace_proto::OUTCOMES_TOPIC, 3).await;
    let queue = unique_topic("sdk-python-queue");
    for lane in QueueTopics::of(&queue).all() {
        broker.create_topic(lane, 1).await;
    }
    for vector in vectors["vectors"].as_array().expect("vectors") {
        let name = text(vector, "name");
        let value = unhex(&text(vector, "value_hex"));
        let delivery = match text(vector, "published_with").as_str() {
            "publish" => publisher
                .publish(&topic, &Envelope::decode(&*value).unwrap())
                .await
                .unwrap(),
            "enqueue" => {
                let delivery = enqueue(&publisher, &queue, Envelope::decode(&*value).unwrap())
                    .await
                    .unwrap();
                let lane = text(vector, "topic").replace(&text(vector, "queue"), &queue);
                assert_eq!(delivery.topic, lane, "{name}: the lane");
                delivery
            }
            "publish_outcome" => publisher
                .publish_outcome(&Outcome::decode(&*value).unwrap())
                .await
                .unwrap(),
            other => panic!("{name}: unknown published_with {other}"),
        };
        let record = read_at(&broker, &delivery).await;
        assert_eq!(
            record.key(),
            Some(text(vector, "key").as_bytes()),
            "{name}: the key"
        );
        assert_eq!(record.payload(), Some(&value[..]), "{name}: the value");
        let headers: Vec<(String, Vec<u8>)> = record
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        let expected: Vec<(String, Vec<u8>)> = vector["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| {
                let pair = pair.as_array().unwrap();
                (
                    pair[0].as_str().unwrap().to_owned(),
                    pair[1].as_str().unwrap().as_bytes().to_vec(),
                )
            })
            .collect();
        assert_eq!(
            headers, expected,
            "{name}: the Rust SDK's headers differ from proto/testdata/vectors.json"
        );
    }
}

#[test]
fn the_sdk_is_packaged_with_generated_types_only() {
    // The generated protobuf modules are build output: never checked in.
    assert_not_checked_in(
        &["sdks/python/src/retrace_sdk/_pb"],
        "generated protobuf modules",
    );
}
