use std::time::{Duration, SystemTime};

use prost::Message as _;
use retrace_proto::{Envelope, OutcomeStatus};

use super::*;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_770_000_000)
}

fn one(body: &str) -> Result<Envelope, BadInput> {
    let (shape, mut envelopes) = events_from_json(body.as_bytes(), now())?;
    assert_eq!(shape, Shape::Single);
    Ok(envelopes.remove(0))
}

fn field_of(body: &str) -> (Option<String>, String) {
    let error = events_from_json(body.as_bytes(), now()).unwrap_err();
    (error.field, error.problem)
}

const EVENT_ID: &str = "0190b7d2-5c3a-7cc1-8a51-6f1d2b3c4d5e";

#[test]
fn a_full_json_event_becomes_the_same_envelope() {
    let envelope = one(&format!(
        r#"{{
            "event_id": "{EVENT_ID}",
            "transaction_id": "tx-1",
            "causation_id": "{EVENT_ID}",
            "type": "registration.submitted.v1",
            "source": "intake",
            "subject_ids": ["beneficiary:42", "birth-registration:BR-1"],
            "attributes": {{"region": "north"}},
            "payload": {{"child": "Ada", "weights": [3.2, 3.4]}},
            "occurred_at": "2026-01-31T10:30:00.250+01:00"
        }}"#
    ))
    .unwrap();
    assert_eq!(envelope.event_id, EVENT_ID);
    assert_eq!(envelope.transaction_id, "tx-1");
    assert_eq!(envelope.causation_id, EVENT_ID);
    assert_eq!(envelope.r#type, "registration.submitted.v1");
    assert_eq!(envelope.source, "intake");
    assert_eq!(
        envelope.subject_ids,
        ["beneficiary:42", "birth-registration:BR-1"]
    );
    assert_eq!(envelope.attributes.get("region").unwrap(), "north");
    assert_eq!(envelope.content_type, JSON_CONTENT_TYPE);
    assert_eq!(
        envelope.payload, br#"{"child": "Ada", "weights": [3.2, 3.4]}"#,
        "the payload is stored as sent"
    );
    let at = envelope.occurred_at.unwrap();
    let expected: prost_types::Timestamp = "2026-01-31T09:30:00.250Z".parse().unwrap();
    assert_eq!(at, expected);
}

#[test]
fn missing_ids_start_a_new_transaction_now() {
    let envelope = one(r#"{"type": "t.v1", "source": "s", "payload": null}"#).unwrap();
    assert_eq!(
        uuid::Uuid::parse_str(&envelope.event_id)
            .unwrap()
            .get_version_num(),
        7
    );
    assert!(!envelope.transaction_id.is_empty());
    assert_ne!(envelope.transaction_id, envelope.event_id);
    assert_eq!(envelope.occurred_at, Some(now().into()));
    assert!(envelope.payload.is_empty());
    assert!(envelope.content_type.is_empty());
    let again = one(r#"{"type": "t.v1", "source": "s"}"#).unwrap();
    assert_ne!(again.transaction_id, envelope.transaction_id);
}

#[test]
fn a_named_root_event_is_its_own_transaction_so_a_retry_lands_in_it() {
    let body =
        r#"{"event_id": "0190a000-0000-7000-8000-00000000000a", "type": "t.v1", "source": "s"}"#;
    let (first, retry) = (one(body).unwrap(), one(body).unwrap());
    assert_eq!(first.transaction_id, first.event_id);
    assert_eq!(retry.transaction_id, first.transaction_id);
}

#[test]
fn a_batch_keeps_its_order_and_shape() {
    let (shape, envelopes) = events_from_json(
        br#"[{"type": "a.v1", "source": "s"}, {"type": "b.v1", "source": "s", "payload": 7}]"#,
        now(),
    )
    .unwrap();
    assert_eq!(shape, Shape::Batch);
    let types: Vec<&str> = envelopes.iter().map(|e| e.r#type.as_str()).collect();
    assert_eq!(types, ["a.v1", "b.v1"]);
    assert_eq!(envelopes[1].payload, b"7");
}

#[test]
fn every_problem_names_its_field() {
    let cases: &[(&str, Option<&str>, &str)] = &[
        (r#"{"type": "t", "source": "s""#, None, "not valid JSON"),
        ("", None, "empty"),
        ("42", None, "a number"),
        ("[]", None, "batch is empty"),
        (
            r#"[{"type": "t", "source": "s"}, 5]"#,
            Some("[1]"),
            "not a number",
        ),
        (r#"{"source": "s"}"#, Some("type"), "missing"),
        (r#"{"type": "t"}"#, Some("source"), "missing"),
        (
            r#"{"type": 3, "source": "s"}"#,
            Some("type"),
            "must be a string, not a number",
        ),
        (
            r#"{"type": "t", "source": "s", "event_id": "42"}"#,
            Some("event_id"),
            "not a UUID",
        ),
        (
            r#"{"type": "t", "source": "s", "causation_id": "nope"}"#,
            Some("causation_id"),
            "not a UUID",
        ),
        (
            r#"{"type": "t", "source": "s", "transaction_id": "a\u0007b"}"#,
            Some("transaction_id"),
            "control character",
        ),
        (
            r#"{"type": "t", "source": "s", "transaction_id": ["x"]}"#,
            Some("transaction_id"),
            "not an array",
        ),
        (
            r#"{"type": "t", "source": "s", "subject_ids": "beneficiary:1"}"#,
            Some("subject_ids"),
            "an array of strings",
        ),
        (
            r#"{"type": "t", "source": "s", "subject_ids": ["a", 2]}"#,
            Some("subject_ids[1]"),
            "not a number",
        ),
        (
            r#"{"type": "t", "source": "s", "subject_ids": [""]}"#,
            Some("subject_ids"),
            "missing",
        ),
        (
            r#"{"type": "t", "source": "s", "attributes": {"region": 1}}"#,
            Some("attributes.region"),
            "not a number",
        ),
        (
            r#"{"type": "t", "source": "s", "attributes": []}"#,
            Some("attributes"),
            "an object of strings",
        ),
        (
            r#"{"type": "t", "source": "s", "occurred_at": "yesterday"}"#,
            Some("occurred_at"),
            "RFC 3339",
        ),
        (
            r#"{"type": "t", "source": "s", "transactionId": "x"}"#,
            Some("transactionId"),
            "not known",
        ),
        (
            r#"[{"type": "t", "source": "s"}, {"type": "t", "source": "s"}, {"type": "t"}]"#,
            Some("[2].source"),
            "missing",
        ),
        (
            r#"[{"type": "t", "source": "s"}, {"type": "t", "source": "s", "transaction_id": ""}, {"type": "t", "source": "s", "transaction_id": 1}]"#,
            Some("[2].transaction_id"),
            "must be a string",
        ),
    ];
    for (body, field, problem) in cases {
        let (actual_field, actual_problem) = field_of(body);
        assert_eq!(actual_field.as_deref(), *field, "{body}: {actual_problem}");
        assert!(
            actual_problem.contains(problem),
            "{body}: {actual_problem:?} should say {problem:?}"
        );
    }
}

#[test]
fn an_event_id_twice_in_a_batch_is_refused() {
    let body = format!(
        r#"[{{"type": "t", "source": "s", "event_id": "{EVENT_ID}"}},
            {{"type": "t", "source": "s"}},
            {{"type": "t", "source": "s", "event_id": "{EVENT_ID}"}}]"#
    );
    let (field, problem) = field_of(&body);
    assert_eq!(field.as_deref(), Some("[2].event_id"));
    assert!(problem.contains("[0]"), "{problem}");
}

#[test]
fn a_protobuf_envelope_gets_missing_ids_and_is_validated() {
    let mut envelope = Envelope::root("intake", "intake.received.v1");
    envelope.event_id.clear();
    envelope.transaction_id.clear();
    let completed = event_from_protobuf(&envelope.encode_to_vec(), now()).unwrap();
    assert!(!completed.event_id.is_empty());
    assert!(!completed.transaction_id.is_empty());
    assert_eq!(completed.occurred_at, envelope.occurred_at);

    envelope.source.clear();
    let error = event_from_protobuf(&envelope.encode_to_vec(), now()).unwrap_err();
    assert_eq!(error.field.as_deref(), Some("source"));

    let error = event_from_protobuf(b"\xff\xff\xff", now()).unwrap_err();
    assert_eq!(error.field, None);
    assert!(
        error.problem.contains("retrace.v1.Envelope"),
        "{}",
        error.problem
    );
}

#[test]
fn an_outcome_is_read_with_its_defaults() {
    let outcome = outcome_from_json(
        format!(
            r#"{{"event_id": "{EVENT_ID}", "transaction_id": "tx", "consumer": "validation",
                "status": "dead_lettered", "error": "registry down"}}"#
        )
        .as_bytes(),
        now(),
    )
    .unwrap();
    assert_eq!(outcome.status(), OutcomeStatus::DeadLettered);
    assert_eq!(outcome.attempt, 1);
    assert_eq!(outcome.error, "registry down");
    assert_eq!(outcome.error_code, "");
    assert_eq!(outcome.at, Some(now().into()));
}

#[test]
fn an_outcome_carries_its_error_code() {
    let outcome = outcome_from_json(
        format!(
            r#"{{"event_id": "{EVENT_ID}", "transaction_id": "tx", "consumer": "validation",
                "status": "failed", "error": "no answer within 2 s",
                "error_code": "population_register_timeout"}}"#
        )
        .as_bytes(),
        now(),
    )
    .unwrap();
    assert_eq!(outcome.error_code, "population_register_timeout");
    assert_eq!(outcome.error, "no answer within 2 s");
}

#[test]
fn outcome_problems_name_their_field() {
    let base = format!(r#""event_id": "{EVENT_ID}", "transaction_id": "tx", "consumer": "c""#);
    let cases = [
        (format!(r#"{{{base}}}"#), "status", "missing"),
        (
            format!(r#"{{{base}, "status": "done"}}"#),
            "status",
            "not known",
        ),
        (
            format!(r#"{{{base}, "status": "failed", "attempt": 0}}"#),
            "attempt",
            "at least 1",
        ),
        (
            format!(r#"{{{base}, "status": "failed", "attempt": "2"}}"#),
            "attempt",
            "not a string",
        ),
        (
            format!(r#"{{{base}, "status": "failed", "extra": 1}}"#),
            "extra",
            "not known",
        ),
        (
            format!(r#"{{{base}, "status": "failed", "error_code": "register timeout"}}"#),
            "error_code",
            "not a code",
        ),
        (
            format!(
                r#"{{{base}, "status": "failed", "error_code": "{}"}}"#,
                "x".repeat(65)
            ),
            "error_code",
            "the limit is 64",
        ),
        (
            format!(r#"{{{base}, "status": "failed", "error_code": 503}}"#),
            "error_code",
            "a string",
        ),
        (
            r#"{"event_id": "x", "transaction_id": "t", "consumer": "c", "status": "failed"}"#
                .to_owned(),
            "event_id",
            "not a UUID",
        ),
        (
            format!(r#"{{"event_id": "{EVENT_ID}", "transaction_id": "t", "status": "failed"}}"#),
            "consumer",
            "missing",
        ),
    ];
    for (body, field, problem) in cases {
        let error = outcome_from_json(body.as_bytes(), now()).unwrap_err();
        assert_eq!(
            error.field.as_deref(),
            Some(field),
            "{body}: {}",
            error.problem
        );
        assert!(error.problem.contains(problem), "{body}: {}", error.problem);
    }
}

#[test]
fn topics_follow_kafka_rules_and_kafkas_own_are_refused() {
    check_topic("registrations.v1_a-b").unwrap();
    for bad in ["", ".", "..", "a/b", "a b", "__consumer_offsets"] {
        let error = check_topic(bad).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("topic"), "{bad}");
    }
    assert!(check_topic(&"t".repeat(250)).is_err());
}

#[test]
fn a_job_field_makes_the_event_a_job() {
    let envelope = one(
        r#"{"type": "t.v1", "source": "s", "job": {"kind": "certificate.render",
            "priority": "bulk", "not_before": "2026-01-31T10:00:00Z", "max_attempts": 7}}"#,
    )
    .unwrap();
    let job = envelope.job.unwrap();
    assert_eq!(job.kind, "certificate.render");
    assert_eq!(job.priority(), retrace_proto::JobPriority::Bulk);
    assert_eq!(job.max_attempts, 7);
    assert_eq!(job.not_before.unwrap().seconds, 1_769_853_600);
    assert_eq!(
        one(r#"{"type": "t.v1", "source": "s", "job": null}"#)
            .unwrap()
            .job,
        None
    );
    for (body, field) in [
        (
            r#"{"type": "t.v1", "source": "s", "job": {"priority": "bulk"}}"#,
            "job.kind",
        ),
        (
            r#"{"type": "t.v1", "source": "s", "job": {"kind": "k", "priority": "soon"}}"#,
            "job.priority",
        ),
        (
            r#"{"type": "t.v1", "source": "s", "job": {"kind": "k", "deadline": "tomorrow"}}"#,
            "job.deadline",
        ),
        (
            r#"{"type": "t.v1", "source": "s", "job": {"kind": "k", "retries": 2}}"#,
            "job.retries",
        ),
        (r#"{"type": "t.v1", "source": "s", "job": "render"}"#, "job"),
    ] {
        assert_eq!(field_of(body).0.as_deref(), Some(field), "{body}");
    }
}

#[test]
fn a_requests_jobs_go_on_one_lane() {
    let (shape, jobs) = events_from_json(
        br#"[{"type": "t.v1", "source": "s", "job": {"kind": "k", "priority": "urgent"}},
            {"type": "t.v1", "source": "s", "job": {"kind": "k", "priority": "urgent"}}]"#,
        now(),
    )
    .unwrap();
    assert_eq!(
        lane_of_jobs("certificates", shape, &jobs).unwrap(),
        "retrace.jobs.certificates.urgent"
    );
    let error = lane_of_jobs("bad queue", shape, &jobs).unwrap_err();
    assert_eq!(error.field.as_deref(), Some("queue"));
}
