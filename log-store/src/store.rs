//! [`LogStore`]: the archive's keyspaces, opening it, and its atomic write path. Reads,
//! replays, erasure and the consistency check extend it from the submodules.

pub(crate) mod changes;
mod consistency;
pub(crate) mod digest;
mod erasure;
mod incidents;
mod indexes;
pub(crate) mod reads;
mod replays;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use prost::Message;

use crate::incidents::IncidentRule;
use crate::positions::{Cursor, encode_position, now_ms, parse_position};
use crate::{
    AppendSummary, ArchivedRecord, AuditEntry, Change, LogReset, Position, RecordKey, StoreError,
    codec, keys,
};
use indexes::{Index, IndexEntry, index_entries};

/// Memory the engine may use, whatever the archive's size, and the incident rule.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Block cache for reads.
    pub cache_bytes: u64,
    /// Unflushed writes each keyspace holds in memory before they go to a disk table; the
    /// archive has sixteen keyspaces, four of them written by every batch.
    pub memtable_bytes: u64,
    /// Free space left on the archive's filesystem: below it, appends are refused (and the
    /// archive pauses ingestion) before the disk is full, so memtable flushes and
    /// compactions still have room and the engine never meets a failed write, which it
    /// cannot recover from without a restart.
    pub disk_reserve_bytes: u64,
    /// How failures group into incidents. With it, every append keeps the incident index
    /// and an open rebuilds the index when it is missing; without it (tools that copy or
    /// inspect an archive), an append marks the index stale for the next open with it.
    pub incidents: Option<Arc<dyn IncidentRule>>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_bytes: 64 << 20,
            memtable_bytes: 32 << 20,
            disk_reserve_bytes: 256 << 20,
            incidents: None,
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
    pub(crate) by_subject: Keyspace,
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
    /// The incident index: see [`incidents`].
    incidents: Keyspace,
    incident_rule: Option<Arc<dyn IncidentRule>>,
    /// `meta/incidents_built` is present: cleared by the first write made without the rule.
    incidents_built: AtomicBool,
    /// replay id → encoded [`ReplayRecord`](crate::ReplayRecord).
    pub(crate) replays: Keyspace,
    /// transaction \0 replay id → ().
    pub(crate) replays_by_transaction: Keyspace,
    /// caller's idempotency key → replay id.
    pub(crate) replay_keys: Keyspace,
    /// `p` erasure id → an erasure waiting for this replica to archive up to its bound;
    /// `d` erasure id → what the erasure did, once applied.
    pub(crate) erasures: Keyspace,
    /// sequence number → encoded, hash-chained audit record.
    pub(crate) audit: Keyspace,
    /// The newest audit record's number and hash; also the audit writers' lock.
    pub(crate) audit_head: Mutex<Option<(u64, Vec<u8>)>>,
    /// topic \0 partition → next offset to archive, then (from the first log reset on)
    /// epoch, previous next offset and reset time: see [`encode_position`].
    pub(crate) positions: Keyspace,
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
            incidents: keyspace("incidents")?,
            incident_rule: options.incidents.clone(),
            incidents_built: AtomicBool::new(false),
            replays: keyspace("replays")?,
            replays_by_transaction: keyspace("replays_by_transaction")?,
            replay_keys: keyspace("replay_keys")?,
            erasures: keyspace("erasures")?,
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
        let built = inner
            .meta
            .contains_key(incidents::BUILT_KEY)
            .map_err(inner.error("read the incident index's state"))?;
        inner.incidents_built.store(built, Ordering::Relaxed);
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
        let store = LogStore {
            inner: Arc::new(inner),
        };
        if let Some(rule) = &options.incidents
            && !built
        {
            store.rebuild_incidents(rule.as_ref())?;
            store.inner.incidents_built.store(true, Ordering::Relaxed);
        }
        Ok(store)
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
        let mut appended = Vec::new();
        let mut changes = changes::InBatch::default();
        let mut subjects_seen = HashMap::new();
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
                if *index == Index::BySubject
                    && !self.newest_sighting(&mut subjects_seen, index_key, value)?
                {
                    continue;
                }
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
            if let Some(change) = &record.change {
                self.apply_change(change, &mut batch, &mut changes)?;
            }
            if let Some(cursor) = moved {
                advanced.insert((key.topic.as_str(), key.partition), cursor);
            }
            appended.push(record);
            summary.appended += 1;
        }
        summary.incidents = self.keep_incidents(&appended, &mut batch)?;
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

    /// Whether `time`, a record's time for a (subject, transaction) entry, is its newest
    /// sighting yet, in the store and in the batch (`seen`): a subject's listing orders
    /// transactions by when each last touched it, and records arrive in any order across
    /// partitions.
    fn newest_sighting<'r>(
        &self,
        seen: &mut HashMap<&'r [u8], &'r [u8]>,
        key: &'r [u8],
        time: &'r [u8],
    ) -> Result<bool, StoreError> {
        let newer = match seen.get(key) {
            Some(newest) => time > *newest,
            None => match self
                .inner
                .by_subject
                .get(key)
                .map_err(self.error("read a subject's transaction"))?
            {
                Some(stored) => time > &*stored,
                None => true,
            },
        };
        if newer {
            seen.insert(key, time);
        }
        Ok(newer)
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

    /// Bytes the archive takes on disk.
    pub fn disk_space(&self) -> Result<u64, StoreError> {
        self.inner
            .db
            .disk_space()
            .map_err(self.error("measure its size"))
    }

    /// Memtable flushes queued and compactions running: the engine's background work, which
    /// competes with reads for the disk and the CPU. Zero once it has settled.
    pub fn background_work(&self) -> usize {
        self.inner.db.outstanding_flushes() + self.inner.db.active_compactions()
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
    /// The record's transaction, and whether it reports a failure: what decides whether
    /// the incident index looks at it.
    transaction: Option<String>,
    failure: bool,
    primary: Vec<u8>,
    encoded: Vec<u8>,
    index_entries: Vec<IndexEntry>,
    audit: Option<AuditEntry>,
    change: Option<Change>,
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
            transaction: record
                .ids
                .as_ref()
                .map(|ids| ids.transaction_id.clone())
                .filter(|id| !id.is_empty()),
            failure: record.outcome.as_ref().is_some_and(|o| o.failed),
            key: record.key.clone(),
            primary,
            audit: record.audit.clone(),
            change: None,
            encoded: codec::encode(record),
        })
    }

    /// The record carries `change`, applied in the same atomic write that keeps it.
    pub fn with_change(self, change: Change) -> Self {
        PreparedRecord {
            change: Some(change),
            ..self
        }
    }

    pub fn key(&self) -> &RecordKey {
        &self.key
    }
}

impl Inner {
    /// The error for a failed `operation`: [`StoreError::Damaged`], naming the file, when
    /// the engine found bytes that are not what was written.
    pub(crate) fn error(&self, operation: &'static str) -> impl FnOnce(fjall::Error) -> StoreError {
        move |source| crate::damage::classify(&self.path, &self.all_keyspaces(), operation, source)
    }

    pub(crate) fn all_keyspaces(&self) -> [&Keyspace; 16] {
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
            &self.erasures,
            &self.audit,
            &self.incidents,
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

pub(crate) fn dangling(index: &'static str, key: &[u8]) -> StoreError {
    StoreError::Dangling {
        index,
        key: keys::to_hex(key),
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
