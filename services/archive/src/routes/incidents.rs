//! `/v1/incidents`, `/v1/incidents/{id}`, `/v1/incidents/{id}/subjects` and the export of
//! the last (`/v1/exports/incidents/{id}/subjects`): failures grouped by cause, and whom
//! they touched. Their replay is `POST /v1/replays` with `incident`.

use axum::extract::Path;
use axum::response::Response;
use retrace_api::{ErrorBody, IncidentDetail};
use retrace_http::ApiError;

use super::plumbing::{Paging, ReadRequest};
use super::responses::{IncidentPage, IncidentSubjectPage, InvalidParameter, SHARD_OWN};
use crate::audit::Audit;
use crate::incidents::IncidentFilter;

const LISTING_PARAMETERS: &[&str] = &["status", "since", "until", "limit", "cursor"];
const PAGE_PARAMETERS: &[&str] = &["limit", "cursor"];

/// The parameters of the incident listing (read by `Params`, declared here for the
/// document).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(super) struct Listing {
    /// Only incidents of this status: `open` or `resolved`.
    #[param(required = false)]
    status: retrace_api::IncidentStatus,
    /// Incidents with a failure at or after this: RFC 3339 time, or a duration back from
    /// now (90s, 15m, 2h, 7d).
    #[param(required = false)]
    since: String,
    /// Incidents with a failure before this.
    #[param(required = false)]
    until: String,
}

#[utoipa::path(
    get,
    path = "/v1/incidents",
    operation_id = "list_incidents",
    tag = "incidents",
    summary = "List incidents (failures grouped by step and cause), newest last failure first, with their counts and the last hour's failures per minute",
    params(Listing, Paging),
    responses(IncidentPage, InvalidParameter)
)]
pub(super) async fn list(request: ReadRequest) -> Response {
    let audit = Audit::new(&request.caller, "incidents.list", request.query());
    request
        .answer_partial("incidents", audit, LISTING_PARAMETERS, |reader, params| {
            let filter = IncidentFilter {
                status: params
                    .text("status")
                    .map(|s| {
                        s.parse()
                            .map_err(|e: String| ApiError::invalid("status", e))
                    })
                    .transpose()?,
                window: params.window("since", "until")?,
            };
            reader.incidents(&filter, params.limit()?, params.text("cursor"))
        })
        .await
}

#[utoipa::path(
    get,
    path = "/v1/incidents/{id}",
    operation_id = "get_incident",
    tag = "incidents",
    summary = "An incident: its figures, its failures per minute, and a page of its transactions (still failing first)",
    params(("id" = String, Path, description = "Incident id (16 hex digits)"), Paging),
    responses(
        (status = 200, description = "The incident", body = IncidentDetail),
        (status = 206, description = SHARD_OWN, body = IncidentDetail),
        InvalidParameter,
        (status = 404, description = "No incident has this id", body = ErrorBody),
    ),
)]
pub(super) async fn get(request: ReadRequest, Path(id): Path<String>) -> Response {
    let audit = Audit::new(&request.caller, "incident.read", &id);
    request
        .answer_partial("incident", audit, PAGE_PARAMETERS, move |reader, params| {
            reader.incident(&id, params.limit()?, params.text("cursor"))
        })
        .await
}

#[utoipa::path(
    get,
    path = "/v1/incidents/{id}/subjects",
    operation_id = "list_incident_subjects",
    tag = "incidents",
    summary = "The subjects an incident touched, in subject order, each with the incident's transactions that carry it",
    params(("id" = String, Path, description = "Incident id (16 hex digits)"), Paging),
    responses(
        IncidentSubjectPage,
        InvalidParameter,
        (status = 404, description = "No incident has this id", body = ErrorBody),
    ),
)]
pub(super) async fn subjects(request: ReadRequest, Path(id): Path<String>) -> Response {
    subject_listing(request, id, "incident.subjects").await
}

/// The subjects, for an export: the `export` permission, and audited as one.
#[utoipa::path(
    get,
    path = "/v1/exports/incidents/{id}/subjects",
    operation_id = "export_incident_subjects",
    tag = "exports",
    summary = "The subjects of /v1/incidents/{id}/subjects, for an export (CSV or JSON by the client): needs the export permission and is audited as incident.export",
    params(("id" = String, Path, description = "Incident id (16 hex digits)"), Paging),
    responses(
        IncidentSubjectPage,
        InvalidParameter,
        (status = 404, description = "No incident has this id", body = ErrorBody),
    ),
)]
pub(super) async fn export_subjects(request: ReadRequest, Path(id): Path<String>) -> Response {
    subject_listing(request, id, "incident.export").await
}

async fn subject_listing(request: ReadRequest, id: String, action: &'static str) -> Response {
    let audit = Audit::new(&request.caller, action, &id);
    request
        .answer_partial(
            "incident_subjects",
            audit,
            PAGE_PARAMETERS,
            move |reader, params| {
                reader.incident_subjects(&id, params.limit()?, params.text("cursor"))
            },
        )
        .await
}
