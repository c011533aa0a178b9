//! Building and validating envelopes.

use std::time::SystemTime;

use crate::v1::{Envelope, Outcome, OutcomeStatus};

/// A new UUIDv7 event id: unique, and sortable by creation time.
pub fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Why an envelope is not acceptable. Each variant names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("field `{field}` is missing: every Retrace event must carry it")]
    Missing { field: &'static str },
    #[error("field `{field}` is not a UUID ({value:?}): event ids are UUIDv7 strings")]
    NotUuid { field: &'static str, value: String },
    #[error("field `{field}` contains a control character: ids must be printable text")]
    ControlCharacter { field: &'static str },
    #[error("field `{field}` is {len} bytes long: the limit is {limit}")]
    TooLong {
        field: &'static str,
        len: usize,
        limit: usize,
    },
    #[error(
        "field `{field}` is not a code ({value:?}): use ASCII letters, digits, `_`, `.` and `-` \
         only, e.g. `population_register_timeout`"
    )]
    NotACode { field: &'static str, value: String },
}

impl EnvelopeError {
    /// The field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            EnvelopeError::Missing { field }
            | EnvelopeError::NotUuid { field, .. }
            | EnvelopeError::ControlCharacter { field }
            | EnvelopeError::TooLong { field, .. }
            | EnvelopeError::NotACode { field, .. } => field,
        }
    }
}

/// Longest id (transaction, subject, source, type) accepted, in bytes.
pub const MAX_ID_LEN: usize = 512;

/// Longest `Outcome.error_code` accepted, in characters (all ASCII). A code names a cause, it
/// does not describe it: the error text does that.
pub const MAX_ERROR_CODE_LEN: usize = 64;

impl Envelope {
    /// The first event of a new transaction.
    pub fn root(source: impl Into<String>, event_type: impl Into<String>) -> Self {
        Envelope {
            event_id: new_event_id(),
            transaction_id: new_event_id(),
            source: source.into(),
            r#type: event_type.into(),
            occurred_at: Some(SystemTime::now().into()),
            ..Envelope::default()
        }
    }

    /// An event caused by `parent`: same transaction and subjects, `causation_id` = parent's id.
    pub fn caused_by(
        parent: &Envelope,
        source: impl Into<String>,
        event_type: impl Into<String>,
    ) -> Self {
        Envelope {
            transaction_id: parent.transaction_id.clone(),
            causation_id: parent.event_id.clone(),
            subject_ids: parent.subject_ids.clone(),
            ..Envelope::root(source, event_type)
        }
    }

    pub fn with_subject(mut self, subject_id: impl Into<String>) -> Self {
        self.subject_ids.push(subject_id.into());
        self
    }

    pub fn with_payload(mut self, content_type: impl Into<String>, payload: Vec<u8>) -> Self {
        self.content_type = content_type.into();
        self.payload = payload;
        self
    }

    /// Checks the ids every Retrace event must carry.
    pub fn validate(&self) -> Result<(), EnvelopeError> {
        check_uuid("event_id", &self.event_id)?;
        check_id("transaction_id", &self.transaction_id)?;
        if !self.causation_id.is_empty() {
            check_uuid("causation_id", &self.causation_id)?;
        }
        check_id("source", &self.source)?;
        check_id("type", &self.r#type)?;
        for subject in &self.subject_ids {
            check_id("subject_ids", subject)?;
        }
        Ok(())
    }
}

impl Outcome {
    /// What `consumer` did with `event` on attempt `attempt` (1 for the first).
    pub fn of(
        event: &Envelope,
        consumer: impl Into<String>,
        status: OutcomeStatus,
        error: Option<String>,
        attempt: u32,
    ) -> Self {
        Outcome {
            event_id: event.event_id.clone(),
            transaction_id: event.transaction_id.clone(),
            consumer: consumer.into(),
            status: status as i32,
            error: error.unwrap_or_default(),
            attempt,
            at: Some(SystemTime::now().into()),
            ..Outcome::default()
        }
    }

    /// This outcome with `code` as its `error_code`, the stable reason that groups it with
    /// failures of the same cause. A code [`check_error_code`] refuses is left out and the
    /// error text says why: the outcome of a handler that gave a bad code must still be
    /// published, or its event would never settle.
    pub fn with_error_code(mut self, code: impl Into<String>) -> Self {
        let code = code.into();
        match check_error_code(&code) {
            Ok(()) => self.error_code = code,
            Err(refused) => {
                let note = format!("[error_code left out: {refused}]");
                self.error = match self.error.is_empty() {
                    true => note,
                    false => format!("{} {note}", self.error),
                };
            }
        }
        self
    }

    /// Checks the ids an outcome must carry to be attached to its event, and its error code.
    pub fn validate(&self) -> Result<(), EnvelopeError> {
        check_uuid("event_id", &self.event_id)?;
        check_id("transaction_id", &self.transaction_id)?;
        check_id("consumer", &self.consumer)?;
        check_error_code(&self.error_code)
    }
}

/// Checks an `Outcome.error_code`: empty (none given), or 1 to [`MAX_ERROR_CODE_LEN`] ASCII
/// letters, digits, `_`, `.` and `-`. Upper case is allowed so the codes libraries already
/// carry (`ECONNREFUSED`, SQLSTATE `40001`) can be passed on as they are; codes are compared
/// exactly, so `Timeout` and `timeout` are two causes.
pub fn check_error_code(code: &str) -> Result<(), EnvelopeError> {
    const FIELD: &str = "error_code";
    if code.len() > MAX_ERROR_CODE_LEN {
        return Err(EnvelopeError::TooLong {
            field: FIELD,
            len: code.len(),
            limit: MAX_ERROR_CODE_LEN,
        });
    }
    if !code
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(EnvelopeError::NotACode {
            field: FIELD,
            value: code.to_owned(),
        });
    }
    Ok(())
}

pub(crate) fn check_id(field: &'static str, value: &str) -> Result<(), EnvelopeError> {
    if value.is_empty() {
        return Err(EnvelopeError::Missing { field });
    }
    if value.len() > MAX_ID_LEN {
        return Err(EnvelopeError::TooLong {
            field,
            len: value.len(),
            limit: MAX_ID_LEN,
        });
    }
    if value.chars().any(char::is_control) {
        return Err(EnvelopeError::ControlCharacter { field });
    }
    Ok(())
}

fn check_uuid(field: &'static str, value: &str) -> Result<(), EnvelopeError> {
    check_id(field, value)?;
    uuid::Uuid::parse_str(value)
        .map(drop)
        .map_err(|_| EnvelopeError::NotUuid {
            field,
            value: value.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn caused_by_links_the_parent_and_keeps_its_transaction() {
        let root = Envelope::root("registration", "registration.submitted.v1")
            .with_subject("beneficiary:42");
        let child = Envelope::caused_by(&root, "validation", "registration.validated.v1");
        assert_eq!(child.transaction_id, root.transaction_id);
        assert_eq!(child.causation_id, root.event_id);
        assert_eq!(child.subject_ids, vec!["beneficiary:42".to_owned()]);
        assert_ne!(child.event_id, root.event_id);
        child.validate().unwrap();
    }

    #[test]
    fn validation_names_the_missing_field() {
        let mut envelope = Envelope::root("registration", "registration.submitted.v1");
        envelope.transaction_id.clear();
        let error = envelope.validate().unwrap_err();
        assert_eq!(
            error,
            EnvelopeError::Missing {
                field: "transaction_id"
            }
        );
        assert!(error.to_string().contains("transaction_id"));
    }

    #[test]
    fn validation_rejects_an_event_id_that_is_not_a_uuid() {
        let mut envelope = Envelope::root("registration", "registration.submitted.v1");
        envelope.event_id = "42".into();
        assert!(matches!(
            envelope.validate(),
            Err(EnvelopeError::NotUuid {
                field: "event_id",
                ..
            })
        ));
    }

    #[test]
    fn an_error_code_is_ascii_letters_digits_and_three_marks() {
        for good in [
            "",
            "population_register_timeout",
            "http_503",
            "ECONNREFUSED",
            "40001",
            "renderer.unavailable-v2",
            &"x".repeat(MAX_ERROR_CODE_LEN),
        ] {
            assert_eq!(check_error_code(good), Ok(()), "{good:?}");
        }
        for bad in ["two words", "a/b", "café", "tab\there", "quote\""] {
            let error = check_error_code(bad).unwrap_err();
            assert!(
                matches!(
                    error,
                    EnvelopeError::NotACode {
                        field: "error_code",
                        ..
                    }
                ),
                "{bad:?}: {error}"
            );
            assert!(error.to_string().contains("`error_code`"), "{error}");
        }
        assert_eq!(
            check_error_code(&"x".repeat(MAX_ERROR_CODE_LEN + 1)),
            Err(EnvelopeError::TooLong {
                field: "error_code",
                len: MAX_ERROR_CODE_LEN + 1,
                limit: MAX_ERROR_CODE_LEN
            })
        );
    }

    #[test]
    fn an_outcome_with_a_bad_error_code_is_invalid() {
        let event = Envelope::root("registration", "registration.submitted.v1");
        let mut outcome = Outcome::of(&event, "validation", OutcomeStatus::Failed, None, 1);
        outcome.error_code = "population register".into();
        assert_eq!(outcome.validate().unwrap_err().field(), "error_code");
    }

    #[test]
    fn with_error_code_sets_a_good_code_and_leaves_a_bad_one_out_saying_why() {
        let event = Envelope::root("registration", "registration.submitted.v1");
        let failed = |error: &str| {
            Outcome::of(
                &event,
                "validation",
                OutcomeStatus::Failed,
                Some(error.to_owned()),
                1,
            )
        };
        let coded = failed("no answer within 2 s").with_error_code("population_register_timeout");
        assert_eq!(coded.error_code, "population_register_timeout");
        assert_eq!(coded.error, "no answer within 2 s");
        coded.validate().unwrap();

        let refused = failed("no answer within 2 s").with_error_code("register timeout");
        assert_eq!(refused.error_code, "");
        assert!(
            refused
                .error
                .starts_with("no answer within 2 s [error_code left out: field `error_code`"),
            "{}",
            refused.error
        );
        refused.validate().unwrap();
    }

    #[test]
    fn an_envelope_survives_encoding() {
        let envelope = Envelope::root("registration", "registration.submitted.v1")
            .with_subject("beneficiary:42")
            .with_payload("application/json", br#"{"name":"Ada"}"#.to_vec());
        let decoded = Envelope::decode(envelope.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, envelope);
    }
}
