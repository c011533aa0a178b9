//! Fuzzing of the JSON and protobuf bodies the gateway converts: any body is answered with
//! envelopes or with a [`BadInput`] naming its field, never a panic; a valid event's JSON
//! becomes the same envelope. `PROPTEST_CASES` sets how many cases (256 by default;
//! docs/reliability.md has the long run).

use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use prost::Message as _;
use retrace_proto::Envelope;
use retrace_proto::arbitrary::{damaged_envelope_bytes, valid_envelope};
use serde_json::{Value, json};

use super::*;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_770_000_000)
}

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
        "[0-9a-f-]{36}".prop_map(Value::String),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// An event-shaped object: the gateway's field names (and a few others) with values of any
/// type, so most cases reach the per-field checks.
fn event_like() -> impl Strategy<Value = Value> {
    let name = prop_oneof![
        6 => prop::sample::select(EVENT_FIELDS).prop_map(str::to_owned),
        1 => prop::sample::select(JOB_FIELDS).prop_map(|f| format!("job.{f}")),
        1 => "[a-z_]{1,12}",
    ];
    prop::collection::btree_map(name, any_json(), 0..8).prop_map(|fields| {
        let mut object = serde_json::Map::new();
        for (name, value) in fields {
            match name.split_once('.') {
                // A job with fields of any type.
                Some((_, job_field)) => {
                    object
                        .entry("job")
                        .or_insert_with(|| json!({}))
                        .as_object_mut()
                        .map(|job| job.insert(job_field.to_owned(), value));
                }
                None => {
                    object.insert(name, value);
                }
            }
        }
        Value::Object(object)
    })
}

/// A body: one event-like object, a batch of them, or any JSON at all.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => event_like().prop_map(|v| v.to_string().into_bytes()),
        2 => prop::collection::vec(event_like(), 0..4)
            .prop_map(|v| Value::Array(v).to_string().into_bytes()),
        1 => any_json().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

/// A refusal names a field (a path into the body) that its message mentions, or is about the
/// body as a whole.
fn check_refusal(error: &BadInput) -> Result<(), TestCaseError> {
    prop_assert!(!error.problem.is_empty());
    if let Some(field) = &error.field {
        // `[2].subject_ids[0]` → `subject_ids`; `[2]` alone is the item as a whole.
        let leaf = field.rsplit('.').next().unwrap_or(field);
        let leaf = leaf.split('[').next().unwrap_or(leaf);
        prop_assert!(
            leaf.is_empty() || error.problem.contains(leaf),
            "{field}: {}",
            error.problem
        );
    }
    Ok(())
}

/// A valid envelope as the JSON a service would post.
fn as_json(envelope: &Envelope) -> Value {
    let occurred_at = envelope.occurred_at.as_ref().map(ToString::to_string);
    json!({
        "event_id": envelope.event_id,
        "transaction_id": envelope.transaction_id,
        "causation_id": envelope.causation_id,
        "type": envelope.r#type,
        "source": envelope.source,
        "subject_ids": envelope.subject_ids,
        "attributes": envelope.attributes,
        "occurred_at": occurred_at,
        "payload": {"bytes": envelope.payload},
    })
}

proptest! {
    #[test]
    fn any_json_body_is_converted_or_refused_by_field(body in body()) {
        match events_from_json(&body, now()) {
            Ok((_, envelopes)) => {
                prop_assert!(!envelopes.is_empty());
                for envelope in envelopes {
                    prop_assert_eq!(envelope.validate(), Ok(()));
                }
            }
            Err(error) => check_refusal(&error)?,
        }
    }

    #[test]
    fn any_outcome_body_is_converted_or_refused_by_field(body in body()) {
        match outcome_from_json(&body, now()) {
            Ok(outcome) => prop_assert_eq!(outcome.validate(), Ok(())),
            Err(error) => check_refusal(&error)?,
        }
    }

    #[test]
    fn damaged_protobuf_bodies_are_converted_or_refused(body in damaged_envelope_bytes()) {
        match event_from_protobuf(&body, now()) {
            Ok(envelope) => prop_assert_eq!(envelope.validate(), Ok(())),
            Err(error) => check_refusal(&error)?,
        }
    }

    #[test]
    fn a_valid_events_json_becomes_the_same_envelope(envelope in valid_envelope()) {
        let body = as_json(&envelope).to_string();
        let (shape, converted) = events_from_json(body.as_bytes(), now()).unwrap();
        prop_assert_eq!(shape, Shape::Single);
        let converted = &converted[0];
        prop_assert_eq!(&converted.event_id, &envelope.event_id);
        prop_assert_eq!(&converted.transaction_id, &envelope.transaction_id);
        prop_assert_eq!(&converted.causation_id, &envelope.causation_id);
        prop_assert_eq!(&converted.r#type, &envelope.r#type);
        prop_assert_eq!(&converted.source, &envelope.source);
        prop_assert_eq!(&converted.subject_ids, &envelope.subject_ids);
        prop_assert_eq!(&converted.attributes, &envelope.attributes);
        let expected_time = envelope.occurred_at.unwrap_or_else(|| now().into());
        prop_assert_eq!(converted.occurred_at, Some(expected_time));
        let payload: Value = serde_json::from_slice(&converted.payload).unwrap();
        prop_assert_eq!(payload, json!({"bytes": envelope.payload}));
    }

    #[test]
    fn a_valid_envelopes_protobuf_body_is_taken_as_is(envelope in valid_envelope()) {
        let converted = event_from_protobuf(&envelope.encode_to_vec(), now()).unwrap();
        // Only the time is filled in, when missing.
        let expected = Envelope {
            occurred_at: envelope.occurred_at.or_else(|| Some(now().into())),
            ..envelope
        };
        prop_assert_eq!(converted, expected);
    }
}
