//! Offline resharding: the archive of a stopped shard `i/N` split into the archives of the
//! shards `i/2N` and `(i+N)/2N`, which own its partitions once the number of shards doubles
//! (partition `p` of a data topic belongs to shard `p mod count`). Unlike rebuilding the new
//! shards from Kafka, it keeps everything the old shard held, records Kafka no longer
//! retains included.
//!
//! What each new shard gets, and how:
//! - The records of its data partitions, every epoch's, and of the topics every shard reads
//!   whole (the change log, the audit topic), appended through [`LogStore::append`] so that
//!   every index is made as ingest makes it. A stored record decodes and encodes back to the
//!   same fields, an erased payload staying erased, so each partition's digest is the old
//!   shard's.
//! - Those partitions' positions, copied as stored (epoch, next offset, log reset), so it
//!   resumes where the old shard stood, reading nothing twice and skipping nothing.
//! - What the change log's records did, copied: replays (by id, transaction and idempotency
//!   key) and erasures, applied and pending. The records themselves are appended without
//!   their change: the store does not read a change out of a record (the archive service
//!   checks its signature and its archive), and the old shard already decided which changes
//!   applied and which replay claim won. A pending erasure's bound loses the marks of the
//!   other new shard's partitions, which this one never archives, so it waits only for its
//!   own partitions and erases here what the old shard would have.
//! - The audit trail, copied as it is: the same numbers and hashes, so it verifies, and a
//!   head hash noted before the split (an export, a report) still names one of its records.
//!   Re-appending the entries would chain them anew under other hashes. The audit topic's
//!   records are appended without their entry (a stored record does not keep it), so no
//!   entry is chained twice.
//! - The incident index, rebuilt from its own records: by the open that finishes the split
//!   when `options` carries the rule, else by the archive's first open. Copying it would keep
//!   failures whose records went to the other shard. As after any rebuild, when an incident
//!   last opened or resolved, and how often it reopened, start over from the records.
//!
//! Each new shard is written into `<target>.partial`, and both are renamed into place once
//! both are whole: an interrupted split leaves `.partial` directories, which the next split
//! discards, and the old shard's archive untouched. Only a crash between the two renames
//! leaves one target in place: remove it and split again.

use std::path::{Path, PathBuf};

use fjall::PersistMode;
use prost::Message;

use crate::backup::{in_use, io, not_empty, remove_dir};
use crate::compact::{copy_keyspace, sibling};
use crate::positions::parse_position;
use crate::store::changes::PENDING;
use crate::store::{LogStore, dangling};
use crate::{Erasure, Position, PreparedRecord, StoreError, StoreOptions, codec, keys};

/// Records appended, or index entries rewritten, per atomic batch.
const BATCH: usize = 1_000;

/// What [`split`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitSummary {
    /// Shard `index/2N` first, then `(index+N)/2N`.
    pub shards: [SplitShard; 2],
}

/// One new shard's archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitShard {
    pub path: PathBuf,
    /// Its place among the new shards: `index/count`.
    pub index: u32,
    pub count: u32,
    pub records: u64,
    /// Where it resumes in each partition it holds: its data partitions' and those of the
    /// topics every shard reads whole.
    pub positions: Vec<Position>,
}

/// Splits the archive at `source`, shard `index/count`, into new archives for shards
/// `index/(2*count)` (`targets[0]`) and `(index+count)/(2*count)` (`targets[1]`). The topics
/// in `unsharded` are read whole by every shard (the change log and the audit topic): both
/// new shards get them. The source must be stopped (a running archive holds it); each target
/// must be new or empty. See the module documentation for what each new shard holds.
pub fn split(
    source: &Path,
    index: u32,
    count: u32,
    unsharded: &[&str],
    targets: [&Path; 2],
    options: &StoreOptions,
) -> Result<SplitSummary, StoreError> {
    let plan = Plan::new(source, index, count, unsharded, targets)?;
    if not_empty(source)?.is_none() {
        return Err(refused(
            source,
            "there is no archive there: give the stopped shard's data directory".into(),
        ));
    }
    if in_use(source)? {
        return Err(refused(
            source,
            format!("a running archive has it open: stop shard {index}/{count} first"),
        ));
    }
    for target in targets {
        if let Some(reason) = not_empty(target)? {
            return Err(refused(
                target,
                format!("{reason}: split into new or empty directories"),
            ));
        }
    }
    let partials = targets.map(|target| sibling(target, "partial"));
    for partial in &partials {
        remove_dir(partial)?;
    }
    let written = write(&plan, &partials, options).and_then(|()| {
        Ok([
            finish(&plan, &partials[0], targets[0], 0, options)?,
            finish(&plan, &partials[1], targets[1], 1, options)?,
        ])
    });
    let shards = match written {
        Ok(shards) => shards,
        Err(error) => {
            // The next split clears them too; removing them now gives the space back.
            for partial in &partials {
                let _ = std::fs::remove_dir_all(partial);
            }
            return Err(error);
        }
    };
    for (partial, target) in partials.iter().zip(targets) {
        std::fs::rename(partial, target)
            .map_err(io(partial, "put a new shard's archive in place"))?;
    }
    Ok(SplitSummary { shards })
}

/// Opens the new shard written into `partial` with the caller's options, which rebuilds the
/// incident index when they carry the rule, and says what it holds.
fn finish(
    plan: &Plan,
    partial: &Path,
    target: &Path,
    which: usize,
    options: &StoreOptions,
) -> Result<SplitShard, StoreError> {
    let store = LogStore::open(partial, options)?;
    Ok(SplitShard {
        path: target.to_path_buf(),
        index: plan.new_index(which),
        count: plan.count * 2,
        records: store.record_count(),
        positions: store.positions()?,
    })
}

/// Which partitions go where.
struct Plan<'a> {
    source: &'a Path,
    index: u32,
    count: u32,
    unsharded: &'a [&'a str],
}

impl<'a> Plan<'a> {
    fn new(
        source: &'a Path,
        index: u32,
        count: u32,
        unsharded: &'a [&'a str],
        targets: [&Path; 2],
    ) -> Result<Self, StoreError> {
        if index >= count || count.checked_mul(2).is_none() {
            return Err(refused(
                source,
                format!(
                    "there is no shard {index}/{count} to split: the shard's number is below \
                     the count, which is at most {}",
                    u32::MAX / 2
                ),
            ));
        }
        if targets[0] == targets[1] {
            return Err(refused(
                targets[1],
                "both new shards would be written there: give two directories".into(),
            ));
        }
        if let Some(target) = targets.into_iter().find(|target| *target == source) {
            return Err(refused(
                target,
                "it is the archive being split: write the new shards elsewhere".into(),
            ));
        }
        Ok(Plan {
            source,
            index,
            count,
            unsharded,
        })
    }

    fn new_index(&self, which: usize) -> u32 {
        if which == 0 {
            self.index
        } else {
            self.index + self.count
        }
    }

    /// Which new shards take `topic`/`partition`; `None` when the old shard did not own it.
    fn takers(&self, topic: &str, partition: i32) -> Option<[bool; 2]> {
        if self.unsharded.contains(&topic) {
            return Some([true, true]);
        }
        let shard = u64::from(u32::try_from(partition).ok()?) % (u64::from(self.count) * 2);
        [0, 1]
            .into_iter()
            .find(|which| u64::from(self.new_index(*which)) == shard)
            .map(|which| [which == 0, which == 1])
    }

    /// [`Self::takers`], refusing a partition the old shard does not own: it was split with
    /// the wrong shard number, and the partition would go nowhere.
    fn owned(&self, topic: &str, partition: i32) -> Result<[bool; 2], StoreError> {
        self.takers(topic, partition).ok_or_else(|| {
            refused(
                self.source,
                format!(
                    "it holds {topic}/{partition}, which shard {}/{} does not own: give the \
                     shard number this archive ran as",
                    self.index, self.count
                ),
            )
        })
    }
}

fn refused(path: &Path, reason: String) -> StoreError {
    StoreError::SplitRefused {
        path: path.to_path_buf(),
        reason,
    }
}

/// Writes both new shards into `partials`, durably.
fn write(plan: &Plan, partials: &[PathBuf; 2], options: &StoreOptions) -> Result<(), StoreError> {
    // Without the incident rule: the index is rebuilt once, at the end, not batch by batch.
    let options = StoreOptions {
        incidents: None,
        ..options.clone()
    };
    let source = LogStore::open(plan.source, &options)?;
    let mut positions = Vec::new();
    for guard in source.inner().positions.iter() {
        let (key, value) = guard
            .into_inner()
            .map_err(source.error("read the positions to split"))?;
        let position = parse_position(&key, &value).ok_or_else(|| dangling("positions", &key))?;
        positions.push((plan.owned(&position.topic, position.partition)?, key, value));
    }
    let targets = [
        LogStore::open(&partials[0], &options)?,
        LogStore::open(&partials[1], &options)?,
    ];
    copy_records(plan, &source, &targets)?;
    for (which, target) in targets.iter().enumerate() {
        let (from, to) = (source.inner(), target.inner());
        let whole = [
            (&from.replays, &to.replays),
            (&from.replays_by_transaction, &to.replays_by_transaction),
            (&from.replay_keys, &to.replay_keys),
            (&from.erasures, &to.erasures),
            (&from.audit, &to.audit),
        ];
        for (from, to) in whole {
            copy_keyspace(from.iter(), to, target)?;
        }
        keep_own_bounds(plan, target, which)?;
        // Last: an append behind a position would take its records as already archived.
        let mut batch = to.db.batch().durability(Some(PersistMode::SyncAll));
        for (takers, key, value) in &positions {
            if takers[which] {
                batch.insert(&to.positions, key.clone(), value.clone());
            }
        }
        batch
            .commit()
            .map_err(target.error("write the new shard's positions"))?;
        target.flush()?;
    }
    Ok(())
}

/// Appends each record of `source`, in key order, to the new shards that take it.
fn copy_records(plan: &Plan, source: &LogStore, targets: &[LogStore; 2]) -> Result<(), StoreError> {
    let mut pending: [Vec<PreparedRecord>; 2] = Default::default();
    for guard in source.inner().records.iter() {
        let (key, value) = guard
            .into_inner()
            .map_err(source.error("read the records to split"))?;
        let record_key = keys::parse_record(&key).ok_or_else(|| dangling("records", &key))?;
        let takers = plan.owned(&record_key.topic, record_key.partition)?;
        let shown = record_key.to_string();
        let record = codec::decode(record_key, &value)
            .map_err(|source| StoreError::Corrupt { key: shown, source })?;
        let prepared = PreparedRecord::new(record).map_err(|(error, _)| error)?;
        for which in [0, 1].into_iter().filter(|which| takers[*which]) {
            pending[which].push(prepared.clone());
            if pending[which].len() == BATCH {
                append(&targets[which], &mut pending[which])?;
            }
        }
    }
    for (target, records) in targets.iter().zip(&mut pending) {
        append(target, records)?;
    }
    Ok(())
}

/// Appends and empties `records`. A full disk is the one failure the operator fixes
/// before splitting again; the archive's own wording (writing paused until space is freed)
/// does not fit a split.
fn append(target: &LogStore, records: &mut Vec<PreparedRecord>) -> Result<(), StoreError> {
    target.append(records).map_err(|error| match error {
        StoreError::DiskReserve {
            path,
            free,
            reserve,
        } => refused(
            &path,
            format!(
                "its filesystem has {free} bytes free, too little to write a batch and keep \
                 {reserve} in reserve: free space there (or split onto another volume) and \
                 split again"
            ),
        ),
        error => error,
    })?;
    records.clear();
    Ok(())
}

/// Drops from each pending erasure's bound the marks of the partitions the other new shard
/// took: this one never archives them, so the erasure would wait for them forever. Marks of
/// partitions the old shard did not own stay, as they would on any shard.
fn keep_own_bounds(plan: &Plan, target: &LogStore, which: usize) -> Result<(), StoreError> {
    let erasures = &target.inner().erasures;
    let mut batch = target.inner().db.batch();
    for guard in erasures.prefix([PENDING]) {
        let (key, value) = guard
            .into_inner()
            .map_err(target.error("read the pending erasures"))?;
        let mut erasure = Erasure::decode(&*value).map_err(|source| StoreError::Corrupt {
            key: format!("erasure {}", String::from_utf8_lossy(&key[1..])),
            source,
        })?;
        let marks = erasure.bound.len();
        erasure.bound.retain(|mark| {
            plan.takers(&mark.topic, mark.partition)
                .is_none_or(|takers| takers[which])
        });
        if erasure.bound.len() < marks {
            batch.insert(erasures, key, erasure.encode_to_vec());
        }
    }
    batch
        .commit()
        .map_err(target.error("write the pending erasures"))
}

#[cfg(test)]
#[path = "split_tests.rs"]
mod tests;
