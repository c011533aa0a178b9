//! `/v1/events/{id}` and `/v1/messages`: an event's archived copies and outcomes, and a
//! topic's raw archived messages.

use axum::extract::Path;
use axum::response::Response;
use retrace_api::{ErrorBody, EventView};
use retrace_http::ApiError;

use super::plumbing::{Paging, ReadRequest};
use super::responses::{INCOMPLETE, InvalidParameter};
use crate::audit::Audit;
use crate::reads::MessagesQuery;

/// What a transaction's trace and an event take.
pub(super) const PAYLOAD_PARAMETERS: &[&str] = &["payload"];

/// The parameter of a trace or an event (read by [`Params`], declared here for the
/// document).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(super) struct Payload {
    /// Include payloads and headers (masked for callers without `payload:read`).
    #[param(required = false)]
    payload: bool,
}

/// The parameters of `/v1/messages` (read by [`Params`], declared here for the document).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct Messages {
    /// The topic (required); one the caller may not read is refused (403).
    topic: String,
    /// Only this partition.
    #[param(required = false)]
    partition: i32,
    /// The first offset (with `partition`).
    #[param(required = false)]
    from_offset: i64,
    /// RFC 3339 time, or a duration back from now (90s, 15m, 2h, 7d).
    #[param(required = false)]
    from_time: String,
    /// RFC 3339 time, or a duration back from now (90s, 15m, 2h, 7d).
    #[param(required = false)]
    until_time: String,
    /// Only messages with this header, as `name:value`; a filter on a masked header by a
    /// caller without `payload:read` is refused (403).
    #[param(required = false)]
    header: String,
}

/// What `/v1/messages` takes.
pub(super) const MESSAGES_PARAMETERS: &[&str] = &[
    "topic",
    "partition",
    "from_offset",
    "from_time",
    "until_time",
    "header",
    "limit",
    "cursor",
    "payload",
];

#[utoipa::path(
    get,
    path = "/v1/events/{id}",
    operation_id = "get_event",
    tag = "events",
    summary = "Every archived copy of an event, and its outcomes",
    params(("id" = String, Path, description = "Event id"), Payload),
    responses(
        (status = 200, description = "The event", body = EventView, links(
            ("transaction" = (
                operation_id = "get_transaction",
                parameters(("id" = "$response.body#/copies/0/transaction_id")),
                description = "The event's transaction",
            )),
        )),
        (status = 206, description = INCOMPLETE, body = EventView),
        InvalidParameter,
        (status = 404, description = "No archived message has this event id (`behind` names the partitions it may still come from)", body = ErrorBody),
        (status = 503, description = "A sharded archive found the event on none of the shards that answered, and a shard that did not may hold it", body = ErrorBody),
    ),
)]
pub(super) async fn get(request: ReadRequest, Path(event_id): Path<String>) -> Response {
    let audit = Audit::new(&request.caller, "event.read", &event_id);
    request
        .answer_partial("event", audit, PAYLOAD_PARAMETERS, move |reader, params| {
            reader.event(event_id, params.flag("payload")?)
        })
        .await
}

/// A topic or a header filter the caller may not read is refused (403) as soon as its
/// parameter is read, before the parameters after it are checked.
#[utoipa::path(
    get,
    path = "/v1/messages",
    operation_id = "list_messages",
    tag = "events",
    summary = "Archived messages of a topic, by offset or by time",
    params(Messages, Paging, Payload),
    responses(
        (status = 200, description = "A page of messages", body = ref("#/components/schemas/MessagePage"), links(
            ("first_event" = (
                operation_id = "get_event",
                parameters(("id" = "$response.body#/items/0/event_id")),
                description = "The first listed message's event",
            )),
            ("first_transaction" = (
                operation_id = "get_transaction",
                parameters(("id" = "$response.body#/items/0/transaction_id")),
                description = "The first listed message's transaction",
            )),
        )),
        (status = 206, description = "A sharded archive's messages across a topic's partitions: only the asked shard's partitions were read, the other shards are named in `incomplete`", body = ref("#/components/schemas/MessagePage")),
        (status = 400, description = "A parameter is invalid, missing or unknown, or (a sharded archive) the partition is another shard's; `field` names it", body = ErrorBody),
        (status = 403, description = "The caller's role lacks the permission, or it may not read the topic, or filter on the header (`field`)", body = ErrorBody),
    ),
)]
pub(super) async fn messages(request: ReadRequest) -> Response {
    let audit = Audit::new(&request.caller, "messages.read", request.query());
    request
        .answer_partial(
            "messages",
            audit,
            MESSAGES_PARAMETERS,
            move |reader, params| {
                let topic = params
                    .text("topic")
                    .ok_or_else(|| ApiError::invalid("topic", "topic is required"))?;
                reader.may_read_topic(topic)?;
                let partition = params.number::<i32>("partition")?;
                let from_offset = params.number::<i64>("from_offset")?;
                let window = params.window("from_time", "until_time")?;
                let header = params.pair("header")?;
                reader.may_filter_on(header)?;
                let query = MessagesQuery {
                    topic,
                    partition,
                    from_offset,
                    window,
                    header,
                    limit: params.limit()?,
                    cursor: params.text("cursor"),
                    with_payload: params.flag("payload")?,
                };
                reader.messages(&query)
            },
        )
        .await
}
