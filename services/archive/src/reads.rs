//! What the read API finds in the archive: a transaction's trace, the transactions a filter
//! or a subject selects, an event's copies and outcomes, a topic's messages and where each
//! partition stands; each masked for the caller and naming the partitions the archive is
//! behind on, where what it lacks may still be.

use std::collections::HashSet;
use std::sync::Arc;

use retrace_api::{
    Behind, EventView, MessageView, Page, PositionView, Trace, TransactionStatus,
    TransactionSummary, describe_behind,
};
use retrace_auth::{Caller, Guard, Permission};
use retrace_http::ApiError;
use retrace_log_store::{
    ArchivedRecord, LogStore, Mark, MarkedTransaction, Position, RecordKind, StoreError,
};

use crate::holdings::Holdings;
use crate::lag::{Lag, PartitionLag};
use crate::masking::{Masking, is_retrace_header};
use crate::replay::now_ms;
use crate::shards::fanout::Fanout;
use crate::trace::{message_view, outcome_view, rfc3339, summary, trace};

/// A listing looks at this many candidates at most before returning what it has (and a
/// cursor), so one request never scans the whole archive.
const MAX_SCAN: usize = 5_000;

/// How a store error is answered: a bad cursor or id names its parameter (400), anything
/// else is the archive's own failure (500).
pub(crate) fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::BadCursor(_) => ApiError::invalid("cursor", error.to_string()),
        StoreError::InvalidId { field, .. } => ApiError::invalid(field, error.to_string()),
        other => ApiError::internal(other.to_string()),
    }
}

/// An RFC 3339 time (`2026-11-23T08:00:00Z`), or a duration back from now (`90s`, `15m`,
/// `2h`, `7d`), as milliseconds since the epoch.
pub fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(time) = text.parse::<jiff::Timestamp>() {
        return Ok(time.as_millisecond());
    }
    let back = match text.strip_suffix('d').map(str::parse::<i64>) {
        // Checked: `since=99999999999999999d` is a typo to refuse, not an overflow.
        Some(Ok(days)) => days
            .checked_mul(86_400)
            .map(jiff::SignedDuration::from_secs)
            .ok_or(()),
        _ => text.parse::<jiff::SignedDuration>().map_err(drop),
    };
    match back {
        Ok(back) if !back.is_negative() => i64::try_from(back.as_millis())
            .ok()
            .and_then(|back_ms| now_ms().checked_sub(back_ms))
            .ok_or_else(|| format!("{text:?} reaches back further than any time: use a shorter duration, or an RFC 3339 time")),
        _ => Err(format!(
            "{text:?} is neither an RFC 3339 time (2026-11-23T08:00:00Z) nor a duration back \
             from now (90s, 15m, 2h, 7d)"
        )),
    }
}

/// This "not found" with the partitions the archive is behind on, where the thing may still
/// be: said in the message too, so no one reads "no archived message" as "it did not
/// happen" while the archive catches up. Unless a shard that did not answer may hold it:
/// then it is not known, and the answer is a 503 naming the shard.
fn not_found_unless_behind(error: String, behind: Vec<Behind>, incomplete: &[String]) -> ApiError {
    if !incomplete.is_empty() {
        return ApiError::unavailable(format!(
            "{error} on the shards that answered, but shard {} did not answer and may hold \
             it: ask again once it is back",
            incomplete.join(", ")
        ));
    }
    let mut refused = ApiError::not_found(error);
    if let Some(caveat) = describe_behind(&behind) {
        refused.body.error = format!(
            "{}; {caveat}, so it may be on Kafka and not archived yet: ask again once the \
             archive caught up (GET /v1/positions)",
            refused.body.error
        );
    }
    refused.body.behind = behind;
    refused
}

/// What a transaction listing or a bulk replay selects.
pub(crate) struct Filter {
    pub status: Option<TransactionStatus>,
    pub window: (i64, i64),
    pub topic: Option<String>,
    pub event_type: Option<String>,
    /// A service that published one of the transaction's events or reported an outcome on
    /// one: where a transaction failed is a consumer, which may have published nothing.
    pub service: Option<String>,
}

impl Filter {
    /// Whether the transaction `found` traces matches everything but the status's window.
    fn matches(&self, found: &Trace) -> bool {
        self.status.is_none_or(|s| s == found.status)
            && self
                .topic
                .as_ref()
                .is_none_or(|t| found.events.iter().any(|e| e.message.topic == *t))
            && self
                .event_type
                .as_ref()
                .is_none_or(|t| found.events.iter().any(|e| e.message.event_type == *t))
            && self.service.as_ref().is_none_or(|s| {
                found
                    .events
                    .iter()
                    .any(|e| e.message.source == *s || e.outcomes().any(|o| o.consumer == *s))
            })
    }

    pub fn describe(&self) -> String {
        let mut parts = vec![format!(
            "status={}",
            self.status.map_or("any", TransactionStatus::as_str)
        )];
        if self.window.0 != i64::MIN {
            parts.push(format!("since={}", rfc3339(self.window.0)));
        }
        if self.window.1 != i64::MAX {
            parts.push(format!("until={}", rfc3339(self.window.1)));
        }
        parts.extend(self.topic.iter().map(|t| format!("topic={t}")));
        parts.extend(self.event_type.iter().map(|t| format!("type={t}")));
        parts.extend(self.service.iter().map(|s| format!("service={s}")));
        parts.join(" ")
    }
}

/// Transactions that match `filter`, newest first. Failed and replayed transactions are
/// found through their failures, others through their start, so the time window applies to
/// when they failed or started. Candidates are read in chunks (one request per other shard
/// for a chunk), and judged one by one as one store would.
pub(crate) fn select_transactions(
    holdings: &Holdings,
    filter: &Filter,
    limit: usize,
    max_scan: usize,
    cursor: Option<&str>,
) -> Result<Page<TransactionSummary>, ApiError> {
    let mark = match filter.status {
        Some(TransactionStatus::Failed | TransactionStatus::Replayed) => Mark::Failure,
        _ => Mark::Start,
    };
    let store = holdings.store();
    let mut marks = holdings.marks(mark, filter.window, cursor)?.peekable();
    let mut items = Vec::new();
    let mut seen = HashSet::new();
    let mut last_cursor = None;
    let mut scanned = 0;
    loop {
        if marks.peek().is_none() {
            return Ok(page(items, None, holdings));
        }
        if items.len() == limit || scanned == max_scan {
            // More follow: the next page starts after the last mark judged.
            return Ok(page(items, last_cursor, holdings));
        }
        // Each mark adds one item at most, so a chunk never overshoots the page.
        let chunk: Vec<MarkedTransaction> = marks
            .by_ref()
            .take((limit - items.len()).min(max_scan - scanned))
            .collect::<Result<_, _>>()?;
        let new: Vec<String> = chunk
            .iter()
            .map(|marked| marked.transaction_id.clone())
            .filter(|id| !seen.contains(id))
            .collect();
        let mut records = holdings.transactions(&new)?;
        for marked in chunk {
            scanned += 1;
            last_cursor = Some(marked.cursor);
            if !seen.insert(marked.transaction_id.clone()) {
                continue;
            }
            let records = records.remove(&marked.transaction_id).unwrap_or_default();
            // A transaction has several marks when it failed (or started) more than once;
            // it is listed at its newest failure, or its first start.
            if mark_time(mark, &records) != Some(marked.time_ms) {
                continue;
            }
            let replays = store
                .transaction_replays(&marked.transaction_id)
                .map_err(store_error)?;
            let Some(found) = trace(&marked.transaction_id, &records, &replays, false) else {
                continue;
            };
            if filter.matches(&found) {
                items.push(summary(found));
            }
        }
    }
}

fn page<T>(items: Vec<T>, next_cursor: Option<String>, holdings: &Holdings) -> Page<T> {
    Page {
        items,
        next_cursor,
        behind: Vec::new(),
        incomplete: holdings.incomplete(),
    }
}

/// The time at which a transaction is listed: its newest failure, or its first start.
fn mark_time(mark: Mark, records: &[ArchivedRecord]) -> Option<i64> {
    match mark {
        Mark::Failure => records
            .iter()
            .filter(|r| r.outcome.as_ref().is_some_and(|o| o.failed))
            .map(|r| r.time_ms)
            .max(),
        Mark::Start => records
            .iter()
            .filter(|r| {
                r.outcome.is_none()
                    && matches!(r.kind, RecordKind::Envelope | RecordKind::HeadersOnly)
                    && r.ids
                        .as_ref()
                        .is_some_and(|ids| ids.causation_id.is_empty())
            })
            .map(|r| r.time_ms)
            .min(),
    }
}

/// What `/v1/messages` reads: a topic's messages by offset (a partition or a first offset
/// given) or else by time, in `window` either way.
pub(crate) struct MessagesQuery<'a> {
    pub topic: &'a str,
    pub partition: Option<i32>,
    pub from_offset: Option<i64>,
    pub window: (i64, i64),
    /// Only messages with this header (name, value).
    pub header: Option<(&'a str, &'a str)>,
    pub limit: usize,
    pub cursor: Option<&'a str>,
    pub with_payload: bool,
}

/// The archive as one caller reads it.
pub(crate) struct Reader {
    pub store: LogStore,
    /// The other shards, asked with the caller's credential; `None` unless a shard.
    pub fanout: Option<Fanout>,
    pub lag: Lag,
    /// The masking the caller gets: none if it may read payloads.
    pub masking: Option<Arc<Masking>>,
    pub caller: Caller,
    /// Records the refusals of reads the caller may not make.
    pub guard: Guard,
}

impl Reader {
    /// The other shards, named as an answer built from this shard's own partitions names
    /// what it lacks (incidents, messages across partitions: not gathered from the others).
    pub fn other_shards(&self) -> Vec<String> {
        self.fanout.as_ref().map_or_else(Vec::new, Fanout::others)
    }

    /// What this read reads: the store, and the other shards when a shard.
    fn holdings(&self) -> Holdings {
        Holdings::new(self.store.clone(), self.fanout.clone())
    }

    /// A transaction's trace, from every shard's records.
    pub fn transaction(&self, id: &str, with_payload: bool) -> Result<Trace, ApiError> {
        let holdings = self.holdings();
        let records = holdings.transaction(id)?;
        let replays = self.store.transaction_replays(id).map_err(store_error)?;
        let found = trace(id, &records, &replays, with_payload);
        let behind = self.lag.behind(None);
        let incomplete = holdings.incomplete();
        let Some(mut trace) = found else {
            return Err(not_found_unless_behind(
                format!("no archived message belongs to transaction {id:?}"),
                behind,
                &incomplete,
            ));
        };
        trace.behind = behind;
        trace.incomplete = incomplete;
        if let Some(masking) = &self.masking {
            masking.trace(&mut trace);
        }
        Ok(trace)
    }

    /// The transactions `filter` selects, newest first, a page at a time.
    pub fn transactions(
        &self,
        filter: &Filter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<TransactionSummary>, ApiError> {
        let holdings = self.holdings();
        let mut page = select_transactions(&holdings, filter, limit, MAX_SCAN, cursor)?;
        page.behind = self.lag.behind(filter.topic.as_deref());
        if let Some(masking) = &self.masking {
            page.items.iter_mut().for_each(|item| masking.summary(item));
        }
        Ok(page)
    }

    /// The transactions that touched `subject` in `window`, newest first, a page at a time.
    pub fn subject_transactions(
        &self,
        subject: &str,
        window: (i64, i64),
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<TransactionSummary>, ApiError> {
        let holdings = self.holdings();
        let found = holdings.subject_transactions(subject, window, limit, cursor)?;
        let ids: Vec<String> = found
            .items
            .iter()
            .map(|found| found.transaction_id.clone())
            .collect();
        let mut records = holdings.transactions(&ids)?;
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            let records = records.remove(&id).unwrap_or_default();
            let replays = self.store.transaction_replays(&id).map_err(store_error)?;
            items.extend(trace(&id, &records, &replays, false).map(summary));
        }
        if let Some(masking) = &self.masking {
            items.iter_mut().for_each(|item| masking.summary(item));
        }
        Ok(Page {
            items,
            next_cursor: found.next_cursor,
            behind: self.lag.behind(None),
            incomplete: holdings.incomplete(),
        })
    }

    /// Every archived copy of an event, and its outcomes, from every shard.
    pub fn event(&self, event_id: String, with_payload: bool) -> Result<EventView, ApiError> {
        let holdings = self.holdings();
        let found = holdings.event(&event_id)?;
        let behind = self.lag.behind(None);
        let incomplete = holdings.incomplete();
        if found.copies.is_empty() {
            return Err(not_found_unless_behind(
                format!("no archived message has event id {event_id:?}"),
                behind,
                &incomplete,
            ));
        }
        let mut outcomes: Vec<_> = found
            .outcomes
            .iter()
            .filter_map(|record| {
                let value = record.value.as_deref()?;
                let outcome = <retrace_proto::Outcome as prost::Message>::decode(value).ok()?;
                Some(outcome_view(&outcome, record.time_ms))
            })
            .collect();
        let masking = self.masking.as_deref();
        if let Some(masking) = masking {
            masking.outcomes(&mut outcomes);
        }
        Ok(EventView {
            event_id,
            copies: found
                .copies
                .iter()
                .map(|r| masked_view(r, with_payload, masking))
                .collect(),
            outcomes,
            behind,
            incomplete,
        })
    }

    /// Retrace's own topics are readable by admins only: anyone else is refused (403), and
    /// the refusal recorded.
    pub fn may_read_topic(&self, topic: &str) -> Result<(), ApiError> {
        let caller = &self.caller;
        let Some(kind) = retrace_sdk::internal_topic(topic) else {
            return Ok(());
        };
        if caller.can(Permission::AuditRead) && caller.can(Permission::TokenAdmin) {
            return Ok(());
        }
        let message = format!(
            "{} (role {}) may not read {topic}: it is Retrace's own topic of {}, readable by \
             admins only",
            caller.actor,
            caller.role,
            kind.carries()
        );
        self.guard
            .forbid(caller, "GET", "/v1/messages", message.clone());
        Err(ApiError::forbidden(message))
    }

    /// A filter on a header value the caller sees masked would tell it the value (a guess
    /// answered by a match): refused (403), and the refusal recorded.
    pub fn may_filter_on(&self, header: Option<(&str, &str)>) -> Result<(), ApiError> {
        let caller = &self.caller;
        let Some((name, _)) = header else {
            return Ok(());
        };
        if self.masking.is_none() || is_retrace_header(name) {
            return Ok(());
        }
        let message = format!(
            "{} (role {}) may not filter on header {name:?}: its values are masked for \
             callers without `{}`, and a filter would reveal them; filter on a retrace-* \
             header, or ask for `{}`",
            caller.actor,
            caller.role,
            Permission::PayloadRead,
            Permission::PayloadRead
        );
        self.guard
            .forbid(caller, "GET", "/v1/messages", message.clone());
        Err(ApiError::forbidden(message).with_field("header"))
    }

    /// A topic's messages, a page at a time.
    pub fn messages(&self, query: &MessagesQuery) -> Result<Page<MessageView>, ApiError> {
        if let (Some(fanout), Some(partition)) = (&self.fanout, query.partition)
            && let Some(holder) = fanout.holder(query.topic, partition)
        {
            return Err(ApiError::invalid(
                "partition",
                format!(
                    "partition {partition} of {} is archived by shard {holder}: ask it there",
                    query.topic
                ),
            ));
        }
        let (from, until) = query.window;
        let by_offset = query.partition.is_some() || query.from_offset.is_some();
        let page = if by_offset {
            self.store.records(
                query.topic,
                query.partition,
                query.from_offset.unwrap_or(0),
                query.limit,
                query.cursor,
            )
        } else {
            self.store
                .records_by_time(query.topic, from, until, query.limit, query.cursor)
        }
        .map_err(store_error)?;
        // Token records hold each token's secret hash: no one reads it, admins included.
        let with_payload = query.with_payload
            && retrace_sdk::internal_topic(query.topic) != Some(retrace_sdk::InternalTopic::Tokens);
        let items = page
            .items
            .iter()
            .filter(|r| !by_offset || (from..until).contains(&r.time_ms))
            .filter(|r| {
                query.header.is_none_or(|(name, value)| {
                    r.headers
                        .iter()
                        .any(|h| h.name == name && h.value.as_deref() == Some(value.as_bytes()))
                })
            })
            .map(|r| masked_view(r, with_payload, self.masking.as_deref()))
            .collect();
        let behind = self
            .lag
            .behind(Some(query.topic))
            .into_iter()
            .filter(|b| query.partition.is_none_or(|p| p == b.partition))
            .collect();
        Ok(Page {
            items,
            next_cursor: page.next_cursor,
            behind,
            // Across partitions, only this shard's were read.
            incomplete: match query.partition {
                Some(_) => Vec::new(),
                None => self.other_shards(),
            },
        })
    }
}

/// A message as a caller with `masking` may see it.
fn masked_view(
    record: &ArchivedRecord,
    with_payload: bool,
    masking: Option<&Masking>,
) -> MessageView {
    let mut view = message_view(record, with_payload);
    if let Some(masking) = masking {
        masking.message(&mut view);
    }
    view
}

/// The next offset the archive will store, per partition, with Kafka's log end and the lag
/// at the last check. A partition Kafka holds and the archive has not stored a record of
/// yet is listed at offset 0.
pub(crate) fn positions(store: &LogStore, lag: &Lag) -> Result<Vec<PositionView>, StoreError> {
    let positions = store.positions()?;
    let mut checked = lag.partitions();
    let mut views: Vec<PositionView> = positions
        .into_iter()
        .map(|position| {
            let lag = checked.remove(&(position.topic.clone(), position.partition));
            with_lag(position_view(position), lag.as_ref())
        })
        .collect();
    views.extend(checked.into_iter().map(|((topic, partition), lag)| {
        let never_archived = PositionView {
            topic,
            partition,
            epoch: 0,
            next_offset: 0,
            reset_at: None,
            previous_next_offset: None,
            high_watermark: None,
            lag: None,
            behind_since: None,
        };
        with_lag(never_archived, Some(&lag))
    }));
    views.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(views)
}

/// A stored position as the API shows it.
pub(crate) fn position_view(position: Position) -> PositionView {
    PositionView {
        topic: position.topic,
        partition: position.partition,
        epoch: position.epoch,
        next_offset: position.next_offset,
        reset_at: position.reset.map(|reset| rfc3339(reset.at_ms)),
        previous_next_offset: position.reset.map(|reset| reset.previous_next_offset),
        high_watermark: None,
        lag: None,
        behind_since: None,
    }
}

fn with_lag(mut view: PositionView, lag: Option<&PartitionLag>) -> PositionView {
    if let Some(lag) = lag {
        view.high_watermark = Some(lag.high_watermark);
        view.lag = Some(lag.lag);
        view.behind_since = lag.behind_since_ms.map(rfc3339);
    }
    view
}

#[cfg(test)]
#[path = "reads_tests.rs"]
mod tests;
