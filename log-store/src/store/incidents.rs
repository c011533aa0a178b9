//! The incident index: kept by [`LogStore::append`] for the transactions each batch touches,
//! read by the incidents API, rebuilt from the records when it is missing.
//!
//! One keyspace, `incidents`, with a letter ahead of each kind of key:
//! - `i id` → [`Incident`]: the running figures, what a listing reads (one entry per
//!   incident, so a listing costs what the number of incidents costs);
//! - `m id \0 minute` → failures in that minute (big-endian u64);
//! - `t id \0 state transaction` → [`IncidentMember`], state 0 while it fails, 1 after, so
//!   a page of an incident's transactions lists the failing ones first;
//! - `s id \0 subject \0 transaction` → 1 while that transaction fails, else 0;
//! - `x transaction` → the transaction's memberships as last computed (possibly none): the
//!   old side of the next diff, and the sign that a record of it may change an incident.
//!
//! **Architecture Invariant**: each batch's index changes are a diff between what the rule
//! says of a transaction now and what it said before, written in the batch that holds the
//! records; so the counts, members, minutes and subjects equal what a rebuild computes from
//! the same records, whatever order the records came in
//! (`incidents_tests::the_index_kept_batch_by_batch_is_the_one_rebuilt_from_the_records`).
//! When an incident last opened or resolved, and how often it reopened, are what the archive
//! saw happen in that order; a rebuild starts them over from the records.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::atomic::Ordering;

use fjall::OwnedWriteBatch as WriteBatch;
use prost::Message;

use super::{Inner, LogStore, check_id, dangling};
use crate::incidents::{
    Incident, IncidentCause, IncidentChange, IncidentMember, IncidentRule, IncidentSubject,
    IncidentTransition, TransactionFailures, minute_of,
};
use crate::{ArchivedRecord, Mark, Page, StoreError, codec, keys};

const INCIDENT: u8 = b'i';
const MINUTE: u8 = b'm';
const MEMBER: u8 = b't';
const SUBJECT: u8 = b's';
const TRANSACTION: u8 = b'x';

/// `meta` key present while the index is complete: removed by a write made without the
/// rule, so the next open with the rule rebuilds it.
pub(super) const BUILT_KEY: &str = "incidents_built";
/// Transactions recomputed per batch while rebuilding.
const REBUILD_BATCH: usize = 500;

/// A transaction's memberships, as stored under `x`.
#[derive(Clone, PartialEq, Message)]
struct Memberships {
    #[prost(message, repeated, tag = "1")]
    members: Vec<IncidentMember>,
}

fn prefixed(kind: u8, id: &str) -> Vec<u8> {
    let mut key = vec![kind];
    key.extend_from_slice(&keys::id_prefix(id));
    key
}

fn incident_key(id: &str) -> Vec<u8> {
    let mut key = vec![INCIDENT];
    key.extend_from_slice(id.as_bytes());
    key
}

fn transaction_key(transaction: &str) -> Vec<u8> {
    let mut key = vec![TRANSACTION];
    key.extend_from_slice(transaction.as_bytes());
    key
}

fn member_key(member: &IncidentMember) -> Vec<u8> {
    let mut key = prefixed(MEMBER, &member.incident_id);
    key.push(u8::from(!member.is_failing()));
    key.extend_from_slice(member.transaction_id.as_bytes());
    key
}

fn subject_key(incident: &str, subject: &str, transaction: &str) -> Vec<u8> {
    let mut key = prefixed(SUBJECT, incident);
    key.extend_from_slice(&keys::id_prefix(subject));
    key.extend_from_slice(transaction.as_bytes());
    key
}

fn minute_key(incident: &str, minute_ms: i64) -> Vec<u8> {
    let mut key = prefixed(MINUTE, incident);
    key.extend_from_slice(&keys::time(minute_ms));
    key
}

/// What a transaction's failures say of one incident: its cause, the first failure's time and
/// the newest failure's error text.
#[derive(Clone, Default)]
struct CauseSeen {
    cause: IncidentCause,
    first_ms: i64,
    error: String,
}

/// An incident as a batch found it and as it leaves it.
struct Touched {
    before: Option<Incident>,
    after: Incident,
    /// The newest failure this batch added, and the newest recovery it saw.
    newest_failure_ms: Option<i64>,
    newest_recovery_ms: Option<i64>,
}

/// The index changes of one batch, gathered transaction by transaction, written at the end.
pub(super) struct IncidentBatch<'a> {
    inner: &'a Inner,
    touched: BTreeMap<String, Touched>,
    minutes: HashMap<(String, i64), i64>,
}

impl<'a> IncidentBatch<'a> {
    pub(super) fn new(inner: &'a Inner) -> Self {
        IncidentBatch {
            inner,
            touched: BTreeMap::new(),
            minutes: HashMap::new(),
        }
    }

    /// Brings `transaction`'s memberships to what `found` says, each transaction at most
    /// once per batch (its `x` entry is read as committed).
    pub(super) fn apply(
        &mut self,
        transaction: &str,
        found: TransactionFailures,
        batch: &mut WriteBatch,
    ) -> Result<(), StoreError> {
        let inner = self.inner;
        let old = match inner
            .incidents
            .get(transaction_key(transaction))
            .map_err(inner.error("read a transaction's incidents"))?
        {
            Some(bytes) => {
                Memberships::decode(&*bytes)
                    .map_err(|_| dangling("incidents", &transaction_key(transaction)))?
                    .members
            }
            None => Vec::new(),
        };
        let (new, causes) = memberships(transaction, found);
        let old_by_id: HashMap<&str, &IncidentMember> =
            old.iter().map(|m| (m.incident_id.as_str(), m)).collect();
        let new_by_id: HashMap<&str, &IncidentMember> =
            new.iter().map(|m| (m.incident_id.as_str(), m)).collect();
        let ids: BTreeSet<&str> = old_by_id.keys().chain(new_by_id.keys()).copied().collect();
        for id in ids {
            let (before, after) = (old_by_id.get(id).copied(), new_by_id.get(id).copied());
            if before == after {
                continue;
            }
            self.change_member(before, after, causes.get(id), batch)?;
        }
        batch.insert(
            &inner.incidents,
            transaction_key(transaction),
            Memberships { members: new }.encode_to_vec(),
        );
        Ok(())
    }

    fn change_member(
        &mut self,
        before: Option<&IncidentMember>,
        after: Option<&IncidentMember>,
        cause: Option<&CauseSeen>,
        batch: &mut WriteBatch,
    ) -> Result<(), StoreError> {
        let inner = self.inner;
        let id = before
            .or(after)
            .map(|m| m.incident_id.clone())
            .unwrap_or_default();
        let old_times = before.map_or(&[][..], |m| &m.failure_times_ms[..]);
        let new_times = after.map_or(&[][..], |m| &m.failure_times_ms[..]);
        for time in old_times {
            *self
                .minutes
                .entry((id.clone(), minute_of(*time)))
                .or_default() -= 1;
        }
        for time in new_times {
            *self
                .minutes
                .entry((id.clone(), minute_of(*time)))
                .or_default() += 1;
        }
        let delta = |figure: fn(&IncidentMember) -> u64| {
            after.map_or(0, figure) as i64 - before.map_or(0, figure) as i64
        };
        let touched = self.touched(&id, cause)?;
        let incident = &mut touched.after;
        incident.transactions = incident.transactions.saturating_add_signed(delta(|_| 1));
        incident.failing = incident
            .failing
            .saturating_add_signed(delta(|m| u64::from(m.is_failing())));
        incident.failures = incident
            .failures
            .saturating_add_signed(delta(|m| m.failure_times_ms.len() as u64));
        touched.newest_failure_ms = touched
            .newest_failure_ms
            .max(added(old_times, new_times).into_iter().max());
        if let (Some(first), Some(last)) = (new_times.first(), new_times.last()) {
            incident.first_seen_ms = incident.first_seen_ms.min(*first);
            if *last >= incident.last_seen_ms {
                incident.last_seen_ms = *last;
                if let (Some(seen), Some(member)) = (cause, after) {
                    incident.example_error.clone_from(&seen.error);
                    incident
                        .example_transaction_id
                        .clone_from(&member.transaction_id);
                }
            }
        }
        if let Some(recovered) = after.and_then(|m| m.recovered_at_ms) {
            touched.newest_recovery_ms = touched.newest_recovery_ms.max(Some(recovered));
        }
        if let Some(old) = before {
            if after.is_none_or(|new| member_key(new) != member_key(old)) {
                batch.remove(&inner.incidents, member_key(old));
            }
            for subject in &old.subject_ids {
                if after.is_none_or(|new| !new.subject_ids.contains(subject)) {
                    batch.remove(
                        &inner.incidents,
                        subject_key(&id, subject, &old.transaction_id),
                    );
                }
            }
        }
        if let Some(new) = after {
            batch.insert(&inner.incidents, member_key(new), new.encode_to_vec());
            for subject in &new.subject_ids {
                batch.insert(
                    &inner.incidents,
                    subject_key(&id, subject, &new.transaction_id),
                    [u8::from(new.is_failing())],
                );
            }
        }
        Ok(())
    }

    /// The incident `id` as this batch has it so far, read or (for its first failure) made.
    fn touched(&mut self, id: &str, cause: Option<&CauseSeen>) -> Result<&mut Touched, StoreError> {
        if !self.touched.contains_key(id) {
            let before = self.inner.incident(id)?;
            let after = before.clone().unwrap_or_else(|| {
                let seen = cause.cloned().unwrap_or_default();
                Incident {
                    cause: Some(seen.cause),
                    example_error: seen.error,
                    first_seen_ms: seen.first_ms,
                    last_seen_ms: seen.first_ms,
                    opened_at_ms: seen.first_ms,
                    ..Incident::default()
                }
            });
            self.touched.insert(
                id.to_owned(),
                Touched {
                    before,
                    after,
                    newest_failure_ms: None,
                    newest_recovery_ms: None,
                },
            );
        }
        Ok(self.touched.get_mut(id).expect("inserted above"))
    }

    /// Writes the incidents and minute counts into `batch`; returns the incidents that
    /// opened, reopened or resolved.
    pub(super) fn finish(self, batch: &mut WriteBatch) -> Result<Vec<IncidentChange>, StoreError> {
        let inner = self.inner;
        for ((id, minute), delta) in self.minutes {
            if delta == 0 {
                continue;
            }
            let key = minute_key(&id, minute);
            let stored = inner
                .incidents
                .get(&key)
                .map_err(inner.error("read an incident's minute"))?
                .and_then(|v| <[u8; 8]>::try_from(&*v).ok())
                .map_or(0, u64::from_be_bytes);
            match stored.checked_add_signed(delta).filter(|n| *n > 0) {
                Some(count) => batch.insert(&inner.incidents, key, count.to_be_bytes()),
                None => batch.remove(&inner.incidents, key),
            }
        }
        let mut changes = Vec::new();
        for (id, mut touched) in self.touched {
            let incident = &mut touched.after;
            if incident.transactions == 0 {
                batch.remove(&inner.incidents, incident_key(&id));
                continue;
            }
            let was_open = touched.before.as_ref().map(Incident::is_open);
            let mut transitions = Vec::new();
            match (was_open, incident.is_open()) {
                (None, _) => transitions.push(IncidentTransition::Opened),
                (Some(false), true) => {
                    incident.reopened += 1;
                    incident.opened_at_ms =
                        touched.newest_failure_ms.unwrap_or(incident.last_seen_ms);
                    incident.resolved_at_ms = None;
                    transitions.push(IncidentTransition::Reopened);
                }
                _ => {}
            }
            if was_open != Some(false) && !incident.is_open() {
                incident.resolved_at_ms =
                    Some(touched.newest_recovery_ms.unwrap_or(incident.last_seen_ms));
                transitions.push(IncidentTransition::Resolved);
            }
            batch.insert(
                &inner.incidents,
                incident_key(&id),
                incident.encode_to_vec(),
            );
            changes.extend(transitions.into_iter().map(|transition| IncidentChange {
                transition,
                incident: incident.clone(),
            }));
        }
        Ok(changes)
    }
}

/// Times in `new` that are not in `old` (both sorted), counting repeats.
fn added(old: &[i64], new: &[i64]) -> Vec<i64> {
    let mut old = old.iter().peekable();
    let mut out = Vec::new();
    for time in new {
        while old.next_if(|o| *o < time).is_some() {}
        if old.next_if(|o| *o == time).is_none() {
            out.push(*time);
        }
    }
    out
}

/// What the rule found, as one member per incident, with each incident's cause, first
/// failure and newest error text.
fn memberships(
    transaction: &str,
    found: TransactionFailures,
) -> (Vec<IncidentMember>, HashMap<String, CauseSeen>) {
    let mut members: BTreeMap<String, IncidentMember> = BTreeMap::new();
    // Each cause as seen, with the newest failure's time.
    let mut causes: HashMap<String, (CauseSeen, i64)> = HashMap::new();
    let mut subjects = found.subject_ids;
    subjects.sort();
    subjects.dedup();
    for failure in found.failures {
        let id = failure.cause.id.clone();
        let member = members.entry(id.clone()).or_insert_with(|| IncidentMember {
            incident_id: id.clone(),
            transaction_id: transaction.to_owned(),
            subject_ids: subjects.clone(),
            ..IncidentMember::default()
        });
        member.failure_times_ms.push(failure.at_ms);
        if failure.still_failing {
            member.failing_event_ids.push(failure.event_id);
        } else if failure.recovered_at_ms.is_some() {
            member.recovered_at_ms = member.recovered_at_ms.max(failure.recovered_at_ms);
        }
        let (seen, newest_ms) = causes.entry(id).or_insert_with(|| {
            let seen = CauseSeen {
                cause: failure.cause,
                first_ms: failure.at_ms,
                error: String::new(),
            };
            (seen, i64::MIN)
        });
        seen.first_ms = seen.first_ms.min(failure.at_ms);
        if failure.at_ms >= *newest_ms {
            seen.error = failure.error;
            *newest_ms = failure.at_ms;
        }
    }
    let members = members
        .into_values()
        .map(|mut member| {
            member.failure_times_ms.sort_unstable();
            member.failing_event_ids.sort();
            member.failing_event_ids.dedup();
            if member.is_failing() {
                member.recovered_at_ms = None;
            }
            member
        })
        .collect();
    let causes = causes
        .into_iter()
        .map(|(id, (seen, _))| (id, seen))
        .collect();
    (members, causes)
}

impl Inner {
    /// Writes into `batch` the incidents whose example error came from one of
    /// `transactions` without it: an erasure's, whose outcomes no longer hold the text.
    pub(super) fn forget_examples(
        &self,
        transactions: &HashSet<String>,
        batch: &mut WriteBatch,
    ) -> Result<(), StoreError> {
        for guard in self.incidents.prefix([INCIDENT]) {
            let (key, value) = guard
                .into_inner()
                .map_err(self.error("read the incidents an erasure touches"))?;
            let mut incident =
                Incident::decode(&*value).map_err(|_| dangling("incidents", &key))?;
            if transactions.contains(&incident.example_transaction_id) {
                incident.example_error.clear();
                incident.example_transaction_id.clear();
                batch.insert(&self.incidents, key, incident.encode_to_vec());
            }
        }
        Ok(())
    }

    fn incident(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        self.incidents
            .get(incident_key(id))
            .map_err(self.error("read an incident"))?
            .map(|bytes| {
                Incident::decode(&*bytes).map_err(|_| dangling("incidents", &incident_key(id)))
            })
            .transpose()
    }

    /// Whether a record of `transaction` may change an incident: it had a failure.
    pub(super) fn has_incidents(&self, transaction: &str) -> Result<bool, StoreError> {
        self.incidents
            .contains_key(transaction_key(transaction))
            .map_err(self.error("look up a transaction's incidents"))
    }
}

impl LogStore {
    /// Recomputes the incident index of `transactions` into `batch`, each from its archived
    /// records and `pending` (records of this batch, not yet committed).
    pub(super) fn index_incidents(
        &self,
        rule: &dyn IncidentRule,
        transactions: &[String],
        mut pending: HashMap<String, Vec<ArchivedRecord>>,
        batch: &mut WriteBatch,
    ) -> Result<Vec<IncidentChange>, StoreError> {
        let mut work = IncidentBatch::new(&self.inner);
        for transaction in transactions {
            let mut records = self.transaction(transaction)?;
            records.extend(pending.remove(transaction).unwrap_or_default());
            records.sort_by_key(|record| record.time_ms);
            let found = rule.failures(transaction, &records);
            work.apply(transaction, found, batch)?;
        }
        work.finish(batch)
    }

    /// Builds the incident index from the archived records: every transaction with a
    /// failure, a batch at a time, after clearing what was there.
    pub(super) fn rebuild_incidents(&self, rule: &dyn IncidentRule) -> Result<(), StoreError> {
        let inner = &*self.inner;
        let mut batch = inner.db.batch();
        for guard in inner.incidents.iter() {
            let key = guard
                .key()
                .map_err(self.error("clear the incident index"))?;
            batch.remove(&inner.incidents, key);
        }
        batch
            .commit()
            .map_err(self.error("clear the incident index"))?;
        let mut seen = BTreeSet::new();
        for marked in self.transaction_marks(Mark::Failure, i64::MIN, i64::MAX, None)? {
            seen.insert(marked?.transaction_id);
        }
        let transactions: Vec<String> = seen.into_iter().collect();
        for chunk in transactions.chunks(REBUILD_BATCH) {
            let mut batch = inner.db.batch();
            self.index_incidents(rule, chunk, HashMap::new(), &mut batch)?;
            batch
                .commit()
                .map_err(self.error("rebuild the incident index"))?;
        }
        let mut batch = inner
            .db
            .batch()
            .durability(Some(fjall::PersistMode::SyncAll));
        batch.insert(&inner.meta, BUILT_KEY, [1]);
        batch
            .commit()
            .map_err(self.error("mark the incident index built"))
    }

    /// Every incident, in id order: one entry each, whatever their failures.
    pub fn incidents(&self) -> Result<Vec<Incident>, StoreError> {
        let inner = &*self.inner;
        inner
            .incidents
            .prefix([INCIDENT])
            .map(|guard| {
                let (key, value) = guard.into_inner().map_err(self.error("list incidents"))?;
                Incident::decode(&*value).map_err(|_| dangling("incidents", &key))
            })
            .collect()
    }

    pub fn incident(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        check_id("incident_id", id)?;
        self.inner.incident(id)
    }

    /// Failures per minute of incident `id` with `from_ms <= minute < until_ms`, oldest
    /// first; minutes without a failure are left out.
    pub fn incident_minutes(
        &self,
        id: &str,
        from_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<(i64, u64)>, StoreError> {
        check_id("incident_id", id)?;
        let inner = &*self.inner;
        inner
            .incidents
            .range(minute_key(id, from_ms)..minute_key(id, until_ms))
            .map(|guard| {
                let (key, value) = guard
                    .into_inner()
                    .map_err(self.error("read an incident's minutes"))?;
                let minute = keys::parse_time(&key[key.len() - 8..]);
                let count = <[u8; 8]>::try_from(&*value).ok().map(u64::from_be_bytes);
                minute.zip(count).ok_or_else(|| dangling("incidents", &key))
            })
            .collect()
    }

    /// A page of incident `id`'s transactions: those still failing first, each group in
    /// transaction id order, resuming after `cursor`.
    pub fn incident_members(
        &self,
        id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<IncidentMember>, StoreError> {
        check_id("incident_id", id)?;
        let prefix = prefixed(MEMBER, id);
        let entries = self.page_after(&prefix, cursor)?;
        let mut items = Vec::new();
        let mut last = None;
        for guard in entries {
            if items.len() == limit {
                return Ok(Page {
                    items,
                    next_cursor: last.map(|key: fjall::Slice| keys::to_hex(&key)),
                });
            }
            let (key, value) = guard
                .into_inner()
                .map_err(self.error("list an incident's transactions"))?;
            items.push(IncidentMember::decode(&*value).map_err(|_| dangling("incidents", &key))?);
            last = Some(key);
        }
        Ok(Page {
            items,
            next_cursor: None,
        })
    }

    /// A page of the subjects incident `id` touched, in subject order, each with the
    /// incident's transactions that carry it, resuming after `cursor`.
    pub fn incident_subjects(
        &self,
        id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<IncidentSubject>, StoreError> {
        check_id("incident_id", id)?;
        let prefix = prefixed(SUBJECT, id);
        let mut items: Vec<IncidentSubject> = Vec::new();
        for guard in self.page_after(&prefix, cursor)? {
            let (key, value) = guard
                .into_inner()
                .map_err(self.error("list an incident's subjects"))?;
            let (subject, transaction) = key[prefix.len()..]
                .iter()
                .position(|b| *b == 0)
                .and_then(|end| {
                    let rest = &key[prefix.len()..];
                    Some((
                        String::from_utf8(rest[..end].to_vec()).ok()?,
                        String::from_utf8(rest[end + 1..].to_vec()).ok()?,
                    ))
                })
                .ok_or_else(|| dangling("incidents", &key))?;
            let failing = value.first() == Some(&1);
            if let Some(last) = items.last_mut()
                && last.subject_id == subject
            {
                last.transactions.push((transaction, failing));
                continue;
            }
            if items.len() == limit {
                // Resume after the last subject listed: past every key it prefixes.
                let mut next = prefix.clone();
                next.extend_from_slice(&keys::id_prefix(&items[limit - 1].subject_id));
                *next.last_mut().expect("ends with NUL") = 1;
                return Ok(Page {
                    items,
                    next_cursor: Some(keys::to_hex(&next)),
                });
            }
            items.push(IncidentSubject {
                subject_id: subject,
                transactions: vec![(transaction, failing)],
            });
        }
        Ok(Page {
            items,
            next_cursor: None,
        })
    }

    /// Distinct subjects incident `id` touched.
    pub fn incident_subject_count(&self, id: &str) -> Result<u64, StoreError> {
        let mut count = 0;
        let mut cursor = None;
        loop {
            let page = self.incident_subjects(id, 1000, cursor.as_deref())?;
            count += page.items.len() as u64;
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(count),
            }
        }
    }

    /// Entries under `prefix`, from `cursor` on when given (a key under `prefix`: a page's
    /// last key, or the key after which the next page starts).
    fn page_after(
        &self,
        prefix: &[u8],
        cursor: Option<&str>,
    ) -> Result<impl Iterator<Item = fjall::Guard> + use<>, StoreError> {
        let start = match cursor {
            None => Bound::Included(prefix.to_vec()),
            Some(cursor) => Bound::Excluded(
                keys::from_hex(cursor)
                    .filter(|key| key.starts_with(prefix))
                    .ok_or_else(|| StoreError::BadCursor(cursor.to_owned()))?,
            ),
        };
        let mut end = prefix.to_vec();
        *end.last_mut().expect("ends with NUL") = 1;
        Ok(self.inner.incidents.range((start, Bound::Excluded(end))))
    }
}

impl LogStore {
    /// The incident index changes of a batch: the transactions it touches (one with a
    /// failure in the batch, or with a failure before), each recomputed from its archived
    /// records and the batch's.
    pub(super) fn keep_incidents(
        &self,
        appended: &[&super::PreparedRecord],
        batch: &mut WriteBatch,
    ) -> Result<Vec<IncidentChange>, StoreError> {
        let inner = &*self.inner;
        let Some(rule) = &inner.incident_rule else {
            if !appended.is_empty() && inner.incidents_built.swap(false, Ordering::Relaxed) {
                batch.remove(&inner.meta, BUILT_KEY);
            }
            return Ok(Vec::new());
        };
        let mut touched: HashMap<&str, bool> = HashMap::new();
        let mut transactions = Vec::new();
        for record in appended {
            let Some(transaction) = record.transaction.as_deref() else {
                continue;
            };
            let known = touched.get(transaction).copied();
            if known == Some(true) {
                continue;
            }
            let relevant =
                record.failure || (known.is_none() && inner.has_incidents(transaction)?);
            touched.insert(transaction, relevant);
            if relevant {
                transactions.push(transaction.to_owned());
            }
        }
        if transactions.is_empty() {
            return Ok(Vec::new());
        }
        let mut pending: HashMap<String, Vec<ArchivedRecord>> = HashMap::new();
        for record in appended {
            if let Some(transaction) = &record.transaction
                && touched.get(transaction.as_str()) == Some(&true)
            {
                let decoded = codec::decode(record.key.clone(), &record.encoded)
                    .map_err(|_| dangling("records", &record.primary))?;
                pending
                    .entry(transaction.clone())
                    .or_default()
                    .push(decoded);
            }
        }
        self.index_incidents(rule.as_ref(), &transactions, pending, batch)
    }
}

#[cfg(test)]
#[path = "incidents_tests.rs"]
mod tests;
