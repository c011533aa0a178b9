//! What a consumed Kafka record is: an envelope, a headers-only event, an outcome, or
//! something untraceable or malformed. Every record becomes an [`ArchivedRecord`]; none is
//! refused, since the archive keeps everything.
//!
//! An audit event is chained into the audit trail only when it carries a valid signature
//! from a Retrace service ([`retrace_auth::SIGNATURE_HEADER`]); an unsigned or badly signed
//! one is kept as malformed, with a problem saying which ([`SignatureFault::of`]), counted
//! and logged ([`AuditEventRejected`]), and never chained.

use prost::Message as _;
use prost_types::Timestamp;
use rdkafka::Message;
use rdkafka::message::Headers;
use retrace_auth::{SIGNATURE_HEADER, SigningKeys, Verdict};
use retrace_log_store::{
    ArchiveChange, ArchivedRecord, AuditEntry, EventIds, Header, OutcomeRef, PreparedRecord,
    RecordKey, RecordKind,
};
use retrace_proto::headers::TraceHeaders;
use retrace_proto::{
    ARCHIVE_CHANGES_TOPIC, AUDIT_TOPIC, AuditEvent, Envelope, OUTCOMES_TOPIC, Outcome,
    OutcomeStatus,
};
use retrace_telemetry::InternalEvent;

use crate::audit::REPLICA_HEADER;
use crate::events::AuditEventRejected;

/// Why an audit event on the audit topic was not chained, when its signature is at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignatureFault {
    Unsigned,
    BadlySigned,
}

const NOT_CHAINED: &str = "audit event not chained, ";

impl SignatureFault {
    /// The fault a flagged record's problem names, if it is one of these.
    pub(crate) fn of(problem: &str) -> Option<SignatureFault> {
        let rest = problem.strip_prefix(NOT_CHAINED)?;
        if rest.starts_with("unsigned") {
            Some(SignatureFault::Unsigned)
        } else if rest.starts_with("badly signed") {
            Some(SignatureFault::BadlySigned)
        } else {
            None
        }
    }
}

/// Copies `message` out of Kafka's buffers and says what it is. Audit events are chained
/// only when signed with one of `keys` (the configuration's `[auth]` signing keys), and not
/// when published by `own_replica` (this archive, whose trail has them already; `None`, as
/// in a rebuild, chains them all). The archive's changes are applied only when signed, if
/// keys are configured.
pub fn classify(
    message: &impl Message,
    archived_at_ms: i64,
    keys: &SigningKeys,
    own_replica: Option<&str>,
) -> ArchivedRecord {
    let value = message.payload();
    let headers: Vec<Header> = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| Header {
                    name: h.key.to_owned(),
                    value: h.value.map(<[u8]>::to_vec),
                })
                .collect()
        })
        .unwrap_or_default();
    let kafka_timestamp_ms = message.timestamp().to_millis();
    let understood = match message.topic() {
        OUTCOMES_TOPIC => outcome(value),
        AUDIT_TOPIC => {
            let signature = headers
                .iter()
                .find(|h| h.name == SIGNATURE_HEADER)
                .and_then(|h| h.value.as_deref());
            let replica = headers
                .iter()
                .find(|h| h.name == REPLICA_HEADER)
                .and_then(|h| h.value.as_deref());
            match keys.verify(AUDIT_TOPIC, message.key(), value, signature) {
                Verdict::Valid(_)
                    if own_replica.is_some_and(|own| replica == Some(own.as_bytes())) =>
                {
                    Understood {
                        audit: None,
                        ..audit(value)
                    }
                }
                Verdict::Valid(_) => audit(value),
                verdict => {
                    AuditEventRejected {
                        partition: message.partition(),
                        offset: message.offset(),
                        verdict: &verdict,
                    }
                    .emit();
                    Understood::flagged(RecordKind::Malformed, format!("{NOT_CHAINED}{verdict}"))
                }
            }
        }
        ARCHIVE_CHANGES_TOPIC => {
            let signature = headers
                .iter()
                .find(|h| h.name == SIGNATURE_HEADER)
                .and_then(|h| h.value.as_deref());
            match keys.verify(ARCHIVE_CHANGES_TOPIC, message.key(), value, signature) {
                Verdict::Valid(_) => change(value),
                _ if keys.is_empty() => change(value),
                verdict => Understood::flagged(
                    RecordKind::Malformed,
                    format!("archive change not applied, {verdict}"),
                ),
            }
        }
        _ => event(value.unwrap_or_default(), &headers),
    };
    ArchivedRecord {
        key: RecordKey {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            // Which log of the partition this is, only the archiver knows: it sets it.
            epoch: 0,
            offset: message.offset(),
        },
        message_key: message.key().map(<[u8]>::to_vec),
        value: value.map(<[u8]>::to_vec),
        headers,
        kafka_timestamp_ms,
        time_ms: understood
            .occurred_at_ms
            .or(kafka_timestamp_ms)
            .unwrap_or(archived_at_ms),
        kind: understood.kind,
        problem: understood.problem,
        ids: understood.ids,
        outcome: understood.outcome,
        archived_at_ms,
        erased_at_ms: None,
        audit: understood.audit,
    }
}

/// Keys and encodes a record for the store, with the change it carries when it is one of
/// `own_archive`'s (its group's: another archive on the same cluster changes only its own).
/// A record the store cannot index is kept as malformed, with the reason, rather than lost.
pub fn prepare(record: ArchivedRecord, own_archive: &str) -> PreparedRecord {
    let change = (record.kind == RecordKind::Change)
        .then(|| ArchiveChange::decode(record.value.as_deref().unwrap_or_default()).ok())
        .flatten()
        .filter(|decoded| decoded.archive == own_archive)
        .and_then(|decoded| decoded.change);
    let prepared = prepare_record(record);
    match change {
        Some(change) => prepared.with_change(change),
        None => prepared,
    }
}

fn prepare_record(record: ArchivedRecord) -> PreparedRecord {
    PreparedRecord::new(record).unwrap_or_else(|(error, record)| {
        PreparedRecord::new(ArchivedRecord {
            kind: RecordKind::Malformed,
            problem: Some(error.to_string()),
            ids: None,
            outcome: None,
            ..*record
        })
        .map_err(|(error, _)| error)
        .expect("a record without ids has nothing that can fail to index")
    })
}

struct Understood {
    kind: RecordKind,
    problem: Option<String>,
    ids: Option<EventIds>,
    outcome: Option<OutcomeRef>,
    occurred_at_ms: Option<i64>,
    audit: Option<AuditEntry>,
}

impl Understood {
    fn flagged(kind: RecordKind, problem: String) -> Self {
        Understood {
            kind,
            problem: Some(problem),
            ids: None,
            outcome: None,
            occurred_at_ms: None,
            audit: None,
        }
    }
}

fn outcome(value: Option<&[u8]>) -> Understood {
    let decoded = Outcome::decode(value.unwrap_or_default())
        .map_err(|e| format!("outcome cannot be decoded: {e}"))
        .and_then(|outcome| {
            outcome
                .validate()
                .map_err(|e| format!("outcome is invalid: {e}"))?;
            Ok(outcome)
        });
    match decoded {
        Ok(outcome) => {
            let failed = matches!(
                outcome.status(),
                OutcomeStatus::Failed | OutcomeStatus::DeadLettered
            );
            Understood {
                kind: RecordKind::Outcome,
                problem: None,
                occurred_at_ms: outcome.at.as_ref().and_then(millis),
                ids: Some(EventIds {
                    transaction_id: outcome.transaction_id,
                    source: outcome.consumer,
                    event_type: retrace_proto::OUTCOME_TYPE.to_owned(),
                    ..EventIds::default()
                }),
                outcome: Some(OutcomeRef {
                    failed,
                    event_id: outcome.event_id,
                }),
                audit: None,
            }
        }
        Err(problem) => Understood::flagged(RecordKind::Malformed, problem),
    }
}

/// One of the archive's changes: kept as a record and applied with it.
fn change(value: Option<&[u8]>) -> Understood {
    match ArchiveChange::decode(value.unwrap_or_default()) {
        Ok(ArchiveChange {
            change: Some(_), ..
        }) => Understood {
            kind: RecordKind::Change,
            problem: None,
            ids: None,
            outcome: None,
            occurred_at_ms: None,
            audit: None,
        },
        Ok(_) => Understood::flagged(
            RecordKind::Malformed,
            "archive change carries no change (written by a newer release?)".to_owned(),
        ),
        Err(error) => Understood::flagged(
            RecordKind::Malformed,
            format!("archive change cannot be decoded: {error}"),
        ),
    }
}

/// A service's audit event: kept as a record and chained into the audit trail. The
/// archive's own actions keep their names (`replay.start`), as in the trail of the replica
/// that did them; another service's are prefixed with its name (`gateway.publish`).
fn audit(value: Option<&[u8]>) -> Understood {
    match AuditEvent::decode(value.unwrap_or_default()) {
        Ok(event) if !event.action.is_empty() => {
            let at_ms = event.at.as_ref().and_then(millis);
            Understood {
                kind: RecordKind::Audit,
                problem: None,
                ids: None,
                outcome: None,
                occurred_at_ms: at_ms,
                audit: Some(AuditEntry {
                    at_ms: at_ms.unwrap_or_default(),
                    actor: event.actor,
                    actor_id: event.actor_id,
                    role: event.role,
                    origin: event.origin,
                    action: if event.service == crate::audit::ARCHIVE_SERVICE {
                        event.action
                    } else {
                        format!("{}.{}", event.service, event.action)
                    },
                    target: event.target,
                    reason: event.reason,
                    result: event.result,
                }),
            }
        }
        Ok(_) => Understood::flagged(
            RecordKind::Malformed,
            "audit event has no `action`".to_owned(),
        ),
        Err(error) => Understood::flagged(
            RecordKind::Malformed,
            format!("audit event cannot be decoded: {error}"),
        ),
    }
}

fn event(value: &[u8], headers: &[Header]) -> Understood {
    let not_an_envelope = match Envelope::decode(value) {
        // Arbitrary bytes can decode as an empty envelope; one with neither id is not one.
        Ok(envelope) if envelope.event_id.is_empty() && envelope.transaction_id.is_empty() => {
            "value is not a Retrace envelope (it carries no event or transaction id)".to_owned()
        }
        Ok(envelope) => {
            return match envelope.validate() {
                Ok(()) => Understood {
                    kind: RecordKind::Envelope,
                    problem: None,
                    // A replayed copy happened when it was re-published (its Kafka
                    // timestamp), not when the original event did.
                    occurred_at_ms: envelope
                        .occurred_at
                        .as_ref()
                        .filter(|_| envelope.replay.is_none())
                        .and_then(millis),
                    ids: Some(EventIds {
                        event_id: envelope.event_id,
                        transaction_id: envelope.transaction_id,
                        causation_id: envelope.causation_id,
                        subject_ids: envelope.subject_ids,
                        source: envelope.source,
                        event_type: envelope.r#type,
                    }),
                    outcome: None,
                    audit: None,
                },
                Err(error) => Understood::flagged(
                    RecordKind::Malformed,
                    format!("envelope is invalid: {error}"),
                ),
            };
        }
        Err(error) => format!("value is not a protobuf envelope: {error}"),
    };
    let parsed = TraceHeaders::parse(
        headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_deref())),
    );
    match parsed {
        Ok(Some(trace)) => match trace.validate() {
            Ok(()) => Understood {
                kind: RecordKind::HeadersOnly,
                // JSON or text beside `retrace-*` headers is how other languages publish
                // (proto/README.md): nothing is wrong with it, so there is nothing to say.
                problem: claims_envelope(value, headers).then_some(not_an_envelope),
                occurred_at_ms: None,
                ids: Some(EventIds {
                    event_id: trace.event_id,
                    transaction_id: trace.transaction_id,
                    causation_id: trace.causation_id,
                    subject_ids: trace.subject_ids,
                    source: trace.source,
                    event_type: trace.event_type,
                }),
                outcome: None,
                audit: None,
            },
            Err(error) => Understood::flagged(
                RecordKind::Malformed,
                format!("{not_an_envelope}; its Retrace headers are invalid: {error}"),
            ),
        },
        Ok(None) => Understood::flagged(
            RecordKind::Untraceable,
            format!("{not_an_envelope}, and it has no retrace-* headers"),
        ),
        Err(error) => {
            Understood::flagged(RecordKind::Malformed, format!("{not_an_envelope}; {error}"))
        }
    }
}

/// Whether a value that did not decode as an envelope was meant to be one: only then is its
/// decode error worth a warning. A `content-type` header, when there is one, says: a protobuf
/// media type claims to be an envelope, anything else (`application/json`, Avro) does not.
/// Without one, the value's shape says: JSON and plain text are what publishers in other
/// languages send beside `retrace-*` headers (proto/README.md), binary is what a damaged or
/// hand-built envelope looks like.
pub(crate) fn claims_envelope(value: &[u8], headers: &[Header]) -> bool {
    let declared = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-type"))
        .and_then(|h| h.value.as_deref());
    match declared {
        Some(media_type) => String::from_utf8_lossy(media_type)
            .to_ascii_lowercase()
            .contains("protobuf"),
        None => !is_text(value),
    }
}

/// UTF-8 without control characters other than tab, CR and LF. JSON is text; an envelope is
/// not, since the tag of its transaction id (0x12) is a control character.
fn is_text(value: &[u8]) -> bool {
    std::str::from_utf8(value).is_ok_and(|text| {
        text.chars()
            .all(|c| c >= ' ' || matches!(c, '\t' | '\n' | '\r'))
    })
}

/// A protobuf time as milliseconds since the epoch; `None` for one no clock can show (a
/// publisher's bug, or damaged bytes), so the record's time falls back to Kafka's.
fn millis(timestamp: &Timestamp) -> Option<i64> {
    timestamp
        .seconds
        .checked_mul(1000)?
        .checked_add(i64::from(timestamp.nanos / 1_000_000))
}

#[cfg(test)]
#[path = "classify_tests.rs"]
mod tests;
