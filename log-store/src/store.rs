//! [`LogStore`]: the archive's keyspaces, its atomic write path, and its reads.

use std::collections::HashMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use prost::Message;

use crate::positions::{Cursor, encode_position, now_ms, parse_position};
use crate::{
    AppendSummary, ArchivedRecord, AuditEntry, ConsistencyReport, ErasureSummary, LogReset, Mark,
    MarkedTransaction, Page, Position, RecordKey, RecordKind, ReplayRecord, StoreError,
    SubjectTransaction, codec, keys,
};

/// Memory the engine may use, whatever the archive's size.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Block cache for reads.
    pub cache_bytes: u64,
    /// Unflushed writes each keyspace holds in memory before they go to a disk table; the
    /// archive has fourteen keyspaces, four of them written by every batch.
    pub memtable_bytes: u64,
    /// Free space left on the archive's filesystem: below it, appends are refused (and the
    /// archive pauses ingestion) before the disk is full, so memtable flushes and
    /// compactions still have room and the engine never meets a failed write, which it
    /// cannot recover from without a restart.
    pub disk_reserve_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_bytes: 64 << 20,
            memtable_bytes: 32 << 20,
            disk_reserve_bytes: 256 << 20,
        }
    }
}

/// The archive. Cheap to clone; clones share one open database. One writer at a time
/// ([`LogStore::append`] serialises writers), any number of readers.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) path: PathBuf,
    disk_reserve_bytes: u64,
    pub(crate) db: Database,
    /// record key → encoded record.
    pub(crate) records: Keyspace,
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
    /// mark time transaction → (): transactions by when they started or failed.
    marks: Keyspace,
    /// replay id → encoded [`ReplayRecord`].
    replays: Keyspace,
    /// transaction \0 replay id → ().
    replays_by_transaction: Keyspace,
    /// caller's idempotency key → replay id.
    replay_keys: Keyspace,
    /// sequence number → encoded, hash-chained audit record.
    pub(crate) audit: Keyspace,
    /// The newest audit record's number and hash; also the audit writers' lock.
    pub(crate) audit_head: Mutex<Option<(u64, Vec<u8>)>>,
    /// topic \0 partition → next offset to archive, then (from the first log reset on)
    /// epoch, previous next offset and reset time: see [`encode_position`].
    positions: Keyspace,
    /// The format version and the record count.
    pub(crate) meta: Keyspace,
    /// The `positions` keyspace, in memory, as last committed. Locked only to read or
    /// replace entries, never across a write: a rebalance or `/v1/positions` reading a
    /// position does not wait for a batch's fsync.
    next_offsets: Mutex<HashMap<(String, i32), Cursor>>,
    /// Held through a whole [`LogStore::append`], so batches are written one at a time.
    writer: Mutex<()>,
    /// `meta/record_count`, in memory; changed under the writer lock.
    record_count: AtomicU64,
}

impl LogStore {
    /// Opens the archive in `path`, creating it if needed.
    pub fn open(path: impl AsRef<Path>, options: &StoreOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        crate::compact::finish_interrupted(&path)?;
        let open_error = |source| {
            if crate::damage::is_damage(&source) {
                StoreError::Damaged {
                    file: path.clone(),
                    operation: "open",
                    source,
                }
            } else {
                StoreError::Open {
                    path: path.clone(),
                    source,
                }
            }
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
            marks: keyspace("marks")?,
            replays: keyspace("replays")?,
            replays_by_transaction: keyspace("replays_by_transaction")?,
            replay_keys: keyspace("replay_keys")?,
            audit: keyspace("audit")?,
            audit_head: Mutex::new(None),
            positions: keyspace("positions")?,
            meta: keyspace("meta")?,
            next_offsets: Mutex::new(HashMap::new()),
            writer: Mutex::new(()),
            record_count: AtomicU64::new(0),
            db,
            path,
            disk_reserve_bytes: options.disk_reserve_bytes,
        };
        let records = crate::format::open(&inner)?;
        inner.record_count.store(records, Ordering::Relaxed);
        *inner
            .audit_head
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = inner.read_audit_head()?;
        let next_offsets = inner.read_positions()?;
        *inner
            .next_offsets
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = next_offsets
            .into_iter()
            .map(|p| {
                let cursor = Cursor {
                    epoch: p.epoch,
                    next_offset: p.next_offset,
                    reset: p.reset,
                };
                ((p.topic, p.partition), cursor)
            })
            .collect();
        Ok(LogStore {
            inner: Arc::new(inner),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    pub(crate) fn error(&self, operation: &'static str) -> impl FnOnce(fjall::Error) -> StoreError {
        self.inner.error(operation)
    }

    /// Writes `records` and the new position of each partition they come from, in one atomic,
    /// fsynced batch. Records behind their partition's stored position in the same epoch are
    /// already archived and are skipped, so writing the same records again changes nothing.
    /// A record of a newer epoch starts that epoch: the partition's position moves to it and
    /// records the reset ([`Position::reset`]). A record of an older epoch (read from the
    /// old log before the reset was found) is kept unless already there, without moving the
    /// position. On error nothing is written and the same records can be appended again.
    /// Refused while the filesystem would keep less free space than
    /// [`StoreOptions::disk_reserve_bytes`] after it.
    pub fn append(&self, records: &[PreparedRecord]) -> Result<AppendSummary, StoreError> {
        let inner = &*self.inner;
        let free = self.free_bytes()?;
        let batch_bytes: u64 = records.iter().map(PreparedRecord::bytes).sum();
        if free < inner.disk_reserve_bytes.saturating_add(batch_bytes) {
            return Err(StoreError::DiskReserve {
                path: inner.path.clone(),
                free,
                reserve: inner.disk_reserve_bytes,
            });
        }
        let _writer = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
        // What is committed, read once: only this writer changes it until the batch is in.
        let next_offsets = inner
            .next_offsets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut advanced: HashMap<(&str, i32), Cursor> = HashMap::new();
        let mut summary = AppendSummary::default();
        let mut batch = inner.db.batch().durability(Some(PersistMode::SyncAll));
        let mut audit_head = inner
            .audit_head
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut new_head = audit_head.clone();
        for record in records {
            let key = &record.key;
            if !keys::fits(key) {
                return Err(StoreError::KeyOutOfRange {
                    key: key.clone(),
                    max_offset: RecordKey::MAX_OFFSET,
                    max_epoch: RecordKey::MAX_EPOCH,
                });
            }
            let stored = match advanced.get(&(key.topic.as_str(), key.partition)) {
                Some(cursor) => *cursor,
                None => next_offsets
                    .get(&(key.topic.clone(), key.partition))
                    .copied()
                    .unwrap_or_default(),
            };
            let moved = match key.epoch.cmp(&stored.epoch) {
                std::cmp::Ordering::Equal if key.offset < stored.next_offset => {
                    summary.already_archived += 1;
                    continue;
                }
                std::cmp::Ordering::Equal => Some(Cursor {
                    next_offset: key.offset + 1,
                    ..stored
                }),
                std::cmp::Ordering::Greater => Some(Cursor {
                    epoch: key.epoch,
                    next_offset: key.offset + 1,
                    reset: Some(LogReset {
                        previous_next_offset: stored.next_offset,
                        at_ms: now_ms(),
                    }),
                }),
                std::cmp::Ordering::Less => {
                    let present = inner
                        .records
                        .contains_key(&record.primary)
                        .map_err(self.error("look up a record of an earlier epoch"))?;
                    if present {
                        summary.already_archived += 1;
                        continue;
                    }
                    None
                }
            };
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
            if let Some(entry) = &record.audit {
                let chained = crate::audit::AuditRecord::after(&new_head, entry.clone());
                batch.insert(&inner.audit, chained.key(), chained.encode_to_vec());
                new_head = Some((chained.seq, chained.hash));
            }
            if let Some(cursor) = moved {
                advanced.insert((key.topic.as_str(), key.partition), cursor);
            }
            summary.appended += 1;
        }
        let record_count = inner.record_count.load(Ordering::Relaxed) + summary.appended as u64;
        if summary.appended > 0 {
            batch.insert(
                &inner.meta,
                crate::format::RECORD_COUNT_KEY,
                record_count.to_be_bytes(),
            );
        }
        for ((topic, partition), cursor) in &advanced {
            batch.insert(
                &inner.positions,
                keys::id_pair(topic, &keys::partition(*partition)),
                encode_position(cursor),
            );
        }
        batch.commit().map_err(self.error("write a batch"))?;
        *audit_head = new_head;
        inner.record_count.store(record_count, Ordering::Relaxed);
        inner
            .next_offsets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(
                advanced
                    .into_iter()
                    .map(|((topic, partition), next)| ((topic.to_owned(), partition), next)),
            );
        Ok(summary)
    }

    /// Bytes an unprivileged writer may still use on the archive's filesystem.
    pub fn free_bytes(&self) -> Result<u64, StoreError> {
        let path = &self.inner.path;
        let stats = rustix::fs::statvfs(path).map_err(|errno| StoreError::FreeSpace {
            path: path.clone(),
            source: errno.into(),
        })?;
        Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
    }

    /// The next offset to archive in a partition's current epoch; `None` when nothing of it
    /// is archived yet.
    pub fn next_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.position(topic, partition).map(|p| p.next_offset)
    }

    /// A partition's position; `None` when nothing of it is archived yet.
    pub fn position(&self, topic: &str, partition: i32) -> Option<Position> {
        self.inner
            .next_offsets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(topic.to_owned(), partition))
            .map(|cursor| Position {
                topic: topic.to_owned(),
                partition,
                epoch: cursor.epoch,
                next_offset: cursor.next_offset,
                reset: cursor.reset,
            })
    }

    /// How many records the archive holds.
    pub fn record_count(&self) -> u64 {
        self.inner.record_count.load(Ordering::Relaxed)
    }

    /// Every partition's position, as stored.
    pub fn positions(&self) -> Result<Vec<Position>, StoreError> {
        self.inner.read_positions()
    }

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
                let record = keys::after_id(&key)
                    .and_then(keys::split_time)
                    .map(|(_, record)| record.to_vec());
                inner.load_indexed("by_transaction", &key, record)
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
        (from_ms, until_ms): (i64, i64),
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<SubjectTransaction>, StoreError> {
        check_id("subject_id", subject_id)?;
        let after = cursor.map(parse_subject_cursor).transpose()?;
        let mut found = Vec::new();
        for guard in self.inner.by_subject.prefix(keys::id_prefix(subject_id)) {
            let (key, value) = guard
                .into_inner()
                .map_err(self.error("list a subject's transactions"))?;
            let transaction = keys::after_id(&key)
                .and_then(|t| String::from_utf8(t.to_vec()).ok())
                .ok_or_else(|| dangling("by_subject", &key))?;
            let time = keys::parse_time(&value).ok_or_else(|| dangling("by_subject", &key))?;
            if (from_ms..until_ms).contains(&time) {
                found.push((time, transaction));
            }
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

    /// Records a new replay, findable by its id, by each of its transactions, and by its
    /// `request_key` when it has one.
    pub fn record_replay(&self, replay: &ReplayRecord) -> Result<(), StoreError> {
        check_id("replay_id", &replay.replay_id)?;
        let inner = &*self.inner;
        let mut batch = inner.db.batch().durability(Some(PersistMode::SyncAll));
        batch.insert(
            &inner.replays,
            replay.replay_id.as_bytes(),
            replay.encode_to_vec(),
        );
        for transaction in &replay.transaction_ids {
            check_id("transaction_id", transaction)?;
            batch.insert(
                &inner.replays_by_transaction,
                keys::id_pair(transaction, replay.replay_id.as_bytes()),
                Vec::new(),
            );
        }
        if !replay.request_key.is_empty() {
            batch.insert(
                &inner.replay_keys,
                replay.request_key.as_bytes(),
                replay.replay_id.as_bytes(),
            );
        }
        batch.commit().map_err(self.error("record a replay"))
    }

    /// Saves a replay's progress durably: after a crash, a replay says how far it got, and
    /// "replay again to finish" starts from the truth. (The replayer saves twice a second at
    /// most, so the sync costs little.)
    pub fn update_replay(&self, replay: &ReplayRecord) -> Result<(), StoreError> {
        let inner = &*self.inner;
        let mut batch = inner.db.batch().durability(Some(PersistMode::SyncAll));
        batch.insert(
            &inner.replays,
            replay.replay_id.as_bytes(),
            replay.encode_to_vec(),
        );
        batch
            .commit()
            .map_err(self.error("save a replay's progress"))
    }

    pub fn replay(&self, replay_id: &str) -> Result<Option<ReplayRecord>, StoreError> {
        let Some(bytes) = self
            .inner
            .replays
            .get(replay_id)
            .map_err(self.error("read a replay"))?
        else {
            return Ok(None);
        };
        ReplayRecord::decode(&*bytes)
            .map(Some)
            .map_err(|source| StoreError::Corrupt {
                key: format!("replay {replay_id}"),
                source,
            })
    }

    /// The replay made for the caller's idempotency key `request_key`, if any.
    pub fn replay_for_request(
        &self,
        request_key: &str,
    ) -> Result<Option<ReplayRecord>, StoreError> {
        let Some(replay_id) = self
            .inner
            .replay_keys
            .get(request_key)
            .map_err(self.error("look up a replay request"))?
        else {
            return Ok(None);
        };
        self.replay(&String::from_utf8_lossy(&replay_id))
    }

    /// Every replay ever recorded, in id order (UUIDv7 ids: oldest first).
    pub fn replays(&self) -> Result<Vec<ReplayRecord>, StoreError> {
        self.inner
            .replays
            .iter()
            .map(|guard| {
                let (key, value) = guard.into_inner().map_err(self.error("list replays"))?;
                ReplayRecord::decode(&*value).map_err(|source| StoreError::Corrupt {
                    key: format!("replay {}", String::from_utf8_lossy(&key)),
                    source,
                })
            })
            .collect()
    }

    /// The replays of a transaction, oldest first.
    pub fn transaction_replays(
        &self,
        transaction_id: &str,
    ) -> Result<Vec<ReplayRecord>, StoreError> {
        check_id("transaction_id", transaction_id)?;
        let mut replays = Vec::new();
        for guard in self
            .inner
            .replays_by_transaction
            .prefix(keys::id_prefix(transaction_id))
        {
            let key = guard.key().map_err(self.error("list replays"))?;
            let replay_id = keys::after_id(&key)
                .map(|id| String::from_utf8_lossy(id).into_owned())
                .ok_or_else(|| dangling("replays_by_transaction", &key))?;
            let replay = self
                .replay(&replay_id)?
                .ok_or_else(|| dangling("replays_by_transaction", &key))?;
            replays.push(replay);
        }
        replays.sort_by_key(|r| r.requested_at_ms);
        Ok(replays)
    }

    /// Removes the payload of every record that names `subject_id` among its subjects: its
    /// value, and every header but Retrace's own ids. Ids, kind, times and outcomes stay, so
    /// traces still make sense. The outcomes of the subject's transactions pass through
    /// `redact_outcome`, which returns the value to keep instead (the outcome without its
    /// free text, where a consumer may have named the person) or `None` to keep it as it is:
    /// the store does not read outcomes. The old bytes remain on disk until the archive is
    /// compacted ([`crate::compact`]).
    pub fn erase_subject(
        &self,
        subject_id: &str,
        erased_at_ms: i64,
        redact_outcome: impl Fn(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<ErasureSummary, StoreError> {
        check_id("subject_id", subject_id)?;
        let inner = &*self.inner;
        let mut summary = ErasureSummary::default();
        let mut batch = inner.db.batch().durability(Some(PersistMode::SyncAll));
        for guard in inner.by_subject.prefix(keys::id_prefix(subject_id)) {
            let key = guard
                .key()
                .map_err(self.error("list a subject's transactions"))?;
            let transaction = keys::after_id(&key)
                .map(|t| String::from_utf8_lossy(t).into_owned())
                .ok_or_else(|| dangling("by_subject", &key))?;
            summary.transactions += 1;
            for record in self.transaction(&transaction)? {
                if record.kind == RecordKind::Outcome {
                    if let Some(redacted) = record.value.as_deref().and_then(&redact_outcome) {
                        let primary = keys::record(&record.key);
                        let redacted = ArchivedRecord {
                            value: Some(redacted),
                            ..record
                        };
                        batch.insert(&inner.records, primary, codec::encode(redacted));
                        summary.outcomes += 1;
                    }
                    continue;
                }
                let touches = record
                    .ids
                    .as_ref()
                    .is_some_and(|ids| ids.subject_ids.iter().any(|s| s == subject_id));
                if !touches {
                    continue;
                }
                if record.erased_at_ms.is_some() {
                    summary.already_erased += 1;
                    continue;
                }
                let primary = keys::record(&record.key);
                let erased = ArchivedRecord {
                    value: None,
                    headers: record
                        .headers
                        .into_iter()
                        .filter(|h| h.name.starts_with("retrace-") || h.name == "traceparent")
                        .collect(),
                    erased_at_ms: Some(erased_at_ms),
                    ..record
                };
                batch.insert(&inner.records, primary, codec::encode(erased));
                summary.records += 1;
            }
        }
        batch
            .commit()
            .map_err(self.error("erase a subject's payloads"))?;
        Ok(summary)
    }

    /// Bytes the archive takes on disk.
    pub fn disk_space(&self) -> Result<u64, StoreError> {
        self.inner
            .db
            .disk_space()
            .map_err(self.error("measure its size"))
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
            .map_err(self.error("flush to disk"))
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
    audit: Option<AuditEntry>,
}

impl PreparedRecord {
    /// What the record adds to the journal: its encoding, its key and its index entries.
    fn bytes(&self) -> u64 {
        let indexes: usize = self
            .index_entries
            .iter()
            .map(|(_, key, value)| key.len() + value.len())
            .sum();
        (self.primary.len() + self.encoded.len() + indexes) as u64
    }

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
            audit: record.audit.clone(),
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
    Marks,
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

fn mark_byte(mark: Mark) -> u8 {
    match mark {
        Mark::Start => b's',
        Mark::Failure => b'f',
    }
}

impl Inner {
    /// The error for a failed `operation`: [`StoreError::Damaged`], naming the file, when
    /// the engine found bytes that are not what was written.
    pub(crate) fn error(&self, operation: &'static str) -> impl FnOnce(fjall::Error) -> StoreError {
        move |source| crate::damage::classify(&self.path, &self.all_keyspaces(), operation, source)
    }

    fn keyspace(&self, index: Index) -> &Keyspace {
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

    pub(crate) fn all_keyspaces(&self) -> [&Keyspace; 14] {
        [
            &self.records,
            &self.by_transaction,
            &self.by_subject,
            &self.by_event,
            &self.by_time,
            &self.outcomes,
            &self.flagged,
            &self.marks,
            &self.positions,
            &self.meta,
            &self.replays,
            &self.replays_by_transaction,
            &self.replay_keys,
            &self.audit,
        ]
    }

    fn read_audit_head(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let Some(guard) = self.audit.last_key_value() else {
            return Ok(None);
        };
        let (key, value) = guard
            .into_inner()
            .map_err(self.error("read the audit trail's head"))?;
        let record =
            crate::audit::AuditRecord::decode(&*value).map_err(|source| StoreError::Corrupt {
                key: format!("audit record {}", keys::to_hex(&key)),
                source,
            })?;
        Ok(Some((record.seq, record.hash)))
    }

    fn read_positions(&self) -> Result<Vec<Position>, StoreError> {
        self.positions
            .iter()
            .map(|guard| {
                let (key, value) = guard
                    .into_inner()
                    .map_err(self.error("read partition positions"))?;
                parse_position(&key, &value).ok_or_else(|| dangling("positions", &key))
            })
            .collect()
    }

    fn load(&self, key: &[u8]) -> Result<Option<ArchivedRecord>, StoreError> {
        let Some(bytes) = self.records.get(key).map_err(self.error("read a record"))? else {
            return Ok(None);
        };
        let record_key = keys::parse_record(key).ok_or_else(|| dangling("records", key))?;
        decode(record_key, &bytes).map(Some)
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
                let key = guard.key().map_err(self.error("read an index"))?;
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
        let mut last_offsets: HashMap<(String, i32, u32), i64> = HashMap::new();
        for guard in self.records.iter() {
            let (key, value) = guard.into_inner().map_err(self.error("scan records"))?;
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
                .entry((
                    record_key.topic.clone(),
                    record_key.partition,
                    record_key.epoch,
                ))
                .or_insert(record_key.offset);
            *last = (*last).max(record_key.offset);
            for (index, index_key, _) in index_entries(&record, &key)? {
                let index = self.keyspace(index);
                let present = index
                    .contains_key(&index_key)
                    .map_err(self.error("check an index entry"))?;
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
                let key = guard.key().map_err(self.error("scan an index"))?;
                report.index_entries += 1;
                let target = record_key_suffix(name, &key);
                let present = match target {
                    Some(target) => self
                        .records
                        .contains_key(target)
                        .map_err(self.error("check a record"))?,
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
        let transactions_named_by = self
            .by_subject
            .iter()
            .map(|guard| {
                (
                    "by_subject",
                    guard,
                    keys::after_id as fn(&[u8]) -> Option<&[u8]>,
                )
            })
            .chain(self.marks.iter().map(|guard| {
                (
                    "marks",
                    guard,
                    keys::mark_transaction as fn(&[u8]) -> Option<&[u8]>,
                )
            }));
        for (name, guard, transaction_of) in transactions_named_by {
            let key = guard.key().map_err(self.error("scan an index"))?;
            report.index_entries += 1;
            let transaction = transaction_of(&key).map(|t| String::from_utf8_lossy(t).into_owned());
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
                    "index {name} entry {} names an unknown transaction",
                    keys::to_hex(&key)
                ));
            }
        }
        for position in self.read_positions()? {
            let last =
                last_offsets.get(&(position.topic.clone(), position.partition, position.epoch));
            if last.is_none_or(|last| *last >= position.next_offset) {
                report.problems.push(format!(
                    "position of {}/{} is {} in epoch {} but the newest record there is {:?}",
                    position.topic, position.partition, position.next_offset, position.epoch, last
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
