//! `/v1/tokens` and `/v1/tokens/{id}/revoke`: listing, creating and revoking API tokens.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use retrace_api::{CreateTokenRequest, CreatedToken, ErrorBody, TokenView};
use retrace_auth::Caller;
use retrace_http::json_body;

use super::Api;
use super::plumbing::{Answer, answer_audited};
use crate::admin;
use crate::audit::Audit;

#[utoipa::path(
    get,
    path = "/v1/tokens",
    operation_id = "list_tokens",
    tag = "tokens",
    summary = "API tokens, oldest first, revoked and expired included (never their secrets)",
    responses(
        (status = 200, description = "Every token", body = Vec<TokenView>),
        (status = 409, description = "Authentication is disabled: no tokens", body = ErrorBody),
    ),
)]
pub(super) async fn list(State(api): State<Api>, caller: Caller) -> Response {
    let answered = admin::list_tokens(api.registry.as_ref()).map(|tokens| (StatusCode::OK, tokens));
    let audit = Audit::new(&caller, "tokens.list", "API tokens");
    answer_audited(&api, "tokens", audit, move |_| answered).await
}

#[utoipa::path(
    post,
    path = "/v1/tokens",
    operation_id = "create_token",
    tag = "tokens",
    summary = "Create an API token; its text is in this answer only",
    request_body = CreateTokenRequest,
    responses(
        (status = 201, description = "Created", body = CreatedToken, links(
            ("revoke" = (
                operation_id = "revoke_token",
                parameters(("id" = "$response.body#/record/id")),
                description = "Revoke the token just created",
            )),
        )),
        (status = 400, description = "The request is invalid (name, role, extra, topics, expires_in_s, not JSON); `field` names what", body = ErrorBody),
        (status = 409, description = "A live token has this name, or authentication is disabled", body = ErrorBody),
        (status = 503, description = "Kafka did not acknowledge the token record; retry", body = ErrorBody),
    ),
)]
pub(super) async fn create(State(api): State<Api>, caller: Caller, body: Bytes) -> Response {
    let mut audit = Audit::new(&caller, "token.create", "");
    let answered: Answer<_> = match json_body::<CreateTokenRequest>(&body, "request") {
        Ok(request) => admin::create_token(api.registry.as_ref(), &caller, request, &mut audit)
            .await
            .map(|created| (StatusCode::CREATED, created)),
        Err(refused) => Err(refused),
    };
    answer_audited(&api, "token_create", audit, move |_| answered).await
}

#[utoipa::path(
    post,
    path = "/v1/tokens/{id}/revoke",
    operation_id = "revoke_token",
    tag = "tokens",
    summary = "Revoke an API token (by id, or live name); refused at once by every service",
    params(("id" = String, Path, description = "Token id (the 12 hex digits after rtk_) or its live name")),
    responses(
        (status = 200, description = "The revoked token", body = TokenView),
        (status = 404, description = "No such token", body = ErrorBody),
        (status = 409, description = "Already revoked, or authentication is disabled", body = ErrorBody),
        (status = 503, description = "Kafka did not acknowledge the revocation; retry", body = ErrorBody),
    ),
)]
pub(super) async fn revoke(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    let mut audit = Audit::new(&caller, "token.revoke", format!("token {id}"));
    let answered = admin::revoke_token(api.registry.as_ref(), &caller, &id, &mut audit)
        .await
        .map(|revoked| (StatusCode::OK, revoked));
    answer_audited(&api, "token_revoke", audit, move |_| answered).await
}
