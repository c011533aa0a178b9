//! `retrace archive split` on an archive written through the log store's API: a stopped
//! shard splits into the two shards that take its partitions, the summary says what each
//! holds, and each holds it; a target that holds files, a running shard and a malformed
//! `--shard` are refused as usage errors (exit 2) naming what to fix.

mod common;

use std::path::Path;

use common::{assert_exit, retrace};
use retrace_log_store::{
    ArchivedRecord, AuditEntry, EventIds, LogStore, PreparedRecord, RecordKey, RecordKind,
    StoreOptions,
};

/// No server is asked: the split is offline.
const NO_SERVER: &str = "http://127.0.0.1:9";

fn record(topic: &str, partition: i32, offset: i64) -> ArchivedRecord {
    ArchivedRecord {
        key: RecordKey {
            topic: topic.into(),
            partition,
            epoch: 0,
            offset,
        },
        message_key: None,
        value: Some(format!("payload {partition}-{offset}").into_bytes()),
        headers: Vec::new(),
        kafka_timestamp_ms: Some(1_000 + offset),
        time_ms: 1_000 + offset,
        kind: RecordKind::Envelope,
        problem: None,
        ids: Some(EventIds {
            event_id: format!("ev-{partition}-{offset}"),
            transaction_id: format!("tx-{partition}"),
            subject_ids: vec!["beneficiary:7".into()],
            ..EventIds::default()
        }),
        outcome: None,
        archived_at_ms: 2_000,
        erased_at_ms: None,
        audit: None,
    }
}

/// An unsharded archive (shard 0/1): three records on each of registrations 0, 1 and 2,
/// and one audit record.
fn shard_0_of_1(path: &Path) {
    let store = LogStore::open(path, &StoreOptions::default()).unwrap();
    let mut records: Vec<ArchivedRecord> = (0..3)
        .flat_map(|p| (0..3).map(move |o| record("registrations", p, o)))
        .collect();
    records.push(ArchivedRecord {
        kind: RecordKind::Audit,
        ids: None,
        audit: Some(AuditEntry {
            actor: "ana".into(),
            action: "replay".into(),
            ..AuditEntry::default()
        }),
        ..record(retrace_proto::AUDIT_TOPIC, 0, 0)
    });
    let prepared: Vec<PreparedRecord> = records
        .into_iter()
        .map(|r| PreparedRecord::new(r).map_err(|(e, _)| e).unwrap())
        .collect();
    store.append(&prepared).unwrap();
}

fn paths(dir: &tempfile::TempDir) -> [String; 3] {
    ["old", "low", "high"].map(|name| dir.path().join(name).display().to_string())
}

#[tokio::test]
async fn a_shard_splits_into_two_that_hold_its_partitions_and_the_audit_topic() {
    let dir = tempfile::tempdir().unwrap();
    let [old, low, high] = paths(&dir);
    shard_0_of_1(Path::new(&old));

    let args = [
        "archive",
        "split",
        "--data-dir",
        &old,
        "--shard",
        "0/1",
        "--low",
        &low,
        "--high",
        &high,
    ];
    let split = retrace(NO_SERVER, &args).await;

    assert_exit(&split, 0);
    assert_eq!(
        split.stdout,
        format!(
            "split shard 0/1 ({old}) into two:\n\
             \x20 shard 0/2 in {low}: 7 records, 2 partitions\n\
             \x20   registrations: 0, 2\n\
             \x20   whole, as on every shard: retrace.audit\n\
             \x20 shard 1/2 in {high}: 4 records, 1 partition\n\
             \x20   registrations: 1\n\
             \x20   whole, as on every shard: retrace.audit\n\
             start shards 0/2 and 1/2 on these directories, and give every shard the new \
             shard map; keep {old} until both answer\n"
        )
    );
    let open = |path: &str| LogStore::open(path, &StoreOptions::default()).unwrap();
    let (low, high) = (open(&low), open(&high));
    assert_eq!(low.next_offset("registrations", 2), Some(3));
    assert_eq!(low.next_offset("registrations", 1), None);
    assert_eq!(high.next_offset("registrations", 1), Some(3));
    let old = open(&old);
    for shard in [&low, &high] {
        assert_eq!(
            shard
                .partition_digest(retrace_proto::AUDIT_TOPIC, 0, 1)
                .unwrap(),
            old.partition_digest(retrace_proto::AUDIT_TOPIC, 0, 1)
                .unwrap()
        );
        assert_eq!(shard.verify_audit().unwrap().records, 1);
    }
}

#[tokio::test]
async fn a_full_target_a_running_shard_and_a_malformed_shard_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let [old, low, high] = paths(&dir);
    shard_0_of_1(Path::new(&old));
    let split = |shard: &'static str| {
        let (old, low, high) = (old.clone(), low.clone(), high.clone());
        async move {
            let args = [
                "archive",
                "split",
                "--data-dir",
                &old,
                "--shard",
                shard,
                "--low",
                &low,
                "--high",
                &high,
            ];
            retrace(NO_SERVER, &args).await
        }
    };

    std::fs::create_dir(&high).unwrap();
    std::fs::write(Path::new(&high).join("notes.txt"), b"mine").unwrap();
    let full = split("0/1").await;
    assert_exit(&full, 2);
    assert!(full.stderr.contains(&high), "{full:#?}");
    assert!(
        full.stderr.contains("new or empty directories"),
        "{full:#?}"
    );
    std::fs::remove_file(Path::new(&high).join("notes.txt")).unwrap();

    let running = LogStore::open(&old, &StoreOptions::default()).unwrap();
    let refused = split("0/1").await;
    assert_exit(&refused, 2);
    assert!(
        refused.stderr.contains("stop shard 0/1 first"),
        "{refused:#?}"
    );
    drop(running);

    let malformed = split("1/1").await;
    assert_exit(&malformed, 2);
    assert!(
        malformed.stderr.contains("is not a shard"),
        "{malformed:#?}"
    );
    assert!(!Path::new(&low).exists());
}
