//! Fuzzing of the contract's decoders: protobuf bytes (random, and valid envelopes damaged)
//! and the `retrace-*` headers. Whatever arrives, decoding never panics, every rejection names
//! its field, and what is valid survives the round trip.
//!
//! CI runs proptest's default 256 cases per property; `PROPTEST_CASES=100000 cargo test -p
//! retrace-proto fuzz` runs a long local session (docs/reliability.md).

use proptest::prelude::*;
use prost::Message as _;

use crate::arbitrary::{damaged_envelope_bytes, damaged_outcome_bytes, valid_envelope};
use crate::headers::{self, HeaderError, TraceHeaders};
use crate::{Envelope, EnvelopeError, Outcome};

const ENVELOPE_FIELDS: &[&str] = &[
    "event_id",
    "transaction_id",
    "causation_id",
    "source",
    "type",
    "subject_ids",
];

/// A validation error must name one of `fields`, in its message too.
fn names_a_field(error: &EnvelopeError, fields: &[&str]) -> Result<(), TestCaseError> {
    prop_assert!(fields.contains(&error.field()), "{error:?}");
    prop_assert!(error.to_string().contains(error.field()), "{error}");
    Ok(())
}

fn check_envelope_bytes(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(envelope) = Envelope::decode(bytes) {
        if let Err(error) = envelope.validate() {
            names_a_field(&error, ENVELOPE_FIELDS)?;
        }
        // Whatever decoded encodes again to something that decodes the same.
        prop_assert_eq!(
            Envelope::decode(&*envelope.encode_to_vec()).unwrap(),
            envelope
        );
    }
    Ok(())
}

/// Header names a fuzzed message carries: Retrace's own, mostly, and some foreign ones.
fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            headers::EVENT_ID,
            headers::TRANSACTION_ID,
            headers::CAUSATION_ID,
            headers::SUBJECT,
            headers::SOURCE,
            headers::TYPE,
            headers::TRACEPARENT,
            headers::REPLAY_ID,
            headers::REPLAY_OF,
        ])
        .prop_map(str::to_owned),
        1 => ".{0,20}",
    ]
}

/// Header values: text (sometimes with control characters, sometimes long), raw bytes, or
/// absent.
fn header_value() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        4 => "[ -~]{0,40}".prop_map(|s| Some(s.into_bytes())),
        1 => ".{0,8}".prop_map(|s| Some(s.into_bytes())),
        1 => prop::collection::vec(any::<u8>(), 0..16).prop_map(Some),
        1 => (600usize..700).prop_map(|n| Some(vec![b'x'; n])),
        1 => Just(None),
    ]
}

proptest! {
    #[test]
    fn random_bytes_never_panic_and_rejections_name_a_field(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        check_envelope_bytes(&bytes)?;
    }

    #[test]
    fn damaged_envelopes_never_panic_and_rejections_name_a_field(
        bytes in damaged_envelope_bytes(),
    ) {
        check_envelope_bytes(&bytes)?;
    }

    #[test]
    fn damaged_outcomes_never_panic_and_rejections_name_a_field(
        bytes in damaged_outcome_bytes(),
    ) {
        if let Err(error) = Outcome::decode(&*bytes).map(|outcome| outcome.validate()) .unwrap_or(Ok(())) {
            names_a_field(&error, &["event_id", "transaction_id", "consumer", "error_code"])?;
        }
    }

    #[test]
    fn valid_envelopes_round_trip_through_bytes_and_headers(envelope in valid_envelope()) {
        prop_assert_eq!(envelope.validate(), Ok(()));
        let decoded = Envelope::decode(&*envelope.encode_to_vec()).unwrap();
        prop_assert_eq!(&decoded, &envelope);
        let headers = TraceHeaders::of(&envelope);
        let pairs = headers.pairs();
        let parsed = TraceHeaders::parse(
            pairs.iter().map(|(name, value)| (*name, Some(value.as_bytes()))),
        );
        let parsed = parsed.unwrap().expect("an envelope's headers are Retrace headers");
        prop_assert_eq!(parsed.validate(), Ok(()));
        prop_assert_eq!(parsed, headers);
    }

    #[test]
    fn any_headers_parse_without_panic_and_rejections_name_the_header(
        headers in prop::collection::vec((header_name(), header_value()), 0..12),
    ) {
        let parsed = TraceHeaders::parse(
            headers.iter().map(|(name, value)| (name.as_str(), value.as_deref())),
        );
        match parsed {
            Ok(None) => prop_assert!(headers.iter().all(|(name, _)| !name.starts_with("retrace-")
                && name != headers::TRACEPARENT)),
            Ok(Some(trace)) => {
                if let Err(error) = trace.validate() {
                    names_a_field(
                        &error,
                        &[headers::EVENT_ID, headers::TRANSACTION_ID, headers::SUBJECT],
                    )?;
                }
            }
            Err(HeaderError::NotUtf8 { header }) => {
                let not_text = headers.iter().any(|(name, value)| {
                    *name == header
                        && std::str::from_utf8(value.as_deref().unwrap_or_default()).is_err()
                });
                prop_assert!(not_text, "every {header} was valid text");
            }
        }
    }
}
