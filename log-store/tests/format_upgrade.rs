//! Stores written by an earlier format open with this build: migrated, every record and index
//! readable, and reopened without trouble.

use retrace_log_store::{
    ArchivedRecord, EventIds, Header, LogStore, OutcomeRef, PreparedRecord, RecordKey, RecordKind,
    ReplayState, StoreOptions,
};

/// What the fixture holds: two transactions on `registrations` (partition 0 and 1), an
/// outcome reporting a failure, and an untraceable record.
fn fixture_records() -> Vec<ArchivedRecord> {
    let event =
        |partition: i32, offset: i64, transaction: &str, event_id: &str, causation: &str| {
            ArchivedRecord {
                key: RecordKey {
                    topic: "registrations".into(),
                    partition,
                    epoch: 0,
                    offset,
                },
                message_key: Some(transaction.as_bytes().to_vec()),
                value: Some(format!("payload of {event_id}").into_bytes()),
                headers: vec![Header {
                    name: "retrace-transaction-id".into(),
                    value: Some(transaction.as_bytes().to_vec()),
                }],
                kafka_timestamp_ms: Some(1_700_000_000_000 + offset),
                time_ms: 1_700_000_000_000 + offset * 1000,
                kind: RecordKind::Envelope,
                problem: None,
                ids: Some(EventIds {
                    event_id: event_id.into(),
                    transaction_id: transaction.into(),
                    causation_id: causation.into(),
                    subject_ids: vec![format!("beneficiary:{transaction}")],
                    source: "registration".into(),
                    event_type: "registration.submitted.v1".into(),
                }),
                outcome: None,
                archived_at_ms: 1_700_000_100_000,
                erased_at_ms: None,
                audit: None,
            }
        };
    vec![
        event(0, 0, "tx-1", "ev-1", ""),
        event(0, 1, "tx-1", "ev-2", "ev-1"),
        event(1, 0, "tx-2", "ev-3", ""),
        ArchivedRecord {
            key: RecordKey {
                topic: "retrace.outcomes".into(),
                partition: 0,
                epoch: 0,
                offset: 0,
            },
            kind: RecordKind::Outcome,
            outcome: Some(OutcomeRef {
                event_id: "ev-2".into(),
                failed: true,
            }),
            ids: Some(EventIds {
                transaction_id: "tx-1".into(),
                source: "validation".into(),
                ..EventIds::default()
            }),
            ..event(0, 2, "tx-1", "", "")
        },
        ArchivedRecord {
            key: RecordKey {
                topic: "legacy".into(),
                partition: 0,
                epoch: 0,
                offset: 0,
            },
            kind: RecordKind::Untraceable,
            problem: Some("no envelope and no retrace headers".into()),
            ids: None,
            ..event(0, 3, "-", "", "")
        },
    ]
}

/// The fixture unpacked into a fresh directory (opening it writes to it).
fn unpack_fixture(dir: &std::path::Path) -> std::path::PathBuf {
    let tarball = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/archive-format-1.tar.gz"
    );
    let status = std::process::Command::new("tar")
        .args(["-xzf", tarball, "-C"])
        .arg(dir)
        .status()
        .expect("tar runs");
    assert!(status.success(), "tar could not unpack {tarball}");
    dir.join("archive-v1")
}

#[test]
fn an_archive_of_format_1_is_migrated_and_everything_in_it_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let path = unpack_fixture(dir.path());
    for opening in ["first open: migrates", "reopen"] {
        let store = LogStore::open(&path, &StoreOptions::default()).expect(opening);
        let expected = fixture_records();
        assert_eq!(store.record_count(), expected.len() as u64, "{opening}");
        for record in &expected {
            assert_eq!(
                store.get(&record.key).unwrap().as_ref(),
                Some(record),
                "{opening}"
            );
        }
        let trace: Vec<_> = store
            .transaction("tx-1")
            .unwrap()
            .into_iter()
            .map(|r| r.key)
            .collect();
        assert_eq!(
            trace,
            [&expected[0], &expected[1], &expected[3]].map(|r| r.key.clone())
        );
        assert_eq!(store.event("ev-3").unwrap(), vec![expected[2].clone()]);
        assert_eq!(store.outcomes("ev-2").unwrap(), vec![expected[3].clone()]);
        let subjects = store
            .subject_transactions("beneficiary:tx-2", (0, i64::MAX), 10, None)
            .unwrap();
        assert_eq!(subjects.items.len(), 1);
        assert_eq!(subjects.items[0].transaction_id, "tx-2");
        let replay = store.replay("rp-1").unwrap().expect("the replay");
        assert_eq!(replay.state, ReplayState::Done as i32);
        assert_eq!(store.transaction_replays("tx-1").unwrap().len(), 1);
        let audit = store.verify_audit().unwrap();
        assert_eq!((audit.records, audit.problems.len()), (2, 0));
        let positions: Vec<_> = store
            .positions()
            .unwrap()
            .into_iter()
            .map(|p| (p.topic, p.partition, p.next_offset))
            .collect();
        assert_eq!(
            positions,
            [
                ("legacy".to_owned(), 0, 1),
                ("registrations".to_owned(), 0, 2),
                ("registrations".to_owned(), 1, 1),
                ("retrace.outcomes".to_owned(), 0, 1),
            ]
        );
        assert!(store.check_consistency().unwrap().problems.is_empty());
        // An archive appended to after the migration keeps counting from where it was.
        if opening == "reopen" {
            let more = ArchivedRecord {
                key: RecordKey {
                    offset: 2,
                    ..expected[0].key.clone()
                },
                ..expected[0].clone()
            };
            let more = PreparedRecord::new(more).map_err(|(e, _)| e).unwrap();
            store.append(&[more]).unwrap();
            assert_eq!(store.record_count(), expected.len() as u64 + 1);
        }
    }
}
