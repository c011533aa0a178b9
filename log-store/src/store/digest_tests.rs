use super::*;
use crate::test_records::{archived, erasure_here, prepared};
use crate::{Header, PreparedRecord, StoreOptions};

fn open() -> (LogStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path(), &StoreOptions::default()).unwrap();
    (store, dir)
}

fn prepare(records: Vec<ArchivedRecord>) -> Vec<PreparedRecord> {
    records
        .into_iter()
        .map(|r| PreparedRecord::new(r).map_err(|(e, _)| e).unwrap())
        .collect()
}

fn store_of(records: Vec<ArchivedRecord>) -> (LogStore, tempfile::TempDir) {
    let (store, dir) = open();
    store.append(&prepare(records)).unwrap();
    (store, dir)
}

fn digest(store: &LogStore, until: i64) -> PartitionDigest {
    store.partition_digest("registrations", 0, until).unwrap()
}

#[test]
fn the_same_records_written_in_other_batches_digest_alike() {
    let (whole, _a) = open();
    whole.append(&prepared(0..20)).unwrap();
    let (batched, _b) = open();
    for batch in [0..7, 7..13, 13..20] {
        batched.append(&prepared(batch)).unwrap();
    }
    let covered = digest(&whole, 20);
    assert_eq!(covered, digest(&batched, 20));
    assert_eq!(covered.records, 20);
    assert_eq!(
        (covered.first_offset, covered.last_offset),
        (Some(0), Some(19))
    );
    assert_eq!(covered.digest.len(), 64);
}

#[test]
fn a_changed_value_header_or_offset_changes_the_digest() {
    let original: Vec<ArchivedRecord> = (0..3).map(archived).collect();
    let (store, _dir) = store_of(original.clone());
    let expected = digest(&store, 10).digest;

    let mut value = original.clone();
    value[1].value = Some(b"payload 1!".to_vec());
    let mut header = original.clone();
    header[1].headers.push(Header {
        name: "trace".into(),
        value: None,
    });
    let mut offset = original.clone();
    offset[2].key.offset = 3;
    let mut timestamp = original;
    timestamp[0].kafka_timestamp_ms = None;
    for (change, records) in [
        ("value", value),
        ("header", header),
        ("offset", offset),
        ("timestamp", timestamp),
    ] {
        let (changed, _dir) = store_of(records);
        assert_ne!(digest(&changed, 10).digest, expected, "{change}");
    }
}

/// Fields an archive derives or adds itself differ between replicas without the records
/// differing.
#[test]
fn what_each_archive_adds_itself_is_not_covered() {
    let original: Vec<ArchivedRecord> = (0..3).map(archived).collect();
    let (store, _dir) = store_of(original.clone());
    let local = original
        .into_iter()
        .map(|record| ArchivedRecord {
            archived_at_ms: 9_999,
            time_ms: 1,
            problem: Some("read by another version".into()),
            ..record
        })
        .collect();
    let (other, _dir) = store_of(local);
    assert_eq!(digest(&store, 10), digest(&other, 10));
}

#[test]
fn until_bounds_the_records_covered() {
    let (all, _a) = open();
    all.append(&prepared(0..20)).unwrap();
    let (first_ten, _b) = open();
    first_ten.append(&prepared(0..10)).unwrap();
    let bounded = digest(&all, 10);
    assert_eq!(bounded, digest(&first_ten, 10));
    assert_eq!(bounded.digest, digest(&first_ten, 1_000).digest);
    assert_eq!(bounded.records, 10);
    assert_eq!(bounded.last_offset, Some(9));
    assert_ne!(bounded.digest, digest(&all, 11).digest);

    let nothing = digest(&all, 0);
    assert_eq!((nothing.records, nothing.first_offset), (0, None));
    assert_eq!(nothing.digest, digest(&first_ten, 0).digest);
    let (empty, _c) = open();
    assert_eq!(nothing, digest(&empty, 0));
}

#[test]
fn records_erased_at_the_same_moment_digest_alike() {
    let (one, _a) = open();
    let (other, _b) = open();
    let (later, _c) = open();
    for store in [&one, &other, &later] {
        store.append(&prepared(0..5)).unwrap();
    }
    let before = digest(&one, 5).digest;
    for (store, at_ms) in [(&one, 5_000), (&other, 5_000), (&later, 6_000)] {
        let erasure = erasure_here(store, "beneficiary:7", at_ms);
        store.apply_erasure(&erasure, |_| None).unwrap();
    }
    let erased = digest(&one, 5);
    assert_eq!(erased, digest(&other, 5));
    assert_ne!(erased.digest, before);
    assert_ne!(erased.digest, digest(&later, 5).digest);
}

/// An archive that found the partition's log replaced digests the new log only, as one that
/// started reading after the replacement does.
#[test]
fn only_the_current_log_is_covered() {
    let (replaced, _a) = open();
    replaced.append(&prepared(0..5)).unwrap();
    let new_log = |epoch| {
        (0..3)
            .map(|offset| {
                let mut record = archived(offset);
                record.key.epoch = epoch;
                record.value = Some(format!("new log {offset}").into_bytes());
                record
            })
            .collect::<Vec<_>>()
    };
    replaced.append(&prepare(new_log(1))).unwrap();
    let (fresh, _b) = store_of(new_log(0));
    let digest_after_reset = digest(&replaced, 10);
    assert_eq!(digest_after_reset.epoch, 1);
    assert_eq!(digest_after_reset.records, 3);
    assert_eq!(digest_after_reset.digest, digest(&fresh, 10).digest);
}
