//! [`LogStore`]: the archive's keyspaces, its atomic write path, and its reads.

use std::collections::HashMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::{
    AppendSummary, ArchivedRecord, ConsistencyReport, Page, Position, RecordKey, StoreError,
    SubjectTransaction, codec, keys,
};

/// The on-disk format this build reads and writes.
const FORMAT_VERSION: u32 = 1;
const FORMAT_KEY: &str = "format_version";

/// Memory the engine may use, whatever the archive's size.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Block cache for reads.
    pub cache_bytes: u64,
    /// Unflushed writes each keyspace holds in memory before they go to a disk table; the
    /// archive has nine keyspaces.
    pub memtable_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_bytes: 64 << 20,
            memtable_bytes: 32 << 20,
        }
    }
}

/// The archive. Cheap to clone; clones share one open database. One writer at a time
/// ([`LogStore::append`] serialises writers), any number of readers.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    db: Database,
    /// record key → encoded record.
    records: Keyspace,
    /// transaction \0 time record-key → ().
    by_transaction: Keyspace,
    /// subject \0 transaction → time last seen.
    by_subject: Keyspace,
    /// event id \0 record-key → (). More than one entry: the event was published twice.
    by_event: Keyspace,
    /// topic \0 time record-key → ().
    by_time: Keyspace,
    /// event id \0 record-key of an outcome → ().
    outcomes: Keyspace,
    /// record-key → (), for untraceable and malformed records.
    flagged: Keyspace,
    /// topic \0 partition → next offset to archive.
    positions: Keyspace,
    meta: Keyspace,
    /// The `positions` keyspace, in memory; also the writers' lock.
    next_offsets: Mutex<HashMap<(String, i32), i64>>,
}

impl LogStore {
    /// Opens the archive in `path`, creating it if needed.
    pub fn open(path: impl AsRef<Path>, options: &StoreOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let open_error = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let db = Database::builder(&path)
            .cache_size(options.cache_bytes)
            .open()
            .map_err(open_error)?;
        let keyspace = |name: &str| {
            db.keyspace(name, || {
                KeyspaceCreateOptions::default().max_memtable_size(options.memtable_bytes)
            })
            .map_err(open_error)
        };
        let inner = Inner {
            records: keyspace("records")?,
            by_transaction: keyspace("by_transaction")?,
            by_subject: keyspace("by_subject")?,
            by_event: keyspace("by_event")?,
            by_time: keyspace("by_time")?,
            outcomes: keyspace("outcomes")?,
            flagged: keyspace("flagged")?,
            positions: keyspace("positions")?,
            meta: keyspace("meta")?,
            next_offsets: Mutex::new(HashMap::new()),
            db,
            path,
        };
        inner.check_format()?;
        let next_offsets = inner.read_positions()?;
        *inner
            .next_offsets
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = next_offsets
            .into_iter()
            .map(|p| ((p.topic, p.partition), p.next_offset))
            .collect();
        Ok(LogStore {
            inner: Arc::new(inner),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Writes `records` and the new position of each partition they come from, in one atomic,
    /// fsynced batch. Records behind their partition's stored position are already archived
    /// and are skipped, so writing the same records again changes nothing. On error nothing
    /// is written and the same records can be appended again.
    pub fn append(&self, records: &[PreparedRecord]) -> Result<AppendSummary, StoreError> {
        let inner = &*self.inner;
        let mut next_offsets = inner
            .next_offsets
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut advanced: HashMap<(&str, i32), i64> = HashMap::new();
        let mut summary = AppendSummary::default();
        let mut batch = inner.db.batch().durability(Some(PersistMode::SyncAll));
        for record in records {
            let key = &record.key;
            let next = match advanced.get(&(key.topic.as_str(), key.partition)) {
                Some(next) => Some(*next),
                None => next_offsets
                    .get(&(key.topic.clone(), key.partition))
                    .copied(),
            };
            if key.offset < next.unwrap_or(0) {
                summary.already_archived += 1;
                continue;
            }
            for (index, index_key, value) in &record.index_entries {
                batch.insert(
                    inner.keyspace(*index),
                    index_key.as_slice(),
                    value.as_slice(),
                );
            }
            batch.insert(
                &inner.records,
                record.primary.as_slice(),
                record.encoded.as_slice(),
            );
            advanced.insert((key.topic.as_str(), key.partition), key.offset + 1);
            summary.appended += 1;
        }
        for ((topic, partition), next) in &advanced {
            batch.insert(
                &inner.positions,
                keys::id_pair(topic, &keys::partition(*partition)),
                next.to_be_bytes().to_vec(),
            );
        }
        batch
            .commit()
            .map_err(StoreError::engine("write a batch"))?;
        next_offsets.extend(
            advanced
                .into_iter()
                .map(|((topic, partition), next)| ((topic.to_owned(), partition), next)),
        );
        Ok(summary)
    }

    /// The next offset to archive in a partition; `None` when nothing of it is archived yet.
    pub fn next_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.inner
            .next_offsets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(topic.to_owned(), partition))
            .copied()
    }

    /// Every partition's position, as stored.
    pub fn positions(&self) -> Result<Vec<Position>, StoreError> {
        self.inner.read_positions()
    }

    pub fn get(&self, key: &RecordKey) -> Result<Option<ArchivedRecord>, StoreError> {
        self.inner.load(&keys::record(key))
    }

    /// Every record of a transaction, outcomes included, in time order.
    pub fn transaction(&self, transaction_id: &str) -> Result<Vec<ArchivedRecord>, StoreError> {
        let inner = &*self.inner;
        inner
            .by_transaction
            .prefix(keys::id_prefix(transaction_id))
            .map(|guard| {
                let key = guard.key().map_err(StoreError::engine("read a trace"))?;
                let record = keys::after_id(&key)
                    .and_then(keys::split_time)
                    .map(|(_, record)| record.to_vec());
                inner.load_indexed("by_transaction", &key, record)
            })
            .collect()
    }

    /// Every archived copy of an event (more than one: it was published more than once).
    pub fn event(&self, event_id: &str) -> Result<Vec<ArchivedRecord>, StoreError> {
        self.inner.by_id(&self.inner.by_event, "by_event", event_id)
    }

    /// The outcomes reported for an event, in archive order.
    pub fn outcomes(&self, event_id: &str) -> Result<Vec<ArchivedRecord>, StoreError> {
        self.inner.by_id(&self.inner.outcomes, "outcomes", event_id)
    }

    /// The transactions that touched `subject_id`, newest first. Holds one entry per such
    /// transaction in memory while it sorts them.
    pub fn subject_transactions(
        &self,
        subject_id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<SubjectTransaction>, StoreError> {
        let after = cursor.map(parse_subject_cursor).transpose()?;
        let mut found = Vec::new();
        for guard in self.inner.by_subject.prefix(keys::id_prefix(subject_id)) {
            let (key, value) = guard
                .into_inner()
                .map_err(StoreError::engine("list a subject's transactions"))?;
            let transaction = keys::after_id(&key)
                .and_then(|t| String::from_utf8(t.to_vec()).ok())
                .ok_or_else(|| dangling("by_subject", &key))?;
            let time = keys::parse_time(&value).ok_or_else(|| dangling("by_subject", &key))?;
            found.push((time, transaction));
        }
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

    /// Records of `topic` with `from_ms <= time < until_ms`, oldest first.
    pub fn records_by_time(
        &self,
        topic: &str,
        from_ms: i64,
        until_ms: i64,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<ArchivedRecord>, StoreError> {
        let start = keys::id_time(topic, from_ms);
        let end = keys::id_time(topic, until_ms);
        self.inner
            .page(&self.inner.by_time, "by_time", start, end, limit, cursor)
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

    /// Checks that every index agrees with the records, and every record with the indexes.
    /// Reads the whole archive: for tests and for operators after an incident.
    pub fn check_consistency(&self) -> Result<ConsistencyReport, StoreError> {
        self.inner.check_consistency()
    }

    /// Makes everything written so far durable; call before a clean exit so reopening is fast.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.inner
            .db
            .persist(PersistMode::SyncAll)
            .map_err(StoreError::engine("flush to disk"))
    }
}

/// A record encoded and keyed for [`LogStore::append`], with its index entries. Preparing
/// needs no access to the archive, so the writer's caller can do it while the previous batch
/// is being written.
#[derive(Debug, Clone)]
pub struct PreparedRecord {
    key: RecordKey,
    primary: Vec<u8>,
    encoded: Vec<u8>,
    index_entries: Vec<IndexEntry>,
}

impl PreparedRecord {
    /// On error the record comes back with the reason, so the caller can keep it another way.
    pub fn new(record: ArchivedRecord) -> Result<Self, (StoreError, Box<ArchivedRecord>)> {
        let primary = keys::record(&record.key);
        let index_entries = match index_entries(&record, &primary) {
            Ok(entries) => entries,
            Err(error) => return Err((error, Box::new(record))),
        };
        Ok(PreparedRecord {
            index_entries,
            key: record.key.clone(),
            primary,
            encoded: codec::encode(record),
        })
    }

    pub fn key(&self) -> &RecordKey {
        &self.key
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Index {
    ByTransaction,
    BySubject,
    ByEvent,
    ByTime,
    Outcomes,
    Flagged,
}

type IndexEntry = (Index, Vec<u8>, Vec<u8>);

/// The index entries that point at `record`, stored under `key`.
fn index_entries(record: &ArchivedRecord, key: &[u8]) -> Result<Vec<IndexEntry>, StoreError> {
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
    if let Some(event_id) = &record.outcome_of {
        check_id("outcome event_id", event_id)?;
        entries.push((Index::Outcomes, keys::id_record(event_id, key), Vec::new()));
    }
    if record.kind.is_flagged() {
        entries.push((Index::Flagged, key.to_vec(), Vec::new()));
    }
    Ok(entries)
}

impl Inner {
    fn keyspace(&self, index: Index) -> &Keyspace {
        match index {
            Index::ByTransaction => &self.by_transaction,
            Index::BySubject => &self.by_subject,
            Index::ByEvent => &self.by_event,
            Index::ByTime => &self.by_time,
            Index::Outcomes => &self.outcomes,
            Index::Flagged => &self.flagged,
        }
    }

    fn check_format(&self) -> Result<(), StoreError> {
        let found = self
            .meta
            .get(FORMAT_KEY)
            .map_err(StoreError::engine("read its format version"))?;
        match found {
            None => self
                .meta
                .insert(FORMAT_KEY, FORMAT_VERSION.to_string())
                .map_err(StoreError::engine("record its format version")),
            Some(found) if *found == *FORMAT_VERSION.to_string().as_bytes() => Ok(()),
            Some(found) => Err(StoreError::UnsupportedFormat {
                path: self.path.clone(),
                found: String::from_utf8_lossy(&found).into_owned(),
                supported: FORMAT_VERSION,
            }),
        }
    }

    fn read_positions(&self) -> Result<Vec<Position>, StoreError> {
        self.positions
            .iter()
            .map(|guard| {
                let (key, value) = guard
                    .into_inner()
                    .map_err(StoreError::engine("read partition positions"))?;
                parse_position(&key, &value).ok_or_else(|| dangling("positions", &key))
            })
            .collect()
    }

    fn load(&self, key: &[u8]) -> Result<Option<ArchivedRecord>, StoreError> {
        let Some(bytes) = self
            .records
            .get(key)
            .map_err(StoreError::engine("read a record"))?
        else {
            return Ok(None);
        };
        let record_key = keys::parse_record(key).ok_or_else(|| dangling("records", key))?;
        codec::decode(record_key.clone(), &bytes)
            .map(Some)
            .map_err(|source| StoreError::Corrupt {
                key: record_key.to_string(),
                source,
            })
    }

    /// Loads the record an index entry points at; a missing one means the archive is damaged.
    fn load_indexed(
        &self,
        index: &'static str,
        index_key: &[u8],
        record_key: Option<Vec<u8>>,
    ) -> Result<ArchivedRecord, StoreError> {
        let record_key = record_key.ok_or_else(|| dangling(index, index_key))?;
        self.load(&record_key)?
            .ok_or_else(|| dangling(index, index_key))
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
                let key = guard.key().map_err(StoreError::engine("read an index"))?;
                let record = keys::after_id(&key).map(<[u8]>::to_vec);
                self.load_indexed(name, &key, record)
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
        let lower = match cursor {
            Some(cursor) => Bound::Excluded(
                keys::from_hex(cursor)
                    .filter(|key| *key >= start && *key < end)
                    .ok_or_else(|| StoreError::BadCursor(cursor.to_owned()))?,
            ),
            None => Bound::Included(start),
        };
        let mut items = Vec::new();
        let mut last_key: Option<Vec<u8>> = None;
        for guard in index.range((lower, Bound::Excluded(end))) {
            let key = guard.key().map_err(StoreError::engine("read an index"))?;
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

    fn record_at_end_of(
        &self,
        name: &'static str,
        key: &[u8],
    ) -> Result<ArchivedRecord, StoreError> {
        let record = record_key_suffix(name, key).map(<[u8]>::to_vec);
        self.load_indexed(name, key, record)
    }

    fn check_consistency(&self) -> Result<ConsistencyReport, StoreError> {
        let mut report = ConsistencyReport::default();
        let mut last_offsets: HashMap<(String, i32), i64> = HashMap::new();
        for guard in self.records.iter() {
            let (key, value) = guard
                .into_inner()
                .map_err(StoreError::engine("scan records"))?;
            report.records += 1;
            let Some(record_key) = keys::parse_record(&key) else {
                report
                    .problems
                    .push(format!("record key {} is unreadable", keys::to_hex(&key)));
                continue;
            };
            let record = match codec::decode(record_key.clone(), &value) {
                Ok(record) => record,
                Err(error) => {
                    report
                        .problems
                        .push(format!("record {record_key} cannot be decoded: {error}"));
                    continue;
                }
            };
            let last = last_offsets
                .entry((record_key.topic.clone(), record_key.partition))
                .or_insert(record_key.offset);
            *last = (*last).max(record_key.offset);
            for (index, index_key, _) in index_entries(&record, &key)? {
                let index = self.keyspace(index);
                let present = index
                    .contains_key(&index_key)
                    .map_err(StoreError::engine("check an index entry"))?;
                if !present {
                    report.problems.push(format!(
                        "record {record_key} is missing from index {}",
                        index.name().as_ref() as &str
                    ));
                }
            }
        }
        let pointing_indexes = [
            (&self.by_transaction, "by_transaction"),
            (&self.by_event, "by_event"),
            (&self.by_time, "by_time"),
            (&self.outcomes, "outcomes"),
            (&self.flagged, "flagged"),
        ];
        for (index, name) in pointing_indexes {
            for guard in index.iter() {
                let key = guard.key().map_err(StoreError::engine("scan an index"))?;
                report.index_entries += 1;
                let target = record_key_suffix(name, &key);
                let present = match target {
                    Some(target) => self
                        .records
                        .contains_key(target)
                        .map_err(StoreError::engine("check a record"))?,
                    None => false,
                };
                if !present {
                    report.problems.push(format!(
                        "index {name} entry {} points at no record",
                        keys::to_hex(&key)
                    ));
                }
            }
        }
        for guard in self.by_subject.iter() {
            let key = guard.key().map_err(StoreError::engine("scan an index"))?;
            report.index_entries += 1;
            let transaction = keys::after_id(&key).map(|t| String::from_utf8_lossy(t).into_owned());
            let known = match &transaction {
                Some(t) => self
                    .by_transaction
                    .prefix(keys::id_prefix(t))
                    .next()
                    .is_some(),
                None => false,
            };
            if !known {
                report.problems.push(format!(
                    "index by_subject entry {} names an unknown transaction",
                    keys::to_hex(&key)
                ));
            }
        }
        for position in self.read_positions()? {
            let last = last_offsets.get(&(position.topic.clone(), position.partition));
            if last.is_none_or(|last| *last >= position.next_offset) {
                report.problems.push(format!(
                    "position of {}/{} is {} but the newest record there is {:?}",
                    position.topic, position.partition, position.next_offset, last
                ));
            }
        }
        Ok(report)
    }
}

/// The record key at the end of an index key of index `name`.
fn record_key_suffix<'k>(name: &str, key: &'k [u8]) -> Option<&'k [u8]> {
    match name {
        "flagged" => Some(key),
        "by_event" | "outcomes" => keys::after_id(key),
        _ => keys::after_id(key)
            .and_then(keys::split_time)
            .map(|(_, record)| record),
    }
}

fn parse_position(key: &[u8], value: &[u8]) -> Option<Position> {
    let topic_end = key.iter().position(|b| *b == 0)?;
    Some(Position {
        topic: String::from_utf8(key[..topic_end].to_vec()).ok()?,
        partition: i32::try_from(u32::from_be_bytes(key[topic_end + 1..].try_into().ok()?)).ok()?,
        next_offset: i64::from_be_bytes(value.try_into().ok()?),
    })
}

fn check_id(field: &'static str, value: &str) -> Result<(), StoreError> {
    if value.as_bytes().contains(&0) {
        return Err(StoreError::InvalidId {
            field,
            value: value.to_owned(),
        });
    }
    Ok(())
}

fn dangling(index: &'static str, key: &[u8]) -> StoreError {
    StoreError::Dangling {
        index,
        key: keys::to_hex(key),
    }
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

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
