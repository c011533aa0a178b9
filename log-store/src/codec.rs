//! On-disk encoding of a record: a protobuf message, so the format can grow fields without
//! breaking archives already written (same rules as `proto/README.md`).

use prost::Message;

use crate::{ArchivedRecord, EventIds, Header, OutcomeRef, RecordKey, RecordKind};

#[derive(Clone, PartialEq, Message)]
struct StoredRecord {
    #[prost(bytes = "vec", optional, tag = "1")]
    message_key: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    value: Option<Vec<u8>>,
    #[prost(message, repeated, tag = "3")]
    headers: Vec<StoredHeader>,
    #[prost(int64, optional, tag = "4")]
    kafka_timestamp_ms: Option<i64>,
    #[prost(int64, tag = "5")]
    time_ms: i64,
    #[prost(int32, tag = "6")]
    kind: i32,
    #[prost(string, optional, tag = "7")]
    problem: Option<String>,
    #[prost(message, optional, tag = "8")]
    ids: Option<StoredIds>,
    #[prost(string, optional, tag = "9")]
    outcome_of: Option<String>,
    #[prost(int64, tag = "10")]
    archived_at_ms: i64,
    #[prost(bool, tag = "11")]
    outcome_failed: bool,
    #[prost(int64, optional, tag = "12")]
    erased_at_ms: Option<i64>,
}

#[derive(Clone, PartialEq, Message)]
struct StoredHeader {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(bytes = "vec", optional, tag = "2")]
    value: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
struct StoredIds {
    #[prost(string, tag = "1")]
    event_id: String,
    #[prost(string, tag = "2")]
    transaction_id: String,
    #[prost(string, tag = "3")]
    causation_id: String,
    #[prost(string, repeated, tag = "4")]
    subject_ids: Vec<String>,
    #[prost(string, tag = "5")]
    source: String,
    #[prost(string, tag = "6")]
    event_type: String,
}

/// Consumes the record: the write path encodes each record once and copies nothing.
pub(crate) fn encode(record: ArchivedRecord) -> Vec<u8> {
    StoredRecord {
        message_key: record.message_key,
        value: record.value,
        headers: record
            .headers
            .into_iter()
            .map(|h| StoredHeader {
                name: h.name,
                value: h.value,
            })
            .collect(),
        kafka_timestamp_ms: record.kafka_timestamp_ms,
        time_ms: record.time_ms,
        kind: record.kind as i32,
        problem: record.problem,
        ids: record.ids.map(|ids| StoredIds {
            event_id: ids.event_id,
            transaction_id: ids.transaction_id,
            causation_id: ids.causation_id,
            subject_ids: ids.subject_ids,
            source: ids.source,
            event_type: ids.event_type,
        }),
        outcome_failed: record.outcome.as_ref().is_some_and(|o| o.failed),
        outcome_of: record.outcome.map(|o| o.event_id),
        archived_at_ms: record.archived_at_ms,
        erased_at_ms: record.erased_at_ms,
    }
    .encode_to_vec()
}

pub(crate) fn decode(key: RecordKey, bytes: &[u8]) -> Result<ArchivedRecord, prost::DecodeError> {
    let stored = StoredRecord::decode(bytes)?;
    Ok(ArchivedRecord {
        key,
        message_key: stored.message_key,
        value: stored.value,
        headers: stored
            .headers
            .into_iter()
            .map(|h| Header {
                name: h.name,
                value: h.value,
            })
            .collect(),
        kafka_timestamp_ms: stored.kafka_timestamp_ms,
        time_ms: stored.time_ms,
        kind: RecordKind::from_i32(stored.kind),
        problem: stored.problem,
        ids: stored.ids.map(|ids| EventIds {
            event_id: ids.event_id,
            transaction_id: ids.transaction_id,
            causation_id: ids.causation_id,
            subject_ids: ids.subject_ids,
            source: ids.source,
            event_type: ids.event_type,
        }),
        outcome: stored.outcome_of.map(|event_id| OutcomeRef {
            event_id,
            failed: stored.outcome_failed,
        }),
        archived_at_ms: stored.archived_at_ms,
        erased_at_ms: stored.erased_at_ms,
        audit: None,
    })
}
