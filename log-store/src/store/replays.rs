//! Reading replays: each by its id, by each of its transactions and by the caller's
//! idempotency key. They are written as the archive's changes (`store/changes.rs`).

use prost::Message;

use super::{LogStore, check_id, dangling};
use crate::{ReplayRecord, StoreError, keys};

impl LogStore {
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
        let replay_id = self
            .inner
            .replay_keys
            .get(request_key)
            .map_err(self.error("look up a replay request"))?;
        replay_id.map_or(Ok(None), |id| self.replay(&String::from_utf8_lossy(&id)))
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
}
