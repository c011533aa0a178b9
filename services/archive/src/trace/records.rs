//! The records that carry one event, each with the role it plays (publication, retried
//! publish, the worker's retry, deferral and dead-letter copies, redrive, replay) and the
//! outcomes that report on it.
//!
//! A record's role comes from Retrace's own headers: the worker marks its copies with
//! `retrace-job-*` headers ([`job`]), a replay with `retrace-replay-id`. Its time is when
//! Kafka says it was written (its timestamp), not the envelope's `occurred_at`, which every
//! copy repeats.

use retrace_api::{EventRecord, OutcomeView, RecordRole};
use retrace_log_store::ArchivedRecord;
use retrace_proto::headers::{REPLAY_ID, job};

use super::rfc3339;

/// An event's outcomes with the time each was reported, in time order.
pub(super) type TimedOutcomes<'a> = [(i64, &'a OutcomeView)];

/// The records of one event in the order written, each with its outcomes. `carriers` are
/// the records that carry the event (not outcomes), in any order.
pub(super) fn event_records(
    carriers: &[&ArchivedRecord],
    outcomes: &TimedOutcomes<'_>,
) -> Vec<EventRecord> {
    let mut carriers: Vec<&ArchivedRecord> = carriers.to_vec();
    carriers.sort_by_key(|record| written_ms(record));
    let mut published = false;
    let mut records: Vec<EventRecord> = carriers
        .iter()
        .map(|record| {
            let mut role = role(record);
            if role == RecordRole::Published {
                role = if published {
                    RecordRole::Republished
                } else {
                    RecordRole::Published
                };
                published = true;
            }
            EventRecord {
                role,
                attempt: attempt(record),
                topic: record.key.topic.clone(),
                partition: record.key.partition,
                offset: record.key.offset,
                time: rfc3339(written_ms(record)),
                due_at: header(record, job::DUE_AT).and_then(due_at_ms).map(rfc3339),
                replay_id: header(record, REPLAY_ID).map(str::to_owned),
                redriven_by: header(record, job::REDRIVEN_BY).map(str::to_owned),
                outcomes: Vec::new(),
            }
        })
        .collect();
    let written: Vec<i64> = carriers.iter().map(|record| written_ms(record)).collect();
    for (reported_ms, outcome) in outcomes {
        let index = reported_on(&records, &written, outcome.attempt.max(1), *reported_ms);
        records[index].outcomes.push((*outcome).clone());
    }
    records
}

/// When Kafka says the record was written; the event's time when Kafka gave none.
pub(super) fn written_ms(record: &ArchivedRecord) -> i64 {
    record.kafka_timestamp_ms.unwrap_or(record.time_ms)
}

/// Whether a record is an event's publication (or a retried publish of it), not a copy
/// Retrace wrote: what a replay re-publishes.
pub(crate) fn is_publication(record: &ArchivedRecord) -> bool {
    role(record) == RecordRole::Published
}

/// Which record an outcome reports on: the newest delivery written before it of the attempt
/// it names. A dead-letter copy is never delivered, so it is never reported on; an outcome
/// that names an attempt no record is for (a consumer that does not count attempts) goes to
/// the newest delivery written before it.
fn reported_on(records: &[EventRecord], written: &[i64], attempt: u32, reported_ms: i64) -> usize {
    let deliveries =
        || (0..records.len()).filter(|&index| records[index].role != RecordRole::DeadLettered);
    let of_attempt = || deliveries().filter(|&index| records[index].attempt == attempt);
    let before = |index: &usize| written[*index] <= reported_ms;
    of_attempt()
        .rfind(before)
        .or_else(|| of_attempt().next())
        .or_else(|| deliveries().rfind(before))
        .or_else(|| deliveries().next())
        .unwrap_or(0)
}

/// Why a record was written. The worker's headers come first: its copies of a replayed or
/// redriven job keep the replay's and the redrive's headers.
fn role(record: &ArchivedRecord) -> RecordRole {
    if header(record, job::DUE_AT).is_some() {
        if header(record, job::ERROR).is_some() {
            RecordRole::Retry
        } else {
            RecordRole::Deferred
        }
    } else if header(record, job::ATTEMPT).is_some() {
        RecordRole::DeadLettered
    } else if header(record, job::REDRIVEN_BY).is_some() {
        RecordRole::Redriven
    } else if header(record, REPLAY_ID).is_some() {
        RecordRole::Replayed
    } else {
        RecordRole::Published
    }
}

fn attempt(record: &ArchivedRecord) -> u32 {
    header(record, job::ATTEMPT)
        .and_then(|text| text.trim().parse().ok())
        .filter(|attempt| *attempt >= 1)
        .unwrap_or(1)
}

/// The worker writes milliseconds since the epoch; RFC 3339 is accepted, as the worker does.
fn due_at_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    text.parse::<i64>().ok().or_else(|| {
        text.parse::<jiff::Timestamp>()
            .ok()
            .map(|t| t.as_millisecond())
    })
}

/// The last value of header `name`, when it is text.
pub(super) fn header<'r>(record: &'r ArchivedRecord, name: &str) -> Option<&'r str> {
    record
        .headers
        .iter()
        .rev()
        .find(|h| h.name == name)
        .and_then(|h| std::str::from_utf8(h.value.as_deref()?).ok())
}
