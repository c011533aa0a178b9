//! The archive binary, stopped again and again while a generator publishes, loses nothing
//! and stores nothing twice: SIGKILLed at random moments (a crash loop), and SIGTERMed then
//! started again (a rolling restart, which must drain and exit cleanly each time).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use retrace_log_store::{LogStore, RecordKey, StoreOptions};
use retrace_proto::Envelope;
use retrace_sdk::Publisher;
use retrace_tests::{
    Broker, Generator, Resumes, ServiceProcess, Stop, archive_process, archived_count,
    create_archive_topics, eventually, free_port, next_kill_at, on_every_broker, unique_topic,
};

const KILLS: usize = 50;
const RESTARTS: usize = 20;
/// Kills land after 1 to this many newly archived records.
const KILL_SPREAD: i64 = 300;
const PATIENCE: Duration = Duration::from_secs(120);

fn spawn_archive(
    broker: &Broker,
    topic: &str,
    data_dir: &Path,
    http: &str,
    config: &Path,
) -> ServiceProcess {
    let built = env!("CARGO_BIN_EXE_retrace-archive");
    ServiceProcess::spawn(
        // Authentication is not what this test is about: `[auth] enabled = false`. Tests of
        // one binary share a Kafka node; each archive in a group of its own.
        archive_process(built, broker, topic, data_dir, http, config)
            .env("RETRACE_ARCHIVE_GROUP", format!("{topic}-archive")),
    )
}

/// Stops the archive `stops` times the way `stop` says while a generator publishes, then
/// checks the store: every acknowledged event exactly once, no offset missing, no record
/// beyond those in Kafka, indexes consistent.
async fn archive_stopped_in_a_loop(broker: Broker, stop: Stop, stops: usize) {
    let topic = unique_topic("stream");
    broker.create_topic(&topic, 4).await;
    create_archive_topics(&broker).await;
    let settings = broker.settings();
    let publisher = Arc::new(Publisher::new(&settings).unwrap());
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "[auth]\nenabled = false\n\n[archive]\nshutdown_grace_ms = 10000\n",
    )
    .unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    // At most ~200 events/s: the archive, restarted 50 times, must not fall behind by more
    // than the mock cluster keeps (5 MB a partition), or the oldest records would be gone.
    let generator = Generator::start(2, Duration::from_millis(10), {
        let topic = topic.clone();
        move |n| {
            let (publisher, topic) = (Arc::clone(&publisher), topic.clone());
            async move {
                let event = Envelope::root("crash-test", "stream.event.v1")
                    .with_subject(format!("beneficiary:{n}"));
                let delivered = publisher.publish(&topic, &event).await;
                delivered.ok().map(|_| event.event_id)
            }
        }
    });

    // From each restart's spawn to the first record the new process archived itself (the
    // first process joins a new group: not a restart).
    let mut resumes = Resumes::new(&broker);
    for restart in 0..stops {
        let spawned = Instant::now();
        let archive = spawn_archive(&broker, &topic, data.path(), &http, config.path());
        // Counted from what this process reports first, so that it is stopped only once
        // it has archived something itself (it is running, its signal handler installed).
        let first = eventually("the archive's API to answer", PATIENCE, || {
            archived_count(&http, None, &topic)
        })
        .await;
        eventually("the new process to archive a record", PATIENCE, || async {
            (archived_count(&http, None, &topic).await? > first).then_some(())
        })
        .await;
        if restart > 0 {
            resumes.record(restart, spawned.elapsed());
        }
        let stop_at = next_kill_at(first, KILL_SPREAD);
        eventually(&format!("{stop_at} records archived"), PATIENCE, || async {
            (archived_count(&http, None, &topic).await? >= stop_at).then_some(())
        })
        .await;
        archive.stop(stop);
    }

    let acknowledged = generator.finish().await;
    let archive = spawn_archive(&broker, &topic, data.path(), &http, config.path());
    let total = acknowledged.len() as i64;
    eventually("the whole stream archived", PATIENCE, || async {
        (archived_count(&http, None, &topic).await? == total).then_some(())
    })
    .await;
    archive.stop(Stop::Terminate);

    let store = LogStore::open(data.path(), &StoreOptions::default()).unwrap();
    for position in store.positions().unwrap() {
        let missing: Vec<i64> = (0..position.next_offset)
            .filter(|offset| {
                let key = RecordKey {
                    topic: position.topic.clone(),
                    partition: position.partition,
                    epoch: 0,
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
    for event_id in &acknowledged {
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
        "no record beyond the acknowledged ones"
    );
    println!(
        "archive {stop:?} loop: stops={stops} events={total} lost=0 duplicates=0 {resumes} on {}",
        broker.name()
    );
}

async fn sigkilled_archive_loses_nothing_and_stores_nothing_twice(broker: Broker) {
    archive_stopped_in_a_loop(broker, Stop::Kill, KILLS).await;
}

async fn rolling_restarts_of_the_archive_lose_nothing_and_double_nothing(broker: Broker) {
    archive_stopped_in_a_loop(broker, Stop::Terminate, RESTARTS).await;
}

on_every_broker!(
    sigkilled_archive_loses_nothing_and_stores_nothing_twice,
    rolling_restarts_of_the_archive_lose_nothing_and_double_nothing
);
