//! `/v1/transactions`, `/v1/transactions/{id}`, `/v1/subjects/{id}/transactions` and their
//! exports (`/v1/exports/...`): a transaction's trace, and the listings of transactions.

use axum::extract::Path;
use axum::response::Response;
use retrace_api::{ErrorBody, Trace};
use retrace_http::ApiError;

use super::events::{PAYLOAD_PARAMETERS, Payload};
use super::plumbing::{Paging, ReadRequest};
use super::responses::{INCOMPLETE, InvalidParameter, SubjectTransactionPage, TransactionPage};
use crate::audit::Audit;
use crate::reads::Filter;

/// What the transaction listings take.
pub(super) const LISTING_PARAMETERS: &[&str] = &[
    "status", "since", "until", "topic", "type", "service", "limit", "cursor",
];

/// What a subject's listings take.
pub(super) const SUBJECT_PARAMETERS: &[&str] = &["since", "until", "limit", "cursor"];

/// The parameters of a transaction listing (read by [`Params`], declared here for the
/// document).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(super) struct Listing {
    /// Only transactions of this status: `ok`, `failed`, `in_progress` or `replayed`.
    #[param(required = false)]
    status: retrace_api::TransactionStatus,
    /// RFC 3339 time, or a duration back from now (90s, 15m, 2h, 7d).
    #[param(required = false)]
    since: String,
    /// RFC 3339 time, or a duration back from now (90s, 15m, 2h, 7d).
    #[param(required = false)]
    until: String,
    /// Only transactions with an event on this topic.
    #[param(required = false)]
    topic: String,
    /// Only transactions with an event of this type.
    #[param(required = false, rename = "type")]
    event_type: String,
    /// Only transactions one of whose events this service published, or reported an outcome
    /// on (e.g. the consumer that failed).
    #[param(required = false)]
    service: String,
}

/// The parameters of a subject's listing (read by [`Params`], declared here for the
/// document).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(super) struct SubjectListing {
    /// RFC 3339 time, or a duration back from now (90s, 15m, 2h, 7d).
    #[param(required = false)]
    since: String,
    /// RFC 3339 time, or a duration back from now (90s, 15m, 2h, 7d).
    #[param(required = false)]
    until: String,
}

#[utoipa::path(
    get,
    path = "/v1/transactions/{id}",
    operation_id = "get_transaction",
    tag = "transactions",
    summary = "Trace a transaction: its events in time order, outcomes, causation tree, replays and status",
    params(("id" = String, Path, description = "Transaction id"), Payload),
    responses(
        (status = 200, description = "The transaction's trace", body = Trace, links(
            ("replay" = (
                operation_id = "replay_transaction",
                parameters(("id" = "$request.path.id")),
                description = "Replay this transaction",
            )),
            ("first_event" = (
                operation_id = "get_event",
                parameters(("id" = "$response.body#/events/0/event_id")),
                description = "The transaction's first event and its copies",
            )),
            ("subject" = (
                operation_id = "list_subject_transactions",
                parameters(("id" = "$response.body#/events/0/subject_ids/0")),
                description = "The transactions of the first event's first subject",
            )),
        )),
        (status = 206, description = INCOMPLETE, body = Trace),
        InvalidParameter,
        (status = 404, description = "No archived message has this transaction id (`behind` names the partitions it may still come from)", body = ErrorBody),
        (status = 503, description = "A sharded archive found the transaction on none of the shards that answered, and a shard that did not may hold it", body = ErrorBody),
    ),
)]
pub(super) async fn get(request: ReadRequest, Path(id): Path<String>) -> Response {
    let audit = Audit::new(&request.caller, "transaction.read", &id);
    request
        .answer_partial(
            "transaction",
            audit,
            PAYLOAD_PARAMETERS,
            move |reader, params| reader.transaction(&id, params.flag("payload")?),
        )
        .await
}

#[utoipa::path(
    get,
    path = "/v1/transactions",
    operation_id = "list_transactions",
    tag = "transactions",
    summary = "List transactions, newest first, by status (failed and replayed by when they failed; others by when they started)",
    params(Listing, Paging),
    responses(TransactionPage, InvalidParameter,)
)]
pub(super) async fn list(request: ReadRequest) -> Response {
    listing(request, "transactions.list").await
}

/// The listing, for an export: the `export` permission, and audited as one.
#[utoipa::path(
    get,
    path = "/v1/exports/transactions",
    operation_id = "export_transactions",
    tag = "exports",
    summary = "The listing of /v1/transactions, for an export (CSV or JSON by the client): needs the export permission and is audited as transactions.export",
    params(Listing, Paging),
    responses(
        (status = 200, description = "A page of transactions", body = ref("#/components/schemas/TransactionPage")),
        InvalidParameter,
    ),
)]
pub(super) async fn export(request: ReadRequest) -> Response {
    listing(request, "transactions.export").await
}

async fn listing(request: ReadRequest, action: &'static str) -> Response {
    let audit = Audit::new(&request.caller, action, request.query());
    request
        .answer_partial(
            "transactions",
            audit,
            LISTING_PARAMETERS,
            move |reader, params| {
                let filter = Filter {
                    status: params
                        .text("status")
                        .map(|s| {
                            s.parse()
                                .map_err(|e: String| ApiError::invalid("status", e))
                        })
                        .transpose()?,
                    window: params.window("since", "until")?,
                    topic: params.text("topic").map(str::to_owned),
                    event_type: params.text("type").map(str::to_owned),
                    service: params.text("service").map(str::to_owned),
                };
                reader.transactions(&filter, params.limit()?, params.text("cursor"))
            },
        )
        .await
}

#[utoipa::path(
    get,
    path = "/v1/subjects/{id}/transactions",
    operation_id = "list_subject_transactions",
    tag = "transactions",
    summary = "Transactions that touched a subject, newest first",
    params(("id" = String, Path, description = "Subject id, e.g. beneficiary:42"), SubjectListing, Paging),
    responses(
        SubjectTransactionPage,
        InvalidParameter,
    ),
)]
pub(super) async fn of_subject(request: ReadRequest, Path(subject): Path<String>) -> Response {
    subject_listing(request, subject, "subject.read").await
}

/// The subject's transactions, for an export: the `export` permission, and audited as one.
#[utoipa::path(
    get,
    path = "/v1/exports/subjects/{id}/transactions",
    operation_id = "export_subject_transactions",
    tag = "exports",
    summary = "The subject's transactions as /v1/subjects/{id}/transactions lists them, for an export: needs the export permission and is audited as subject.export",
    params(("id" = String, Path, description = "Subject id, e.g. beneficiary:42"), SubjectListing, Paging),
    responses(
        (status = 200, description = "A page of the subject's transactions", body = ref("#/components/schemas/TransactionPage")),
        InvalidParameter,
    ),
)]
pub(super) async fn export_of_subject(
    request: ReadRequest,
    Path(subject): Path<String>,
) -> Response {
    subject_listing(request, subject, "subject.export").await
}

async fn subject_listing(request: ReadRequest, subject: String, action: &'static str) -> Response {
    let audit = Audit::new(&request.caller, action, &subject);
    request
        .answer_partial(
            "subject",
            audit,
            SUBJECT_PARAMETERS,
            move |reader, params| {
                let window = params.window("since", "until")?;
                reader.subject_transactions(
                    &subject,
                    window,
                    params.limit()?,
                    params.text("cursor"),
                )
            },
        )
        .await
}
