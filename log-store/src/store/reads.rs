//! Reading records back: by key, by partition and offset, and through the indexes, a page
//! at a time.

use std::collections::HashMap;
use std::ops::Bound;

use fjall::Keyspace;

use super::indexes::{mark_byte, record_key_suffix};
use super::{Inner, LogStore, check_id, dangling};
use crate::{
    ArchivedRecord, Mark, MarkedTransaction, Page, RecordKey, StoreError, SubjectTransaction,
    codec, keys,
};

impl LogStore {
    pub fn get(&self, key: &RecordKey) -> Result<Option<ArchivedRecord>, StoreError> {
        if !keys::fits(key) {
            return Ok(None);
        }
        self.inner.load(&keys::record(key))
    }

    /// Every record of a transaction, outcomes included, in time order.
    pub fn transaction(&self, transaction_id: &str) -> Result<Vec<ArchivedRecord>, StoreError> {
        check_id("transaction_id", transaction_id)?;
        let inner = &*self.inner;
        inner
            .by_transaction
            .prefix(keys::id_prefix(transaction_id))
            .map(|guard| {
                let key = guard.key().map_err(self.error("read a trace"))?;
                inner.record_at_end_of("by_transaction", &key)
            })
            .collect()
    }

    /// Every archived copy of an event (more than one: it was published more than once).
    pub fn event(&self, event_id: &str) -> Result<Vec<ArchivedRecord>, StoreError> {
        check_id("event_id", event_id)?;
        self.inner.by_id(&self.inner.by_event, "by_event", event_id)
    }

    /// The outcomes reported for an event, in archive order.
    pub fn outcomes(&self, event_id: &str) -> Result<Vec<ArchivedRecord>, StoreError> {
        check_id("event_id", event_id)?;
        self.inner.by_id(&self.inner.outcomes, "outcomes", event_id)
    }

    /// The transactions that touched `subject_id` last seen at `from_ms <= time < until_ms`,
    /// newest first. Holds one entry per such transaction in memory while it sorts them.
    pub fn subject_transactions(
        &self,
        subject_id: &str,
        window: (i64, i64),
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<SubjectTransaction>, StoreError> {
        page_subject_transactions(self.subject_seen(subject_id)?, window, limit, cursor)
    }

    /// Every transaction that touched `subject_id`, each with the newest of its records
    /// that did, in no particular order: what a shard contributes to a subject's listing
    /// across shards ([`page_subject_transactions`]).
    pub fn subject_seen(&self, subject_id: &str) -> Result<Vec<SubjectTransaction>, StoreError> {
        check_id("subject_id", subject_id)?;
        self.inner
            .by_subject
            .prefix(keys::id_prefix(subject_id))
            .map(|guard| {
                let (key, value) = guard
                    .into_inner()
                    .map_err(self.error("list a subject's transactions"))?;
                let transaction_id = keys::after_id(&key)
                    .and_then(|t| String::from_utf8(t.to_vec()).ok())
                    .ok_or_else(|| dangling("by_subject", &key))?;
                let last_seen_ms =
                    keys::parse_time(&value).ok_or_else(|| dangling("by_subject", &key))?;
                Ok(SubjectTransaction {
                    transaction_id,
                    last_seen_ms,
                })
            })
            .collect()
    }

    /// Records of `topic` with `from_ms <= time < until_ms`, oldest first.
    pub fn records_by_time(
        &self,
        topic: &str,
        from_ms: i64,
        until_ms: i64,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<ArchivedRecord>, StoreError> {
        check_id("topic", topic)?;
        let start = keys::id_time(topic, from_ms);
        let end = keys::id_time(topic, until_ms);
        self.inner
            .page(&self.inner.by_time, "by_time", start, end, limit, cursor)
    }

    /// Records of `topic` (of one `partition`, or all of them in partition order) at
    /// `from_offset` or later, in epoch then offset order: `from_offset` applies to each
    /// epoch of a partition.
    pub fn records(
        &self,
        topic: &str,
        partition: Option<i32>,
        from_offset: i64,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<ArchivedRecord>, StoreError> {
        check_id("topic", topic)?;
        let start = |partition: i32, offset: i64| {
            keys::record(&RecordKey {
                topic: topic.to_owned(),
                partition,
                epoch: 0,
                offset: offset.clamp(0, RecordKey::MAX_OFFSET),
            })
        };
        let (start, end) = match partition {
            Some(p) => (start(p, from_offset), keys::partition_end(topic, p)),
            None => (start(0, 0), keys::partition_end(topic, i32::MAX)),
        };
        let lower = resume_after(cursor, &start, &end)?;
        let inner = &*self.inner;
        let mut items = Vec::new();
        for guard in inner.records.range((lower, Bound::Included(end))) {
            let (key, value) = guard.into_inner().map_err(inner.error("read records"))?;
            let record_key = keys::parse_record(&key).ok_or_else(|| dangling("records", &key))?;
            if record_key.offset < from_offset {
                continue;
            }
            if items.len() == limit {
                let last: &ArchivedRecord = items.last().expect("limit is not zero");
                return Ok(Page {
                    next_cursor: Some(keys::to_hex(&keys::record(&last.key))),
                    items,
                });
            }
            items.push(decode(record_key, &value)?);
        }
        Ok(Page {
            items,
            next_cursor: None,
        })
    }

    /// Transactions marked by `mark` with `from_ms <= time < until_ms`, newest first,
    /// resuming after `cursor`. A transaction appears once per mark (a transaction that
    /// failed twice is listed twice); callers that want each once skip repeats.
    pub fn transaction_marks(
        &self,
        mark: Mark,
        from_ms: i64,
        until_ms: i64,
        cursor: Option<&str>,
    ) -> Result<impl Iterator<Item = Result<MarkedTransaction, StoreError>> + use<>, StoreError>
    {
        let start = keys::mark_time(mark_byte(mark), from_ms);
        let end = keys::mark_time(mark_byte(mark), until_ms);
        let upper = match cursor {
            Some(cursor) => Bound::Excluded(
                keys::from_hex(cursor)
                    .filter(|key| *key >= start && *key < end)
                    .ok_or_else(|| StoreError::BadCursor(cursor.to_owned()))?,
            ),
            None => Bound::Excluded(end),
        };
        let entries = self
            .inner
            .marks
            .range((Bound::Included(start), upper))
            .rev();
        let store = self.clone();
        Ok(entries.map(move |guard| {
            let key = guard.key().map_err(store.error("list transactions"))?;
            let (time_ms, transaction) = keys::split_mark(&key)
                .and_then(|(_, time, transaction)| {
                    Some((time, String::from_utf8(transaction.to_vec()).ok()?))
                })
                .ok_or_else(|| dangling("marks", &key))?;
            Ok(MarkedTransaction {
                transaction_id: transaction,
                time_ms,
                cursor: keys::to_hex(&key),
            })
        }))
    }

    /// Untraceable and malformed records, in key order.
    pub fn flagged(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<ArchivedRecord>, StoreError> {
        self.inner.page(
            &self.inner.flagged,
            "flagged",
            Vec::new(),
            vec![0xff],
            limit,
            cursor,
        )
    }

    /// The untraceable and malformed records of `topic` only (every partition and epoch), in
    /// key order: e.g. the audit topic's records that were not chained.
    pub fn flagged_in(
        &self,
        topic: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<ArchivedRecord>, StoreError> {
        let start = keys::id_prefix(topic);
        let mut end = start.clone();
        // `topic \0` is followed by every key of the topic, and by none of another's.
        *end.last_mut()
            .expect("an id prefix ends with its terminator") = 1;
        self.inner
            .page(&self.inner.flagged, "flagged", start, end, limit, cursor)
    }
}

impl Inner {
    fn load(&self, key: &[u8]) -> Result<Option<ArchivedRecord>, StoreError> {
        let Some(bytes) = self.records.get(key).map_err(self.error("read a record"))? else {
            return Ok(None);
        };
        let record_key = keys::parse_record(key).ok_or_else(|| dangling("records", key))?;
        decode(record_key, &bytes).map(Some)
    }

    fn by_id(
        &self,
        index: &Keyspace,
        name: &'static str,
        id: &str,
    ) -> Result<Vec<ArchivedRecord>, StoreError> {
        index
            .prefix(keys::id_prefix(id))
            .map(|guard| {
                let key = guard.key().map_err(self.error("read an index"))?;
                self.record_at_end_of(name, &key)
            })
            .collect()
    }

    /// A page of an index whose keys end with a record key, from `start` (or after the
    /// cursor) up to `end`.
    fn page(
        &self,
        index: &Keyspace,
        name: &'static str,
        start: Vec<u8>,
        end: Vec<u8>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<ArchivedRecord>, StoreError> {
        let lower = resume_after(cursor, &start, &end)?;
        let mut items = Vec::new();
        let mut last_key: Option<Vec<u8>> = None;
        for guard in index.range((lower, Bound::Excluded(end))) {
            let key = guard.key().map_err(self.error("read an index"))?;
            if items.len() == limit {
                return Ok(Page {
                    items,
                    next_cursor: last_key.as_deref().map(keys::to_hex),
                });
            }
            items.push(self.record_at_end_of(name, &key)?);
            last_key = Some(key.to_vec());
        }
        Ok(Page {
            items,
            next_cursor: None,
        })
    }

    /// Loads the record an entry of index `name` points at; a missing one means the archive
    /// is damaged.
    fn record_at_end_of(
        &self,
        name: &'static str,
        key: &[u8],
    ) -> Result<ArchivedRecord, StoreError> {
        let record = record_key_suffix(name, key).ok_or_else(|| dangling(name, key))?;
        self.load(record)?.ok_or_else(|| dangling(name, key))
    }
}

fn decode(key: RecordKey, bytes: &[u8]) -> Result<ArchivedRecord, StoreError> {
    codec::decode(key.clone(), bytes).map_err(|source| StoreError::Corrupt {
        key: key.to_string(),
        source,
    })
}

/// Where a listing over `start..end` resumes: just after the key its cursor names.
fn resume_after(
    cursor: Option<&str>,
    start: &[u8],
    end: &[u8],
) -> Result<Bound<Vec<u8>>, StoreError> {
    match cursor {
        Some(cursor) => keys::from_hex(cursor)
            .filter(|key| key.as_slice() >= start && key.as_slice() <= end)
            .map(Bound::Excluded)
            .ok_or_else(|| StoreError::BadCursor(cursor.to_owned())),
        None => Ok(Bound::Included(start.to_vec())),
    }
}

/// A page of a subject's transactions last seen at `from_ms <= time < until_ms`, newest
/// first, from `seen` (a transaction may be in it more than once, as several shards saw it:
/// it is listed at the newest).
pub fn page_subject_transactions(
    seen: Vec<SubjectTransaction>,
    (from_ms, until_ms): (i64, i64),
    limit: usize,
    cursor: Option<&str>,
) -> Result<Page<SubjectTransaction>, StoreError> {
    let after = cursor.map(parse_subject_cursor).transpose()?;
    let mut newest: HashMap<String, i64> = HashMap::with_capacity(seen.len());
    for entry in seen {
        let time = newest
            .entry(entry.transaction_id)
            .or_insert(entry.last_seen_ms);
        *time = (*time).max(entry.last_seen_ms);
    }
    let mut found: Vec<(i64, String)> = newest
        .into_iter()
        .map(|(transaction, time)| (time, transaction))
        .filter(|(time, _)| (from_ms..until_ms).contains(time))
        .collect();
    found.sort_unstable_by(|a, b| b.cmp(a));
    let start = after.map_or(0, |after| found.partition_point(|item| *item >= after));
    let page: Vec<_> = found.iter().skip(start).take(limit).cloned().collect();
    let next_cursor = (start + page.len() < found.len())
        .then(|| page.last().map(subject_cursor))
        .flatten();
    Ok(Page {
        items: page
            .into_iter()
            .map(|(last_seen_ms, transaction_id)| SubjectTransaction {
                transaction_id,
                last_seen_ms,
            })
            .collect(),
        next_cursor,
    })
}

fn subject_cursor((time, transaction): &(i64, String)) -> String {
    let mut bytes = keys::time(*time).to_vec();
    bytes.extend_from_slice(transaction.as_bytes());
    keys::to_hex(&bytes)
}

fn parse_subject_cursor(cursor: &str) -> Result<(i64, String), StoreError> {
    let bad = || StoreError::BadCursor(cursor.to_owned());
    let bytes = keys::from_hex(cursor).ok_or_else(bad)?;
    let (time, transaction) = keys::split_time(&bytes).ok_or_else(bad)?;
    Ok((
        time,
        String::from_utf8(transaction.to_vec()).map_err(|_| bad())?,
    ))
}
