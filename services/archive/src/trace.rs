//! From a transaction's archived records to what a person wants to see: its events in time
//! order with their outcomes, its causation tree, its replays, and one status.

use std::collections::{BTreeMap, HashMap, HashSet};

use prost::Message as _;
use retrace_log_store::{ArchivedRecord, RecordKind, ReplayRecord, ReplayState};
use retrace_proto::headers::REPLAY_ID;
use retrace_proto::{Envelope, Outcome, OutcomeStatus};

use crate::classify::claims_envelope;

mod records;

pub(crate) use records::is_publication;
use retrace_api::{
    FailedStep, MessageView, OutcomeView, Payload, ReplayView, Trace, TraceEvent,
    TransactionStatus, TransactionSummary, TreeNode,
};

/// Builds the trace of a transaction from its records (as [`LogStore::transaction`] returns
/// them, in time order) and its replays. `None` when there is nothing to trace.
///
/// [`LogStore::transaction`]: retrace_log_store::LogStore::transaction
pub fn trace(
    transaction_id: &str,
    records: &[ArchivedRecord],
    replays: &[ReplayRecord],
    with_payload: bool,
) -> Option<Trace> {
    let (first, last) = (records.first()?, records.last()?);
    let outcomes = outcomes_by_event(records);
    let events: Vec<&ArchivedRecord> = records.iter().filter(|r| r.outcome.is_none()).collect();
    let failure = current_failure(&events, &outcomes);
    let retrying = outcomes
        .values()
        .flat_map(|list| latest_per_consumer(list).into_values())
        .any(|(_, _, status)| *status == OutcomeStatus::Retrying);
    let status = match &failure {
        Some((failed_at, _)) if replays.iter().any(|r| replay_answers(r, *failed_at)) => {
            TransactionStatus::Replayed
        }
        Some(_) => TransactionStatus::Failed,
        None if retrying => TransactionStatus::InProgress,
        None => TransactionStatus::Ok,
    };
    let steps = steps(&events, &outcomes, with_payload);
    let last_ms = steps
        .iter()
        .map(|(_, last_ms, _)| *last_ms)
        .chain([last.time_ms])
        .max()
        .unwrap_or(last.time_ms);
    let mut previous_ms = first.time_ms;
    let trace_events = steps
        .into_iter()
        .map(|(first_ms, _, mut event)| {
            event.since_previous_ms = first_ms - previous_ms;
            previous_ms = first_ms;
            event
        })
        .collect();
    Some(Trace {
        transaction_id: transaction_id.to_owned(),
        status,
        started_at: rfc3339(first.time_ms),
        last_at: rfc3339(last_ms),
        duration_ms: last_ms - first.time_ms,
        events: trace_events,
        tree: causation_tree(&events),
        replays: replays.iter().map(replay_view).collect(),
        failure: failure.map(|(_, step)| step),
        behind: Vec::new(),
        incomplete: Vec::new(),
    })
}

/// The one-line form of a trace, for listings.
pub fn summary(trace: Trace) -> TransactionSummary {
    let mut topics: Vec<String> = Vec::new();
    let mut subject_ids: Vec<String> = Vec::new();
    for event in &trace.events {
        if !topics.contains(&event.message.topic) {
            topics.push(event.message.topic.clone());
        }
        for subject in &event.message.subject_ids {
            if !subject_ids.contains(subject) {
                subject_ids.push(subject.clone());
            }
        }
    }
    TransactionSummary {
        transaction_id: trace.transaction_id,
        status: trace.status,
        started_at: trace.started_at,
        last_at: trace.last_at,
        events: trace.events.len(),
        topics,
        subject_ids,
        failure: trace.failure,
    }
}

/// The event ids whose latest outcome from some consumer is a failure.
pub fn failed_event_ids(records: &[ArchivedRecord]) -> HashSet<String> {
    outcomes_by_event(records)
        .into_iter()
        .filter(|(_, list)| {
            latest_per_consumer(list)
                .values()
                .any(|(_, _, status)| is_failure(*status))
        })
        .map(|(event_id, _)| event_id.to_owned())
        .collect()
}

/// Each event's outcomes, in the order of `records` (time order).
pub(crate) type Outcomes<'r> = HashMap<&'r str, Vec<(i64, OutcomeView, OutcomeStatus)>>;

/// An outcome that names a topic speaks only for an event on that topic: one reported through
/// the gateway by a caller allowed only some topics, about an event of another, is ignored.
pub(crate) fn outcomes_by_event(records: &[ArchivedRecord]) -> Outcomes<'_> {
    let topics: HashMap<&str, &str> = records
        .iter()
        .filter(|r| r.outcome.is_none())
        .filter_map(|r| Some((r.ids.as_ref()?.event_id.as_str(), r.key.topic.as_str())))
        .collect();
    let mut outcomes = Outcomes::new();
    for record in records {
        if let (Some(about), Some(value)) = (&record.outcome, record.value.as_deref())
            && let Ok(outcome) = Outcome::decode(value)
            && (outcome.topic.is_empty()
                || topics
                    .get(about.event_id.as_str())
                    .is_none_or(|topic| *topic == outcome.topic))
        {
            let status = outcome.status();
            outcomes.entry(&about.event_id).or_default().push((
                record.time_ms,
                outcome_view(&outcome, record.time_ms),
                status,
            ));
        }
    }
    outcomes
}

/// A replay answers a failure when it was asked for after it and has not itself failed.
fn replay_answers(replay: &ReplayRecord, failed_at_ms: i64) -> bool {
    replay.requested_at_ms >= failed_at_ms && replay.state() != ReplayState::Failed
}

pub(crate) fn is_failure(status: OutcomeStatus) -> bool {
    matches!(status, OutcomeStatus::Failed | OutcomeStatus::DeadLettered)
}

/// Each consumer's newest outcome. Outcomes arrive in time order, so the last one wins.
fn latest_per_consumer(
    list: &[(i64, OutcomeView, OutcomeStatus)],
) -> BTreeMap<&str, &(i64, OutcomeView, OutcomeStatus)> {
    list.iter()
        .map(|entry| (entry.1.consumer.as_str(), entry))
        .collect()
}

/// The newest failure that no later outcome of the same consumer has overcome.
fn current_failure(
    events: &[&ArchivedRecord],
    outcomes: &Outcomes<'_>,
) -> Option<(i64, FailedStep)> {
    let mut newest: Option<(i64, FailedStep)> = None;
    for (event_id, list) in outcomes {
        for (time_ms, view, status) in latest_per_consumer(list).into_values() {
            if !is_failure(*status) || newest.as_ref().is_some_and(|(t, _)| t > time_ms) {
                continue;
            }
            let event = events
                .iter()
                .find(|r| r.ids.as_ref().is_some_and(|ids| ids.event_id == *event_id));
            let ids = event.and_then(|r| r.ids.as_ref());
            newest = Some((
                *time_ms,
                FailedStep {
                    event_id: (*event_id).to_owned(),
                    topic: event.map(|r| r.key.topic.clone()).unwrap_or_default(),
                    event_type: ids.map(|ids| ids.event_type.clone()).unwrap_or_default(),
                    consumer: view.consumer.clone(),
                    error: view.error.clone(),
                    time: view.time.clone(),
                },
            ));
        }
    }
    newest
}

/// Each event once, in time order, with every record that carries it and the outcomes
/// about it; with its time and the time of its last record or outcome. An event is placed
/// at its publication, whatever copies of it the worker, a redrive or a replay wrote later.
/// A record without an event id is a step of its own.
fn steps(
    events: &[&ArchivedRecord],
    outcomes: &Outcomes<'_>,
    with_payload: bool,
) -> Vec<(i64, i64, TraceEvent)> {
    let mut groups: Vec<Vec<&ArchivedRecord>> = Vec::with_capacity(events.len());
    let mut group_of: HashMap<&str, usize> = HashMap::new();
    for &record in events {
        let event_id = record.ids.as_ref().map_or("", |ids| ids.event_id.as_str());
        if !event_id.is_empty() {
            if let Some(&group) = group_of.get(event_id) {
                groups[group].push(record);
                continue;
            }
            group_of.insert(event_id, groups.len());
        }
        groups.push(vec![record]);
    }
    let mut steps: Vec<(i64, i64, TraceEvent)> = groups
        .into_iter()
        .map(|carriers| {
            let first = carriers
                .iter()
                .copied()
                .find(|r| records::is_publication(r))
                .or_else(|| {
                    carriers
                        .iter()
                        .copied()
                        .min_by_key(|r| records::written_ms(r))
                })
                .expect("a group holds at least one record");
            let about: Vec<(i64, &OutcomeView)> = first
                .ids
                .as_ref()
                .and_then(|ids| outcomes.get(ids.event_id.as_str()))
                .map(|list| list.iter().map(|(at, view, _)| (*at, view)).collect())
                .unwrap_or_default();
            let last_ms = carriers
                .iter()
                .map(|r| records::written_ms(r))
                .chain(about.iter().map(|(at, _)| *at))
                .chain([first.time_ms])
                .max()
                .unwrap_or(first.time_ms);
            let event = TraceEvent {
                message: message_view(first, with_payload),
                since_previous_ms: 0,
                last_at: rfc3339(last_ms),
                duration_ms: last_ms - first.time_ms,
                records: records::event_records(&carriers, &about),
            };
            (first.time_ms, last_ms, event)
        })
        .collect();
    steps.sort_by_key(|(first_ms, _, _)| *first_ms);
    steps
}

/// Parents before children; an event whose cause is not in the transaction is a root.
/// Replayed copies are left out: they repeat an event already in the tree.
fn causation_tree(events: &[&ArchivedRecord]) -> Vec<TreeNode> {
    let originals: Vec<_> = events
        .iter()
        .filter(|r| replay_id(r).is_none())
        .filter_map(|r| Some((*r, r.ids.as_ref().filter(|ids| !ids.event_id.is_empty())?)))
        .collect();
    let known: HashSet<&str> = originals
        .iter()
        .map(|(_, ids)| ids.event_id.as_str())
        .collect();
    let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    let mut seen = HashSet::new();
    for (index, (_, ids)) in originals.iter().enumerate() {
        if !seen.insert(ids.event_id.as_str()) {
            continue; // published twice: one node
        }
        if known.contains(ids.causation_id.as_str()) && ids.causation_id != ids.event_id {
            children.entry(&ids.causation_id).or_default().push(index);
        } else {
            roots.push(index);
        }
    }
    fn node(
        index: usize,
        originals: &[(&ArchivedRecord, &retrace_log_store::EventIds)],
        children: &HashMap<&str, Vec<usize>>,
        depth: usize,
    ) -> TreeNode {
        let (record, ids) = originals[index];
        // A cycle of causation ids cannot be real; depth bounds it all the same.
        let kids = match children.get(ids.event_id.as_str()) {
            Some(kids) if depth < 64 => kids
                .iter()
                .map(|k| node(*k, originals, children, depth + 1))
                .collect(),
            _ => Vec::new(),
        };
        TreeNode {
            event_id: ids.event_id.clone(),
            event_type: ids.event_type.clone(),
            topic: record.key.topic.clone(),
            children: kids,
        }
    }
    roots
        .into_iter()
        .map(|index| node(index, &originals, &children, 0))
        .collect()
}

/// The replay a record was re-published by, from its `retrace-replay-id` header.
pub fn replay_id(record: &ArchivedRecord) -> Option<String> {
    records::header(record, REPLAY_ID).map(str::to_owned)
}

pub fn message_view(record: &ArchivedRecord, with_payload: bool) -> MessageView {
    let ids = record.ids.clone().unwrap_or_default();
    MessageView {
        topic: record.key.topic.clone(),
        partition: record.key.partition,
        offset: record.key.offset,
        kind: record.kind.as_str().to_owned(),
        // Records archived before `claims_envelope` was the rule kept a decode error on every
        // headers-only value; the same rule decides whether it is shown.
        problem: record.problem.clone().filter(|_| {
            record.kind != RecordKind::HeadersOnly
                || claims_envelope(record.value.as_deref().unwrap_or_default(), &record.headers)
        }),
        time: rfc3339(record.time_ms),
        event_id: ids.event_id,
        transaction_id: ids.transaction_id,
        causation_id: ids.causation_id,
        event_type: ids.event_type,
        source: ids.source,
        subject_ids: ids.subject_ids,
        replay_id: replay_id(record),
        payload: with_payload.then(|| payload(record)),
        erased_at: record.erased_at_ms.map(rfc3339),
    }
}

fn payload(record: &ArchivedRecord) -> Payload {
    let headers = record
        .headers
        .iter()
        .map(|h| {
            let value = h
                .value
                .as_deref()
                .map(|v| String::from_utf8_lossy(v).into_owned());
            (h.name.clone(), value)
        })
        .collect();
    if record.erased_at_ms.is_some() {
        // Nothing left to show but Retrace's own headers.
        return Payload {
            content_type: String::new(),
            json: None,
            text: None,
            base64: None,
            headers,
        };
    }
    let (content_type, bytes) = match record.kind {
        RecordKind::Envelope => {
            let envelope =
                Envelope::decode(record.value.as_deref().unwrap_or_default()).unwrap_or_default();
            (envelope.content_type, envelope.payload)
        }
        _ => (String::new(), record.value.clone().unwrap_or_default()),
    };
    let json = serde_json::from_slice(&bytes).ok();
    let text = json
        .is_none()
        .then(|| String::from_utf8(bytes.clone()).ok())
        .flatten();
    let base64 = (json.is_none() && text.is_none()).then(|| base64_encode(&bytes));
    Payload {
        content_type,
        json,
        text,
        base64,
        headers,
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn outcome_view(outcome: &Outcome, archived_time_ms: i64) -> OutcomeView {
    let status = match outcome.status() {
        OutcomeStatus::Processed => "processed",
        OutcomeStatus::Failed => "failed",
        OutcomeStatus::Retrying => "retrying",
        OutcomeStatus::DeadLettered => "dead_lettered",
        OutcomeStatus::Skipped => "skipped",
        OutcomeStatus::Unspecified => "unspecified",
    };
    OutcomeView {
        consumer: outcome.consumer.clone(),
        status: status.to_owned(),
        error: outcome.error.clone(),
        error_code: outcome.error_code.clone(),
        reported_by: outcome.reported_by.clone(),
        attempt: outcome.attempt,
        time: rfc3339(archived_time_ms),
    }
}

pub fn replay_view(replay: &ReplayRecord) -> ReplayView {
    ReplayView {
        replay_id: replay.replay_id.clone(),
        requested_by: replay.requested_by.clone(),
        reason: replay.reason.clone(),
        requested_at: rfc3339(replay.requested_at_ms),
        state: replay.state().as_str().to_owned(),
        selection: replay.selection.clone(),
        transactions: replay.transaction_ids.len(),
        planned: replay.planned,
        published: replay.published,
        target_topic: replay.target_topic.clone(),
        error: replay.error.clone(),
        finished_at: (replay.finished_at_ms != 0).then(|| rfc3339(replay.finished_at_ms)),
    }
}

/// Milliseconds since the epoch as RFC 3339 in UTC.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| format!("{t:.3}"))
        .unwrap_or_else(|_| ms.to_string())
}

#[cfg(test)]
#[path = "trace_tests.rs"]
mod tests;
