//! Answers that several operations document alike, each named once for their
//! `#[utoipa::path(responses(...))]`.

use std::collections::BTreeMap;

use retrace_api::{ErrorBody, ReplayResponse};
use utoipa::openapi::link::{Link, LinkBuilder};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response};
use utoipa::{IntoResponses, ToSchema};

/// A query parameter refused: 400, with the error document naming it.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 400,
    description = "A parameter is invalid or unknown; `field` names it"
)]
#[allow(dead_code)]
pub(super) struct InvalidParameter(ErrorBody);

/// A replay request answered (200) with its plan, or the replay an earlier request with its
/// Idempotency-Key started; and [`ReplayStarted`].
pub(super) struct ReplayAnswered;

impl IntoResponses for ReplayAnswered {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let shown = "The dry run's plan, or the replay an earlier request with this \
                     Idempotency-Key started";
        let mut responses = ReplayStarted::responses();
        responses.insert("200".to_owned(), replay(shown));
        responses
    }
}

/// A replay started (202), linking to its progress.
pub(super) struct ReplayStarted;

impl IntoResponses for ReplayStarted {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([("202".to_owned(), replay("Replay started"))])
    }
}

/// A page of transactions (200), linking to the first one's trace.
pub(super) struct TransactionPage;

impl IntoResponses for TransactionPage {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        transaction_page("A page of transactions")
    }
}

/// A page of a subject's transactions (200), linking to the first one's trace.
pub(super) struct SubjectTransactionPage;

impl IntoResponses for SubjectTransactionPage {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        transaction_page("A page of the subject's transactions")
    }
}

/// A page of incidents (200), linking to the first one.
pub(super) struct IncidentPage;

impl IntoResponses for IncidentPage {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let first = link(
            "get_incident",
            "$response.body#/items/0/incident_id",
            "The first listed incident",
        );
        let page = json("A page of incidents", "IncidentPage").link("first_incident", first);
        BTreeMap::from([
            ("200".to_owned(), page.into()),
            ("206".to_owned(), json(SHARD_OWN, "IncidentPage").into()),
        ])
    }
}

/// A page of the subjects an incident touched (200).
pub(super) struct IncidentSubjectPage;

impl IntoResponses for IncidentSubjectPage {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let page = json("A page of the incident's subjects", "IncidentSubjectPage");
        BTreeMap::from([
            ("200".to_owned(), page.into()),
            (
                "206".to_owned(),
                json(SHARD_OWN, "IncidentSubjectPage").into(),
            ),
        ])
    }
}

/// A [`ReplayResponse`] and the link to the replay's progress.
fn replay(description: &str) -> RefOr<Response> {
    let progress = link(
        "get_replay",
        "$response.body#/replay/replay_id",
        "The replay's progress",
    );
    json(description, ReplayResponse::name().as_ref())
        .link("replay", progress)
        .into()
}

/// A 200 of `TransactionPage` and the link to the first listed transaction's trace; and
/// the 206 of a sharded archive one of whose shards did not answer.
fn transaction_page(description: &str) -> BTreeMap<String, RefOr<Response>> {
    let first = link(
        "get_transaction",
        "$response.body#/items/0/transaction_id",
        "The first listed transaction's trace",
    );
    let page = json(description, "TransactionPage").link("first_transaction", first);
    let partial = json(INCOMPLETE, "TransactionPage");
    BTreeMap::from([
        ("200".to_owned(), page.into()),
        ("206".to_owned(), partial.into()),
    ])
}

/// What a sharded archive's incidents say: each shard's are its own.
pub(super) const SHARD_OWN: &str = "A sharded archive's incidents are each shard's own: the other shards, whose failures are \
     not counted, are named in `incomplete`";

/// What a 206 says: a sharded archive answered without a shard (docs/replicas.md#shards).
pub(super) const INCOMPLETE: &str = "A sharded archive answered without the shards named in `incomplete`, none of whose \
     replicas answered: what they hold is missing";

/// A response of `description` whose JSON body is the schema named `schema`.
fn json(description: &str, schema: &str) -> ResponseBuilder {
    let body = ContentBuilder::new().schema(Some(Ref::from_schema_name(schema)));
    ResponseBuilder::new()
        .description(description)
        .content("application/json", body.build())
}

/// A link to `operation_id`, whose `id` is `id` (a runtime expression).
fn link(operation_id: &str, id: &str, description: &str) -> Link {
    LinkBuilder::new()
        .operation_id(operation_id)
        .parameter("id", id)
        .description(description)
        .build()
}
