//! Archive replicas from the CLI, on librdkafka's mock cluster: `retrace archive compare`
//! finds two archives of one cluster equal, and names the partition and offset where an
//! archive of a cluster whose log differs parts from them; `--server` listing a server
//! nobody runs before one that answers still works.

mod common;

use std::time::Duration;

use common::{assert_exit, retrace};
use rdkafka::producer::{FutureProducer, FutureRecord};
use retrace_tests::{Broker, RunningArchive, free_port, start_archive, unique_topic};

/// Kafka timestamps set by the test, so the same records produced to two clusters are the
/// same records.
const TIMESTAMP_MS: i64 = 1_767_225_600_000;

/// Produces `values[i]` to `partition` of `topic` at offset `i`, each with a fixed key,
/// header and timestamp.
async fn produce(broker: &Broker, topic: &str, partition: i32, values: &[String]) {
    let producer: FutureProducer = broker.client_config().create().unwrap();
    for (at, value) in values.iter().enumerate() {
        let key = format!("key-{at}");
        let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
            key: "source",
            value: Some("census"),
        });
        let record = FutureRecord::to(topic)
            .partition(partition)
            .key(&key)
            .payload(value)
            .headers(headers)
            .timestamp(TIMESTAMP_MS + at as i64);
        producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(error, _)| error)
            .unwrap();
    }
}

fn values(partition: i32, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!(r#"{{"household": {partition}{i}}}"#))
        .collect()
}

async fn archive_of(broker: &Broker, topic: &str, records: usize) -> RunningArchive {
    let archive = start_archive(broker).await;
    archive.wait_for_records(topic, records as i64).await;
    archive
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_of_one_log_compare_equal_and_a_differing_log_is_named_at_its_offset() {
    let topic = unique_topic("census");
    let (cluster, other_cluster) = (Broker::mock(), Broker::mock());
    for broker in [&cluster, &other_cluster] {
        broker.create_topic(&topic, 2).await;
    }
    produce(&cluster, &topic, 0, &values(0, 5)).await;
    produce(&cluster, &topic, 1, &values(1, 5)).await;
    // The other cluster's log: two records more on partition 0, which its archive holds
    // beyond the others, and a different record at offset 3 of partition 1.
    produce(&other_cluster, &topic, 0, &values(0, 7)).await;
    let mut changed = values(1, 5);
    changed[3] = r#"{"household": 99}"#.to_owned();
    produce(&other_cluster, &topic, 1, &changed).await;

    let (one, replica, diverged) = tokio::join!(
        archive_of(&cluster, &topic, 10),
        archive_of(&cluster, &topic, 10),
        archive_of(&other_cluster, &topic, 12),
    );
    let (one, replica, diverged) = (one.url(""), replica.url(""), diverged.url(""));
    let nowhere = format!("http://127.0.0.1:{}", free_port());

    let equal = retrace(&nowhere, &["archive", "compare", &one, &replica]).await;
    println!(
        "$ retrace archive compare {one} {replica}\n{}",
        equal.stdout
    );
    assert_exit(&equal, 0);
    for partition in [0, 1] {
        let line = format!("{topic}/{partition}: 5 records equal (offsets below 5)\n");
        assert!(
            equal.stdout.contains(&line),
            "{line:?} in\n{}",
            equal.stdout
        );
    }
    let last = equal.stdout.lines().last().unwrap();
    assert!(
        last.ends_with(&format!("partitions: {one} and {replica} hold the same")),
        "{last}"
    );

    let differ = retrace(&nowhere, &["archive", "compare", &one, &diverged]).await;
    println!(
        "$ retrace archive compare {one} {diverged}\n{}{}",
        differ.stdout, differ.stderr
    );
    assert_exit(&differ, 1);
    assert!(
        differ.stdout.contains(&format!(
            "{topic}/0: 5 records equal (offsets below 5)\n{topic}/1: differs at offset 3\n"
        )),
        "{}",
        differ.stdout
    );
    assert!(
        differ.stderr.starts_with(&format!(
            "retrace: {topic}/1 at offset 3 differs: {one} and {diverged} hold different \
             records there"
        )),
        "{}",
        differ.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_list_moves_past_a_server_that_is_down() {
    let broker = Broker::mock();
    let archive = start_archive(&broker).await;
    let down = format!("http://127.0.0.1:{}", free_port());
    let servers = format!("{down},{}", archive.url(""));

    let listed = retrace(&servers, &["failed", "--since", "1h"]).await;
    assert_exit(&listed, 0);
    assert!(
        listed.stdout.starts_with("no failed transactions since"),
        "{}",
        listed.stdout
    );

    let also_down = format!("http://127.0.0.1:{}", free_port());
    let unreachable = retrace(&format!("{down},{also_down}"), &["failed"]).await;
    assert_exit(&unreachable, 3);
    assert!(
        unreachable.stderr.starts_with(&format!(
            "retrace: cannot reach any of the Retrace servers: {down} (connection refused), \
             {also_down} (connection refused)."
        )),
        "{}",
        unreachable.stderr
    );
}
