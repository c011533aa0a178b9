use super::*;
use crate::test_records::erasure_here;
use crate::{ErasureSummary, EventIds, Header, Mark, OutcomeRef, Page, RecordKind};

fn open(dir: &tempfile::TempDir) -> LogStore {
    LogStore::open(dir.path(), &StoreOptions::default()).unwrap()
}

fn prepare(records: Vec<ArchivedRecord>) -> Result<Vec<PreparedRecord>, StoreError> {
    records
        .into_iter()
        .map(|record| PreparedRecord::new(record).map_err(|(error, _)| error))
        .collect()
}

fn append(store: &LogStore, records: Vec<ArchivedRecord>) -> AppendSummary {
    store.append(&prepare(records).unwrap()).unwrap()
}

fn event(topic: &str, offset: i64, transaction: &str, time_ms: i64) -> ArchivedRecord {
    ArchivedRecord {
        key: RecordKey {
            topic: topic.into(),
            partition: 0,
            epoch: 0,
            offset,
        },
        message_key: Some(transaction.as_bytes().to_vec()),
        value: Some(format!("value {offset}").into_bytes()),
        headers: vec![Header {
            name: "retrace-transaction-id".into(),
            value: Some(transaction.as_bytes().to_vec()),
        }],
        kafka_timestamp_ms: Some(time_ms),
        time_ms,
        kind: RecordKind::Envelope,
        problem: None,
        ids: Some(EventIds {
            event_id: format!("{topic}-{offset}"),
            transaction_id: transaction.into(),
            subject_ids: vec!["beneficiary:42".into()],
            source: "registration".into(),
            event_type: "registration.submitted.v1".into(),
            ..EventIds::default()
        }),
        outcome: None,
        archived_at_ms: time_ms,
        erased_at_ms: None,
        audit: None,
    }
}

fn outcome(offset: i64, transaction: &str, of_event: &str, time_ms: i64) -> ArchivedRecord {
    ArchivedRecord {
        kind: RecordKind::Outcome,
        outcome: Some(OutcomeRef {
            event_id: of_event.into(),
            failed: false,
        }),
        ids: Some(EventIds {
            transaction_id: transaction.into(),
            source: "validation".into(),
            ..EventIds::default()
        }),
        ..event("retrace.outcomes", offset, transaction, time_ms)
    }
}

fn untraceable(offset: i64) -> ArchivedRecord {
    ArchivedRecord {
        kind: RecordKind::Untraceable,
        problem: Some("no envelope and no retrace headers".into()),
        ids: None,
        ..event("legacy", offset, "-", 1)
    }
}

#[test]
fn a_trace_holds_the_transactions_events_and_outcomes_in_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    append(
        &store,
        vec![
            event("certificates", 0, "t1", 300),
            event("registrations", 0, "t1", 100),
            event("registrations", 1, "t2", 150),
            outcome(0, "t1", "registrations-0", 200),
        ],
    );
    let trace = store.transaction("t1").unwrap();
    let keys: Vec<String> = trace.iter().map(|r| r.key.to_string()).collect();
    assert_eq!(
        keys,
        [
            "registrations/0@0",
            "retrace.outcomes/0@0",
            "certificates/0@0"
        ]
    );
    assert_eq!(store.outcomes("registrations-0").unwrap().len(), 1);
    assert!(store.transaction("t3").unwrap().is_empty());
}

#[test]
fn appending_the_same_records_again_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let records = vec![event("r", 0, "t1", 1), event("r", 1, "t1", 2)];
    let first = append(&store, records.clone());
    let again = append(&store, records);
    assert_eq!((first.appended, first.already_archived), (2, 0));
    assert_eq!((again.appended, again.already_archived), (0, 2));
    assert_eq!(store.transaction("t1").unwrap().len(), 2);
    let report = store.check_consistency().unwrap();
    assert_eq!(report.problems, Vec::<String>::new());
    assert_eq!(report.records, 2);
}

#[test]
fn positions_and_records_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let record = event("r", 41, "t1", 1);
    {
        let store = open(&dir);
        append(&store, vec![record.clone()]);
        assert_eq!(store.next_offset("r", 0), Some(42));
    }
    let store = open(&dir);
    assert_eq!(store.next_offset("r", 0), Some(42));
    assert_eq!(store.next_offset("r", 1), None);
    assert_eq!(
        store.positions().unwrap(),
        vec![Position {
            topic: "r".into(),
            partition: 0,
            epoch: 0,
            next_offset: 42,
            reset: None,
        }]
    );
    assert_eq!(store.get(&record.key).unwrap(), Some(record));
}

#[test]
fn a_subjects_transactions_come_newest_first_one_page_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let records = (0..5)
        .map(|i| event("r", i, &format!("t{i}"), 1000 + i))
        .chain([event("r", 5, "t1", 900)])
        .collect();
    append(&store, records);
    // An older record of t3, archived in a later batch (from another partition).
    append(&store, vec![event("r", 6, "t3", 950)]);

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .subject_transactions("beneficiary:42", (i64::MIN, i64::MAX), 2, cursor.as_deref())
            .unwrap();
        seen.extend(page.items.into_iter().map(|t| t.transaction_id));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    // Each at its newest record, whatever order they were archived in: t1 at 1001 (its
    // record at 900 came after, in the same batch), t3 at 1003 (950 came in a later one).
    assert_eq!(seen, ["t4", "t3", "t2", "t1", "t0"]);
    let window = store
        .subject_transactions("beneficiary:42", (1002, 1004), 10, None)
        .unwrap();
    let in_window: Vec<_> = window
        .items
        .iter()
        .map(|t| t.transaction_id.as_str())
        .collect();
    assert_eq!(in_window, ["t3", "t2"]);
    assert!(matches!(
        store.subject_transactions("beneficiary:42", (i64::MIN, i64::MAX), 2, Some("zz")),
        Err(StoreError::BadCursor(_))
    ));
}

#[test]
fn records_by_time_are_paged_within_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    append(
        &store,
        (0..10).map(|i| event("r", i, "t", i * 10)).collect(),
    );
    append(&store, vec![event("other", 0, "t", 25)]);

    let first = store.records_by_time("r", 20, 70, 3, None).unwrap();
    let offsets = |page: &Page<ArchivedRecord>| -> Vec<i64> {
        page.items.iter().map(|r| r.key.offset).collect()
    };
    assert_eq!(offsets(&first), [2, 3, 4]);
    let second = store
        .records_by_time("r", 20, 70, 3, first.next_cursor.as_deref())
        .unwrap();
    assert_eq!(offsets(&second), [5, 6]);
    assert_eq!(second.next_cursor, None);
}

#[test]
fn flagged_records_are_kept_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    append(
        &store,
        vec![untraceable(0), event("r", 0, "t", 1), untraceable(1)],
    );
    let flagged = store.flagged(10, None).unwrap();
    assert_eq!(flagged.items.len(), 2);
    let offsets = |page: &Page<ArchivedRecord>| -> Vec<i64> {
        page.items.iter().map(|r| r.key.offset).collect()
    };
    let in_topic = store.flagged_in("legacy", 1, None).unwrap();
    assert_eq!(offsets(&in_topic), [0]);
    let rest = store
        .flagged_in("legacy", 1, in_topic.next_cursor.as_deref())
        .unwrap();
    assert_eq!(offsets(&rest), [1]);
    // Neither a topic whose name it starts with, nor one that starts with its name.
    assert!(
        store
            .flagged_in("legac", 10, None)
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        store
            .flagged_in("legacy2", 10, None)
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        flagged
            .items
            .iter()
            .all(|r| r.kind == RecordKind::Untraceable)
    );
    assert_eq!(
        store.check_consistency().unwrap().problems,
        Vec::<String>::new()
    );
}

#[test]
fn an_event_published_twice_is_found_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let first = event("r", 0, "t", 1);
    let second = ArchivedRecord {
        key: RecordKey {
            offset: 1,
            ..first.key.clone()
        },
        ..first.clone()
    };
    append(&store, vec![first, second]);
    assert_eq!(store.event("r-0").unwrap().len(), 2);
}

#[test]
fn an_id_with_a_nul_byte_is_refused_not_indexed_wrongly() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let error = prepare(vec![event("r", 0, "t\0x", 1)]).unwrap_err();
    assert!(matches!(
        error,
        StoreError::InvalidId {
            field: "transaction_id",
            ..
        }
    ));
    assert_eq!(store.next_offset("r", 0), None);
}

fn caused_by(mut record: ArchivedRecord, cause: &str) -> ArchivedRecord {
    if let Some(ids) = record.ids.as_mut() {
        ids.causation_id = cause.into();
    }
    record
}

fn failure(offset: i64, transaction: &str, of_event: &str, time_ms: i64) -> ArchivedRecord {
    let mut record = outcome(offset, transaction, of_event, time_ms);
    record.outcome.as_mut().unwrap().failed = true;
    record
}

fn marked(store: &LogStore, mark: Mark, cursor: Option<&str>) -> Vec<(String, i64)> {
    store
        .transaction_marks(mark, 0, 1_000, cursor)
        .unwrap()
        .map(|m| m.map(|m| (m.transaction_id, m.time_ms)).unwrap())
        .collect()
}

#[test]
fn transactions_are_listed_newest_first_by_start_and_by_failure() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    append(
        &store,
        vec![
            event("registrations", 0, "t1", 100),
            caused_by(event("registrations", 1, "t1", 110), "registrations-0"),
            event("registrations", 2, "t2", 200),
            event("registrations", 3, "t3", 300),
            failure(0, "t1", "registrations-1", 120),
            outcome(1, "t2", "registrations-2", 210),
            failure(2, "t3", "registrations-3", 310),
        ],
    );
    assert_eq!(
        marked(&store, Mark::Start, None),
        [("t3".into(), 300), ("t2".into(), 200), ("t1".into(), 100)]
    );
    assert_eq!(
        marked(&store, Mark::Failure, None),
        [("t3".into(), 310), ("t1".into(), 120)]
    );
    let first = store
        .transaction_marks(Mark::Start, 0, 1_000, None)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(
        marked(&store, Mark::Start, Some(&first.cursor)),
        [("t2".into(), 200), ("t1".into(), 100)]
    );
    let window: Vec<_> = store
        .transaction_marks(Mark::Start, 150, 300, None)
        .unwrap()
        .map(|m| m.unwrap().transaction_id)
        .collect();
    assert_eq!(window, ["t2"], "the window includes its start, not its end");
    assert!(matches!(
        store.transaction_marks(Mark::Start, 0, 1_000, Some("zz")),
        Err(StoreError::BadCursor(_))
    ));
    assert!(store.check_consistency().unwrap().problems.is_empty());
}

#[test]
fn records_are_read_by_offset_across_partitions_one_page_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut records: Vec<_> = (0..5).map(|o| event("births", o, "t1", o)).collect();
    records.extend((0..3).map(|o| ArchivedRecord {
        key: RecordKey {
            topic: "births".into(),
            partition: 1,
            epoch: 0,
            offset: o,
        },
        ..event("births", o, "t2", 10 + o)
    }));
    records.push(event("birthsx", 0, "t3", 1));
    append(&store, records);
    let keys = |page: &Page<ArchivedRecord>| -> Vec<String> {
        page.items.iter().map(|r| r.key.to_string()).collect()
    };
    let first = store.records("births", Some(0), 3, 10, None).unwrap();
    assert_eq!(keys(&first), ["births/0@3", "births/0@4"]);
    assert_eq!(first.next_cursor, None);
    let all = store.records("births", None, 2, 3, None).unwrap();
    assert_eq!(keys(&all), ["births/0@2", "births/0@3", "births/0@4"]);
    let rest = store
        .records("births", None, 2, 3, all.next_cursor.as_deref())
        .unwrap();
    assert_eq!(keys(&rest), ["births/1@2"], "other topics are not included");
    assert_eq!(rest.next_cursor, None);
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            found.push(path);
        }
    }
    found
}

#[test]
fn an_erased_subjects_payloads_are_gone_from_every_file_after_compaction() {
    // The archive in a subdirectory: compaction's sibling directories are searched too.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("archive");
    let store = LogStore::open(&path, &StoreOptions::default()).unwrap();
    let marker = b"MARKER-Amina-Wanjiru-1987";
    let mut touching = event("births", 0, "t1", 10);
    touching.value = Some([b"child=".as_slice(), marker].concat());
    touching.headers.push(Header {
        name: "x-mother-name".into(),
        value: Some(marker.to_vec()),
    });
    let mut other = event("births", 1, "t2", 20);
    other.ids.as_mut().unwrap().subject_ids = vec!["beneficiary:7".into()];
    // A consumer named the person in its error text.
    let mut failed = outcome(0, "t1", "births-0", 11);
    failed.value = Some([b"failed: mother ".as_slice(), marker].concat());
    append(&store, vec![touching, other.clone(), failed]);
    store.flush().unwrap();
    assert!(!files_containing(dir.path(), marker).is_empty());

    // The store does not read outcomes: the caller says what is left of one.
    let redact = |value: &[u8]| {
        value
            .starts_with(b"failed: ")
            .then(|| b"failed: [erased]".to_vec())
    };
    let summary = store
        .apply_erasure(&erasure_here(&store, "beneficiary:42", 99), redact)
        .unwrap();
    assert_eq!(
        summary,
        ErasureSummary {
            transactions: 1,
            records: 1,
            already_erased: 0,
            outcomes: 1,
        }
    );
    let outcomes = store.outcomes("births-0").unwrap();
    assert_eq!(
        outcomes[0].value.as_deref(),
        Some(b"failed: [erased]".as_slice())
    );
    let erased = store.transaction("t1").unwrap().remove(0);
    assert_eq!(erased.value, None);
    assert_eq!(erased.erased_at_ms, Some(99));
    assert_eq!(erased.ids.unwrap().event_id, "births-0", "ids stay");
    let kept: Vec<&str> = erased.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(kept, ["retrace-transaction-id"]);
    assert_eq!(store.transaction("t2").unwrap()[0].value, other.value);
    assert_eq!(
        store
            .apply_erasure(&erasure_here(&store, "beneficiary:42", 100), redact)
            .unwrap()
            .already_erased,
        1
    );

    drop(store);
    let compacted = crate::compact(&path, &StoreOptions::default()).unwrap();
    assert!(compacted.entries > 0);
    assert_eq!(
        files_containing(dir.path(), marker),
        Vec::<std::path::PathBuf>::new()
    );
    let store = LogStore::open(&path, &StoreOptions::default()).unwrap();
    assert!(store.check_consistency().unwrap().problems.is_empty());
    assert_eq!(store.transaction("t2").unwrap()[0].value, other.value);
}

#[test]
fn a_compaction_interrupted_by_a_crash_is_finished_or_discarded_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("archive");
    let at = |suffix: &str| dir.path().join(format!("archive.{suffix}"));
    let with_record = |at: &std::path::Path, transaction: &str| {
        let store = LogStore::open(at, &StoreOptions::default()).unwrap();
        append(&store, vec![event("births", 0, transaction, 1)]);
    };
    let transaction_at = |at: &std::path::Path| {
        let store = LogStore::open(at, &StoreOptions::default()).unwrap();
        let page = store.records("births", Some(0), 0, 1, None).unwrap();
        page.items[0].ids.clone().unwrap().transaction_id
    };

    // Crashed after the old archive was set aside: the complete copy takes its place.
    with_record(&at("compacting"), "copy");
    std::fs::write(at("compacting").join("COMPLETE"), b"").unwrap();
    with_record(&at("old"), "old");
    assert_eq!(transaction_at(&path), "copy");
    assert!(!at("old").exists() && !at("compacting").exists());
    assert!(!path.join("COMPLETE").exists());

    // Crashed while copying: the copy is discarded, the archive is untouched.
    with_record(&at("compacting"), "half-copy");
    assert_eq!(transaction_at(&path), "copy");
    assert!(!at("compacting").exists());
}

#[test]
fn a_lookup_by_an_id_with_nul_is_refused_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let refused = |result: Result<(), StoreError>| match result {
        Err(StoreError::InvalidId { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        refused(store.transaction("t\0").map(drop)),
        "transaction_id"
    );
    assert_eq!(refused(store.event("\0").map(drop)), "event_id");
    assert_eq!(refused(store.outcomes("\0").map(drop)), "event_id");
    let all = (i64::MIN, i64::MAX);
    assert_eq!(
        refused(store.subject_transactions("\0", all, 1, None).map(drop)),
        "subject_id"
    );
    assert_eq!(
        refused(store.records("a\0", None, 0, 1, None).map(drop)),
        "topic"
    );
    assert_eq!(
        refused(store.records_by_time("a\0", 0, 1, 1, None).map(drop)),
        "topic"
    );
}

#[test]
fn appends_are_refused_without_the_disk_reserve_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let all_of_it = StoreOptions {
        disk_reserve_bytes: u64::MAX,
        ..StoreOptions::default()
    };
    let store = LogStore::open(dir.path(), &all_of_it).unwrap();
    let refused = store
        .append(&prepare(vec![event("t", 0, "tx", 1)]).unwrap())
        .unwrap_err();
    assert!(refused.is_disk_full(), "{refused}");
    assert!(refused.to_string().contains("in reserve"), "{refused}");
    assert_eq!(store.next_offset("t", 0), None);
    drop(store);

    let store = open(&dir);
    let summary = append(&store, vec![event("t", 0, "tx", 1)]);
    assert_eq!(
        summary.appended, 1,
        "the same record goes in once space allows"
    );
}
