use prost::Message as _;
use retrace_log_store::{EventIds, Header, OutcomeRef, RecordKey};
use retrace_proto::{OUTCOMES_TOPIC, Outcome, OutcomeStatus};

use retrace_api::RecordRole;

use super::*;

fn event(topic: &str, offset: i64, event_id: &str, cause: &str, time_ms: i64) -> ArchivedRecord {
    let envelope = Envelope {
        event_id: event_id.into(),
        transaction_id: "t1".into(),
        causation_id: cause.into(),
        content_type: "application/json".into(),
        payload: br#"{"child":"Amina"}"#.to_vec(),
        ..Envelope::default()
    };
    ArchivedRecord {
        key: RecordKey {
            topic: topic.into(),
            partition: 0,
            epoch: 0,
            offset,
        },
        message_key: Some(b"t1".to_vec()),
        value: Some(envelope.encode_to_vec()),
        headers: Vec::new(),
        kafka_timestamp_ms: Some(time_ms),
        time_ms,
        kind: RecordKind::Envelope,
        problem: None,
        ids: Some(EventIds {
            event_id: event_id.into(),
            transaction_id: "t1".into(),
            causation_id: cause.into(),
            subject_ids: vec!["beneficiary:42".into()],
            source: "registration".into(),
            event_type: format!("{topic}.v1"),
        }),
        outcome: None,
        archived_at_ms: time_ms,
        erased_at_ms: None,
        audit: None,
    }
}

fn outcome(
    offset: i64,
    event_id: &str,
    consumer: &str,
    status: OutcomeStatus,
    time_ms: i64,
) -> ArchivedRecord {
    let outcome = Outcome {
        event_id: event_id.into(),
        transaction_id: "t1".into(),
        consumer: consumer.into(),
        status: status as i32,
        error: if status == OutcomeStatus::Processed {
            String::new()
        } else {
            "renderer down".into()
        },
        attempt: 1,
        at: None,
        ..Outcome::default()
    };
    let failed = matches!(status, OutcomeStatus::Failed | OutcomeStatus::DeadLettered);
    ArchivedRecord {
        kind: RecordKind::Outcome,
        value: Some(outcome.encode_to_vec()),
        outcome: Some(OutcomeRef {
            event_id: event_id.into(),
            failed,
        }),
        ..event(OUTCOMES_TOPIC, offset, "", "", time_ms)
    }
}

fn replayed(mut record: ArchivedRecord, replay: &str, offset: i64, time_ms: i64) -> ArchivedRecord {
    record.key.offset = offset;
    record.time_ms = time_ms;
    record.kafka_timestamp_ms = Some(time_ms);
    record.headers.push(Header {
        name: REPLAY_ID.into(),
        value: Some(replay.as_bytes().to_vec()),
    });
    record
}

fn replay(requested_at_ms: i64, state: ReplayState) -> ReplayRecord {
    let mut replay = ReplayRecord {
        replay_id: "r1".into(),
        requested_at_ms,
        ..ReplayRecord::default()
    };
    replay.set_state(state);
    replay
}

const A: &str = "0190a000-0000-7000-8000-00000000000a";
const B: &str = "0190a000-0000-7000-8000-00000000000b";
const C: &str = "0190a000-0000-7000-8000-00000000000c";

fn flow() -> Vec<ArchivedRecord> {
    vec![
        event("registrations", 0, A, "", 100),
        outcome(0, A, "validation", OutcomeStatus::Processed, 110),
        event("validations", 0, B, A, 120),
        outcome(1, B, "certificates", OutcomeStatus::Failed, 150),
    ]
}

#[test]
fn a_transaction_whose_last_word_is_a_failure_is_failed_at_that_step() {
    let trace = trace("t1", &flow(), &[], false).unwrap();
    assert_eq!(trace.status, TransactionStatus::Failed);
    let failure = trace.failure.unwrap();
    assert_eq!(
        (failure.event_id.as_str(), failure.topic.as_str()),
        (B, "validations")
    );
    assert_eq!(
        (failure.consumer.as_str(), failure.error.as_str()),
        ("certificates", "renderer down")
    );
    assert_eq!(trace.events.len(), 2, "outcomes are attached, not listed");
    assert_eq!(trace.events[1].since_previous_ms, 20);
    assert_eq!(trace.events[1].outcomes().next().unwrap().status, "failed");
    assert_eq!(trace.duration_ms, 50);
}

#[test]
fn an_outcome_naming_another_topic_than_its_events_is_ignored() {
    let forged = |topic: &str| {
        let mut record = outcome(2, A, "validation", OutcomeStatus::Failed, 200);
        let mut value = Outcome::decode(record.value.as_deref().unwrap()).unwrap();
        value.topic = topic.into();
        value.reported_by = "orders-publisher".into();
        record.value = Some(value.encode_to_vec());
        record
    };
    let mut records = vec![
        event("registrations", 0, A, "", 100),
        outcome(0, A, "validation", OutcomeStatus::Processed, 110),
    ];
    records.push(forged("orders"));
    let ignored = trace("t1", &records, &[], false).unwrap();
    assert_eq!(ignored.status, TransactionStatus::Ok, "{ignored:?}");
    assert_eq!(ignored.events[0].outcomes().count(), 1);
    records.pop();
    records.push(forged("registrations"));
    let counted = trace("t1", &records, &[], false).unwrap();
    assert_eq!(counted.status, TransactionStatus::Failed);
    assert_eq!(
        counted.events[0].outcomes().nth(1).unwrap().reported_by,
        "orders-publisher"
    );
}

#[test]
fn the_causation_tree_nests_children_under_their_cause() {
    let mut records = flow();
    records.push(event("validations", 1, C, A, 130));
    let trace = trace("t1", &records, &[], false).unwrap();
    assert_eq!(trace.tree.len(), 1);
    let root = &trace.tree[0];
    assert_eq!(root.event_id, A);
    let children: Vec<_> = root.children.iter().map(|c| c.event_id.as_str()).collect();
    assert_eq!(children, [B, C]);
}

#[test]
fn a_replay_after_the_failure_makes_it_replayed_and_a_later_success_resolves_it() {
    let records = flow();
    let replays = [replay(160, ReplayState::Done)];
    assert_eq!(
        trace("t1", &records, &replays, false).unwrap().status,
        TransactionStatus::Replayed
    );
    let earlier = [replay(140, ReplayState::Done)];
    assert_eq!(
        trace("t1", &records, &earlier, false).unwrap().status,
        TransactionStatus::Failed,
        "a replay from before the failure does not answer it"
    );
    let mut resolved = records.clone();
    resolved.push(replayed(records[2].clone(), "r1", 5, 170));
    resolved.push(outcome(2, B, "certificates", OutcomeStatus::Processed, 180));
    let trace = trace("t1", &resolved, &replays, false).unwrap();
    assert_eq!(trace.status, TransactionStatus::Ok);
    assert_eq!(trace.failure, None);
    assert_eq!(
        trace.events.len(),
        2,
        "the replayed copy is a record of its event"
    );
    let copy = &trace.events[1].records[1];
    assert_eq!(
        (copy.role, copy.replay_id.as_deref(), copy.time.as_str()),
        (RecordRole::Replayed, Some("r1"), rfc3339(170).as_str())
    );
    let statuses = |index: usize| -> Vec<&str> {
        let outcomes = &trace.events[1].records[index].outcomes;
        outcomes.iter().map(|o| o.status.as_str()).collect()
    };
    assert_eq!(
        (statuses(0), statuses(1)),
        (vec!["failed"], vec!["processed"]),
        "each outcome under the record it reports on"
    );
    assert_eq!(
        trace.tree[0].children.len(),
        1,
        "a replayed copy is not a new node"
    );
    assert_eq!(trace.replays[0].replay_id, "r1");
}

#[test]
fn a_consumer_retrying_keeps_the_transaction_in_progress() {
    let mut records = flow();
    records.pop();
    records.push(outcome(1, B, "certificates", OutcomeStatus::Retrying, 150));
    assert_eq!(
        trace("t1", &records, &[], false).unwrap().status,
        TransactionStatus::InProgress
    );
}

#[test]
fn only_the_events_whose_last_outcome_failed_are_failed() {
    let mut records = flow();
    records.push(outcome(2, A, "audit", OutcomeStatus::Failed, 151));
    records.push(outcome(3, A, "audit", OutcomeStatus::Processed, 152));
    let failed = failed_event_ids(&records);
    assert_eq!(failed, HashSet::from([B.to_owned()]));
}

#[test]
fn payloads_are_shown_only_when_asked_for_and_json_stays_json() {
    let without = trace("t1", &flow(), &[], false).unwrap();
    assert_eq!(without.events[0].message.payload, None);
    let with = trace("t1", &flow(), &[], true).unwrap();
    let payload = with.events[0].message.payload.clone().unwrap();
    assert_eq!(payload.content_type, "application/json");
    assert_eq!(payload.json, Some(serde_json::json!({"child": "Amina"})));
}

#[test]
fn an_older_archives_headers_only_warning_is_shown_only_for_a_value_that_claims_to_be_one() {
    // What the archive stored for every headers-only record before the rule.
    let archived = |value: &[u8]| ArchivedRecord {
        kind: RecordKind::HeadersOnly,
        value: Some(value.to_vec()),
        problem: Some(
            "value is not a protobuf envelope: failed to decode Protobuf message: buffer \
             underflow"
                .into(),
        ),
        ..event("legacy", 0, A, "", 100)
    };
    let json = message_view(&archived(br#"{"child":"Amina"}"#), false);
    assert_eq!((json.kind.as_str(), json.problem), ("headers_only", None));
    let binary = message_view(&archived(&[0x0a, 0x24, 0x12, 0xff]), false);
    assert!(binary.problem.is_some(), "{binary:?}");
}

#[test]
fn nothing_archived_is_nothing_to_trace() {
    assert_eq!(trace("t1", &[], &[], false), None);
}

#[test]
fn times_are_rfc3339_utc_with_milliseconds() {
    assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
}

#[test]
fn an_event_written_twice_by_a_retried_publish_or_replayed_is_one_step() {
    let mut records = flow();
    // The retry's record: a later offset, the same event id, no replay id.
    records.insert(1, event("registrations", 1, A, "", 105));
    records.push(replayed(records[3].clone(), "r1", 5, 170));
    let trace = trace("t1", &records, &[], false).unwrap();
    let steps: Vec<_> = trace
        .events
        .iter()
        .map(|e| {
            let roles: Vec<RecordRole> = e.records.iter().map(|r| r.role).collect();
            (e.message.event_id.as_str(), e.message.offset, roles)
        })
        .collect();
    use RecordRole::*;
    assert_eq!(
        steps,
        [
            (A, 0, vec![Published, Republished]),
            (B, 0, vec![Published, Replayed])
        ],
        "copies fold into the event's publication"
    );
    assert_eq!(trace.events[0].outcomes().count(), 1, "its outcome, once");
    assert_eq!(
        trace.events[1].since_previous_ms, 20,
        "from the first record"
    );
    assert_eq!(trace.status, TransactionStatus::Failed);
    assert_eq!(trace.tree[0].children.len(), 1);
    assert_eq!(summary(trace).events, 2, "distinct events");
}

const QUEUE: &str = "retrace.jobs.certificates";

/// A copy of the job `record` the worker wrote to `topic` at `written_ms`: the original's
/// event time, the worker's headers.
fn job_copy(
    record: &ArchivedRecord,
    topic: &str,
    offset: i64,
    written_ms: i64,
    headers: &[(&str, String)],
) -> ArchivedRecord {
    let mut copy = record.clone();
    copy.key.topic = topic.into();
    copy.key.offset = offset;
    copy.kafka_timestamp_ms = Some(written_ms);
    copy.headers = headers
        .iter()
        .map(|(name, value)| Header {
            name: (*name).into(),
            value: Some(value.clone().into_bytes()),
        })
        .collect();
    copy
}

fn of_attempt(mut record: ArchivedRecord, attempt: u32) -> ArchivedRecord {
    let mut outcome = Outcome::decode(record.value.as_deref().unwrap()).unwrap();
    outcome.attempt = attempt;
    record.value = Some(outcome.encode_to_vec());
    record
}

/// A certificate job published at 1000 that failed three times: retried after 500 ms and
/// 1 s, then dead-lettered.
fn dead_lettered_job() -> Vec<ArchivedRecord> {
    use retrace_proto::headers::job::{ATTEMPT, DUE_AT, ERROR};
    let job = event(QUEUE, 7, C, "", 1_000);
    let error = |n: u32| (ERROR, format!("attempt {n}: HTTP 503"));
    let retry = format!("{QUEUE}.retry");
    let mut records = vec![
        job.clone(),
        job_copy(
            &job,
            &retry,
            0,
            1_005,
            &[(ATTEMPT, "2".into()), (DUE_AT, "1505".into()), error(1)],
        ),
        job_copy(
            &job,
            &retry,
            1,
            1_512,
            &[
                (ATTEMPT, "3".into()),
                (DUE_AT, "2512".into()),
                error(1),
                error(2),
            ],
        ),
        job_copy(
            &job,
            &format!("{QUEUE}.dlq"),
            0,
            2_520,
            &[(ATTEMPT, "3".into()), error(1), error(2), error(3)],
        ),
    ];
    for (offset, attempt, status, at) in [
        (10, 1, OutcomeStatus::Retrying, 1_006),
        (11, 2, OutcomeStatus::Retrying, 1_513),
        (12, 3, OutcomeStatus::DeadLettered, 2_521),
    ] {
        records.push(of_attempt(
            outcome(offset, C, "worker:certificates", status, at),
            attempt,
        ));
    }
    // As the store returns them: by event time, the copies with their original's.
    records.sort_by_key(|r| r.time_ms);
    records
}

#[test]
fn a_retried_and_dead_lettered_job_is_one_step_with_its_attempts_in_the_order_written() {
    let trace = trace("t1", &dead_lettered_job(), &[], false).unwrap();
    assert_eq!(trace.events.len(), 1, "one event: {trace:#?}");
    let step = &trace.events[0];
    assert_eq!(
        (step.message.topic.as_str(), step.message.offset),
        (QUEUE, 7)
    );
    let records: Vec<_> = step
        .records
        .iter()
        .map(|r| {
            let outcomes: Vec<_> = r
                .outcomes
                .iter()
                .map(|o| (o.attempt, o.status.as_str()))
                .collect();
            (
                r.role,
                r.attempt,
                r.time.clone(),
                r.due_at.clone(),
                outcomes,
            )
        })
        .collect();
    use RecordRole::*;
    assert_eq!(
        records,
        [
            (Published, 1, rfc3339(1_000), None, vec![(1, "retrying")]),
            (
                Retry,
                2,
                rfc3339(1_005),
                Some(rfc3339(1_505)),
                vec![(2, "retrying")]
            ),
            (
                Retry,
                3,
                rfc3339(1_512),
                Some(rfc3339(2_512)),
                vec![(3, "dead_lettered")]
            ),
            (DeadLettered, 3, rfc3339(2_520), None, vec![]),
        ],
        "each outcome under the attempt it reports, the dead letter last"
    );
    assert_eq!(
        (step.duration_ms, step.last_at.as_str()),
        (1_521, rfc3339(2_521).as_str()),
        "the step runs to its last attempt"
    );
    assert_eq!(trace.duration_ms, 1_521);
    assert_eq!(trace.status, TransactionStatus::Failed);
    assert_eq!(summary(trace).events, 1);
}

#[test]
fn a_replay_of_a_dead_lettered_job_publishes_it_once_to_its_queue() {
    use crate::replay::{Selection, plan};
    for only_failed in [false, true] {
        let selection = Selection {
            only_failed,
            ..Selection::default()
        };
        let planned = plan(&dead_lettered_job(), &selection).unwrap();
        let targets: Vec<_> = planned
            .iter()
            .map(|p| (p.original.key.topic.as_str(), p.target_topic.as_str()))
            .collect();
        assert_eq!(targets, [(QUEUE, QUEUE)], "only_failed: {only_failed}");
    }
}
