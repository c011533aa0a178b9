//! `/v1/shard/...`: what the shards of a sharded archive ask each other, with the caller's
//! credential, to build one answer about the whole archive ([`crate::shards`]). Each is
//! audited here as the caller's read, like any other.

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use retrace_api::{RecordsQuery, ShardMarks, ShardRecords, ShardSubject};
use retrace_http::{ApiError, json_body};
use retrace_log_store::Mark;

use super::plumbing::ReadRequest;
use super::responses::InvalidParameter;
use crate::audit::Audit;
use crate::shards::answers::{self, MAX_MARKS};

/// What the marks take.
const MARKS_PARAMETERS: &[&str] = &["mark", "from_ms", "until_ms", "cursor", "limit"];

/// The parameters of the marks (read by `Params`, declared here for the document).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct Marks {
    /// `failure` (failed and replayed listings) or `start` (the others).
    mark: String,
    /// Marks at or after this time, in milliseconds since the epoch.
    #[param(required = false)]
    from_ms: i64,
    /// Marks before this time, in milliseconds since the epoch.
    #[param(required = false)]
    until_ms: i64,
    /// The `cursor` of the mark to resume after.
    #[param(required = false)]
    cursor: String,
    /// At most this many marks, 1-1000.
    #[param(required = false, minimum = 1, maximum = 1000)]
    limit: u32,
}

/// The parameter of a subject's transactions (declared here for the document).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct Subject {
    /// The subject id.
    subject: String,
}

#[utoipa::path(
    post,
    path = "/v1/shard/records",
    operation_id = "shard_records",
    tag = "shards",
    summary = "A shard's records of some transactions and events, as it stores them (masked unless the caller has payload:read)",
    request_body = RecordsQuery,
    responses(
        (status = 200, description = "The records this shard holds", body = ShardRecords),
        InvalidParameter,
    ),
)]
pub(super) async fn records(request: ReadRequest, body: Bytes) -> Response {
    let query: RecordsQuery = match json_body(&body, "request") {
        Ok(query) => query,
        Err(refused) => return refused.into_response(),
    };
    let target: Vec<&str> = query
        .transactions
        .iter()
        .chain(&query.events)
        .map(String::as_str)
        .collect();
    let audit = Audit::new(&request.caller, "shard.records.read", target.join(" "));
    request
        .answer("shard_records", audit, &[], move |reader, _| {
            answers::records(&reader.store, &query, reader.masking.as_deref())
        })
        .await
}

#[utoipa::path(
    get,
    path = "/v1/shard/marks",
    operation_id = "shard_marks",
    tag = "shards",
    summary = "A page of a shard's listing marks (when transactions started or failed), newest first",
    params(Marks),
    responses(
        (status = 200, description = "The marks; fewer than `limit` when no more are left", body = ShardMarks),
        InvalidParameter,
    ),
)]
pub(super) async fn marks(request: ReadRequest) -> Response {
    let audit = Audit::new(&request.caller, "shard.marks.read", request.query());
    request
        .answer("shard_marks", audit, MARKS_PARAMETERS, |reader, params| {
            let mark = match params.text("mark") {
                Some("failure") => Mark::Failure,
                Some("start") => Mark::Start,
                other => {
                    return Err(ApiError::invalid(
                        "mark",
                        format!("{other:?} is not a mark: use failure or start"),
                    ));
                }
            };
            let window = (
                params.number("from_ms")?.unwrap_or(i64::MIN),
                params.number("until_ms")?.unwrap_or(i64::MAX),
            );
            let limit = params.number::<usize>("limit")?.unwrap_or(MAX_MARKS);
            if !(1..=MAX_MARKS).contains(&limit) {
                return Err(ApiError::invalid(
                    "limit",
                    format!("limit {limit} is out of range: use 1 to {MAX_MARKS}"),
                ));
            }
            answers::marks(&reader.store, mark, window, params.text("cursor"), limit)
        })
        .await
}

#[utoipa::path(
    get,
    path = "/v1/shard/subjects",
    operation_id = "shard_subject",
    tag = "shards",
    summary = "Every transaction of a subject a shard holds, with when it last saw each",
    params(Subject),
    responses(
        (status = 200, description = "The subject's transactions on this shard", body = ShardSubject),
        InvalidParameter,
    ),
)]
pub(super) async fn subject(request: ReadRequest) -> Response {
    let audit = Audit::new(&request.caller, "shard.subject.read", request.query());
    request
        .answer("shard_subject", audit, &["subject"], |reader, params| {
            let subject = params
                .text("subject")
                .ok_or_else(|| ApiError::invalid("subject", "subject is required"))?;
            answers::subject(&reader.store, subject)
        })
        .await
}
