use prost::Message as _;
use rdkafka::Timestamp;
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders, OwnedMessage};
use retrace_proto::{Envelope, OutcomeStatus};

use super::*;

fn message(topic: &str, value: Option<Vec<u8>>, headers: &[(&str, &[u8])]) -> OwnedMessage {
    let headers = headers
        .iter()
        .fold(OwnedHeaders::new(), |all, (key, value)| {
            all.insert(KafkaHeader {
                key,
                value: Some(*value),
            })
        });
    OwnedMessage::new(
        value,
        Some(b"key".to_vec()),
        topic.to_owned(),
        Timestamp::CreateTime(1_700_000_000_000),
        3,
        42,
        Some(headers),
    )
}

fn envelope() -> Envelope {
    Envelope::root("registration", "registration.submitted.v1").with_subject("beneficiary:42")
}

#[test]
fn an_envelope_is_traced_by_its_own_ids_and_time() {
    let envelope = envelope();
    let record = classify(
        &message("registrations", Some(envelope.encode_to_vec()), &[]),
        7,
    );
    assert_eq!(record.kind, RecordKind::Envelope);
    assert_eq!(record.problem, None);
    let ids = record.ids.unwrap();
    assert_eq!(ids.transaction_id, envelope.transaction_id);
    assert_eq!(ids.subject_ids, vec!["beneficiary:42".to_owned()]);
    let occurred = envelope.occurred_at.unwrap();
    assert_eq!(
        record.time_ms,
        occurred.seconds * 1000 + i64::from(occurred.nanos / 1_000_000)
    );
    assert_eq!(record.key.to_string(), "registrations/3@42");
}

#[test]
fn headers_alone_make_a_record_traceable() {
    let record = classify(
        &message(
            "legacy",
            Some(br#"{"json": true}"#.to_vec()),
            &[
                ("retrace-event-id", b"e-1"),
                ("retrace-transaction-id", b"t-1"),
                ("retrace-subject", b"beneficiary:7"),
            ],
        ),
        7,
    );
    assert_eq!(record.kind, RecordKind::HeadersOnly);
    assert_eq!(record.ids.unwrap().transaction_id, "t-1");
    assert_eq!(record.time_ms, 1_700_000_000_000);
}

#[test]
fn a_truncated_envelope_is_kept_with_its_decode_error() {
    let bytes = envelope().encode_to_vec();
    let record = classify(
        &message(
            "registrations",
            Some(bytes[..bytes.len() / 2].to_vec()),
            &[],
        ),
        7,
    );
    assert_eq!(record.kind, RecordKind::Untraceable);
    let problem = record.problem.unwrap();
    assert!(problem.contains("not a protobuf envelope"), "{problem}");
    assert_eq!(record.value.unwrap().len(), bytes.len() / 2);
}

#[test]
fn an_envelope_without_transaction_names_the_field() {
    let mut envelope = envelope();
    envelope.transaction_id.clear();
    let record = classify(
        &message("registrations", Some(envelope.encode_to_vec()), &[]),
        7,
    );
    assert_eq!(record.kind, RecordKind::Malformed);
    assert!(record.problem.unwrap().contains("transaction_id"));
}

#[test]
fn a_non_utf8_retrace_header_is_malformed_and_named() {
    let record = classify(
        &message(
            "legacy",
            Some(b"x".to_vec()),
            &[("retrace-transaction-id", &[0xff])],
        ),
        7,
    );
    assert_eq!(record.kind, RecordKind::Malformed);
    assert!(record.problem.unwrap().contains("retrace-transaction-id"));
}

#[test]
fn an_outcome_points_at_its_event() {
    let envelope = envelope();
    let outcome = Outcome::of(
        &envelope,
        "validation",
        OutcomeStatus::Failed,
        Some("boom".into()),
        1,
    );
    let record = classify(
        &message(OUTCOMES_TOPIC, Some(outcome.encode_to_vec()), &[]),
        7,
    );
    assert_eq!(record.kind, RecordKind::Outcome);
    assert_eq!(
        record.outcome,
        Some(OutcomeRef {
            event_id: envelope.event_id.clone(),
            failed: true,
        }),
        "a failed outcome marks its transaction failed"
    );
    assert_eq!(record.ids.unwrap().transaction_id, envelope.transaction_id);
}

#[test]
fn garbage_on_the_outcomes_topic_is_malformed() {
    let record = classify(&message(OUTCOMES_TOPIC, Some(vec![0xff; 9]), &[]), 7);
    assert_eq!(record.kind, RecordKind::Malformed);
}

#[test]
fn a_record_without_value_or_headers_is_kept_untraceable() {
    let record = classify(&message("t", None, &[]), 7);
    assert_eq!(record.kind, RecordKind::Untraceable);
    assert_eq!(record.value, None);
}

proptest::proptest! {
    #[test]
    fn any_bytes_are_classified_without_panic(value in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let record = classify(&message("t", Some(value.clone()), &[]), 7);
        proptest::prop_assert_eq!(record.value.as_ref(), Some(&value));
        let _ = prepare(record);
    }
}

#[test]
fn a_services_audit_event_is_kept_and_goes_to_the_audit_trail() {
    let event = retrace_proto::AuditEvent {
        at: Some(prost_types::Timestamp {
            seconds: 5,
            nanos: 0,
        }),
        actor: "legacy-app".into(),
        role: "publisher".into(),
        origin: "10.1.2.3".into(),
        action: "denied".into(),
        target: "registrations".into(),
        reason: String::new(),
        result: "topic not allowed".into(),
        service: "gateway".into(),
    };
    let record = classify(
        &message(retrace_proto::AUDIT_TOPIC, Some(event.encode_to_vec()), &[]),
        7,
    );
    assert_eq!(record.kind, RecordKind::Audit);
    let entry = record.audit.unwrap();
    assert_eq!(
        (entry.action.as_str(), entry.actor.as_str(), entry.at_ms),
        ("gateway.denied", "legacy-app", 5000)
    );
    let garbage = classify(
        &message(retrace_proto::AUDIT_TOPIC, Some(vec![0xff; 3]), &[]),
        7,
    );
    assert_eq!(garbage.kind, RecordKind::Malformed);
    assert_eq!(garbage.audit, None);
}
