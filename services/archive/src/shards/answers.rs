//! What a shard hands another that builds an answer about the whole archive: the records
//! of some transactions, a page of listing marks, a subject's transactions. Each is read
//! from this store alone; records are masked for the caller first.

use base64::Engine as _;
use retrace_api::{
    RecordsQuery, ShardMark, ShardMarks, ShardRecord, ShardRecords, ShardSubject, SubjectSeen,
};
use retrace_http::ApiError;
use retrace_log_store::{LogStore, Mark, encode_record};

use crate::masking::Masking;
use crate::reads::store_error;

/// The most transactions, or events, one request may ask the records of.
const MAX_IDS: usize = 500;

/// The most marks one request may ask for.
pub(crate) const MAX_MARKS: usize = 1_000;

/// Every record this store holds of the query's transactions and events, masked by
/// `masking` when given.
pub(crate) fn records(
    store: &LogStore,
    query: &RecordsQuery,
    masking: Option<&Masking>,
) -> Result<ShardRecords, ApiError> {
    for (field, ids) in [
        ("transactions", &query.transactions),
        ("events", &query.events),
    ] {
        if ids.len() > MAX_IDS {
            return Err(ApiError::invalid(
                field,
                format!(
                    "{} {field} asked at once; ask for at most {MAX_IDS}",
                    ids.len()
                ),
            ));
        }
    }
    let mut found = Vec::new();
    for id in &query.transactions {
        found.extend(store.transaction(id).map_err(store_error)?);
    }
    for id in &query.events {
        found.extend(store.event(id).map_err(store_error)?);
        found.extend(store.outcomes(id).map_err(store_error)?);
    }
    let records = found
        .into_iter()
        .map(|mut record| {
            if let Some(masking) = masking {
                masking.record(&mut record);
            }
            let key = record.key.clone();
            ShardRecord {
                topic: key.topic,
                partition: key.partition,
                epoch: key.epoch,
                offset: key.offset,
                stored: base64::engine::general_purpose::STANDARD.encode(encode_record(record)),
            }
        })
        .collect();
    Ok(ShardRecords { records })
}

/// Up to `limit` of this store's marks of `mark` in `window`, newest first, after `cursor`.
pub(crate) fn marks(
    store: &LogStore,
    mark: Mark,
    window: (i64, i64),
    cursor: Option<&str>,
    limit: usize,
) -> Result<ShardMarks, ApiError> {
    let marks = store
        .transaction_marks(mark, window.0, window.1, cursor)
        .map_err(store_error)?
        .take(limit)
        .map(|marked| {
            let marked = marked.map_err(store_error)?;
            Ok(ShardMark {
                transaction_id: marked.transaction_id,
                time_ms: marked.time_ms,
                cursor: marked.cursor,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(ShardMarks { marks })
}

/// Every transaction of `subject` this store holds, with when it last saw each.
pub(crate) fn subject(store: &LogStore, subject: &str) -> Result<ShardSubject, ApiError> {
    let transactions = store
        .subject_seen(subject)
        .map_err(store_error)?
        .into_iter()
        .map(|seen| SubjectSeen {
            transaction_id: seen.transaction_id,
            last_seen_ms: seen.last_seen_ms,
        })
        .collect();
    Ok(ShardSubject { transactions })
}
