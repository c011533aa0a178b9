//! proptest strategies for the wire contract: valid envelopes and outcomes, and the ways their
//! bytes get damaged on the way (flipped, cut, spliced). For fuzzing whatever decodes them:
//! this crate, the archive's classifier, the gateway. Enabled by the `arbitrary` feature.

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::sample::Index;
use prost::Message as _;
use prost_types::Timestamp;

use crate::{Envelope, Job, Outcome, Replay};

/// An id that passes validation: printable, 1 to 40 bytes.
pub fn id() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9:._-]{1,40}"
}

/// A UUID string, as event ids are.
pub fn uuid() -> impl Strategy<Value = String> {
    any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string())
}

/// A time between 1970 and 9999, as RFC 3339 can write it.
pub fn timestamp() -> impl Strategy<Value = Timestamp> {
    (0i64..253_402_300_799, 0i32..1_000_000_000)
        .prop_map(|(seconds, nanos)| Timestamp { seconds, nanos })
}

/// Any envelope that passes [`Envelope::validate`], with every field in play.
pub fn valid_envelope() -> impl Strategy<Value = Envelope> {
    let ids = (
        uuid(),
        id(),
        prop::option::of(uuid()),
        prop::collection::vec(id(), 0..4),
        id(),
        id(),
    );
    let content = (
        prop::option::of(timestamp()),
        "[a-z/+.-]{0,20}",
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::hash_map(id(), ".{0,20}", 0..3),
        prop::option::of(replay()),
        prop::option::of(job()),
    );
    (ids, content).prop_map(
        |(
            (event_id, transaction_id, causation_id, subject_ids, source, r#type),
            (occurred_at, content_type, payload, attributes, replay, job),
        )| Envelope {
            event_id,
            transaction_id,
            causation_id: causation_id.unwrap_or_default(),
            subject_ids,
            source,
            r#type,
            occurred_at,
            content_type,
            payload,
            attributes: attributes.into_iter().collect::<HashMap<_, _>>(),
            replay,
            job,
        },
    )
}

fn replay() -> impl Strategy<Value = Replay> {
    (uuid(), uuid(), id(), 0..64i32, 0..i64::MAX, id(), ".{0,20}").prop_map(
        |(replay_id, original_event_id, original_topic, partition, offset, by, reason)| Replay {
            replay_id,
            original_event_id,
            original_topic,
            original_partition: partition,
            original_offset: offset,
            requested_by: by,
            reason,
            requested_at: None,
        },
    )
}

fn job() -> impl Strategy<Value = Job> {
    (id(), 0..4i32, prop::option::of(timestamp()), 0..10u32).prop_map(
        |(kind, priority, deadline, max_attempts)| Job {
            kind,
            priority,
            not_before: None,
            deadline,
            max_attempts,
        },
    )
}

/// Any outcome that passes [`Outcome::validate`].
pub fn valid_outcome() -> impl Strategy<Value = Outcome> {
    (
        uuid(),
        id(),
        id(),
        0..6i32,
        ".{0,20}",
        "([A-Za-z0-9_.-]{1,64})?",
        1..5u32,
        timestamp(),
    )
        .prop_map(
            |(event_id, transaction_id, consumer, status, error, error_code, attempt, at)| {
                Outcome {
                    event_id,
                    transaction_id,
                    consumer,
                    status,
                    error,
                    error_code,
                    attempt,
                    at: Some(at),
                    ..Outcome::default()
                }
            },
        )
}

/// One way bytes get damaged. Positions are fractions of the length, so a mutation applies to
/// any input.
#[derive(Debug, Clone)]
pub enum Mutation {
    Flip(Index, u8),
    Truncate(Index),
    Insert(Index, u8),
    Delete(Index),
    /// A run of arbitrary bytes written over the input.
    Overwrite(Index, Vec<u8>),
}

impl Mutation {
    pub fn apply(&self, bytes: &mut Vec<u8>) {
        // An index into 0..=len, so the end is a position too.
        let at = |index: &Index, len: usize| index.index(len + 1);
        match self {
            Mutation::Flip(index, mask) if !bytes.is_empty() => {
                let i = index.index(bytes.len());
                bytes[i] ^= mask.max(&1);
            }
            Mutation::Truncate(index) => bytes.truncate(at(index, bytes.len())),
            Mutation::Insert(index, byte) => bytes.insert(at(index, bytes.len()), *byte),
            Mutation::Delete(index) if !bytes.is_empty() => {
                bytes.remove(index.index(bytes.len()));
            }
            Mutation::Overwrite(index, run) => {
                let start = at(index, bytes.len());
                let end = (start + run.len()).min(bytes.len());
                bytes.splice(start..end, run.iter().copied());
            }
            Mutation::Flip(..) | Mutation::Delete(_) => {}
        }
    }
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, m)| Mutation::Flip(i, m)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, run)| Mutation::Overwrite(i, run)),
    ]
}

/// A valid envelope's encoding with one to eight mutations applied.
pub fn damaged_envelope_bytes() -> impl Strategy<Value = Vec<u8>> {
    damaged(valid_envelope().prop_map(|e| e.encode_to_vec()))
}

/// A valid outcome's encoding with one to eight mutations applied.
pub fn damaged_outcome_bytes() -> impl Strategy<Value = Vec<u8>> {
    damaged(valid_outcome().prop_map(|o| o.encode_to_vec()))
}

fn damaged(bytes: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (bytes, prop::collection::vec(mutation(), 1..8)).prop_map(|(mut bytes, mutations)| {
        for mutation in &mutations {
            mutation.apply(&mut bytes);
        }
        bytes
    })
}
