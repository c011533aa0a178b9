//! The Kafka headers that carry an event's ids beside (or instead of) the envelope.
//!
//! A producer that cannot build an [`Envelope`] (another language, `kcat -H`) sets these
//! headers and its messages are traced all the same.

use crate::envelope::check_id;
use crate::{Envelope, EnvelopeError};

pub const EVENT_ID: &str = "retrace-event-id";
pub const TRANSACTION_ID: &str = "retrace-transaction-id";
pub const CAUSATION_ID: &str = "retrace-causation-id";
/// Repeated: one header per subject id.
pub const SUBJECT: &str = "retrace-subject";
pub const SOURCE: &str = "retrace-source";
pub const TYPE: &str = "retrace-type";
/// W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
pub const REPLAY_ID: &str = "retrace-replay-id";
pub const REPLAY_OF: &str = "retrace-replay-of";

/// The off-peak worker's bookkeeping on the copies of a job it writes (retry, deferral,
/// dead letter, redrive): the worker writes them, the archive reads them to tell a job's
/// attempts apart.
pub mod job {
    /// Number of the attempt a copy on the retry topic (or a dead-lettered copy) is for;
    /// absent on a job's first delivery (attempt 1).
    pub const ATTEMPT: &str = "retrace-job-attempt";
    /// When a copy on the retry topic is due, in milliseconds since the Unix epoch (RFC 3339
    /// is also accepted when read).
    pub const DUE_AT: &str = "retrace-job-due-at";
    /// One per failed attempt, oldest first: `attempt 2: HTTP 503 from http://…`.
    pub const ERROR: &str = "retrace-job-error";
    /// Set on a job moved back from the dead-letter topic: who asked.
    pub const REDRIVEN_BY: &str = "retrace-job-redriven-by";
    /// Set on a job moved back from the dead-letter topic: why.
    pub const REDRIVE_REASON: &str = "retrace-job-redrive-reason";
}

/// An event's ids as carried in Kafka headers. Empty strings stand for absent headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceHeaders {
    pub event_id: String,
    pub transaction_id: String,
    pub causation_id: String,
    pub subject_ids: Vec<String>,
    pub source: String,
    pub event_type: String,
    pub traceparent: String,
    pub replay_id: String,
    pub replay_of: String,
}

/// A Retrace header that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("header `{header}` is not valid UTF-8: Retrace header values must be text")]
    NotUtf8 { header: String },
}

impl TraceHeaders {
    /// The headers that go with `envelope`.
    pub fn of(envelope: &Envelope) -> Self {
        let replay = envelope.replay.as_ref();
        TraceHeaders {
            event_id: envelope.event_id.clone(),
            transaction_id: envelope.transaction_id.clone(),
            causation_id: envelope.causation_id.clone(),
            subject_ids: envelope.subject_ids.clone(),
            source: envelope.source.clone(),
            event_type: envelope.r#type.clone(),
            traceparent: String::new(),
            replay_id: replay.map(|r| r.replay_id.clone()).unwrap_or_default(),
            replay_of: replay
                .map(|r| r.original_event_id.clone())
                .unwrap_or_default(),
        }
    }

    /// (name, value) pairs in a stable order, absent ones left out.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        let single = [
            (EVENT_ID, &self.event_id),
            (TRANSACTION_ID, &self.transaction_id),
            (CAUSATION_ID, &self.causation_id),
        ];
        let rest = [
            (SOURCE, &self.source),
            (TYPE, &self.event_type),
            (TRACEPARENT, &self.traceparent),
            (REPLAY_ID, &self.replay_id),
            (REPLAY_OF, &self.replay_of),
        ];
        single
            .into_iter()
            .map(|(name, value)| (name, value.as_str()))
            .chain(self.subject_ids.iter().map(|s| (SUBJECT, s.as_str())))
            .chain(rest.into_iter().map(|(name, value)| (name, value.as_str())))
            .filter(|(_, value)| !value.is_empty())
            .collect()
    }

    /// Reads the Retrace headers out of a message's headers; other headers are ignored.
    /// `Ok(None)` when the message carries no Retrace header at all.
    pub fn parse<'a>(
        headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    ) -> Result<Option<Self>, HeaderError> {
        let mut parsed = TraceHeaders::default();
        let mut found = false;
        for (name, value) in headers {
            let Some(slot) = parsed.slot(name) else {
                continue;
            };
            found = true;
            let text = std::str::from_utf8(value.unwrap_or_default()).map_err(|_| {
                HeaderError::NotUtf8 {
                    header: name.to_owned(),
                }
            })?;
            match slot {
                Slot::One(field) => *field = text.to_owned(),
                Slot::Many(list) => list.push(text.to_owned()),
            }
        }
        Ok(found.then_some(parsed))
    }

    /// Checks the ids a message needs to be traced: its event and transaction ids.
    pub fn validate(&self) -> Result<(), EnvelopeError> {
        check_id(EVENT_ID, &self.event_id)?;
        check_id(TRANSACTION_ID, &self.transaction_id)?;
        for subject in &self.subject_ids {
            check_id(SUBJECT, subject)?;
        }
        Ok(())
    }

    fn slot(&mut self, name: &str) -> Option<Slot<'_>> {
        Some(match name {
            EVENT_ID => Slot::One(&mut self.event_id),
            TRANSACTION_ID => Slot::One(&mut self.transaction_id),
            CAUSATION_ID => Slot::One(&mut self.causation_id),
            SUBJECT => Slot::Many(&mut self.subject_ids),
            SOURCE => Slot::One(&mut self.source),
            TYPE => Slot::One(&mut self.event_type),
            TRACEPARENT => Slot::One(&mut self.traceparent),
            REPLAY_ID => Slot::One(&mut self.replay_id),
            REPLAY_OF => Slot::One(&mut self.replay_of),
            _ => return None,
        })
    }
}

enum Slot<'a> {
    One(&'a mut String),
    Many(&'a mut Vec<String>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9:._-]{0,40}"
    }

    prop_compose! {
        fn any_headers()(
            event_id in id(), transaction_id in id(), causation_id in id(),
            subject_ids in proptest::collection::vec("[a-z]{1,10}:[0-9]{1,6}", 0..4),
            source in id(), event_type in id(), traceparent in id(),
            replay_id in id(), replay_of in id(),
        ) -> TraceHeaders {
            TraceHeaders { event_id, transaction_id, causation_id, subject_ids, source,
                           event_type, traceparent, replay_id, replay_of }
        }
    }

    proptest! {
        #[test]
        fn headers_survive_a_round_trip(headers in any_headers()) {
            let pairs = headers.pairs();
            let parsed = TraceHeaders::parse(
                pairs.iter().map(|(name, value)| (*name, Some(value.as_bytes()))),
            ).unwrap();
            if pairs.is_empty() {
                prop_assert_eq!(parsed, None);
            } else {
                prop_assert_eq!(parsed, Some(headers));
            }
        }

        #[test]
        fn envelope_ids_survive_the_trip_through_headers(
            subjects in proptest::collection::vec("[a-z]{1,10}:[0-9]{1,6}", 0..4),
        ) {
            let mut envelope = Envelope::root("registration", "registration.submitted.v1");
            envelope.subject_ids = subjects;
            let headers = TraceHeaders::of(&envelope);
            let pairs = headers.pairs();
            let parsed = TraceHeaders::parse(
                pairs.iter().map(|(name, value)| (*name, Some(value.as_bytes()))),
            ).unwrap().unwrap();
            prop_assert_eq!(&parsed.event_id, &envelope.event_id);
            prop_assert_eq!(&parsed.transaction_id, &envelope.transaction_id);
            prop_assert_eq!(&parsed.subject_ids, &envelope.subject_ids);
            prop_assert_eq!(&parsed.event_type, &envelope.r#type);
            parsed.validate().unwrap();
        }
    }

    #[test]
    fn a_non_utf8_value_names_its_header() {
        let bad: &[u8] = &[0xff, 0xfe];
        let error = TraceHeaders::parse([(TRANSACTION_ID, Some(bad))]).unwrap_err();
        assert_eq!(
            error,
            HeaderError::NotUtf8 {
                header: TRANSACTION_ID.into()
            }
        );
    }

    #[test]
    fn foreign_headers_are_ignored() {
        let parsed = TraceHeaders::parse([("content-type", Some(&b"json"[..]))]).unwrap();
        assert_eq!(parsed, None);
    }

    #[test]
    fn a_message_without_transaction_id_is_not_traceable() {
        let headers = TraceHeaders {
            event_id: "e-1".into(),
            ..TraceHeaders::default()
        };
        assert_eq!(
            headers.validate(),
            Err(EnvelopeError::Missing {
                field: TRANSACTION_ID
            })
        );
    }
}
