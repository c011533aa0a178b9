//! Request bodies to envelopes and outcomes, and every way a body can be wrong, each naming
//! the field at fault (`transaction_id`, `[2].subject_ids[0]`, `attributes.region`).

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use prost::Message as _;
use prost_types::Timestamp;
use retrace_proto::{Envelope, EnvelopeError, Job, JobPriority, Outcome, OutcomeStatus};
use serde_json::value::RawValue;

/// The media type of an event's payload when it was sent as JSON.
pub const JSON_CONTENT_TYPE: &str = "application/json";

const EVENT_FIELDS: &[&str] = &[
    "event_id",
    "transaction_id",
    "causation_id",
    "type",
    "source",
    "subject_ids",
    "attributes",
    "payload",
    "occurred_at",
    "job",
];

const JOB_FIELDS: &[&str] = &["kind", "priority", "not_before", "deadline", "max_attempts"];

const OUTCOME_FIELDS: &[&str] = &[
    "event_id",
    "transaction_id",
    "consumer",
    "status",
    "error",
    "error_code",
    "attempt",
    "topic",
];

/// What is wrong with a request, and where: `field` is a path into the JSON body
/// (`[2].transaction_id`), a header name, `topic`, or `None` for the body as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadInput {
    pub field: Option<String>,
    pub problem: String,
}

impl BadInput {
    pub fn at(field: impl Into<String>, problem: impl Into<String>) -> Self {
        BadInput {
            field: Some(field.into()),
            problem: problem.into(),
        }
    }

    pub fn body(problem: impl Into<String>) -> Self {
        BadInput {
            field: None,
            problem: problem.into(),
        }
    }
}

/// Whether the request carried one event or a batch; the response has the same shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Single,
    Batch,
}

/// Checks a topic named in a URL: Kafka's rules, and not one Retrace or Kafka reserves.
pub fn check_topic(topic: &str) -> Result<(), BadInput> {
    let problem = if let Err(problem) = retrace_sdk::check_topic_name(topic) {
        problem.to_string()
    } else if topic.starts_with("__") {
        "starts with `__`: such topics are Kafka's own".to_owned()
    } else {
        return Ok(());
    };
    Err(BadInput::at("topic", format!("topic {topic:?} {problem}")))
}

/// The lane of `queue` the jobs of one request go on: every event must be a job, and all
/// of one priority.
pub fn lane_of_jobs(queue: &str, shape: Shape, envelopes: &[Envelope]) -> Result<String, BadInput> {
    let mut lane: Option<String> = None;
    for (index, envelope) in envelopes.iter().enumerate() {
        let field = match shape {
            Shape::Single => "job".to_owned(),
            Shape::Batch => format!("[{index}].job"),
        };
        let this = retrace_sdk::lane_of(queue, envelope).map_err(|error| match error {
            retrace_sdk::EnqueueError::BadQueue { .. } => BadInput::at("queue", error.to_string()),
            other => BadInput::at(&field, other.to_string()),
        })?;
        match &lane {
            Some(first) if *first != this => {
                return Err(BadInput::at(
                    format!("{field}.priority"),
                    "the jobs of one request share one priority: send jobs of another \
                     priority in another request",
                ));
            }
            _ => lane = Some(this),
        }
    }
    lane.ok_or_else(|| BadInput::body("no job in the request"))
}

/// The events of a JSON body: one object, or an array of them (a batch). Every item is
/// converted and validated before any is returned, so one bad item refuses the batch.
pub fn events_from_json(body: &[u8], now: SystemTime) -> Result<(Shape, Vec<Envelope>), BadInput> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let (shape, items): (Shape, Vec<&RawValue>) = match first {
        Some(b'[') => (
            Shape::Batch,
            serde_json::from_slice(body).map_err(malformed)?,
        ),
        Some(b'{') => (
            Shape::Single,
            vec![serde_json::from_slice(body).map_err(malformed)?],
        ),
        Some(_) => {
            // Not an object or array: say what it is if it is JSON at all.
            let value: serde_json::Value = serde_json::from_slice(body).map_err(malformed)?;
            return Err(BadInput::body(format!(
                "the body is {}: send an event object or an array of them",
                kind(&value)
            )));
        }
        None => return Err(BadInput::body("the body is empty: send an event as JSON")),
    };
    if items.is_empty() {
        return Err(BadInput::body(
            "the batch is empty: send at least one event",
        ));
    }
    let mut envelopes = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let prefix = match shape {
            Shape::Single => String::new(),
            Shape::Batch => format!("[{index}]"),
        };
        let envelope = event_from_json(item, &prefix, now)?;
        envelopes.push(envelope);
    }
    check_unique(&envelopes)?;
    Ok((shape, envelopes))
}

/// An event id twice in one batch would be published once and answered twice; refuse it so
/// the caller sees the mistake.
fn check_unique(envelopes: &[Envelope]) -> Result<(), BadInput> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(envelopes.len());
    for (index, envelope) in envelopes.iter().enumerate() {
        if let Some(first) = seen.insert(&envelope.event_id, index) {
            return Err(BadInput::at(
                format!("[{index}].event_id"),
                format!(
                    "event id {} is also the event id of item [{first}]: each event of a batch \
                     needs its own",
                    envelope.event_id
                ),
            ));
        }
    }
    Ok(())
}

/// A protobuf `retrace.v1.Envelope` body, with ids filled in as for JSON.
pub fn event_from_protobuf(body: &[u8], now: SystemTime) -> Result<Envelope, BadInput> {
    let mut envelope = Envelope::decode(body).map_err(|e| {
        BadInput::body(format!(
            "the body is not a protobuf retrace.v1.Envelope ({e}); send one, or JSON with \
             Content-Type: application/json"
        ))
    })?;
    complete(&mut envelope, now);
    envelope.validate().map_err(|e| invalid("", &e))?;
    Ok(envelope)
}

/// A JSON outcome report: `{event_id, transaction_id, consumer, status, error?, error_code?,
/// attempt?, topic?}`.
pub fn outcome_from_json(body: &[u8], now: SystemTime) -> Result<Outcome, BadInput> {
    let fields: BTreeMap<String, &RawValue> = match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => serde_json::from_slice(body).map_err(malformed)?,
        Some(_) => {
            let value: serde_json::Value = serde_json::from_slice(body).map_err(malformed)?;
            return Err(BadInput::body(format!(
                "the body is {}: send an outcome object",
                kind(&value)
            )));
        }
        None => return Err(BadInput::body("the body is empty: send an outcome as JSON")),
    };
    let mut outcome = Outcome {
        attempt: 1,
        at: Some(now.into()),
        ..Outcome::default()
    };
    let mut status = None;
    for (name, raw) in &fields {
        let field = name.as_str();
        match field {
            "event_id" => outcome.event_id = string(raw, field)?.unwrap_or_default(),
            "transaction_id" => outcome.transaction_id = string(raw, field)?.unwrap_or_default(),
            "consumer" => outcome.consumer = string(raw, field)?.unwrap_or_default(),
            "error" => outcome.error = string(raw, field)?.unwrap_or_default(),
            "error_code" => outcome.error_code = string(raw, field)?.unwrap_or_default(),
            "topic" => {
                let topic = string(raw, field)?.unwrap_or_default();
                retrace_sdk::check_topic_name(&topic).map_err(|problem| {
                    BadInput::at("topic", format!("topic {topic:?} {problem}"))
                })?;
                outcome.topic = topic;
            }
            "status" => status = string(raw, field)?,
            "attempt" => {
                if let Some(attempt) = attempt(raw)? {
                    outcome.attempt = attempt;
                }
            }
            _ => return Err(unknown_field(field, OUTCOME_FIELDS)),
        }
    }
    let status = status.ok_or_else(|| {
        BadInput::at(
            "status",
            "field `status` is missing: say what the consumer did (processed, failed, retrying, \
             dead_lettered, skipped)",
        )
    })?;
    outcome.status = parse_status(&status)? as i32;
    outcome.validate().map_err(|e| invalid("", &e))?;
    Ok(outcome)
}

/// The outcome status names of the JSON API.
pub fn parse_status(status: &str) -> Result<OutcomeStatus, BadInput> {
    Ok(match status {
        "processed" => OutcomeStatus::Processed,
        "failed" => OutcomeStatus::Failed,
        "retrying" => OutcomeStatus::Retrying,
        "dead_lettered" => OutcomeStatus::DeadLettered,
        "skipped" => OutcomeStatus::Skipped,
        other => {
            return Err(BadInput::at(
                "status",
                format!(
                    "status {other:?} is not known: use processed, failed, retrying, \
                     dead_lettered or skipped"
                ),
            ));
        }
    })
}

fn event_from_json(item: &RawValue, prefix: &str, now: SystemTime) -> Result<Envelope, BadInput> {
    let fields: BTreeMap<String, &RawValue> = match serde_json::from_str(item.get()) {
        Ok(fields) => fields,
        Err(_) => {
            let value: serde_json::Value = serde_json::from_str(item.get()).map_err(malformed)?;
            let problem = format!("an event must be a JSON object, not {}", kind(&value));
            return Err(match prefix {
                "" => BadInput::body(problem),
                _ => BadInput::at(prefix, problem),
            });
        }
    };
    let mut envelope = Envelope::default();
    for (name, raw) in &fields {
        let field = path(prefix, name);
        match name.as_str() {
            "event_id" => envelope.event_id = string(raw, &field)?.unwrap_or_default(),
            "transaction_id" => envelope.transaction_id = string(raw, &field)?.unwrap_or_default(),
            "causation_id" => envelope.causation_id = string(raw, &field)?.unwrap_or_default(),
            "type" => envelope.r#type = string(raw, &field)?.unwrap_or_default(),
            "source" => envelope.source = string(raw, &field)?.unwrap_or_default(),
            "subject_ids" => envelope.subject_ids = strings(raw, &field)?,
            "attributes" => envelope.attributes = attributes(raw, &field)?,
            "occurred_at" => {
                if let Some(text) = string(raw, &field)? {
                    envelope.occurred_at = Some(timestamp(&text, &field)?);
                }
            }
            "job" => envelope.job = job(raw, &field)?,
            "payload" => {
                // Stored as sent: the payload's JSON text, byte for byte.
                if raw.get() != "null" {
                    envelope.content_type = JSON_CONTENT_TYPE.to_owned();
                    envelope.payload = raw.get().as_bytes().to_vec();
                }
            }
            _ => return Err(unknown_field(&field, EVENT_FIELDS)),
        }
    }
    complete(&mut envelope, now);
    envelope.validate().map_err(|e| invalid(prefix, &e))?;
    Ok(envelope)
}

/// Fills what a caller may leave out: a new event id, a new transaction (the event is then
/// its root), and the time the gateway received it. A root event the caller named keeps its
/// event id as its transaction id, so a retry of it (after a restart, on another gateway)
/// lands in the same transaction, where the trace shows the two records as one event.
fn complete(envelope: &mut Envelope, now: SystemTime) {
    if envelope.transaction_id.is_empty() {
        envelope.transaction_id = match envelope.event_id.as_str() {
            "" => retrace_proto::new_event_id(),
            named => named.to_owned(),
        };
    }
    if envelope.event_id.is_empty() {
        envelope.event_id = retrace_proto::new_event_id();
    }
    if envelope.occurred_at.is_none() {
        envelope.occurred_at = Some(now.into());
    }
}

/// An envelope's own validation error, at its place in the body.
fn invalid(prefix: &str, error: &EnvelopeError) -> BadInput {
    BadInput::at(path(prefix, error.field()), error.to_string())
}

fn path(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

fn malformed(error: serde_json::Error) -> BadInput {
    BadInput::body(format!("the body is not valid JSON: {error}"))
}

fn unknown_field(field: &str, known: &[&str]) -> BadInput {
    BadInput::at(
        field,
        format!(
            "field `{field}` is not known; the fields are {}",
            known.join(", ")
        ),
    )
}

/// A string field; `null` counts as absent, as does (for ids) the empty string.
fn string(raw: &RawValue, field: &str) -> Result<Option<String>, BadInput> {
    serde_json::from_str::<Option<String>>(raw.get())
        .map_err(|_| wrong_type(raw, field, "a string"))
}

fn strings(raw: &RawValue, field: &str) -> Result<Vec<String>, BadInput> {
    let items: Option<Vec<serde_json::Value>> = serde_json::from_str(raw.get())
        .map_err(|_| wrong_type(raw, field, "an array of strings"))?;
    items
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(index, item)| match item {
            serde_json::Value::String(text) => Ok(text),
            other => Err(BadInput::at(
                format!("{field}[{index}]"),
                format!("`{field}[{index}]` must be a string, not {}", kind(&other)),
            )),
        })
        .collect()
}

fn attributes(raw: &RawValue, field: &str) -> Result<HashMap<String, String>, BadInput> {
    let map: Option<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_str(raw.get())
            .map_err(|_| wrong_type(raw, field, "an object of strings"))?;
    map.unwrap_or_default()
        .into_iter()
        .map(|(name, value)| match value {
            serde_json::Value::String(text) => Ok((name, text)),
            other => {
                let at = format!("{field}.{name}");
                let problem = format!("`{at}` must be a string, not {}", kind(&other));
                Err(BadInput::at(at, problem))
            }
        })
        .collect()
}

fn attempt(raw: &RawValue) -> Result<Option<u32>, BadInput> {
    match serde_json::from_str::<Option<u32>>(raw.get()) {
        Ok(Some(0)) => Err(BadInput::at(
            "attempt",
            "`attempt` must be at least 1 (1 is the first attempt)",
        )),
        Ok(attempt) => Ok(attempt),
        Err(_) => Err(wrong_type(raw, "attempt", "a whole number from 1")),
    }
}

/// `"job": {"kind", "priority", "not_before", "deadline", "max_attempts"}`; `null` is none.
fn job(raw: &RawValue, field: &str) -> Result<Option<Job>, BadInput> {
    let fields: Option<BTreeMap<String, &RawValue>> =
        serde_json::from_str(raw.get()).map_err(|_| {
            wrong_type(
                raw,
                field,
                "an object with kind, priority, not_before, deadline, max_attempts",
            )
        })?;
    let Some(fields) = fields else {
        return Ok(None);
    };
    let mut job = Job::default();
    for (name, raw) in &fields {
        let at = format!("{field}.{name}");
        match name.as_str() {
            "kind" => job.kind = string(raw, &at)?.unwrap_or_default(),
            "priority" => {
                let priority = match string(raw, &at)?.as_deref() {
                    None | Some("normal") => JobPriority::Normal,
                    Some("urgent") => JobPriority::Urgent,
                    Some("bulk") => JobPriority::Bulk,
                    Some(other) => {
                        return Err(BadInput::at(
                            &at,
                            format!("`{at}` is {other:?}: use urgent, normal or bulk"),
                        ));
                    }
                };
                job.priority = priority as i32;
            }
            "not_before" | "deadline" => {
                let time = match string(raw, &at)? {
                    Some(text) => Some(timestamp(&text, &at)?),
                    None => None,
                };
                if name == "deadline" {
                    job.deadline = time;
                } else {
                    job.not_before = time;
                }
            }
            "max_attempts" => {
                job.max_attempts = serde_json::from_str::<Option<u32>>(raw.get())
                    .map_err(|_| wrong_type(raw, &at, "a whole number"))?
                    .unwrap_or_default();
            }
            _ => return Err(unknown_field(&at, JOB_FIELDS)),
        }
    }
    if job.kind.is_empty() {
        return Err(BadInput::at(
            format!("{field}.kind"),
            format!(
                "`{field}.kind` is missing: it selects the handler, e.g. \"certificate.render\""
            ),
        ));
    }
    Ok(Some(job))
}

fn timestamp(text: &str, field: &str) -> Result<Timestamp, BadInput> {
    text.parse().map_err(|_| {
        BadInput::at(
            field,
            format!(
                "`{field}` is {text:?}, not an RFC 3339 time: write e.g. \
                 2026-01-31T09:30:00Z or 2026-01-31T10:30:00.250+01:00"
            ),
        )
    })
}

fn wrong_type(raw: &RawValue, field: &str, expected: &str) -> BadInput {
    let actual = serde_json::from_str::<serde_json::Value>(raw.get())
        .map(|value| kind(&value))
        .unwrap_or("not JSON");
    BadInput::at(field, format!("`{field}` must be {expected}, not {actual}"))
}

fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "convert_fuzz_tests.rs"]
mod fuzz_tests;
