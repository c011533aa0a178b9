//! The Rust SDK (`services/sdk`) against `proto/testdata/partitions.json`, the placement every
//! SDK must reproduce: its 10,000 transaction ids published through the SDK's own `Publisher`
//! (its `PRODUCER_DEFAULTS`, `partitioner=murmur2_random`) to 3- and 12-partition topics of
//! Apache Kafka, each where the file says. The other SDKs do the same in their own suites
//! (`sdks/typescript/test/partitions.test.ts`, `sdks/python/tests/test_partitions.py`,
//! `sdks/java/.../KafkaTest.java`), so all four put a transaction's events on one partition.
//! (`sdk_python.rs` checks librdkafka's `murmur2_random` itself and the Rust SDK's bytes and
//! headers against `vectors.json`; `interop.rs` compares the `Publisher` with Java's producer.)

use futures::StreamExt as _;
use retrace_proto::Envelope;
use retrace_sdk::Publisher;
use retrace_tests::{Broker, repo, unique_topic};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_puts_every_id_of_partitions_json_where_the_file_says() {
    let path = repo().join("proto/testdata/partitions.json");
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let counts: Vec<i64> = file["partition_counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_i64().unwrap())
        .collect();
    let rows: Vec<(String, Vec<i64>)> = file["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let row = row.as_array().unwrap();
            let partitions = row[1..].iter().map(|p| p.as_i64().unwrap()).collect();
            (row[0].as_str().unwrap().to_owned(), partitions)
        })
        .collect();
    assert_eq!(rows.len(), 10_000);

    let broker = Broker::real();
    let publisher = Publisher::new(&broker.settings()).unwrap();
    for count in [3, 12] {
        let column = counts.iter().position(|&n| n == count).unwrap();
        let topic = unique_topic(&format!("sdk-rust-partitions-{count}"));
        broker.create_topic(&topic, count as i32).await;
        let wrong: Vec<String> = futures::stream::iter(&rows)
            .map(|(id, partitions)| {
                let (publisher, topic) = (&publisher, &topic);
                async move {
                    let mut envelope = Envelope::root("partitions", "partitions.placed.v1");
                    envelope.transaction_id = id.clone();
                    let delivery = publisher
                        .publish(topic, &envelope)
                        .await
                        .unwrap_or_else(|error| panic!("{id:?} not published: {error}"));
                    (i64::from(delivery.partition) != partitions[column]).then(|| {
                        format!("{id:?}: {}, not {}", delivery.partition, partitions[column])
                    })
                }
            })
            .buffer_unordered(1_000)
            .filter_map(|wrong| async move { wrong })
            .collect()
            .await;
        assert!(
            wrong.is_empty(),
            "{} of 10,000 ids on another partition of {count} than proto/testdata/partitions.json \
             says, e.g. {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(5)]
        );
    }
}
