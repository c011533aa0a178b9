//! The archive's data directory on a small filesystem that fills up: ingestion pauses with a
//! clear error and a metric before the disk is full, no Kafka offset is committed past what
//! is stored, and once space is freed it resumes by itself, losing and doubling nothing.
//! Needs a tmpfs mount (root, a container that allows it); skipped with a message otherwise.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use retrace_archive::TopicSelection;
use retrace_log_store::{LogStore, StoreOptions};
use retrace_proto::Envelope;
use retrace_sdk::Publisher;
use retrace_tests::{
    Broker, PATIENCE, Position, RunningArchive, SmallFilesystem, committed_offsets, eventually,
    metric_sum, on_every_broker, unique_topic,
};

const FILESYSTEM: u64 = 64 << 20;
const RESERVE: u64 = 8 << 20;
/// Room left above the reserve once the ballast is written: far less than the events take.
const HEADROOM: u64 = 2 << 20;
const EVENTS: usize = 4000;
const PARTITIONS: i32 = 2;

/// The archive's stored positions of `topic`.
async fn positions(archive: &RunningArchive, topic: &str) -> Vec<Position> {
    let positions: Vec<Position> = reqwest::get(archive.url("/v1/positions"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    positions.into_iter().filter(|p| p.topic == topic).collect()
}

/// One scenario at a time: the paused gauge is the process', and the mock and Apache Kafka
/// copies run in one process.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn full_disk_pauses_ingestion_and_resumes_once_space_is_freed(broker: Broker) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(filesystem) = SmallFilesystem::mount(FILESYSTEM) else {
        return;
    };
    let topic = unique_topic("disk");
    let group = unique_topic("disk-archive");
    broker.create_topic(&topic, PARTITIONS).await;
    let data_dir = filesystem.path().join("archive");
    let archive = RunningArchive::start_with(&broker, |config| {
        config.group_id = group.clone();
        config.data_dir = data_dir.clone();
        config.topics = TopicSelection::Names(vec![topic.clone()]);
        config.store.memtable_bytes = 1 << 20;
        config.store.disk_reserve_bytes = RESERVE;
        config.lag_check = Duration::from_millis(200);
    })
    .await;

    let ballast_path = filesystem.path().join("ballast");
    let ballast_bytes = filesystem.free_bytes() - RESERVE - HEADROOM;
    let mut ballast = std::fs::File::create(&ballast_path).unwrap();
    let block = vec![0xA5u8; 1 << 20];
    let mut written = 0;
    while written < ballast_bytes {
        let n = block.len().min((ballast_bytes - written) as usize);
        ballast.write_all(&block[..n]).unwrap();
        written += n as u64;
    }
    drop(ballast);

    let publisher = Arc::new(Publisher::new(&broker.settings()).unwrap());
    let payload = vec![b'x'; 2048];
    let events: Vec<Envelope> = (0..EVENTS)
        .map(|i| {
            Envelope::root("disk-test", "stream.event.v1")
                .with_subject(format!("beneficiary:{i}"))
                .with_payload("application/octet-stream", payload.clone())
        })
        .collect();
    for delivery in join_all(events.iter().map(|e| publisher.publish(&topic, e))).await {
        delivery.unwrap();
    }

    let metrics = eventually("ingestion paused for lack of space", PATIENCE, || async {
        let metrics = archive.metrics().await;
        let paused = metrics.lines().any(|l| l == "retrace_archive_paused 1");
        let counted = metric_sum(
            &metrics,
            "retrace_archive_store_errors_total",
            "reason=\"disk_full\"",
        ) > 0.0;
        (paused && counted).then_some(metrics)
    })
    .await;
    let stored = positions(&archive, &topic).await;
    let stored_total: i64 = stored.iter().map(|p| p.next_offset).sum();
    assert!(
        stored_total < EVENTS as i64,
        "the archive stored everything ({stored_total}) on a full disk; metrics:\n{metrics}"
    );
    for (partition, committed) in committed_offsets(&broker, &group, &topic, PARTITIONS) {
        let position = stored
            .iter()
            .find(|p| p.partition == partition)
            .map_or(0, |p| p.next_offset);
        assert!(
            committed.unwrap_or(0) <= position,
            "partition {partition}: Kafka offset {committed:?} committed past the stored \
             position {position}"
        );
    }

    // It says how far behind it is, since when, and that answers may lack what it has not
    // archived: a transaction it has not read is "not found, but the archive is behind".
    eventually("the archive to say it is behind", PATIENCE, || async {
        let positions = positions(&archive, &topic).await;
        let lag: i64 = positions.iter().filter_map(|p| p.lag).sum();
        let behind = positions.iter().any(|p| p.behind_since.is_some());
        (behind && lag == EVENTS as i64 - stored_total).then_some(())
    })
    .await;
    let mut unarchived = None;
    for event in events.iter().rev() {
        let (status, body) = get_json(
            &archive,
            &format!("/v1/transactions/{}", event.transaction_id),
        )
        .await;
        if status == 404 {
            unarchived = Some((event, body));
            break;
        }
    }
    let (unarchived, not_found) = unarchived.expect("an event the full disk kept out");
    let error = not_found["error"].as_str().unwrap();
    assert!(
        error.contains("the archive is") && error.contains(&format!("behind on {topic}/")),
        "a 404 while behind says so: {error}"
    );
    assert!(
        !not_found["behind"].as_array().unwrap().is_empty(),
        "{not_found}"
    );

    std::fs::remove_file(&ballast_path).unwrap();
    archive.wait_for_records(&topic, EVENTS as i64).await;
    eventually("the archive caught up", PATIENCE, || async {
        positions(&archive, &topic)
            .await
            .iter()
            .all(|p| p.lag == Some(0) && p.behind_since.is_none())
            .then_some(())
    })
    .await;
    let (status, trace) = get_json(
        &archive,
        &format!("/v1/transactions/{}", unarchived.transaction_id),
    )
    .await;
    assert_eq!(status, 200, "{trace}");
    assert!(trace.get("behind").is_none(), "caught up: {trace}");
    eventually("ingestion resumed", PATIENCE, || async {
        let metrics = archive.metrics().await;
        metrics
            .lines()
            .any(|l| l == "retrace_archive_paused 0")
            .then_some(())
    })
    .await;
    // Everything stored is committed in the end, in the group the checks above read.
    eventually("every stored record committed", PATIENCE, || async {
        let committed: i64 = committed_offsets(&broker, &group, &topic, PARTITIONS)
            .iter()
            .filter_map(|(_, next)| *next)
            .sum();
        (committed == EVENTS as i64).then_some(())
    })
    .await;
    let _closed = archive.shut_down().await;
    let store = LogStore::open(&data_dir, &StoreOptions::default()).unwrap();
    for event in &events {
        assert_eq!(
            store.event(&event.event_id).unwrap().len(),
            1,
            "event {} stored once",
            event.event_id
        );
    }
    let report = store.check_consistency().unwrap();
    assert_eq!(report.problems, Vec::<String>::new());
    // Besides the topic's records, the archive holds the audit events it published itself.
    let on_topic: i64 = store
        .positions()
        .unwrap()
        .iter()
        .filter(|p| p.topic == topic)
        .map(|p| p.next_offset)
        .sum();
    assert_eq!(on_topic, EVENTS as i64);
    println!(
        "disk full on {}: paused at {stored_total} of {EVENTS} records, resumed, lost=0 \
         duplicates=0",
        broker.name()
    );
}

async fn get_json(archive: &RunningArchive, path: &str) -> (u16, serde_json::Value) {
    let response = reqwest::get(archive.url(path)).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

on_every_broker!(full_disk_pauses_ingestion_and_resumes_once_space_is_freed);
