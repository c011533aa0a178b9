use std::collections::BTreeSet;
use std::sync::Arc;

use super::*;
use crate::test_records::{archived, change_record, erasure_here};
use crate::{
    ArchivedRecord, AuditEntry, AuditFilter, Change, IncidentCause, IncidentRule, Mark, OutcomeRef,
    RecordKey, RecordKind, ReplayRecord, StepFailure, TransactionFailures, Watermark,
};

const CHANGES: &str = "retrace.archive.changes";
const AUDIT: &str = "retrace.audit";
const UNSHARDED: [&str; 2] = [CHANGES, AUDIT];

/// Every failure outcome whose event is archived is one failure of incident `validation`.
#[derive(Debug)]
struct EachFailure;

impl IncidentRule for EachFailure {
    fn failures(&self, _transaction: &str, records: &[ArchivedRecord]) -> TransactionFailures {
        let archived = |event: &str| {
            records
                .iter()
                .any(|r| r.ids.as_ref().is_some_and(|ids| ids.event_id == event))
        };
        let failures = records
            .iter()
            .filter_map(|record| {
                let about = record.outcome.as_ref().filter(|o| o.failed)?;
                archived(&about.event_id).then(|| StepFailure {
                    cause: IncidentCause {
                        id: "validation".into(),
                        consumer: "validation".into(),
                        ..IncidentCause::default()
                    },
                    event_id: about.event_id.clone(),
                    at_ms: record.time_ms,
                    error: "invalid".into(),
                    still_failing: true,
                    recovered_at_ms: None,
                })
            })
            .collect();
        TransactionFailures {
            subject_ids: Vec::new(),
            failures,
        }
    }
}

fn options() -> StoreOptions {
    StoreOptions {
        incidents: Some(Arc::new(EachFailure)),
        ..StoreOptions::default()
    }
}

fn open(path: &Path) -> LogStore {
    LogStore::open(path, &options()).unwrap()
}

fn key(topic: &str, partition: i32, epoch: u32, offset: i64) -> RecordKey {
    RecordKey {
        topic: topic.into(),
        partition,
        epoch,
        offset,
    }
}

/// An event of `transaction` naming `person:P` (P its partition) and `beneficiary:7`.
fn event(key: RecordKey, transaction: &str, time_ms: i64) -> ArchivedRecord {
    let mut record = archived(key.offset);
    let ids = record.ids.as_mut().unwrap();
    ids.event_id = format!("{}-{}-{}", key.topic, key.partition, key.offset);
    ids.transaction_id = transaction.into();
    ids.subject_ids = vec![format!("person:{}", key.partition), "beneficiary:7".into()];
    ArchivedRecord {
        key,
        time_ms,
        ..record
    }
}

fn failed_outcome(key: RecordKey, transaction: &str, of_event: &str) -> ArchivedRecord {
    let mut record = event(key, transaction, 9_000);
    record.kind = RecordKind::Outcome;
    record.outcome = Some(OutcomeRef {
        event_id: of_event.into(),
        failed: true,
    });
    record.ids = Some(crate::EventIds {
        transaction_id: transaction.into(),
        source: "validation".into(),
        ..crate::EventIds::default()
    });
    record
}

fn audited(offset: i64, action: &str) -> ArchivedRecord {
    ArchivedRecord {
        key: key(AUDIT, 0, 0, offset),
        kind: RecordKind::Audit,
        ids: None,
        audit: Some(AuditEntry {
            at_ms: offset,
            actor: "ana".into(),
            action: action.into(),
            result: "ok".into(),
            ..AuditEntry::default()
        }),
        ..archived(offset)
    }
}

fn append(store: &LogStore, records: Vec<ArchivedRecord>) {
    let prepared: Vec<PreparedRecord> = records
        .into_iter()
        .map(|record| PreparedRecord::new(record).map_err(|(e, _)| e).unwrap())
        .collect();
    store.append(&prepared).unwrap();
}

/// Shard 1/2's archive: transaction `tx-P` on partition P (1, 3, 5) of `registrations`
/// (times 1000s) and `payments` (5000s), a failure outcome for each; `tx-both` on
/// registrations 1 and 3; a log reset on registrations/5; on the change log a replay, an
/// applied erasure of `person:3`, and one of `person:1` waiting for registrations/1 to reach
/// offset 10; audit records from the audit topic and of its own.
fn shard_1_of_2(path: &Path) -> (Erasure, Erasure, ReplayRecord) {
    let store = open(path);
    for p in [1, 3, 5] {
        let tx = format!("tx-{p}");
        let registrations = (0..3)
            .map(|o| event(key("registrations", p, 0, o), &tx, 1_000 + o))
            .collect();
        append(&store, registrations);
        let payments = (0..2)
            .map(|o| event(key("payments", p, 0, o), &tx, 5_000 + o))
            .collect();
        append(&store, payments);
        let of_event = format!("registrations-{p}-0");
        append(
            &store,
            vec![failed_outcome(
                key("retrace.outcomes", p, 0, 0),
                &tx,
                &of_event,
            )],
        );
    }
    append(
        &store,
        vec![
            event(key("registrations", 1, 0, 3), "tx-both", 1_100),
            event(key("registrations", 3, 0, 3), "tx-both", 1_200),
            event(key("registrations", 5, 1, 0), "tx-5", 1_300),
        ],
    );
    let replay = ReplayRecord {
        replay_id: "r1".into(),
        transaction_ids: vec!["tx-1".into(), "tx-3".into()],
        request_key: "ticket-7".into(),
        ..ReplayRecord::default()
    };
    let applied = erasure_here(&store, "person:3", 7_000);
    let pending = Erasure {
        erasure_id: "person:1@8000".into(),
        subject_id: "person:1".into(),
        erased_at_ms: 8_000,
        bound: vec![
            Watermark {
                topic: "registrations".into(),
                partition: 1,
                epoch: 0,
                next_offset: 10,
            },
            Watermark {
                topic: "registrations".into(),
                partition: 3,
                epoch: 0,
                next_offset: 4,
            },
        ],
    };
    store
        .append(&[
            change_record(0, Change::Replay(replay.clone())),
            change_record(1, Change::Erasure(applied.clone())),
            change_record(2, Change::Erasure(pending.clone())),
        ])
        .unwrap();
    assert_eq!(
        store.due_erasures(|_, _| true).unwrap(),
        std::slice::from_ref(&applied)
    );
    store.apply_erasure(&applied, |_| None).unwrap();
    append(&store, vec![audited(0, "replay"), audited(1, "erase")]);
    store
        .append_audit(AuditEntry {
            action: "transaction.read".into(),
            ..AuditEntry::default()
        })
        .unwrap();
    (applied, pending, replay)
}

fn every_record(store: &LogStore) -> Vec<ArchivedRecord> {
    let mut records = Vec::new();
    for position in store.positions().unwrap() {
        let page = store
            .records(&position.topic, Some(position.partition), 0, 1_000, None)
            .unwrap();
        records.extend(page.items);
    }
    records
}

fn marked(store: &LogStore, mark: Mark) -> BTreeSet<String> {
    store
        .transaction_marks(mark, i64::MIN, i64::MAX, None)
        .unwrap()
        .map(|marked| marked.unwrap().transaction_id)
        .collect()
}

fn last_seen(store: &LogStore, subject: &str) -> Vec<(String, i64)> {
    let page = store
        .subject_transactions(subject, (i64::MIN, i64::MAX), 100, None)
        .unwrap();
    let mut seen: Vec<_> = page
        .items
        .into_iter()
        .map(|t| (t.transaction_id, t.last_seen_ms))
        .collect();
    seen.sort();
    seen
}

#[test]
fn each_new_shard_holds_its_partitions_whole_with_their_positions_indexes_and_the_shared_state() {
    let dir = tempfile::tempdir().unwrap();
    let [source_dir, low_dir, high_dir] =
        ["shard-1-of-2", "shard-1-of-4", "shard-3-of-4"].map(|name| dir.path().join(name));
    let (applied, pending, replay) = shard_1_of_2(&source_dir);

    let summary = split(
        &source_dir,
        1,
        2,
        &UNSHARDED,
        [&low_dir, &high_dir],
        &options(),
    )
    .unwrap();

    let [source, low, high] = [&source_dir, &low_dir, &high_dir].map(|path| open(path));
    let shards = [&low, &high];
    let takers = |topic: &str, partition: i32| match (topic, partition % 4) {
        (CHANGES | AUDIT, _) => vec![0, 1],
        (_, 1) => vec![0],
        (_, 3) => vec![1],
        other => panic!("shard 1/2 holds no {other:?}"),
    };

    // Every record, byte for byte, in the shards that own its partition, and only there.
    let records = every_record(&source);
    let unsharded = records
        .iter()
        .filter(|r| UNSHARDED.contains(&r.key.topic.as_str()))
        .count() as u64;
    assert_eq!(
        low.record_count() + high.record_count(),
        source.record_count() + unsharded
    );
    for record in &records {
        let takers = takers(&record.key.topic, record.key.partition);
        for (which, shard) in shards.iter().enumerate() {
            let expected = takers.contains(&which).then_some(record);
            assert_eq!(shard.get(&record.key).unwrap().as_ref(), expected);
        }
    }
    let erased = low_or_high(&shards, &key("registrations", 3, 0, 0));
    assert!(erased.erased_at_ms.is_some() && erased.value.is_none());

    // The same positions, so each resumes where shard 1/2 stood; the same digests.
    for position in source.positions().unwrap() {
        for which in takers(&position.topic, position.partition) {
            let shard = shards[which];
            assert_eq!(
                shard.position(&position.topic, position.partition),
                Some(position.clone())
            );
            let digest = |store: &LogStore| {
                store
                    .partition_digest(&position.topic, position.partition, position.next_offset)
                    .unwrap()
            };
            assert_eq!(digest(shard), digest(&source));
        }
    }
    assert_eq!(low.position("registrations", 5).unwrap().epoch, 1);
    for (which, shard) in shards.iter().enumerate() {
        let reported = &summary.shards[which];
        assert_eq!(&reported.path, [&low_dir, &high_dir][which]);
        assert_eq!((reported.index, reported.count), ([1, 3][which], 4));
        assert_eq!(reported.records, shard.record_count());
        assert_eq!(reported.positions, shard.positions().unwrap());
    }

    // Indexes: traces hold the shard's part of a transaction; listings find the shard's.
    assert_eq!(
        low.transaction("tx-1").unwrap(),
        source.transaction("tx-1").unwrap()
    );
    assert_eq!(high.transaction("tx-1").unwrap(), []);
    let both = |store: &LogStore| -> Vec<RecordKey> {
        let trace = store.transaction("tx-both").unwrap();
        trace.into_iter().map(|r| r.key).collect()
    };
    assert_eq!(both(&low), [key("registrations", 1, 0, 3)]);
    assert_eq!(both(&high), [key("registrations", 3, 0, 3)]);
    assert_eq!(
        low.event("registrations-5-1").unwrap(),
        source.event("registrations-5-1").unwrap()
    );
    assert_eq!(
        high.outcomes("registrations-3-0").unwrap(),
        source.outcomes("registrations-3-0").unwrap()
    );
    let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(marked(&low, Mark::Failure), set(&["tx-1", "tx-5"]));
    assert_eq!(marked(&high, Mark::Failure), set(&["tx-3"]));
    assert_eq!(marked(&low, Mark::Start), set(&["tx-1", "tx-5", "tx-both"]));
    // A subject's transactions, each last seen at its newest record in the shard naming the
    // subject (the payments), though the split wrote them before the registrations.
    assert_eq!(
        last_seen(&low, "beneficiary:7"),
        [
            ("tx-1".to_owned(), 5_001),
            ("tx-5".to_owned(), 5_001),
            ("tx-both".to_owned(), 1_100)
        ]
    );
    assert_eq!(
        last_seen(&high, "beneficiary:7"),
        [("tx-3".to_owned(), 5_001), ("tx-both".to_owned(), 1_200)]
    );
    for shard in shards {
        assert_eq!(
            shard.check_consistency().unwrap().problems,
            Vec::<String>::new()
        );
    }

    // The change log's state, in both: the replay, the applied erasure's summary.
    for shard in shards {
        assert_eq!(shard.replay("r1").unwrap(), Some(replay.clone()));
        assert_eq!(
            shard.replay_for_request("ticket-7").unwrap(),
            Some(replay.clone())
        );
        assert_eq!(
            shard.transaction_replays("tx-3").unwrap(),
            std::slice::from_ref(&replay)
        );
        assert_eq!(
            shard.erasure_summary(&applied.erasure_id).unwrap(),
            source.erasure_summary(&applied.erasure_id).unwrap()
        );
    }
    // The pending erasure waits in each shard for its own partitions only: shard 3/4 has
    // reached registrations/3's mark; shard 1/4 erases once registrations/1 reaches 10.
    let bounded = |partition: usize| Erasure {
        bound: vec![pending.bound[partition].clone()],
        ..pending.clone()
    };
    assert_eq!(high.due_erasures(|_, _| true).unwrap(), [bounded(1)]);
    assert_eq!(low.due_erasures(|_, _| true).unwrap(), []);
    append(
        &low,
        (4..10)
            .map(|o| event(key("registrations", 1, 0, o), "tx-1", 1_000 + o))
            .collect(),
    );
    assert_eq!(low.due_erasures(|_, _| true).unwrap(), [bounded(0)]);

    // The audit trail, as it was: it verifies, with the same records.
    let trail = |store: &LogStore| store.audit(&AuditFilter::default(), 100, None).unwrap();
    for shard in shards {
        let verified = shard.verify_audit().unwrap();
        assert_eq!((verified.records, verified.problems), (3, Vec::new()));
        assert_eq!(trail(shard), trail(&source));
    }

    // Incidents, rebuilt from each shard's own failures.
    let transactions =
        |store: &LogStore| store.incident("validation").unwrap().unwrap().transactions;
    assert_eq!(transactions(&source), 3);
    assert_eq!((transactions(&low), transactions(&high)), (2, 1));

    assert!(!sibling(&low_dir, "partial").exists() && !sibling(&high_dir, "partial").exists());
}

fn low_or_high(shards: &[&LogStore; 2], key: &RecordKey) -> ArchivedRecord {
    shards
        .iter()
        .find_map(|shard| shard.get(key).unwrap())
        .expect("one of the shards holds it")
}

#[test]
fn a_target_that_holds_files_is_refused_by_name_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let [source_dir, low_dir, high_dir] = ["old", "low", "high"].map(|n| dir.path().join(n));
    shard_1_of_2(&source_dir);
    std::fs::create_dir(&high_dir).unwrap();
    std::fs::write(high_dir.join("notes.txt"), b"mine").unwrap();

    let error = split(
        &source_dir,
        1,
        2,
        &UNSHARDED,
        [&low_dir, &high_dir],
        &options(),
    )
    .expect_err("refused")
    .to_string();

    assert!(error.contains(&high_dir.display().to_string()), "{error}");
    assert!(error.contains("not empty"), "{error}");
    assert!(!low_dir.exists() && !sibling(&low_dir, "partial").exists());
    assert_eq!(std::fs::read(high_dir.join("notes.txt")).unwrap(), b"mine");
}

#[test]
fn a_running_shard_or_the_wrong_shard_number_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let [source_dir, low_dir, high_dir] = ["old", "low", "high"].map(|n| dir.path().join(n));
    shard_1_of_2(&source_dir);
    let targets = [low_dir.as_path(), high_dir.as_path()];

    let running = open(&source_dir);
    let error = split(&source_dir, 1, 2, &UNSHARDED, targets, &options()).expect_err("running");
    assert!(
        error.to_string().contains("stop shard 1/2 first"),
        "{error}"
    );
    drop(running);

    // As shard 0/2 its partitions would belong to neither 0/4 nor 2/4.
    let error = split(&source_dir, 0, 2, &UNSHARDED, targets, &options()).expect_err("wrong");
    assert!(
        error.to_string().contains("which shard 0/2 does not own"),
        "{error}"
    );
    let error = split(&source_dir, 2, 2, &UNSHARDED, targets, &options()).expect_err("none");
    assert!(error.to_string().contains("no shard 2/2"), "{error}");
    assert!(!low_dir.exists() && !high_dir.exists());
    assert!(!sibling(&low_dir, "partial").exists());
}

#[test]
fn what_an_interrupted_split_left_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let [source_dir, low_dir, high_dir] = ["old", "low", "high"].map(|n| dir.path().join(n));
    shard_1_of_2(&source_dir);
    let left = sibling(&low_dir, "partial");
    std::fs::create_dir(&left).unwrap();
    std::fs::write(left.join("half-written"), b"x").unwrap();

    split(
        &source_dir,
        1,
        2,
        &UNSHARDED,
        [&low_dir, &high_dir],
        &options(),
    )
    .unwrap();

    assert!(!left.exists());
    assert!(!low_dir.join("half-written").exists());
    assert!(open(&low_dir).record_count() > 0);
}
