//! `GET /v1/config`: answered by the service host beside the archive's router
//! (`retrace_service::http::router`, the same route on every service), documented here with
//! the archive's other routes.

use retrace_api::{ConfigDocument, ErrorBody};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

use super::Api;

/// The operation, for the document only: the handler is retrace-service's.
#[utoipa::path(
    get,
    path = "/v1/config",
    operation_id = "get_config",
    tag = "configuration",
    summary = "The configuration this service runs, with secrets shown as \"***\"",
    description = "Its version (a short hash of the effective configuration, new at each reload that changes something), when it was loaded, from which file, and every effective setting. The gateway and the worker answer the same route. Every read is recorded in the audit trail first.",
    responses(
        (status = 200, description = "The running configuration", body = ConfigDocument),
        (status = 503, description = "The read could not be recorded in the audit trail, or credentials cannot be checked yet; retry", body = ErrorBody),
    ),
)]
#[allow(dead_code)]
fn config() {}

#[derive(utoipa::OpenApi)]
#[openapi(paths(config))]
struct Documented;

/// The route's group in the table: a document, no handler.
pub(super) fn documented() -> OpenApiRouter<Api> {
    OpenApiRouter::with_openapi(Documented::openapi())
}
