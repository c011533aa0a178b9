//! Backup, restore and rebuild end to end: an archive backed up while it ingests, killed,
//! restored from the backup and resumed (or its gap rebuilt from Kafka) ends up equal,
//! record for record and index for index, to an archive that ran without interruption over
//! the same topic.

use std::collections::BTreeSet;

use retrace_api::BackupManifest;
use retrace_archive::{ArchiveConfig, RebuildProgress, TopicSelection};
use retrace_log_store::{ArchivedRecord, LogStore, StoreOptions};
use retrace_proto::Envelope;
use retrace_sdk::Publisher;
use retrace_tests::{Broker, RunningArchive, on_every_broker, unique_topic};

const BENEFICIARIES: usize = 5;

/// Publishes transactions `range`, two events each (a root and the event it caused), each
/// about one of five beneficiaries; answers their transaction and event ids.
async fn publish(
    publisher: &Publisher,
    topic: &str,
    range: std::ops::Range<usize>,
) -> Vec<(String, [String; 2])> {
    let mut published = Vec::new();
    for n in range {
        let submitted = Envelope::root("registration", "registration.submitted.v1")
            .with_subject(format!("beneficiary:{}", n % BENEFICIARIES))
            .with_payload("application/json", format!(r#"{{"n":{n}}}"#).into_bytes());
        let checked = Envelope::caused_by(&submitted, "registration", "registration.checked.v1");
        publisher.publish(topic, &submitted).await.unwrap();
        publisher.publish(topic, &checked).await.unwrap();
        published.push((
            submitted.transaction_id.clone(),
            [submitted.event_id.clone(), checked.event_id.clone()],
        ));
    }
    published
}

async fn archive_of(
    broker: &Broker,
    topic: &str,
    data_dir: Option<&std::path::Path>,
) -> RunningArchive {
    let topic = topic.to_owned();
    let data_dir = data_dir.map(std::path::Path::to_path_buf);
    RunningArchive::start_with(broker, move |config| {
        config.topics = TopicSelection::Names(vec![topic]);
        config.group_id = unique_topic("archive-group");
        if let Some(dir) = data_dir {
            config.data_dir = dir;
        }
    })
    .await
}

/// `POST /v1/admin/backups` into `dir`.
async fn back_up(archive: &RunningArchive, dir: &std::path::Path) -> BackupManifest {
    let response = reqwest::Client::new()
        .post(archive.url("/v1/admin/backups"))
        .json(&serde_json::json!({ "directory": dir }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

/// Every record of `topic`, without the moment it was archived (which differs between two
/// archives of the same messages).
fn records(store: &LogStore, topic: &str) -> Vec<ArchivedRecord> {
    let page = store.records(topic, None, 0, 100_000, None).unwrap();
    assert!(page.next_cursor.is_none());
    page.items
        .into_iter()
        .map(|record| ArchivedRecord {
            archived_at_ms: 0,
            ..record
        })
        .collect()
}

/// What the indexes answer: each transaction's trace, each event's copies, each subject's
/// transactions.
fn indexes(
    store: &LogStore,
    published: &[(String, [String; 2])],
) -> (Vec<Vec<String>>, Vec<usize>, Vec<BTreeSet<String>>) {
    let keys = |records: Vec<ArchivedRecord>| records.iter().map(|r| r.key.to_string()).collect();
    let traces = published
        .iter()
        .map(|(transaction, _)| keys(store.transaction(transaction).unwrap()))
        .collect();
    let events = published
        .iter()
        .flat_map(|(_, events)| events.iter())
        .map(|event| store.event(event).unwrap().len())
        .collect();
    let subjects = (0..BENEFICIARIES)
        .map(|b| {
            let page = store
                .subject_transactions(&format!("beneficiary:{b}"), (0, i64::MAX), 10_000, None)
                .unwrap();
            page.items.into_iter().map(|t| t.transaction_id).collect()
        })
        .collect();
    (traces, events, subjects)
}

async fn a_restored_backup_resumes_into_the_archive_an_uninterrupted_run_builds(broker: Broker) {
    let topic = unique_topic("backup");
    broker.create_topic(&topic, 2).await;
    let publisher = Publisher::new(&broker.settings()).unwrap();
    let mut published = publish(&publisher, &topic, 0..20).await;

    let archive = archive_of(&broker, &topic, None).await;
    archive.wait_for_records(&topic, 40).await;
    let backups = tempfile::tempdir().unwrap();
    let backup_dir = backups.path().join("mid-stream");
    let (more, manifest) = tokio::join!(
        // Ingestion goes on while the backup is taken.
        publish(&publisher, &topic, 20..40),
        back_up(&archive, &backup_dir),
    );
    published.extend(more);
    assert!(manifest.records >= 40, "{manifest:?}");
    let backed_up: i64 = manifest.positions.iter().map(|p| p.next_offset).sum();
    assert_eq!(backed_up as u64, manifest.records);
    archive.wait_for_records(&topic, 80).await;
    // Killed: whatever it held after the backup is gone with it.
    drop(archive);
    published.extend(publish(&publisher, &topic, 40..50).await);

    let restored_dir = backups.path().join("restored");
    let restored = retrace_archive::restore(&backup_dir, &restored_dir, false).unwrap();
    assert_eq!(restored, manifest);
    let resumed = archive_of(&broker, &topic, Some(&restored_dir)).await;
    resumed.wait_for_records(&topic, 100).await;
    resumed.shut_down().await;
    let resumed = LogStore::open(&restored_dir, &StoreOptions::default()).unwrap();

    let uninterrupted = archive_of(&broker, &topic, None).await;
    uninterrupted.wait_for_records(&topic, 100).await;
    let (uninterrupted, _dir) = uninterrupted.stop().await;

    // Besides the topic, the archive holds the audit events it published itself.
    assert_eq!(records(&resumed, &topic).len(), 100);
    assert_eq!(records(&resumed, &topic), records(&uninterrupted, &topic));
    assert_eq!(
        indexes(&resumed, &published),
        indexes(&uninterrupted, &published)
    );
    let (traces, events, _) = indexes(&resumed, &published);
    assert!(traces.iter().all(|trace| trace.len() == 2), "{traces:?}");
    assert!(events.iter().all(|copies| *copies == 1), "{events:?}");
    assert!(resumed.check_consistency().unwrap().problems.is_empty());
}

/// The archive of `topic` with `backup_dir` restored into it, then filled from Kafka by
/// `rebuild`: the progress it reported, and what it did.
fn restore_and_rebuild(
    broker: &Broker,
    topic: &str,
    backup_dir: &std::path::Path,
    data_dir: &std::path::Path,
) -> (Vec<RebuildProgress>, RebuildProgress) {
    retrace_archive::restore(backup_dir, data_dir, false).unwrap();
    let mut config = ArchiveConfig::new(broker.bootstrap(), data_dir);
    config.topics = TopicSelection::Names(vec![topic.to_owned()]);
    config.batch.max_records = 7;
    let mut reported = Vec::new();
    let done = retrace_archive::rebuild(&config, None, |p| reported.push(p)).unwrap();
    let again = retrace_archive::rebuild(&config, None, |_| {}).unwrap();
    assert_eq!(
        again,
        RebuildProgress::default(),
        "a second rebuild finds nothing to do"
    );
    (reported, done)
}

async fn a_gap_is_rebuilt_from_kafka_into_the_archive_an_uninterrupted_run_builds(broker: Broker) {
    let topic = unique_topic("rebuild");
    broker.create_topic(&topic, 2).await;
    let publisher = Publisher::new(&broker.settings()).unwrap();
    let mut published = publish(&publisher, &topic, 0..10).await;
    let archive = archive_of(&broker, &topic, None).await;
    archive.wait_for_records(&topic, 20).await;
    let dir = tempfile::tempdir().unwrap();
    let backup_dir = dir.path().join("backup");
    back_up(&archive, &backup_dir).await;
    published.extend(publish(&publisher, &topic, 10..25).await);
    archive.wait_for_records(&topic, 50).await;
    drop(archive);

    let data_dir = dir.path().join("rebuilt");
    let (reported, done) = tokio::task::block_in_place(|| {
        restore_and_rebuild(&broker, &topic, &backup_dir, &data_dir)
    });
    assert_eq!(
        (done.read, done.total, done.appended),
        (30, 30, 30),
        "{done:?}"
    );
    assert_eq!(reported.first().map(|p| p.read), Some(0));
    assert_eq!(reported.last(), Some(&done));
    assert!(
        reported.len() >= 5,
        "progress after every batch of 7: {reported:?}"
    );
    let rebuilt = LogStore::open(&data_dir, &StoreOptions::default()).unwrap();

    let uninterrupted = archive_of(&broker, &topic, None).await;
    uninterrupted.wait_for_records(&topic, 50).await;
    let (uninterrupted, _dir) = uninterrupted.stop().await;
    assert_eq!(rebuilt.record_count(), 50);
    assert_eq!(records(&rebuilt, &topic), records(&uninterrupted, &topic));
    assert_eq!(
        indexes(&rebuilt, &published),
        indexes(&uninterrupted, &published)
    );
}

on_every_broker!(
    a_restored_backup_resumes_into_the_archive_an_uninterrupted_run_builds,
    a_gap_is_rebuilt_from_kafka_into_the_archive_an_uninterrupted_run_builds,
);
