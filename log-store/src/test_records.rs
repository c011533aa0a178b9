//! Records for the crate's tests: one transaction per ten offsets of topic `registrations`.

use crate::{ArchivedRecord, EventIds, PreparedRecord, RecordKey, RecordKind};

pub(crate) fn archived(offset: i64) -> ArchivedRecord {
    let transaction = format!("tx-{}", offset / 10);
    ArchivedRecord {
        key: RecordKey {
            topic: "registrations".into(),
            partition: 0,
            epoch: 0,
            offset,
        },
        message_key: Some(transaction.clone().into_bytes()),
        value: Some(format!("payload {offset}").into_bytes()),
        headers: Vec::new(),
        kafka_timestamp_ms: Some(1_000 + offset),
        time_ms: 1_000 + offset,
        kind: RecordKind::Envelope,
        problem: None,
        ids: Some(EventIds {
            event_id: format!("ev-{offset}"),
            transaction_id: transaction,
            subject_ids: vec!["beneficiary:7".into()],
            ..EventIds::default()
        }),
        outcome: None,
        archived_at_ms: 2_000,
        erased_at_ms: None,
        audit: None,
    }
}

pub(crate) fn prepared(offsets: std::ops::Range<i64>) -> Vec<PreparedRecord> {
    offsets
        .map(|offset| {
            PreparedRecord::new(archived(offset))
                .map_err(|(error, _)| error)
                .unwrap()
        })
        .collect()
}

/// An erasure of `subject` asked of `store` now, bounded by what it has archived.
pub(crate) fn erasure_here(store: &crate::LogStore, subject: &str, at_ms: i64) -> crate::Erasure {
    crate::Erasure {
        erasure_id: format!("{subject}@{at_ms}"),
        subject_id: subject.to_owned(),
        erased_at_ms: at_ms,
        bound: store.erasure_bound(),
    }
}

/// A record of the archive's change log at `offset`, carrying `change`.
pub(crate) fn change_record(offset: i64, change: crate::Change) -> PreparedRecord {
    let value = prost::Message::encode_to_vec(&crate::ArchiveChange {
        change: Some(change.clone()),
        archive: "retrace-archive".into(),
    });
    let record = ArchivedRecord {
        key: RecordKey {
            topic: "retrace.archive.changes".into(),
            partition: 0,
            epoch: 0,
            offset,
        },
        message_key: None,
        value: Some(value),
        headers: Vec::new(),
        kafka_timestamp_ms: Some(offset),
        time_ms: offset,
        kind: RecordKind::Change,
        problem: None,
        ids: None,
        outcome: None,
        archived_at_ms: offset,
        erased_at_ms: None,
        audit: None,
    };
    PreparedRecord::new(record)
        .map_err(|(error, _)| error)
        .unwrap()
        .with_change(change)
}
