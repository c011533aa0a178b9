use prost::Message as _;
use rdkafka::Timestamp;
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders, OwnedMessage};
use retrace_proto::{Envelope, OutcomeStatus};

use super::*;
use crate::masking::{MASK, Masking};
use crate::trace::message_view;
use retrace_api::MessageView;

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
    let record = classify_unsigned(
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
    let record = classify_unsigned(
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

/// What a Node.js or Python service publishes: JSON, or text, with the ids in headers.
const FOREIGN_HEADERS: &[(&str, &[u8])] = &[
    ("retrace-event-id", b"e-1"),
    ("retrace-transaction-id", b"t-1"),
    ("retrace-type", b"registration.submitted.v1"),
    ("x-request-id", b"req-9"),
];

fn shown(record: &ArchivedRecord, masking: Option<&[&str]>) -> MessageView {
    let mut view = message_view(record, true);
    if let Some(paths) = masking {
        let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        Masking::new(&paths).unwrap().message(&mut view);
    }
    view
}

#[test]
fn json_beside_retrace_headers_is_shown_as_json_without_a_warning() {
    let value = br#"{"child": {"given_name": "Amina", "sex": "F"}, "mother_id": "NIN-123"}"#;
    let record = classify_unsigned(&message("legacy", Some(value.to_vec()), FOREIGN_HEADERS), 7);
    assert_eq!(record.kind, RecordKind::HeadersOnly);
    assert_eq!(record.problem, None);

    let view = shown(&record, None);
    assert_eq!((view.kind.as_str(), view.problem), ("headers_only", None));
    assert_eq!(view.event_type, "registration.submitted.v1");
    let payload = view.payload.unwrap();
    assert_eq!(
        payload.json,
        Some(serde_json::from_slice(value).unwrap()),
        "the value as its JSON"
    );
    assert_eq!((payload.text, payload.base64), (None, None));

    // A caller without `payload:read`: the configured paths, as in an envelope's payload.
    let masked = shown(&record, Some(&["child.given_name", "mother_id"]))
        .payload
        .unwrap();
    assert_eq!(
        masked.json,
        Some(serde_json::json!({"child": {"given_name": MASK, "sex": "F"}, "mother_id": MASK}))
    );
    let header = |name: &str| {
        masked
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.clone())
    };
    assert_eq!(header("retrace-event-id").as_deref(), Some("e-1"));
    assert_eq!(header("x-request-id").as_deref(), Some(MASK));
}

#[test]
fn text_beside_retrace_headers_is_shown_as_text_without_a_warning() {
    for value in [&b"SMS queued for +000\nreply STOP to end"[..], b""] {
        let record =
            classify_unsigned(&message("legacy", Some(value.to_vec()), FOREIGN_HEADERS), 7);
        let view = shown(&record, None);
        assert_eq!((view.kind.as_str(), view.problem), ("headers_only", None));
        let text = view.payload.unwrap().text;
        assert_eq!(text.as_deref().map(str::as_bytes), Some(value));
        let masked = shown(&record, Some(&[])).payload.unwrap();
        assert_eq!(masked.text.as_deref(), Some(MASK), "text is hidden whole");
    }
}

#[test]
fn a_value_that_claims_to_be_an_envelope_keeps_its_warning() {
    let bytes = envelope().encode_to_vec();
    let protobuf = Some(&b"application/x-protobuf"[..]);
    let cases = [
        ("a damaged envelope", &bytes[..bytes.len() - 3], None),
        ("JSON declared protobuf", br#"{"json": true}"#, protobuf),
        ("text declared protobuf", b"SMS queued", protobuf),
    ];
    for (what, value, content_type) in cases {
        let mut headers = FOREIGN_HEADERS.to_vec();
        headers.extend(content_type.map(|media_type| ("content-type", media_type)));
        let record = classify_unsigned(&message("legacy", Some(value.to_vec()), &headers), 7);
        assert_eq!(record.kind, RecordKind::HeadersOnly, "{what}");
        let view = shown(&record, None);
        let problem = view.problem.unwrap_or_default();
        assert!(
            problem.starts_with("value is not a protobuf envelope: "),
            "{what}: {problem:?}"
        );
    }
    // A binary format the publisher names is not an envelope either.
    let mut avro = FOREIGN_HEADERS.to_vec();
    avro.push(("Content-Type", b"avro/binary"));
    let record = classify_unsigned(&message("legacy", Some(vec![0x02, 0x12, 0xff]), &avro), 7);
    let view = shown(&record, None);
    assert_eq!(view.problem, None);
    assert_eq!(view.payload.unwrap().base64.as_deref(), Some("AhL/"));
}

#[test]
fn a_truncated_envelope_is_kept_with_its_decode_error() {
    let bytes = envelope().encode_to_vec();
    let record = classify_unsigned(
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
    let record = classify_unsigned(
        &message("registrations", Some(envelope.encode_to_vec()), &[]),
        7,
    );
    assert_eq!(record.kind, RecordKind::Malformed);
    assert!(record.problem.unwrap().contains("transaction_id"));
}

#[test]
fn a_non_utf8_retrace_header_is_malformed_and_named() {
    let record = classify_unsigned(
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
    let record = classify_unsigned(
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
    let record = classify_unsigned(&message(OUTCOMES_TOPIC, Some(vec![0xff; 9]), &[]), 7);
    assert_eq!(record.kind, RecordKind::Malformed);
}

#[test]
fn a_record_without_value_or_headers_is_kept_untraceable() {
    let record = classify_unsigned(&message("t", None, &[]), 7);
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
        let record = classify_unsigned(&message(topic, Some(value.clone()), headers), 7);
        prop_assert_eq!(record.value.as_ref(), Some(&value));
        let flagged = matches!(record.kind, RecordKind::Malformed | RecordKind::Untraceable);
        // Headers-only records may carry one too: why a value that claims to be an envelope
        // is not one.
        prop_assert!(!flagged || record.problem.is_some());
        prop_assert_eq!(flagged, record.ids.is_none());
        // A record the store cannot index is kept as malformed: preparing never fails.
        prepare(record, "");
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
            let record = classify_unsigned(&message("registrations", Some(envelope.encode_to_vec()), &[]), 7);
            prop_assert_eq!(record.kind, RecordKind::Envelope);
            let ids = record.ids.clone().unwrap();
            prop_assert_eq!(&ids.event_id, &envelope.event_id);
            prop_assert_eq!(&ids.transaction_id, &envelope.transaction_id);
            prop_assert_eq!(&ids.subject_ids, &envelope.subject_ids);
            prepare(record, "");
        }
    }
}

fn signed(keys: &SigningKeys, topic: &str, value: &[u8]) -> OwnedMessage {
    let signature = keys.sign(topic, Some(b"key"), Some(value)).unwrap();
    message(
        topic,
        Some(value.to_vec()),
        &[(SIGNATURE_HEADER, signature.as_bytes())],
    )
}

fn test_keys() -> SigningKeys {
    SigningKeys::from_hex(&[SigningKeys::generate_hex()], "in the test").unwrap()
}

/// What an archive with no signing key makes of `message` (nothing on the audit topic is
/// chained then).
fn classify_unsigned(message: &impl rdkafka::Message, archived_at_ms: i64) -> ArchivedRecord {
    classify(message, archived_at_ms, &SigningKeys::default(), None)
}

#[test]
fn a_services_audit_event_is_kept_and_goes_to_the_audit_trail() {
    let event = retrace_proto::AuditEvent {
        at: Some(prost_types::Timestamp {
            seconds: 5,
            nanos: 0,
        }),
        actor: "legacy-app".into(),
        actor_id: "5be1e2a0c3d4".into(),
        role: "publisher".into(),
        origin: "10.1.2.3".into(),
        action: "denied".into(),
        target: "registrations".into(),
        reason: String::new(),
        result: "topic not allowed".into(),
        service: "gateway".into(),
    };
    let keys = test_keys();
    let record = classify(
        &signed(&keys, retrace_proto::AUDIT_TOPIC, &event.encode_to_vec()),
        7,
        &keys,
        None,
    );
    assert_eq!(record.kind, RecordKind::Audit);
    let entry = record.audit.unwrap();
    assert_eq!(
        (
            entry.action.as_str(),
            entry.actor.as_str(),
            entry.actor_id.as_str(),
            entry.at_ms
        ),
        ("gateway.denied", "legacy-app", "5be1e2a0c3d4", 5000)
    );
    let garbage = classify(
        &signed(&keys, retrace_proto::AUDIT_TOPIC, &[0xff; 3]),
        7,
        &keys,
        None,
    );
    assert_eq!(garbage.kind, RecordKind::Malformed);
    assert_eq!(garbage.audit, None);
    assert_eq!(
        SignatureFault::of(garbage.problem.as_deref().unwrap()),
        None
    );
}

#[test]
fn an_audit_event_without_a_valid_signature_is_flagged_and_never_chained() {
    let keys = test_keys();
    let event = retrace_proto::AuditEvent {
        actor: "mallory".into(),
        action: "token.create".into(),
        service: "archive".into(),
        result: "ok".into(),
        ..retrace_proto::AuditEvent::default()
    };
    let value = event.encode_to_vec();
    let unsigned = classify(
        &message(retrace_proto::AUDIT_TOPIC, Some(value.clone()), &[]),
        7,
        &keys,
        None,
    );
    let foreign = classify(
        &signed(&test_keys(), retrace_proto::AUDIT_TOPIC, &value),
        7,
        &keys,
        None,
    );
    // A record signed for another topic does not verify here.
    let moved = {
        let signature = keys
            .sign("retrace.tokens", Some(b"key"), Some(&value))
            .unwrap();
        classify(
            &message(
                retrace_proto::AUDIT_TOPIC,
                Some(value.clone()),
                &[(SIGNATURE_HEADER, signature.as_bytes())],
            ),
            7,
            &keys,
            None,
        )
    };
    for (record, fault) in [
        (&unsigned, SignatureFault::Unsigned),
        (&foreign, SignatureFault::BadlySigned),
        (&moved, SignatureFault::BadlySigned),
    ] {
        assert_eq!(record.kind, RecordKind::Malformed);
        assert_eq!(record.audit, None, "never chained");
        let problem = record.problem.as_deref().unwrap();
        assert_eq!(SignatureFault::of(problem), Some(fault), "{problem}");
        prepare(record.clone(), "");
    }
    // The archive opened last in the process decides for `classify`: none here, so even a
    // record signed with some key is not chained.
    assert_eq!(
        SignatureFault::of(
            classify_unsigned(&signed(&keys, retrace_proto::AUDIT_TOPIC, &value), 7)
                .problem
                .as_deref()
                .unwrap()
        ),
        Some(SignatureFault::BadlySigned)
    );
}
