//! The OpenAPI document, generated from the route table and the wire types of `retrace-api`
//! (utoipa), and `/v1/openapi.json`, which serves it to anyone. Each operation's
//! `x-permission` and its 401/403/503 answers come from its group in [`table`], so the
//! document says what the guard checks. The copy the SDKs generate from is
//! `services/api/openapi.json`; a test fails when it differs from [`openapi`].

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use retrace_api::{
    AuditView, ErrorBody, IncidentSubject, IncidentView, MessageView, Page, TransactionSummary,
};
use retrace_auth::Role;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr,
};
use utoipa::{PartialSchema as _, ToSchema};

use super::{Access, table};

const DESCRIPTION: &str = "Served by the archive service. Times are RFC 3339 UTC; durations \
    are milliseconds. Every error is the JSON document `Error`: a stable `code`, the `error` in \
    words, and the `field` at fault when one is. Every route but this document needs \
    `Authorization: Bearer <token>` (an API token, rtk_..., or an OIDC access token); \
    `x-permission` names the permission each needs. Every read, replay, erasure and token \
    change, and every refusal, is recorded in the audit trail. Listings page with an opaque \
    cursor: pass `next_cursor` as `cursor`.";

/// The shared answers of the guard, in `components/responses`.
const UNAUTHENTICATED: &str = "Unauthenticated";
const FORBIDDEN: &str = "Forbidden";
const NOT_READY: &str = "CredentialsUnchecked";

/// The OpenAPI document of the archive's API.
pub fn openapi() -> OpenApi {
    let mut document = base();
    for (access, group) in table() {
        let mut part = group.into_openapi();
        for item in part.paths.paths.values_mut() {
            for operation in operations(item) {
                guarded_by(access, operation);
            }
        }
        document.merge(part);
    }
    document
}

/// The document's title, description, security scheme and the guard's answers.
fn base() -> OpenApi {
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(RefOr::Ref(Ref::from_schema_name("Error"))))
                    .build(),
            )
            .build()
    };
    let components = ComponentsBuilder::new()
        .security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A Retrace API token (rtk_<id>_<secret>) or an OIDC access token",
                    ))
                    .build(),
            ),
        )
        .schema_from::<ErrorBody>()
        .schemas_from_iter(pages())
        .response(
            UNAUTHENTICATED,
            error("No valid credential (missing, malformed, unknown, expired or revoked)"),
        )
        .response(FORBIDDEN, error("The caller's role lacks the permission"))
        .response(
            NOT_READY,
            error(
                "Credentials cannot be checked yet (the token registry is catching up, or the \
                 OIDC provider's keys cannot be fetched); retry after `Retry-After`",
            ),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Retrace trace and replay API")
                .version("1")
                .description(Some(DESCRIPTION))
                .build(),
        )
        .security(Some([SecurityRequirement::new("bearer", [""; 0])]))
        .components(Some(components))
        .build()
}

/// The pages of the listings, named after what they list (`ref(...)` in the operations).
fn pages() -> Vec<(String, RefOr<Schema>)> {
    fn page<T: ToSchema>(name: &str, schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((name.to_owned(), Page::<T>::schema()));
        Page::<T>::schemas(schemas);
    }
    let mut schemas = Vec::new();
    page::<TransactionSummary>("TransactionPage", &mut schemas);
    page::<MessageView>("MessagePage", &mut schemas);
    page::<AuditView>("AuditPage", &mut schemas);
    page::<IncidentView>("IncidentPage", &mut schemas);
    page::<IncidentSubject>("IncidentSubjectPage", &mut schemas);
    schemas
}

/// What `access` adds to an operation: its `x-permission`, and the guard's answers (or, open
/// to anyone, no security).
fn guarded_by(access: Access, operation: &mut Operation) {
    let (permission, refusals): (String, &[(&str, &str)]) = match access {
        Access::Open => {
            operation.security = Some(Vec::new());
            return;
        }
        Access::Authenticated => (
            "any authenticated caller".to_owned(),
            &[("401", UNAUTHENTICATED), ("503", NOT_READY)],
        ),
        Access::Needs(permission) => {
            let roles: Vec<&str> = Role::ALL
                .into_iter()
                .filter(|role| role.grants(permission))
                .map(Role::as_str)
                .collect();
            (
                format!("{permission} (roles: {})", roles.join(", ")),
                &[
                    ("401", UNAUTHENTICATED),
                    ("403", FORBIDDEN),
                    ("503", NOT_READY),
                ],
            )
        }
    };
    let extensions = operation.extensions.get_or_insert_default();
    // An operation may say more after the permission (what else it checks).
    let permission = match extensions
        .get("x-permission")
        .and_then(|note| note.as_str())
    {
        Some(note) => format!("{permission}; {note}"),
        None => permission,
    };
    extensions.insert("x-permission".to_owned(), permission.into());
    for (status, answer) in refusals {
        operation
            .responses
            .responses
            .entry((*status).to_owned())
            .or_insert_with(|| RefOr::Ref(Ref::new(format!("#/components/responses/{answer}"))));
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

/// [`openapi`], serialised once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    openapi()
        .to_json()
        .expect("the OpenAPI document serialises")
});

/// This document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    operation_id = "get_openapi",
    tag = "documentation",
    summary = "This document",
    responses(
        (status = 200, description = "The OpenAPI document of this API", content_type = "application/json", body = Object),
    ),
)]
pub(super) async fn document() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
        .into_response()
}

#[cfg(test)]
#[path = "openapi_tests.rs"]
mod tests;
