//! What the reads read: this archive's store and, for a shard, what the other shards hold,
//! merged into what one archive holding every partition would have answered. The merge
//! relies on two facts of the store: a transaction's records are in time order, then key
//! order, and listing marks are keyed the same way on every shard, so one cursor (the
//! mark's key) orders a listing across shards exactly as within one store.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::iter::Peekable;

use retrace_api::RecordsQuery;
use retrace_http::ApiError;
use retrace_log_store::{
    ArchivedRecord, LogStore, Mark, MarkedTransaction, Page, SubjectTransaction,
    page_subject_transactions,
};

use crate::reads::store_error;
use crate::shards::Shard;
use crate::shards::fanout::{Fanout, Gathered};

/// How many marks a shard is asked for at a time while a listing pages across shards.
const MARKS_PER_REQUEST: usize = 200;

/// The archive as one read sees it.
pub(crate) struct Holdings {
    store: LogStore,
    fanout: Option<Fanout>,
    /// The shards that did not answer some part of this read.
    incomplete: RefCell<BTreeSet<String>>,
}

impl Holdings {
    pub fn new(store: LogStore, fanout: Option<Fanout>) -> Self {
        Holdings {
            store,
            fanout,
            incomplete: RefCell::default(),
        }
    }

    pub fn store(&self) -> &LogStore {
        &self.store
    }

    /// The shards that did not answer some part of this read, in shard order.
    pub fn incomplete(&self) -> Vec<String> {
        self.incomplete.borrow().iter().cloned().collect()
    }

    /// Every record of a transaction, outcomes included, in time order.
    pub fn transaction(&self, id: &str) -> Result<Vec<ArchivedRecord>, ApiError> {
        let mut found = self.transactions(&[id.to_owned()])?;
        Ok(found.remove(id).unwrap_or_default())
    }

    /// Every record of each of `ids`, in time order, asking each other shard once.
    pub fn transactions(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, Vec<ArchivedRecord>>, ApiError> {
        let mut found = HashMap::with_capacity(ids.len());
        for id in ids {
            let records = self.store.transaction(id).map_err(store_error)?;
            found.insert(id.clone(), records);
        }
        let Some(fanout) = &self.fanout else {
            return Ok(found);
        };
        let query = RecordsQuery {
            transactions: ids.to_vec(),
            events: Vec::new(),
        };
        let gathered = self.note(fanout.records(&query));
        for (_, records) in gathered {
            for record in records {
                if let Some(id) = record.ids.as_ref().map(|ids| ids.transaction_id.clone())
                    && let Some(merged) = found.get_mut(&id)
                {
                    merged.push(record);
                }
            }
        }
        for records in found.values_mut() {
            // The store's order: the by-transaction index is keyed by time, then record key.
            records.sort_by(|a, b| (a.time_ms, &a.key).cmp(&(b.time_ms, &b.key)));
            records.dedup_by(|a, b| a.key == b.key);
        }
        Ok(found)
    }

    /// Every copy of an event, and the outcomes reported on it, each in record key order
    /// (the order of the store's indexes by event).
    pub fn event(&self, id: &str) -> Result<EventRecords, ApiError> {
        let mut copies = self.store.event(id).map_err(store_error)?;
        let mut outcomes = self.store.outcomes(id).map_err(store_error)?;
        let Some(fanout) = &self.fanout else {
            return Ok(EventRecords { copies, outcomes });
        };
        let query = RecordsQuery {
            transactions: Vec::new(),
            events: vec![id.to_owned()],
        };
        for (_, records) in self.note(fanout.records(&query)) {
            for record in records {
                let about = record.outcome.as_ref().map(|about| about.event_id.as_str());
                let carries = record.ids.as_ref().map(|ids| ids.event_id.as_str());
                if about == Some(id) {
                    outcomes.push(record);
                } else if about.is_none() && carries == Some(id) {
                    copies.push(record);
                }
            }
        }
        for records in [&mut copies, &mut outcomes] {
            records.sort_by(|a, b| a.key.cmp(&b.key));
            records.dedup_by(|a, b| a.key == b.key);
        }
        Ok(EventRecords { copies, outcomes })
    }

    /// Transactions marked by `mark` in `window`, newest first, after `cursor`: this
    /// store's and every other shard's, merged.
    pub fn marks<'a>(
        &'a self,
        mark: Mark,
        window: (i64, i64),
        cursor: Option<&str>,
    ) -> Result<Box<dyn Iterator<Item = Result<MarkedTransaction, ApiError>> + 'a>, ApiError> {
        let local: Box<dyn Iterator<Item = _>> = Box::new(
            self.store
                .transaction_marks(mark, window.0, window.1, cursor)
                .map_err(store_error)?
                .map(|marked| marked.map_err(store_error)),
        );
        let Some(fanout) = &self.fanout else {
            return Ok(local);
        };
        let first = self.note(fanout.marks(None, mark, window, cursor, MARKS_PER_REQUEST));
        let remote = first
            .into_iter()
            .map(|(shard, marks)| RemoteMarks {
                shard,
                exhausted: marks.len() < MARKS_PER_REQUEST,
                buffer: marks.into(),
                last: None,
            })
            .collect();
        Ok(Box::new(MergedMarks {
            holdings: self,
            fanout,
            mark,
            window,
            local: local.peekable(),
            remote,
            last: None,
        }))
    }

    /// A page of the transactions that touched `subject`, newest first.
    pub fn subject_transactions(
        &self,
        subject: &str,
        window: (i64, i64),
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<SubjectTransaction>, ApiError> {
        let Some(fanout) = &self.fanout else {
            return self
                .store
                .subject_transactions(subject, window, limit, cursor)
                .map_err(store_error);
        };
        let mut seen = self.store.subject_seen(subject).map_err(store_error)?;
        for (_, theirs) in self.note(fanout.subject_seen(subject)) {
            seen.extend(theirs);
        }
        page_subject_transactions(seen, window, limit, cursor).map_err(store_error)
    }

    /// What the shards that answered gave; the others noted as incomplete.
    fn note<T>(&self, gathered: Gathered<T>) -> Vec<(Shard, T)> {
        self.incomplete.borrow_mut().extend(gathered.incomplete);
        gathered.parts
    }
}

/// An event's records.
pub(crate) struct EventRecords {
    pub copies: Vec<ArchivedRecord>,
    pub outcomes: Vec<ArchivedRecord>,
}

/// One other shard's marks: those fetched and not consumed yet, and whether it has more.
struct RemoteMarks {
    shard: Shard,
    buffer: VecDeque<MarkedTransaction>,
    exhausted: bool,
    /// The cursor of its mark last consumed: where its next marks start.
    last: Option<String>,
}

/// The newest-first merge of this store's marks and every other shard's. A mark held by
/// two shards (two records of one transaction at the same millisecond) is one entry, as it
/// is in one store.
struct MergedMarks<'a> {
    holdings: &'a Holdings,
    fanout: &'a Fanout,
    mark: Mark,
    window: (i64, i64),
    local: Peekable<Box<dyn Iterator<Item = Result<MarkedTransaction, ApiError>> + 'a>>,
    remote: Vec<RemoteMarks>,
    /// The cursor of the mark last given.
    last: Option<String>,
}

impl MergedMarks<'_> {
    /// Fetches the next marks of a shard whose buffer ran out; a shard that does not answer
    /// is noted as incomplete and has no more.
    fn refill(&mut self, index: usize) {
        let remote = &self.remote[index];
        let gathered = self.fanout.marks(
            Some(remote.shard),
            self.mark,
            self.window,
            remote.last.as_deref(),
            MARKS_PER_REQUEST,
        );
        let remote = &mut self.remote[index];
        match self.holdings.note(gathered).pop() {
            Some((_, marks)) => {
                remote.exhausted = marks.len() < MARKS_PER_REQUEST;
                remote.buffer = marks.into();
            }
            None => remote.exhausted = true,
        }
    }
}

impl MergedMarks<'_> {
    fn take(&mut self, index: usize) -> Option<MarkedTransaction> {
        let remote = &mut self.remote[index];
        let marked = remote.buffer.pop_front()?;
        remote.last = Some(marked.cursor.clone());
        Some(marked)
    }
}

impl Iterator for MergedMarks<'_> {
    type Item = Result<MarkedTransaction, ApiError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            for index in 0..self.remote.len() {
                if self.remote[index].buffer.is_empty() && !self.remote[index].exhausted {
                    self.refill(index);
                }
            }
            let local = match self.local.peek() {
                Some(Err(_)) => return self.local.next(),
                Some(Ok(marked)) => Some(marked.cursor.clone()),
                None => None,
            };
            // Cursors are the marks' keys in lowercase hex, which order as the keys do: the
            // greatest is the newest.
            let newest_remote = self
                .remote
                .iter()
                .enumerate()
                .filter_map(|(index, remote)| Some((index, remote.buffer.front()?.cursor.clone())))
                .max_by(|a, b| a.1.cmp(&b.1));
            let next = match (local, newest_remote) {
                (None, None) => return None,
                (Some(local), Some((index, remote))) if remote > local => self.take(index),
                (Some(_), _) => self.local.next().and_then(Result::ok),
                (None, Some((index, _))) => self.take(index),
            }?;
            if self.last.as_deref() == Some(next.cursor.as_str()) {
                continue;
            }
            self.last = Some(next.cursor.clone());
            return Some(Ok(next));
        }
    }
}
