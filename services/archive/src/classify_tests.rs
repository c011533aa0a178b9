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

/// Fuzzing: whatever a topic carries, classifying it never panics, keeps the bytes whole,
/// and says what is wrong with what it could not trace. `PROPTEST_CASES` sets how many cases
/// (256 by default; docs/reliability.md has the long run).
mod fuzz {
    use proptest::prelude::*;
    use retrace_proto::arbitrary::{damaged_envelope_bytes, damaged_outcome_bytes, valid_envelope};

    use super::*;

    fn check(topic: &str, value: Vec<u8>, headers: &[(&str, &[u8])]) -> Result<(), TestCaseError> {
        let record = classify(&message(topic, Some(value.clone()), headers), 7);
        prop_assert_eq!(record.value.as_ref(), Some(&value));
        let flagged = matches!(record.kind, RecordKind::Malformed | RecordKind::Untraceable);
        // Headers-only records keep a problem too: why the value was not an envelope.
        prop_assert!(!flagged || record.problem.is_some());
        prop_assert_eq!(flagged, record.ids.is_none());
        // A record the store cannot index is kept as malformed: preparing never fails.
        prepare(record);
        Ok(())
    }

    proptest! {
        #[test]
        fn any_bytes_are_classified_without_panic(value in prop::collection::vec(any::<u8>(), 0..512)) {
            check("t", value, &[])?;
        }

        #[test]
        fn damaged_envelopes_are_kept_and_flagged(value in damaged_envelope_bytes()) {
            check("registrations", value, &[])?;
        }

        #[test]
        fn damaged_envelopes_with_headers_are_kept(
            value in damaged_envelope_bytes(),
            event_id in "[ -~]{0,40}",
            transaction_id in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            check(
                "registrations",
                value,
                &[("retrace-event-id", event_id.as_bytes()), ("retrace-transaction-id", &transaction_id)],
            )?;
        }

        #[test]
        fn damaged_outcomes_and_audit_events_are_kept(value in damaged_outcome_bytes()) {
            check(OUTCOMES_TOPIC, value.clone(), &[])?;
            check(retrace_proto::AUDIT_TOPIC, value, &[])?;
        }

        #[test]
        fn any_time_is_kept_without_overflow(
            envelope in valid_envelope(),
            seconds in any::<i64>(),
            nanos in any::<i32>(),
        ) {
            let mut envelope = envelope;
            envelope.replay = None;
            envelope.occurred_at = Some(prost_types::Timestamp { seconds, nanos });
            check("registrations", envelope.encode_to_vec(), &[])?;
        }

        #[test]
        fn valid_envelopes_are_traced_by_their_ids(envelope in valid_envelope()) {
            let record = classify(&message("registrations", Some(envelope.encode_to_vec()), &[]), 7);
            prop_assert_eq!(record.kind, RecordKind::Envelope);
            let ids = record.ids.clone().unwrap();
            prop_assert_eq!(&ids.event_id, &envelope.event_id);
            prop_assert_eq!(&ids.transaction_id, &envelope.transaction_id);
            prop_assert_eq!(&ids.subject_ids, &envelope.subject_ids);
            prepare(record);
        }
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
