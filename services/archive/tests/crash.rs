//! The archive binary, SIGKILLed again and again while a stream flows, loses nothing and
//! stores nothing twice.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use futures::future::join_all;
use rand::Rng;
use retrace_log_store::{LogStore, RecordKey, StoreOptions};
use retrace_proto::Envelope;
use retrace_sdk::{KafkaSettings, Publisher};
use retrace_tests::{Broker, archived_count, eventually, free_port, on_every_broker, unique_topic};

const KILLS: usize = 20;
const EVENTS_PER_ROUND: usize = 400;
const PATIENCE: Duration = Duration::from_secs(120);

fn spawn_archive(
    broker: &Broker,
    topic: &str,
    data_dir: &Path,
    http: &str,
    config: &Path,
) -> Child {
    Command::new(env!("CARGO_BIN_EXE_retrace-archive"))
        // Authentication is not what this test is about: `[auth] enabled = false`.
        .env("RETRACE_CONFIG", config)
        .env("RETRACE_KAFKA_BOOTSTRAP", broker.bootstrap())
        // A killed member must leave the group quickly for the next one to get its partitions.
        .env(
            "RETRACE_KAFKA_PROPERTIES",
            "session.timeout.ms=6000,heartbeat.interval.ms=500",
        )
        .env("RETRACE_ARCHIVE_TOPICS", topic)
        // The test creates the topics it uses; librdkafka's mock cluster has no CreateTopics
        // API, and each start would wait for it to time out.
        .env("RETRACE_TOPICS_CREATE", "false")
        .env("RETRACE_ARCHIVE_BATCH_RECORDS", "100")
        .env("RETRACE_DATA_DIR", data_dir)
        .env("RETRACE_HTTP", http)
        .env("RETRACE_LOG", "warn")
        .spawn()
        .expect("the retrace-archive binary starts")
}

async fn sigkilled_archive_loses_nothing_and_stores_nothing_twice(broker: Broker) {
    let topic = unique_topic("stream");
    broker.create_topic(&topic, 4).await;
    let settings = KafkaSettings::new(broker.bootstrap())
        .with_properties(broker.producer_properties().iter().copied())
        .unwrap();
    let publisher = Publisher::new(&settings).unwrap();
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "[auth]\nenabled = false\n").unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let mut published = HashSet::new();
    let mut rng = rand::rng();

    for _ in 0..KILLS {
        let round: Vec<Envelope> = (0..EVENTS_PER_ROUND)
            .map(|i| {
                Envelope::root("crash-test", "stream.event.v1")
                    .with_subject(format!("beneficiary:{i}"))
            })
            .collect();
        for delivery in join_all(round.iter().map(|e| publisher.publish(&topic, e))).await {
            delivery.unwrap();
        }
        published.extend(round.into_iter().map(|e| e.event_id));

        let mut archive = spawn_archive(&broker, &topic, data.path(), &http, config.path());
        let total = published.len() as i64;
        let kill_at = rng.random_range(total - EVENTS_PER_ROUND as i64 + 1..=total);
        eventually(&format!("{kill_at} records archived"), PATIENCE, || async {
            (archived_count(&http, None, &topic).await? >= kill_at).then_some(())
        })
        .await;
        archive.kill().unwrap();
        archive.wait().unwrap();
    }

    let mut archive = spawn_archive(&broker, &topic, data.path(), &http, config.path());
    let total = published.len() as i64;
    eventually("the whole stream archived", PATIENCE, || async {
        (archived_count(&http, None, &topic).await? == total).then_some(())
    })
    .await;
    let terminated = Command::new("kill")
        .args(["-TERM", &archive.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    assert!(archive.wait().unwrap().success(), "SIGTERM is a clean stop");

    let store = LogStore::open(data.path(), &StoreOptions::default()).unwrap();
    for position in store.positions().unwrap() {
        let missing: Vec<i64> = (0..position.next_offset)
            .filter(|offset| {
                let key = RecordKey {
                    topic: position.topic.clone(),
                    partition: position.partition,
                    offset: *offset,
                };
                store.get(&key).unwrap().is_none()
            })
            .collect();
        assert!(
            missing.is_empty(),
            "partition {} lacks offsets {missing:?}",
            position.partition
        );
    }
    for event_id in &published {
        let copies = store.event(event_id).unwrap();
        assert_eq!(
            copies.len(),
            1,
            "event {event_id} stored {} times",
            copies.len()
        );
    }
    let report = store.check_consistency().unwrap();
    assert_eq!(report.problems, Vec::<String>::new());
    assert_eq!(
        report.records, total as u64,
        "no record beyond the published ones"
    );
}

on_every_broker!(sigkilled_archive_loses_nothing_and_stores_nothing_twice);
