//! The gateway's routes: `POST /v1/topics/{topic}/events` and `POST /v1/outcomes`, their
//! response shapes, and the status each failure is answered with.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use retrace_api::ErrorCode;
use retrace_auth::{Caller, Permission};
use retrace_http::ApiError;
use retrace_proto::{Envelope, Outcome};
use retrace_telemetry::InternalEvent;
use serde::Serialize;

pub(crate) use retrace_api::EventResult;

use crate::Gateway;
use crate::convert::{self, BadInput, Shape};
use crate::events::{BY_IDEMPOTENCY_KEY, IdempotentReplay, RequestRejected, reason};

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
        reason::INTERNAL_TOPIC,
        format!(
            "{} may not publish to topic {topic}: it is Retrace's own topic of {}, which \
             the gateway never writes; {}",
            caller.actor,
            internal.carries(),
            internal.instead()
        ),
    ))
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
pub(crate) struct Answer {
    status: StatusCode,
    body: Bytes,
}

impl Answer {
    pub(crate) fn accepted(body: &impl Serialize) -> Self {
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

/// A refusal, and why in one fixed word (the `reason` label of
/// `retrace_gateway_requests_rejected_total`). Its error document has `results` when events
/// reached the publishing stage, saying which were published and which not.
pub(crate) struct Rejection {
    reason: &'static str,
    /// Boxed: a rejection travels in every `Result` of a request's handling.
    error: Box<ApiError>,
}

impl Rejection {
    pub(crate) fn new(reason: &'static str, error: ApiError) -> Self {
        Rejection {
            reason,
            error: Box::new(error),
        }
    }
}

impl From<BadInput> for Rejection {
    fn from(bad: BadInput) -> Self {
        let mut error = ApiError::new(ErrorCode::Invalid, bad.problem);
        error.body.field = bad.field;
        Rejection::new(reason::INVALID, error)
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let Rejection { reason, error } = self;
        let error = *error;
        RequestRejected {
            status: error.status.as_u16(),
            reason,
            field: error.body.field.as_deref(),
            error: &error.body.error,
        }
        .emit();
        if error.status == StatusCode::SERVICE_UNAVAILABLE {
            error.retry_after(RETRY_AFTER_SECONDS)
        } else {
            error.into_response()
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
            reason::UNSUPPORTED_MEDIA_TYPE,
            ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!(
                    "Content-Type {} is not accepted here: send {accepted}",
                    other.map_or("(none)".to_owned(), |t| format!("{t:?}"))
                ),
            )
            .with_field("Content-Type"),
        )),
    }
}

fn body_of(gateway: &Gateway, body: Result<Bytes, BytesRejection>) -> Result<Bytes, Rejection> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Rejection::new(
                reason::TOO_LARGE,
                ApiError::new(
                    ErrorCode::TooLarge,
                    format!(
                        "the body is larger than the gateway's limit of {} bytes \
                         (max_body_bytes): send smaller batches",
                        gateway.shared.max_body_bytes
                    ),
                ),
            )
        } else {
            Rejection::new(
                reason::INVALID,
                ApiError::new(
                    ErrorCode::Invalid,
                    format!("cannot read the body: {}", rejection.body_text()),
                ),
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

/// [`idempotently`] for a route that publishes events: `prepare` makes the request's events,
/// `destination` names the topic they are published on.
async fn publish_idempotently(
    gateway: &Gateway,
    scope: &str,
    headers: &HeaderMap,
    format: Format,
    body: &[u8],
    prepare: impl FnOnce() -> Result<(Shape, Vec<Envelope>), BadInput>,
    destination: impl FnOnce(Shape, &[Envelope]) -> Result<String, BadInput>,
) -> Result<Response, Rejection> {
    let prepare = || prepare().map(|(shape, envelopes)| Prepared::Events(shape, envelopes));
    let publish = async |prepared| match prepared {
        Prepared::Events(shape, envelopes) => {
            let topic = destination(shape, &envelopes)?;
            gateway.publish_events(&topic, shape, &envelopes).await
        }
        Prepared::Outcome(_) => unreachable!("events are prepared for this route"),
    };
    idempotently(gateway, scope, headers, format, body, prepare, publish).await
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
            let reused = ApiError::of_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "Idempotency-Key {key:?} was first used with a different request: use a \
                     new key for a new request"
                ),
            );
            return Err(Rejection::new(
                reason::IDEMPOTENCY_KEY_REUSED,
                reused.with_field("Idempotency-Key"),
            ));
        }
        Some(Remembered {
            answer: Some(answer),
            ..
        }) => {
            IdempotentReplay {
                by: BY_IDEMPOTENCY_KEY,
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
            Ok((shape, envelopes))
        };
        let scope = format!("events\0{topic}");
        let topic_of = |_, _: &[Envelope]| Ok(topic.clone());
        publish_idempotently(&gateway, &scope, &headers, format, &body, prepare, topic_of).await
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
            Ok((shape, envelopes))
        };
        let scope = format!("jobs\0{queue}");
        let lane = |shape, envelopes: &[Envelope]| convert::lane_of_jobs(&queue, shape, envelopes);
        publish_idempotently(&gateway, &scope, &headers, format, &body, prepare, lane).await
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
