use super::*;
use crate::{EventIds, Header, RecordKind};

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
        outcome_of: None,
        archived_at_ms: time_ms,
    }
}

fn outcome(offset: i64, transaction: &str, of_event: &str, time_ms: i64) -> ArchivedRecord {
    ArchivedRecord {
        kind: RecordKind::Outcome,
        outcome_of: Some(of_event.into()),
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
            next_offset: 42
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

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .subject_transactions("beneficiary:42", 2, cursor.as_deref())
            .unwrap();
        seen.extend(page.items.into_iter().map(|t| t.transaction_id));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    // t1's last record is older than the others', so it sorts last.
    assert_eq!(seen, ["t4", "t3", "t2", "t0", "t1"]);
    assert!(matches!(
        store.subject_transactions("beneficiary:42", 2, Some("zz")),
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

#[test]
fn an_archive_of_another_format_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    open(&dir).inner.meta.insert(FORMAT_KEY, "999").unwrap();
    let error = LogStore::open(dir.path(), &StoreOptions::default())
        .err()
        .unwrap();
    assert!(matches!(error, StoreError::UnsupportedFormat { .. }));
    assert!(error.to_string().contains("format version 999"));
}
