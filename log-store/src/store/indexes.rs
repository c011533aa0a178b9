//! The secondary indexes' layout: which entries a record gets, and where each index keeps
//! the record key it points at.

use fjall::Keyspace;

use super::{Inner, check_id};
use crate::{ArchivedRecord, Mark, RecordKind, StoreError, keys};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Index {
    ByTransaction,
    BySubject,
    ByEvent,
    ByTime,
    Outcomes,
    Flagged,
    Marks,
}

pub(super) type IndexEntry = (Index, Vec<u8>, Vec<u8>);

/// The index entries that point at `record`, stored under `key`.
pub(super) fn index_entries(
    record: &ArchivedRecord,
    key: &[u8],
) -> Result<Vec<IndexEntry>, StoreError> {
    let time = record.time_ms;
    let mut entries = vec![(
        Index::ByTime,
        keys::id_time_record(&record.key.topic, time, key),
        Vec::new(),
    )];
    if let Some(ids) = &record.ids {
        check_id("transaction_id", &ids.transaction_id)?;
        check_id("event_id", &ids.event_id)?;
        if !ids.transaction_id.is_empty() {
            entries.push((
                Index::ByTransaction,
                keys::id_time_record(&ids.transaction_id, time, key),
                Vec::new(),
            ));
            for subject in &ids.subject_ids {
                check_id("subject_id", subject)?;
                entries.push((
                    Index::BySubject,
                    keys::id_pair(subject, ids.transaction_id.as_bytes()),
                    keys::time(time).to_vec(),
                ));
            }
        }
        if !ids.event_id.is_empty() {
            entries.push((
                Index::ByEvent,
                keys::id_record(&ids.event_id, key),
                Vec::new(),
            ));
        }
    }
    if let Some(mark) = mark_of(record) {
        let ids = record
            .ids
            .as_ref()
            .expect("only records with ids are marked");
        entries.push((
            Index::Marks,
            keys::mark(mark_byte(mark), time, &ids.transaction_id),
            Vec::new(),
        ));
    }
    if let Some(outcome) = &record.outcome {
        check_id("outcome event_id", &outcome.event_id)?;
        entries.push((
            Index::Outcomes,
            keys::id_record(&outcome.event_id, key),
            Vec::new(),
        ));
    }
    if record.kind.is_flagged() {
        entries.push((Index::Flagged, key.to_vec(), Vec::new()));
    }
    Ok(entries)
}

/// Roots start a transaction; failure outcomes mark it failed.
fn mark_of(record: &ArchivedRecord) -> Option<Mark> {
    let ids = record
        .ids
        .as_ref()
        .filter(|ids| !ids.transaction_id.is_empty())?;
    match &record.outcome {
        Some(outcome) if outcome.failed => Some(Mark::Failure),
        Some(_) => None,
        None if ids.causation_id.is_empty()
            && matches!(record.kind, RecordKind::Envelope | RecordKind::HeadersOnly) =>
        {
            Some(Mark::Start)
        }
        None => None,
    }
}

pub(super) fn mark_byte(mark: Mark) -> u8 {
    match mark {
        Mark::Start => b's',
        Mark::Failure => b'f',
    }
}

impl Inner {
    pub(super) fn keyspace(&self, index: Index) -> &Keyspace {
        match index {
            Index::ByTransaction => &self.by_transaction,
            Index::BySubject => &self.by_subject,
            Index::ByEvent => &self.by_event,
            Index::ByTime => &self.by_time,
            Index::Outcomes => &self.outcomes,
            Index::Flagged => &self.flagged,
            Index::Marks => &self.marks,
        }
    }
}

/// The record key at the end of an index key of index `name`.
pub(super) fn record_key_suffix<'k>(name: &str, key: &'k [u8]) -> Option<&'k [u8]> {
    match name {
        "flagged" => Some(key),
        "by_event" | "outcomes" => keys::after_id(key),
        _ => keys::after_id(key)
            .and_then(keys::split_time)
            .map(|(_, record)| record),
    }
}
