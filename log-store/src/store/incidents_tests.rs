use std::sync::Arc;

use super::*;
use crate::incidents::{IncidentCause, StepFailure};
use crate::test_records::erasure_here;
use crate::{EventIds, OutcomeRef, PreparedRecord, RecordKey, RecordKind, StoreOptions};

/// Groups failures by consumer and the outcome's value (its "error"); the archive's rule
/// groups by a fingerprint, which the store does not need to know.
#[derive(Debug)]
struct ByError;

impl IncidentRule for ByError {
    fn failures(&self, _transaction: &str, records: &[ArchivedRecord]) -> TransactionFailures {
        let events: HashMap<&str, &ArchivedRecord> = records
            .iter()
            .filter(|r| r.outcome.is_none())
            .filter_map(|r| Some((r.ids.as_ref()?.event_id.as_str(), r)))
            .collect();
        let outcomes: Vec<&ArchivedRecord> =
            records.iter().filter(|r| r.outcome.is_some()).collect();
        let mut failures = Vec::new();
        for (index, record) in outcomes.iter().enumerate() {
            let about = record.outcome.as_ref().unwrap();
            let consumer = &record.ids.as_ref().unwrap().source;
            if !about.failed || !events.contains_key(about.event_id.as_str()) {
                continue;
            }
            let later: Vec<&&ArchivedRecord> = outcomes[index + 1..]
                .iter()
                .filter(|r| {
                    r.outcome.as_ref().unwrap().event_id == about.event_id
                        && r.ids.as_ref().unwrap().source == *consumer
                })
                .collect();
            let superseded = later.iter().any(|r| r.outcome.as_ref().unwrap().failed);
            let recovered_at_ms = later.last().filter(|_| !superseded).map(|r| r.time_ms);
            let error = String::from_utf8(record.value.clone().unwrap()).unwrap();
            failures.push(StepFailure {
                cause: IncidentCause {
                    id: format!("{consumer}-{error}"),
                    topic: "registrations".into(),
                    event_type: "registration.submitted.v1".into(),
                    consumer: consumer.clone(),
                    is_code: false,
                    cause: error.clone(),
                },
                event_id: about.event_id.clone(),
                at_ms: record.time_ms,
                error,
                still_failing: !superseded && recovered_at_ms.is_none(),
                recovered_at_ms,
            });
        }
        TransactionFailures {
            subject_ids: events
                .values()
                .flat_map(|r| r.ids.as_ref().unwrap().subject_ids.clone())
                .collect(),
            failures,
        }
    }
}

fn open_with_rule(path: &std::path::Path) -> LogStore {
    let options = StoreOptions {
        incidents: Some(Arc::new(ByError)),
        ..StoreOptions::default()
    };
    LogStore::open(path, &options).unwrap()
}

/// The event of transaction `tx-N`, on `registrations` at offset N, touching `person:N`.
fn event(n: i64, time_ms: i64) -> ArchivedRecord {
    ArchivedRecord {
        key: RecordKey {
            topic: "registrations".into(),
            partition: 0,
            epoch: 0,
            offset: n,
        },
        message_key: None,
        value: Some(b"{}".to_vec()),
        headers: Vec::new(),
        kafka_timestamp_ms: Some(time_ms),
        time_ms,
        kind: RecordKind::Envelope,
        problem: None,
        ids: Some(EventIds {
            event_id: format!("ev-{n}"),
            transaction_id: format!("tx-{n}"),
            subject_ids: vec![format!("person:{n}")],
            ..EventIds::default()
        }),
        outcome: None,
        archived_at_ms: time_ms,
        erased_at_ms: None,
        audit: None,
    }
}

/// An outcome of `validation` on `ev-N`, at `offset` of the outcomes topic: a failure with
/// `error`, or (`None`) processed.
fn outcome(offset: i64, n: i64, error: Option<&str>, time_ms: i64) -> ArchivedRecord {
    ArchivedRecord {
        key: RecordKey {
            topic: "retrace.outcomes".into(),
            offset,
            ..event(n, time_ms).key
        },
        value: Some(error.unwrap_or("ok").as_bytes().to_vec()),
        kind: RecordKind::Outcome,
        ids: Some(EventIds {
            transaction_id: format!("tx-{n}"),
            source: "validation".into(),
            ..EventIds::default()
        }),
        outcome: Some(OutcomeRef {
            event_id: format!("ev-{n}"),
            failed: error.is_some(),
        }),
        ..event(n, time_ms)
    }
}

fn append(store: &LogStore, records: Vec<ArchivedRecord>) -> Vec<IncidentChange> {
    let prepared: Vec<PreparedRecord> = records
        .into_iter()
        .map(|r| PreparedRecord::new(r).map_err(|(e, _)| e).unwrap())
        .collect();
    store.append(&prepared).unwrap().incidents
}

fn incident(store: &LogStore, id: &str) -> Incident {
    store.incident(id).unwrap().expect("the incident exists")
}

const TIMEOUT: &str = "validation-register timed out";
const BAD_DATE: &str = "validation-birth date in the future";

/// Three transactions fail with one error and one with another, a minute apart.
fn outage() -> Vec<ArchivedRecord> {
    let mut records = Vec::new();
    for n in 0..4 {
        records.push(event(n, 60_000 * n));
    }
    let errors = [
        "register timed out",
        "register timed out",
        "birth date in the future",
        "register timed out",
    ];
    for (n, error) in errors.iter().enumerate() {
        let n = n as i64;
        records.push(outcome(n, n, Some(error), 60_000 * n + 500));
    }
    records
}

#[test]
fn failures_of_one_cause_are_one_incident_with_its_counts_minutes_and_subjects() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_rule(dir.path());
    let changes = append(&store, outage());

    let mut opened: Vec<&str> = changes.iter().map(|c| c.incident.id()).collect();
    opened.sort();
    assert_eq!(opened, [BAD_DATE, TIMEOUT]);
    assert!(
        changes
            .iter()
            .all(|c| c.transition == IncidentTransition::Opened)
    );
    let timeout = incident(&store, TIMEOUT);
    assert_eq!(
        (timeout.transactions, timeout.failing, timeout.failures),
        (3, 3, 3)
    );
    assert_eq!(
        (timeout.first_seen_ms, timeout.last_seen_ms),
        (500, 180_500)
    );
    assert_eq!(
        store.incident_minutes(TIMEOUT, 0, i64::MAX).unwrap(),
        [(0, 1), (60_000, 1), (180_000, 1)]
    );
    assert_eq!(incident(&store, BAD_DATE).transactions, 1);
    assert_eq!(store.incidents().unwrap().len(), 2);

    let subjects = store.incident_subjects(TIMEOUT, 2, None).unwrap();
    let names: Vec<&str> = subjects
        .items
        .iter()
        .map(|s| s.subject_id.as_str())
        .collect();
    assert_eq!(names, ["person:0", "person:1"]);
    let rest = store
        .incident_subjects(TIMEOUT, 2, subjects.next_cursor.as_deref())
        .unwrap();
    assert_eq!(rest.items[0].subject_id, "person:3");
    assert_eq!(rest.items[0].transactions, [("tx-3".to_owned(), true)]);
    assert_eq!(rest.next_cursor, None);
}

#[test]
fn a_later_success_resolves_an_incident_and_a_new_failure_reopens_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_rule(dir.path());
    append(&store, outage());

    // Two of the three recover: still open. The third recovers: resolved at its success.
    append(
        &store,
        vec![outcome(10, 0, None, 300_000), outcome(11, 1, None, 301_000)],
    );
    assert_eq!(incident(&store, TIMEOUT).failing, 1);
    let changes = append(&store, vec![outcome(12, 3, None, 302_000)]);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].transition, IncidentTransition::Resolved);
    let resolved = incident(&store, TIMEOUT);
    assert!(!resolved.is_open());
    assert_eq!(resolved.resolved_at_ms, Some(302_000));
    assert_eq!((resolved.transactions, resolved.failures), (3, 3));

    // The failing transactions come first in the listing of an incident's transactions.
    append(
        &store,
        vec![
            event(4, 400_000),
            outcome(13, 4, Some("register timed out"), 400_500),
        ],
    );
    let reopened = incident(&store, TIMEOUT);
    assert_eq!((reopened.reopened, reopened.failing), (1, 1));
    assert_eq!(reopened.opened_at_ms, 400_500);
    assert_eq!(reopened.resolved_at_ms, None);
    let members = store.incident_members(TIMEOUT, 10, None).unwrap().items;
    let order: Vec<(&str, bool)> = members
        .iter()
        .map(|m| (m.transaction_id.as_str(), m.is_failing()))
        .collect();
    assert_eq!(
        order,
        [
            ("tx-4", true),
            ("tx-0", false),
            ("tx-1", false),
            ("tx-3", false)
        ]
    );
    assert_eq!(members[0].failing_event_ids, ["ev-4"]);
}

#[test]
fn a_failure_archived_before_its_event_counts_when_the_event_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_rule(dir.path());
    append(&store, vec![outcome(0, 0, Some("register timed out"), 500)]);
    assert!(store.incidents().unwrap().is_empty());
    let changes = append(&store, vec![event(0, 0)]);
    assert_eq!(changes[0].transition, IncidentTransition::Opened);
    assert_eq!(incident(&store, TIMEOUT).failing, 1);
}

/// An incident, its transactions and its minutes.
type IndexedIncident = (Incident, Vec<IncidentMember>, Vec<(i64, u64)>);

/// What the index holds about the incidents that the records decide, for comparing two
/// archives: not when an incident last opened or resolved, nor how often it reopened, which
/// are what the archive saw happen in the order records came.
fn index(store: &LogStore) -> Vec<IndexedIncident> {
    store
        .incidents()
        .unwrap()
        .into_iter()
        .map(|incident| {
            let incident = Incident {
                opened_at_ms: 0,
                resolved_at_ms: None,
                reopened: 0,
                ..incident
            };
            let id = incident.id().to_owned();
            let members = store.incident_members(&id, 100, None).unwrap().items;
            let minutes = store.incident_minutes(&id, i64::MIN, i64::MAX).unwrap();
            (incident, members, minutes)
        })
        .collect()
}

#[test]
fn the_index_kept_batch_by_batch_is_the_one_rebuilt_from_the_records() {
    let mut records = outage();
    records.push(outcome(10, 0, None, 300_000));
    records.push(outcome(11, 1, Some("register timed out"), 301_000));

    let kept = tempfile::tempdir().unwrap();
    let store = open_with_rule(kept.path());
    // Outcomes first, one record per batch: the order the index must not depend on.
    records.sort_by_key(|r| (r.outcome.is_none(), r.time_ms));
    for record in records.clone() {
        append(&store, vec![record]);
    }

    let rebuilt = tempfile::tempdir().unwrap();
    let without_rule = LogStore::open(rebuilt.path(), &StoreOptions::default()).unwrap();
    append(&without_rule, records);
    assert!(without_rule.incidents().unwrap().is_empty());
    drop(without_rule);
    let reopened = open_with_rule(rebuilt.path());

    assert_eq!(index(&reopened), index(&store));
    let timeout = incident(&store, TIMEOUT);
    assert_eq!(
        (timeout.transactions, timeout.failing, timeout.failures),
        (3, 2, 4)
    );
}

#[test]
fn erasing_the_subject_an_example_error_came_from_clears_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_rule(dir.path());
    append(&store, outage());
    let before = incident(&store, TIMEOUT);
    assert_eq!(
        (
            before.example_error.as_str(),
            before.example_transaction_id.as_str()
        ),
        ("register timed out", "tx-3"),
        "the newest failure's"
    );

    store
        .apply_erasure(&erasure_here(&store, "person:1", 900_000), |_| None)
        .unwrap();
    assert_eq!(
        incident(&store, TIMEOUT).example_error,
        "register timed out",
        "not tx-1's"
    );
    store
        .apply_erasure(&erasure_here(&store, "person:3", 900_000), |_| None)
        .unwrap();
    let after = incident(&store, TIMEOUT);
    assert_eq!((after.example_error.as_str(), after.transactions), ("", 3));
}
