//! The audit trail: who read, exported, replayed, erased or was refused what, when, from
//! where, and why; append-only and hash-chained, so an altered, removed or reordered record
//! is detected by [`LogStore::verify_audit`].
//!
//! Each record carries the hash of the one before it; its own hash covers its content and
//! that link. Records are numbered from 1 without gaps.

use std::ops::Bound;

use prost::Message;
use sha2::{Digest, Sha256};

use crate::store::LogStore;
use crate::{Page, StoreError, keys};

/// What happened, as the service that saw it tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditEntry {
    pub at_ms: i64,
    /// Who: a token name, a person's subject claim, or `anonymous`.
    pub actor: String,
    /// Which credential: the API token's id or the OIDC `sub`; empty when none is known.
    pub actor_id: String,
    pub role: String,
    /// From where: the caller's address.
    pub origin: String,
    /// What was done, e.g. `transaction.read`, `replay`, `token.create`.
    pub action: String,
    /// What it was done to: a transaction, subject, replay or token.
    pub target: String,
    /// Why, when the caller said (replays, erasures).
    pub reason: String,
    /// `ok`, or why it was refused.
    pub result: String,
}

/// An [`AuditEntry`] as kept: numbered and chained.
#[derive(Clone, PartialEq, Message)]
pub struct AuditRecord {
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    #[prost(int64, tag = "2")]
    pub at_ms: i64,
    #[prost(string, tag = "3")]
    pub actor: String,
    #[prost(string, tag = "4")]
    pub role: String,
    #[prost(string, tag = "5")]
    pub origin: String,
    #[prost(string, tag = "6")]
    pub action: String,
    #[prost(string, tag = "7")]
    pub target: String,
    #[prost(string, tag = "8")]
    pub reason: String,
    #[prost(string, tag = "9")]
    pub result: String,
    /// Hash of the previous record; zeros for the first.
    #[prost(bytes = "vec", tag = "10")]
    pub prev_hash: Vec<u8>,
    /// SHA-256 of this record's content, `seq` and `prev_hash` included.
    #[prost(bytes = "vec", tag = "11")]
    pub hash: Vec<u8>,
    /// Which credential (see [`AuditEntry::actor_id`]). Added after the first records: empty
    /// in those, and an empty string is absent from the encoding the hash is taken over, so
    /// their hashes still hold.
    #[prost(string, tag = "12")]
    pub actor_id: String,
}

impl AuditRecord {
    /// `entry`, chained after the trail's newest record `head` (number and hash).
    pub(crate) fn after(head: &Option<(u64, Vec<u8>)>, entry: AuditEntry) -> Self {
        match head {
            Some((seq, hash)) => AuditRecord::chained(seq + 1, entry, hash.clone()),
            None => AuditRecord::chained(1, entry, ZERO_HASH.to_vec()),
        }
    }

    /// Its key in the audit keyspace: its number, big-endian, so keys sort in chain order.
    pub(crate) fn key(&self) -> [u8; 8] {
        self.seq.to_be_bytes()
    }

    fn chained(seq: u64, entry: AuditEntry, prev_hash: Vec<u8>) -> Self {
        let mut record = AuditRecord {
            seq,
            at_ms: entry.at_ms,
            actor: entry.actor,
            actor_id: entry.actor_id,
            role: entry.role,
            origin: entry.origin,
            action: entry.action,
            target: entry.target,
            reason: entry.reason,
            result: entry.result,
            prev_hash,
            hash: Vec::new(),
        };
        record.hash = record.content_hash();
        record
    }

    /// The hash of everything but the hash itself.
    fn content_hash(&self) -> Vec<u8> {
        let unsealed = AuditRecord {
            hash: Vec::new(),
            ..self.clone()
        };
        Sha256::digest(unsealed.encode_to_vec()).to_vec()
    }
}

/// Which audit records to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub since_ms: Option<i64>,
    pub actor: Option<String>,
    /// Records whose target is this (a subject, a transaction).
    pub target: Option<String>,
}

/// What [`LogStore::verify_audit`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditVerification {
    pub records: u64,
    /// Each break in the chain in one sentence, naming the record; empty when intact.
    pub problems: Vec<String>,
}

const ZERO_HASH: [u8; 32] = [0; 32];

impl LogStore {
    /// Appends `entry` to the audit trail, durably, and returns it as kept.
    pub fn append_audit(&self, entry: AuditEntry) -> Result<AuditRecord, StoreError> {
        let inner = self.inner();
        let mut last = inner
            .audit_head
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let record = AuditRecord::after(&last, entry);
        let mut batch = inner
            .db
            .batch()
            .durability(Some(fjall::PersistMode::SyncAll));
        batch.insert(&inner.audit, record.key(), record.encode_to_vec());
        batch
            .commit()
            .map_err(self.error("append to the audit trail"))?;
        *last = Some((record.seq, record.hash.clone()));
        Ok(record)
    }

    /// Audit records matching `filter`, oldest first, from after `cursor`.
    pub fn audit(
        &self,
        filter: &AuditFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<AuditRecord>, StoreError> {
        let after = match cursor {
            Some(cursor) => Bound::Excluded(
                keys::from_hex(cursor)
                    .filter(|key| key.len() == 8)
                    .ok_or_else(|| StoreError::BadCursor(cursor.to_owned()))?,
            ),
            None => Bound::Unbounded,
        };
        let mut items = Vec::new();
        for guard in self.inner().audit.range((after, Bound::Unbounded)) {
            let (key, value) = guard
                .into_inner()
                .map_err(self.error("read the audit trail"))?;
            let record = decode(&key, &value)?;
            let matches = filter.since_ms.is_none_or(|since| record.at_ms >= since)
                && filter.actor.as_ref().is_none_or(|a| *a == record.actor)
                && filter.target.as_ref().is_none_or(|t| *t == record.target);
            if !matches {
                continue;
            }
            if items.len() == limit {
                let last: &AuditRecord = items.last().expect("limit is not zero");
                return Ok(Page {
                    next_cursor: Some(keys::to_hex(&last.seq.to_be_bytes())),
                    items,
                });
            }
            items.push(record);
        }
        Ok(Page {
            items,
            next_cursor: None,
        })
    }

    /// Walks the whole audit trail and reports every record that was altered, removed, or
    /// moved: a record whose hash does not match its content, a gap in the numbering, or a
    /// record that does not point at the hash of the one before it.
    pub fn verify_audit(&self) -> Result<AuditVerification, StoreError> {
        let mut report = AuditVerification::default();
        let mut expected_seq = 1;
        let mut prev_hash = ZERO_HASH.to_vec();
        for guard in self.inner().audit.iter() {
            let (key, value) = guard
                .into_inner()
                .map_err(self.error("read the audit trail"))?;
            report.records += 1;
            let record = match decode(&key, &value) {
                Ok(record) => record,
                Err(error) => {
                    report.problems.push(error.to_string());
                    continue;
                }
            };
            let key_seq = u64::from_be_bytes(key.as_ref().try_into().unwrap_or_default());
            if record.seq != key_seq {
                report.problems.push(format!(
                    "audit record stored as #{key_seq} says it is #{}: records were moved",
                    record.seq
                ));
            }
            if key_seq > expected_seq {
                report.problems.push(format!(
                    "audit records #{expected_seq} to #{} are missing: removed",
                    key_seq - 1
                ));
            }
            if record.content_hash() != record.hash {
                report.problems.push(format!(
                    "audit record #{key_seq} ({} by {}) does not match its hash: altered",
                    record.action, record.actor
                ));
            }
            if record.prev_hash != prev_hash && key_seq == expected_seq {
                report.problems.push(format!(
                    "audit record #{key_seq} does not follow #{}: the chain is broken there \
                     (a record before it was altered, removed or reordered)",
                    key_seq.saturating_sub(1)
                ));
            }
            expected_seq = key_seq + 1;
            prev_hash = record.hash;
        }
        Ok(report)
    }
}

fn decode(key: &[u8], value: &[u8]) -> Result<AuditRecord, StoreError> {
    AuditRecord::decode(value).map_err(|source| StoreError::Corrupt {
        key: format!("audit record {}", keys::to_hex(key)),
        source,
    })
}

#[cfg(test)]
#[path = "audit_tests.rs"]
mod tests;
