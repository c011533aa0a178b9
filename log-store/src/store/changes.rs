//! Applying the archive's own changes ([`Change`]) as their records are appended: a replay
//! kept by its id, its transactions and its idempotency key; an erasure kept until this
//! store has archived up to its bound, then applied ([`LogStore::apply_erasure`]).

use std::collections::HashSet;

use fjall::OwnedWriteBatch;
use prost::Message;

use super::{Inner, LogStore, check_id};
use crate::{Change, Erasure, ErasureSummary, ReplayRecord, StoreError, Watermark, keys};

pub(crate) const PENDING: u8 = b'p';
const DONE: u8 = b'd';

/// The replays and idempotency keys the batch being written has kept, which the keyspaces
/// do not show until it commits.
#[derive(Default)]
pub(super) struct InBatch {
    replays: HashSet<String>,
    keys: HashSet<String>,
}

impl LogStore {
    /// Adds what `change` does to `batch`. A replay's first record is kept unless another
    /// replay holds its idempotency key (that claim lost: its replica does not publish); a
    /// later record of a kept replay replaces it (progress). An erasure waits, kept, for
    /// [`due_erasures`](Self::due_erasures).
    pub(super) fn apply_change(
        &self,
        change: &Change,
        batch: &mut OwnedWriteBatch,
        in_batch: &mut InBatch,
    ) -> Result<(), StoreError> {
        let inner = &*self.inner;
        match change {
            Change::Replay(replay) => {
                check_id("replay_id", &replay.replay_id)?;
                let known = in_batch.replays.contains(&replay.replay_id)
                    || inner
                        .replays
                        .contains_key(&replay.replay_id)
                        .map_err(self.error("look up a replay"))?;
                if !known {
                    let key = &replay.request_key;
                    let key_taken = !key.is_empty()
                        && (in_batch.keys.contains(key)
                            || inner
                                .replay_keys
                                .contains_key(key)
                                .map_err(self.error("look up a replay request"))?);
                    if key_taken {
                        return Ok(());
                    }
                    claim(inner, replay, batch)?;
                    in_batch.replays.insert(replay.replay_id.clone());
                    if !key.is_empty() {
                        in_batch.keys.insert(key.clone());
                    }
                }
                batch.insert(
                    &inner.replays,
                    replay.replay_id.as_bytes(),
                    replay.encode_to_vec(),
                );
            }
            Change::Erasure(erasure) => {
                check_id("erasure_id", &erasure.erasure_id)?;
                batch.insert(
                    &inner.erasures,
                    keyed(PENDING, &erasure.erasure_id),
                    erasure.encode_to_vec(),
                );
            }
        }
        Ok(())
    }

    /// The bound of an erasure asked of this store now: every partition's position.
    pub fn erasure_bound(&self) -> Vec<Watermark> {
        self.inner
            .next_offsets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|((topic, partition), cursor)| Watermark {
                topic: topic.clone(),
                partition: *partition,
                epoch: cursor.epoch,
                next_offset: cursor.next_offset,
            })
            .collect()
    }

    /// Erasures kept and not applied yet whose bound this store has reached in every
    /// partition it `holds` (a shard holds some partitions; an erasure asked of any shard is
    /// bounded in all of them), so applying them erases what the replica that was asked
    /// erased.
    pub fn due_erasures(
        &self,
        holds: impl Fn(&str, i32) -> bool,
    ) -> Result<Vec<Erasure>, StoreError> {
        let mut due = Vec::new();
        for guard in self.inner.erasures.prefix([PENDING]) {
            let (key, value) = guard
                .into_inner()
                .map_err(self.error("list pending erasures"))?;
            let erasure = Erasure::decode(&*value).map_err(|source| StoreError::Corrupt {
                key: format!("erasure {}", String::from_utf8_lossy(&key[1..])),
                source,
            })?;
            let reached = erasure
                .bound
                .iter()
                .filter(|mark| holds(&mark.topic, mark.partition))
                .all(|mark| {
                    self.position(&mark.topic, mark.partition)
                        .is_some_and(|p| (p.epoch, p.next_offset) >= (mark.epoch, mark.next_offset))
                });
            if reached {
                due.push(erasure);
            }
        }
        Ok(due)
    }

    /// How many erasures are kept and not applied yet.
    pub fn pending_erasures(&self) -> Result<usize, StoreError> {
        let mut pending = 0;
        for guard in self.inner.erasures.prefix([PENDING]) {
            guard.key().map_err(self.error("count pending erasures"))?;
            pending += 1;
        }
        Ok(pending)
    }

    /// What the erasure `erasure_id` did here, once applied.
    pub fn erasure_summary(&self, erasure_id: &str) -> Result<Option<ErasureSummary>, StoreError> {
        let Some(bytes) = self
            .inner
            .erasures
            .get(keyed(DONE, erasure_id))
            .map_err(self.error("read an erasure's summary"))?
        else {
            return Ok(None);
        };
        ErasureSummary::decode(&*bytes)
            .map(Some)
            .map_err(|source| StoreError::Corrupt {
                key: format!("erasure {erasure_id}"),
                source,
            })
    }

    /// Marks `erasure` applied with `summary`, in the batch that applies it.
    pub(super) fn erasure_applied(
        &self,
        erasure: &Erasure,
        summary: &ErasureSummary,
        batch: &mut OwnedWriteBatch,
    ) {
        let erasures = &self.inner.erasures;
        batch.remove(erasures, keyed(PENDING, &erasure.erasure_id));
        batch.insert(
            erasures,
            keyed(DONE, &erasure.erasure_id),
            summary.encode_to_vec(),
        );
    }
}

/// A new replay, findable by each of its transactions and by its idempotency key.
fn claim(
    inner: &Inner,
    replay: &ReplayRecord,
    batch: &mut OwnedWriteBatch,
) -> Result<(), StoreError> {
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
    Ok(())
}

fn keyed(kind: u8, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + id.len());
    key.push(kind);
    key.extend_from_slice(id.as_bytes());
    key
}

#[cfg(test)]
#[path = "changes_tests.rs"]
mod tests;
