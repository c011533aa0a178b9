//! `POST /v1/subjects/{id}/erase`: erasing a subject's payloads, at its request.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use retrace_api::{EraseRequest, ErasureView, ErrorBody};
use retrace_auth::Caller;
use retrace_http::json_body;

use super::Api;
use super::plumbing::answer_audited;
use crate::admin;
use crate::audit::Audit;

#[utoipa::path(
    post,
    path = "/v1/subjects/{id}/erase",
    operation_id = "erase_subject",
    tag = "erasure",
    summary = "Erase the payloads of every archived record naming the subject; ids, types, times and outcomes stay",
    description = "Every replica applies it, from the archive's change log, to what this one had archived when asked. The bytes leave the disk at the next offline compaction (`retrace-archive compact --data-dir DIR`).",
    params(("id" = String, Path, description = "Subject id, e.g. beneficiary:42")),
    request_body = EraseRequest,
    responses(
        (status = 200, description = "What the erasure did", body = ErasureView),
        (status = 400, description = "The request is invalid (no reason, not JSON); `field` names what", body = ErrorBody),
        (status = 404, description = "No archived message names the subject", body = ErrorBody),
        (status = 503, description = "The erasure is on the change log, but this archive has not applied it yet (far behind Kafka), or Kafka did not take it; or, sharded, a shard did not answer (nothing was erased)", body = ErrorBody),
    ),
)]
pub(super) async fn erase(
    State(api): State<Api>,
    caller: Caller,
    Path(subject): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let store = api.store().clone();
    let changes = api.changes.clone();
    let fanout = api.fanout(headers.get(AUTHORIZATION).cloned());
    let audit = Audit::new(&caller, "subject.erase", &subject);
    answer_audited(&api, "erase", audit, move |audit| {
        let request: EraseRequest = json_body(&body, "request")?;
        Ok((
            StatusCode::OK,
            admin::erase(&store, &changes, fanout.as_ref(), subject, request, audit)?,
        ))
    })
    .await
}
