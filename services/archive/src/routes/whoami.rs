//! `/v1/whoami`: what the caller may do, for clients such as the web console.

use axum::http::StatusCode;
use axum::response::Response;
use retrace_api::WhoAmI;
use retrace_auth::{Caller, Permission};

use super::plumbing::answer;

/// Not audited: it reads nothing from the archive, only the caller's own credential.
#[utoipa::path(
    get,
    path = "/v1/whoami",
    operation_id = "whoami",
    tag = "caller",
    summary = "Who the caller is: actor, role, credential and every permission it holds",
    description = "So a client (the web console) shows only what the caller may do; the server checks every request anyway.",
    responses(
        (status = 200, description = "The caller", body = WhoAmI),
    ),
)]
pub(super) async fn whoami(caller: Caller) -> Response {
    answer("whoami", move || {
        let permissions = Permission::ALL
            .into_iter()
            .filter(|p| caller.can(*p))
            .map(|p| p.as_str().to_owned())
            .collect();
        Ok((
            StatusCode::OK,
            WhoAmI {
                actor: caller.actor,
                role: caller.role.as_str().to_owned(),
                credential: caller.credential.as_str().to_owned(),
                permissions,
            },
        ))
    })
    .await
}
