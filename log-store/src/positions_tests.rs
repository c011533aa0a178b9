//! A partition whose log was replaced: the new log's records are kept under a new epoch,
//! beside the old ones, and the position says so.

use crate::test_records::archived;
use crate::{ArchivedRecord, LogStore, Position, PreparedRecord, StoreError, StoreOptions};

fn in_epoch(epoch: u32, offset: i64) -> ArchivedRecord {
    let mut record = archived(offset);
    record.key.epoch = epoch;
    record.ids.as_mut().unwrap().event_id = format!("ev-{epoch}-{offset}");
    record
}

fn prepared(records: impl IntoIterator<Item = ArchivedRecord>) -> Vec<PreparedRecord> {
    records
        .into_iter()
        .map(|record| PreparedRecord::new(record).map_err(|(e, _)| e).unwrap())
        .collect()
}

fn position(store: &LogStore) -> Position {
    store.position("registrations", 0).expect("a position")
}

#[test]
fn a_new_epoch_archives_offsets_the_old_log_already_had() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path(), &StoreOptions::default()).unwrap();
    store
        .append(&prepared((0..5).map(|o| in_epoch(0, o))))
        .unwrap();

    // The new log starts at 0 again: under epoch 1 none of it is "already archived".
    let summary = store
        .append(&prepared((0..3).map(|o| in_epoch(1, o))))
        .unwrap();
    assert_eq!((summary.appended, summary.already_archived), (3, 0));

    let position = position(&store);
    assert_eq!((position.epoch, position.next_offset), (1, 3));
    let reset = position.reset.expect("the reset is recorded");
    assert_eq!(reset.previous_next_offset, 5);
    assert!(reset.at_ms > 0);
    for (epoch, offset) in [(0, 0), (0, 4), (1, 0), (1, 2)] {
        let record = in_epoch(epoch, offset);
        assert_eq!(store.get(&record.key).unwrap(), Some(record.clone()));
        assert_eq!(
            store.event(&format!("ev-{epoch}-{offset}")).unwrap(),
            vec![record]
        );
    }
    assert_eq!(store.record_count(), 8);
    let report = store.check_consistency().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn the_epoch_and_the_reset_survive_a_reopen_and_redelivery_is_still_skipped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = LogStore::open(dir.path(), &StoreOptions::default()).unwrap();
        store
            .append(&prepared((0..5).map(|o| in_epoch(0, o))))
            .unwrap();
        store
            .append(&prepared((0..2).map(|o| in_epoch(1, o))))
            .unwrap();
    }
    let store = LogStore::open(dir.path(), &StoreOptions::default()).unwrap();
    assert_eq!(store.positions().unwrap(), vec![position(&store)]);
    assert_eq!(position(&store).epoch, 1);
    assert_eq!(position(&store).reset.unwrap().previous_next_offset, 5);

    let again = store
        .append(&prepared((0..3).map(|o| in_epoch(1, o))))
        .unwrap();
    assert_eq!((again.appended, again.already_archived), (1, 2));
    assert_eq!(position(&store).next_offset, 3);
}

#[test]
fn a_record_of_an_earlier_epoch_is_kept_once_without_moving_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path(), &StoreOptions::default()).unwrap();
    store
        .append(&prepared((0..2).map(|o| in_epoch(0, o))))
        .unwrap();
    store.append(&prepared([in_epoch(1, 0)])).unwrap();

    let late = store
        .append(&prepared([in_epoch(0, 1), in_epoch(0, 2)]))
        .unwrap();
    assert_eq!((late.appended, late.already_archived), (1, 1));
    assert!(store.get(&in_epoch(0, 2).key).unwrap().is_some());
    assert_eq!(
        (position(&store).epoch, position(&store).next_offset),
        (1, 1)
    );
}

#[test]
fn listings_run_through_every_epoch_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path(), &StoreOptions::default()).unwrap();
    store
        .append(&prepared((0..3).map(|o| in_epoch(0, o))))
        .unwrap();
    store
        .append(&prepared((0..2).map(|o| in_epoch(1, o))))
        .unwrap();
    for partition in [Some(0), None] {
        let page = store
            .records("registrations", partition, 1, 10, None)
            .unwrap();
        let keys: Vec<_> = page
            .items
            .iter()
            .map(|r| (r.key.epoch, r.key.offset))
            .collect();
        assert_eq!(keys, [(0, 1), (0, 2), (1, 1)], "partition {partition:?}");
    }
}

#[test]
fn an_offset_beyond_the_key_is_refused_not_folded_into_an_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path(), &StoreOptions::default()).unwrap();
    let mut record = archived(0);
    record.key.offset = crate::RecordKey::MAX_OFFSET + 1;
    let error = store.append(&prepared([record.clone()])).unwrap_err();
    assert!(matches!(error, StoreError::KeyOutOfRange { .. }), "{error}");
    assert_eq!(store.get(&record.key).unwrap(), None);
    assert_eq!(store.record_count(), 0);
}
