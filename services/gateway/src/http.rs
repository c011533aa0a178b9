//! The gateway's routes: `POST /v1/topics/{topic}/events` and `POST /v1/outcomes`, their
//! response shapes, and the status each failure is answered with.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use retrace_auth::{Caller, Permission};
use retrace_proto::{Envelope, OUTCOMES_TOPIC, Outcome};
use retrace_sdk::PublishError;
use retrace_telemetry::InternalEvent;
use serde::Serialize;
use tracing::Instrument;

use crate::Gateway;
use crate::convert::{self, BadInput, Shape};
use crate::events::{
    EventNotPublished, EventPublished, IdempotentReplay, OutcomePublished, RequestRejected,
};

/// Seconds a client is asked to wait before retrying when Kafka did not acknowledge.
pub const RETRY_AFTER_SECONDS: u32 = 5;

/// The header that makes a request idempotent.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Set on a response answered from memory instead of published again.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// Longest `Idempotency-Key` accepted.
const MAX_KEY_LEN: usize = 255;

pub(crate) fn router(gateway: Gateway) -> Router {
    let limit = gateway.shared.max_body_bytes;
    let guard = &gateway.shared.guard;
    let publishing = Router::new()
        .route("/v1/topics/{topic}/events", post(publish_events))
        .route("/v1/queues/{queue}/jobs", post(enqueue_jobs))
        .route_layer(guard.require(Permission::Publish));
    let reporting = Router::new()
        .route("/v1/outcomes", post(publish_outcome))
        .route_layer(guard.require(Permission::ReportOutcome));
    publishing
        .merge(reporting)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(gateway)
}

/// A caller whose allow-list does not name `topic` is refused, and the refusal audited.
fn check_allowed(gateway: &Gateway, caller: &Caller, path: &str, topic: &str) -> Option<Response> {
    (!caller.can_publish_to(topic)).then(|| {
        gateway.shared.guard.forbid(
            caller,
            "POST",
            path,
            format!(
                "{} may not publish to topic {topic}: it is not on the token's topic list",
                caller.actor
            ),
        )
    })
}

/// Retrace's own topics (`retrace.*`, and the configured token topic) are never published
/// to on a caller's behalf, whatever its role or topic list: refused with 403 naming the
/// route to use instead, and the refusal audited.
fn check_not_internal(
    gateway: &Gateway,
    caller: &Caller,
    path: &str,
    topic: &str,
) -> Option<Response> {
    let internal = retrace_sdk::internal_topic(topic).or_else(|| {
        (topic == gateway.shared.tokens_topic).then_some(retrace_sdk::InternalTopic::Tokens)
    })?;
    Some(gateway.shared.guard.forbid_because(
        caller,
        "POST",
        path,
        "internal_topic",
        format!(
            "{} may not publish to topic {topic}: it is Retrace's own topic of {}, which \
             the gateway never writes; {}",
            caller.actor,
            internal.carries(),
            internal.instead()
        ),
    ))
}

/// One event's result: where Kafka put it, or why it is not there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct EventResult {
    pub event_id: String,
    pub transaction_id: String,
    pub topic: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// This event id was already published on this topic: this is that first result.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
}

impl EventResult {
    fn of(topic: &str, envelope: &Envelope) -> Self {
        EventResult {
            event_id: envelope.event_id.clone(),
            transaction_id: envelope.transaction_id.clone(),
            topic: topic.to_owned(),
            partition: None,
            offset: None,
            error: None,
            replayed: false,
        }
    }
}

/// What an `Idempotency-Key` stands for: a fingerprint of the request it came with, the
/// ids the gateway generated for it until it succeeds (so a retry of a failed request
/// publishes the same event ids), then only the answer.
pub(crate) struct Remembered {
    fingerprint: u64,
    generated: Vec<Generated>,
    answer: Option<Answer>,
}

/// What the gateway filled in on one event of a request: all that differs between two
/// preparations of the same body.
struct Generated {
    event_id: String,
    transaction_id: String,
    occurred_at: Option<prost_types::Timestamp>,
}

enum Prepared {
    Events(Shape, Vec<Envelope>),
    Outcome(Outcome),
}

impl Prepared {
    fn generated(&self) -> Vec<Generated> {
        match self {
            Prepared::Events(_, envelopes) => envelopes
                .iter()
                .map(|envelope| Generated {
                    event_id: envelope.event_id.clone(),
                    transaction_id: envelope.transaction_id.clone(),
                    occurred_at: envelope.occurred_at,
                })
                .collect(),
            Prepared::Outcome(_) => Vec::new(),
        }
    }

    /// The same body prepared again gives the same events but for what was generated.
    fn reuse(&mut self, generated: &[Generated]) {
        if let Prepared::Events(_, envelopes) = self {
            for (envelope, earlier) in envelopes.iter_mut().zip(generated) {
                envelope.event_id.clone_from(&earlier.event_id);
                envelope.transaction_id.clone_from(&earlier.transaction_id);
                envelope.occurred_at = earlier.occurred_at;
            }
        }
    }
}

/// A success response, kept as bytes so a replay is byte-for-byte the same.
#[derive(Clone)]
struct Answer {
    status: StatusCode,
    body: Bytes,
}

impl Answer {
    fn accepted(body: &impl Serialize) -> Self {
        Answer {
            status: StatusCode::ACCEPTED,
            body: serde_json::to_vec(body)
                .expect("results serialize to JSON")
                .into(),
        }
    }

    fn response(self, replayed: bool) -> Response {
        let mut response = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.body,
        )
            .into_response();
        if replayed {
            response
                .headers_mut()
                .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
        }
        response
    }
}

/// An error answer: `{"error": "...", "field": "..." | null}`, plus `results` when events
/// reached the publishing stage, saying which were published and which not.
pub(crate) struct Rejection {
    status: StatusCode,
    reason: &'static str,
    error: String,
    field: Option<String>,
    results: Option<Vec<EventResult>>,
}

impl Rejection {
    fn new(status: StatusCode, reason: &'static str, error: impl Into<String>) -> Self {
        Rejection {
            status,
            reason,
            error: error.into(),
            field: None,
            results: None,
        }
    }

    fn field(mut self, field: &str) -> Self {
        self.field = Some(field.to_owned());
        self
    }
}

impl From<BadInput> for Rejection {
    fn from(bad: BadInput) -> Self {
        Rejection {
            status: StatusCode::BAD_REQUEST,
            reason: "invalid",
            error: bad.problem,
            field: bad.field,
            results: None,
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    results: Option<&'a [EventResult]>,
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        RequestRejected {
            status: self.status.as_u16(),
            reason: self.reason,
            field: self.field.as_deref(),
            error: &self.error,
        }
        .emit();
        let body = ErrorBody {
            error: &self.error,
            field: self.field.as_deref(),
            results: self.results.as_deref(),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}

/// Why Kafka did not take an event, from the caller's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Not reachable, or not acknowledging in time: try again later.
    Unavailable,
    UnknownTopic,
    /// Larger than the producer's or broker's `message.max.bytes`.
    TooLarge,
    /// Refused by the SDK's validation (the gateway validates first, so not expected).
    Invalid,
}

impl Failure {
    fn of(error: &PublishError) -> Self {
        match error {
            PublishError::Invalid(_) => Failure::Invalid,
            PublishError::NotAcknowledged { source, .. } => match **source {
                KafkaError::MessageProduction(
                    RDKafkaErrorCode::UnknownTopic | RDKafkaErrorCode::UnknownTopicOrPartition,
                ) => Failure::UnknownTopic,
                KafkaError::MessageProduction(
                    RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize,
                ) => Failure::TooLarge,
                _ => Failure::Unavailable,
            },
            _ => Failure::Unavailable,
        }
    }

    /// The status of a request whose events failed this way (`failures` not empty): 503
    /// with `Retry-After` as soon as one could go through later.
    fn status(failures: &[Failure]) -> (StatusCode, &'static str) {
        let worst = if failures.contains(&Failure::Unavailable) {
            Failure::Unavailable
        } else {
            failures[0]
        };
        match worst {
            Failure::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "kafka_unavailable"),
            Failure::UnknownTopic => (StatusCode::NOT_FOUND, "unknown_topic"),
            Failure::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "message_too_large"),
            Failure::Invalid => (StatusCode::BAD_REQUEST, "invalid"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Format {
    Json,
    Protobuf,
}

fn format_of(headers: &HeaderMap, protobuf_allowed: bool) -> Result<Format, Rejection> {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    let accepted = if protobuf_allowed {
        "application/json (one event or an array of them) or application/x-protobuf (one \
         retrace.v1.Envelope)"
    } else {
        "application/json"
    };
    match media_type.as_deref() {
        Some("application/json") => Ok(Format::Json),
        Some("application/x-protobuf" | "application/protobuf") if protobuf_allowed => {
            Ok(Format::Protobuf)
        }
        other => Err(Rejection::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "Content-Type {} is not accepted here: send {accepted}",
                other.map_or("(none)".to_owned(), |t| format!("{t:?}"))
            ),
        )
        .field("Content-Type")),
    }
}

fn body_of(gateway: &Gateway, body: Result<Bytes, BytesRejection>) -> Result<Bytes, Rejection> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Rejection::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "the body is larger than the gateway's limit of {} bytes \
                     (max_body_bytes): send smaller batches",
                    gateway.shared.max_body_bytes
                ),
            )
        } else {
            Rejection::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                format!("cannot read the body: {}", rejection.body_text()),
            )
        }
    })
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Rejection> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if !key.is_empty() && key.len() <= MAX_KEY_LEN => Ok(Some(key.to_owned())),
        _ => Err(Rejection::from(BadInput::at(
            "Idempotency-Key",
            format!(
                "Idempotency-Key must be 1 to {MAX_KEY_LEN} characters of visible ASCII, \
                 e.g. a UUID"
            ),
        ))),
    }
}

fn fingerprint(format: Format, body: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    format.hash(&mut hasher);
    body.hash(&mut hasher);
    hasher.finish()
}

/// With an `Idempotency-Key`: answers a repeat from memory, or runs `prepare` then
/// `publish`, one request per key at a time. Without one: just the two steps.
async fn idempotently<P>(
    gateway: &Gateway,
    scope: &str,
    headers: &HeaderMap,
    format: Format,
    body: &[u8],
    prepare: P,
    publish: impl AsyncFnOnce(Prepared) -> Result<Answer, Rejection>,
) -> Result<Response, Rejection>
where
    P: FnOnce() -> Result<Prepared, BadInput>,
{
    let Some(key) = idempotency_key(headers)? else {
        let answer = publish(prepare()?).await?;
        return Ok(answer.response(false));
    };
    let mut remembered = gateway
        .shared
        .requests
        .lock(format!("{scope}\0{key}"))
        .await;
    let fingerprint = fingerprint(format, body);
    let prepared = match &*remembered {
        Some(earlier) if earlier.fingerprint != fingerprint => {
            return Err(Rejection::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                format!(
                    "Idempotency-Key {key:?} was first used with a different request: use a \
                     new key for a new request"
                ),
            )
            .field("Idempotency-Key"));
        }
        Some(Remembered {
            answer: Some(answer),
            ..
        }) => {
            IdempotentReplay {
                by: "idempotency_key",
                key: &key,
            }
            .emit();
            return Ok(answer.clone().response(true));
        }
        // An earlier attempt failed: try again with the ids it generated.
        Some(earlier) => {
            let mut prepared = prepare()?;
            prepared.reuse(&earlier.generated);
            prepared
        }
        None => {
            let prepared = prepare()?;
            *remembered = Some(Remembered {
                fingerprint,
                generated: prepared.generated(),
                answer: None,
            });
            prepared
        }
    };
    let answer = publish(prepared).await?;
    *remembered = Some(Remembered {
        fingerprint,
        generated: Vec::new(),
        answer: Some(answer.clone()),
    });
    Ok(answer.response(false))
}

/// `POST /v1/topics/{topic}/events`.
async fn publish_events(
    State(gateway): State<Gateway>,
    Path(topic): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let path = format!("/v1/topics/{topic}/events");
    if let Some(refused) = check_not_internal(&gateway, &caller, &path, &topic) {
        return refused;
    }
    if let Some(refused) = check_allowed(&gateway, &caller, &path, &topic) {
        return refused;
    }
    let handled = async {
        convert::check_topic(&topic)?;
        let body = body_of(&gateway, body)?;
        let format = format_of(&headers, true)?;
        let prepare = || {
            let now = SystemTime::now();
            let (shape, envelopes) = match format {
                Format::Json => convert::events_from_json(&body, now)?,
                Format::Protobuf => (
                    Shape::Single,
                    vec![convert::event_from_protobuf(&body, now)?],
                ),
            };
            Ok(Prepared::Events(shape, envelopes))
        };
        let publish = async |prepared| match prepared {
            Prepared::Events(shape, envelopes) => {
                gateway.publish_events(&topic, shape, &envelopes).await
            }
            Prepared::Outcome(_) => unreachable!("events are prepared for this route"),
        };
        idempotently(
            &gateway,
            &format!("events\0{topic}"),
            &headers,
            format,
            &body,
            prepare,
            publish,
        )
        .await
    };
    handled.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /v1/queues/{queue}/jobs`: JSON events with a `job`, published on the queue's lane
/// for their priority. A request's jobs share one priority (one lane), so one answer says
/// where all of them went.
async fn enqueue_jobs(
    State(gateway): State<Gateway>,
    Path(queue): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // The allow-list names a queue by its normal lane; that covers every lane of it.
    let lanes = retrace_sdk::QueueTopics::of(&queue);
    let path = format!("/v1/queues/{queue}/jobs");
    if let Some(refused) = check_allowed(&gateway, &caller, &path, &lanes.normal) {
        return refused;
    }
    let handled = async {
        let body = body_of(&gateway, body)?;
        let format = format_of(&headers, false)?;
        let prepare = || {
            let (shape, envelopes) = convert::events_from_json(&body, SystemTime::now())?;
            convert::lane_of_jobs(&queue, shape, &envelopes)?;
            Ok(Prepared::Events(shape, envelopes))
        };
        let publish = async |prepared| match prepared {
            Prepared::Events(shape, envelopes) => {
                let lane = convert::lane_of_jobs(&queue, shape, &envelopes)?;
                gateway.publish_events(&lane, shape, &envelopes).await
            }
            Prepared::Outcome(_) => unreachable!("jobs are prepared for this route"),
        };
        idempotently(
            &gateway,
            &format!("jobs\0{queue}"),
            &headers,
            format,
            &body,
            prepare,
            publish,
        )
        .await
    };
    handled.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /v1/outcomes`. The outcome carries who reported it (the caller's name). A caller
/// with a topic list reports only on events of its topics: it names the event's topic, which
/// must be on its list, and the archive ignores an outcome whose topic is not its event's.
async fn publish_outcome(
    State(gateway): State<Gateway>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let handled = async {
        let body = body_of(&gateway, body)?;
        let format = format_of(&headers, false)?;
        let mut outcome = convert::outcome_from_json(&body, SystemTime::now())?;
        if caller.topics.is_some() {
            if outcome.topic.is_empty() {
                return Err(BadInput::at(
                    "topic",
                    format!(
                        "field `topic` is missing: {} may report outcomes only on events of the \
                         topics on its token's list, so name the event's topic",
                        caller.actor
                    ),
                )
                .into());
            }
            if let Some(refused) = check_allowed(&gateway, &caller, "/v1/outcomes", &outcome.topic)
            {
                return Ok(refused);
            }
        }
        outcome.reported_by = caller.actor.clone();
        let prepare = move || Ok(Prepared::Outcome(outcome));
        let publish = async |prepared| match prepared {
            Prepared::Outcome(outcome) => gateway.publish_outcome(&outcome).await,
            Prepared::Events(..) => unreachable!("an outcome is prepared for this route"),
        };
        // Keys are the caller's own: another caller's same key is another request.
        let scope = format!("outcomes\0{}", caller.actor);
        idempotently(&gateway, &scope, &headers, format, &body, prepare, publish).await
    };
    handled.await.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Serialize)]
struct BatchAnswer<'a> {
    results: &'a [EventResult],
}

#[derive(Serialize)]
struct OutcomeAnswer<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
}

impl Gateway {
    /// Publishes `envelopes` on `topic`, all at once, and answers with every one's result.
    /// An event id already published on `topic` within the window is answered with its first
    /// result instead.
    async fn publish_events(
        &self,
        topic: &str,
        shape: Shape,
        envelopes: &[Envelope],
    ) -> Result<Answer, Rejection> {
        // Locked in event id order, so two requests sharing event ids cannot deadlock.
        let mut order: Vec<usize> = (0..envelopes.len()).collect();
        order.sort_unstable_by(|a, b| envelopes[*a].event_id.cmp(&envelopes[*b].event_id));
        let mut slots: Vec<_> = envelopes.iter().map(|_| None).collect();
        for index in order {
            let key = format!("{topic}\0{}", envelopes[index].event_id);
            slots[index] = Some(self.shared.events.lock(key).await);
        }
        let attempts = envelopes
            .iter()
            .zip(slots)
            .map(|(envelope, slot)| async move {
                let mut slot = slot.expect("every event's slot is locked");
                if let Some(first) = &*slot {
                    IdempotentReplay {
                        by: "event_id",
                        key: &envelope.event_id,
                    }
                    .emit();
                    return Ok(EventResult {
                        replayed: true,
                        ..first.clone()
                    });
                }
                let published = self.publish_one(topic, envelope).await?;
                *slot = Some(published.clone());
                Ok(published)
            });
        let attempts: Vec<Result<EventResult, (EventResult, Failure)>> =
            futures::future::join_all(attempts).await;
        let failures: Vec<Failure> = attempts
            .iter()
            .filter_map(|attempt| attempt.as_ref().err().map(|(_, failure)| *failure))
            .collect();
        let results: Vec<EventResult> = attempts
            .into_iter()
            .map(|attempt| attempt.unwrap_or_else(|(result, _)| result))
            .collect();
        if failures.is_empty() {
            return Ok(match shape {
                Shape::Single => Answer::accepted(&results[0]),
                Shape::Batch => Answer::accepted(&BatchAnswer { results: &results }),
            });
        }
        let (status, reason) = Failure::status(&failures);
        let error = match shape {
            Shape::Single => results[0].error.clone().unwrap_or_default(),
            Shape::Batch => format!(
                "{} of {} events were not published and the others were: each of `results` \
                 has either an offset or an error. Sending the failed ones again with the same \
                 event ids is safe",
                failures.len(),
                results.len()
            ),
        };
        let mut rejection = Rejection::new(status, reason, error);
        if status == StatusCode::NOT_FOUND {
            rejection = rejection.field("topic");
        }
        rejection.results = Some(results);
        Err(rejection)
    }

    async fn publish_one(
        &self,
        topic: &str,
        envelope: &Envelope,
    ) -> Result<EventResult, (EventResult, Failure)> {
        let span = tracing::info_span!(
            "publish",
            topic,
            event_id = %envelope.event_id,
            transaction_id = %envelope.transaction_id,
        );
        let mut result = EventResult::of(topic, envelope);
        let started = Instant::now();
        match self
            .shared
            .publisher
            .publish(topic, envelope)
            .instrument(span.clone())
            .await
        {
            Ok(delivery) => {
                let _entered = span.enter();
                EventPublished {
                    topic,
                    partition: delivery.partition,
                    offset: delivery.offset,
                    elapsed: started.elapsed(),
                }
                .emit();
                result.partition = Some(delivery.partition);
                result.offset = Some(delivery.offset);
                Ok(result)
            }
            Err(error) => {
                let _entered = span.enter();
                EventNotPublished {
                    topic,
                    error: &error,
                }
                .emit();
                let failure = Failure::of(&error);
                result.error = Some(error.to_string());
                Err((result, failure))
            }
        }
    }

    async fn publish_outcome(&self, outcome: &Outcome) -> Result<Answer, Rejection> {
        let span = tracing::info_span!(
            "publish_outcome",
            event_id = %outcome.event_id,
            transaction_id = %outcome.transaction_id,
            consumer = %outcome.consumer,
        );
        match self
            .shared
            .publisher
            .publish_outcome(outcome)
            .instrument(span)
            .await
        {
            Ok(delivery) => {
                OutcomePublished {
                    status: outcome.status().as_str_name(),
                }
                .emit();
                Ok(Answer::accepted(&OutcomeAnswer {
                    topic: OUTCOMES_TOPIC,
                    partition: delivery.partition,
                    offset: delivery.offset,
                }))
            }
            Err(error) => {
                let (status, reason) = Failure::status(&[Failure::of(&error)]);
                Err(Rejection::new(status, reason, error.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_retryable_failure_makes_the_whole_request_retryable() {
        assert_eq!(
            Failure::status(&[Failure::TooLarge, Failure::Unavailable]).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            Failure::status(&[Failure::TooLarge]).0,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            Failure::status(&[Failure::UnknownTopic]).0,
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn a_timed_out_message_means_kafka_is_unavailable() {
        let error = PublishError::NotAcknowledged {
            event_id: "e".into(),
            topic: "t".into(),
            source: Box::new(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageTimedOut,
            )),
        };
        assert_eq!(Failure::of(&error), Failure::Unavailable);
    }

    #[test]
    fn a_result_carries_either_an_offset_or_an_error() {
        let mut result = EventResult {
            event_id: "e".into(),
            transaction_id: "t".into(),
            topic: "registrations".into(),
            partition: Some(2),
            offset: Some(41),
            error: None,
            replayed: false,
        };
        assert_eq!(
            serde_json::to_value(&result).unwrap(),
            serde_json::json!({"event_id": "e", "transaction_id": "t",
                               "topic": "registrations", "partition": 2, "offset": 41})
        );
        result.partition = None;
        result.offset = None;
        result.error = Some("timed out".into());
        assert_eq!(
            serde_json::to_value(&result).unwrap(),
            serde_json::json!({"event_id": "e", "transaction_id": "t",
                               "topic": "registrations", "error": "timed out"})
        );
    }
}
