//! `/v1/replays/{id}`, `POST /v1/transactions/{id}/replay` and `POST /v1/replays`: a replay's
//! progress, and replay requests (what they must pass is `replay/policy.rs`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use retrace_api::{BulkReplayRequest, ErrorBody, ReplayRequest, ReplayResponse, ReplayView};
use retrace_auth::Caller;
use retrace_http::{ApiError, json_body};

use super::Api;
use super::plumbing::answer_audited;
use super::responses::{ReplayAnswered, ReplayStarted};
use crate::audit::Audit;
use crate::replay::Replied;

#[utoipa::path(
    get,
    path = "/v1/replays/{id}",
    operation_id = "get_replay",
    tag = "replays",
    summary = "A replay's progress",
    params(("id" = String, Path, description = "Replay id")),
    responses(
        (status = 200, description = "The replay", body = ReplayView),
        (status = 404, description = "No replay has this id", body = ErrorBody),
    ),
)]
pub(super) async fn get(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    let replays = api.replays(None);
    let audit = Audit::new(&caller, "replay.read", &id);
    answer_audited(&api, "replay", audit, move |_| {
        Ok((StatusCode::OK, replays.view(&id)?))
    })
    .await
}

#[utoipa::path(
    post,
    path = "/v1/transactions/{id}/replay",
    operation_id = "replay_transaction",
    tag = "replays",
    summary = "Replay a transaction (or plan it, with dry_run)",
    params(
        ("id" = String, Path, description = "Transaction id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Asking again with the same key answers the replay the first request started"),
    ),
    request_body = ReplayRequest,
    responses(
        ReplayAnswered,
        (status = 400, description = "The request is invalid (no reason, an unknown member, a bad target topic, not JSON); `field` names what", body = ErrorBody),
        (status = 404, description = "No archived message has this transaction id", body = ErrorBody),
        (status = 409, description = "Nothing to replay, the plan includes an erased record (\"event X was erased on DATE at the subject's request; it cannot be replayed\"), or the Idempotency-Key was used with another request", body = ErrorBody),
        (status = 503, description = "The replay is on the change log, but this archive has not applied it yet (far behind Kafka), or Kafka did not take it; ask again with the same Idempotency-Key", body = ErrorBody),
    ),
)]
pub(super) async fn transaction(
    State(api): State<Api>,
    caller: Caller,
    Path(transaction_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_key = idempotency_key(&headers);
    let replays = api.replays(headers.get(AUTHORIZATION).cloned());
    let audit = Audit::new(&caller, "replay.start", &transaction_id);
    answer_audited(&api, "replay_transaction", audit, move |audit| {
        let request: ReplayRequest = json_body(&body, "request")?;
        status(replays.transaction(&caller, transaction_id, request, request_key, audit))
    })
    .await
}

#[utoipa::path(
    post,
    path = "/v1/replays",
    operation_id = "bulk_replay",
    tag = "replays",
    summary = "Replay every transaction a query selects, at a bounded rate",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Asking again with the same key answers the replay the first request started"),
    ),
    request_body = BulkReplayRequest,
    responses(
        (status = 200, description = "The dry run's plan, or the replay an earlier request with this Idempotency-Key started", body = ReplayResponse),
        ReplayStarted,
        (status = 400, description = "The request is invalid (no reason, an unknown member, a bad time, more messages than `max`, not JSON); `field` names what", body = ErrorBody),
        (status = 403, description = "The caller's role lacks the permission, or the plan has more messages than replay_bulk_admin_above and the caller lacks replay:bulk", body = ErrorBody),
        (status = 404, description = "`incident` names no incident", body = ErrorBody),
        (status = 409, description = "Nothing to replay, the plan includes an erased record, or the Idempotency-Key was used with another request", body = ErrorBody),
        (status = 503, description = "The replay is on the change log, but this archive has not applied it yet (far behind Kafka), or Kafka did not take it; ask again with the same Idempotency-Key", body = ErrorBody),
    ),
    extensions(("x-permission" = json!("also replay:bulk (admin) when the plan has more messages than replay_bulk_admin_above"))),
)]
pub(super) async fn bulk(
    State(api): State<Api>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_key = idempotency_key(&headers);
    let replays = api.replays(headers.get(AUTHORIZATION).cloned());
    let audit = Audit::new(&caller, "replay.start", "");
    answer_audited(&api, "bulk_replay", audit, move |audit| {
        let request: BulkReplayRequest = json_body(&body, "request")?;
        status(replays.bulk(&caller, request, request_key, audit))
    })
    .await
}

/// 202 for a replay started now, 200 for a plan or a replay already started.
fn status(replied: Result<Replied, ApiError>) -> Result<(StatusCode, ReplayResponse), ApiError> {
    Ok(match replied? {
        Replied::Shown(response) => (StatusCode::OK, response),
        Replied::Started(response) => (StatusCode::ACCEPTED, response),
    })
}

fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}
